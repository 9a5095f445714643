//! Provider benchmarks: what Clarion's HTTP client costs on top of the model server.
//!
//! A model server takes hundreds of milliseconds per request, so the client's own cost
//! matters only when it is not small: building the request body from the flow and the
//! thread, serialising it, parsing the reply, and — when streaming — decoding server-sent
//! events and assembling tool-call deltas. Three figures, each against a baseline measured in
//! the same run on the same loopback server:
//!
//! - **client overhead per request**: `ChatCompletions::respond` (non-streaming, the
//!   personal-finance flow, a six-message thread) against a bare `reqwest` POST of the same
//!   bytes that reads the same reply; median and p99 of both, and the difference;
//! - **connection reuse**: how many TCP connections the server accepted for 100 sequential
//!   requests from one client (1 means every request after the first rode a kept-alive one;
//!   hyper returns a connection to its pool asynchronously, so now and then it is 2);
//! - **streaming throughput**: a 16 MiB stream of text and tool-call argument deltas read
//!   through `respond` (SSE decoding, JSON per chunk, assembly by index), against reading the
//!   same bytes off the socket and dropping them; plus the SSE decoder alone.
//!
//! The server is a minimal HTTP/1.1 responder on tokio written here, so that it can count
//! connections and costs next to nothing itself. A plain binary, not criterion, so the
//! tests' compile time stays low. Run it in release:
//!
//! ```text
//! cargo run --release -p clarion-engine --example bench_provider
//! ```

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clarion_engine::NoEvents;
use clarion_engine::{Message, MessageKind, OutputStatus, ToolCall};
use clarion_engine::{Model, ModelRequest, ModelTurn};
use clarion_flow::load_file;
use clarion_providers::chat_completions::{ChatCompletions, request_body};
use clarion_providers::config::ProviderConfig;
use clarion_providers::sse::SseDecoder;
use futures_util::StreamExt as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Requests per latency sample set.
const REQUESTS: usize = 2_000;
/// Size of the streamed reply.
const STREAM_BYTES: usize = 16 << 20;
/// Streamed replies read per measurement.
const STREAM_ROUNDS: usize = 8;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(run());
}

async fn run() {
    let flow_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/personal-finance.toml");
    let flow = load_file(&flow_path)
        .into_result()
        .unwrap_or_else(|e| panic!("{e}"));
    let input = Input {
        flow,
        messages: thread(),
    };
    let (config, server) = overhead(&input).await;
    reuse(config, &server, &input).await;
    streaming(&input).await;
}

/// What every request sends: the flow and a thread.
struct Input {
    flow: clarion_flow::Flow,
    messages: Vec<Message>,
}

impl Input {
    fn request(&self) -> ModelRequest<'_> {
        ModelRequest {
            flow: &self.flow,
            instructions: "You are a careful personal finance assistant.",
            messages: &self.messages,
            history: &self.messages,
            words_only: false,
        }
    }
}

/// Median and p99 of `respond()` against a bare reqwest POST of the same bytes.
async fn overhead(input: &Input) -> (ProviderConfig, Server) {
    let completion = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
        "choices": [{ "index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{ "id": "call_1", "type": "function", "function": {
                "name": "calculate_savings_timeline",
                "arguments": "{\"goal_amount\": 12000, \"monthly_income\": 4000, \"monthly_savings\": 1000}" } }] } }],
        "usage": { "prompt_tokens": 812, "completion_tokens": 31, "total_tokens": 843 }
    })
    .to_string();
    let server = Server::start(completion.into_bytes(), "application/json").await;
    let mut config = ProviderConfig::new(format!("http://{}/v1", server.addr));
    config.stream = false;
    config.max_retries = 0;
    let model = ChatCompletions::new(config.clone()).unwrap_or_else(|e| panic!("{e}"));
    let body = serde_json::to_vec(&request_body(&config, &input.request())).unwrap_or_default();
    // Built after `ChatCompletions::new`, which installs the TLS provider reqwest needs.
    let bare = reqwest::Client::new();
    let url = format!("http://{}/v1/chat/completions", server.addr);

    let mut clarion = Vec::with_capacity(REQUESTS);
    let mut baseline = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS + 200 {
        // Interleaved, so that load on the shared machine hits both alike.
        let start = Instant::now();
        let response = model
            .respond(input.request(), &NoEvents)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let took = start.elapsed();
        assert!(matches!(response.turn, ModelTurn::ToolCalls { .. }));
        let start = Instant::now();
        let reply = bare
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let bare_took = start.elapsed();
        assert!(!reply.is_empty());
        if i >= 200 {
            clarion.push(took);
            baseline.push(bare_took);
        }
    }
    let (c50, c99) = percentiles(&mut clarion);
    let (b50, b99) = percentiles(&mut baseline);
    say(&format!(
        "client overhead, {REQUESTS} non-streaming requests ({} byte body):",
        body.len()
    ));
    say(&format!(
        "  respond():     median {:>7.1} µs   p99 {:>7.1} µs",
        micros(c50),
        micros(c99)
    ));
    say(&format!(
        "  bare reqwest:  median {:>7.1} µs   p99 {:>7.1} µs",
        micros(b50),
        micros(b99)
    ));
    say(&format!(
        "  overhead:      median {:>7.1} µs",
        micros(c50) - micros(b50)
    ));
    (config, server)
}

