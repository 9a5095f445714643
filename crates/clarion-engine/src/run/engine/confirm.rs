//! Acting on the user's answer to a confirmation question (the design is in
//! `run/confirm.rs`): the embedder's decision, else the judge's reading of the answer, and
//! then the waiting call made again in the model's place — confirmed, declined, or changed
//! and confirmed again.

use super::{Engine, Indices, TurnEnd, cancelled};
use crate::codes::ErrorCode;
use crate::events::{Event, EventSink, NoEvents};
use crate::ids::new_id;
use crate::model::ModelRequest;
use crate::observe;
use crate::run::confirm::{self, DECISION_KEY, Decision};
use crate::run::{EngineError, Run, RunStatus};
use crate::thread::{Message, MessageKind, PendingCall, Thread, ToolCall};
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument as _;

/// The call the user has just answered for, which the engine makes in the model's place.
#[derive(Debug)]
pub(super) enum Settled {
    /// It runs.
    Confirmed(String),
    /// It is answered `declined`.
    Declined(String),
}

/// What reading the user's answer gave.
enum Reading {
    /// A decision.
    Decided(Decision),
    /// The user has not answered since the question: the model goes on as usual.
    NoAnswer,
    /// The run ended (cancelled, or the model failed), with the bookkeeping done.
    Ended,
}

impl Engine {
    /// Settles the thread's call that waits for confirmation, if there is one and it has
    /// an answer. Whether the run ended here; otherwise the model takes its turn.
    pub(super) async fn settle_confirmation(
        &self,
        thread: &mut Thread,
        indices: &mut Indices,
        run: &mut Run,
        cancel: &mut watch::Receiver<bool>,
        events: &dyn EventSink,
    ) -> Result<bool, EngineError> {
        let Some(pending) = thread.pending.clone().filter(|p| p.confirm.is_some()) else {
            return Ok(false);
        };
        let Some(tool) = self.part(thread).flow.tools.get(&pending.tool) else {
            return Ok(false);
        };
        let mark = thread.messages.len();
        let decision = match run.decision.clone() {
            Some(decision) => decision,
            None => match self
                .read_answer(thread, run, &pending, cancel, mark, events)
                .await?
            {
                Reading::Decided(decision) => decision,
                Reading::NoAnswer => return Ok(false),
                Reading::Ended => return Ok(true),
            },
        };
        events.emit(&Event::ConfirmationAnswered {
            call_id: pending.call_id.clone(),
            tool: pending.tool.clone(),
            decision: decision.clone(),
        });
        thread.pending = None;
        let decided = decision.as_str();
        let mut args = pending.known;
        let call_id = new_id("call");
        let settled = match decision {
            // Dropped: the model reads the answer and replies; a call it makes again is
            // confirmed anew.
            Decision::Unrelated => return Ok(false),
            Decision::Confirm => Some(Settled::Confirmed(call_id.clone())),
            Decision::Decline => Some(Settled::Declined(call_id.clone())),
            Decision::Change { changes } => {
                args.extend(changes);
                None
            }
        };
        let call = ToolCall {
            id: call_id,
            name: tool.name.clone(),
            arguments: Value::Object(args.clone()).to_string(),
        };
        events.emit(&Event::ToolCalled {
            call_id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        });
        let mut message = self.message(
            run,
            MessageKind::ToolCalls {
                text: None,
                calls: vec![call.clone()],
            },
        );
        // Whose call this is, on record: the engine's, after the user's answer (a saved
        // conversation replays it as that reading, not as a model turn).
        // (A short key and value: within every metadata limit.)
        let _ = message
            .metadata
            .merge([(DECISION_KEY.to_owned(), decided.to_owned())]);
        thread.messages.push(message);
        // The arguments come back as a pending call's: values the user was asked to
        // confirm, or changed in answer, count as stated (grounding) — the user sees a
        // changed value in the next question before anything runs.
        let known = PendingCall {
            call_id: pending.call_id,
            tool: call.name.clone(),
            known: args,
            missing: Vec::new(),
            confirm: None,
            asked: std::collections::BTreeMap::new(),
        };
        let calls = [call];
        match self
            .play_turn(
                thread,
                indices,
                run,
                &calls,
                Some(known),
                settled.as_ref(),
                cancel,
                events,
            )
            .await
        {
            TurnEnd::Continue => {
                self.commit_step(thread, mark, run, events).await?;
                Ok(false)
            }
            TurnEnd::Stop(RunStatus::RequiresAction) => {
                self.commit_step(thread, mark, run, events).await?;
                Ok(true)
            }
            TurnEnd::Stop(status) => {
                self.finish(thread, run, status, mark, events).await?;
                Ok(true)
            }
        }
    }

    /// Asks the judge what the user's latest message after the confirmation question
    /// means. Its text never reaches the user (no events), its tokens count for the run.
    async fn read_answer(
        &self,
        thread: &mut Thread,
        run: &mut Run,
        pending: &PendingCall,
        cancel: &mut watch::Receiver<bool>,
        mark: usize,
        events: &dyn EventSink,
    ) -> Result<Reading, EngineError> {
        let (Some(tool), Some(judge)) = (
            self.part(thread).flow.tools.get(&pending.tool),
            self.part(thread).judges.get(&pending.tool),
        ) else {
            return Ok(Reading::Decided(Decision::Unrelated));
        };
        let Some(asked) = thread.messages.iter().rposition(|m| {
            matches!(&m.kind, MessageKind::Question { call_id, confirm: true, .. } if *call_id == pending.call_id)
        }) else {
            return Ok(Reading::NoAnswer);
        };
        // The latest answer: a run that failed reading an earlier one left the call waiting.
        let Some(answer) = thread.messages[asked + 1..]
            .iter()
            .rfind(|m| matches!(m.kind, MessageKind::User { .. }))
        else {
            return Ok(Reading::NoAnswer);
        };
        // The question is in the instructions; the answer is the request's one message.
        let exchange: Vec<Message> = vec![answer.clone()];
        let question = pending.confirm.as_deref().unwrap_or_default();
        let instructions = confirm::instructions(tool, &pending.known, question);
        let request = ModelRequest {
            flow: judge,
            instructions: &instructions,
            messages: &exchange,
            history: &exchange,
            words_only: false,
        };
        if *cancel.borrow() {
            self.finish(thread, run, RunStatus::Cancelled, mark, events)
                .await?;
            return Ok(Reading::Ended);
        }
        let info = self.model.describe(judge);
        let span = observe::model_span(&info);
        let started = std::time::Instant::now();
        let response = tokio::select! {
            response = self.model.respond(request, &NoEvents).instrument(span.clone()) => response,
            () = cancelled(cancel) => {
                observe::span_failed(&span, "cancelled");
                drop(span);
                self.finish(thread, run, RunStatus::Cancelled, mark, events).await?;
                return Ok(Reading::Ended);
            }
        };
        // Counted under the flow (its metrics' `flow` label), as the request is the flow's.
        observe::model_requested(
            &self.part(thread).flow,
            &info,
            &span,
            &response,
            started.elapsed(),
        );
        drop(span);
        match response {
            Ok(response) => {
                run.usage.add(response.usage);
                Ok(Reading::Decided(confirm::verdict(&response.turn)))
            }
            // The call keeps waiting: the user's next message is read again.
            Err(error) => {
                let message = format!(
                    "the model failed while reading the user's answer to the confirmation of `{}`: {error}",
                    pending.tool
                );
                self.fail(
                    thread,
                    run,
                    ErrorCode::Model(error.kind),
                    message,
                    mark,
                    events,
                )
                .await?;
                Ok(Reading::Ended)
            }
        }
    }
}
