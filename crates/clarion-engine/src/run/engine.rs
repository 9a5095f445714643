//! The engine: drives runs over threads, with no recursion and no hand-written branching
//! per tool.
//!
//! One run is a loop of *steps*. Each step renders the instructions, checks the protocol
//! invariant, asks the model for its next turn, and then either finishes (text) or plays
//! the turn's tool calls: every call is prepared (see [`super::call`]), the ready ones run
//! concurrently under the flow's timeout, and every call gets exactly one output, in call
//! order, before anything else is appended. A step ends with one store commit, so a crash
//! loses at most the step in flight and never leaves half of one behind.
//!
//! A turn ends the run early in three ways: a question for missing parameters (the run
//! completes, waiting for the user), client tools (the run waits in `requires_action`
//! until [`Engine::submit_tool_outputs`]), or too many tool failures in a row (the run
//! fails). Cancellation is checked between steps and raced against the model and the
//! tools; a cancelled call still gets an output.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::call::{Prepared, Validators, parse_arguments, prepare};
use super::grounding::Said;
use super::rules::{self, RuleEffects};
use super::{Ask, LastError, Run, RunStatus, StagedTurn, protocol};
use crate::clock::{Clock, SystemClock};
use crate::events::{Event, EventSink};
use crate::ids::new_id;
use crate::model::{Model, ModelRequest, ModelTurn};
use crate::store::{Step, ThreadStore};
use crate::thread::{
    Message, MessageKind, Metadata, OutputStatus, PendingCall, Thread, ToolCall, content_value,
};
use crate::tool::{ToolError, ToolExecutor, ToolRequest};
use clarion_flow::export;
use clarion_flow::template;
use clarion_flow::{Executor, Flow, Tool};

use super::error::EngineError;

/// One client tool output, as submitted by the embedding application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutputSubmission {
    /// The call answered.
    pub call_id: String,
    /// The output (JSON text, or any string).
    pub output: String,
}

/// Runs conversations for one flow.
pub struct Engine {
    flow: Arc<Flow>,
    validators: Validators,
    model: Arc<dyn Model>,
    tools: Arc<dyn ToolExecutor>,
    store: Arc<dyn ThreadStore>,
    clock: Arc<dyn Clock>,
    /// Cancellation signals of the runs this engine is driving right now.
    driving: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("flow", &self.flow.name)
            .finish_non_exhaustive()
    }
}

/// How a turn ended.
enum TurnEnd {
    /// Ask the model again.
    Continue,
    /// The run reached this status (the turn did the bookkeeping).
    Stop(RunStatus),
}

impl Engine {
    /// An engine for `flow` with its model, tool executor and store.
    pub fn new(
        flow: Arc<Flow>,
        model: Arc<dyn Model>,
        tools: Arc<dyn ToolExecutor>,
        store: Arc<dyn ThreadStore>,
    ) -> Self {
        Self {
            validators: Validators::new(&flow),
            flow,
            model,
            tools,
            store,
            clock: Arc::new(SystemClock),
            driving: Mutex::new(HashMap::new()),
        }
    }

    /// Uses `clock` instead of the system clock (tests move time without sleeping).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The flow this engine runs.
    #[must_use]
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn ThreadStore> {
        &self.store
    }

    /// Creates an empty thread.
    pub fn create_thread(&self, metadata: Metadata) -> Result<Thread, EngineError> {
        let thread = Thread::new(
            new_id("thread"),
            self.flow.name.clone(),
            self.clock.now_ms(),
            metadata,
        );
        self.store.insert_thread(&thread)?;
        Ok(thread)
    }

    /// A thread, after expiring a `requires_action` run that waited too long.
    pub fn thread(&self, thread_id: &str) -> Result<Thread, EngineError> {
        let thread = self.store.thread(thread_id)?;
        if let Some(run_id) = &thread.active_run {
            self.run_status(run_id)?;
            return Ok(self.store.thread(thread_id)?);
        }
        Ok(thread)
    }

    /// A run, after expiring it if it waited too long in `requires_action`.
    pub fn run_status(&self, run_id: &str) -> Result<Run, EngineError> {
        let run = self.store.run(run_id)?;
        if !self.is_due(&run) || self.claim(run_id).is_err() {
            return Ok(run);
        }
        // Read again under the claim: another request may have settled it in between.
        let result = self
            .store
            .run(run_id)
            .map_err(EngineError::from)
            .and_then(|run| {
                if self.is_due(&run) {
                    self.expire(run)
                } else {
                    Ok(run)
                }
            });
        self.release(run_id);
        result
    }

    /// Appends the user's message. Fails while a run holds the thread.
    pub fn add_message(&self, thread_id: &str, text: &str) -> Result<Message, EngineError> {
        if text.trim().is_empty() {
            return Err(EngineError::EmptyMessage);
        }
        let thread = self.thread(thread_id)?;
        self.check_flow(&thread)?;
        let message = Message {
            id: new_id("msg"),
            run_id: None,
            created_at: self.clock.now_ms(),
            kind: MessageKind::User {
                text: text.to_owned(),
            },
            metadata: Metadata::default(),
        };
        self.store.add_user_message(thread_id, &message)?;
        Ok(message)
    }

    /// Sets metadata on a thread (limits as in the Assistants API; nothing changes on error).
    pub fn update_metadata(
        &self,
        thread_id: &str,
        pairs: Vec<(String, String)>,
    ) -> Result<Thread, EngineError> {
        let mut thread = self.store.thread(thread_id)?;
        thread.metadata.merge(pairs)?;
        self.store.commit(Step {
            thread: &thread,
            appended: &[],
            run: None,
        })?;
        Ok(thread)
    }

