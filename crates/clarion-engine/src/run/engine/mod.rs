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
//! A turn ends the run early in four ways: a question for missing parameters or a
//! confirmation (the run completes, waiting for the user), client tools (the run waits in `requires_action`
//! until [`Engine::submit_tool_outputs`]), or too many tool failures in a row (the run
//! fails). Cancellation is checked between steps and raced against the model and the
//! tools; a cancelled call still gets an output.
//!
//! The parts, one file each: `claim` (one driver per run, the cancel signal), `confirm`
//! (acting on the user's answer to a confirmation), `drive` (the loop and one model request), `turn` (preparing, guarding and landing a turn of tool
//! calls), `execute` (one tool call under its timeout), `finish` (ending runs, and the
//! messages they write), `handoff` (handing a thread to another flow and back), `kept` (the threads kept between runs, with the indices that grow
//! with them). This file holds the public API.

mod claim;

use crate::run::tokens::Counter;

use self::claim::{Claim, Claims};
mod confirm;
mod drive;
mod execute;
mod finish;
mod handoff;
mod kept;
mod turn;

use self::confirm::Settled;
use self::kept::{Indices, Kept};

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::call::Validators;
use super::rules::{self};
use super::{LastError, Run, RunStatus};
use crate::clock::{Clock, SystemClock};
use crate::codes::ErrorCode;
use crate::events::{Event, EventSink};
use crate::ids::new_id;
use crate::model::Model;
use crate::store::{Lease, Step, ThreadHeader, ThreadStore};
use crate::thread::{
    Message, MessageKind, Metadata, OutputStatus, Thread, ToolCall, content_value,
};
use crate::tool::{ToolError, ToolExecutor, ToolRequest};
use clarion_flow::{Flow, Tool};

use super::error::EngineError;

#[allow(clippy::wildcard_imports)] // the helpers each part of the engine shares
use self::{drive::*, turn::*};

/// One client tool output, as submitted by the embedding application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutputSubmission {
    /// The call answered.
    pub call_id: String,
    /// The output (JSON text, or any string).
    pub output: String,
}

/// Runs conversations for one flow.
///
/// **Cancel safety.** Every async method is cancel safe in the sense tokio uses: dropping
/// its future leaves the store as the last committed step left it and nothing claimed. A
/// run whose driver ([`Engine::drive_run`], [`Engine::submit_tool_outputs`]) is dropped
/// mid-run stays `in_progress` and is *abandoned* in this process: driving it again resumes
/// it from its last committed step, [`Engine::cancel`] cancels it, [`Engine::recover`]
/// fails it. What a dropped future was doing at the time — a model request, a tool call —
/// is not finished: the model is asked again, and a tool whose result was not committed
/// may run again (at-least-once).
pub struct Engine {
    /// The thread's own flow: what it was created for.
    flow: Arc<Flow>,
    /// Every flow a thread may be handed to, the entry flow first, by name.
    parts: indexmap::IndexMap<String, Part>,
    model: Arc<dyn Model>,
    tools: Arc<dyn ToolExecutor>,
    store: Arc<dyn ThreadStore>,
    clock: Arc<dyn Clock>,
    /// The runs this engine is driving, and those whose driver was dropped.
    claims: Claims,
    /// The threads its last runs left, so the next run on one reads only what is new.
    kept: Kept,
    /// Store a turn of replayable calls with the next step ([`Engine::defer_replayable_steps`]).
    defer_replayable: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("flow", &self.flow.name)
            .finish_non_exhaustive()
    }
}

/// A flow the engine runs — the entry flow, or one a thread is handed to — with what it
/// compiles once.
struct Part {
    flow: Arc<Flow>,
    validators: Validators,
    /// The instructions and the `after` and `on_error` rules, compiled once.
    templates: clarion_flow::template::Precompiled,
    /// The flows that read a user's answer to a confirmation, per tool with `confirm`.
    judges: indexmap::IndexMap<String, Flow>,
    /// How a request's tokens are counted against `limits.max_context_tokens`.
    counter: Counter,
}

