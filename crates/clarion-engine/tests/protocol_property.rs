//! The protocol invariant as a property: random conversations through the real engine
//! never produce a history that breaks the pairing of tool calls and outputs.
//!
//! Hand-written tests cover each mechanism once; the pairing breaks on *combinations* — a
//! cancel landing while a client call waits next to a needs-input call whose id the model
//! reused, an expiry after a crash. Each case generates a model script (text, 1–4 calls of
//! every shape: unknown tools, invalid or wrong-typed arguments, empty and duplicated ids)
//! and a sequence of user, client, clock and operator actions (runs, cancels racing a
//! hanging tool, bad and good submissions, expiry, recovery after a crash), and plays them
//! on a multi-threaded runtime so cancellation really races the tools, over the memory
//! store or SQLite (chosen per case).
//!
//! After every operation the stored thread is checked: the pairing holds, except that a
//! run in `requires_action` leaves exactly its own turn open (its client calls waiting, the
//! rest staged); no terminal run holds the lock; a pending call names a `needs_input`
//! output; refused operations change nothing. And a checking model asserts the pairing on
//! every request — the real invariant: no history *sent* to a model is ever broken, also
//! when `max_context_tokens` and `truncation` cut it (chosen per case).
//!
//! `PROPTEST_CASES` sets the number of cases (default 128).

mod support;

use clarion_engine::{ErrorCode, ModelErrorKind, ToolErrorKind};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarion_engine::BoxFuture;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{Clock, ManualClock};
use clarion_engine::{Engine, EngineError, Run, RunStatus, ToolOutputSubmission, protocol};
use clarion_engine::{EventSink, NoEvents};
use clarion_engine::{MemoryStore, StoreError, ThreadStore};
use clarion_engine::{Message, MessageKind, Metadata, OutputStatus, Thread, ToolCall};
use clarion_engine::{Model, ModelError, ModelRequest, ModelResponse, ModelTurn};
use clarion_engine::{ToolError, ToolExecutor, ToolRequest};
use clarion_flow::Flow;
use clarion_store::SqliteStore;
use futures_util::FutureExt as _;
use proptest::prelude::*;
use serde_json::{Value, json};
use support::flow_from;

const FLOW: &str = r#"
[flow]
name = "property"
[assistant]
model = "m"
instructions = "Plan trips."
[limits]
max_steps = 6
tool_timeout = "20ms"
max_consecutive_failures = 3
requires_action_timeout = "1m"
[slots.city]
type = "string"
description = "The city."
[tools.lookup]
description = "Look a city up."
builtin = "test.lookup"
[tools.lookup.params.city]
type = "string"
description = "City."
ask = "Which city?"
slot = "city"
[tools.lookup.params.days]
type = "integer"
description = "Days."
minimum = 1
ask = "For how many days?"
[[tools.lookup.after]]
when = "result.ok"
inject = "Looked up {{ args.city }}."
[tools.lookup.on_error]
inject = "The lookup failed: {{ error.message }}"
[tools.note]
description = "Take a note."
builtin = "test.note"
[tools.note.params.text]
type = "string"
description = "Text."
required = false
[tools.confirm]
description = "The app asks the user to confirm."
client = true
[tools.confirm.params.what]
type = "string"
description = "What to confirm."
ask = "What should I confirm?"
[[tools.confirm.after]]
when = "result.confirmed"
inject = "Confirmed {{ args.what }}."
"#;

/// `requires_action_timeout` above.
const REQUIRES_ACTION_TIMEOUT: Duration = Duration::from_secs(60);

// ---- the generated world ----------------------------------------------------------------

/// What the executor does with a call; carried in the call's string argument.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Ok,
    Fail,
    /// Never finishes: the 20 ms tool timeout (or a cancel) ends it.
    Hang,
    /// Finishes after this many ms — sometimes after the timeout.
    Slow(u8),
}

impl Behaviour {
    fn tag(self) -> String {
        match self {
            Self::Ok => "ok".to_owned(),
            Self::Fail => "fail".to_owned(),
            Self::Hang => "hang".to_owned(),
            Self::Slow(ms) => format!("slow:{ms}"),
        }
    }

