//! `clarion graph`: a snapshot of every example flow's diagram in both formats, the
//! structure behind them (every edge joins declared nodes), the copy embedded in
//! docs/flow-format.md kept fresh, and the exit codes.

#![allow(clippy::print_stderr)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clarion_flow::graph::{EdgeKind, Graph};
use clarion_flow::{LoadOptions, load_file_with};
use clarion_tools::BuiltinRegistry;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn clarion(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The example flows, sorted.
fn example_flows() -> Vec<String> {
    let mut flows: Vec<String> = std::fs::read_dir(workspace().join("flows"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|path| path.extension().is_some_and(|x| x == "toml"))
        .filter_map(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    flows.sort();
    assert!(flows.len() >= 3, "{flows:?}");
    flows
}

fn graph_of(file: &str) -> Graph {
    let builtins = BuiltinRegistry::standard();
    let report = load_file_with(
        &workspace().join("flows").join(file),
        &LoadOptions {
            builtins: Some(&builtins),
            ..LoadOptions::default()
        },
    );
    let flow = report
        .flow
        .unwrap_or_else(|| panic!("{file} has errors: {:?}", report.diagnostics));
    Graph::of(&flow)
}

#[test]
fn every_example_flow_has_a_stable_diagram_in_both_formats() {
    for file in example_flows() {
        let name = file.trim_end_matches(".toml");
        for format in ["mermaid", "dot"] {
            let path = format!("flows/{file}");
            let output = clarion(&["graph", &path, "--format", format]);
            assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
            assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
            let diagram = text(&output.stdout);
            let again = text(&clarion(&["graph", &path, "--format", format]).stdout);
            assert_eq!(diagram, again, "the same flow, the same bytes");
            insta::assert_snapshot!(format!("{name}.{format}"), diagram);
        }
    }
}

#[test]
fn mermaid_is_the_default() {
    let default = clarion(&["graph", "flows/travel-booking.toml"]);
    let mermaid = clarion(&["graph", "flows/travel-booking.toml", "--format", "mermaid"]);
    assert_eq!(default.stdout, mermaid.stdout);
    assert!(text(&default.stdout).starts_with("flowchart LR\n"));
}

#[test]
fn every_edge_joins_declared_nodes_and_ids_are_unique() {
    for file in example_flows() {
        let graph = graph_of(&file);
        let mut ids = HashSet::new();
        for node in graph.nodes() {
            assert!(ids.insert(node.id.clone()), "{file}: {} twice", node.id);
        }
        for tool in &graph.tools {
            assert!(ids.insert(tool.id.clone()), "{file}: {} twice", tool.id);
        }
        for edge in &graph.edges {
            assert!(ids.contains(&edge.from), "{file}: {edge:?}");
            assert!(ids.contains(&edge.to), "{file}: {edge:?}");
        }
        let mermaid = graph.mermaid();
        let dot = graph.dot();
        for edge in &graph.edges {
            assert!(
                mermaid.contains(&format!("  {} ", edge.from))
                    && dot.contains(&format!("  {} -> {} ", edge.from, edge.to)),
                "{file}: {edge:?}"
            );
        }
    }
}

#[test]
fn the_finance_diagram_shows_the_chaining() {
    let graph = graph_of("personal-finance.toml");
    let label = |id: &str| {
        graph
            .nodes()
            .find(|n| n.id == id)
            .map(|n| n.label.join(" / "))
            .unwrap_or_default()
    };
    // analyze_budget's rule sets monthly_savings, which prefills the savings timeline's
    // and the investment projection's parameters.
    let sets: Vec<_> = graph
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Sets)
        .collect();
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert!(label(&sets[0].from).contains("set monthly_savings = result.recommended_savings"));
    assert_eq!(label(&sets[0].to), "monthly_savings · number");
    let fed: Vec<String> = graph
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Prefills && e.from == sets[0].to)
        .map(|e| label(&e.to))
        .collect();
    assert_eq!(fed.len(), 2, "{fed:?}");
    assert!(
        fed[0].starts_with(
            "monthly_savings: number · required · grounded / ask: How much do you plan"
        )
    );
    assert!(fed[1].starts_with("monthly_contribution: number · required"));
    // The instructions read two slots.
    let read: Vec<String> = graph
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Reads && e.to == "assistant")
        .map(|e| label(&e.from))
        .collect();
    assert_eq!(
        read,
        [
            "monthly_income · number",
            "risk_tolerance · low | medium | high"
        ]
    );
    // Executors and rules are labelled.
    assert_eq!(
        graph.tools[0].label,
        [
            "calculate_savings_timeline",
            "builtin finance.savings_timeline"
        ]
    );
    assert!(label("t0e").starts_with("on_error / inject: The savings calculation failed"));
}

