//! `clarion test` end to end: real processes, real files, the exit codes and files CI
//! relies on.

mod support;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `clarion` in `dir`, with CI unset unless `env` sets it.
fn clarion_in(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clarion"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("CI")
        .env_remove("TF_BUILD")
        .env_remove("INSTA_UPDATE")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("NO_COLOR");
    for (key, value) in env {
        command.env(key, value);
    }
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        use std::io::Write as _;
        input
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn last_line(output: &Output) -> String {
    stdout(output).lines().last().unwrap_or_default().to_owned()
}

const SCENARIO: &str = r#"[mocks.calculate_savings_timeline]
result = { months = 20, years = 1.7, attainable = true }

[[turns]]
user = "How long to save $10,000 at $500 a month? I earn $3,000."

[[turns.model]]
call = "calculate_savings_timeline"
args = { goal_amount = 10000, monthly_income = 3000, monthly_savings = 500 }

[[turns.model]]
text = "About 20 months."

[turns.expect]
context_injected = "1.7-year timeline"
"#;

/// A project with the personal-finance flow and one scenario, `plan.toml`.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(flows.join("pf/scenarios")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        workspace().join("flows/personal-finance.toml"),
        flows.join("pf.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    write(&dir, "flows/pf/scenarios/plan.toml", SCENARIO);
    dir
}

fn write(dir: &tempfile::TempDir, path: &str, text: &str) {
    std::fs::write(dir.path().join(path), text).unwrap_or_else(|e| panic!("{e}"));
}

fn snapshot(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("flows/pf/scenarios/snapshots/plan.snap")
}

fn pending(dir: &tempfile::TempDir) -> PathBuf {
    dir.path()
        .join("flows/pf/scenarios/snapshots/plan.snap.new")
}

#[test]
fn the_example_scenarios_pass_and_the_summary_is_the_last_line() {
    let output = clarion_in(&workspace(), &["test", "-j", "2"], &[("CI", "true")], None);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let last = last_line(&output);
    let (passed, failed) = last
        .split_once(" passed, ")
        .unwrap_or_else(|| panic!("no summary line: {last}"));
    assert!(passed.parse::<usize>().is_ok_and(|n| n >= 16), "{last}");
    assert_eq!(failed, "0 failed");
}

#[test]
fn filter_plays_only_the_scenarios_whose_path_contains_a_name() {
    let output = clarion_in(
        &workspace(),
        &[
            "test",
            "--filter",
            "repeated_call",
            "-k",
            "missing_parameter",
        ],
        &[("CI", "true")],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(
        last_line(&output),
        "2 passed, 0 failed",
        "{}",
        stdout(&output)
    );
    let out = stdout(&output);
    assert!(
        out.contains("repeated_call") && out.contains("missing_parameter"),
        "{out}"
    );
}

#[test]
fn a_new_scenario_fails_and_writes_a_pending_snapshot_then_accept_makes_it_pass() {
    let dir = project();
    let output = clarion_in(dir.path(), &["test"], &[], None);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(
        text.contains("NEW      flows/pf/scenarios/plan.toml"),
        "{text}"
    );
    assert!(text.contains("+assistant: About 20 months."), "{text}");
    // `cargo insta review` cannot find snapshots outside a Cargo package: not recommended.
    assert!(
        text.contains(
            "written to flows/pf/scenarios/snapshots/plan.snap.new; review it with `clarion test --review`\n"
        ),
        "{text}"
    );
    assert!(!text.contains("cargo insta"), "{text}");
    assert_eq!(last_line(&output), "0 passed, 1 failed");
    assert!(pending(&dir).is_file(), "a .snap.new is written");
    assert!(!snapshot(&dir).exists());

    let output = clarion_in(dir.path(), &["test", "--accept"], &[], None);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(last_line(&output), "1 passed, 0 failed");
    let written = std::fs::read_to_string(snapshot(&dir)).unwrap_or_default();
    assert!(
        written.starts_with("---\nsource: ")
            && written.contains("\n---\nuser: How long to save $10,000"),
        "insta's format: {written}"
    );
    assert!(
        !pending(&dir).exists(),
        "accepting removes the pending file"
    );

    let output = clarion_in(dir.path(), &["test"], &[], None);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}

#[test]
fn with_ci_set_nothing_is_ever_written() {
    let dir = project();
    for args in [&["test"][..], &["test", "--accept"], &["test", "--review"]] {
        let output = clarion_in(dir.path(), args, &[("CI", "true")], Some("a\n"));
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stdout(&output)
        );
        assert!(
            !pending(&dir).exists() && !snapshot(&dir).exists(),
            "{args:?} wrote a snapshot"
        );
    }
}

#[test]
fn a_changed_transcript_shows_a_unified_diff_and_fails() {
    let dir = project();
    let output = clarion_in(dir.path(), &["test", "--accept"], &[], None);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    write(
        &dir,
        "flows/pf/scenarios/plan.toml",
        &SCENARIO.replace("About 20 months.", "Twenty months."),
    );
    let output = clarion_in(dir.path(), &["test"], &[], None);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("CHANGED  flows/pf/scenarios/plan.toml"),
        "{text}"
    );
    assert!(
        text.contains("-assistant: About 20 months.\n+assistant: Twenty months."),
        "{text}"
    );
    assert!(
        !text.contains("\u{1b}["),
        "no colour when stdout is not a terminal"
    );
    assert!(pending(&dir).is_file());
}

