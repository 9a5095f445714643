#!/usr/bin/env bash
# schemathesis (from PyPI) in a virtualenv, for the `clarion serve` API fuzz run
# (crates/clarion-server/tests/fuzz.rs). Creates the venv once under the cache and
# reinstalls only when the pinned version changes; prints `export CLARION_SCHEMATHESIS=…`
# on stdout, everything else on stderr. Fails loudly: CI must not skip the fuzz run.
#
#     eval "$(bash scripts/fuzz-venv.sh)"
#
# Environment: CLARION_CACHE (default ~/.cache/clarion), CLARION_SCHEMATHESIS_VERSION.
set -euo pipefail

version="${CLARION_SCHEMATHESIS_VERSION:-4.32.5}"
venv="${CLARION_CACHE:-$HOME/.cache/clarion}/fuzz-venv"
bin="$venv/bin/schemathesis"

installed() {
  [[ -x $bin ]] && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$version')" 2>/dev/null
}

if ! installed; then
  echo "installing schemathesis==$version into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$version" >&2
  installed || { echo "error: schemathesis==$version did not install into $venv" >&2; exit 1; }
fi
echo "schemathesis $version at $bin" >&2
echo "export CLARION_SCHEMATHESIS=$bin"
