//! JSON Schema errors → located diagnostics, for any TOML format Clarion checks against its
//! own generated schema: the flow format and the scenario format share every code and
//! wording (`E004` unknown key, `E005` wrong type, `E006` missing key, `E007` invalid
//! value) through one [`Format`] each. What differs between formats is data: the schema,
//! how a key is named, the examples offered for a missing key.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::schema::{resolve, schema_at};
use crate::spans::{SpanIndex, escape};
use crate::suggest;

/// A TOML format checked against its own JSON Schema. Declare one as a `static`: it keeps
/// its compiled validator.
pub struct Format {
    /// The format's JSON Schema (draft 7).
    pub schema: fn() -> &'static Value,
    /// The name of the key at a JSON pointer, as messages show it.
    pub key_name: fn(&str) -> String,
    /// The help for a missing required key, when the format has a better one than "add
    /// `KEY` to TABLE".
    pub missing_help: fn(&str) -> Option<String>,
    /// Tables that accept more keys than this get a pointer to `docs` for an unknown key,
    /// instead of the list of what they accept.
    pub listed_keys: usize,
    /// The document describing the format.
    pub docs: &'static str,
    /// The compiled validator (`OnceLock::new()`).
    pub validator: OnceLock<Option<jsonschema::Validator>>,
}

/// One structural problem: its diagnostic, and the pointer of the node to repair when the
/// caller salvages the rest of the document.
#[derive(Debug)]
pub struct Problem {
    /// The located diagnostic; `None` when another problem already says it (a required key
    /// missing because it was misspelt, which the unknown key's "did you mean" covers).
    pub diagnostic: Option<Diagnostic>,
    /// The node the problem is in (for a missing key, where it belongs).
    pub at: String,
}

impl Format {
    /// The keys the table at `pointer` accepts, in schema order.
    #[must_use]
    pub fn keys_at(&self, pointer: &str) -> Vec<String> {
        schema_at((self.schema)(), pointer)
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Validates `document` against the format's schema: every problem, located.
    #[must_use]
    pub fn problems(&self, document: &Value, spans: &SpanIndex) -> Vec<Problem> {
        let validator = self
            .validator
            .get_or_init(|| jsonschema::draft7::new((self.schema)()).ok());
        let Some(validator) = validator else {
            return Vec::new();
        };
        let errors: Vec<_> = validator.iter_errors(document).collect();
        let misspelt = self.misspelt_keys(&errors);
        let mut problems = Vec::new();
        for error in &errors {
            let at = error.instance_path().as_str().to_owned();
            match error.kind() {
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for key in unexpected {
                        problems.push(Problem {
                            diagnostic: Some(self.unknown_key(&at, key, spans)),
                            at: format!("{at}/{}", escape(key)),
                        });
                    }
                }
                ValidationErrorKind::Required { property } => {
                    let key = property.as_str().unwrap_or_default().to_owned();
                    let here = format!("{at}/{}", escape(&key));
                    // `nme = …` already says "did you mean `name`?"; don't also say it is
                    // missing. The node is still repaired.
                    let said = misspelt.contains(&(at.clone(), key.clone()));
                    problems.push(Problem {
                        diagnostic: (!said).then(|| self.missing_key(&at, &key, spans)),
                        at: here,
                    });
                }
                kind => problems.push(Problem {
                    diagnostic: Some(self.bad_value(
                        &at,
                        kind,
                        error.instance(),
                        spans,
                        &error.to_string(),
                    )),
                    at,
                }),
            }
        }
        problems
    }

