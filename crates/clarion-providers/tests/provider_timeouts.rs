//! Provider timeouts against a real socket on loopback that answers on a schedule: a
//! slow but steady stream is never cut off, a silent one is, and every failure says what
//! happened — which limit ran out, a refused connection, a connection that broke off —
//! never "error decoding response body".

// The engine's test helpers: the example flow, stand-in tools, assertions.
#[path = "../../clarion-engine/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use clarion_engine::EventLog;
use clarion_engine::ModelErrorKind;
use clarion_engine::{Message, MessageKind, Metadata};
use clarion_engine::{Model, ModelError, ModelRequest, ModelTurn};
use clarion_providers::chat_completions::ChatCompletions;
use clarion_providers::config::ProviderConfig;
use clarion_providers::responses::Responses;
use serde_json::json;
use support::personal_finance;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// One step of a scripted response: wait, then write.
enum Step {
    Wait(Duration),
    Write(String),
    /// Close the connection here.
    Close,
}

/// A server that answers every connection with `steps` (a chunked HTTP/1.1 response).
async fn server(steps: Vec<Step>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let steps = std::sync::Arc::new(steps);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let steps = std::sync::Arc::clone(&steps);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0_u8; 4096];
                // Headers, then the body its content-length announces.
                loop {
                    let Ok(n) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                for step in steps.iter() {
                    match step {
                        Step::Wait(d) => tokio::time::sleep(*d).await,
                        Step::Write(text) => {
                            if socket.write_all(text.as_bytes()).await.is_err() {
                                return;
                            }
                            let _ = socket.flush().await;
                        }
                        Step::Close => return,
                    }
                }
            });
        }
    });
    format!("http://{address}/v1")
}

const HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

/// One SSE event as one HTTP chunk.
fn chunk(data: &str) -> String {
    let event = format!("data: {data}\n\n");
    format!("{:x}\r\n{event}\r\n", event.len())
}

fn delta(text: &str) -> String {
    chunk(&json!({ "choices": [{ "index": 0, "delta": { "content": text } }] }).to_string())
}

fn end() -> Vec<Step> {
    vec![
        Step::Write(chunk(
            &json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] })
                .to_string(),
        )),
        Step::Write(chunk("[DONE]")),
        Step::Write("0\r\n\r\n".to_owned()),
    ]
}

fn config(base_url: &str) -> ProviderConfig {
    let mut config = ProviderConfig::new(base_url);
    config.stream = true;
    config.max_retries = 0;
    config.request_timeout = Duration::from_millis(200);
    config.idle_timeout = Duration::from_millis(400);
    config.stream_timeout = Duration::from_secs(10);
    config
}

async fn ask(model: &dyn Model) -> Result<ModelTurn, ModelError> {
    let flow = personal_finance();
    let messages = [Message {
        id: "m".into(),
        run_id: None,
        created_at: 0,
        kind: MessageKind::User { text: "hi".into() },
        metadata: Metadata::default(),
    }];
    model
        .respond(
            ModelRequest {
                flow: &flow,
                instructions: "Be brief.",
                messages: &messages,
                history: &messages,
                words_only: false,
            },
            &EventLog::new(),
        )
        .await
        .map(|r| r.turn)
}

fn assert_clear(error: &ModelError) {
    assert!(
        !error.message.contains("error decoding"),
        "a message that names what happened: {}",
        error.message
    );
}

#[tokio::test]
async fn a_slow_steady_stream_outlasts_the_total_timeout() {
    // Ten pieces, 100 ms apart: a second in all, five times the non-streamed total limit,
    // but never silent for longer than the idle limit.
    let mut steps = vec![Step::Write(HEAD.to_owned())];
    for i in 0..10 {
        steps.push(Step::Wait(Duration::from_millis(100)));
        steps.push(Step::Write(delta(&format!("w{i} "))));
    }
    steps.extend(end());
    let base_url = server(steps).await;
    let model = ChatCompletions::new(config(&base_url)).unwrap_or_else(|e| panic!("{e}"));
    let turn = ask(&model).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        turn,
        ModelTurn::Text("w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 ".into())
    );
}

