//! Every example flow loads with no diagnostics at all, and its export for each provider
//! format is pinned by a snapshot: a change to what the model sees shows up in review.

use std::path::Path;

use clarion_flow::export::{ExportFormat, export};
use clarion_flow::load_file;
use serde_json::Map;

#[test]
fn example_flows_export_unchanged() {
    insta::glob!("../../../flows", "*.toml", |path| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let report = load_file(path);
        assert!(
            report.diagnostics.is_empty(),
            "{name} should be clean, found {:?}",
            report
                .diagnostics
                .iter()
                .map(clarion_flow::diagnostic::Diagnostic::message)
                .collect::<Vec<_>>()
        );
        let flow = report.flow.unwrap_or_else(|| panic!("{name} did not load"));
        for (suffix, format) in [
            ("chat-completions", ExportFormat::ChatCompletions),
            ("responses", ExportFormat::Responses),
            ("assistants", ExportFormat::Assistants),
        ] {
            let body = export(&flow, format, &Map::new(), &Map::new())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            insta::with_settings!({
                // One snapshot per flow and format (this replaces glob's own suffix).
                snapshot_suffix => format!("{stem}.{suffix}"),
                omit_expression => true,
                prepend_module_to_snapshot => false,
            }, {
                insta::assert_json_snapshot!(body);
            });
        }
    });
}

#[test]
fn clarion_keys_never_reach_the_model() {
    let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows");
    let mut checked = 0;
    for entry in std::fs::read_dir(&flows).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let flow = load_file(&path)
            .flow
            .unwrap_or_else(|| panic!("{} did not load", path.display()));
        let body = export(
            &flow,
            ExportFormat::ChatCompletions,
            &Map::new(),
            &Map::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text = body.to_string();
        for key in [
            "\"ask\"",
            "\"slot\"",
            "\"$ref\"",
            "\"after\"",
            "\"on_error\"",
            "\"builtin\"",
        ] {
            assert!(
                !text.contains(key),
                "{} leaks {key} to the model",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 1,
        "no example flows found in {}",
        flows.display()
    );
}
