//! The text of one flow file and the arithmetic that turns byte offsets into lines and
//! columns.
//!
//! Every diagnostic carries a byte span into the original file; humans want `line:column`.
//! Columns count characters, not bytes, so a caret under `€` lands where an editor puts
//! its cursor.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One flow file's path and text, with a line index for span arithmetic. The index is
/// built on first use: a flow that loads cleanly never needs it, and an application that
/// keeps its flows' reports should not pay for one per file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    path: PathBuf,
    text: String,
    line_starts: OnceLock<Vec<usize>>,
}

/// A one-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineColumn {
    /// One-based line number.
    pub line: usize,
    /// One-based column, in characters.
    pub column: usize,
}

impl SourceFile {
    /// Wraps `text` read from `path`.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
            line_starts: OnceLock::new(),
        }
    }

    /// The path the text came from (as given, not canonicalised).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole text.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Clamps `span` to the text and to character boundaries, so any span is safe to slice.
    #[must_use]
    pub fn clamp(&self, span: &Range<usize>) -> Range<usize> {
        let len = self.text.len();
        let mut start = span.start.min(len);
        let mut end = span.end.clamp(start, len);
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        while !self.text.is_char_boundary(end) {
            end += 1;
        }
        start..end
    }

    /// The line and column of a byte offset.
    #[must_use]
    pub fn line_column(&self, offset: usize) -> LineColumn {
        let offset = self.clamp(&(offset..offset)).start;
        let line_starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let line = line_starts.partition_point(|&start| start <= offset) - 1;
        let column = self.text[line_starts[line]..offset].chars().count() + 1;
        LineColumn {
            line: line + 1,
            column,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters_not_bytes() {
        let file = SourceFile::new("f.toml", "a = 1\nb = \"€x\"\n");
        assert_eq!(file.line_column(0), LineColumn { line: 1, column: 1 });
        assert_eq!(file.line_column(6), LineColumn { line: 2, column: 1 });
        let x = file.text().find('x').unwrap_or_default();
        assert_eq!(file.line_column(x), LineColumn { line: 2, column: 7 });
    }

    #[test]
    fn spans_past_the_end_or_inside_a_character_are_clamped() {
        let file = SourceFile::new("f.toml", "€");
        assert_eq!(file.clamp(&(1..2)), 0..3);
        assert_eq!(file.clamp(&(10..20)), 3..3);
        assert_eq!(file.line_column(99), LineColumn { line: 1, column: 2 });
    }
}
