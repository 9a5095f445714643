//! The tool-use policy and the loop guard: `tool_choice = "required"` with Clarion's own
//! `reply` tool, and a call repeated after it succeeded — told once, then the run ends.

mod support;

use std::sync::{Arc, Mutex};

use clarion_engine::BoxFuture;
use clarion_engine::FnExecutor;
use clarion_engine::IncompleteReason;
use clarion_engine::MemoryStore;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{Engine, RunStatus};
use clarion_engine::{Event, EventLog, EventSink};
use clarion_engine::{MessageKind, Metadata, OutputStatus};
use clarion_engine::{Model, ModelError, ModelRequest, ModelResponse};
use clarion_flow::export::{ExportFormat, REPLY_TOOL, export};
use serde_json::{Map, Value, json};
use support::*;

const ALL: &str = r#"{"goal_amount": 12000, "monthly_income": 5000, "monthly_savings": 1000}"#;
const SAID: &str = "I want $12,000; I earn $5,000 and save $1,000 a month. How long?";

fn required_flow() -> Arc<clarion_flow::Flow> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/personal-finance.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .replace(
        "parallel_tool_calls = true",
        "parallel_tool_calls = true\ntool_choice = \"required\"",
    );
    flow_from(&text)
}

/// Records whether each request asked for words only, and which tool choice it sent.
struct Watching {
    inner: ScriptedModel,
    words_only: Mutex<Vec<bool>>,
    choices: Mutex<Vec<Option<Value>>>,
}

impl Model for Watching {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        if let Ok(mut seen) = self.words_only.lock() {
            seen.push(request.words_only);
        }
        if let Ok(mut seen) = self.choices.lock() {
            seen.push(request.tool_choice_override(ExportFormat::ChatCompletions));
        }
        self.inner.respond(request, events)
    }
}

fn watched(flow: Arc<clarion_flow::Flow>, turns: Vec<ScriptedTurn>) -> (Engine, Arc<Watching>) {
    let model = Arc::new(Watching {
        inner: ScriptedModel::new(turns),
        words_only: Mutex::new(Vec::new()),
        choices: Mutex::new(Vec::new()),
    });
    let engine = Engine::new(
        flow,
        model.clone(),
        Arc::new(FnExecutor(finance)),
        Arc::new(MemoryStore::new()),
    );
    (engine, model)
}

async fn run_once(engine: &Engine, text: &str) -> (clarion_engine::Run, Vec<Event>) {
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(&thread.id, text)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = EventLog::new();
    let run = engine
        .run(&thread.id, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let thread = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    (run, events.events())
}

#[tokio::test]
async fn a_repeated_call_is_answered_once_then_the_model_must_use_words() {
    let calc = "calculate_savings_timeline";
    let (engine, model) = watched(
        personal_finance(),
        vec![
            ScriptedTurn::call(calc, ALL),
            ScriptedTurn::call(calc, ALL),
            ScriptedTurn::text("12 months."),
        ],
    );
    let (run, events) = run_once(&engine, SAID).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.repeated_calls, 1);
    let finished: Vec<(OutputStatus, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::ToolFinished {
                status, content, ..
            } => Some((*status, content.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        finished.len(),
        2,
        "one run, one repeat answered: {finished:?}"
    );
    assert_eq!(finished[0].0, OutputStatus::Ok);
    assert_eq!(finished[1].0, OutputStatus::Error);
    assert!(finished[1].1.contains("repeated_call"), "{}", finished[1].1);
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::ToolStarted { .. }))
        .count();
    assert_eq!(started, 1, "the repeat did not run");
    assert_eq!(
        *model
            .words_only
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        [false, false, true],
        "after the repeat, words only"
    );
    assert_eq!(
        model
            .choices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)[2],
        Some(json!("none")),
        "under auto, words only is tool_choice none"
    );
}

#[tokio::test]
async fn a_second_repeat_ends_the_run_incomplete() {
    let calc = "calculate_savings_timeline";
    let (engine, _) = watched(
        personal_finance(),
        vec![
            ScriptedTurn::call(calc, ALL),
            ScriptedTurn::call(calc, ALL),
            ScriptedTurn::call(calc, ALL),
        ],
    );
    let (run, _) = run_once(&engine, SAID).await;
    assert_eq!(run.status, RunStatus::Incomplete);
    assert_eq!(run.incomplete_details, Some(IncompleteReason::RepeatedCall));
    assert!(run.last_error.is_none(), "incomplete is not failed");
    assert_eq!(run.steps, 3);
}

