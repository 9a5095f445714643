#!/usr/bin/env bash
# The official `openai` Python SDK in a virtualenv, for the `clarion serve` compatibility
# tests (crates/clarion-server/tests/sdk.rs). Creates the venv once under the cache and
# reinstalls only when the pinned version changes; prints `export CLARION_SDK_PYTHON=…`
# on stdout, everything else on stderr. Fails loudly: CI must not skip these tests.
#
#     eval "$(bash scripts/sdk-venv.sh)"
#
# Environment: CLARION_CACHE (default ~/.cache/clarion), CLARION_OPENAI_VERSION (the pin).
set -euo pipefail

version="${CLARION_OPENAI_VERSION:-3.57.0}"
venv="${CLARION_CACHE:-$HOME/.cache/clarion}/sdk-venv"
python="$venv/bin/python"

installed() {
  "$python" -c "import openai, sys; sys.exit(openai.__version__ != '$version')" 2>/dev/null
}

if ! installed; then
  echo "installing openai==$version into $venv" >&2
  python3 -m venv "$venv" >&2
  "$python" -m pip install --quiet --disable-pip-version-check "openai==$version" >&2
  installed || { echo "error: openai==$version did not install into $venv" >&2; exit 1; }
fi
echo "openai $version at $python" >&2
echo "export CLARION_SDK_PYTHON=$python"
