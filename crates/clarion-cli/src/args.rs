//! Command-line arguments (clap derive). Help texts carry an example for every command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Clarion: tool-using assistants described in one TOML file.
#[derive(Debug, Parser)]
#[command(name = "clarion", version, about, long_about = None)]
#[command(
    after_help = "Examples:\n  clarion validate flows/\n  clarion chat flows/personal-finance.toml\n  clarion graph flows/personal-finance.toml\n\n\
Exit codes: 0 success, 1 problems found, 2 usage or configuration error.\n\
Docs: docs/flow-format.md (the flow file), docs/diagnostics.md (every diagnostic code),\n\
docs/testing.md (scenarios and `clarion test`)."
)]
pub(crate) struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
    /// The log on stderr: `text` for people, `json` (one object per line) for collectors.
    /// Levels come from `RUST_LOG` (default `info` for `serve`, `warn` otherwise).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Also log message content (tool arguments and results, provider and tool error
    /// text), with secrets redacted. Off by default: logs then hold ids, names and codes.
    #[arg(long, global = true)]
    pub log_content: bool,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check flow files and report every problem, rustc-style.
    #[command(
        after_help = "Examples:\n  clarion validate flows/\n  clarion validate flows/personal-finance.toml --format json\n  clarion validate flows/ --deny-warnings"
    )]
    Validate(ValidateArgs),
    /// Print the flow file's JSON Schema (draft-07), for editors and tools.
    #[command(
        after_help = "Examples:\n  clarion schema > schemas/flow.schema.json\n  clarion schema --scenario > schemas/scenario.schema.json"
    )]
    Schema(SchemaArgs),
    /// Print the assistant definition for a model provider, as JSON.
    #[command(
        after_help = "Examples:\n  clarion export flows/personal-finance.toml --format chat-completions\n  clarion export flows/personal-finance.toml --format assistants --slot risk_tolerance=low"
    )]
    Export(ExportArgs),
    /// Play conversation scenarios and compare their transcripts with snapshots.
    #[command(
        after_help = "Examples:\n  clarion test\n  clarion test flows/personal-finance -k parallel\n  clarion test --review\n  CI=true clarion test --junit target/scenarios.xml\n  clarion test --live --record -k booking\n\nNew and changed transcripts are written as .snap.new beside the .snap (never when CI is set).\nDocs: docs/testing.md."
    )]
    Test(TestArgs),
    /// Play scenarios live against a real model many times: pass rates per scenario and per
    /// expectation, with confidence intervals, as JSON, text, HTML and `JUnit`.
    #[command(
        after_help = "Examples:\n  clarion eval flows/personal-finance/evals --samples 10 --report eval.html\n  clarion eval -k readme --samples 20 --min-pass-rate 0.9 --junit target/eval.xml\n  OPENAI_API_KEY=sk-… OPENAI_MODEL=gpt-4.1-mini clarion eval --out gpt.json\n  clarion eval --compare local.json gpt.json\n  clarion eval --replay eval-results.json   # re-judge recorded samples offline\n\nScenarios come from folders named `evals` or `scenarios`; their scripted model steps are ignored.\nThe model is --base-url/--model, the flow's [provider], OPENAI_BASE_URL / OPENAI_API_KEY,\nor else the local model of `clarion demo`. Docs: docs/testing.md."
    )]
    Eval(EvalArgs),
    /// Talk to a flow: a conversation in the terminal (or over pipes), stored and resumable.
    #[command(
        after_help = "Examples:\n  clarion chat flows/personal-finance.toml\n  clarion chat flows/personal-finance.toml --thread thread_3f…  # resume\n  echo 'How long to save $12,000 at $1,000 a month?' | clarion chat flows/personal-finance.toml\n  clarion chat flows/travel-booking.toml --base-url http://127.0.0.1:11434/v1 --model qwen2.5:1.5b\n\nIn the conversation: /slots, /metadata, /reset, /transcript FILE, /save NAME (the conversation as a scenario), /help; Ctrl-C cancels a run, Ctrl-D exits.\nThe provider comes from --base-url/--api/--model, then the flow's [provider], then OPENAI_BASE_URL and OPENAI_API_KEY."
    )]
    Chat(ChatArgs),
    /// List, show, delete and export the conversations `clarion chat` stored.
    #[command(
        after_help = "Examples:\n  clarion threads list\n  clarion threads show thread_3f… --format json\n  clarion threads export thread_3f… --output conversation.json\n  clarion threads delete thread_3f… --store /var/lib/clarion/threads.db"
    )]
    Threads(ThreadsArgs),
    /// Draw a flow as a diagram: tools, parameters, questions, slots, chaining and rules.
    #[command(
        after_help = "Examples:\n  clarion graph flows/personal-finance.toml\n  clarion graph flows/travel-booking.toml --format dot | dot -Tsvg > travel.svg\n\nMermaid renders in GitHub and GitLab Markdown (```mermaid blocks); dot needs Graphviz."
    )]
    Graph(GraphArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  clarion completions bash > ~/.local/share/bash-completion/completions/clarion\n  clarion completions zsh > ~/.zfunc/_clarion\n  clarion completions fish > ~/.config/fish/completions/clarion.fish"
    )]
    Completions(CompletionsArgs),
    /// Run the language server on stdin and stdout: diagnostics as you type, completion,
    /// hover, go to definition, references, rename and quick fixes for flow and scenario
    /// files.
    #[command(
        after_help = "Examples:\n  clarion lsp\n  clarion lsp --stdio   # what VS Code's language client passes\n\nAn editor starts it; it speaks the Language Server Protocol on stdin and stdout.\nSet-up for VS Code, Neovim, Helix and Zed: docs/editors.md."
    )]
    Lsp(LspArgs),
    /// Start a conversation with the built-in example flow: no flow file, account or key.
    #[command(
        after_help = "Examples:\n  clarion demo\n  OPENAI_API_KEY=sk-… clarion demo\n  OPENAI_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_MODEL=qwen2.5:1.5b clarion demo\n\nThe flow is flows/personal-finance.toml, built in. The model is the provider in\nOPENAI_BASE_URL / OPENAI_API_KEY (and OPENAI_MODEL) when set; otherwise a local model\n(qwen2.5-coder-1.5b-instruct on llama.cpp, on 127.0.0.1:8089): the first run builds and\ndownloads it into ~/.cache/clarion (10 to 30 minutes, progress shown), later runs start it in seconds.\nCLARION_LOCAL_MODEL_SCRIPT replaces the built-in set-up script."
    )]
    Demo(DemoArgs),
    /// Serve flows over an Assistants-API-compatible HTTP API (each flow is an assistant).
    #[command(
        after_help = "Examples:\n  clarion serve flows/travel-booking.toml flows/personal-finance.toml\n  CLARION_API_KEYS=sk-one,sk-two clarion serve flows/ --bind 0.0.0.0:8080 --api-key-env CLARION_API_KEYS\n\nClients use base_url http://ADDR/v1 and assistant ids asst_<flow name>. Docs: docs/serve.md."
    )]
    Serve(ServeArgs),
    /// Try flows in the browser: chat, watch each step's calls, slots and context, and save
    /// the conversation as a scenario (a playground on loopback).
    #[command(
        after_help = "Examples:\n  clarion play flows/personal-finance.toml\n  clarion play flows/ --bind 127.0.0.1:8765\n  clarion play flows/travel-booking.toml --base-url http://127.0.0.1:11434/v1 --model qwen2.5:1.5b\n\nPrints the page's URL (`playground on http://ADDR/`). Editing a flow file reloads it in the page.\nThe provider comes from --base-url/--api/--model, then the flow's [provider], then OPENAI_BASE_URL and OPENAI_API_KEY.\nDocs: docs/playground.md."
    )]
    Play(PlayArgs),
    /// Model Context Protocol servers: write the lock file of their tools.
    #[command(
        after_help = "Examples:\n  clarion mcp lock flows/time.toml\n  clarion mcp lock flows/\n\nStarts each [mcp] server of the flow, lists its tools and writes FLOW.mcp.lock next to it:\nreview the diff and check it in. Docs: docs/flow-format.md (MCP servers)."
    )]
    Mcp(McpArgs),
}