    /// (table, key) for every unknown key that looks like a typo of a key its table accepts.
    fn misspelt_keys(&self, errors: &[jsonschema::ValidationError<'_>]) -> Vec<(String, String)> {
        let mut misspelt = Vec::new();
        for error in errors {
            if let ValidationErrorKind::AdditionalProperties { unexpected } = error.kind() {
                let at = error.instance_path().as_str();
                let accepted = self.keys_at(at);
                for key in unexpected {
                    if let Some(near) = suggest::closest(key, accepted.iter().map(String::as_str)) {
                        misspelt.push((at.to_owned(), near.to_owned()));
                    }
                }
            }
        }
        misspelt
    }

    fn unknown_key(&self, at: &str, key: &str, spans: &SpanIndex) -> Diagnostic {
        let here = format!("{at}/{}", escape(key));
        let accepted = self.keys_at(at);
        let help = match suggest::closest(key, accepted.iter().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`?"),
            None if accepted.len() <= self.listed_keys => {
                format!("{} accepts {}", table_name(at), suggest::list(&accepted))
            }
            None => format!(
                "{} accepts Clarion's keys and JSON Schema keywords; see {}",
                table_name(at),
                self.docs
            ),
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

    fn missing_key(&self, at: &str, key: &str, spans: &SpanIndex) -> Diagnostic {
        let span = if at.is_empty() {
            None
        } else {
            spans.key_span(at)
        };
        let help = (self.missing_help)(key)
            .unwrap_or_else(|| format!("add `{key}` to {}", table_name(at)));
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
        &self,
        at: &str,
        kind: &ValidationErrorKind,
        instance: &Value,
        spans: &SpanIndex,
        fallback: &str,
    ) -> Diagnostic {
        let key = (self.key_name)(at);
        let last = at.rsplit('/').next().unwrap_or_default();
        let span = spans.value_span(at);
        let wrong_type = |expected: &[&str]| {
            Diagnostic::new(
                DiagnosticKind::WrongType {
                    key: key.clone(),
                    expected: words(expected),
                    found: toml_type(instance).to_owned(),
                },
                span.clone(),
            )
            .with_label(format!("expected {}", words(expected)))
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
                    TypeKind::Multiple(set) => set
                        .iter()
                        .map(|t| type_words(&t.to_string()))
                        .filter(|t| *t != "null")
                        .collect(),
                };
                let diagnostic = wrong_type(&expected);
                if instance.is_object() && self.holds_tables(at) {
                    // `[tools.x.after]` for `[[tools.x.after]]`: one bracket short.
                    return diagnostic.with_help(format!("write each entry as `[[{key}]]`"));
                }
                diagnostic
            }
            ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
                if let Some((expected, help)) = union_expectation(last) {
                    let diagnostic = invalid(expected.to_owned());
                    return match help {
                        Some(help) => diagnostic.with_help(help),
                        None => diagnostic,
                    };
                }
                if let Some(options) = self.branch_constants(at) {
                    return one_of(invalid, &options, instance);
                }
                let branches = self.branch_types(at);
                let found = json_type(instance);
                if !branches.is_empty() && !branches.iter().any(|(json, _)| *json == found) {
                    let expected: Vec<&str> = branches.iter().map(|(_, words)| *words).collect();
                    return wrong_type(&expected);
                }
                match last {
                    "type" => {
                        let diagnostic = invalid(
                            "expected a JSON Schema type (\"string\", \"number\", \"integer\", \
                             \"boolean\", \"object\", \"array\", \"null\") or a list of them"
                                .to_owned(),
                        );
                        let types = [
                            "string", "number", "integer", "boolean", "object", "array", "null",
                        ];
                        let near = instance.as_str().and_then(|t| suggest::closest(t, types));
                        match near {
                            Some(near) => {
                                diagnostic.with_help(format!("did you mean `\"{near}\"`?"))
                            }
                            None => diagnostic.with_help(
                                "e.g. `type = \"number\"` or `type = [\"string\", \"null\"]`",
                            ),
                        }
                    }
                    "required" => {
                        invalid("expected `true`, `false`, or a list of property names".to_owned())
                    }
                    _ => invalid(fallback.to_owned()),
                }
            }
            ValidationErrorKind::Enum { options } => {
                let options: Vec<Value> = options.as_array().cloned().unwrap_or_default();
                one_of(invalid, &options, instance)
            }
            ValidationErrorKind::Pattern { .. } if last.ends_with("timeout") => invalid(
                "expected a duration such as \"30s\", \"500ms\", \"2m\" or \"1h\"".to_owned(),
            )
            .with_label("not a duration"),
            ValidationErrorKind::Pattern { .. } if last == "result_pointer" => invalid(
                "expected a JSON pointer such as \"/data/0\" (or \"\" for the whole body)"
                    .to_owned(),
            ),
            ValidationErrorKind::MinLength { .. } => invalid("must not be empty".to_owned()),
            ValidationErrorKind::MinItems { .. } => invalid("needs at least one entry".to_owned()),
            _ => invalid(fallback.to_owned()),
        }
    }

    /// The schema the format gives the key at `at`, with wrappers and `$ref`s resolved.
    fn property_schema(&self, at: &str) -> Option<&'static Value> {
        let (parent, last) = at.rsplit_once('/')?;
        let last = unescape(last);
        let root = (self.schema)();
        let node = schema_at(root, parent)?.get("properties")?.get(&last)?;
        resolve(root, node)
    }

    /// Whether the key at `at` is an array of tables.
    fn holds_tables(&self, at: &str) -> bool {
        self.property_schema(at)
            .and_then(|node| node.get("items"))
            .and_then(|items| resolve((self.schema)(), items))
            .and_then(|items| items.get("type"))
            .is_some_and(|t| t == "object")
    }

    /// When the key at `at` only accepts constants (an enum written as `oneOf` of `const`s),
    /// those constants.
    fn branch_constants(&self, at: &str) -> Option<Vec<Value>> {
        let node = self.property_schema(at)?;
        let branches = node
            .get("oneOf")
            .or_else(|| node.get("anyOf"))?
            .as_array()?;
        branches.iter().map(|b| b.get("const").cloned()).collect()
    }

    /// What the `anyOf` branches at `at` accept: (JSON type, in words), nulls left out.
    fn branch_types(&self, at: &str) -> Vec<(&'static str, &'static str)> {
        let root = (self.schema)();
        let Some(node) = self.property_schema(at) else {
            return Vec::new();
        };
        let mut types = Vec::new();
        for branch in node
            .get("anyOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let branch = resolve(root, branch).unwrap_or(branch);
            let names: Vec<&str> = match branch.get("type") {
                Some(Value::String(t)) => vec![t.as_str()],
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
                _ if branch.get("enum").is_some() => vec!["string"],
                _ => Vec::new(),
            };
            for name in names {
                let Some(json) = JSON_TYPES.iter().copied().find(|t| *t == name) else {
                    continue;
                };
                let words = if json == "array" {
                    let item = branch.get("items").and_then(|i| resolve(root, i));
                    match item.and_then(|i| i.get("type")).and_then(Value::as_str) {
                        Some("object") => "an array of tables",
                        Some("string") => "an array of strings",
                        _ => "an array",
                    }
                } else {
                    type_words(json)
                };
                if !types.iter().any(|(j, _)| *j == json) {
                    types.push((json, words));
                }
            }
        }
        types
    }
}

