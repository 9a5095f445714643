//! Loading a flow file: bytes in, a [`Flow`] or every diagnostic out.
//!
//! The pipeline is one straight line: decode → parse TOML (recovering, so several syntax
//! errors show at once) → convert to JSON with a span for every node → structural checks
//! against the flow format's JSON Schema → deserialize into [`FlowFile`] → semantic checks
//! → build the [`Flow`]. Nothing here panics on any input; a file that cannot be read, a
//! 10 MB file, deeply nested tables and invalid UTF-8 all end as diagnostics.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use toml::de::DeTable;

use super::catalog::LoadOptions;
use super::check::{self, Checker, params};
use super::link::{self, Chain};
use super::mcp::{self, LockError, McpLock};
use super::model::{Executor, Flow, FlowLink, Limits, McpTool, Param, Slot, Tool, parse_duration};
use super::spans::{self, pointer};
use super::spec::FlowFile;
use super::structure;
use crate::diagnostic::{self, Diagnostic, DiagnosticKind, Severity};
use crate::source::SourceFile;

/// Flow files larger than this are refused unread: no hand-written flow comes close.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// The outcome of loading one file: its text, everything found, and the flow if there
/// were no errors.
#[derive(Debug)]
pub struct LoadReport {
    /// The file's text (for rendering diagnostics).
    pub source: SourceFile,
    /// Errors and warnings, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// The flow, when there were no errors.
    pub flow: Option<Flow>,
}

impl LoadReport {
    /// Number of errors.
    #[must_use]
    pub fn error_count(&self) -> usize {
        self.count(Severity::Error)
    }

    /// Number of warnings.
    #[must_use]
    pub fn warning_count(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity() == severity)
            .count()
    }

    /// The flow, or this report as the error.
    pub fn into_result(self) -> Result<Flow, LoadError> {
        match self.flow {
            Some(flow) => Ok(flow),
            None => Err(LoadError {
                report: Box::new(self),
            }),
        }
    }
}

/// A flow that failed to load; holds the full report.
#[derive(Debug, thiserror::Error)]
#[error("{} has {} error(s); run `clarion validate` on it for details", .report.source.path().display(), .report.error_count())]
pub struct LoadError {
    /// What was found.
    pub report: Box<LoadReport>,
}

/// Loads the flow file at `path`.
#[must_use]
pub fn load_file(path: &Path) -> LoadReport {
    load_file_with(path, &LoadOptions::default())
}

/// Loads the flow file at `path`, with `options` (e.g. the built-ins to check against).
#[must_use]
pub fn load_file_with(path: &Path, options: &LoadOptions<'_>) -> LoadReport {
    load_file_in(path, options, &[])
}

/// [`load_file_with`] for a flow reached by handoffs along `chain`.
pub(crate) fn load_file_in(path: &Path, options: &LoadOptions<'_>, chain: &Chain) -> LoadReport {
    let base_dir = path.parent().map(Path::to_path_buf);
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size > MAX_FILE_BYTES as u64 {
        return unreadable(
            path,
            format!("it is {size} bytes; flow files are limited to {MAX_FILE_BYTES}"),
        );
    }
    match read_limited(path) {
        Ok(bytes) if bytes.len() > MAX_FILE_BYTES => unreadable(
            path,
            format!(
                "it is over {MAX_FILE_BYTES} bytes; flow files are limited to {MAX_FILE_BYTES}"
            ),
        ),
        Ok(bytes) => load_bytes_in(path, &bytes, base_dir.as_deref(), options, chain),
        Err(error) => unreadable(path, error.to_string()),
    }
}

/// Reads at most one byte more than [`MAX_FILE_BYTES`]: the size in a file's metadata says
/// nothing for a device or a pipe, and `/dev/zero` never ends.
pub(crate) fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Loads a flow from bytes; `path` names it in diagnostics and `base_dir` resolves `$ref`.
#[must_use]
pub fn load_bytes(path: impl Into<PathBuf>, bytes: &[u8], base_dir: Option<&Path>) -> LoadReport {
    load_bytes_with(path, bytes, base_dir, &LoadOptions::default())
}

/// [`load_bytes`] with `options`.
#[must_use]
pub fn load_bytes_with(
    path: impl Into<PathBuf>,
    bytes: &[u8],
    base_dir: Option<&Path>,
    options: &LoadOptions<'_>,
) -> LoadReport {
    load_bytes_in(path, bytes, base_dir, options, &[])
}

