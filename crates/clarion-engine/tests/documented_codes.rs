//! The code tables in docs/architecture.md list exactly the codes the engine produces:
//! a variant added without a line in the docs (or a line left after a variant went) fails.

use std::collections::BTreeSet;

use clarion_engine::{ErrorCode, IncompleteReason, ToolErrorKind};

/// The first column of the table that follows `heading` in the `## Codes` section.
fn documented(heading: &str) -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/architecture.md");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let section = text
        .split("\n## Codes\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("docs/architecture.md has no `## Codes` section"));
    let after = section
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("the Codes section has no paragraph starting {heading:?}"));
    after
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .filter_map(|line| {
            let cell = line.split('|').nth(1)?.trim();
            Some(cell.trim_matches('`').to_owned())
        })
        .collect()
}

fn produced<'a>(codes: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    codes.into_iter().map(str::to_owned).collect()
}

#[test]
fn every_run_error_code_is_documented() {
    let all: Vec<String> = ErrorCode::all()
        .iter()
        .map(|c| c.as_str().into_owned())
        .collect();
    assert_eq!(
        documented("`last_error.code`"),
        produced(all.iter().map(String::as_str))
    );
}

#[test]
fn every_incomplete_reason_is_documented() {
    assert_eq!(
        documented("`run.incomplete_details`"),
        produced(IncompleteReason::ALL.iter().map(|c| c.as_str()))
    );
}

#[test]
fn every_tool_error_kind_is_documented() {
    assert_eq!(
        documented("`error.kind`"),
        produced(ToolErrorKind::ALL.iter().map(|c| c.as_str()))
    );
}