/// `clarion play`.
#[derive(Debug, Args)]
pub(crate) struct PlayArgs {
    /// Flow files, or directories to search for `*.toml` flow files.
    #[arg(required = true, value_name = "FLOWS")]
    pub flows: Vec<PathBuf>,
    /// The loopback address to listen on (port 0 picks a free one). Other addresses are
    /// refused: the playground has no keys and writes scenario files.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8765")]
    pub bind: String,
    /// The thread store (a SQLite file), where conversations are kept and reopened from.
    #[arg(long, value_name = "PATH", default_value = ".clarion/threads.db")]
    pub store: PathBuf,
    /// The provider's base URL (overrides the flows' `[provider]` and `OPENAI_BASE_URL`).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// The protocol.
    #[arg(long, value_enum)]
    pub api: Option<ApiArg>,
    /// The model name (overrides every flow's `assistant.model`).
    #[arg(long)]
    pub model: Option<String>,
}

/// `clarion mcp`.
#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: McpCommand,
}

/// `clarion mcp …`.
#[derive(Debug, Subcommand)]
pub(crate) enum McpCommand {
    /// Start each `[mcp]` server, list its tools and write the flow's lock file.
    #[command(after_help = "Examples:\n  clarion mcp lock flows/time.toml")]
    Lock(McpLockArgs),
}

