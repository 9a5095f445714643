//! The Chat Completions provider against a real HTTP server on loopback (wiremock): the
//! wire format both ways, streaming, and every fault with its defined outcome.

// The engine's test helpers: the example flow, stand-in tools, assertions.
#[path = "../../clarion-engine/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use clarion_engine::FnExecutor;
use clarion_engine::{Engine, RunStatus};
use clarion_engine::{Event, EventLog, NoEvents};
use clarion_engine::{IncompleteReason, ModelError, ModelErrorKind};
use clarion_engine::{MemoryStore, ThreadStore};
use clarion_engine::{Message, MessageKind, Metadata, OutputStatus, ToolCall};
use clarion_engine::{Model, ModelRequest, ModelTurn};
use clarion_providers::chat_completions::{ChatCompletions, request_body};
use clarion_providers::config::{ContextRole, ProviderConfig, Secret};
use serde_json::{Value, json};
use support::*;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn config(server: &MockServer) -> ProviderConfig {
    let mut config = ProviderConfig::new(format!("{}/v1", server.uri()));
    config.api_key = Some(Secret::new("sk-test-secret-key-123456"));
    config.backoff_base = Duration::from_millis(1);
    config.backoff_cap = Duration::from_millis(5);
    config.request_timeout = Duration::from_secs(5);
    config
}

/// A provider for `server` that asks for streamed responses.
fn streaming(server: &MockServer) -> ChatCompletions {
    let mut config = config(server);
    config.stream = true;
    ChatCompletions::new(config).unwrap_or_else(|e| panic!("{e}"))
}

#[allow(clippy::needless_pass_by_value)] // callers build the message inline
fn completion(message: Value, finish_reason: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": message, "finish_reason": finish_reason }],
        "usage": { "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18 },
    }))
}

fn text(content: &str) -> ResponseTemplate {
    completion(json!({ "role": "assistant", "content": content }), "stop")
}

fn sse(events: &[Value], done: bool) -> ResponseTemplate {
    let mut body = String::new();
    for event in events {
        body.push_str("data: ");
        body.push_str(&event.to_string());
        body.push_str("\n\n");
    }
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_raw(body, "text/event-stream")
}

fn user(text: &str) -> Message {
    Message {
        id: "m".into(),
        run_id: None,
        created_at: 0,
        kind: MessageKind::User { text: text.into() },
        metadata: Metadata::default(),
    }
}

async fn ask(
    model: &ChatCompletions,
    messages: &[Message],
    events: &EventLog,
) -> Result<clarion_engine::ModelResponse, ModelError> {
    let flow = personal_finance();
    model
        .respond(
            ModelRequest {
                flow: &flow,
                instructions: "Be careful.",
                messages,
                history: messages,
                words_only: false,
            },
            events,
        )
        .await
}

async fn received(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

#[tokio::test]
async fn a_whole_conversation_runs_through_the_engine_over_http() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test-secret-key-123456"))
        .respond_with(Sequence::new(vec![
            completion(
                json!({ "role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_abc", "type": "function",
                    "function": { "name": "calculate_savings_timeline", "arguments": "{\"goal_amount\": 12000, \"monthly_income\": 4000, \"monthly_savings\": 1000}" }
                }]}),
                "tool_calls",
            ),
            text("It takes a year."),
        ]))
        .mount(&server)
        .await;
    let model = Arc::new(ChatCompletions::new(config(&server)).unwrap_or_else(|e| panic!("{e}")));
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::new(
        personal_finance(),
        model,
        Arc::new(FnExecutor(finance)),
        store.clone(),
    );
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(&thread.id, "12k at 1000 a month? I earn 4000.")
        .await
        .ok();
    let run = engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.usage.total(), 36, "usage from both requests");
    let thread = store
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    assert_eq!(last_text(&thread), "It takes a year.");

    // What the server received second: the history in Chat Completions shape.
    let bodies = received(&server).await;
    assert_eq!(bodies.len(), 2);
    let messages = bodies[1]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "system"],
        "system, user, tool call, output, injected context"
    );
    assert_eq!(
        messages[2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .map(|a| a.contains("12000")),
        Some(true)
    );
    assert_eq!(messages[3]["tool_call_id"], "call_abc");
    assert!(
        messages[4]["content"]
            .as_str()
            .unwrap_or_default()
            .contains("1.0-year timeline")
    );
    assert_eq!(
        bodies[0]["tools"][0]["function"]["name"],
        "calculate_savings_timeline"
    );
    assert_eq!(bodies[0]["model"], "gpt-4.1-mini");
}

