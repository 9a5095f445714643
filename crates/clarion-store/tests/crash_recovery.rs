//! Crash recovery with a real crash: the test re-executes its own binary as a child
//! process that drives a run over a SQLite store, kills it with SIGKILL at a chosen point,
//! and restarts an engine on the same file.
//!
//! A killed process runs no destructors and flushes nothing, so this is the honest test of
//! "a step is committed whole or not at all": what the parent finds is exactly what SQLite
//! made durable before the kill. The child is this same test function, selected with
//! `--exact` and told it is the child by [`CHILD_ENV`] (the database path).

#![cfg(unix)]

// The engine's test helpers: the example flow, stand-in tools, assertions.
#[path = "../../clarion-engine/tests/support/mod.rs"]
mod support;

use clarion_engine::ToolErrorKind;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use clarion_engine::BoxFuture;
use clarion_engine::NoEvents;
use clarion_engine::ThreadStore;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{Engine, RunStatus, ToolOutputSubmission, protocol};
use clarion_engine::{FnExecutor, ToolError, ToolExecutor, ToolRequest};
use clarion_engine::{MessageKind, Metadata, Thread};
use clarion_flow::Flow;
use clarion_store::SqliteStore;
use serde_json::Value;
use support::{finance, flow_from, personal_finance};
use tempfile::TempDir;

/// Set (to the database path) in the child process.
const CHILD_ENV: &str = "CLARION_CRASH_CHILD";

/// How long the parent waits for the child to reach the crash point.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A flow whose only tool is run by the client, so a run rests in `requires_action`.
const BOOKING: &str = r#"
[flow]
name = "crash-booking"
[assistant]
model = "m"
instructions = "Book flights."
[tools.book]
description = "Book a flight (the app asks the user to confirm)."
client = true
[tools.book.params.flight]
type = "string"
description = "Flight number."
"#;

const SAVINGS_CALL: &str =
    r#"{"goal_amount": 50000, "monthly_income": 5000, "monthly_savings": 1000}"#;

fn child_db() -> Option<PathBuf> {
    std::env::var_os(CHILD_ENV).map(PathBuf::from)
}

/// Kills the child if the parent fails before doing so.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Starts this test again as a child, waits for its `READY <thread> <run>` line, kills it
/// with SIGKILL and returns the ids it announced.
fn crash_child_when_ready(test: &str, db: &Path) -> (String, String) {
    let (child, thread, run) = child_when_ready(test, db);
    kill(child);
    (thread, run)
}

/// SIGKILL: no destructors, no flush, no rollback — a crash.
fn kill(mut child: ChildGuard) {
    child.0.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let status = child.0.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(
        status.signal(),
        Some(9),
        "the child died of SIGKILL: {status}"
    );
}

/// Starts this test again as a child and waits for its `READY <thread> <run>` line; the
/// child is still running.
fn child_when_ready(test: &str, db: &Path) -> (ChildGuard, String, String) {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning the child: {e}"));
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut stderr = child.0.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let ready = loop {
        match received.recv_timeout(READY_TIMEOUT) {
            // libtest may have written `test name ... ` on the same line.
            Ok(line) => match line.split_once("READY ") {
                Some((_, rest)) => break rest.to_owned(),
                None => seen.push(line),
            },
            Err(error) => {
                child.0.kill().ok();
                let mut err = String::new();
                stderr.read_to_string(&mut err).ok();
                panic!(
                    "the child never reported READY ({error}).\nstdout:\n{}\nstderr:\n{err}",
                    seen.join("\n")
                );
            }
        }
    };
    let mut ids = ready.split_whitespace().map(str::to_owned);
    match (ids.next(), ids.next()) {
        (Some(thread), Some(run)) => (child, thread, run),
        _ => panic!("bad READY line: {ready}"),
    }
}

fn open(db: &Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(db).unwrap_or_else(|e| panic!("reopening {}: {e}", db.display())))
}

fn kinds(thread: &Thread) -> Vec<&'static str> {
    thread
        .messages
        .iter()
        .map(|m| match m.kind {
            MessageKind::User { .. } => "user",
            MessageKind::Assistant { .. } => "assistant",
            MessageKind::ToolCalls { .. } => "tool_calls",
            MessageKind::ToolOutput { .. } => "tool_output",
            MessageKind::Context { .. } => "context",
            MessageKind::Question { .. } => "question",
        })
        .collect()
}

fn engine(flow: Arc<Flow>, turns: Vec<ScriptedTurn>, store: Arc<SqliteStore>) -> Engine {
    Engine::new(
        flow,
        Arc::new(ScriptedModel::new(turns)),
        Arc::new(FnExecutor(finance)),
        store,
    )
}

// ---- killed mid-step ----------------------------------------------------------------------

/// A tool that announces the crash point and then never finishes.
struct Stall(Arc<OnceLock<(String, String)>>);

