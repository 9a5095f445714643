//! JSON Schema keywords inside parameter and slot tables.
//!
//! A parameter table mixes Clarion's own keys (`ask`, `slot`, `required`…) with any JSON
//! Schema keyword. serde cannot deny unknown fields next to `#[serde(flatten)]`, and the
//! JSON Schema meta-schema happily accepts unknown keywords, so a typo such as `minimun`
//! would silently do nothing. This module therefore lists every keyword Clarion passes on
//! to the model, and the loader rejects anything else — at the top of a parameter and
//! inside nested schemas alike — with a "did you mean" suggestion.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::spec::{OnExhausted, ParamSpec, Required, SlotSpec};

/// The JSON Schema keywords of a parameter or slot, as written (minus Clarion's own keys).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct SchemaKeywords(pub Map<String, Value>);

/// Every JSON Schema keyword (draft 2020-12 plus draft-07's `definitions`) with the JSON
/// Schema of its value, for editors and for the loader's type checks.
pub const KEYWORDS: &[(&str, KeywordValue)] = &[
    ("type", KeywordValue::TypeName),
    ("enum", KeywordValue::Array),
    ("const", KeywordValue::Any),
    ("title", KeywordValue::String),
    ("default", KeywordValue::Any),
    ("examples", KeywordValue::Array),
    ("deprecated", KeywordValue::Bool),
    ("readOnly", KeywordValue::Bool),
    ("writeOnly", KeywordValue::Bool),
    ("$comment", KeywordValue::String),
    ("minimum", KeywordValue::Number),
    ("maximum", KeywordValue::Number),
    ("exclusiveMinimum", KeywordValue::Number),
    ("exclusiveMaximum", KeywordValue::Number),
    ("multipleOf", KeywordValue::Number),
    ("minLength", KeywordValue::Count),
    ("maxLength", KeywordValue::Count),
    ("pattern", KeywordValue::String),
    ("format", KeywordValue::String),
    ("contentEncoding", KeywordValue::String),
    ("contentMediaType", KeywordValue::String),
    ("items", KeywordValue::Schema),
    ("prefixItems", KeywordValue::SchemaArray),
    ("contains", KeywordValue::Schema),
    ("minItems", KeywordValue::Count),
    ("maxItems", KeywordValue::Count),
    ("minContains", KeywordValue::Count),
    ("maxContains", KeywordValue::Count),
    ("uniqueItems", KeywordValue::Bool),
    ("unevaluatedItems", KeywordValue::Schema),
    ("properties", KeywordValue::SchemaMap),
    ("patternProperties", KeywordValue::SchemaMap),
    ("additionalProperties", KeywordValue::Schema),
    ("unevaluatedProperties", KeywordValue::Schema),
    ("propertyNames", KeywordValue::Schema),
    ("minProperties", KeywordValue::Count),
    ("maxProperties", KeywordValue::Count),
    ("dependentRequired", KeywordValue::Object),
    ("dependentSchemas", KeywordValue::SchemaMap),
    ("allOf", KeywordValue::SchemaArray),
    ("anyOf", KeywordValue::SchemaArray),
    ("oneOf", KeywordValue::SchemaArray),
    ("not", KeywordValue::Schema),
    ("if", KeywordValue::Schema),
    ("then", KeywordValue::Schema),
    ("else", KeywordValue::Schema),
    ("$defs", KeywordValue::SchemaMap),
    ("definitions", KeywordValue::SchemaMap),
    // Only inside nested schemas: a parameter's own `required` is Clarion's.
    ("required", KeywordValue::Array),
    ("$ref", KeywordValue::String),
    ("description", KeywordValue::String),
];

/// The shape of a keyword's value.
#[derive(Debug, Clone, Copy)]
pub enum KeywordValue {
    /// Anything.
    Any,
    /// A string.
    String,
    /// A boolean.
    Bool,
    /// A number.
    Number,
    /// A non-negative integer.
    Count,
    /// An array.
    Array,
    /// An object.
    Object,
    /// A JSON type name or a list of them.
    TypeName,
    /// A subschema (object or boolean).
    Schema,
    /// A list of subschemas.
    SchemaArray,
    /// A map of subschemas.
    SchemaMap,
}

