#!/usr/bin/env bash
# Set up harmony-agent on a Debian-like machine and run the demo. Idempotent.
#   bash scripts/setup.sh            # set up, then run the demo
#   bash scripts/setup.sh --no-demo  # set up only
set -euo pipefail
cd "$(dirname "$0")/.."

run_demo=1
[ "${1:-}" = "--no-demo" ] && run_demo=0

# Where torch comes from on a machine without a GPU: PyTorch's own CPU wheel index when it answers
# (a plain 'torch' from the default index is the multi-GB CUDA build), else the default index.
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX="${HARMONY_AGENT_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
torch_cpu_index_answers() {
  "${PYTHON:-python3}" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)' "$TORCH_CPU_INDEX/torch/" \
    >/dev/null 2>&1
}
# The Debian mirror for the offline sandbox image: the one this system's apt uses (apt reads its own sources).
debian_mirror() {
  command -v apt-get >/dev/null || return 0
  apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' 2>/dev/null | grep -v -- '-security' | head -n 1
}
if [ "${1:-}" = "--plan" ]; then  # say where torch and the image's packages would come from, and stop
  if torch_cpu_index_answers; then echo "torch: PyTorch's CPU index $TORCH_CPU_INDEX"; else echo "torch: the default index ($TORCH_CPU_INDEX does not answer)"; fi
  echo "debian mirror: $(debian_mirror)"
  exit 0
fi

# System packages the project needs (each tool adds its own as it ships):
# the python tool's Docker engine, bubblewrap, debootstrap for the offline image,
# the system Python's IPython/numpy/pandas/matplotlib for the bubblewrap sandbox, and the browser
# tool's Chromium and its headless shell (Playwright cannot download its own here) with CJK fonts, and the computer
# tool's virtual desktop: Xvfb, openbox, X utilities, tesseract, and xterm and Tk for its demo.
SYSTEM_PACKAGES=(python3-venv docker.io bubblewrap debootstrap python3-ipython python3-numpy python3-pandas python3-matplotlib
                 chromium chromium-headless-shell fonts-wqy-microhei
                 xvfb xauth openbox xdotool x11-utils wmctrl scrot tesseract-ocr xterm python3-tk
                 dbus at-spi2-core python3-gi gir1.2-gtk-3.0 x11-xserver-utils galculator mousepad x11-apps
                 tesseract-ocr-script-latn)
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  missing=()
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)

# Without a GPU, take the CPU build of torch (a plain 'torch' pulls a multi-GB CUDA build).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then
    echo "== GPU found: installing torch"
    "${PIP[@]}" torch
  elif torch_cpu_index_answers; then
    echo "== no GPU: installing torch==$TORCH_VERSION, the CPU build, from PyTorch's CPU index $TORCH_CPU_INDEX"
    "${PIP[@]}" --index-url "$TORCH_CPU_INDEX" --extra-index-url https://pypi.org/simple "torch==$TORCH_VERSION"
  else
    echo "== no GPU: PyTorch's CPU index ($TORCH_CPU_INDEX) does not answer; installing torch==$TORCH_VERSION from the default index"
    "${PIP[@]}" "torch==$TORCH_VERSION"
  fi
fi

echo "== installing harmony-agent with all extras"
"${PIP[@]}" -e ".[all,dev,ray]"

# The in-process llama.cpp backend (llama-cpp-python, extra "llamacpp") compiles llama.cpp from source:
# 8-11 minutes on 2 cores. The built wheel and the source distribution (it carries llama.cpp's GGUF
# converter, which the tests use) are cached in $HARMONY_AGENT_CACHE (default /var/cache/harmony-agent)
# and reused, so this compiles once per machine. CMAKE_ARGS=-DGGML_CUDA=on builds a CUDA wheel instead.
LLAMA_CPP_VERSION=0.3.36
if [ -z "${HARMONY_AGENT_CACHE:-}" ]; then
  if mkdir -p /var/cache/harmony-agent 2>/dev/null && [ -w /var/cache/harmony-agent ]; then HARMONY_AGENT_CACHE=/var/cache/harmony-agent
  else HARMONY_AGENT_CACHE="$HOME/.cache/harmony-agent"; fi
