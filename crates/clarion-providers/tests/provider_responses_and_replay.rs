//! The Responses API provider on loopback, and record/replay: a conversation recorded
//! against an HTTP provider replays offline, and a changed request fails with a diff.

// The engine's test helpers: the example flow, stand-in tools, assertions.
#[path = "../../clarion-engine/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use clarion_engine::FnExecutor;
use clarion_engine::Metadata;
use clarion_engine::{Engine, RunStatus};
use clarion_engine::{ErrorCode, IncompleteReason, ModelErrorKind};
use clarion_engine::{Event, EventLog, NoEvents};
use clarion_engine::{MemoryStore, ThreadStore};
use clarion_engine::{Model, ModelTurn};
use clarion_providers::config::{ProviderConfig, Secret};
use clarion_providers::replay::{RecordingModel, ReplayModel};
use clarion_providers::responses::Responses;
use serde_json::{Value, json};
use support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn config(server: &MockServer) -> ProviderConfig {
    let mut config = ProviderConfig::new(format!("{}/v1", server.uri()));
    config.api_key = Some(Secret::new("sk-responses-secret-0000"));
    config.backoff_base = Duration::from_millis(1);
    config
}

fn function_call() -> Value {
    json!({
        "id": "resp_1", "object": "response", "status": "completed",
        "output": [
            { "type": "reasoning", "id": "rs_1", "summary": [] },
            { "type": "function_call", "id": "fc_1", "call_id": "call_77", "name": "calculate_savings_timeline",
              "arguments": "{\"goal_amount\": 6000, \"monthly_income\": 3000, \"monthly_savings\": 500}" }
        ],
        "usage": { "input_tokens": 20, "output_tokens": 9 }
    })
}

fn message(text: &str) -> Value {
    json!({
        "id": "resp_2", "object": "response", "status": "completed",
        "output": [{ "type": "message", "role": "assistant", "content": [{ "type": "output_text", "text": text }] }],
        "usage": { "input_tokens": 30, "output_tokens": 5 }
    })
}

fn engine_over(model: Arc<dyn Model>) -> (Engine, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    (
        Engine::new(
            personal_finance(),
            model,
            Arc::new(FnExecutor(finance)),
            store.clone(),
        ),
        store,
    )
}

#[tokio::test]
async fn the_responses_api_pairs_function_calls_and_outputs_by_call_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(Sequence::new(vec![
            ResponseTemplate::new(200).set_body_json(function_call()),
            ResponseTemplate::new(200).set_body_json(message("A year.")),
        ]))
        .mount(&server)
        .await;
    let model = Arc::new(Responses::new(config(&server)).unwrap_or_else(|e| panic!("{e}")));
    let (engine, store) = engine_over(model);
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(&thread.id, "6000 at 500 a month? I earn 3000.")
        .await
        .ok();
    let run = engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.usage.total(), 64);
    let thread = store
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    assert_eq!(last_text(&thread), "A year.");

    let bodies: Vec<Value> = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect();
    assert_eq!(bodies[0]["store"], false, "Clarion keeps the state");
    assert_eq!(
        bodies[0]["instructions"]
            .as_str()
            .map(|i| i.starts_with("You are a personal finance assistant")),
        Some(true)
    );
    assert_eq!(bodies[0]["tools"][0]["name"], "calculate_savings_timeline");
    let input = bodies[1]["input"].as_array().cloned().unwrap_or_default();
    let kinds: Vec<String> = input
        .iter()
        .map(|i| {
            i["type"].as_str().map_or_else(
                || i["role"].as_str().unwrap_or_default().to_owned(),
                ToOwned::to_owned,
            )
        })
        .collect();
    assert_eq!(
        kinds,
        ["user", "function_call", "function_call_output", "system"]
    );
    assert_eq!(input[1]["call_id"], "call_77");
    assert_eq!(input[2]["call_id"], "call_77");
}

