//! A long conversation under a small `max_context_tokens`: 300 turns, each with a tool
//! call. The requests stay within the budget and never break the pairing rule, the oldest
//! turns are left out of them (never out of the thread), and the fact the user stated at
//! turn 1 — a slot — is still in the instructions and still fills the call at turn 300.
//! A tool that `follows` one called at turn 1 is still offered.
//!
//! It runs twice: with a model Clarion does not know (tokens estimated) and with
//! `gpt-4.1-mini` (tokens counted with OpenAI's `o200k_base`). Each run's requests are
//! summarized in a snapshot — every 25th turn, what was sent — so a change in what long
//! threads send shows in review.

mod support;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use clarion_engine::bench::{Counter, MESSAGE_OVERHEAD};
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{
    BoxFuture, EventSink, Model, ModelError, ModelRequest, ModelResponse, ModelTurn,
};
use clarion_engine::{Engine, MemoryStore, MessageKind, Metadata, NoEvents, RunStatus};
use clarion_engine::{FnExecutor, OutputStatus, protocol};
use serde_json::{Value, json};
use support::{assert_protocol, flow_from, outputs};

const TURNS: usize = 300;
const BUDGET: u64 = 600;

/// The flow, with the model's name in place of `MODEL`.
const FLOW: &str = r#"
[flow]
name = "long"
[assistant]
model = "MODEL"
instructions = """
Plan trips.
{% if slots.destination %}The user is going to {{ slots.destination }}.{% endif %}
"""
[limits]
max_context_tokens = 600
[slots.destination]
type = "string"
description = "Where to."
[tools.search]
description = "Search flights."
builtin = "test.search"
[tools.search.params.destination]
type = "string"
description = "Airport code."
ask = "Where to?"
slot = "destination"
[tools.book]
description = "Book the flight found."
builtin = "test.book"
follows = ["search"]
"#;

/// What one request sent: the instructions, and the request's tokens, first user text
/// and length.
#[derive(Debug, Clone)]
struct Sent {
    instructions: String,
    tokens: u64,
    first_user: Option<String>,
    messages: usize,
    violation: Option<String>,
    offers_book: bool,
}

/// The scripted model, recording what each request sent, counted as the engine counts.
struct Recording {
    inner: ScriptedModel,
    counter: Counter,
    sent: Mutex<Vec<Sent>>,
}

impl Model for Recording {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        let tokens = request
            .messages
            .iter()
            .map(|m| self.counter.message(m))
            .sum::<u64>()
            + self.counter.text(request.instructions)
            + MESSAGE_OVERHEAD;
        let first_user = request.messages.iter().find_map(|m| match &m.kind {
            MessageKind::User { text } => Some(text.clone()),
            _ => None,
        });
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(Sent {
                instructions: request.instructions.to_owned(),
                tokens,
                first_user,
                messages: request.messages.len(),
                violation: protocol::check(request.messages)
                    .err()
                    .map(|v| v.to_string()),
                offers_book: request
                    .flow
                    .tools
                    .get("book")
                    .is_some_and(|book| request.offers(book)),
            });
        }
        self.inner.respond(request, events)
    }
}

#[tokio::test]
async fn a_slot_stated_at_turn_one_is_used_at_turn_300_tokens_estimated() {
    let sent = conversation("qwen2.5-coder:1.5b", Counter::Estimate).await;
    insta::assert_snapshot!("estimated", summary(&sent));
}

#[cfg(feature = "tiktoken")]
#[tokio::test]
async fn a_slot_stated_at_turn_one_is_used_at_turn_300_tokens_counted() {
    let sent = conversation("gpt-4.1-mini", Counter::O200kBase).await;
    insta::assert_snapshot!("counted_o200k_base", summary(&sent));
}

