//! Structural checks of a scenario against the scenario format's own JSON Schema.
//!
//! Every problem the schema finds becomes a located diagnostic with the same codes and
//! wording as a flow's (`E004` unknown key, `E005` wrong type, `E006` missing key, `E007`
//! invalid value), using the flow loader's span index and naming helpers. A scenario with
//! structural errors is not checked further: unlike a flow, nothing in it is worth
//! salvaging for follow-on checks.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;
use std::fmt::Write as _;

use super::schema::{keys_at, scenario_schema};
use clarion_flow::diagnostic::{Diagnostic, DiagnosticKind};
use clarion_flow::schema::{resolve, schema_at};
use clarion_flow::spans::{SpanIndex, escape};
use clarion_flow::structure::{one_of, table_name, toml_type, words};
use clarion_flow::suggest;

/// Validates `document` against the scenario schema; every problem, located.
#[must_use]
pub fn check(document: &Value, spans: &SpanIndex) -> Vec<Diagnostic> {
    let Some(validator) = validator() else {
        return Vec::new();
    };
    let errors: Vec<_> = validator.iter_errors(document).collect();
    let misspelt = misspelt_keys(&errors);
    let mut diagnostics = Vec::new();
    for error in &errors {
        let at = error.instance_path().as_str().to_owned();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    diagnostics.push(unknown_key(&at, key, spans));
                }
            }
            ValidationErrorKind::Required { property } => {
                let key = property.as_str().unwrap_or_default().to_owned();
                if !misspelt.contains(&(at.clone(), key.clone())) {
                    diagnostics.push(missing_key(&at, &key, spans));
                }
            }
            kind => diagnostics.push(bad_value(
                &at,
                kind,
                error.instance(),
                spans,
                &error.to_string(),
            )),
        }
    }
    diagnostics
}

fn validator() -> Option<&'static jsonschema::Validator> {
    static VALIDATOR: std::sync::OnceLock<Option<jsonschema::Validator>> =
        std::sync::OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::draft7::new(scenario_schema()).ok())
        .as_ref()
}

/// Keys reported unknown that look like a typo of a missing required key (the `keys_at`
/// here is the scenario schema's, so this is not the flow's twin).
fn misspelt_keys(errors: &[jsonschema::ValidationError<'_>]) -> Vec<(String, String)> {
    let mut misspelt = Vec::new();
    for error in errors {
        if let ValidationErrorKind::AdditionalProperties { unexpected } = error.kind() {
            let at = error.instance_path().as_str();
            let accepted = keys_at(at);
            for key in unexpected {
                if let Some(near) = suggest::closest(key, accepted.iter().map(String::as_str)) {
                    misspelt.push((at.to_owned(), near.to_owned()));
                }
            }
        }
    }
    misspelt
}

fn unknown_key(at: &str, key: &str, spans: &SpanIndex) -> Diagnostic {
    let here = format!("{at}/{}", escape(key));
    let accepted = keys_at(at);
    let help = match suggest::closest(key, accepted.iter().map(String::as_str)) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!("{} accepts {}", table_name(at), suggest::list(&accepted)),
    };
    Diagnostic::new(
        DiagnosticKind::UnknownKey {
            key: key.to_owned(),
            table: table_name(at),
        },
        spans.key_span(&here),
    )
    .with_label("unknown key")
    .with_help(help)
}

fn missing_key(at: &str, key: &str, spans: &SpanIndex) -> Diagnostic {
    let span = if at.is_empty() {
        None
    } else {
        spans.key_span(at)
    };
    let help = match key {
        "turns" => "add a turn: `[[turns]]`, `user = \"…\"`, then `[[turns.model]]` with `text = \"…\"`".to_owned(),
        "user" => "add what the user says, e.g. `user = \"How long to save 10k?\"`".to_owned(),
        "model" => "add what the model does, e.g. `[[turns.model]]` with `text = \"…\"` or `call = \"TOOL\"`".to_owned(),
        "message" => "add it, e.g. `error = { kind = \"failed\", message = \"division by zero\" }`".to_owned(),
        _ => format!("add `{key}` to {}", table_name(at)),
    };
    Diagnostic::new(
        DiagnosticKind::MissingKey {
            key: key.to_owned(),
            table: table_name(at),
        },
        span,
    )
    .with_label(format!("`{key}` is required here"))
    .with_help(help)
}

