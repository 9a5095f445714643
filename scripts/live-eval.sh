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
# Output: DIR/results.jsonl (one line per scenario sample), DIR/summary.md (pass rates
# per policy and per scenario, engine CPU per turn) printed at the end. Rerunnable: a new
# DIR each time (default: target/live-eval/<timestamp>).
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
  for ((i = 1; i <= samples; i++)); do
    report="$out/$policy-$i"
    started=$SECONDS
    # user+system CPU of the clarion process: the engine's share of a live turn.
    /usr/bin/time -f '%U %S' -o "$report.cpu" \
      "$clarion" test --live --jobs "$jobs" --junit "$report.xml" \
      "${scenarios[@]/#/$tree/}" >"$report.log" 2>&1 || true
    echo "live-eval: $policy sample $i done in $((SECONDS - started)) s" >&2
  done
done

python3 - "$out" "$samples" "$policies" <<'PY'
import json, math, re, sys, xml.etree.ElementTree as ET
out, samples, policies = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()

def wilson(k, n, z=1.96):
    """The 95% Wilson score interval of k successes in n."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))

def turns(path):
    try:
        return max(1, len(re.findall(r'(?m)^\[\[turns\]\]', open(path).read())))
    except OSError:
        return 1

rows, per_scenario = [], {}
summary = ["| policy | samples passed | rate | 95% interval | engine CPU per user turn | time per user turn |",
           "| --- | --- | --- | --- | --- | --- |"]
for policy in policies:
    passed = total = user_turns = 0
    cpu = seconds = 0.0
    for i in range(1, samples + 1):
        base = f"{out}/{policy}-{i}"
        try:
            suites = ET.parse(base + ".xml").getroot()
        except (OSError, ET.ParseError):
            continue
        try:
            user, system = open(base + ".cpu").read().split()[-2:]
            cpu += float(user) + float(system)
        except (OSError, ValueError):
            pass
        for case in suites.iter("testcase"):
            name = f"{case.get('classname')}/{case.get('name')}"
            failure = case.find("failure")
            ok = failure is None
            passed += ok
            total += 1
            user_turns += turns(case.get("file"))
            seconds += float(case.get("time") or 0)
            message = None if ok else (failure.get("message") or "")[:300]
            rows.append({"policy": policy, "sample": i, "scenario": name, "passed": ok,
                         "seconds": float(case.get("time") or 0), "failure": message})
            per_scenario.setdefault(name, {}).setdefault(policy, []).append(ok)
    lo, hi = wilson(passed, total)
    per_turn = f"{1000 * cpu / user_turns:.1f} ms" if user_turns else "—"
    wall = f"{seconds / user_turns:.0f} s" if user_turns else "—"
    summary.append(f"| {policy} | {passed}/{total} | {100 * passed / max(total, 1):.0f}% "
                   f"| {100 * lo:.0f}–{100 * hi:.0f}% | {per_turn} | {wall} |")
summary += ["", "| scenario | " + " | ".join(policies) + " |",
            "| --- | " + " | ".join("---" for _ in policies) + " |"]
for name, by in sorted(per_scenario.items()):
    cells = [f"{sum(by.get(p, []))}/{len(by.get(p, []))}" for p in policies]
    summary.append(f"| {name} | " + " | ".join(cells) + " |")
with open(f"{out}/results.jsonl", "w") as f:
    for row in rows:
        f.write(json.dumps(row) + "\n")
text = "\n".join(summary) + "\n"
open(f"{out}/summary.md", "w").write(text)
print(text)
PY
