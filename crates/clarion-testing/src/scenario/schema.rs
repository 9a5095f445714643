//! The scenario format's JSON Schema, generated from [`ScenarioFile`].
//!
//! Draft-07 like the flow schema, for the same editors; the loader validates every
//! scenario against it, so what an editor underlines and what `clarion test` reports come
//! from one definition.

use std::sync::OnceLock;

use serde_json::Value;

use super::spec::ScenarioFile;

/// The scenario format's JSON Schema (draft-07).
#[must_use]
pub fn scenario_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut schema = schemars::generate::SchemaSettings::draft07()
            .into_generator()
            .into_root_schema_for::<ScenarioFile>()
            .to_value();
        clarion_flow::schema::strip_null(&mut schema);
        if let Some(object) = schema.as_object_mut() {
            object.insert(
                "$id".to_owned(),
                Value::String("https://clarion.dev/schemas/scenario.schema.json".to_owned()),
            );
        }
        schema
    })
}

/// The schema as the pretty-printed text checked in at `schemas/scenario.schema.json`.
#[must_use]
pub fn scenario_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(scenario_schema()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    fn keys_at(pointer: &str) -> Vec<String> {
        super::super::structure::SCENARIO.keys_at(pointer)
    }

    #[test]
    fn keys_are_found_through_arrays_and_maps() {
        assert!(keys_at("/scenario").contains(&"flow".to_owned()));
        assert!(keys_at("/turns/0").contains(&"user".to_owned()));
        assert!(keys_at("/turns/0/model/3").contains(&"calls".to_owned()));
        assert!(keys_at("/mocks/any").contains(&"timeout".to_owned()));
        assert!(keys_at("/turns/0/expect").contains(&"slot_set".to_owned()));
    }
}