    /// Creates a queued run and locks the thread for it.
    pub fn create_run(&self, thread_id: &str) -> Result<Run, EngineError> {
        self.create_run_with(thread_id, None, Metadata::default())
    }

    /// Creates a queued run with text appended to the instructions for this run only and
    /// metadata of its own (as the Assistants API's run creation takes them).
    pub fn create_run_with(
        &self,
        thread_id: &str,
        additional_instructions: Option<String>,
        metadata: Metadata,
    ) -> Result<Run, EngineError> {
        let thread = self.thread(thread_id)?;
        self.check_flow(&thread)?;
        let mut run = Run::new(new_id("run"), thread_id.to_owned(), self.clock.now_ms());
        run.additional_instructions = additional_instructions.filter(|t| !t.trim().is_empty());
        run.metadata = metadata;
        self.store.begin_run(&run)?;
        Ok(run)
    }

    /// Creates a run and drives it until it completes, fails, or waits in
    /// `requires_action`.
    pub async fn run(&self, thread_id: &str, events: &dyn EventSink) -> Result<Run, EngineError> {
        let run = self.create_run(thread_id)?;
        self.drive_run(&run.id, events).await
    }

    /// Drives a queued run (created with [`Engine::create_run`]).
    pub async fn drive_run(
        &self,
        run_id: &str,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let cancel = self.claim(run_id)?;
        let span = tracing::info_span!("run", run_id, flow = %self.flow.name);
        let result = self
            .drive_claimed(run_id, cancel, events)
            .instrument(span)
            .await;
        self.release_driven(run_id, result, events)
    }

    async fn drive_claimed(
        &self,
        run_id: &str,
        cancel: watch::Receiver<bool>,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let mut run = self.store.run(run_id)?;
        if run.status != RunStatus::Queued {
            return Err(EngineError::RunNotActive {
                run_id: run.id,
                status: run.status,
            });
        }
        let mut thread = self.store.thread(&run.thread_id)?;
        Self::set_status(&mut run, RunStatus::InProgress, events);
        run.started_at = Some(self.clock.now_ms());
        self.store.commit(Step {
            thread: &thread,
            appended: &[],
            run: Some(&run),
        })?;
        self.drive(&mut thread, &mut run, cancel, events).await?;
        Ok(run)
    }

    /// Submits the outputs of the client tool calls a run is waiting for — all of them,
    /// each once — and drives the run on. A missing, extra or duplicate id changes nothing.
    pub async fn submit_tool_outputs(
        &self,
        run_id: &str,
        outputs: Vec<ToolOutputSubmission>,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let cancel = self.claim(run_id)?;
        let result = self.submit_claimed(run_id, outputs, cancel, events).await;
        self.release_driven(run_id, result, events)
    }

    async fn submit_claimed(
        &self,
        run_id: &str,
        outputs: Vec<ToolOutputSubmission>,
        cancel: watch::Receiver<bool>,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let mut run = self.store.run(run_id)?;
        if self.is_due(&run) {
            run = self.expire(run)?;
        }
        if run.status != RunStatus::RequiresAction {
            return Err(EngineError::NotRequiresAction {
                run_id: run.id,
                status: run.status,
            });
        }
        let expected: Vec<&str> = run.required_action.iter().map(|c| c.id.as_str()).collect();
        let mut seen = HashSet::new();
        for output in &outputs {
            if !expected.contains(&output.call_id.as_str()) {
                return Err(EngineError::UnknownToolCall(output.call_id.clone()));
            }
            if !seen.insert(output.call_id.as_str()) {
                return Err(EngineError::DuplicateToolOutput(output.call_id.clone()));
            }
        }
        let missing: Vec<String> = expected
            .iter()
            .filter(|id| !seen.contains(*id))
            .map(|id| (*id).to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(EngineError::MissingToolOutputs(missing));
        }
        let mut thread = self.store.thread(&run.thread_id)?;
        let mark = thread.messages.len();
        let mut staged = run.staged.take().unwrap_or_default();
        let calls = std::mem::take(&mut run.required_action);
        for call in &calls {
            let Some(submitted) = outputs.iter().find(|o| o.call_id == call.id) else {
                continue;
            };
            let content = submitted.output.clone();
            let result = content_value(&content);
            let output = self.output_message(&run, call, OutputStatus::Ok, content, events);
            staged.outputs.push(output);
            if let Some(tool) = self.flow.tools.get(&call.name) {
                let said = said_for(&self.flow, std::slice::from_ref(call), &thread.messages);
                let args = prepared_args(&self.flow, &self.validators, call, &thread.slots, &said);
                let effects = rules::after(
                    tool,
                    &self.validators,
                    &args,
                    &result,
                    &mut thread.slots,
                    events,
                );
                self.stage_contexts(&run, tool, effects, &mut staged, events);
            }
        }
        run.consecutive_failures = 0;
        run.expires_at = None;
        Self::set_status(&mut run, RunStatus::InProgress, events);
        match self.land_turn(&mut thread, &mut run, staged, events) {
            TurnEnd::Stop(status) => {
                self.finish(&mut thread, &mut run, status, mark, events)?;
            }
            TurnEnd::Continue => {
                self.store.commit(Step {
                    thread: &thread,
                    appended: &thread.messages[mark..],
                    run: Some(&run),
                })?;
                self.drive(&mut thread, &mut run, cancel, events).await?;
            }
        }
        Ok(run)
    }