#[tokio::test]
async fn content_may_be_null_empty_or_parts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Sequence::new(vec![
            completion(json!({ "role": "assistant", "content": "", "tool_calls": [{ "id": "c1", "type": "function", "function": { "name": "analyze_budget", "arguments": "{}" } }] }), "tool_calls"),
            completion(json!({ "role": "assistant", "content": [{ "type": "text", "text": "Hello " }, { "type": "text", "text": "there" }] }), "stop"),
            completion(json!({ "role": "assistant", "content": null }), "stop"),
        ]))
        .mount(&server)
        .await;
    let model = ChatCompletions::new(config(&server)).unwrap_or_else(|e| panic!("{e}"));
    let events = EventLog::new();
    let first = ask(&model, &[user("hi")], &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first.turn,
        ModelTurn::ToolCalls {
            text: None,
            calls: vec![ToolCall {
                id: "c1".into(),
                name: "analyze_budget".into(),
                arguments: "{}".into()
            }]
        }
    );
    let second = ask(&model, &[user("hi")], &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.turn, ModelTurn::Text("Hello there".into()));
    let third = ask(&model, &[user("hi")], &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(third.turn, ModelTurn::Text(String::new()));
}

#[tokio::test]
async fn streamed_text_arrives_as_deltas_and_tool_calls_are_assembled_by_index() {
    let server = MockServer::start().await;
    let chunk = |delta: Value, finish: Value| json!({ "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
    Mock::given(method("POST"))
        .respond_with(Sequence::new(vec![
            sse(&[
                chunk(json!({ "role": "assistant", "content": "Let me " }), Value::Null),
                chunk(json!({ "content": "check." }), Value::Null),
                chunk(json!({ "tool_calls": [{ "index": 0, "id": "call_a", "type": "function", "function": { "name": "analyze_budget", "arguments": "" } }] }), Value::Null),
                chunk(json!({ "tool_calls": [{ "index": 1, "id": "call_b", "type": "function", "function": { "name": "calculate_loan_payment", "arguments": "{\"princ" } }] }), Value::Null),
                chunk(json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{\"monthly_income\": 1}" } }] }), Value::Null),
                chunk(json!({ "tool_calls": [{ "index": 1, "function": { "arguments": "ipal\": 5}" } }] }), Value::Null),
                chunk(json!({}), json!("tool_calls")),
                json!({ "choices": [], "usage": { "prompt_tokens": 3, "completion_tokens": 4 } }),
            ], true),
        ]))
        .mount(&server)
        .await;
    let model = streaming(&server);
    let events = EventLog::new();
    let response = ask(&model, &[user("hi")], &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        response.turn,
        ModelTurn::ToolCalls {
            text: Some("Let me check.".into()),
            calls: vec![
                ToolCall {
                    id: "call_a".into(),
                    name: "analyze_budget".into(),
                    arguments: "{\"monthly_income\": 1}".into()
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "calculate_loan_payment".into(),
                    arguments: "{\"principal\": 5}".into()
                },
            ],
        }
    );
    assert_eq!(response.usage.total(), 7);
    let deltas: Vec<String> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::TextDelta { text } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, ["Let me ", "check."]);
    let sent = received(&server).await;
    assert_eq!(sent[0]["stream"], true);
    assert_eq!(sent[0]["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn chunks_with_fields_of_other_types_are_read_leniently() {
    // A well-formed chunk is parsed into the protocol's types; these are not, and take the
    // lenient way: what has the expected type is read, the rest is left out, and arguments
    // sent as a JSON value count as its text.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sse(
            &[
                json!({ "error": null, "usage": null, "choices": [{ "delta": { "content": 7 } }] }),
                json!({ "choices": [{ "delta": { "content": "Checking." } }, "second"] }),
                json!({ "choices": [{ "delta": { "tool_calls": [{ "index": "0", "id": "call_a", "function": { "name": "analyze_budget", "arguments": { "monthly_income": 1 } } }] } }] }),
                json!({ "choices": [{ "delta": null, "finish_reason": "tool_calls" }], "usage": { "prompt_tokens": 2, "completion_tokens": 1 } }),
            ],
            true,
        ))
        .mount(&server)
        .await;
    let model = streaming(&server);
    let response = ask(&model, &[user("hi")], &EventLog::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        response.turn,
        ModelTurn::ToolCalls {
            text: Some("Checking.".into()),
            calls: vec![ToolCall {
                id: "call_a".into(),
                name: "analyze_budget".into(),
                arguments: "{\"monthly_income\":1}".into()
            }],
        }
    );
    assert_eq!(response.usage.total(), 3);
}

