//! Request bodies. Unknown fields are ignored, as SDKs send fields Clarion has no use for
//! (`tool_resources`, `attachments`…); fields that would change what the flow does
//! (`instructions`, `model`, `tools`) are refused, because the flow file decides those.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::RESERVED_PREFIX;
use crate::error::ApiError;

/// `POST /threads`.
#[derive(Debug, Default, Deserialize)]
pub struct CreateThread {
    /// Messages to start with.
    #[serde(default)]
    pub messages: Vec<MessageInput>,
    /// Metadata.
    pub metadata: Option<Map<String, Value>>,
}

/// One message in a request.
#[derive(Debug, Deserialize)]
pub struct MessageInput {
    /// `user` or `assistant`.
    pub role: String,
    /// A string, or a list of content parts.
    pub content: Content,
    /// Message metadata (string values, the thread metadata's limits).
    pub metadata: Option<Map<String, Value>>,
}

/// Message content as the API accepts it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts; only `text` parts are supported.
    Parts(Vec<Map<String, Value>>),
}

impl MessageInput {
    /// The role and the text, or why they are not acceptable.
    pub fn text(&self) -> Result<String, ApiError> {
        if !matches!(self.role.as_str(), "user" | "assistant") {
            return Err(ApiError::bad_request(format!(
                "Invalid value: '{}'. Supported values are: 'user' and 'assistant'.",
                self.role
            ))
            .param("role"));
        }
        let text = match &self.content {
            Content::Text(text) => text.clone(),
            Content::Parts(parts) => {
                let mut texts = Vec::new();
                for part in parts {
                    match (part.get("type").and_then(Value::as_str), part.get("text")) {
                        (Some("text"), Some(Value::String(text))) => texts.push(text.clone()),
                        (kind, _) => {
                            return Err(ApiError::bad_request(format!(
                                "Content parts of type '{}' are not supported by clarion serve; send text.",
                                kind.unwrap_or("?")
                            ))
                            .param("content"));
                        }
                    }
                }
                texts.join("\n")
            }
        };
        if text.trim().is_empty() {
            return Err(
                ApiError::bad_request("Message content must be non-empty.").param("content")
            );
        }
        Ok(text)
    }
}

/// `POST /threads/{id}` (modify).
#[derive(Debug, Default, Deserialize)]
pub struct ModifyThread {
    /// Metadata to merge (an empty value removes a key).
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /threads/{id}/messages/{id}`.
#[derive(Debug, Deserialize)]
pub struct ModifyMessage {
    /// Metadata to merge (an empty value removes a key).
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /threads/{id}/runs`.
#[derive(Debug, Deserialize)]
pub struct CreateRun {
    /// The assistant (flow) to run.
    pub assistant_id: String,
    /// Appended to the flow's instructions for this run.
    pub additional_instructions: Option<String>,
    /// Messages added to the thread before the run starts.
    #[serde(default)]
    pub additional_messages: Vec<MessageInput>,
    /// Run metadata.
    pub metadata: Option<Map<String, Value>>,
    /// Stream events instead of returning the run.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Which history each request sends: `{"type": "auto"}` (the flow's `[limits]`) or
    /// `{"type": "last_messages", "last_messages": N}`.
    pub truncation_strategy: Option<Value>,
    /// Refused: the flow decides.
    pub instructions: Option<Value>,
    /// Refused: the flow decides.
    pub model: Option<Value>,
    /// Refused: the flow decides.
    pub tools: Option<Value>,
}

/// `POST /threads/runs`.
#[derive(Debug, Deserialize)]
pub struct CreateThreadAndRun {
    /// The assistant (flow) to run.
    pub assistant_id: String,
    /// The thread to create.
    pub thread: Option<CreateThread>,
    /// Run metadata.
    pub metadata: Option<Map<String, Value>>,
    /// Stream events instead of returning the run.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Which history each request sends: `{"type": "auto"}` (the flow's `[limits]`) or
    /// `{"type": "last_messages", "last_messages": N}`.
    pub truncation_strategy: Option<Value>,
    /// Refused: the flow decides.
    pub instructions: Option<Value>,
    /// Refused: the flow decides.
    pub model: Option<Value>,
    /// Refused: the flow decides.
    pub tools: Option<Value>,
}

/// `POST /threads/{id}/runs/{id}/submit_tool_outputs`.
#[derive(Debug, Deserialize)]
pub struct SubmitToolOutputs {
    /// One output per waiting call.
    pub tool_outputs: Vec<ToolOutput>,
    /// Stream events instead of returning the run.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// One tool output.
#[derive(Debug, Deserialize)]
pub struct ToolOutput {
    /// The call answered.
    pub tool_call_id: String,
    /// The output (any string; JSON is passed to the model as is).
    #[serde(default)]
    pub output: String,
}

/// The `last_messages` a run's `truncation_strategy` asks for: `None` for `auto` (or no
/// strategy), which leaves the flow's `[limits]` in charge.
pub fn truncation_last_messages(strategy: Option<&Value>) -> Result<Option<u32>, ApiError> {
    let invalid = |message: &str| {
        Err(ApiError::bad_request(format!(
            "Invalid 'truncation_strategy': {message}. Send {{\"type\": \"auto\"}} or \
             {{\"type\": \"last_messages\", \"last_messages\": N}} with N at least 1."
        ))
        .param("truncation_strategy"))
    };
    let Some(strategy) = strategy.filter(|s| !s.is_null()) else {
        return Ok(None);
    };
    let Some(object) = strategy.as_object() else {
        return invalid("expected an object");
    };
    let count = object.get("last_messages").filter(|n| !n.is_null());
    match object.get("type").and_then(Value::as_str) {
        Some("auto") => Ok(None),
        Some("last_messages") => match count.and_then(Value::as_u64) {
            Some(n @ 1..) => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
            _ => invalid("'last_messages' must be a positive integer"),
        },
        Some(other) => invalid(&format!("unknown type '{other}'")),
        None => invalid("'type' is missing"),
    }
}

/// Refuses overrides of what the flow file decides.
pub fn refuse_overrides(fields: [(&str, &Option<Value>); 3]) -> Result<(), ApiError> {
    for (name, value) in fields {
        if value.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::bad_request(format!(
                "'{name}' cannot be overridden: the assistant's flow file sets it. Leave it out."
            ))
            .param(name));
        }
    }
    Ok(())
}

/// Metadata from a request: string values only, no reserved keys.
pub fn metadata_pairs(
    metadata: Option<&Map<String, Value>>,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for (key, value) in metadata.into_iter().flatten() {
        if key.starts_with(RESERVED_PREFIX) {
            return Err(ApiError::bad_request(format!(
                "Metadata keys starting with '{RESERVED_PREFIX}' are reserved by clarion serve; rename '{key}'."
            ))
            .param("metadata"));
        }
        let Value::String(text) = value else {
            return Err(ApiError::bad_request(format!(
                "Metadata value for '{key}' must be a string."
            ))
            .param("metadata"));
        };
        pairs.push((key.clone(), text.clone()));
    }
    Ok(pairs)
}
