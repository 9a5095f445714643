#!/usr/bin/env bash
# Start-up of the `clarion` binary (issue 8: `--help` and `validate` on one flow under
# 20 ms) with hyperfine, beside `cat` of the same flow as a baseline, and the size of the
# release binary. Figures in docs/benchmarks.md.
#
#   scripts/bench-cli.sh     # needs hyperfine (apt-get install hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --locked -p clarion-cli
clarion="$target/release/clarion"
flow=flows/personal-finance.toml
if ! command -v hyperfine >/dev/null; then
    echo "hyperfine is not installed (apt-get install hyperfine)" >&2
    exit 1
fi
hyperfine --shell=none --warmup 5 --runs 100 \
    --command-name "baseline: cat $flow" "cat $flow" \
    --command-name "clarion --version" "$clarion --version" \
    --command-name "clarion --help" "$clarion --help" \
    --command-name "clarion validate $flow" "$clarion validate $flow"
size=$(stat -c %s "$clarion")
echo "release binary: $size bytes ($((size / 1024 / 1024)) MiB), stripped, thin LTO"
