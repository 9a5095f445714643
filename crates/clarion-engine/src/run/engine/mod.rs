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
//!
//! The parts, one file each: `claim` (one driver per run, the cancel signal), `drive` (the
//! loop and one model request), `turn` (preparing, guarding and landing a turn of tool
//! calls), `execute` (one tool call under its timeout), `finish` (ending runs, and the
//! messages they write). This file holds the public API.

mod claim;
mod drive;
mod execute;
mod finish;
mod turn;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::call::Validators;
use super::rules::{self};
use super::{LastError, Run, RunStatus};
use crate::clock::{Clock, SystemClock};
use crate::events::{Event, EventSink};
use crate::ids::new_id;
use crate::model::Model;
use crate::store::{Step, ThreadStore};
use crate::thread::{
    Message, MessageKind, Metadata, OutputStatus, Thread, ToolCall, content_value,
};
use crate::tool::{ToolError, ToolExecutor, ToolRequest};
use clarion_flow::{Executor, Flow, Tool};

use super::error::EngineError;

#[allow(clippy::wildcard_imports)] // the helpers each part of the engine shares
use self::{drive::*, execute::*, turn::*};

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
}
