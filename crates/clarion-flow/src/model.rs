//! The validated flow: what the rest of Clarion works with.
//!
//! A [`Flow`] only exists once every check has passed, so its invariants hold without
//! re-checking: each tool has exactly one [`Executor`], every parameter schema is valid
//! JSON Schema with `$ref` files inlined, durations are parsed, and every name a template
//! uses is in scope. The run engine, the exporters and the CLI read it; none of them sees
//! the raw TOML.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

pub use super::spec::{
    AfterRule, AssistantSpec, AzureSpec, CommandSpec, ContextRoleSpec, HttpBody, HttpMethod,
    HttpSpec, McpServerSpec, OnError, OnExhausted, ProviderApi, ProviderSpec, ToolChoice,
};

/// A loaded, validated flow.
#[derive(Debug, Clone)]
pub struct Flow {
    /// `flow.name`.
    pub name: String,
    /// `flow.description`.
    pub description: Option<String>,
    /// `flow.version`.
    pub version: Option<String>,
    /// The file it was loaded from, if any.
    pub path: Option<PathBuf>,
    /// The model and its instructions.
    pub assistant: AssistantSpec,
    /// Bounds on one run.
    pub limits: Limits,
    /// The model server, if the flow names one.
    pub provider: Option<ProviderSpec>,
    /// Declared slots, in file order.
    pub slots: IndexMap<String, Slot>,
    /// Declared tools, in file order.
    pub tools: IndexMap<String, Tool>,
    /// The tools as each export format lists them, built the first time a definition
    /// needs them (see [`crate::export::definition`]).
    pub(crate) exported: crate::export::ToolsCache,
}

impl Flow {
    /// A flow for a side request of the engine (e.g. reading a user's answer to a
    /// confirmation): this flow's model, provider and limits, with `tools` instead of its
    /// own. Its tool lists are built afresh for the new tools.
    #[must_use]
    pub fn with_tools(&self, name: String, tools: IndexMap<String, Tool>) -> Self {
        Self {
            name,
            description: None,
            version: self.version.clone(),
            path: self.path.clone(),
            assistant: self.assistant.clone(),
            limits: self.limits.clone(),
            provider: self.provider.clone(),
            slots: IndexMap::new(),
            tools,
            exported: crate::export::ToolsCache::default(),
        }
    }
}

impl Flow {
    /// This flow and every flow it hands the thread to, directly or through others: each
    /// once (by name), this one first.
    #[must_use]
    pub fn reachable(&self) -> Vec<&Self> {
        let mut found: Vec<&Self> = vec![self];
        let mut next = 0;
        while let Some(flow) = found.get(next).copied() {
            next += 1;
            for tool in flow.tools.values() {
                if let Executor::Flow(link) = &tool.executor
                    && !found.iter().any(|f| f.name == link.flow.name)
                {
                    found.push(&link.flow);
                }
            }
        }
        found
    }
}

/// `[limits]`, with durations parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Model requests allowed in one run.
    pub max_steps: u32,
    /// Default timeout of one tool call.
    pub tool_timeout: Duration,
    /// Consecutive tool failures after which a run fails.
    pub max_consecutive_failures: u32,
    /// How long a run may wait for client tool outputs.
    pub requires_action_timeout: Duration,
    /// The tokens one model request may hold, if bounded.
    pub max_context_tokens: Option<u32>,
    /// Which history a request sends.
    pub truncation: Truncation,
    /// How the tokens of a request are counted.
    pub tokenizer: Tokenizer,
}

/// How the tokens of a request are counted against `max_context_tokens`
/// (`limits.tokenizer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tokenizer {
    /// OpenAI's tokenizer for the model's family when its name says which, the estimate
    /// otherwise.
    #[default]
    Auto,
    /// A text's length in bytes over four, rounded up, for any model.
    Estimate,
    /// OpenAI's `o200k_base`.
    O200kBase,
    /// OpenAI's `cl100k_base`.
    Cl100kBase,
}

/// Which part of a long history a model request sends (`limits.truncation`). Whatever
/// it says, the engine drops whole turns only, oldest first, and always sends the latest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Truncation {
    /// Every turn that fits `max_context_tokens` (all of them when it is unset).
    #[default]
    Auto,
    /// At most the last N messages, in whole turns (and within `max_context_tokens`).
    LastMessages(u32),
}

/// A typed fact remembered across turns.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// The slot's name.
    pub name: String,
    /// What the fact is.
    pub description: Option<String>,
    /// The JSON Schema a value must satisfy (includes `description`).
    pub schema: Value,
}

