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
//! - [`codes`]: the codes callers branch on (model and tool errors, why a run failed or
//!   stopped short), as enums.
//!
//! Embedding Clarion takes a flow, a model, tool executors and a store; then a thread, a
//! message and a run. Here the model is scripted and the one tool is a closure:
//!
//! ```
//! use std::sync::Arc;
//! use clarion_engine::{events::EventLog, run::{Engine, RunStatus}, store::MemoryStore};
//! use clarion_flow as flow;
//! use clarion_engine::model::scripted::{ScriptedModel, ScriptedTurn};
//! use clarion_engine::{thread::Metadata, tool::FnExecutor};
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

pub mod clock;
pub mod codes;
pub mod events;
pub mod ids;
pub mod model;
pub mod observe;
pub mod run;
pub mod store;
pub mod thread;
pub mod tool;
