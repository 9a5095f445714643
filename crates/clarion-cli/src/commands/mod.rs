//! One module per subcommand.

pub mod chat;
pub mod demo;
pub mod export;
pub mod schema;
pub mod test;
pub mod validate;
