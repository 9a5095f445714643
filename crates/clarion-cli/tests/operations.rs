//! Operating `clarion serve`, tried from outside on the real binary: the log (text and
//! JSON, access lines with route templates and key ids, failed runs with their id and
//! code, no key and no user words unless `--log-content`), `/healthz` and `/readyz`,
//! `Retry-After` on 429, graceful shutdown on SIGTERM mid-stream and after the grace,
//! and `/metrics` — parsed strictly, checked by `promtool`, scraped by a real Prometheus,
//! and kept in sync with docs/operations.md.

// Counters compared here are whole numbers, exactly representable; the metrics test reads
// as one scripted story.
#![allow(clippy::float_cmp, clippy::too_many_lines)]

mod support;

use support::{call, client, flow_for};

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Planted in the key list and in users' messages: neither may reach the log.
const KEY: &str = "sk-planted-operations-key-4711";
const USER_WORDS: &str = "my-secret-plans-for-the-yacht";

/// A tool call for "12,000"; a call missing two parameters for "question"; a 500 quoting
/// the user for "break"; a reply after 2 s for "slowish"; no reply for "hang"; else a
/// reply.
struct Model;

impl Respond for Model {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().cloned().unwrap_or(Value::Null);
        let said = |text: &str| {
            last["role"] == "user" && last["content"].as_str().is_some_and(|c| c.contains(text))
        };
        if said("break") {
            // Providers do quote what they were sent in their errors.
            let quoted = last["content"].as_str().unwrap_or_default();
            return ResponseTemplate::new(500).set_body_json(
                json!({"error": {"message": format!("upstream choked on: {quoted}")}}),
            );
        }
        let message = if said("wait for it") {
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "call_w", "type": "function",
                "function": { "name": "wait_a_while", "arguments": "{}" } }] })
        } else if said("question") {
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "call_q", "type": "function",
                "function": { "name": "calculate_savings_timeline", "arguments": "{\"goal_amount\": 5000}" } }] })
        } else if said("12,000") {
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function",
                "function": { "name": "calculate_savings_timeline", "arguments": "{\"goal_amount\": 12000, \"monthly_income\": 4000, \"monthly_savings\": 1000}" } }] })
        } else {
            json!({ "role": "assistant", "content": "It takes 12 months." })
        };
        let response = ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }],
            "usage": { "prompt_tokens": 100, "completion_tokens": 20 },
        }));
        if said("hang") {
            response.set_delay(Duration::from_secs(600))
        } else if said("slowish") {
            response.set_delay(Duration::from_secs(2))
        } else {
            response
        }
    }
}

async fn model() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Model)
        .mount(&server)
        .await;
    server
}

