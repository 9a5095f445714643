//! `clarion threads`: conversations stored by a real `clarion chat` (against a model server
//! on loopback) listed, shown, exported and deleted through the real binary; and the
//! one-line errors, exit 2, for a missing store, a file that is not one, and unknown ids.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clarion_engine::ThreadStore as _;
use clarion_engine::{Metadata, Thread};
use clarion_store::SqliteStore;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Calls the savings tool when asked about $12,000, otherwise echoes the user.
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
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function",
                "function": { "name": "calculate_savings_timeline", "arguments": "{\"goal_amount\": 12000, \"monthly_income\": 4000, \"monthly_savings\": 1000}" } }] })
        } else if last["role"] == "user"
            && last["content"]
                .as_str()
                .is_some_and(|c| c.contains("50,000"))
        {
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "call_2", "type": "function",
                "function": { "name": "calculate_savings_timeline", "arguments": "{\"goal_amount\": 50000}" } }] })
        } else if last["role"] == "user" {
            json!({ "role": "assistant", "content": format!("You said: {}.", last["content"].as_str().unwrap_or_default()) })
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

fn flow_for(dir: &Path, base_url: &str) -> String {
    let text = std::fs::read_to_string(workspace().join("flows/personal-finance.toml"))
        .unwrap_or_default();
    let path = dir.join("finance.toml");
    std::fs::write(
        &path,
        format!("{text}\n[provider]\nbase_url = \"{base_url}\"\nstream = false\nmax_retries = 0\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn clarion(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(args)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("CLICOLOR_FORCE")
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

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&output.stdout)))
}

/// Exit 2, and stderr is exactly one `error:` line containing `needle`.
fn assert_one_line_error(output: &Output, needle: &str) {
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "{needle:?} in {err}");
}

