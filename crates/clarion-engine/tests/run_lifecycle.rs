//! Client tools and `requires_action`, bad submissions, cancellation, expiry, and the
//! thread lock — the run lifecycle beyond the happy path.

mod support;

use clarion_engine::{ErrorCode, ToolErrorKind};
use std::sync::Arc;
use std::time::Duration;

use clarion_engine::ManualClock;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{Engine, EngineError, RunStatus, ToolOutputSubmission};
use clarion_engine::{Event, EventLog, NoEvents};
use clarion_engine::{FnExecutor, ToolError, ToolExecutor, ToolRequest};
use clarion_engine::{MemoryStore, StoreError, ThreadStore};
use clarion_engine::{MessageKind, Metadata, MetadataError, OutputStatus};
use serde_json::{Value, json};
use support::*;

const TRAVEL: &str = r#"
[flow]
name = "travel"
[assistant]
model = "m"
instructions = "Book trips."
[limits]
requires_action_timeout = "10m"
tool_timeout = "200ms"
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
description = "Book a flight (the app asks the user to confirm)."
client = true
[tools.book.params.flight]
type = "string"
description = "Flight number."
ask = "Which flight?"
[[tools.book.after]]
when = "result.confirmed"
inject = "Booked {{ args.flight }}: confirmation {{ result.code }}."
[tools.slow]
description = "Takes forever."
builtin = "test.slow"
"#;

fn travel_tools() -> Arc<dyn ToolExecutor> {
    Arc::new(FnExecutor(
        |tool: &clarion_flow::Tool, args: &serde_json::Map<String, Value>| match tool.name.as_str()
        {
            "search" => Ok(
                json!({ "flights": [format!("TP{}", args["destination"].as_str().unwrap_or_default().len())] }),
            ),
            _ => Err(ToolError::new(ToolErrorKind::Failed, "unexpected tool")),
        },
    ))
}

fn travel(turns: Vec<ScriptedTurn>) -> Harness {
    harness(flow_from(TRAVEL), travel_tools(), turns)
}

async fn waiting_for_client(h: &Harness) -> (String, String, Vec<String>) {
    let thread = h.thread().await;
    h.engine
        .add_message(&thread.id, "book TP1 and search LIS")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::RequiresAction);
    let ids = run.required_action.iter().map(|c| c.id.clone()).collect();
    (thread.id, run.id, ids)
}

fn submit(call_id: &str, output: &str) -> ToolOutputSubmission {
    ToolOutputSubmission {
        call_id: call_id.to_owned(),
        output: output.to_owned(),
    }
}

