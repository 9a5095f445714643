//! `clarion test --coverage` end to end: the example flows' summary pinned, a flow element
//! without a scenario lowering coverage below `--min-coverage` (exit 1), and the LCOV file
//! read by the real `lcov` and `genhtml` (Debian's lcov; .ci/run installs it, and under
//! `CI` a missing one fails rather than skips).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `clarion` in `dir` with `CI` set, so no snapshot is ever written.
fn clarion_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(args)
        .current_dir(dir)
        .env("CI", "true")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("INSTA_UPDATE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The coverage summary: from the first `coverage of` line up to the result line.
fn summary(output: &Output) -> String {
    let text = stdout(output);
    let mut summary = String::new();
    for line in text
        .lines()
        .skip_while(|line| !line.starts_with("coverage of "))
        .take_while(|line| !line.contains(" passed, "))
    {
        summary.push_str(line);
        summary.push('\n');
    }
    summary
}

#[test]
fn the_example_flows_coverage_summary_is_pinned() {
    let output = clarion_in(&workspace(), &["test", "--coverage", "-j", "2"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    insta::assert_snapshot!("example_flows", summary(&output));
}

const FLOW: &str = r#"[flow]
name = "savings"

[assistant]
model = "m"
instructions = "Help people save.{% if slots.goal %} Their goal: ${{ slots.goal }}.{% endif %}"

[slots.goal]
type = "number"

[tools.timeline]
description = "Months to a savings goal."
builtin = "finance.savings_timeline"

[tools.timeline.params.goal_amount]
type = "number"
slot = "goal"

[tools.timeline.params.monthly_income]
type = "number"

[tools.timeline.params.monthly_savings]
type = "number"

[[tools.timeline.after]]
inject = "{{ result.months }} months."
"#;

/// Added to `FLOW`: a tool no scenario calls, with a question no scenario asks.
const UNTESTED_TOOL: &str = r#"
[tools.loan]
description = "Monthly payment of a loan."
builtin = "finance.loan_payment"

[tools.loan.params.principal]
type = "number"
ask = "How much would you borrow?"

[tools.loan.params.annual_rate_percent]
type = "number"

[tools.loan.params.years]
type = "integer"
"#;

const SCENARIO: &str = r#"[[turns]]
user = "How long to save $10,000 at $500 a month? I earn $3,000."

[[turns.model]]
call = "timeline"
args = { goal_amount = 10000, monthly_income = 3000, monthly_savings = 500 }

[[turns.model]]
text = "About 20 months."
"#;

/// A project with `FLOW` and one scenario whose snapshot is accepted.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let scenarios = dir.path().join("flows/savings/scenarios");
    std::fs::create_dir_all(&scenarios).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("flows/savings.toml"), FLOW).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(scenarios.join("plan.toml"), SCENARIO).unwrap_or_else(|e| panic!("{e}"));
    let accepted = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(["test", "--accept"])
        .current_dir(dir.path())
        .env_remove("CI")
        .env_remove("TF_BUILD")
        .env_remove("INSTA_UPDATE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
    assert_eq!(accepted.status.code(), Some(0), "{}", stdout(&accepted));
    dir
}

#[test]
fn an_element_without_a_scenario_lowers_coverage_and_fails_min_coverage() {
    let dir = project();
    let full = clarion_in(
        dir.path(),
        &["test", "--min-coverage", "100", "--coverage-format", "json"],
    );
    assert_eq!(full.status.code(), Some(0), "{}", stdout(&full));
    assert_eq!(
        summary(&full),
        "coverage of flows/savings.toml (savings): 100.0% (4 of 4 elements)\n\
         note: coverage written to coverage.json\n"
    );
    let json = std::fs::read_to_string(dir.path().join("coverage.json"))
        .unwrap_or_else(|e| panic!("no coverage.json: {e}"));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (json["covered"].as_u64(), json["total"].as_u64()),
        (Some(4), Some(4))
    );
    let kinds: Vec<&str> = json["flows"][0]["elements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["slot_set", "slot_read", "tool", "after"]);

    let flow = dir.path().join("flows/savings.toml");
    std::fs::write(&flow, format!("{FLOW}{UNTESTED_TOOL}")).unwrap_or_else(|e| panic!("{e}"));
    let lowered = clarion_in(dir.path(), &["test", "--min-coverage", "100"]);
    let out = stdout(&lowered);
    assert_eq!(lowered.status.code(), Some(1), "{out}");
    assert!(
        out.ends_with("1 passed, 0 failed\n"),
        "the scenario itself passes: {out}"
    );
    let tool_line = FLOW.lines().count() + 2;
    assert_eq!(
        summary(&lowered),
        format!(
            "coverage of flows/savings.toml (savings): 66.7% (4 of 6 elements)\n\
             \x20 flows/savings.toml:{tool_line}  tool `loan` was never called\n\
             \x20 flows/savings.toml:{}  `loan.principal` was never asked for\n\
             error: coverage of flows/savings.toml is 66.7%, below --min-coverage 100\n",
            tool_line + 6
        )
    );
    let enough = clarion_in(dir.path(), &["test", "--min-coverage", "66.6"]);
    assert_eq!(enough.status.code(), Some(0), "{}", stdout(&enough));
}

#[test]
fn coverage_flags_are_checked() {
    for args in [
        &["test", "--min-coverage", "101"][..],
        &["test", "--min-coverage", "most"],
        &["test", "--coverage-output", "x.info"],
        &["test", "--coverage-format", "html"],
    ] {
        let output = clarion_in(&workspace(), args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stdout(&output)
        );
    }
}

/// `lcov` or `genhtml` on the `PATH`, or `None` after saying why the check is skipped
/// (which fails under `CI`, where .ci/run installs them).
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let why = format!("`{name}` is not installed (Debian: apt-get install lcov)");
        assert!(
            !clarion_testing::is_ci(),
            "{why}; CI installs it in .ci/run"
        );
        #[allow(clippy::print_stderr)] // the suite's convention for a skipped check
        {
            eprintln!("skipped: {why}");
        }
    }
    found
}

