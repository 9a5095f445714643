//! Rendering diagnostics: code frames for people, JSON lines for machines.
//!
//! Code frames come from `annotate-snippets`, the renderer rustc and ruff use, so Clarion's
//! output looks like the compiler output Rust and Python developers already read. It only
//! renders: it brings no error-handling framework of its own (miette would), which keeps
//! [`Diagnostic`] plain data.

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

use super::{Diagnostic, Severity};
use crate::source::SourceFile;

/// Renders one diagnostic as a rustc-style code frame. `styled` adds ANSI colours; the
/// caller decides (the CLI does only on a terminal).
#[must_use]
pub fn human(diagnostic: &Diagnostic, source: &SourceFile, styled: bool) -> String {
    let renderer = if styled {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let level = match diagnostic.severity() {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let message = diagnostic.message();
    let path = source.path().display().to_string();
    let title = level.primary_title(message.as_str()).id(diagnostic.code());
    let mut group = match &diagnostic.span {
        Some(span) => {
            let mut primary = AnnotationKind::Primary.span(source.clamp(span));
            if let Some(label) = &diagnostic.label {
                primary = primary.label(label.as_str());
            }
            let mut snippet = Snippet::source(source.text())
                .path(path.as_str())
                .annotation(primary);
            for (span, label) in &diagnostic.related {
                snippet = snippet.annotation(
                    AnnotationKind::Context
                        .span(source.clamp(span))
                        .label(label.as_str()),
                );
            }
            title.element(snippet)
        }
        None => title.element(annotate_snippets::Origin::path(path.as_str())),
    };
    if let Some(help) = &diagnostic.help {
        group = group.element(Level::HELP.message(help.as_str()));
    }
    let report: [Group<'_>; 1] = [group];
    renderer.render(&report)
}

/// The stable JSON shape of one diagnostic (`clarion validate --format json` prints one per
/// line). Lines and columns are one-based; columns count characters; `end_*` is exclusive.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic<'a> {
    /// Stable code, e.g. `E004`.
    pub code: &'static str,
    /// `error` or `warning`.
    pub severity: Severity,
    /// One-line message.
    pub message: String,
    /// The file, as given on the command line.
    pub file: String,
    /// Start line, or null for whole-file problems.
    pub line: Option<usize>,
    /// Start column.
    pub column: Option<usize>,
    /// End line.
    pub end_line: Option<usize>,
    /// End column (exclusive).
    pub end_column: Option<usize>,
    /// Byte offsets `[start, end)`.
    pub span: Option<[usize; 2]>,
    /// Label under the caret.
    pub label: Option<&'a str>,
    /// How to fix it.
    pub help: Option<&'a str>,
}

/// The JSON form of a diagnostic.
#[must_use]
pub fn json<'a>(diagnostic: &'a Diagnostic, source: &SourceFile) -> JsonDiagnostic<'a> {
    let span = diagnostic.span.as_ref().map(|s| source.clamp(s));
    let start = span.as_ref().map(|s| source.line_column(s.start));
    let end = span.as_ref().map(|s| source.line_column(s.end));
    JsonDiagnostic {
        code: diagnostic.code(),
        severity: diagnostic.severity(),
        message: diagnostic.message(),
        file: source.path().display().to_string(),
        line: start.map(|p| p.line),
        column: start.map(|p| p.column),
        end_line: end.map(|p| p.line),
        end_column: end.map(|p| p.column),
        span: span.map(|s| [s.start, s.end]),
        label: diagnostic.label.as_deref(),
        help: diagnostic.help.as_deref(),
    }
}
