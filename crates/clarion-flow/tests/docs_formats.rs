//! `docs/flow-format.md` documents every key of the flow format, and `docs/testing.md` every
//! key of the scenario format.
//!
//! The keys come from `schemas/flow.schema.json` and `schemas/scenario.schema.json`, which
//! `schema_is_fresh.rs` keeps equal to what `flow/spec.rs` and `scenario/spec.rs` generate. Each table of the format has its section in the doc, and
//! each of its keys must have a row there (`| `key` | type | default | meaning |`); the JSON
//! Schema keywords a parameter or slot accepts must each be listed under "JSON Schema
//! keywords". A key added to `spec.rs` without a line of documentation fails here.

use std::path::Path;

use serde_json::Value;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The text under the heading `heading` (a whole line), up to the next heading of the same
/// or a higher level.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = doc
        .lines()
        .scan(0, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, line)| *line == heading)
        .map_or_else(
            || panic!("no heading `{heading}` in the doc"),
            |(at, line)| at + line.len(),
        );
    let rest = &doc[start..];
    let end = rest
        .lines()
        .scan(0, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, line)| {
            let hashes = line.chars().take_while(|c| *c == '#').count();
            hashes > 0 && hashes <= level && line[hashes..].starts_with(' ')
        })
        .map_or(rest.len(), |(at, _)| at);
    &rest[..end]
}

fn properties<'a>(schema: &'a Value, definition: &str) -> Vec<&'a str> {
    schema["definitions"][definition]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("the schema has no definition `{definition}` with properties"))
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn every_key_of_the_flow_format_has_a_row_in_its_section() {
    let schema: Value = serde_json::from_str(&read("schemas/flow.schema.json"))
        .unwrap_or_else(|e| panic!("schemas/flow.schema.json: {e}"));
    let doc = read("docs/flow-format.md");
    let keywords = section(&doc, "### JSON Schema keywords");
    let tables = [
        ("FlowMeta", "## `[flow]`"),
        ("AssistantSpec", "## `[assistant]`"),
        ("LimitsSpec", "## `[limits]`"),
        ("ProviderSpec", "## `[provider]`"),
        ("ToolSpec", "## `[tools.NAME]`"),
        ("ParamSpec", "## `[tools.NAME.params.PARAM]`"),
        ("SlotSpec", "## `[slots.NAME]`"),
        ("HttpSpec", "## `[tools.NAME.http]`"),
        ("CommandSpec", "## `[tools.NAME.command]`"),
        ("AfterRule", "## `[[tools.NAME.after]]`"),
        ("OnError", "## `[tools.NAME.on_error]`"),
    ];
    let mut missing = Vec::new();
    for (definition, heading) in tables {
        let text = section(&doc, heading);
        for key in properties(&schema, definition) {
            let row = format!("| `{key}` |");
            let keyword = format!("`{key}`");
            let documented = text.contains(&row)
                // Parameter and slot tables accept JSON Schema keywords, listed once.
                || (matches!(definition, "ParamSpec" | "SlotSpec") && keywords.contains(&keyword));
            if !documented {
                missing.push(format!("{definition}.{key} (under {heading})"));
            }
        }
    }
    let provider = section(&doc, "## `[provider]`");
    for key in properties(&schema, "AzureSpec") {
        if !provider.contains(&format!("`{key}`")) {
            missing.push(format!("AzureSpec.{key} (under ## `[provider]`)"));
        }
    }
    for table in schema["properties"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.keys())
    {
        let heading = doc
            .lines()
            .any(|l| l.starts_with("## `[") && l[4..].starts_with(&format!("[{table}")));
        if !heading {
            missing.push(format!("top-level `{table}` (no `## `[{table}…` heading)"));
        }
    }
    assert!(
        missing.is_empty(),
        "keys of the flow format missing from docs/flow-format.md:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_key_of_the_scenario_format_is_named_in_its_section() {
    let schema: Value = serde_json::from_str(&read("schemas/scenario.schema.json"))
        .unwrap_or_else(|e| panic!("schemas/scenario.schema.json: {e}"));
    let doc = read("docs/testing.md");
    let tables = [
        ("ScenarioMeta", "### `[scenario]` (optional)"),
        ("MockSpec", "### `[mocks.TOOL]`: tool stand-ins"),
        ("MockError", "### `[mocks.TOOL]`: tool stand-ins"),
        ("TurnSpec", "### `[[turns]]`: the conversation"),
        ("StepSpec", "### `[[turns.model]]`: one model response"),
        ("CallSpec", "### `[[turns.model]]`: one model response"),
        ("SubmitSpec", "### `[[turns.submit]]`: client tool outputs"),
        ("ExpectSpec", "### `[turns.expect]`: assertions"),
        ("ToolCalledSpec", "### `[turns.expect]`: assertions"),
    ];
    let mut missing = Vec::new();
    for (definition, heading) in tables {
        let text = section(&doc, heading);
        for key in properties(&schema, definition) {
            if !text.contains(&format!("`{key}`")) {
                missing.push(format!("{definition}.{key} (under {heading})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys of the scenario format missing from docs/testing.md:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn sections_end_at_the_next_heading_of_their_level() {
    let doc = "## A\none\n### A.1\ntwo\n## B\nthree\n";
    assert_eq!(section(doc, "## A"), "\none\n### A.1\ntwo\n");
    assert_eq!(section(doc, "### A.1"), "\ntwo\n");
    assert_eq!(section(doc, "## B"), "\nthree\n");
}