impl Part {
    fn new(flow: Arc<Flow>, model: &dyn Model) -> Self {
        let counter = Counter::for_model(flow.limits.tokenizer, &model.describe(&flow).model);
        if flow.limits.max_context_tokens.is_some() {
            // A vocabulary takes 0.1–0.3 s to build: not in the first request.
            counter.prepare();
        }
        Self {
            validators: Validators::new(&flow),
            templates: rules::precompile(&flow),
            judges: super::confirm::judges(&flow),
            counter,
            flow,
        }
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
        let parts = flow
            .reachable()
            .into_iter()
            .enumerate()
            .map(|(i, part)| {
                // The entry flow is shared, not copied: `flow()` hands out the same one.
                let part = if i == 0 {
                    Arc::clone(&flow)
                } else {
                    Arc::new(part.clone())
                };
                (part.name.clone(), Part::new(part, model.as_ref()))
            })
            .collect();
        Self {
            parts,
            flow,
            model,
            tools,
            store,
            clock: Arc::new(SystemClock),
            claims: Claims::default(),
            kept: Kept::default(),
            defer_replayable: false,
        }
    }

    /// Stores the step of a turn whose calls all ran [replayable](ToolExecutor::replayable)
    /// tools together with the run's next step (the answer, usually): one store write
    /// fewer for each such turn; the events are the same. A process that dies before that
    /// commit leaves the run as it was before the turn, and whoever takes it over asks the
    /// model again (a later tool that is not replayable would run again after such a crash
    /// in any case: a step is stored after its tools).
    /// Off by default, since a client polling a run's steps sees such a step only with the
    /// next one; `clarion chat`, which drives and shows its own runs, turns it on.
    #[must_use]
    pub fn defer_replayable_steps(mut self, defer: bool) -> Self {
        self.defer_replayable = defer;
        self
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
    ///
    /// Cancel safe: dropped before the store answers, the thread may or may not exist.
    pub async fn create_thread(&self, metadata: Metadata) -> Result<Thread, EngineError> {
        let thread = self.new_thread(metadata);
        self.store.insert_thread(&thread).await?;
        Ok(thread)
    }

    /// An empty thread of this engine's flow, not stored yet: [`Engine::send_first`] stores
    /// it with its first message and run in one write ([`ThreadStore::insert_thread`]
    /// stores it on its own).
    #[must_use]
    pub fn new_thread(&self, metadata: Metadata) -> Thread {
        Thread::new(
            new_id("thread"),
            self.flow.name.clone(),
            self.clock.now_ms(),
            metadata,
        )
    }

    /// A thread with all its messages, after expiring a `requires_action` run that waited
    /// too long. Loads the whole thread: for a request that does not need every message,
    /// use [`Engine::thread_header`] and [`ThreadStore::messages`].
    ///
    /// Cancel safe.
    pub async fn thread(&self, thread_id: &str) -> Result<Thread, EngineError> {
        self.expire_due(thread_id).await?;
        Ok(self.store.thread(thread_id).await?)
    }

    /// A thread's header (no messages: one read whatever its length), after expiring a
    /// `requires_action` run that waited too long.
    ///
    /// Cancel safe.
    pub async fn thread_header(&self, thread_id: &str) -> Result<ThreadHeader, EngineError> {
        let header = self.store.thread_header(thread_id).await?;
        if header.active_run.is_some() && self.expire_due(thread_id).await? {
            return Ok(self.store.thread_header(thread_id).await?);
        }
        Ok(header)
    }

    /// Expires the thread's active run if it waited too long; whether it did.
    async fn expire_due(&self, thread_id: &str) -> Result<bool, EngineError> {
        let header = self.store.thread_header(thread_id).await?;
        let Some(run_id) = &header.active_run else {
            return Ok(false);
        };
        let before = self.store.run(run_id).await?;
        if !self.is_due(&before) {
            return Ok(false);
        }
        self.run_status(run_id).await?;
        Ok(true)
    }

    /// A run, after expiring it if it waited too long in `requires_action`.
    ///
    /// Cancel safe: an expiry either commits whole or not at all.
    pub async fn run_status(&self, run_id: &str) -> Result<Run, EngineError> {
        let run = self.store.run(run_id).await?;
        if !self.is_due(&run) {
            return Ok(run);
        }
        let Ok(_claim) = self.claim_to_settle(run_id) else {
            return Ok(run);
        };
        // Read again under the claim: another request may have settled it in between.
        let run = self.store.run(run_id).await?;
        if self.is_due(&run) {
            self.expire(run).await
        } else {
            Ok(run)
        }
    }

    /// Appends the user's message. Fails while a run holds the thread. Reads only the
    /// thread's header.
    ///
    /// Cancel safe: dropped before the store answers, the message may or may not be there.
    pub async fn add_message(&self, thread_id: &str, text: &str) -> Result<Message, EngineError> {
        if text.trim().is_empty() {
            return Err(EngineError::EmptyMessage);
        }
        let header = self.thread_header(thread_id).await?;
        self.check_flow(&header.id, &header.flow)?;
        let message = Message {
            id: new_id("msg"),
            run_id: None,
            created_at: self.clock.now_ms(),
            kind: MessageKind::User {
                text: text.to_owned(),
            },
            metadata: Metadata::default(),
        };
        self.store.add_user_message(thread_id, &message).await?;
        Ok(message)
    }

    /// Sets metadata on a thread (limits as in the Assistants API; nothing changes on error).
    /// Refused while a run holds the thread.
    ///
    /// Cancel safe.
    pub async fn update_metadata(
        &self,
        thread_id: &str,
        pairs: Vec<(String, String)>,
    ) -> Result<ThreadHeader, EngineError> {
        let mut header = self.thread_header(thread_id).await?;
        header.metadata.merge(pairs)?;
        self.store.update_thread(&header).await?;
        Ok(header)
    }

    /// Creates a queued run and locks the thread for it.
    ///
    /// Cancel safe: dropped before the store answers, the run may or may not exist (and
    /// lock the thread); a queued run nobody drives can be driven or cancelled.
    pub async fn create_run(&self, thread_id: &str) -> Result<Run, EngineError> {
        self.create_run_with(thread_id, None, Metadata::default())
            .await
    }

    /// Creates a queued run with text appended to the instructions for this run only and
    /// metadata of its own (as the Assistants API's run creation takes them).
    ///
    /// Cancel safe, as [`Engine::create_run`].
    pub async fn create_run_with(
        &self,
        thread_id: &str,
        additional_instructions: Option<String>,
        metadata: Metadata,
    ) -> Result<Run, EngineError> {
        self.create_run_truncated(thread_id, additional_instructions, metadata, None)
            .await
    }

    /// [`Engine::create_run_with`], and each of the run's requests sends at most the
    /// `last_messages` latest messages, in whole turns (`None`: as the flow's
    /// `limits.truncation` says). The Assistants API's `truncation_strategy`.
    ///
    /// Cancel safe, as [`Engine::create_run`].
    pub async fn create_run_truncated(
        &self,
        thread_id: &str,
        additional_instructions: Option<String>,
        metadata: Metadata,
        last_messages: Option<u32>,
    ) -> Result<Run, EngineError> {
        let header = self.thread_header(thread_id).await?;
        self.check_flow(&header.id, &header.flow)?;
        let mut run = Run::new(new_id("run"), thread_id.to_owned(), self.clock.now_ms());
        run.additional_instructions = additional_instructions.filter(|t| !t.trim().is_empty());
        run.metadata = metadata;
        run.last_messages = last_messages.filter(|n| *n > 0);
        self.store.begin_run(&run).await?;
        Ok(run)
    }

    /// Creates a queued run that acts on `decision` about the call waiting for the user's
    /// confirmation, instead of reading the user's answer: for an application that asked
    /// the user itself (buttons shown on [`Event::ConfirmationAsked`]). Drive it as any
    /// run. [`EngineError::NothingToConfirm`] when no call of the thread waits.
    ///
    /// Cancel safe, as [`Engine::create_run`].
    pub async fn create_run_deciding(
        &self,
        thread_id: &str,
        decision: super::Decision,
    ) -> Result<Run, EngineError> {
        let header = self.thread_header(thread_id).await?;
        self.check_flow(&header.id, &header.flow)?;
        if header
            .pending
            .as_ref()
            .is_none_or(|pending| pending.confirm.is_none())
        {
            return Err(EngineError::NothingToConfirm(thread_id.to_owned()));
        }
        let mut run = Run::new(new_id("run"), thread_id.to_owned(), self.clock.now_ms());
        run.decision = Some(decision);
        self.store.begin_run(&run).await?;
        Ok(run)
    }

    /// Creates a run and drives it until it completes, fails, or waits in
    /// `requires_action`.
    ///
    /// Cancel safe, as [`Engine::drive_run`].
    pub async fn run(&self, thread_id: &str, events: &dyn EventSink) -> Result<Run, EngineError> {
        let run = self.create_run(thread_id).await?;
        self.drive_run(&run.id, events).await
    }

    /// Adds the user's message and drives a new run `run_id` (a fresh
    /// [`new_id("run")`](crate::new_id), known beforehand so the caller can cancel it) on
    /// the thread until it completes, fails, or waits in `requires_action`: what
    /// [`Engine::add_message`], [`Engine::create_run`] and [`Engine::drive_run`] do, with
    /// the message, the run, the thread's lock and the run's lease written at once (one
    /// write where the store can: [`ThreadStore::begin_run_after`]), the run already
    /// `in_progress` — a conversation's turn costs the store three writes fewer. Fails
    /// while a run holds the thread, with nothing written.
    ///
    /// Cancel safe, as [`Engine::drive_run`].
    pub async fn send(
        &self,
        thread_id: &str,
        text: &str,
        run_id: &str,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        if text.trim().is_empty() {
            return Err(EngineError::EmptyMessage);
        }
        let header = self.thread_header(thread_id).await?;
        self.check_flow(&header.id, &header.flow)?;
        self.start_turn(Start::Stored(thread_id), text, run_id, events)
            .await
    }

    /// [`Engine::send`] on a thread from [`Engine::new_thread`] that is not stored yet:
    /// the thread, the message, the run, the thread's lock and the run's lease in one
    /// write ([`ThreadStore::begin_thread`]), and nothing read back before the run is
    /// driven. Fails with [`StoreError::Duplicate`](crate::StoreError::Duplicate) if a
    /// thread with its id is stored.
    ///
    /// Cancel safe, as [`Engine::drive_run`].
    pub async fn send_first(
        &self,
        thread: Thread,
        text: &str,
        run_id: &str,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        if text.trim().is_empty() {
            return Err(EngineError::EmptyMessage);
        }
        self.check_flow(&thread.id, &thread.flow)?;
        self.start_turn(Start::New(Box::new(thread)), text, run_id, events)
            .await
    }

    /// What [`Engine::send`] and [`Engine::send_first`] share once the thread is known.
    async fn start_turn(
        &self,
        start: Start<'_>,
        text: &str,
        run_id: &str,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let claim = self.claim(run_id)?;
        let now = self.clock.now_ms();
        let message = Message {
            id: new_id("msg"),
            run_id: None,
            created_at: now,
            kind: MessageKind::User {
                text: text.to_owned(),
            },
            metadata: Metadata::default(),
        };
        let thread_id = match &start {
            Start::Stored(id) => (*id).to_owned(),
            Start::New(thread) => thread.id.clone(),
        };
        let mut run = Run::new(run_id.to_owned(), thread_id, now);
        Self::set_status(&mut run, RunStatus::InProgress, events);
        run.started_at = Some(now);
        // A leasing store gives the new run's lease to its creator: no claim to take.
        let begun = match &start {
            Start::Stored(_) => self.store.begin_run_after(&message, &run).await,
            Start::New(thread) => self.store.begin_thread(thread, &message, &run).await,
        };
        if let Err(error) = begun {
            claim.give_back();
            return Err(error.into());
        }
        // A new thread is, in the store, exactly itself with the message and the lock.
        let working = match start {
            Start::Stored(_) => None,
            Start::New(mut thread) => {
                thread.messages.push(message);
                thread.active_run = Some(run_id.to_owned());
                Some(*thread)
            }
        };
        let (_active, span) = self.observe_run(run_id);
        let work = Box::pin(self.drive_started(run, working, claim.cancel.clone(), events));
        let result = self.leased(run_id, work).instrument(span).await;
        self.after_driving(claim, run_id, result, events).await
    }

    /// A driven run counted among the active runs, and its span. (Not a wrapper taking
    /// the work: a future passed to an async fn is held twice by its caller's.)
    fn observe_run(&self, run_id: &str) -> (crate::observe::ActiveRun, tracing::Span) {
        let active = crate::observe::ActiveRun::start(&self.flow);
        let span = tracing::info_span!("run", run_id, flow = %self.flow.name);
        (active, span)
    }

    /// After driving a run under `claim`: the claim released, the lease given back.
    async fn after_driving(
        &self,
        claim: Claim<'_>,
        run_id: &str,
        result: Result<Run, EngineError>,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let result = self.release_driven(claim, result, events).await;
        self.unlease(run_id, &result).await;
        result
    }

    /// Drives a run [`Engine::send`] stored `in_progress`, on `working` when the caller
    /// knows the thread as stored (a thread it just created), else on the thread read.
    async fn drive_started(
        &self,
        mut run: Run,
        working: Option<Thread>,
        cancel: watch::Receiver<bool>,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let (mut thread, mut indices) = match working {
            Some(thread) => (thread, Indices::default()),
            None => self.working_thread(&run.thread_id).await?,
        };
        self.drive(&mut thread, &mut indices, &mut run, cancel, events)
            .await?;
        self.kept.keep(thread, indices);
        Ok(run)
    }

    /// Drives a queued run (created with [`Engine::create_run`]), or resumes one whose
    /// driver in this process was dropped mid-run, from its last committed step.
    ///
    /// Cancel safe: dropped mid-run, the run stays as its last committed step left it,
    /// nothing stays claimed, and the run can be driven again, cancelled or recovered.
    pub async fn drive_run(
        &self,
        run_id: &str,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let claim = self.claim(run_id)?;
        if let Err(busy) = self.lease(run_id).await {
            claim.give_back();
            return Err(busy);
        }
        let (_active, span) = self.observe_run(run_id);
        let work = Box::pin(self.drive_claimed(run_id, claim.cancel.clone(), false, events));
        let result = self.leased(run_id, work).instrument(span).await;
        self.after_driving(claim, run_id, result, events).await
    }

    /// Takes over a run another process left unfinished — its lease expired
    /// ([`ThreadStore::orphaned_runs`]), or the process that drove it died and this one
    /// has the store to itself ([`Engine::interrupted_runs`]) — and drives it on from its
    /// last committed step: a
    /// queued run starts, a run `in_progress` resumes (a model request that was in flight
    /// is sent again; a tool call whose output was not committed runs again), a run
    /// `cancelling` is cancelled. `RunBusy` if another process holds its lease.
    ///
    /// Cancel safe, as [`Engine::drive_run`].
    pub async fn take_over(
        &self,
        run_id: &str,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let claim = self.claim(run_id)?;
        if let Err(busy) = self.lease(run_id).await {
            claim.give_back();
            return Err(busy);
        }
        let span = tracing::info_span!("takeover", run_id, flow = %self.flow.name);
        let result = Box::pin(async {
            let run = self.store.run(run_id).await?;
            if run.status == RunStatus::Cancelling {
                self.claims.forget(run_id);
                return self.cancel_now(run, events).await;
            }
            tracing::info!(
                status = run.status.as_str(),
                "taking over a run whose lease expired"
            );
            self.drive_claimed(run_id, claim.cancel.clone(), true, events)
                .await
        });
        let result = self.leased(run_id, result).instrument(span).await;
        self.after_driving(claim, run_id, result, events).await
    }

    /// Takes the store's lease of a run (a no-op for a store without leases).
    async fn lease(&self, run_id: &str) -> Result<(), EngineError> {
        if self.store.claim_run(run_id).await? {
            Ok(())
        } else {
            Err(EngineError::RunBusy(run_id.to_owned()))
        }
    }

    /// Gives the store's lease back, unless the run's last commit already did (it rests in
    /// `requires_action` or ended: the store clears the lease with that step, and a later
    /// release could clear the lease of a submit that took the run since). A failure only
    /// delays another process's takeover until the lease expires.
    async fn unlease(&self, run_id: &str, result: &Result<Run, EngineError>) {
        if self.store.lease_duration().is_none()
            || result.as_ref().is_ok_and(|run| {
                run.status.is_terminal() || run.status == RunStatus::RequiresAction
            })
        {
            return;
        }
        if let Err(error) = self.store.release_run(run_id).await {
            tracing::warn!(run_id, "could not release the run's lease: {error}");
        }
    }

    /// Runs `work` while renewing the run's lease every third of its duration. A cancel
    /// another process asked for ([`ThreadStore::request_cancel`]) arrives with a renewal
    /// and is signalled to the driver as a local cancel would be. A lost lease stops the
    /// renewals; the work's next commit is then refused by the store.
    ///
    /// Callers pass the run loop boxed: it is the largest future in the crate, and held
    /// inline it makes every public entry point as large, copied whole each time the
    /// caller's future moves. A task spawned to drive a run (`clarion chat`, the server)
    /// is moved into the runtime and its output out: those copies were 15% of the
    /// instructions of a chat round trip.
    async fn leased<T>(&self, run_id: &str, work: impl Future<Output = T>) -> T {
        let Some(lease) = self.store.lease_duration() else {
            return work.await;
        };
        let heartbeat = async {
            let every = (lease / 3).max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(every).await;
                match self.store.renew_lease(run_id).await {
                    Ok(Lease::Held { cancel_requested }) => {
                        if cancel_requested {
                            self.claims.signal_cancel(run_id);
                        }
                    }
                    Ok(Lease::Lost) => {
                        tracing::warn!(run_id, "lost the run's lease to another process");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(run_id, "could not renew the run's lease: {error}");
                    }
                }
            }
        };
        let mut work = std::pin::pin!(work);
        tokio::select! {
            out = &mut work => out,
            () = heartbeat => work.await,
        }
    }

