//! `after` and `on_error` rules, the questions asked for missing parameters (with the
//! flow's `invalid` message for a rejected value), and what `on_exhausted` says.
//!
//! Rules were compiled and name-checked at load time, so what can still go wrong is data:
//! a result without the field a template prints, a `set` value that does not fit its slot.
//! Such a rule is skipped with a `RuleSkipped` event — the run goes on, and the flow's
//! author sees exactly which rule did not apply and why.

use serde_json::{Map, Value};

use super::call::{Rejection, Validators};
use crate::events::{Event, EventSink, RuleRef};
use crate::tool::ToolError;
use clarion_flow::Flow;
use clarion_flow::Tool;
use clarion_flow::check::params::suggested_question;
use clarion_flow::template::{Precompiled, describe, environment, to_value};

/// What the rules of one call produced.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct RuleEffects {
    /// Context messages to inject, in rule order.
    pub contexts: Vec<String>,
}

/// The templates and expressions a run renders, compiled once: `flow`'s instructions
/// (every model request) and every `after` and `on_error` rule (every tool result).
pub(crate) fn precompile(flow: &Flow) -> Precompiled {
    let tools = flow.tools.values();
    let after = || tools.clone().flat_map(|tool| &tool.after);
    let instructions = std::iter::once(flow.assistant.instructions.as_str());
    let templates = instructions
        .chain(after().filter_map(|rule| rule.inject.as_deref()))
        .chain(
            tools
                .clone()
                .filter_map(|tool| Some(tool.on_error.as_ref()?.inject.as_str())),
        );
    let expressions = after().flat_map(|rule| {
        rule.when
            .as_deref()
            .into_iter()
            .chain(rule.set.values().map(String::as_str))
    });
    Precompiled::new(templates, expressions)
}

/// Applies `tool`'s `after` rules for a successful call, updating `slots` in place.
/// `compiled` holds the flow's rules compiled ([`precompile`]).
pub(crate) fn after(
    tool: &Tool,
    compiled: &Precompiled,
    validators: &Validators,
    args: &Map<String, Value>,
    result: &Value,
    slots: &mut Map<String, Value>,
    events: &dyn EventSink,
) -> RuleEffects {
    let mut effects = RuleEffects::default();
    let skip = |reason: String| {
        events.emit(&Event::RuleSkipped {
            tool: tool.name.clone(),
            reason,
        });
    };
    for (i, rule) in tool.after.iter().enumerate() {
        let number = i + 1;
        let context = minijinja::context! {
            args => to_value(args),
            result => to_value(result),
            slots => to_value(&*slots),
        };
        let evaluated = |applied: bool| {
            events.emit(&Event::RuleEvaluated {
                tool: tool.name.clone(),
                rule: RuleRef::After { index: i },
                applied,
            });
        };
        if let Some(when) = &rule.when {
            let applies = compiled.eval(when, context.clone());
            match applies {
                Ok(value) if value.is_true() => evaluated(true),
                Ok(_) => {
                    evaluated(false);
                    continue;
                }
                Err(error) => {
                    skip(format!(
                        "after rule #{number}: `when` failed: {}",
                        describe(&error)
                    ));
                    continue;
                }
            }
        } else {
            evaluated(true);
        }
        for (slot, expression) in &rule.set {
            let value = compiled.eval(expression, context.clone());
            match value {
                Ok(value) if value.is_undefined() => {
                    skip(format!(
                        "after rule #{number}: `{expression}` is undefined, slot `{slot}` left unchanged"
                    ));
                }
                Ok(value) => match serde_json::to_value(&value) {
                    Ok(json) if validators.slot_accepts(slot, &json) => {
                        if slots.get(slot) != Some(&json) {
                            slots.insert(slot.clone(), json.clone());
                            events.emit(&Event::SlotSet {
                                name: slot.clone(),
                                value: json,
                            });
                        }
                    }
                    Ok(json) => skip(format!(
                        "after rule #{number}: {json} does not fit slot `{slot}`, left unchanged"
                    )),
                    Err(error) => skip(format!(
                        "after rule #{number}: cannot store `{expression}`: {error}"
                    )),
                },
                Err(error) => skip(format!(
                    "after rule #{number}: `{expression}` failed: {}",
                    describe(&error)
                )),
            }
        }
        if let Some(inject) = &rule.inject {
            match compiled.render(inject, context) {
                Ok(text) if !text.trim().is_empty() => {
                    effects.contexts.push(text.trim().to_owned());
                }
                Ok(_) => {}
                Err(error) => skip(format!(
                    "after rule #{number}: `inject` failed: {}",
                    describe(&error)
                )),
            }
        }
    }
    effects
}