#[tokio::test]
async fn the_same_values_written_differently_are_a_repeat_and_other_values_are_not() {
    let calc = "calculate_savings_timeline";
    // Another order, 1000.0 for 1000 and a null (not given): the same call.
    let respelled =
        r#"{"monthly_savings": 1000.0, "monthly_income": 5000, "goal_amount": 12000, "x": null}"#;
    let (engine, _) = watched(
        personal_finance(),
        vec![
            ScriptedTurn::call(calc, ALL),
            ScriptedTurn::call(calc, respelled),
            ScriptedTurn::text("done"),
        ],
    );
    let (run, _) = run_once(&engine, SAID).await;
    assert_eq!((run.status, run.repeated_calls), (RunStatus::Completed, 1));

    let other = r#"{"goal_amount": 12000, "monthly_income": 5000, "monthly_savings": 500}"#;
    let (engine, _) = watched(
        personal_finance(),
        vec![
            ScriptedTurn::call(calc, ALL),
            ScriptedTurn::call(calc, other),
            ScriptedTurn::text("done"),
        ],
    );
    let (run, events) = run_once(&engine, &format!("{SAID} Or $500?")).await;
    assert_eq!((run.status, run.repeated_calls), (RunStatus::Completed, 0));
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::ToolStarted { .. }))
        .count();
    assert_eq!(started, 2, "other values run");
}

#[tokio::test]
async fn under_required_the_reply_tool_is_the_answer() {
    let (engine, model) = watched(
        required_flow(),
        vec![
            ScriptedTurn::call("calculate_savings_timeline", ALL),
            ScriptedTurn::call(REPLY_TOOL, r#"{"text": "About 12 months."}"#),
        ],
    );
    let (run, events) = run_once(&engine, SAID).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::AssistantMessage { text } if text == "About 12 months.")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::TextDelta { text } if text == "About 12 months.")),
        "the reply is shown as text"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ToolCalled { name, .. } if name == REPLY_TOOL)),
        "users never see the reply tool as a call"
    );
    let threads: Vec<String> = engine
        .store()
        .thread_headers(10)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.id)
        .collect();
    let thread = engine
        .thread(&threads[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        &thread.messages.last().map(|m| &m.kind),
        Some(MessageKind::Assistant { text }) if text == "About 12 months."
    ));
    let _ = model;
}

#[tokio::test]
async fn under_required_words_only_forces_the_reply_tool() {
    let calc = "calculate_savings_timeline";
    let (engine, model) = watched(
        required_flow(),
        vec![
            ScriptedTurn::call(calc, ALL),
            ScriptedTurn::call(calc, ALL),
            ScriptedTurn::call(REPLY_TOOL, r#"{"text": "12 months."}"#),
        ],
    );
    let (run, _) = run_once(&engine, SAID).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        model
            .choices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)[2],
        Some(json!({ "type": "function", "function": { "name": "reply" } }))
    );
}

#[tokio::test]
async fn a_reply_alongside_a_call_is_the_calls_text_not_the_answer() {
    let (engine, _) = watched(
        required_flow(),
        vec![ScriptedTurn::calls(&[
            (REPLY_TOOL, r#"{"text": "It takes 12 months."}"#),
            ("calculate_savings_timeline", r#"{"goal_amount": 12000}"#),
        ])],
    );
    let (run, events) = run_once(&engine, "How long to save $12,000?").await;
    assert_eq!(run.status, RunStatus::Completed);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::AssistantMessage { .. })),
        "the run ended with a question, not the model's guess: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::QuestionAsked { .. }))
    );
}

#[test]
fn export_adds_the_reply_tool_under_required_only() {
    let names = |flow: &clarion_flow::Flow, format| -> Vec<String> {
        let body = export(flow, format, &Map::new(), &Map::new()).unwrap_or_else(|e| panic!("{e}"));
        body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                t["function"]["name"]
                    .as_str()
                    .or_else(|| t["name"].as_str())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let required = required_flow();
    for format in [ExportFormat::ChatCompletions, ExportFormat::Responses] {
        assert_eq!(
            names(&required, format).last().map(String::as_str),
            Some(REPLY_TOOL)
        );
    }
    assert!(!names(&required, ExportFormat::Assistants).contains(&REPLY_TOOL.to_owned()));
    assert!(
        !names(&personal_finance(), ExportFormat::ChatCompletions).contains(&REPLY_TOOL.to_owned())
    );
}
