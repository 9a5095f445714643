//! OpenTelemetry traces, tried from outside on the real binary: `clarion serve`, `clarion
//! chat` and `clarion test --live` export their spans over OTLP/HTTP to a receiver in this
//! test, which decodes them with `opentelemetry-proto` as a collector would. A tool loop
//! with a clarification, started with a client's W3C `traceparent`, must arrive as one tree
//! — the client's span → the HTTP request → the run → model calls and the tool call, with
//! the question and the injected context as events — with the `gen_ai.*` attributes, and
//! with no key, no exporter header and no word the user said in any attribute. An ignored
//! load test measures what traces and metrics scrapes cost the server's CPU.

// The span tree is checked as one story.
#![allow(clippy::too_many_lines)]

mod support;

use support::{client, flow_for};

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Secrets and words that must never reach a span, an event or the resource.
const MODEL_KEY: &str = "sk-planted-model-key-trace-0451";
const API_KEY: &str = "sk-planted-api-key-trace-0452";
const EXPORTER_SECRET: &str = "planted-collector-token-0453";
const USER_WORDS: &str = "my-secret-plans-for-the-yacht";

/// The client's trace: its id and the id of its span that sends the requests.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// Chat Completions, not streamed: a call missing two parameters when the user says
/// "question", the whole call when they say "12,000", otherwise (after a tool output) a
/// reply. Every answer reports its tokens.
struct Model;

impl Respond for Model {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().cloned().unwrap_or(Value::Null);
        let said = |text: &str| {
            last["role"] == "user" && last["content"].as_str().is_some_and(|c| c.contains(text))
        };
        let (message, finish) = if said("question") {
            (
                json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "call_q", "type": "function",
                    "function": { "name": "calculate_savings_timeline", "arguments": "{\"goal_amount\": 12000}" } }] }),
                "tool_calls",
            )
        } else if said("12,000") {
            (
                json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function",
                    "function": { "name": "calculate_savings_timeline", "arguments": "{\"goal_amount\": 12000, \"monthly_income\": 4000, \"monthly_savings\": 1000}" } }] }),
                "tool_calls",
            )
        } else {
            (
                json!({ "role": "assistant", "content": "It takes 12 months." }),
                "stop",
            )
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
            "usage": { "prompt_tokens": 100, "completion_tokens": 20 },
        }))
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

/// A span as received, with its resource's attributes.
type ReceivedSpan = (Vec<KeyValue>, Span);

/// What an OTLP/HTTP receiver got: every span with its resource's attributes, and the
/// headers of every export request.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    headers: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Received {
    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (at most 20 s) until `done` holds for the spans received.
    async fn until(&self, done: impl Fn(&[(Vec<KeyValue>, Span)]) -> bool) -> Vec<Span> {
        let started = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans.into_iter().map(|(_, span)| span).collect();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the expected spans never arrived; got {:#?}",
                spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An OTLP/HTTP trace receiver on loopback (`POST /v1/traces`, protobuf), as a collector
/// listens on port 4318; its base URL.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body)
                        .unwrap_or_else(|e| panic!("not an OTLP trace export: {e}"));
                    let headers = headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_owned(),
                                v.to_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect();
                    if let Ok(mut all) = sink.headers.lock() {
                        all.push(headers);
                    }
                    if let Ok(mut spans) = sink.spans.lock() {
                        for resource in request.resource_spans {
                            let attributes =
                                resource.resource.map(|r| r.attributes).unwrap_or_default();
                            for scope in resource.scope_spans {
                                for span in scope.spans {
                                    spans.push((attributes.clone(), span));
                                }
                            }
                        }
                    }
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{address}"), received)
}

/// The environment that turns traces on, towards `endpoint`, with a secret header.
fn otel_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer {EXPORTER_SECRET}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ("OPENAI_API_KEY", MODEL_KEY.to_owned()),
        ("CLARION_TRACE_KEYS", API_KEY.to_owned()),
    ]
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(kv.value.as_ref()))
}

fn attr(span: &Span, key: &str) -> String {
    attribute(&span.attributes, key)
        .unwrap_or_else(|| panic!("span `{}` has no `{key}`: {:?}", span.name, span.attributes))
}

