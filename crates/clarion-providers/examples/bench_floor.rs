//! The floor under a `clarion chat` round trip: a client shaped like it with none of its
//! work. Per line read from stdin (`/reset` is skipped), the same two streamed Chat
//! Completions requests (the flow's exported definition, the user's line; then the tool
//! call and a tool output), the reply text on stdout; with `--store PATH`, also two SQLite
//! transactions of four inserts into a table with two indexes, as a chat turn's two
//! commits (cached statements, as Clarion's store uses). Same runtime (Tokio
//! current-thread), same HTTP client (`reqwest`). Figures in docs/benchmarks.md ("Step 5",
//! "Step 7").
//!
//! It takes `clarion chat`'s arguments, so the round-trip script drives it as a build:
//!
//! ```sh
//! cargo build --release -p clarion-providers --example bench_floor
//! python3 scripts/bench_roundtrip.py paired 200 3 target/release/clarion \
//!     target/release/examples/bench_floor
//! ```
//!
//! `BENCH_FLOOR_HTTP_ONLY=1` leaves out the SQLite transactions. `BENCH_FLOOR_CLIENT=hyper`
//! sends the requests through `hyper-util`'s pooled client, the one `reqwest` wraps in its
//! own layers (URL, redirects, retries, timeouts): what those layers cost per round trip.

#![allow(clippy::print_stdout, missing_docs)]

use std::future::poll_fn;
use std::io::Write as _;
use std::path::Path;
use std::pin::Pin;

use clarion_flow::export::{ExportFormat, definition};
use clarion_flow::{LoadOptions, load_file_with};
use hyper::body::Body as _;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

/// The value after `flag` in the arguments.
fn arg(args: &[String], flag: &str) -> Option<String> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

/// The HTTP client the floor sends its requests with.
enum Client {
    Reqwest(reqwest::Client),
    /// `hyper-util`'s pooled client without `reqwest`'s layers around it.
    Hyper(Box<HyperClient<HttpConnector, String>>),
}

/// A streamed request and the text of every chunk, joined.
async fn stream(client: &Client, url: &str, body: Vec<u8>) -> String {
    let mut text = Vec::new();
    match client {
        Client::Reqwest(client) => {
            let mut response = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .expect("the server answers");
            while let Some(chunk) = response.chunk().await.expect("the stream reads") {
                text.extend_from_slice(&chunk);
            }
        }
        Client::Hyper(client) => {
            let request = hyper::Request::post(url)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(String::from_utf8(body).expect("the body is JSON"))
                .expect("the request is well formed");
            let mut body = client
                .request(request)
                .await
                .expect("the server answers")
                .into_body();
            while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                if let Ok(chunk) = frame.expect("the stream reads").into_data() {
                    text.extend_from_slice(&chunk);
                }
            }
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let base_url = arg(&args, "--base-url").expect("usage: bench_floor chat FLOW --base-url URL");
    let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
    let flow_path = args.get(2).cloned().unwrap_or_default();
    let flow = load_file_with(Path::new(&flow_path), &LoadOptions::default())
        .flow
        .expect("the flow loads");
    let mut head = definition(
        &flow,
        ExportFormat::ChatCompletions,
        flow.assistant.instructions.clone(),
    );
    head.insert("model".to_owned(), json!("x"));
    head.insert("stream".to_owned(), json!(true));
    let system = head.get("messages").cloned().unwrap_or(Value::Null);
    let http_only = std::env::var_os("BENCH_FLOOR_HTTP_ONLY").is_some();
    let db = arg(&args, "--store").filter(|_| !http_only).map(|path| {
        let db = rusqlite::Connection::open(path).expect("the store opens");
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS rows (pos INTEGER PRIMARY KEY, a TEXT, b TEXT);
             CREATE INDEX IF NOT EXISTS rows_a ON rows (a);
             CREATE INDEX IF NOT EXISTS rows_b ON rows (b);",
        )
        .expect("the table is created");
        db
    });
    let client = if std::env::var("BENCH_FLOOR_CLIENT").is_ok_and(|c| c == "hyper") {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true); // as `reqwest` does
        Client::Hyper(Box::new(
            HyperClient::builder(TokioExecutor::new()).build(connector),
        ))
    } else {
        Client::Reqwest(reqwest::Client::new())
    };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut n = 0_u64;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with('/') {
            continue;
        }
        let mut messages = system.as_array().cloned().unwrap_or_default();
        messages.push(json!({ "role": "user", "content": line }));
        let mut reply = String::new();
        for step in 0..2 {
            if step == 1 {
                messages.push(json!({ "role": "assistant", "tool_calls": [{ "id": "call_1",
                    "type": "function", "function": { "name": "calculate_savings_timeline",
                    "arguments": "{\"goal_amount\":12000,\"monthly_income\":5000,\"monthly_savings\":1000}" } }] }));
                messages.push(json!({ "role": "tool", "tool_call_id": "call_1",
                    "content": "{\"months\":12,\"years\":1.0,\"attainable\":true}" }));
            }
            let mut body = head.clone();
            body.insert("messages".to_owned(), Value::Array(messages.clone()));
            let body = serde_json::to_vec(&body).expect("the body serializes");
            reply = stream(&client, &url, body).await;
        }
        if let Some(db) = &db {
            for _ in 0..2 {
                let run = |sql: &str| {
                    db.prepare_cached(sql)
                        .and_then(|mut statement| statement.execute([]))
                        .expect("the statement runs")
                };
                run("BEGIN IMMEDIATE");
                for _ in 0..4 {
                    n += 1;
                    db.prepare_cached("INSERT INTO rows (a, b) VALUES (?1, ?2)")
                        .and_then(|mut insert| insert.execute((format!("a{n}"), format!("b{n}"))))
                        .expect("insert");
                }
                run("COMMIT");
            }
        }
        // The text of the reply's first content delta.
        let text = reply
            .split("\"content\": \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("?");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}
