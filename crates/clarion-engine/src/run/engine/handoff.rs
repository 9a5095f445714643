//! Handing a thread to another flow (`flow = "…"` tools) and back (`returns`).
//!
//! The engine answers a flow tool's call itself, as any call is answered: the output says
//! which flow took over, so the pairing rule holds and the model that made the call sees
//! it. Once the turn has landed, the thread's route gains that flow, whose slots `with`
//! fills, and the run goes on: the next request is the other flow's (its instructions,
//! tools and slots), answering the same user message. The flow before keeps its slots in
//! the route.
//!
//! A flow handed the thread with `returns` hands it back at the end of the first run
//! after which it has every slot named there — a rule of the flow files, not a tool the
//! model must remember to call. Those values fill the slots of the flow before, a context
//! message tells its model what came back, and the user's next message is its again.
//!
//! One thing at a time: a handoff made beside another handoff, a client tool or a call
//! that needs the user (a question, a confirmation) is answered `handoff_deferred`, and
//! the model makes it again once that is done.

use serde_json::{Map, Value, json};

use super::{Engine, Part};
use crate::codes::ToolErrorKind;
use crate::events::{Event, EventSink};
use crate::run::Run;
use crate::run::call::Prepared;
use crate::thread::{Handoff, MessageKind, Thread, ToolCall};
use crate::tool::ToolError;
use clarion_flow::model::FlowLink;
use clarion_flow::template::{describe, environment, to_value};
use clarion_flow::{Executor, Flow, Tool};

/// A flow tool's call that ran: the thread is handed over once the turn has landed.
pub(super) struct HandingOff {
    pub call_id: String,
    pub tool: String,
    pub link: FlowLink,
    pub args: Map<String, Value>,
}

impl HandingOff {
    /// The handoff a call that ran makes, if its tool is a flow tool.
    pub(super) fn of(tool: &Tool, call: &ToolCall, args: &Map<String, Value>) -> Option<Self> {
        match &tool.executor {
            Executor::Flow(link) => Some(Self {
                call_id: call.id.clone(),
                tool: tool.name.clone(),
                link: link.clone(),
                args: args.clone(),
            }),
            _ => None,
        }
    }
}

impl HandingOff {
    /// The handoff through `flow`'s tool `via` that a parameter's `on_exhausted` makes:
    /// no call of that tool was made, so `with` reads no `args`.
    pub(super) fn via(flow: &Flow, via: &str) -> Option<Self> {
        Some(Self {
            call_id: String::new(),
            tool: via.to_owned(),
            link: link(flow, via)?.clone(),
            args: Map::new(),
        })
    }
}

/// The output of a flow tool's call: the model that made it reads this.
pub(super) fn output(link: &FlowLink) -> Value {
    json!({
        "handed_off_to": link.flow.name,
        "comes_back": link.comes_back(),
    })
}

/// The flow `flow`'s tool `tool` hands the thread to, if it is a flow tool.
pub(super) fn link<'f>(flow: &'f Flow, tool: &str) -> Option<&'f FlowLink> {
    match &flow.tools.get(tool)?.executor {
        Executor::Flow(link) => Some(link),
        _ => None,
    }
}

/// Answers `handoff_deferred` to every ready flow tool's call but the first, and to that
/// one too when the turn also needs the user or the app.
pub(super) fn defer_extra(flow: &Flow, calls: &[ToolCall], prepared: &mut [Prepared]) {
    let busy = calls.iter().zip(prepared.iter()).any(|(call, p)| {
        matches!(
            p,
            Prepared::NeedsInput { .. }
                | Prepared::NeedsConfirmation { .. }
                | Prepared::Exhausted(_)
        ) || flow
            .tools
            .get(&call.name)
            .is_some_and(|t| matches!(t.executor, Executor::Client))
    });
    let mut taken = false;
    for (call, prepared) in calls.iter().zip(prepared.iter_mut()) {
        let Some(link) = link(flow, &call.name) else {
            continue;
        };
        if !matches!(prepared, Prepared::Ready { .. }) {
            continue;
        }
        if busy || taken {
            *prepared = Prepared::Rejected(ToolError::new(
                ToolErrorKind::HandoffDeferred,
                format!(
                    "`{}` hands the conversation to `{}`, and this turn has {} first; nothing was done. Call it again once that is done",
                    call.name,
                    link.flow.name,
                    if taken {
                        "another handoff"
                    } else {
                        "a question for the user or a call for the app"
                    }
                ),
            ));
        }
        taken = true;
    }
}