/// A tool the model may call.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The name the model sees.
    pub name: String,
    /// What the tool does.
    pub description: Option<String>,
    /// How it runs.
    pub executor: Executor,
    /// Strict mode: `Some(true)` demanded, `Some(false)` refused, `None` when possible.
    pub strict: Option<bool>,
    /// Tools that must have returned before the user's latest message for this one to be
    /// offered (`follows`).
    pub follows: Vec<String>,
    /// The question that asks the user to confirm a call before it runs (`confirm`).
    pub confirm: Option<String>,
    /// Parameters in declaration order (the order questions are asked in).
    pub params: IndexMap<String, Param>,
    /// Rules evaluated after a successful call.
    pub after: Vec<AfterRule>,
    /// Context for the model when the tool fails.
    pub on_error: Option<OnError>,
}

/// How a tool runs.
#[derive(Debug, Clone)]
pub enum Executor {
    /// A built-in Rust function, by name.
    Builtin(String),
    /// An HTTP API.
    Http(HttpSpec),
    /// A local program.
    Command(CommandSpec),
    /// A tool of a Model Context Protocol server.
    Mcp(McpTool),
    /// Another flow, which takes the thread over (`flow = "…"`): the engine runs it.
    Flow(FlowLink),
    /// The embedding application.
    Client,
}

/// A tool that hands the thread to another flow (`flow = "…"`), loaded and checked with
/// the flow that names it.
#[derive(Debug, Clone)]
pub struct FlowLink {
    /// The flow that takes over, loaded.
    pub flow: Arc<Flow>,
    /// Its slots filled as it takes over: its slot → an expression over `args` and this
    /// flow's `slots` (`with`).
    pub with: IndexMap<String, String>,
    /// This flow's slots filled when it hands the thread back: this flow's slot → its
    /// slot (`returns`). Empty: it never hands back.
    pub returns: IndexMap<String, String>,
}

impl FlowLink {
    /// Whether the other flow hands the thread back (a call, not a handoff for good).
    #[must_use]
    pub fn comes_back(&self) -> bool {
        !self.returns.is_empty()
    }
}

/// A tool of an MCP server: which server, and the tool's name there.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    /// The server's name in the flow (`[mcp.NAME]`).
    pub server: String,
    /// The tool's name on the server (`mcp_tool`, else the flow's name for it).
    pub tool: String,
    /// How to reach the server.
    pub spec: McpServerSpec,
}

impl Executor {
    /// The executor's key in the flow file.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Builtin(_) => "builtin",
            Self::Http(_) => "http",
            Self::Command(_) => "command",
            Self::Mcp(_) => "mcp",
            Self::Flow(_) => "flow",
            Self::Client => "client",
        }
    }
}

impl Executor {
    /// Whether the tool reaches a service over the network (an HTTP tool, an MCP server
    /// reached by `url`): scenarios must mock it, so a transcript never depends on one.
    #[must_use]
    pub fn is_remote(&self) -> bool {
        match self {
            Self::Http(_) => true,
            Self::Mcp(mcp) => mcp.spec.url.is_some(),
            Self::Builtin(_) | Self::Command(_) | Self::Flow(_) | Self::Client => false,
        }
    }
}

impl Tool {
    /// How long one call of this tool may take: its own `timeout` (HTTP and command tools,
    /// an MCP tool's server), else `limits.tool_timeout`. One answer for the engine, the executors and the mocks.
    #[must_use]
    pub fn timeout(&self, limits: &Limits) -> Duration {
        let specific = match &self.executor {
            Executor::Http(http) => http.timeout.as_deref(),
            Executor::Command(command) => command.timeout.as_deref(),
            Executor::Mcp(mcp) => mcp.spec.timeout.as_deref(),
            Executor::Builtin(_) | Executor::Flow(_) | Executor::Client => None,
        };
        limits.tool_timeout_or(specific)
    }
}

impl Limits {
    /// A tool's own `timeout` text (already checked by the loader), else `tool_timeout`.
    #[must_use]
    pub fn tool_timeout_or(&self, own: Option<&str>) -> Duration {
        own.and_then(parse_duration).unwrap_or(self.tool_timeout)
    }
}

/// One tool parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The parameter's name.
    pub name: String,
    /// What it means (also inside `schema`).
    pub description: Option<String>,
    /// Whether the call needs it.
    pub required: bool,
    /// The question for the user when it is missing.
    pub ask: Option<String>,
    /// The slot it is prefilled from and remembered into.
    pub slot: Option<String>,
    /// Only a value the user stated is accepted from the model.
    pub grounded: bool,
    /// What the user is asked when the model's value fails the schema (`invalid`).
    pub invalid: Option<String>,
    /// How many times the user may be asked for it in one pending call (`max_asks`).
    pub max_asks: Option<u32>,
    /// What happens once `max_asks` is used up.
    pub on_exhausted: Option<OnExhausted>,
    /// The JSON Schema the model sees, `$ref` inlined, Clarion's keys removed.
    pub schema: Value,
}

/// Parses a duration such as `"30s"`, `"500ms"`, `"2m"` or `"1h"`.
#[must_use]
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// A duration as a flow author writes it: `30s`, or `500ms` when not whole seconds.
#[must_use]
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("5d"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration(&format!("{}h", u64::MAX)), None);
    }
}
