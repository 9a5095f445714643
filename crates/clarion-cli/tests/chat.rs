//! `clarion chat` over pipes and in a real pseudo-terminal: a conversation against an
//! HTTP model server on loopback, stored in SQLite, resumed with `--thread`; on a terminal
//! the line editor's history, Ctrl-C (clears the line at the prompt, cancels a run during
//! one), Ctrl-D, the spinner, and a terminal closing mid-run; and the one-line errors for
//! what can go wrong before a conversation starts.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use expectrl::process::unix::{Signal, WaitStatus};
use expectrl::session::OsSession as Session;
use expectrl::{Expect as _, Regex};
use serde_json::{Value, json};
use support::stream;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers tool calls first, then text, by how many messages the request carries; streams
/// when asked to; takes a minute over any turn whose user message says "slow".
struct Model;

/// The message [`Model`] answers `messages` with.
fn answer(messages: &[Value]) -> Value {
    let last = messages.last().cloned().unwrap_or(Value::Null);
    if last["role"] == "user"
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
    }
}

fn slow(messages: &[Value]) -> bool {
    messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .is_some_and(|c| c.contains("slow"))
}

struct Streaming;

impl Respond for Streaming {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let message = answer(&messages);
        let template = if body["stream"] == true {
            ResponseTemplate::new(200).set_body_raw(stream(&message), "text/event-stream")
        } else {
            ResponseTemplate::new(200).set_body_json(
                json!({ "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }] }),
            )
        };
        // Only the model's answer after a tool ran is slow: the call is then answered in
        // the thread, and cancelling must leave it that way.
        if slow(&messages) && messages.iter().any(|m| m["role"] == "tool") {
            template.set_delay(Duration::from_secs(60))
        } else if messages.last().is_some_and(|m| m["content"] == "pause") {
            template.set_delay(Duration::from_millis(600))
        } else {
            template
        }
    }
}

impl Respond for Model {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        ResponseTemplate::new(200).set_body_json(
            json!({ "choices": [{ "index": 0, "message": answer(&messages), "finish_reason": "stop" }] }),
        )
    }
}

/// A model server on loopback answering every POST with `model`.
async fn serving(model: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(model)
        .mount(&server)
        .await;
    server
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn flow_for(dir: &Path, base_url: &str) -> PathBuf {
    flow_with(dir, base_url, false)
}

fn flow_with(dir: &Path, base_url: &str, stream: bool) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("flows/personal-finance.toml"))
        .unwrap_or_default();
    let path = dir.join("finance.toml");
    std::fs::write(
        &path,
        format!(
            "{text}\n[provider]\nbase_url = \"{base_url}\"\nstream = {stream}\nmax_retries = 0\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path
}

fn chat(args: &[&str], input: &str) -> Output {
    chat_in(Path::new("."), args, input)
}

/// `clarion chat ARGS…` run in `dir`, fed `input` on a pipe.
fn chat_in(dir: &Path, args: &[&str], input: &str) -> Output {
    chat_piped(dir, args, input.as_bytes())
}

/// `clarion chat ARGS…` in `dir`, with no provider settings from the environment.
fn chat_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clarion"));
    command
        .arg("chat")
        .args(args)
        .current_dir(dir)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY");
    command
}

