#!/usr/bin/env bash
# `clarion serve` on a long thread (issue 13: a request's cost must not depend on the thread's
# length): `GET …/messages?limit=20` and `POST …/messages` on a 100,000-message thread beside
# the same requests on a 10-message thread, interleaved, in one run. The server has no
# reachable model (none is needed: no run is started). Figures in docs/benchmarks.md.
#
#   scripts/bench-serve.sh              # 100,000 messages, 200 requests of each kind
#   scripts/bench-serve.sh 25000 500    # LONG REQUESTS
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --locked -p clarion-cli
exec python3 scripts/bench_serve.py "$target/release/clarion" "${1:-100000}" "${2:-200}"
