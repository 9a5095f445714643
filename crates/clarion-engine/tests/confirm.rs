//! `confirm`: a complete call waits for the user's confirmation; the answer, read by a
//! constrained model request (or given by the embedder), runs it once, declines it, changes
//! it (confirmed again) or drops it. Never executed twice, never after a decline, and every
//! call has exactly one output in every path (a property test over random conversations).

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use clarion_engine::{
    BoxFuture, DECIDE_TOOL, Decision, Engine, EngineError, ErrorCode, Event, EventLog, EventSink,
    FnExecutor, MemoryStore, Metadata, Model, ModelError, ModelErrorKind, ModelRequest,
    ModelResponse, ModelTurn, OutputStatus, RunStatus, ToolCall, ToolErrorKind, Usage,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use support::*;

const FLOW: &str = r#"
[flow]
name = "bank"
[assistant]
model = "gpt-4.1-mini"
instructions = "Move money when asked."
[tools.transfer]
description = "Moves money to savings."
builtin = "test.transfer"
confirm = "Transfer ${{ args.amount }} to {{ args.to }}?"
[tools.transfer.params.amount]
type = "number"
exclusiveMinimum = 0
description = "Dollars."
ask = "How much?"
[tools.transfer.params.to]
type = "string"
enum = ["savings", "checking"]
description = "Where to."
ask = "To which account?"
[tools.balance]
description = "Shows balances."
builtin = "test.balance"
"#;

/// The judge's turn, as a model writes it.
fn decide(arguments: &str) -> ModelTurn {
    ModelTurn::ToolCalls {
        text: None,
        calls: vec![call(DECIDE_TOOL, arguments)],
    }
}

fn call(name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: String::new(),
        name: name.to_owned(),
        arguments: arguments.to_owned(),
    }
}

/// A model that answers the flow's requests and the judge's from two queues, so a test
/// need not know in which order they come; it records what each request looked like.
#[derive(Default)]
struct Model2 {
    flow_turns: Mutex<VecDeque<Result<ModelTurn, ModelError>>>,
    judge_turns: Mutex<VecDeque<Result<ModelTurn, ModelError>>>,
    /// For each judge request: its tools and its messages' texts.
    judged: Mutex<Vec<(Vec<String>, Vec<String>)>>,
    /// Answer "ok" whenever the history ends in tool results, without using a turn.
    replies_after_tools: bool,
}

impl Model2 {
    fn new(flow: Vec<ModelTurn>, judge: Vec<Result<ModelTurn, ModelError>>) -> Self {
        Self {
            flow_turns: Mutex::new(flow.into_iter().map(Ok).collect()),
            judge_turns: Mutex::new(judge.into_iter().collect()),
            judged: Mutex::new(Vec::new()),
            replies_after_tools: false,
        }
    }
}

impl Model for Model2 {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        let judging = request.flow.tools.contains_key(DECIDE_TOOL);
        let after_tools = request.messages.last().is_some_and(|m| {
            matches!(
                m.kind,
                clarion_engine::MessageKind::ToolOutput { .. }
                    | clarion_engine::MessageKind::Context { .. }
            )
        });
        let next = if judging {
            if let Ok(mut judged) = self.judged.lock() {
                judged.push((
                    request.flow.tools.keys().cloned().collect(),
                    request
                        .messages
                        .iter()
                        .filter_map(|m| m.text().map(ToOwned::to_owned))
                        .collect(),
                ));
            }
            self.judge_turns.lock().ok().and_then(|mut q| q.pop_front())
        } else if self.replies_after_tools && after_tools {
            Some(Ok(ModelTurn::Text("ok".to_owned())))
        } else {
            self.flow_turns.lock().ok().and_then(|mut q| q.pop_front())
        };
        let next = next.unwrap_or_else(|| {
            Err(ModelError::new(
                ModelErrorKind::ScriptExhausted,
                if judging {
                    "no judge turn left"
                } else {
                    "no flow turn left"
                },
            ))
        });
        Box::pin(async move {
            let turn = next?;
            if let ModelTurn::Text(text) = &turn {
                events.emit(&Event::TextDelta { text: text.clone() });
            }
            Ok(ModelResponse {
                turn,
                usage: Usage {
                    prompt_tokens: 10,
                    completion_tokens: 2,
                },
            })
        })
    }
}

type Ran = Arc<Mutex<Vec<(String, Map<String, Value>)>>>;

