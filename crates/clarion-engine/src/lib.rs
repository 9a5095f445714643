//! Clarion's engine: flows described in TOML, checked like code, exported to any provider.
//!
//! - [`flow`]: the flow file format, its loader and validator, and the validated [`Flow`];
//! - [`diagnostic`]: located, coded problems and their rendering;
//! - [`export`]: assistant definitions for Chat Completions, Responses and Assistants;
//! - [`template`]: the MiniJinja environment and template scopes;
//! - [`source`]: file text and line/column arithmetic.
//!
//! ```
//! let text = r#"
//! [flow]
//! name = "hello"
//! [assistant]
//! model = "gpt-4.1-mini"
//! instructions = "Be brief."
//! "#;
//! let report = clarion_engine::flow::load_str("hello.toml", text, None);
//! assert_eq!(report.error_count(), 0);
//! let flow = report.into_result().expect("valid flow");
//! assert_eq!(flow.name, "hello");
//! ```

pub mod clock;
pub mod diagnostic;
pub mod events;
pub mod export;
pub mod flow;
pub mod ids;
pub mod provider;
pub mod run;
pub mod source;
pub mod store;
pub mod suggest;
pub mod template;
pub mod thread;
pub mod tool;

pub use flow::Flow;