#[tokio::test]
#[allow(
    clippy::too_many_lines,
    reason = "one store's whole life, step by step"
)]
async fn stored_conversations_are_listed_shown_exported_and_deleted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Model)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", server.uri()));
    let store = dir.path().join("threads.db").display().to_string();

    let first = clarion(
        &["chat", &flow, "--store", &store],
        "I earn $4,000 a month. How long to save $12,000 at $1,000 a month?\n",
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let second = clarion(&["chat", &flow, "--store", &store], "Hello\n");
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));

    // JSON list: newest first, with counts and the last run's status.
    let listed = clarion(
        &["threads", "list", "--store", &store, "--format", "json"],
        "",
    );
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    let rows = json_of(&listed);
    let rows = rows.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (newest, oldest) = (&rows[0], &rows[1]);
    assert_eq!(newest["flow"], "personal-finance");
    assert_eq!(newest["messages"], 2, "hello and the reply");
    assert_eq!(
        oldest["messages"], 5,
        "question, call, output, context, reply"
    );
    assert_eq!(oldest["last_run_status"], "completed");
    assert!(newest["last_activity"].as_i64() >= oldest["last_activity"].as_i64());
    let (hello, savings) = (
        newest["id"].as_str().unwrap_or_default().to_owned(),
        oldest["id"].as_str().unwrap_or_default().to_owned(),
    );

    // The table for people.
    let table = clarion(&["threads", "list", "--store", &store], "");
    assert_eq!(table.status.code(), Some(0));
    let table = text(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID"), "{table}");
    assert!(lines[0].contains("LAST ACTIVITY") && lines[0].contains("LAST RUN"));
    assert!(lines[1].starts_with(&hello), "newest first: {table}");
    assert!(lines[2].starts_with(&savings), "{table}");
    assert!(lines[2].contains("personal-finance") && lines[2].contains(" 5 "));
    assert!(lines[2].contains(" UTC ") && lines[2].ends_with("completed"));

    // `show`: the conversation as a transcript, after a header.
    let shown = clarion(&["threads", "show", &savings, "--store", &store], "");
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    let header_end = shown.find("\n\n").unwrap_or_else(|| panic!("{shown}"));
    let (header, conversation) = shown.split_at(header_end);
    assert!(
        header.starts_with(&format!(
            "thread {savings} · flow personal-finance · 5 messages · 1 run"
        )),
        "{header}"
    );
    assert!(header.contains("\nslots: "), "{header}");
    for slot in [
        "goal_amount = 12000",
        "monthly_income = 4000",
        "monthly_savings = 1000",
    ] {
        assert!(header.contains(slot), "{slot} in {header}");
    }
    insta::assert_snapshot!("show_savings_conversation", conversation.trim_start());

    // `show --format json` and `export` agree, and carry the whole thread and its runs.
    let full = json_of(&clarion(
        &[
            "threads", "show", &savings, "--store", &store, "--format", "json",
        ],
        "",
    ));
    assert_eq!(full["thread"]["id"], savings.as_str());
    assert_eq!(full["thread"]["messages"].as_array().map(Vec::len), Some(5));
    assert_eq!(full["thread"]["slots"]["goal_amount"], 12000);
    assert_eq!(full["runs"][0]["status"], "completed");
    let file = dir.path().join("export.json");
    let exported = clarion(
        &[
            "threads",
            "export",
            &savings,
            "--store",
            &store,
            "--output",
            &file.display().to_string(),
        ],
        "",
    );
    assert_eq!(
        exported.status.code(),
        Some(0),
        "{}",
        text(&exported.stderr)
    );
    assert!(text(&exported.stdout).is_empty(), "the file has it all");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(written, full);
    let transcript = clarion(
        &[
            "threads",
            "export",
            &savings,
            "--store",
            &store,
            "--format",
            "transcript",
        ],
        "",
    );
    assert!(
        text(&transcript.stdout).contains(conversation.trim_start()),
        "{}",
        text(&transcript.stdout)
    );

    // `delete`, then the id is unknown everywhere.
    let deleted = clarion(&["threads", "delete", &savings, "--store", &store], "");
    assert_eq!(deleted.status.code(), Some(0), "{}", text(&deleted.stderr));
    assert!(text(&deleted.stdout).starts_with(&format!("deleted thread {savings}")));
    let rows = json_of(&clarion(
        &["threads", "list", "--store", &store, "--format", "json"],
        "",
    ));
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    for verb in ["show", "delete", "export"] {
        let again = clarion(&["threads", verb, &savings, "--store", &store], "");
        assert_one_line_error(&again, &format!("no thread `{savings}` in {store}"));
    }
    // The other conversation is untouched, and can still be resumed.
    let resumed = clarion(
        &["chat", &flow, "--store", &store, "--thread", &hello],
        "Again\n",
    );
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
}

#[tokio::test]
async fn a_run_that_failed_before_any_reply_shows_its_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    drop(listener);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("http://127.0.0.1:{port}/v1"));
    let store = dir.path().join("threads.db").display().to_string();
    let chat = clarion(&["chat", &flow, "--store", &store], "hello\n");
    assert_eq!(chat.status.code(), Some(2));
    let rows = json_of(&clarion(
        &["threads", "list", "--store", &store, "--format", "json"],
        "",
    ));
    assert_eq!(rows[0]["last_run_status"], "failed", "{rows}");
    let id = rows[0]["id"].as_str().unwrap_or_default().to_owned();
    let shown = text(&clarion(&["threads", "show", &id, "--store", &store], "").stdout);
    assert!(shown.contains("user: hello\n[run_1 failed: model_unavailable — the model failed: cannot connect to 127.0.0.1:"), "{shown}");
}

