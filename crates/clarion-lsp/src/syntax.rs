//! Where the cursor is, in text that may not parse.
//!
//! The loader maps every JSON pointer to a span ([`clarion_flow::spans`]), which answers
//! "what is at this offset" for a file that parses. While someone types, it often does
//! not: `slot = "` has no closing quote, `[tools.` no closing bracket. So this module reads
//! just enough TOML, line by line, to say what the cursor is in — a table header, a key, a
//! value, or a string (with the key path that holds it) — and which table a line belongs
//! to. It also lists the segments of every table header with their spans, which toml's
//! spanned tables do not keep for headers after the first that names a table, and which a
//! rename of a tool or slot must edit. It validates nothing: the loader does that.

use std::ops::Range;

/// One `[table]` or `[[array of tables]]` header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Byte offset of the line's start.
    pub line_start: usize,
    /// Byte offset of the line's end (before the newline).
    pub line_end: usize,
    /// `[[…]]`.
    pub array: bool,
    /// The dotted key's segments, unquoted, each with the span of its name.
    pub keys: Vec<(String, Range<usize>)>,
}

impl Header {
    /// The segments as strings.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.keys.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// The headers of a text and the multi-line strings that hide lines from being headers.
#[derive(Debug, Clone, Default)]
pub struct Outline {
    /// Every header, in order.
    pub headers: Vec<Header>,
    /// Spans of multi-line strings: from the line that opens one to its end (or the end of
    /// the text when it is never closed).
    pub multiline: Vec<Range<usize>>,
}

impl Outline {
    /// Reads `text`.
    #[must_use]
    pub fn of(text: &str) -> Self {
        let mut outline = Self::default();
        let mut open: Option<(&str, usize)> = None;
        let mut start = 0;
        for line in text.split_inclusive('\n') {
            let line_start = start;
            start += line.len();
            let body = line.trim_end_matches(['\n', '\r']);
            if let Some((delimiter, opened)) = open {
                if let Some(at) = body.find(delimiter) {
                    outline.multiline.push(opened..line_start + at + 3);
                    open = None;
                }
                continue;
            }
            let trimmed = body.trim_start();
            if trimmed.starts_with('[') {
                let indent = body.len() - trimmed.len();
                let (array, keys) = header_keys(trimmed, line_start + indent);
                outline.headers.push(Header {
                    line_start,
                    line_end: line_start + body.len(),
                    array,
                    keys,
                });
                continue;
            }
            if let Some(delimiter) = unclosed_multiline(body) {
                open = Some((delimiter, line_start));
            }
        }
        if let Some((_, opened)) = open {
            outline.multiline.push(opened..text.len());
        }
        outline
    }

    /// The table the line at `offset` belongs to, as pointer segments (`["tools", "plan",
    /// "after", "0"]`); empty for the root table.
    #[must_use]
    pub fn table_at(&self, offset: usize) -> Vec<String> {
        let Some(index) = self.headers.iter().rposition(|h| h.line_start <= offset) else {
            return Vec::new();
        };
        let header = &self.headers[index];
        let names: Vec<String> = header.keys.iter().map(|(k, _)| k.clone()).collect();
        if !header.array {
            return names;
        }
        // `[[tools.x.after]]` is element n of the array: count the same headers before it.
        let n = self.headers[..index]
            .iter()
            .filter(|h| h.array && h.names() == header.names())
            .count();
        let mut names = names;
        names.push(n.to_string());
        names
    }