/// The error of a streamed request whose stream is `events` and ends without `[DONE]`.
async fn stream_error(events: &[Value]) -> ModelError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sse(events, false))
        .mount(&server)
        .await;
    let model = streaming(&server);
    ask(&model, &[user("hi")], &EventLog::new())
        .await
        .err()
        .unwrap_or_else(|| panic!("should fail"))
}

#[tokio::test]
async fn an_error_mid_stream_is_the_providers_error() {
    let text = json!({ "choices": [{ "delta": { "content": "Half" } }] });
    let error = json!({ "error": { "message": "overloaded" } });
    let error = stream_error(&[text, error]).await;
    assert_eq!(error.kind, ModelErrorKind::ProviderError);
    assert!(
        error
            .message
            .starts_with("the provider reported an error mid-stream: overloaded"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_stream_cut_midway_is_an_error_not_a_truncated_turn() {
    let partial = json!({ "choices": [{ "index": 0, "delta": { "content": "Half a sent" }, "finish_reason": null }] });
    let error = stream_error(&[partial]).await;
    assert_eq!(error.kind, ModelErrorKind::StreamInterrupted);
    assert_eq!(
        error.message,
        "the stream ended before the model finished its turn"
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_honouring_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Sequence::new(vec![
            ResponseTemplate::new(429)
                .insert_header("retry-after-ms", "20")
                .set_body_json(json!({ "error": { "message": "Rate limit reached" } })),
            ResponseTemplate::new(503),
            ResponseTemplate::new(500).insert_header("retry-after", "0"),
            text("finally"),
        ]))
        .mount(&server)
        .await;
    let model = ChatCompletions::new(config(&server)).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let response = ask(&model, &[user("hi")], &EventLog::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.turn, ModelTurn::Text("finally".into()));
    assert_eq!(
        received(&server).await.len(),
        4,
        "three failures, then success"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(20),
        "retry-after-ms was honoured"
    );
}

#[tokio::test]
async fn retries_are_capped_and_the_last_failure_is_reported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .mount(&server)
        .await;
    let model = ChatCompletions::new(config(&server)).unwrap_or_else(|e| panic!("{e}"));
    let error = ask(&model, &[user("hi")], &EventLog::new())
        .await
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert_eq!(error.kind, ModelErrorKind::Unavailable);
    assert!(
        error
            .message
            .ends_with("returned 502: bad gateway (gave up after 4 attempts)"),
        "{}",
        error.message
    );
    assert_eq!(received(&server).await.len(), 4, "1 try + 3 retries");

    // A Retry-After longer than the cap is not waited for.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .mount(&server)
        .await;
    let model = ChatCompletions::new(config(&server)).unwrap_or_else(|e| panic!("{e}"));
    let error = ask(&model, &[user("hi")], &EventLog::new())
        .await
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert_eq!(error.kind, ModelErrorKind::RateLimited);
    assert!(
        error
            .message
            .contains("asked to retry after 3600s, longer than the 60s cap"),
        "{}",
        error.message
    );
    assert_eq!(received(&server).await.len(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_keep_the_providers_message_redacted() {
    for (status, code) in [
        (400, ModelErrorKind::BadRequest),
        (401, ModelErrorKind::Unauthorized),
        (404, ModelErrorKind::NotFound),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "error": { "message": "Incorrect API key provided: sk-test-secret-key-123456 (or model missing)", "type": "invalid_request_error" }
            })))
            .mount(&server)
            .await;
        let model = ChatCompletions::new(config(&server)).unwrap_or_else(|e| panic!("{e}"));
        let error = ask(&model, &[user("hi")], &EventLog::new())
            .await
            .err()
            .unwrap_or_else(|| panic!("should fail"));
        assert_eq!(error.kind, code);
        assert!(
            error.message.contains(&format!(
                "returned {status}: Incorrect API key provided: *** (or model missing)"
            )),
            "{}",
            error.message
        );
        assert!(
            !error.message.contains("secret-key"),
            "the key leaked: {}",
            error.message
        );
        assert_eq!(received(&server).await.len(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn malformed_bodies_and_empty_choices_are_invalid_responses() {
    for (body, expected) in [
        (
            "{\"choices\": [{\"message\": {\"content\": \"trunc",
            "the response is not valid JSON",
        ),
        ("{\"choices\": []}", "the response has no choices"),
        ("not json at all", "the response is not valid JSON"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
            .mount(&server)
            .await;
        let model = ChatCompletions::new(config(&server)).unwrap_or_else(|e| panic!("{e}"));
        let error = ask(&model, &[user("hi")], &EventLog::new())
            .await
            .err()
            .unwrap_or_else(|| panic!("should fail"));
        assert_eq!(error.kind, ModelErrorKind::InvalidResponse);
        assert!(error.message.starts_with(expected), "{}", error.message);
    }
}

#[tokio::test]
async fn length_and_content_filter_end_the_run_as_incomplete() {
    for (reason, code) in [
        ("length", IncompleteReason::MaxOutputTokens),
        ("content_filter", IncompleteReason::ContentFilter),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(completion(
                json!({ "role": "assistant", "content": "cut" }),
                reason,
            ))
            .mount(&server)
            .await;
        let model =
            Arc::new(ChatCompletions::new(config(&server)).unwrap_or_else(|e| panic!("{e}")));
        let store = Arc::new(MemoryStore::new());
        let engine = Engine::new(
            personal_finance(),
            model,
            Arc::new(FnExecutor(finance)),
            store.clone(),
        );
        let thread = engine
            .create_thread(Metadata::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        engine.add_message(&thread.id, "hi").await.ok();
        let run = engine
            .run(&thread.id, &NoEvents)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.status, RunStatus::Incomplete);
        assert_eq!(run.incomplete_details, Some(code));
        assert!(run.last_error.is_none());
        let thread = store
            .thread(&thread.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(thread.active_run.is_none());
        assert_eq!(thread.messages.len(), 1, "nothing half-written");
    }
}

#[tokio::test]
async fn tool_arguments_that_are_not_json_become_an_error_output_the_model_reads() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Sequence::new(vec![
            completion(json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "c1", "type": "function", "function": { "name": "analyze_budget", "arguments": "{\"monthly_income\": 10" } }] }), "tool_calls"),
            text("Sorry, let me retry."),
        ]))
        .mount(&server)
        .await;
    let model = Arc::new(ChatCompletions::new(config(&server)).unwrap_or_else(|e| panic!("{e}")));
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::new(
        personal_finance(),
        model,
        Arc::new(FnExecutor(finance)),
        store.clone(),
    );
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine.add_message(&thread.id, "budget").await.ok();
    engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let thread = store
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    let (_, status, content) = &outputs(&thread)[0];
    assert_eq!(*status, OutputStatus::Error);
    assert!(
        content["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("arguments are not valid JSON")
    );
    let sent = received(&server).await;
    assert_eq!(
        sent[1]["messages"][3]["role"], "tool",
        "the error output went back to the model"
    );
}

#[tokio::test]
async fn connection_failures_and_timeouts_are_retried_then_reported() {
    // Nothing listens on this port: connection refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    drop(listener);
    let mut config = ProviderConfig::new(format!("http://127.0.0.1:{port}/v1"));
    config.backoff_base = Duration::from_millis(1);
    config.max_retries = 1;
    let model = ChatCompletions::new(config).unwrap_or_else(|e| panic!("{e}"));
    let error = ask(&model, &[user("hi")], &EventLog::new())
        .await
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert_eq!(error.kind, ModelErrorKind::Unavailable);
    assert!(
        error.message.starts_with(&format!(
            "cannot connect to 127.0.0.1:{port} (connection refused)"
        )),
        "{}",
        error.message
    );
    assert!(
        error.message.ends_with("(gave up after 2 attempts)"),
        "{}",
        error.message
    );

    // A server slower than the total timeout.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(text("late").set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let mut config = self::config(&server);
    config.request_timeout = Duration::from_millis(100);
    config.max_retries = 1;
    let model = ChatCompletions::new(config).unwrap_or_else(|e| panic!("{e}"));
    let error = ask(&model, &[user("hi")], &EventLog::new())
        .await
        .err()
        .unwrap_or_else(|| panic!("should fail"));
    assert_eq!(error.kind, ModelErrorKind::Timeout);
    assert_eq!(received(&server).await.len(), 2);
}

#[tokio::test]
async fn azure_gets_its_deployment_path_api_version_and_api_key_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/gpt4o/chat/completions"))
        .and(query_param("api-version", "2024-10-21"))
        .and(header("api-key", "azure-key"))
        .respond_with(text("from azure"))
        .mount(&server)
        .await;
    let config = ProviderConfig::azure(
        &server.uri(),
        "gpt4o",
        "2024-10-21",
        Secret::new("azure-key"),
    );
    let model = ChatCompletions::new(config).unwrap_or_else(|e| panic!("{e}"));
    let response = ask(&model, &[user("hi")], &EventLog::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.turn, ModelTurn::Text("from azure".into()));
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(
        requests[0].headers.get("authorization").is_none(),
        "no bearer token for Azure"
    );
}

#[tokio::test]
async fn every_attempt_carries_the_configured_headers_and_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(text("hello"))
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.api_key = Some(Secret::new("sk-test-key"));
    config.headers = vec![
        ("x-team".into(), "billing".into()),
        ("x-team".into(), "support".into()),
    ];
    config.backoff_base = Duration::from_millis(1);
    let model = ChatCompletions::new(config).unwrap_or_else(|e| panic!("{e}"));
    let response = ask(&model, &[user("hi")], &EventLog::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.turn, ModelTurn::Text("hello".into()));
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 2, "one retry after the 503");
    for request in &requests {
        let sent = |name: &str| -> Vec<String> {
            request
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(sent("authorization"), ["Bearer sk-test-key"]);
        assert_eq!(sent("content-type"), ["application/json"]);
        assert_eq!(sent("x-team"), ["billing", "support"]);
    }
}