/// `clarion mcp lock`.
#[derive(Debug, Args)]
pub(crate) struct McpLockArgs {
    /// Flow files, or directories to search for `*.toml` flow files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `clarion demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Continue a stored thread instead of starting a new one.
    #[arg(long, value_name = "ID")]
    pub thread: Option<String>,
    /// The thread store: a SQLite file, a `postgres://` URL, or `:memory:` for a
    /// conversation kept nowhere.
    #[arg(long, value_name = "PATH", default_value = ".clarion/threads.db")]
    pub store: PathBuf,
    /// The model name (default: `OPENAI_MODEL`, else the flow's, or the local model's).
    #[arg(long)]
    pub model: Option<String>,
    /// Show tool arguments, results and injected context in full.
    #[arg(long, short)]
    pub verbose: bool,
}

/// `clarion threads`.
#[derive(Debug, Args)]
pub(crate) struct ThreadsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ThreadsCommand,
    /// The thread store (a SQLite file, or a `postgres://` URL), as `clarion chat --store`.
    #[arg(
        long,
        value_name = "PATH",
        default_value = ".clarion/threads.db",
        global = true
    )]
    pub store: PathBuf,
}

/// `clarion threads …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ThreadsCommand {
    /// Every stored thread, newest first: id, flow, messages, last activity, last run.
    #[command(
        after_help = "Examples:\n  clarion threads list\n  clarion threads list --format json | jq '.[].id'"
    )]
    List(ThreadsListArgs),
    /// One thread's conversation, as a transcript (or the whole thread as JSON).
    #[command(
        after_help = "Examples:\n  clarion threads show thread_3f…\n  clarion threads show thread_3f… --format json"
    )]
    Show(ThreadsShowArgs),
    /// Delete a thread and its runs.
    #[command(
        after_help = "Examples:\n  clarion threads delete thread_3f…\n  clarion threads delete thread_3f… --force  # even while a run holds it"
    )]
    Delete(ThreadsDeleteArgs),
    /// Write a thread to a file (or stdout): JSON with its runs, or the transcript.
    #[command(
        after_help = "Examples:\n  clarion threads export thread_3f… --output conversation.json\n  clarion threads export thread_3f… --format transcript --output conversation.txt"
    )]
    Export(ThreadsExportArgs),
}

/// `--format` of `clarion threads list` and `show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ListFormat {
    /// For people: a table, or a transcript.
    Human,
    /// JSON.
    Json,
}

/// `clarion threads list`.
#[derive(Debug, Args)]
pub(crate) struct ThreadsListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub format: ListFormat,
    /// At most N threads (the newest).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// `clarion threads show`.
