//! One module per subcommand.

pub mod chat;
pub mod completions;
pub mod demo;
pub mod export;
pub mod graph;
pub mod schema;
pub mod serve;
pub mod test;
pub mod threads;
pub mod validate;
