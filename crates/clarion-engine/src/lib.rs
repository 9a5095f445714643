//! Clarion's engine: runs the conversations a flow (`clarion-flow`) describes.
//!
//! - [`thread`]: conversations (messages, slots, metadata, the pending call);
//! - [`run`]: runs, their state machine, and the [`Engine`](run::Engine) that drives them;
//! - [`model`]: the [`Model`](model::Model) trait and a scripted model (the HTTP providers
//!   are `clarion-providers`);
//! - [`tool`]: the [`ToolExecutor`](tool::ToolExecutor) trait;
//! - [`store`]: the [`ThreadStore`](store::ThreadStore) trait and the in-memory store (SQLite
//!   is `clarion-store`);
//! - [`events`]: the typed event stream of a run;
//! - [`redact`]: the one redactor that keeps secrets out of errors, transcripts and logs;
//! - [`retry`]: the backoff and `Retry-After` reading shared by model and tool clients;
//! - [`codes`]: the codes callers branch on (model and tool errors, why a run failed or
//!   stopped short), as enums.
//!
//! Embedding Clarion takes a flow, a model, tool executors and a store; then a thread, a
//! message and a run. Here the model is scripted and the one tool is a closure:
//!
//! ```
//! use std::sync::Arc;
//! use clarion_engine::{Engine, EventLog, FnExecutor, MemoryStore, Metadata, RunStatus};
//! use clarion_engine::model::scripted::{ScriptedModel, ScriptedTurn};
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

// The facade: what an embedder names most. The modules stay public for the rest (the
// scripted model, store paging types, event sinks), each documented with what it owns.
pub use codes::{ErrorCode, IncompleteReason, ModelErrorKind, ToolErrorKind};
pub use events::{Event, EventLog, EventSink, NoEvents};
pub use model::{Model, ModelError, ModelRequest, ModelResponse, ModelTurn};
pub use run::{Engine, EngineError, LastError, Run, RunStatus, ToolOutputSubmission, Usage};
pub use store::{MemoryStore, StoreError, ThreadStore};
pub use thread::{Message, MessageKind, Metadata, Thread, ToolCall};
pub use tool::{FnExecutor, ToolError, ToolExecutor, ToolRequest};

pub mod clock;
pub mod codes;
pub mod events;
pub mod ids;
pub mod model;
pub mod observe;
pub mod redact;
pub mod retry;
pub mod run;
pub mod store;
pub mod thread;
pub mod tool;
