#!/usr/bin/env bash
# Set up harmony-agent on a Debian-like machine and run the demo. Idempotent.
#   bash scripts/setup.sh            # set up, then run the demo
#   bash scripts/setup.sh --no-demo  # set up only
set -euo pipefail
cd "$(dirname "$0")/.."

run_demo=1
[ "${1:-}" = "--no-demo" ] && run_demo=0

# System packages the project needs (each tool adds its own as it ships).
SYSTEM_PACKAGES=(python3-venv)
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
  else
    echo "== no GPU: installing torch==2.13.0 (CPU)"
    "${PIP[@]}" torch==2.13.0
  fi
fi

echo "== installing harmony-agent with all extras"
"${PIP[@]}" -e ".[all,dev]"

echo "== resolving the harmony vocabulary (offline)"
.venv/bin/python -c "from agent.vocab import resolve_vocabulary; from agent.harmony import get_encoding; s = resolve_vocabulary(); get_encoding(); print('vocabulary:', s.kind, s.folder)"

if [ "$run_demo" = 1 ]; then
  echo "== demo: a scripted gpt-oss run with a function tool"
  .venv/bin/harmony-agent run examples/weather_task.yaml --yes
fi
