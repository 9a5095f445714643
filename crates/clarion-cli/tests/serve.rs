//! `clarion serve` as a real process: flows served over HTTP against a model server on
//! loopback, a restart after `kill -9` during a run leaves every thread consistent, and
//! the one-line errors for what stops it from starting.

mod support;

use support::{call, client, flow_for};

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A tool call for "12,000", a reply that never comes for the first "slow" request (the
/// server is killed while it waits), else a reply.
struct Model(std::sync::atomic::AtomicBool);

impl Respond for Model {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().cloned().unwrap_or(Value::Null);
        let said = |text: &str| {
            last["role"] == "user" && last["content"].as_str().is_some_and(|c| c.contains(text))
        };
        let message = if said("12,000") {
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function",
                "function": { "name": "calculate_savings_timeline", "arguments": "{\"goal_amount\": 12000, \"monthly_income\": 4000, \"monthly_savings\": 1000}" } }] })
        } else {
            json!({ "role": "assistant", "content": "It takes 12 months." })
        };
        let response = ResponseTemplate::new(200).set_body_json(
            json!({ "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }] }),
        );
        if said("slow") && !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            response.set_delay(Duration::from_secs(600))
        } else {
            response
        }
    }
}

/// Starts `clarion serve` and waits for its address.
fn serve(args: &[&str]) -> (Child, String) {
    let (child, address, _) = serve_logged(args);
    (child, address)
}

/// [`serve`], also returning what the server printed before it listened.
fn serve_logged(args: &[&str]) -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .arg("serve")
        .args(args)
        .args(["--bind", "127.0.0.1:0"])
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    while let Some(Ok(line)) = lines.next() {
        seen.push_str(&line);
        seen.push('\n');
        if let Some(address) = line.strip_prefix("listening on ") {
            // Keep draining stderr so the server never blocks on it.
            std::thread::spawn(move || lines.for_each(drop));
            return (child, address.to_owned(), seen);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("clarion serve did not start:\n{seen}");
}

async fn wait_for(
    c: &reqwest::Client,
    base: &str,
    thread: &str,
    run: &str,
    want: &[&str],
) -> Value {
    for _ in 0..500 {
        let (_, run) = call(c.get(format!("{base}/threads/{thread}/runs/{run}"))).await;
        if run["status"].as_str().is_some_and(|s| want.contains(&s)) {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {run} never reached {want:?}");
}

/// Creates a run (`POST {base}{path}` with `body`) and waits until it rests: it must have
/// completed. The thread's id and the run.
async fn completed_run(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> (String, Value) {
    let (_, run) = call(c.post(format!("{base}{path}")).json(&body)).await;
    let tid = run["thread_id"].as_str().unwrap_or_default().to_owned();
    let rid = run["id"].as_str().unwrap_or_default();
    let done = wait_for(c, base, &tid, rid, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    (tid, done)
}

/// Waits until the model has been sent a request with `text`. A kill must come after the
/// first "slow" request reached the model: that one hangs, and a kill before it was sent
/// would leave the hanging one to the restarted server.
async fn model_holds(model: &MockServer, text: &str) {
    for _ in 0..500 {
        let requests = model.received_requests().await.unwrap_or_default();
        if requests
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains(text))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the model was never sent {text:?}");
}

#[tokio::test]
async fn served_flows_answer_over_http_and_survive_kill_9() {
    let model = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Model(std::sync::atomic::AtomicBool::new(false)))
        .mount(&model)
        .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()))
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    let (mut child, base) = serve(&[&flow, "--store", &store]);
    let c = client();

    let (status, assistants) = call(c.get(format!("{base}/assistants"))).await;
    assert_eq!(
        (status, &assistants["data"][0]["id"]),
        (200, &json!("asst_personal-finance"))
    );
    let (_, run) = call(c.post(format!("{base}/threads/runs")).json(&json!({
        "assistant_id": "asst_personal-finance",
        "thread": {"messages": [{"role": "user", "content": "I earn $4,000. How long to save $12,000 at $1,000 a month?"}]},
    })))
    .await;
    let done = run["thread_id"].as_str().unwrap_or_default().to_owned();
    let finished = wait_for(
        &c,
        &base,
        &done,
        run["id"].as_str().unwrap_or_default(),
        &["completed", "failed"],
    )
    .await;
    assert_eq!(finished["status"], "completed", "{finished}");
    let (_, thread) = call(c.get(format!("{base}/threads/{done}"))).await;
    assert_eq!(thread["clarion"]["slots"]["goal_amount"], 12000);

    // A run in flight when the process is killed.
    let (_, run) = call(c.post(format!("{base}/threads/runs")).json(&json!({
        "assistant_id": "asst_personal-finance",
        "thread": {"messages": [{"role": "user", "content": "slow please"}]},
    })))
    .await;
    let (tid, rid) = (
        run["thread_id"].as_str().unwrap_or_default().to_owned(),
        run["id"].as_str().unwrap_or_default().to_owned(),
    );
    wait_for(&c, &base, &tid, &rid, &["in_progress"]).await;
    model_holds(&model, "slow please").await;
    child.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();

    // The restart resumes the run from its last committed step: the model request that was
    // in flight is sent again, and the run completes with one reply.
    let (mut child, base, started) = serve_logged(&[&flow, "--store", &store]);
    assert!(
        started.contains("resuming 1 run(s) interrupted by the last stop"),
        "{started}"
    );
    let run = wait_for(&c, &base, &tid, &rid, &["completed", "failed"]).await;
    assert_eq!(run["status"], "completed", "{run}");
    let (_, messages) = call(c.get(format!("{base}/threads/{tid}/messages?order=asc"))).await;
    let roles: Vec<(&str, &str)> = messages["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m["role"].as_str()?,
                m["content"][0]["text"]["value"].as_str()?,
            ))
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("user", "slow please"),
            ("assistant", "It takes 12 months.")
        ]
    );
    let (status, _) = call(
        c.post(format!("{base}/threads/{tid}/messages"))
            .json(&json!({"role": "user", "content": "again"})),
    )
    .await;
    assert_eq!(status, 200, "the thread is unlocked");
    let (_, messages) = call(c.get(format!("{base}/threads/{done}/messages?order=asc"))).await;
    let texts: Vec<&str> = messages["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"][0]["text"]["value"].as_str())
        .collect();
    assert_eq!(
        texts,
        [
            "I earn $4,000. How long to save $12,000 at $1,000 a month?",
            "It takes 12 months."
        ]
    );
    child.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();
}

