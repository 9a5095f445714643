//! Snapshot files in insta's format, so insta's own tools read them: a YAML header between
//! `---` lines, then the transcript. (`cargo insta review` only searches inside Cargo
//! packages, so it finds scenarios kept under a crate, not a top-level `flows/`;
//! `clarion test --review` reviews them wherever they are.)
//!
//! ```text
//! ---
//! source: flows/personal-finance/scenarios/missing_parameter.toml
//! description: "Missing parameters are asked for in one question"
//! ---
//! user: How long will it take me to save $50,000?
//! …
//! ```
//!
//! Only the body is compared (as insta does: trailing whitespace and `\r\n` do not count),
//! so a header written by another tool never fails a test.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// A snapshot: where it came from and the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The scenario file, relative to the repository root when there is one.
    pub source: String,
    /// The scenario's title and description.
    pub description: Option<String>,
    /// The transcript.
    pub body: String,
}

impl Snapshot {
    /// The file's text.
    #[must_use]
    pub fn to_file_text(&self) -> String {
        let mut text = String::from("---\n");
        let _ = writeln!(text, "source: {}", yaml_string(&self.source));
        if let Some(description) = &self.description {
            let _ = writeln!(
                text,
                "description: {}",
                serde_json::Value::String(description.clone())
            );
        }
        text.push_str("---\n");
        text.push_str(self.body.trim_end());
        text.push('\n');
        text
    }

    /// Parses a snapshot file's text (the header's fields other than `source` and
    /// `description` are ignored).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut snapshot = Self {
            source: String::new(),
            description: None,
            body: String::new(),
        };
        let mut lines = text.split_inclusive('\n');
        let body_start = if text.lines().next().is_some_and(|l| l.trim_end() == "---") {
            let mut offset = lines.next().map_or(0, str::len);
            for line in lines.by_ref() {
                offset += line.len();
                if line.trim_end() == "---" {
                    break;
                }
                if let Some((key, value)) = line.split_once(':') {
                    let value = unquote(value.trim());
                    match key.trim() {
                        "source" => snapshot.source = value,
                        "description" => snapshot.description = Some(value),
                        _ => {}
                    }
                }
            }
            offset
        } else {
            0
        };
        text.get(body_start..)
            .unwrap_or_default()
            .clone_into(&mut snapshot.body);
        snapshot
    }

    /// Reads the snapshot at `path`, `None` if there is none.
    pub fn read(path: &Path) -> io::Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(Self::parse(&text))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Writes the snapshot to `path`, creating its folder.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.to_file_text())
    }

    /// Whether `self` and `other` have the same transcript.
    #[must_use]
    pub fn same_body(&self, other: &Self) -> bool {
        normalize(&self.body) == normalize(&other.body)
    }
}

/// Bodies as insta compares them.
#[must_use]
pub fn normalize(body: &str) -> String {
    body.trim_end().replace("\r\n", "\n")
}

/// `x.snap` → `x.snap.new`, where pending snapshots wait for review.
#[must_use]
pub fn pending_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// How a transcript compares with the snapshot on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotState {
    /// Same transcript.
    Matches,
    /// No snapshot yet.
    New,
    /// A different transcript; here is the old one.
    Changed {
        /// The snapshot's transcript.
        old: String,
    },
}

/// When snapshot files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Never (CI, or `INSTA_UPDATE=no`).
    Never,
    /// New and changed snapshots are written as `.snap.new` for review (the default).
    Pending,
    /// New and changed snapshots overwrite the `.snap` (`--accept`, `INSTA_UPDATE=always`).
    Accept,
}

impl UpdateMode {
    /// The mode the environment asks for: `CI` set (and not `false`/`0`) means
    /// [`UpdateMode::Never`], whatever else is set; then insta's `INSTA_UPDATE`
    /// (`always`, `no`, `new`/`auto`).
    #[must_use]
    pub fn from_env() -> Self {
        if is_ci() {
            return Self::Never;
        }
        match std::env::var("INSTA_UPDATE").as_deref() {
            Ok("always") => Self::Accept,
            Ok("no") => Self::Never,
            _ => Self::Pending,
        }
    }
}

/// Whether we run in CI, by insta's rule: `CI` set to anything but `""`, `0` or `false`,
/// or Azure's `TF_BUILD`.
#[must_use]
pub fn is_ci() -> bool {
    match std::env::var("CI").ok().as_deref() {
        Some("false" | "0" | "") => false,
        None => std::env::var("TF_BUILD").is_ok(),
        Some(_) => true,
    }
}

fn yaml_string(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-@".contains(c))
        && !text.starts_with(['-', '.', '@']);
    if plain {
        text.to_owned()
    } else {
        serde_json::Value::String(text.to_owned()).to_string()
    }
}

fn unquote(value: &str) -> String {
    if value.starts_with('"') {
        serde_json::from_str(value).unwrap_or_else(|_| value.trim_matches('"').to_owned())
    } else {
        value.trim_matches('\'').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_through_insta_format() {
        let snapshot = Snapshot {
            source: "flows/pf/scenarios/a b.toml".to_owned(),
            description: Some("Says \"hi\"".to_owned()),
            body: "user: hi\nassistant: hello\n".to_owned(),
        };
        let text = snapshot.to_file_text();
        assert_eq!(
            text,
            "---\nsource: \"flows/pf/scenarios/a b.toml\"\ndescription: \"Says \\\"hi\\\"\"\n---\nuser: hi\nassistant: hello\n"
        );
        let parsed = Snapshot::parse(&text);
        assert_eq!(parsed.source, snapshot.source);
        assert_eq!(parsed.description, snapshot.description);
        assert!(parsed.same_body(&snapshot));
    }

    #[test]
    fn insta_headers_are_read_and_extra_fields_ignored() {
        let text = "---\nsource: tests/x.rs\nassertion_line: 12\nexpression: transcript\n---\nbody\r\nmore\n\n";
        let parsed = Snapshot::parse(text);
        assert_eq!(parsed.source, "tests/x.rs");
        assert_eq!(normalize(&parsed.body), "body\nmore");
        assert_eq!(
            pending_path(Path::new("a/x.snap")),
            Path::new("a/x.snap.new")
        );
    }
}