#[test]
fn review_accepts_rejects_or_skips_each_snapshot() {
    let dir = project();
    let output = clarion_in(dir.path(), &["test", "--review"], &[], Some("r\n"));
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("accept (a), reject (r) or skip (s)?"));
    assert!(
        !pending(&dir).exists() && !snapshot(&dir).exists(),
        "rejected"
    );

    let output = clarion_in(dir.path(), &["test", "--review"], &[], Some("s\n"));
    assert_eq!(output.status.code(), Some(1));
    assert!(pending(&dir).is_file(), "skipped: left for later");

    let output = clarion_in(dir.path(), &["test", "--review"], &[], Some("a\n"));
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(
        snapshot(&dir).is_file() && !pending(&dir).exists(),
        "accepted"
    );
}

#[test]
fn junit_reports_every_scenario_and_the_filter_selects_by_name() {
    let dir = project();
    write(
        &dir,
        "flows/pf/scenarios/other.toml",
        &SCENARIO.replace("1.7-year", "9.9-year"),
    );
    let output = clarion_in(
        dir.path(),
        &["test", "--junit", "report.xml"],
        &[("CI", "1")],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(last_line(&output), "0 passed, 2 failed");
    let xml = std::fs::read_to_string(dir.path().join("report.xml")).unwrap_or_default();
    assert!(
        xml.contains("<testsuite name=\"pf\" tests=\"2\" failures=\"2\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"`context_injected` expectation failed:"),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"no snapshot yet\">"),
        "{xml}"
    );

    let output = clarion_in(dir.path(), &["test", "-k", "plan"], &[("CI", "1")], None);
    assert_eq!(last_line(&output), "0 passed, 1 failed");
    let output = clarion_in(dir.path(), &["test", "-k", "nothing"], &[], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no scenario matches `-k nothing`"));
}

#[test]
fn a_bad_scenario_is_a_located_error() {
    let dir = project();
    write(
        &dir,
        "flows/pf/scenarios/plan.toml",
        &SCENARIO.replace(
            "call = \"calculate_savings_timeline\"",
            "call = \"calculate_savings\"",
        ),
    );
    let output = clarion_in(dir.path(), &["test"], &[], None);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("ERROR    flows/pf/scenarios/plan.toml"),
        "{text}"
    );
    assert!(
        text.contains("error[S003]: flow `personal-finance` has no tool `calculate_savings`"),
        "{text}"
    );
    assert!(text.contains("flows/pf/scenarios/plan.toml:8:8"), "{text}");
    assert!(
        text.contains("help: did you mean `calculate_savings_timeline`?"),
        "{text}"
    );
}

#[test]
fn no_scenarios_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = clarion_in(dir.path(), &["test", "."], &[], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no scenario files found in ."));
}

#[test]
fn schema_scenario_prints_the_checked_in_schema() {
    let output = clarion_in(&workspace(), &["schema", "--scenario"], &[], None);
    assert_eq!(output.status.code(), Some(0));
    let checked_in = std::fs::read_to_string(workspace().join("schemas/scenario.schema.json"))
        .unwrap_or_default();
    assert_eq!(stdout(&output), checked_in);
}

#[test]
fn unmocked_builtins_run_for_real_but_http_tools_need_a_mock() {
    let dir = project();
    write(
        &dir,
        "flows/pf/scenarios/plan.toml",
        &SCENARIO.replace(
            "[mocks.calculate_savings_timeline]\nresult = { months = 20, years = 1.7, attainable = true }\n",
            "",
        ),
    );
    let output = clarion_in(dir.path(), &["test"], &[("CI", "true")], None);
    let text = stdout(&output);
    assert!(
        text.contains("NEW      flows/pf/scenarios/plan.toml"),
        "{text}"
    );
    assert!(
        text.contains("+  ← ok {\"months\": 20"),
        "the built-in ran: {text}"
    );

    std::fs::create_dir_all(dir.path().join("flows/tb/scenarios"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        workspace().join("flows/travel-booking.toml"),
        dir.path().join("flows/tb.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    write(
        &dir,
        "flows/tb/scenarios/search.toml",
        "[[turns]]\nuser = \"LIS to JFK on 2025-07-01, one adult\"\n[[turns.model]]\ncall = \"search_flights\"\nargs = { origin = \"LIS\", destination = \"JFK\", departure_date = \"2025-07-01\", adults = 1 }\n[[turns.model]]\ntext = \"Here.\"\n",
    );
    let output = clarion_in(
        dir.path(),
        &["test", "-k", "search"],
        &[("CI", "true")],
        None,
    );
    let text = stdout(&output);
    assert!(
        text.contains(
            "error[S012]: `search_flights` is called but has no mock: HTTP tools (and MCP servers reached by URL) always need one"
        ),
        "{text}"
    );
}

#[test]
fn replay_needs_a_recording_and_record_needs_live() {
    let dir = project();
    let output = clarion_in(dir.path(), &["test", "--replay"], &[], None);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("error[S016]: cannot use the model: cannot read the recording"),
        "{text}"
    );
    assert!(!pending(&dir).exists(), "replayed runs write no snapshot");

    let output = clarion_in(dir.path(), &["test", "--record"], &[], None);
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap refuses --record without --live"
    );
}

/// A loopback model that plays [`SCENARIO`]'s model side: the call, then the answer.
struct PlanModel;

impl wiremock::Respond for PlanModel {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: serde_json::Value =
            serde_json::from_slice(&request.body).unwrap_or(serde_json::Value::Null);
        let answered = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .is_some_and(|m| m["role"] != "user");
        let message = if answered {
            serde_json::json!({ "role": "assistant", "content": "About 20 months." })
        } else {
            serde_json::json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function",
                "function": { "name": "calculate_savings_timeline",
                    "arguments": "{\"goal_amount\": 10000, \"monthly_income\": 3000, \"monthly_savings\": 500}" } }] })
        };
        support::reply(&body, &message)
    }
}

