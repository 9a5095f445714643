//! The model: the one seam between the engine and a language model.
//!
//! [`Model`] has one job — given the rendered instructions, the thread's messages and the
//! flow's tools, return the model's next turn: text, or tool calls. Providers translate
//! Clarion's messages into their wire format (Chat Completions, Responses…) and back; the
//! engine never sees a wire format. The HTTP providers live in `clarion-providers`;
//! [`scripted`] plays the model's side from a list of turns, for tests and scenarios.

pub(crate) mod scripted;

use crate::events::EventSink;
use crate::run::Usage;
use crate::thread::{Message, MessageKind, OutputStatus, ToolCall};
use clarion_flow::Flow;

use crate::BoxFuture;
use crate::codes::IncompleteReason;
pub(crate) use crate::codes::ModelErrorKind;

/// What the engine asks the model.
#[derive(Debug, Clone, Copy)]
pub struct ModelRequest<'a> {
    /// The flow (model name, sampling options, tools).
    pub flow: &'a Flow,
    /// The instructions, rendered with the thread's slots and metadata.
    pub instructions: &'a str,
    /// The conversation to send: the thread's history, or its latest whole turns when
    /// `[limits]` cut a long one. Every tool call in it has exactly one output.
    pub messages: &'a [Message],
    /// The thread's whole history, of which `messages` is the end: what depends on the
    /// past beyond what is sent (`follows`, in [`ModelRequest::offers`]) reads it.
    pub history: &'a [Message],
    /// Answer in words this time, calling no tool: `tool_choice` is `none`, or under
    /// `required` the [reply tool](clarion_flow::export::REPLY_TOOL) (the engine's loop guard asks
    /// for it after the model repeated a call that had already succeeded).
    pub words_only: bool,
}

impl ModelRequest<'_> {
    /// Whether this request offers `tool` to the model: a tool that `follows` others only
    /// once each of them has returned before the user's latest message. Providers build
    /// their tool list with it; the engine refuses a call to a tool it did not offer.
    #[must_use]
    pub fn offers(&self, tool: &clarion_flow::Tool) -> bool {
        follows_met(tool, self.history)
    }

    /// The `tool_choice` to send when it differs from the flow's: words only.
    #[must_use]
    pub fn tool_choice_override(
        &self,
        format: clarion_flow::export::ExportFormat,
    ) -> Option<serde_json::Value> {
        if !self.words_only || self.flow.tools.is_empty() {
            return None;
        }
        let reply = clarion_flow::export::REPLY_TOOL;
        Some(if clarion_flow::export::offers_reply(self.flow) {
            match format {
                clarion_flow::export::ExportFormat::Responses => {
                    serde_json::json!({ "type": "function", "name": reply })
                }
                _ => serde_json::json!({ "type": "function", "function": { "name": reply } }),
            }
        } else {
            serde_json::json!("none")
        })
    }
}

/// The model's next turn.
#[derive(Debug, Clone, PartialEq, Eq)]
// Not `non_exhaustive`: providers build and recordings replay every turn, so a new kind
// of turn must fail to compile there rather than be skipped by a wildcard.
pub enum ModelTurn {
    /// The provider stopped the turn short (its token limit, its content filter): not an
    /// error, and the run ends `incomplete` with the reason.
    Stopped {
        /// Why.
        reason: IncompleteReason,
    },
    /// A reply to the user.
    Text(String),
    /// Tool calls, possibly with text.
    ToolCalls {
        /// Text alongside the calls.
        text: Option<String>,
        /// The calls (ids may be empty; the engine assigns fresh ones then).
        calls: Vec<ToolCall>,
    },
}

/// The model's turn and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelResponse {
    /// The turn.
    pub turn: ModelTurn,
    /// Tokens used by this request.
    pub usage: Usage,
}

/// Why the model gave no turn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ModelError {
    /// What kind of failure it was.
    pub kind: ModelErrorKind,
    /// What happened, with secrets redacted.
    pub message: String,
}

impl ModelError {
    /// An error of `kind` with `message`.
    #[must_use]
    pub fn new(kind: ModelErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// A language model.
pub trait Model: Send + Sync {
    /// The model's next turn. Streaming providers emit `TextDelta` events as text arrives.
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>>;

    /// Who answers, for metrics and logs. The default names no system and the flow's
    /// model; providers say which protocol and which model they really use.
    fn describe(&self, flow: &Flow) -> crate::observe::ModelInfo {
        crate::observe::ModelInfo {
            system: "unknown",
            model: flow.assistant.model.clone(),
        }
    }
}

/// Whether each tool `tool` follows has returned a result before the latest user message
/// of `messages`: the user has seen it and spoken since. Only tools with `follows` look at
/// the history, from its end.
pub(crate) fn follows_met(tool: &clarion_flow::Tool, messages: &[Message]) -> bool {
    if tool.follows.is_empty() {
        return true;
    }
    let Some(last_user) = messages
        .iter()
        .rposition(|m| matches!(m.kind, MessageKind::User { .. }))
    else {
        return false;
    };
    let before = &messages[..last_user];
    tool.follows.iter().all(|followed| {
        before.iter().rev().any(|m| {
            matches!(
                &m.kind,
                MessageKind::ToolOutput { name, status: OutputStatus::Ok, .. } if name == followed
            )
        })
    })
}