    /// Cancels a run. A run being driven stops at its next safe point (its open calls get
    /// `cancelled` outputs); a queued or waiting run is cancelled at once.
    pub fn cancel(&self, run_id: &str, events: &dyn EventSink) -> Result<Run, EngineError> {
        let run = self.run_status(run_id)?;
        if run.status.is_terminal() {
            return Err(EngineError::RunNotActive {
                run_id: run.id,
                status: run.status,
            });
        }
        if let Ok(driving) = self.driving.lock()
            && let Some(signal) = driving.get(run_id)
        {
            signal.send_replace(true);
            let mut run = run;
            if run.status != RunStatus::Cancelling && run.status.can_become(RunStatus::Cancelling) {
                run.status = RunStatus::Cancelling;
            }
            return Ok(run);
        }
        self.claim(run_id)?;
        // Read again under the claim: the run may have ended since it was read above.
        let result = self
            .store
            .run(run_id)
            .map_err(EngineError::from)
            .and_then(|run| {
                if run.status.is_terminal() {
                    Err(EngineError::RunNotActive {
                        run_id: run.id,
                        status: run.status,
                    })
                } else {
                    self.cancel_now(run, events)
                }
            });
        self.release(run_id);
        result
    }

    /// Marks runs interrupted by a crash (left `queued`, `in_progress` or `cancelling` in
    /// the store) as failed and unlocks their threads. Call once at startup, before any
    /// run is driven. Runs waiting in `requires_action` survive: they are resting, not
    /// interrupted. While another process uses the same store, nothing is touched (its
    /// runs in flight look exactly like interrupted ones): the next process to start
    /// alone recovers them.
    pub fn recover(&self) -> Result<Vec<Run>, EngineError> {
        let mut recovered = Vec::new();
        if !self.store.sole_user() {
            return Ok(recovered);
        }
        for thread_id in self.store.locked_thread_ids()? {
            let mut thread = self.store.thread(&thread_id)?;
            let Some(run_id) = thread.active_run.clone() else {
                continue;
            };
            let mut run = self.store.run(&run_id)?;
            if !matches!(
                run.status,
                RunStatus::Queued | RunStatus::InProgress | RunStatus::Cancelling
            ) {
                continue;
            }
            run.status = RunStatus::Failed;
            run.last_error = Some(LastError {
                code: "interrupted".to_owned(),
                message: "the process stopped during this run; the unfinished step was discarded. \
                          Start a new run to retry."
                    .to_owned(),
            });
            run.completed_at = Some(self.clock.now_ms());
            thread.active_run = None;
            self.store.commit(Step {
                thread: &thread,
                appended: &[],
                run: Some(&run),
            })?;
            recovered.push(run);
        }
        Ok(recovered)
    }

    // ---- the loop -----------------------------------------------------------------------

    async fn drive(
        &self,
        thread: &mut Thread,
        run: &mut Run,
        mut cancel: watch::Receiver<bool>,
        events: &dyn EventSink,
    ) -> Result<(), EngineError> {
        loop {
            let mark = thread.messages.len();
            // The id of the message this turn produces, known before the model streams a
            // word of it, so a live consumer can show the text under its final id.
            let reply_id = new_id("msg");
            let Some(turn) = self
                .ask_model(thread, run, &mut cancel, mark, &reply_id, events)
                .await?
            else {
                return Ok(());
            };
            let first_turn = run.steps == 1;
            let (text, calls) = match turn {
                ModelTurn::ToolCalls { text, calls } => (text, calls),
                ModelTurn::Text(text) => (Some(text), Vec::new()),
            };
            if calls.is_empty() {
                if first_turn {
                    Self::abandon_pending(thread, events);
                }
                let text = text.unwrap_or_default();
                events.emit(&Event::AssistantMessage { text: text.clone() });
                let mut message = self.message(run, MessageKind::Assistant { text });
                message.id = reply_id;
                thread.messages.push(message);
                return self.finish(thread, run, RunStatus::Completed, mark, events);
            }
            let calls = Self::normalize_ids(thread, calls);
            for call in &calls {
                events.emit(&Event::ToolCalled {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                });
            }
            let mut message = self.message(
                run,
                MessageKind::ToolCalls {
                    text,
                    calls: calls.clone(),
                },
            );
            message.id = reply_id;
            thread.messages.push(message);
            let pending = if first_turn {
                thread.pending.take()
            } else {
                None
            };
            match self
                .play_turn(thread, run, &calls, pending, &mut cancel, events)
                .await
            {
                TurnEnd::Continue => {
                    self.store.commit(Step {
                        thread,
                        appended: &thread.messages[mark..],
                        run: Some(run),
                    })?;
                }
                TurnEnd::Stop(RunStatus::RequiresAction) => {
                    self.store.commit(Step {
                        thread,
                        appended: &thread.messages[mark..],
                        run: Some(run),
                    })?;
                    return Ok(());
                }
                TurnEnd::Stop(status) => return self.finish(thread, run, status, mark, events),
            }
        }
    }

