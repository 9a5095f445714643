//! Command tools against real child processes (the scripts in `tests/fixtures/`): the
//! protocol, every way a program can misbehave, and that nothing it starts outlives the call.

use clarion_engine::ToolErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clarion_engine::{ToolError, ToolExecutor, ToolRequest};
use clarion_flow::{Flow, Tool, load_str};
use clarion_tools::ClarionTools;
use serde_json::{Map, Value, json};

/// The real Python interpreter: `python3` on PATH may be a wrapper script (pyenv's shim)
/// that adds variables of its own to the environment.
fn python() -> String {
    std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|path| path.trim().to_owned())
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| "/usr/bin/python3".to_owned())
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A flow in the fixtures directory with one command tool `run` made of `table`.
fn flow(table: &str) -> Flow {
    let text = format!(
        r#"
[flow]
name = "commands"
[assistant]
model = "m"
instructions = "i"
[tools.run]
description = "Runs the fixture."
[tools.run.command]
{table}
[tools.run.params.subject]
type = "string"
description = "A subject."
required = false
"#
    );
    let report = load_str(fixtures().join("commands.toml"), &text, Some(&fixtures()));
    let messages: Vec<String> = report
        .diagnostics
        .iter()
        .map(clarion_flow::diagnostic::Diagnostic::message)
        .collect();
    report
        .into_result()
        .unwrap_or_else(|_| panic!("the test flow does not load: {messages:?}"))
}

