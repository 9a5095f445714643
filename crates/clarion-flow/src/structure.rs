//! Structural checks: is every key known, every value of the right type?
//!
//! The converted document is validated against the flow format's own JSON Schema (see
//! [`super::schema`]), which yields *every* structural problem with a JSON pointer, not
//! only the first one serde would stop at. Each problem becomes a located diagnostic.
//!
//! To keep checking the rest of the file, the part that holds a problem is then replaced
//! by a harmless placeholder (a parameter by `{}`, an `http` table by one with an empty
//! URL…) and remembered as *broken*: later checks skip broken parts, so one typo never
//! causes a cascade of follow-on errors, and names declared there stay declared.

use std::collections::{BTreeSet, HashMap, HashSet};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::{Map, Value, json};

use super::schema::{flow_schema, keys_at, resolve, schema_at};
use super::spans::{SpanIndex, escape, pointer};
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::suggest;

/// Parts of the document that had structural errors, by JSON pointer.
#[derive(Debug, Default, Clone)]
pub struct Broken(BTreeSet<String>);

impl Broken {
    /// Whether `at` or one of its ancestors is broken.
    #[must_use]
    pub fn covers(&self, at: &str) -> bool {
        // Look up `at` and each ancestor: checks run per tool and parameter, so a scan of
        // every broken part would make a large file with many mistakes quadratic.
        let mut at = at;
        loop {
            if self.0.contains(at) {
                return true;
            }
            match at.rfind('/') {
                Some(cut) => at = &at[..cut],
                None => return false,
            }
        }
    }

    /// Whether a key directly inside the table at `at` is broken: it may misspell a key
    /// whose absence a later check would otherwise report.
    #[must_use]
    pub fn has_broken_key(&self, at: &str) -> bool {
        let table = format!("{at}/");
        self.0
            .range(table.clone()..)
            .take_while(|b| b.starts_with(&table))
            .any(|b| !b[table.len()..].contains('/'))
    }

    fn insert(&mut self, at: String) {
        self.0.insert(at);
    }
}

/// Validates `document` against the flow schema, reports every problem, and repairs the
/// document so it deserializes.
pub fn check(document: &mut Value, spans: &SpanIndex) -> (Vec<Diagnostic>, Broken) {
    let validator = validator();
    let mut diagnostics = Vec::new();
    let mut repairs: Vec<String> = Vec::new();
    if let Some(validator) = validator {
        let errors: Vec<_> = validator.iter_errors(document).collect();
        let misspelt = misspelt_keys(&errors);
        for error in &errors {
            let at = error.instance_path().as_str().to_owned();
            match error.kind() {
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for key in unexpected {
                        let here = format!("{at}/{}", escape(key));
                        diagnostics.push(unknown_key(&at, key, spans));
                        repairs.push(here);
                    }
                }
                ValidationErrorKind::Required { property } => {
                    let key = property.as_str().unwrap_or_default().to_owned();
                    // `nme = …` already says "did you mean `name`?"; don't also say it is missing.
                    if !misspelt.contains(&(at.clone(), key.clone())) {
                        diagnostics.push(missing_key(&at, &key, spans));
                    }
                    repairs.push(format!("{at}/{}", escape(&key)));
                }
                kind => {
                    diagnostics.push(bad_value(
                        &at,
                        kind,
                        error.instance(),
                        spans,
                        &error.to_string(),
                    ));
                    repairs.push(at);
                }
            }
        }
    }
    let mut broken = Broken::default();
    let mut removals = Removals::new();
    for at in repairs {
        broken.insert(repair(document, &at, &mut removals));
    }
    remove_keys(document, &removals);
    ensure_required(document);
    (diagnostics, broken)
}

/// (table, key) for every unknown key that looks like a typo of a key its table accepts.
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

fn validator() -> Option<&'static jsonschema::Validator> {
    static VALIDATOR: std::sync::OnceLock<Option<jsonschema::Validator>> =
        std::sync::OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::draft7::new(flow_schema()).ok())
        .as_ref()
}

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

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

