//! MCP tools: `mcp = "SERVER"`, run by a Model Context Protocol server through the official
//! Rust SDK (`rmcp`).
//!
//! This module owns the connections. Each distinct `[mcp.NAME]` declaration gets one client
//! per process, started by the first call that needs it (not at load: a flow whose MCP
//! tools are never called starts nothing), shared by every later call, and started again
//! by the next call after it died — a crash fails the call in flight and no other.
//!
//! - **stdio** (`command`): the program is started directly, never through a shell, in the
//!   flow file's directory (or `cwd`), with a cleared environment plus the variables the
//!   server allow-lists, in a process group of its own killed when the connection is
//!   dropped (`ProcessGroup`, as for command tools); its stderr's last lines go into
//!   errors.
//! - **streamable HTTP** (`url`): the HTTP tools' SSRF policy (the guarded resolver and
//!   redirect policy) unless the server has `allow_private_network = true`; `headers` are
//!   templates over `env`.
//!
//! Progress notifications a server sends during a call go to the sink given with
//! [`McpExecutor::with_progress`] (`clarion chat` shows them in its spinner).
//!
//! The result the model and `after` rules see is the call's structured content when there
//! is some, else its text (parsed as JSON when it is JSON); an `isError` result, a protocol
//! error, a dead server and a timeout are [`ToolError`]s with the server's message, so the
//! tool's `on_error` applies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarion_engine::{Redactor, ToolError, ToolErrorKind};
use clarion_flow::mcp::{LockedServer, LockedTool};
use clarion_flow::model::{McpServerSpec, format_duration};
use clarion_flow::{Flow, McpTool};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ContentBlock, ErrorCode, ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use serde_json::{Map, Value};
use tokio::process::Command;

use crate::command::group::ProcessGroup;
use crate::command::output::{Tail, drain_into};
use crate::http::NetworkPolicy;

/// How long starting a server (spawn and the protocol's handshake) may take.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A progress notification of a call in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct McpProgress {
    /// The server's name in the flow.
    pub server: String,
    /// The tool's name on the server.
    pub tool: String,
    /// Progress so far (grows with each notification).
    pub progress: f64,
    /// The total, when the server knows it.
    pub total: Option<f64>,
    /// What the server says it is doing.
    pub message: Option<String>,
}

/// Where progress notifications go.
pub type ProgressSink = Arc<dyn Fn(&McpProgress) + Send + Sync>;

/// The client side of a connection: forwards the server's progress notifications, naming
/// the tool in flight (rmcp numbers the progress tokens itself; when calls of several tools
/// overlap, the notification names them all).
struct Client {
    server: String,
    progress: Option<ProgressSink>,
    in_flight: Mutex<Vec<String>>,
}

/// A call's place in its connection's list of calls in flight, left when dropped.
struct InFlight<'a> {
    list: &'a Mutex<Vec<String>>,
    tool: String,
}

impl<'a> InFlight<'a> {
    fn new(list: &'a Mutex<Vec<String>>, tool: &str) -> Self {
        if let Ok(mut list) = list.lock() {
            list.push(tool.to_owned());
        }
        Self {
            list,
            tool: tool.to_owned(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut list) = self.list.lock()
            && let Some(at) = list.iter().position(|t| *t == self.tool)
        {
            list.remove(at);
        }
    }
}

impl ClientHandler for Client {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let Some(sink) = &self.progress else { return };
        let tool = self
            .in_flight
            .lock()
            .map(|list| {
                let mut names: Vec<&str> = list.iter().map(String::as_str).collect();
                names.sort_unstable();
                names.dedup();
                names.join(", ")
            })
            .unwrap_or_default();
        sink(&McpProgress {
            server: self.server.clone(),
            tool,
            progress: params.progress,
            total: params.total,
            message: params.message,
        });
    }
}

/// One live connection to a server.
struct Connection {
    service: RunningService<RoleClient, Client>,
    /// A stdio server's process group, killed when the connection is dropped.
    _group: Option<ProcessGroup>,
    /// The end of a stdio server's stderr.
    stderr: Arc<Mutex<Tail>>,
    /// Set when a stdio server's process has exited (an HTTP server has no process).
    exited: Arc<std::sync::atomic::AtomicBool>,
    shown: String,
}

impl Connection {
    fn stderr(&self) -> String {
        self.stderr.lock().map(|t| t.text()).unwrap_or_default()
    }

