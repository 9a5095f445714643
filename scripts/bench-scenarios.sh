#!/usr/bin/env bash
# Generates N scenarios of 10 turns each for flows/personal-finance.toml in a temporary
# folder and times `clarion test` on them with hyperfine (docs/benchmarks.md, "Scenarios").
#
#   scripts/bench-scenarios.sh [N=100] [CLARION=target/release/clarion]
#   COVERAGE=1 [RUNS=60] scripts/bench-scenarios.sh   # --coverage (and an LCOV file)
#                                   # against the plain run, alternating, medians
#
# The first run writes the snapshots (--accept); the timed runs compare against them, as
# CI does.
set -euo pipefail

n="${1:-100}"
clarion="$(realpath "${2:-target/release/clarion}")"
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

mkdir -p "$dir/flows/pf/scenarios"
cp "$root/flows/personal-finance.toml" "$dir/flows/pf.toml"

for i in $(seq 1 "$n"); do
  goal=$((10000 + i * 100))
  income=$((3000 + i * 10))
  cat > "$dir/flows/pf/scenarios/s$(printf %03d "$i").toml" <<TOML
[scenario]
name = "Benchmark conversation $i"

[mocks.calculate_savings_timeline]
result = { months = $((20 + i % 7)), years = 1.9, attainable = true }

[mocks.analyze_budget]
result = { recommended_savings = $((600 + i)), overspending = false }

[mocks.project_investment_growth]
result = { future_value = $((50000 + i)), annual_rate_percent = 6.0 }

[mocks.calculate_loan_payment]
result = { monthly_payment = 1200.5, total_interest = 90000.0 }

[[turns]]
user = "How long to save \$$goal?"
[[turns.model]]
call = "calculate_savings_timeline"
args = { goal_amount = $goal }
[turns.expect]
question_asked = ["monthly_income", "monthly_savings"]

[[turns]]
user = "I earn $income and save 500."
[[turns.model]]
call = "calculate_savings_timeline"
args = { monthly_income = $income, monthly_savings = 500 }
[[turns.model]]
text = "About two years."
[turns.expect]
tool_called = { tool = "calculate_savings_timeline", args = { goal_amount = $goal } }

[[turns]]
user = "Is my budget OK? I spend 2500."
[[turns.model]]
call = "analyze_budget"
args = { monthly_expenses = 2500 }
[[turns.model]]
text = "Yes."

[[turns]]
user = "And for \$20,000?"
[[turns.model]]
call = "calculate_savings_timeline"
args = { goal_amount = 20000 }
[[turns.model]]
text = "A bit longer."

[[turns]]
user = "Check my budget again and project 300 a month for 10 years at low risk."
[[turns.model]]
calls = [
  { tool = "analyze_budget", args = { monthly_income = $income, monthly_expenses = 2400 } },
  { tool = "project_investment_growth", args = { monthly_contribution = 300, years = 10, risk_tolerance = "low" } },
]
[[turns.model]]
text = "Here you go."

[[turns]]
user = "What about a \$250,000 mortgage?"
[[turns.model]]
call = "calculate_loan_payment"
args = { principal = 250000 }
[turns.expect]
question_asked = ["annual_rate_percent", "years"]

[[turns]]
user = "5% over 25 years."
[[turns.model]]
call = "calculate_loan_payment"
args = { annual_rate_percent = 5, years = 25 }
[[turns.model]]
text = "About \$1,200 a month."

[[turns]]
user = "Recalculate my savings plan."
[[turns.model]]
call = "calculate_savings_timeline"
args = { goal_amount = $goal }
error = { message = "temporarily unavailable" }
[[turns.model]]
text = "Sorry, please try again."
[turns.expect]
context_injected = "temporarily unavailable"

[[turns]]
user = "Project 500 a month for 30 years."
[[turns.model]]
call = "project_investment_growth"
args = { monthly_contribution = 500, years = 30 }
[[turns.model]]
text = "Quite a lot."

[[turns]]
user = "Thanks!"
[[turns.model]]
text = "You're welcome."
[turns.expect]
run_status = "completed"
TOML
done

cd "$dir"
"$clarion" test --accept flows > /dev/null
"$clarion" test flows | tail -1
[ -n "${KEEP:-}" ] && cp -r "$dir" "$KEEP"
if [ -n "${COVERAGE:-}" ]; then
  # Coverage against the plain run as its baseline, in the same session: the two commands
  # alternate, run after run, so the machine's other work weighs on both alike. Medians of
  # wall-clock and of CPU time (user + system), which the machine's load disturbs less.
  runs="${RUNS:-60}"
  plain=("$clarion" test flows)
  covered=("$clarion" test --coverage-format lcov --coverage-output "$dir/lcov.info" flows)
  for _ in 1 2 3; do "${plain[@]}" >/dev/null; "${covered[@]}" >/dev/null; done
  TIMEFORMAT='%R %U %S'
  for _ in $(seq 1 "$runs"); do
    { time "${plain[@]}" >/dev/null 2>&1; } 2>>"$dir/plain.times"
    { time "${covered[@]}" >/dev/null 2>&1; } 2>>"$dir/covered.times"
  done
  median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  report() {
    local wall cpu
    wall=$(awk '{ print $1 * 1000 }' "$1" | median)
    cpu=$(awk '{ print ($2 + $3) * 1000 }' "$1" | median)
    echo "$wall $cpu"
  }
  read -r pw pc < <(report "$dir/plain.times")
  read -r cw cc < <(report "$dir/covered.times")
  echo "$runs runs each, alternating; medians"
  printf '  %-26s wall %6.1f ms   cpu %6.1f ms\n' "clarion test" "$pw" "$pc"
  printf '  %-26s wall %6.1f ms   cpu %6.1f ms\n' "clarion test --coverage" "$cw" "$cc"
  awk -v pw="$pw" -v pc="$pc" -v cw="$cw" -v cc="$cc" \
    'BEGIN { printf "  coverage adds: wall %+.1f%%, cpu %+.1f%%\n", (cw / pw - 1) * 100, (cc / pc - 1) * 100 }'
else
  hyperfine --warmup 3 --runs 20 "$clarion test flows"
fi
