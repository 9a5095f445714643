//! Runs: one pass of the engine over a thread after a user message.
//!
//! - [`status`]: the state machine;
//! - [`engine`]: the loop that drives a run (model → tool calls → outputs → model…);
//! - [`call`]: preparing one tool call (arguments, slots, pending call, validation);
//! - [`confirm`]: confirmation before a tool acts, and what the user's answer means;
//! - [`grounding`]: whether a value the model passed is something the user said;
//! - [`rules`]: `after` and `on_error` rules, slots set and context injected;
//! - [`protocol`]: the check that every tool call has exactly one output;
//! - [`window`]: what a request sends of a long thread (`max_context_tokens`, `truncation`);
//! - [`tokens`]: how many tokens a text costs (`tokenizer`: OpenAI's, or the estimate);
//! - [`error`]: what can go wrong, for callers.

pub(crate) mod call;
pub(crate) mod confirm;
pub(crate) mod engine;
pub(crate) mod error;
pub(crate) mod grounding;
pub mod protocol;
pub(crate) mod rules;
pub(crate) mod status;
pub(crate) mod tokens;
pub(crate) mod window;

use serde::{Deserialize, Serialize};

pub use call::Rejection;
pub use confirm::{DECIDE_TOOL, DECISION_KEY, Decision};
pub use engine::{Engine, ToolOutputSubmission};
pub use error::EngineError;
pub use status::{IllegalTransition, RunStatus};

use crate::codes::{ErrorCode, IncompleteReason};
use crate::thread::ToolCall;

/// Tokens used by a run, summed over its model requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl Usage {
    /// Adds another request's usage.
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }

    /// Prompt plus completion tokens.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Why a run failed or expired, in a form an API can return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// What kind of failure (its wire form: `model_timeout`, `tool_failures`…).
    pub code: ErrorCode,
    /// What happened, for people.
    pub message: String,
}

/// One run of the engine over a thread: a snapshot, read by callers and written only by the
/// engine (its state machine is [`RunStatus`]). Non-exhaustive, so a caller cannot build one
/// that skips the engine; the engine's bookkeeping (failures in a row, the staged turn) is
/// private or read-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Run {
    /// `run_…`.
    pub id: String,
    /// The thread it runs on.
    pub thread_id: String,
    /// Where it is.
    pub status: RunStatus,
    /// Model requests made so far.
    pub steps: u32,
    /// Tokens used.
    pub usage: Usage,
    /// Why it failed, if it did.
    pub last_error: Option<LastError>,
    /// Client tool calls waiting for outputs (in `requires_action`).
    pub required_action: Vec<ToolCall>,
    /// Tool failures in a row (reset by a success).
    pub(crate) consecutive_failures: u32,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// When it started.
    pub started_at: Option<i64>,
    /// When it reached a terminal status.
    pub completed_at: Option<i64>,
    /// When a `requires_action` wait expires.
    pub expires_at: Option<i64>,
    /// While in `requires_action`: the turn's outputs and effects that wait for the client's
    /// outputs, so the whole turn lands in the thread at once, in call order.
    pub(crate) staged: Option<StagedTurn>,
    /// Text appended to the flow's instructions for this run only (the Assistants API's
    /// `additional_instructions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_instructions: Option<String>,
    /// String metadata for the embedding application, with the thread metadata's limits.
    #[serde(default, skip_serializing_if = "crate::thread::Metadata::is_empty")]
    pub metadata: crate::thread::Metadata,
    /// Why the run ended `incomplete`, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_details: Option<IncompleteReason>,
    /// Calls the model repeated after they had succeeded in this run (the loop guard: the
    /// first is answered and the model must then answer in words; the second ends the run).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeated_calls: u32,
    /// At most this many of the latest messages, in whole turns, are sent with each of
    /// this run's requests, over the flow's `limits.truncation` (the Assistants API's
    /// `truncation_strategy` of type `last_messages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_messages: Option<u32>,
    /// What the embedding application decided about the call waiting for the user's
    /// confirmation, when it asked the user itself ([`Engine::create_run_deciding`]);
    /// otherwise the run reads the user's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if takes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The part of a turn already done while client tools are outstanding ([`Run::staged`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StagedTurn {
    /// Outputs of the calls that are done.
    pub outputs: Vec<crate::thread::Message>,
    /// Context injected by their rules.
    pub contexts: Vec<crate::thread::Message>,
    /// Calls that need the user's input.
    pub asks: Vec<Ask>,
    /// A parameter's `on_exhausted = { end = … }` applied: the message for the user, after
    /// which the run ends `incomplete` (`asks_exhausted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// A parameter's `on_exhausted = { hand_off = … }` applied: the flow tool through
    /// which the thread goes to another flow once the turn has landed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_off: Option<String>,
}

/// A call waiting for the user's answers, or for their confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Ask {
    /// The call.
    pub call_id: String,
    /// The tool.
    pub tool: String,
    /// Validated arguments known so far.
    pub args: serde_json::Map<String, serde_json::Value>,
    /// Missing parameters in declaration order (none when it asks for confirmation).
    pub missing: Vec<String>,
    /// The confirmation question, when the call is complete and waits for the user's
    /// confirmation instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    /// Values the model passed that failed their parameter's schema, for parameters with
    /// an `invalid` message: the question is that message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejection>,
    /// How many times each missing parameter has been asked for, this question included.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub asked: std::collections::BTreeMap<String, u32>,
}

impl Ask {
    /// `call` waits for the user's values of the `missing` parameters.
    pub(crate) fn question(
        call: &ToolCall,
        args: serde_json::Map<String, serde_json::Value>,
        missing: Vec<String>,
    ) -> Self {
        Self {
            call_id: call.id.clone(),
            tool: call.name.clone(),
            args,
            missing,
            confirm: None,
            rejected: Vec::new(),
            asked: std::collections::BTreeMap::new(),
        }
    }

    /// `call` is complete and waits for the user to confirm it, asked with `text`.
    pub(crate) fn confirmation(
        call: &ToolCall,
        args: serde_json::Map<String, serde_json::Value>,
        text: String,
    ) -> Self {
        Self {
            call_id: call.id.clone(),
            tool: call.name.clone(),
            args,
            missing: Vec::new(),
            confirm: Some(text),
            rejected: Vec::new(),
            asked: std::collections::BTreeMap::new(),
        }
    }
}

impl Run {
    /// While in `requires_action`: the turn's outputs and effects that wait for the
    /// client's outputs.
    #[must_use]
    pub fn staged(&self) -> Option<&StagedTurn> {
        self.staged.as_ref()
    }

    /// A queued run.
    #[must_use]
    pub fn new(id: String, thread_id: String, created_at: i64) -> Self {
        Self {
            id,
            thread_id,
            status: RunStatus::Queued,
            steps: 0,
            usage: Usage::default(),
            last_error: None,
            required_action: Vec::new(),
            consecutive_failures: 0,
            created_at,
            started_at: None,
            completed_at: None,
            expires_at: None,
            staged: None,
            additional_instructions: None,
            metadata: crate::thread::Metadata::default(),
            incomplete_details: None,
            repeated_calls: 0,
            last_messages: None,
            decision: None,
        }
    }
}
