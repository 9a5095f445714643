//! Parameter and slot schemas: `$ref` files, meta-validation, nested keyword typos, slot
//! links and the questions asked for missing parameters.

use std::collections::HashMap;
use std::path::Path;

use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value};

use super::Checker;
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::export::strict;
use crate::keywords::{KEYWORDS, KeywordValue, is_keyword};
use crate::load::{MAX_FILE_BYTES, read_limited};
use crate::spans::{escape, pointer};
use crate::spec::{ParamSpec, Required};
use crate::structure::table_name;
use crate::suggest;

/// Schemas read from `$ref` files, by the parameter's JSON pointer.
pub type ResolvedRefs = HashMap<String, Value>;

/// Whether a parameter is required (the default).
#[must_use]
pub fn is_required(spec: &ParamSpec) -> bool {
    !matches!(spec.required, Some(Required::Flag(false)))
}

/// The JSON Schema the model sees for a parameter: its keywords (or the `$ref` file),
/// with `description` and an object parameter's `required` list, and none of Clarion's keys.
#[must_use]
pub fn model_schema(spec: &ParamSpec, from_ref: Option<&Value>) -> Value {
    let keywords = match from_ref {
        Some(Value::Object(file)) => file,
        _ => &spec.schema.0,
    };
    let required = matches!(spec.required, Some(Required::Properties(_)));
    let more = usize::from(spec.description.is_some()) + usize::from(required);
    let mut schema = sized_copy(keywords, more);
    // A schema file's identity keys describe the file, not the value; sent to a provider
    // they would only keep the tool out of strict mode.
    for key in ["$schema", "$id"] {
        schema.shift_remove(key);
    }
    if let Some(description) = &spec.description {
        schema.insert("description".to_owned(), Value::String(description.clone()));
    }
    if let Some(Required::Properties(names)) = &spec.required {
        schema.insert(
            "required".to_owned(),
            Value::Array(names.iter().cloned().map(Value::String).collect()),
        );
    }
    Value::Object(schema)
}

/// The slot's schema: its keywords plus `description`.
#[must_use]
pub fn slot_schema(spec: &crate::spec::SlotSpec) -> Value {
    let mut schema = sized_copy(&spec.schema.0, usize::from(spec.description.is_some()));
    if let Some(description) = &spec.description {
        schema.insert("description".to_owned(), Value::String(description.clone()));
    }
    Value::Object(schema)
}

/// A copy of `keywords` with room for `more` entries and no more: a flow keeps one schema
/// per parameter and slot for its whole life, and a clone that then grows doubles its
/// capacity.
fn sized_copy(keywords: &Map<String, Value>, more: usize) -> Map<String, Value> {
    let mut copy = Map::with_capacity(keywords.len() + more);
    copy.extend(keywords.iter().map(|(k, v)| (k.clone(), v.clone())));
    copy
}

pub(super) fn check(checker: &mut Checker<'_>) {
    let file = checker.file;
    for (slot, spec) in &file.slots {
        let at = pointer(&["slots", slot]);
        if checker.broken.covers(&at) {
            continue;
        }
        nested_keywords(checker, &at, &Value::Object(spec.schema.0.clone()), 0);
        meta_validate(
            checker,
            &at,
            &slot_schema(spec),
            &format!("slot `{slot}`"),
            None,
        );
    }
    for (tool, tool_spec) in &file.tools {
        for (param, spec) in &tool_spec.params {
            let at = pointer(&["tools", tool, "params", param]);
            if checker.broken.covers(&at) {
                continue;
            }
            let owner = format!("parameter `{param}` of tool `{tool}`");
            let from_ref = spec
                .schema_ref
                .as_ref()
                .and_then(|path| schema_ref(checker, &at, spec, path));
            if from_ref.is_none() {
                nested_keywords(checker, &at, &Value::Object(spec.schema.0.clone()), 0);
            }
            let schema = model_schema(spec, from_ref.as_ref());
            let ref_span = from_ref
                .as_ref()
                .and_then(|_| checker.value(&format!("{at}/$ref")));
            meta_validate(checker, &at, &schema, &owner, ref_span.as_ref());
            slot_link(checker, &at, param, spec, &schema);
            questions(checker, &at, param, spec, &schema);
            grounded(checker, &at, param, spec, &schema);
            asking(checker, &at, param, spec, &schema);
            if tool_spec.strict == Some(true)
                && let Some((keyword_at, keyword)) = strict::unsupported(&schema)
            {
                let where_ = if keyword_at.is_empty() {
                    at.clone()
                } else {
                    format!("{at}{keyword_at}")
                };
                let tool_table = table_name(&pointer(&["tools", tool]));
                // Strict mode needs closed objects: the fix for `additionalProperties` (written
                // or implied by an object without `properties`) is to close it, not remove it.
                let (reason, fix) = if keyword == "additionalProperties" {
                    (
                        format!("parameter `{param}` allows properties it does not list, which strict mode does not support"),
                        "list every property under `properties` and set `additionalProperties = false`".to_owned(),
                    )
                } else {
                    (
                        format!(
                            "parameter `{param}` uses `{keyword}`, which strict mode does not support"
                        ),
                        format!("remove `{keyword}`"),
                    )
                };
                checker.report(
                    Diagnostic::new(
                        DiagnosticKind::StrictUnsupported {
                            tool: tool.clone(),
                            reason,
                        },
                        checker.key(&format!("{where_}/{keyword}")),
                    )
                    .with_label("not supported in strict mode")
                    .with_help(format!(
                        "{fix}, or drop `strict = true` from {tool_table} to let Clarion choose"
                    )),
                );
            }
            if let Some(schema) = from_ref {
                checker.resolved_refs.insert(at, schema);
            }
        }
    }
}