#[tokio::test]
async fn a_question_waiting_for_answers_is_shown_with_what_is_pending() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Model)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", server.uri()));
    let store = dir.path().join("threads.db").display().to_string();
    let chat = clarion(
        &["chat", &flow, "--store", &store],
        "How long to save $50,000?\n",
    );
    assert_eq!(chat.status.code(), Some(0), "{}", text(&chat.stderr));
    let rows = json_of(&clarion(
        &["threads", "list", "--store", &store, "--format", "json"],
        "",
    ));
    let id = rows[0]["id"].as_str().unwrap_or_default().to_owned();
    let shown = text(&clarion(&["threads", "show", &id, "--store", &store], "").stdout);
    assert!(
        shown.contains("\nslots: goal_amount = 50000\n"),
        "the known argument is remembered: {shown}"
    );
    assert!(
        shown.contains(
            "\npending: calculate_savings_timeline waits for monthly_income, monthly_savings\n"
        ),
        "{shown}"
    );
    let conversation = &shown[shown.find("\n\n").unwrap_or_default() + 2..];
    insta::assert_snapshot!("show_question", conversation);
}

#[test]
fn a_missing_store_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("nested/threads.db");
    let shown = store.display().to_string();
    for args in [
        vec!["threads", "list", "--store", &shown],
        vec!["threads", "list", "--store", &shown, "--format", "json"],
        vec!["threads", "show", "thread_x", "--store", &shown],
        vec!["threads", "export", "thread_x", "--store", &shown],
        vec!["threads", "delete", "thread_x", "--store", &shown],
    ] {
        let output = clarion(&args, "");
        assert_one_line_error(&output, &format!("no thread store at {shown}"));
        assert!(text(&output.stdout).is_empty());
    }
    assert!(!store.exists(), "looking must not create a database");
    assert!(!dir.path().join("nested").exists(), "nor its directory");
    // The default path, from a directory without one.
    let output = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(["threads", "list"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_one_line_error(&output, "no thread store at .clarion/threads.db");
    assert!(!dir.path().join(".clarion").exists());
}

#[test]
fn a_file_that_is_not_a_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let garbage = dir.path().join("notes.txt");
    std::fs::write(
        &garbage,
        "these are not the threads you are looking for\n".repeat(100),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let shown = garbage.display().to_string();
    let output = clarion(&["threads", "list", "--store", &shown], "");
    assert_one_line_error(&output, &format!("cannot open the thread store {shown}"));
    assert_one_line_error(
        &output,
        "--store must name a thread store written by `clarion chat`",
    );
    let folder = dir.path().display().to_string();
    let output = clarion(&["threads", "list", "--store", &folder], "");
    assert_one_line_error(
        &output,
        "it is a directory; pass --store with the database file",
    );
}

#[test]
fn an_empty_store_lists_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("threads.db");
    drop(SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}")));
    let shown = path.display().to_string();
    let human = clarion(&["threads", "list", "--store", &shown], "");
    assert_eq!(human.status.code(), Some(0));
    assert_eq!(
        text(&human.stdout),
        format!("no threads in {shown}; `clarion chat FLOW` starts one\n")
    );
    let json = clarion(
        &["threads", "list", "--store", &shown, "--format", "json"],
        "",
    );
    assert_eq!(json_of(&json), json!([]));
}

#[tokio::test]
async fn a_thread_held_by_a_run_is_deleted_only_with_force() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("threads.db");
    let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut thread = Thread::new(
        "thread_held".into(),
        "demo".into(),
        1_795_665_180_000,
        Metadata::default(),
    );
    thread.active_run = Some("run_busy".into());
    store
        .insert_thread(&thread)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(store);
    let shown = path.display().to_string();

    let listed = text(&clarion(&["threads", "list", "--store", &shown], "").stdout);
    assert!(
        listed.contains("thread_held  demo") && listed.contains("2026-11-26 03:53 UTC  -"),
        "{listed}"
    );
    let refused = clarion(&["threads", "delete", "thread_held", "--store", &shown], "");
    assert_one_line_error(&refused, "is held by run `run_busy`");
    let forced = clarion(
        &[
            "threads",
            "delete",
            "thread_held",
            "--store",
            &shown,
            "--force",
        ],
        "",
    );
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.thread_headers(10).await, Ok(vec![]));
}
