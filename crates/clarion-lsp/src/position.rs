//! Byte offsets ↔ LSP positions, in the encoding the client and server agreed on.
//!
//! The engine's spans are byte offsets into UTF-8 text; LSP positions are a zero-based
//! line and a character offset counted in UTF-16 code units unless the client offered
//! `utf-8` (`general.positionEncodings`), which the server then prefers because it needs no
//! counting. Getting this wrong only shows on lines with non-ASCII text (`€`, `é`, emoji),
//! so both directions clamp instead of failing: any position a client sends maps to some
//! offset on a character boundary.

use std::ops::Range;

use lsp_types::{Position, PositionEncodingKind};

/// How `Position::character` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Bytes of UTF-8.
    Utf8,
    /// UTF-16 code units (the protocol's default).
    Utf16,
}

impl Encoding {
    /// UTF-8 when the client offers it, else UTF-16 (which every client supports).
    #[must_use]
    pub fn negotiate(offered: Option<&[PositionEncodingKind]>) -> Self {
        if offered.is_some_and(|kinds| kinds.contains(&PositionEncodingKind::UTF8)) {
            Self::Utf8
        } else {
            Self::Utf16
        }
    }

    /// The protocol's name for it.
    #[must_use]
    pub fn kind(self) -> PositionEncodingKind {
        match self {
            Self::Utf8 => PositionEncodingKind::UTF8,
            Self::Utf16 => PositionEncodingKind::UTF16,
        }
    }
}

/// Where each line of a text starts, for converting in both directions.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
    encoding: Encoding,
}

impl LineIndex {
    /// The index of `text`.
    #[must_use]
    pub fn new(text: &str, encoding: Encoding) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { starts, encoding }
    }

    /// The position of byte `offset` (clamped to the text and to a character boundary).
    #[must_use]
    pub fn position(&self, text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset) - 1;
        let before = &text[self.starts[line]..offset];
        let character = match self.encoding {
            Encoding::Utf8 => before.len(),
            Encoding::Utf16 => before.chars().map(char::len_utf16).sum(),
        };
        Position::new(to_u32(line), to_u32(character))
    }

    /// The byte offset of `position`; past the end of a line means its end, past the last
    /// line means the end of the text, inside a character means its start.
    #[must_use]
    pub fn offset(&self, text: &str, position: Position) -> usize {
        let Some(&start) = self.starts.get(position.line as usize) else {
            return text.len();
        };
        let end = self
            .starts
            .get(position.line as usize + 1)
            .map_or(text.len(), |next| next - 1);
        let line = &text[start..end];
        let wanted = position.character as usize;
        let mut counted = 0;
        for (at, c) in line.char_indices() {
            if counted >= wanted {
                return start + at;
            }
            counted += match self.encoding {
                Encoding::Utf8 => c.len_utf8(),
                Encoding::Utf16 => c.len_utf16(),
            };
            if counted > wanted {
                return start + at;
            }
        }
        end
    }

    /// The range of a byte span.
    #[must_use]
    pub fn range(&self, text: &str, span: &Range<usize>) -> lsp_types::Range {
        lsp_types::Range::new(
            self.position(text, span.start),
            self.position(text, span.end),
        )
    }

    /// The byte span of a range.
    #[must_use]
    pub fn span(&self, text: &str, range: lsp_types::Range) -> Range<usize> {
        let start = self.offset(text, range.start);
        let end = self.offset(text, range.end).max(start);
        start..end
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_lines_count_in_the_agreed_unit() {
        let text = "a = 1\nb = \"€😀x\"\n";
        let x = text.find('x').unwrap_or_default();
        let utf16 = LineIndex::new(text, Encoding::Utf16);
        // `b = "` is 5 units, `€` one, `😀` two (a surrogate pair).
        assert_eq!(utf16.position(text, x), Position::new(1, 8));
        assert_eq!(utf16.offset(text, Position::new(1, 8)), x);
        let utf8 = LineIndex::new(text, Encoding::Utf8);
        assert_eq!(utf8.position(text, x), Position::new(1, 12));
        assert_eq!(utf8.offset(text, Position::new(1, 12)), x);
    }

    #[test]
    fn positions_out_of_range_are_clamped() {
        let text = "€\nab";
        let index = LineIndex::new(text, Encoding::Utf16);
        assert_eq!(index.offset(text, Position::new(0, 99)), 3);
        assert_eq!(index.offset(text, Position::new(9, 0)), text.len());
        // Inside the surrogate pair of an emoji: its start.
        let text = "😀";
        let index = LineIndex::new(text, Encoding::Utf16);
        assert_eq!(index.offset(text, Position::new(0, 1)), 0);
        assert_eq!(index.position(text, 2), Position::new(0, 0));
    }
}