/// A running `clarion serve`, its API base and everything it wrote to stderr.
struct Server {
    child: Child,
    base: String,
    origin: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_clarion"));
        command
            .arg("serve")
            .args(args)
            .args(["--bind", "127.0.0.1:0"])
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let address = line
                    .strip_prefix("listening on ")
                    .map(ToOwned::to_owned)
                    .or_else(|| {
                        serde_json::from_str::<Value>(&line).ok().and_then(|v| {
                            v["message"]
                                .as_str()
                                .and_then(|m| m.strip_prefix("listening on "))
                                .map(ToOwned::to_owned)
                        })
                    });
                if let Some(address) = address {
                    let _ = tx.send(address);
                }
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let Ok(base) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "clarion serve did not start:\n{}",
                log.lock().map(|l| l.clone()).unwrap_or_default()
            );
        };
        let origin = base.trim_end_matches("/v1").to_owned();
        Self {
            child,
            base,
            origin,
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits for the process to exit (at most `limit`); its exit code and how long it took.
    fn exit_within(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status.code(), started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!(
            "clarion serve did not exit within {limit:?}:\n{}",
            self.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a thread with `words` and waits until its run ends; the run.
async fn converse(c: &reqwest::Client, base: &str, key: Option<&str>, words: &str) -> Value {
    let auth = |r: reqwest::RequestBuilder| match key {
        Some(key) => r.bearer_auth(key),
        None => r,
    };
    let (status, run) = call(auth(c.post(format!("{base}/threads/runs"))).json(&json!({
        "assistant_id": "asst_personal-finance",
        "thread": {"messages": [{"role": "user", "content": words}]},
    })))
    .await;
    assert_eq!(status, 200, "{run}");
    let (thread, id) = (
        run["thread_id"].as_str().unwrap_or_default(),
        run["id"].as_str().unwrap_or_default(),
    );
    for _ in 0..500 {
        let (_, run) = call(auth(c.get(format!("{base}/threads/{thread}/runs/{id}")))).await;
        if run["status"]
            .as_str()
            .is_some_and(|s| ["completed", "failed", "incomplete"].contains(&s))
        {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {id} never ended");
}

fn key_id(key: &str) -> String {
    let output = Command::new("sh")
        .args(["-c", &format!("printf %s '{key}' | sha256sum")])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&output.stdout)[..16].to_owned()
}

#[tokio::test]
async fn the_log_names_runs_routes_and_codes_and_never_a_key_or_what_users_said() {
    let model = model().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()))
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    let keys = format!("sk-other-key-0000,{KEY}");
    let c = client();

    for (format, content) in [("text", false), ("json", false), ("json", true)] {
        let mut args = vec![
            flow.as_str(),
            "--store",
            &store,
            "--api-key-env",
            "CLARION_OPS_KEYS",
            "--log-format",
            format,
            "--rate-limit",
            "50",
        ];
        if content {
            args.push("--log-content");
        }
        let server = Server::start(&args, &[("CLARION_OPS_KEYS", &keys)]);
        let done = converse(
            &c,
            &server.base,
            Some(KEY),
            &format!("I earn $4,000 ({USER_WORDS}). How long to save $12,000 at $1,000 a month?"),
        )
        .await;
        assert_eq!(done["status"], "completed", "{done}");
        let failed = converse(&c, &server.base, Some(KEY), &format!("break {USER_WORDS}")).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        let (status, _) = call(
            c.get(format!("{}/assistants", server.base))
                .bearer_auth("sk-wrong-key-9999"),
        )
        .await;
        assert_eq!(status, 401);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let log = server.log();

        let run_id = failed["id"].as_str().unwrap_or_default();
        let failure = log
            .lines()
            .find(|l| l.contains("run failed (model_unavailable)"))
            .unwrap_or_else(|| panic!("no failed-run line:\n{log}"));
        assert!(failure.contains(run_id), "{failure}");
        assert!(failure.contains("model_unavailable"), "{failure}");
        let access = log
            .lines()
            .find(|l| l.contains("/v1/threads/{thread_id}/runs/{run_id}"))
            .unwrap_or_else(|| panic!("no access line with the route template:\n{log}"));
        assert!(access.contains(&key_id(KEY)), "the key id: {access}");
        assert!(access.contains("200"), "{access}");
        for id in [&done["thread_id"], &done["id"], &failed["id"]] {
            let id = id.as_str().unwrap_or_default();
            assert!(
                !log.lines()
                    .any(|l| l.contains("clarion::access") && l.contains(id)),
                "access lines hold route templates, not ids ({id}):\n{log}"
            );
        }
        assert!(!log.contains(KEY), "the API key leaked:\n{log}");
        assert!(
            !log.contains("sk-wrong-key-9999"),
            "a refused key leaked:\n{log}"
        );
        if format == "json" {
            for line in log.lines() {
                let parsed: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(parsed["level"].is_string(), "{line}");
            }
        } else {
            assert!(failure.contains("WARN"), "{failure}");
        }
        if content {
            assert!(
                log.contains(&format!("upstream choked on: break {USER_WORDS}")),
                "--log-content logs the provider's text:\n{log}"
            );
        } else {
            assert!(!log.contains(USER_WORDS), "the user's words leaked:\n{log}");
        }
    }
}

#[tokio::test]
async fn a_tool_timeout_is_logged_with_its_run_and_code() {
    let model = model().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = dir.path().join("slow.toml");
    std::fs::write(
        &flow,
        format!(
            "[flow]\nname = \"slow-tools\"\n\n[assistant]\nmodel = \"gpt-4.1-mini\"\ninstructions = \"Use the tool.\"\n\n\
             [tools.wait_a_while]\ndescription = \"Waits.\"\n\n[tools.wait_a_while.command]\nargv = [\"sleep\", \"5\"]\n\
             timeout = \"1s\"\nenv = [\"PATH\"]\n\n[provider]\nbase_url = \"{}/v1\"\nstream = false\nmax_retries = 0\n",
            model.uri()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("threads.db").display().to_string();
    let server = Server::start(&[&flow.display().to_string(), "--store", &store], &[]);
    let c = client();
    let (status, run) = call(
        c.post(format!("{}/threads/runs", server.base))
            .json(&json!({
                "assistant_id": "asst_slow-tools",
                "thread": {"messages": [{"role": "user", "content": "wait for it"}]},
            })),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["id"].as_str().unwrap_or_default().to_owned();
    let started = Instant::now();
    let line = loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| l.contains("tool failed (timeout)")) {
            break line.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no tool-timeout line:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(line.contains(&run_id), "the run's span names it: {line}");
    assert!(line.contains("wait_a_while"), "{line}");
    assert!(line.contains("command"), "{line}");
}

#[tokio::test]
async fn probes_answer_without_a_key_and_429_says_when_to_retry() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), "http://127.0.0.1:9/v1")
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    let server = Server::start(
        &[
            &flow,
            "--store",
            &store,
            "--api-key-env",
            "CLARION_OPS_KEYS",
            "--rate-limit",
            "1",
        ],
        &[("CLARION_OPS_KEYS", KEY)],
    );
    let c = client();
    let (status, body) = call(c.get(format!("{}/healthz", server.origin))).await;
    assert_eq!((status, &body), (200, &json!({"status": "ok"})));
    let (status, body) = call(c.get(format!("{}/readyz", server.origin))).await;
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    // An error axum raises itself (a path that is not UTF-8) has the API's JSON body too.
    let (status, body) = call(
        c.get(format!("{}/threads/thread_%FF", server.base))
            .bearer_auth(KEY),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("thread_id")),
        "{body}"
    );
    let mut refused = None;
    for _ in 0..5 {
        let response = c
            .get(format!("{}/assistants", server.base))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if response.status().as_u16() == 429 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.unwrap_or_else(|| panic!("no 429 at 1 request per second"));
    let retry_after = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(retry_after, Some(1));
    let body: Value = refused.json().await.unwrap_or(Value::Null);
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    // Wrong keys are limited per client address: guessing is 429 after the first try.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, _) = call(
            c.get(format!("{}/assistants", server.base))
                .bearer_auth("sk-guess-0000"),
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(statuses[0], 401, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// Reads server-sent events until `want` arrives; every event seen, with its data.
async fn events_until(
    response: &mut reqwest::Response,
    seen: &mut Vec<(String, Value)>,
    want: &str,
) {
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await.unwrap_or_else(|e| panic!("{e}")) {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer[..end].to_owned();
            buffer.drain(..end + 2);
            if let Some(comment) = event.strip_prefix(':') {
                seen.push(("comment".to_owned(), Value::from(comment.trim())));
            }
            if let Some(name) = event.lines().find_map(|l| l.strip_prefix("event: ")) {
                let data = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(Value::Null);
                seen.push((name.to_owned(), data));
                if name == want {
                    return;
                }
            }
        }
    }
}

#[tokio::test]
async fn sigterm_mid_stream_lets_the_run_finish_then_exits_0() {
    let model = model().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()))
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    let mut server = Server::start(
        &[
            &flow,
            "--store",
            &store,
            "--shutdown-grace",
            "20",
            "--sse-keep-alive",
            "1",
        ],
        &[],
    );
    let c = client();
    let mut response = c
        .post(format!("{}/threads/runs", server.base))
        .json(&json!({
            "assistant_id": "asst_personal-finance",
            "stream": true,
            "thread": {"messages": [{"role": "user", "content": "slowish answer please"}]},
        }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = Vec::new();
    events_until(&mut response, &mut seen, "thread.run.in_progress").await;
    server.signal(nix::sys::signal::Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = c.get(format!("{}/healthz", server.origin)).send().await;
    assert!(refused.is_err(), "the listener is closed after SIGTERM");
    events_until(&mut response, &mut seen, "done").await;
    let completed = seen
        .iter()
        .find(|(name, _)| name == "thread.run.completed")
        .map_or_else(
            || panic!("the run did not complete on the stream: {seen:?}"),
            |(_, run)| run.clone(),
        );
    assert!(
        seen.iter()
            .any(|(name, text)| name == "comment" && text == "keep-alive"),
        "a 2 s wait on the model sends a keep-alive comment at 1 s: {seen:?}"
    );
    let (code, took) = server.exit_within(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", server.log());
    assert!(took < Duration::from_secs(10), "{took:?}");
    let log = server.log();
    assert!(log.contains("signal=\"SIGTERM\""), "{log}");
    assert!(log.contains("drained; exiting"), "{log}");

    // Nothing was lost: after a restart the thread holds the question and the answer.
    let server = Server::start(&[&flow, "--store", &store], &[]);
    let thread = completed["thread_id"].as_str().unwrap_or_default();
    let (_, messages) = call(c.get(format!(
        "{}/threads/{thread}/messages?order=asc",
        server.base
    )))
    .await;
    let texts: Vec<&str> = messages["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"][0]["text"]["value"].as_str())
        .collect();
    assert_eq!(texts, ["slowish answer please", "It takes 12 months."]);
}

#[tokio::test]
async fn after_the_grace_a_hung_run_is_left_for_the_next_start_to_resume() {
    let model = model().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()))
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    let mut server = Server::start(&[&flow, "--store", &store, "--shutdown-grace", "1"], &[]);
    let c = client();
    let (_, run) = call(
        c.post(format!("{}/threads/runs", server.base))
            .json(&json!({
                "assistant_id": "asst_personal-finance",
                "thread": {"messages": [{"role": "user", "content": "hang on"}]},
            })),
    )
    .await;
    let (thread, id) = (
        run["thread_id"].as_str().unwrap_or_default().to_owned(),
        run["id"].as_str().unwrap_or_default().to_owned(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, took) = server.exit_within(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", server.log());
    assert!(took < Duration::from_secs(4), "the grace is 1 s: {took:?}");
    assert!(
        server.log().contains("shutdown grace ran out"),
        "{}",
        server.log()
    );

    // The next start resumes the run from its last committed step, against a model that
    // answers this time: the request in flight at the stop is sent again.
    let answering = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "Here you are." }, "finish_reason": "stop" }],
        })))
        .mount(&answering)
        .await;
    let flow = flow_for(dir.path(), &format!("{}/v1", answering.uri()))
        .display()
        .to_string();
    let server = Server::start(&[&flow, "--store", &store], &[]);
    assert!(
        server
            .log()
            .contains("resuming 1 run(s) interrupted by the last stop"),
        "{}",
        server.log()
    );
    let mut run = Value::Null;
    for _ in 0..250 {
        run = call(c.get(format!("{}/threads/{thread}/runs/{id}", server.base)))
            .await
            .1;
        if run["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(run["status"], "completed", "{run}");
    let (_, messages) = call(c.get(format!(
        "{}/threads/{thread}/messages?order=asc",
        server.base
    )))
    .await;
    let texts: Vec<&str> = messages["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"][0]["text"]["value"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["hang on", "Here you are."],
        "the user's message kept, one reply"
    );
}

/// The metric names docs/operations.md lists, in its table.
fn documented_metrics() -> Vec<(String, String)> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md");
    let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("| `clarion_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once('`')?;
            let kind = rest.split('|').nth(1)?.trim().to_owned();
            Some((format!("clarion_{name}"), kind))
        })
        .collect()
}

