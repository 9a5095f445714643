//! Two `clarion serve` processes on one PostgreSQL database: a thread created on one is
//! read and continued on the other, racing run creates from both let exactly one win, and
//! when the replica driving a run is killed with SIGKILL mid-model-call, the other takes
//! the run over once its lease expires and completes it — the user's message kept, one
//! reply, the protocol held; and the `openai` SDK alternating between the replicas request
//! by request sees one conversation (`tests/python/replicas.py`). Two servers on one SQLite
//! file lease runs the same way, and one takes over a killed one's run too.
//!
//! The server comes from `CLARION_TEST_POSTGRES` (`eval "$(bash scripts/postgres.sh
//! start)"`); each test makes a database of its own. Without it the tests print "skipped:
//! why", except under `CI=true`, where they fail.
#![allow(clippy::print_stderr)] // the measured takeover time, for the record

mod support;

use support::{call, client, flow_for, sdk_python};

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clarion_store_postgres::testing::{fresh_database, server_url};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The lease the replicas run with: short, so a takeover is quick to see, and long enough
/// that a replica on a loaded 2-core machine renews it in time (a third of it).
const LEASE_SECS: &str = "2";

/// A tool call for "12,000"; for "slow", a reply that never comes the first time it is
/// asked and comes at once after (the takeover re-sends the request); else a reply. With
/// `delay`, every reply waits that long (racing creates need runs that last).
struct Model {
    slow_calls: AtomicUsize,
    hung: Mutex<HashSet<String>>,
    delay: Duration,
}

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
        if said("slow") && self.slow_calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return response.set_delay(Duration::from_secs(600));
        }
        // "[hang first]" in the thread's first user message: its first request never gets
        // its answer (the replica is killed meanwhile); "[hang after tool]": the first one
        // that carries a tool output. The same request again (after a takeover) is answered.
        let first = messages
            .iter()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned();
        let at = if messages.iter().any(|m| m["role"] == "tool") {
            "[hang after tool]"
        } else {
            "[hang first]"
        };
        if first.contains(at)
            && self
                .hung
                .lock()
                .is_ok_and(|mut hung| hung.insert(first.clone()))
        {
            return response.set_delay(Duration::from_secs(600));
        }
        response.set_delay(self.delay)
    }
}

async fn model(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Model {
            slow_calls: AtomicUsize::new(0),
            hung: Mutex::new(HashSet::new()),
            delay,
        })
        .mount(&server)
        .await;
    server
}