    /// One model request, after the checks every request needs. `None` when the run
    /// ended instead (cancelled, step limit, broken instructions or history, model error),
    /// with the bookkeeping done.
    async fn ask_model(
        &self,
        thread: &mut Thread,
        run: &mut Run,
        cancel: &mut watch::Receiver<bool>,
        mark: usize,
        reply_id: &str,
        events: &dyn EventSink,
    ) -> Result<Option<ModelTurn>, EngineError> {
        if *cancel.borrow() {
            self.finish(thread, run, RunStatus::Cancelled, mark, events)?;
            return Ok(None);
        }
        if run.steps >= self.flow.limits.max_steps {
            self.finish(thread, run, RunStatus::Incomplete, mark, events)?;
            return Ok(None);
        }
        let instructions = match self.instructions(thread) {
            Ok(text) => match &run.additional_instructions {
                Some(extra) => format!("{text}\n\n{extra}"),
                None => text,
            },
            Err(message) => {
                self.fail(thread, run, "instructions", message, mark, events)?;
                return Ok(None);
            }
        };
        if let Err(violation) = protocol::check(&thread.messages) {
            let message = format!("refusing to send a broken history to the model: {violation}");
            self.fail(thread, run, "protocol_violation", message, mark, events)?;
            return Ok(None);
        }
        run.steps += 1;
        let request = ModelRequest {
            flow: &self.flow,
            instructions: &instructions,
            messages: &thread.messages,
            words_only: run.repeated_calls > 0,
        };
        events.emit(&Event::ModelCalled {
            message_id: reply_id.to_owned(),
        });
        let response = tokio::select! {
            response = self.model.respond(request, events) => response,
            () = cancelled(cancel) => {
                self.finish(thread, run, RunStatus::Cancelled, mark, events)?;
                return Ok(None);
            }
        };
        match response {
            Ok(response) => {
                run.usage.add(response.usage);
                Ok(Some(if export::offers_reply(&self.flow) {
                    replies_as_text(response.turn, events)
                } else {
                    response.turn
                }))
            }
            // A turn cut short by the token limit or a content filter ends the run as
            // incomplete, as the Assistants API did: nothing is wrong with the thread.
            Err(error) if matches!(error.code, "length" | "content_filter") => {
                run.last_error = Some(LastError {
                    code: error.code.to_owned(),
                    message: error.message.clone(),
                });
                self.finish(thread, run, RunStatus::Incomplete, mark, events)?;
                Ok(None)
            }
            Err(error) => {
                let message = format!("the model failed: {error}");
                self.fail(
                    thread,
                    run,
                    &format!("model_{}", error.code),
                    message,
                    mark,
                    events,
                )?;
                Ok(None)
            }
        }
    }

