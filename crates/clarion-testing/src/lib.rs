//! Clarion's conversation tests: scenarios, transcripts and the harness behind
//! `clarion test`.
//!
//! - [`scenario`]: scenario files — the user's turns, the model's scripted steps, tool
//!   mocks and expectations — loaded, checked and played through the real engine;
//! - [`transcript`]: a run's events rendered as a deterministic transcript, secrets
//!   redacted;
//! - [`coverage`]: which tools, questions, slots and rules of each flow the scenarios
//!   exercised, as a summary, JSON or LCOV;
//! - the harness ([`Runner`], [`assert_scenarios`]): plays scenarios, compares transcripts
//!   with snapshots in insta's format, and reports located failures with a diff;
//! - [`save`]: a conversation (a thread's messages) saved as a scenario with its
//!   expectations and accepted snapshot — `clarion play` and `clarion chat`'s `/save`.
//!
//! A scenario of this repository played through the real engine, its transcript compared
//! with the accepted snapshot beside it (what `clarion test` does for each file):
//!
//! ```
//! use clarion_testing::{Runner, UpdateMode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let scenario = "../../flows/personal-finance/scenarios/answer_completes_pending_call.toml";
//! let outcome = Runner::new().run(scenario.as_ref()).await;
//! assert!(outcome.problems.is_empty() && outcome.failures.is_empty());
//! let check = outcome.check_snapshot(UpdateMode::Never);
//! assert!(outcome.passed(&check), "{}", outcome.failure_report(&check, false));
//! # }
//! ```

pub mod coverage;
mod harness;
pub mod save;
pub mod scenario;
pub mod transcript;

pub use harness::*;
