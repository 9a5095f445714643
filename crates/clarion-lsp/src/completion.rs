//! Completion: what may be typed where the cursor is.
//!
//! Table and key names come from the format's generated JSON Schema (the flow's or the
//! scenario's), each with its description, so completion can never offer a key the
//! loader would reject. Values come from what the file declares: slot names after
//! `slot =`, the catalog's built-ins after `builtin =`, the `[mcp]` servers after `mcp =`,
//! a schema's `enum` values. Inside a template or `when` expression, the names its scope reads: the roots (`args`, `slots`,
//! `result`…), then a tool's parameters after `args.`, the slots after `slots.`, a
//! built-in's result fields after `result.` (from the catalog's result schema), the
//! allow-listed variables after `env.`, `kind` and `message` after `error.`.

use clarion_flow::BuiltinCatalog;
use clarion_flow::schema::{resolve, schema_at};
use clarion_flow::spans::pointer;
use clarion_flow::template::Scope;
use lsp_types::{CompletionItem, CompletionItemKind, Documentation, MarkupContent, MarkupKind};
use serde_json::Value;

use crate::document::{Document, Kind};
use crate::symbols::{Index, template_site};
use crate::syntax::{self, Cursor};

/// The completions at byte `offset` of `document`.
#[must_use]
pub fn complete(
    document: &Document,
    offset: usize,
    builtins: Option<&dyn BuiltinCatalog>,
) -> Vec<CompletionItem> {
    let index = Index::of(&document.text);
    let schema = match document.kind {
        Kind::Flow => clarion_flow::schema::flow_schema(),
        Kind::Scenario => clarion_testing::scenario::schema::scenario_schema(),
        Kind::Other => return Vec::new(),
    };
    match syntax::cursor(&document.text, &index.outline, offset) {
        Cursor::Header { keys, array } => tables(schema, &index, &keys, array),
        Cursor::Key { table } => keys(schema, &index, &table),
        Cursor::Value { key } => values(schema, &index, &key, builtins, true),
        Cursor::String { key, before } => match template_site(&key) {
            Some(site) if document.kind == Kind::Flow => {
                let open = before.rfind("{{").max(before.rfind("{%"));
                let close = before.rfind("}}").max(before.rfind("%}"));
                if site.expression || open > close {
                    names_in_scope(&index, site.scope, site.tool.as_deref(), &before, builtins)
                } else {
                    Vec::new()
                }
            }
            _ => values(schema, &index, &key, builtins, false),
        },
        Cursor::Nothing => Vec::new(),
    }
}

fn item(label: &str, kind: CompletionItemKind, detail: Option<String>) -> CompletionItem {
    CompletionItem {
        label: label.to_owned(),
        kind: Some(kind),
        documentation: detail.map(|text| {
            Documentation::MarkupContent(MarkupContent {
                kind: MarkupKind::Markdown,
                value: text,
            })
        }),
        ..CompletionItem::default()
    }
}

fn description(root: &Value, node: &Value) -> Option<String> {
    node.get("description")
        .or_else(|| resolve(root, node)?.get("description"))
        .and_then(Value::as_str)
        .map(ToOwned::to_owned)
}

fn is_table(root: &Value, node: &Value, array: bool) -> bool {
    let Some(node) = resolve(root, node) else {
        return false;
    };
    let kind = node.get("type").and_then(Value::as_str);
    if array {
        kind == Some("array")
            && node
                .get("items")
                .and_then(|items| resolve(root, items))
                .and_then(|items| items.get("type"))
                .and_then(Value::as_str)
                == Some("object")
    } else {
        kind == Some("object") || node.get("properties").is_some()
    }
}

/// `[…]` and `[[…]]`: the tables the schema has below `keys`, and the names the file
/// already uses for map entries (`[tools.` offers the tools).
fn tables(root: &Value, index: &Index, keys: &[String], array: bool) -> Vec<CompletionItem> {
    let at = pointer(keys);
    let Some(node) = schema_at(root, &at) else {
        return Vec::new();
    };
    let mut items = Vec::new();
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            // A header may also name a table on the way to one (`[tools.x.params` → …).
            if is_table(root, property, array) || is_table(root, property, false) {
                items.push(item(
                    name,
                    CompletionItemKind::MODULE,
                    description(root, property),
                ));
            }
        }
    }
    if node
        .get("additionalProperties")
        .is_some_and(Value::is_object)
    {
        for name in index.names(&at) {
            items.push(item(&name, CompletionItemKind::MODULE, None));
        }
    }
    items
}