/// Reads and parses a `$ref` file; reports and returns `None` when it cannot be used.
fn schema_ref(checker: &mut Checker<'_>, at: &str, spec: &ParamSpec, path: &str) -> Option<Value> {
    let ref_at = format!("{at}/$ref");
    let fail = |checker: &mut Checker<'_>, reason: String, help: &str| {
        let diagnostic = Diagnostic::new(
            DiagnosticKind::SchemaRef {
                path: path.to_owned(),
                reason,
            },
            checker.value(&ref_at),
        )
        .with_help(help.to_owned());
        checker.report(diagnostic);
        None
    };
    let mixed: Vec<&String> = spec.schema.0.keys().collect();
    if !mixed.is_empty() {
        return fail(
            checker,
            format!(
                "it cannot be combined with schema keywords here ({})",
                suggest::list(&mixed)
            ),
            "move those keywords into the schema file, or remove `$ref`",
        );
    }
    if path.starts_with('#') || path.contains("://") || Path::new(path).is_absolute() {
        return fail(
            checker,
            "only relative paths to local JSON files are supported".to_owned(),
            "point at a file, e.g. `$ref = \"../schemas/money.json\"`",
        );
    }
    let full = match checker.base_dir {
        Some(dir) => dir.join(path),
        None => std::path::PathBuf::from(path),
    };
    let text = match read_schema(&full) {
        Ok(text) => text,
        Err(error) => {
            return fail(
                checker,
                format!("{} ({})", error_words(&error), full.display()),
                "paths are relative to the flow file; shared schemas live in `schemas/`",
            );
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(value @ Value::Object(_)) => Some(value),
        Ok(_) => fail(
            checker,
            "the file must hold a JSON object".to_owned(),
            "a schema file holds one JSON Schema object, e.g. {\"type\": \"number\"}",
        ),
        Err(error) => fail(
            checker,
            format!("it is not valid JSON: {error}"),
            "fix the JSON in the schema file",
        ),
    }
}

/// Reads a schema file: a regular one (a FIFO would block, `/dev/zero` never ends), no
/// larger than a flow file may be.
fn read_schema(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::from(ErrorKind::InvalidInput));
    }
    let bytes = read_limited(path)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Error::from(ErrorKind::FileTooLarge));
    }
    String::from_utf8(bytes).map_err(|_| Error::from(ErrorKind::InvalidData))
}

fn error_words(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file",
        std::io::ErrorKind::PermissionDenied => "permission denied",
        std::io::ErrorKind::InvalidData => "the file is not UTF-8",
        std::io::ErrorKind::InvalidInput => "it is not a regular file",
        std::io::ErrorKind::FileTooLarge => "the file is too large",
        _ => "the file cannot be read",
    }
}

