//! MCP tools: `[mcp.NAME]` servers and the tools that name them, resolved against the lock
//! file before every other check.
//!
//! A tool with `mcp = "SERVER"` takes its description and parameters from the server's
//! listing in the lock file ([`crate::mcp`]). The flow may add what Clarion adds to any
//! tool — `ask`, `slot`, `grounded` and a description per parameter, `after` and
//! `on_error` — and may narrow the schema (a type within the server's, fewer `enum` values,
//! an optional parameter made required) but never widen it. [`resolve`] reports what
//! cannot be resolved (`E026`–`E029`), then returns the tools as if the flow had written
//! the server's schema out in full, so the remaining checks — slot types, questions,
//! templates over `args` — see every parameter the model will.

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::Checker;
use super::builtins::{allowed_values, enum_mismatch, type_mismatch};
use super::params::is_required;
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::keywords::SchemaKeywords;
use crate::mcp::{LockError, LockedTool, McpLock};
use crate::spans::pointer;
use crate::spec::{ParamSpec, Required, ToolSpec};
use crate::suggest;
use crate::template::{describe, template_names};

/// Where a flow's lock came from, for `resolve`.
#[derive(Debug)]
pub enum LockSource<'a> {
    /// Read from the file next to the flow (or the error reading it).
    File(Result<McpLock, LockError>),
    /// Given by the caller (`clarion validate --connect` passes what the servers list).
    Given(&'a McpLock),
}

/// Checks every server table and MCP tool, and returns the flow's tools with imports
/// added and MCP tools' schemas filled in from the lock.
pub fn resolve(checker: &mut Checker<'_>, lock: &LockSource<'_>) -> IndexMap<String, ToolSpec> {
    let file = checker.file;
    let mut tools = file.tools.clone();
    servers(checker);
    let uses_mcp = file.tools.values().any(|t| t.mcp.is_some())
        || file.mcp.values().any(|s| !s.tools.is_empty());
    if !uses_mcp {
        no_server_without_mcp(checker);
        return tools;
    }
    let lock = usable(checker, lock);
    imports(checker, lock, &mut tools);
    no_server_without_mcp(checker);
    for (name, spec) in &mut tools {
        let Some(server) = spec.mcp.clone() else {
            continue;
        };
        let at = pointer(&["tools", name]);
        if checker.broken.covers(&at) || checker.broken.covers(&format!("{at}/mcp")) {
            continue;
        }
        if !file.mcp.contains_key(&server) {
            if checker.broken.covers("/mcp") {
                continue;
            }
            let declared: Vec<&str> = file.mcp.keys().map(String::as_str).collect();
            let help = match suggest::closest(&server, declared.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!(
                    "declare it, e.g.\n[mcp.{server}]\ncommand = [\"uvx\", \"mcp-server-{server}\"]"
                ),
            };
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::UnknownMcpServer {
                        tool: name.clone(),
                        server,
                    },
                    checker.value(&format!("{at}/mcp")),
                )
                .with_label("no `[mcp]` table of this name")
                .with_help(help),
            );
            continue;
        }
        let Some(lock) = lock else { continue };
        let remote = spec.mcp_tool.clone().unwrap_or_else(|| name.clone());
        let Some(locked) = lock.tool(&server, &remote) else {
            let listed: Vec<&str> = lock
                .servers
                .get(&server)
                .map(|s| s.tools.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let help = match suggest::closest(&remote, listed.iter().copied()) {
                Some(near) => format!("did you mean `{near}`? (`mcp_tool = \"{near}\"`)"),
                None if listed.is_empty() => {
                    format!("run `clarion mcp lock` on this flow to list server `{server}`'s tools")
                }
                None => format!(
                    "server `{server}` has {}; if it gained `{remote}` since, run `clarion mcp lock`",
                    suggest::list(&listed)
                ),
            };
            let key = if spec.mcp_tool.is_some() {
                "mcp_tool"
            } else {
                "mcp"
            };
            let span = checker.value(&format!("{at}/{key}"));
            checker.report(
                Diagnostic::new(DiagnosticKind::McpToolNotLocked { server, remote }, span)
                    .with_label("not in the lock file")
                    .with_help(help),
            );
            continue;
        };
        merge(checker, name, &remote, spec, locked);
    }
    tools
}

/// The lock to resolve against, or `None` after reporting why there is none.
fn usable<'l>(checker: &mut Checker<'_>, lock: &'l LockSource<'l>) -> Option<&'l McpLock> {
    let file = checker.file;
    match lock {
        LockSource::Given(lock) => Some(*lock),
        LockSource::File(Ok(lock)) => Some(lock),
        LockSource::File(Err(error)) => {
            let help = match error {
                LockError::Missing(_) => {
                    "run `clarion mcp lock` on this flow: it starts each server, lists its tools \
                     and writes the lock file, which you review and check in"
                }
                LockError::Invalid { .. } => {
                    "run `clarion mcp lock` on this flow to write it again"
                }
            };
            let first = file
                .mcp
                .keys()
                .next()
                .and_then(|name| checker.key(&pointer(&["mcp", name])));
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::McpLockUnusable {
                        reason: error.to_string(),
                    },
                    first,
                )
                .with_help(help),
            );
            None
        }
    }
}

