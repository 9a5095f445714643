//! `follows`: a tool is offered only once the tools it follows have returned before the
//! user's latest message, and a call to it before then is refused with `not_offered`,
//! nothing executed, the pairing invariant kept.

mod support;

use std::sync::{Arc, Mutex};

use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{
    BoxFuture, Engine, EventLog, EventSink, FnExecutor, MemoryStore, Metadata, Model, ModelError,
    ModelRequest, ModelResponse, OutputStatus, RunStatus, ToolErrorKind,
};
use serde_json::json;
use support::*;

const FLOW: &str = r#"
[flow]
name = "travel"
[assistant]
model = "gpt-4.1-mini"
instructions = "Search, then book what the traveller picks."
[tools.search_flights]
description = "Searches flights."
builtin = "test.search"
[tools.search_flights.params.destination]
type = "string"
description = "IATA code."
[tools.book_flight]
description = "Books the offer the traveller chose."
client = true
follows = ["search_flights"]
[tools.book_flight.params.offer_id]
type = "string"
description = "The chosen offer."
"#;

/// Records the tools each request offered.
struct Watching {
    inner: ScriptedModel,
    offered: Mutex<Vec<Vec<String>>>,
}

impl Model for Watching {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        let offered = request
            .flow
            .tools
            .values()
            .filter(|tool| request.offers(tool))
            .map(|tool| tool.name.clone())
            .collect();
        if let Ok(mut seen) = self.offered.lock() {
            seen.push(offered);
        }
        self.inner.respond(request, events)
    }
}

#[tokio::test]
async fn a_tool_that_follows_another_is_offered_only_after_the_user_saw_its_result() {
    let model = Arc::new(Watching {
        inner: ScriptedModel::new([
            ScriptedTurn::call("search_flights", r#"{"destination": "JFK"}"#),
            // A small model books at once, in the turn that searched.
            ScriptedTurn::call("book_flight", r#"{"offer_id": "off_1"}"#),
            ScriptedTurn::text("Two offers: off_1 at 412 EUR, off_2 at 455 EUR. Which one?"),
            ScriptedTurn::call("book_flight", r#"{"offer_id": "off_1"}"#),
        ]),
        offered: Mutex::new(Vec::new()),
    });
    let executed = Arc::new(Mutex::new(Vec::new()));
    let seen = executed.clone();
    let tools = FnExecutor(
        move |tool: &clarion_flow::Tool, _: &serde_json::Map<_, _>| {
            if let Ok(mut seen) = seen.lock() {
                seen.push(tool.name.clone());
            }
            Ok(json!([{ "id": "off_1" }, { "id": "off_2" }]))
        },
    );
    let engine = Engine::new(
        flow_from(FLOW),
        model.clone(),
        Arc::new(tools),
        Arc::new(MemoryStore::new()),
    );
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(&thread.id, "Flights to JFK?")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = engine
        .run(&thread.id, &EventLog::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");

    let after_first = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&after_first);
    let outputs = outputs(&after_first);
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    assert_eq!(outputs[0].1, OutputStatus::Ok);
    let (name, status, content) = &outputs[1];
    assert_eq!(
        (name.as_str(), *status),
        ("book_flight", OutputStatus::Error)
    );
    assert_eq!(
        content["error"]["kind"],
        ToolErrorKind::NotOffered.as_str(),
        "{content}"
    );
    assert!(
        content["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("follows `search_flights`")),
        "{content}"
    );

    engine
        .add_message(&thread.id, "Book the first one.")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = engine
        .run(&thread.id, &EventLog::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::RequiresAction, "{run:?}");
    assert_eq!(run.required_action.len(), 1);
    assert_eq!(run.required_action[0].name, "book_flight");

    let search = || "search_flights".to_owned();
    let offered = model.offered.lock().map(|o| o.clone()).unwrap_or_default();
    assert_eq!(
        offered,
        vec![
            vec![search()],
            vec![search()],
            vec![search()],
            vec![search(), "book_flight".to_owned()],
        ],
        "book_flight is offered from the first request after the traveller answered"
    );
    let executed = executed.lock().map(|e| e.clone()).unwrap_or_default();
    assert_eq!(executed, vec![search()], "the refused call never ran");
}
