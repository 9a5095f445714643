//! Structural checks: is every key known, every value of the right type?
//!
//! The converted document is validated against the flow format's own JSON Schema (see
//! [`crate::schema`]), which yields *every* structural problem with a JSON pointer, not
//! only the first one serde would stop at. Each problem becomes a located diagnostic.
//!
//! To keep checking the rest of the file, the part that holds a problem is then replaced
//! by a harmless placeholder (a parameter by `{}`, an `http` table by one with an empty
//! URL…) and remembered as *broken*: later checks skip broken parts, so one typo never
//! causes a cascade of follow-on errors, and names declared there stay declared.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value, json};

use crate::diagnostic::Diagnostic;
use crate::schema::flow_schema;
use crate::spans::{SpanIndex, pointer};

mod errors;

use errors::unescape;
pub use errors::{Format, Problem, dotted, key_name, one_of, table_name, toml_type, words};

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

/// The flow format, for [`Format::problems`].
pub static FLOW: Format = Format {
    schema: flow_schema,
    key_name,
    missing_help: flow_missing_help,
    listed_keys: 12,
    docs: "docs/flow-format.md",
    validator: std::sync::OnceLock::new(),
};

fn flow_missing_help(key: &str) -> Option<String> {
    let example = match key {
        "name" => "name = \"my-flow\"",
        "model" => "model = \"gpt-4.1-mini\"",
        "instructions" => "instructions = \"You are a helpful assistant.\"",
        "url" => "url = \"https://api.example.com/items/{{ args.id }}\"",
        "argv" => "argv = [\"./tools/lookup\"]",
        "inject" => "inject = \"The tool failed: {{ error.message }}\"",
        "flow" => "[flow]\nname = \"my-flow\"",
        "assistant" => "[assistant]\nmodel = \"gpt-4.1-mini\"\ninstructions = \"…\"",
        _ => return None,
    };
    Some(format!("add it, e.g. `{example}`"))
}

/// Validates `document` against the flow schema, reports every problem, and repairs the
/// document so it deserializes.
pub fn check(document: &mut Value, spans: &SpanIndex) -> (Vec<Diagnostic>, Broken) {
    let mut diagnostics = Vec::new();
    let mut broken = Broken::default();
    let mut removals = Removals::new();
    for problem in FLOW.problems(document, spans) {
        diagnostics.extend(problem.diagnostic);
        broken.insert(repair(document, &problem.at, &mut removals));
    }
    remove_keys(document, &removals);
    ensure_required(document);
    (diagnostics, broken)
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
