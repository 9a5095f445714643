//! Tools that name a built-in must fit it: the name exists, and the flow's parameters are
//! the function's, with compatible types, enums and required-ness.
//!
//! Runs only when the loader is given a [`BuiltinCatalog`](crate::BuiltinCatalog).
//! The comparison is deliberately shallow — top-level parameters, their `type`, `enum` and
//! whether they are required — because that is what goes wrong when a flow and a Rust
//! function drift apart (a renamed parameter, a number where an integer is needed, a new
//! enum value). Ranges (`minimum`…) may be narrower in the flow than in Rust, and the
//! built-in checks its own invariants at run time.

use serde_json::{Map, Value};

use super::Checker;
use super::params::{declared_types, is_required, model_schema};
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::spans::pointer;
use crate::suggest;

pub(super) fn check(checker: &mut Checker<'_>) {
    let Some(catalog) = checker.builtins else {
        return;
    };
    for (tool, spec) in &checker.file.tools {
        let Some(builtin) = &spec.builtin else {
            continue;
        };
        // A tool with several executors is `E009`; which one the author meant is open, so
        // the built-in is not held against the tool's parameters as well.
        if spec.http.is_some()
            || spec.command.is_some()
            || spec.mcp.is_some()
            || spec.client == Some(true)
        {
            continue;
        }
        let at = pointer(&["tools", tool]);
        let builtin_at = format!("{at}/builtin");
        if checker.broken.covers(&builtin_at) {
            continue;
        }
        let Some(schema) = catalog.describe(builtin) else {
            let names = catalog.names();
            let help = match suggest::closest(builtin, names.iter().map(String::as_str)) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("the built-ins are {}", suggest::list(&names)),
            };
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::UnknownBuiltin {
                        name: builtin.clone(),
                    },
                    checker.value(&builtin_at),
                )
                .with_label("no built-in has this name")
                .with_help(help),
            );
            continue;
        };
        if checker.broken.covers(&format!("{at}/params")) {
            continue;
        }
        compare(checker, tool, builtin, &schema);
    }
}

/// Reports every way the flow's parameters of `tool` differ from `schema`.
fn compare(checker: &mut Checker<'_>, tool: &str, builtin: &str, schema: &Value) {
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(spec) = checker.file.tools.get(tool) else {
        return;
    };
    let mismatch = |reason: String| DiagnosticKind::BuiltinMismatch {
        tool: tool.to_owned(),
        builtin: builtin.to_owned(),
        reason,
    };
    let mut found = Vec::new();
    for (param, param_spec) in &spec.params {
        let at = pointer(&["tools", tool, "params", param]);
        if checker.broken.covers(&at) {
            continue;
        }
        let Some(expected) = properties.get(param) else {
            let names: Vec<&str> = properties.keys().map(String::as_str).collect();
            let help = match suggest::closest(param, names.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("built-in `{builtin}` takes {}", suggest::list(&names)),
            };
            found.push(
                Diagnostic::new(
                    mismatch(format!("the built-in has no parameter `{param}`")),
                    checker.key(&at),
                )
                .with_label("not a parameter of the built-in")
                .with_help(help),
            );
            continue;
        };
        if required.contains(&param.as_str()) && !is_required(param_spec) {
            found.push(
                Diagnostic::new(
                    mismatch(format!(
                        "parameter `{param}` is optional here, but the built-in needs it"
                    )),
                    checker
                        .value(&format!("{at}/required"))
                        .or_else(|| checker.key(&at)),
                )
                .with_label("optional here")
                .with_help("remove `required = false`: the built-in cannot run without it"),
            );
        }
        let schema = model_schema(param_spec, checker.resolved_refs.get(&at));
        if let Some(diagnostic) =
            type_mismatch(checker, &at, param, &schema, expected, "the built-in")
        {
            found.push(diagnostic.with_kind(&mismatch));
        } else if let Some(diagnostic) =
            enum_mismatch(checker, &at, param, &schema, expected, "the built-in")
        {
            found.push(diagnostic.with_kind(&mismatch));
        }
    }
    for name in required {
        if spec.params.contains_key(name) {
            continue;
        }
        let kind = properties
            .get(name)
            .and_then(declared_types)
            .and_then(|types| types.into_iter().find(|t| t != "null"))
            .unwrap_or_else(|| "string".to_owned());
        found.push(
            Diagnostic::new(
                mismatch(format!(
                    "the built-in needs parameter `{name}`, which the tool does not declare"
                )),
                checker.value(&pointer(&["tools", tool, "builtin"])),
            )
            .with_label(format!("needs `{name}`"))
            .with_help(format!(
                "declare it: `[tools.{tool}.params.{name}]` with `type = \"{kind}\"`, a \
                 `description` and an `ask`"
            )),
        );
    }
    for diagnostic in found {
        checker.report(diagnostic);
    }
}

