//! Live evaluation of Clarion scenarios: how often a flow actually works with a real
//! model, since the model, not the engine, decides when to call which tool.
//!
//! A scenario already holds the user's turns and structural expectations (a tool called
//! with these arguments, a question asked for these parameters, a slot set…). An
//! [`Evaluation`] plays its user turns against the live model `N` times, judges each
//! sample by those expectations — never by wording — and adds them up into [`Results`]:
//! pass rates per scenario and per expectation with 95% intervals ([`stats`]), the most
//! common failure, latency and tokens. Results are plain JSON ([`Results::to_json`]),
//! comparable across runs and models ([`compare`]), and render as a terminal summary and
//! `JUnit` XML ([`summary`]) or a self-contained HTML report ([`html`]).
//!
//! `clarion eval` is the command; docs/testing.md is the reference.
//!
//! ```
//! use clarion_eval::stats::{fisher_exact, wilson};
//!
//! // 8 of 10 samples passed: the true rate is somewhere in 49–94%.
//! let interval = wilson(8, 10);
//! assert!(interval.contains(0.5) && !interval.contains(0.45));
//! // 8 of 10 against 5 of 10 is not yet a significant difference.
//! assert!(fisher_exact(8, 10, 5, 10) > 0.05);
//! ```

mod play;
mod results;

pub mod compare;
pub mod html;
pub mod stats;
pub mod summary;

pub use play::{Evaluation, OnSample};
pub use results::{
    ExpectationResult, FORMAT, Failure, Latency, Results, Sample, SampleFailure, ScenarioResult,
    Verdict,
};
