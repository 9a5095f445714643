//! Quick fixes for what the diagnostics already suggest.
//!
//! The loader's help lines say how to fix most problems; two kinds are mechanical enough
//! to apply: "did you mean `X`?" (a misspelt key, slot, parameter, built-in or enum value)
//! replaces the text under the diagnostic with `X`, and an undeclared slot (`E011`) can be
//! declared by appending a `[slots.NAME]` table. The fixes are read from the diagnostics
//! the client sends back (message and range), so they work with any client that returns
//! them, whether or not it keeps a diagnostic's `data`.

use std::collections::HashMap;

use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, Diagnostic, NumberOrString, TextEdit,
    WorkspaceEdit,
};

use crate::document::Document;
use crate::symbols::{Index, Role, Symbol};

/// The quick fixes for `diagnostics` (those the client has under the requested range).
#[must_use]
pub fn code_actions(document: &Document, diagnostics: &[Diagnostic]) -> Vec<CodeActionOrCommand> {
    let mut actions = Vec::new();
    for diagnostic in diagnostics {
        if diagnostic.source.as_deref().is_some_and(|s| s != "clarion") {
            continue;
        }
        if let Some(suggestion) = suggestion(&diagnostic.message) {
            let span = document.lines.span(&document.text, diagnostic.range);
            let current = document.text.get(span).unwrap_or_default();
            let replacement = replacement(current, suggestion);
            actions.push(action(
                document,
                format!("Replace with `{}`", suggestion.trim_matches('"')),
                diagnostic,
                TextEdit::new(diagnostic.range, replacement),
                true,
            ));
        }
        let code = match &diagnostic.code {
            Some(NumberOrString::String(code)) => code.as_str(),
            _ => "",
        };
        if code == "E011"
            && let Some(slot) = first_quoted(&diagnostic.message)
        {
            let end = document.lines.position(&document.text, document.text.len());
            let separator = if document.text.ends_with("\n\n") || document.text.is_empty() {
                ""
            } else if document.text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            let kind = slot_type(document, slot);
            let table = format!(
                "{separator}[slots.{slot}]\ntype = \"{kind}\"\ndescription = \"TODO: what `{slot}` holds.\"\n"
            );
            actions.push(action(
                document,
                format!("Declare the slot: add `[slots.{slot}]`"),
                diagnostic,
                TextEdit::new(lsp_types::Range::new(end, end), table),
                false,
            ));
        }
    }
    actions
}

fn action(
    document: &Document,
    title: String,
    diagnostic: &Diagnostic,
    edit: TextEdit,
    preferred: bool,
) -> CodeActionOrCommand {
    CodeActionOrCommand::CodeAction(CodeAction {
        title,
        kind: Some(CodeActionKind::QUICKFIX),
        diagnostics: Some(vec![diagnostic.clone()]),
        edit: Some(WorkspaceEdit {
            changes: Some(HashMap::from([(document.uri.clone(), vec![edit])])),
            ..WorkspaceEdit::default()
        }),
        is_preferred: Some(preferred),
        ..CodeAction::default()
    })
}

/// `X` in a help line "did you mean `X`?".
fn suggestion(message: &str) -> Option<&str> {
    let rest = &message[message.find("did you mean `")? + "did you mean `".len()..];
    let end = rest.find("`?")?;
    Some(&rest[..end])
}

/// The first name between backticks (`slot `risk` is not declared` → `risk`).
fn first_quoted(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// What replaces `current` to apply "did you mean `suggestion`?": quotes kept around a
/// string value, and in a dotted template name only the misspelt part replaced.
fn replacement(current: &str, suggestion: &str) -> String {
    if suggestion.starts_with('"') {
        return suggestion.to_owned();
    }
    for quote in ['"', '\''] {
        if current.len() >= 2 && current.starts_with(quote) && current.ends_with(quote) {
            return format!("{quote}{suggestion}{quote}");
        }
    }
    if suggestion.contains('.') || !current.contains('.') {
        return suggestion.to_owned();
    }
    match current.split_once('.') {
        // `slots.risk_tolerence` → `slots.risk_tolerance`: the root is right, the name not.
        Some((root, _))
            if ["slots", "args", "result", "env", "error", "metadata"].contains(&root) =>
        {
            format!("{root}.{suggestion}")
        }
        // `slot.goal` → `slots.goal`: the root is misspelt.
        Some((_, rest)) => format!("{suggestion}.{rest}"),
        None => suggestion.to_owned(),
    }
}

/// The type of a parameter that fills `slot`, else `string`.
fn slot_type(document: &Document, slot: &str) -> String {
    let index = Index::of(&document.text);
    index
        .of_symbol(&Symbol::Slot(slot.to_owned()))
        .iter()
        .filter(|o| o.role == Role::Fills)
        .find_map(|o| {
            let param = o.at.strip_suffix("/slot")?;
            index
                .json
                .pointer(param)?
                .get("type")?
                .as_str()
                .map(ToOwned::to_owned)
        })
        .unwrap_or_else(|| "string".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_keep_what_was_right() {
        assert_eq!(replacement("aks", "ask"), "ask");
        assert_eq!(replacement("\"goel\"", "goal"), "\"goal\"");
        assert_eq!(replacement("\"get\"", "\"GET\""), "\"GET\"");
        assert_eq!(replacement("slots.gaol", "goal"), "slots.goal");
        assert_eq!(replacement("slot.goal", "slots"), "slots.goal");
        assert_eq!(
            replacement("args.amount", "args.principal"),
            "args.principal"
        );
        assert_eq!(suggestion("x\nhelp: did you mean `ask`?"), Some("ask"));
        assert_eq!(first_quoted("slot `risk` is not declared"), Some("risk"));
    }
}
