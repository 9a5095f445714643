//! The flow file as written: plain serde types, one per TOML table.
//!
//! These types are the single source of truth for the format. `schemars` turns them (and
//! their doc comments) into `schemas/flow.schema.json`, which editors use for completion and
//! which the loader itself validates every file against, so the editor and
//! `clarion validate` can never disagree about what a key means. Semantic rules that a JSON
//! Schema cannot express (exactly one executor, names in templates, slot types) live in
//! `flow::check`.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::keywords::SchemaKeywords;

/// A Clarion flow: one assistant, its tools, and the facts it remembers.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Clarion flow")]
pub struct FlowFile {
    /// What this flow is.
    pub flow: FlowMeta,
    /// The model and how it should behave.
    pub assistant: AssistantSpec,
    /// Bounds on one run.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Which model server to talk to (CLI flags override it; without it, the environment's
    /// `OPENAI_BASE_URL` / `OPENAI_API_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderSpec>,
    /// Typed facts remembered across turns, by name.
    #[serde(default)]
    pub slots: IndexMap<String, SlotSpec>,
    /// The tools the model may call, by name (the name the model sees).
    #[serde(default)]
    pub tools: IndexMap<String, ToolSpec>,
    /// Model Context Protocol servers whose tools the flow uses, by name (`mcp = "NAME"`
    /// on a tool).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub mcp: IndexMap<String, McpServerSpec>,
}

/// `[mcp.NAME]`: a Model Context Protocol server, started as a local program (`command`)
/// or reached over streamable HTTP (`url`). What its tools take comes from the lock file
/// next to the flow (`clarion mcp lock`), reviewed like code.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerSpec {
    /// A stdio server: the program and its arguments, e.g. `["uvx", "mcp-server-time"]`.
    /// Never run through a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub command: Option<Vec<String>>,
    /// A streamable HTTP server: its endpoint, e.g. `http://127.0.0.1:9000/mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// A stdio server's working directory, relative to the flow file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Environment variables: a stdio server gets these and nothing else; an HTTP
    /// server's `headers` may read them as `env.NAME` (for secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// An HTTP server's request headers: templates over `env`, e.g.
    /// `Authorization = "Bearer {{ env.TOKEN }}"`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub headers: IndexMap<String, String>,
    /// How long one call of this server's tools may take, overriding
    /// `limits.tool_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub timeout: Option<String>,
    /// An HTTP server on a private, loopback or link-local address is refused unless this
    /// is `true` (the SSRF policy of HTTP tools).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private_network: bool,
    /// Import these tools of the server under their own names, as if each had a
    /// `[tools.NAME]` table with `mcp = "…"` (an allow-list: nothing else is imported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}

/// `[flow]`: identification.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowMeta {
    /// A short, unique name, e.g. `personal-finance`.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// One sentence about what the assistant does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The flow's own version, free-form (e.g. `1.2.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `[assistant]`: the model and its instructions.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistantSpec {
    /// The model name sent to the provider, e.g. `gpt-4.1-mini` or `qwen2.5-coder:1.5b`.
    #[schemars(length(min = 1))]
    pub model: String,
    /// The system instructions: a MiniJinja template over `slots` and `metadata`, rendered
    /// before every model request.
    pub instructions: String,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub top_p: Option<f64>,
    /// Upper bound on tokens the model may produce per turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_output_tokens: Option<u32>,
    /// Seed for providers that support deterministic sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Whether the model may call several tools in one turn (default: provider default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Whether the model must, may or must not call tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

/// `tool_choice` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must call a tool.
    Required,
    /// The model must not call tools.
    None,
}