/// A model server on loopback for the life of the returned runtime.
fn model_server() -> (tokio::runtime::Runtime, wiremock::MockServer) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let server = runtime.block_on(async {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(PlanModel)
            .mount(&server)
            .await;
        server
    });
    (runtime, server)
}

#[test]
fn live_record_and_replay_run_through_the_binary() {
    let dir = project();
    let (_runtime, server) = model_server();
    let base_url = format!("{}/v1", server.uri());
    let env = [
        ("OPENAI_BASE_URL", base_url.as_str()),
        ("OPENAI_API_KEY", "sk-test-secret-key-1234"),
    ];

    let output = clarion_in(dir.path(), &["test", "--live", "--jobs", "1"], &env, None);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(last_line(&output), "1 passed, 0 failed");
    assert!(!pending(&dir).exists(), "live runs write no snapshot");

    let recording = dir.path().join("flows/pf/scenarios/recordings/plan.jsonl");
    let output = clarion_in(dir.path(), &["test", "--live", "--record"], &env, None);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let recorded = std::fs::read_to_string(&recording).unwrap_or_default();
    assert!(
        recorded.contains("calculate_savings_timeline"),
        "{recorded}"
    );
    assert!(
        !recorded.contains("sk-test-secret"),
        "no secret in a recording"
    );

    // Replay needs no server at all.
    drop(server);
    let output = clarion_in(
        dir.path(),
        &["test", "--replay"],
        &[("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")],
        None,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(last_line(&output), "1 passed, 0 failed");
}

#[test]
fn a_live_run_against_an_unreachable_model_is_a_located_failure_not_a_panic() {
    let dir = project();
    let output = clarion_in(
        dir.path(),
        &["test", "--live"],
        &[
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("OPENAI_API_KEY", "k"),
        ],
        None,
    );
    let text = stdout(&output);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}{errors}");
    assert!(!errors.contains("panicked"), "{errors}");
    assert!(
        text.contains("connection refused") || text.contains("Connection refused"),
        "{text}"
    );
}

#[test]
fn an_unmocked_command_tool_runs_for_real_in_a_scenario() {
    let dir = project();
    write(
        &dir,
        "flows/echo.toml",
        "[flow]\nname = \"echo\"\n[assistant]\nmodel = \"m\"\ninstructions = \"i\"\n[tools.echo]\ndescription = \"Echoes.\"\n[tools.echo.command]\nargv = [\"cat\"]\nenv = [\"PATH\"]\n[tools.echo.params.word]\ntype = \"string\"\ndescription = \"A word.\"\n",
    );
    std::fs::create_dir_all(dir.path().join("flows/echo/scenarios"))
        .unwrap_or_else(|e| panic!("{e}"));
    write(
        &dir,
        "flows/echo/scenarios/echo.toml",
        "[[turns]]\nuser = \"echo hi\"\n[[turns.model]]\ncall = \"echo\"\nargs = { word = \"hi\" }\n[[turns.model]]\ntext = \"Done.\"\n[turns.expect]\ntool_called = { tool = \"echo\" }\n",
    );
    let output = clarion_in(dir.path(), &["test", "--accept", "-k", "echo"], &[], None);
    let text = stdout(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let snapshot =
        std::fs::read_to_string(dir.path().join("flows/echo/scenarios/snapshots/echo.snap"))
            .unwrap_or_default();
    assert!(
        snapshot.contains("← ok {\"word\": \"hi\"}"),
        "the command ran: {snapshot}"
    );
}
