//! From spanned TOML to JSON, keeping every location.
//!
//! The loader checks a flow in JSON terms (the flow format's own JSON Schema, the
//! parameters' JSON Schemas, JSON pointers in errors), but diagnostics must point into the
//! TOML text. [`to_json`] converts toml's span-carrying `DeTable` into a
//! `serde_json::Value` and records, for every JSON pointer, the span of the key that
//! introduced it and of its value. Any later check that can name a pointer can therefore
//! put a caret under the exact key or value.

use std::collections::HashMap;
use std::ops::Range;

use serde_json::{Map, Number, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a JSON node came from in the TOML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpan {
    /// The key, for table entries (for `[a.b]` headers, the last key of the header).
    pub key: Option<Range<usize>>,
    /// The value (for tables, toml's span of the table).
    pub value: Range<usize>,
}

/// JSON pointer → location in the TOML text.
#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    nodes: HashMap<String, NodeSpan>,
}

impl SpanIndex {
    /// The spans of the node at `pointer` (e.g. `/tools/plan/params/goal`).
    #[must_use]
    pub fn get(&self, pointer: &str) -> Option<&NodeSpan> {
        self.nodes.get(pointer)
    }

    /// The span of the key at `pointer`, or of its value when it has no key; walks up to
    /// the nearest ancestor that has a span.
    #[must_use]
    pub fn key_span(&self, pointer: &str) -> Option<Range<usize>> {
        self.nearest(pointer)
            .map(|node| node.key.clone().unwrap_or_else(|| node.value.clone()))
    }

    /// The span of the value at `pointer`, or of its nearest ancestor.
    #[must_use]
    pub fn value_span(&self, pointer: &str) -> Option<Range<usize>> {
        self.nearest(pointer).map(|node| node.value.clone())
    }

    /// Every node: its pointer and spans, in no particular order. The language server
    /// walks them to find what is under the cursor and every place a name is used.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &NodeSpan)> {
        self.nodes
            .iter()
            .map(|(pointer, node)| (pointer.as_str(), node))
    }

    fn nearest(&self, pointer: &str) -> Option<&NodeSpan> {
        let mut pointer = pointer;
        loop {
            if let Some(node) = self.nodes.get(pointer) {
                return Some(node);
            }
            let cut = pointer.rfind('/')?;
            pointer = &pointer[..cut];
        }
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
#[must_use]
pub fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    push_escaped(&mut out, segment);
    out
}

/// Appends `segment`, escaped, to `out`. Pointers are built for every node of every file,
/// and segments almost never need escaping, so that case copies once and allocates nothing.
fn push_escaped(out: &mut String, segment: &str) {
    if segment.contains(['~', '/']) {
        out.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    } else {
        out.push_str(segment);
    }
}

/// `at` + `/` + `segment` escaped, in one allocation.
fn child(at: &str, segment: &str) -> String {
    let mut out = String::with_capacity(at.len() + 1 + segment.len());
    out.push_str(at);
    out.push('/');
    push_escaped(&mut out, segment);
    out
}

/// Builds a JSON pointer from segments.
#[must_use]
pub fn pointer<S: AsRef<str>>(segments: &[S]) -> String {
    segments.iter().fold(String::new(), |mut out, s| {
        out.push('/');
        push_escaped(&mut out, s.as_ref());
        out
    })
}

/// A float that JSON cannot hold (`nan`, `inf`), found at this pointer and span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrepresentable {
    /// The JSON pointer.
    pub pointer: String,
    /// The value's span.
    pub span: Range<usize>,
}

/// Converts a parsed TOML document into JSON plus the location of every node.
#[must_use]
pub fn to_json(root: &Spanned<DeTable<'_>>) -> (Value, SpanIndex, Vec<Unrepresentable>) {
    let mut index = SpanIndex::default();
    let mut bad = Vec::new();
    index.nodes.insert(
        String::new(),
        NodeSpan {
            key: None,
            value: root.span(),
        },
    );
    let value = table(root.get_ref(), "", &mut index, &mut bad);
    (value, index, bad)
}

fn table(
    table: &DeTable<'_>,
    at: &str,
    index: &mut SpanIndex,
    bad: &mut Vec<Unrepresentable>,
) -> Value {
    let mut map = Map::with_capacity(table.len());
    for (key, item) in table {
        let here = child(at, key.get_ref());
        let converted = value(item, &here, index, bad);
        let node = NodeSpan {
            key: Some(key.span()),
            value: item.span(),
        };
        index.nodes.insert(here, node);
        map.insert(key.get_ref().to_string(), converted);
    }
    Value::Object(map)
}

fn value(
    item: &Spanned<DeValue<'_>>,
    at: &str,
    index: &mut SpanIndex,
    bad: &mut Vec<Unrepresentable>,
) -> Value {
    match item.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(Value::from)
            .or_else(|_| u64::from_str_radix(i.as_str(), i.radix()).map(Value::from))
            .unwrap_or_else(|_| float(i.as_str(), at, item.span(), bad)),
        DeValue::Float(f) => float(f.as_str(), at, item.span(), bad),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, element)| {
                    let here = child(at, &i.to_string());
                    let converted = value(element, &here, index, bad);
                    let node = NodeSpan {
                        key: None,
                        value: element.span(),
                    };
                    index.nodes.insert(here, node);
                    converted
                })
                .collect(),
        ),
        DeValue::Table(t) => table(t, at, index, bad),
    }
}

fn float(text: &str, at: &str, span: Range<usize>, bad: &mut Vec<Unrepresentable>) -> Value {
    if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
        Value::Number(n)
    } else {
        bad.push(Unrepresentable {
            pointer: at.to_owned(),
            span,
        });
        Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(text: &str) -> (Value, SpanIndex) {
        let root = DeTable::parse(text).unwrap_or_else(|e| panic!("{e}"));
        let (json, index, bad) = to_json(&root);
        assert!(bad.is_empty());
        (json, index)
    }

    #[test]
    fn keys_and_values_keep_their_spans() {
        let text = "[tools.plan]\ndescription = \"x\"\n[tools.plan.params.a]\ntype = \"number\"\n";
        let (json, index) = convert(text);
        assert_eq!(json["tools"]["plan"]["params"]["a"]["type"], "number");
        let node = index.get("/tools/plan/description").cloned();
        let node = node.unwrap_or_else(|| panic!("no span"));
        assert_eq!(&text[node.key.unwrap_or_default()], "description");
        assert_eq!(&text[node.value], "\"x\"");
        let key = index.key_span("/tools/plan/params/a/type/nonexistent");
        assert_eq!(&text[key.unwrap_or_default()], "type");
    }

    #[test]
    fn pointer_segments_are_escaped() {
        assert_eq!(pointer(&["a/b", "c~d"]), "/a~1b/c~0d");
    }

    #[test]
    fn nan_is_reported_not_converted() {
        let root = DeTable::parse("x = nan").unwrap_or_else(|e| panic!("{e}"));
        let (json, _, bad) = to_json(&root);
        assert_eq!(json["x"], Value::Null);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].pointer, "/x");
    }
}
