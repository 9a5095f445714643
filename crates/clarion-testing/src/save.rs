//! A conversation saved as a scenario: the thread's messages become
//! `flows/NAME/scenarios/FILE.toml` — the user's turns, the model's turns as scripted
//! steps (so it replays offline), each call's result as that call's own outcome — with
//! its expectations filled in from what happened, and its accepted snapshot beside it.
//! `clarion play`'s "Save as scenario" and `clarion chat`'s `/save` call [`save`].
//!
//! The expectations and the snapshot are not derived from the live thread but from
//! playing the written file with the same [`Runner`] `clarion test` uses: the file is
//! written without expectations, played, filled in from that play's events
//! ([`expectations`]), written again and played once more to accept its snapshot. So
//! what is saved is exactly what `clarion test` will see, and a conversation that does
//! not replay (a tool whose result changed between calls, say) is refused with the
//! reason instead of leaving a scenario that fails.
//!
//! [`replay`] plays a conversation the same way against a version of its flow held in
//! memory, for comparing two versions' transcripts without writing anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::harness::{Runner, UpdateMode};
use crate::scenario::FlowCache;
use crate::scenario::spec::{
    CallSpec, DecideSpec, ErrorKind, ExpectSpec, MockError, MockSpec, OneOrMany, ScenarioFile,
    ScenarioMeta, StepSpec, SubmitSpec, ToolCalledSpec, TurnSpec,
};
use clarion_engine::{DECISION_KEY, Event, Message, MessageKind, OutputStatus, ToolExecutor};
use clarion_flow::{Executor, Flow};

/// Where a saved scenario and its snapshot were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Its accepted snapshot.
    pub snapshot: PathBuf,
    /// How many turns it has.
    pub turns: usize,
}

/// Why a conversation could not be saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaveError {
    /// The name is not a file name of letters, digits, `_` and `-`.
    #[error("`{0}` cannot name a scenario: use letters, digits, `_` and `-` (e.g. missing_income)")]
    BadName(String),
    /// The thread has no user message.
    #[error("the conversation has no user message yet: there is nothing to save")]
    Empty,
    /// A scenario of that name exists.
    #[error("{} exists; choose another name", .0.display())]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("cannot write {}: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        reason: String,
    },
    /// The conversation, written as a scenario, does not play back the same way; the file
    /// is removed again.
    #[error("the conversation does not replay as a scenario, so it was not saved:\n{0}")]
    DoesNotReplay(String),
}

/// `flows/NAME/scenarios/FILE.toml` for the flow file `flows/NAME.toml`.
#[must_use]
pub fn scenario_path(flow_path: &Path, file: &str) -> PathBuf {
    let stem = flow_path.file_stem().unwrap_or_default();
    flow_path
        .parent()
        .unwrap_or(Path::new(""))
        .join(stem)
        .join("scenarios")
        .join(format!("{file}.toml"))
}

/// The thread's `messages` as a scenario of `flow`, without expectations: one turn per
/// user message, the model's replies and calls as its steps, tool results as each call's
/// own outcome, client tools' outputs as submissions. Questions and injected context are
/// the engine's, not the model's, so they are not scripted: the replay produces them.
#[must_use]
pub fn scenario_of(
    flow: &Flow,
    messages: &[Message],
    title: &str,
    metadata: IndexMap<String, String>,
) -> ScenarioFile {
    let outputs: std::collections::HashMap<&str, (&OutputStatus, &str)> = messages
        .iter()
        .filter_map(|m| match &m.kind {
            MessageKind::ToolOutput {
                call_id,
                status,
                content,
                ..
            } => Some((call_id.as_str(), (status, content.as_str()))),
            _ => None,
        })
        .collect();
    // A tool of a flow this one hands off to counts: the thread may have got there.
    let mut executors = std::collections::HashMap::<&str, &Executor>::new();
    for tool in flow.reachable().into_iter().flat_map(|f| f.tools.values()) {
        executors
            .entry(tool.name.as_str())
            .or_insert(&tool.executor);
    }
    let mut turns: Vec<TurnSpec> = Vec::new();
    let mut mocks: IndexMap<String, MockSpec> = IndexMap::new();
    // A user message answering a confirmation question is read first (a model request of
    // its own): a `decide` step, and the engine's own call after it is no model turn.
    let mut confirming = false;
    let mut reading = false;
    for message in messages {
        match &message.kind {
            MessageKind::User { text } => {
                turns.push(TurnSpec {
                    user: text.clone(),
                    model: Vec::new(),
                    submit: Vec::new(),
                    expect: None,
                });
                reading = std::mem::take(&mut confirming);
            }
            MessageKind::Assistant { text } => {
                // Assistant messages before any user message came with the thread.
                if let Some(turn) = turns.last_mut() {
                    if std::mem::take(&mut reading) {
                        turn.model.push(decide_step(DecideSpec::Unrelated, None));
                    }
                    turn.model.push(StepSpec {
                        text: Some(text.clone()),
                        ..StepSpec::default()
                    });
                }
            }
            MessageKind::ToolCalls { text, calls } => {
                if let Some(turn) = turns.last_mut() {
                    if std::mem::take(&mut reading) {
                        match decided(message, calls, &outputs, &mut mocks) {
                            Some(step) => {
                                turn.model.push(step);
                                continue;
                            }
                            None => turn.model.push(decide_step(DecideSpec::Unrelated, None)),
                        }
                    }
                    let step = step_of(turn, text.as_deref(), calls, &outputs, &executors);
                    turn.model.push(step);
                }
            }
            MessageKind::Question { confirm, .. } => confirming = *confirm,
            MessageKind::ToolOutput { .. } | MessageKind::Context { .. } => {}
        }
    }
    ScenarioFile {
        scenario: ScenarioMeta {
            name: Some(title.to_owned()),
            description: Some(
                "Saved from a conversation (clarion play or clarion chat /save).".to_owned(),
            ),
            flow: None,
            metadata,
        },
        mocks,
        turns,
    }
}

