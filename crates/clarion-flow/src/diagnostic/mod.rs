//! Diagnostics: what is wrong with a flow file, where, and how to fix it.
//!
//! A [`Diagnostic`] is plain data — a [`DiagnosticKind`] (code and message), a byte span
//! into the file, an optional label under the caret, secondary spans ("first defined here")
//! and a help line. Rendering is separate ([`render`]): the same diagnostics become
//! rustc-style code frames for people and JSON lines for machines, so the two can never
//! disagree about what was found.

mod kind;
pub mod render;

use std::ops::Range;

pub use kind::{DiagnosticKind, Severity};

/// One problem found in a flow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What went wrong; its code and message.
    pub kind: DiagnosticKind,
    /// The offending text, as a byte range into the file. `None` for whole-file problems.
    pub span: Option<Range<usize>>,
    /// A short label printed under the caret.
    pub label: Option<String>,
    /// Other places worth showing, each with a label.
    pub related: Vec<(Range<usize>, String)>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic of `kind` at `span`.
    #[must_use]
    pub fn new(kind: DiagnosticKind, span: Option<Range<usize>>) -> Self {
        Self {
            kind,
            span,
            label: None,
            related: Vec::new(),
            help: None,
        }
    }

    /// Adds the label printed under the caret.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds the help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a secondary location.
    #[must_use]
    pub fn with_related(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }

    /// The stable code, e.g. `E004`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// Error or warning.
    #[must_use]
    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }

    /// The one-line message.
    #[must_use]
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

/// Sorts diagnostics by position (whole-file ones first), then by code, and drops exact
/// duplicates, so output is stable whatever order the checks ran in.
pub fn sort(diagnostics: &mut Vec<Diagnostic>) {
    // Cached: each message is formatted once, not once per comparison.
    diagnostics.sort_by_cached_key(|d| {
        let span = d.span.as_ref().map(|s| (s.start, s.end));
        (span, d.code(), d.message())
    });
    diagnostics.dedup();
}