/// Applies `tool`'s `on_error` rule for a failed call.
pub(crate) fn on_error(
    tool: &Tool,
    compiled: &Precompiled,
    args: &Map<String, Value>,
    error: &ToolError,
    slots: &Map<String, Value>,
    events: &dyn EventSink,
) -> RuleEffects {
    let mut effects = RuleEffects::default();
    if let Some(rule) = &tool.on_error {
        events.emit(&Event::RuleEvaluated {
            tool: tool.name.clone(),
            rule: RuleRef::OnError,
            applied: true,
        });
        let context = minijinja::context! {
            args => to_value(args),
            error => minijinja::context! { kind => error.kind.as_str(), message => error.message.clone() },
            slots => to_value(slots),
        };
        match compiled.render(&rule.inject, context) {
            Ok(text) if !text.trim().is_empty() => {
                effects.contexts.push(text.trim().to_owned());
            }
            Ok(_) => {}
            Err(error) => events.emit(&Event::RuleSkipped {
                tool: tool.name.clone(),
                reason: format!("`on_error.inject` failed: {}", describe(&error)),
            }),
        }
    }
    effects
}

/// The question for `missing` parameters of `tool`: each parameter's `ask`, rendered with
/// the known arguments and slots, in declaration order — or, for a value in `rejected`, its
/// `invalid` message, which also reads `error`. A parameter without either (or whose
/// template fails to render) gets a question built from its description.
#[must_use]
pub(crate) fn question(
    tool: &Tool,
    args: &Map<String, Value>,
    missing: &[String],
    rejected: &[Rejection],
    slots: &Map<String, Value>,
) -> String {
    let mut questions = Vec::new();
    for name in missing {
        let Some(param) = tool.params.get(name) else {
            continue;
        };
        let invalid = rejected
            .iter()
            .find(|r| &r.param == name)
            .and_then(|rejection| {
                let template = param.invalid.as_ref()?;
                let context = minijinja::context! {
                    args => to_value(args),
                    slots => to_value(slots),
                    error => minijinja::context! {
                        keyword => rejection.keyword.clone(),
                        limit => rejection.limit.as_ref().map(to_value),
                        value => to_value(&rejection.value),
                    },
                };
                environment().render_str(template, context).ok()
            })
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty());
        let rendered = invalid.or_else(|| {
            param
                .ask
                .as_ref()
                .and_then(|ask| render_with_args(ask, args, slots))
        });
        questions.push(
            rendered.unwrap_or_else(|| suggested_question(name, param.description.as_deref())),
        );
    }
    questions.join(" ")
}

/// A template over `args` and `slots` — a question (`ask`, `confirm`) or an
/// `on_exhausted` text — rendered; `None` when it fails or renders to nothing, so the
/// caller falls back to a plain question (or applies the outcome without the text).
#[must_use]
pub(crate) fn render_with_args(
    template: &str,
    args: &Map<String, Value>,
    slots: &Map<String, Value>,
) -> Option<String> {
    let context = minijinja::context! {
        args => to_value(args),
        slots => to_value(slots),
    };
    environment()
        .render_str(template, context)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}