#[derive(Debug, Args)]
pub(crate) struct ThreadsShowArgs {
    /// The thread's id (`clarion threads list` shows them).
    #[arg(value_name = "ID")]
    pub id: String,
    /// Output format: a transcript, or the thread and its runs as JSON.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub format: ListFormat,
}

/// `clarion threads delete`.
#[derive(Debug, Args)]
pub(crate) struct ThreadsDeleteArgs {
    /// The thread's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Delete it even if a run holds it (a run left by a process that died).
    #[arg(long)]
    pub force: bool,
}

/// `clarion threads export`.
#[derive(Debug, Args)]
pub(crate) struct ThreadsExportArgs {
    /// The thread's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The file to write (stdout if not given).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// What to write.
    #[arg(long, value_enum, default_value_t = ExportThreadFormat::Json)]
    pub format: ExportThreadFormat,
}

/// `--format` of `clarion threads export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportThreadFormat {
    /// The thread (messages, slots, metadata) and its runs, as pretty JSON.
    Json,
    /// The conversation as a transcript, like `clarion test` snapshots.
    Transcript,
}

/// `clarion graph`.
#[derive(Debug, Args)]
pub(crate) struct GraphArgs {
    /// The flow file.
    #[arg(value_name = "FLOW")]
    pub flow: PathBuf,
    /// Diagram language.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
}

/// `--format` of `clarion graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GraphFormat {
    /// A Mermaid flowchart (renders in GitHub and GitLab Markdown).
    Mermaid,
    /// Graphviz dot.
    Dot,
}

/// `clarion completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `clarion lsp`.
#[derive(Debug, Args)]
pub(crate) struct LspArgs {
    /// Speak the protocol on stdin and stdout (the only transport, and the default;
    /// accepted because language clients pass it).
    #[arg(long)]
    pub stdio: bool,
}

/// `clarion serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Flow files, or directories to search for `*.toml` flow files.
    #[arg(required = true, value_name = "FLOWS")]
    pub flows: Vec<PathBuf>,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// The thread store: a SQLite file, or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`
    /// to share threads with other replicas of the server.
    #[arg(long, value_name = "PATH|URL", default_value = ".clarion/threads.db")]
    pub store: PathBuf,
    /// How long a run's lease lasts, in seconds. A server that dies mid-run has its runs
    /// taken over by another process on the same store (PostgreSQL or SQLite file) within
    /// about this long.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub run_lease: f64,
    /// Require bearer API keys, read from this environment variable (comma-separated).
    /// Without it the server is open: use it on loopback only.
    #[arg(long, value_name = "NAME")]
    pub api_key_env: Option<String>,
    /// Require bearer API keys listed in this file: one per line, the key or `sha256:` and
    /// its hex digest (`printf %s "$KEY" | sha256sum`); `#` comments. Adds to
    /// `--api-key-env`.
    #[arg(long, value_name = "PATH")]
    pub api_keys_file: Option<PathBuf>,
    /// The largest request body accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,
    /// How long a request may take, body upload included, in seconds (408 beyond).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub request_timeout: u64,
    /// Requests per second allowed per API key (all callers together on an open server);
    /// 0 turns the limit off.
    #[arg(long, value_name = "N", default_value_t = 0.0)]
    pub rate_limit: f64,
    /// The provider's base URL (overrides the flows' `[provider]` and `OPENAI_BASE_URL`).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// The protocol.
    #[arg(long, value_enum)]
    pub api: Option<ApiArg>,
    /// The model name (overrides every flow's `assistant.model`).
    #[arg(long)]
    pub model: Option<String>,
    /// On SIGTERM or Ctrl-C: how long, in seconds, requests, streams and runs in flight
    /// may take to finish before the process exits (runs still going are then marked
    /// `interrupted` by the next start).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Send an SSE comment (`: keep-alive`) on a streamed run after this many seconds
    /// without an event, so proxies do not drop streams waiting on a slow model.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub sse_keep_alive: u64,
    /// Serve `/metrics` on this address instead of on `--bind` (to keep it off a public
    /// listener).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

