//! The loaders' diagnostics, as the editor shows them.
//!
//! A flow is checked by `clarion_flow::load_str_with` with the same built-in catalog
//! `clarion validate` uses, a scenario by `clarion_testing::scenario::load_str` — against
//! the editor's text of its flow when that is open, so fixing a flow clears its scenarios'
//! errors before anything is saved. Each diagnostic keeps its code, severity, exact range
//! and message; its other spans become related information (the first definition of a
//! duplicate, the second executor), and its help line follows the message, where every
//! editor shows it and the quick fixes in [`actions`](crate::actions) read it.

use std::sync::Arc;

use clarion_flow::diagnostic::{Diagnostic, Severity};
use clarion_flow::{BuiltinCatalog, Flow, LoadOptions};
use clarion_testing::scenario::{self, FlowCache};
use lsp_types::{DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString};

use crate::Options;
use crate::document::{Document, Kind};

/// What checking one document found: the diagnostics and, for a flow, the flow (or why
/// there is none) for its scenarios.
#[derive(Debug)]
pub struct Checked {
    /// The diagnostics, in the loader's order.
    pub diagnostics: Vec<lsp_types::Diagnostic>,
    /// For a flow: the loaded flow or the reason it did not load.
    pub loaded: Option<Result<Arc<Flow>, String>>,
}

/// Checks `document`; `open_flows` are the other open flows' last outcomes, by path, used
/// in place of the files on disk when a scenario names one of them.
#[must_use]
pub fn check(
    document: &Document,
    options: &Options,
    open_flows: &[(&std::path::Path, &Result<Arc<Flow>, String>)],
) -> Checked {
    match document.kind {
        Kind::Flow => {
            let builtins = options
                .builtins
                .as_deref()
                .map(|b| b as &dyn BuiltinCatalog);
            let report = clarion_flow::load_str_with(
                document.path.clone(),
                &document.text,
                document.base_dir(),
                &LoadOptions {
                    builtins,
                    ..LoadOptions::default()
                },
            );
            let diagnostics = convert(document, &report.diagnostics);
            let errors = report.error_count();
            let loaded = match report.flow {
                Some(flow) => Ok(Arc::new(flow)),
                None => Err(format!(
                    "it has {errors} error(s); run `clarion validate {}`",
                    document.path.display()
                )),
            };
            Checked {
                diagnostics,
                loaded: Some(loaded),
            }
        }
        Kind::Scenario => {
            let mut flows = FlowCache::new();
            if let Some(builtins) = &options.builtins {
                flows = flows.with_builtins(Arc::clone(builtins));
            }
            for (path, loaded) in open_flows {
                flows.insert(path, (*loaded).clone());
            }
            let report = scenario::load_str(document.path.clone(), &document.text, &flows);
            Checked {
                diagnostics: convert(document, &report.diagnostics),
                loaded: None,
            }
        }
        Kind::Other => Checked {
            diagnostics: Vec::new(),
            loaded: None,
        },
    }
}

/// The LSP form of the loader's diagnostics on `document`.
#[must_use]
pub fn convert(document: &Document, diagnostics: &[Diagnostic]) -> Vec<lsp_types::Diagnostic> {
    diagnostics
        .iter()
        .map(|d| {
            let range = d
                .span
                .as_ref()
                .map(|span| document.range(span))
                .unwrap_or_default();
            let mut message = d.message();
            if let Some(help) = &d.help {
                message.push_str("\nhelp: ");
                message.push_str(help);
            }
            let related: Vec<_> = d
                .related
                .iter()
                .map(|(span, label)| DiagnosticRelatedInformation {
                    location: Location::new(document.uri.clone(), document.range(span)),
                    message: label.clone(),
                })
                .collect();
            lsp_types::Diagnostic {
                range,
                severity: Some(match d.severity() {
                    Severity::Error => DiagnosticSeverity::ERROR,
                    Severity::Warning => DiagnosticSeverity::WARNING,
                }),
                code: Some(NumberOrString::String(d.code().to_owned())),
                source: Some("clarion".to_owned()),
                message,
                related_information: (!related.is_empty()).then_some(related),
                data: d
                    .label
                    .as_ref()
                    .map(|label| serde_json::json!({ "label": label })),
                ..lsp_types::Diagnostic::default()
            }
        })
        .collect()
}