/// Keys of the table at `table` that it does not have yet.
fn keys(root: &Value, index: &Index, table: &[String]) -> Vec<CompletionItem> {
    let at = pointer(table);
    let Some(node) = schema_at(root, &at) else {
        return Vec::new();
    };
    let present = index.names(&at);
    node.get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .filter(|(name, _)| !present.contains(name))
                .map(|(name, property)| {
                    item(
                        name,
                        CompletionItemKind::PROPERTY,
                        description(root, property),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Values for `key`: slots, built-ins, enum values, booleans. `quoted` outside a string.
fn values(
    root: &Value,
    index: &Index,
    key: &[String],
    builtins: Option<&dyn BuiltinCatalog>,
    quoted: bool,
) -> Vec<CompletionItem> {
    let quote = |s: &str| {
        if quoted {
            format!("\"{s}\"")
        } else {
            s.to_owned()
        }
    };
    let path: Vec<&str> = key.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["tools", _, "params", _, "slot"] => {
            return index
                .names("/slots")
                .iter()
                .map(|slot| {
                    let detail = index
                        .json
                        .pointer(&pointer(&["slots", slot]))
                        .map(slot_detail);
                    item(&quote(slot), CompletionItemKind::VARIABLE, detail)
                })
                .collect();
        }
        ["tools", _, "mcp"] => {
            return index
                .names("/mcp")
                .iter()
                .map(|server| {
                    let table = index.json.pointer(&pointer(&["mcp", server]));
                    let detail = table
                        .and_then(|t| t.get("url"))
                        .and_then(Value::as_str)
                        .map(ToOwned::to_owned)
                        .or_else(|| {
                            let argv = table?.get("command")?.as_array()?;
                            let words: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
                            Some(words.join(" "))
                        });
                    item(&quote(server), CompletionItemKind::MODULE, detail)
                })
                .collect();
        }
        ["tools", _, "builtin"] => {
            return builtins
                .map(BuiltinCatalog::names)
                .unwrap_or_default()
                .iter()
                .map(|name| {
                    let detail = builtins
                        .and_then(|b| b.describe(name))
                        .map(|schema| crate::hover::signature(name, &schema, None));
                    item(&quote(name), CompletionItemKind::FUNCTION, detail)
                })
                .collect();
        }
        _ => {}
    }
    let Some(node) = schema_at(root, &pointer(key)) else {
        return Vec::new();
    };
    let mut items = Vec::new();
    let mut branches = vec![node];
    for keyword in ["anyOf", "oneOf"] {
        if let Some(list) = node.get(keyword).and_then(Value::as_array) {
            branches.extend(list.iter().filter_map(|b| resolve(root, b)));
        }
    }
    for branch in branches {
        let described = description(root, branch);
        if let Some(values) = branch.get("enum").and_then(Value::as_array) {
            for value in values.iter().filter_map(Value::as_str) {
                items.push(item(
                    &quote(value),
                    CompletionItemKind::ENUM_MEMBER,
                    described.clone(),
                ));
            }
        }
        if let Some(value) = branch.get("const").and_then(Value::as_str) {
            items.push(item(
                &quote(value),
                CompletionItemKind::ENUM_MEMBER,
                described,
            ));
        } else if quoted && branch.get("type").and_then(Value::as_str) == Some("boolean") {
            for value in ["true", "false"] {
                items.push(item(value, CompletionItemKind::VALUE, None));
            }
        }
    }
    items.dedup_by(|a, b| a.label == b.label);
    items
}

/// A slot's type and description, for completion and hover.
#[must_use]
pub fn slot_detail(slot: &Value) -> String {
    let kind = slot.get("type").map_or_else(|| "any".to_owned(), type_name);
    match slot.get("description").and_then(Value::as_str) {
        Some(text) => format!("`{kind}` — {text}"),
        None => format!("`{kind}`"),
    }
}

/// A JSON Schema `type` as text (`"number"`, `["string", "null"]` → `string | null`).
#[must_use]
pub fn type_name(kind: &Value) -> String {
    match kind {
        Value::String(s) => s.clone(),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    }
}

/// Inside a template or expression: the scope's roots, or the fields after `root.`.
fn names_in_scope(
    index: &Index,
    scope: Scope,
    tool: Option<&str>,
    before: &str,
    builtins: Option<&dyn BuiltinCatalog>,
) -> Vec<CompletionItem> {
    let path = syntax::trailing_path(before);
    let Some((root, _)) = path.split_once('.') else {
        return scope
            .roots()
            .iter()
            .map(|root| {
                item(
                    root,
                    CompletionItemKind::MODULE,
                    Some(root_doc(root).to_owned()),
                )
            })
            .collect();
    };
    if !scope.roots().contains(&root) {
        return Vec::new();
    }
    match (root, tool) {
        ("slots", _) => index
            .names("/slots")
            .iter()
            .map(|slot| {
                let detail = index
                    .json
                    .pointer(&pointer(&["slots", slot]))
                    .map(slot_detail);
                item(slot, CompletionItemKind::VARIABLE, detail)
            })
            .collect(),
        ("args", Some(tool)) => index
            .names(&pointer(&["tools", tool, "params"]))
            .iter()
            .map(|param| {
                let detail = index
                    .json
                    .pointer(&pointer(&["tools", tool, "params", param]))
                    .map(slot_detail);
                item(param, CompletionItemKind::FIELD, detail)
            })
            .collect(),
        ("env", Some(tool)) => index
            .json
            .pointer(&pointer(&["tools", tool, "http", "env"]))
            .and_then(Value::as_array)
            .map(|vars| {
                vars.iter()
                    .filter_map(Value::as_str)
                    .map(|var| item(var, CompletionItemKind::CONSTANT, None))
                    .collect()
            })
            .unwrap_or_default(),
        // A built-in's result fields, from its result type's schema.
        ("result", Some(tool)) => index
            .json
            .pointer(&pointer(&["tools", tool, "builtin"]))
            .and_then(Value::as_str)
            .and_then(|name| builtins?.describe_result(name))
            .and_then(|schema| schema.get("properties").and_then(Value::as_object).cloned())
            .map(|fields| {
                fields
                    .iter()
                    .map(|(field, spec)| {
                        item(field, CompletionItemKind::FIELD, Some(slot_detail(spec)))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ("error", _) => scope
            .error_fields()
            .iter()
            .map(|field| item(field, CompletionItemKind::FIELD, None))
            .collect(),
        _ => Vec::new(),
    }
}

fn root_doc(root: &str) -> &'static str {
    match root {
        "slots" => "The thread's slots: typed facts remembered across turns.",
        "metadata" => "The thread's string metadata.",
        "args" => "The tool's arguments (its parameters).",
        "result" => "The tool's result.",
        "error" => {
            "The tool's error (`error.kind`, `error.message`), or in `invalid` the rejected value's (`error.keyword`, `error.limit`, `error.value`)."
        }
        "env" => "Environment variables the tool's `env` allow-list names.",
        _ => "",
    }
}
