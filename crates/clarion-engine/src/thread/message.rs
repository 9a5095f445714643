//! The messages of a thread, one variant per kind.
//!
//! Kinds are distinct because the engine, the providers and the transcripts each treat
//! them differently: a clarification question is an assistant message to the provider but
//! a "question asked" event in a transcript; injected context is neither the user's nor
//! the assistant's words. Tool calls and their outputs are separate messages, as every
//! provider protocol requires, and each output names the call it answers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Metadata;

/// One message in a thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `msg_…`.
    pub id: String,
    /// The run that produced it (`None` for user messages).
    pub run_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// What it is.
    #[serde(flatten)]
    pub kind: MessageKind,
    /// String metadata for the embedding application (the Assistants API's message
    /// metadata), with the thread metadata's limits. Never sent to a model.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// What a message is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MessageKind {
    /// The user's words.
    User {
        /// The text.
        text: String,
    },
    /// The assistant's reply.
    Assistant {
        /// The text.
        text: String,
    },
    /// The model asked for tool calls (with optional accompanying text).
    ToolCalls {
        /// Text the model produced alongside the calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// The calls, in the model's order.
        calls: Vec<ToolCall>,
    },
    /// The answer to one tool call.
    ToolOutput {
        /// The call answered.
        call_id: String,
        /// The tool's name.
        name: String,
        /// How the call ended.
        status: OutputStatus,
        /// What the model reads: JSON text.
        content: String,
    },
    /// Context injected by an `after` or `on_error` rule, for the model.
    Context {
        /// The tool whose rule injected it.
        tool: String,
        /// The rendered text.
        text: String,
    },
    /// A question put to the user for a call's missing parameters, or asking them to
    /// confirm a call before it runs.
    Question {
        /// The call that needs the answers.
        call_id: String,
        /// The tool.
        tool: String,
        /// The parameters asked for, in declaration order (none for a confirmation).
        params: Vec<String>,
        /// The question text.
        text: String,
        /// Whether it asks the user to confirm the call (`confirm`) rather than for
        /// parameters.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        confirm: bool,
    },
}

/// One tool call as the model made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// `call_…` (the provider's id, or one Clarion made).
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as the model wrote them: JSON text, possibly invalid.
    pub arguments: String,
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStatus {
    /// The tool ran and returned a result.
    Ok,
    /// The call could not run or the tool failed (the content says why).
    Error,
    /// Required parameters were missing; the user was asked.
    NeedsInput,
    /// The call waits for the user's confirmation; nothing ran.
    NeedsConfirmation,
    /// The run was cancelled before the call finished.
    Cancelled,
    /// The run expired waiting for the client's output.
    Expired,
}

impl Message {
    /// The text a person would read, if the message has any.
    #[must_use]
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            MessageKind::User { text }
            | MessageKind::Assistant { text }
            | MessageKind::Context { text, .. }
            | MessageKind::Question { text, .. } => Some(text),
            MessageKind::ToolCalls { text, .. } => text.as_deref(),
            MessageKind::ToolOutput { .. } => None,
        }
    }

    /// Whether people read this message: the user's words, replies, questions, and the
    /// text a model wrote beside its tool calls — not tool calls alone, tool outputs or
    /// injected context. What an Assistants-API message list shows.
    #[must_use]
    pub fn is_shown(&self) -> bool {
        match &self.kind {
            MessageKind::User { .. }
            | MessageKind::Assistant { .. }
            | MessageKind::Question { .. } => true,
            MessageKind::ToolCalls { text, .. } => {
                text.as_deref().is_some_and(|t| !t.trim().is_empty())
            }
            MessageKind::ToolOutput { .. } | MessageKind::Context { .. } => false,
        }
    }
}

/// Parses a tool output's content as JSON (outputs are JSON text; a client may send any
/// string, which is then a JSON string value).
#[must_use]
pub fn content_value(content: &str) -> Value {
    serde_json::from_str(content).unwrap_or_else(|_| Value::String(content.to_owned()))
}