fn load_bytes_in(
    path: impl Into<PathBuf>,
    bytes: &[u8],
    base_dir: Option<&Path>,
    options: &LoadOptions<'_>,
    chain: &Chain,
) -> LoadReport {
    let path = path.into();
    if bytes.len() > MAX_FILE_BYTES {
        return unreadable(
            &path,
            format!(
                "it is {} bytes; flow files are limited to {MAX_FILE_BYTES}",
                bytes.len()
            ),
        );
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let source = SourceFile::new(path, text);
            let (diagnostics, flow) = check_source(&source, base_dir, options, chain);
            LoadReport {
                source,
                diagnostics,
                flow,
            }
        }
        Err(error) => {
            let source = SourceFile::new(path, String::from_utf8_lossy(bytes).into_owned());
            let at = error.valid_up_to();
            let diagnostic = Diagnostic::new(
                DiagnosticKind::Unreadable {
                    reason: format!("it is not valid UTF-8 (byte {at})"),
                },
                // The kept text has U+FFFD in place of the bad bytes: span all of it.
                Some(at..at + char::REPLACEMENT_CHARACTER.len_utf8()),
            )
            .with_help("save the file as UTF-8");
            LoadReport {
                source,
                diagnostics: vec![diagnostic],
                flow: None,
            }
        }
    }
}

fn unreadable(path: &Path, reason: String) -> LoadReport {
    LoadReport {
        source: SourceFile::new(path, String::new()),
        diagnostics: vec![Diagnostic::new(DiagnosticKind::Unreadable { reason }, None)],
        flow: None,
    }
}

/// Loads a flow from text; `path` names it in diagnostics and `base_dir` resolves `$ref`.
#[must_use]
pub fn load_str(path: impl Into<PathBuf>, text: &str, base_dir: Option<&Path>) -> LoadReport {
    load_str_with(path, text, base_dir, &LoadOptions::default())
}

/// [`load_str`] with `options`.
#[must_use]
pub fn load_str_with(
    path: impl Into<PathBuf>,
    text: &str,
    base_dir: Option<&Path>,
    options: &LoadOptions<'_>,
) -> LoadReport {
    let source = SourceFile::new(path, text);
    let (diagnostics, flow) = check_source(&source, base_dir, options, &[]);
    LoadReport {
        source,
        diagnostics,
        flow,
    }
}

fn check_source(
    source: &SourceFile,
    base_dir: Option<&Path>,
    options: &LoadOptions<'_>,
    chain: &Chain,
) -> (Vec<Diagnostic>, Option<Flow>) {
    let (root, errors) = DeTable::parse_recoverable(source.text());
    if !errors.is_empty() {
        let mut diagnostics: Vec<Diagnostic> = errors.iter().map(|e| syntax(source, e)).collect();
        diagnostic::sort(&mut diagnostics);
        return (diagnostics, None);
    }
    let (mut document, spans, unrepresentable) = spans::to_json(&root);
    let nan_spans: Vec<_> = unrepresentable.iter().map(|bad| bad.span.clone()).collect();
    let mut diagnostics: Vec<Diagnostic> = unrepresentable
        .into_iter()
        .map(|bad| {
            Diagnostic::new(
                DiagnosticKind::InvalidValue {
                    key: structure::key_name(&bad.pointer),
                    reason: "`nan` and `inf` have no JSON equivalent".to_owned(),
                },
                Some(bad.span),
            )
            .with_help("use a finite number")
        })
        .collect();
    let (mut structural, broken) = structure::check(&mut document, &spans);
    // A `nan` stands in the document as null, which the structural check rejects again.
    structural.retain(|d| d.span.as_ref().is_none_or(|span| !nan_spans.contains(span)));
    diagnostics.extend(structural);
    let file: FlowFile = match serde_json::from_value(document) {
        Ok(file) => file,
        Err(error) => {
            // The structural pass should make this unreachable; say so plainly if not.
            diagnostics.push(Diagnostic::new(
                DiagnosticKind::InvalidValue {
                    key: "(file)".to_owned(),
                    reason: error.to_string(),
                },
                None,
            ));
            diagnostic::sort(&mut diagnostics);
            return (diagnostics, None);
        }
    };
    // MCP tools first: they take their parameters from the lock file, and every other check
    // runs on the tools as the model will see them.
    let lock = match options.mcp_lock {
        Some(given) => check::mcp::LockSource::Given(given),
        None => check::mcp::LockSource::File(read_lock(&file, source.path(), base_dir)),
    };
    let mut checker = Checker {
        file: &file,
        spans: &spans,
        source,
        broken: &broken,
        base_dir,
        diagnostics: Vec::new(),
        resolved_refs: params::ResolvedRefs::new(),
        builtins: options.builtins,
    };
    let tools = check::mcp::resolve(&mut checker, &lock);
    let found = std::mem::take(&mut checker.diagnostics);
    let file = FlowFile { tools, ..file };
    let mut checker = Checker {
        file: &file,
        spans: &spans,
        source,
        broken: &broken,
        base_dir,
        diagnostics: found,
        resolved_refs: params::ResolvedRefs::new(),
        builtins: options.builtins,
    };
    check::run(&mut checker);
    let limits = limits(&mut checker);
    // The flows this one hands off to, once this one is sound: a broken file's other
    // errors come first, and no flow is loaded for nothing.
    let linked = if checker
        .diagnostics
        .iter()
        .any(|d| d.severity() == Severity::Error)
    {
        IndexMap::new()
    } else {
        link::resolve(&mut checker, options, chain)
    };
    let resolved_refs = std::mem::take(&mut checker.resolved_refs);
    diagnostics.append(&mut checker.diagnostics);
    diagnostic::sort(&mut diagnostics);
    let failed = diagnostics.iter().any(|d| d.severity() == Severity::Error);
    let flow = match (failed, limits) {
        (false, Some(limits)) => Some(build(file, limits, &resolved_refs, source.path(), &linked)),
        _ => None,
    };
    (diagnostics, flow)
}

