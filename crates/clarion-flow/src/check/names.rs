//! Names: tools as providers accept them, parameters and slots as templates can read them.
//!
//! OpenAI, Azure and the local servers all reject function names outside
//! `^[a-zA-Z0-9_-]{1,64}$`. Parameter and slot names must be identifiers so templates can
//! say `args.goal_amount` and `slots.risk_tolerance`.

use super::Checker;
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::spans::pointer;

/// Whether providers accept `name` as a function name.
#[must_use]
pub fn is_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `name` is an identifier templates can use after a dot.
#[must_use]
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

/// A suggested replacement: invalid characters become `_`.
fn sanitized(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

pub(super) fn check(checker: &mut Checker<'_>) {
    let file = checker.file;
    for (tool, spec) in &file.tools {
        if !is_tool_name(tool) {
            let at = pointer(&["tools", tool]);
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::InvalidToolName { name: tool.clone() },
                    checker.key(&at),
                )
                .with_label("rejected by OpenAI-compatible providers")
                .with_help(format!(
                    "tool names must match ^[a-zA-Z0-9_-]{{1,64}}$, e.g. `{}`",
                    sanitized(tool)
                )),
            );
        }
        if tool == crate::export::REPLY_TOOL
            && file.assistant.tool_choice == Some(crate::spec::ToolChoice::Required)
        {
            let at = pointer(&["tools", tool]);
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::ReservedToolName {
                        name: tool.clone(),
                        reason: "with `tool_choice = \"required\"` Clarion adds its own `reply` tool, through which the model answers in words".to_owned(),
                    },
                    checker.key(&at),
                )
                .with_label("clashes with Clarion's own tool")
                .with_help("rename the tool, e.g. `send_reply`"),
            );
        }
        for (i, name) in spec.follows.iter().enumerate() {
            if name != tool && file.tools.contains_key(name) {
                continue;
            }
            let at = pointer(&["tools", tool, "follows", &i.to_string()]);
            let others = file.tools.keys().filter(|t| *t != tool).map(String::as_str);
            let help = if name == tool {
                "a tool cannot follow itself: name the tool whose result the user sees first"
                    .to_owned()
            } else {
                match crate::suggest::closest(name, others.clone()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!(
                        "the other tools are {}",
                        crate::suggest::list(&others.map(str::to_owned).collect::<Vec<_>>())
                    ),
                }
            };
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::UnknownFollowedTool {
                        tool: tool.clone(),
                        name: name.clone(),
                    },
                    checker.value(&at),
                )
                .with_label("not another tool of this flow")
                .with_help(help),
            );
        }
        for param in spec.params.keys() {
            if !is_identifier(param) {
                let at = pointer(&["tools", tool, "params", param]);
                checker.report(invalid_name("parameter", param, checker.key(&at)));
            }
        }
    }
    for slot in file.slots.keys() {
        if !is_identifier(slot) {
            let at = pointer(&["slots", slot]);
            checker.report(invalid_name("slot", slot, checker.key(&at)));
        }
    }
}

fn invalid_name(
    kind: &'static str,
    name: &str,
    span: Option<std::ops::Range<usize>>,
) -> Diagnostic {
    Diagnostic::new(
        DiagnosticKind::InvalidName {
            kind,
            name: name.to_owned(),
        },
        span,
    )
    .with_label("templates cannot read this name")
    .with_help(format!(
        "use letters, digits and `_`, not starting with a digit (at most 64), e.g. `{}`",
        sanitized(name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_rules_for_tool_names() {
        assert!(is_tool_name("calculate_savings-timeline2"));
        assert!(!is_tool_name("finance.plan"));
        assert!(!is_tool_name(""));
        assert!(!is_tool_name(&"x".repeat(65)));
    }

    #[test]
    fn identifiers_for_templates() {
        assert!(is_identifier("goal_amount"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("goal-amount"));
        assert_eq!(sanitized("goal-amount"), "goal_amount");
        assert_eq!(sanitized("1x"), "_1x");
    }
}
