//! Flows that hand off to flows: after a flow tool's call, the other flow's instructions,
//! tools and slots run the thread (answering the same user message); a flow handed the
//! thread with `returns` hands it back once it has those slots; one handoff at a time;
//! and the route survives a restart on SQLite. Every history sent keeps the pairing rule.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{BoxFuture, Event, EventLog, EventSink, Model, ModelError, ModelRequest};
use clarion_engine::{Engine, FnExecutor, MemoryStore, MessageKind, Metadata, ModelResponse};
use clarion_engine::{OutputStatus, RunStatus, ThreadStore, ToolErrorKind, protocol};
use clarion_flow::Flow;
use serde_json::{Value, json};
use support::{assert_protocol, outputs};

const DESK: &str = r#"
[flow]
name = "desk"
[assistant]
model = "m"
instructions = "You are the desk.{% if slots.reference %} Booked: {{ slots.reference }}.{% endif %}"
[slots.reference]
type = "string"
description = "The booking's reference."
[tools.trip]
description = "Hands the user to travel; back once booked."
flow = "travel"
with = { destination = "args.city" }
returns = { reference = "booking" }
[tools.trip.params.city]
type = "string"
description = "Where to."
required = false
[tools.money]
description = "Hands the user to finance for good."
flow = "finance"
[tools.note]
description = "Notes something."
builtin = "test.note"
[tools.note.params.text]
type = "string"
description = "What."
ask = "What should I note?"
max_asks = 1
on_exhausted = { hand_off = "money" }
"#;

const TRAVEL: &str = r#"
[flow]
name = "travel"
[assistant]
model = "m"
instructions = "You book flights.{% if slots.destination %} Going to {{ slots.destination }}.{% endif %}"
[slots.destination]
type = "string"
description = "Where to."
[slots.booking]
type = "string"
description = "The booking's reference."
[tools.book]
description = "Books the flight."
builtin = "test.book"
[tools.book.params.to]
type = "string"
description = "Where to."
ask = "Where to?"
slot = "destination"
[[tools.book.after]]
set = { booking = "result.reference" }
"#;

const FINANCE: &str = r#"
[flow]
name = "finance"
[assistant]
model = "m"
instructions = "You plan savings."
[tools.plan]
description = "Plans savings."
builtin = "test.plan"
"#;

/// The three flows in a folder of their own; the desk loaded with the two it names.
fn flows() -> (tempfile::TempDir, Arc<Flow>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (name, text) in [("desk", DESK), ("travel", TRAVEL), ("finance", FINANCE)] {
        std::fs::write(dir.path().join(format!("{name}.toml")), text)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let report = clarion_flow::load_file(&dir.path().join("desk.toml"));
    let messages: Vec<String> = report
        .diagnostics
        .iter()
        .map(clarion_flow::diagnostic::Diagnostic::message)
        .collect();
    let flow = report
        .into_result()
        .unwrap_or_else(|_| panic!("the desk does not load: {messages:?}"));
    (dir, Arc::new(flow))
}

/// What one request sent.
#[derive(Debug, Clone)]
struct Sent {
    flow: String,
    instructions: String,
    tools: Vec<String>,
    violation: Option<String>,
}

struct Recording {
    inner: ScriptedModel,
    sent: Mutex<Vec<Sent>>,
}

impl Model for Recording {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(Sent {
                flow: request.flow.name.clone(),
                instructions: request.instructions.to_owned(),
                tools: request.flow.tools.keys().cloned().collect(),
                violation: protocol::check(request.messages)
                    .err()
                    .map(|v| v.to_string()),
            });
        }
        self.inner.respond(request, events)
    }
}

fn recording(script: Vec<ScriptedTurn>) -> Arc<Recording> {
    Arc::new(Recording {
        inner: ScriptedModel::new(script),
        sent: Mutex::new(Vec::new()),
    })
}

fn sent(model: &Recording) -> Vec<Sent> {
    model.sent.lock().map(|s| s.clone()).unwrap_or_default()
}

fn engine_for(flow: Arc<Flow>, model: Arc<Recording>, store: Arc<dyn ThreadStore>) -> Engine {
    let tools = Arc::new(FnExecutor(
        |tool: &clarion_flow::Tool, _: &serde_json::Map<String, Value>| {
            Ok(match tool.name.as_str() {
                "book" => json!({ "reference": "X7K2QP" }),
                _ => json!({ "ok": true }),
            })
        },
    ));
    Engine::new(flow, model, tools, store)
}

