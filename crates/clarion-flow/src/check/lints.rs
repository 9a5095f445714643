//! Warnings: a flow that loads but probably does not do what its author meant.

use super::Checker;
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::spans::pointer;

pub(super) fn check(checker: &mut Checker<'_>) {
    let file = checker.file;
    for (tool, spec) in &file.tools {
        let at = pointer(&["tools", tool]);
        if checker.broken.covers(&at) {
            continue;
        }
        // A broken key may be a misspelt `description`; the typo is reported already.
        // An MCP tool's description comes from its server.
        if !checker.broken.has_broken_key(&at)
            && spec.mcp.is_none()
            && spec
                .description
                .as_deref()
                .is_none_or(|d| d.trim().is_empty())
        {
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::MissingToolDescription { tool: tool.clone() },
                    checker.key(&at),
                )
                .with_label("the model cannot tell when to call this")
                .with_help("add `description = \"…\"`: what the tool does and when to use it"),
            );
        }
        for (param, param_spec) in &spec.params {
            let param_at = pointer(&["tools", tool, "params", param]);
            // An MCP tool's parameters are described by its server.
            if checker.broken.covers(&param_at)
                || checker.broken.has_broken_key(&param_at)
                || spec.mcp.is_some()
            {
                continue;
            }
            // A `$ref` file may carry the description; one that could not be read was
            // reported already.
            let from_file = match &param_spec.schema_ref {
                Some(_) => match checker.resolved_refs.get(&param_at) {
                    Some(schema) => schema
                        .get("description")
                        .and_then(serde_json::Value::as_str),
                    None => continue,
                },
                None => None,
            };
            let described = |d: Option<&str>| d.is_some_and(|d| !d.trim().is_empty());
            if !described(param_spec.description.as_deref()) && !described(from_file) {
                checker.report(
                    Diagnostic::new(
                        DiagnosticKind::MissingParamDescription {
                            tool: tool.clone(),
                            param: param.clone(),
                        },
                        checker.key(&param_at),
                    )
                    .with_label("the model has only the name to go on")
                    .with_help("add `description = \"…\"`: what the value means, with its unit"),
                );
            }
        }
        for (i, rule) in spec.after.iter().enumerate() {
            let rule_at = pointer(&["tools", tool, "after", &i.to_string()]);
            if checker.broken.covers(&rule_at) || checker.broken.has_broken_key(&rule_at) {
                continue;
            }
            if rule.inject.is_none() && rule.set.is_empty() {
                let span = checker
                    .key(&format!("{rule_at}/when"))
                    .or_else(|| checker.value(&rule_at));
                checker.report(
                    Diagnostic::new(DiagnosticKind::EmptyAfterRule { tool: tool.clone() }, span)
                        .with_label("no `inject` and no `set`")
                        .with_help("add `inject = \"…\"` or `set = { slot = \"expression\" }`, or remove the rule"),
                );
            }
        }
    }
    for slot in file.slots.keys() {
        let at = pointer(&["slots", slot]);
        if !slot_is_used(checker, slot) {
            checker.report(
                Diagnostic::new(DiagnosticKind::UnusedSlot { slot: slot.clone() }, checker.key(&at))
                    .with_label("nothing reads or writes this slot")
                    .with_help("link it to a parameter with `slot = \"…\"`, set it in an `after` rule, or remove it"),
            );
        }
    }
}

/// A slot is used when a parameter links to it, an `after` rule sets it, or any template
/// text mentions `slots.NAME`.
fn slot_is_used(checker: &Checker<'_>, slot: &str) -> bool {
    let file = checker.file;
    let mention = format!("slots.{slot}");
    let mentions = |text: &str| {
        text.match_indices(&mention).any(|(i, _)| {
            !text[i + mention.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    mentions(&file.assistant.instructions)
        || file.tools.values().any(|tool| {
            tool.params
                .values()
                .any(|p| p.slot.as_deref() == Some(slot) || p.ask.as_deref().is_some_and(mentions))
                || tool.after.iter().any(|rule| {
                    rule.set.contains_key(slot)
                        || rule.when.as_deref().is_some_and(mentions)
                        || rule.inject.as_deref().is_some_and(mentions)
                        || rule.set.values().any(|v| mentions(v))
                })
                || tool.on_error.as_ref().is_some_and(|e| mentions(&e.inject))
                || tool.returns.contains_key(slot)
                || tool.with.values().any(|v| mentions(v))
        })
}