/// TCP connections opened by 100 sequential requests from one new client.
async fn reuse(config: ProviderConfig, server: &Server, input: &Input) {
    let fresh = ChatCompletions::new(config).unwrap_or_else(|e| panic!("{e}"));
    let before = server.connections.load(Ordering::SeqCst);
    for _ in 0..100 {
        fresh
            .respond(input.request(), &NoEvents)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let opened = server.connections.load(Ordering::SeqCst) - before;
    say(&format!(
        "connection reuse: 100 sequential requests from a new client opened {opened} TCP connection(s)"
    ));
}

/// MiB/s through `respond()` streaming, against reading the same bytes off the socket, and
/// the SSE decoder alone.
#[allow(clippy::cast_precision_loss, reason = "sizes far below 2^52")]
async fn streaming(input: &Input) {
    let bare = reqwest::Client::new();
    let stream = sse_body(STREAM_BYTES);
    let size = stream.len();
    let server = Server::start(stream.clone(), "text/event-stream").await;
    let mut config = ProviderConfig::new(format!("http://{}/v1", server.addr));
    config.stream = true;
    config.max_retries = 0;
    config.request_timeout = Duration::from_secs(120);
    let model = ChatCompletions::new(config).unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}/v1/chat/completions", server.addr);
    let mut through = Duration::ZERO;
    let mut raw = Duration::ZERO;
    for _ in 0..STREAM_ROUNDS {
        let start = Instant::now();
        let response = model
            .respond(input.request(), &NoEvents)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        through += start.elapsed();
        let ModelTurn::ToolCalls { calls, text } = &response.turn else {
            panic!("expected tool calls, got {:?}", response.turn);
        };
        assert_eq!(calls.len(), 2);
        assert!(text.as_ref().is_some_and(|t| t.len() > size / 20));
        for call in calls {
            serde_json::from_str::<serde_json::Value>(&call.arguments)
                .unwrap_or_else(|e| panic!("assembled arguments are JSON: {e}"));
        }

        let start = Instant::now();
        let mut bytes = bare
            .post(&url)
            .body("{}")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .bytes_stream();
        let mut read = 0;
        while let Some(chunk) = bytes.next().await {
            read += chunk.unwrap_or_else(|e| panic!("{e}")).len();
        }
        raw += start.elapsed();
        assert_eq!(read, size);
    }
    let mib = (size * STREAM_ROUNDS) as f64 / f64::from(1 << 20);
    say(&format!(
        "streaming, {STREAM_ROUNDS} × {:.1} MiB of text and tool-call deltas:",
        size as f64 / f64::from(1 << 20)
    ));
    say(&format!(
        "  respond() (HTTP + SSE + JSON + assembly): {:>7.1} MiB/s",
        mib / through.as_secs_f64()
    ));
    say(&format!(
        "  bare socket read (baseline):              {:>7.1} MiB/s",
        mib / raw.as_secs_f64()
    ));
    let start = Instant::now();
    let mut events = 0;
    for _ in 0..STREAM_ROUNDS {
        let mut decoder = SseDecoder::default();
        for chunk in stream.chunks(64 << 10) {
            events += decoder.push(chunk).len();
        }
    }
    say(&format!(
        "  SSE decoder alone, 64 KiB chunks:         {:>7.1} MiB/s ({} events per stream)",
        mib / start.elapsed().as_secs_f64(),
        events / STREAM_ROUNDS
    ));
}

