//! The typed event stream of a run, for the CLI, transcripts and embedding applications.
//!
//! Events describe what happened in the order it happened; they are not the state (the
//! thread and run are). A sink must be cheap and must not fail: the engine never waits on
//! a slow consumer for correctness.

use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::run::RunStatus;

/// What a call whose asks ran out led to: the parameter's `on_exhausted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExhaustedOutcome {
    /// No `on_exhausted`: the model reads the `asks_exhausted` output and goes on.
    Output,
    /// `on_exhausted = { inject = … }`: context for the model too.
    Inject,
    /// `on_exhausted = { end = … }`: the user reads the message and the run ends.
    End,
    /// `on_exhausted = { hand_off = … }`: another flow takes the conversation over.
    HandOff,
}

/// Something that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The run changed status.
    Status {
        /// The run.
        run_id: String,
        /// Its new status.
        status: RunStatus,
    },
    /// A step of the run is committed: from here on every process that reads the store
    /// (another replica answering a poll, say) sees the run in `status`.
    StepCommitted {
        /// The run.
        run_id: String,
        /// Its status as stored.
        status: RunStatus,
    },
    /// The model was asked for its next turn. The text it streams next (`TextDelta`) belongs
    /// to the message with this id: the reply, or the tool-call message it comes with.
    ModelCalled {
        /// The id the turn's message will have in the thread.
        message_id: String,
    },
    /// A piece of assistant text, as the model streams it.
    TextDelta {
        /// The text.
        text: String,
    },
    /// The model asked for a tool call.
    ToolCalled {
        /// The call.
        call_id: String,
        /// The tool.
        name: String,
        /// The arguments as the model wrote them.
        arguments: String,
    },
    /// A tool started running.
    ToolStarted {
        /// The call.
        call_id: String,
        /// The tool.
        name: String,
        /// The arguments it runs with (after slots and the pending call filled them in).
        arguments: Value,
    },
    /// A tool call got its output.
    ToolFinished {
        /// The call.
        call_id: String,
        /// The tool.
        name: String,
        /// `ok`, `error`, `needs_input`, `cancelled` or `expired`.
        status: crate::thread::OutputStatus,
        /// The output the model reads.
        content: String,
    },
    /// The user was asked for missing parameters.
    QuestionAsked {
        /// The call that needs them.
        call_id: String,
        /// The tool.
        tool: String,
        /// The parameters asked for.
        params: Vec<String>,
        /// The question.
        text: String,
    },
    /// A complete call of a tool with `confirm` did not run: the user was asked to
    /// confirm it. An embedder may answer with [`crate::Engine::create_run_deciding`].
    ConfirmationAsked {
        /// The call waiting.
        call_id: String,
        /// The tool.
        tool: String,
        /// The arguments it would run with.
        args: Map<String, Value>,
        /// The question.
        text: String,
    },
    /// What the user's answer to a confirmation question was taken to mean (or what the
    /// embedder decided); the engine then acts on it.
    ConfirmationAnswered {
        /// The call that was waiting.
        call_id: String,
        /// Its tool.
        tool: String,
        /// The decision.
        decision: crate::run::Decision,
    },
    /// A flow tool's call handed the thread to another flow (`flow = "…"`): its
    /// instructions, tools and slots run the thread from the next model request on.
    HandedOff {
        /// The call; empty when a parameter's `on_exhausted = { hand_off = … }` handed
        /// the thread over (no call of the tool was made).
        call_id: String,
        /// The tool.
        tool: String,
        /// The flow that handed the thread on.
        from: String,
        /// The flow that runs it now.
        to: String,
        /// Whether the thread comes back (`returns`).
        comes_back: bool,
        /// The other flow's slots filled as it took over (`with`).
        slots: Map<String, Value>,
    },
    /// A flow that was handed the thread with `returns` had every slot named there at the
    /// end of a run: the thread is back with the flow before, and those slots filled.
    HandedBack {
        /// The flow that is done.
        from: String,
        /// The flow that runs the thread again.
        to: String,
        /// The slots of `to` that `returns` filled.
        slots: Map<String, Value>,
    },
    /// A rule injected context for the model.
    ContextInjected {
        /// The tool whose rule fired.
        tool: String,
        /// The text.
        text: String,
    },
    /// A slot got a value.
    SlotSet {
        /// The slot.
        name: String,
        /// Its value.
        value: Value,
    },
    /// The model passed values for grounded parameters that the user never stated; they
    /// were dropped (then filled from a slot, or asked for).
    NotStated {
        /// The call.
        call_id: String,
        /// The tool.
        tool: String,
        /// The parameters whose values were dropped.
        params: Vec<String>,
    },
    /// The model passed a value that fails its parameter's schema, and the parameter has an
    /// `invalid` message: the value was dropped and the user is asked with that message.
    ValueRejected {
        /// The call.
        call_id: String,
        /// The tool.
        tool: String,
        /// The parameter.
        param: String,
        /// The JSON Schema keyword the value failed, e.g. `maximum`.
        keyword: String,
        /// The keyword's limit, where it has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<Value>,
        /// The rejected value.
        value: Value,
    },
    /// The user was asked for parameters `max_asks` times without giving a usable value:
    /// the call was answered `asks_exhausted` instead of asking again.
    AsksExhausted {
        /// The call.
        call_id: String,
        /// The tool.
        tool: String,
        /// The parameters whose asks ran out.
        params: Vec<String>,
        /// How many times the user had been asked.
        asked: u32,
        /// What happened next (`on_exhausted`).
        outcome: ExhaustedOutcome,
    },
    /// A pending call was dropped because the model went elsewhere.
    PendingAbandoned {
        /// The call that was waiting.
        call_id: String,
        /// Its tool.
        tool: String,
    },
    /// An `after`/`on_error` rule could not be applied (its template failed at run time, or
    /// a `set` value did not fit its slot); the run goes on without it.
    RuleSkipped {
        /// The tool.
        tool: String,
        /// Why.
        reason: String,
    },
    /// Parameters the model left out were filled from their slots (the slots were read).
    /// Not shown in transcripts: the `▸ runs with` line shows the values; this says where
    /// they came from, for coverage.
    FilledFromSlots {
        /// The call.
        call_id: String,
        /// The tool.
        tool: String,
        /// The parameters filled, each from its own `slot`.
        params: Vec<String>,
    },
    /// A tool's rule was evaluated after its call: an `after` rule (whether its `when`
    /// held; `true` for a rule without one) or `on_error`. Not shown in transcripts: the
    /// rule's effects are; this says which rule ran, for coverage.
    RuleEvaluated {
        /// The tool.
        tool: String,
        /// Which of its rules.
        rule: RuleRef,
        /// Whether it applied (its `when` held).
        applied: bool,
    },
    /// The assistant replied.
    AssistantMessage {
        /// The reply.
        text: String,
    },
}

/// One rule of a tool, as [`Event::RuleEvaluated`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RuleRef {
    /// `[[tools.T.after]]` number `index` (from 0, in file order).
    After {
        /// The rule's position among the tool's `after` rules.
        index: usize,
    },
    /// `[tools.T.on_error]`.
    OnError,
}

/// Receives events.
pub trait EventSink: Send + Sync {
    /// Handles one event.
    fn emit(&self, event: &Event);
}

/// Discards every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: &Event) {}
}

/// Keeps every event, for tests and transcripts.
#[derive(Debug, Default)]
pub struct EventLog(Mutex<Vec<Event>>);

impl EventLog {
    /// A new, empty log.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything recorded so far.
    #[must_use]
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Takes the recorded events, leaving the log empty.
    #[must_use]
    pub fn take(&self) -> Vec<Event> {
        self.0
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

impl EventSink for EventLog {
    fn emit(&self, event: &Event) {
        if let Ok(mut events) = self.0.lock() {
            events.push(event.clone());
        }
    }
}
