//! Snapshot tests for malformed flows: every file in `tests/fixtures/invalid/` holds one
//! mistake (or a few, to prove one pass reports them all), and its snapshot is exactly what
//! `clarion validate` prints for it. Review changed snapshots as a user would: is the caret
//! under the offending text, does the help say how to fix it, is anything reported twice?

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clarion_flow::diagnostic::{Diagnostic, render};
use clarion_flow::{LoadReport, load_bytes};

/// Every code `DiagnosticKind::code` can return; a new code needs a fixture.
const ALL_CODES: &[&str] = &[
    "E001", "E002", "E003", "E004", "E005", "E006", "E007", "E008", "E009", "E010", "E011", "E012",
    "E013", "E014", "E015", "E016", "E017", "E018", "E019", "E020", "E023", "E024", "E025", "E026",
    "E027", "E028", "E029", "E031", "E032", "E033", "E034", "E035", "E036", "E037", "E038", "E039",
    "E040", "E041", "E042", "W001", "W002", "W003", "W004", "W005", "W006",
];

/// The fixture directory, relative to the workspace root as it appears in diagnostics.
const DISPLAY_DIR: &str = "tests/fixtures/invalid";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/invalid")
}

/// Loads a fixture under a stable, relative name so snapshots hold no absolute paths.
fn load(path: &Path) -> (LoadReport, String) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path
        .file_name()
        .unwrap_or_else(|| panic!("{} has no file name", path.display()))
        .to_string_lossy();
    let dir = path
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent", path.display()));
    let report = load_bytes(format!("{DISPLAY_DIR}/{name}"), &bytes, Some(dir));
    let rendered = report
        .diagnostics
        .iter()
        .map(|d| render::human(d, &report.source, false))
        .collect::<Vec<_>>()
        .join("\n\n")
        // `$ref` errors name the resolved file; show it as the CLI would from the root.
        .replace(&dir.display().to_string(), DISPLAY_DIR);
    (report, rendered)
}

#[test]
fn invalid_flow_diagnostics() {
    // insta refuses `..` in the pattern itself, so the directory is the base argument.
    insta::glob!("../../../tests/fixtures/invalid", "*.toml", |path| {
        let (report, rendered) = load(path);
        assert!(
            !report.diagnostics.is_empty(),
            "{} is an invalid fixture but loads without a diagnostic",
            path.display()
        );
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
        insta::with_settings!({
            description => text,
            omit_expression => true,
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!(rendered);
        });
    });
}

#[test]
fn fixtures_cover_every_diagnostic_code() {
    let mut found = BTreeSet::new();
    let entries = std::fs::read_dir(fixture_dir()).unwrap_or_else(|e| panic!("fixtures: {e}"));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("fixtures: {e}")).path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (report, _) = load(&path);
            found.extend(report.diagnostics.iter().map(Diagnostic::code));
        }
    }
    let missing: Vec<&str> = ALL_CODES
        .iter()
        .copied()
        .filter(|code| !found.contains(code))
        .collect();
    assert!(
        missing.is_empty(),
        "no fixture in {DISPLAY_DIR} produces {}",
        missing.join(", ")
    );
    let unknown: Vec<&str> = found
        .iter()
        .copied()
        .filter(|code| !ALL_CODES.contains(code))
        .collect();
    assert!(
        unknown.is_empty(),
        "codes missing from ALL_CODES: {}",
        unknown.join(", ")
    );
}