    /// Whether calls may still go to this connection: the protocol is open and a stdio
    /// server's process is alive (the transport notices a dead server only when it next
    /// writes, and that call would fail).
    fn usable(&self) -> bool {
        !self.service.is_closed() && !self.exited.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The connection slot of one server declaration; the lock is held only to start or drop
/// a connection, never during a call.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

/// Runs MCP tools; holds one connection per server declaration for the life of the process.
#[derive(Default)]
pub struct McpExecutor {
    policy: Arc<NetworkPolicy>,
    servers: Mutex<HashMap<String, Slot>>,
    progress: Option<ProgressSink>,
}

impl std::fmt::Debug for McpExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.servers.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("McpExecutor")
            .field("servers", &count)
            .finish_non_exhaustive()
    }
}

impl McpExecutor {
    /// An executor whose HTTP servers go through `policy`.
    #[must_use]
    pub fn new(policy: NetworkPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
            ..Self::default()
        }
    }

    /// Sends the progress notifications of calls to `sink` (connections started from now).
    #[must_use]
    pub fn with_progress(mut self, sink: ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }

    /// Runs one call of an MCP tool, starting its server if no connection is live.
    pub async fn call(
        &self,
        flow: &Flow,
        tool: &McpTool,
        arguments: &Map<String, Value>,
    ) -> Result<Value, ToolError> {
        let timeout = flow.limits.tool_timeout_or(tool.spec.timeout.as_deref());
        let dir = flow_dir(flow);
        let redactor = redactor(&tool.spec);
        let slot = self.slot(&dir, &tool.spec);
        let outcome = tokio::time::timeout(timeout, async {
            let connection = self.connect(&slot, &dir, &tool.server, &tool.spec).await?;
            let request =
                CallToolRequestParams::new(tool.tool.clone()).with_arguments(arguments.clone());
            let result = {
                let _in_flight = InFlight::new(&connection.service.service().in_flight, &tool.tool);
                connection.service.call_tool(request).await
            };
            Ok::<_, ToolError>((connection, result))
        })
        .await;
        let (connection, result) = match outcome {
            Ok(Ok(done)) => done,
            Ok(Err(error)) => return Err(redactor.error(error)),
            Err(_) => {
                return Err(ToolError::new(
                    ToolErrorKind::Timeout,
                    format!(
                        "MCP tool `{}` of server `{}` did not answer within {}",
                        tool.tool,
                        tool.server,
                        format_duration(timeout)
                    ),
                ));
            }
        };
        match result {
            Ok(result) => outcome_of(&tool.server, &tool.tool, result),
            Err(error) => {
                let dead = matches!(
                    error,
                    ServiceError::TransportClosed | ServiceError::TransportSend(_)
                );
                if dead {
                    // Dropped: the next call starts the server again.
                    let mut current = slot.lock().await;
                    if current
                        .as_ref()
                        .is_some_and(|c| Arc::ptr_eq(c, &connection))
                    {
                        *current = None;
                    }
                }
                Err(redactor.error(call_error(
                    &tool.server,
                    &tool.tool,
                    &connection,
                    &error,
                    dead,
                )))
            }
        }
    }

    /// Every tool a server lists now, as the lock file records them. Starts a connection
    /// of its own and closes it.
    pub async fn list(
        &self,
        flow_dir: &Path,
        name: &str,
        spec: &McpServerSpec,
    ) -> Result<LockedServer, ToolError> {
        let redactor = redactor(spec);
        let connection = start(&self.policy, None, flow_dir, name, spec)
            .await
            .map_err(|e| redactor.error(e))?;
        let listed = tokio::time::timeout(START_TIMEOUT, connection.service.list_all_tools()).await;
        let tools = match listed {
            Ok(Ok(tools)) => tools,
            Ok(Err(error)) => {
                return Err(redactor.error(ToolError::new(
                    ToolErrorKind::Failed,
                    format!("MCP server `{name}` did not list its tools: {error}"),
                )));
            }
            Err(_) => {
                return Err(ToolError::new(
                    ToolErrorKind::Timeout,
                    format!(
                        "MCP server `{name}` did not list its tools within {}",
                        format_duration(START_TIMEOUT)
                    ),
                ));
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.service.cancel()).await;
        let mut server = LockedServer::default();
        for tool in tools {
            server.tools.insert(
                tool.name.to_string(),
                LockedTool {
                    description: tool.description.map(|d| d.to_string()),
                    input_schema: Value::Object((*tool.input_schema).clone()),
                },
            );
        }
        Ok(server)
    }

    /// Closes every connection (a stdio server's process group is killed).
    pub fn shutdown(&self) {
        if let Ok(mut servers) = self.servers.lock() {
            servers.clear();
        }
    }

    fn slot(&self, dir: &Path, spec: &McpServerSpec) -> Slot {
        // One connection per declaration: the same server declared alike in two flows in
        // the same directory is shared; declared differently, it is not.
        let key = format!(
            "{}\u{0}{}",
            dir.display(),
            serde_json::to_string(spec).unwrap_or_default()
        );
        let mut servers = match self.servers.lock() {
            Ok(servers) => servers,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(servers.entry(key).or_default())
    }

    async fn connect(
        &self,
        slot: &Slot,
        dir: &Path,
        name: &str,
        spec: &McpServerSpec,
    ) -> Result<Arc<Connection>, ToolError> {
        let mut current = slot.lock().await;
        if let Some(connection) = current.as_ref()
            && connection.usable()
        {
            return Ok(Arc::clone(connection));
        }
        let connection =
            Arc::new(start(&self.policy, self.progress.clone(), dir, name, spec).await?);
        *current = Some(Arc::clone(&connection));
        Ok(connection)
    }
}

/// The directory a flow's relative paths start from.
fn flow_dir(flow: &Flow) -> PathBuf {
    flow.path
        .as_deref()
        .and_then(Path::parent)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The values of the server's allow-listed variables, kept out of every message.
fn redactor(spec: &McpServerSpec) -> Redactor {
    Redactor::masking(
        spec.env
            .iter()
            .filter(|name| !crate::command::NOT_SECRET.contains(&name.as_str()))
            .filter_map(|name| std::env::var(name).ok()),
    )
}

async fn start(
    policy: &Arc<NetworkPolicy>,
    progress: Option<ProgressSink>,
    dir: &Path,
    name: &str,
    spec: &McpServerSpec,
) -> Result<Connection, ToolError> {
    let client = Client {
        server: name.to_owned(),
        progress,
        in_flight: Mutex::new(Vec::new()),
    };
    let started = match (&spec.command, &spec.url) {
        (Some(argv), _) => {
            tokio::time::timeout(START_TIMEOUT, start_stdio(client, dir, name, argv, spec)).await
        }
        (None, Some(url)) => {
            tokio::time::timeout(START_TIMEOUT, start_http(client, policy, name, url, spec)).await
        }
        (None, None) => {
            return Err(ToolError::new(
                ToolErrorKind::Unavailable,
                format!("MCP server `{name}` has neither `command` nor `url`"),
            ));
        }
    };
    started.unwrap_or_else(|_| {
        Err(ToolError::new(
            ToolErrorKind::Unavailable,
            format!(
                "MCP server `{name}` did not start within {}",
                format_duration(START_TIMEOUT)
            ),
        ))
    })
}

async fn start_stdio(
    client: Client,
    dir: &Path,
    name: &str,
    argv: &[String],
    spec: &McpServerSpec,
) -> Result<Connection, ToolError> {
    let Some((program, rest)) = argv.split_first() else {
        return Err(ToolError::new(
            ToolErrorKind::Unavailable,
            format!("MCP server `{name}` has an empty `command`"),
        ));
    };
    let shown = argv.join(" ");
    let cwd = match &spec.cwd {
        Some(cwd) => dir.join(cwd),
        None => dir.to_path_buf(),
    };
    let program = if program.contains('/') && Path::new(program).is_relative() {
        cwd.join(program)
    } else {
        PathBuf::from(program)
    };
    let env = spec
        .env
        .iter()
        .filter_map(|name| Some((name.clone(), std::env::var(name).ok()?)));
    let mut command = Command::new(&program);
    command
        .args(rest)
        .current_dir(&cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command.spawn().map_err(|e| {
        ToolError::new(
            ToolErrorKind::Unavailable,
            format!(
                "cannot start MCP server `{name}` (`{shown}`) in {}: {e}",
                cwd.display()
            ),
        )
    })?;
    let group = ProcessGroup::new(child.id());
    let stderr = Arc::new(Mutex::new(Tail::default()));
    if let Some(pipe) = child.stderr.take() {
        let tail = Arc::clone(&stderr);
        tokio::spawn(async move { drain_into(pipe, &tail).await });
    }
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(ToolError::new(
            ToolErrorKind::Unavailable,
            format!("MCP server `{name}`: no pipes to `{shown}`"),
        ));
    };
    // Waits for the server (reaping it) and marks the connection unusable when it exits;
    // the group takes everything the server started with it.
    let exited = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let marker = Arc::clone(&exited);
    tokio::spawn(async move {
        let _ = child.wait().await;
        marker.store(true, std::sync::atomic::Ordering::Release);
    });
    match client.serve((stdout, stdin)).await {
        Ok(service) => Ok(Connection {
            service,
            _group: Some(group),
            stderr,
            exited,
            shown,
        }),
        Err(error) => {
            // Give the stderr reader a moment to catch the server's last words.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let tail = stderr.lock().map(|t| t.text()).unwrap_or_default();
            let mut message = format!("MCP server `{name}` (`{shown}`) did not start: {error}");
            if !tail.is_empty() {
                message.push_str("; stderr: ");
                message.push_str(&tail);
            }
            Err(ToolError::new(ToolErrorKind::Unavailable, message))
        }
    }
}

async fn start_http(
    handler: Client,
    policy: &Arc<NetworkPolicy>,
    name: &str,
    url: &str,
    spec: &McpServerSpec,
) -> Result<Connection, ToolError> {
    let unavailable = |message: String| ToolError::new(ToolErrorKind::Unavailable, message);
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| unavailable(format!("MCP server `{name}`: `{url}` is not a URL ({e})")))?;
    policy
        .check_url(&parsed, spec.allow_private_network)
        .map_err(|refused| {
            ToolError::new(
                ToolErrorKind::Refused,
                format!(
                    "MCP server `{name}`: {refused}; set `allow_private_network = true` on \
                     `[mcp.{name}]` to allow it"
                ),
            )
        })?;
    let client =
        crate::http::guarded_client(policy, spec.allow_private_network).map_err(unavailable)?;
    let env: std::collections::BTreeMap<String, String> = spec
        .env
        .iter()
        .filter_map(|name| Some((name.clone(), std::env::var(name).ok()?)))
        .collect();
    let context = minijinja::context! { env => env };
    let mut headers = HashMap::new();
    for (header, template) in &spec.headers {
        let value = clarion_flow::template::environment()
            .render_str(template, &context)
            .map_err(|e| unavailable(format!("MCP server `{name}`: header `{header}`: {e}")))?;
        let header_name = reqwest::header::HeaderName::from_bytes(header.as_bytes())
            .map_err(|e| unavailable(format!("MCP server `{name}`: header `{header}`: {e}")))?;
        let header_value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|e| unavailable(format!("MCP server `{name}`: header `{header}`: {e}")))?;
        headers.insert(header_name, header_value);
    }
    let config =
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(headers);
    let transport = StreamableHttpClientTransport::with_client(client, config);
    let service = handler.serve(transport).await.map_err(|e| {
        unavailable(format!(
            "cannot connect to MCP server `{name}` at {url}: {e}"
        ))
    })?;
    Ok(Connection {
        service,
        _group: None,
        stderr: Arc::new(Mutex::new(Tail::default())),
        exited: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        shown: url.to_owned(),
    })
}

