#!/usr/bin/env bash
# Published MCP servers for the MCP tool tests (crates/clarion-tools/tests/mcp.rs and
# crates/clarion-cli/tests/mcp.rs): `mcp-server-time` from PyPI in a virtualenv and
# `@modelcontextprotocol/server-everything` from npm, both under the cache, installed once
# and again only when a pin changes. Prints the `export` lines the tests read on stdout,
# everything else on stderr. Fails loudly: CI must not skip these tests.
#
#     eval "$(bash scripts/mcp-servers.sh)"
#
# Environment: CLARION_CACHE (default ~/.cache/clarion), CLARION_MCP_TIME_VERSION and
# CLARION_MCP_EVERYTHING_VERSION (the pins).
set -euo pipefail

time_version="${CLARION_MCP_TIME_VERSION:-2026.10.19}"
everything_version="${CLARION_MCP_EVERYTHING_VERSION:-2026.8.31}"
cache="${CLARION_CACHE:-$HOME/.cache/clarion}"
venv="$cache/mcp-time-venv"
npm_dir="$cache/mcp-everything"

time_bin="$venv/bin/mcp-server-time"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp-server-time') != '$time_version')" 2>/dev/null; then
  echo "installing mcp-server-time==$time_version into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mcp-server-time==$time_version" >&2
fi
[[ -x $time_bin ]] || { echo "error: mcp-server-time did not install into $venv" >&2; exit 1; }

everything_js="$npm_dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
if ! grep -q "\"version\": \"$everything_version\"" "$npm_dir/node_modules/@modelcontextprotocol/server-everything/package.json" 2>/dev/null; then
  echo "installing @modelcontextprotocol/server-everything@$everything_version into $npm_dir" >&2
  mkdir -p "$npm_dir"
  npm install --silent --no-audit --no-fund --prefix "$npm_dir" "@modelcontextprotocol/server-everything@$everything_version" >&2
fi
[[ -f $everything_js ]] || { echo "error: server-everything did not install into $npm_dir" >&2; exit 1; }

echo "mcp-server-time $time_version at $time_bin; server-everything $everything_version at $everything_js" >&2
echo "export CLARION_TEST_MCP_TIME=$time_bin"
echo "export CLARION_TEST_MCP_EVERYTHING=$everything_js"