fn engine(model: Arc<Model2>) -> (Engine, Ran) {
    let ran: Ran = Arc::new(Mutex::new(Vec::new()));
    let seen = ran.clone();
    let tools = FnExecutor(
        move |tool: &clarion_flow::Tool, args: &Map<String, Value>| {
            if let Ok(mut seen) = seen.lock() {
                seen.push((tool.name.clone(), args.clone()));
            }
            Ok(json!({ "status": "done" }))
        },
    );
    let engine = Engine::new(
        flow_from(FLOW),
        model,
        Arc::new(tools),
        Arc::new(MemoryStore::new()),
    );
    (engine, ran)
}

async fn say(engine: &Engine, thread: &str, text: &str) -> (clarion_engine::Run, Vec<Event>) {
    engine
        .add_message(thread, text)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log = EventLog::new();
    let run = engine
        .run(thread, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (run, log.events())
}

fn ran(ran: &Ran) -> Vec<(String, Map<String, Value>)> {
    ran.lock().map(|r| r.clone()).unwrap_or_default()
}

#[tokio::test]
async fn a_complete_call_waits_and_the_confirmed_call_runs_once() {
    let model = Arc::new(Model2::new(
        vec![
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![call("transfer", r#"{"amount": 200, "to": "savings"}"#)],
            },
            ModelTurn::Text("Done.".to_owned()),
        ],
        vec![Ok(decide(r#"{"decision": "confirm"}"#))],
    ));
    let (engine, executed) = engine(model.clone());
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let (run, events) = say(&engine, &thread.id, "Move $200 to savings").await;
    assert_eq!(run.status, RunStatus::Completed);
    assert!(
        ran(&executed).is_empty(),
        "nothing runs before the user confirms"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ConfirmationAsked { tool, text, .. }
            if tool == "transfer" && text == "Transfer $200 to savings?"
    )));
    let waiting = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&waiting);
    assert_eq!(outputs(&waiting)[0].1, OutputStatus::NeedsConfirmation);
    let pending = waiting
        .pending
        .clone()
        .unwrap_or_else(|| panic!("no pending call"));
    assert_eq!(
        pending.confirm.as_deref(),
        Some("Transfer $200 to savings?")
    );
    assert_eq!(last_text(&waiting), "Transfer $200 to savings?");

    let (run, events) = say(&engine, &thread.id, "sure, go ahead").await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        ran(&executed),
        vec![(
            "transfer".to_owned(),
            serde_json::from_value(json!({ "amount": 200, "to": "savings" })).unwrap_or_default()
        )]
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ConfirmationAnswered {
            decision: Decision::Confirm,
            ..
        }
    )));
    // The judge saw the answer (the question is in its instructions), was offered only
    // `decide`, and its usage counts for the run; none of its text reached the user.
    let judged = model.judged.lock().map(|j| j.clone()).unwrap_or_default();
    assert_eq!(
        judged,
        vec![(
            vec![DECIDE_TOOL.to_owned()],
            vec!["sure, go ahead".to_owned()]
        )]
    );
    assert_eq!(run.usage.prompt_tokens, 20, "judge and reply both count");
    let done = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&done);
    assert!(done.pending.is_none());
    assert_eq!(last_text(&done), "Done.");
}

#[tokio::test]
async fn a_declined_call_is_answered_declined_and_never_runs() {
    let model = Arc::new(Model2::new(
        vec![
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![call("transfer", r#"{"amount": 200, "to": "savings"}"#)],
            },
            // The flow's model, misreading "no", calls the tool again itself.
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![call("transfer", r#"{"amount": 200, "to": "savings"}"#)],
            },
        ],
        vec![Ok(decide(r#"{"decision": "decline"}"#))],
    ));
    let (engine, executed) = engine(model);
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    say(&engine, &thread.id, "Move $200 to savings").await;
    let (run, events) = say(&engine, &thread.id, "no wait, don't").await;
    assert_eq!(run.status, RunStatus::Completed);
    assert!(ran(&executed).is_empty(), "a declined call never runs");
    let thread = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    let outputs = outputs(&thread);
    assert_eq!(
        outputs[1].2["error"]["kind"],
        ToolErrorKind::Declined.as_str()
    );
    // Its own new call is confirmed anew rather than run.
    assert_eq!(outputs[2].1, OutputStatus::NeedsConfirmation);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ConfirmationAsked { .. }))
    );
}

#[tokio::test]
async fn a_change_is_confirmed_again_with_the_new_value_and_an_invalid_change_runs_nothing() {
    let model = Arc::new(Model2::new(
        vec![
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![call("transfer", r#"{"amount": 200, "to": "savings"}"#)],
            },
            ModelTurn::Text("That amount is not possible.".to_owned()),
        ],
        vec![
            Ok(decide(
                r#"{"decision": "change", "changes": {"amount": 300}}"#,
            )),
            Ok(decide(
                r#"{"decision": "change", "changes": {"amount": -5}}"#,
            )),
        ],
    ));
    let (engine, executed) = engine(model);
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    say(&engine, &thread.id, "Move $200 to savings").await;
    let (run, events) = say(&engine, &thread.id, "make it 300 instead").await;
    assert_eq!(run.status, RunStatus::Completed);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ConfirmationAsked { text, .. } if text == "Transfer $300 to savings?"
    )));
    // A change to a value the schema refuses is answered like any invalid call.
    let (run, _) = say(&engine, &thread.id, "no, minus five").await;
    assert_eq!(run.status, RunStatus::Completed);
    assert!(ran(&executed).is_empty());
    let thread = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    let last = outputs(&thread)
        .pop()
        .unwrap_or_else(|| panic!("no outputs"));
    assert_eq!(
        last.2["error"]["kind"],
        ToolErrorKind::InvalidArguments.as_str()
    );
    assert!(thread.pending.is_none());
}