/// `clarion chat`.
#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// The flow file.
    #[arg(value_name = "FLOW")]
    pub flow: PathBuf,
    /// Continue a stored thread instead of starting a new one.
    #[arg(long, value_name = "ID")]
    pub thread: Option<String>,
    /// The thread store: a SQLite file, a `postgres://` URL, or `:memory:` for a
    /// conversation kept nowhere.
    #[arg(long, value_name = "PATH", default_value = ".clarion/threads.db")]
    pub store: PathBuf,
    /// The provider's base URL (overrides the flow's `[provider]` and `OPENAI_BASE_URL`).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// The protocol.
    #[arg(long, value_enum)]
    pub api: Option<ApiArg>,
    /// The model name (overrides the flow's `assistant.model`).
    #[arg(long)]
    pub model: Option<String>,
    /// Wait for whole responses instead of streaming them.
    #[arg(long)]
    pub no_stream: bool,
    /// Show tool arguments, results and injected context in full.
    #[arg(long, short)]
    pub verbose: bool,
}

/// `--api` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    /// OpenAI Chat Completions and compatible servers.
    ChatCompletions,
    /// OpenAI Responses API.
    Responses,
}

impl From<ApiArg> for clarion_flow::model::ProviderApi {
    fn from(api: ApiArg) -> Self {
        match api {
            ApiArg::ChatCompletions => Self::ChatCompletions,
            ApiArg::Responses => Self::Responses,
        }
    }
}

/// `clarion validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Flow files, or directories to search for `*.toml` flow files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format: `human` code frames, or `json` (one object per diagnostic per line).
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    pub format: DiagnosticFormat,
    /// Treat warnings as errors (exit 1 when there are any).
    #[arg(long)]
    pub deny_warnings: bool,
    /// Start each `[mcp]` server and check the flow against what it lists now (drift from
    /// the lock file is an error).
    #[arg(long)]
    pub connect: bool,
}

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DiagnosticFormat {
    /// Code frames with a caret under the problem.
    Human,
    /// JSON Lines: one object per diagnostic (see docs/diagnostics.md for the shape).
    Json,
}

/// `clarion schema`.
#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// Print the scenario file's schema instead of the flow file's.
    #[arg(long)]
    pub scenario: bool,
}

/// `clarion test`.
#[derive(Debug, Args)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "each is an independent command-line flag"
)]
pub(crate) struct TestArgs {
    /// Scenario files, or folders to search for `scenarios/*.toml` [default: flows/].
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Only scenarios whose file name or path contains NAME (repeatable: any of them).
    #[arg(short = 'k', long = "filter", value_name = "NAME")]
    pub filter: Vec<String>,
    /// Write new and changed transcripts to their `.snap` files: they pass.
    #[arg(long, conflicts_with = "review")]
    pub accept: bool,
    /// Show each new or changed transcript and ask: accept, reject or skip.
    #[arg(long)]
    pub review: bool,
    /// Also write a `JUnit` XML report to FILE (for CI systems).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Play the user's turns against the flow's real provider instead of the script; only
    /// expectations are checked (transcripts are printed, not compared).
    #[arg(long, conflicts_with_all = ["replay", "accept", "review"])]
    pub live: bool,
    /// With --live: record every model exchange to `scenarios/recordings/NAME.jsonl`.
    #[arg(long, requires = "live")]
    pub record: bool,
    /// Play the recordings made with `--live --record`, offline; only expectations are
    /// checked.
    #[arg(long, conflicts_with_all = ["accept", "review"])]
    pub replay: bool,
    /// Scenarios played at once [default: all; with --live, 4: a model server on a small
    /// machine answers one request at a time].
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Report what the scenarios exercised of each flow (tools called, `ask`s asked, slots
    /// set and read, `after` rules' `when` true and false, `on_error`): a percentage per
    /// flow and every uncovered element at its `file:line`.
    #[arg(long)]
    pub coverage: bool,
    /// Also write the coverage report as `json` or `lcov` (implies --coverage).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub coverage_format: Option<CoverageFormat>,
    /// Where --coverage-format writes [default: `lcov.info`, or `coverage.json`].
    #[arg(long, value_name = "FILE", requires = "coverage_format")]
    pub coverage_output: Option<PathBuf>,
    /// Fail (exit 1) when any flow's coverage is below N percent (implies --coverage).
    #[arg(long, value_name = "N", value_parser = percentage)]
    pub min_coverage: Option<f64>,
}

/// Formats of `clarion test --coverage-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CoverageFormat {
    /// Totals and every element with its line and hits, per flow.
    Json,
    /// An LCOV tracefile: lines (and `when` branches) of the flow files.
    Lcov,
}

