//! Playing one turn of tool calls: preparing each call, the loop guard, running the ready
//! ones, and landing the outputs, injected context and questions in the thread.
//!
//! A call whose asks ran out (`max_asks`) is answered here too, with an `asks_exhausted`
//! output, so it keeps the one-output-per-call rule; its `on_exhausted` adds context, or a
//! last message for the user after which [`Engine::land_turn`] ends the run.

use super::execute::idempotency_key;
use super::handoff::{self, HandingOff};
use super::{Engine, Indices, Settled, TurnEnd, cancelled};
use crate::codes::ToolErrorKind;
use crate::codes::{ErrorCode, IncompleteReason};
use crate::events::Event;
use crate::events::EventSink;
use crate::events::ExhaustedOutcome;
use crate::ids::new_id;
use crate::model::follows_met;
use crate::run::Ask;
use crate::run::LastError;
use crate::run::Run;
use crate::run::RunStatus;
use crate::run::StagedTurn;
use crate::run::call::GivenUp;
use crate::run::call::Prepared;
use crate::run::call::Rejection;
use crate::run::call::Validators;
use crate::run::call::parse_arguments;
use crate::run::call::prepare;
use crate::run::confirm;
use crate::run::grounding::Said;
use crate::run::rules;
use crate::run::rules::RuleEffects;
use crate::thread::Message;
use crate::thread::MessageKind;
use crate::thread::OutputStatus;
use crate::thread::PendingCall;
use crate::thread::Thread;
use crate::thread::ToolCall;
use crate::tool::ToolError;
use clarion_flow::Executor;
use clarion_flow::Flow;
use clarion_flow::OnExhausted;
use clarion_flow::Tool;
use serde_json::Map;
use serde_json::Value;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;
use tokio::sync::watch;