    async fn drive_claimed(
        &self,
        run_id: &str,
        cancel: watch::Receiver<bool>,
        takeover: bool,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let mut run = self.store.run(run_id).await?;
        let resumed =
            run.status == RunStatus::InProgress && (takeover || self.claims.was_abandoned(run_id));
        if run.status != RunStatus::Queued && !resumed {
            return Err(EngineError::RunNotActive {
                run_id: run.id,
                status: run.status,
            });
        }
        self.claims.forget(run_id);
        let (mut thread, mut indices) = self.working_thread(&run.thread_id).await?;
        if !resumed {
            Self::set_status(&mut run, RunStatus::InProgress, events);
            run.started_at = Some(self.clock.now_ms());
            let mark = thread.messages.len();
            self.commit_step(&thread, mark, &run, events).await?;
        }
        self.drive(&mut thread, &mut indices, &mut run, cancel, events)
            .await?;
        self.kept.keep(thread, indices);
        Ok(run)
    }

    /// Submits the outputs of the client tool calls a run is waiting for — all of them,
    /// each once — and drives the run on. A missing, extra or duplicate id changes nothing.
    /// A driver in this process still letting go of the run (it has just committed the
    /// step that asked for these outputs) is waited for, up to two seconds.
    ///
    /// Cancel safe, as [`Engine::drive_run`]: once the outputs are committed the run is
    /// `in_progress`, and a dropped driver leaves it resumable.
    pub async fn submit_tool_outputs(
        &self,
        run_id: &str,
        outputs: Vec<ToolOutputSubmission>,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let claim = self.claim_soon(run_id).await?;
        if let Err(busy) = self.lease(run_id).await {
            claim.give_back();
            return Err(busy);
        }
        let (_active, span) = self.observe_run(run_id);
        let work = Box::pin(self.submit_claimed(run_id, outputs, claim.cancel.clone(), events));
        let result = self.leased(run_id, work).instrument(span).await;
        self.after_driving(claim, run_id, result, events).await
    }