impl Engine {
    /// Hands `thread` to the flow of a flow tool's call that ran.
    pub(super) fn hand_off(
        &self,
        thread: &mut Thread,
        handing: HandingOff,
        events: &dyn EventSink,
    ) {
        let from = thread.active_flow().to_owned();
        let HandingOff {
            call_id,
            tool,
            link,
            args,
        } = handing;
        let to = link.flow.name.clone();
        let Some(next) = self.parts.get(&to) else {
            return; // unreachable: every linked flow is a part
        };
        let slots = filled(&tool, &link, next, &args, &thread.slots, events);
        let slots_before = std::mem::replace(&mut thread.slots, slots.clone());
        thread.route.push(Handoff {
            flow: to.clone(),
            tool: tool.clone(),
            slots_before,
            comes_back: link.comes_back(),
        });
        tracing::info!(from = %from, to = %to, tool = %tool, "handed the thread to another flow");
        events.emit(&Event::HandedOff {
            call_id,
            tool,
            from,
            to,
            comes_back: link.comes_back(),
            slots,
        });
    }

    /// At the end of a completed run: hands the thread back to the flow before when the
    /// flow running it was handed it with `returns` and now has every slot named there.
    pub(super) fn hand_back(&self, thread: &mut Thread, run: &Run, events: &dyn EventSink) {
        let Some(top) = thread.route.last().filter(|h| h.comes_back) else {
            return;
        };
        let before =
            crate::thread::active_flow(&thread.flow, &thread.route[..thread.route.len() - 1])
                .to_owned();
        let Some(part) = self.parts.get(&before) else {
            return;
        };
        let Some(link) = link(&part.flow, &top.tool) else {
            return;
        };
        if !link
            .returns
            .values()
            .all(|theirs| thread.slots.contains_key(theirs))
        {
            return;
        }
        let Some(top) = thread.route.pop() else {
            return;
        };
        let theirs = std::mem::replace(&mut thread.slots, top.slots_before);
        let mut filled = Map::new();
        for (own, their) in &link.returns {
            let Some(value) = theirs.get(their) else {
                continue;
            };
            if part.validators.slot_accepts(own, value) {
                thread.slots.insert(own.clone(), value.clone());
                filled.insert(own.clone(), value.clone());
            } else {
                events.emit(&Event::RuleSkipped {
                    tool: top.tool.clone(),
                    reason: format!("`returns`: {value} does not fit slot `{own}`, left unchanged"),
                });
            }
        }
        let values: Vec<String> = filled.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let text = format!(
            "`{}` is done and handed the conversation back{}.",
            top.flow,
            if values.is_empty() {
                String::new()
            } else {
                format!(" with {}", values.join(", "))
            }
        );
        thread.messages.push(self.message(
            run,
            MessageKind::Context {
                tool: top.tool.clone(),
                text,
            },
        ));
        tracing::info!(from = %top.flow, to = %before, "the thread came back");
        events.emit(&Event::HandedBack {
            from: top.flow,
            to: before,
            slots: filled,
        });
    }
}

/// The other flow's slots as it takes over: `with`, each value checked against its slot.
fn filled(
    tool: &str,
    link: &FlowLink,
    next: &Part,
    args: &Map<String, Value>,
    slots: &Map<String, Value>,
    events: &dyn EventSink,
) -> Map<String, Value> {
    let context = minijinja::context! {
        args => to_value(args),
        slots => to_value(slots),
    };
    let mut filled = Map::new();
    for (slot, expression) in &link.with {
        let skip = |reason: String| {
            events.emit(&Event::RuleSkipped {
                tool: tool.to_owned(),
                reason: format!("`with`: {reason}"),
            });
        };
        match environment()
            .compile_expression(expression)
            .and_then(|e| e.eval(context.clone()))
        {
            Ok(value) if value.is_undefined() || value.is_none() => {}
            Ok(value) => match serde_json::to_value(&value) {
                Ok(json) if next.validators.slot_accepts(slot, &json) => {
                    filled.insert(slot.to_owned(), json);
                }
                Ok(json) => skip(format!("{json} does not fit slot `{slot}`, left unset")),
                Err(error) => skip(format!("cannot store `{expression}`: {error}")),
            },
            Err(error) => skip(format!("`{expression}` failed: {}", describe(&error))),
        }
    }
    filled
}
