#!/usr/bin/env bash
# Runs Clarion's benchmarks; docs/benchmarks.md has the figures and what each one measures.
# One benchmark per line, from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run --release -p clarion-engine --example bench_engine
cargo run --release -p clarion-flow --example bench_load
scripts/bench-validate.sh 100