fn dotted(segments: &[String]) -> String {
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

fn unknown_key(at: &str, key: &str, spans: &SpanIndex) -> Diagnostic {
    let here = format!("{at}/{}", escape(key));
    let accepted = keys_at(at);
    let help = match suggest::closest(key, accepted.iter().map(String::as_str)) {
        Some(near) => format!("did you mean `{near}`?"),
        None if accepted.len() <= 12 => {
            format!("{} accepts {}", table_name(at), suggest::list(&accepted))
        }
        None => format!(
            "{} accepts Clarion's keys and JSON Schema keywords; see docs/flow-format.md",
            table_name(at)
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

fn missing_key(at: &str, key: &str, spans: &SpanIndex) -> Diagnostic {
    let span = if at.is_empty() {
        None
    } else {
        spans.key_span(at)
    };
    let example = match key {
        "name" => "name = \"my-flow\"",
        "model" => "model = \"gpt-4.1-mini\"",
        "instructions" => "instructions = \"You are a helpful assistant.\"",
        "url" => "url = \"https://api.example.com/items/{{ args.id }}\"",
        "argv" => "argv = [\"./tools/lookup\"]",
        "inject" => "inject = \"The tool failed: {{ error.message }}\"",
        "flow" => "[flow]\nname = \"my-flow\"",
        "assistant" => "[assistant]\nmodel = \"gpt-4.1-mini\"\ninstructions = \"…\"",
        _ => "",
    };
    let help = if example.is_empty() {
        format!("add `{key}` to {}", table_name(at))
    } else {
        format!("add it, e.g. `{example}`")
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
    let last = at.rsplit('/').next().unwrap_or_default();
    let span = spans.value_span(at);
    let found = toml_type(instance);
    let wrong_type = |expected: Vec<&str>| {
        Diagnostic::new(
            DiagnosticKind::WrongType {
                key: key.clone(),
                expected: words(&expected),
                found: found.to_owned(),
            },
            span.clone(),
        )
        .with_label(format!("expected {}", words(&expected)))
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
                TypeKind::Single(t) => vec![json_type_name(&t.to_string())],
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| json_type_name(&t.to_string()))
                    .filter(|t| *t != "null")
                    .collect(),
            };
            let diagnostic = wrong_type(expected);
            if instance.is_object() && holds_tables(at) {
                // `[tools.x.after]` for `[[tools.x.after]]`: one bracket short.
                return diagnostic.with_help(format!("write each entry as `[[{key}]]`"));
            }
            diagnostic
        }
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            if let Some(options) = branch_constants(at) {
                return one_of(invalid, &options, instance);
            }
            let expected = branch_types(at);
            if !expected.is_empty() && !expected.contains(&found_json(instance)) {
                return wrong_type(expected.iter().map(|t| json_type_name(t)).collect());
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
                        Some(near) => diagnostic.with_help(format!("did you mean `\"{near}\"`?")),
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
        ValidationErrorKind::Pattern { .. } if last.ends_with("timeout") => {
            invalid("expected a duration such as \"30s\", \"500ms\", \"2m\" or \"1h\"".to_owned())
                .with_label("not a duration")
        }
        ValidationErrorKind::Pattern { .. } if last == "result_pointer" => invalid(
            "expected a JSON pointer such as \"/data/0\" (or \"\" for the whole body)".to_owned(),
        ),
        _ => invalid(fallback.to_owned()),
    }
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

/// The schema the flow schema gives the key at `at`, with wrappers and `$ref`s resolved.
fn property_schema(at: &str) -> Option<&'static Value> {
    let parent = at.rsplit_once('/').map_or("", |(p, _)| p);
    let last = unescape(at.rsplit('/').next()?);
    let root = flow_schema();
    let node = schema_at(root, parent)?.get("properties")?.get(&last)?;
    resolve(root, node)
}

/// Whether the key at `at` is an array of tables.
fn holds_tables(at: &str) -> bool {
    property_schema(at)
        .and_then(|node| node.get("items"))
        .and_then(|items| resolve(flow_schema(), items))
        .and_then(|items| items.get("type"))
        .is_some_and(|t| t == "object")
}

/// When the key at `at` only accepts constants (an enum written as `oneOf` of `const`s),
/// those constants.
fn branch_constants(at: &str) -> Option<Vec<Value>> {
    let node = property_schema(at)?;
    let branches = node
        .get("oneOf")
        .or_else(|| node.get("anyOf"))?
        .as_array()?;
    branches.iter().map(|b| b.get("const").cloned()).collect()
}

/// The JSON types the `anyOf` branches at `at` accept.
fn branch_types(at: &str) -> Vec<&'static str> {
    let root = flow_schema();
    let Some(node) = property_schema(at) else {
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
            let name = static_type(name);
            if name != "null" && !types.contains(&name) {
                types.push(name);
            }
        }
    }
    types
}

fn static_type(name: &str) -> &'static str {
    match name {
        "string" => "string",
        "number" => "number",
        "integer" => "integer",
        "boolean" => "boolean",
        "object" => "object",
        "array" => "array",
        _ => "null",
    }
}