    async fn submit_claimed(
        &self,
        run_id: &str,
        outputs: Vec<ToolOutputSubmission>,
        cancel: watch::Receiver<bool>,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let mut run = self.store.run(run_id).await?;
        if self.is_due(&run) {
            run = self.expire(run).await?;
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
        let (mut thread, mut indices) = self.working_thread(&run.thread_id).await?;
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
            let part = self.part(&thread);
            if let Some(tool) = part.flow.tools.get(&call.name) {
                let said = said_for(
                    &part.flow,
                    std::slice::from_ref(call),
                    &mut indices.said,
                    &thread.messages,
                );
                let args = prepared_args(&part.flow, &part.validators, call, &thread.slots, said);
                let effects = rules::after(
                    tool,
                    &part.templates,
                    &part.validators,
                    &args,
                    &result,
                    &mut thread.slots,
                    events,
                );
                self.stage_contexts(&part.flow, &run, tool, effects, &mut staged, events);
            }
        }
        run.consecutive_failures = 0;
        run.expires_at = None;
        Self::set_status(&mut run, RunStatus::InProgress, events);
        match self.land_turn(&mut thread, &mut run, staged, events) {
            TurnEnd::Stop(status) => {
                self.finish(&mut thread, &mut run, status, mark, events)
                    .await?;
            }
            TurnEnd::Continue => {
                self.commit_step(&thread, mark, &run, events).await?;
                self.drive(&mut thread, &mut indices, &mut run, cancel, events)
                    .await?;
                self.kept.keep(thread, indices);
            }
        }
        Ok(run)
    }