/// A `decide` step.
fn decide_step(decide: DecideSpec, changes: Option<Map<String, Value>>) -> StepSpec {
    StepSpec {
        decide: Some(decide),
        changes,
        ..StepSpec::default()
    }
}

/// The engine's own call after a confirmation (marked with [`DECISION_KEY`]) as the
/// reading that made it; a confirmed call's outcome becomes the tool's mock, since the
/// engine's call is not scripted. `None` for a model's turn.
fn decided(
    message: &Message,
    calls: &[clarion_engine::ToolCall],
    outputs: &std::collections::HashMap<&str, (&OutputStatus, &str)>,
    mocks: &mut IndexMap<String, MockSpec>,
) -> Option<StepSpec> {
    let [call] = calls else { return None };
    let args = || match serde_json::from_str::<Value>(&call.arguments) {
        Ok(Value::Object(args)) => Some(without_nulls_map(args)),
        _ => None,
    };
    Some(match message.metadata.get(DECISION_KEY)? {
        "confirm" => {
            if let Some((status, content)) = outputs.get(call.id.as_str()) {
                let mut spec = CallSpec::default();
                outcome_of(&mut spec, **status, content);
                mocks.entry(call.name.clone()).or_insert(MockSpec {
                    result: spec.result,
                    error: spec.error,
                    timeout: spec.timeout,
                });
            }
            decide_step(DecideSpec::Confirm, None)
        }
        "decline" => decide_step(DecideSpec::Decline, None),
        "change" => decide_step(DecideSpec::Change, args()),
        _ => return None,
    })
}

/// One model turn of tool calls as a scripted step: each call with its own outcome, a
/// client tool's output as one of the turn's submissions.
fn step_of(
    turn: &mut TurnSpec,
    text: Option<&str>,
    calls: &[clarion_engine::ToolCall],
    outputs: &std::collections::HashMap<&str, (&OutputStatus, &str)>,
    executors: &std::collections::HashMap<&str, &Executor>,
) -> StepSpec {
    let mut specs = Vec::new();
    for call in calls {
        let (args, arguments) = match serde_json::from_str::<Value>(&call.arguments) {
            Ok(Value::Object(args)) => (Some(without_nulls_map(args)), None),
            _ => (None, Some(call.arguments.clone())),
        };
        let mut spec = CallSpec {
            tool: call.name.clone(),
            args,
            arguments,
            ..CallSpec::default()
        };
        if let Some((status, content)) = outputs.get(call.id.as_str()) {
            match executors.get(call.name.as_str()) {
                Some(Executor::Client) => {
                    if **status == OutputStatus::Ok {
                        turn.submit.push(SubmitSpec {
                            tool: call.name.clone(),
                            output: without_nulls(clarion_engine::content_value(content)),
                        });
                    }
                }
                // The engine answers a handoff itself: the replay hands over again.
                Some(Executor::Flow(_)) => {}
                _ => outcome_of(&mut spec, **status, content),
            }
        }
        specs.push(spec);
    }
    let text = text.filter(|t| !t.trim().is_empty()).map(str::to_owned);
    if let [one] = specs.as_slice() {
        StepSpec {
            text,
            call: Some(one.tool.clone()),
            args: one.args.clone(),
            arguments: one.arguments.clone(),
            result: one.result.clone(),
            error: one.error.clone(),
            timeout: one.timeout,
            calls: None,
            decide: None,
            changes: None,
        }
    } else {
        StepSpec {
            text,
            calls: Some(specs),
            ..StepSpec::default()
        }
    }
}