/// A call's result as the model sees it, or its `isError` as a failure.
fn outcome_of(server: &str, tool: &str, result: CallToolResult) -> Result<Value, ToolError> {
    let text: Vec<&str> = result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|t| t.text.as_str()))
        .collect();
    if result.is_error == Some(true) {
        let message = if text.is_empty() {
            "no message".to_owned()
        } else {
            text.join("\n")
        };
        return Err(ToolError::new(
            ToolErrorKind::Failed,
            format!("MCP tool `{tool}` of server `{server}` failed: {message}"),
        ));
    }
    if let Some(structured) = result.structured_content {
        return Ok(structured);
    }
    if text.len() == result.content.len() {
        let joined = text.join("\n");
        return Ok(serde_json::from_str(&joined).unwrap_or(Value::String(joined)));
    }
    // Images, audio and resources: the blocks as the protocol has them.
    Ok(Value::Array(
        result
            .content
            .iter()
            .map(|block: &ContentBlock| serde_json::to_value(block).unwrap_or(Value::Null))
            .collect(),
    ))
}

fn call_error(
    server: &str,
    tool: &str,
    connection: &Connection,
    error: &ServiceError,
    dead: bool,
) -> ToolError {
    if dead {
        let stderr = connection.stderr();
        let mut message = format!(
            "MCP server `{server}` (`{}`) stopped during the call of `{tool}`; it is started \
             again for the next call",
            connection.shown
        );
        if !stderr.is_empty() {
            message.push_str("; stderr: ");
            message.push_str(&stderr);
        }
        return ToolError::new(ToolErrorKind::Failed, message);
    }
    match error {
        ServiceError::McpError(data) => {
            let kind = if data.code == ErrorCode::INVALID_PARAMS {
                ToolErrorKind::InvalidArguments
            } else if data.code == ErrorCode::METHOD_NOT_FOUND {
                ToolErrorKind::UnknownTool
            } else {
                ToolErrorKind::Failed
            };
            ToolError::new(
                kind,
                format!(
                    "MCP server `{server}` refused the call of `{tool}`: {}",
                    data.message
                ),
            )
        }
        other => ToolError::new(
            ToolErrorKind::Failed,
            format!("MCP server `{server}` failed the call of `{tool}`: {other}"),
        ),
    }
}
