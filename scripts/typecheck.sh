#!/usr/bin/env bash
# Type-check the package as users import it: harmony_agent, with tools/ and sandboxes/ as its subpackages.
# No type checker reads pyproject's package-dir, so scripts/import_tree.py lays the import tree out as
# symlinks in a temporary folder and mypy runs there with the project's configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
"$root/.venv/bin/python" scripts/import_tree.py "$tree"
cd "$tree"
"$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" -p harmony_agent "$@" \
  | sed "s#^harmony_agent/tools/#tools/#; s#^harmony_agent/sandboxes/#sandboxes/#; s#^harmony_agent/#agent/#"
exit "${PIPESTATUS[0]}"
