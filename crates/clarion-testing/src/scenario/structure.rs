//! Structural checks of a scenario against the scenario format's own JSON Schema.
//!
//! The scenario format is one more [`Format`] of the flow loader's: every problem the
//! schema finds becomes a located diagnostic with the same codes and wording as a flow's
//! (`E004` unknown key, `E005` wrong type, `E006` missing key, `E007` invalid value). What
//! is the scenario's own is data: its schema, keys named with list entries counted from 1,
//! and examples for the keys a scenario must have. A scenario with structural errors is
//! not checked further: unlike a flow, nothing in it is worth salvaging for follow-on
//! checks.

use std::fmt::Write as _;

use serde_json::Value;

use super::schema::scenario_schema;
use clarion_flow::diagnostic::Diagnostic;
use clarion_flow::spans::SpanIndex;
use clarion_flow::structure::Format;

/// The scenario format.
pub(crate) static SCENARIO: Format = Format {
    schema: scenario_schema,
    key_name,
    missing_help,
    listed_keys: usize::MAX,
    docs: "docs/testing.md",
    validator: std::sync::OnceLock::new(),
};

/// Validates `document` against the scenario schema; every problem, located.
#[must_use]
pub fn check(document: &Value, spans: &SpanIndex) -> Vec<Diagnostic> {
    SCENARIO
        .problems(document, spans)
        .into_iter()
        .filter_map(|problem| problem.diagnostic)
        .collect()
}

fn missing_help(key: &str) -> Option<String> {
    let help = match key {
        "turns" => {
            "add a turn: `[[turns]]`, `user = \"…\"`, then `[[turns.model]]` with `text = \"…\"`"
        }
        "user" => "add what the user says, e.g. `user = \"How long to save 10k?\"`",
        "model" => {
            "add what the model does, e.g. `[[turns.model]]` with `text = \"…\"` or `call = \"TOOL\"`"
        }
        "message" => "add it, e.g. `error = { kind = \"failed\", message = \"division by zero\" }`",
        _ => return None,
    };
    Some(help.to_owned())
}

/// `turns[1].expect.run_status`-style name of the key at `at`; list entries count from 1,
/// as turns do in every scenario message.
#[must_use]
pub fn key_name(at: &str) -> String {
    let mut name = String::new();
    for segment in at.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if let Ok(index) = segment.parse::<usize>() {
            let _ = write!(name, "[{}]", index + 1);
            continue;
        }
        if !name.is_empty() {
            name.push('.');
        }
        let bare = !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare {
            name.push_str(&segment);
        } else {
            let _ = write!(name, "\"{}\"", segment.replace('"', "\\\""));
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_list_entries_from_one() {
        assert_eq!(
            key_name("/turns/0/expect/run_status"),
            "turns[1].expect.run_status"
        );
        assert_eq!(
            key_name("/turns/1/model/0/calls/2/tool"),
            "turns[2].model[1].calls[3].tool"
        );
        assert_eq!(key_name("/mocks/a b/result"), "mocks.\"a b\".result");
    }
}