fn bad_value(
    at: &str,
    kind: &ValidationErrorKind,
    instance: &Value,
    spans: &SpanIndex,
    fallback: &str,
) -> Diagnostic {
    let key = key_name(at);
    let span = spans.value_span(at);
    let wrong_type = |expected: &[&str]| {
        let expected = words(expected);
        Diagnostic::new(
            DiagnosticKind::WrongType {
                key: key.clone(),
                expected: expected.clone(),
                found: toml_type(instance).to_owned(),
            },
            span.clone(),
        )
        .with_label(format!("expected {expected}"))
    };
    let invalid = |reason: String| {
        Diagnostic::new(
            DiagnosticKind::InvalidValue {
                key: key.clone(),
                reason,
            },
            span.clone(),
        )
    };
    match kind {
        ValidationErrorKind::Type { kind } => {
            let expected: Vec<&str> = match kind {
                TypeKind::Single(t) => vec![type_words(&t.to_string())],
                TypeKind::Multiple(set) => set.iter().map(|t| type_words(&t.to_string())).collect(),
            };
            let diagnostic = wrong_type(&expected);
            if instance.is_object() && expected == ["an array"] {
                return diagnostic.with_help(format!("write each entry as `[[{key}]]`"));
            }
            diagnostic
        }
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            let node = property_schema(at);
            if let Some(options) = node.and_then(constants) {
                return one_of(invalid, &options, instance);
            }
            let expected = node.map(branch_types).unwrap_or_default();
            if expected.is_empty() {
                invalid(fallback.to_owned())
            } else {
                wrong_type(&expected)
            }
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<Value> = options.as_array().cloned().unwrap_or_default();
            one_of(invalid, &options, instance)
        }
        ValidationErrorKind::MinLength { .. } => invalid("must not be empty".to_owned()),
        ValidationErrorKind::MinItems { .. } => invalid("needs at least one entry".to_owned()),
        _ => invalid(fallback.to_owned()),
    }
}

/// The schema of the key at `at`, with wrappers and `$ref`s resolved.
fn property_schema(at: &str) -> Option<&'static Value> {
    let (parent, last) = at.rsplit_once('/')?;
    let last = last.replace("~1", "/").replace("~0", "~");
    let root = scenario_schema();
    let node = schema_at(root, parent)?.get("properties")?.get(&last)?;
    resolve(root, node)
}

/// The constants of an enum written as `oneOf` of `const`s.
fn constants(node: &Value) -> Option<Vec<Value>> {
    let branches = node
        .get("oneOf")
        .or_else(|| node.get("anyOf"))?
        .as_array()?;
    branches.iter().map(|b| b.get("const").cloned()).collect()
}

/// What the `anyOf` branches of `node` accept, in words.
fn branch_types(node: &'static Value) -> Vec<&'static str> {
    let root = scenario_schema();
    let mut types = Vec::new();
    for branch in node
        .get("anyOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let branch = resolve(root, branch).unwrap_or(branch);
        let words = match branch.get("type").and_then(Value::as_str) {
            Some("array") => {
                let item = branch.get("items").and_then(|i| resolve(root, i));
                match item.and_then(|i| i.get("type")).and_then(Value::as_str) {
                    Some("object") => "an array of tables",
                    Some("string") => "an array of strings",
                    _ => "an array",
                }
            }
            Some(other) => type_words(other),
            None => continue,
        };
        if !types.contains(&words) {
            types.push(words);
        }
    }
    types
}

/// `turns[1].expect.run_status`-style name of the key at `at`; list entries count from 1,
/// as turns do in every scenario message.
#[must_use]
pub fn key_name(at: &str) -> String {
    let mut name = String::new();
    for segment in at.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if let Ok(index) = segment.parse::<usize>() {
            let _ = write!(name, "[{}]", index + 1);
            continue;
        }
        if !name.is_empty() {
            name.push('.');
        }
        let bare = !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare {
            name.push_str(&segment);
        } else {
            let _ = write!(name, "\"{}\"", segment.replace('"', "\\\""));
        }
    }
    name
}

fn type_words(name: &str) -> &'static str {
    match name {
        "object" => "a table",
        "array" => "an array",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        _ => "nothing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_list_entries_from_one() {
        assert_eq!(
            key_name("/turns/0/expect/run_status"),
            "turns[1].expect.run_status"
        );
        assert_eq!(
            key_name("/turns/1/model/0/calls/2/tool"),
            "turns[2].model[1].calls[3].tool"
        );
        assert_eq!(key_name("/mocks/a b/result"), "mocks.\"a b\".result");
    }
}