fn found_json(value: &Value) -> &'static str {
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

fn json_type_name(name: &str) -> &'static str {
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

/// Whether `segments` name a record: a table with a fixed set of keys, the unit the
/// repair works in.
fn is_record(segments: &[&str]) -> bool {
    matches!(
        segments,
        [] | ["flow" | "assistant" | "limits" | "provider"]
            | ["slots" | "tools", _]
            | ["tools", _, "params" | "after", _]
            | ["tools", _, "on_error" | "http" | "command"]
    )
}

/// Repairs the problem at `at` as locally as possible and returns the pointer of what was
/// repaired: the offending key is removed from its record (later, by [`remove_keys`]), or
/// a record that is not a table at all is replaced by an empty one. [`ensure_required`]
/// then puts back the keys deserialization cannot do without.
fn repair(document: &mut Value, at: &str, removals: &mut Removals) -> String {
    let segments: Vec<String> = at.split('/').skip(1).map(unescape).collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let record = (0..=s.len())
        .rev()
        .find(|&n| is_record(&s[..n]))
        .unwrap_or(0);
    let (target, placeholder) = if record == s.len() {
        (record, Some(Value::Object(Map::new())))
    } else {
        (record + 1, None)
    };
    if target == 0 {
        return String::new();
    }
    let repaired = pointer(&segments[..target]);
    let parent = pointer(&segments[..target - 1]);
    let last = &segments[target - 1];
    let Some(placeholder) = placeholder else {
        removals.entry(parent).or_default().insert(last.clone());
        return repaired;
    };
    let parent = if parent.is_empty() {
        Some(&mut *document)
    } else {
        document.pointer_mut(&parent)
    };
    match parent {
        Some(Value::Object(map)) => {
            map.insert(last.clone(), placeholder);
        }
        Some(Value::Array(items)) => {
            if let Some(item) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *item = placeholder;
            }
        }
        _ => {}
    }
    repaired
}

/// Keys to remove, by the pointer of their table.
type Removals = HashMap<String, HashSet<String>>;

/// Removes the keys [`repair`] marked, one pass per table: removing them one at a time
/// is quadratic in a table with thousands of unknown keys.
fn remove_keys(document: &mut Value, removals: &Removals) {
    for (table, keys) in removals {
        let table = if table.is_empty() {
            Some(&mut *document)
        } else {
            document.pointer_mut(table)
        };
        if let Some(Value::Object(map)) = table {
            map.retain(|key, _| !keys.contains(key));
        }
    }
}

/// Puts back the keys the typed model cannot do without, so a repaired file deserializes.
fn ensure_required(document: &mut Value) {
    fn require(table: &mut Value, key: &str, placeholder: &Value) {
        if let Some(map) = table.as_object_mut() {
            map.entry(key).or_insert_with(|| placeholder.clone());
        }
    }
    if !document.is_object() {
        *document = Value::Object(Map::new());
    }
    let empty = Value::String(String::new());
    if let Some(root) = document.as_object_mut() {
        for section in ["flow", "assistant"] {
            root.entry(section)
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    require(&mut document["flow"], "name", &empty);
    require(&mut document["assistant"], "model", &empty);
    require(&mut document["assistant"], "instructions", &empty);
    if let Some(Value::Object(tools)) = document.get_mut("tools") {
        for tool in tools.values_mut() {
            if let Some(http) = tool.get_mut("http") {
                require(http, "url", &empty);
            }
            if let Some(command) = tool.get_mut("command") {
                require(command, "argv", &json!(["_"]));
            }
            if let Some(on_error) = tool.get_mut("on_error") {
                require(on_error, "inject", &empty);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_read_like_toml() {
        assert_eq!(table_name(""), "the top level");
        assert_eq!(
            table_name("/tools/plan/params/goal"),
            "[tools.plan.params.goal]"
        );
        assert_eq!(table_name("/tools/plan/after/0"), "[[tools.plan.after]] #1");
        assert_eq!(key_name("/tools/a b/x"), "tools.\"a b\".x");
    }

    #[test]
    fn broken_parts_cover_their_descendants_only() {
        let mut broken = Broken::default();
        broken.insert("/tools/a".to_owned());
        assert!(broken.covers("/tools/a/params/x"));
        assert!(!broken.covers("/tools/ab"));
        assert!(!broken.covers("/tools"));
        assert!(broken.has_broken_key("/tools"));
        assert!(!broken.has_broken_key("/tools/a"));
    }
}