/// Reports unknown keywords inside nested subschemas (the top level was checked against
/// the flow schema already).
fn nested_keywords(checker: &mut Checker<'_>, at: &str, schema: &Value, depth: usize) {
    let Some(object) = schema.as_object() else {
        return;
    };
    if depth > 0 {
        if object.contains_key("$ref") {
            let here = format!("{at}/$ref");
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::SchemaRef {
                        path: object.get("$ref").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        reason: "a `$ref` inside a parameter's schema cannot be resolved once the schema is \
                                 embedded in the tool's parameters"
                            .to_owned(),
                    },
                    checker.value(&here),
                )
                .with_label("unresolvable for the model")
                .with_help("write the subschema inline, or move the whole schema to a file and use `$ref` on the parameter"),
            );
        }
        for key in object.keys() {
            if !is_keyword(key) {
                let here = format!("{at}/{}", escape(key));
                let keywords = KEYWORDS.iter().map(|(k, _)| *k);
                let help = suggest::closest(key, keywords).map_or_else(
                    || "JSON Schema has no such keyword; see docs/flow-format.md".to_owned(),
                    |near| format!("did you mean `{near}`?"),
                );
                checker.report(
                    Diagnostic::new(
                        DiagnosticKind::UnknownKey {
                            key: key.clone(),
                            table: format!("the schema at {}", table_name(at)),
                        },
                        checker.key(&here),
                    )
                    .with_label("not a JSON Schema keyword")
                    .with_help(help),
                );
            }
        }
    }
    if depth > 32 {
        return;
    }
    // The schema's own keys, each looked up in the short keyword list: the other way round
    // is fifty map lookups per schema.
    for (keyword, value) in object {
        let Some((_, shape)) = KEYWORDS.iter().find(|(k, _)| k == keyword) else {
            continue;
        };
        let here = format!("{at}/{}", escape(keyword));
        match shape {
            KeywordValue::Schema => nested_keywords(checker, &here, value, depth + 1),
            KeywordValue::SchemaArray => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    nested_keywords(checker, &format!("{here}/{i}"), item, depth + 1);
                }
            }
            KeywordValue::SchemaMap => {
                for (name, item) in value.as_object().into_iter().flatten() {
                    nested_keywords(
                        checker,
                        &format!("{here}/{}", escape(name)),
                        item,
                        depth + 1,
                    );
                }
            }
            _ => {}
        }
    }
}

fn meta_validate(
    checker: &mut Checker<'_>,
    at: &str,
    schema: &Value,
    owner: &str,
    ref_span: Option<&std::ops::Range<usize>>,
) {
    let validator = jsonschema::draft202012::meta::validator();
    let mut seen = std::collections::HashSet::new();
    let errors: Vec<(String, String)> = validator
        .iter_errors(schema)
        .map(|e| {
            let path = e.instance_path().as_str().to_owned();
            // The meta-schema's own wording ("not valid under any of the schemas listed in
            // the 'anyOf' keyword") says nothing about what `type` accepts.
            let message = if path.ends_with("/type")
                && matches!(e.kind(), ValidationErrorKind::AnyOf { .. })
            {
                format!(
                    "{} is not a JSON Schema type (\"string\", \"number\", \"integer\", \
                     \"boolean\", \"object\", \"array\", \"null\") or a list of distinct types",
                    e.instance()
                )
            } else {
                e.to_string()
            };
            (path, message)
        })
        .collect();
    for (path, message) in errors {
        if !seen.insert(path.clone()) {
            continue;
        }
        let span = ref_span
            .cloned()
            .or_else(|| checker.value(&format!("{at}{path}")));
        let key = path
            .rsplit('/')
            .next()
            .filter(|k| !k.is_empty())
            .map(ToOwned::to_owned);
        let reason = match key {
            Some(key) if ref_span.is_none() => format!("`{key}`: {message}"),
            Some(_) => format!("at `{path}` in the schema file: {message}"),
            None => message,
        };
        checker.report(
            Diagnostic::new(
                DiagnosticKind::InvalidSchema {
                    owner: owner.to_owned(),
                    reason,
                },
                span,
            )
            .with_help(
                "see https://json-schema.org/understanding-json-schema/reference for each keyword",
            ),
        );
    }
}

