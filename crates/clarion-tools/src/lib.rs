//! Tool executors for Clarion flows: built-in, HTTP, command and MCP tools.
//!
//! The engine knows tools only through its [`ToolExecutor`] trait; this crate implements it
//! for the three kinds of tool a flow can run itself:
//!
//! - [`builtin`]: Rust functions with typed arguments, registered by name (the finance
//!   functions of `flows/personal-finance.toml` ship with it). The registry doubles as the
//!   [`BuiltinCatalog`](clarion_flow::BuiltinCatalog) the loader checks flows
//!   against;
//! - [`http`]: HTTP APIs, with SSRF protection, bounded responses, retries for idempotent
//!   methods and secrets kept out of every message;
//! - [`command`]: local programs speaking JSON over stdin/stdout, in a process group that
//!   dies with the call;
//! - [`mcp`]: tools of Model Context Protocol servers (`rmcp`), one connection per server
//!   per process, started lazily and again after a crash.
//!
//! [`ClarionTools`] dispatches on the tool's executor. Every failure is a [`ToolError`] with
//! a stable `kind` (`failed`, `timeout`, `invalid_output`, `unavailable`, `refused`,
//! `unknown_tool`, `invalid_arguments`) that the engine hands to the model; nothing here
//! panics on any input, and every executor enforces its own timeout and size limits, so it
//! is safe without the engine's timeout around it.
//!
//! ```
//! use clarion_flow::{LoadOptions, load_str_with};
//! use clarion_tools::ClarionTools;
//!
//! let tools = ClarionTools::new();
//! let options = LoadOptions { builtins: Some(tools.builtins()), ..LoadOptions::default() };
//! let report = load_str_with("loan.toml", r#"
//!     [flow]
//!     name = "loan"
//!     [assistant]
//!     model = "gpt-4.1-mini"
//!     instructions = "Help with loans."
//!     [tools.payment]
//!     description = "Monthly payment of a loan."
//!     builtin = "finance.loan_paymnt"
//! "#, None, &options);
//! assert_eq!(report.diagnostics[0].code(), "E021"); // unknown built-in; did you mean…
//! ```

pub mod builtin;
pub mod command;
pub mod http;
pub mod mcp;

use clarion_engine::ToolErrorKind;

use clarion_engine::BoxFuture;
use clarion_engine::{ToolError, ToolExecutor, ToolRequest};
use clarion_flow::Executor;
use serde_json::Value;

pub use builtin::{Builtin, BuiltinRegistry};
pub use command::CommandExecutor;
pub use http::{HttpExecutor, NetworkPolicy};
pub use mcp::McpExecutor;

/// Runs built-in, HTTP, command and MCP tools; client tools belong to the embedding
/// application.
#[derive(Debug, Default)]
pub struct ClarionTools {
    builtins: BuiltinRegistry,
    http: HttpExecutor,
    command: CommandExecutor,
    mcp: McpExecutor,
}

impl ClarionTools {
    /// The standard built-ins and the default network policy.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the built-ins (e.g. the standard ones plus an application's own).
    #[must_use]
    pub fn with_builtins(mut self, builtins: BuiltinRegistry) -> Self {
        self.builtins = builtins;
        self
    }

    /// Replaces the network policy of HTTP tools.
    #[must_use]
    pub fn with_network_policy(mut self, policy: NetworkPolicy) -> Self {
        self.mcp = McpExecutor::new(policy.clone());
        self.http = HttpExecutor::new(policy);
        self
    }

    /// Sends the progress notifications of MCP tool calls to `sink`.
    #[must_use]
    pub fn with_mcp_progress(mut self, sink: mcp::ProgressSink) -> Self {
        self.mcp = std::mem::take(&mut self.mcp).with_progress(sink);
        self
    }

    /// The MCP executor: its connections, and listing a server's tools.
    #[must_use]
    pub fn mcp(&self) -> &McpExecutor {
        &self.mcp
    }

    /// The built-ins, which are also the catalog to load flows with.
    #[must_use]
    pub fn builtins(&self) -> &BuiltinRegistry {
        &self.builtins
    }
}

impl ToolExecutor for ClarionTools {
    fn replayable(&self, tool: &clarion_flow::Tool) -> bool {
        // HTTP, command and MCP tools reach the world outside; only a pure built-in may
        // run twice unnoticed.
        match &tool.executor {
            Executor::Builtin(name) => self.builtins.get(name).is_some_and(Builtin::replayable),
            _ => false,
        }
    }

    fn execute<'a>(&'a self, request: ToolRequest<'a>) -> BoxFuture<'a, Result<Value, ToolError>> {
        match &request.tool.executor {
            // Built-ins are microseconds of pure computation: run them inline.
            Executor::Builtin(name) => {
                let result = self.builtins.call(name, request.arguments);
                Box::pin(std::future::ready(result))
            }
            Executor::Http(spec) => Box::pin(self.http.call(
                request.flow,
                spec,
                request.arguments,
                request.idempotency_key,
            )),
            Executor::Command(spec) => Box::pin(self.command.call(
                request.flow,
                spec,
                request.arguments,
                request.idempotency_key,
            )),
            Executor::Mcp(tool) => Box::pin(self.mcp.call(request.flow, tool, request.arguments)),
            // The engine hands the thread over itself; a flow tool never reaches an executor.
            Executor::Flow(link) => Box::pin(std::future::ready(Err(ToolError::new(
                ToolErrorKind::Unavailable,
                format!(
                    "`{}` hands off to flow `{}`: the engine does that, not a tool executor",
                    request.tool.name, link.flow.name
                ),
            )))),
            Executor::Client => Box::pin(std::future::ready(Err(ToolError::new(
                ToolErrorKind::Unavailable,
                format!(
                    "`{}` is a client tool: the embedding application runs it, not Clarion",
                    request.tool.name
                ),
            )))),
        }
    }
}