/// `[provider]`: the model server. The key itself never appears in a flow: `api_key_env`
/// names the environment variable that holds it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// The protocol: `chat-completions` (default; OpenAI, Azure, Ollama, vLLM, llama.cpp…)
    /// or `responses` (the OpenAI Responses API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ProviderApi>,
    /// The server's base URL, e.g. `http://127.0.0.1:11434/v1`. For Azure, the resource
    /// endpoint, e.g. `https://NAME.openai.azure.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub base_url: Option<String>,
    /// The environment variable holding the API key (default `OPENAI_API_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub api_key_env: Option<String>,
    /// Azure OpenAI: the deployment and API version (the key goes in an `api-key` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSpec>,
    /// Stream responses (default `true`: text appears as it is generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// The role of injected context: `system` (default) or `user` (for local models whose
    /// chat template accepts a system message only at the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_role: Option<ContextRoleSpec>,
    /// Send `max_tokens` instead of `max_completion_tokens` (older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_max_tokens: Option<bool>,
    /// Total time for one non-streamed model request, e.g. `"120s"` (default `"120s"`;
    /// `"30m"` for a server on this machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub timeout: Option<String>,
    /// Streamed requests: the longest silence before the response starts or between two
    /// chunks, e.g. `"60s"` (default `"60s"`; `"5m"` for a server on this machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub idle_timeout: Option<String>,
    /// Streamed requests: the longest a whole stream may take, e.g. `"10m"` (default
    /// `"10m"`; `"30m"` for a server on this machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub stream_timeout: Option<String>,
    /// Retries after 429, 5xx, timeouts and connection failures (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub max_retries: Option<u32>,
}

/// `provider.api` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderApi {
    /// `POST /chat/completions`.
    ChatCompletions,
    /// `POST /responses`.
    Responses,
}

/// `provider.context_role` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContextRoleSpec {
    /// A system message.
    System,
    /// A user message starting with `[context]`.
    User,
}

/// `[provider.azure]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureSpec {
    /// The deployment name.
    #[schemars(length(min = 1))]
    pub deployment: String,
    /// The API version, e.g. `2024-10-21`.
    #[schemars(length(min = 1))]
    pub api_version: String,
}

/// `[limits]`: bounds on one run.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Model requests allowed in one run before it ends as `incomplete`.
    #[serde(default = "default_max_steps")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_steps: u32,
    /// How long one tool call may take, e.g. `"30s"`, `"500ms"`, `"2m"`.
    #[serde(default = "default_tool_timeout")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub tool_timeout: String,
    /// Tool failures in a row after which the run fails.
    #[serde(default = "default_max_consecutive_failures")]
    #[schemars(range(min = 1, max = 100))]
    pub max_consecutive_failures: u32,
    /// How long a run may wait in `requires_action` for client tool outputs.
    #[serde(default = "default_requires_action_timeout")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub requires_action_timeout: String,
    /// The tokens one model request may hold (instructions and history), counted as
    /// `tokenizer` says: the oldest turns are left out of the request until it fits.
    /// Unset: no token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_context_tokens: Option<u32>,
    /// Which history a request sends: `"auto"` (everything that fits
    /// `max_context_tokens`) or `{ last_messages = N }` (at most the last N messages, in
    /// whole turns, and within `max_context_tokens` if set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<TruncationSpec>,
    /// How `max_context_tokens` counts: `"auto"` (OpenAI's tokenizer for the model's
    /// family when known, the estimate otherwise), `"estimate"` (bytes over four), or a
    /// named tokenizer, `"o200k_base"` or `"cl100k_base"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerSpec>,
}

/// `limits.tokenizer`: how the tokens of a request are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum TokenizerSpec {
    /// OpenAI's tokenizer for the model's family when the model name says it, the
    /// estimate otherwise.
    #[serde(rename = "auto")]
    Auto,
    /// A text's length in bytes over four, for any model.
    #[serde(rename = "estimate")]
    Estimate,
    /// OpenAI's `o200k_base` (GPT-4o, GPT-4.1, GPT-5, o1, o3, o4).
    #[serde(rename = "o200k_base")]
    O200kBase,
    /// OpenAI's `cl100k_base` (GPT-4, GPT-3.5 Turbo).
    #[serde(rename = "cl100k_base")]
    Cl100kBase,
}

/// `limits.truncation`: which part of a long history a model request sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TruncationSpec {
    /// `"auto"`: the latest turns that fit `max_context_tokens`.
    Auto(TruncationAuto),
    /// `{ last_messages = N }`: at most the last N messages, in whole turns.
    LastMessages(LastMessagesSpec),
}