/// A `clarion serve` process, killed when dropped.
struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `clarion serve` on `store` and waits for its address.
fn replica(flow: &Path, store: &str) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .arg("serve")
        .arg(flow)
        .args([
            "--store",
            store,
            "--run-lease",
            LEASE_SECS,
            "--bind",
            "127.0.0.1:0",
        ])
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
            std::thread::spawn(move || lines.for_each(drop));
            return Replica {
                child,
                base: address.to_owned(),
            };
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
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (_, body) = call(c.get(format!("{base}/threads/{thread}/runs/{run}"))).await;
        if body["status"].as_str().is_some_and(|s| {
            [
                "completed",
                "failed",
                "cancelled",
                "expired",
                "incomplete",
                "requires_action",
            ]
            .contains(&s)
        }) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} did not settle in {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The thread's messages, oldest first, as (role, text).
async fn messages(c: &reqwest::Client, base: &str, thread: &str) -> Vec<(String, String)> {
    let (status, page) = call(c.get(format!(
        "{base}/threads/{thread}/messages?order=asc&limit=100"
    )))
    .await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or_default().to_owned(),
                m["content"][0]["text"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

async fn setup(
    test: &str,
    delay: Duration,
) -> Option<(MockServer, tempfile::TempDir, PathBuf, String)> {
    let url = server_url(test)?;
    let database = fresh_database(&url).await;
    let model = model(delay).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()));
    Some((model, dir, flow, database))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_threads_and_one_takes_over_a_killed_ones_run() {
    let test = "two_replicas_share_threads_and_one_takes_over_a_killed_ones_run";
    let Some((model, _dir, flow, database)) = setup(test, Duration::ZERO).await else {
        return;
    };
    let a = replica(&flow, &database);
    let b = replica(&flow, &database);
    let c = client();

    // A thread and a full tool loop on A; read and continued on B.
    let (status, run) = call(c.post(format!("{}/threads/runs", a.base)).json(&json!({
        "assistant_id": "asst_personal-finance",
        "thread": {"messages": [{"role": "user", "content": "I earn $4,000. How long to save $12,000 at $1,000 a month?"}]},
    }))).await;
    assert_eq!(status, 200, "{run}");
    let thread = run["thread_id"].as_str().unwrap_or_default().to_owned();
    let run_id = run["id"].as_str().unwrap_or_default().to_owned();
    let done = wait_for(&c, &b.base, &thread, &run_id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (status, header) = call(c.get(format!("{}/threads/{thread}", b.base))).await;
    assert_eq!(
        (status, header["id"].as_str()),
        (200, Some(thread.as_str()))
    );
    assert_eq!(
        messages(&c, &a.base, &thread).await,
        messages(&c, &b.base, &thread).await
    );

    let (status, added) = call(
        c.post(format!("{}/threads/{thread}/messages", b.base))
            .json(&json!({"role": "user", "content": "And at $2,000 a month?"})),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    let (status, run) = call(
        c.post(format!("{}/threads/{thread}/runs", b.base))
            .json(&json!({"assistant_id": "asst_personal-finance"})),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["id"].as_str().unwrap_or_default().to_owned();
    let done = wait_for(&c, &a.base, &thread, &run_id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let seen = messages(&c, &a.base, &thread).await;
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(
        seen[2],
        ("user".to_owned(), "And at $2,000 a month?".to_owned())
    );

    // A run on A whose model request hangs; A is killed mid-request, and B takes the run
    // over once A's lease expires, and completes it.
    let takeover = kill_mid_run_and_take_over(&model, a, &b).await;
    eprintln!(
        "takeover: the run completed on the surviving replica {takeover:?} after the kill (lease {LEASE_SECS}s)"
    );
    assert!(takeover < Duration::from_secs(8), "took {takeover:?}");

    // `clarion threads` reads the same database.
    let listed = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(["threads", "list", "--store", &database])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(stdout.contains(&thread), "{stdout}");
}

/// Starts a run whose model request hangs on `a`, kills `a` mid-request, and waits for the
/// other server `b` to take the run over and complete it; how long that took.
async fn kill_mid_run_and_take_over(model: &MockServer, mut a: Replica, b: &Replica) -> Duration {
    let c = client();
    let before = model.received_requests().await.map_or(0, |r| r.len());
    let (status, run) = call(c.post(format!("{}/threads/runs", a.base)).json(&json!({
        "assistant_id": "asst_personal-finance",
        "thread": {"messages": [{"role": "user", "content": "slow: how long to save $5,000?"}]},
    })))
    .await;
    assert_eq!(status, 200, "{run}");
    let thread = run["thread_id"].as_str().unwrap_or_default().to_owned();
    let run_id = run["id"].as_str().unwrap_or_default().to_owned();
    let waiting = Instant::now();
    while model.received_requests().await.map_or(0, |r| r.len()) == before {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the model was never asked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.child.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = a.child.wait();
    let killed = Instant::now();
    let done = wait_for(&c, &b.base, &thread, &run_id, Duration::from_secs(15)).await;
    let takeover = killed.elapsed();
    assert_eq!(done["status"], "completed", "{done}");
    let seen = messages(&c, &b.base, &thread).await;
    assert_eq!(
        seen,
        vec![
            (
                "user".to_owned(),
                "slow: how long to save $5,000?".to_owned()
            ),
            ("assistant".to_owned(), "It takes 12 months.".to_owned()),
        ]
    );
    takeover
}

/// No PostgreSQL needed: two servers share one SQLite file. The second no longer waits for
/// a process that opens the file alone: it takes the killed one's run over when the lease
/// expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_sqlite_file_take_over_a_killed_ones_run() {
    let model = model(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()));
    let store = dir.path().join("threads.db").display().to_string();
    let a = replica(&flow, &store);
    let b = replica(&flow, &store);
    let takeover = kill_mid_run_and_take_over(&model, a, &b).await;
    eprintln!(
        "takeover on SQLite: the run completed on the other server {takeover:?} after the kill (lease {LEASE_SECS}s)"
    );
    assert!(takeover < Duration::from_secs(8), "took {takeover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_run_creates_on_two_replicas_let_exactly_one_win() {
    let test = "racing_run_creates_on_two_replicas_let_exactly_one_win";
    let Some((_model, _dir, flow, database)) = setup(test, Duration::from_secs(5)).await else {
        return;
    };
    let (first, second) = (replica(&flow, &database), replica(&flow, &database));
    let c = client();
    for round in 0..5 {
        let (status, thread) = call(c.post(format!("{}/threads", first.base)).json(&json!({
            "messages": [{"role": "user", "content": format!("round {round}: how long to save $5,000?")}],
        }))).await;
        assert_eq!(status, 200, "{thread}");
        let id = thread["id"].as_str().unwrap_or_default().to_owned();
        let body = json!({"assistant_id": "asst_personal-finance"});
        let (x, y) = tokio::join!(
            call(
                c.post(format!("{}/threads/{id}/runs", first.base))
                    .json(&body)
            ),
            call(
                c.post(format!("{}/threads/{id}/runs", second.base))
                    .json(&body)
            ),
        );
        let statuses = [x.0, y.0];
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {x:?} {y:?}"
        );
        assert!(statuses.contains(&400), "round {round}: {x:?} {y:?}");
        let (status, runs) = call(c.get(format!("{}/threads/{id}/runs", second.base))).await;
        assert_eq!(status, 200);
        assert_eq!(runs["data"].as_array().map(Vec::len), Some(1), "{runs}");
    }
}

#[test]
fn a_bad_store_url_says_what_is_wrong_without_the_password() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let flow = workspace.join("flows/personal-finance.toml");
    let run = |store: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_clarion"))
            .current_dir(dir.path())
            .arg("serve")
            .arg(&flow)
            .args(["--store", store, "--bind", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run("postgres://ada:hunter2-secret@127.0.0.1:1/clarion");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1/clarion"), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
    let (code, stderr) = run("postgres://ada:hunter2-secret@host:port/clarion");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is not a PostgreSQL URL"), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
}

/// How many requests the model server has answered or is holding.
async fn requests(model: &MockServer) -> usize {
    model.received_requests().await.map_or(0, |r| r.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_run_and_duplicates_no_output() {
    let name = "a_replica_killed_under_load_loses_no_run_and_duplicates_no_output";
    let Some((model, _dir, flow, database)) = setup(name, Duration::ZERO).await else {
        return;
    };
    let mut doomed = replica(&flow, &database);
    let survivor = replica(&flow, &database);
    let c = client();
    // Eight runs on the doomed replica, each hanging on its first model request; on the
    // survivor, four get a reply and four a server-side tool call first.
    let mut runs = Vec::new();
    for i in 0..8 {
        let text = if i % 2 == 0 {
            format!("run {i}: how long to save $5,000? [hang first]")
        } else {
            format!("run {i}: how long to save $12,000 at $1,000 a month? [hang first]")
        };
        let (status, run) = call(
            c.post(format!("{}/threads/runs", doomed.base))
                .json(&json!({
                    "assistant_id": "asst_personal-finance",
                    "thread": {"messages": [{"role": "user", "content": text.clone()}]},
                })),
        )
        .await;
        assert_eq!(status, 200, "{run}");
        runs.push((
            run["thread_id"].as_str().unwrap_or_default().to_owned(),
            run["id"].as_str().unwrap_or_default().to_owned(),
            text,
            i % 2 == 1,
        ));
    }
    // Every run is waiting on its hanging request.
    let waiting = Instant::now();
    while requests(&model).await < 8 {
        if waiting.elapsed() > Duration::from_secs(20) {
            let mut states = Vec::new();
            for (thread, run, _, _) in &runs {
                let (_, body) =
                    call(c.get(format!("{}/threads/{thread}/runs/{run}", doomed.base))).await;
                states.push(format!("{} {}", body["status"], body["last_error"]));
            }
            panic!(
                "the runs never reached the model: {} requests; {states:?}",
                requests(&model).await
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    doomed.child.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = doomed.child.wait();
    let killed = Instant::now();
    let mut finished = Vec::new();
    for (thread, run, _, _) in &runs {
        let done = wait_for(&c, &survivor.base, thread, run, Duration::from_secs(20)).await;
        assert_eq!(done["status"], "completed", "{done}");
        finished.push(format!("{:.1}s", killed.elapsed().as_secs_f64()));
    }
    eprintln!("load takeover: each run seen completed at {finished:?}");
    eprintln!(
        "load takeover: {} runs completed on the survivor {:?} after the kill (lease {LEASE_SECS}s)",
        runs.len(),
        killed.elapsed()
    );
    // Every acknowledged user message is there, with one reply; no call has two outputs.
    let store = clarion_store_postgres::PostgresStore::connect(&database)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (thread, _, text, with_tool) in &runs {
        let seen = messages(&c, &survivor.base, thread).await;
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], ("user".to_owned(), text.clone()));
        assert_eq!(seen[1].0, "assistant", "{seen:?}");
        assert!(!seen[1].1.is_empty(), "{seen:?}");
        let stored = clarion_engine::ThreadStore::thread(&store, thread)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut calls = Vec::new();
        let mut outputs = Vec::new();
        for message in &stored.messages {
            match &message.kind {
                clarion_engine::MessageKind::ToolCalls { calls: made, .. } => {
                    calls.extend(made.iter().map(|call| call.id.clone()));
                }
                clarion_engine::MessageKind::ToolOutput { call_id, .. } => {
                    outputs.push(call_id.clone());
                }
                _ => {}
            }
        }
        assert_eq!(calls, outputs, "one output per call, in order: {stored:?}");
        assert_eq!(calls.len(), usize::from(*with_tool), "{stored:?}");
        assert!(stored.active_run.is_none(), "unlocked");
    }
}

/// The model of the SDK conversation: the call without the income, the call with it, the
/// client tool, and a reply after each tool output.
struct SdkModel;

impl Respond for SdkModel {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().cloned().unwrap_or(Value::Null);
        // The newest user message (context the flow injects may follow it).
        let user = messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned();
        let said = |text: &str| last["role"] != "tool" && user.contains(text);
        let call = |id: &str, name: &str, arguments: &str| {
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": id, "type": "function",
                "function": { "name": name, "arguments": arguments } }] })
        };
        let text = |content: &str| json!({ "role": "assistant", "content": content });
        let message = if said("12,000") {
            call(
                "call_plan",
                "calculate_savings_timeline",
                r#"{"goal_amount": 12000, "monthly_savings": 1000}"#,
            )
        } else if said("I earn") {
            call(
                "call_income",
                "calculate_savings_timeline",
                r#"{"monthly_income": 4000}"#,
            )
        } else if said("Remind me") {
            call("call_remind", "set_reminder", r#"{"cadence": "monthly"}"#)
        } else if last["role"] == "tool" && last["tool_call_id"] == "call_remind" {
            text("Your monthly reminder is set.")
        } else if last["role"] == "tool" {
            text("It takes 12 months.")
        } else {
            text("You're welcome.")
        };
        ResponseTemplate::new(200).set_body_json(
            json!({ "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }] }),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_alternating_between_two_replicas_sees_one_conversation() {
    let Some(url) = server_url("the_openai_sdk_alternating_between_two_replicas") else {
        return;
    };
    let Some(python) = sdk_python() else { return };
    let database = fresh_database(&url).await;
    let model = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(SdkModel)
        .mount(&model)
        .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let finance = flow_for(dir.path(), &format!("{}/v1", model.uri()));
    let text = std::fs::read_to_string(&finance)
        .unwrap_or_default()
        .replacen("name = \"personal-finance\"", "name = \"replicas\"", 1);
    let flow = dir.path().join("replicas.toml");
    std::fs::write(
        &flow,
        format!(
            "{text}\n[tools.set_reminder]\ndescription = \"Sets a savings reminder in the app.\"\nclient = true\n\n[tools.set_reminder.params.cadence]\ntype = \"string\"\ndescription = \"How often.\"\nask = \"How often?\"\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let first = replica(&flow, &database);
    let second = replica(&flow, &database);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/replicas.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .env("CLARION_REPLICA_A", &first.base)
        .env("CLARION_REPLICA_B", &second.base)
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "the SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