    /// Plays one turn of tool calls.
    async fn play_turn(
        &self,
        thread: &mut Thread,
        run: &mut Run,
        calls: &[ToolCall],
        pending: Option<PendingCall>,
        cancel: &mut watch::Receiver<bool>,
        events: &dyn EventSink,
    ) -> TurnEnd {
        let mut prepared = self.prepare_calls(thread, calls, pending, events);

        let loop_ends = guard_repeats(thread, run, calls, &mut prepared);

        // Run the ready server-side calls concurrently; client calls wait for the app.
        let runnable: Vec<(usize, &Tool, &Map<String, Value>)> = prepared
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Prepared::Ready { args, .. } => {
                    let tool = self.flow.tools.get(&calls[i].name)?;
                    (!matches!(tool.executor, Executor::Client)).then_some((i, tool, args))
                }
                _ => None,
            })
            .collect();
        let executions = runnable
            .iter()
            .map(|(i, tool, args)| self.execute(tool, &calls[*i], args, events));
        let results = tokio::select! {
            results = futures_util::future::join_all(executions) => results,
            () = cancelled(cancel) => {
                self.answer_cancelled(thread, run, calls, events);
                return TurnEnd::Stop(RunStatus::Cancelled);
            }
        };
        let mut results: HashMap<usize, Result<Value, ToolError>> =
            runnable.iter().map(|(i, _, _)| *i).zip(results).collect();

        let mut staged = StagedTurn::default();
        let mut waiting: Vec<ToolCall> = Vec::new();
        for (i, (call, prepared)) in calls.iter().zip(prepared).enumerate() {
            let tool = self.flow.tools.get(&call.name);
            let (status, content) = match prepared {
                Prepared::Rejected(error) => (OutputStatus::Error, error.to_output().to_string()),
                Prepared::NeedsInput {
                    args,
                    missing,
                    unstated,
                } => {
                    let mut content = serde_json::json!({
                        "status": "needs_input",
                        "missing": missing,
                        "note": "The user has been asked for these; their answer comes as the next user message.",
                    });
                    if !unstated.is_empty() {
                        content["not_stated"] = serde_json::json!(unstated);
                        content["note"] = serde_json::json!(
                            "The user has been asked for these; their answer comes as the next user message. Values the user did not state were not used: never guess them."
                        );
                    }
                    staged.asks.push(Ask {
                        call_id: call.id.clone(),
                        tool: call.name.clone(),
                        args,
                        missing,
                    });
                    (OutputStatus::NeedsInput, content.to_string())
                }
                Prepared::Ready { args, .. } => match (tool, results.remove(&i)) {
                    (Some(tool), Some(Ok(result))) => {
                        run.consecutive_failures = 0;
                        let effects = rules::after(
                            tool,
                            &self.validators,
                            &args,
                            &result,
                            &mut thread.slots,
                            events,
                        );
                        self.stage_contexts(run, tool, effects, &mut staged, events);
                        (OutputStatus::Ok, result.to_string())
                    }
                    (Some(tool), Some(Err(error))) => {
                        run.consecutive_failures += 1;
                        let effects = rules::on_error(tool, &args, &error, &thread.slots, events);
                        self.stage_contexts(run, tool, effects, &mut staged, events);
                        (OutputStatus::Error, error.to_output().to_string())
                    }
                    _ => {
                        waiting.push(call.clone());
                        continue;
                    }
                },
            };
            let output = self.output_message(run, call, status, content, events);
            staged.outputs.push(output);
        }
        if waiting.is_empty() {
            let end = self.land_turn(thread, run, staged, events);
            return if loop_ends { end_loop(end, run) } else { end };
        }
        run.required_action = waiting;
        run.staged = Some(staged);
        let timeout =
            i64::try_from(self.flow.limits.requires_action_timeout.as_millis()).unwrap_or(i64::MAX);
        run.expires_at = Some(self.clock.now_ms().saturating_add(timeout));
        Self::set_status(run, RunStatus::RequiresAction, events);
        TurnEnd::Stop(RunStatus::RequiresAction)
    }

    /// Prepares every call of a turn and remembers validated arguments into slots. The
    /// pending call's known arguments go to the first call of the same tool; a pending
    /// call no call takes is abandoned, loudly.
    fn prepare_calls(
        &self,
        thread: &mut Thread,
        calls: &[ToolCall],
        mut pending: Option<PendingCall>,
        events: &dyn EventSink,
    ) -> Vec<Prepared> {
        let mut prepared = Vec::with_capacity(calls.len());
        let said = said_for(&self.flow, calls, &thread.messages);
        for call in calls {
            let matching = pending.as_ref().is_some_and(|p| p.tool == call.name);
            let for_call = if matching { pending.take() } else { None };
            let result = prepare(
                &self.flow,
                &self.validators,
                call,
                &thread.slots,
                for_call.as_ref(),
                &said,
            );
            if let Prepared::Ready { args, unstated }
            | Prepared::NeedsInput { args, unstated, .. } = &result
            {
                if !unstated.is_empty() {
                    events.emit(&Event::NotStated {
                        call_id: call.id.clone(),
                        tool: call.name.clone(),
                        params: unstated.clone(),
                    });
                }
                self.remember(thread, &call.name, args, events);
            }
            prepared.push(result);
        }
        if let Some(abandoned) = pending {
            events.emit(&Event::PendingAbandoned {
                call_id: abandoned.call_id,
                tool: abandoned.tool,
            });
        }
        prepared
    }

    /// Appends a finished turn to the thread — outputs in call order, then injected
    /// context, then the question if any call needs input — and decides what comes next.
    fn land_turn(
        &self,
        thread: &mut Thread,
        run: &mut Run,
        staged: StagedTurn,
        events: &dyn EventSink,
    ) -> TurnEnd {
        let StagedTurn {
            mut outputs,
            contexts,
            asks,
        } = staged;
        let order = last_call_order(thread);
        outputs.sort_by_key(|m| match &m.kind {
            MessageKind::ToolOutput { call_id, .. } => {
                order.get(call_id.as_str()).copied().unwrap_or(usize::MAX)
            }
            _ => usize::MAX,
        });
        thread.messages.extend(outputs);
        thread.messages.extend(contexts);
        if let Some(first) = asks.first() {
            let mut texts = Vec::new();
            let mut params = Vec::new();
            for ask in &asks {
                if let Some(tool) = self.flow.tools.get(&ask.tool) {
                    texts.push(rules::question(
                        tool,
                        &ask.args,
                        &ask.missing,
                        &thread.slots,
                    ));
                    params.extend(ask.missing.iter().cloned());
                }
            }
            let text = texts.join(" ");
            events.emit(&Event::QuestionAsked {
                call_id: first.call_id.clone(),
                tool: first.tool.clone(),
                params: params.clone(),
                text: text.clone(),
            });
            let question = self.message(
                run,
                MessageKind::Question {
                    call_id: first.call_id.clone(),
                    tool: first.tool.clone(),
                    params,
                    text,
                },
            );
            thread.messages.push(question);
            thread.pending = Some(PendingCall {
                call_id: first.call_id.clone(),
                tool: first.tool.clone(),
                known: first.args.clone(),
                missing: first.missing.clone(),
            });
            return TurnEnd::Stop(RunStatus::Completed);
        }
        if run.consecutive_failures >= self.flow.limits.max_consecutive_failures {
            run.last_error = Some(LastError {
                code: "tool_failures".to_owned(),
                message: format!(
                    "{} tool calls failed in a row (the flow allows {}); see the tool outputs for each error",
                    run.consecutive_failures, self.flow.limits.max_consecutive_failures
                ),
            });
            return TurnEnd::Stop(RunStatus::Failed);
        }
        TurnEnd::Continue
    }

    async fn execute(
        &self,
        tool: &Tool,
        call: &ToolCall,
        args: &Map<String, Value>,
        events: &dyn EventSink,
    ) -> Result<Value, ToolError> {
        events.emit(&Event::ToolStarted {
            call_id: call.id.clone(),
            name: call.name.clone(),
            arguments: Value::Object(args.clone()),
        });
        let timeout = tool_timeout(&self.flow, tool);
        let request = ToolRequest {
            flow: &self.flow,
            tool,
            call_id: &call.id,
            arguments: args,
        };
        // Argument values can be personal data: spans carry names only.
        let span = tracing::debug_span!("tool", call_id = %call.id, name = %tool.name);
        let execution = tokio::time::timeout(timeout, self.tools.execute(request)).instrument(span);
        let result = match execution.await {
            Ok(result) => result,
            Err(_) => Err(ToolError::new(
                "timeout",
                format!(
                    "`{}` did not finish within {}",
                    tool.name,
                    humanize(timeout)
                ),
            )),
        };
        if let Err(error) = &result {
            tracing::warn!(call_id = %call.id, tool = %tool.name, kind = error.kind, "tool failed: {}", error.message);
        }
        result
    }

    // ---- bookkeeping --------------------------------------------------------------------

    fn instructions(&self, thread: &Thread) -> Result<String, String> {
        let metadata: Map<String, Value> = thread
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        template::render_instructions(&self.flow.assistant.instructions, &thread.slots, &metadata)
            .map_err(|e| {
                format!(
                    "the instructions failed to render: {}",
                    template::describe(&e)
                )
            })
    }

    fn check_flow(&self, thread: &Thread) -> Result<(), EngineError> {
        if thread.flow == self.flow.name {
            Ok(())
        } else {
            Err(EngineError::WrongFlow {
                thread_id: thread.id.clone(),
                thread_flow: thread.flow.clone(),
                flow: self.flow.name.clone(),
            })
        }
    }

    /// Remembers validated arguments into their slots.
    fn remember(
        &self,
        thread: &mut Thread,
        tool: &str,
        args: &Map<String, Value>,
        events: &dyn EventSink,
    ) {
        let Some(tool) = self.flow.tools.get(tool) else {
            return;
        };
        for param in tool.params.values() {
            let (Some(slot), Some(value)) = (&param.slot, args.get(&param.name)) else {
                continue;
            };
            if thread.slots.get(slot) != Some(value) && self.validators.slot_accepts(slot, value) {
                thread.slots.insert(slot.clone(), value.clone());
                events.emit(&Event::SlotSet {
                    name: slot.clone(),
                    value: value.clone(),
                });
            }
        }
    }

    fn abandon_pending(thread: &mut Thread, events: &dyn EventSink) {
        if let Some(pending) = thread.pending.take() {
            events.emit(&Event::PendingAbandoned {
                call_id: pending.call_id,
                tool: pending.tool,
            });
        }
    }

    /// Gives calls fresh ids when the model's are empty or already used in the thread, so
    /// pairing never depends on a model's id hygiene.
    fn normalize_ids(thread: &Thread, calls: Vec<ToolCall>) -> Vec<ToolCall> {
        let mut used: HashSet<String> = thread
            .messages
            .iter()
            .flat_map(|m| match &m.kind {
                MessageKind::ToolCalls { calls, .. } => {
                    calls.iter().map(|c| c.id.clone()).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        calls
            .into_iter()
            .map(|mut call| {
                if call.id.is_empty() || used.contains(&call.id) {
                    call.id = new_id("call");
                }
                used.insert(call.id.clone());
                call
            })
            .collect()
    }

    fn message(&self, run: &Run, kind: MessageKind) -> Message {
        Message {
            id: new_id("msg"),
            run_id: Some(run.id.clone()),
            created_at: self.clock.now_ms(),
            kind,
            metadata: Metadata::default(),
        }
    }

    fn output_message(
        &self,
        run: &Run,
        call: &ToolCall,
        status: OutputStatus,
        content: String,
        events: &dyn EventSink,
    ) -> Message {
        events.emit(&Event::ToolFinished {
            call_id: call.id.clone(),
            name: call.name.clone(),
            status,
            content: content.clone(),
        });
        self.message(
            run,
            MessageKind::ToolOutput {
                call_id: call.id.clone(),
                name: call.name.clone(),
                status,
                content,
            },
        )
    }

    fn stage_contexts(
        &self,
        run: &Run,
        tool: &Tool,
        effects: RuleEffects,
        staged: &mut StagedTurn,
        events: &dyn EventSink,
    ) {
        for text in effects.contexts {
            events.emit(&Event::ContextInjected {
                tool: tool.name.clone(),
                text: text.clone(),
            });
            staged.contexts.push(self.message(
                run,
                MessageKind::Context {
                    tool: tool.name.clone(),
                    text,
                },
            ));
        }
    }

    fn set_status(run: &mut Run, status: RunStatus, events: &dyn EventSink) {
        // The engine only asks for legal transitions; a refusal here is a bug, and the
        // status is left as it was rather than forced.
        if run.status.transition(status).is_ok() {
            tracing::debug!(run_id = %run.id, status = status.as_str(), "run status");
            events.emit(&Event::Status {
                run_id: run.id.clone(),
                status,
            });
        } else {
            debug_assert!(false, "illegal transition {:?} → {status:?}", run.status);
        }
    }

    /// Ends a run: status, time, the thread's lock, one commit.
    fn finish(
        &self,
        thread: &mut Thread,
        run: &mut Run,
        status: RunStatus,
        mark: usize,
        events: &dyn EventSink,
    ) -> Result<(), EngineError> {
        if status == RunStatus::Cancelled && run.status != RunStatus::Cancelling {
            Self::set_status(run, RunStatus::Cancelling, events);
        }
        Self::set_status(run, status, events);
        run.completed_at = Some(self.clock.now_ms());
        run.required_action.clear();
        run.staged = None;
        run.expires_at = None;
        thread.active_run = None;
        self.store.commit(Step {
            thread,
            appended: &thread.messages[mark..],
            run: Some(run),
        })?;
        Ok(())
    }

    fn fail(
        &self,
        thread: &mut Thread,
        run: &mut Run,
        code: &str,
        message: String,
        mark: usize,
        events: &dyn EventSink,
    ) -> Result<(), EngineError> {
        run.last_error = Some(LastError {
            code: code.to_owned(),
            message,
        });
        self.finish(thread, run, RunStatus::Failed, mark, events)
    }

    /// Every call of a cancelled turn gets a `cancelled` output (results that did arrive
    /// are dropped: the user asked to stop).
    fn answer_cancelled(
        &self,
        thread: &mut Thread,
        run: &Run,
        calls: &[ToolCall],
        events: &dyn EventSink,
    ) {
        for call in calls {
            let content = ToolError::new(
                "cancelled",
                "the run was cancelled before this call finished",
            )
            .to_output()
            .to_string();
            let output = self.output_message(run, call, OutputStatus::Cancelled, content, events);
            thread.messages.push(output);
        }
    }

    /// Cancels a run nobody is driving (queued or in `requires_action`).
    fn cancel_now(&self, mut run: Run, events: &dyn EventSink) -> Result<Run, EngineError> {
        let mut thread = self.store.thread(&run.thread_id)?;
        let mark = thread.messages.len();
        Self::set_status(&mut run, RunStatus::Cancelling, events);
        if let Some(mut staged) = run.staged.take() {
            for call in std::mem::take(&mut run.required_action) {
                let content = ToolError::new(
                    "cancelled",
                    "the run was cancelled before the client submitted this output",
                )
                .to_output()
                .to_string();
                staged.outputs.push(self.output_message(
                    &run,
                    &call,
                    OutputStatus::Cancelled,
                    content,
                    events,
                ));
            }
            staged.asks.clear();
            self.land_turn(&mut thread, &mut run, staged, events);
        }
        self.finish(&mut thread, &mut run, RunStatus::Cancelled, mark, events)?;
        Ok(run)
    }

    /// Expires a run that waited too long in `requires_action`.
    fn expire(&self, mut run: Run) -> Result<Run, EngineError> {
        let events = crate::events::NoEvents;
        let mut thread = self.store.thread(&run.thread_id)?;
        let mark = thread.messages.len();
        let mut staged = run.staged.take().unwrap_or_default();
        for call in std::mem::take(&mut run.required_action) {
            let content =
                ToolError::new("expired", "the client did not submit this output in time")
                    .to_output()
                    .to_string();
            staged.outputs.push(self.output_message(
                &run,
                &call,
                OutputStatus::Expired,
                content,
                &events,
            ));
        }
        staged.asks.clear();
        self.land_turn(&mut thread, &mut run, staged, &events);
        run.last_error = Some(LastError {
            code: "expired".to_owned(),
            message: format!(
                "no tool outputs were submitted within {}",
                humanize(self.flow.limits.requires_action_timeout)
            ),
        });
        self.finish(&mut thread, &mut run, RunStatus::Expired, mark, &events)?;
        Ok(run)
    }

    /// Marks a run as being driven by this engine; fails if it already is.
    fn claim(&self, run_id: &str) -> Result<watch::Receiver<bool>, EngineError> {
        let mut driving = self
            .driving
            .lock()
            .map_err(|_| EngineError::RunBusy(run_id.to_owned()))?;
        if driving.contains_key(run_id) {
            return Err(EngineError::RunBusy(run_id.to_owned()));
        }
        let (sender, receiver) = watch::channel(false);
        driving.insert(run_id.to_owned(), sender);
        Ok(receiver)
    }

    fn release(&self, run_id: &str) {
        if let Ok(mut driving) = self.driving.lock() {
            driving.remove(run_id);
        }
    }

    /// Releases a run after driving it. A cancel that arrived after the loop's last check
    /// would be lost if the run came to rest in `requires_action`. `cancel` signals under
    /// the lock taken here, so the signal is either seen now — and honoured while the run
    /// is still claimed — or `cancel` finds the run released and cancels it itself.
    fn release_driven(
        &self,
        run_id: &str,
        result: Result<Run, EngineError>,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let cancelled = self.driving.lock().is_ok_and(|mut driving| {
            let requested = driving.get(run_id).is_some_and(|signal| *signal.borrow());
            if !requested {
                driving.remove(run_id);
            }
            requested
        });
        if !cancelled {
            return result;
        }
        let settled = self
            .store
            .run(run_id)
            .map_err(EngineError::from)
            .and_then(|run| {
                if run.status == RunStatus::RequiresAction {
                    self.cancel_now(run, events)
                } else {
                    Ok(run)
                }
            });
        self.release(run_id);
        result.and(settled)
    }

    /// Whether a run has waited in `requires_action` past its expiry.
    fn is_due(&self, run: &Run) -> bool {
        run.status == RunStatus::RequiresAction
            && run.expires_at.is_some_and(|at| self.clock.now_ms() >= at)
    }
}

/// Resolves when the run is cancelled (never, if the signal is dropped).
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Call id → position in the thread's last tool-call message.
fn last_call_order(thread: &Thread) -> HashMap<&str, usize> {
    thread
        .messages
        .iter()
        .rev()
        .find_map(|m| match &m.kind {
            MessageKind::ToolCalls { calls, .. } => Some(
                calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.id.as_str(), i))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// The loop guard: a ready call that already succeeded in this run with the same
/// arguments is answered `repeated_call` without running again, and the model must then
/// answer in words. Whether this is the run's second repeat (the run then ends).
fn guard_repeats(
    thread: &Thread,
    run: &mut Run,
    calls: &[ToolCall],
    prepared: &mut [Prepared],
) -> bool {
    let done = succeeded_in_run(thread, run);
    let mut repeated = false;
    for (call, prepared) in calls.iter().zip(prepared.iter_mut()) {
        if matches!(prepared, Prepared::Ready { .. })
            && parse_arguments(&call.arguments).is_ok_and(|args| {
                done.iter().any(|(name, ran)| {
                    *name == call.name
                        && same_values(&Value::Object(args.clone()), &Value::Object(ran.clone()))
                })
            })
        {
            repeated = true;
            *prepared = Prepared::Rejected(ToolError::new(
                "repeated_call",
                format!(
                    "`{}` already ran with these arguments in this run and its result is above; answer the user with it instead of calling it again",
                    call.name
                ),
            ));
        }
    }
    if !repeated {
        return false;
    }
    run.repeated_calls += 1;
    run.repeated_calls > 1
}

/// Whether two JSON values say the same: objects in any key order, numbers by value
/// (`1000` and `1000.0`).
fn same_values(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_values(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_values(v, w)))
        }
        _ => a == b,
    }
}

/// Ends a run whose model repeated a call a second time (unless the turn ended it anyway).
fn end_loop(end: TurnEnd, run: &mut Run) -> TurnEnd {
    if !matches!(end, TurnEnd::Continue) {
        return end;
    }
    run.last_error = Some(LastError {
        code: "repeated_call".to_owned(),
        message: "the model called a tool again with the same arguments after being told its result was already there; the run was ended to stop a loop".to_owned(),
    });
    TurnEnd::Stop(RunStatus::Incomplete)
}

/// The calls that succeeded in `run` so far: tool name and arguments as the model wrote
/// them. The run's messages are the last ones of the thread, so only they are read.
fn succeeded_in_run<'a>(thread: &'a Thread, run: &Run) -> Vec<(&'a str, Map<String, Value>)> {
    let ours = thread
        .messages
        .iter()
        .rev()
        .take_while(|m| m.run_id.as_deref() == Some(run.id.as_str()));
    let mut ok: HashSet<&str> = HashSet::new();
    let mut done = Vec::new();
    for message in ours {
        match &message.kind {
            MessageKind::ToolOutput {
                call_id,
                status: OutputStatus::Ok,
                ..
            } => {
                ok.insert(call_id);
            }
            MessageKind::ToolCalls { calls, .. } => {
                for call in calls.iter().filter(|c| ok.contains(c.id.as_str())) {
                    if let Ok(args) = parse_arguments(&call.arguments) {
                        done.push((call.name.as_str(), args));
                    }
                }
            }
            _ => {}
        }
    }
    done
}

