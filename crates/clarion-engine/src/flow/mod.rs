//! The flow: Clarion's description of one assistant, from TOML text to a validated model.
//!
//! - [`spec`]: the file format as serde types (the source of the JSON Schema);
//! - [`keywords`]: the JSON Schema keywords a parameter or slot may use;
//! - [`schema`]: the generated JSON Schema of the format;
//! - [`spans`]: TOML → JSON with the location of every node;
//! - [`structure`]: structural checks against the format's schema;
//! - [`check`]: semantic checks;
//! - [`load`]: the pipeline that ties them together;
//! - [`catalog`]: the built-ins a loader may check `builtin` names against;
//! - [`model`]: the validated [`Flow`] everything else uses.

pub mod catalog;
pub mod check;
pub mod keywords;
pub mod load;
pub mod model;
pub mod schema;
pub mod spans;
pub mod spec;
pub mod structure;

pub use catalog::{BuiltinCatalog, LoadOptions};
pub use load::{
    LoadError, LoadReport, MAX_FILE_BYTES, load_bytes, load_bytes_with, load_file, load_file_with,
    load_str, load_str_with,
};
pub use model::{Executor, Flow, Limits, Param, Slot, Tool};
