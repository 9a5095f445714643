//! The JSON Schema of a built-in's arguments, derived from its Rust type.
//!
//! Generated for deserialization (what the function accepts), with every subschema inlined
//! so the loader can compare it with a flow's parameters without resolving `$ref`s, and
//! without the `$schema`/`title` noise that says nothing about parameters.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;

/// The argument schema of `A`: `{"type": "object", "properties": …, "required": […]}`.
pub(super) fn arguments<A: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .into_generator();
    let mut schema = Value::from(generator.into_root_schema_for::<A>());
    if let Some(object) = schema.as_object_mut() {
        object.remove("title");
        object.remove("$defs");
    }
    schema
}

/// The schema of a result type `R` as it is serialized: the fields `after` rules can read
/// as `result.…` (what the language server completes and shows on hover).
pub(super) fn result<R: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .into_generator();
    let mut schema = Value::from(generator.into_root_schema_for::<R>());
    if let Some(object) = schema.as_object_mut() {
        object.remove("title");
        object.remove("$defs");
    }
    schema
}
