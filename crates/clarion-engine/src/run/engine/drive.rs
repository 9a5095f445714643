//! Driving a run: the loop of steps, and one model request with the checks every request
//! needs (cancellation, the step limit, the instructions, the pairing invariant).

use super::{Engine, Indices, Part, TurnEnd};
use crate::codes::{ErrorCode, IncompleteReason};
use crate::events::Event;
use crate::events::EventSink;
use crate::ids::new_id;
use crate::model::ModelRequest;
use crate::model::{ModelResponse, ModelTurn};
use crate::observe;
use crate::run::EngineError;
use crate::run::Run;
use crate::run::RunStatus;
use crate::run::tokens::Counter;
use crate::run::window::Budget;
use crate::thread::MessageKind;
use crate::thread::Thread;
use crate::thread::ToolCall;
use clarion_flow::export;
use clarion_flow::template;
use serde_json::Map;
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument as _;

impl Engine {
    pub(super) async fn drive(
        &self,
        thread: &mut Thread,
        indices: &mut Indices,
        run: &mut Run,
        mut cancel: watch::Receiver<bool>,
        events: &dyn EventSink,
    ) -> Result<(), EngineError> {
        // Boxed: its state (a model request and a turn of tool calls) would otherwise
        // double the size of every run's future, for a step most runs never take.
        if Box::pin(self.settle_confirmation(thread, indices, run, &mut cancel, events)).await? {
            return Ok(());
        }
        // Where the uncommitted messages start, when a turn of replayable calls was kept
        // for the next commit.
        let mut deferred: Option<usize> = None;
        loop {
            let mark = deferred.take().unwrap_or(thread.messages.len());
            // The id of the message this turn produces, known before the model streams a
            // word of it, so a live consumer can show the text under its final id.
            let reply_id = new_id("msg");
            let Some(turn) = self
                .ask_model(thread, indices, run, &mut cancel, mark, &reply_id, events)
                .await?
            else {
                return Ok(());
            };
            let first_turn = run.steps == 1;
            let (text, calls) = match turn {
                ModelTurn::ToolCalls { text, calls } => (text, calls),
                ModelTurn::Text(text) => (Some(text), Vec::new()),
                // `ask_model` ends the run on these.
                ModelTurn::Stopped { .. } => return Ok(()),
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
                self.hand_back(thread, run, events);
                return self
                    .finish(thread, run, RunStatus::Completed, mark, events)
                    .await;
            }
            let calls = Self::normalize_ids(indices.protocol.call_ids(), calls);
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
                .play_turn(
                    thread,
                    indices,
                    run,
                    &calls,
                    pending,
                    None,
                    &mut cancel,
                    events,
                )
                .await
            {
                TurnEnd::Continue if self.replayable(thread, &calls) => deferred = Some(mark),
                TurnEnd::Continue => {
                    self.commit_step(thread, mark, run, events).await?;
                }
                TurnEnd::Stop(RunStatus::RequiresAction) => {
                    self.commit_step(thread, mark, run, events).await?;
                    return Ok(());
                }
                TurnEnd::Stop(status) => {
                    return self.finish(thread, run, status, mark, events).await;
                }
            }
        }
    }

    /// Whether a turn's step may wait for the next commit: deferring is on, and every call
    /// is to a tool of the thread's flow that the executor can run again unnoticed (a
    /// handoff moved the thread, and so fails the lookup).
    fn replayable(&self, thread: &Thread, calls: &[ToolCall]) -> bool {
        self.defer_replayable && {
            let flow = &self.part(thread).flow;
            calls.iter().all(|call| {
                flow.tools
                    .get(&call.name)
                    .is_some_and(|tool| self.tools.replayable(tool))
            })
        }
    }