#[test]
fn the_lcov_file_is_read_by_lcov_and_genhtml() {
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let info = out.path().join("lcov.info");
    let info_arg = info.display().to_string();
    let output = clarion_in(
        &workspace(),
        &[
            "test",
            "-j",
            "2",
            "--coverage-format",
            "lcov",
            "--coverage-output",
            &info_arg,
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let text = std::fs::read_to_string(&info).unwrap_or_else(|e| panic!("{e}"));
    // Our own totals, to compare with what lcov reads.
    let sum = |prefix: &str| -> usize {
        text.lines()
            .filter_map(|line| line.strip_prefix(prefix)?.parse::<usize>().ok())
            .sum()
    };
    let (lines, hit, branches, taken) = (sum("LF:"), sum("LH:"), sum("BRF:"), sum("BRH:"));
    assert!(lines > 0 && branches > 0, "{text}");
    assert_eq!(
        text.matches("end_of_record").count(),
        6,
        "one record per example flow: {text}"
    );

    let Some(lcov) = tool("lcov") else {
        return;
    };
    let summary = Command::new(lcov)
        .args(["--rc", "lcov_branch_coverage=1", "--summary", &info_arg])
        .output()
        .unwrap_or_else(|e| panic!("cannot run lcov: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&summary.stdout),
        String::from_utf8_lossy(&summary.stderr)
    );
    assert!(summary.status.success(), "lcov --summary failed:\n{said}");
    assert!(
        said.contains(&format!("({hit} of {lines} lines)")),
        "lcov read other line totals than clarion wrote ({hit} of {lines}):\n{said}"
    );
    assert!(
        said.contains(&format!("({taken} of {branches} branches)")),
        "lcov read other branch totals than clarion wrote ({taken} of {branches}):\n{said}"
    );

    let Some(genhtml) = tool("genhtml") else {
        return;
    };
    let html = out.path().join("html");
    let report = Command::new(genhtml)
        .args(["--branch-coverage", "--quiet", "--output-directory"])
        .arg(&html)
        .arg(&info)
        .current_dir(workspace())
        .output()
        .unwrap_or_else(|e| panic!("cannot run genhtml: {e}"));
    assert!(
        report.status.success(),
        "genhtml failed:\n{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let page = std::fs::read_to_string(html.join("flows/personal-finance.toml.gcov.html"))
        .unwrap_or_else(|e| panic!("genhtml wrote no page for the flow: {e}"));
    assert!(
        page.contains("calculate_loan_payment"),
        "the page shows the TOML source"
    );
}