/// The JSON types a schema's `type` keyword allows, if it says.
#[must_use]
pub fn declared_types(schema: &Value) -> Option<Vec<String>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(Value::as_str)
                .map(ToOwned::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

/// Whether a schema takes numbers only (`number`, `integer`, maybe `null`).
#[must_use]
pub fn is_numeric(schema: &Value) -> bool {
    declared_types(schema).is_some_and(|types| {
        types.iter().any(|t| t == "number" || t == "integer")
            && types
                .iter()
                .all(|t| matches!(t.as_str(), "number" | "integer" | "null"))
    })
}

/// Whether two lists of JSON Schema types share one (`integer` and `number` count as one).
pub(crate) fn overlaps(a: &[String], b: &[String]) -> bool {
    let number = |t: &str| t == "number" || t == "integer";
    a.iter()
        .any(|x| b.iter().any(|y| x == y || (number(x) && number(y))))
}

fn slot_link(checker: &mut Checker<'_>, at: &str, param: &str, spec: &ParamSpec, schema: &Value) {
    let Some(slot) = &spec.slot else { return };
    let slot_at = format!("{at}/slot");
    let Some(slot_spec) = checker.file.slots.get(slot) else {
        // A broken `[slots]` was dropped whole; its names are unknown, not undeclared.
        if checker.broken.covers("/slots") {
            return;
        }
        let declared: Vec<&str> = checker.file.slots.keys().map(String::as_str).collect();
        let help = match suggest::closest(slot, declared.iter().copied()) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("declare it:\n[slots.{slot}]\ntype = \"…\"\ndescription = \"…\""),
        };
        checker.report(
            Diagnostic::new(
                DiagnosticKind::UndeclaredSlot { slot: slot.clone() },
                checker.value(&slot_at),
            )
            .with_label("no such slot")
            .with_help(help),
        );
        return;
    };
    if checker.broken.covers(&pointer(&["slots", slot])) {
        return;
    }
    let slot_schema = Value::Object(slot_spec.schema.0.clone());
    if let (Some(param_types), Some(slot_types)) =
        (declared_types(schema), declared_types(&slot_schema))
        && !overlaps(&param_types, &slot_types)
    {
        let slot_type_at = pointer(&["slots", slot, "type"]);
        let mut diagnostic = Diagnostic::new(
            DiagnosticKind::SlotTypeConflict {
                param: param.to_owned(),
                slot: slot.clone(),
                param_type: param_types.join(" | "),
                slot_type: slot_types.join(" | "),
            },
            checker.value(&slot_at),
        )
        .with_label("values could never be stored in this slot")
        .with_help("give the parameter and the slot the same `type`");
        if let Some(span) = checker.value(&slot_type_at) {
            diagnostic = diagnostic.with_related(span, "the slot's type");
        }
        checker.report(diagnostic);
    }
}

fn questions(checker: &mut Checker<'_>, at: &str, param: &str, spec: &ParamSpec, schema: &Value) {
    let required = is_required(spec);
    // A broken key may be a misspelt `ask`; the typo is reported already.
    if required && spec.ask.is_none() && !checker.broken.has_broken_key(at) && checker.written(at) {
        let description = schema.get("description").and_then(Value::as_str);
        checker.report(
            Diagnostic::new(
                DiagnosticKind::MissingAsk {
                    param: param.to_owned(),
                },
                checker.key(at),
            )
            .with_label("the user is never told what is missing")
            .with_help(format!(
                "add a question, e.g. `ask = \"{}\"`",
                suggested_question(param, description)
            )),
        );
    }
    if !required && spec.ask.is_some() {
        checker.report(
            Diagnostic::new(
                DiagnosticKind::AskOnOptional {
                    param: param.to_owned(),
                },
                checker.key(&format!("{at}/ask")),
            )
            .with_label("optional parameters are never asked for")
            .with_help("remove `ask`, or make the parameter required"),
        );
    }
}

/// `grounded = true` needs values that can be found in text: numbers and strings.
fn grounded(checker: &mut Checker<'_>, at: &str, param: &str, spec: &ParamSpec, schema: &Value) {
    if spec.grounded != Some(true) {
        return;
    }
    let groundable = |t: &String| matches!(t.as_str(), "number" | "integer" | "string" | "null");
    let found = match declared_types(schema) {
        Some(types) if types.iter().all(groundable) => return,
        Some(types) => format!(
            "its type is {}",
            types
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(" | ")
        ),
        None => "it has no `type`".to_owned(),
    };
    checker.report(
        Diagnostic::new(
            DiagnosticKind::GroundedType {
                param: param.to_owned(),
                found,
            },
            checker.value(&format!("{at}/grounded")),
        )
        .with_label("the user's words cannot be searched for this value")
        .with_help("remove `grounded`, or give the parameter `type = \"number\"`, `\"integer\"` or `\"string\"`"),
    );
}

/// Keywords that describe a value without constraining it: a schema of only these
/// accepts anything.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "default",
    "examples",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// `invalid`, `max_asks` and `on_exhausted`: each only means something on a parameter the