    /// One model request, after the checks every request needs. `None` when the run
    /// ended instead (cancelled, step limit, broken instructions or history, model error),
    /// with the bookkeeping done.
    #[allow(clippy::too_many_arguments)] // the loop's state, passed apart to borrow apart
    pub(super) async fn ask_model(
        &self,
        thread: &mut Thread,
        indices: &mut Indices,
        run: &mut Run,
        cancel: &mut watch::Receiver<bool>,
        mark: usize,
        reply_id: &str,
        events: &dyn EventSink,
    ) -> Result<Option<ModelTurn>, EngineError> {
        if *cancel.borrow() {
            self.finish(thread, run, RunStatus::Cancelled, mark, events)
                .await?;
            return Ok(None);
        }
        // The flow that has the thread: a handoff earlier in this run may have moved it.
        let part = self.part(thread);
        let flow = &part.flow;
        if run.steps >= flow.limits.max_steps {
            run.incomplete_details = Some(IncompleteReason::MaxSteps);
            self.finish(thread, run, RunStatus::Incomplete, mark, events)
                .await?;
            return Ok(None);
        }
        let instructions = match self.instructions(thread) {
            Ok(text) => match &run.additional_instructions {
                Some(extra) => format!("{text}\n\n{extra}"),
                None => text,
            },
            Err(message) => {
                self.fail(thread, run, ErrorCode::Instructions, message, mark, events)
                    .await?;
                return Ok(None);
            }
        };
        if let Err(violation) = indices.protocol.check(&thread.messages) {
            let message = format!("refusing to send a broken history to the model: {violation}");
            self.fail(
                thread,
                run,
                ErrorCode::ProtocolViolation,
                message,
                mark,
                events,
            )
            .await?;
            return Ok(None);
        }
        run.steps += 1;
        let start = Self::sent_from(thread, indices, run, part, &instructions);
        let request = ModelRequest {
            flow,
            instructions: &instructions,
            messages: &thread.messages[start..],
            history: &thread.messages,
            words_only: run.repeated_calls > 0,
        };
        events.emit(&Event::ModelCalled {
            message_id: reply_id.to_owned(),
        });
        let info = self.model.describe(flow);
        let span = observe::model_span(&info);
        let started = std::time::Instant::now();
        let response = tokio::select! {
            response = self.model.respond(request, events).instrument(span.clone()) => response,
            () = cancelled(cancel) => {
                observe::span_failed(&span, "cancelled");
                drop(span);
                self.finish(thread, run, RunStatus::Cancelled, mark, events).await?;
                return Ok(None);
            }
        };
        observe::model_requested(flow, &info, &span, &response, started.elapsed());
        drop(span);
        match response {
            // A turn cut short by the token limit or a content filter ends the run as
            // incomplete, as the Assistants API did: nothing is wrong with the thread.
            Ok(ModelResponse {
                turn: ModelTurn::Stopped { reason },
                usage,
            }) => {
                run.usage.add(usage);
                run.incomplete_details = Some(reason);
                self.finish(thread, run, RunStatus::Incomplete, mark, events)
                    .await?;
                Ok(None)
            }
            Ok(response) => {
                run.usage.add(response.usage);
                Ok(Some(if export::offers_reply(flow) {
                    replies_as_text(response.turn, events)
                } else {
                    response.turn
                }))
            }
            Err(error) => {
                let message = format!("the model failed: {error}");
                self.fail(
                    thread,
                    run,
                    ErrorCode::Model(error.kind),
                    message,
                    mark,
                    events,
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// Where the history a request sends starts: long threads keep their oldest turns but
    /// do not send them (`run/window.rs`).
    fn sent_from(
        thread: &Thread,
        indices: &mut Indices,
        run: &Run,
        part: &Part,
        instructions: &str,
    ) -> usize {
        let budget = Budget::of(&part.flow.limits, run.last_messages);
        // Under a message bound alone the counts are never compared: estimating is enough.
        let counter = if budget.max_tokens.is_some() {
            part.counter
        } else {
            Counter::Estimate
        };
        let pending = thread.pending.as_ref();
        indices
            .window
            .sent_from(&thread.messages, instructions, budget, pending, counter)
    }

    pub(super) fn instructions(&self, thread: &Thread) -> Result<String, String> {
        let metadata: Map<String, Value> = thread
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let part = self.part(thread);
        let source = &part.flow.assistant.instructions;
        part.templates
            .render_instructions(source, &thread.slots, &metadata)
            .map_err(|e| {
                format!(
                    "the instructions failed to render: {}",
                    template::describe(&e)
                )
            })
    }
}

/// Resolves when the run is cancelled (never, if the signal is dropped).
pub(super) async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A turn under `tool_choice = "required"`: calls of the [reply tool](export::REPLY_TOOL)
/// become the turn's text — the reply, when nothing else was called (its text is emitted,
/// since it did not stream as text), or the words alongside the other calls.
pub(super) fn replies_as_text(turn: ModelTurn, events: &dyn EventSink) -> ModelTurn {
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
pub(super) fn reply_text(arguments: &str) -> String {
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
