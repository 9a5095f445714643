//! Provider strict mode for function schemas.
//!
//! OpenAI's strict mode guarantees arguments that match the schema, but accepts only a
//! subset of JSON Schema: every object lists all its properties in `required` and sets
//! `additionalProperties: false`, and keywords such as `minLength` or `allOf` are refused.
//! Clarion uses strict mode for a tool whenever its schemas fit the subset (unless the
//! flow says `strict = false`), making optional parameters nullable so they can be listed
//! as required; the engine treats `null` as "not given".

use serde_json::{Map, Value, json};

/// Keywords strict mode accepts.
const SUPPORTED: &[&str] = &[
    "type",
    "enum",
    "const",
    "description",
    "title",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "$defs",
    "$ref",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
];

/// The first keyword in `schema` that strict mode refuses, as (pointer to the schema that
/// holds it, keyword). A free-form object (no `properties`, or `additionalProperties`
/// other than `false`) counts as using `additionalProperties`.
#[must_use]
pub fn unsupported(schema: &Value) -> Option<(String, String)> {
    walk(schema, String::new())
}

fn walk(schema: &Value, at: String) -> Option<(String, String)> {
    let object = schema.as_object()?;
    if let Some(keyword) = object.keys().find(|k| !SUPPORTED.contains(&k.as_str())) {
        return Some((at, keyword.clone()));
    }
    let is_object = match object.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => object.contains_key("properties"),
    };
    if is_object {
        let free_form = !object.contains_key("properties")
            || object
                .get("additionalProperties")
                .is_some_and(|v| v != &Value::Bool(false));
        if free_form {
            return Some((at, "additionalProperties".to_owned()));
        }
    }
    for (name, sub) in object
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(found) = walk(sub, format!("{at}/properties/{name}")) {
            return Some(found);
        }
    }
    for (name, sub) in object
        .get("$defs")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(found) = walk(sub, format!("{at}/$defs/{name}")) {
            return Some(found);
        }
    }
    if let Some(items) = object.get("items")
        && let Some(found) = walk(items, format!("{at}/items"))
    {
        return Some(found);
    }
    for (i, sub) in object
        .get("anyOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(found) = walk(sub, format!("{at}/anyOf/{i}")) {
            return Some(found);
        }
    }
    None
}

/// Rewrites a compatible schema for strict mode: nested objects get every property in
/// `required` (the optional ones nullable) and `additionalProperties: false`.
#[must_use]
pub fn strictify(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = object.clone();
    if let Some(Value::Object(properties)) = object.get("properties") {
        let required: Vec<&str> = object
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut strict_properties = Map::new();
        for (name, sub) in properties {
            let sub = strictify(sub);
            let sub = if required.contains(&name.as_str()) {
                sub
            } else {
                nullable(&sub)
            };
            strict_properties.insert(name.clone(), sub);
        }
        out.insert(
            "required".to_owned(),
            Value::Array(properties.keys().cloned().map(Value::String).collect()),
        );
        out.insert("properties".to_owned(), Value::Object(strict_properties));
        out.insert("additionalProperties".to_owned(), Value::Bool(false));
    }
    if let Some(items) = object.get("items") {
        out.insert("items".to_owned(), strictify(items));
    }
    for key in ["anyOf"] {
        if let Some(Value::Array(branches)) = object.get(key) {
            out.insert(
                key.to_owned(),
                Value::Array(branches.iter().map(strictify).collect()),
            );
        }
    }
    if let Some(Value::Object(defs)) = object.get("$defs") {
        out.insert(
            "$defs".to_owned(),
            Value::Object(
                defs.iter()
                    .map(|(k, v)| (k.clone(), strictify(v)))
                    .collect(),
            ),
        );
    }
    Value::Object(out)
}

/// Makes a schema accept `null` too.
#[must_use]
pub fn nullable(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = object.clone();
    match object.get("type") {
        Some(Value::String(t)) if t != "null" => {
            out.insert("type".to_owned(), json!([t, "null"]));
        }
        Some(Value::Array(ts)) if !ts.iter().any(|t| t == "null") => {
            let mut ts = ts.clone();
            ts.push(json!("null"));
            out.insert("type".to_owned(), Value::Array(ts));
        }
        Some(_) => {}
        None => {
            let description = out.remove("description");
            let mut wrapped = Map::new();
            if let Some(description) = description {
                wrapped.insert("description".to_owned(), description);
            }
            wrapped.insert(
                "anyOf".to_owned(),
                json!([Value::Object(out), { "type": "null" }]),
            );
            return Value::Object(wrapped);
        }
    }
    if let Some(Value::Array(options)) = object.get("enum")
        && !options.contains(&Value::Null)
    {
        let mut options = options.clone();
        options.push(Value::Null);
        out.insert("enum".to_owned(), Value::Array(options));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_keywords_are_found_at_any_depth() {
        assert_eq!(unsupported(&json!({"type": "number", "minimum": 0})), None);
        assert_eq!(
            unsupported(&json!({"type": "string", "minLength": 1})),
            Some((String::new(), "minLength".to_owned()))
        );
        let nested = json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string", "uniqueItems": true}}}, "additionalProperties": false});
        assert_eq!(
            unsupported(&nested),
            Some(("/properties/a/items".to_owned(), "uniqueItems".to_owned()))
        );
        assert_eq!(
            unsupported(&json!({"type": "object"})),
            Some((String::new(), "additionalProperties".to_owned()))
        );
    }

    #[test]
    fn optional_nested_properties_become_nullable_and_required() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer", "enum": [1, 2]}}, "required": ["a"]});
        let strict = strictify(&schema);
        assert_eq!(strict["required"], json!(["a", "b"]));
        assert_eq!(strict["additionalProperties"], json!(false));
        assert_eq!(strict["properties"]["a"]["type"], json!("string"));
        assert_eq!(
            strict["properties"]["b"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(strict["properties"]["b"]["enum"], json!([1, 2, null]));
    }

    #[test]
    fn untyped_schemas_are_wrapped_to_become_nullable() {
        let schema = json!({"description": "d", "anyOf": [{"type": "string"}, {"type": "number"}]});
        assert_eq!(
            nullable(&schema),
            json!({"description": "d", "anyOf": [{"anyOf": [{"type": "string"}, {"type": "number"}]}, {"type": "null"}]})
        );
    }
}