    /// Cancels a run. A run being driven stops at its next safe point (its open calls get
    /// `cancelled` outputs); a queued, waiting or abandoned run is cancelled at once.
    ///
    /// Cancel safe: the cancellation either commits whole or not at all.
    pub async fn cancel(&self, run_id: &str, events: &dyn EventSink) -> Result<Run, EngineError> {
        let mut run = self.run_status(run_id).await?;
        if run.status.is_terminal() {
            return Err(EngineError::RunNotActive {
                run_id: run.id,
                status: run.status,
            });
        }
        if self.claims.signal_cancel(run_id) {
            if run.status != RunStatus::Cancelling && run.status.can_become(RunStatus::Cancelling) {
                run.status = RunStatus::Cancelling;
                // Its open calls are being answered `cancelled` by whoever holds the run.
                run.required_action.clear();
            }
            return Ok(run);
        }
        // Driven by another process: it sees the request at its next lease renewal.
        if self.store.request_cancel(run_id).await? {
            if run.status.can_become(RunStatus::Cancelling) {
                run.status = RunStatus::Cancelling;
            }
            return Ok(run);
        }
        let _claim = self.claim_to_settle(run_id)?;
        // Read again under the claim: the run may have ended since it was read above.
        let run = self.store.run(run_id).await?;
        if run.status.is_terminal() {
            return Err(EngineError::RunNotActive {
                run_id: run.id,
                status: run.status,
            });
        }
        let run = self.cancel_now(run, events).await?;
        self.claims.forget(run_id);
        Ok(run)
    }

