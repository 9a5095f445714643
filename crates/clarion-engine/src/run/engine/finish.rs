//! Ending runs and writing what they leave behind: statuses, messages, outputs for every
//! open call when a run is cancelled or expires.

use clarion_flow::model::format_duration;

use super::Engine;
use crate::codes::ErrorCode;
use crate::codes::ToolErrorKind;
use crate::events::Event;
use crate::events::EventSink;
use crate::ids::new_id;
use crate::run::EngineError;
use crate::run::LastError;
use crate::run::Run;
use crate::run::RunStatus;
use crate::store::Step;
use crate::thread::Message;
use crate::thread::MessageKind;
use crate::thread::Metadata;
use crate::thread::OutputStatus;
use crate::thread::Thread;
use crate::thread::ToolCall;
use crate::tool::ToolError;

impl Engine {
    pub(super) fn message(&self, run: &Run, kind: MessageKind) -> Message {
        Message {
            id: new_id("msg"),
            run_id: Some(run.id.clone()),
            created_at: self.clock.now_ms(),
            kind,
            metadata: Metadata::default(),
        }
    }

    pub(super) fn output_message(
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

    /// Commits a step of `run` — the thread's messages from `mark` on — and says so
    /// ([`Event::StepCommitted`]).
    pub(super) async fn commit_step(
        &self,
        thread: &Thread,
        mark: usize,
        run: &Run,
        events: &dyn EventSink,
    ) -> Result<(), EngineError> {
        self.store
            .commit(Step {
                thread,
                appended: &thread.messages[mark..],
                run: Some(run),
            })
            .await?;
        events.emit(&Event::StepCommitted {
            run_id: run.id.clone(),
            status: run.status,
        });
        Ok(())
    }

    pub(super) fn set_status(run: &mut Run, status: RunStatus, events: &dyn EventSink) {
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
    pub(super) async fn finish(
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
        self.commit_step(thread, mark, run, events).await?;
        crate::observe::run_ended(&self.part(thread).flow, run);
        Ok(())
    }

    pub(super) async fn fail(
        &self,
        thread: &mut Thread,
        run: &mut Run,
        code: ErrorCode,
        message: String,
        mark: usize,
        events: &dyn EventSink,
    ) -> Result<(), EngineError> {
        run.last_error = Some(LastError { code, message });
        self.finish(thread, run, RunStatus::Failed, mark, events)
            .await
    }

    /// Every call of a cancelled turn gets a `cancelled` output (results that did arrive
    /// are dropped: the user asked to stop).
    pub(super) fn answer_cancelled(
        &self,
        thread: &mut Thread,
        run: &Run,
        calls: &[ToolCall],
        events: &dyn EventSink,
    ) {
        for call in calls {
            let content = ToolError::new(
                ToolErrorKind::Cancelled,
                "the run was cancelled before this call finished",
            )
            .to_output()
            .to_string();
            let output = self.output_message(run, call, OutputStatus::Cancelled, content, events);
            thread.messages.push(output);
        }
    }

    /// Cancels a run nobody is driving (queued or in `requires_action`).
    pub(super) async fn cancel_now(
        &self,
        mut run: Run,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let mut thread = self.store.thread(&run.thread_id).await?;
        let mark = thread.messages.len();
        Self::set_status(&mut run, RunStatus::Cancelling, events);
        if let Some(mut staged) = run.staged.take() {
            for call in std::mem::take(&mut run.required_action) {
                let content = ToolError::new(
                    ToolErrorKind::Cancelled,
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
            staged.end = None;
            self.land_turn(&mut thread, &mut run, staged, events);
        }
        self.finish(&mut thread, &mut run, RunStatus::Cancelled, mark, events)
            .await?;
        Ok(run)
    }

    /// Expires a run that waited too long in `requires_action`.
    pub(super) async fn expire(&self, mut run: Run) -> Result<Run, EngineError> {
        let events = crate::events::NoEvents;
        let mut thread = self.store.thread(&run.thread_id).await?;
        let mark = thread.messages.len();
        let mut staged = run.staged.take().unwrap_or_default();
        for call in std::mem::take(&mut run.required_action) {
            let content = ToolError::new(
                ToolErrorKind::Expired,
                "the client did not submit this output in time",
            )
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
        staged.end = None;
        self.land_turn(&mut thread, &mut run, staged, &events);
        run.last_error = Some(LastError {
            code: ErrorCode::Expired,
            message: format!(
                "no tool outputs were submitted within {}",
                format_duration(self.part(&thread).flow.limits.requires_action_timeout)
            ),
        });
        self.finish(&mut thread, &mut run, RunStatus::Expired, mark, &events)
            .await?;
        Ok(run)
    }

    /// Whether a run has waited in `requires_action` past its expiry.
    pub(super) fn is_due(&self, run: &Run) -> bool {
        run.status == RunStatus::RequiresAction
            && run.expires_at.is_some_and(|at| self.clock.now_ms() >= at)
    }
}