#[test]
fn what_stops_the_server_is_one_line_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[flow]\nname = \"x\"\n").unwrap_or_else(|e| panic!("{e}"));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_clarion"))
            .arg("serve")
            .args(args)
            .env_remove("CLARION_TEST_NO_KEYS")
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let store = dir.path().join("t.db").display().to_string();
    let output = run(&[&broken.display().to_string(), "--store", &store]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("some flows have errors"));
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/personal-finance.toml");
    let output = run(&[
        &flow.display().to_string(),
        "--store",
        &store,
        "--api-key-env",
        "CLARION_TEST_NO_KEYS",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--api-key-env CLARION_TEST_NO_KEYS: the variable is unset or empty"),
        "{stderr}"
    );
    let output = run(&["no-such.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, "# nothing yet\nsha256:123\n").unwrap_or_else(|e| panic!("{e}"));
    let keys = keys.display().to_string();
    let output = run(&[
        &flow.display().to_string(),
        "--store",
        &store,
        "--api-keys-file",
        &keys,
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!(
            "--api-keys-file {keys}: line 2: `sha256:` must be followed by"
        )),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn keys_from_a_file_by_value_or_by_digest() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), "http://127.0.0.1:9/v1");
    let store = dir.path().join("threads.db").display().to_string();
    let keys = dir.path().join("keys.txt");
    // sha256("sk-by-digest"), as `printf %s sk-by-digest | sha256sum` prints it.
    let output = Command::new("sh")
        .args(["-c", "printf %s sk-by-digest | sha256sum"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let digest = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(digest.len(), 64, "sha256sum is available");
    std::fs::write(
        &keys,
        format!("# team keys\nsk-by-value\nsha256:{digest}\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let keys = keys.display().to_string();
    let (mut server, address) = serve(&[
        &flow.display().to_string(),
        "--store",
        &store,
        "--api-keys-file",
        &keys,
    ]);
    let base = address;
    let c = client();
    let (status, body) = call(c.get(format!("{base}/assistants"))).await;
    assert_eq!(status, 401, "{body}");
    for key in ["sk-by-value", "sk-by-digest"] {
        let (status, body) = call(c.get(format!("{base}/assistants")).bearer_auth(key)).await;
        assert_eq!(status, 200, "{key}: {body}");
    }
    let (status, _) = call(c.get(format!("{base}/assistants")).bearer_auth("sk-other")).await;
    assert_eq!(status, 401);
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_second_server_on_the_same_store_says_runs_are_leased() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), "http://127.0.0.1:9/v1")
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    let (mut first, _, log) = serve_logged(&[&flow, "--store", &store]);
    assert!(!log.contains("another process"), "{log}");
    let (mut second, _, log) = serve_logged(&[&flow, "--store", &store, "--run-lease", "3"]);
    assert!(
        log.contains("runs are leased (3 s): another process shares this store"),
        "{log}"
    );
    for child in [&mut first, &mut second] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `--base-url`, `--api` and `--model` replace what the flow's `[provider]` and assistant
/// say; `--max-body-bytes` refuses a larger body with 413; `--request-timeout` is taken.
#[tokio::test]
async fn provider_and_request_flags_override_the_flow() {
    let model = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Model(std::sync::atomic::AtomicBool::new(false)))
        .mount(&model)
        .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The flow points nowhere: only --base-url can reach the model.
    let flow = flow_for(dir.path(), "http://127.0.0.1:9/v1")
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    let base_url = format!("{}/v1", model.uri());
    let (mut child, base) = serve(&[
        &flow,
        "--store",
        &store,
        "--base-url",
        &base_url,
        "--api",
        "chat-completions",
        "--model",
        "flag-model",
        "--max-body-bytes",
        "4096",
        "--request-timeout",
        "5",
    ]);
    let c = client();
    let (_, run) = call(c.post(format!("{base}/threads/runs")).json(&json!({
        "assistant_id": "asst_personal-finance",
        "thread": {"messages": [{"role": "user", "content": "hello"}]},
    })))
    .await;
    let finished = wait_for(
        &c,
        &base,
        run["thread_id"].as_str().unwrap_or_default(),
        run["id"].as_str().unwrap_or_default(),
        &["completed", "failed"],
    )
    .await;
    assert_eq!(finished["status"], "completed", "{finished}");
    let requests = model.received_requests().await.unwrap_or_default();
    let body: Value = requests
        .first()
        .and_then(|r| serde_json::from_slice(&r.body).ok())
        .unwrap_or(Value::Null);
    assert_eq!(body["model"], "flag-model");
    assert!(
        requests[0].url.path().ends_with("/v1/chat/completions"),
        "{}",
        requests[0].url
    );

    let big = "x".repeat(8192);
    let response = c
        .post(format!("{base}/threads"))
        .json(&json!({"messages": [{"role": "user", "content": big}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 413, "over --max-body-bytes");
    let _ = child.kill();
    let _ = child.wait();
}

/// `confirm` through `clarion serve` with an unmodified Assistants client: the question is
/// an assistant message marked `clarion_kind = "confirmation"`, the user answers in words,
/// and the transfer (the flow's real command tool) runs only then.
#[tokio::test]
async fn a_confirmation_is_a_question_message_and_the_answer_in_words_runs_the_call() {
    let model = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(support::BankModel)
        .mount(&model)
        .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = support::bank_flow_for(dir.path(), &format!("{}/v1", model.uri()));
    let store = dir.path().join("threads.db").display().to_string();
    let (mut child, base) = serve(&[&flow.display().to_string(), "--store", &store]);
    let c = client();

    let (tid, _) = completed_run(&c, &base, "/threads/runs", json!({
        "assistant_id": "asst_bank-transfer",
        "thread": {"messages": [{"role": "user", "content": "Move $200 from checking to savings."}]},
    }))
    .await;
    let (_, messages) = call(c.get(format!("{base}/threads/{tid}/messages?limit=1"))).await;
    let question = &messages["data"][0];
    assert_eq!(question["role"], "assistant");
    assert_eq!(
        question["metadata"]["clarion_kind"], "confirmation",
        "{question}"
    );
    assert_eq!(
        question["content"][0]["text"]["value"],
        "Transfer $200 from checking to savings?"
    );
    let (_, thread) = call(c.get(format!("{base}/threads/{tid}"))).await;
    assert_eq!(
        thread["clarion"]["pending"]["tool"], "transfer_funds",
        "{thread}"
    );

    let (_, done) = completed_run(
        &c,
        &base,
        &format!("/threads/{tid}/runs"),
        json!({
            "assistant_id": "asst_bank-transfer",
            "additional_messages": [{"role": "user", "content": "sure, go ahead"}],
        }),
    )
    .await;
    let rid = done["id"].as_str().unwrap_or_default().to_owned();
    let (_, steps) = call(c.get(format!("{base}/threads/{tid}/runs/{rid}/steps?order=asc"))).await;
    let outputs: Vec<String> = steps["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            s["step_details"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["function"]["output"].as_str().map(ToOwned::to_owned))
        .collect();
    assert!(
        outputs.iter().any(|o| o.contains("\"reference\":\"TX-")),
        "the transfer ran once confirmed: {steps}"
    );
    let (_, messages) = call(c.get(format!("{base}/threads/{tid}/messages?limit=1"))).await;
    assert_eq!(messages["data"][0]["content"][0]["text"]["value"], "Done.");
    let _ = child.kill();
    let _ = child.wait();
}

/// A flow that hands off, served: one assistant (the entry flow) for an unmodified client;
/// the run goes on with personal-finance after the handoff, the thread says which flow has
/// it, and the next message is personal-finance's.
#[tokio::test]
async fn a_handoff_is_one_assistant_and_the_thread_records_the_flow_that_has_it() {
    let model = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(support::DeskModel)
        .mount(&model)
        .await;
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = support::desk_flow_for(root.path(), &format!("{}/v1", model.uri()));
    let store = root.path().join("threads.db").display().to_string();
    let (mut child, base) = serve(&[&flow.display().to_string(), "--store", &store]);
    let c = client();

    let (tid, _) = completed_run(
        &c,
        &base,
        "/threads/runs",
        json!({
            "assistant_id": "asst_front-desk",
            "thread": {"messages": [{"role": "user", "content": "How long to save $12,000?"}]},
        }),
    )
    .await;
    let (_, messages) = call(c.get(format!("{base}/threads/{tid}/messages?limit=1"))).await;
    assert_eq!(
        messages["data"][0]["content"][0]["text"]["value"],
        "It takes 12 months."
    );
    let (_, thread) = call(c.get(format!("{base}/threads/{tid}"))).await;
    assert_eq!(
        thread["clarion"]["active_flow"], "personal-finance",
        "{thread}"
    );
    assert_eq!(
        thread["clarion"]["assistant_id"], "asst_front-desk",
        "{thread}"
    );

    completed_run(
        &c,
        &base,
        &format!("/threads/{tid}/runs"),
        json!({
            "assistant_id": "asst_front-desk",
            "additional_messages": [{"role": "user", "content": "Thanks"}],
        }),
    )
    .await;
    let requests = model.received_requests().await.unwrap_or_default();
    let last: Value = requests.last().map_or(Value::Null, |r| {
        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
    });
    let tools: Vec<&str> = last["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(
        tools.contains(&"calculate_savings_timeline") && !tools.contains(&"money"),
        "{tools:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