#[tokio::test]
async fn anything_but_a_clear_decision_runs_nothing_and_drops_the_call() {
    let model = Arc::new(Model2::new(
        vec![
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![call("transfer", r#"{"amount": 200, "to": "savings"}"#)],
            },
            ModelTurn::Text("Your balance is fine.".to_owned()),
        ],
        // The judge answers in words instead of calling `decide`.
        vec![Ok(ModelTurn::Text("yes".to_owned()))],
    ));
    let (engine, executed) = engine(model);
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    say(&engine, &thread.id, "Move $200 to savings").await;
    let (run, events) = say(&engine, &thread.id, "hmm, what's my balance?").await;
    assert_eq!(run.status, RunStatus::Completed);
    assert!(ran(&executed).is_empty());
    assert!(events.iter().any(|e| matches!(
        e,
        Event::ConfirmationAnswered {
            decision: Decision::Unrelated,
            ..
        }
    )));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::TextDelta { text } if text == "yes")),
        "the judge's words never reach the user"
    );
    let thread = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    assert!(thread.pending.is_none());
}

#[tokio::test]
async fn a_failed_reading_fails_the_run_and_the_call_keeps_waiting() {
    let model = Arc::new(Model2::new(
        vec![
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![call("transfer", r#"{"amount": 200, "to": "savings"}"#)],
            },
            ModelTurn::Text("Done.".to_owned()),
        ],
        vec![
            Err(ModelError::new(ModelErrorKind::Timeout, "no answer in 30s")),
            Ok(decide(r#"{"decision": "confirm"}"#)),
        ],
    ));
    let (engine, executed) = engine(model);
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    say(&engine, &thread.id, "Move $200 to savings").await;
    let (run, _) = say(&engine, &thread.id, "yes").await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.last_error.unwrap_or_else(|| panic!("no error"));
    assert_eq!(error.code, ErrorCode::Model(ModelErrorKind::Timeout));
    assert!(
        error.message.contains("confirmation of `transfer`"),
        "{}",
        error.message
    );
    let waiting = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        waiting
            .pending
            .as_ref()
            .is_some_and(|p| p.confirm.is_some())
    );
    assert!(ran(&executed).is_empty());

    let (run, _) = say(&engine, &thread.id, "yes please").await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(ran(&executed).len(), 1);
}

#[tokio::test]
async fn an_embedder_decides_without_a_reading_and_only_when_a_call_waits() {
    let model = Arc::new(Model2::new(
        vec![
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![call("transfer", r#"{"amount": 200, "to": "savings"}"#)],
            },
            ModelTurn::Text("Done, with 250.".to_owned()),
        ],
        Vec::new(),
    ));
    let (engine, executed) = engine(model.clone());
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = engine
        .create_run_deciding(&thread.id, Decision::Confirm)
        .await;
    assert!(
        matches!(refused, Err(EngineError::NothingToConfirm(ref id)) if *id == thread.id),
        "{refused:?}"
    );
    say(&engine, &thread.id, "Move $200 to savings").await;

    // The app's own dialog changed the amount, then the user pressed "confirm".
    let changes: Map<String, Value> =
        serde_json::from_value(json!({ "amount": 250 })).unwrap_or_default();
    let run = engine
        .create_run_deciding(&thread.id, Decision::Change { changes })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = engine
        .drive_run(&run.id, &EventLog::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    assert!(ran(&executed).is_empty());
    let run = engine
        .create_run_deciding(&thread.id, Decision::Confirm)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = engine
        .drive_run(&run.id, &EventLog::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(ran(&executed)[0].1["amount"], json!(250));
    assert!(
        model.judged.lock().is_ok_and(|j| j.is_empty()),
        "no model reads an answer the embedder gave"
    );
    let stored = engine
        .run_status(&run.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored.decision,
        Some(Decision::Confirm),
        "the decision is on record"
    );
    assert_protocol(
        &engine
            .thread(&thread.id)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
}

#[tokio::test]
async fn one_call_is_confirmed_at_a_time() {
    let model = Arc::new(Model2::new(
        vec![ModelTurn::ToolCalls {
            text: None,
            calls: vec![
                call("transfer", r#"{"amount": 200, "to": "savings"}"#),
                call("transfer", r#"{"amount": 50, "to": "checking"}"#),
                // Missing a value: its question comes first, and no confirmation with it.
                call("transfer", r#"{"to": "savings"}"#),
            ],
        }],
        Vec::new(),
    ));
    let (engine, executed) = engine(model);
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (run, events) = say(
        &engine,
        &thread.id,
        "Move 200 to savings, 50 to checking, and some more to savings",
    )
    .await;
    assert_eq!(run.status, RunStatus::Completed);
    assert!(ran(&executed).is_empty());
    let thread = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    let statuses: Vec<(OutputStatus, Value)> = outputs(&thread)
        .into_iter()
        .map(|(_, status, content)| (status, content["error"]["kind"].clone()))
        .collect();
    let awaiting = json!(ToolErrorKind::AwaitingConfirmation.as_str());
    assert_eq!(
        statuses,
        vec![
            (OutputStatus::Error, awaiting.clone()),
            (OutputStatus::Error, awaiting),
            (OutputStatus::NeedsInput, Value::Null),
        ]
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::QuestionAsked { .. }))
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ConfirmationAsked { .. }))
    );
}

/// A call given up with `on_exhausted = { end = … }` ends the run before any question: a
/// confirmation in the same turn is answered `awaiting_confirmation`, never left claiming
/// the user was asked.
#[tokio::test]
async fn no_confirmation_waits_behind_a_call_given_up() {
    let flow = format!(
        "{FLOW}\n[tools.loan]\ndescription = \"A loan's payment.\"\nbuiltin = \"test.loan\"\n\
         [tools.loan.params.years]\ntype = \"integer\"\nminimum = 1\ndescription = \"Term.\"\n\
         ask = \"Over how many years?\"\nmax_asks = 1\n\
         on_exhausted = {{ end = \"Let's stop here.\" }}\n"
    );
    let model = Arc::new(Model2::new(
        vec![
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![call("loan", "{}")],
            },
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![
                    call("loan", "{}"),
                    call("transfer", r#"{"amount": 200, "to": "savings"}"#),
                ],
            },
        ],
        Vec::new(),
    ));
    let engine = Engine::new(
        flow_from(&flow),
        model,
        Arc::new(FnExecutor(
            |_: &clarion_flow::Tool, _: &Map<String, Value>| Ok(json!({})),
        )),
        Arc::new(MemoryStore::new()),
    );
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    say(&engine, &thread.id, "A loan, please").await;
    let (run, events) = say(&engine, &thread.id, "Not sure. Also move 200 to savings").await;
    assert_eq!(run.status, RunStatus::Incomplete, "{run:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ConfirmationAsked { .. }))
    );
    let thread = engine
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_protocol(&thread);
    let last = outputs(&thread)
        .pop()
        .unwrap_or_else(|| panic!("no outputs"));
    assert_eq!(
        (last.0.as_str(), last.2["error"]["kind"].clone()),
        (
            "transfer",
            json!(ToolErrorKind::AwaitingConfirmation.as_str())
        )
    );
    assert!(thread.pending.is_none());
}

/// One step of a random conversation.
#[derive(Debug, Clone)]
enum Move {
    /// The flow's model calls `transfer` with this amount (0: invalid; None: missing).
    Transfer(Option<u8>),
    /// The flow's model calls two tools at once.
    TransferAndBalance(u8),
    /// The flow's model answers in words.
    Words,
}

#[derive(Debug, Clone)]
enum Reading {
    Confirm,
    Decline,
    Change(u8),
    Unrelated,
    Garbage,
    Fails,
}

fn moves() -> impl Strategy<Value = Move> {
    prop_oneof![
        4 => (1u8..4).prop_map(|amount| Move::Transfer(Some(amount))),
        1 => Just(Move::Transfer(Some(0))),
        1 => Just(Move::Transfer(None)),
        2 => (1u8..4).prop_map(Move::TransferAndBalance),
        1 => Just(Move::Words),
    ]
}

fn readings() -> impl Strategy<Value = Reading> {
    prop_oneof![
        3 => Just(Reading::Confirm),
        1 => Just(Reading::Decline),
        1 => (0u8..4).prop_map(Reading::Change),
        1 => Just(Reading::Unrelated),
        1 => Just(Reading::Garbage),
        1 => Just(Reading::Fails),
    ]
}

fn flow_turn(step: &Move) -> ModelTurn {
    let transfer = |amount: Option<u8>| match amount {
        Some(amount) => call(
            "transfer",
            &format!(r#"{{"amount": {amount}, "to": "savings"}}"#),
        ),
        None => call("transfer", r#"{"to": "savings"}"#),
    };
    match step {
        Move::Transfer(amount) => ModelTurn::ToolCalls {
            text: None,
            calls: vec![transfer(*amount)],
        },
        Move::TransferAndBalance(amount) => ModelTurn::ToolCalls {
            text: None,
            calls: vec![transfer(Some(*amount)), call("balance", "{}")],
        },
        Move::Words => ModelTurn::Text("ok".to_owned()),
    }
}

fn judge_turn(reading: &Reading) -> Result<ModelTurn, ModelError> {
    Ok(match reading {
        Reading::Confirm => decide(r#"{"decision": "confirm"}"#),
        Reading::Decline => decide(r#"{"decision": "decline"}"#),
        Reading::Change(amount) => decide(&format!(
            r#"{{"decision": "change", "changes": {{"amount": {amount}}}}}"#
        )),
        Reading::Unrelated => decide(r#"{"decision": "unrelated"}"#),
        Reading::Garbage => decide("{not json"),
        Reading::Fails => return Err(ModelError::new(ModelErrorKind::Unavailable, "down")),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the models do, every call has exactly one output, `transfer` runs exactly
    /// once per confirmation read while it waited — never after a decline, never twice —
    /// and always with the arguments the user was asked to confirm.
    #[test]
    fn confirmation_never_breaks_pairing_or_runs_unconfirmed(
        turns in proptest::collection::vec((moves(), readings()), 1..12),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        runtime.block_on(async {
            // Each user turn: the judge may read (if a call waits), then the flow's model
            // moves, and answers "ok" after any tool results.
            let mut flow = Vec::new();
            let mut judge = Vec::new();
            for (step, reading) in &turns {
                flow.push(flow_turn(step));
                judge.push(judge_turn(reading));
            }
            let mut model = Model2::new(flow, judge);
            model.replies_after_tools = true;
            let model = Arc::new(model);
            let (engine, executed) = engine(model);
            let thread = engine
                .create_thread(Metadata::default())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let mut confirmed: Vec<Map<String, Value>> = Vec::new();
            for i in 0..turns.len() {
                let before = engine.thread(&thread.id).await.unwrap_or_else(|e| panic!("{e}"));
                let waiting = before.pending.clone().filter(|p| p.confirm.is_some());
                let log = EventLog::new();
                engine
                    .add_message(&thread.id, &format!("turn {i}: 0, 1, 2 or 3 dollars"))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let run = engine.run(&thread.id, &log).await.unwrap_or_else(|e| panic!("{e}"));
                prop_assert_ne!(
                    run.last_error.as_ref().map(|e| e.code.clone()),
                    Some(ErrorCode::ProtocolViolation)
                );
                let after = engine.thread(&thread.id).await.unwrap_or_else(|e| panic!("{e}"));
                assert_protocol(&after);
                let decided = log.events().into_iter().find_map(|e| match e {
                    Event::ConfirmationAnswered { decision, .. } => Some(decision),
                    _ => None,
                });
                if let (Some(waiting), Some(Decision::Confirm)) = (waiting, decided) {
                    confirmed.push(waiting.known);
                }
            }
            let transfers: Vec<Map<String, Value>> = ran(&executed)
                .into_iter()
                .filter(|(tool, _)| tool == "transfer")
                .map(|(_, args)| args)
                .collect();
            prop_assert_eq!(transfers, confirmed);
            Ok(())
        })?;
    }
}