#[test]
fn docs_list_every_metric_with_its_type() {
    let exported: Vec<(String, String)> = clarion_engine::observe::METRICS
        .iter()
        .chain(clarion_server::observe::METRICS)
        .map(|(name, kind, _)| ((*name).to_owned(), kind.as_str().to_owned()))
        .collect();
    let mut documented = documented_metrics();
    let mut expected = exported.clone();
    documented.sort();
    expected.sort();
    assert_eq!(
        documented, expected,
        "docs/operations.md's metrics table and clarion_engine::observe::METRICS + clarion_server::observe::METRICS differ"
    );
}

fn promtool() -> Option<PathBuf> {
    which("promtool")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn skip_or_fail(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why} (CI installs it in .ci/run)"
    );
    #[allow(clippy::print_stderr)] // the suite's convention for a skipped check
    {
        eprintln!("skipped: {why}");
    }
}

#[tokio::test]
async fn metrics_are_valid_exposition_bounded_and_documented_and_prometheus_scrapes_them() {
    let model = model().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()))
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or_else(|e| panic!("{e}"), |a| a.port());
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let server = Server::start(
        &[&flow, "--store", &store, "--metrics-addr", &metrics_addr],
        &[],
    );
    let c = client();
    assert!(
        server
            .log()
            .contains(&format!("metrics on http://{metrics_addr}/metrics"))
    );
    let (status, _) = call(c.get(format!("{}/metrics", server.origin))).await;
    assert_eq!(
        status, 404,
        "with --metrics-addr the API's listener does not serve /metrics"
    );

    let done = converse(
        &c,
        &server.base,
        None,
        "I earn $4,000. How long to save $12,000 at $1,000 a month?",
    )
    .await;
    assert_eq!(done["status"], "completed");
    let failed = converse(&c, &server.base, None, "break it").await;
    assert_eq!(failed["status"], "failed");
    let asked = converse(&c, &server.base, None, "question: how long to save 5000?").await;
    assert_eq!(
        asked["status"], "completed",
        "a question completes the run: {asked}"
    );

    // A run is counted just after its last commit, which a poller can see first.
    let mut text = String::new();
    for _ in 0..50 {
        text = c
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if text.contains("clarion_runs_active{flow=\"personal-finance\"} 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for run in [&done, &failed, &asked] {
        for id in [&run["id"], &run["thread_id"]] {
            let id = id.as_str().unwrap_or_default();
            assert!(!text.contains(id), "an id ({id}) in the metrics:\n{text}");
        }
    }
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not the text exposition format ({e}):\n{text}"));
    let documented: Vec<String> = documented_metrics().into_iter().map(|(n, _)| n).collect();
    let value = |sample: &prometheus_parse::Sample| match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => 0.0,
    };
    for sample in &scrape.samples {
        // A histogram's series are its name with `_bucket`, `_sum` and `_count`.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| sample.metric.strip_suffix(suffix))
            .filter(|base| documented.iter().any(|d| d == base))
            .unwrap_or(&sample.metric);
        assert!(
            documented.iter().any(|d| family == d),
            "{} is exported but not in docs/operations.md",
            sample.metric
        );
        for (label, value) in sample.labels.iter() {
            assert!(
                !["thread_", "run_", "msg_", "call_"]
                    .iter()
                    .any(|p| value.contains(p)),
                "an id in label {label}={value} of {}",
                sample.metric
            );
        }
    }
    let find = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(value)
            .sum()
    };
    assert_eq!(
        find("clarion_runs_total", &[("status", "completed")]),
        2.0,
        "{text}"
    );
    assert_eq!(
        find(
            "clarion_questions_total",
            &[
                ("tool", "calculate_savings_timeline"),
                ("param", "monthly_income")
            ]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        find(
            "clarion_runs_total",
            &[("status", "failed"), ("code", "model_unavailable")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        find(
            "clarion_tool_calls_total",
            &[
                ("tool", "calculate_savings_timeline"),
                ("executor", "builtin"),
                ("outcome", "ok")
            ]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        find(
            "clarion_model_tokens_total",
            &[("type", "input"), ("system", "openai")]
        ),
        300.0,
        "three answered requests of 100 prompt tokens: {text}"
    );
    // prometheus-parse cuts label values at `}`, which route templates hold: read the line.
    let polls = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "clarion_http_requests_total{method=\"GET\",route=\"/v1/threads/{thread_id}/runs/{run_id}\",status=\"200\"} ",
            )
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert!(polls.is_some_and(|n| n >= 3.0), "{text}");
    assert_eq!(find("clarion_runs_active", &[]), 0.0, "{text}");
    assert!(
        text.contains("clarion_run_duration_seconds_bucket{"),
        "{text}"
    );

    match promtool() {
        Some(promtool) => {
            let mut check = Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{e}"));
            if let Some(mut stdin) = check.stdin.take() {
                use std::io::Write as _;
                stdin
                    .write_all(text.as_bytes())
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let output = check.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                output.status.success(),
                "promtool check metrics:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        None => skip_or_fail("promtool is not installed (Debian package `prometheus`)"),
    }
    match which("prometheus") {
        Some(prometheus) => scraped_by_prometheus(&prometheus, &metrics_addr, dir.path(), &c).await,
        None => skip_or_fail("prometheus is not installed (Debian package `prometheus`)"),
    }
}

/// A real Prometheus on loopback scrapes the server every second; its query API then
/// has the run counters and the histograms.
async fn scraped_by_prometheus(binary: &Path, target: &str, dir: &Path, c: &reqwest::Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or_else(|e| panic!("{e}"), |a| a.port());
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: clarion\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut prometheus = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start prometheus: {e}"));
    let query = |q: &str| {
        c.get(format!(
            "http://127.0.0.1:{port}/api/v1/query?query={}",
            encode(q)
        ))
    };
    let started = Instant::now();
    let mut last = Value::Null;
    let mut found = false;
    while started.elapsed() < Duration::from_secs(40) {
        if let Ok(response) = query("sum(clarion_runs_total{status=\"completed\"})")
            .send()
            .await
        {
            last = response.json().await.unwrap_or(Value::Null);
            if last["data"]["result"][0]["value"][1] == "2" {
                found = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let histogram = if found {
        let response = query("sum(clarion_model_request_duration_seconds_count)")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        response.json::<Value>().await.unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let up = match query("up{job=\"clarion\"}").send().await {
        Ok(response) => response.json::<Value>().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert!(found, "Prometheus never had the run counter: {last}");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    assert_eq!(
        histogram["data"]["result"][0]["value"][1], "4",
        "four model requests in the histogram: {histogram}"
    );
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