/// Every 25th turn's two requests (after the user's message, after the tool's output):
/// how many messages were sent, the request's tokens, and the first user text sent.
fn summary(sent: &[Sent]) -> String {
    let mut out =
        format!("budget {BUDGET} tokens\nturn  request  messages  tokens  first user text sent\n");
    for turn in (0..=TURNS).step_by(25).map(|t| t.max(1)) {
        for (step, request) in sent[2 * (turn - 1)..2 * turn].iter().enumerate() {
            let _ = writeln!(
                out,
                "{turn:>4}  {:>7}  {:>8}  {:>6}  {}",
                ["user", "output"][step],
                request.messages,
                request.tokens,
                request.first_user.as_deref().unwrap_or("-"),
            );
        }
    }
    let last = &sent[sent.len() - 1];
    let _ = writeln!(
        out,
        "instructions sent at turn {TURNS}: {:?}",
        last.instructions.trim()
    );
    out
}

/// Plays the 300 turns on `model`, whose tokens the engine counts with `counter`, checks
/// every request, and returns them.
async fn conversation(model_name: &str, counter: Counter) -> Vec<Sent> {
    // Turn 1 names the destination; every later turn searches again without it.
    let mut script = Vec::new();
    for turn in 1..=TURNS {
        let args = if turn == 1 {
            r#"{"destination": "LIS"}"#
        } else {
            "{}"
        };
        // The call's id is sent, so it is counted: fixed, as a provider's would be, to keep
        // the counts (and the snapshot) the same from run to run.
        let mut call = ScriptedTurn::call("search", args);
        if let ModelTurn::ToolCalls { calls, .. } = &mut call.turn {
            calls[0].id = format!("call_{turn:03}");
        }
        script.push(call);
        script.push(ScriptedTurn::text(&format!(
            "Here are the flights, turn {turn}."
        )));
    }
    let model = Arc::new(Recording {
        inner: ScriptedModel::new(script),
        counter,
        sent: Mutex::new(Vec::new()),
    });
    let tools = Arc::new(FnExecutor(
        |_: &clarion_flow::Tool, args: &serde_json::Map<String, Value>| {
            Ok(json!({ "to": args.get("destination").cloned().unwrap_or(Value::Null) }))
        },
    ));
    let engine = Engine::new(
        flow_from(&FLOW.replace("MODEL", model_name)),
        model.clone(),
        tools,
        Arc::new(MemoryStore::new()),
    );
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for turn in 1..=TURNS {
        let text = if turn == 1 {
            "I want to fly to Lisbon (LIS).".to_owned()
        } else {
            format!("Turn {turn}: show me the flights again, please, and the prices too.")
        };
        engine
            .add_message(&thread.id, &text)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let run = engine
            .run(&thread.id, &NoEvents)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.status, RunStatus::Completed, "turn {turn}: {run:?}");
    }

    let sent = model.sent.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(sent.len(), 2 * TURNS);
    for (i, request) in sent.iter().enumerate() {
        assert_eq!(request.violation, None, "request {i} broke the pairing");
        // `book` follows `search`, which returned at turn 1: however much is cut, it stays
        // offered from turn 2 on.
        assert_eq!(request.offers_book, i >= 2, "request {i}");
        assert!(
            request.tokens <= BUDGET,
            "request {i} sent {} tokens",
            request.tokens
        );
    }
    let last = &sent[2 * TURNS - 1];
    assert!(
        last.instructions.contains("going to LIS"),
        "{}",
        last.instructions
    );
    assert_ne!(
        last.first_user.as_deref(),
        Some("I want to fly to Lisbon (LIS)."),
        "turn 1 is not sent at turn 300"
    );
    assert!(last.messages < 4 * TURNS, "the history was cut");

    // The thread itself keeps every message, and every search reached LIS.
    let thread = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    assert_eq!(thread.messages.len(), 4 * TURNS);
    let searches = outputs(&thread);
    assert_eq!(searches.len(), TURNS);
    for (i, (_, status, value)) in searches.iter().enumerate() {
        assert_eq!(*status, OutputStatus::Ok, "search {i}");
        assert_eq!(value["to"], "LIS", "search {i}");
    }
    sent
}