#[tokio::test]
async fn client_tools_wait_in_requires_action_and_the_turn_lands_in_call_order() {
    let h = travel(vec![
        ScriptedTurn::calls(&[
            ("book", r#"{"flight": "TP1"}"#),
            ("search", r#"{"destination": "LIS"}"#),
        ]),
        ScriptedTurn::text("Booked, and here are flights to Lisbon."),
    ]);
    let (thread_id, run_id, ids) = waiting_for_client(&h).await;
    assert_eq!(
        ids.len(),
        1,
        "only the client call waits; search already ran"
    );
    let thread = h
        .store
        .thread(&thread_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        outputs(&thread).is_empty(),
        "nothing of the turn lands until the client answers"
    );
    assert_eq!(
        thread.active_run.as_deref(),
        Some(run_id.as_str()),
        "the thread stays locked"
    );
    assert!(matches!(
        h.engine.add_message(&thread_id, "hello?").await,
        Err(EngineError::Store(StoreError::Locked { .. }))
    ));

    let events = EventLog::new();
    let run = h
        .engine
        .submit_tool_outputs(
            &run_id,
            vec![submit(&ids[0], r#"{"confirmed": true, "code": "XYZ9"}"#)],
            &events,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let thread = h
        .store
        .thread(&thread_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    let names: Vec<String> = outputs(&thread).into_iter().map(|o| o.0).collect();
    assert_eq!(
        names,
        ["book", "search"],
        "outputs in the model's call order"
    );
    assert_eq!(contexts(&thread), ["Booked TP1: confirmation XYZ9."]);
    assert_eq!(
        last_text(&thread),
        "Booked, and here are flights to Lisbon."
    );
    assert!(thread.active_run.is_none());
}

#[tokio::test]
async fn bad_submissions_are_refused_and_change_nothing() {
    let h = travel(vec![ScriptedTurn::calls(&[
        ("book", r#"{"flight": "TP1"}"#),
        ("book", r#"{"flight": "TP2"}"#),
    ])]);
    let (thread_id, run_id, ids) = waiting_for_client(&h).await;
    let before = h
        .store
        .thread(&thread_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cases = vec![
        (
            vec![submit(&ids[0], "{}")],
            EngineError::MissingToolOutputs(vec![ids[1].clone()]),
        ),
        (
            vec![
                submit(&ids[0], "{}"),
                submit(&ids[1], "{}"),
                submit("call_nope", "{}"),
            ],
            EngineError::UnknownToolCall("call_nope".to_owned()),
        ),
        (
            vec![
                submit(&ids[0], "{}"),
                submit(&ids[0], "{}"),
                submit(&ids[1], "{}"),
            ],
            EngineError::DuplicateToolOutput(ids[0].clone()),
        ),
        (vec![], EngineError::MissingToolOutputs(ids.clone())),
    ];
    for (outputs, expected) in cases {
        let result = h
            .engine
            .submit_tool_outputs(&run_id, outputs, &NoEvents)
            .await;
        assert_eq!(result, Err(expected));
        assert_eq!(
            h.store.thread(&thread_id).await.ok(),
            Some(before.clone()),
            "a refused submission changes nothing"
        );
        assert_eq!(
            h.store.run(&run_id).await.map(|r| r.status),
            Ok(RunStatus::RequiresAction)
        );
    }
    // Outputs for a run that is not waiting are refused too.
    let done = travel(vec![ScriptedTurn::text("hi")]);
    let thread = done.thread().await;
    done.engine.add_message(&thread.id, "hi").await.ok();
    let run = done
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        done.engine
            .submit_tool_outputs(&run.id, vec![], &NoEvents)
            .await,
        Err(EngineError::NotRequiresAction {
            run_id: run.id.clone(),
            status: RunStatus::Completed
        })
    );
}

#[tokio::test]
async fn requires_action_expires_and_every_open_call_is_answered() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let model = Arc::new(ScriptedModel::new(vec![ScriptedTurn::calls(&[
        ("book", r#"{"flight": "TP1"}"#),
        ("search", r#"{"destination": "LIS"}"#),
    ])]));
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::new(flow_from(TRAVEL), model, travel_tools(), store.clone())
        .with_clock(clock.clone());
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine.add_message(&thread.id, "book it").await.ok();
    let run = engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        run.expires_at,
        Some(1_000_000 + 600_000),
        "10 minutes from now"
    );
    clock.advance(Duration::from_secs(599));
    assert_eq!(
        engine.run_status(&run.id).await.map(|r| r.status),
        Ok(RunStatus::RequiresAction)
    );
    clock.advance(Duration::from_secs(1));
    let expired = engine
        .run_status(&run.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(expired.status, RunStatus::Expired);
    assert_eq!(expired.last_error.map(|e| e.code), Some(ErrorCode::Expired));
    let thread = store
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    let statuses: Vec<OutputStatus> = outputs(&thread).into_iter().map(|o| o.1).collect();
    assert_eq!(statuses, [OutputStatus::Expired, OutputStatus::Ok]);
    assert!(
        thread.active_run.is_none(),
        "an expired run releases the thread"
    );
    let late = engine.submit_tool_outputs(&run.id, vec![], &NoEvents).await;
    assert_eq!(
        late,
        Err(EngineError::NotRequiresAction {
            run_id: run.id.clone(),
            status: RunStatus::Expired
        })
    );
}

#[tokio::test]
async fn cancelling_a_waiting_run_answers_its_calls() {
    let h = travel(vec![
        ScriptedTurn::call("book", r#"{"flight": "TP1"}"#),
        ScriptedTurn::text("ok"),
    ]);
    let (thread_id, run_id, _) = waiting_for_client(&h).await;
    let events = EventLog::new();
    let run = h
        .engine
        .cancel(&run_id, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Cancelled);
    let statuses: Vec<RunStatus> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Status { status, .. } => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [RunStatus::Cancelling, RunStatus::Cancelled],
        "through cancelling"
    );
    let thread = h
        .store
        .thread(&thread_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    assert_eq!(outputs(&thread)[0].1, OutputStatus::Cancelled);
    assert_eq!(
        h.engine.cancel(&run_id, &NoEvents).await,
        Err(EngineError::RunNotActive {
            run_id: run_id.clone(),
            status: RunStatus::Cancelled
        })
    );
    h.engine
        .add_message(&thread_id, "never mind")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let next = h
        .engine
        .run(&thread_id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next.status, RunStatus::Completed);
}

#[tokio::test]
async fn cancelling_a_queued_run_releases_the_thread() {
    let h = travel(vec![]);
    let thread = h.thread().await;
    h.engine.add_message(&thread.id, "hi").await.ok();
    let run = h
        .engine
        .create_run(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        h.engine.create_run(&thread.id).await,
        Err(EngineError::Store(StoreError::Locked { .. }))
    ));
    let run = h
        .engine
        .cancel(&run.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(h.reload(&thread).await.active_run.is_none());
}

/// An executor that never finishes: cancellation must still answer its call.
struct Hangs;

impl ToolExecutor for Hangs {
    fn execute<'a>(
        &'a self,
        _request: ToolRequest<'a>,
    ) -> clarion_engine::BoxFuture<'a, Result<Value, ToolError>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn cancelling_a_run_mid_tool_answers_the_call_and_stops() {
    let flow = flow_from(&TRAVEL.replace("tool_timeout = \"200ms\"", "tool_timeout = \"1h\""));
    let h = Arc::new(harness(
        flow,
        Arc::new(Hangs),
        vec![
            ScriptedTurn::call("slow", "{}"),
            ScriptedTurn::text("never"),
        ],
    ));
    let thread = h.thread().await;
    h.engine.add_message(&thread.id, "go slow").await.ok();
    let run = h
        .engine
        .create_run(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let driver = {
        let h = h.clone();
        let run_id = run.id.clone();
        tokio::spawn(async move { h.engine.drive_run(&run_id, &NoEvents).await })
    };
    // Wait until the tool is running.
    for _ in 0..200 {
        if h.store.run(&run.id).await.map(|r| r.status) == Ok(RunStatus::InProgress) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cancelling = h
        .engine
        .cancel(&run.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cancelling.status, RunStatus::Cancelling);
    let finished = tokio::time::timeout(Duration::from_secs(5), driver)
        .await
        .unwrap_or_else(|_| panic!("cancel did not stop the run"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(finished.status, RunStatus::Cancelled);
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert_eq!(outputs(&thread)[0].1, OutputStatus::Cancelled);
    assert_eq!(h.model.remaining(), 1, "no model request after the cancel");
}

#[tokio::test]
async fn a_tool_that_hangs_times_out_with_a_structured_error() {
    let h = harness(
        flow_from(TRAVEL),
        Arc::new(Hangs),
        vec![
            ScriptedTurn::call("slow", "{}"),
            ScriptedTurn::text("it timed out"),
        ],
    );
    let thread = h.thread().await;
    h.engine.add_message(&thread.id, "go slow").await.ok();
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let thread = h.reload(&thread).await;
    let (_, status, content) = &outputs(&thread)[0];
    assert_eq!(*status, OutputStatus::Error);
    assert_eq!(
        content,
        &json!({"error": {"kind": "timeout", "message": "`slow` did not finish within 200ms"}})
    );
}

#[tokio::test]
async fn metadata_limits_are_enforced_through_the_engine() {
    let h = travel(vec![]);
    let thread = h.thread().await;
    let pairs = (0..17).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    assert_eq!(
        h.engine.update_metadata(&thread.id, pairs).await,
        Err(EngineError::Metadata(MetadataError::TooManyKeys(17)))
    );
    assert!(
        h.reload(&thread).await.metadata.is_empty(),
        "nothing stored"
    );
    let ok = h
        .engine
        .update_metadata(&thread.id, vec![("channel".into(), "web".into())])
        .await;
    assert_eq!(
        ok.map(|t| t.metadata.get("channel").map(str::to_owned)),
        Ok(Some("web".to_owned()))
    );
    assert_eq!(
        h.engine.add_message(&thread.id, "   ").await,
        Err(EngineError::EmptyMessage)
    );
}

#[tokio::test]
async fn slots_fill_missing_arguments_on_later_turns() {
    let h = travel(vec![
        ScriptedTurn::call("search", r#"{"destination": "LIS"}"#),
        ScriptedTurn::text("found"),
        ScriptedTurn::call("search", "{}"),
        ScriptedTurn::text("found again"),
    ]);
    let thread = h.thread().await;
    h.engine
        .add_message(&thread.id, "flights to Lisbon")
        .await
        .ok();
    h.engine.run(&thread.id, &NoEvents).await.ok();
    h.engine.add_message(&thread.id, "search again").await.ok();
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    let statuses: Vec<OutputStatus> = outputs(&thread).into_iter().map(|o| o.1).collect();
    assert_eq!(
        statuses,
        [OutputStatus::Ok, OutputStatus::Ok],
        "the slot answered what the model left out"
    );
}

#[tokio::test]
async fn send_first_stores_a_new_thread_with_its_turn_as_send_does() {
    let h = travel(vec![
        ScriptedTurn::call("search", r#"{"destination": "LIS"}"#),
        ScriptedTurn::text("TP3 it is."),
        ScriptedTurn::text("Again."),
    ]);
    let thread = h.engine.new_thread(Metadata::default());
    assert_eq!(
        h.store.thread(&thread.id).await.map(|t| t.id),
        Err(StoreError::ThreadNotFound(thread.id.clone())),
        "a new thread is not stored before its first turn"
    );
    let run_id = clarion_engine::new_id("run");
    let run = h
        .engine
        .send_first(thread.clone(), "fly me to LIS", &run_id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let stored = h.reload(&thread).await;
    assert_protocol(&stored);
    assert_eq!(stored.active_run, None);
    assert_eq!(stored.messages.len(), 4, "user, tool calls, output, reply");
    assert_eq!(stored.messages[0].run_id, None);
    assert_eq!(h.store.run(&run_id).await, Ok(run));
    // The thread goes on as any stored thread; a second first turn is refused whole.
    let next = h
        .engine
        .send(
            &thread.id,
            "again",
            &clarion_engine::new_id("run"),
            &NoEvents,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next.status, RunStatus::Completed);
    assert!(matches!(
        h.engine
            .send_first(thread.clone(), "once more", &clarion_engine::new_id("run"), &NoEvents)
            .await,
        Err(EngineError::Store(StoreError::Duplicate(id))) if id == thread.id
    ));
    assert_eq!(h.reload(&thread).await.messages.len(), 6);
}

#[tokio::test]
async fn send_adds_the_message_and_runs_as_the_three_calls_do() {
    let h = travel(vec![
        ScriptedTurn::call("search", r#"{"destination": "LIS"}"#),
        ScriptedTurn::text("TP3 it is."),
        ScriptedTurn::text("Again."),
    ]);
    let thread = h.thread().await;
    let log = EventLog::new();
    let run_id = clarion_engine::new_id("run");
    let run = h
        .engine
        .send(&thread.id, "fly me to LIS", &run_id, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (run.id.as_str(), run.status),
        (run_id.as_str(), RunStatus::Completed)
    );
    assert!(run.started_at.is_some() && run.completed_at.is_some());
    let stored = h
        .store
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.active_run, None);
    let kinds: Vec<&str> = stored
        .messages
        .iter()
        .map(|m| match &m.kind {
            MessageKind::User { .. } => "user",
            MessageKind::ToolCalls { .. } => "tool_calls",
            MessageKind::ToolOutput { .. } => "tool_output",
            MessageKind::Assistant { .. } => "assistant",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["user", "tool_calls", "tool_output", "assistant"]);
    assert_eq!(
        stored.messages[0].run_id, None,
        "the user's message is no run's"
    );
    assert_eq!(h.store.run(&run_id).await, Ok(run));
    assert!(log.events().iter().any(|e| matches!(
        e,
        Event::Status {
            status: RunStatus::InProgress,
            ..
        }
    )));
    // Empty text, a reused run id, and a thread another run holds are refused, with
    // nothing written.
    assert!(matches!(
        h.engine
            .send(&thread.id, "  ", &clarion_engine::new_id("run"), &NoEvents)
            .await,
        Err(EngineError::EmptyMessage)
    ));
    let queued = h
        .engine
        .create_run(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        h.engine.send(&thread.id, "again", &clarion_engine::new_id("run"), &NoEvents).await,
        Err(EngineError::Store(StoreError::Locked { run_id, .. })) if run_id == queued.id
    ));
    let stored = h
        .store
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.messages.len(), 4);
}

/// The travel tools, saying `search` is pure when `pure` is set.
struct Replayable {
    tools: Arc<dyn ToolExecutor>,
    pure: bool,
}

impl ToolExecutor for Replayable {
    fn execute<'a>(
        &'a self,
        request: ToolRequest<'a>,
    ) -> clarion_engine::BoxFuture<'a, Result<Value, ToolError>> {
        self.tools.execute(request)
    }

    fn replayable(&self, tool: &clarion_flow::Tool) -> bool {
        self.pure && tool.name == "search"
    }
}

/// One `send` of a search and its answer (or a model failure after the search when
/// `answer` is false): the run, the stored thread and how many steps were committed.
async fn deferring(pure: bool, defer: bool, answer: bool) -> (RunStatus, Vec<MessageKind>, usize) {
    let mut turns = vec![ScriptedTurn::call("search", r#"{"destination": "LIS"}"#)];
    if answer {
        turns.push(ScriptedTurn::text("TP3 it is."));
    }
    let executor = Arc::new(Replayable {
        tools: travel_tools(),
        pure,
    });
    let mut h = harness(flow_from(TRAVEL), executor, turns);
    h.engine = h.engine.defer_replayable_steps(defer);
    let thread = h.thread().await;
    let log = EventLog::new();
    let run = h
        .engine
        .send(
            &thread.id,
            "fly me to LIS",
            &clarion_engine::new_id("run"),
            &log,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored = h.reload(&thread).await;
    assert_protocol(&stored);
    assert_eq!(h.store.run(&run.id).await, Ok(run.clone()));
    let commits = log
        .events()
        .iter()
        .filter(|e| matches!(e, Event::StepCommitted { .. }))
        .count();
    // Call ids are new each time.
    let kinds = stored
        .messages
        .into_iter()
        .map(|m| match m.kind {
            MessageKind::ToolCalls { text, mut calls } => {
                for call in &mut calls {
                    call.id.clear();
                }
                MessageKind::ToolCalls { text, calls }
            }
            MessageKind::ToolOutput {
                name,
                status,
                content,
                ..
            } => MessageKind::ToolOutput {
                call_id: String::new(),
                name,
                status,
                content,
            },
            kind => kind,
        })
        .collect();
    (run.status, kinds, commits)
}

#[tokio::test]
async fn a_turn_of_pure_calls_is_stored_with_the_next_step_only_when_asked() {
    let (status, every_step, commits) = Box::pin(deferring(true, false, true)).await;
    assert_eq!(status, RunStatus::Completed);
    assert_eq!(every_step.len(), 4, "user, tool calls, output, reply");
    // Deferred: the same thread, one commit fewer.
    assert_eq!(
        Box::pin(deferring(true, true, true)).await,
        (status, every_step.clone(), commits - 1)
    );
    // A tool the executor does not call replayable is stored before the model is asked again.
    assert_eq!(
        Box::pin(deferring(false, true, true)).await,
        (status, every_step, commits)
    );
    // A run that fails after a deferred turn stores that turn with its failure.
    let (status, kinds, _) = Box::pin(deferring(true, true, false)).await;
    assert_eq!(status, RunStatus::Failed);
    assert!(
        matches!(
            kinds[..],
            [
                MessageKind::User { .. },
                MessageKind::ToolCalls { .. },
                MessageKind::ToolOutput { .. }
            ]
        ),
        "{kinds:#?}"
    );
}
