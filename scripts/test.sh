#!/usr/bin/env bash
# Run the test suite (after scripts/setup.sh). Extra arguments go to pytest.
#   bash scripts/test.sh            # everything, real components included
#   bash scripts/test.sh --quick    # leaves out the tests marked slow (real components), and says how many
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--quick" ]; then
  shift
  echo "quick run: the tests marked slow (real Docker, bubblewrap, Chromium, Xvfb, vLLM, llama.cpp, torch) are left out"
  exec .venv/bin/python -m pytest -q -m "not slow" "$@"
fi
exec .venv/bin/python -m pytest -q "$@"