/// Structural rules of `[mcp.NAME]` the schema cannot say: one transport, and what only
/// one of them takes.
fn servers(checker: &mut Checker<'_>) {
    for (name, server) in &checker.file.mcp {
        let at = pointer(&["mcp", name]);
        if checker.broken.covers(&at) {
            continue;
        }
        let invalid = |key: &str, reason: &str| DiagnosticKind::InvalidValue {
            key: key.to_owned(),
            reason: reason.to_owned(),
        };
        let problem = match (&server.command, &server.url) {
            (Some(_), Some(_)) => Some((
                format!("{at}/url"),
                "a server is either started (`command`) or reached (`url`), not both",
                "keep one of `command` and `url`",
            )),
            (None, None) => Some((
                at.clone(),
                "it needs `command` (a stdio server) or `url` (streamable HTTP)",
                "add `command = [\"PROGRAM\", \"ARG\"]` or `url = \"https://…/mcp\"`",
            )),
            (Some(_), None) if !server.headers.is_empty() => Some((
                format!("{at}/headers"),
                "`headers` are sent to HTTP servers only",
                "remove `headers`, or reach the server by `url`",
            )),
            (None, Some(_)) if server.cwd.is_some() => Some((
                format!("{at}/cwd"),
                "`cwd` is where a stdio server starts; an HTTP server has none",
                "remove `cwd`",
            )),
            _ => None,
        };
        if let Some((key_at, reason, help)) = problem {
            let key = format!("mcp.{name}");
            checker.report(
                Diagnostic::new(invalid(&key, reason), checker.key(&key_at)).with_help(help),
            );
        }
        headers(checker, name, server);
    }
}

/// Header templates compile and read only allow-listed variables (`env.NAME`): a secret
/// the flow does not name never leaves the machine.
fn headers(checker: &mut Checker<'_>, name: &str, server: &crate::spec::McpServerSpec) {
    let env_broken = checker.broken.covers(&pointer(&["mcp", name, "env"]));
    for (header, text) in &server.headers {
        let at = pointer(&["mcp", name, "headers", header]);
        let names = match template_names(text) {
            Ok(names) => names,
            Err(error) => {
                checker.report(
                    Diagnostic::new(
                        DiagnosticKind::TemplateSyntax {
                            what: "this header".to_owned(),
                            message: describe(&error),
                        },
                        checker.value(&at),
                    )
                    .with_help("header values are MiniJinja templates over `env`"),
                );
                continue;
            }
        };
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        for used in names {
            let (root, field) = used.split_once('.').unwrap_or((used.as_str(), ""));
            let span = checker.find_in_string(&at, text, &used);
            if root != "env" {
                checker.report(
                    Diagnostic::new(DiagnosticKind::UndefinedName { name: used.clone() }, span)
                        .with_label("not in scope")
                        .with_help("an MCP server's headers read only `env`"),
                );
            } else if !env_broken && !field.is_empty() && !server.env.iter().any(|v| v == field) {
                checker.report(
                    Diagnostic::new(
                        DiagnosticKind::EnvNotAllowed {
                            var: field.to_owned(),
                            tool: format!("mcp.{name}"),
                        },
                        span,
                    )
                    .with_label("not allow-listed")
                    .with_help(
                        match suggest::closest(field, server.env.iter().map(String::as_str)) {
                            Some(near) => format!("did you mean `env.{near}`?"),
                            None => format!(
                                "add it to the server's allow-list: `env = [\"{field}\"]` in \
                                 [mcp.{name}]"
                            ),
                        },
                    ),
                );
            }
        }
    }
}

/// `mcp_tool` without `mcp` names a tool on no server.
fn no_server_without_mcp(checker: &mut Checker<'_>) {
    for (name, spec) in &checker.file.tools {
        if spec.mcp_tool.is_some() && spec.mcp.is_none() {
            let at = pointer(&["tools", name, "mcp_tool"]);
            checker.report(
                Diagnostic::new(
                    DiagnosticKind::InvalidValue {
                        key: format!("tools.{name}.mcp_tool"),
                        reason: "it names a tool on an MCP server, but the tool has no `mcp`"
                            .to_owned(),
                    },
                    checker.key(&at),
                )
                .with_help("add `mcp = \"SERVER\"`, or remove `mcp_tool`"),
            );
        }
    }
}

