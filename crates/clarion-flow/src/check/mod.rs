//! Semantic checks: the rules a JSON Schema cannot express.
//!
//! They run on the typed [`FlowFile`] after the structural pass, one concern per module:
//! [`names`] (what providers and templates accept), [`executors`] (exactly one per tool),
//! [`params`] (parameter and slot schemas, `$ref` files, slot links, questions),
//! [`templates`] (every template and expression compiles and reads only names in scope),
//! [`builtins`] (tools match the built-in functions they name, when a catalog is given),
//! [`mcp`] (servers, and MCP tools resolved against the lock file — run first, by the
//! loader, because it fills in the parameters the others check),
//! and [`lints`] (warnings: things that work but are probably not meant). Every check
//! reports through [`Checker::report`] and skips parts the structural pass marked broken.

pub mod builtins;
pub mod executors;
pub mod lints;
pub mod mcp;
pub mod names;
pub mod params;
pub mod templates;

use std::ops::Range;
use std::path::Path;

use super::spans::SpanIndex;
use super::spec::FlowFile;
use super::structure::Broken;
use crate::diagnostic::Diagnostic;
use crate::source::SourceFile;

/// Everything a check needs, and where it puts what it finds.
pub struct Checker<'a> {
    /// The typed file.
    pub file: &'a FlowFile,
    /// Locations of every node.
    pub spans: &'a SpanIndex,
    /// The file's text.
    pub source: &'a SourceFile,
    /// Parts with structural errors, to skip.
    pub broken: &'a Broken,
    /// The flow file's directory, for `$ref`.
    pub base_dir: Option<&'a Path>,
    /// What was found.
    pub diagnostics: Vec<Diagnostic>,
    /// Schemas read from `$ref` files, for building the flow.
    pub resolved_refs: params::ResolvedRefs,
    /// The built-ins `builtin` names are checked against, if any.
    pub builtins: Option<&'a dyn super::catalog::BuiltinCatalog>,
}

impl Checker<'_> {
    /// Whether the author wrote the node at `pointer` (an MCP tool's parameter that only
    /// the server's schema declares was not, and gets no warnings about its wording).
    #[must_use]
    pub fn written(&self, pointer: &str) -> bool {
        self.spans.get(pointer).is_some()
    }

    /// Records a diagnostic.
    pub fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// The span of the key at `pointer`.
    #[must_use]
    pub fn key(&self, pointer: &str) -> Option<Range<usize>> {
        self.spans.key_span(pointer)
    }

    /// The span of the value at `pointer`.
    #[must_use]
    pub fn value(&self, pointer: &str) -> Option<Range<usize>> {
        self.spans.value_span(pointer)
    }

    /// The span of `range` inside the string value at `pointer`, when the TOML string has
    /// no escapes (so offsets in the decoded text equal offsets in the file); else the
    /// whole value.
    #[must_use]
    pub fn inside_string(&self, pointer: &str, range: Range<usize>) -> Option<Range<usize>> {
        let whole = self.value(pointer)?;
        let raw = self.source.text().get(whole.clone())?;
        let (open, literal) = if raw.starts_with("\"\"\"") {
            (3, false)
        } else if raw.starts_with("'''") {
            (3, true)
        } else if raw.starts_with('"') {
            (1, false)
        } else if raw.starts_with('\'') {
            (1, true)
        } else {
            return Some(whole);
        };
        let mut start = whole.start + open;
        if open == 3 {
            let rest = &self.source.text()[start..];
            if rest.starts_with("\r\n") {
                start += 2;
            } else if rest.starts_with('\n') {
                start += 1;
            }
        }
        let body = self
            .source
            .text()
            .get(start..whole.end.saturating_sub(open))?;
        if (!literal && body.contains('\\')) || range.end > body.len() {
            return Some(whole);
        }
        // MiniJinja's range for an unexpected character is one byte, which may be half of it.
        Some(self.source.clamp(&(start + range.start..start + range.end)))
    }

    /// The span of the first occurrence of `needle` inside the string at `pointer`, or the
    /// whole value.
    #[must_use]
    pub fn find_in_string(&self, pointer: &str, text: &str, needle: &str) -> Option<Range<usize>> {
        match text.find(needle) {
            Some(at) => self.inside_string(pointer, at..at + needle.len()),
            None => self.value(pointer),
        }
    }
}

/// Runs every semantic check.
pub fn run(checker: &mut Checker<'_>) {
    names::check(checker);
    executors::check(checker);
    params::check(checker);
    builtins::check(checker);
    templates::check(checker);
    lints::check(checker);
}