/// A turn under `tool_choice = "required"`: calls of the [reply tool](export::REPLY_TOOL)
/// become the turn's text — the reply, when nothing else was called (its text is emitted,
/// since it did not stream as text), or the words alongside the other calls.
fn replies_as_text(turn: ModelTurn, events: &dyn EventSink) -> ModelTurn {
    let ModelTurn::ToolCalls { text, calls } = turn else {
        return turn;
    };
    let (replies, calls): (Vec<ToolCall>, Vec<ToolCall>) = calls
        .into_iter()
        .partition(|c| c.name == export::REPLY_TOOL);
    if replies.is_empty() {
        return ModelTurn::ToolCalls { text, calls };
    }
    let said: Vec<String> = replies.iter().map(|r| reply_text(&r.arguments)).collect();
    let said = said.join("\n\n");
    let text = match text {
        Some(before) if !before.trim().is_empty() => format!("{before}\n\n{said}"),
        _ => said.clone(),
    };
    if calls.is_empty() {
        events.emit(&Event::TextDelta { text: said });
        ModelTurn::Text(text)
    } else {
        ModelTurn::ToolCalls {
            text: Some(text),
            calls,
        }
    }
}

/// The `text` a reply call carries; a model that wrote something else is taken at its word.
fn reply_text(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(args)) => match args.get("text") {
            Some(Value::String(text)) => text.clone(),
            _ => args
                .values()
                .find_map(Value::as_str)
                .map(ToOwned::to_owned)
                .unwrap_or_default(),
        },
        Ok(Value::String(text)) => text,
        _ => arguments.to_owned(),
    }
}