impl KeywordValue {
    fn schema(self) -> Value {
        const TYPES: [&str; 7] = [
            "string", "number", "integer", "boolean", "object", "array", "null",
        ];
        match self {
            Self::Any => json!({}),
            Self::String => json!({ "type": "string" }),
            Self::Bool => json!({ "type": "boolean" }),
            Self::Number => json!({ "type": "number" }),
            Self::Count => json!({ "type": "integer", "minimum": 0 }),
            Self::Array => json!({ "type": "array" }),
            Self::Object | Self::SchemaMap => json!({ "type": "object" }),
            Self::TypeName => json!({
                "anyOf": [
                    { "enum": TYPES },
                    { "type": "array", "items": { "enum": TYPES }, "minItems": 1 }
                ]
            }),
            Self::Schema => json!({ "type": ["object", "boolean"] }),
            Self::SchemaArray => {
                json!({ "type": "array", "items": { "type": ["object", "boolean"] } })
            }
        }
    }
}

/// Whether `key` is a JSON Schema keyword.
#[must_use]
pub fn is_keyword(key: &str) -> bool {
    KEYWORDS.iter().any(|(k, _)| *k == key)
}

/// The JSON Schema of a table holding `clarion_keys` plus every JSON Schema keyword.
fn keyword_table(
    description: &str,
    clarion_keys: Vec<(&'static str, Value)>,
    skip: &[&str],
) -> Schema {
    let mut properties = Map::new();
    for (key, schema) in clarion_keys {
        properties.insert(key.to_owned(), schema);
    }
    for (key, value) in KEYWORDS {
        if !skip.contains(key) && !properties.contains_key(*key) {
            properties.insert((*key).to_owned(), value.schema());
        }
    }
    json_schema!({
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": false,
    })
}

impl JsonSchema for ParamSpec {
    fn schema_name() -> Cow<'static, str> {
        "ParamSpec".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let required = generator.subschema_for::<Required>().to_value();
        let on_exhausted = generator.subschema_for::<OnExhausted>().to_value();
        keyword_table(
            "A tool parameter: Clarion's keys plus any JSON Schema keyword.",
            vec![
                (
                    "description",
                    json!({ "type": "string", "description": "What the parameter means; the model reads it." }),
                ),
                ("required", required),
                (
                    "ask",
                    json!({ "type": "string", "description": "The question put to the user when the parameter is missing (a template over `args` and `slots`)." }),
                ),
                (
                    "slot",
                    json!({ "type": "string", "description": "Prefill from, and remember into, this slot." }),
                ),
                (
                    "grounded",
                    json!({ "type": "boolean", "description": "Accept only a value the user stated in the thread; a value the model made up is treated as not given (filled from a slot, or asked for). Numbers and strings only." }),
                ),
                (
                    "invalid",
                    json!({ "type": "string", "description": "What the user is asked when the model passed a value that fails the parameter's schema: the value is dropped and this is asked instead of the model reading `invalid_arguments` (a template over `args`, `slots` and `error`: `error.keyword`, `error.limit`, `error.value`). Required parameters only." }),
                ),
                (
                    "max_asks",
                    json!({ "type": "integer", "minimum": 0, "description": "How many times the user may be asked for this parameter while one call waits for it (its `ask` and its `invalid` message alike); the next time `on_exhausted` applies. Unset: no limit." }),
                ),
                ("on_exhausted", on_exhausted),
                (
                    "$ref",
                    json!({ "type": "string", "description": "Take the whole schema from a JSON file, relative to the flow file." }),
                ),
            ],
            &[],
        )
    }
}

impl JsonSchema for SlotSpec {
    fn schema_name() -> Cow<'static, str> {
        "SlotSpec".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        keyword_table(
            "A slot: a typed fact remembered across turns, described with JSON Schema keywords.",
            vec![(
                "description",
                json!({ "type": "string", "description": "What the fact is." }),
            )],
            &["required", "$ref"],
        )
    }
}