/// A tool's output as the call's own outcome: a result, or a tool error a mock can raise.
/// Errors the engine made itself (invalid arguments, an unknown tool) and calls that
/// needed input never reached the tool, so they need none.
fn outcome_of(spec: &mut CallSpec, status: OutputStatus, content: &str) {
    match status {
        OutputStatus::Ok => {
            spec.result = Some(without_nulls(clarion_engine::content_value(content)));
        }
        OutputStatus::Error => {
            let value = clarion_engine::content_value(content);
            let kind = match value["error"]["kind"].as_str() {
                Some("failed") => ErrorKind::Failed,
                Some("unavailable") => ErrorKind::Unavailable,
                Some("refused") => ErrorKind::Refused,
                Some("invalid_output") => ErrorKind::InvalidOutput,
                Some("timeout") => ErrorKind::Timeout,
                _ => return,
            };
            spec.error = Some(MockError {
                kind,
                message: value["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        OutputStatus::NeedsInput
        | OutputStatus::NeedsConfirmation
        | OutputStatus::Cancelled
        | OutputStatus::Expired => {}
    }
}

/// TOML has no null: keys holding one are left out (the replay then shows the value as
/// absent, consistently, in its transcript and snapshot).
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(without_nulls_map(map)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|v| !v.is_null())
                .map(without_nulls)
                .collect(),
        ),
        other => other,
    }
}

fn without_nulls_map(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k, without_nulls(v)))
        .collect()
}

/// What a turn's events show, as its expectations: every tool that ran with the
/// arguments it ran with, the parameters asked for, the slots set (last value). `None`
/// when the turn did none of these.
#[must_use]
pub fn expectations(events: &[Event]) -> Option<ExpectSpec> {
    let mut called = Vec::new();
    let mut asked: Vec<String> = Vec::new();
    let mut slots: IndexMap<String, Value> = IndexMap::new();
    let mut confirmation = None;
    let mut decided = None;
    for event in events {
        match event {
            Event::ConfirmationAsked { tool, .. } => confirmation = Some(tool.clone()),
            Event::ConfirmationAnswered { decision, .. } => {
                decided = match decision {
                    clarion_engine::Decision::Confirm => Some(DecideSpec::Confirm),
                    clarion_engine::Decision::Decline => Some(DecideSpec::Decline),
                    clarion_engine::Decision::Change { .. } => Some(DecideSpec::Change),
                    _ => Some(DecideSpec::Unrelated),
                };
            }
            Event::ToolStarted {
                name, arguments, ..
            } => called.push(ToolCalledSpec {
                tool: name.clone(),
                args: match without_nulls(arguments.clone()) {
                    Value::Object(args) if !args.is_empty() => Some(args),
                    _ => None,
                },
            }),
            Event::QuestionAsked { params, .. } => asked.extend(params.iter().cloned()),
            Event::SlotSet { name, value } if !value.is_null() => {
                slots.shift_remove(name);
                slots.insert(name.clone(), without_nulls(value.clone()));
            }
            _ => {}
        }
    }
    if called.is_empty()
        && asked.is_empty()
        && slots.is_empty()
        && confirmation.is_none()
        && decided.is_none()
    {
        return None;
    }
    Some(ExpectSpec {
        tool_called: match called.len() {
            0 => None,
            1 => called.pop().map(OneOrMany::One),
            _ => Some(OneOrMany::Many(called)),
        },
        question_asked: (!asked.is_empty()).then_some(asked),
        slot_set: (!slots.is_empty()).then_some(slots),
        confirmation_asked: confirmation,
        decided,
        ..ExpectSpec::default()
    })
}

