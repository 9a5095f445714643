//! The MCP lock file: what each `[mcp.NAME]` server's tools take, as the server last said.
//!
//! A flow's MCP tools take their description and parameters from the server. Asking the
//! server at every `clarion validate` would make validation, export and tests depend on a
//! running program and on whatever it answers today, and would put text the author never
//! read in front of the model. So `clarion mcp lock FLOW` asks once and writes
//! `FLOW.mcp.lock` next to the flow (e.g. `flows/time.toml` → `flows/time.mcp.lock`), which
//! is checked in like a `Cargo.lock`: the loader reads it offline, and any change a server
//! makes to a description or a schema shows in review as a diff of that file.
//!
//! The file is JSON, written deterministically: keys sorted at every level, two-space
//! indent, a final newline. This module only reads, writes and compares it; asking a
//! server is `clarion-tools`' job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::spec::McpServerSpec;

/// The lock file's format version.
pub const LOCK_VERSION: u32 = 1;

/// The contents of a lock file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McpLock {
    /// [`LOCK_VERSION`].
    pub version: u32,
    /// Each server's tools, by the server's name in the flow.
    pub servers: BTreeMap<String, LockedServer>,
}

/// One server's tools, as it listed them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockedServer {
    /// Every tool the server listed, by its name on the server.
    pub tools: BTreeMap<String, LockedTool>,
}

/// One remote tool.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockedTool {
    /// The server's description of the tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of its arguments (an object schema).
    pub input_schema: Value,
}

/// The lock file of the flow at `flow_path`: the same directory and stem, `.mcp.lock`.
#[must_use]
pub fn lock_path(flow_path: &Path) -> PathBuf {
    let stem = flow_path
        .file_stem()
        .map_or_else(|| "flow".into(), |s| s.to_string_lossy().into_owned());
    flow_path.with_file_name(format!("{stem}.mcp.lock"))
}

/// Why a lock file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// There is no lock file.
    #[error("there is no lock file {}", .0.display())]
    Missing(PathBuf),
    /// It exists but cannot be read or parsed.
    #[error("cannot read {}: {reason}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl McpLock {
    /// Reads the lock file at `path`.
    pub fn read(path: &Path) -> Result<Self, LockError> {
        let bytes = match crate::load::read_limited(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(LockError::Missing(path.to_path_buf()));
            }
            Err(error) => {
                return Err(LockError::Invalid {
                    path: path.to_path_buf(),
                    reason: error.to_string(),
                });
            }
        };
        Self::parse(&bytes).map_err(|reason| LockError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a lock file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > crate::MAX_FILE_BYTES {
            return Err(format!(
                "it is over {} bytes; lock files are limited to that",
                crate::MAX_FILE_BYTES
            ));
        }
        let lock: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("it is not a valid lock file ({e})"))?;
        if lock.version != LOCK_VERSION {
            return Err(format!(
                "it is version {}, this Clarion reads version {LOCK_VERSION}",
                lock.version
            ));
        }
        Ok(lock)
    }

    /// The text of this lock: sorted keys at every level, two-space indent, a final newline.
    #[must_use]
    pub fn to_text(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut text = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
        text.push('\n');
        text
    }

    /// A remote tool, if the lock has it.
    #[must_use]
    pub fn tool(&self, server: &str, tool: &str) -> Option<&LockedTool> {
        self.servers.get(server)?.tools.get(tool)
    }
}

/// The `[mcp]` servers a flow file's text declares, read without checking the rest of the
/// file (`clarion mcp lock` runs before the flow can load: its lock is what is missing).
pub fn servers_of(text: &str) -> Result<indexmap::IndexMap<String, McpServerSpec>, String> {
    #[derive(Deserialize)]
    struct OnlyMcp {
        #[serde(default)]
        mcp: indexmap::IndexMap<String, McpServerSpec>,
    }
    toml::from_str::<OnlyMcp>(text)
        .map(|file| file.mcp)
        .map_err(|e| format!("its `[mcp]` tables cannot be read: {}", e.message()))
}

/// `value` with every object's keys in sorted order (the crate keeps insertion order).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// How a server's live listing differs from the lock, one line per difference, each naming
/// the tool (empty when they agree).
#[must_use]
pub fn drift(locked: &LockedServer, live: &LockedServer) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (name, tool) in &locked.tools {
        match live.tools.get(name) {
            None => found.push((
                name.clone(),
                format!("tool `{name}` is gone from the server"),
            )),
            Some(now) if sorted(now.input_schema.clone()) != sorted(tool.input_schema.clone()) => {
                found.push((
                    name.clone(),
                    format!("the input schema of tool `{name}` changed"),
                ));
            }
            Some(now) if now.description != tool.description => found.push((
                name.clone(),
                format!("the description of tool `{name}` changed"),
            )),
            Some(_) => {}
        }
    }
    for name in live.tools.keys() {
        if !locked.tools.contains_key(name) {
            found.push((name.clone(), format!("the server has a new tool `{name}`")));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lock_files_sit_next_to_their_flow() {
        assert_eq!(
            lock_path(Path::new("flows/time.toml")),
            PathBuf::from("flows/time.mcp.lock")
        );
    }

    #[test]
    fn the_text_is_sorted_and_reads_back() {
        let mut lock = McpLock {
            version: LOCK_VERSION,
            servers: BTreeMap::new(),
        };
        let mut server = LockedServer::default();
        server.tools.insert(
            "now".to_owned(),
            LockedTool {
                description: Some("The time.".to_owned()),
                input_schema: json!({"type": "object", "properties": {"z": {}, "a": {}}}),
            },
        );
        lock.servers.insert("time".to_owned(), server);
        let text = lock.to_text();
        let a = text.find("\"a\"").unwrap_or(usize::MAX);
        let z = text.find("\"z\"").unwrap_or(0);
        assert!(a < z, "{text}");
        assert_eq!(McpLock::parse(text.as_bytes()), Ok(lock));
    }

    #[test]
    fn drift_names_what_changed() {
        let tool = |schema: Value| LockedTool {
            description: None,
            input_schema: schema,
        };
        let mut locked = LockedServer::default();
        locked
            .tools
            .insert("a".into(), tool(json!({"type": "object"})));
        locked
            .tools
            .insert("b".into(), tool(json!({"type": "object"})));
        let mut live = LockedServer::default();
        live.tools.insert(
            "a".into(),
            tool(json!({"type": "object", "required": ["x"]})),
        );
        live.tools.insert("c".into(), tool(json!({})));
        let lines: Vec<String> = drift(&locked, &live).into_iter().map(|d| d.1).collect();
        assert_eq!(
            lines,
            [
                "the input schema of tool `a` changed",
                "tool `b` is gone from the server",
                "the server has a new tool `c`"
            ]
        );
    }
}