/// The arguments of a client call as prepared (for its `after` rules).
fn prepared_args(
    flow: &Flow,
    validators: &Validators,
    call: &ToolCall,
    slots: &Map<String, Value>,
    said: &Said,
) -> Map<String, Value> {
    match prepare(flow, validators, call, slots, None, said) {
        Prepared::Ready { args, .. } | Prepared::NeedsInput { args, .. } => args,
        Prepared::Rejected(_) => Map::new(),
    }
}

/// What the user said in the thread, indexed only when one of `calls` has a grounded
/// parameter (most turns need none).
fn said_for(flow: &Flow, calls: &[ToolCall], messages: &[Message]) -> Said {
    let grounded = calls.iter().any(|call| {
        flow.tools
            .get(&call.name)
            .is_some_and(|tool| tool.params.values().any(|p| p.grounded))
    });
    if grounded {
        Said::from_messages(messages)
    } else {
        Said::default()
    }
}

fn tool_timeout(flow: &Flow, tool: &Tool) -> Duration {
    let specific = match &tool.executor {
        Executor::Http(http) => http.timeout.as_deref(),
        Executor::Command(command) => command.timeout.as_deref(),
        Executor::Builtin(_) | Executor::Client => None,
    };
    specific
        .and_then(clarion_flow::model::parse_duration)
        .unwrap_or(flow.limits.tool_timeout)
}

fn humanize(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
