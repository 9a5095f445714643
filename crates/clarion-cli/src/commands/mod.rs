//! One module per subcommand.

pub mod chat;
pub mod export;
pub mod schema;
pub mod serve;
pub mod test;
pub mod validate;