async fn call(flow: &Flow, args: Value) -> Result<Value, ToolError> {
    let tools = ClarionTools::new();
    let tool: &Tool = &flow.tools["run"];
    let arguments: Map<String, Value> = match args {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    tools
        .execute(ToolRequest {
            flow,
            tool,
            call_id: "call_1",
            idempotency_key: "key_1",
            arguments: &arguments,
        })
        .await
}

/// The environment the program saw, without `LC_CTYPE`, which Python itself sets when it
/// starts in the C locale (PEP 538).
fn environment(result: &Value) -> Vec<String> {
    result["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|name| *name != "LC_CTYPE")
        .map(ToOwned::to_owned)
        .collect()
}

fn failure(result: Result<Value, ToolError>) -> ToolError {
    match result {
        Ok(value) => panic!("the call succeeded: {value}"),
        Err(error) => error,
    }
}

/// Whether `pid` is gone (or a zombie waiting for its new parent to reap it).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

fn wait_for_pid(file: &Path) -> u32 {
    let started = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} was never written",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_dies(pid: u32) {
    let started = Instant::now();
    while !dead(pid) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "process {pid} outlived the call"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn arguments_go_in_on_stdin_and_the_result_comes_out_on_stdout() {
    let flow = flow(&format!(
        r#"argv = ["{}", "echo.py", "$HOME; rm -rf /", "*"]
           env = ["PATH"]"#,
        python()
    ));
    let result = call(&flow, json!({"subject": "it's \"broken\" — ünïcode"}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        result["args"],
        json!({"subject": "it's \"broken\" — ünïcode"})
    );
    assert_eq!(
        result["argv"],
        json!(["$HOME; rm -rf /", "*"]),
        "argv reaches the program literally, never through a shell"
    );
    let cwd = PathBuf::from(result["cwd"].as_str().unwrap_or_default());
    assert_eq!(
        cwd.canonicalize().ok(),
        fixtures().canonicalize().ok(),
        "the default working directory is the flow file's"
    );
    assert_eq!(
        environment(&result),
        ["CLARION_IDEMPOTENCY_KEY", "PATH"],
        "the environment is cleared except allow-listed variables and the call's key"
    );
    assert_eq!(result["idempotency_key"], "key_1");
}

#[tokio::test]
async fn cwd_is_relative_to_the_flow_file_and_so_is_a_relative_program() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tools_dir = dir.path().join("tools");
    std::fs::create_dir(&tools_dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(fixtures().join("echo.py"), tools_dir.join("echo.py"))
        .unwrap_or_else(|e| panic!("{e}"));
    let text = r#"
[flow]
name = "cwd"
[assistant]
model = "m"
instructions = "i"
[tools.run]
description = "Runs the fixture."
[tools.run.command]
argv = ["/bin/sh", "-c", "exec python3 echo.py"]
cwd = "tools"
env = ["PATH"]
"#;
    let report = load_str(dir.path().join("flow.toml"), text, Some(dir.path()));
    let flow = report.into_result().unwrap_or_else(|e| panic!("{e}"));
    let result = call(&flow, json!({}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cwd = PathBuf::from(result["cwd"].as_str().unwrap_or_default());
    assert_eq!(cwd.canonicalize().ok(), tools_dir.canonicalize().ok());
}

#[tokio::test]
async fn an_allow_listed_variable_passes_through_and_nothing_else_does() {
    // Cargo sets CARGO_MANIFEST_DIR for the test process; HOME and PATH are not allow-listed.
    let flow = flow(&format!(
        r#"argv = ["{}", "echo.py"]
           env = ["PATH", "CARGO_MANIFEST_DIR", "CLARION_SURELY_UNSET_VARIABLE"]"#,
        python()
    ));
    let result = call(&flow, json!({}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        environment(&result),
        ["CARGO_MANIFEST_DIR", "CLARION_IDEMPOTENCY_KEY", "PATH"]
    );
}

#[tokio::test]
async fn a_non_zero_exit_is_a_failure_with_the_end_of_stderr() {
    let flow = flow(
        r#"argv = ["python3", "fail.py"]
                       env = ["PATH"]"#,
    );
    let error = failure(call(&flow, json!({"subject": "x"})).await);
    assert_eq!(error.kind, ToolErrorKind::Failed);
    assert_eq!(
        error.message,
        "`python3 fail.py` exited with status 3; stderr: loading the model...\nValueError: the subject is empty"
    );
}

#[tokio::test]
async fn garbage_on_stdout_is_invalid_output() {
    let garbage = flow(r#"argv = ["/bin/sh", "garbage.sh"]"#);
    let error = failure(call(&garbage, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::InvalidOutput);
    assert!(
        error
            .message
            .starts_with("`/bin/sh garbage.sh` printed something that is not JSON")
            && error.message.ends_with(": result: {not json"),
        "{}",
        error.message
    );
    let silent = flow(r#"argv = ["/bin/true"]"#);
    let error = failure(call(&silent, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::InvalidOutput);
    assert!(
        error.message.contains("printed nothing"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn output_past_the_limit_is_refused_and_the_program_killed() {
    let flow = flow(
        r#"argv = ["python3", "big.py"]
           env = ["PATH"]
           max_output_bytes = 10000
           timeout = "20s""#,
    );
    let started = Instant::now();
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::InvalidOutput);
    assert_eq!(
        error.message,
        "`python3 big.py` printed more than 10000 bytes (the tool's `max_output_bytes`)"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_program_that_hangs_is_killed_at_the_timeout() {
    let flow = flow(
        r#"argv = ["/bin/sh", "hang.sh"]
                       timeout = "300ms""#,
    );
    let started = Instant::now();
    let error = failure(call(&flow, json!({})).await);
    let elapsed = started.elapsed();
    assert_eq!(error.kind, ToolErrorKind::Timeout);
    assert_eq!(
        error.message,
        "`/bin/sh hang.sh` did not finish within 300ms; its process group was killed"
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_grandchild_dies_with_a_hanging_parent() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pidfile = dir.path().join("pid");
    let flow = flow(&format!(
        r#"argv = ["/bin/sh", "fork.sh", "{}", "hang"]
           timeout = "500ms""#,
        pidfile.display()
    ));
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Timeout);
    assert_dies(wait_for_pid(&pidfile));
}

#[tokio::test]
async fn a_grandchild_holding_stdout_after_its_parent_exits_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pidfile = dir.path().join("pid");
    let flow = flow(&format!(
        r#"argv = ["/bin/sh", "fork.sh", "{}", "exit"]
           timeout = "500ms""#,
        pidfile.display()
    ));
    let started = Instant::now();
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Timeout, "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_dies(wait_for_pid(&pidfile));
}

#[tokio::test]
async fn a_detached_grandchild_does_not_outlive_a_successful_call() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pidfile = dir.path().join("pid");
    let flow = flow(&format!(
        r#"argv = ["/bin/sh", "fork.sh", "{}", "detach"]
           timeout = "5s""#,
        pidfile.display()
    ));
    let result = call(&flow, json!({}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result, json!({"detached": true}));
    assert_dies(wait_for_pid(&pidfile));
}

#[tokio::test]
async fn a_dropped_call_kills_its_process_group() {
    // The engine's own timeout drops the executor's future: the group must die with it.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pidfile = dir.path().join("pid");
    let flow = flow(&format!(
        r#"argv = ["/bin/sh", "fork.sh", "{}", "hang"]
           timeout = "60s""#,
        pidfile.display()
    ));
    let outcome = tokio::time::timeout(Duration::from_millis(500), call(&flow, json!({}))).await;
    assert!(outcome.is_err(), "the call should still be running");
    assert_dies(wait_for_pid(&pidfile));
}

#[tokio::test]
async fn a_program_that_ignores_its_input_is_fine() {
    let flow = flow(r#"argv = ["/bin/sh", "quiet.sh"]"#);
    let big = "x".repeat(1 << 20);
    let result = call(&flow, json!({"subject": big})).await;
    assert_eq!(result, Ok(json!({})));
}

#[tokio::test]
async fn a_missing_program_is_unavailable() {
    let flow = flow(r#"argv = ["./no-such-program"]"#);
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Unavailable);
    assert!(
        error
            .message
            .starts_with("cannot start `./no-such-program` in "),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn the_example_classifier_runs_as_the_flow_declares_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/support-triage.toml");
    let flow = clarion_flow::load_file(&path)
        .into_result()
        .unwrap_or_else(|e| panic!("{e}"));
    let tools = ClarionTools::new();
    let arguments: Map<String, Value> = serde_json::from_value(json!({
        "subject": "Everything is down",
        "body": "Outage since 9:00: the dashboard is unavailable for the whole team.",
        "customer_tier": "enterprise",
    }))
    .unwrap_or_default();
    let result = tools
        .execute(ToolRequest {
            flow: &flow,
            tool: &flow.tools["classify_ticket"],
            call_id: "call_1",
            idempotency_key: "key_1",
            arguments: &arguments,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result["priority"], "urgent");
    assert_eq!(result["category"], "outage");
}
