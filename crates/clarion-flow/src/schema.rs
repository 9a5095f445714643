//! The flow format's JSON Schema, generated from `FlowFile` (the spec types).
//!
//! Draft-07, because that is what Taplo and Even Better TOML read. The same schema is
//! compiled once per process and used by the loader for its structural checks, so what an
//! editor underlines and what `clarion validate` reports come from one definition.

use std::sync::OnceLock;

use serde_json::Value;

use super::spec::FlowFile;

/// The flow format's JSON Schema (draft-07).
#[must_use]
pub fn flow_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = schemars::generate::SchemaSettings::draft07()
            .into_generator()
            .into_root_schema_for::<FlowFile>()
            .to_value();
        strip_null(&mut schema);
        if let Some(object) = schema.as_object_mut() {
            object.insert(
                "$id".to_owned(),
                Value::String("https://clarion.dev/schemas/flow.schema.json".to_owned()),
            );
            object.insert(
                "description".to_owned(),
                Value::String(
                    "A Clarion flow file: one assistant, its tools, slots and rules. \
                     Reference: docs/flow-format.md."
                        .to_owned(),
                ),
            );
        }
        schema
    })
}

/// TOML has no null, so `Option<T>` means "may be absent", never "may be null": drop the
/// null alternatives schemars adds, keeping `$ref`s wrapped in `allOf` so their
/// descriptions survive in draft-07.
pub fn strip_null(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".to_owned(), only);
                }
            }
            if let Some(Value::Array(branches)) = map.get("anyOf") {
                let kept: Vec<Value> = branches
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                    .cloned()
                    .collect();
                if kept.len() == 1 && kept.len() < branches.len() {
                    map.remove("anyOf");
                    map.insert("allOf".to_owned(), Value::Array(kept));
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// The schema as the pretty-printed text checked in at `schemas/flow.schema.json`.
#[must_use]
pub fn flow_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(flow_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// The subschema that applies at `pointer` (an instance path) inside the flow schema,
/// following `properties`, `additionalProperties`, `items` and local `$ref`s. Used to name
/// the keys a table accepts when suggesting a fix for a typo.
#[must_use]
pub fn schema_at<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut node = resolve(root, root)?;
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        let next = node
            .get("properties")
            .and_then(|p| p.get(&segment))
            .or_else(|| {
                node.get("items")
                    .filter(|_| segment.parse::<usize>().is_ok())
            })
            .or_else(|| node.get("additionalProperties").filter(|v| v.is_object()))
            .or_else(|| {
                node.get("anyOf")?
                    .as_array()?
                    .iter()
                    .filter_map(|v| resolve(root, v))
                    .find(|v| v.get("type").and_then(Value::as_str) == Some("object"))
            })?;
        node = resolve(root, next)?;
    }
    Some(node)
}

/// Follows local `$ref`s and single-branch `allOf` wrappers to the schema they stand for.
pub fn resolve<'a>(root: &'a Value, node: &'a Value) -> Option<&'a Value> {
    let mut node = node;
    for _ in 0..16 {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            node = root.pointer(reference.strip_prefix('#')?)?;
        } else if let Some([only]) = node
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            node = only;
        } else {
            return Some(node);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::structure::FLOW;

    fn keys_at(pointer: &str) -> Vec<String> {
        FLOW.keys_at(pointer)
    }

    #[test]
    fn keys_are_found_through_refs_and_maps() {
        assert!(keys_at("/assistant").contains(&"instructions".to_owned()));
        assert!(keys_at("/tools/any/params/p").contains(&"ask".to_owned()));
        assert!(keys_at("/tools/any/after/0").contains(&"when".to_owned()));
        assert!(keys_at("/tools/any/http").contains(&"url".to_owned()));
        assert!(keys_at("/slots/s").contains(&"minimum".to_owned()));
        assert!(keys_at("/nope").is_empty());
    }
}
