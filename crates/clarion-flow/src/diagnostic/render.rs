//! Rendering diagnostics: code frames for people, JSON lines for machines.
//!
//! Code frames come from `annotate-snippets`, the renderer rustc and ruff use, so Clarion's
//! output looks like the compiler output Rust and Python developers already read. It only
//! renders: it brings no error-handling framework of its own (miette would), which keeps
//! [`Diagnostic`] plain data.

use std::ops::Range;

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
            let span = source.clamp(span);
            let related: Vec<_> = diagnostic
                .related
                .iter()
                .map(|(span, label)| (source.clamp(span), label.as_str()))
                .collect();
            let (lines, first_line) = excerpt(
                source,
                std::iter::once(&span).chain(related.iter().map(|r| &r.0)),
            );
            let local = |s: &Range<usize>| s.start - lines.start..s.end - lines.start;
            let mut primary = AnnotationKind::Primary.span(local(&span));
            if let Some(label) = &diagnostic.label {
                primary = primary.label(label.as_str());
            }
            let mut snippet = Snippet::source(&source.text()[lines.clone()])
                .line_start(first_line)
                .path(path.as_str())
                .annotation(primary);
            for (span, label) in &related {
                snippet =
                    snippet.annotation(AnnotationKind::Context.span(local(span)).label(*label));
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

/// The whole lines that hold `spans` (clamped), and the number of the first. The renderer
/// reads all the text it is given, so giving it the whole file for every diagnostic made a
/// file with a problem on each of 10,000 lines take a minute to print.
fn excerpt<'s>(
    source: &SourceFile,
    spans: impl Iterator<Item = &'s Range<usize>> + Clone,
) -> (Range<usize>, usize) {
    let text = source.text();
    let start = spans.clone().map(|s| s.start).min().unwrap_or_default();
    let end = spans.map(|s| s.end).max().unwrap_or_default();
    let start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let end = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
    (start..end, source.line_column(start).line)
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
