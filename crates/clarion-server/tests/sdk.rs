//! The real `openai` Python SDK against the server: the classic tool loop, a question and
//! its answer, streaming with an event handler, per-key isolation, and assistants,
//! auto-pagination, retrieval and cancellation.
//!
//! The SDK comes from a virtualenv that `.ci/run` creates (`scripts/sdk-venv.sh`): the
//! interpreter is `CLARION_SDK_PYTHON`, else `~/.cache/clarion/sdk-venv/bin/python`. Without
//! it the tests say why and pass — except under CI, where a missing SDK fails them.

#![allow(clippy::print_stderr)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use clarion_engine::scripted::ScriptedTurn;

use common::{pay_loop, start};

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("CLARION_SDK_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/clarion/sdk-venv/bin/python"))
        })?;
    let works = Command::new(&candidate)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(candidate);
    }
    let why = format!(
        "no Python with the openai package at {} (run scripts/sdk-venv.sh)",
        candidate.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("skipped: {why}");
    None
}

async fn scenario(name: &str, turns: Vec<ScriptedTurn>, keys: &[&str]) {
    let Some(python) = python() else { return };
    let server = start(turns, keys, clarion_server::DEFAULT_BODY_LIMIT).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_sdk.py");
    let key = keys.first().copied().unwrap_or("sk-open");
    let other = keys.get(1).copied().unwrap_or("sk-other");
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(name)
        .env("OPENAI_BASE_URL", &server.base)
        .env("OPENAI_API_KEY", key)
        .env("CLARION_OTHER_KEY", other)
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scenario {name} failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{}", stdout.trim());
    assert_eq!(server.model.remaining(), 0, "the script was not played out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_classic_tool_loop() {
    scenario("loop", pay_loop(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_question_then_answer() {
    let turns = vec![
        ScriptedTurn::call("savings", r#"{"goal_amount": 12000}"#),
        ScriptedTurn::call(
            "savings",
            r#"{"monthly_income": 5000, "monthly_savings": 1000}"#,
        )
        .expecting_user("5000"),
        ScriptedTurn::text("About a year."),
    ];
    scenario("question", turns, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_streaming_with_an_event_handler() {
    scenario("stream", pay_loop(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_keys_see_only_their_threads() {
    scenario("keys", Vec::new(), &["sk-alice", "sk-bob"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_assistants_paging_retrieval_and_cancel() {
    let mut turns = pay_loop();
    turns.pop();
    scenario("more", turns, &[]).await;
}