    fn statement_start(&self, text: &str, offset: usize) -> usize {
        if let Some(string) = self
            .multiline
            .iter()
            .find(|s| s.start <= offset && offset <= s.end)
        {
            return string.start;
        }
        text[..offset].rfind('\n').map_or(0, |i| i + 1)
    }
}

/// The key segments of a header line starting at `base`: `[a."b c".d]`.
fn header_keys(line: &str, base: usize) -> (bool, Vec<(String, Range<usize>)>) {
    let bytes = line.as_bytes();
    let array = line.starts_with("[[");
    let mut at = if array { 2 } else { 1 };
    let mut keys = Vec::new();
    loop {
        while at < bytes.len() && (bytes[at] == b' ' || bytes[at] == b'\t') {
            at += 1;
        }
        let Some(&first) = bytes.get(at) else { break };
        if first == b'"' || first == b'\'' {
            let rest = &line[at + 1..];
            let close = rest.find(first as char).unwrap_or(rest.len());
            keys.push((
                rest[..close].to_owned(),
                base + at + 1..base + at + 1 + close,
            ));
            at += close + 2;
        } else {
            let len = line[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(line.len() - at);
            if len == 0 {
                break;
            }
            keys.push((line[at..at + len].to_owned(), base + at..base + at + len));
            at += len;
        }
        while at < bytes.len() && (bytes[at] == b' ' || bytes[at] == b'\t') {
            at += 1;
        }
        if bytes.get(at) == Some(&b'.') {
            at += 1;
        } else {
            break;
        }
    }
    (array, keys)
}

/// The delimiter of a multi-line string this line opens and does not close.
fn unclosed_multiline(line: &str) -> Option<&'static str> {
    let mut rest = line;
    while let Some(at) = rest.find(['"', '\'', '#']) {
        let after = &rest[at..];
        for delimiter in ["\"\"\"", "'''"] {
            if let Some(inner) = after.strip_prefix(delimiter) {
                match inner.find(delimiter) {
                    Some(close) => {
                        rest = &inner[close + 3..];
                    }
                    None => return Some(delimiter),
                }
                break;
            }
        }
        if after.starts_with("\"\"\"") || after.starts_with("'''") {
            continue;
        }
        let quote = after.as_bytes()[0];
        if quote == b'#' {
            return None;
        }
        let inner = &after[1..];
        let close = if quote == b'"' {
            closing_quote(inner)
        } else {
            inner.find('\'')
        };
        match close {
            Some(close) => rest = &inner[close + 1..],
            None => return None,
        }
    }
    None
}

/// The offset of the first `"` in `text` not escaped by a backslash.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// What the cursor is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// A table header: the complete segments before the one being typed.
    Header {
        /// Segments before the cursor's.
        keys: Vec<String>,
        /// `[[…]]`.
        array: bool,
    },
    /// A key: the table (with any dotted or inline-table keys before it).
    Key {
        /// The pointer segments of the table the key goes in.
        table: Vec<String>,
    },
    /// A value outside a string.
    Value {
        /// The key's pointer segments.
        key: Vec<String>,
    },
    /// Inside a string value.
    String {
        /// The key's pointer segments.
        key: Vec<String>,
        /// The string's text from its opening quote to the cursor.
        before: String,
    },
    /// A comment, or nothing to complete.
    Nothing,
}

/// What the cursor at `offset` of `text` is in.
#[must_use]
pub fn cursor(text: &str, outline: &Outline, offset: usize) -> Cursor {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let start = outline.statement_start(text, offset);
    let prefix = &text[start..offset];
    let trimmed = prefix.trim_start();
    if trimmed.starts_with('[') {
        let (array, mut keys) = header_keys(trimmed, 0);
        let ends_with_dot = trimmed.trim_end().ends_with('.');
        let complete = if ends_with_dot || trimmed.ends_with(['[']) {
            keys.len()
        } else {
            keys.len().saturating_sub(1)
        };
        keys.truncate(complete);
        return Cursor::Header {
            keys: keys.into_iter().map(|(k, _)| k).collect(),
            array,
        };
    }
    let table = outline.table_at(start);
    statement(prefix, table)
}

/// Reads one statement up to the cursor: `a.b = { c = "x`, with inline tables. One
/// character loop with its states in view reads better than the same split in pieces.
#[allow(clippy::too_many_lines)]
fn statement(prefix: &str, table: Vec<String>) -> Cursor {
    let mut base = table; // the table a key being typed goes in
    let mut stack: Vec<usize> = Vec::new(); // `base` lengths outside each `{`
    let mut tokens: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_key = true;
    let mut key: Vec<String> = base.clone();
    let mut arrays = 0usize;
    let mut chars = prefix.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_key {
            match c {
                '"' | '\'' => {
                    let rest = &prefix[i + 1..];
                    match rest.find(c) {
                        Some(close) => {
                            current.push_str(&rest[..close]);
                            for _ in 0..=rest[..close].chars().count() {
                                chars.next();
                            }
                        }
                        None => break,
                    }
                }
                '.' => tokens.push(std::mem::take(&mut current)),
                '=' => {
                    if !current.is_empty() {
                        tokens.push(std::mem::take(&mut current));
                    }
                    key = base.iter().cloned().chain(tokens.drain(..)).collect();
                    in_key = false;
                }
                '#' => return Cursor::Nothing,
                '}' => {
                    if let Some(len) = stack.pop() {
                        base.truncate(len);
                    }
                    in_key = false;
                }
                c if c.is_whitespace() => {}
                c => current.push(c),
            }
            continue;
        }
        match c {
            '"' | '\'' => {
                let rest = &prefix[i..];
                let triple = if c == '"' { "\"\"\"" } else { "'''" };
                let (open, inner) = match rest.strip_prefix(triple) {
                    Some(inner) => (3, inner),
                    None => (1, &rest[1..]),
                };
                let close = if open == 3 {
                    inner.find(triple)
                } else if c == '"' {
                    closing_quote(inner)
                } else {
                    inner.find('\'')
                };
                match close {
                    Some(close) => {
                        let skip = inner[..close].chars().count() + 2 * open - 1;
                        for _ in 0..skip {
                            chars.next();
                        }
                    }
                    None => {
                        return Cursor::String {
                            key,
                            before: inner.to_owned(),
                        };
                    }
                }
            }
            '{' => {
                stack.push(base.len());
                base.clone_from(&key);
                tokens.clear();
                current.clear();
                in_key = true;
            }
            '[' => arrays += 1,
            ']' => arrays = arrays.saturating_sub(1),
            ',' if arrays == 0 && !stack.is_empty() => {
                tokens.clear();
                current.clear();
                in_key = true;
            }
            '}' => {
                if let Some(len) = stack.pop() {
                    base.truncate(len);
                }
            }
            '#' => return Cursor::Nothing,
            _ => {}
        }
    }
    if in_key {
        base.extend(tokens);
        Cursor::Key { table: base }
    } else {
        Cursor::Value { key }
    }
}

