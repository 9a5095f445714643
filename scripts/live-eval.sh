#!/usr/bin/env bash
# Live evaluation: plays the example flows' evaluation scenarios (flows/NAME/evals/*.toml)
# against a real model several times, under one or more tool-use policies, and reports how
# often each scenario passes. A sample passes when every expectation of the scenario holds
# (the evaluation scenarios expect `run_status = "completed"` on every turn).
#
#   scripts/live-eval.sh [--samples N] [--policies "flow auto required"] [--jobs N]
#                        [--out DIR] [SCENARIO…]
#
# The model: OPENAI_BASE_URL (and OPENAI_API_KEY, OPENAI_MODEL) when set; otherwise the
# local model of scripts/local-model.sh, installed and started if needed. A policy is the
# flows' own `tool_choice` ("flow"), or every flow's `[assistant] tool_choice` set to it, in
# a copy of flows/ under the output folder; the repository is never modified.
#
# Output: DIR/POLICY.json (`clarion eval`'s results: every sample), DIR/POLICY.html (its
# report), DIR/summary.md (pass rates per policy and per scenario, engine CPU per turn)
# printed at the end. Rerunnable: a new DIR each time (default:
# target/live-eval/<timestamp>). For one policy, `clarion eval` alone does the same.
set -euo pipefail
cd "$(dirname "$0")/.."

samples=3
policies="flow"
jobs=1
out="target/live-eval/$(date +%Y%m%d-%H%M%S)"
scenarios=()
while (($#)); do
  case $1 in
    --samples) samples=$2; shift 2 ;;
    --policies) policies=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    -*) echo "live-eval: unknown option $1" >&2; exit 2 ;;
    *) scenarios+=("$1"); shift ;;
  esac
done
if ((${#scenarios[@]} == 0)); then
  mapfile -t scenarios < <(ls flows/*/evals/*.toml)
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if [[ -z ${OPENAI_BASE_URL:-} && -z ${OPENAI_API_KEY:-} ]]; then
  bash scripts/local-model.sh install >&2
  bash scripts/local-model.sh start >/dev/null
  eval "$(bash scripts/local-model.sh env)"
fi
export OPENAI_BASE_URL OPENAI_MODEL="${OPENAI_MODEL:-}"

clarion="${CLARION_BIN:-}"
if [[ -z $clarion ]]; then
  cargo build --release --quiet --locked -p clarion-cli
  clarion="$PWD/target/release/clarion"
fi

echo "live-eval: ${#scenarios[@]} scenarios × $samples samples × policies: $policies → $out" >&2
for policy in $policies; do
  tree="$out/$policy"
  rm -rf "$tree" && mkdir -p "$tree"
  cp -r flows schemas "$tree/"
  if [[ $policy != flow ]]; then
    for flow in "$tree"/flows/*.toml; do
      python3 - "$flow" "$policy" <<'PY'
import re, sys
path, policy = sys.argv[1], sys.argv[2]
text = open(path).read()
if re.search(r'(?m)^tool_choice = ', text):
    text = re.sub(r'(?m)^tool_choice = .*$', f'tool_choice = "{policy}"', text, count=1)
else:
    text = re.sub(r'(?m)^\[assistant\]$', f'[assistant]\ntool_choice = "{policy}"', text, count=1)
open(path, 'w').write(text)
PY
    done
  fi
  # `clarion eval` plays the samples and judges them (docs/testing.md); its results file
  # per policy holds every sample, and Clarion's own CPU over the evaluation.
  started=$SECONDS
  "$clarion" eval --samples "$samples" --jobs "$jobs" \
    --out "$out/$policy.json" --report "$out/$policy.html" \
    "${scenarios[@]/#/$tree/}" >"$out/$policy.log" 2>&1 || true
  echo "live-eval: policy $policy done in $((SECONDS - started)) s" >&2
done

python3 - "$out" "$policies" <<'PY'
import json, sys
out, policies = sys.argv[1], sys.argv[2].split()
summary = ["| policy | samples passed | rate | 95% interval | engine CPU per user turn | time per user turn |",
           "| --- | --- | --- | --- | --- | --- |"]
per_scenario = {}
for policy in policies:
    try:
        results = json.load(open(f"{out}/{policy}.json"))
    except (OSError, ValueError):
        summary.append(f"| {policy} | no results (see {policy}.log) | | | | |")
        continue
    passed = sum(s["passed"] for s in results["scenarios"])
    total = sum(s["total"] for s in results["scenarios"])
    turns = sum(x["turns"] for s in results["scenarios"] for x in s["samples"])
    seconds = sum(x["seconds"] for s in results["scenarios"] for x in s["samples"])
    cpu = results.get("cpu_seconds")
    # The overall interval, as clarion eval computes it per scenario (Wilson, 95%).
    import math
    z = 1.959963984540054
    n, p = max(total, 1), passed / max(total, 1)
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    per_turn = f"{1000 * cpu / turns:.1f} ms" if cpu is not None and turns else "—"
    wall = f"{seconds / turns:.0f} s" if turns else "—"
    summary.append(f"| {policy} | {passed}/{total} | {100 * p:.0f}% | {100 * max(0, c - h):.0f}–{100 * min(1, c + h):.0f}% | {per_turn} | {wall} |")
    for s in results["scenarios"]:
        name = s["path"].split("/flows/", 1)[-1]
        per_scenario.setdefault(name, {})[policy] = f"{s['passed']}/{s['total']}" if s["total"] else "not evaluable"
summary += ["", "| scenario | " + " | ".join(policies) + " |",
            "| --- | " + " | ".join("---" for _ in policies) + " |"]
for name, by in sorted(per_scenario.items()):
    summary.append(f"| {name} | " + " | ".join(by.get(p, "—") for p in policies) + " |")
text = "\n".join(summary) + "\n"
open(f"{out}/summary.md", "w").write(text)
print(text)
PY