/// `clarion chat ARGS…` run in `dir`, fed the bytes `input` on a pipe.
fn chat_piped(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = chat_command(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).unwrap_or_else(|e| panic!("{e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

/// `clarion test` on a saved scenario passes, unchanged.
fn clarion_test_passes(scenario: &Path) {
    let test = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .arg("test")
        .arg(scenario)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let out = text(&test.stdout);
    assert!(test.status.success(), "{out}{}", text(&test.stderr));
    assert!(out.contains("1 passed, 0 failed"), "{out}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_piped_conversation_is_stored_and_resumable() {
    let server = serving(Model).await;
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

/// `clarion chat ARGS…` in `dir` with `stdin` as its standard input.
fn chat_from(dir: &Path, args: &[&str], stdin: Stdio) -> Output {
    chat_command(dir, args)
        .stdin(stdin)
        .output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"))
}

/// A pipe is read on the runtime; a file or a socket on a thread of their own. All
/// three read the same lines: `\r\n` endings, a last line without its newline, and the
/// end of the input at a line that is not UTF-8.
#[tokio::test]
async fn a_pipe_a_file_and_a_socket_are_read_alike() {
    let server = serving(Model).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    flow_for(dir.path(), &format!("{}/v1", server.uri()));
    let args = ["finance.toml", "--store", ":memory:"];
    let answered = "You said: one. I remember 2 messages.\nYou said: two. I remember 4 messages.\n";
    for (input, expected) in [
        (&b"one\r\ntwo"[..], answered),
        (
            &b"one\n\xff\xfe\nthree\n"[..],
            "You said: one. I remember 2 messages.\n",
        ),
    ] {
        let piped = chat_piped(dir.path(), &args, input);
        let file = dir.path().join("input.txt");
        std::fs::write(&file, input).unwrap_or_else(|e| panic!("{e}"));
        let from_file = chat_from(
            dir.path(),
            &args,
            Stdio::from(std::fs::File::open(&file).unwrap_or_else(|e| panic!("{e}"))),
        );
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
        let writer = std::thread::spawn(move || {
            let mut ours = ours;
            let _ = ours.write_all(input);
        });
        let from_socket = chat_from(
            dir.path(),
            &args,
            Stdio::from(std::os::fd::OwnedFd::from(theirs)),
        );
        let _ = writer.join();
        for (how, output) in [
            ("pipe", &piped),
            ("file", &from_file),
            ("socket", &from_socket),
        ] {
            assert_eq!(
                output.status.code(),
                Some(0),
                "{how}: {}",
                text(&output.stderr)
            );
            assert_eq!(text(&output.stdout), expected, "{how}");
        }
    }
}

#[tokio::test]
async fn a_memory_store_keeps_the_session_and_nothing_after_it() {
    let server = serving(Model).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", server.uri()));
    let output = chat_in(
        dir.path(),
        &["finance.toml", "--store", ":memory:"],
        "hello\nagain\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "You said: hello. I remember 2 messages.\nYou said: again. I remember 4 messages.\n",
        "the thread lives for the session"
    );
    let log = text(&output.stderr);
    assert!(
        log.contains("ends with this session: --store :memory: keeps nothing"),
        "{log}"
    );
    assert!(!log.contains("resume with"), "nothing to resume: {log}");
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [flow
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())],
        "no file was written"
    );
}

/// After `/reset` the new thread is stored with its first turn, or when a command or the
/// session's end needs it: every thread the session named can be resumed.
#[tokio::test]
async fn reset_threads_are_stored_when_spoken_in_used_or_left() {
    let server = serving(Model).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", server.uri()));
    let store = dir.path().join("threads.db");
    let (flow, store) = (flow.display().to_string(), store.display().to_string());

    let session = chat(
        &[&flow, "--store", &store],
        "Hello.\n/reset\n/slots\n/reset\nHello again.\n/reset\n",
    );
    assert_eq!(session.status.code(), Some(0), "{}", text(&session.stderr));
    let log = text(&session.stderr);
    let new: Vec<String> = log
        .lines()
        .filter_map(|l| l.strip_prefix("new thread "))
        .filter_map(|l| l.split_whitespace().next())
        .map(ToOwned::to_owned)
        .collect();
    let [used, spoken, left] = new.as_slice() else {
        panic!("three new threads in {log}");
    };
    assert!(
        log.contains(&format!("thread {left} saved; resume with --thread {left}")),
        "{log}"
    );
    assert_eq!(
        text(&session.stdout).matches("You said:").count(),
        2,
        "{}",
        text(&session.stdout)
    );
    // The model counts the messages it is sent, the instructions among them.
    for (thread, remembered) in [(used, 2), (spoken, 4), (left, 2)] {
        let resumed = chat(
            &[&flow, "--store", &store, "--thread", thread],
            "And now?\n",
        );
        assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
        let out = text(&resumed.stdout);
        assert!(
            out.starts_with(&format!(
                "You said: And now?. I remember {remembered} messages."
            )),
            "{thread}: {out}"
        );
    }
}

/// `/save NAME` writes the conversation as a scenario with its accepted snapshot, and
/// `clarion test` passes on it unchanged; a second save under the same name is refused.
#[tokio::test]
async fn slash_save_writes_a_scenario_that_clarion_test_passes() {
    let server = serving(Model).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", server.uri()));
    let store = dir.path().join("threads.db");
    let (flow, store) = (flow.display().to_string(), store.display().to_string());
    let saved = chat(
        &[&flow, "--store", &store],
        "I earn $4,000 a month. How long to save $12,000 at $1,000 a month?\nThanks!\n/save saved_from_chat\n/save saved_from_chat\n/save bad name\n",
    );
    let log = text(&saved.stderr);
    assert_eq!(saved.status.code(), Some(0), "{log}");
    let scenario = dir.path().join("finance/scenarios/saved_from_chat.toml");
    assert!(
        log.contains(&format!("saved {}", scenario.display())),
        "{log}"
    );
    assert!(log.contains("exists; choose another name"), "{log}");
    assert!(log.contains("`bad name` cannot name a scenario"), "{log}");
    let file = std::fs::read_to_string(&scenario).unwrap_or_else(|e| panic!("{e}"));
    assert!(file.contains("user = \"Thanks!\""), "{file}");
    assert!(file.contains("goal_amount = 12000"), "{file}");
    assert!(
        dir.path()
            .join("finance/scenarios/snapshots/saved_from_chat.snap")
            .is_file()
    );
    clarion_test_passes(&scenario);
}

/// A flow that hands off: `clarion chat` on the front desk shows the handoff, the next
/// request is personal-finance's (its tools, the same message), the next message stays
/// with it, and `/save` writes a scenario that `clarion test` passes.
#[tokio::test]
async fn chat_follows_a_handoff_and_saves_it_as_a_scenario() {
    let server = serving(support::DeskModel).await;
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = support::desk_flow_for(root.path(), &format!("{}/v1", server.uri()));
    let dir = root.path().join("flows");
    let store = dir.join("threads.db");
    let (flow, store) = (flow.display().to_string(), store.display().to_string());
    let out = chat(
        &[&flow, "--store", &store],
        "How long to save $12,000 at $1,000 a month? I earn $4,000.\nThanks!\n/save handed\n",
    );
    let log = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains(">> handed to personal-finance"), "{log}");
    let requests = server.received_requests().await.unwrap_or_default();
    let offered: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            body["tools"]
                .as_array()
                .map(|tools| {
                    tools
                        .iter()
                        .filter_map(|t| t["function"]["name"].as_str().map(ToOwned::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    assert!(offered[0].contains(&"money".to_owned()), "{offered:?}");
    for later in &offered[1..] {
        assert!(
            later.contains(&"calculate_savings_timeline".to_owned())
                && !later.contains(&"money".to_owned()),
            "personal-finance has the thread after the handoff: {offered:?}"
        );
    }
    let scenario = dir.join("front-desk/scenarios/handed.toml");
    let file = std::fs::read_to_string(&scenario).unwrap_or_else(|e| panic!("{e}: {log}"));
    assert!(file.contains("call = \"money\""), "{file}");
    clarion_test_passes(&scenario);
}

/// A conversation with confirmations — the transfer changed, then confirmed — saved with
/// `/save`: the readings of the answers become `decide` steps, the engine's own call is
/// not scripted, the confirmed call's result becomes the tool's mock, and `clarion test`
/// passes on the file unchanged.
#[tokio::test]
async fn slash_save_keeps_confirmations_as_decide_steps() {
    let server = serving(support::BankModel).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = support::bank_flow_for(dir.path(), &format!("{}/v1", server.uri()));
    let store = dir.path().join("threads.db");
    let (flow, store) = (flow.display().to_string(), store.display().to_string());
    let saved = chat(
        &[&flow, "--store", &store],
        "Move $200 from checking to savings.\nno wait, make it 300\nsure, go ahead\n/save changed_then_confirmed\n",
    );
    let log = text(&saved.stderr);
    assert_eq!(saved.status.code(), Some(0), "{log}");
    let out = text(&saved.stdout);
    assert!(
        out.contains("Transfer $300 from checking to savings?"),
        "{out}"
    );
    let scenario = dir
        .path()
        .join("bank-transfer/scenarios/changed_then_confirmed.toml");
    let file = std::fs::read_to_string(&scenario).unwrap_or_else(|e| panic!("{e}: {log}"));
    for wanted in [
        "decide = \"change\"",
        "decide = \"confirm\"",
        "[mocks.transfer_funds.result]",
        "confirmation_asked = \"transfer_funds\"",
    ] {
        assert!(file.contains(wanted), "{wanted} missing from:\n{file}");
    }
    let test = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .arg("test")
        .arg(&scenario)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let out = text(&test.stdout);
    assert!(test.status.success(), "{out}{}", text(&test.stderr));
}

/// `--base-url`, `--api`, `--model` and `--no-stream` replace the flow's provider settings;
/// `--verbose` shows a tool's arguments.
#[tokio::test]
async fn provider_flags_override_the_flow_and_verbose_shows_arguments() {
    let server = serving(Streaming).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The flow streams from nowhere: only the flags can make this conversation work.
    let flow = flow_with(dir.path(), "http://127.0.0.1:9/v1", true);
    let store = dir.path().join("threads.db");
    let (flow, store) = (flow.display().to_string(), store.display().to_string());
    let base_url = format!("{}/v1", server.uri());
    let out = chat(
        &[
            &flow,
            "--store",
            &store,
            "--base-url",
            &base_url,
            "--api",
            "chat-completions",
            "--model",
            "flag-model",
            "--no-stream",
            "--verbose",
        ],
        "I earn $4,000 a month. How long to save $12,000 at $1,000 a month?\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "It takes 12 months.\n");
    assert!(
        text(&out.stderr).contains("monthly_income"),
        "--verbose shows the call's arguments: {}",
        text(&out.stderr)
    );
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(!requests.is_empty());
    for request in &requests {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        assert_eq!(body["model"], "flag-model");
        assert_ne!(body["stream"], true, "--no-stream");
    }
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
            "error: the run ended failed: the model failed: cannot connect to 127.0.0.1:{port} (connection refused)"
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
    // A provider URL that cannot be parsed is found before the first turn, not at it.
    let bad_url = chat(
        &[
            &flow,
            "--store",
            &store,
            "--base-url",
            "http://exa mple.com/v1",
        ],
        "hello\n",
    );
    assert_eq!(bad_url.status.code(), Some(2));
    assert!(
        text(&bad_url.stderr).contains("the provider URL `http://exa mple.com/v1` is not valid"),
        "{}",
        text(&bad_url.stderr)
    );
    assert!(
        text(&bad_url.stdout).is_empty(),
        "{}",
        text(&bad_url.stdout)
    );
}

/// `clarion chat FLOW --store STORE ARGS…` in a fresh pseudo-terminal.
fn terminal(flow: &Path, store: &Path, args: &[&str]) -> Session {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clarion"));
    command
        .arg("chat")
        .arg(flow)
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm");
    let mut session = Session::spawn(command).unwrap_or_else(|e| panic!("cannot spawn: {e}"));
    session.set_expect_timeout(Some(Duration::from_secs(30)));
    session
}

/// Waits for `needle` on the terminal; returns everything printed up to and including it.
fn expect(session: &mut Session, needle: &str) -> String {
    let found = session.expect(needle).unwrap_or_else(|e| {
        let mut seen = vec![0; 16_384];
        let n = session.try_read(&mut seen).unwrap_or(0);
        panic!(
            "waiting for {needle:?}: {e}; the terminal shows {:?}",
            String::from_utf8_lossy(&seen[..n])
        )
    });
    format!(
        "{}{}",
        String::from_utf8_lossy(found.before()),
        String::from_utf8_lossy(&found[0])
    )
}

fn send(session: &mut Session, keys: &str) {
    session
        .send(keys)
        .unwrap_or_else(|e| panic!("typing {keys:?}: {e}"));
}

fn thread_id(session: &mut Session) -> String {
    let found = session
        .expect(Regex("thread (thread_[0-9A-Za-z_-]+)"))
        .unwrap_or_else(|e| panic!("no thread id: {e}"));
    String::from_utf8_lossy(found.get(1).unwrap_or_default()).into_owned()
}

fn exit_code(session: &Session) -> i32 {
    match session.get_process().wait() {
        Ok(WaitStatus::Exited(_, code)) => code,
        other => panic!("the process did not exit normally: {other:?}"),
    }
}

/// Every tool call the model was ever sent is answered by a tool message.
async fn assert_consistent(server: &MockServer) {
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(!requests.is_empty());
    for request in requests {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        for (at, message) in messages.iter().enumerate() {
            for call in message["tool_calls"].as_array().into_iter().flatten() {
                assert!(
                    messages[at + 1..]
                        .iter()
                        .any(|m| m["role"] == "tool" && m["tool_call_id"] == call["id"]),
                    "dangling tool call {call} in {messages:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_conversation_streams_keeps_history_and_ends_on_ctrl_d() {
    let server = serving(Streaming).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_with(dir.path(), &format!("{}/v1", server.uri()), true);
    let store = dir.path().join("state/threads.db");

    let mut session = terminal(&flow, &store, &[]);
    expect(&mut session, "Ctrl-D to leave");
    expect(&mut session, "you › ");
    send(&mut session, "hello there\r");
    expect(
        &mut session,
        "You said: hello there. I remember 2 messages.",
    );
    expect(&mut session, "you › ");
    // Ctrl-C at the prompt drops what was typed, and only that.
    send(&mut session, "never sent");
    expect(&mut session, "never sent");
    send(&mut session, "\x03");
    expect(&mut session, "you › ");
    send(&mut session, "again\r");
    expect(&mut session, "You said: again. I remember 4 messages.");
    expect(&mut session, "you › ");
    // Up arrow recalls the previous line.
    send(&mut session, "\x1b[A\x1b[A\r");
    expect(
        &mut session,
        "You said: hello there. I remember 6 messages.",
    );
    expect(&mut session, "you › ");
    // A reply that takes a moment: the spinner turns, and is erased before the text.
    send(&mut session, "pause\r");
    expect(&mut session, "thinking…");
    // Resizing the terminal mid-run changes nothing.
    session
        .get_process_mut()
        .set_window_size(100, 30)
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = expect(&mut session, "You said: pause.");
    let spun = shown.rfind("thinking…").unwrap_or(0);
    assert!(
        shown[spun..].contains("\r\x1b[2KYou said: pause."),
        "the spinner's line is erased before the reply: {shown:?}"
    );
    expect(&mut session, "you › ");
    send(&mut session, "\x04");
    expect(&mut session, "saved; resume with --thread");
    assert_eq!(exit_code(&session), 0, "Ctrl-D exits cleanly");

    let history = std::fs::read_to_string(dir.path().join("state/history"))
        .unwrap_or_else(|e| panic!("the history is kept beside the store: {e}"));
    assert!(
        history.contains("hello there") && history.contains("again"),
        "{history}"
    );
    assert!(!history.contains("never sent"), "{history}");

    // A new session recalls the last session's lines.
    let mut session = terminal(&flow, &store, &[]);
    expect(&mut session, "you › ");
    send(&mut session, "\x1b[A\r");
    expect(&mut session, "You said: pause. I remember 2 messages.");
    expect(&mut session, "you › ");
    send(&mut session, "\x04");
    assert_eq!(exit_code(&session), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_a_terminal_cancels_a_slow_run_and_the_thread_stays_consistent() {
    let server = serving(Streaming).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_with(dir.path(), &format!("{}/v1", server.uri()), true);
    let store = dir.path().join("threads.db");

    let mut session = terminal(&flow, &store, &[]);
    let thread = thread_id(&mut session);
    expect(&mut session, "you › ");
    send(
        &mut session,
        "slow: I earn $4,000; how long to save $12,000 at $1,000 a month?\r",
    );
    expect(&mut session, "← calculate_savings_timeline ok");
    // The spinner turns while the model takes its time.
    expect(&mut session, "thinking…");
    send(&mut session, "\x03");
    expect(&mut session, "cancelling…");
    let ended = expect(&mut session, "you › ");
    assert!(ended.contains("the run ended cancelled"), "{ended}");
    assert!(
        !ended.contains("It takes 12 months"),
        "the slow reply never came: {ended}"
    );
    let transcript = dir.path().join("session.txt");
    send(
        &mut session,
        &format!("/transcript {}\r", transcript.display()),
    );
    expect(&mut session, "transcript of this session written");
    expect(&mut session, "you › ");
    send(&mut session, "\x04");
    assert_eq!(exit_code(&session), 0);

    let transcript = std::fs::read_to_string(&transcript).unwrap_or_else(|e| panic!("{e}"));
    let calls = transcript.matches("  → ").count();
    assert!(
        calls == 1
            && transcript.matches("  ← ").count() == calls
            && transcript.contains("cancelled]"),
        "every call has its result and the run is cancelled:\n{transcript}"
    );

    // Resumed: the model gets a history in which every call is answered.
    let resumed = chat(
        &[
            &flow.display().to_string(),
            "--store",
            &store.display().to_string(),
            "--thread",
            &thread,
        ],
        "and now?\n",
    );
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    assert!(
        text(&resumed.stdout).starts_with("You said: and now?."),
        "{}",
        text(&resumed.stdout)
    );
    assert_consistent(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_closed_mid_run_ends_the_session_and_keeps_the_thread() {
    let server = serving(Streaming).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_with(dir.path(), &format!("{}/v1", server.uri()), true);
    let store = dir.path().join("threads.db");

    let mut session = terminal(&flow, &store, &[]);
    let thread = thread_id(&mut session);
    expect(&mut session, "you › ");
    send(
        &mut session,
        "slow: I earn $4,000; how long to save $12,000 at $1,000 a month?\r",
    );
    expect(&mut session, "← calculate_savings_timeline ok");
    expect(&mut session, "thinking…");
    // What the kernel sends when the terminal goes away.
    session
        .get_process_mut()
        .kill(Signal::SIGHUP)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exit_code(&session), 2, "a closed terminal is exit 2");

    let resumed = chat(
        &[
            &flow.display().to_string(),
            "--store",
            &store.display().to_string(),
            "--thread",
            &thread,
        ],
        "still there?\n/slots\n",
    );
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    let out = text(&resumed.stdout);
    assert!(out.starts_with("You said: still there?."), "{out}");
    assert!(
        out.contains("goal_amount = 12000"),
        "the slots were kept: {out}"
    );
    assert_consistent(&server).await;
}

#[tokio::test]
async fn pipes_never_get_a_spinner() {
    let server = serving(Model).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", server.uri()));
    let store = dir.path().join("threads.db");
    let output = chat(
        &[
            &flow.display().to_string(),
            "--store",
            &store.display().to_string(),
        ],
        "I earn $4,000. How long to save $12,000 at $1,000 a month?\n",
    );
    assert_eq!(output.status.code(), Some(0));
    let log = text(&output.stderr);
    assert!(!log.contains("thinking") && !log.contains('\r'), "{log}");
}

/// `clarion demo ARGS…` with `env` (and no provider variables but those given).
fn demo(args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clarion"));
    command
        .arg("demo")
        .args(args)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_MODEL")
        .env_remove("CLARION_LOCAL_MODEL_SCRIPT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

/// A stand-in for `scripts/local-model.sh` that logs its steps to `steps.log` beside it;
/// `start` prints `url`, and `install` fails when `url` is empty.
fn fake_script(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("fake-local-model.sh");
    let log = dir.join("steps.log");
    let install = if url.is_empty() {
        "echo '[local-model] building llama-server' >&2; echo '[local-model] error: build failed' >&2; exit 1"
    } else {
        "echo '[local-model] model: cached' >&2"
    };
    std::fs::write(
        &path,
        format!(
            "echo \"$1\" >> '{}'\ncase $1 in\n  install) {install} ;;\n  start) echo 'ready' >&2; echo '{url}' ;;\n  *) exit 2 ;;\nesac\n",
            log.display()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path
}

#[tokio::test]
async fn the_demo_talks_to_the_provider_in_the_environment() {
    let server = serving(Streaming).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("threads.db");
    // The local model is not touched when a provider is configured.
    let script = fake_script(dir.path(), "http://127.0.0.1:9/v1");
    let output = demo(
        &["--store", &store.display().to_string()],
        &[
            ("OPENAI_BASE_URL", &format!("{}/v1", server.uri())),
            ("OPENAI_API_KEY", "sk-test"),
            ("CLARION_LOCAL_MODEL_SCRIPT", &script.display().to_string()),
        ],
        "I earn $4,000. How long to save $12,000 at $1,000 a month?\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "It takes 12 months.\n");
    assert!(
        text(&output.stderr).contains("personal-finance · gpt-4.1-mini at"),
        "{}",
        text(&output.stderr)
    );
    assert!(!dir.path().join("steps.log").exists());
    let requests = server.received_requests().await.unwrap_or_default();
    let first: Value = serde_json::from_slice(&requests[0].body).unwrap_or(Value::Null);
    assert_eq!(first["model"], "gpt-4.1-mini");
    assert_eq!(first["stream"], true);
}

/// `clarion demo --model` names the model over `OPENAI_MODEL`; `--verbose` shows arguments.
#[tokio::test]
async fn the_demos_model_flag_wins_over_the_environment() {
    let server = serving(Streaming).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("threads.db");
    let output = demo(
        &[
            "--store",
            &store.display().to_string(),
            "--model",
            "flag-model",
            "--verbose",
        ],
        &[
            ("OPENAI_BASE_URL", &format!("{}/v1", server.uri())),
            ("OPENAI_MODEL", "env-model"),
        ],
        "I earn $4,000. How long to save $12,000 at $1,000 a month?\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("monthly_income"),
        "{}",
        text(&output.stderr)
    );
    let requests = server.received_requests().await.unwrap_or_default();
    let first: Value = serde_json::from_slice(&requests[0].body).unwrap_or(Value::Null);
    assert_eq!(first["model"], "flag-model");
}

#[tokio::test]
async fn without_a_provider_the_demo_installs_and_starts_the_local_model() {
    let server = serving(Streaming).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("threads.db");
    let script = fake_script(dir.path(), &format!("{}/v1", server.uri()));
    let output = demo(
        &["--store", &store.display().to_string()],
        &[("CLARION_LOCAL_MODEL_SCRIPT", &script.display().to_string())],
        "hello\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "You said: hello. I remember 2 messages.\n"
    );
    let steps = std::fs::read_to_string(dir.path().join("steps.log")).unwrap_or_default();
    assert_eq!(steps, "install\nstart\n");
    let log = text(&output.stderr);
    assert!(
        log.contains("[local-model] model: cached") && log.contains("stop it with: bash"),
        "the script's progress is shown: {log}"
    );
    let requests = server.received_requests().await.unwrap_or_default();
    let first: Value = serde_json::from_slice(&requests[0].body).unwrap_or(Value::Null);
    assert_eq!(first["model"], "qwen2.5-coder-1.5b-instruct");
}

#[test]
fn a_failing_local_model_install_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("threads.db");
    let script = fake_script(dir.path(), "");
    let output = demo(
        &["--store", &store.display().to_string()],
        &[("CLARION_LOCAL_MODEL_SCRIPT", &script.display().to_string())],
        "hello\n",
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stdout).is_empty());
    let log = text(&output.stderr);
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        [format!(
            "error: the local model could not be installed: `bash {} install` exited 1 (its log is above); fix that and run the command again, or set OPENAI_BASE_URL (and OPENAI_API_KEY) to use a provider instead",
            script.display()
        )],
        "{log}"
    );
    assert!(log.contains("[local-model] error: build failed"), "{log}");
    let steps = std::fs::read_to_string(dir.path().join("steps.log")).unwrap_or_default();
    assert_eq!(
        steps, "install\n",
        "nothing is started after a failed install"
    );
    assert!(!store.exists(), "no thread is created");

    let missing = demo(
        &["--store", &store.display().to_string()],
        &[("CLARION_LOCAL_MODEL_SCRIPT", "/no/such/script.sh")],
        "",
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("CLARION_LOCAL_MODEL_SCRIPT names /no/such/script.sh"),
        "{}",
        text(&missing.stderr)
    );
}
