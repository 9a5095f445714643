//! `clarion mcp lock`, `clarion validate` against the lock file, and `validate --connect`,
//! through the built binary. The lock-file tests need no server; the others run the
//! published `mcp-server-time` (`CLARION_TEST_MCP_TIME`, from `scripts/mcp-servers.sh`) and
//! print "skipped: why" without it, except under CI, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn clarion(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn time_server() -> Option<PathBuf> {
    let found = std::env::var_os("CLARION_TEST_MCP_TIME")
        .map(PathBuf::from)
        .filter(|path| path.exists());
    if found.is_none() {
        let why = "CLARION_TEST_MCP_TIME names no mcp-server-time (run scripts/mcp-servers.sh)";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        #[allow(clippy::print_stderr)] // the suites' convention for a skipped test
        {
            eprintln!("skipped: {why}");
        }
    }
    found
}

/// A flow using `convert_time` of a time server started as `command`, written to `dir`.
fn time_flow(dir: &Path, command: &str) -> PathBuf {
    let path = dir.join("clock.toml");
    std::fs::write(
        &path,
        format!(
            r#"[flow]
name = "clock"

[assistant]
model = "gpt-4.1-mini"
instructions = "Convert times."

[mcp.time]
command = [{command}]

[tools.convert_time]
mcp = "time"

[tools.convert_time.params.time]
ask = "Which time?"
"#
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path
}

/// The lock `mcp-server-time` writes for that flow (as checked in with the example flow).
fn checked_in_lock() -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(workspace.join("flows/world-clock.mcp.lock"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_flow_without_its_lock_file_fails_and_says_how_to_write_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    time_flow(dir.path(), "\"uvx\", \"mcp-server-time\"");
    let output = clarion(dir.path(), &["validate", "clock.toml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = text(&output);
    assert!(shown.contains("error[E029]"), "{shown}");
    assert!(shown.contains("clock.toml:8:6"), "{shown}");
    assert!(shown.contains("run `clarion mcp lock`"), "{shown}");
}

#[test]
fn a_changed_remote_schema_in_the_lock_fails_validation_where_the_flow_uses_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    time_flow(dir.path(), "\"uvx\", \"mcp-server-time\"");
    std::fs::write(dir.path().join("clock.mcp.lock"), checked_in_lock())
        .unwrap_or_else(|e| panic!("{e}"));
    let output = clarion(dir.path(), &["validate", "clock.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let export = clarion(
        dir.path(),
        &["export", "clock.toml", "--format", "chat-completions"],
    );
    assert_eq!(export.status.code(), Some(0), "{}", text(&export));
    assert!(
        text(&export).contains("Source IANA timezone name"),
        "{}",
        text(&export)
    );

    // The server renamed `time` to `time_hhmm`, and `clarion mcp lock` recorded it.
    let drifted = checked_in_lock()
        .replace(
            "\"time\": {\n                \"description\": \"Time to convert",
            "\"time_hhmm\": {\n                \"description\": \"Time to convert",
        )
        .replace("\"time\",\n", "\"time_hhmm\",\n");
    assert_ne!(drifted, checked_in_lock());
    std::fs::write(dir.path().join("clock.mcp.lock"), drifted).unwrap_or_else(|e| panic!("{e}"));
    let output = clarion(dir.path(), &["validate", "clock.toml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = text(&output);
    assert!(
        shown.contains(
            "error[E028]: tool `convert_time` does not match MCP tool `convert_time`: the MCP tool has no parameter `time`"
        ),
        "{shown}"
    );
    assert!(shown.contains("clock.toml:14:28"), "{shown}");
    assert!(shown.contains("did you mean `time_hhmm`?"), "{shown}");
}

#[test]
fn mcp_lock_writes_the_lock_and_validate_connect_reports_drift() {
    let Some(server) = time_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    time_flow(
        dir.path(),
        &format!("\"{}\", \"--local-timezone\", \"UTC\"", server.display()),
    );
    let output = clarion(dir.path(), &["mcp", "lock", "clock.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("2 tools from 1 server"),
        "{}",
        text(&output)
    );
    let lock = std::fs::read_to_string(dir.path().join("clock.mcp.lock"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lock, checked_in_lock(), "the server's listing changed");

    let again = clarion(dir.path(), &["mcp", "lock", "clock.toml"]);
    assert!(text(&again).contains("unchanged"), "{}", text(&again));
    let connected = clarion(dir.path(), &["validate", "--connect", "clock.toml"]);
    assert_eq!(connected.status.code(), Some(0), "{}", text(&connected));
    let export = [
        "export",
        "--connect",
        "clock.toml",
        "--format",
        "chat-completions",
    ];
    let exported = clarion(dir.path(), &export);
    assert_eq!(exported.status.code(), Some(0), "{}", text(&exported));
    assert!(text(&exported).contains("Convert time between timezones"));

    // A lock older than the server: a description the server changed since.
    let stale = lock.replace("Convert time between timezones", "Convert times");
    std::fs::write(dir.path().join("clock.mcp.lock"), stale).unwrap_or_else(|e| panic!("{e}"));
    let output = clarion(dir.path(), &["validate", "--connect", "clock.toml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = text(&output);
    assert!(
        shown.contains(
            "error[E030]: MCP server `time` no longer matches the lock file: the description of tool `convert_time` changed"
        ),
        "{shown}"
    );
    assert!(shown.contains("clock.toml:8:1"), "{shown}");
    // An export against a server that drifted from the reviewed lock is refused.
    let exported = clarion(dir.path(), &export);
    assert_eq!(exported.status.code(), Some(1), "{}", text(&exported));
    assert!(
        text(&exported).contains("error[E030]"),
        "{}",
        text(&exported)
    );
}

#[test]
fn a_server_that_cannot_start_fails_mcp_lock_with_its_reason() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    time_flow(dir.path(), "\"./no-such-server\"");
    let output = clarion(dir.path(), &["mcp", "lock", "clock.toml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let shown = text(&output);
    assert!(shown.contains("cannot start MCP server `time`"), "{shown}");
    assert!(!dir.path().join("clock.mcp.lock").exists());
}

/// The server-everything of `scripts/mcp-servers.sh`, or "skipped: why".
fn everything_server() -> Option<PathBuf> {
    let found = std::env::var_os("CLARION_TEST_MCP_EVERYTHING")
        .map(PathBuf::from)
        .filter(|path| path.exists());
    if found.is_none() {
        let why =
            "CLARION_TEST_MCP_EVERYTHING names no server-everything (run scripts/mcp-servers.sh)";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        #[allow(clippy::print_stderr)] // the suites' convention for a skipped test
        {
            eprintln!("skipped: {why}");
        }
    }
    found
}

/// Whether `pid` dies within five seconds: a signal to a process group is delivered
/// asynchronously, so the helper may outlive `clarion`'s exit by a moment under load.
fn dies(pid: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !dead(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet).
fn dead(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn an_unmocked_mcp_tool_runs_in_clarion_test_and_its_server_dies_with_the_process() {
    let Some(js) = everything_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The server leaves a child behind, as servers that start helpers do: the process
    // group takes it too.
    std::fs::write(
        dir.path().join("echo.toml"),
        format!(
            r#"[flow]
name = "echo"

[assistant]
model = "gpt-4.1-mini"
instructions = "Echo."

[mcp.everything]
command = ["sh", "-c", "sleep 300 & echo $! > helper.pid; exec node '{}' stdio"]
env = ["PATH"]
tools = ["echo"]
"#,
            js.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let locked = clarion(dir.path(), &["mcp", "lock", "echo.toml"]);
    assert_eq!(locked.status.code(), Some(0), "{}", text(&locked));
    let helper =
        std::fs::read_to_string(dir.path().join("helper.pid")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        dies(helper.trim()),
        "mcp lock left the server's helper running"
    );

    let scenarios = dir.path().join("echo/scenarios");
    std::fs::create_dir_all(&scenarios).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        scenarios.join("echo.toml"),
        r#"[scenario]
name = "echo"

[[turns]]
user = "Say hello back."

[[turns.model]]
call = "echo"
args = { message = "hello" }

[[turns.model]]
text = "Echo: hello"

[turns.expect]
tool_called = { tool = "echo", args = { message = "hello" } }
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(["test", "echo", "--accept"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = text(&output);
    let snapshot = std::fs::read_to_string(scenarios.join("snapshots/echo.snap"))
        .unwrap_or_else(|e| panic!("{e}: {shown}"));
    assert!(snapshot.contains("← ok \"Echo: hello\""), "{snapshot}");
    let helper =
        std::fs::read_to_string(dir.path().join("helper.pid")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        dies(helper.trim()),
        "clarion test exited and left the server's helper {} running",
        helper.trim()
    );
}
