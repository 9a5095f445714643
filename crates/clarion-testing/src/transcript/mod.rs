//! Transcripts: a conversation as a person reads it, deterministic enough to snapshot.
//!
//! A transcript is rendered from what the user said, the engine's typed
//! [`Event`](clarion_engine::Event)s, the outputs an app submitted and the runs' outcomes.
//! It shows every event — tool calls and the arguments they ran with, outputs, questions
//! and the parameters they ask for, slots set, context injected, pending calls abandoned,
//! rules skipped, run statuses — and nothing that changes between two runs of the same
//! conversation: ids are renumbered in order of appearance ([`ids`]), there are no clock
//! times, and secrets are redacted ([`redact`]).
//!
//! ```text
//! user: How long will it take me to save $50,000?
//!   → calculate_savings_timeline(goal_amount: 50000)
//!   = slot goal_amount ← 50000
//!   ← needs input: monthly_income, monthly_savings
//!   ? asks for monthly_income, monthly_savings: "What is your net monthly income? …"
//! [run_1 completed]
//! ```
//!
//! Streamed text (`TextDelta`) is not shown separately: the `assistant:` line has it all.

pub mod ids;
pub mod redact;
mod render;

pub use ids::StableIds;
pub use redact::Redactor;
pub use render::{Transcript, inline_json};
