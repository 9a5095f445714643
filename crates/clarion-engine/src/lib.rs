//! Clarion's engine: runs the conversations a flow (`clarion-flow`) describes.
//!
//! The crate root is the API: everything an embedder names is re-exported here, and the
//! modules behind it are private. What it holds, by job:
//!
//! - threads: [`Thread`], [`Message`] and [`MessageKind`], [`Metadata`], the
//!   [`PendingCall`] a question waits on;
//! - runs: [`Engine`] drives them (model → tool calls → outputs → model…), [`Run`] is a
//!   snapshot of one, [`RunStatus`] its state machine, [`Event`]s what happened on the way;
//! - the seams an embedder implements: [`Model`] (the HTTP providers are
//!   `clarion-providers`), [`ToolExecutor`] (HTTP and command tools are `clarion-tools`),
//!   [`ThreadStore`] ([`MemoryStore`] here; SQLite is `clarion-store`, PostgreSQL
//!   `clarion-store-postgres`);
//! - the codes callers branch on, as enums: [`ErrorCode`], [`ModelErrorKind`],
//!   [`ToolErrorKind`], [`IncompleteReason`];
//! - shared plumbing: the one [`Redactor`], [`Backoff`] and [`retry_after`], [`Clock`].
//!
//! Three modules stay public because they are namespaces in their own right: [`observe`]
//! (the metric and log names operators depend on), [`protocol`] (the tool-call pairing
//! invariant, for anyone who builds a history) and [`scripted`] (a model that plays
//! scripted turns, for tests). `contract` (feature `contract`) is the suite a store passes.
//!
//! **Cancel safety.** Every public async method of [`Engine`] is cancel-safe: dropping its
//! future never leaves a thread locked (each method's docs say what happens to the work).
//!
//! Embedding Clarion takes a flow, a model, tool executors and a store; then a thread, a
//! message and a run. Here the model is scripted and the one tool is a closure:
//!
//! ```
//! use std::sync::Arc;
//! use clarion_engine::{Engine, EventLog, FnExecutor, MemoryStore, Metadata, RunStatus};
//! use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
//! use clarion_flow as flow;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let flow = flow::load_str("weather.toml", r#"
//!     [flow]
//!     name = "weather"
//!     [assistant]
//!     model = "gpt-4.1-mini"
//!     instructions = "Answer weather questions with the tool."
//!     [tools.forecast]
//!     description = "Tomorrow's forecast for a city."
//!     builtin = "weather.forecast"
//!     [tools.forecast.params.city]
//!     type = "string"
//!     description = "City name."
//!     ask = "Which city?"
//! "#, None).into_result()?;
//! let model = ScriptedModel::new([ScriptedTurn::call("forecast", r#"{"city": "Lisbon"}"#),
//!                                 ScriptedTurn::text("Sunny, 24 °C.")]);
//! let tools = FnExecutor(|_: &flow::Tool, _: &serde_json::Map<_, _>| Ok(serde_json::json!({"sky": "sunny"})));
//! let engine = Engine::new(Arc::new(flow), Arc::new(model), Arc::new(tools), Arc::new(MemoryStore::new()));
//!
//! let thread = engine.create_thread(Metadata::default()).await?;
//! engine.add_message(&thread.id, "Weather in Lisbon tomorrow?").await?;
//! let events = EventLog::new();
//! let run = engine.run(&thread.id, &events).await?;
//! assert_eq!(run.status, RunStatus::Completed);
//! let thread = engine.thread(&thread.id).await?;
//! assert_eq!(thread.messages.last().and_then(|m| m.text()), Some("Sunny, 24 °C."));
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;

/// A boxed future, so traits with async methods (`Model`, `ToolExecutor`, `ThreadStore`)
/// stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// The facade: the API an embedder needs, named from the root.
pub use clock::{Clock, ManualClock, SystemClock};
pub use codes::{ErrorCode, IncompleteReason, ModelErrorKind, ToolErrorKind};
pub use events::{Event, EventLog, EventSink, ExhaustedOutcome, NoEvents, RuleRef};
pub use ids::new_id;
pub use model::{Model, ModelError, ModelRequest, ModelResponse, ModelTurn};
pub use redact::Redactor;
pub use retry::{Backoff, retry_after};
pub use run::{
    Ask, DECIDE_TOOL, DECISION_KEY, Decision, Engine, EngineError, IllegalTransition, LastError,
    Rejection, Run, RunStatus, StagedTurn, ToolOutputSubmission, Usage,
};
pub use store::{
    Lease, MemoryStore, MessagePage, MessageQuery, Order, Step, StoreError, ThreadHeader,
    ThreadStore, run_belongs_to,
};
pub use thread::{
    Handoff, MAX_KEY_CHARS, MAX_KEYS, MAX_VALUE_CHARS, Message, MessageKind, Metadata,
    MetadataError, OutputStatus, PendingCall, Thread, ToolCall, content_value,
};
pub use tool::{FnExecutor, ToolError, ToolExecutor, ToolRequest};

pub mod observe;
pub use run::protocol;
/// A model that plays scripted turns, for tests, scenarios and examples.
pub mod scripted {
    pub use crate::model::scripted::{ScriptedModel, ScriptedTurn};
}
#[cfg(feature = "contract")]
pub use store::contract;

/// Internals the benchmarks in `clarion-providers` and `clarion-engine` time on their own;
/// not API.
#[doc(hidden)]
pub mod bench {
    pub use crate::run::grounding::Said;
    pub use crate::run::tokens::{Counter, MESSAGE_OVERHEAD, estimate};
    pub use crate::run::window::{Budget, Window};
}

mod clock;
mod codes;
mod events;
mod ids;
mod model;
mod redact;
mod retry;
mod run;
mod store;
mod thread;
mod tool;
