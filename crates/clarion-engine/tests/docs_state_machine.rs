//! The run state machine drawn in `docs/architecture.md` is the one in `run/status.rs`.
//!
//! The diagram is the Mermaid block after the `<!-- check: run-states -->` marker. Every
//! `from --> to` edge in it must be a legal transition, every legal transition must be
//! drawn, the start must point at `queued`, and exactly the terminal statuses must point
//! at the end. When the code's table changes, this test fails and prints the edges to draw.

use std::collections::BTreeSet;
use std::path::Path;

use clarion_engine::RunStatus;

const MARKER: &str = "<!-- check: run-states -->";

fn diagram() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/architecture.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let after = text
        .split_once(MARKER)
        .unwrap_or_else(|| panic!("docs/architecture.md has no `{MARKER}` marker"))
        .1;
    let block = after
        .trim_start()
        .strip_prefix("```mermaid")
        .unwrap_or_else(|| panic!("`{MARKER}` must be followed by a ```mermaid block"));
    block
        .split_once("```")
        .unwrap_or_else(|| panic!("the ```mermaid block after `{MARKER}` is not closed"))
        .0
        .to_owned()
}

fn status(name: &str) -> Option<RunStatus> {
    RunStatus::ALL.into_iter().find(|s| s.as_str() == name)
}

/// `(from, to)` for every `from --> to[: label]` line; `[*]` stays as written.
fn edges(diagram: &str) -> Vec<(String, String)> {
    diagram
        .lines()
        .filter_map(|line| {
            let (from, rest) = line.split_once("-->")?;
            let to = rest.split(':').next().unwrap_or(rest);
            Some((from.trim().to_owned(), to.trim().to_owned()))
        })
        .collect()
}

#[test]
fn the_documented_state_diagram_is_the_codes_transition_table() {
    let diagram = diagram();
    assert!(
        diagram.trim_start().starts_with("stateDiagram-v2"),
        "the run-states block must be a `stateDiagram-v2`"
    );
    let mut drawn = BTreeSet::new();
    let mut starts = BTreeSet::new();
    let mut ends = BTreeSet::new();
    for (from, to) in edges(&diagram) {
        match (from.as_str(), to.as_str()) {
            ("[*]", to) => {
                starts.insert(to.to_owned());
            }
            (from, "[*]") => {
                ends.insert(from.to_owned());
            }
            (from, to) => {
                let known = |name: &str| {
                    status(name).unwrap_or_else(|| {
                        panic!("`{name}` in the diagram is not a run status (`{from} --> {to}`)")
                    })
                };
                drawn.insert((known(from).as_str(), known(to).as_str()));
            }
        }
    }

    let legal: BTreeSet<(&str, &str)> = RunStatus::ALL
        .into_iter()
        .flat_map(|from| {
            RunStatus::ALL
                .into_iter()
                .filter(move |to| from.can_become(*to))
                .map(move |to| (from.as_str(), to.as_str()))
        })
        .collect();
    let expected = legal
        .iter()
        .map(|(from, to)| format!("    {from} --> {to}"))
        .collect::<Vec<_>>()
        .join("\n");
    let missing: Vec<_> = legal.difference(&drawn).collect();
    let extra: Vec<_> = drawn.difference(&legal).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/architecture.md's run state diagram differs from RunStatus::can_become\n\
         not drawn: {missing:?}\ndrawn but illegal: {extra:?}\nthe transitions are:\n{expected}"
    );

    assert_eq!(
        starts,
        BTreeSet::from(["queued".to_owned()]),
        "a run starts queued"
    );
    let terminal: BTreeSet<String> = RunStatus::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(
        ends, terminal,
        "exactly the terminal statuses end the diagram"
    );
}

#[test]
fn edge_lines_are_read_with_and_without_labels() {
    let parsed = edges("stateDiagram-v2\n  [*] --> queued\n  a --> b: some label\n  note\n");
    assert_eq!(
        parsed,
        [
            ("[*]".to_owned(), "queued".to_owned()),
            ("a".to_owned(), "b".to_owned())
        ]
    );
}
