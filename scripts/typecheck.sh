#!/usr/bin/env bash
# Type-check the package as users import it: harmony_agent, with tools/ and sandboxes/ as its subpackages.
# The repository keeps agent/, tools/ and sandboxes/ side by side (pyproject's package-dir maps them),
# which no type checker reads, so this lays the import tree out as symlinks in a temporary folder and
# runs mypy there with the project's configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/harmony_agent"
for entry in agent/*; do
  case "$entry" in */__pycache__) continue;; esac
  ln -s "$root/$entry" "$tree/harmony_agent/"
done
ln -s "$root/tools" "$tree/harmony_agent/tools"
ln -s "$root/sandboxes" "$tree/harmony_agent/sandboxes"
cd "$tree"
"$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" -p harmony_agent "$@" \
  | sed "s#^harmony_agent/tools/#tools/#; s#^harmony_agent/sandboxes/#sandboxes/#; s#^harmony_agent/#agent/#"
exit "${PIPESTATUS[0]}"
