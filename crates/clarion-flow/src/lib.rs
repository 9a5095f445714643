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
//! - [`model`]: the validated [`Flow`] everything else uses;
//! - [`diagnostic`]: located, coded problems and their rendering;
//! - [`export`]: assistant definitions for Chat Completions, Responses and Assistants;
//! - [`graph`]: a flow as a diagram (Mermaid, Graphviz);
//! - [`template`]: the MiniJinja environment and template scopes;
//! - [`discover`]: the flow (and scenario) files below a directory;
//! - [`source`], [`suggest`]: file text and line/column arithmetic; "did you mean".

pub mod catalog;
pub mod check;
pub mod diagnostic;
pub mod discover;
pub mod export;
pub mod graph;
pub mod keywords;
pub mod load;
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
pub use model::{Executor, Flow, Limits, Param, Slot, Tool};