/// The one word `truncation` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TruncationAuto {
    /// The latest turns that fit `max_context_tokens`.
    Auto,
}

/// `truncation = { last_messages = N }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LastMessagesSpec {
    /// How many of the latest messages a request may send (the latest turn is always
    /// sent whole).
    #[schemars(range(min = 1))]
    pub last_messages: u32,
}

fn default_max_steps() -> u32 {
    10
}
fn default_tool_timeout() -> String {
    "30s".to_owned()
}
fn default_max_consecutive_failures() -> u32 {
    3
}
fn default_requires_action_timeout() -> String {
    "10m".to_owned()
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_steps: default_max_steps(),
            tool_timeout: default_tool_timeout(),
            max_consecutive_failures: default_max_consecutive_failures(),
            requires_action_timeout: default_requires_action_timeout(),
            max_context_tokens: None,
            truncation: None,
            tokenizer: None,
        }
    }
}

/// `[slots.NAME]`: a typed fact remembered across turns. Any JSON Schema keyword is allowed
/// besides `description`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SlotSpec {
    /// What the fact is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema keywords that constrain the value.
    #[serde(flatten)]
    pub schema: SchemaKeywords,
}

/// `[tools.NAME]`: a tool the model may call.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// What the tool does; the model decides when to call it from this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Run a built-in Rust function, e.g. `finance.savings_timeline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    /// Call an HTTP API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,
    /// Run a local program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandSpec>,
    /// The embedding application runs the tool; the run stops in `requires_action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<bool>,
    /// A tool of the MCP server declared as `[mcp.NAME]`; its description and parameters
    /// come from the server (through the lock file), and the flow may narrow them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<String>,
    /// The tool's name on the MCP server, when it differs from this tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_tool: Option<String>,
    /// Provider strict mode for this tool's schema: `true` demands it, `false` turns it
    /// off; unset uses it whenever the schemas allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Offer this tool to the model only once each of these tools has returned a result
    /// before the user's latest message: the user has seen what they returned (e.g.
    /// `follows = ["search_flights"]` on `book_flight`). A call made earlier is refused
    /// with a `not_offered` output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follows: Vec<String>,
    /// Ask the user to confirm before the call runs: the question, a template over `args`
    /// and `slots` (e.g. `"Transfer ${{ args.amount }} to {{ args.to_account }}?"`). The
    /// user's answer confirms, declines or changes the call; nothing runs until they
    /// confirm. Server-side tools only (the app confirms its own client tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    /// Hand the conversation to another flow when the model calls this tool: the flow's
    /// name (its file is `NAME.toml` beside this one) or a path ending in `.toml`,
    /// relative to this file. From the next model request on, that flow's instructions,
    /// tools and slots run the thread; with `returns` it hands the thread back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub flow: Option<String>,
    /// The other flow's slots filled as it takes over: its slot's name → an expression
    /// over this call's `args` and this flow's `slots`, e.g. `destination = "args.city"`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub with: IndexMap<String, String>,
    /// Come back when the other flow is done: this flow's slot → the other flow's slot
    /// whose value fills it. The other flow hands the thread back at the end of the first
    /// run after which it has every slot named here. Unset: the handoff is for good.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub returns: IndexMap<String, String>,
    /// The tool's parameters, in the order questions are asked.
    #[serde(default)]
    pub params: IndexMap<String, ParamSpec>,
    /// Rules evaluated after a successful call, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<AfterRule>,
    /// What to tell the model when the tool fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