/// The lock file next to the flow, read only when the flow uses an MCP server.
fn read_lock(file: &FlowFile, path: &Path, base_dir: Option<&Path>) -> Result<McpLock, LockError> {
    let lock = mcp::lock_path(path);
    let lock = match (base_dir, lock.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => lock,
    };
    if file.mcp.is_empty() && file.tools.values().all(|t| t.mcp.is_none()) {
        return Err(LockError::Missing(lock));
    }
    McpLock::read(&lock)
}

/// A TOML syntax error as a diagnostic; duplicate keys get their own code.
fn syntax(source: &SourceFile, error: &toml::de::Error) -> Diagnostic {
    let message = error.message().trim().to_owned();
    let span = error.span().map(|s| source.clamp(&s));
    if let Some(rest) = message.strip_prefix("duplicate key") {
        let key = rest.trim().trim_matches('`').to_owned();
        let key = if key.is_empty() {
            span.as_ref()
                .and_then(|s| source.text().get(s.clone()))
                .unwrap_or("key")
                .trim()
                .to_owned()
        } else {
            key
        };
        return Diagnostic::new(DiagnosticKind::DuplicateKey { key }, span)
            .with_label("defined again here")
            .with_help("TOML allows each key and table once; merge the two definitions");
    }
    Diagnostic::new(DiagnosticKind::TomlSyntax { message }, span)
        .with_help("see https://toml.io/en/v1.0.0 for TOML syntax")
}

/// Parses durations (their pattern was checked; this catches overflow).
fn limits(checker: &mut Checker<'_>) -> Option<Limits> {
    let mut ok = true;
    let mut duration = |checker: &mut Checker<'_>, at: &str, text: &str| {
        let parsed = parse_duration(text);
        if parsed.is_none() && !checker.broken.covers(at) {
            ok = false;
            checker.report(Diagnostic::new(
                DiagnosticKind::InvalidValue {
                    key: structure::key_name(at),
                    reason: "the duration is too long".to_owned(),
                },
                checker.value(at),
            ));
        }
        parsed.unwrap_or_default()
    };
    let spec = &checker.file.limits;
    let limits = Limits {
        max_steps: spec.max_steps,
        tool_timeout: duration(checker, "/limits/tool_timeout", &spec.tool_timeout.clone()),
        max_consecutive_failures: spec.max_consecutive_failures,
        requires_action_timeout: duration(
            checker,
            "/limits/requires_action_timeout",
            &spec.requires_action_timeout.clone(),
        ),
        max_context_tokens: spec.max_context_tokens,
        truncation: match spec.truncation {
            None | Some(crate::spec::TruncationSpec::Auto(_)) => crate::model::Truncation::Auto,
            Some(crate::spec::TruncationSpec::LastMessages(n)) => {
                crate::model::Truncation::LastMessages(n.last_messages)
            }
        },
        tokenizer: match spec.tokenizer {
            None | Some(crate::spec::TokenizerSpec::Auto) => crate::model::Tokenizer::Auto,
            Some(crate::spec::TokenizerSpec::Estimate) => crate::model::Tokenizer::Estimate,
            Some(crate::spec::TokenizerSpec::O200kBase) => crate::model::Tokenizer::O200kBase,
            Some(crate::spec::TokenizerSpec::Cl100kBase) => crate::model::Tokenizer::Cl100kBase,
        },
    };
    for (name, tool) in &checker.file.tools {
        let timeout = tool
            .http
            .as_ref()
            .and_then(|h| h.timeout.clone().map(|t| (t, "http")))
            .or_else(|| {
                tool.command
                    .as_ref()
                    .and_then(|c| c.timeout.clone().map(|t| (t, "command")))
            });
        if let Some((text, table)) = timeout {
            duration(checker, &pointer(&["tools", name, table, "timeout"]), &text);
        }
    }
    for (name, server) in &checker.file.mcp {
        if let Some(text) = &server.timeout {
            duration(checker, &pointer(&["mcp", name, "timeout"]), text);
        }
    }
    if let Some(provider) = checker.file.provider.clone() {
        for (key, text) in [
            ("timeout", provider.timeout),
            ("idle_timeout", provider.idle_timeout),
            ("stream_timeout", provider.stream_timeout),
        ] {
            if let Some(text) = text {
                duration(checker, &pointer(&["provider", key]), &text);
            }
        }
    }
    ok.then_some(limits)
}