    fn from_tag(tag: &str) -> Self {
        match tag {
            "fail" => Self::Fail,
            "hang" => Self::Hang,
            _ => tag
                .strip_prefix("slow:")
                .and_then(|ms| ms.parse().ok())
                .map_or(Self::Ok, Self::Slow),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum ToolName {
    /// Builtin; both parameters required with `ask`, `city` backed by a slot.
    Lookup,
    /// Builtin; one optional parameter.
    Note,
    /// `client = true`.
    Confirm,
    /// Not in the flow.
    Unknown,
}

impl ToolName {
    fn name(self) -> &'static str {
        match self {
            Self::Lookup => "lookup",
            Self::Note => "note",
            Self::Confirm => "confirm",
            Self::Unknown => "lokup",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Args {
    Valid(Behaviour),
    /// A required parameter left out: filled from a slot or the pending call, or asked.
    Partial,
    WrongType,
    UnknownParam,
    InvalidJson,
    Empty,
    NotObject,
    Nulls,
}

impl Args {
    fn render(self, tool: ToolName) -> String {
        let value = match (self, tool) {
            (Self::Valid(b), ToolName::Lookup) => json!({ "city": b.tag(), "days": 2 }),
            (Self::Valid(b), ToolName::Note) => json!({ "text": b.tag() }),
            (Self::Valid(b), ToolName::Confirm | ToolName::Unknown) => json!({ "what": b.tag() }),
            (Self::Partial, ToolName::Lookup) => json!({ "days": 3 }),
            (Self::Partial, _) => json!({}),
            (Self::WrongType, ToolName::Lookup) => json!({ "city": 5, "days": "two" }),
            (Self::WrongType, ToolName::Note) => json!({ "text": 5 }),
            (Self::WrongType, _) => json!({ "what": false }),
            (Self::UnknownParam, _) => json!({ "bogus": 1 }),
            (Self::InvalidJson, _) => return r#"{"city": "#.to_owned(),
            (Self::Empty, _) => return String::new(),
            (Self::NotObject, _) => json!([1, 2]),
            (Self::Nulls, _) => json!({ "city": null, "days": null, "text": null, "what": null }),
        };
        value.to_string()
    }
}

#[derive(Debug, Clone, Copy)]
enum CallId {
    /// The engine must assign one.
    Empty,
    /// The same id in every turn that uses it (and twice in one turn).
    Dup,
    /// `call_0`…`call_2`: reused across turns by chance.
    Small(u8),
}

#[derive(Debug, Clone, Copy)]
struct Call {
    id: CallId,
    tool: ToolName,
    args: Args,
}

#[derive(Debug, Clone)]
enum Turn {
    Text,
    /// Tool calls with an empty list: a reply in disguise.
    NoCalls,
    Calls {
        with_text: bool,
        calls: Vec<Call>,
    },
}

impl Turn {
    fn scripted(&self) -> ScriptedTurn {
        let turn = match self {
            Self::Text => ModelTurn::Text("Here you are.".to_owned()),
            Self::NoCalls => ModelTurn::ToolCalls {
                text: None,
                calls: Vec::new(),
            },
            Self::Calls { with_text, calls } => ModelTurn::ToolCalls {
                text: with_text.then(|| "Let me check.".to_owned()),
                calls: calls
                    .iter()
                    .map(|c| ToolCall {
                        id: match c.id {
                            CallId::Empty => String::new(),
                            CallId::Dup => "call_dup".to_owned(),
                            CallId::Small(n) => format!("call_{n}"),
                        },
                        name: c.tool.name().to_owned(),
                        arguments: c.args.render(c.tool),
                    })
                    .collect(),
            },
        };
        ScriptedTurn {
            turn,
            expect_user: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum ClientOutput {
    Confirmed,
    Declined,
    NotJson,
    Empty,
}

impl ClientOutput {
    fn text(self) -> &'static str {
        match self {
            Self::Confirmed => r#"{"confirmed": true}"#,
            Self::Declined => r#"{"confirmed": false}"#,
            Self::NotJson => "the user said yes",
            Self::Empty => "",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Submission {
    /// One output per waiting call.
    Correct(ClientOutput),
    /// The first waiting call left out.
    Missing,
    /// An output for a call nobody made.
    Extra,
    /// The first waiting call answered twice.
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    User(&'static str),
    /// Start a run (or drive the queued one), optionally cancelling it after some ms.
    Run {
        cancel_after_ms: Option<u8>,
    },
    /// Create a run and leave it queued.
    Queue,
    /// Cancel the active run (or the last one) — from two requests at once if `twice`.
    Cancel {
        twice: bool,
    },
    /// Submit client outputs to the active run (or the last one).
    Submit {
        submission: Submission,
        cancel_after_ms: Option<u8>,
    },
    /// Move the clock (past `requires_action_timeout`, or a little), then read the thread
    /// — from two requests at once if `twice`.
    Wait {
        expire: bool,
        twice: bool,
    },
    /// `Engine::recover` with nothing in flight.
    Recover,
    /// The process dies after some ms of a run; a new engine recovers.
    Crash {
        after_ms: u8,
    },
}

// ---- strategies ---------------------------------------------------------------------------

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        4 => Just(Behaviour::Ok),
        2 => Just(Behaviour::Fail),
        1 => Just(Behaviour::Hang),
        2 => (1u8..30).prop_map(Behaviour::Slow),
    ]
}

fn args() -> impl Strategy<Value = Args> {
    prop_oneof![
        10 => behaviour().prop_map(Args::Valid),
        3 => Just(Args::Partial),
        1 => Just(Args::WrongType),
        1 => Just(Args::UnknownParam),
        1 => Just(Args::InvalidJson),
        1 => Just(Args::Empty),
        1 => Just(Args::NotObject),
        1 => Just(Args::Nulls),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    let id = prop_oneof![
        3 => Just(CallId::Empty),
        1 => Just(CallId::Dup),
        2 => (0u8..3).prop_map(CallId::Small),
    ];
    let tool = prop_oneof![
        4 => Just(ToolName::Lookup),
        2 => Just(ToolName::Note),
        4 => Just(ToolName::Confirm),
        1 => Just(ToolName::Unknown),
    ];
    (id, tool, args()).prop_map(|(id, tool, args)| Call { id, tool, args })
}

fn turn() -> impl Strategy<Value = Turn> {
    prop_oneof![
        3 => Just(Turn::Text),
        1 => Just(Turn::NoCalls),
        8 => (any::<bool>(), prop::collection::vec(call(), 1..=4))
            .prop_map(|(with_text, calls)| Turn::Calls { with_text, calls }),
    ]
}

fn cancel_after() -> impl Strategy<Value = Option<u8>> {
    prop::option::weighted(0.3, 0u8..25)
}

fn action() -> impl Strategy<Value = Action> {
    let submission = prop_oneof![
        4 => prop_oneof![
            Just(ClientOutput::Confirmed),
            Just(ClientOutput::Declined),
            Just(ClientOutput::NotJson),
            Just(ClientOutput::Empty),
        ]
        .prop_map(Submission::Correct),
        1 => Just(Submission::Missing),
        1 => Just(Submission::Extra),
        1 => Just(Submission::Duplicate),
    ];
    prop_oneof![
        3 => prop::sample::select(vec!["Plan a trip", "Paris", "4 days", "   "]).prop_map(Action::User),
        5 => cancel_after().prop_map(|cancel_after_ms| Action::Run { cancel_after_ms }),
        1 => Just(Action::Queue),
        1 => any::<bool>().prop_map(|twice| Action::Cancel { twice }),
        4 => (submission, cancel_after())
            .prop_map(|(submission, cancel_after_ms)| Action::Submit { submission, cancel_after_ms }),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(expire, twice)| Action::Wait { expire, twice }),
        1 => Just(Action::Recover),
        1 => (0u8..25).prop_map(|after_ms| Action::Crash { after_ms }),
    ]
}

// ---- the model and tools -----------------------------------------------------------------

/// The scripted model behind a check of every request: a history sent to a model that
/// breaks the pairing is recorded, and the property fails on it.
struct CheckingModel {
    inner: ScriptedModel,
    violations: Mutex<Vec<String>>,
}

impl Model for CheckingModel {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        if let Err(violation) = protocol::check(request.messages) {
            let report = format!(
                "a broken history was sent to the model: {violation}\n{}",
                transcript(request.messages)
            );
            if let Ok(mut violations) = self.violations.lock() {
                violations.push(report);
            }
            return Box::pin(async {
                Err(ModelError::new(
                    ModelErrorKind::ProtocolViolation,
                    "broken history",
                ))
            });
        }
        self.inner.respond(request, events)
    }
}

/// Plays each call's [`Behaviour`], read from its string argument.
struct Tools;

impl ToolExecutor for Tools {
    fn execute<'a>(&'a self, request: ToolRequest<'a>) -> BoxFuture<'a, Result<Value, ToolError>> {
        let tag = ["city", "text"]
            .iter()
            .find_map(|key| request.arguments.get(*key).and_then(Value::as_str))
            .unwrap_or("ok");
        let behaviour = Behaviour::from_tag(tag);
        Box::pin(async move {
            match behaviour {
                Behaviour::Ok => Ok(json!({ "ok": true })),
                Behaviour::Fail => Err(ToolError::new(
                    ToolErrorKind::Failed,
                    "the test tool failed",
                )),
                Behaviour::Hang => std::future::pending().await,
                Behaviour::Slow(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms.into())).await;
                    Ok(json!({ "ok": true, "slow": true }))
                }
            }
        })
    }
}

// ---- checks -------------------------------------------------------------------------------

fn transcript(messages: &[Message]) -> String {
    let mut out = String::new();
    for (i, message) in messages.iter().enumerate() {
        let line = match &message.kind {
            MessageKind::User { text } => format!("user {text:?}"),
            MessageKind::Assistant { text } => format!("assistant {text:?}"),
            MessageKind::ToolCalls { calls, .. } => {
                let calls: Vec<String> = calls
                    .iter()
                    .map(|c| format!("{}={}({})", c.id, c.name, c.arguments))
                    .collect();
                format!("calls [{}]", calls.join(", "))
            }
            MessageKind::ToolOutput {
                call_id, status, ..
            } => format!("output {call_id} {status:?}"),
            MessageKind::Context { text, .. } => format!("context {text:?}"),
            MessageKind::Question { call_id, .. } => format!("question for {call_id}"),
        };
        let run = message.run_id.as_deref().unwrap_or("-");
        let _ = writeln!(out, "  {i:>3} [{run}] {line}");
    }
    out
}

/// The stored history is well paired — except, for a run waiting in `requires_action`,
/// exactly its own last turn: every call of it either waits for the client or has its
/// output staged, once, and answering the waiting ones makes the history whole.
fn check_history(thread: &Thread, active: Option<&Run>) -> Result<(), String> {
    let Some(run) = active.filter(|r| r.status == RunStatus::RequiresAction) else {
        return protocol::check(&thread.messages).map_err(|v| v.to_string());
    };
    let (last, before) = thread
        .messages
        .split_last()
        .ok_or("requires_action on an empty thread")?;
    let MessageKind::ToolCalls { calls, .. } = &last.kind else {
        return Err("a run in requires_action, but the thread does not end with its calls".into());
    };
    if last.run_id.as_deref() != Some(run.id.as_str()) {
        return Err("the open turn is not the waiting run's".into());
    }
    protocol::check(before).map_err(|v| format!("before the open turn: {v}"))?;
    if run.required_action.is_empty() || run.expires_at.is_none() {
        return Err("requires_action with nothing required or no expiry".into());
    }
    let staged = run
        .staged()
        .ok_or("requires_action without a staged turn")?;
    let mut accounted: Vec<&str> = run.required_action.iter().map(|c| c.id.as_str()).collect();
    for output in &staged.outputs {
        let MessageKind::ToolOutput { call_id, .. } = &output.kind else {
            return Err("a staged output that is not a tool output".into());
        };
        accounted.push(call_id);
    }
    let mut expected: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    accounted.sort_unstable();
    expected.sort_unstable();
    if accounted != expected {
        return Err(format!(
            "the open turn's calls {expected:?} are not exactly the waiting and staged ones {accounted:?}"
        ));
    }
    for waiting in &run.required_action {
        if !calls.contains(waiting) {
            return Err(format!(
                "waiting call {} differs from the model's",
                waiting.id
            ));
        }
    }
    let mut answered = thread.messages.clone();
    answered.extend(staged.outputs.iter().cloned());
    answered.extend(run.required_action.iter().map(|c| Message {
        id: String::new(),
        run_id: Some(run.id.clone()),
        created_at: 0,
        kind: MessageKind::ToolOutput {
            call_id: c.id.clone(),
            name: c.name.clone(),
            status: OutputStatus::Ok,
            content: "{}".into(),
        },
        metadata: Metadata::default(),
    }));
    protocol::check(&answered).map_err(|v| format!("with the waiting calls answered: {v}"))
}

/// A pending call names a call that was answered `needs_input`.
fn check_pending(thread: &Thread) -> Result<(), String> {
    let Some(pending) = &thread.pending else {
        return Ok(());
    };
    let answered = thread.messages.iter().any(|m| {
        matches!(&m.kind, MessageKind::ToolOutput { call_id, name, status: OutputStatus::NeedsInput, .. }
            if *call_id == pending.call_id && *name == pending.tool)
    });
    if answered {
        Ok(())
    } else {
        Err(format!(
            "pending call {} has no needs_input output",
            pending.call_id
        ))
    }
}

/// Only the thread's active run is unfinished, and finished runs are tidy.
fn check_runs(thread: &Thread, runs: &[Run]) -> Result<(), String> {
    for run in runs {
        let holds = thread.active_run.as_deref() == Some(run.id.as_str());
        if run.status.is_terminal() {
            if holds {
                return Err(format!(
                    "thread locked by {} run {}",
                    run.status.as_str(),
                    run.id
                ));
            }
            if run.completed_at.is_none()
                || !run.required_action.is_empty()
                || run.staged().is_some()
                || run.expires_at.is_some()
            {
                return Err(format!("run {} ended untidy: {run:?}", run.id));
            }
            if run
                .last_error
                .as_ref()
                .is_some_and(|e| e.code == ErrorCode::ProtocolViolation)
            {
                return Err(format!(
                    "the engine refused a broken history: {:?}",
                    run.last_error
                ));
            }
        } else if !holds {
            return Err(format!(
                "run {} is {} but does not hold the thread",
                run.id,
                run.status.as_str()
            ));
        }
    }
    if let Some(active) = &thread.active_run
        && !runs.iter().any(|r| &r.id == active)
    {
        return Err(format!("thread locked by unknown run {active}"));
    }
    Ok(())
}

// ---- playing a case -----------------------------------------------------------------------

struct World {
    flow: Arc<Flow>,
    model: Arc<CheckingModel>,
    store: Arc<dyn ThreadStore>,
    clock: Arc<ManualClock>,
    engine: Arc<Engine>,
    thread_id: String,
    last_run: Option<String>,
    log: Vec<String>,
}

/// A thread and its runs, to show that a refused operation changed nothing.
type Snapshot = (Thread, Vec<Run>);

impl World {
    /// `truncation`: a token budget and maybe a message count the requests are cut to.
    async fn new(script: &[Turn], sqlite: bool, truncation: Option<(u32, Option<u32>)>) -> Self {
        let flow = match truncation {
            None => flow_from(FLOW),
            Some((tokens, messages)) => {
                let truncation = messages
                    .map(|n| format!("truncation = {{ last_messages = {n} }}\n"))
                    .unwrap_or_default();
                let limits = format!("max_context_tokens = {tokens}\n{truncation}");
                let text = FLOW.replace(
                    "requires_action_timeout = \"1m\"\n",
                    &format!("requires_action_timeout = \"1m\"\n{limits}"),
                );
                flow_from(&text)
            }
        };
        let model = Arc::new(CheckingModel {
            inner: ScriptedModel::new(script.iter().map(Turn::scripted)),
            violations: Mutex::new(Vec::new()),
        });
        let store: Arc<dyn ThreadStore> = if sqlite {
            Arc::new(SqliteStore::open_in_memory().unwrap_or_else(|e| panic!("{e}")))
        } else {
            Arc::new(MemoryStore::new())
        };
        let clock = Arc::new(ManualClock::new(1_000_000));
        let engine = Arc::new(
            Engine::new(flow.clone(), model.clone(), Arc::new(Tools), store.clone())
                .with_clock(clock.clone()),
        );
        let thread_id = engine
            .create_thread(Metadata::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .id;
        Self {
            flow,
            model,
            store,
            clock,
            engine,
            thread_id,
            last_run: None,
            log: Vec::new(),
        }
    }

    fn fail(&self, what: &str) -> ! {
        // The history as far as it can be read without waiting (a memory store's at once).
        let thread = self
            .store
            .thread(&self.thread_id)
            .now_or_never()
            .and_then(Result::ok);
        let history = thread.map(|t| transcript(&t.messages)).unwrap_or_default();
        panic!(
            "{what}\n\noperations:\n  {}\n\nstored history:\n{history}",
            self.log.join("\n  ")
        );
    }

    /// The thread and its runs as of one instant. They are two reads, so while a driver
    /// commits concurrently the runs could be newer than the thread; a snapshot is taken
    /// again until the thread read before and after the runs is the same.
    async fn snapshot(&self) -> Snapshot {
        let read_thread = || async {
            self.store
                .thread(&self.thread_id)
                .await
                .unwrap_or_else(|e| self.fail(&e.to_string()))
        };
        let shape = |t: &Thread| {
            (
                t.messages.len(),
                t.messages.last().map(|m| m.id.clone()),
                t.active_run.clone(),
            )
        };
        loop {
            let thread = read_thread().await;
            let runs = self
                .store
                .runs(&self.thread_id)
                .await
                .unwrap_or_else(|e| self.fail(&e.to_string()));
            if shape(&read_thread().await) == shape(&thread) {
                return (thread, runs);
            }
            tokio::task::yield_now().await;
        }
    }

    /// A snapshot taken while a run may commit: the thread and its runs are two reads, so
    /// a commit between them pairs an old thread with a newer run (a run already in
    /// `requires_action` beside a thread without its calls). Two equal snapshots in a row
    /// are one consistent state.
    async fn stable_snapshot(&self) -> Snapshot {
        let mut last = self.snapshot().await;
        for _ in 0..50 {
            let next = self.snapshot().await;
            if next == last {
                return next;
            }
            last = next;
            tokio::task::yield_now().await;
        }
        last
    }

    /// The checks after every operation. `settled` when nothing runs concurrently: then the
    /// runs' statuses and the lock must agree too.
    async fn check(&self, settled: bool) {
        if let Some(violation) = self
            .model
            .violations
            .lock()
            .ok()
            .and_then(|v| v.first().cloned())
        {
            self.fail(&violation);
        }
        let (thread, runs) = if settled {
            self.snapshot().await
        } else {
            self.stable_snapshot().await
        };
        let active = thread
            .active_run
            .as_ref()
            .and_then(|id| runs.iter().find(|r| &r.id == id));
        if let Err(problem) = check_history(&thread, active) {
            self.fail(&format!("protocol broken in the stored thread: {problem}"));
        }
        if let Err(problem) = check_pending(&thread) {
            self.fail(&problem);
        }
        if settled && let Err(problem) = check_runs(&thread, &runs) {
            self.fail(&problem);
        }
    }

    async fn unchanged(&self, before: &Snapshot, what: &str) {
        if &self.snapshot().await != before {
            self.fail(&format!(
                "{what} was refused but changed the thread or its runs"
            ));
        }
    }

    /// The active run as stored, after any due expiry (itself an operation, checked).
    async fn active(&self) -> Option<Run> {
        let thread = self
            .engine
            .thread(&self.thread_id)
            .await
            .unwrap_or_else(|e| self.fail(&e.to_string()));
        self.check(true).await;
        let id = thread.active_run?;
        Some(
            self.store
                .run(&id)
                .await
                .unwrap_or_else(|e| self.fail(&e.to_string())),
        )
    }

    async fn target(&self) -> Option<String> {
        self.active()
            .await
            .map(|r| r.id)
            .or_else(|| self.last_run.clone())
    }

    async fn play(&mut self, action: Action) {
        self.log.push(format!("{action:?}"));
        match action {
            Action::User(text) => self.user(text).await,
            Action::Run { cancel_after_ms } => self.run(cancel_after_ms).await,
            Action::Queue => self.queue().await,
            Action::Cancel { twice } => self.cancel(twice).await,
            Action::Submit {
                submission,
                cancel_after_ms,
            } => self.submit(submission, cancel_after_ms).await,
            Action::Wait { expire, twice } => self.wait(expire, twice).await,
            Action::Recover => self.recover().await,
            Action::Crash { after_ms } => self.crash(after_ms).await,
        }
        self.check(true).await;
    }

    async fn user(&mut self, text: &str) {
        let locked = self.active().await.is_some();
        let before = self.snapshot().await;
        match self.engine.add_message(&self.thread_id, text).await {
            Ok(_) if !locked && !text.trim().is_empty() => {}
            Err(EngineError::EmptyMessage) if text.trim().is_empty() => {
                self.unchanged(&before, "an empty message").await;
            }
            Err(EngineError::Store(StoreError::Locked { .. })) if locked => {
                self.unchanged(&before, "a message to a locked thread")
                    .await;
            }
            other => self.fail(&format!("add_message: unexpected {other:?}")),
        }
    }

    async fn queue(&mut self) {
        let locked = self.active().await.is_some();
        let before = self.snapshot().await;
        match self.engine.create_run(&self.thread_id).await {
            Ok(run) if !locked => self.last_run = Some(run.id),
            Err(EngineError::Store(StoreError::Locked { .. })) if locked => {
                self.unchanged(&before, "a run on a locked thread").await;
            }
            other => self.fail(&format!("create_run: unexpected {other:?}")),
        }
    }

    async fn run(&mut self, cancel_after_ms: Option<u8>) {
        let run_id = match self.active().await {
            Some(run) if run.status == RunStatus::Queued => run.id,
            Some(_) => {
                let before = self.snapshot().await;
                match self.engine.create_run(&self.thread_id).await {
                    Err(EngineError::Store(StoreError::Locked { .. })) => {
                        self.unchanged(&before, "a run on a locked thread").await;
                    }
                    other => self.fail(&format!("create_run on a locked thread: {other:?}")),
                }
                return;
            }
            None => {
                let run = self
                    .engine
                    .create_run(&self.thread_id)
                    .await
                    .unwrap_or_else(|e| self.fail(&format!("create_run: {e}")));
                self.check(true).await;
                run.id
            }
        };
        self.last_run = Some(run_id.clone());
        let engine = self.engine.clone();
        let id = run_id.clone();
        let driver = tokio::spawn(async move { engine.drive_run(&id, &NoEvents).await });
        self.race(driver, &run_id, cancel_after_ms).await;
    }

    async fn submit(&mut self, submission: Submission, cancel_after_ms: Option<u8>) {
        let Some(run_id) = self.target().await else {
            return;
        };
        let run = self
            .store
            .run(&run_id)
            .await
            .unwrap_or_else(|e| self.fail(&e.to_string()));
        let ids: Vec<String> = run.required_action.iter().map(|c| c.id.clone()).collect();
        let output = |id: &str, text: &str| ToolOutputSubmission {
            call_id: id.to_owned(),
            output: text.to_owned(),
        };
        let outputs: Vec<ToolOutputSubmission> = match submission {
            Submission::Correct(o) => ids.iter().map(|id| output(id, o.text())).collect(),
            Submission::Missing => ids.iter().skip(1).map(|id| output(id, "{}")).collect(),
            Submission::Extra => ids
                .iter()
                .map(|id| output(id, "{}"))
                .chain([output("call_nobody_made", "{}")])
                .collect(),
            Submission::Duplicate => ids
                .first()
                .map(|id| output(id, "{}"))
                .into_iter()
                .chain(ids.iter().map(|id| output(id, "{}")))
                .collect(),
        };
        let waiting = run.status == RunStatus::RequiresAction;
        let good = waiting && matches!(submission, Submission::Correct(_));
        if !good {
            let before = self.snapshot().await;
            let result = self
                .engine
                .submit_tool_outputs(&run_id, outputs, &NoEvents)
                .await;
            let refused = match result {
                Err(EngineError::NotRequiresAction { .. }) => !waiting,
                Err(EngineError::MissingToolOutputs(_)) => {
                    matches!(submission, Submission::Missing)
                }
                Err(EngineError::UnknownToolCall(_)) => matches!(submission, Submission::Extra),
                Err(EngineError::DuplicateToolOutput(_)) => {
                    matches!(submission, Submission::Duplicate)
                }
                _ => false,
            };
            if !refused {
                self.fail(&format!("a bad submission ({submission:?}) got {result:?}"));
            }
            self.unchanged(&before, "a bad submission").await;
            return;
        }
        let engine = self.engine.clone();
        let id = run_id.clone();
        let driver =
            tokio::spawn(async move { engine.submit_tool_outputs(&id, outputs, &NoEvents).await });
        self.race(driver, &run_id, cancel_after_ms).await;
    }

    /// Waits for a driving task, cancelling its run after `cancel_after_ms` if given.
    async fn race(
        &mut self,
        driver: tokio::task::JoinHandle<Result<Run, EngineError>>,
        run_id: &str,
        cancel_after_ms: Option<u8>,
    ) {
        let mut acknowledged = false;
        if let Some(ms) = cancel_after_ms {
            tokio::time::sleep(Duration::from_millis(ms.into())).await;
            self.check(false).await;
            match self.engine.cancel(run_id, &NoEvents).await {
                Ok(run) if matches!(run.status, RunStatus::Cancelling | RunStatus::Cancelled) => {
                    acknowledged = true;
                }
                // It finished first, or another request held it at that instant.
                Err(EngineError::RunNotActive { .. } | EngineError::RunBusy(_)) => {}
                other => self.fail(&format!("cancel during a run: {other:?}")),
            }
            self.log
                .push(format!("  cancel acknowledged: {acknowledged}"));
        }
        let result = match driver.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => self.fail(&format!("the driver was lost: {error}")),
        };
        match &result {
            Ok(run) if run.status.is_terminal() || run.status == RunStatus::RequiresAction => {}
            // The cancel got there before the driver did.
            Err(
                EngineError::RunNotActive { .. }
                | EngineError::NotRequiresAction { .. }
                | EngineError::RunBusy(_),
            ) if acknowledged => {}
            other => self.fail(&format!("driving ended with {other:?}")),
        }
        self.log.push(format!(
            "  -> {}",
            result
                .as_ref()
                .map_or_else(ToString::to_string, |r| r.status.as_str().to_owned())
        ));
        let stored = self
            .store
            .run(run_id)
            .await
            .unwrap_or_else(|e| self.fail(&e.to_string()));
        if acknowledged && !stored.status.is_terminal() {
            self.fail(&format!(
                "cancel was acknowledged, yet the run rests {}",
                stored.status.as_str()
            ));
        }
    }

    async fn cancel(&mut self, twice: bool) {
        let Some(run_id) = self.target().await else {
            return;
        };
        let before = self.snapshot().await;
        let was = self
            .store
            .run(&run_id)
            .await
            .unwrap_or_else(|e| self.fail(&e.to_string()));
        if twice {
            // Two requests race: each may cancel, find the other doing it, or find it done.
            let requests: Vec<_> = (0..2)
                .map(|_| {
                    let (engine, run_id) = (Arc::clone(&self.engine), run_id.clone());
                    tokio::spawn(async move { engine.cancel(&run_id, &NoEvents).await })
                })
                .collect();
            let mut results = Vec::new();
            for request in requests {
                results.push(
                    request
                        .await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
                );
            }
            self.log.push(format!("  -> {results:?}"));
            for result in &results {
                match result {
                    Ok(run)
                        if matches!(run.status, RunStatus::Cancelled | RunStatus::Cancelling) => {}
                    Err(EngineError::RunNotActive { .. } | EngineError::RunBusy(_)) => {}
                    other => self.fail(&format!("concurrent cancel: unexpected {other:?}")),
                }
            }
            let now = self
                .store
                .run(&run_id)
                .await
                .unwrap_or_else(|e| self.fail(&e.to_string()));
            if !now.status.is_terminal() {
                self.fail(&format!(
                    "after two cancels the run is {}",
                    now.status.as_str()
                ));
            }
            if was.status.is_terminal() {
                self.unchanged(&before, "cancelling a finished run").await;
            }
            return;
        }
        match self.engine.cancel(&run_id, &NoEvents).await {
            Ok(run) if !was.status.is_terminal() && run.status == RunStatus::Cancelled => {}
            Err(EngineError::RunNotActive { .. }) if was.status.is_terminal() => {
                self.unchanged(&before, "cancelling a finished run").await;
            }
            other => self.fail(&format!("cancel: unexpected {other:?}")),
        }
    }

    async fn wait(&mut self, expire: bool, twice: bool) {
        let waiting = self
            .active()
            .await
            .filter(|r| r.status == RunStatus::RequiresAction);
        self.clock.advance(if expire {
            REQUIRES_ACTION_TIMEOUT + Duration::from_millis(1)
        } else {
            Duration::from_secs(1)
        });
        if twice {
            // Two readers race to expire the run; it must expire once.
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (engine, id) = (Arc::clone(&self.engine), self.thread_id.clone());
                    tokio::spawn(async move { engine.thread(&id).await })
                })
                .collect();
            for reader in readers {
                let _ = reader.await;
            }
        }
        let _ = self.active().await;
        if let Some(run) = waiting {
            let now = self
                .store
                .run(&run.id)
                .await
                .unwrap_or_else(|e| self.fail(&e.to_string()));
            let due = run.expires_at.is_some_and(|at| self.clock.now_ms() >= at);
            let expected = if due {
                RunStatus::Expired
            } else {
                RunStatus::RequiresAction
            };
            if now.status != expected {
                self.fail(&format!(
                    "after waiting, the run is {}",
                    now.status.as_str()
                ));
            }
        }
    }

    async fn recover(&mut self) {
        let recovered = self
            .engine
            .recover()
            .await
            .unwrap_or_else(|e| self.fail(&format!("recover: {e}")));
        for run in recovered {
            if run.status != RunStatus::Failed
                || run.last_error.as_ref().map(|e| &e.code) != Some(&ErrorCode::Interrupted)
            {
                self.fail(&format!("recover left {run:?}"));
            }
        }
    }

    async fn crash(&mut self, after_ms: u8) {
        if self.active().await.is_none() {
            match self.engine.create_run(&self.thread_id).await {
                Ok(run) => {
                    self.last_run = Some(run.id.clone());
                    let engine = self.engine.clone();
                    let driver =
                        tokio::spawn(async move { engine.drive_run(&run.id, &NoEvents).await });
                    tokio::time::sleep(Duration::from_millis(after_ms.into())).await;
                    driver.abort();
                    if let Err(error) = driver.await
                        && error.is_panic()
                    {
                        std::panic::resume_unwind(error.into_panic());
                    }
                }
                Err(e) => self.fail(&format!("create_run: {e}")),
            }
        }
        // A new process: a fresh engine over the same store, model, tools and clock.
        let model: Arc<dyn Model> = self.model.clone();
        self.engine = Arc::new(
            Engine::new(
                self.flow.clone(),
                model,
                Arc::new(Tools),
                self.store.clone(),
            )
            .with_clock(self.clock.clone()),
        );
        self.recover().await;
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn no_history_breaks_the_protocol(
        script in prop::collection::vec(turn(), 0..24),
        actions in prop::collection::vec(action(), 1..24),
        sqlite in any::<bool>(),
        truncation in prop::option::of((1..300u32, prop::option::of(1..12u32))),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        runtime.block_on(async {
            let mut world = World::new(&script, sqlite, truncation).await;
            world.check(true).await;
            for action in actions {
                world.play(action).await;
            }
        });
    }
}
