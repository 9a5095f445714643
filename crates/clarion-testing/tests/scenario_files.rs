//! The scenario format: its checked-in JSON Schema, the example flows' scenarios, and a
//! snapshot of what `clarion test` reports for every malformed scenario in
//! `tests/fixtures/invalid_scenarios/` (one mistake per file, or a few to show one pass
//! reports them all). Review changed snapshots as a user would: is the caret under the
//! offending text, does the help say how to fix it?

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clarion_flow::diagnostic::render;
use clarion_testing::{ModelMode, Runner};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn checked_in_scenario_schema_is_fresh() {
    let path = root().join("schemas/scenario.schema.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = clarion_testing::scenario::schema::scenario_schema_text();
    assert!(
        checked_in == generated,
        "{} is stale.\nRegenerate it with: cargo run -q -- schema --scenario > schemas/scenario.schema.json",
        path.display()
    );
}

/// `flows/NAME.toml` → its scenario files.
fn example_scenarios() -> Vec<(PathBuf, Vec<PathBuf>)> {
    let flows = root().join("flows");
    let mut found = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&flows)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    for flow in entries {
        let stem = flow.file_stem().unwrap_or_default().to_owned();
        let dir = flows.join(stem).join("scenarios");
        let scenarios = clarion_testing::scenario_files(&[dir]).unwrap_or_default();
        found.push((flow, scenarios));
    }
    found
}

#[test]
fn every_example_flow_ships_scenarios_with_snapshots() {
    for (flow, scenarios) in example_scenarios() {
        let minimum = if flow.ends_with("personal-finance.toml") {
            8
        } else {
            2
        };
        assert!(
            scenarios.len() >= minimum,
            "{} has {} scenario(s); it needs at least {minimum}",
            flow.display(),
            scenarios.len()
        );
        for scenario in scenarios {
            let text = std::fs::read_to_string(&scenario).unwrap_or_default();
            assert!(
                text.starts_with("#:schema ../../../schemas/scenario.schema.json"),
                "{} must start with `#:schema ../../../schemas/scenario.schema.json`",
                scenario.display()
            );
            let stem = scenario.file_stem().unwrap_or_default().to_string_lossy();
            let snapshot = scenario.with_file_name(format!("snapshots/{stem}.snap"));
            assert!(snapshot.is_file(), "{} has no snapshot", scenario.display());
        }
    }
}

/// Every scenario code; a new code needs a fixture.
const SCENARIO_CODES: &[&str] = &[
    "S001", "S002", "S003", "S004", "S005", "S006", "S007", "S008", "S009", "S010", "S011", "S012",
    "S013", "S014", "S015",
];

/// The fixtures as the CLI would name them from the repository root.
const DISPLAY_DIR: &str = "tests/fixtures/invalid_scenarios";

fn fixture_dir() -> PathBuf {
    root().join(DISPLAY_DIR)
}

fn play(path: &Path) -> (String, Vec<&'static str>) {
    let dir = fixture_dir()
        .canonicalize()
        .unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // `replay_*` fixtures are played as `clarion test --replay` plays them.
    let replay = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("replay_"));
    let runner = if replay {
        Runner::new().with_model_mode(ModelMode::Replay)
    } else {
        Runner::new()
    };
    let outcome = runtime.block_on(runner.run(path));
    let diagnostics: Vec<_> = outcome.problems.iter().chain(&outcome.failures).collect();
    let codes = diagnostics.iter().map(|d| d.code()).collect();
    let rendered = diagnostics
        .iter()
        .map(|d| render::human(d, &outcome.source, false))
        .collect::<Vec<_>>()
        .join("\n\n")
        .replace(&dir.display().to_string(), DISPLAY_DIR);
    (rendered, codes)
}

#[test]
fn invalid_scenario_diagnostics() {
    let mut seen = BTreeSet::new();
    insta::glob!(
        "../../../tests/fixtures/invalid_scenarios",
        "*.toml",
        |path| {
            let (rendered, codes) = play(path);
            assert!(
                !codes.is_empty(),
                "{} is an invalid fixture but plays without a problem",
                path.display()
            );
            seen.extend(codes);
            let text =
                String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
            insta::with_settings!({ description => text, omit_expression => true }, {
                insta::assert_snapshot!(rendered);
            });
        }
    );
    let missing: Vec<_> = SCENARIO_CODES
        .iter()
        .filter(|c| !seen.contains(*c))
        .collect();
    assert!(missing.is_empty(), "no fixture produces {missing:?}");
}

/// insta itself reads every example snapshot: same header fields, same transcript — the
/// files are insta's, even where `cargo insta review` does not look for them.
#[test]
fn example_snapshots_are_insta_snapshot_files() {
    let mut checked = 0;
    for (_, scenarios) in example_scenarios() {
        for scenario in scenarios {
            let stem = scenario.file_stem().unwrap_or_default().to_string_lossy();
            let path = scenario.with_file_name(format!("snapshots/{stem}.snap"));
            let ours = clarion_testing::Snapshot::read(&path)
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("{} does not read", path.display()));
            let theirs = insta::Snapshot::from_file(&path)
                .unwrap_or_else(|e| panic!("insta cannot read {}: {e}", path.display()));
            assert_eq!(theirs.metadata().source(), Some(ours.source.as_str()));
            assert_eq!(theirs.metadata().description(), ours.description.as_deref());
            let text = theirs
                .contents()
                .as_text()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert_eq!(
                text,
                clarion_testing::normalize(&ours.body),
                "{}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} snapshots checked");
}