#[test]
fn a_bad_url_header_or_key_is_a_configuration_error_before_any_request() {
    type Breaks = fn(&mut ProviderConfig);
    let cases: [(&str, Breaks, &str); 4] = [
        (
            "url",
            |c| c.base_url = "http://exa mple.com/v1".into(),
            "the provider URL `http://exa mple.com/v1` is not valid",
        ),
        (
            "header name",
            |c| c.headers = vec![("bad name".into(), "x".into())],
            "the provider header name `bad name` is not a valid HTTP header name",
        ),
        (
            "header value",
            |c| c.headers = vec![("x-team".into(), "line\nbreak".into())],
            "the value of the provider header `x-team` is not a valid HTTP header value",
        ),
        (
            "key",
            |c| c.api_key = Some(Secret::new("sk-\nsecret")),
            "the API key is not a valid HTTP header value",
        ),
    ];
    for (what, break_it, expected) in cases {
        let mut config = ProviderConfig::new("http://127.0.0.1:9/v1");
        break_it(&mut config);
        let Err(error) = ChatCompletions::new(config) else {
            panic!("a bad {what} was accepted");
        };
        assert_eq!(error.kind, ModelErrorKind::Configuration, "{what}");
        assert!(
            error.message.contains(expected),
            "{what}: {}",
            error.message
        );
        assert!(
            !error.message.contains("secret"),
            "{what}: {}",
            error.message
        );
    }
}

