//! Clarion's flows: one assistant described in TOML, from text to a validated [`Flow`] —
//! checked like code, exported to any provider, drawn as a diagram.
//!
//! This crate has no async runtime, no HTTP client and no database: a team that only
//! validates and exports flows builds this and nothing else. Running flows is
//! `clarion-engine`'s job.
//!
//! - [`spec`]: the file format as serde types (the source of the JSON Schema);
//! - [`keywords`]: the JSON Schema keywords a parameter or slot may use;
//! - [`schema`]: the generated JSON Schema of the format;
//! - [`spans`]: TOML → JSON with the location of every node;
//! - [`structure`]: structural checks against the format's schema;
//! - [`check`]: semantic checks;
//! - [`load`]: the pipeline that ties them together;
//! - [`catalog`]: the built-ins a loader may check `builtin` names against;
//! - [`mcp`]: the lock file of a flow's MCP servers' tools;
//! - `link`: the flows a flow hands off to (`flow = "…"`), loaded and checked with it;
//! - [`model`]: the validated [`Flow`] everything else uses;
//! - [`diagnostic`]: located, coded problems and their rendering;
//! - [`export`]: assistant definitions for Chat Completions, Responses and Assistants;
//! - [`graph`]: a flow as a diagram (Mermaid, Graphviz);
//! - [`template`]: the MiniJinja environment and template scopes;
//! - [`discover`]: the flow (and scenario) files below a directory;
//! - [`source`], [`suggest`]: file text and line/column arithmetic; "did you mean".
//!
//! From text to a flow, to the body a provider receives, to a diagram; and a mistake found
//! where it is, with its code:
//!
//! ```
//! use clarion_flow::export::{ExportFormat, export};
//! use clarion_flow::graph::Graph;
//!
//! let text = r#"
//!     [flow]
//!     name = "savings"
//!     [assistant]
//!     model = "gpt-4.1-mini"
//!     instructions = "Help people plan their savings."
//!     [tools.timeline]
//!     description = "Months to reach a savings goal."
//!     builtin = "finance.savings_timeline"
//!     [tools.timeline.params.goal]
//!     type = "number"
//!     description = "The amount to save."
//!     ask = "How much do you want to save?"
//! "#;
//! let flow = clarion_flow::load_str("savings.toml", text, None).into_result()?;
//! let body = export(&flow, ExportFormat::ChatCompletions, &Default::default(), &Default::default())?;
//! assert_eq!(body["tools"][0]["function"]["name"], "timeline");
//! assert!(Graph::of(&flow).mermaid().contains("timeline"));
//!
//! let typo = text.replace("ask =", "askk =");
//! let report = clarion_flow::load_str("savings.toml", &typo, None);
//! assert!(report.flow.is_none());
//! let first = &report.diagnostics[0];
//! let at = report.source.line_column(first.span.as_ref().map_or(0, |span| span.start));
//! assert_eq!((first.code(), at.line), ("E004", 13), "{}", first.message());
//! assert!(first.message().contains("unknown key `askk`"), "{}", first.message());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod catalog;
pub mod check;
pub mod diagnostic;
pub mod discover;
pub mod export;
pub mod graph;
pub mod keywords;
mod link;
pub mod load;
pub mod mcp;
pub mod model;
pub mod schema;
pub mod source;
pub mod spans;
pub mod spec;
pub mod structure;
pub mod suggest;
pub mod template;

pub use catalog::{BuiltinCatalog, LoadOptions};
pub use load::{
    LoadError, LoadReport, MAX_FILE_BYTES, load_bytes, load_bytes_with, load_file, load_file_with,
    load_str, load_str_with,
};
pub use model::{
    Executor, Flow, FlowLink, Limits, McpTool, OnExhausted, Param, Slot, Tokenizer, Tool,
    Truncation,
};