#[tokio::test]
async fn streamed_responses_emit_deltas_and_incomplete_ends_the_run() {
    let server = MockServer::start().await;
    let events = [
        json!({ "type": "response.created", "response": { "status": "in_progress" } }),
        json!({ "type": "response.output_text.delta", "delta": "Hel" }),
        json!({ "type": "response.output_text.delta", "delta": "lo" }),
        json!({ "type": "response.completed", "response": message("Hello") }),
    ];
    let mut body = String::new();
    for e in &events {
        let kind = e["type"].as_str().unwrap_or_default();
        body.push_str("event: ");
        body.push_str(kind);
        body.push_str("\ndata: ");
        body.push_str(&e.to_string());
        body.push_str("\n\n");
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.stream = true;
    let model = Responses::new(config).unwrap_or_else(|e| panic!("{e}"));
    let log = EventLog::new();
    let flow = personal_finance();
    let messages = [];
    let response = model
        .respond(
            clarion_engine::ModelRequest {
                flow: &flow,
                instructions: "I",
                messages: &messages,
                history: &messages,
                words_only: false,
            },
            &log,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.turn, ModelTurn::Text("Hello".into()));
    let deltas: Vec<String> = log
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::TextDelta { text } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, ["Hel", "lo"]);

    let server = MockServer::start().await;
    let incomplete = json!({ "status": "incomplete", "incomplete_details": { "reason": "max_output_tokens" }, "output": [] });
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(incomplete))
        .mount(&server)
        .await;
    let (engine, _) = engine_over(Arc::new(
        Responses::new(self::config(&server)).unwrap_or_else(|e| panic!("{e}")),
    ));
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
    assert_eq!(
        run.incomplete_details,
        Some(IncompleteReason::MaxOutputTokens)
    );
    assert!(run.last_error.is_none(), "a cut-off turn is not an error");
}

#[tokio::test]
async fn a_recorded_conversation_replays_offline_and_a_changed_request_shows_a_diff() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Sequence::new(vec![
            ResponseTemplate::new(200).set_body_json(function_call()),
            ResponseTemplate::new(200)
                .set_body_json(message("A year, using sk-responses-secret-0000.")),
        ]))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let recording = dir.path().join("conversation.jsonl");
    let live = Responses::new(config(&server)).unwrap_or_else(|e| panic!("{e}"));
    let recorder = RecordingModel::new(live, &recording, vec!["sk-responses-secret-0000".into()])
        .unwrap_or_else(|e| panic!("{e}"));
    let (engine, store) = engine_over(Arc::new(recorder));
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(&thread.id, "6000 at 500 a month? I earn 3000.")
        .await
        .ok();
    engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let recorded_thread = store
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let file = std::fs::read_to_string(&recording).unwrap_or_default();
    assert_eq!(file.lines().count(), 2);
    assert!(
        !file.contains("sk-responses-secret-0000"),
        "secrets are redacted from recordings"
    );
    assert!(!file.to_lowercase().contains("authorization"));
    drop(server); // offline from here on

    let replay = ReplayModel::open(&recording).unwrap_or_else(|e| panic!("{e}"));
    let (engine, store) = engine_over(Arc::new(replay));
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(&thread.id, "6000 at 500 a month? I earn 3000.")
        .await
        .ok();
    let run = engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let replayed = store
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds = |t: &clarion_engine::Thread| {
        t.messages
            .iter()
            .map(|m| m.kind.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&replayed).len(), kinds(&recorded_thread).len());
    assert_eq!(last_text(&replayed), "A year, using ***.");

    // The user says something else: the request differs from the recording.
    let replay = ReplayModel::open(&recording).unwrap_or_else(|e| panic!("{e}"));
    let (engine, _) = engine_over(Arc::new(replay));
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(&thread.id, "7000 at 500 a month? I earn 3000.")
        .await
        .ok();
    let run = engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.last_error.unwrap_or_else(|| panic!("no error"));
    assert_eq!(error.code, ErrorCode::Model(ModelErrorKind::ReplayMismatch));
    assert!(
        error
            .message
            .contains("-      \"text\": \"6000 at 500 a month? I earn 3000.\""),
        "{}",
        error.message
    );
    assert!(
        error
            .message
            .contains("+      \"text\": \"7000 at 500 a month? I earn 3000.\""),
        "{}",
        error.message
    );
}
