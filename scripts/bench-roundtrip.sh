#!/usr/bin/env bash
# Client CPU per tool round-trip (issue 13, "Performance"): `clarion chat` piped N turns
# against a scripted Chat Completions server on loopback, beside a plain Python loop with the
# official `openai` SDK doing the same round trip against the same server in the same run.
# Each turn: the model calls `calculate_savings_timeline`, the tool runs, the model answers.
# First on a fresh thread per turn (`/reset` between turns), then in one long thread.
# The server runs in its own process; only the clients' CPU (user + system) is counted.
# Figures in docs/benchmarks.md.
#
#   scripts/bench-roundtrip.sh            # 200 fresh turns, a 300-turn thread
#   scripts/bench-roundtrip.sh 100 300    # N_FRESH N_LONG
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --locked -p clarion-cli
eval "$(bash scripts/sdk-venv.sh)"   # CLARION_SDK_PYTHON: a python with openai
export HISTORY_OUT="${TMPDIR:-/tmp}/clarion-bench-long-thread.json"
python3 scripts/bench_roundtrip.py main "$target/release/clarion" "${1:-200}" "${2:-300}"
# The part of a request the protocol forces (the body from the whole history), beside the
# engine's own whole-history passes, on the long thread just stored.
cargo run --release --quiet --locked -p clarion-providers --example bench_history -- "$HISTORY_OUT"
