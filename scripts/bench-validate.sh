#!/usr/bin/env bash
# `clarion validate` over N generated flows (default 100), end to end, with hyperfine and two
# baselines in the same run: the CLI doing nothing (`--version`) and `cat` of the same
# files. The flows are variations on personal-finance.toml (crates/clarion-flow/examples/
# bench_load.rs writes them); docs/benchmarks.md has the figures.
#
#   scripts/bench-validate.sh [N]     # needs hyperfine (apt-get install hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-100}"
target="${CARGO_TARGET_DIR:-target}"

cargo build --release --quiet -p clarion-cli
cargo build --release --quiet -p clarion-flow --example bench_load
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$target/release/examples/bench_load" --write "$dir" "$count"
clarion="$target/release/clarion"
# Every generated flow is clean: the timing is of the success path, not of error output.
"$clarion" validate "$dir" --deny-warnings
if ! command -v hyperfine >/dev/null; then
    echo "hyperfine is not installed (apt-get install hyperfine)" >&2
    exit 1
fi
files="$(printf '%s ' "$dir"/*.toml)"
hyperfine --shell=none --warmup 5 --runs 50 \
    --command-name "baseline: clarion --version" "$clarion --version" \
    --command-name "baseline: cat of the $count files" "cat $files" \
    --command-name "clarion validate DIR ($count flows)" "$clarion validate $dir"
