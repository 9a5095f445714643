//! The files the editor has open: their text, version and kind.
//!
//! The editor's text is the truth while a file is open, saved or not, so every feature
//! reads it from here and never from disk. Edits arrive incrementally (ranges in the
//! negotiated encoding) and are applied to the text in order; an edit whose range makes no
//! sense is clamped rather than refused, because refusing would leave the server's copy
//! out of step with the editor's for the rest of the session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clarion_flow::Flow;
use lsp_types::{TextDocumentContentChangeEvent, Uri};

use crate::position::{Encoding, LineIndex};

/// What an open file is, which decides how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A flow file: checked by the flow loader.
    Flow,
    /// A scenario file: checked by the scenario loader against its flow.
    Scenario,
    /// Anything else (a `Cargo.toml`, a `$ref` schema file): not checked, but its saves
    /// re-check the flows that may read it.
    Other,
}

impl Kind {
    /// The kind of the file at `path` holding `text`. A scenario lives in a `scenarios` or
    /// `evals` folder or has a `[scenario]` table; a flow says so as the loader's
    /// discovery expects (a `[flow]` table or the flow schema's `#:schema` line).
    #[must_use]
    pub fn of(path: &Path, text: &str) -> Self {
        if path.extension().is_none_or(|e| e != "toml") {
            return Self::Other;
        }
        let folder = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str());
        let scenario_line = text.lines().any(|line| {
            let line = line.trim();
            line == "[scenario]"
                || (line.starts_with("#:schema") && line.contains("scenario.schema.json"))
        });
        if matches!(folder, Some("scenarios" | "evals")) || scenario_line {
            Self::Scenario
        } else if clarion_flow::discover::declares_flow(text) {
            Self::Flow
        } else {
            Self::Other
        }
    }
}

/// One open file.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its URI, as the client sent it.
    pub uri: Uri,
    /// The path the URI names (for `$ref`, a scenario's flow, and messages).
    pub path: PathBuf,
    /// The client's version of the text.
    pub version: i32,
    /// The text.
    pub text: String,
    /// What it is.
    pub kind: Kind,
    /// Line starts of `text`.
    pub lines: LineIndex,
    /// For a flow: the outcome of its last check, which scenarios are checked against.
    pub loaded: Option<Result<Arc<Flow>, String>>,
}

impl Document {
    /// A document opened with `text`.
    #[must_use]
    pub fn new(uri: Uri, version: i32, text: String, encoding: Encoding) -> Self {
        let path = path_of(&uri);
        let kind = Kind::of(&path, &text);
        let lines = LineIndex::new(&text, encoding);
        Self {
            uri,
            path,
            version,
            text,
            kind,
            lines,
            loaded: None,
        }
    }

    /// Applies the client's changes, in order, and takes its new version.
    pub fn apply(
        &mut self,
        version: i32,
        changes: Vec<TextDocumentContentChangeEvent>,
        encoding: Encoding,
    ) {
        for change in changes {
            match change.range {
                Some(range) => {
                    let span = self.lines.span(&self.text, range);
                    self.text.replace_range(span, &change.text);
                }
                None => self.text = change.text,
            }
            self.lines = LineIndex::new(&self.text, encoding);
        }
        self.version = version;
        self.kind = Kind::of(&self.path, &self.text);
    }

    /// The directory `$ref` paths are relative to.
    #[must_use]
    pub fn base_dir(&self) -> Option<&Path> {
        self.path.parent().filter(|p| p.is_absolute())
    }

    /// The range of a byte span.
    #[must_use]
    pub fn range(&self, span: &std::ops::Range<usize>) -> lsp_types::Range {
        self.lines.range(&self.text, span)
    }

    /// The byte offset of a position.
    #[must_use]
    pub fn offset(&self, position: lsp_types::Position) -> usize {
        self.lines.offset(&self.text, position)
    }
}

/// The path a `file:` URI names (percent-decoded); other schemes (`untitled:`) give their
/// text as a relative path, which names the file in messages and reads nothing from disk.
#[must_use]
pub fn path_of(uri: &Uri) -> PathBuf {
    let text = uri.as_str();
    match text.strip_prefix("file://") {
        Some(rest) => {
            let rest = rest.split(['?', '#']).next().unwrap_or_default();
            let rest = rest.strip_prefix("localhost").unwrap_or(rest);
            PathBuf::from(
                percent_encoding::percent_decode_str(rest)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        }
        None => PathBuf::from(text.replace(':', "_")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_become_paths() {
        let uri: Uri = "file:///tmp/my%20flows/a.toml"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path_of(&uri), PathBuf::from("/tmp/my flows/a.toml"));
    }

    #[test]
    fn kinds_follow_the_loaders_conventions() {
        let flow = "[flow]\nname = \"x\"\n";
        assert_eq!(Kind::of(Path::new("/f/a.toml"), flow), Kind::Flow);
        assert_eq!(
            Kind::of(Path::new("/f/a/scenarios/s.toml"), "[[turns]]\n"),
            Kind::Scenario
        );
        assert_eq!(
            Kind::of(Path::new("/f/Cargo.toml"), "[package]\n"),
            Kind::Other
        );
        assert_eq!(Kind::of(Path::new("/f/s.json"), flow), Kind::Other);
    }
}