/// Writes the conversation `messages` of `flow` (loaded from `flow_path`) as the scenario
/// `flows/NAME/scenarios/{name}.toml` with expectations and its accepted snapshot, played
/// with `runner` (the one `clarion test` would use). Refuses an existing file. Cancel
/// safety: a future dropped midway may leave the scenario file without its snapshot.
pub async fn save(
    runner: &Runner,
    flow_path: &Path,
    flow: &Flow,
    messages: &[Message],
    name: &str,
    metadata: IndexMap<String, String>,
) -> Result<Saved, SaveError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(SaveError::BadName(name.to_owned()));
    }
    let path = scenario_path(flow_path, name);
    if path.exists() {
        return Err(SaveError::Exists(path));
    }
    let mut file = scenario_of(flow, messages, &name.replace(['_', '-'], " "), metadata);
    if file.turns.is_empty() {
        return Err(SaveError::Empty);
    }
    write(&path, &file)?;
    let refused = |path: &Path, report: String| {
        let _ = std::fs::remove_file(path);
        SaveError::DoesNotReplay(report)
    };
    // First play: what happens in each turn, for its expectations.
    let first = runner.run(&path).await;
    if !first.problems.is_empty() || first.events.len() != file.turns.len() {
        return Err(refused(&path, first.diagnostics(false)));
    }
    for (turn, events) in file.turns.iter_mut().zip(&first.events) {
        turn.expect = expectations(events);
    }
    write(&path, &file)?;
    // Second play: the expectations hold and the transcript is the accepted snapshot.
    let second = runner.run(&path).await;
    let check = second.check_snapshot(UpdateMode::Accept);
    if !second.passed(&check) {
        let report = second.failure_report(&check, false);
        let _ = std::fs::remove_file(second.snapshot_path());
        return Err(refused(&path, report));
    }
    Ok(Saved {
        snapshot: second.snapshot_path(),
        scenario: path,
        turns: file.turns.len(),
    })
}

fn write(path: &Path, file: &ScenarioFile) -> Result<(), SaveError> {
    let failed = |reason: String| SaveError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let text = toml::to_string(file).map_err(|e| failed(e.to_string()))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| failed(e.to_string()))?;
    }
    std::fs::write(path, text).map_err(|e| failed(e.to_string()))
}

/// A conversation played again, as a scenario, against one version of its flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The transcript, as far as it got.
    pub transcript: String,
    /// Why it stopped early (rendered diagnostics), if it did: a scripted call the new
    /// version no longer accepts, say.
    pub problems: String,
}