#[test]
fn context_can_be_sent_as_a_user_message_for_strict_chat_templates() {
    let flow = personal_finance();
    let messages = [
        user("hi"),
        Message {
            id: "c".into(),
            run_id: None,
            created_at: 0,
            kind: MessageKind::Context {
                tool: "t".into(),
                text: "Note this.".into(),
            },
            metadata: Metadata::default(),
        },
    ];
    let mut config = ProviderConfig::new("http://x/v1");
    config.context_role = ContextRole::User;
    config.legacy_max_tokens = true;
    config.model = Some("qwen2.5".into());
    let body = request_body(
        &config,
        &ModelRequest {
            flow: &flow,
            instructions: "I",
            messages: &messages,
            history: &messages,
            words_only: false,
        },
    );
    assert_eq!(
        body["messages"][2],
        json!({ "role": "user", "content": "[context] Note this." })
    );
    assert_eq!(body["model"], "qwen2.5");
}

#[test]
fn a_tool_that_follows_another_is_left_out_until_the_user_answered_its_result() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/travel-booking.toml");
    let flow = clarion_flow::load_file(&path)
        .into_result()
        .unwrap_or_else(|e| panic!("{e:?}"));
    let call = ToolCall {
        id: "call_1".into(),
        name: "search_flights".into(),
        arguments: r#"{"origin": "LIS"}"#.into(),
    };
    let mut messages = vec![
        user("Flights LIS to JFK on July 3 for two?"),
        Message {
            id: "a".into(),
            run_id: None,
            created_at: 0,
            kind: MessageKind::ToolCalls {
                text: None,
                calls: vec![call],
            },
            metadata: Metadata::default(),
        },
        Message {
            id: "o".into(),
            run_id: None,
            created_at: 0,
            kind: MessageKind::ToolOutput {
                call_id: "call_1".into(),
                name: "search_flights".into(),
                status: OutputStatus::Ok,
                content: "[]".into(),
            },
            metadata: Metadata::default(),
        },
    ];
    let tools = |messages: &[Message]| -> Vec<String> {
        let body = request_body(
            &ProviderConfig::new("http://x/v1"),
            &ModelRequest {
                flow: &flow,
                instructions: "I",
                messages,
                history: messages,
                words_only: false,
            },
        );
        body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(tools(&messages), ["search_flights", "search_hotels"]);
    messages.push(user("Book the first one."));
    assert_eq!(
        tools(&messages),
        ["search_flights", "search_hotels", "book_flight"]
    );
}