/// `[tools.NAME.params.PARAM]`: one parameter. Any JSON Schema keyword is allowed besides
/// the Clarion keys below; they never reach the model except `description`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ParamSpec {
    /// What the parameter means; the model reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether the call needs it (default `true`). An array here is JSON Schema's
    /// `required` for an object-typed parameter, and the parameter itself stays required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<Required>,
    /// The question put to the user when the parameter is missing (a template over `args`
    /// and `slots`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<String>,
    /// Prefill from, and remember into, this slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Accept only a value the user stated in the thread; a value the model made up is
    /// treated as not given (filled from a slot, or asked for). Numbers and strings only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounded: Option<bool>,
    /// What the user is asked when the model passed a value that fails the parameter's
    /// schema: the value is dropped and this is asked instead of the model reading
    /// `invalid_arguments` (a template over `args`, `slots` and `error`: `error.keyword`,
    /// `error.limit`, `error.value`). Required parameters only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// How many times the user may be asked for this parameter while one call waits for
    /// it (its `ask` and its `invalid` message alike); the next time `on_exhausted`
    /// applies. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_asks: Option<u32>,
    /// What happens when `max_asks` is used up. Unset: the call is answered with an
    /// `asks_exhausted` error the model reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_exhausted: Option<OnExhausted>,
    /// Take the whole schema from a JSON file, relative to the flow file.
    #[serde(default, rename = "$ref", skip_serializing_if = "Option::is_none")]
    pub schema_ref: Option<String>,
    /// The JSON Schema keywords that constrain the value.
    #[serde(flatten)]
    pub schema: SchemaKeywords,
}

/// `on_exhausted`: what happens once a parameter's `max_asks` is used up. Either way the
/// call is answered with an `asks_exhausted` error output, so every call keeps exactly one
/// output; this adds what comes next.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OnExhausted {
    /// Context for the model (a template over `args` and `slots`); the run goes on and the
    /// model answers the user.
    Inject(String),
    /// A message for the user (a template over `args` and `slots`); the run ends
    /// `incomplete` with the reason `asks_exhausted`.
    End(String),
    /// Hand the conversation to another flow through this flow's tool of that name (a
    /// tool with `flow = "…"`); that flow answers the user.
    HandOff(String),
}

/// A parameter's `required`: Clarion's flag, or JSON Schema's list for object parameters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Required {
    /// Whether the parameter is required.
    Flag(bool),
    /// Required properties of an object-typed parameter.
    Properties(Vec<String>),
}

/// `[[tools.NAME.after]]`: evaluated after the tool returns, in order.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AfterRule {
    /// A MiniJinja expression over `args`, `result` and `slots`; the rule applies when it
    /// is true. Unset: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// A template rendered into a context message the model sees next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject: Option<String>,
    /// Slot assignments: slot name → expression over `args`, `result` and `slots`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub set: IndexMap<String, String>,
}

/// `[tools.NAME.on_error]`: context for the model when the tool fails.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnError {
    /// A template over `args`, `error` (`error.kind`, `error.message`) and `slots`.
    pub inject: String,
}

/// `[tools.NAME.http]`: call an HTTP API.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// HTTP method.
    #[serde(default)]
    pub method: HttpMethod,
    /// URL template over `args` and `env`; values in path segments are percent-encoded.
    pub url: String,
    /// Header templates over `args` and `env`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub headers: IndexMap<String, String>,
    /// Where the arguments go: `query` (default for GET and DELETE), `json` (default for
    /// the others), or `none` (only the URL template uses them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
    /// A JSON pointer into the response that becomes the tool's result, e.g. `/data/0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(/.*)?$"))]
    pub result_pointer: Option<String>,
    /// Timeout for this tool, overriding `limits.tool_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub timeout: Option<String>,
    /// Largest response body accepted, in bytes (default 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_response_bytes: Option<u64>,
    /// Retries after a failure; only idempotent methods are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10))]
    pub retries: Option<u32>,
    /// Environment variables the templates may read as `env.NAME` (for secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Allow private, loopback and link-local addresses (refused by default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private_network: bool,
}

/// HTTP methods an HTTP tool may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET.
    #[default]
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

/// Where an HTTP tool puts its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HttpBody {
    /// As query parameters.
    Query,
    /// As a JSON object body.
    Json,
    /// Nowhere but the URL template.
    None,
}

/// `[tools.NAME.command]`: run a local program. Arguments arrive as JSON on stdin; the
/// result is the JSON it prints on stdout.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The program and its arguments. Never run through a shell.
    #[schemars(length(min = 1))]
    pub argv: Vec<String>,
    /// Working directory, relative to the flow file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Timeout for this tool, overriding `limits.tool_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub timeout: Option<String>,
    /// Largest stdout accepted, in bytes (default 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_output_bytes: Option<u64>,
    /// Environment variables passed through; everything else is cleared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
}
