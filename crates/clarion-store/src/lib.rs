//! Durable thread stores for Clarion's engine: where threads and runs live between steps
//! and across processes.
//!
//! The engine (`clarion-engine`) defines the [`ThreadStore`](clarion_engine::store::ThreadStore)
//! seam and an in-memory store; this crate holds the durable one, [`SqliteStore`]: one file
//! every process on a machine can share, WAL, versioned migrations, one transaction per
//! engine step.

pub mod sqlite;

pub use sqlite::SqliteStore;