impl Engine {
    /// Plays one turn of tool calls. `settled` is the call the user has just confirmed or
    /// declined (the engine's own call, see `confirm.rs`); every other complete call of a
    /// tool with `confirm` waits for the user.
    #[allow(clippy::too_many_arguments)] // the loop's state, passed apart to borrow apart
    #[allow(clippy::too_many_lines)] // one call's way from prepared to answered, in order
    pub(super) async fn play_turn(
        &self,
        thread: &mut Thread,
        indices: &mut Indices,
        run: &mut Run,
        calls: &[ToolCall],
        pending: Option<PendingCall>,
        settled: Option<&Settled>,
        cancel: &mut watch::Receiver<bool>,
        events: &dyn EventSink,
    ) -> TurnEnd {
        let mut prepared = self.prepare_calls(thread, &mut indices.said, calls, pending, events);
        let loop_ends = self.guard_repeats(thread, &mut indices.said, run, calls, &mut prepared);
        // The flow that has the thread: a handoff earlier in the run may have moved it.
        let part = self.part(thread);
        let (flow, validators) = (&part.flow, &part.validators);
        Self::hold_for_confirmation(flow, calls, &mut prepared, settled);

        // Run the ready server-side calls concurrently; client calls wait for the app.
        let runnable = runnable(flow, run, calls, &prepared);
        let executions = runnable
            .iter()
            .map(|(i, tool, args, key)| self.execute(flow, tool, &calls[*i], args, key, events));
        let results = tokio::select! {
            results = futures_util::future::join_all(executions) => results,
            () = cancelled(cancel) => {
                self.answer_cancelled(thread, run, calls, events);
                return TurnEnd::Stop(RunStatus::Cancelled);
            }
        };
        let mut results: HashMap<usize, Result<Value, ToolError>> =
            runnable.iter().map(|(i, ..)| *i).zip(results).collect();

        let mut staged = StagedTurn::default();
        let mut waiting: Vec<ToolCall> = Vec::new();
        let mut follow_up = None;
        let mut handing = None;
        for (i, (call, prepared)) in calls.iter().zip(prepared).enumerate() {
            let tool = flow.tools.get(&call.name);
            let (status, content) = match prepared {
                Prepared::Rejected(error) => (OutputStatus::Error, error.to_output().to_string()),
                Prepared::NeedsInput {
                    args,
                    missing,
                    unstated,
                    rejected,
                    asked,
                    ..
                } => {
                    let content =
                        needs_input(call, args, missing, &unstated, rejected, asked, &mut staged);
                    (OutputStatus::NeedsInput, content)
                }
                Prepared::NeedsConfirmation { args } => {
                    let text = tool
                        .map_or_else(String::new, |t| confirm::question(t, &args, &thread.slots));
                    staged.asks.push(Ask::confirmation(call, args, text));
                    let content = confirm::needs_confirmation_output();
                    (OutputStatus::NeedsConfirmation, content)
                }
                Prepared::Exhausted(given_up) => {
                    let (content, contexts) =
                        exhausted(call, &given_up, flow, &thread.slots, &mut staged, events);
                    follow_up = Some(contexts);
                    (OutputStatus::Error, content)
                }
                Prepared::Ready { args, .. } => match (tool, results.remove(&i)) {
                    (Some(tool), Some(Ok(result))) => {
                        run.consecutive_failures = 0;
                        handing = handing.or_else(|| HandingOff::of(tool, call, &args));
                        let effects = rules::after(
                            tool,
                            &part.templates,
                            validators,
                            &args,
                            &result,
                            &mut thread.slots,
                            events,
                        );
                        self.stage_contexts(flow, run, tool, effects, &mut staged, events);
                        (OutputStatus::Ok, result.to_string())
                    }
                    (Some(tool), Some(Err(error))) => {
                        run.consecutive_failures += 1;
                        let effects = rules::on_error(
                            tool,
                            &part.templates,
                            &args,
                            &error,
                            &thread.slots,
                            events,
                        );
                        self.stage_contexts(flow, run, tool, effects, &mut staged, events);
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
            // Context for a call given up comes after its output, as a rule's does.
            if let (Some(tool), Some(contexts)) = (tool, follow_up.take()) {
                self.stage_contexts(flow, run, tool, contexts, &mut staged, events);
            }
        }
        if waiting.is_empty() {
            let end = self.land_turn(thread, run, staged, events);
            if let Some(handing) = handing {
                self.hand_off(thread, handing, events);
            }
            return if loop_ends { end_loop(end, run) } else { end };
        }
        run.required_action = waiting;
        run.staged = Some(staged);
        let timeout = flow.limits.requires_action_timeout.as_millis();
        let timeout = i64::try_from(timeout).unwrap_or(i64::MAX);
        run.expires_at = Some(self.clock.now_ms().saturating_add(timeout));
        Self::set_status(run, RunStatus::RequiresAction, events);
        TurnEnd::Stop(RunStatus::RequiresAction)
    }

    /// Holds back complete calls of tools with `confirm` until the user confirms them:
    /// the call `settled` names is the engine's own, made after the user's answer, and runs
    /// (confirmed) or is answered `declined`. The user confirms one call at a time, and not
    /// while they are asked for missing parameters (or a call is given up): such calls are
    /// answered `awaiting_confirmation` for the model to make again later. Then handoffs
    /// that cannot go now are answered `handoff_deferred` (see `handoff.rs`).
    fn hold_for_confirmation(
        flow: &Flow,
        calls: &[ToolCall],
        prepared: &mut [Prepared],
        settled: Option<&Settled>,
    ) {
        // A call given up (`max_asks`) may end the run before any question is asked.
        let mut asking = prepared
            .iter()
            .any(|p| matches!(p, Prepared::NeedsInput { .. } | Prepared::Exhausted(_)));
        for (call, prepared) in calls.iter().zip(prepared.iter_mut()) {
            let Prepared::Ready { args, .. } = &*prepared else {
                continue;
            };
            if flow
                .tools
                .get(&call.name)
                .is_none_or(|tool| tool.confirm.is_none())
            {
                continue;
            }
            *prepared = match settled {
                Some(Settled::Confirmed(id)) if *id == call.id => continue,
                Some(Settled::Declined(id)) if *id == call.id => {
                    Prepared::Rejected(ToolError::new(
                        ToolErrorKind::Declined,
                        format!(
                            "the user declined this call of `{}` when asked to confirm it; nothing was done. Do not call it again unless the user asks for it",
                            call.name
                        ),
                    ))
                }
                _ if asking => Prepared::Rejected(ToolError::new(
                    ToolErrorKind::AwaitingConfirmation,
                    format!(
                        "`{}` needs the user's confirmation, and the user is answering another question first; nothing was done. Call it again after they have answered",
                        call.name
                    ),
                )),
                _ => {
                    asking = true;
                    Prepared::NeedsConfirmation { args: args.clone() }
                }
            };
        }
        handoff::defer_extra(flow, calls, prepared);
    }

    /// [`guard_repeats`] with the engine's preparation of an earlier call.
    fn guard_repeats(
        &self,
        thread: &Thread,
        said: &mut Said,
        run: &mut Run,
        calls: &[ToolCall],
        prepared: &mut [Prepared],
    ) -> bool {
        let said = said_for(&self.part(thread).flow, calls, said, &thread.messages);
        let effective = |call: &ToolCall| {
            prepared_args(
                &self.part(thread).flow,
                &self.part(thread).validators,
                call,
                &thread.slots,
                said,
            )
        };
        guard_repeats(thread, run, calls, prepared, &effective)
    }

    /// Prepares every call of a turn and remembers validated arguments into slots. The
    /// pending call's known arguments go to the first call of the same tool; a pending
    /// call no call takes is abandoned, loudly.
    pub(super) fn prepare_calls(
        &self,
        thread: &mut Thread,
        said: &mut Said,
        calls: &[ToolCall],
        mut pending: Option<PendingCall>,
        events: &dyn EventSink,
    ) -> Vec<Prepared> {
        let mut prepared = Vec::with_capacity(calls.len());
        let said = said_for(&self.part(thread).flow, calls, said, &thread.messages);
        for call in calls {
            let matching = pending.as_ref().is_some_and(|p| p.tool == call.name);
            let for_call = if matching { pending.take() } else { None };
            let result = match self.part(thread).flow.tools.get(&call.name) {
                Some(tool) if !follows_met(tool, &thread.messages) => {
                    Prepared::Rejected(not_offered(tool))
                }
                _ => prepare(
                    &self.part(thread).flow,
                    &self.part(thread).validators,
                    call,
                    &thread.slots,
                    for_call.as_ref(),
                    said,
                ),
            };
            if let Prepared::NeedsInput { rejected, .. }
            | Prepared::Exhausted(GivenUp { rejected, .. }) = &result
            {
                for rejection in rejected {
                    events.emit(&Event::ValueRejected {
                        call_id: call.id.clone(),
                        tool: call.name.clone(),
                        param: rejection.param.clone(),
                        keyword: rejection.keyword.clone(),
                        limit: rejection.limit.clone(),
                        value: rejection.value.clone(),
                    });
                }
            }
            if let Prepared::Ready {
                args,
                unstated,
                from_slots,
            }
            | Prepared::NeedsInput {
                args,
                unstated,
                from_slots,
                ..
            } = &result
            {
                if !from_slots.is_empty() {
                    events.emit(&Event::FilledFromSlots {
                        call_id: call.id.clone(),
                        tool: call.name.clone(),
                        params: from_slots.clone(),
                    });
                }
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
    pub(super) fn land_turn(
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
            end,
            hand_off,
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
        // `on_exhausted = { end = … }`: the flow's last word to the user, and the run stops
        // with a reason a caller can branch on (a question another call needed is not asked:
        // the conversation is over for this run).
        if let Some(text) = end {
            events.emit(&Event::AssistantMessage { text: text.clone() });
            let message = self.message(run, MessageKind::Assistant { text });
            thread.messages.push(message);
            run.incomplete_details = Some(IncompleteReason::AsksExhausted);
            return TurnEnd::Stop(RunStatus::Incomplete);
        }
        if let Some(ask) = asks.first().filter(|ask| ask.confirm.is_some()) {
            self.ask_confirmation(thread, run, ask.clone(), events);
            return TurnEnd::Stop(RunStatus::Completed);
        }
        if let Some(first) = asks.first() {
            let mut texts = Vec::new();
            let mut params = Vec::new();
            for ask in &asks {
                if let Some(tool) = self.part(thread).flow.tools.get(&ask.tool) {
                    texts.push(rules::question(
                        tool,
                        &ask.args,
                        &ask.missing,
                        &ask.rejected,
                        &thread.slots,
                    ));
                    params.extend(ask.missing.iter().cloned());
                }
            }
            let text = texts.join(" ");
            crate::observe::question_asked(&self.part(thread).flow, &first.tool, &params);
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
                    confirm: false,
                },
            );
            thread.messages.push(question);
            thread.pending = Some(PendingCall {
                call_id: first.call_id.clone(),
                tool: first.tool.clone(),
                known: first.args.clone(),
                missing: first.missing.clone(),
                confirm: None,
                asked: first.asked.clone(),
            });
            return TurnEnd::Stop(RunStatus::Completed);
        }
        if run.consecutive_failures >= self.part(thread).flow.limits.max_consecutive_failures {
            run.last_error = Some(LastError {
                code: ErrorCode::ToolFailures,
                message: format!(
                    "{} tool calls failed in a row (the flow allows {}); see the tool outputs for each error",
                    run.consecutive_failures,
                    self.part(thread).flow.limits.max_consecutive_failures
                ),
            });
            return TurnEnd::Stop(RunStatus::Failed);
        }
        // `on_exhausted = { hand_off = … }`, once nothing else waits for the user.
        if let Some(handing) =
            hand_off.and_then(|via| HandingOff::via(&self.part(thread).flow, &via))
        {
            self.hand_off(thread, handing, events);
        }
        TurnEnd::Continue
    }

    /// Asks the user to confirm a complete call (`confirm`); the call waits as the
    /// thread's pending call until they answer.
    fn ask_confirmation(&self, thread: &mut Thread, run: &Run, ask: Ask, events: &dyn EventSink) {
        let Ask {
            call_id,
            tool,
            args,
            confirm,
            ..
        } = ask;
        let text = confirm.unwrap_or_default();
        crate::observe::question_asked(&self.part(thread).flow, &tool, &[]);
        events.emit(&Event::ConfirmationAsked {
            call_id: call_id.clone(),
            tool: tool.clone(),
            args: args.clone(),
            text: text.clone(),
        });
        let question = self.message(
            run,
            MessageKind::Question {
                call_id: call_id.clone(),
                tool: tool.clone(),
                params: Vec::new(),
                text: text.clone(),
                confirm: true,
            },
        );
        thread.messages.push(question);
        thread.pending = Some(PendingCall {
            call_id,
            tool,
            known: args,
            missing: Vec::new(),
            confirm: Some(text),
            asked: BTreeMap::new(),
        });
    }

    /// Remembers validated arguments into their slots.
    pub(super) fn remember(
        &self,
        thread: &mut Thread,
        tool: &str,
        args: &Map<String, Value>,
        events: &dyn EventSink,
    ) {
        let Some(tool) = self.part(thread).flow.tools.get(tool) else {
            return;
        };
        for param in tool.params.values() {
            let (Some(slot), Some(value)) = (&param.slot, args.get(&param.name)) else {
                continue;
            };
            if thread.slots.get(slot) != Some(value)
                && self.part(thread).validators.slot_accepts(slot, value)
            {
                thread.slots.insert(slot.clone(), value.clone());
                events.emit(&Event::SlotSet {
                    name: slot.clone(),
                    value: value.clone(),
                });
            }
        }
    }

    pub(super) fn abandon_pending(thread: &mut Thread, events: &dyn EventSink) {
        if let Some(pending) = thread.pending.take() {
            events.emit(&Event::PendingAbandoned {
                call_id: pending.call_id,
                tool: pending.tool,
            });
        }
    }

    /// Gives calls fresh ids when the model's are empty or already used in the thread
    /// (`used`: the ids of every call in it), so pairing never depends on a model's id
    /// hygiene.
    pub(super) fn normalize_ids(used: &HashSet<String>, calls: Vec<ToolCall>) -> Vec<ToolCall> {
        let mut fresh: HashSet<String> = HashSet::new();
        calls
            .into_iter()
            .map(|mut call| {
                if call.id.is_empty() || used.contains(&call.id) || fresh.contains(&call.id) {
                    call.id = new_id("call");
                }
                fresh.insert(call.id.clone());
                call
            })
            .collect()
    }

    pub(super) fn stage_contexts(
        &self,
        flow: &Flow,
        run: &Run,
        tool: &Tool,
        effects: RuleEffects,
        staged: &mut StagedTurn,
        events: &dyn EventSink,
    ) {
        for text in effects.contexts {
            crate::observe::context_injected(flow, &tool.name);
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
}

/// Answers a call whose asks ran out: the `asks_exhausted` output the model reads, and
/// what the first exhausted parameter's `on_exhausted` adds: context (returned, to be
/// staged after the output) or the run's last message (staged here).
fn exhausted(
    call: &ToolCall,
    given_up: &GivenUp,
    flow: &Flow,
    slots: &Map<String, Value>,
    staged: &mut StagedTurn,
    events: &dyn EventSink,
) -> (String, RuleEffects) {
    let tool = flow.tools.get(&call.name);
    let GivenUp {
        params,
        asked,
        args,
        ..
    } = given_up;
    let asked = *asked;
    let outcome = tool.and_then(|tool| {
        params
            .iter()
            .find_map(|p| tool.params.get(p)?.on_exhausted.clone())
    });
    events.emit(&Event::AsksExhausted {
        call_id: call.id.clone(),
        tool: call.name.clone(),
        params: params.clone(),
        asked,
        outcome: match outcome {
            None => ExhaustedOutcome::Output,
            Some(OnExhausted::Inject(_)) => ExhaustedOutcome::Inject,
            Some(OnExhausted::End(_)) => ExhaustedOutcome::End,
            Some(OnExhausted::HandOff(_)) => ExhaustedOutcome::HandOff,
        },
    });
    let names = params
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut effects = RuleEffects::default();
    match outcome {
        Some(OnExhausted::Inject(template)) => {
            effects
                .contexts
                .extend(rules::render_with_args(&template, args, slots));
        }
        Some(OnExhausted::End(template)) => {
            staged.end = Some(
                rules::render_with_args(&template, args, slots).unwrap_or_else(|| {
                    format!("I could not get a usable value for {names}, so I will stop here.")
                }),
            );
        }
        Some(OnExhausted::HandOff(via)) => staged.hand_off = Some(via),
        None => {}
    }
    let content = ToolError::new(
        ToolErrorKind::AsksExhausted,
        format!(
            "the user was asked for {names} {asked} {} without giving a usable value, so `{}` was not run; do not ask for it again: answer the user without this tool",
            if asked == 1 { "time" } else { "times" },
            call.name
        ),
    )
    .to_output()
    .to_string();
    (content, effects)
}

/// The `needs_input` output of a call that asks the user, staging its question.
fn needs_input(
    call: &ToolCall,
    args: Map<String, Value>,
    missing: Vec<String>,
    unstated: &[String],
    rejected: Vec<Rejection>,
    asked: BTreeMap<String, u32>,
    staged: &mut StagedTurn,
) -> String {
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
    if !rejected.is_empty() {
        let names: Vec<&str> = rejected.iter().map(|r| r.param.as_str()).collect();
        content["rejected"] = serde_json::json!(names);
    }
    let mut ask = Ask::question(call, args, missing);
    ask.rejected = rejected;
    ask.asked = asked;
    staged.asks.push(ask);
    content.to_string()
}

/// Call id → position in the thread's last tool-call message.
pub(super) fn last_call_order(thread: &Thread) -> HashMap<&str, usize> {
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
///
/// A call is a repeat when the model wrote the same arguments, or when what would run is
/// what ran: `effective` prepares an earlier call again, so a made-up value that grounding
/// replaced by the stated one (another date for the same search) counts as the same call.
pub(super) fn guard_repeats(
    thread: &Thread,
    run: &mut Run,
    calls: &[ToolCall],
    prepared: &mut [Prepared],
    effective: &dyn Fn(&ToolCall) -> Map<String, Value>,
) -> bool {
    let done = succeeded_in_run(thread, run);
    let mut repeated = false;
    for (call, prepared) in calls.iter().zip(prepared.iter_mut()) {
        let Prepared::Ready {
            args: runs_with,
            unstated,
            ..
        } = &*prepared
        else {
            continue;
        };
        let written = parse_arguments(&call.arguments).ok();
        let is_repeat = done.iter().any(|(earlier, ran)| {
            earlier.name == call.name
                && (written.as_ref().is_some_and(|args| {
                    same_values(&Value::Object(args.clone()), &Value::Object(ran.clone()))
                }) || same_values(
                    &Value::Object(runs_with.clone()),
                    &Value::Object(effective(earlier)),
                ))
        });
        if is_repeat {
            repeated = true;
            let message = if unstated.is_empty() {
                format!(
                    "`{}` already ran with these arguments in this run and its result is above; answer the user with it instead of calling it again",
                    call.name
                )
            } else {
                format!(
                    "`{}` already ran in this run with what the user stated, and its result is above: the {} you passed {} not stated by the user, so the stated {} used again. Answer the user with that result; if other values could help, suggest them and ask",
                    call.name,
                    unstated
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if unstated.len() == 1 { "was" } else { "were" },
                    if unstated.len() == 1 {
                        "value was"
                    } else {
                        "values were"
                    },
                )
            };
            *prepared = Prepared::Rejected(ToolError::new(ToolErrorKind::RepeatedCall, message));
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
pub(super) fn same_values(a: &Value, b: &Value) -> bool {
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
pub(super) fn end_loop(end: TurnEnd, run: &mut Run) -> TurnEnd {
    if !matches!(end, TurnEnd::Continue) {
        return end;
    }
    run.incomplete_details = Some(IncompleteReason::RepeatedCall);
    TurnEnd::Stop(RunStatus::Incomplete)
}

/// The calls that succeeded in `run` so far, with their arguments as the model wrote them.
/// The run's messages are the last ones of the thread, so only they are read.
pub(super) fn succeeded_in_run<'a>(
    thread: &'a Thread,
    run: &Run,
) -> Vec<(&'a ToolCall, Map<String, Value>)> {
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
                        done.push((call, args));
                    }
                }
            }
            _ => {}
        }
    }
    done
}

/// The arguments of a client call as prepared (for its `after` rules).
pub(super) fn prepared_args(
    flow: &Flow,
    validators: &Validators,
    call: &ToolCall,
    slots: &Map<String, Value>,
    said: &Said,
) -> Map<String, Value> {
    match prepare(flow, validators, call, slots, None, said) {
        Prepared::Ready { args, .. }
        | Prepared::NeedsInput { args, .. }
        | Prepared::NeedsConfirmation { args }
        | Prepared::Exhausted(GivenUp { args, .. }) => args,
        Prepared::Rejected(_) => Map::new(),
    }
}

/// What the user said in the thread, brought up to date from `messages` only when one of
/// `calls` has a grounded parameter (most turns need none); nothing said otherwise.
pub(super) fn said_for<'a>(
    flow: &Flow,
    calls: &[ToolCall],
    said: &'a mut Said,
    messages: &[Message],
) -> &'a Said {
    static NOTHING: Said = Said::EMPTY;
    let grounded = calls.iter().any(|call| {
        flow.tools
            .get(&call.name)
            .is_some_and(|tool| tool.params.values().any(|p| p.grounded))
    });
    if grounded {
        said.catch_up(messages);
        said
    } else {
        &NOTHING
    }
}

/// The output of a call to a tool the request did not offer (its `follows` not met): the
/// model reads what the user must see first.
fn not_offered(tool: &Tool) -> ToolError {
    let names: Vec<String> = tool.follows.iter().map(|t| format!("`{t}`")).collect();
    ToolError::new(
        ToolErrorKind::NotOffered,
        format!(
            "`{}` is not available yet: it follows {}, whose result the user must see and answer first. Show the user the result and ask them.",
            tool.name,
            names.join(" and ")
        ),
    )
}

/// The ready server-side calls of a turn, by index, with their tool, arguments and
/// idempotency key; client calls wait for the app.
fn runnable<'a>(
    flow: &'a Flow,
    run: &Run,
    calls: &[ToolCall],
    prepared: &'a [Prepared],
) -> Vec<(usize, &'a Tool, &'a Map<String, Value>, String)> {
    prepared
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Prepared::Ready { args, .. } => {
                let tool = flow.tools.get(&calls.get(i)?.name)?;
                let key = idempotency_key(&run.id, run.steps, &tool.name, args);
                (!matches!(tool.executor, Executor::Client)).then_some((i, tool, args, key))
            }
            _ => None,
        })
        .collect()
}