/// user can be asked for, and `invalid` only where a value can fail the schema.
fn asking(checker: &mut Checker<'_>, at: &str, param: &str, spec: &ParamSpec, schema: &Value) {
    let required = is_required(spec);
    let written: Vec<&str> = [
        ("invalid", spec.invalid.is_some()),
        ("max_asks", spec.max_asks.is_some()),
        ("on_exhausted", spec.on_exhausted.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    if !required {
        for key in written {
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::AskingKeyOnOptional {
                        param: param.to_owned(),
                        key: key.to_owned(),
                    },
                    checker.key(&format!("{at}/{key}")),
                )
                .with_label("optional parameters are never asked for")
                .with_help(format!(
                    "remove `{key}`, or make the parameter required (remove `required = false`)"
                )),
            );
        }
        return;
    }
    let constrained = schema
        .as_object()
        .is_some_and(|keywords| keywords.keys().any(|k| !ANNOTATIONS.contains(&k.as_str())));
    if spec.invalid.is_some() && !constrained {
        checker.report(
            Diagnostic::new(
                DiagnosticKind::InvalidCannotFail {
                    param: param.to_owned(),
                },
                checker.key(&format!("{at}/invalid")),
            )
            .with_label("no value is ever rejected")
            .with_help("give the parameter a `type` and the limits a value must meet (e.g. `minimum`, `enum`), or remove `invalid`"),
        );
    }
    if spec.max_asks == Some(0) {
        checker.report(
            Diagnostic::new(
                DiagnosticKind::MaxAsksZero {
                    param: param.to_owned(),
                },
                checker.value(&format!("{at}/max_asks")),
            )
            .with_label("the parameter could never be asked for")
            .with_help("`max_asks = 1` asks once; remove `max_asks` to ask without a limit"),
        );
    }
    if let Some(crate::spec::OnExhausted::HandOff(via)) = &spec.on_exhausted {
        let reason = match checker.file.tools.get(via) {
            None => Some(format!("the flow has no tool `{via}`")),
            Some(tool) if tool.flow.is_none() => {
                Some(format!("`{via}` is not a tool with `flow = \"…\"`"))
            }
            Some(_) => None,
        };
        if let Some(reason) = reason {
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::HandOffNotFlowTool {
                        param: param.to_owned(),
                        tool: via.clone(),
                        reason,
                    },
                    checker.value(&format!("{at}/on_exhausted/hand_off")),
                )
                .with_label("no flow to hand off to")
                .with_help("name a tool of this flow that has `flow = \"…\"`"),
            );
        }
    }
    if spec.on_exhausted.is_some() && spec.max_asks.is_none() {
        checker.report(
            Diagnostic::new(
                DiagnosticKind::OnExhaustedWithoutMaxAsks {
                    param: param.to_owned(),
                },
                checker.key(&format!("{at}/on_exhausted")),
            )
            .with_label("asking is never exhausted")
            .with_help("add `max_asks = N`: how many times the user may be asked for this value"),
        );
    }
}

/// A question built from a parameter's description ("Target amount in dollars." → "What is
/// the target amount in dollars?"), or from its name.
#[must_use]
pub fn suggested_question(param: &str, description: Option<&str>) -> String {
    let subject = description
        .map(|d| d.trim().trim_end_matches(['.', '?', '!']).trim())
        .filter(|d| !d.is_empty() && d.split_whitespace().count() <= 12)
        .map_or_else(
            || param.replace('_', " "),
            |d| {
                let mut chars = d.chars();
                let first = chars
                    .next()
                    .map(|c| c.to_lowercase().collect::<String>())
                    .unwrap_or_default();
                let rest: String = chars.collect();
                // Keep acronyms ("URL of…") as written.
                if rest.starts_with(|c: char| c.is_uppercase()) {
                    d.to_owned()
                } else {
                    first + &rest
                }
            },
        );
    let subject = subject
        .strip_prefix("the ")
        .or_else(|| subject.strip_prefix("a "))
        .or_else(|| subject.strip_prefix("an "))
        .unwrap_or(&subject)
        .to_owned();
    format!("What is the {}?", subject.replace('"', "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_files_lose_their_identity_keys_and_gain_the_flows_description() {
        let spec: ParamSpec =
            serde_json::from_value(serde_json::json!({ "description": "Amount." }))
                .unwrap_or_else(|e| panic!("{e}"));
        let file = serde_json::json!({ "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "x", "type": "number" });
        assert_eq!(
            model_schema(&spec, Some(&file)),
            serde_json::json!({ "type": "number", "description": "Amount." })
        );
    }

    #[test]
    fn questions_are_built_from_descriptions() {
        assert_eq!(
            suggested_question("goal_amount", Some("Target amount in dollars.")),
            "What is the target amount in dollars?"
        );
        assert_eq!(
            suggested_question("monthly_savings", None),
            "What is the monthly savings?"
        );
        assert_eq!(
            suggested_question("x", Some("The city.")),
            "What is the city?"
        );
        assert_eq!(
            suggested_question("u", Some("URL of the feed")),
            "What is the URL of the feed?"
        );
    }

    #[test]
    fn integer_and_number_are_compatible() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(overlaps(&s(&["integer"]), &s(&["number"])));
        assert!(!overlaps(&s(&["string"]), &s(&["number", "null"])));
    }
}