    /// The runs a process that died left unfinished (`queued`, `in_progress` or
    /// `cancelling`): each can be resumed from its last committed step with
    /// [`Engine::take_over`] — what [`Engine::recover`] would otherwise fail. On a store
    /// with leases, the runs whose lease expired or whose holder is gone
    /// ([`ThreadStore::orphaned_runs`]); on one without, every unfinished run when this
    /// process has the store to itself, and none while another process shares it (its
    /// runs in flight look the same).
    ///
    /// Cancel safe: it only reads.
    pub async fn interrupted_runs(&self) -> Result<Vec<Run>, EngineError> {
        if self.store.lease_duration().is_some() {
            let mut runs = Vec::new();
            // Bounded: any beyond are taken over by later scans (`clarion serve` scans on).
            for run_id in self.store.orphaned_runs(1024).await? {
                let run = self.store.run(&run_id).await?;
                if self.left_unfinished(&run) {
                    runs.push(run);
                }
            }
            return Ok(runs);
        }
        if !self.store.sole_user() {
            return Ok(Vec::new());
        }
        let mut runs = Vec::new();
        for thread_id in self.store.locked_thread_ids().await? {
            let header = self.store.thread_header(&thread_id).await?;
            let Some(run_id) = header.active_run else {
                continue;
            };
            let run = self.store.run(&run_id).await?;
            if self.left_unfinished(&run) {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    /// Whether `run` was left unfinished (`queued`, `in_progress` or `cancelling`) and no
    /// driver in this process holds it: what [`Engine::interrupted_runs`] resumes and
    /// [`Engine::recover`] fails.
    fn left_unfinished(&self, run: &Run) -> bool {
        matches!(
            run.status,
            RunStatus::Queued | RunStatus::InProgress | RunStatus::Cancelling
        ) && !self.claims.is_driving(&run.id)
    }

    /// Fails the runs left unfinished (`queued`, `in_progress` or `cancelling`) by a
    /// process that died, and those whose driver in this process was dropped, and unlocks
    /// their threads. Call it at startup, before any run is driven; later calls only fail
    /// this process's abandoned runs. Runs waiting in `requires_action` survive: they are
    /// resting, not interrupted. While another process uses the same store, only this
    /// process's abandoned runs are touched (the other's runs in flight look exactly like
    /// interrupted ones): the next process to start alone recovers them.
    ///
    /// Cancel safe: each run is failed in one commit.
    pub async fn recover(&self) -> Result<Vec<Run>, EngineError> {
        let mut candidates: Vec<String> = Vec::new();
        for run_id in self.claims.abandoned_runs() {
            candidates.push(self.store.run(&run_id).await?.thread_id);
        }
        if self.store.sole_user() {
            candidates.extend(self.store.locked_thread_ids().await?);
        }
        candidates.dedup();
        let mut recovered = Vec::new();
        for thread_id in candidates {
            let mut thread = self.store.thread(&thread_id).await?;
            let Some(run_id) = thread.active_run.clone() else {
                continue;
            };
            let mut run = self.store.run(&run_id).await?;
            if !self.left_unfinished(&run) {
                continue;
            }
            let Ok(_claim) = self.claim_to_settle(&run_id) else {
                continue;
            };
            // A store with leases fences off steps of a run leased elsewhere: take it (a
            // live process's lease is not taken, and its run is left alone).
            if !self.store.claim_run(&run_id).await? {
                continue;
            }
            run.status = RunStatus::Failed;
            run.last_error = Some(LastError {
                code: ErrorCode::Interrupted,
                message: "the process stopped during this run; the unfinished step was discarded. \
                          Start a new run to retry."
                    .to_owned(),
            });
            run.completed_at = Some(self.clock.now_ms());
            thread.active_run = None;
            self.store
                .commit(Step {
                    thread: &thread,
                    appended: &[],
                    run: Some(&run),
                })
                .await?;
            crate::observe::run_ended(&self.flow, &run);
            self.claims.forget(&run_id);
            recovered.push(run);
        }
        Ok(recovered)
    }

    /// The flow that runs `thread` now. A route naming a flow this engine does not have
    /// (the flow files changed since the handoff) falls back to the thread's own flow.
    fn part(&self, thread: &Thread) -> &Part {
        let active = thread.active_flow();
        self.parts.get(active).unwrap_or_else(|| {
            tracing::warn!(
                thread_id = %thread.id,
                flow = active,
                "the thread was handed to a flow this engine does not run; its own flow runs it"
            );
            &self.parts[0]
        })
    }

    fn check_flow(&self, thread_id: &str, flow: &str) -> Result<(), EngineError> {
        if flow == self.flow.name {
            Ok(())
        } else {
            Err(EngineError::WrongFlow {
                thread_id: thread_id.to_owned(),
                thread_flow: flow.to_owned(),
                flow: self.flow.name.clone(),
            })
        }
    }
}

/// The thread a turn starts on: one the store has, or a new one stored with the turn.
enum Start<'a> {
    Stored(&'a str),
    New(Box<Thread>),
}