impl CoverageFormat {
    /// The file written when --coverage-output is not given.
    #[must_use]
    pub(crate) fn default_output(self) -> &'static str {
        match self {
            Self::Json => "coverage.json",
            Self::Lcov => "lcov.info",
        }
    }
}

/// A percentage from 0 to 100.
fn percentage(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(n) if (0.0..=100.0).contains(&n) => Ok(n),
        _ => Err(format!("`{text}` is not a percentage from 0 to 100")),
    }
}

/// `clarion eval`.
#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// Scenario files, or folders to search for `evals/*.toml` and `scenarios/*.toml`
    /// [default: flows/].
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Only scenarios whose file name or path contains NAME (repeatable: any of them).
    #[arg(short = 'k', long = "filter", value_name = "NAME")]
    pub filter: Vec<String>,
    /// Plays of each scenario.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub samples: u32,
    /// Conversations played at once (a local model server answers one request at a time).
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: u32,
    /// Write the results (every sample, and the aggregates) as JSON to FILE.
    #[arg(long, value_name = "FILE", default_value = "eval-results.json")]
    pub out: PathBuf,
    /// Also write a self-contained HTML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Also write a `JUnit` XML report to FILE (a scenario fails below --min-pass-rate).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Exit 1 when a scenario's pass rate is below RATE (a fraction, e.g. 0.9).
    #[arg(long, value_name = "RATE", value_parser = pass_rate)]
    pub min_pass_rate: Option<f64>,
    /// Keep every sample's model exchanges beside the results (`FILE.recordings/`), for
    /// `--replay`.
    #[arg(long, conflicts_with = "replay")]
    pub record: bool,
    /// Re-judge the samples recorded in a results file, offline (after editing the
    /// expectations, say); writes new results to --out.
    #[arg(long, value_name = "RESULTS", conflicts_with_all = ["paths", "filter", "compare"])]
    pub replay: Option<PathBuf>,
    /// Compare two results files: what got better or worse, with significance; exits 1
    /// when a scenario got significantly worse.
    #[arg(long, num_args = 2, value_names = ["BEFORE", "AFTER"], conflicts_with_all = ["paths", "filter", "record"])]
    pub compare: Option<Vec<PathBuf>>,
    /// The provider's base URL (overrides the flows' `[provider]` and `OPENAI_BASE_URL`).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// The protocol.
    #[arg(long, value_enum)]
    pub api: Option<ApiArg>,
    /// The model name (overrides every flow's `assistant.model`).
    #[arg(long)]
    pub model: Option<String>,
}

/// A pass rate: a fraction in [0, 1].
fn pass_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a fraction between 0 and 1 (for 90%, write 0.9)"
        )),
    }
}

/// `clarion export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The flow file.
    #[arg(value_name = "FLOW")]
    pub flow: PathBuf,
    /// The provider format.
    #[arg(long, value_enum)]
    pub format: ProviderFormat,
    /// A slot value for rendering the instructions, as NAME=VALUE (VALUE is JSON if it
    /// parses as JSON, else a string). Repeatable.
    #[arg(long = "slot", value_name = "NAME=VALUE")]
    pub slots: Vec<String>,
    /// A metadata value for rendering the instructions, as KEY=VALUE. Repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    /// Start each `[mcp]` server and export against what it lists now; any drift from the
    /// lock file is an error, as for `clarion validate --connect`.
    #[arg(long)]
    pub connect: bool,
}

/// Provider formats for `clarion export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProviderFormat {
    /// OpenAI Chat Completions and compatible servers (Ollama, vLLM, llama.cpp…).
    ChatCompletions,
    /// OpenAI Responses API.
    Responses,
    /// The Assistants API's `POST /v1/assistants` body.
    Assistants,
}
