//! Durable thread stores for Clarion's engine: where threads and runs live between steps
//! and across processes.
//!
//! The engine (`clarion-engine`) defines the [`ThreadStore`](clarion_engine::ThreadStore)
//! seam and an in-memory store; this crate holds the durable one, [`SqliteStore`]: one file
//! every process on a machine can share, WAL, versioned migrations, one transaction per
//! engine step.
//!
//! A thread survives its process: here one engine writes it, and a second handle on the
//! same file (another process, in real use) reads it back.
//!
//! ```
//! use std::sync::Arc;
//! use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
//! use clarion_engine::{Engine, EventLog, FnExecutor, Metadata, RunStatus, ThreadStore};
//! use clarion_store::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let flow = clarion_flow::load_str("hello.toml", r#"
//!     [flow]
//!     name = "hello"
//!     [assistant]
//!     model = "gpt-4.1-mini"
//!     instructions = "Greet people."
//! "#, None).into_result()?;
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("threads.db");
//! let engine = Engine::new(
//!     Arc::new(flow),
//!     Arc::new(ScriptedModel::new([ScriptedTurn::text("Hello!")])),
//!     Arc::new(FnExecutor(|_: &clarion_flow::Tool, _: &serde_json::Map<_, _>| Ok(serde_json::json!({})))),
//!     Arc::new(SqliteStore::open(&path)?),
//! );
//! let thread = engine.create_thread(Metadata::default()).await?;
//! engine.add_message(&thread.id, "Hi").await?;
//! assert_eq!(engine.run(&thread.id, &EventLog::new()).await?.status, RunStatus::Completed);
//!
//! let reopened = SqliteStore::open(&path)?;
//! let header = reopened.thread_header(&thread.id).await?;
//! assert_eq!((header.flow.as_str(), header.message_count), ("hello", 2));
//! # Ok(())
//! # }
//! ```

pub mod sqlite;

pub use sqlite::SqliteStore;
