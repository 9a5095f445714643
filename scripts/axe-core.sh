#!/usr/bin/env bash
# axe-core from npm for the playground's accessibility check
# (crates/clarion-cli/tests/playground.rs injects axe.min.js into headless Chromium), under
# the cache, installed once and again only when the pin changes. Prints the `export` line
# the test reads on stdout, everything else on stderr. Fails loudly: CI must not skip it.
#
#     eval "$(bash scripts/axe-core.sh)"
#
# Environment: CLARION_CACHE (default ~/.cache/clarion), CLARION_AXE_CORE_VERSION (the pin).
set -euo pipefail

version="${CLARION_AXE_CORE_VERSION:-4.14.1}"
cache="${CLARION_CACHE:-$HOME/.cache/clarion}"
npm_dir="$cache/axe-core"
axe_js="$npm_dir/node_modules/axe-core/axe.min.js"

if ! grep -q "\"version\": \"$version\"" "$npm_dir/node_modules/axe-core/package.json" 2>/dev/null; then
  echo "installing axe-core@$version into $npm_dir" >&2
  mkdir -p "$npm_dir"
  npm install --silent --no-audit --no-fund --prefix "$npm_dir" "axe-core@$version" >&2
fi
[[ -f $axe_js ]] || { echo "error: axe-core did not install into $npm_dir" >&2; exit 1; }

echo "axe-core $version at $axe_js" >&2
echo "export CLARION_AXE_CORE=$axe_js"