impl ToolExecutor for Stall {
    fn execute<'a>(&'a self, _request: ToolRequest<'a>) -> BoxFuture<'a, Result<Value, ToolError>> {
        Box::pin(async move {
            if let Some((thread, run)) = self.0.get() {
                announce(thread, run);
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(ToolError::new(
                ToolErrorKind::Failed,
                "the parent should have killed this process",
            ))
        })
    }
}

#[allow(clippy::print_stdout)]
fn announce(thread: &str, run: &str) {
    println!("READY {thread} {run}");
}

/// The child: a run whose tool call stalls, so the process dies in the middle of a step
/// (the model's tool-call message exists only in memory).
async fn child_mid_step(db: &Path) {
    let ids = Arc::new(OnceLock::new());
    let engine = Engine::new(
        personal_finance(),
        Arc::new(ScriptedModel::new([ScriptedTurn::call(
            "calculate_savings_timeline",
            SAVINGS_CALL,
        )])),
        Arc::new(Stall(ids.clone())),
        open(db),
    );
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(
            &thread.id,
            "How long until I have $50,000 for a house? I earn 5000 and save 1000 a month.",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = engine
        .create_run(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ids.set((thread.id, run.id.clone())).ok();
    let result = engine.drive_run(&run.id, &NoEvents).await;
    panic!("the run ended before the parent killed the child: {result:?}");
}

#[tokio::test]
async fn a_run_killed_mid_step_fails_as_interrupted_and_the_thread_goes_on() {
    if let Some(db) = child_db() {
        return child_mid_step(&db).await;
    }
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("threads.db");
    let (thread_id, run_id) = crash_child_when_ready(
        "a_run_killed_mid_step_fails_as_interrupted_and_the_thread_goes_on",
        &db,
    );

    let store = open(&db);
    // What the crash left: the run in progress, the thread locked, only the user message.
    let run = store.run(&run_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::InProgress, "killed mid-run");
    let thread = store
        .thread(&thread_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(thread.active_run.as_deref(), Some(run_id.as_str()));

    let engine = engine(
        personal_finance(),
        vec![
            ScriptedTurn::call("calculate_savings_timeline", SAVINGS_CALL),
            ScriptedTurn::text("About 4.2 years."),
        ],
        store.clone(),
    );
    let recovered = engine.recover().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        recovered.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [run_id.as_str()]
    );
    let run = store.run(&run_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.last_error.as_ref().map(|e| &e.code),
        Some(&clarion_engine::ErrorCode::Interrupted)
    );
    let thread = store
        .thread(&thread_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(thread.active_run, None, "unlocked");
    protocol::check(&thread.messages).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(
        kinds(&thread),
        ["user"],
        "nothing of the interrupted step is stored"
    );
    assert!(
        engine
            .recover()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty(),
        "recovery is idempotent"
    );

    // The thread is usable: a new run with a fresh script completes.
    let run = engine
        .run(&thread_id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let thread = store
        .thread(&thread_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    protocol::check(&thread.messages).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(thread.active_run, None);
    assert_eq!(kinds(&thread).first(), Some(&"user"));
    assert_eq!(
        thread.messages.last().and_then(|m| m.text()),
        Some("About 4.2 years.")
    );
    assert_eq!(
        store
            .runs(&thread_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [RunStatus::Failed, RunStatus::Completed]
    );
}

/// Regression: `clarion chat` started beside `clarion serve` on the same store failed the
/// server's runs in flight, because recovery could not tell them from interrupted ones.
#[tokio::test]
async fn recovery_leaves_the_runs_of_a_live_process_alone() {
    if let Some(db) = child_db() {
        return child_mid_step(&db).await;
    }
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("threads.db");
    let (child, _, run_id) =
        child_when_ready("recovery_leaves_the_runs_of_a_live_process_alone", &db);
    let store = open(&db);
    let engine = engine(personal_finance(), Vec::new(), store.clone());
    assert!(
        engine
            .recover()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty(),
        "another process has the store open: nothing is recovered"
    );
    let run = store.run(&run_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        run.status,
        RunStatus::InProgress,
        "its run in flight is untouched"
    );

    kill(child);
    let recovered = engine.recover().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        recovered.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [run_id.as_str()],
        "once it is gone, the same process recovers its run"
    );
}

// ---- killed while resting in requires_action ----------------------------------------------

/// The child: a run that stops for a client tool, then the process idles until killed.
async fn child_requires_action(db: &Path) {
    let engine = engine(
        flow_from(BOOKING),
        vec![ScriptedTurn::call("book", r#"{"flight": "TP123"}"#)],
        open(db),
    );
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(&thread.id, "Book TP123 for me.")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::RequiresAction);
    announce(&thread.id, &run.id);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    panic!("the parent should have killed this process");
}

#[tokio::test]
async fn a_run_resting_in_requires_action_survives_a_crash_and_completes() {
    if let Some(db) = child_db() {
        return child_requires_action(&db).await;
    }
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("threads.db");
    let (thread_id, run_id) = crash_child_when_ready(
        "a_run_resting_in_requires_action_survives_a_crash_and_completes",
        &db,
    );

    let store = open(&db);
    let engine = engine(
        flow_from(BOOKING),
        vec![ScriptedTurn::text("Booked: TP123, confirmation XYZ9.")],
        store.clone(),
    );
    assert!(
        engine
            .recover()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty(),
        "a resting run is not interrupted"
    );
    let run = store.run(&run_id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::RequiresAction);
    let thread = store
        .thread(&thread_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        thread.active_run.as_deref(),
        Some(run_id.as_str()),
        "still locked"
    );
    assert_eq!(kinds(&thread), ["user", "tool_calls"]);
    let call_id = match run.required_action.as_slice() {
        [call] => call.id.clone(),
        other => panic!("expected one client call, got {other:?}"),
    };

    let run = engine
        .submit_tool_outputs(
            &run_id,
            vec![ToolOutputSubmission {
                call_id,
                output: r#"{"confirmed": true, "code": "XYZ9"}"#.to_owned(),
            }],
            &NoEvents,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let thread = store
        .thread(&thread_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(thread.active_run, None);
    protocol::check(&thread.messages).unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(
        kinds(&thread),
        ["user", "tool_calls", "tool_output", "assistant"]
    );
}