/// Every attribute key and value the receiver saw — spans', events' and resources' —
/// and every span and event name, each with where it was.
fn every_value(received: &[(Vec<KeyValue>, Span)]) -> Vec<(String, String)> {
    fn push(all: &mut Vec<(String, String)>, kvs: &[KeyValue], place: &str) {
        for kv in kvs {
            all.push((
                format!("{place}: {}", kv.key),
                format!("{} = {}", kv.key, text(kv.value.as_ref())),
            ));
        }
    }
    let mut all = Vec::new();
    for (resource, span) in received {
        push(&mut all, resource, "resource");
        push(&mut all, &span.attributes, &span.name);
        for event in &span.events {
            push(
                &mut all,
                &event.attributes,
                &format!("{} event {}", span.name, event.name),
            );
            all.push((format!("{}: event name", span.name), event.name.clone()));
        }
        all.push(("span name".to_owned(), span.name.clone()));
    }
    all
}

fn assert_nothing_secret(received: &[(Vec<KeyValue>, Span)]) {
    for (place, value) in every_value(received) {
        for secret in [MODEL_KEY, API_KEY, EXPORTER_SECRET, USER_WORDS, "4,000"] {
            assert!(
                !value.contains(secret),
                "`{secret}` reached a trace, in {place}: {value}"
            );
        }
    }
}

/// A running `clarion serve` and its API base.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(flow: &str, store: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_clarion"));
        command
            .args(["serve", flow, "--store", store, "--bind", "127.0.0.1:0"])
            .args(["--api-key-env", "CLARION_TRACE_KEYS"])
            .env_remove("OPENAI_BASE_URL")
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
                if let Some(address) = line.strip_prefix("listening on ") {
                    let _ = tx.send(address.to_owned());
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
        Self { child, base, log }
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM, and the exit: spans still queued must be exported before it.
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert_eq!(status.code(), Some(0), "{}", self.log());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("clarion serve did not exit:\n{}", self.log());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `body` to `url` as the client's span; the JSON answer.
async fn post(c: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = c
        .post(url)
        .bearer_auth(API_KEY)
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200);
    response.json().await.unwrap_or(Value::Null)
}

