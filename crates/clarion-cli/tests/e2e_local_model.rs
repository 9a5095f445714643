//! End to end against a real model server (llama.cpp's `llama-server` with a small
//! instruct model, see `scripts/local-model.sh`), ignored by default.
//!
//! Run with `CLARION_E2E_BASE_URL=http://127.0.0.1:8089/v1 cargo test -p clarion-cli --test
//! e2e_local_model -- --ignored` (`.ci/run` does when the local model installs). A small
//! model's wording is never asserted — only structure: a tool was called with arguments
//! that passed the schema, a question was asked for a missing parameter and the answer
//! completed the call, a transfer waited for confirmation and ran only on a yes, and every
//! request the model received kept the protocol invariant.

// The skip reason and the request count are this suite's report in CI logs.
#![allow(clippy::print_stderr)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarion_engine::BoxFuture;
use clarion_engine::MemoryStore;
use clarion_engine::{Engine, RunStatus, protocol};
use clarion_engine::{Event, EventLog};
use clarion_engine::{Metadata, OutputStatus};
use clarion_engine::{Model, ModelError, ModelRequest, ModelResponse};
use clarion_flow::Flow;
use clarion_flow::{LoadOptions, load_file_with};
use clarion_providers::chat_completions::ChatCompletions;
use clarion_providers::config::{ContextRole, ProviderConfig};
use clarion_tools::ClarionTools;

/// Checks the invariant on every history the model is sent.
struct Checked {
    inner: ChatCompletions,
    violations: Mutex<Vec<String>>,
    requests: Mutex<usize>,
}

impl Model for Checked {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn clarion_engine::EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        if let Err(violation) = protocol::check(request.messages)
            && let Ok(mut violations) = self.violations.lock()
        {
            violations.push(violation.to_string());
        }
        if let Ok(mut requests) = self.requests.lock() {
            *requests += 1;
        }
        self.inner.respond(request, events)
    }
}

fn setup() -> Option<(Engine, Arc<Checked>)> {
    setup_flow("personal-finance")
}

fn setup_flow(name: &str) -> Option<(Engine, Arc<Checked>)> {
    let Ok(base_url) = std::env::var("CLARION_E2E_BASE_URL") else {
        eprintln!(
            "skipped: CLARION_E2E_BASE_URL is not set (scripts/local-model.sh start prints it)"
        );
        return None;
    };
    let tools = ClarionTools::new();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../flows/{name}.toml"));
    let mut flow: Flow = load_file_with(
        &path,
        &LoadOptions {
            builtins: Some(tools.builtins()),
            ..LoadOptions::default()
        },
    )
    .into_result()
    .unwrap_or_else(|e| panic!("{e}"));
    // Greedy decoding: the same request gets the same answer, run after run.
    flow.assistant.temperature = Some(0.0);
    let mut config = ProviderConfig::new(base_url);
    config.model = std::env::var("CLARION_E2E_MODEL").ok();
    config.stream = true;
    config.context_role = ContextRole::System;
    config.request_timeout = Duration::from_secs(300);
    config.max_retries = 1;
    let model = Arc::new(Checked {
        inner: ChatCompletions::new(config).unwrap_or_else(|e| panic!("{e}")),
        violations: Mutex::new(Vec::new()),
        requests: Mutex::new(0),
    });
    let engine = Engine::new(
        Arc::new(flow),
        model.clone(),
        Arc::new(tools),
        Arc::new(MemoryStore::new()),
    );
    Some((engine, model))
}

fn finished(events: &[Event], tool: &str) -> Vec<OutputStatus> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ToolFinished { name, status, .. } if name == tool => Some(*status),
            _ => None,
        })
        .collect()
}

fn assert_protocol_held(model: &Checked) {
    let violations = model
        .violations
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    assert!(
        violations.is_empty(),
        "protocol violations sent to the model: {violations:?}"
    );
    let requests = model.requests.lock().map(|r| *r).unwrap_or_default();
    eprintln!("e2e: {requests} model requests, protocol held in every one");
}