async fn new_thread(engine: &Engine) -> clarion_engine::Thread {
    engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn say(engine: &Engine, thread_id: &str, text: &str, events: &EventLog) -> RunStatus {
    engine
        .add_message(thread_id, text)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .run(thread_id, events)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status
}

#[tokio::test]
async fn a_called_flow_answers_the_same_message_and_comes_back_with_its_slot() {
    let (_dir, desk) = flows();
    let model = recording(vec![
        ScriptedTurn::call("trip", r#"{"city": "LIS"}"#),
        // travel's model: it sees travel's instructions and tools, and the slot `with` set.
        ScriptedTurn::call("book", "{}"),
        ScriptedTurn::text("Booked: X7K2QP."),
        // Back at the desk.
        ScriptedTurn::text("Anything else?"),
    ]);
    let store: Arc<dyn ThreadStore> = Arc::new(MemoryStore::new());
    let engine = engine_for(desk, model.clone(), store);
    let thread = new_thread(&engine).await;
    let events = EventLog::default();
    let status = say(&engine, &thread.id, "Book me a flight to Lisbon.", &events).await;
    assert_eq!(status, RunStatus::Completed);

    let requests = sent(&model);
    let flows: Vec<&str> = requests.iter().map(|s| s.flow.as_str()).collect();
    assert_eq!(flows, ["desk", "travel", "travel"], "{requests:#?}");
    assert_eq!(requests[1].instructions, "You book flights. Going to LIS.");
    assert_eq!(requests[1].tools, ["book"]);
    let thread = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    // The desk's call got its one output: who took over.
    let outputs = outputs(&thread);
    assert_eq!(
        (outputs[0].1, &outputs[0].2),
        (
            OutputStatus::Ok,
            &json!({ "handed_off_to": "travel", "comes_back": true })
        )
    );
    // `book` filled `booking`: the run's end handed the thread back, with the slot.
    assert!(thread.route.is_empty(), "{:?}", thread.route);
    assert_eq!(
        thread.slots,
        serde_json::Map::from_iter([("reference".to_owned(), json!("X7K2QP"))])
    );
    let back = thread.messages.last().map(|m| m.kind.clone());
    assert!(
        matches!(&back, Some(MessageKind::Context { text, .. }) if text.contains("reference = \"X7K2QP\"")),
        "{back:?}"
    );
    let moves: Vec<String> = events
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::HandedOff {
                from, to, slots, ..
            } => Some(format!("{from} > {to} {}", Value::Object(slots.clone()))),
            Event::HandedBack { from, to, slots } => {
                Some(format!("{from} < {to} {}", Value::Object(slots.clone())))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        moves,
        [
            r#"desk > travel {"destination":"LIS"}"#,
            r#"travel < desk {"reference":"X7K2QP"}"#
        ]
    );

    // The next message is the desk's, which reads the slot that came back.
    let status = say(&engine, &thread.id, "Thanks.", &EventLog::default()).await;
    assert_eq!(status, RunStatus::Completed);
    let last = sent(&model).pop().unwrap_or_else(|| panic!("no request"));
    assert_eq!(
        (last.flow.as_str(), last.instructions.as_str()),
        ("desk", "You are the desk. Booked: X7K2QP.")
    );
    assert!(sent(&model).iter().all(|s| s.violation.is_none()));
}

#[tokio::test]
async fn a_handoff_for_good_stays_and_survives_a_restart_on_sqlite() {
    let (dir, desk) = flows();
    let path = dir.path().join("threads.db");
    let open = || -> Arc<dyn ThreadStore> {
        Arc::new(clarion_store::SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}")))
    };
    let model = recording(vec![
        ScriptedTurn::call("money", "{}"),
        ScriptedTurn::text("How much do you want to save?"),
    ]);
    let first = engine_for(desk.clone(), model.clone(), open());
    let thread = new_thread(&first).await;
    say(
        &first,
        &thread.id,
        "I want to save for a house.",
        &EventLog::default(),
    )
    .await;
    drop(first);

    // Another process, the same file: the thread is still finance's.
    let model = recording(vec![
        ScriptedTurn::call("plan", "{}"),
        ScriptedTurn::text("Here is your plan."),
    ]);
    let second = engine_for(desk, model.clone(), open());
    say(
        &second,
        &thread.id,
        "20000 in two years.",
        &EventLog::default(),
    )
    .await;
    let flows: Vec<String> = sent(&model).into_iter().map(|s| s.flow).collect();
    assert_eq!(flows, ["finance", "finance"]);
    let thread = second
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(thread.active_flow(), "finance");
    assert_eq!(thread.route.len(), 1);
    assert!(!thread.route[0].comes_back);
    assert_protocol(&thread);
}

#[tokio::test]
async fn one_handoff_at_a_time_and_never_beside_a_question() {
    let (_dir, desk) = flows();
    let model = recording(vec![
        // Two handoffs at once: the first goes, the second is deferred.
        ScriptedTurn::calls(&[("money", "{}"), ("trip", "{}")]),
        ScriptedTurn::text("Finance here."),
    ]);
    let engine = engine_for(desk.clone(), model.clone(), Arc::new(MemoryStore::new()));
    let thread = new_thread(&engine).await;
    say(
        &engine,
        &thread.id,
        "Money and a trip.",
        &EventLog::default(),
    )
    .await;
    let stored = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let statuses: Vec<(OutputStatus, Option<String>)> = outputs(&stored)
        .into_iter()
        .map(|(_, status, content)| {
            (
                status,
                content["error"]["kind"].as_str().map(ToOwned::to_owned),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (OutputStatus::Ok, None),
            (
                OutputStatus::Error,
                Some(ToolErrorKind::HandoffDeferred.as_str().to_owned())
            )
        ]
    );
    assert_eq!(stored.active_flow(), "finance");
    assert_protocol(&stored);

    // Beside a call that needs the user: the question first, no handoff.
    let model = recording(vec![ScriptedTurn::calls(&[
        ("note", "{}"),
        ("money", "{}"),
    ])]);
    let engine = engine_for(desk, model, Arc::new(MemoryStore::new()));
    let thread = new_thread(&engine).await;
    say(
        &engine,
        &thread.id,
        "Note this, then money.",
        &EventLog::default(),
    )
    .await;
    let stored = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.active_flow(), "desk");
    assert!(stored.pending.is_some());
    assert!(matches!(
        stored.messages.last().map(|m| &m.kind),
        Some(MessageKind::Question { .. })
    ));
    assert_protocol(&stored);
}

#[tokio::test]
async fn asks_run_out_and_another_flow_takes_over() {
    let (_dir, desk) = flows();
    let model = recording(vec![
        ScriptedTurn::call("note", "{}"),
        // The user's answer is no usable value: the call is made again without it.
        ScriptedTurn::call("note", "{}"),
        ScriptedTurn::text("Finance here: shall we plan your savings?"),
    ]);
    let engine = engine_for(desk, model.clone(), Arc::new(MemoryStore::new()));
    let thread = new_thread(&engine).await;
    say(&engine, &thread.id, "Note something.", &EventLog::default()).await;
    let events = EventLog::default();
    let status = say(&engine, &thread.id, "Never mind.", &events).await;
    assert_eq!(status, RunStatus::Completed);
    let events = events.events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::AsksExhausted {
                outcome: clarion_engine::ExhaustedOutcome::HandOff,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(
        events.iter().any(
            |e| matches!(e, Event::HandedOff { tool, to, .. } if tool == "money" && to == "finance")
        ),
        "{events:?}"
    );
    let stored = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.active_flow(), "finance");
    let last = sent(&model).pop().unwrap_or_else(|| panic!("no request"));
    assert_eq!(last.flow, "finance");
    let statuses: Vec<OutputStatus> = outputs(&stored).into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(statuses, [OutputStatus::NeedsInput, OutputStatus::Error]);
    assert_protocol(&stored);
}

#[test]
fn the_example_front_desk_reaches_the_three_flows() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/front-desk.toml");
    let flow = clarion_flow::load_file(&path)
        .into_result()
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = flow.reachable().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "front-desk",
            "personal-finance",
            "travel-booking",
            "support-triage"
        ]
    );
}