/// The body as it was built before `RequestBody` (a `Value` tree), the reference for its
/// bytes.
fn value_body(config: &ProviderConfig, request: &ModelRequest<'_>) -> Value {
    fn message(kind: &MessageKind, context_role: ContextRole) -> Value {
        match kind {
            MessageKind::User { text } => json!({ "role": "user", "content": text }),
            MessageKind::Assistant { text } | MessageKind::Question { text, .. } => {
                json!({ "role": "assistant", "content": text })
            }
            MessageKind::ToolCalls { text, calls } => json!({
                "role": "assistant",
                "content": text,
                "tool_calls": calls.iter().map(|c| json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments },
                })).collect::<Vec<_>>(),
            }),
            MessageKind::ToolOutput {
                call_id, content, ..
            } => json!({ "role": "tool", "tool_call_id": call_id, "content": content }),
            MessageKind::Context { text, .. } => match context_role {
                ContextRole::System => json!({ "role": "system", "content": text }),
                ContextRole::User => {
                    json!({ "role": "user", "content": format!("[context] {text}") })
                }
            },
        }
    }
    let mut body = clarion_flow::export::definition_offering(
        request.flow,
        clarion_flow::export::ExportFormat::ChatCompletions,
        request.instructions.to_owned(),
        &|tool| request.offers(tool),
    );
    if let Some(model) = &config.model {
        body.insert("model".to_owned(), Value::String(model.clone()));
    }
    if let Some(choice) =
        request.tool_choice_override(clarion_flow::export::ExportFormat::ChatCompletions)
    {
        body.insert("tool_choice".to_owned(), choice);
    }
    if config.legacy_max_tokens
        && let Some(n) = body.remove("max_completion_tokens")
    {
        body.insert("max_tokens".to_owned(), n);
    }
    let mut messages = vec![json!({ "role": "system", "content": request.instructions })];
    messages.extend(
        request
            .messages
            .iter()
            .map(|m| message(&m.kind, config.context_role)),
    );
    body.insert("messages".to_owned(), Value::Array(messages));
    if config.stream {
        body.insert("stream".to_owned(), Value::Bool(true));
        body.insert(
            "stream_options".to_owned(),
            json!({ "include_usage": true }),
        );
    }
    Value::Object(body)
}

