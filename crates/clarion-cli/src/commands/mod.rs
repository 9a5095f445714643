//! One module per subcommand.

pub(crate) mod chat;
pub(crate) mod completions;
pub(crate) mod demo;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod graph;
pub(crate) mod lsp;
pub(crate) mod mcp;
pub(crate) mod play;
pub(crate) mod schema;
pub(crate) mod serve;
pub(crate) mod test;
pub(crate) mod threads;
pub(crate) mod validate;
