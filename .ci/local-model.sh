#!/usr/bin/env bash
# CI hook for the end-to-end suite against a real local model (issue 5, items 6 and 7).
#
# Installs (or finds cached) llama.cpp's llama-server and the local model with
# scripts/local-model.sh, starts the server on loopback, and prints the variables the
# end-to-end tests read, as `export` lines on stdout. Everything else goes to stderr.
# Meant to be used from .ci/run as:
#
#     eval "$(bash .ci/local-model.sh)"
#
# It never fails the CI run: when the model cannot be had (install fails or exceeds the
# time budget, the server does not start, or it is disabled) it prints one
# "skipped: <why>" line on stderr, prints no exports, and exits 0; the suite then stays
# ignored because CLARION_E2E_BASE_URL is unset.
#
# Environment:
#   CLARION_LOCAL_MODEL_BUDGET   seconds allowed for install + start (default: 1200)
#   CLARION_LOCAL_MODEL_DISABLE  set to 1 to skip the local model entirely
#   (and everything scripts/local-model.sh reads: CLARION_CACHE, CLARION_LOCAL_MODEL_PORT, ...)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

budget="${CLARION_LOCAL_MODEL_BUDGET:-1200}"
script=scripts/local-model.sh

skip() {
  echo "skipped: end-to-end suite against the local model: $*" >&2
  exit 0
}

[[ ${CLARION_LOCAL_MODEL_DISABLE:-0} == 1 ]] && skip "disabled by CLARION_LOCAL_MODEL_DISABLE=1"
command -v python3 >/dev/null || skip "python3 (for pip) is not available"
command -v curl >/dev/null || skip "curl is not available"

start=$SECONDS
echo "== local model: install (budget ${budget} s)" >&2
# timeout signals the whole process group, so an unfinished build is stopped too; the
# build directory is kept in the cache and the next run resumes it.
timeout --kill-after=15 "$budget" bash "$script" install >&2
rc=$?
if ((rc == 124 || rc == 137)); then
  skip "install exceeded the ${budget} s budget (a later run resumes the cached build)"
elif ((rc != 0)); then
  skip "install failed (exit $rc; logs under \${CLARION_CACHE:-\$HOME/.cache/clarion}/local-model/)"
fi

remaining=$((budget - (SECONDS - start)))
((remaining < 30)) && remaining=30
echo "== local model: start" >&2
if ! base_url="$(CLARION_LOCAL_MODEL_START_TIMEOUT="$remaining" bash "$script" start)"; then
  skip "llama-server did not start (see the log above)"
fi
echo "== local model: ready at $base_url after $((SECONDS - start)) s" >&2

echo "export CLARION_E2E_BASE_URL=$base_url"
bash "$script" env | sed -n 's/^export OPENAI_MODEL=/export CLARION_E2E_MODEL=/p'