#[tokio::test]
async fn a_stream_that_falls_silent_is_an_idle_timeout() {
    let steps = vec![
        Step::Write(HEAD.to_owned()),
        Step::Write(delta("Hello")),
        Step::Wait(Duration::from_secs(30)),
    ];
    let base_url = server(steps).await;
    let model = ChatCompletions::new(config(&base_url)).unwrap_or_else(|e| panic!("{e}"));
    let error = ask(&model)
        .await
        .err()
        .unwrap_or_else(|| panic!("should time out"));
    assert_eq!(error.kind, ModelErrorKind::Timeout);
    assert!(
        error.message.contains("sent nothing for 400ms in the middle of a streamed response (the provider's `idle_timeout`)"),
        "{}",
        error.message
    );
    assert_clear(&error);
}

#[tokio::test]
async fn a_response_that_never_starts_is_an_idle_timeout_too() {
    let base_url = server(vec![Step::Wait(Duration::from_secs(30))]).await;
    let model = ChatCompletions::new(config(&base_url)).unwrap_or_else(|e| panic!("{e}"));
    let error = ask(&model)
        .await
        .err()
        .unwrap_or_else(|| panic!("should time out"));
    assert_eq!(error.kind, ModelErrorKind::Timeout);
    assert!(
        error.message.contains("did not start its response within 400ms (the provider's `idle_timeout`) (gave up after 1 attempt)"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_stream_longer_than_its_overall_limit_is_stopped_and_says_so() {
    let mut steps = vec![Step::Write(HEAD.to_owned())];
    for _ in 0..50 {
        steps.push(Step::Wait(Duration::from_millis(100)));
        steps.push(Step::Write(delta("x")));
    }
    let base_url = server(steps).await;
    let mut config = config(&base_url);
    config.stream_timeout = Duration::from_millis(700);
    let model = ChatCompletions::new(config).unwrap_or_else(|e| panic!("{e}"));
    let error = ask(&model)
        .await
        .err()
        .unwrap_or_else(|| panic!("should time out"));
    assert_eq!(error.kind, ModelErrorKind::Timeout);
    assert!(
        error
            .message
            .contains("took longer than 700ms in all (the provider's `stream_timeout`)"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_connection_that_breaks_mid_stream_says_so() {
    // The chunk announces more bytes than arrive before the connection closes.
    let steps = vec![
        Step::Write(HEAD.to_owned()),
        Step::Write(delta("Hel")),
        Step::Write("ff\r\ndata: {\"cho".to_owned()),
        Step::Close,
    ];
    let base_url = server(steps).await;
    for model in [
        Box::new(ChatCompletions::new(config(&base_url)).unwrap_or_else(|e| panic!("{e}")))
            as Box<dyn Model>,
        Box::new(Responses::new(config(&base_url)).unwrap_or_else(|e| panic!("{e}"))),
    ] {
        let error = ask(model.as_ref())
            .await
            .err()
            .unwrap_or_else(|| panic!("should fail"));
        assert_eq!(error.kind, ModelErrorKind::StreamInterrupted);
        assert!(
            error
                .message
                .contains("broke off in the middle of the streamed response"),
            "{}",
            error.message
        );
        assert_clear(&error);
    }
}

#[tokio::test]
async fn a_refused_connection_says_connection_refused() {
    // Bind then drop: nothing listens on the port any more.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port()
    };
    let model = ChatCompletions::new(config(&format!("http://127.0.0.1:{port}/v1")))
        .unwrap_or_else(|e| panic!("{e}"));
    let error = ask(&model)
        .await
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert_eq!(error.kind, ModelErrorKind::Unavailable);
    assert_eq!(
        error.message,
        format!(
            "cannot connect to 127.0.0.1:{port} (connection refused) (gave up after 1 attempt)"
        )
    );
}

#[tokio::test]
async fn a_non_streamed_request_keeps_its_total_timeout_and_names_it() {
    let base_url = server(vec![Step::Wait(Duration::from_secs(30))]).await;
    let mut config = config(&base_url);
    config.stream = false;
    let model = ChatCompletions::new(config).unwrap_or_else(|e| panic!("{e}"));
    let error = ask(&model)
        .await
        .err()
        .unwrap_or_else(|| panic!("should time out"));
    assert_eq!(error.kind, ModelErrorKind::Timeout);
    assert!(
        error
            .message
            .contains("sent no complete response within 200ms (the provider's `timeout`)"),
        "{}",
        error.message
    );
}
