//! `clarion chat` over pipes: a real conversation against an HTTP model server on
//! loopback, stored in SQLite, resumed with `--thread`, and the one-line errors for what
//! can go wrong before a conversation starts.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers tool calls first, then text, by how many messages the request carries.
struct Model;

impl Respond for Model {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().cloned().unwrap_or(Value::Null);
        let message = if last["role"] == "user"
            && last["content"]
                .as_str()
                .is_some_and(|c| c.contains("12,000"))
        {
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": format!("call_{}", messages.len()), "type": "function",
                "function": { "name": "calculate_savings_timeline", "arguments": "{\"goal_amount\": 12000, \"monthly_income\": 4000, \"monthly_savings\": 1000}" } }] })
        } else if last["role"] == "user" {
            json!({ "role": "assistant", "content": format!("You said: {}. I remember {} messages.", last["content"].as_str().unwrap_or_default(), messages.len()) })
        } else {
            json!({ "role": "assistant", "content": "It takes 12 months." })
        };
        ResponseTemplate::new(200).set_body_json(
            json!({ "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }] }),
        )
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn flow_for(dir: &Path, base_url: &str) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("flows/personal-finance.toml"))
        .unwrap_or_default();
    let path = dir.join("finance.toml");
    std::fs::write(
        &path,
        format!("{text}\n[provider]\nbase_url = \"{base_url}\"\nstream = false\nmax_retries = 0\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path
}

fn chat(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .arg("chat")
        .args(args)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_piped_conversation_is_stored_and_resumable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Model)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", server.uri()));
    let store = dir.path().join("threads.db");
    let (flow, store) = (flow.display().to_string(), store.display().to_string());

    let first = chat(
        &[&flow, "--store", &store],
        "I earn $4,000 a month. How long to save $12,000 at $1,000 a month?\n",
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert_eq!(
        text(&first.stdout),
        "It takes 12 months.\n",
        "only the reply on stdout"
    );
    let log = text(&first.stderr);
    assert!(log.contains("→ calculate_savings_timeline"), "{log}");
    let result = log
        .find("← calculate_savings_timeline ok")
        .unwrap_or_else(|| panic!("{log}"));
    let context = log
        .find("+ context: The user's savings plan indicates a 1-year timeline")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        result < context,
        "the result is shown before the context its rule injected: {log}"
    );
    let thread = log
        .split_whitespace()
        .find(|w| w.starts_with("thread_"))
        .map_or_else(|| panic!("no thread id in {log}"), ToOwned::to_owned);

    let second = chat(
        &[&flow, "--store", &store, "--thread", &thread],
        "And now?\n/slots\n",
    );
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    let out = text(&second.stdout);
    assert!(
        out.starts_with("You said: And now?. I remember 7 messages."),
        "the history came back: {out}"
    );
    assert!(out.contains("goal_amount = 12000"), "{out}");
    assert!(out.contains("risk_tolerance (not set)"), "{out}");
}

#[tokio::test]
async fn an_unreachable_provider_is_a_one_line_error_and_exit_2() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    drop(listener);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("http://127.0.0.1:{port}/v1"));
    let store = dir.path().join("threads.db");
    let output = chat(
        &[
            &flow.display().to_string(),
            "--store",
            &store.display().to_string(),
        ],
        "hello\n",
    );
    assert_eq!(output.status.code(), Some(2));
    let log = text(&output.stderr);
    assert!(
        log.contains(&format!(
            "error: the run ended failed: the model failed: cannot reach 127.0.0.1:{port}"
        )),
        "{log}"
    );
    assert!(text(&output.stdout).is_empty());
}

#[test]
fn bad_invocations_exit_2_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), "http://127.0.0.1:9/v1");
    let store = dir.path().join("threads.db");
    let (flow, store) = (flow.display().to_string(), store.display().to_string());
    let unknown = chat(&[&flow, "--store", &store, "--thread", "thread_nope"], "");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no thread `thread_nope`"),
        "{}",
        text(&unknown.stderr)
    );
    let missing = chat(&["no/such.toml"], "");
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no such flow file: no/such.toml"));
    let unwritable = chat(&[&flow, "--store", "/proc/clarion/threads.db"], "");
    assert_eq!(unwritable.status.code(), Some(2));
    assert!(
        text(&unwritable.stderr).contains("cannot open the thread store /proc/clarion/threads.db"),
        "{}",
        text(&unwritable.stderr)
    );
}