/// Waits until the run ends; its final status.
async fn ended(c: &reqwest::Client, base: &str, run: &Value) -> String {
    let (thread, id) = (
        run["thread_id"].as_str().unwrap_or_default(),
        run["id"].as_str().unwrap_or_default(),
    );
    for _ in 0..500 {
        let run: Value = c
            .get(format!("{base}/threads/{thread}/runs/{id}"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or(Value::Null);
        let status = run["status"].as_str().unwrap_or_default();
        if ["completed", "failed", "incomplete"].contains(&status) {
            return status.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {id} never ended");
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
        .collect()
}

/// The `gen_ai.*` attributes of a model request answered with `finish`.
fn assert_model_call(span: &Span, finish: &str) {
    assert_eq!(span.name, "chat gpt-4.1-mini");
    assert_eq!(attr(span, "gen_ai.operation.name"), "chat");
    assert_eq!(attr(span, "gen_ai.system"), "openai");
    assert_eq!(attr(span, "gen_ai.request.model"), "gpt-4.1-mini");
    assert_eq!(attr(span, "gen_ai.usage.input_tokens"), "100");
    assert_eq!(attr(span, "gen_ai.usage.output_tokens"), "20");
    assert_eq!(attr(span, "gen_ai.response.finish_reasons"), finish);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_the_tool_loop_under_the_clients_trace_without_content() {
    let model = model().await;
    let (endpoint, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()))
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    let mut server = Server::start(&flow, &store, &otel_env(&endpoint));
    let c = client();
    let base = server.base.clone();

    // A question first: the model leaves two parameters out and the user is asked.
    let first = post(
        &c,
        &format!("{base}/threads/runs"),
        &json!({
            "assistant_id": "asst_personal-finance",
            "thread": {"messages": [{"role": "user", "content": format!("A question ({USER_WORDS}): how long to save $12,000?")}]},
        }),
    )
    .await;
    assert_eq!(ended(&c, &base, &first).await, "completed");
    // The answer: the whole call, the tool runs, its rule injects context, a reply.
    let thread = first["thread_id"].as_str().unwrap_or_default();
    post(
        &c,
        &format!("{base}/threads/{thread}/messages"),
        &json!({"role": "user", "content": "I earn $4,000 and save $1,000 a month toward $12,000."}),
    )
    .await;
    let second = post(
        &c,
        &format!("{base}/threads/{thread}/runs"),
        &json!({"assistant_id": "asst_personal-finance"}),
    )
    .await;
    assert_eq!(ended(&c, &base, &second).await, "completed");
    server.stop();

    let spans = received
        .until(|spans| spans.iter().filter(|(_, s)| s.name == "run").count() >= 2)
        .await;
    let all = received.spans();
    let ours: Vec<Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .cloned()
        .collect();

    // The requests that carried the client's `traceparent` are its span's children.
    let requests = named(&ours, "POST /v1/threads/runs");
    assert_eq!(
        requests.len(),
        1,
        "{:#?}",
        ours.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for request in named(&ours, "POST /v1/threads/runs")
        .into_iter()
        .chain(named(&ours, "POST /v1/threads/{thread_id}/runs"))
    {
        assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN);
        assert_eq!(request.kind, 2, "a server span");
        assert_eq!(attr(request, "http.request.method"), "POST");
        assert_eq!(attr(request, "http.response.status_code"), "200");
    }
    let runs = named(&ours, "run");
    assert_eq!(runs.len(), 2, "both runs are in the client's trace");
    for run in &runs {
        let parent = ours
            .iter()
            .find(|s| s.span_id == run.parent_span_id)
            .unwrap_or_else(|| panic!("the run's parent is not in the trace"));
        assert!(
            parent.name.starts_with("POST /v1/threads"),
            "a run's parent is the request that started it, not {}",
            parent.name
        );
        assert_eq!(attr(run, "flow"), "personal-finance");
        assert!(attr(run, "run_id").starts_with("run_"));
    }
    let (asked, answered) = if children(&ours, runs[0]).len() == 1 {
        (runs[0], runs[1])
    } else {
        (runs[1], runs[0])
    };

    // The clarification: one model call, then the question as an event of the run.
    let calls = children(&ours, asked);
    assert_eq!(calls.len(), 1);
    assert_model_call(calls[0], "tool_calls");
    let question = asked
        .events
        .iter()
        .find(|e| e.name == "question asked")
        .unwrap_or_else(|| panic!("no question event: {:?}", asked.events));
    assert_eq!(
        attribute(&question.attributes, "tool").as_deref(),
        Some("calculate_savings_timeline")
    );
    assert_eq!(
        attribute(&question.attributes, "params").as_deref(),
        Some("monthly_income,monthly_savings")
    );

    // The loop: a model call, the tool, the context it injected, a model call.
    let mut steps = children(&ours, answered);
    steps.sort_by_key(|s| s.start_time_unix_nano);
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "chat gpt-4.1-mini",
            "execute_tool calculate_savings_timeline",
            "chat gpt-4.1-mini"
        ]
    );
    assert_model_call(steps[0], "tool_calls");
    assert_model_call(steps[2], "stop");
    let tool = steps[1];
    assert_eq!(attr(tool, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(attr(tool, "gen_ai.tool.name"), "calculate_savings_timeline");
    assert_eq!(attr(tool, "clarion.tool.executor"), "builtin");
    assert_eq!(attr(tool, "clarion.tool.outcome"), "ok");
    assert!(attr(tool, "gen_ai.tool.call.id").starts_with("call_"));
    assert!(
        answered.events.iter().any(|e| e.name == "context injected"
            && attribute(&e.attributes, "tool").as_deref() == Some("calculate_savings_timeline")),
        "no context event: {:?}",
        answered.events
    );

    for run in &runs {
        let ended = run.events.iter().find(|e| e.name == "run ended");
        let ended = ended.unwrap_or_else(|| panic!("no `run ended` event: {:?}", run.events));
        assert_eq!(
            attribute(&ended.attributes, "status").as_deref(),
            Some("completed")
        );
    }

    // Who sent them, with the exporter's header, and nothing anyone must not read.
    assert_eq!(
        attribute(&all[0].0, "service.name").as_deref(),
        Some("clarion")
    );
    let headers = received
        .headers
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    assert!(
        headers
            .iter()
            .all(|h| h.get("authorization") == Some(&format!("Bearer {EXPORTER_SECRET}")))
    );
    assert_nothing_secret(&all);
    let log = server.log();
    assert!(!log.contains(EXPORTER_SECRET), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chat_exports_its_run_before_it_exits() {
    let model = model().await;
    let (endpoint, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()))
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_clarion"));
    command
        .args(["chat", &flow, "--store", &store])
        .env_remove("OPENAI_BASE_URL")
        .env_remove("RUST_LOG")
        // Long enough that only the flush at exit can deliver the spans.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in otel_env(&endpoint) {
        if name != "OTEL_BSP_SCHEDULE_DELAY" {
            command.env(name, value);
        }
    }
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            let words = format!(
                "I earn $4,000 ({USER_WORDS}) and save $1,000 a month: how long to $12,000?\n"
            );
            stdin
                .write_all(words.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("It takes 12 months."));

    // Already there when the process is gone: nothing waited for a schedule.
    let spans: Vec<Span> = received.spans().into_iter().map(|(_, s)| s).collect();
    let runs = named(&spans, "run");
    assert_eq!(
        runs.len(),
        1,
        "{:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let run = runs[0];
    assert!(run.parent_span_id.is_empty(), "a chat's run is a root span");
    let mut steps = children(&spans, run);
    steps.sort_by_key(|s| s.start_time_unix_nano);
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "chat gpt-4.1-mini",
            "execute_tool calculate_savings_timeline",
            "chat gpt-4.1-mini"
        ]
    );
    assert_model_call(steps[2], "stop");
    assert_nothing_secret(&received.spans());
}

#[test]
fn a_protocol_other_than_http_protobuf_is_refused_with_what_to_do() {
    let output = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(["validate", "flows/personal-finance.toml"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && stderr.contains("http/protobuf"),
        "{stderr}"
    );

    // Turned off, the same variables change nothing.
    let output = Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(["validate", "flows/personal-finance.toml"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_SDK_DISABLED", "true")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// User and system CPU the process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
}

/// One arm of the overhead measurement: `clarion serve` with `env`, `clients` concurrent
/// clients each streaming `loops` tool loops; the server's CPU seconds, the loops done
/// and the wall time. With `scrape`, `/metrics` is read every second meanwhile.
#[allow(
    clippy::cast_precision_loss,
    reason = "CPU ticks of seconds fit an f64"
)]
async fn load_arm(
    flow: &str,
    dir: &Path,
    env: &[(&str, String)],
    clients: usize,
    loops: usize,
    scrape: bool,
) -> (f64, usize, f64) {
    let store = dir
        .join(format!("threads-{}.db", unique_name()))
        .display()
        .to_string();
    let server = Server::start(flow, &store, env);
    let pid = server.child.id();
    let c = client();
    let base = server.base.clone();
    let origin = base.trim_end_matches("/v1").to_owned();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let scraping = scrape.then(|| {
        let (c, origin) = (c.clone(), origin.clone());
        tokio::spawn(async move {
            loop {
                let _ = c
                    .get(format!("{origin}/metrics"))
                    .bearer_auth(API_KEY)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    });
    let before = cpu_ticks(pid);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (c, base, done) = (c.clone(), base.clone(), done.clone());
            tokio::spawn(async move {
                for _ in 0..loops {
                    let events = c
                        .post(format!("{base}/threads/runs"))
                        .bearer_auth(API_KEY)
                        .json(&json!({
                            "assistant_id": "asst_personal-finance",
                            "stream": true,
                            "thread": {"messages": [{"role": "user",
                                "content": "I earn $4,000 and save $1,000 a month toward $12,000."}]},
                        }))
                        .send()
                        .await
                        .and_then(reqwest::Response::error_for_status);
                    let Ok(events) = events else { continue };
                    let text = events.text().await.unwrap_or_default();
                    if text.contains("thread.run.completed") {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    join_all(tasks).await;
    let wall = started.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid) - before;
    if let Some(scraping) = scraping {
        scraping.abort();
    }
    // SIGTERM: the spans still queued are exported before the exit.
    let mut server = server;
    server.stop();
    // Ticks are 1/100 s on Linux, but read the rate rather than assume it.
    let per_second = clock_ticks_per_second();
    (
        ticks as f64 / per_second,
        done.load(std::sync::atomic::Ordering::Relaxed),
        wall,
    )
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

fn clock_ticks_per_second() -> f64 {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    output.parse().unwrap_or(100.0)
}

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}")
}

/// What traces (OTLP to a receiver on loopback) and metrics scrapes cost `clarion serve`
/// under `CLARION_LOAD_CLIENTS` (200) concurrent clients, each streaming
/// `CLARION_LOAD_LOOPS` (5) tool loops (two model calls and a server-side tool each): the
/// server process's CPU (`/proc/PID/stat`, user + system) per loop, with them off and on,
/// in alternating rounds of one run. Figures in docs/operations.md.
///
/// ```sh
/// cargo test --release -p clarion-cli --test traces -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a load test: run it on purpose, in release mode (see its docs)"]
#[allow(
    clippy::print_stderr,
    clippy::cast_precision_loss,
    reason = "figures for people"
)]
async fn overhead_of_traces_and_metrics_under_200_clients() {
    let env_or = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (clients, loops) = (
        env_or("CLARION_LOAD_CLIENTS", 200),
        env_or("CLARION_LOAD_LOOPS", 5),
    );
    let rounds = env_or("CLARION_LOAD_ROUNDS", 3);
    let model = model().await;
    let (endpoint, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()))
        .display()
        .to_string();
    let on = otel_env(&endpoint);
    let off: Vec<(&str, String)> = on
        .iter()
        .filter(|(name, _)| !name.starts_with("OTEL_"))
        .cloned()
        .collect();
    let (mut cpu_off, mut cpu_on) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for traced in [false, true] {
            let spans_before = received.spans().len();
            let (cpu, done, wall) = load_arm(
                &flow,
                dir.path(),
                if traced { &on } else { &off },
                clients,
                loops,
                traced,
            )
            .await;
            let spans = received.spans().len() - spans_before;
            assert_eq!(done, clients * loops, "every loop completes");
            let per_loop_ms = cpu * 1000.0 / done as f64;
            eprintln!(
                "round {round}, traces and metrics {}: {done} loops in {wall:.2} s, server CPU {cpu:.2} s ({per_loop_ms:.3} ms per loop, {:.0}% of a core), spans exported {spans}",
                if traced { "on " } else { "off" },
                cpu / wall * 100.0,
            );
            if traced {
                cpu_on.push(per_loop_ms);
            } else {
                cpu_off.push(per_loop_ms);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut cpu_off), median(&mut cpu_on));
    eprintln!(
        "median server CPU per tool loop: off {off:.3} ms, on {on:.3} ms: {:+.1}%",
        (on / off - 1.0) * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_live_exports_each_scenarios_run_before_it_exits() {
    let model = model().await;
    let (endpoint, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(flows.join("pf/scenarios")).unwrap_or_else(|e| panic!("{e}"));
    let written = flow_for(dir.path(), &format!("{}/v1", model.uri()))
        .display()
        .to_string();
    std::fs::rename(&written, flows.join("pf.toml")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        flows.join("pf/scenarios/plan.toml"),
        r#"[[turns]]
user = "I earn $4,000 and save $1,000 a month toward $12,000."

[[turns.model]]
call = "calculate_savings_timeline"
args = { goal_amount = 12000, monthly_income = 4000, monthly_savings = 1000 }

[[turns.model]]
text = "It takes 12 months."
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_clarion"));
    command
        .args(["test", "--live", "--jobs", "1"])
        .current_dir(dir.path())
        .env_remove("OPENAI_BASE_URL")
        .env_remove("RUST_LOG")
        .env_remove("CI")
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .stdin(Stdio::null());
    for (name, value) in otel_env(&endpoint) {
        if name != "OTEL_BSP_SCHEDULE_DELAY" {
            command.env(name, value);
        }
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let spans: Vec<Span> = received.spans().into_iter().map(|(_, s)| s).collect();
    let runs = named(&spans, "run");
    assert_eq!(
        runs.len(),
        1,
        "{:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let mut steps = children(&spans, runs[0]);
    steps.sort_by_key(|s| s.start_time_unix_nano);
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "chat gpt-4.1-mini",
            "execute_tool calculate_savings_timeline",
            "chat gpt-4.1-mini"
        ]
    );
    assert_nothing_secret(&received.spans());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_a_log_line_not_the_conversation() {
    let model = model().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flow = flow_for(dir.path(), &format!("{}/v1", model.uri()))
        .display()
        .to_string();
    let store = dir.path().join("threads.db").display().to_string();
    // A port nobody listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_clarion"));
    command
        .args(["chat", &flow, "--store", &store])
        .env_remove("OPENAI_BASE_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in otel_env(&format!("http://{closed}")) {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(b"I earn $4,000 and save $1,000 a month toward $12,000.\n")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("It takes 12 months."));
    assert!(
        stderr.contains("opentelemetry") && stderr.contains("Export"),
        "the failed export is logged: {stderr}"
    );
    assert!(!stderr.contains(EXPORTER_SECRET), "{stderr}");
}