fn build(
    file: FlowFile,
    limits: Limits,
    refs: &params::ResolvedRefs,
    path: &Path,
    linked: &IndexMap<String, Arc<Flow>>,
) -> Flow {
    let slots = file
        .slots
        .iter()
        .map(|(name, spec)| {
            let slot = Slot {
                name: name.clone(),
                description: spec.description.clone(),
                schema: params::slot_schema(spec),
            };
            (name.clone(), slot)
        })
        .collect();
    let tools = file
        .tools
        .into_iter()
        .map(|(name, spec)| {
            let server = spec
                .mcp
                .as_ref()
                .and_then(|server| Some((server.clone(), file.mcp.get(server)?.clone())));
            let link = linked.get(&name).map(|flow| FlowLink {
                flow: Arc::clone(flow),
                with: spec.with.clone(),
                returns: spec.returns.clone(),
            });
            let executor = match (spec.builtin, spec.http, spec.command, server) {
                _ if link.is_some() => link.map_or(Executor::Client, Executor::Flow),
                (Some(builtin), _, _, _) => Executor::Builtin(builtin),
                (_, Some(http), _, _) => Executor::Http(http),
                (_, _, Some(command), _) => Executor::Command(command),
                (_, _, _, Some((server, mcp))) => Executor::Mcp(McpTool {
                    server,
                    tool: spec.mcp_tool.unwrap_or_else(|| name.clone()),
                    spec: mcp,
                }),
                _ => Executor::Client,
            };
            let params: IndexMap<String, Param> = spec
                .params
                .iter()
                .map(|(param, p)| {
                    let from_ref = refs.get(&pointer(&["tools", &name, "params", param]));
                    let schema = params::model_schema(p, from_ref);
                    let value = Param {
                        name: param.clone(),
                        description: schema
                            .get("description")
                            .and_then(|d| d.as_str())
                            .map(ToOwned::to_owned),
                        required: params::is_required(p),
                        ask: p.ask.clone(),
                        slot: p.slot.clone(),
                        // A question means the user supplies the value: numbers with an
                        // `ask` are grounded unless the flow says `grounded = false`.
                        grounded: p
                            .grounded
                            .unwrap_or_else(|| p.ask.is_some() && params::is_numeric(&schema)),
                        invalid: p.invalid.clone(),
                        max_asks: p.max_asks,
                        on_exhausted: p.on_exhausted.clone(),
                        schema,
                    };
                    (param.clone(), value)
                })
                .collect();
            let tool = Tool {
                name: name.clone(),
                description: spec.description,
                executor,
                strict: spec.strict,
                follows: spec.follows,
                confirm: spec.confirm,
                params,
                after: spec.after,
                on_error: spec.on_error,
            };
            (name, tool)
        })
        .collect();
    Flow {
        name: file.flow.name,
        description: file.flow.description,
        version: file.flow.version,
        path: Some(path.to_path_buf()),
        assistant: file.assistant,
        limits,
        provider: file.provider,
        slots,
        tools,
        exported: crate::export::ToolsCache::default(),
    }
}