/// JSON Schema's types but `null`, which TOML cannot write.
const JSON_TYPES: [&str; 6] = ["string", "number", "integer", "boolean", "object", "array"];

/// `[tools.plan.params.goal]`-style name of the table at `at`.
#[must_use]
pub fn table_name(at: &str) -> String {
    if at.is_empty() {
        return "the top level".to_owned();
    }
    let segments: Vec<String> = at.split('/').skip(1).map(unescape).collect();
    if let Some(last) = segments.last()
        && let Ok(n) = last.parse::<usize>()
    {
        return format!("[[{}]] #{}", dotted(&segments[..segments.len() - 1]), n + 1);
    }
    format!("[{}]", dotted(&segments))
}

/// `tools.plan.description`-style name of the key at `at`.
#[must_use]
pub fn key_name(at: &str) -> String {
    let segments: Vec<String> = at.split('/').skip(1).map(unescape).collect();
    dotted(&segments)
}

pub(crate) fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Segments joined with dots, quoted where TOML would need quotes.
#[must_use]
pub fn dotted(segments: &[String]) -> String {
    segments
        .iter()
        .map(|s| {
            let bare = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if bare {
                s.clone()
            } else {
                format!("\"{}\"", s.replace('"', "\\\""))
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// "expected one of …", with a suggestion when the value looks like a typo of one.
pub fn one_of(
    invalid: impl Fn(String) -> Diagnostic,
    options: &[Value],
    instance: &Value,
) -> Diagnostic {
    let options: Vec<String> = options
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .collect();
    let diagnostic = invalid(format!("expected one of {}", suggest::list(&options)));
    match instance
        .as_str()
        .and_then(|s| suggest::closest(s, options.iter().map(String::as_str)))
    {
        Some(near) => diagnostic.with_help(format!("did you mean `\"{near}\"`?")),
        None => diagnostic,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_words(name: &str) -> &'static str {
    match name {
        "object" => "a table",
        "array" => "an array",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        _ => "null",
    }
}

/// `a`, `a or b`, `a, b or c`: expected values for a message.
#[must_use]
pub fn words(expected: &[&str]) -> String {
    match expected {
        [] => "something else".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The TOML type of a converted value, in words.
#[must_use]
pub fn toml_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a float",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

/// What a key whose value is one of a few written shapes expects, in words (the schema's
/// `oneOf` failure would only say that no branch matched), and a help line.
fn union_expectation(key: &str) -> Option<(&'static str, Option<&'static str>)> {
    match key {
        "truncation" => Some((
            "expected `\"auto\"` or `{ last_messages = N }` with N at least 1",
            None,
        )),
        // Hand-off is a future outcome, not a typo: say what exists today.
        "on_exhausted" => Some((
            "expected `{ inject = \"…\" }` or `{ end = \"…\" }` (one of them)",
            Some(
                "`inject` adds context for the model; `end` sends the user a last message and \
                 ends the run",
            ),
        )),
        _ => None,
    }
}
