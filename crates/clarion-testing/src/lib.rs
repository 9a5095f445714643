//! Clarion's conversation tests: scenarios, transcripts and the harness behind
//! `clarion test`.
//!
//! - [`scenario`]: scenario files — the user's turns, the model's scripted steps, tool
//!   mocks and expectations — loaded, checked and played through the real engine;
//! - [`transcript`]: a run's events rendered as a deterministic transcript, secrets
//!   redacted;
//! - the harness ([`Runner`], [`assert_scenarios`]): plays scenarios, compares transcripts
//!   with snapshots in insta's format, and reports located failures with a diff.

mod harness;
pub mod scenario;
pub mod transcript;

pub use harness::*;
