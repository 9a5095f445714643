//! Hover: what the name or key under the cursor is.
//!
//! On a key, its documentation: the description the format's JSON Schema gives it (the
//! doc comments of `clarion_flow::spec`, which docs/flow-format.md mirrors). On a slot or
//! parameter, its type and every place it is filled, set and read, with line numbers. On a
//! built-in's name, its signature from the catalog.

use std::fmt::Write as _;

use clarion_flow::BuiltinCatalog;
use clarion_flow::schema::{resolve, schema_at};
use clarion_flow::spans::pointer;
use lsp_types::{Hover, HoverContents, MarkupContent, MarkupKind};
use serde_json::Value;

use crate::completion::{slot_detail, type_name};
use crate::document::{Document, Kind};
use crate::symbols::{Index, Role, Symbol};

/// The hover at byte `offset` of `document`.
#[must_use]
pub fn hover(
    document: &Document,
    offset: usize,
    builtins: Option<&dyn BuiltinCatalog>,
) -> Option<Hover> {
    let schema = match document.kind {
        Kind::Flow => clarion_flow::schema::flow_schema(),
        Kind::Scenario => clarion_testing::scenario::schema::scenario_schema(),
        Kind::Other => return None,
    };
    let index = Index::of(&document.text);
    let (text, span) =
        if let Some(occurrence) = index.at(offset).filter(|_| document.kind == Kind::Flow) {
            (
                symbol(document, &index, &occurrence.symbol),
                occurrence.span.clone(),
            )
        } else if let Some((name, span)) = builtin_at(&index, offset) {
            let result = builtins.and_then(|b| b.describe_result(&name));
            let signature = builtins.and_then(|b| b.describe(&name)).map_or_else(
                || format!("no built-in `{name}` is known"),
                |s| signature(&name, &s, result.as_ref()),
            );
            (signature, span)
        } else {
            let (at, span) = key_at(&index, offset)?;
            let node = schema_at(schema, &at)?;
            let text = node
                .get("description")
                .or_else(|| resolve(schema, node)?.get("description"))
                .and_then(Value::as_str)?;
            let name = at.rsplit('/').next().unwrap_or_default();
            (format!("**`{name}`**\n\n{text}"), span)
        };
    Some(Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value: text,
        }),
        range: Some(document.range(&span)),
    })
}

/// A built-in's signature: `finance.x(a: number, b?: integer)`, each parameter's
/// description, and the result's fields when known.
#[must_use]
pub fn signature(name: &str, schema: &Value, result: Option<&Value>) -> String {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut params = Vec::new();
    let mut lines = Vec::new();
    for (param, spec) in properties.into_iter().flatten() {
        let optional = if required.contains(&param.as_str()) {
            ""
        } else {
            "?"
        };
        let kind = spec.get("type").map_or_else(|| "any".to_owned(), type_name);
        params.push(format!("{param}{optional}: {kind}"));
        if let Some(text) = spec.get("description").and_then(Value::as_str) {
            lines.push(format!("- `{param}`: {text}"));
        }
    }
    let mut out = format!("```\n{name}({})\n```", params.join(", "));
    if !lines.is_empty() {
        out.push_str("\n\n");
        out.push_str(&lines.join("\n"));
    }
    let fields = result
        .and_then(|r| r.get("properties"))
        .and_then(Value::as_object);
    if let Some(fields) = fields {
        out.push_str("\n\nresult:");
        for (field, spec) in fields {
            let _ = write!(out, "\n- `result.{field}`: {}", slot_detail(spec));
        }
    }
    out
}

fn builtin_at(index: &Index, offset: usize) -> Option<(String, std::ops::Range<usize>)> {
    index.names("/tools").into_iter().find_map(|tool| {
        let at = pointer(&["tools", &tool, "builtin"]);
        let node = index.spans.get(&at)?;
        let name = index.json.pointer(&at)?.as_str()?;
        (node.value.start <= offset && offset <= node.value.end)
            .then(|| (name.to_owned(), node.value.clone()))
    })
}

/// The pointer of the key under the cursor: a key in a table, or a header's segment.
fn key_at(index: &Index, offset: usize) -> Option<(String, std::ops::Range<usize>)> {
    for header in &index.outline.headers {
        for (i, (_, span)) in header.keys.iter().enumerate() {
            if span.start <= offset && offset <= span.end {
                let names: Vec<&str> = header.names()[..=i].to_vec();
                return Some((pointer(&names), span.clone()));
            }
        }
    }
    index
        .spans
        .iter()
        .filter_map(|(at, node)| Some((at, node.key.clone()?)))
        .filter(|(_, key)| key.start <= offset && offset <= key.end)
        .min_by_key(|(_, key)| key.len())
        .map(|(at, key)| (at.to_owned(), key))
}

fn symbol(document: &Document, index: &Index, symbol: &Symbol) -> String {
    let line = |o: &crate::symbols::Occurrence| document.range(&o.span).start.line + 1;
    let uses = index.of_symbol(symbol);
    let list = |role: Role| -> Vec<String> {
        let mut places: Vec<String> = uses
            .iter()
            .filter(|o| o.role == role)
            .map(|o| format!("line {} (`{}`)", line(o), describe(&o.at)))
            .collect();
        // Two reads in one template are one place to look.
        places.dedup();
        places
    };
    let mut out = match symbol {
        Symbol::Slot(name) => {
            let spec = index.json.pointer(&pointer(&["slots", name]));
            let detail = spec.map_or_else(|| "not declared".to_owned(), slot_detail);
            format!("**slot `{name}`**: {detail}")
        }
        Symbol::Param(tool, name) => {
            let spec = index
                .json
                .pointer(&pointer(&["tools", tool, "params", name]));
            let detail = spec.map_or_else(|| "not declared".to_owned(), slot_detail);
            let mut text = format!("**parameter `{name}`** of `{tool}`: {detail}");
            if let Some(slot) = spec.and_then(|s| s.get("slot")).and_then(Value::as_str) {
                let _ = write!(text, "\n\nfilled from and remembered into slot `{slot}`");
            }
            if let Some(ask) = spec.and_then(|s| s.get("ask")).and_then(Value::as_str) {
                let _ = write!(text, "\n\nasked: \"{ask}\"");
            }
            text
        }
        Symbol::Tool(name) => {
            let spec = index.json.pointer(&pointer(&["tools", name]));
            let description = spec
                .and_then(|s| s.get("description"))
                .and_then(Value::as_str)
                .unwrap_or("(no description)");
            let params = index.names(&pointer(&["tools", name, "params"]));
            format!(
                "**tool `{name}`**: {description}\n\nparameters: {}",
                clarion_flow::suggest::list(&params)
            )
        }
    };
    for (role, title) in [
        (Role::Fills, "filled by"),
        (Role::Sets, "set by"),
        (Role::Reads, "read by"),
    ] {
        let places = list(role);
        if !places.is_empty() {
            let _ = write!(out, "\n\n{title}: {}", places.join(", "));
        }
    }
    out
}

/// A pointer as the dotted path an author reads (`tools.plan.after.0.set.goal`).
fn describe(at: &str) -> String {
    at.trim_start_matches('/').replace('/', ".")
}
