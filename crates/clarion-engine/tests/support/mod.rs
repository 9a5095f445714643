//! Shared helpers for engine tests: the example flow, a finance executor standing in for
//! the built-in tools, and assertions over threads.

#![allow(dead_code, clippy::missing_panics_doc, clippy::must_use_candidate)]

use clarion_engine::ToolErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{Engine, protocol};
use clarion_engine::{FnExecutor, ToolError, ToolExecutor};
use clarion_engine::{MemoryStore, ThreadStore};
use clarion_engine::{MessageKind, Metadata, OutputStatus, Thread};
use clarion_flow::Flow;
use clarion_flow::load_file;
use serde_json::{Map, Value, json};

pub(crate) fn personal_finance() -> Arc<Flow> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/personal-finance.toml");
    Arc::new(
        load_file(&path)
            .into_result()
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

pub(crate) fn flow_from(text: &str) -> Arc<Flow> {
    let report = clarion_flow::load_str("test.toml", text, None);
    let messages: Vec<String> = report
        .diagnostics
        .iter()
        .map(clarion_flow::diagnostic::Diagnostic::message)
        .collect();
    Arc::new(
        report
            .into_result()
            .unwrap_or_else(|_| panic!("flow does not load: {messages:?}")),
    )
}

fn number(args: &Map<String, Value>, key: &str) -> f64 {
    args.get(key).and_then(Value::as_f64).unwrap_or_default()
}

/// Stand-in finance tools with the shapes the example flow's rules read.
pub(crate) fn finance(
    tool: &clarion_flow::Tool,
    args: &Map<String, Value>,
) -> Result<Value, ToolError> {
    match tool.name.as_str() {
        "calculate_savings_timeline" => {
            let months = (number(args, "goal_amount") / number(args, "monthly_savings")).ceil();
            let years = (months / 12.0 * 10.0).round() / 10.0;
            Ok(json!({ "months": months, "years": years, "attainable": years <= 30.0 }))
        }
        "analyze_budget" => {
            let income = number(args, "monthly_income");
            let expenses = number(args, "monthly_expenses");
            Ok(json!({
                "recommended_savings": (income * 0.2).round(),
                "overspending": expenses > income * 0.8,
            }))
        }
        other => Err(ToolError::new(
            ToolErrorKind::Failed,
            format!("no stand-in for {other}"),
        )),
    }
}

pub(crate) struct Harness {
    pub engine: Engine,
    pub model: Arc<ScriptedModel>,
    pub store: Arc<MemoryStore>,
}

pub(crate) fn harness(
    flow: Arc<Flow>,
    executor: Arc<dyn ToolExecutor>,
    turns: Vec<ScriptedTurn>,
) -> Harness {
    let model = Arc::new(ScriptedModel::new(turns));
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::new(flow, model.clone(), executor, store.clone());
    Harness {
        engine,
        model,
        store,
    }
}

pub(crate) fn finance_harness(turns: Vec<ScriptedTurn>) -> Harness {
    harness(personal_finance(), Arc::new(FnExecutor(finance)), turns)
}

impl Harness {
    pub(crate) async fn thread(&self) -> Thread {
        self.engine
            .create_thread(Metadata::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) async fn reload(&self, thread: &Thread) -> Thread {
        self.store
            .thread(&thread.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Every tool call in the thread has exactly one output.
pub(crate) fn assert_protocol(thread: &Thread) {
    if let Err(violation) = protocol::check(&thread.messages) {
        panic!("protocol broken: {violation}\n{:#?}", thread.messages);
    }
}

/// The outputs of the thread, as (tool, status, content JSON).
pub(crate) fn outputs(thread: &Thread) -> Vec<(String, OutputStatus, Value)> {
    thread
        .messages
        .iter()
        .filter_map(|m| match &m.kind {
            MessageKind::ToolOutput {
                name,
                status,
                content,
                ..
            } => Some((
                name.clone(),
                *status,
                serde_json::from_str(content).unwrap_or(Value::Null),
            )),
            _ => None,
        })
        .collect()
}

pub(crate) fn contexts(thread: &Thread) -> Vec<String> {
    thread
        .messages
        .iter()
        .filter_map(|m| match &m.kind {
            MessageKind::Context { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn last_text(thread: &Thread) -> String {
    thread
        .messages
        .last()
        .and_then(|m| m.text())
        .unwrap_or_default()
        .to_owned()
}

/// Counts calls, for executors that must (not) be reached.
#[derive(Default)]
pub(crate) struct Counter(pub AtomicUsize);

impl Counter {
    pub(crate) fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A wiremock responder that answers with the given responses in order; the last one
/// repeats.
pub(crate) struct Sequence(
    std::sync::Mutex<std::collections::VecDeque<wiremock::ResponseTemplate>>,
);

impl Sequence {
    pub(crate) fn new(responses: Vec<wiremock::ResponseTemplate>) -> Self {
        Self(std::sync::Mutex::new(responses.into()))
    }
}

impl wiremock::Respond for Sequence {
    fn respond(&self, _request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let mut queue = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        };
        next.unwrap_or_else(|| wiremock::ResponseTemplate::new(500))
    }
}
