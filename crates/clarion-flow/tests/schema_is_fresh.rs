//! `schemas/flow.schema.json` is generated from the Rust types; this fails when the
//! checked-in copy is stale (uv does the same for `uv.schema.json`).
//!
//! To update it: `cargo run -q -- schema > schemas/flow.schema.json`.

use std::path::Path;

#[test]
fn checked_in_flow_schema_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/flow.schema.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = clarion_flow::schema::flow_schema_text();
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map_or_else(
                || "one file is a prefix of the other".to_owned(),
                |(i, (a, b))| format!("line {}:\n  checked in: {a}\n  generated:  {b}", i + 1),
            );
        panic!(
            "{} is stale ({first_difference}).\nRegenerate it with: cargo run -q -- schema > schemas/flow.schema.json",
            path.display()
        );
    }
}

#[test]
fn example_flows_point_editors_at_the_schema() {
    let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows");
    for entry in std::fs::read_dir(&flows).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                text.starts_with("#:schema ../schemas/flow.schema.json"),
                "{} must start with `#:schema ../schemas/flow.schema.json`",
                path.display()
            );
        }
    }
}