#[tokio::test]
#[ignore = "needs a local model server: set CLARION_E2E_BASE_URL"]
async fn a_real_model_calls_the_tool_with_schema_valid_arguments() {
    let Some((engine, model)) = setup() else {
        return;
    };
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(&thread.id, "I want to save $12000. My net monthly income is $4000 and I can save $1000 per month. Use calculate_savings_timeline to tell me how long it takes.")
        .await.unwrap_or_else(|e| panic!("{e}"));
    let events = EventLog::new();
    let run = engine
        .run(&thread.id, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(run.status, RunStatus::Failed, "{:?}", run.last_error);
    let statuses = finished(&events.events(), "calculate_savings_timeline");
    assert!(
        statuses.contains(&OutputStatus::Ok),
        "the tool ran with schema-valid arguments: {statuses:?}"
    );
    assert_protocol_held(&model);
}

/// Asked about a goal alone, Qwen2.5-Coder-1.5B invents an income and a savings rate
/// whatever the instructions say; the flow marks those parameters `grounded`, so the
/// engine drops the guesses and asks. Either way — the model leaves them out, or guesses
/// and is not believed — the user is asked.
#[tokio::test]
#[ignore = "needs a local model server: set CLARION_E2E_BASE_URL"]
async fn a_missing_value_is_asked_for_and_the_answer_completes_the_call() {
    let Some((engine, model)) = setup() else {
        return;
    };
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(
            &thread.id,
            "Use calculate_savings_timeline: how long until I have saved $30000 for a car?",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = EventLog::new();
    engine
        .run(&thread.id, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let asked = events.events().into_iter().find_map(|e| match e {
        Event::QuestionAsked { params, .. } => Some(params),
        _ => None,
    });
    let asked = asked.unwrap_or_else(|| {
        panic!(
            "no question for the missing parameters: {:?}",
            events.events()
        )
    });
    assert!(!asked.is_empty());
    engine
        .add_message(
            &thread.id,
            "My net monthly income is $5000 and I save $500 per month.",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = EventLog::new();
    let run = engine
        .run(&thread.id, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(run.status, RunStatus::Failed, "{:?}", run.last_error);
    let statuses = finished(&events.events(), "calculate_savings_timeline");
    assert!(
        statuses.contains(&OutputStatus::Ok),
        "the answer completed the call: {statuses:?} {:?}",
        events.events()
    );
    assert_protocol_held(&model);
}

/// `confirm`: the transfer waits for the user's answer, which a second, constrained
/// request reads — a yes runs it once, a no never runs it.
#[tokio::test]
#[ignore = "needs a local model server: set CLARION_E2E_BASE_URL"]
async fn a_transfer_waits_for_confirmation_and_runs_only_on_yes() {
    let Some((engine, model)) = setup_flow("bank-transfer") else {
        return;
    };
    for (answer, runs) in [("Yes, go ahead.", true), ("No, don't do it.", false)] {
        let thread = engine
            .create_thread(Metadata::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        engine
            .add_message(&thread.id, "Transfer $200 from checking to savings.")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let events = EventLog::new();
        engine
            .run(&thread.id, &events)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let events = events.events();
        assert!(
            events.iter().any(
                |e| matches!(e, Event::ConfirmationAsked { tool, .. } if tool == "transfer_funds")
            ),
            "the transfer was held for confirmation: {events:?}"
        );
        assert!(
            finished(&events, "transfer_funds")
                .iter()
                .all(|s| *s == OutputStatus::NeedsConfirmation),
            "nothing ran before the answer: {events:?}"
        );
        engine
            .add_message(&thread.id, answer)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let log = EventLog::new();
        let run = engine
            .run(&thread.id, &log)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(run.status, RunStatus::Failed, "{:?}", run.last_error);
        let events = log.events();
        let decided = events.iter().find_map(|e| match e {
            Event::ConfirmationAnswered { decision, .. } => Some(decision.as_str()),
            _ => None,
        });
        let ran = events
            .iter()
            .filter(|e| matches!(e, Event::ToolStarted { name, .. } if name == "transfer_funds"))
            .count();
        if runs {
            assert_eq!(decided, Some("confirm"), "{events:?}");
            assert_eq!(ran, 1, "a yes runs the transfer once: {events:?}");
        } else {
            assert_eq!(decided, Some("decline"), "{events:?}");
            assert_eq!(ran, 0, "a no never runs it: {events:?}");
        }
    }
    assert_protocol_held(&model);
}

/// A handoff: the front desk hands a savings question to personal-finance, whose model
/// answers the same message in the same run (with its own instructions and tools).
#[tokio::test]
#[ignore = "needs a local model server: set CLARION_E2E_BASE_URL"]
async fn the_front_desk_hands_a_savings_question_to_personal_finance() {
    let Some((engine, model)) = setup_flow("front-desk") else {
        return;
    };
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(
            &thread.id,
            "I want to save $12,000 for a car. I can put away $1,000 a month. How long will it take?",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log = EventLog::new();
    let run = engine
        .run(&thread.id, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(run.status, RunStatus::Failed, "{:?}", run.last_error);
    let events = log.events();
    let handed: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::HandedOff { to, .. } => Some(to.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(handed, ["personal-finance"], "{events:?}");
    let thread = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(thread.active_flow(), "personal-finance");
    // personal-finance took the same message on: a reply or its own tool, after the handoff.
    let after = events
        .iter()
        .skip_while(|e| !matches!(e, Event::HandedOff { .. }))
        .any(|e| {
            matches!(
                e,
                Event::AssistantMessage { .. } | Event::QuestionAsked { .. }
            ) || matches!(e, Event::ToolCalled { name, .. } if name != "money")
        });
    assert!(
        after,
        "personal-finance answered after the handoff: {events:?}"
    );
    assert_protocol_held(&model);
}

/// The evaluation scenarios CI plays live, one sample each: the README's promise and two
/// that passed in every measured run (docs/benchmarks.md). No travel scenario yet: the
/// local model books (a client tool, with invented travellers) in the turn it searches. `CLARION_E2E_EVALS` (space-separated paths) replaces the list.
const CI_EVALS: &[&str] = &[
    "flows/personal-finance/evals/readme_example.toml",
    "flows/personal-finance/evals/house_goal.toml",
    "flows/support-triage/evals/ticket_status.toml",
];

/// `clarion test --live` through the built binary, as a user runs it: the scenarios' own
/// structural expectations (tool called, question asked, every run `completed`) must hold.
#[test]
#[ignore = "needs a local model server: set CLARION_E2E_BASE_URL"]
fn clarion_test_live_plays_the_evaluation_scenarios_through_the_binary() {
    let Ok(base_url) = std::env::var("CLARION_E2E_BASE_URL") else {
        eprintln!(
            "skipped: CLARION_E2E_BASE_URL is not set (scripts/local-model.sh start prints it)"
        );
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let evals: Vec<String> = std::env::var("CLARION_E2E_EVALS").map_or_else(
        |_| CI_EVALS.iter().map(|s| (*s).to_owned()).collect(),
        |list| list.split_whitespace().map(str::to_owned).collect(),
    );
    let started = std::time::Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clarion"))
        .current_dir(&root)
        .args(["test", "--live", "--jobs", "1"])
        .args(&evals)
        .env("OPENAI_BASE_URL", &base_url)
        .env_remove("OPENAI_API_KEY")
        .env("CI", "true")
        .output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "e2e: clarion test --live, {} scenarios in {:.0} s\n{stdout}",
        evals.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(!stderr.contains("panicked"), "clarion panicked:\n{stderr}");
    assert!(
        output.status.success(),
        "clarion test --live failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

/// `clarion eval` through the built binary against the local model: a small evaluation of
/// the finance flow (the README's promise, one sample) yields a results file whose
/// structure holds whatever the model said, and a well-formed HTML report.
#[test]
#[ignore = "needs a local model server: set CLARION_E2E_BASE_URL"]
fn clarion_eval_reports_on_the_finance_flow_against_the_local_model() {
    let Ok(base_url) = std::env::var("CLARION_E2E_BASE_URL") else {
        eprintln!(
            "skipped: CLARION_E2E_BASE_URL is not set (scripts/local-model.sh start prints it)"
        );
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let results = out.path().join("results.json");
    let report = out.path().join("eval.html");
    let started = std::time::Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clarion"))
        .current_dir(&root)
        .args(["eval", "flows/personal-finance/evals/readme_example.toml"])
        .args(["--samples", "1", "--model", "qwen2.5-coder-1.5b-instruct"])
        .arg("--out")
        .arg(&results)
        .arg("--report")
        .arg(&report)
        .env("OPENAI_BASE_URL", &base_url)
        .env_remove("OPENAI_API_KEY")
        .env("CI", "true")
        .output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "e2e: clarion eval, 1 sample in {:.0} s\n{stdout}",
        started.elapsed().as_secs_f64()
    );
    assert!(!stderr.contains("panicked"), "clarion panicked:\n{stderr}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap_or_default())
            .unwrap_or_else(|e| panic!("the results file: {e}"));
    assert_eq!(json["model"], "qwen2.5-coder-1.5b-instruct");
    let scenario = &json["scenarios"][0];
    assert_eq!(scenario["total"], 1, "{scenario}");
    let sample = &scenario["samples"][0];
    assert!(
        ["passed", "failed"].contains(&sample["verdict"].as_str().unwrap_or_default()),
        "the conversation was played to the end: {sample}"
    );
    assert_eq!(sample["turns"], 2, "{sample}");
    assert!(
        sample["prompt_tokens"].as_u64().is_some_and(|t| t > 0),
        "llama.cpp reports usage"
    );
    assert_eq!(
        scenario["expectations"].as_array().map(Vec::len),
        Some(4),
        "every expectation of the scenario is judged"
    );
    let html = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(html.contains("id=\"expectations\"") && html.contains("qwen2.5-coder-1.5b-instruct"));
}