/// Plays the thread's `messages` again as a scenario of `flow` (a version of the flow at
/// `flow_path`, already loaded: nothing is read or written on disk), with the model's
/// recorded turns and each call's recorded result, for comparing versions: the
/// playground's "replay on the new version", whose transcripts differ where the flow's
/// behaviour changed (questions, slots, context, rules).
pub async fn replay(
    flow_path: &Path,
    flow: Arc<Flow>,
    messages: &[Message],
    metadata: IndexMap<String, String>,
    executor: Option<Arc<dyn ToolExecutor>>,
) -> Replayed {
    let file = scenario_of(&flow, messages, "replay", metadata);
    let path = scenario_path(flow_path, "replay");
    let text = match toml::to_string(&file) {
        Ok(text) => text,
        Err(error) => {
            return Replayed {
                transcript: String::new(),
                problems: format!("the conversation cannot be written as a scenario: {error}"),
            };
        }
    };
    let cache = FlowCache::new();
    cache.insert(flow_path, Ok(flow));
    let report = crate::scenario::load_str(&path, &text, &cache);
    let render = |diagnostics: &[clarion_flow::diagnostic::Diagnostic]| {
        diagnostics
            .iter()
            .map(|d| clarion_flow::diagnostic::render::human(d, &report.source, false))
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    let Some(scenario) = &report.scenario else {
        return Replayed {
            transcript: String::new(),
            problems: render(&report.diagnostics),
        };
    };
    let played = crate::scenario::play(scenario, executor).await;
    Replayed {
        transcript: played.transcript,
        problems: render(&played.problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FLOW: &str = r#"
[flow]
name = "shop"
[assistant]
model = "m"
instructions = "Help."
[tools.lookup]
description = "Looks an order up."
builtin = "x"
[tools.lookup.params.order]
type = "string"
description = "The order."
[tools.pay]
description = "Pays."
client = true
"#;

    fn flow() -> Flow {
        clarion_flow::load_str("shop.toml", FLOW, None)
            .into_result()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn messages(values: Value) -> Vec<Message> {
        serde_json::from_value(values).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_thread_becomes_turns_with_scripted_model_steps_outcomes_and_submissions() {
        let thread = messages(json!([
            {"id": "m0", "run_id": null, "created_at": 0, "kind": "assistant", "text": "Hi, I came with the thread."},
            {"id": "m1", "run_id": null, "created_at": 0, "kind": "user", "text": "Where is order 7?"},
            {"id": "m2", "run_id": "r1", "created_at": 0, "kind": "tool_calls", "calls": [
                {"id": "c1", "name": "lookup", "arguments": "{\"order\": \"7\", \"note\": null}"},
                {"id": "c2", "name": "lookup", "arguments": "{\"order\": "}]},
            {"id": "m3", "run_id": "r1", "created_at": 0, "kind": "tool_output", "call_id": "c1", "name": "lookup", "status": "ok", "content": "{\"where\": \"Lisbon\", \"eta\": null}"},
            {"id": "m4", "run_id": "r1", "created_at": 0, "kind": "tool_output", "call_id": "c2", "name": "lookup", "status": "error", "content": "{\"error\": {\"kind\": \"invalid_arguments\", \"message\": \"not JSON\"}}"},
            {"id": "m5", "run_id": "r1", "created_at": 0, "kind": "context", "tool": "lookup", "text": "In transit."},
            {"id": "m6", "run_id": "r1", "created_at": 0, "kind": "assistant", "text": "In Lisbon."},
            {"id": "m7", "run_id": null, "created_at": 0, "kind": "user", "text": "Pay it."},
            {"id": "m8", "run_id": "r2", "created_at": 0, "kind": "tool_calls", "text": " ", "calls": [
                {"id": "c3", "name": "pay", "arguments": "{}"}]},
            {"id": "m9", "run_id": "r2", "created_at": 0, "kind": "tool_output", "call_id": "c3", "name": "pay", "status": "ok", "content": "{\"paid\": true}"},
            {"id": "m10", "run_id": "r2", "created_at": 0, "kind": "tool_calls", "calls": [
                {"id": "c4", "name": "lookup", "arguments": "{\"order\": \"8\"}"}]},
            {"id": "m11", "run_id": "r2", "created_at": 0, "kind": "tool_output", "call_id": "c4", "name": "lookup", "status": "error", "content": "{\"error\": {\"kind\": \"unavailable\", \"message\": \"down\"}}"},
        ]));
        let file = scenario_of(&flow(), &thread, "t", IndexMap::new());
        let value = serde_json::to_value(&file).unwrap_or_default();
        assert_eq!(value["turns"].as_array().map(Vec::len), Some(2));
        let first = &value["turns"][0];
        assert_eq!(first["user"], "Where is order 7?");
        // Two calls in one turn; nulls dropped (TOML has none); raw text kept raw; an
        // error the engine made itself needs no outcome.
        assert_eq!(
            first["model"][0]["calls"],
            json!([
                {"tool": "lookup", "args": {"order": "7"}, "result": {"where": "Lisbon"}},
                {"tool": "lookup", "arguments": "{\"order\": "},
            ])
        );
        assert_eq!(first["model"][1], json!({"text": "In Lisbon."}));
        let second = &value["turns"][1];
        // A client tool's output is the app's submission, not the call's result.
        assert_eq!(second["model"][0], json!({"call": "pay", "args": {}}));
        assert_eq!(
            second["submit"],
            json!([{"tool": "pay", "output": {"paid": true}}])
        );
        assert_eq!(
            second["model"][1],
            json!({"call": "lookup", "args": {"order": "8"}, "error": {"kind": "unavailable", "message": "down"}})
        );
        assert!(toml::to_string(&file).is_ok());
    }

    #[test]
    fn expectations_are_what_the_turn_did() {
        let events = [
            Event::ToolStarted {
                call_id: "c1".into(),
                name: "lookup".into(),
                arguments: json!({"order": "7", "gone": null}),
            },
            Event::QuestionAsked {
                call_id: "c2".into(),
                tool: "pay".into(),
                params: vec!["card".into()],
                text: "Which card?".into(),
            },
            Event::SlotSet {
                name: "order".into(),
                value: json!("6"),
            },
            Event::SlotSet {
                name: "order".into(),
                value: json!("7"),
            },
        ];
        let expect = expectations(&events).unwrap_or_default();
        let value = serde_json::to_value(&expect).unwrap_or_default();
        assert_eq!(
            value,
            json!({
                "tool_called": {"tool": "lookup", "args": {"order": "7"}},
                "question_asked": ["card"],
                "slot_set": {"order": "7"},
            })
        );
        assert!(expectations(&[Event::TextDelta { text: "x".into() }]).is_none());
    }

    #[test]
    fn names_are_file_names_and_paths_sit_beside_the_flow() {
        assert_eq!(
            scenario_path(Path::new("flows/shop.toml"), "late_order"),
            Path::new("flows/shop/scenarios/late_order.toml")
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let saved = runtime.block_on(save(
            &Runner::new(),
            Path::new("flows/shop.toml"),
            &flow(),
            &[],
            "../escape",
            IndexMap::new(),
        ));
        assert_eq!(saved, Err(SaveError::BadName("../escape".into())));
    }
}