/// A diagnostic whose kind is filled in by the caller.
pub(super) struct Pending {
    reason: String,
    span: Option<std::ops::Range<usize>>,
    label: String,
    help: String,
}

impl Pending {
    pub(super) fn with_kind(self, kind: &dyn Fn(String) -> DiagnosticKind) -> Diagnostic {
        Diagnostic::new(kind(self.reason), self.span)
            .with_label(self.label)
            .with_help(self.help)
    }
}

/// The flow's types must all be accepted by the built-in (an integer is a number).
/// `what` names the other side in the message: "the built-in", "the MCP tool".
pub(super) fn type_mismatch(
    checker: &Checker<'_>,
    at: &str,
    param: &str,
    schema: &Value,
    expected: &Value,
    what: &str,
) -> Option<Pending> {
    let ours = declared_types(schema)?;
    let theirs = declared_types(expected)?;
    let accepted =
        |t: &String| theirs.contains(t) || (t == "integer" && theirs.iter().any(|x| x == "number"));
    if ours.iter().all(accepted) {
        return None;
    }
    Some(Pending {
        reason: format!(
            "parameter `{param}` is {} here, but {what} takes {}",
            type_words(&ours),
            type_words(&theirs)
        ),
        span: checker
            .value(&format!("{at}/type"))
            .or_else(|| checker.key(at)),
        label: format!("{what} takes {}", type_words(&theirs)),
        help: format!(
            "write `type = \"{}\"`",
            theirs
                .iter()
                .find(|t| *t != "null")
                .map_or("string", String::as_str)
        ),
    })
}

/// When the built-in accepts only some values, the flow must offer no others.
pub(super) fn enum_mismatch(
    checker: &Checker<'_>,
    at: &str,
    param: &str,
    schema: &Value,
    expected: &Value,
    what: &str,
) -> Option<Pending> {
    let theirs = allowed_values(expected)?;
    let listed = suggest::list(&theirs.iter().map(text).collect::<Vec<_>>());
    let Some(ours) = allowed_values(schema) else {
        let values: Vec<String> = theirs.iter().map(Value::to_string).collect();
        return Some(Pending {
            reason: format!(
                "parameter `{param}` accepts any value here, but {what} takes only {listed}"
            ),
            span: checker.key(at),
            label: "no `enum` here".to_owned(),
            help: format!("add `enum = [{}]`", values.join(", ")),
        });
    };
    let extra: Vec<String> = ours
        .iter()
        .filter(|value| !theirs.contains(value))
        .map(text)
        .collect();
    if extra.is_empty() {
        return None;
    }
    Some(Pending {
        reason: format!(
            "parameter `{param}` allows {} here, which {what} does not accept",
            suggest::list(&extra)
        ),
        span: checker
            .value(&format!("{at}/enum"))
            .or_else(|| checker.key(at)),
        label: format!("{what} takes {listed}"),
        help: format!("keep only values {what} accepts: {listed}"),
    })
}

/// The values an `enum`, a `const`, or a `oneOf`/`anyOf` of `const`s allows.
pub(super) fn allowed_values(schema: &Value) -> Option<Vec<Value>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(values.clone());
    }
    if let Some(value) = schema.get("const") {
        return Some(vec![value.clone()]);
    }
    let branches = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))?
        .as_array()?;
    let mut values = Vec::new();
    for branch in branches {
        values.extend(allowed_values(branch)?);
    }
    Some(values)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn type_words(types: &[String]) -> String {
    let words: Vec<&str> = types
        .iter()
        .map(|t| match t.as_str() {
            "integer" => "an integer",
            "number" => "a number",
            "string" => "a string",
            "boolean" => "a boolean",
            "array" => "an array",
            "object" => "an object",
            "null" => "null",
            other => other,
        })
        .collect();
    match words.as_slice() {
        [] => "anything".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn enums_are_read_from_every_spelling() {
        assert_eq!(
            allowed_values(&json!({"enum": ["a", "b"]})),
            Some(vec![json!("a"), json!("b")])
        );
        assert_eq!(
            allowed_values(&json!({"oneOf": [{"const": "a", "description": "A"}, {"const": "b"}]})),
            Some(vec![json!("a"), json!("b")])
        );
        assert_eq!(
            allowed_values(&json!({"oneOf": [{"const": "a"}, {"type": "string"}]})),
            None
        );
        assert_eq!(allowed_values(&json!({"type": "string"})), None);
    }

    #[test]
    fn types_read_as_english() {
        assert_eq!(type_words(&["integer".to_owned()]), "an integer");
        assert_eq!(
            type_words(&["number".to_owned(), "null".to_owned()]),
            "a number or null"
        );
    }
}