/// `[mcp.NAME] tools = [...]`: each listed tool becomes a flow tool of that name, unless
/// the flow configures it in a table of its own.
fn imports(
    checker: &mut Checker<'_>,
    lock: Option<&McpLock>,
    tools: &mut IndexMap<String, ToolSpec>,
) {
    for (server, spec) in &checker.file.mcp {
        for (i, remote) in spec.tools.iter().enumerate() {
            let configured = tools.iter().any(|(name, tool)| {
                tool.mcp.as_deref() == Some(server)
                    && tool.mcp_tool.as_deref().unwrap_or(name) == remote
            });
            if configured {
                continue;
            }
            if let Some(lock) = lock
                && lock.tool(server, remote).is_none()
            {
                checker.report(
                    Diagnostic::new(
                        DiagnosticKind::McpToolNotLocked {
                            server: server.clone(),
                            remote: remote.clone(),
                        },
                        checker.value(&pointer(&["mcp", server, "tools", &i.to_string()])),
                    )
                    .with_label("not in the lock file")
                    .with_help("run `clarion mcp lock` on this flow if the server gained it since"),
                );
                continue;
            }
            tools.entry(remote.clone()).or_insert_with(|| ToolSpec {
                description: None,
                builtin: None,
                http: None,
                command: None,
                client: None,
                mcp: Some(server.clone()),
                mcp_tool: None,
                strict: None,
                follows: Vec::new(),
                confirm: None,
                flow: None,
                with: IndexMap::new(),
                returns: IndexMap::new(),
                params: IndexMap::new(),
                after: Vec::new(),
                on_error: None,
            });
        }
    }
}

/// Fills `spec` in from the server's listing, reporting where the flow widens it.
fn merge(
    checker: &mut Checker<'_>,
    tool: &str,
    remote: &str,
    spec: &mut ToolSpec,
    locked: &LockedTool,
) {
    if spec.description.is_none() {
        spec.description.clone_from(&locked.description);
    }
    let empty = Map::new();
    let properties = locked
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = locked
        .input_schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mismatch = |reason: String| DiagnosticKind::McpMismatch {
        tool: tool.to_owned(),
        remote: remote.to_owned(),
        reason,
    };
    let mut merged: IndexMap<String, ParamSpec> = IndexMap::new();
    for (param, ours) in &spec.params {
        let at = pointer(&["tools", tool, "params", param]);
        if checker.broken.covers(&at) {
            merged.insert(param.clone(), ours.clone());
            continue;
        }
        let Some(theirs) = properties.get(param) else {
            let names: Vec<&str> = properties.keys().map(String::as_str).collect();
            let help = match suggest::closest(param, names.iter().copied()) {
                Some(near) => format!("did you mean `{near}`?"),
                None if names.is_empty() => format!("MCP tool `{remote}` takes no parameters"),
                None => format!("MCP tool `{remote}` takes {}", suggest::list(&names)),
            };
            checker.report(
                Diagnostic::new(
                    mismatch(format!("the MCP tool has no parameter `{param}`")),
                    checker.key(&at),
                )
                .with_label("not a parameter of the MCP tool")
                .with_help(help),
            );
            continue;
        };
        if required.contains(&param.as_str()) && !is_required(ours) {
            checker.report(
                Diagnostic::new(
                    mismatch(format!(
                        "parameter `{param}` is optional here, but the MCP tool needs it"
                    )),
                    checker
                        .value(&format!("{at}/required"))
                        .or_else(|| checker.key(&at)),
                )
                .with_label("optional here")
                .with_help("remove `required = false`: a flow may narrow a schema, never widen it"),
            );
        }
        let own = Value::Object(ours.schema.0.clone());
        let what = "the MCP tool";
        if let Some(pending) = type_mismatch(checker, &at, param, &own, theirs, what) {
            checker.report(pending.with_kind(&mismatch));
        } else if allowed_values(&own).is_some()
            && let Some(pending) = enum_mismatch(checker, &at, param, &own, theirs, what)
        {
            checker.report(pending.with_kind(&mismatch));
        }
        merged.insert(param.clone(), overlay(param, ours, theirs, &required));
    }
    for (param, theirs) in properties {
        if !merged.contains_key(param) && !spec.params.contains_key(param) {
            let blank = ParamSpec {
                description: None,
                required: None,
                ask: None,
                slot: None,
                grounded: None,
                invalid: None,
                max_asks: None,
                on_exhausted: None,
                schema_ref: None,
                schema: SchemaKeywords::default(),
            };
            merged.insert(param.clone(), overlay(param, &blank, theirs, &required));
        }
    }
    spec.params = merged;
}

/// The server's schema of one parameter (`name`) with the flow's keys on top. An object
/// parameter's own `required` list stays a schema keyword; whether the call needs the
/// parameter is the flow's `required`, else the server's.
fn overlay(name: &str, ours: &ParamSpec, theirs: &Value, required: &[&str]) -> ParamSpec {
    let mut schema: Map<String, Value> = theirs.as_object().cloned().unwrap_or_default();
    let remote_description = schema
        .shift_remove("description")
        .and_then(|d| d.as_str().map(ToOwned::to_owned));
    for (key, value) in &ours.schema.0 {
        schema.insert(key.clone(), value.clone());
    }
    let needed = match &ours.required {
        Some(flag) => Some(flag.clone()),
        None if required.contains(&name) => None,
        None => Some(Required::Flag(false)),
    };
    ParamSpec {
        description: ours.description.clone().or(remote_description),
        required: needed,
        ask: ours.ask.clone(),
        slot: ours.slot.clone(),
        grounded: ours.grounded,
        invalid: ours.invalid.clone(),
        max_asks: ours.max_asks,
        on_exhausted: ours.on_exhausted.clone(),
        schema_ref: None,
        schema: SchemaKeywords(schema),
    }
}