/// The identifier or dotted path that ends `text` (`args.mon` in `{{ args.mon`).
#[must_use]
pub fn trailing_path(text: &str) -> &str {
    let start = text
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Cursor {
        let offset = text.find('|').unwrap_or(text.len());
        let text = text.replace('|', "");
        cursor(&text, &Outline::of(&text), offset)
    }

    fn s(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn headers_keep_every_segment_span() {
        let text = "[flow]\n[tools.plan.params.\"a b\"]\n[[tools.plan.after]]\n[[tools.plan.after]]\nx = 1\n";
        let outline = Outline::of(text);
        assert_eq!(outline.headers.len(), 4);
        let keys = &outline.headers[1].keys;
        assert_eq!(keys[3].0, "a b");
        assert_eq!(&text[keys[3].1.clone()], "a b");
        assert_eq!(&text[keys[1].1.clone()], "plan");
        assert_eq!(
            outline.table_at(text.find("x = 1").unwrap_or_default()),
            s(&["tools", "plan", "after", "1"])
        );
    }

    #[test]
    fn lines_inside_multiline_strings_are_not_headers() {
        let text = "[assistant]\ninstructions = \"\"\"\n[not a table]\n\"\"\"\nmodel = \"m\"\n";
        let outline = Outline::of(text);
        assert_eq!(outline.headers.len(), 1);
        assert_eq!(outline.multiline.len(), 1);
    }

    #[test]
    fn the_cursor_knows_what_it_is_in() {
        assert_eq!(
            at("[tools.|"),
            Cursor::Header {
                keys: s(&["tools"]),
                array: false
            }
        );
        assert_eq!(
            at("[tools.pl|"),
            Cursor::Header {
                keys: s(&["tools"]),
                array: false
            }
        );
        assert_eq!(
            at("[tools.x]\nde|"),
            Cursor::Key {
                table: s(&["tools", "x"])
            }
        );
        assert_eq!(
            at("[tools.x.params.a]\nslot = \"go|"),
            Cursor::String {
                key: s(&["tools", "x", "params", "a", "slot"]),
                before: "go".to_owned()
            }
        );
        assert_eq!(
            at("[tools.x.params.a]\ntype = |"),
            Cursor::Value {
                key: s(&["tools", "x", "params", "a", "type"])
            }
        );
        assert_eq!(
            at("[[tools.x.after]]\nset = { goal = \"result.a\", b = \"{{ args.|"),
            Cursor::String {
                key: s(&["tools", "x", "after", "0", "set", "b"]),
                before: "{{ args.".to_owned()
            }
        );
        assert_eq!(
            at("[assistant]\ninstructions = \"\"\"\nHello {{ slots.|\n\"\"\"\n"),
            Cursor::String {
                key: s(&["assistant", "instructions"]),
                before: "\nHello {{ slots.".to_owned()
            }
        );
        assert_eq!(at("[flow]\n# a comment |"), Cursor::Nothing);
        assert_eq!(at("a = \"x\" # |"), Cursor::Nothing);
    }

    #[test]
    fn trailing_paths() {
        assert_eq!(trailing_path("{{ args.mon"), "args.mon");
        assert_eq!(trailing_path("x + slots."), "slots.");
        assert_eq!(trailing_path(""), "");
    }
}
