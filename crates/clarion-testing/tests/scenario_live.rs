//! Scenarios against a model server (wiremock on loopback, speaking Chat Completions): a
//! live run checks expectations only and records every exchange; the recording then
//! replays offline, with the server gone, to the same conversation.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use clarion_testing::{ModelMode, Runner, UpdateMode, recording_path};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers with the given responses in order (the last one repeats).
struct Sequence(Mutex<VecDeque<ResponseTemplate>>);

impl Respond for Sequence {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let mut queue = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if queue.len() > 1 {
            queue
                .pop_front()
                .unwrap_or_else(|| ResponseTemplate::new(500))
        } else {
            queue
                .front()
                .cloned()
                .unwrap_or_else(|| ResponseTemplate::new(500))
        }
    }
}

fn completion(message: &Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18 },
    }))
}

const SCENARIO: &str = r#"[mocks.calculate_savings_timeline]
result = { months = 20, years = 1.7, attainable = true }

[[turns]]
user = "How long to save $10,000 at $500 a month? I earn $3,000."

[turns.expect]
tool_called = { tool = "calculate_savings_timeline", args = { goal_amount = 10000 } }
context_injected = "1.7-year timeline"
"#;

fn project(base_url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(flows.join("pf/scenarios")).unwrap_or_else(|e| panic!("{e}"));
    let flow = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/personal-finance.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let flow = format!("{flow}\n[provider]\nbase_url = \"{base_url}\"\nstream = false\n");
    std::fs::write(flows.join("pf.toml"), flow).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(flows.join("pf/scenarios/plan.toml"), SCENARIO)
        .unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_run_checks_expectations_records_and_replays_offline() {
    let server = MockServer::start().await;
    let call = json!({
        "role": "assistant",
        "content": null,
        "tool_calls": [{
            "id": "call_live_1",
            "type": "function",
            "function": {
                "name": "calculate_savings_timeline",
                "arguments": "{\"goal_amount\": 10000, \"monthly_income\": 3000, \"monthly_savings\": 500}",
            },
        }],
    });
    let reply = json!({ "role": "assistant", "content": "About 20 months." });
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(Sequence(Mutex::new(
            vec![completion(&call), completion(&reply)].into(),
        )))
        .mount(&server)
        .await;
    let dir = project(&format!("{}/v1", server.uri()));
    let scenario = dir.path().join("flows/pf/scenarios/plan.toml");

    let live = Runner::new().with_model_mode(ModelMode::Live { record: true });
    let outcome = live.run(&scenario).await;
    assert!(
        outcome.problems.is_empty(),
        "{}",
        outcome.diagnostics(false)
    );
    assert!(
        outcome.failures.is_empty(),
        "{}",
        outcome.diagnostics(false)
    );
    assert!(!outcome.compared, "live transcripts are not compared");
    assert!(
        outcome.transcript.contains("assistant: About 20 months."),
        "{}",
        outcome.transcript
    );
    let check = outcome.check_snapshot(UpdateMode::Pending);
    assert!(
        outcome.passed(&check) && check.written.is_none(),
        "nothing is snapshotted"
    );
    let recording = std::fs::read_to_string(recording_path(&scenario)).unwrap_or_default();
    assert_eq!(recording.lines().count(), 2, "one line per model request");

    drop(server);
    let offline = Runner::new().with_model_mode(ModelMode::Replay);
    let replayed = offline.run(&scenario).await;
    assert!(
        replayed.problems.is_empty(),
        "{}",
        replayed.diagnostics(false)
    );
    assert!(
        replayed.failures.is_empty(),
        "{}",
        replayed.diagnostics(false)
    );
    assert_eq!(
        replayed.transcript, outcome.transcript,
        "offline, the same conversation"
    );
}

#[tokio::test]
async fn a_live_model_that_misses_an_expectation_fails_it() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(completion(
            &json!({ "role": "assistant", "content": "I can't help." }),
        ))
        .mount(&server)
        .await;
    let dir = project(&format!("{}/v1", server.uri()));
    let scenario = dir.path().join("flows/pf/scenarios/plan.toml");
    let outcome = Runner::new()
        .with_model_mode(ModelMode::Live { record: false })
        .run(&scenario)
        .await;
    assert!(
        outcome.problems.is_empty(),
        "{}",
        outcome.diagnostics(false)
    );
    let codes: Vec<&str> = outcome
        .failures
        .iter()
        .map(clarion_flow::diagnostic::Diagnostic::code)
        .collect();
    assert_eq!(codes, ["S015", "S015"], "{}", outcome.diagnostics(false));
    assert!(!recording_path(&scenario).exists());
}