#[test]
fn the_body_is_written_byte_for_byte_as_the_value_tree_was() {
    use clarion_providers::chat_completions::RequestBody;
    let flow = personal_finance();
    let with = |kind| Message {
        id: "x".into(),
        run_id: None,
        created_at: 0,
        kind,
        metadata: Metadata::default(),
    };
    let call = |id: &str| ToolCall {
        id: id.into(),
        name: "calculate_savings_timeline".into(),
        arguments: r#"{"goal_amount": 12000, "note": "a \"quoted\" é\n"}"#.into(),
    };
    let messages = [
        user("I save 1000 a month \"tab\"\t and ünïcode 🙂; how long to 12000?"),
        with(MessageKind::ToolCalls {
            text: None,
            calls: vec![call("call_1"), call("call_2")],
        }),
        with(MessageKind::ToolOutput {
            call_id: "call_1".into(),
            name: "calculate_savings_timeline".into(),
            status: OutputStatus::Ok,
            content: r#"{"months": 12}"#.into(),
        }),
        with(MessageKind::ToolOutput {
            call_id: "call_2".into(),
            name: "calculate_savings_timeline".into(),
            status: OutputStatus::Error,
            content: "failed\u{0}".into(),
        }),
        with(MessageKind::Context {
            tool: "calculate_savings_timeline".into(),
            text: "The goal is reachable.".into(),
        }),
        with(MessageKind::ToolCalls {
            text: Some("Let me check.".into()),
            calls: vec![call("call_3")],
        }),
        with(MessageKind::Assistant {
            text: "12 months.".into(),
        }),
        with(MessageKind::Question {
            call_id: "call_4".into(),
            tool: "calculate_savings_timeline".into(),
            params: vec!["goal_amount".into()],
            text: "Which goal?".into(),
            confirm: false,
        }),
        user(""),
    ];
    for (stream, legacy, role, model, words_only) in [
        (false, false, ContextRole::System, None, false),
        (true, true, ContextRole::User, Some("qwen2.5"), true),
        (true, false, ContextRole::System, Some("m"), false),
    ] {
        let mut config = ProviderConfig::new("http://x/v1");
        config.stream = stream;
        config.legacy_max_tokens = legacy;
        config.context_role = role;
        config.model = model.map(str::to_owned);
        for n in [0, 1, messages.len()] {
            let request = ModelRequest {
                flow: &flow,
                instructions: "You help.\n{\"not\": \"json\"}",
                messages: &messages[..n],
                history: &messages[..n],
                words_only,
            };
            let reference = serde_json::to_vec(&value_body(&config, &request))
                .unwrap_or_else(|e| panic!("{e}"));
            let written = serde_json::to_vec(&RequestBody::new(&config, &request))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&reference),
                "stream {stream}, legacy {legacy}, {n} messages"
            );
            assert_eq!(
                request_body(&config, &request),
                value_body(&config, &request)
            );
        }
    }
}