#[test]
fn executors_of_every_kind_are_labelled() {
    let labels: Vec<String> = ["travel-booking.toml", "support-triage.toml"]
        .iter()
        .flat_map(|f| graph_of(f).tools)
        .map(|t| t.label[1].clone())
        .collect();
    for expected in [
        "http GET https://api.flights.example.com/v2/offers?sort=price&limit=10",
        "client (the app runs it)",
        "command python3 tools/classify_ticket.py",
        "http POST https://helpdesk.acme.example/api/v2/tickets",
    ] {
        assert!(
            labels.iter().any(|l| l == expected),
            "{expected} in {labels:?}"
        );
    }
}

/// The Mermaid block between the markers in docs/flow-format.md.
const DOC: &str = "docs/flow-format.md";
const BEGIN: &str = "<!-- begin: clarion graph flows/personal-finance.toml -->\n```mermaid\n";
const END: &str = "```\n<!-- end: clarion graph -->";

#[test]
fn the_diagram_in_the_docs_is_fresh() {
    let doc_path = workspace().join(DOC);
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_else(|e| panic!("{e}"));
    let diagram = text(&clarion(&["graph", "flows/personal-finance.toml"]).stdout);
    let start = doc
        .find(BEGIN)
        .unwrap_or_else(|| panic!("{DOC} has no `{BEGIN}` marker"))
        + BEGIN.len();
    let end = start
        + doc[start..]
            .find(END)
            .unwrap_or_else(|| panic!("{DOC} has no `{END}` marker"));
    if doc[start..end] == diagram {
        return;
    }
    if std::env::var_os("CLARION_UPDATE_DOCS").is_some() {
        let updated = format!("{}{diagram}{}", &doc[..start], &doc[end..]);
        std::fs::write(&doc_path, updated).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("updated the diagram in {DOC}");
        return;
    }
    panic!(
        "the diagram in {DOC} is stale: rerun this test with CLARION_UPDATE_DOCS=1 to \
         rewrite it from `clarion graph flows/personal-finance.toml`"
    );
}

#[test]
fn graphviz_accepts_the_dot_output() {
    if Command::new("dot").arg("-V").output().is_err() {
        eprintln!("skipped: Graphviz `dot` is not installed");
        return;
    }
    for file in example_flows() {
        let dot = clarion(&["graph", &format!("flows/{file}"), "--format", "dot"]).stdout;
        let mut child = Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, &dot).unwrap_or_else(|e| panic!("{e}"));
        }
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "{file}: {}",
            text(&output.stderr)
        );
        assert!(text(&output.stdout).contains("<svg"));
    }
}

#[test]
fn a_missing_flow_is_exit_2_and_a_broken_one_exit_1() {
    let missing = clarion(&["graph", "flows/nope.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        text(&missing.stderr),
        "error: no such flow file: flows/nope.toml\n"
    );
    assert!(missing.stdout.is_empty());

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[flow]\nname = \"typo\"\ndescripton = \"x\"\n[assistant]\nmodel = \"m\"\ninstructions = \"Hi\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let output = clarion(&["graph", &broken.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "no half a diagram");
    let err = text(&output.stderr);
    assert!(err.contains("descripton"), "the problem is shown: {err}");
    assert!(
        err.ends_with(&format!(
            "error: cannot draw {}: it has 1 error(s); fix them first (clarion validate)\n",
            broken.display()
        )),
        "{err}"
    );

    let bad_format = clarion(&["graph", "flows/personal-finance.toml", "--format", "svg"]);
    assert_eq!(bad_format.status.code(), Some(2));
}