/// A six-message thread: a question, a tool call and its output, injected context, a reply,
/// and the next question.
fn thread() -> Vec<Message> {
    let message = |id: &str, kind| Message {
        id: id.to_owned(),
        run_id: None,
        created_at: 0,
        kind,
        metadata: clarion_engine::Metadata::default(),
    };
    vec![
        message(
            "msg_1",
            MessageKind::User {
                text: "I earn $4,000 a month and save $1,000. How long until I have $12,000?"
                    .into(),
            },
        ),
        message(
            "msg_2",
            MessageKind::ToolCalls {
                text: None,
                calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "calculate_savings_timeline".into(),
                    arguments:
                        r#"{"goal_amount": 12000, "monthly_income": 4000, "monthly_savings": 1000}"#
                            .into(),
                }],
            },
        ),
        message(
            "msg_3",
            MessageKind::ToolOutput {
                call_id: "call_1".into(),
                name: "calculate_savings_timeline".into(),
                status: OutputStatus::Ok,
                content: r#"{"months": 12.0, "years": 1.0}"#.into(),
            },
        ),
        message(
            "msg_4",
            MessageKind::Context {
                tool: "calculate_savings_timeline".into(),
                text: "The user's savings plan indicates a 1.0-year timeline (12.0 months).".into(),
            },
        ),
        message(
            "msg_5",
            MessageKind::Assistant {
                text: "About a year: 12 months at $1,000 a month.".into(),
            },
        ),
        message(
            "msg_6",
            MessageKind::User {
                text: "And if I save $1,500?".into(),
            },
        ),
    ]
}

/// A Chat Completions stream of about `target` bytes: text deltas, then two tool calls whose
/// arguments arrive in small pieces, interleaved by index as some servers send them.
fn sse_body(target: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(target + 4096);
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let event = json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
        format!("data: {event}\n\n")
    };
    while out.len() < target / 2 {
        out.extend(chunk(json!({ "content": "Saving steadily works. " }), json!(null)).bytes());
    }
    for index in 0..2 {
        out.extend(
            chunk(
                json!({ "tool_calls": [{ "index": index, "id": format!("call_{index}"), "type": "function",
                    "function": { "name": "calculate_savings_timeline", "arguments": "{\"goal_amount\": 12000, \"note\": \"" } }] }),
                json!(null),
            )
            .bytes(),
        );
    }
    let mut index = 0;
    while out.len() < target {
        let piece = json!({ "tool_calls": [{ "index": index, "function": { "arguments": "steady saving " } }] });
        out.extend(chunk(piece, json!(null)).bytes());
        index = 1 - index;
    }
    for index in 0..2 {
        out.extend(
            chunk(
                json!({ "tool_calls": [{ "index": index, "function": { "arguments": "\"}" } }] }),
                json!(null),
            )
            .bytes(),
        );
    }
    out.extend(chunk(json!({}), json!("tool_calls")).bytes());
    out.extend(b"data: [DONE]\n\n");
    out
}

/// A keep-alive HTTP/1.1 server on loopback that answers every request with one fixed body
/// and counts the connections it accepts.
struct Server {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Server {
    async fn start(body: Vec<u8>, content_type: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let mut head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        head.extend_from_slice(&body);
        let response: Arc<[u8]> = head.into();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let response = response.clone();
                tokio::spawn(async move {
                    let _ = socket.set_nodelay(true);
                    let mut buffer = Vec::with_capacity(16 << 10);
                    loop {
                        let Some(consumed) = Box::pin(read_request(&mut socket, &mut buffer)).await
                        else {
                            return;
                        };
                        buffer.drain(..consumed);
                        if socket.write_all(&response).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, connections }
    }
}

/// Reads one request (head and `content-length` body) into `buffer`; returns its length,
/// or `None` when the client closed the connection.
async fn read_request(socket: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + length;
            while buffer.len() < total {
                let n = socket.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
                buffer.extend_from_slice(&chunk[..n]);
            }
            return Some(total);
        }
        let n = socket.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |per_mille: usize| samples[(samples.len() - 1) * per_mille / 1000];
    (at(500), at(990))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}