fi
llama_sdist="$HARMONY_AGENT_CACHE/sdist/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz"
if [ ! -f "$llama_sdist" ]; then
  echo "== downloading llama-cpp-python $LLAMA_CPP_VERSION (source)"
  mkdir -p "$HARMONY_AGENT_CACHE/sdist"
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    "llama-cpp-python==$LLAMA_CPP_VERSION" -d "$HARMONY_AGENT_CACHE/sdist"
fi
if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null)" != "$LLAMA_CPP_VERSION" ]; then
  wheel_dir="$HARMONY_AGENT_CACHE/wheels/$(case "${CMAKE_ARGS:-}" in *CUDA=on*|*CUDA=ON*) echo cuda;; *) echo cpu;; esac)"
  wheel=$(ls "$wheel_dir"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    echo "== compiling llama.cpp for llama-cpp-python $LLAMA_CPP_VERSION (about 10 minutes on 2 cores; cached in $wheel_dir)"
    mkdir -p "$wheel_dir"
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" .venv/bin/python -m pip wheel -q \
      --disable-pip-version-check --no-deps "$llama_sdist" -w "$wheel_dir"
    wheel=$(ls "$wheel_dir"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl | head -n1)
  fi
  echo "== installing $(basename "$wheel")"
  "${PIP[@]}" "$wheel" "gguf>=0.17"
fi
if [ ! -f "$HARMONY_AGENT_CACHE/llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp/convert_hf_to_gguf.py" ]; then
  echo "== unpacking llama.cpp's GGUF converter into $HARMONY_AGENT_CACHE"
  src="llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp"
  tar xzf "$llama_sdist" -C "$HARMONY_AGENT_CACHE" "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py"
fi

echo "== resolving the harmony vocabulary (offline)"
.venv/bin/python -c "from harmony_agent.harmony.vocab import resolve_vocabulary; from harmony_agent.harmony.encoding import get_encoding; s = resolve_vocabulary(); get_encoding(); print('vocabulary:', s.kind, s.folder)"

# The python tool's Docker engine: start one if none answers. Its flags leave the host's
# network alone (no bridge, no iptables rules); sandboxes run with networking off anyway.
if command -v docker >/dev/null && ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v dockerd >/dev/null; then
    echo "== starting the Docker engine (log: /var/log/harmony-agent-dockerd.log)"
    setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false >/var/log/harmony-agent-dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { echo "the Docker engine did not start; see /var/log/harmony-agent-dockerd.log" >&2; exit 1; }
  else
    echo "!! no Docker engine answers: start one to use the Docker sandbox (python falls back to bubblewrap)"
  fi
fi

# The sandbox image: from Debian packages when we can run debootstrap (no registry needed),
# else from the Dockerfile. HARMONY_AGENT_IMAGE_BUILD=dockerfile|offline overrides the choice.
# An image built for an older version of the project (its version label, e.g. one without
# IPython) is rebuilt too.
if docker info >/dev/null 2>&1; then
  outdated=$(.venv/bin/python -c "from harmony_agent.sandboxes.docker import docker_client; from harmony_agent.sandboxes.images import image_outdated; print(image_outdated(docker_client()) or '')")
  if [ -n "$outdated" ]; then
    build="${HARMONY_AGENT_IMAGE_BUILD:-}"
    if [ -z "$build" ]; then
      if [ "$(id -u)" = "0" ] && command -v debootstrap >/dev/null; then build=offline; else build=dockerfile; fi
    fi
    echo "== building the sandbox image ($build, about two minutes): $outdated"
    if [ "$build" = offline ]; then
      mirror="$(debian_mirror)"
      echo "== Debian mirror (from apt's sources): ${mirror:-none found, the sandbox reads /etc/apt itself}"
      .venv/bin/harmony-agent sandbox build --offline ${mirror:+--mirror "$mirror"}
    else
      .venv/bin/harmony-agent sandbox build
    fi
  fi
fi

# vLLM for CPU in a venv of its own, for the real-server test (tests/test_vllm.py). Cached;
# HARMONY_AGENT_VLLM=0 skips it.
if [ "${HARMONY_AGENT_VLLM:-1}" != 0 ]; then
  bash scripts/install-vllm.sh
fi

# The desktop image for VirtualDisplay(sandbox="docker"): Xvfb, openbox, AT-SPI and a few apps, from Debian packages.
if docker info >/dev/null 2>&1 && ! docker image inspect harmony-agent/desktop:latest >/dev/null 2>&1 \
   && [ "$(id -u)" = "0" ] && command -v debootstrap >/dev/null; then
  echo "== building the desktop image (about three minutes)"
  .venv/bin/python -m harmony_agent.sandboxes.images.desktop
fi

if [ "$run_demo" = 1 ]; then
  echo "== demo: checked episodes through the real python, browser and desktop tools (stand-in models play gpt-oss)"
  .venv/bin/harmony-agent demo --output runs/demo
fi
