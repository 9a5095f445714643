//! The OpenAI Responses API (`POST /responses`).
//!
//! Clarion keeps the conversation itself, so every request sends the whole history as
//! input items with `store: false` — nothing is left on the provider's side. Tool calls are
//! `function_call` items and their outputs `function_call_output` items, paired by
//! `call_id`; injected context is a `system` input item (or a `[context]` user item).
//! Streaming reads the `response.*` events: `response.output_text.delta` for text as it
//! arrives, and the final `response.completed` (or `.incomplete` / `.failed`) for the turn.

use clarion_engine::ModelErrorKind;
use serde_json::{Value, json};

use crate::chat_completions::{event_json, mid_stream_error, turn};
use crate::config::{ContextRole, ProviderConfig};
use crate::http::{ChunkReader, ProviderClient};
use crate::sse::SseDecoder;
use clarion_engine::BoxFuture;
use clarion_engine::Usage;
use clarion_engine::{Event, EventSink};
use clarion_engine::{MessageKind, ToolCall};
use clarion_engine::{Model, ModelError, ModelRequest, ModelResponse};
use clarion_flow::export::{ExportFormat, definition_offering};

/// A Responses API model.
#[derive(Debug, Clone)]
pub struct Responses {
    client: ProviderClient,
}

impl Responses {
    /// A model behind `config`. Fails, as a configuration error, when its base URL, a
    /// configured header or the key cannot go into a request: at start, not at the
    /// first turn.
    pub fn new(config: ProviderConfig) -> Result<Self, ModelError> {
        Ok(Self {
            client: ProviderClient::new(config, "responses")?,
        })
    }
}

impl Model for Responses {
    fn describe(&self, flow: &clarion_flow::Flow) -> clarion_engine::observe::ModelInfo {
        self.client.describe(flow)
    }

    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let config = self.client.config();
            let body = request_body(config, &request);
            let response = self.client.post(&body).await?;
            if config.stream {
                return read_stream(&self.client, response, events).await;
            }
            let body = self.client.read_json(response).await?;
            let response = parse_response(&body)?;
            if let Some(text) = response_text(&body) {
                events.emit(&Event::TextDelta { text });
            }
            Ok(response)
        })
    }
}

/// The request body for `request`.
#[must_use]
pub fn request_body(config: &ProviderConfig, request: &ModelRequest<'_>) -> Value {
    let mut body = definition_offering(
        request.flow,
        ExportFormat::Responses,
        request.instructions.to_owned(),
        &|tool| request.offers(tool),
    );
    if let Some(model) = &config.model {
        body.insert("model".to_owned(), Value::String(model.clone()));
    }
    if let Some(choice) = request.tool_choice_override(ExportFormat::Responses) {
        body.insert("tool_choice".to_owned(), choice);
    }
    let mut input = Vec::new();
    for message in request.messages {
        match &message.kind {
            MessageKind::User { text } => input.push(json!({ "role": "user", "content": text })),
            MessageKind::Assistant { text } | MessageKind::Question { text, .. } => {
                input.push(json!({ "role": "assistant", "content": text }));
            }
            MessageKind::ToolCalls { text, calls } => {
                if let Some(text) = text {
                    input.push(json!({ "role": "assistant", "content": text }));
                }
                input.extend(calls.iter().map(|c| {
                    json!({ "type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments })
                }));
            }
            MessageKind::ToolOutput {
                call_id, content, ..
            } => {
                input.push(json!({ "type": "function_call_output", "call_id": call_id, "output": content }));
            }
            MessageKind::Context { text, .. } => input.push(match config.context_role {
                ContextRole::System => json!({ "role": "system", "content": text }),
                ContextRole::User => {
                    json!({ "role": "user", "content": format!("[context] {text}") })
                }
            }),
        }
    }
    body.insert("input".to_owned(), Value::Array(input));
    if config.stream {
        body.insert("stream".to_owned(), Value::Bool(true));
    }
    Value::Object(body)
}

/// Parses a response object (the whole body, or the `response` of `response.completed`).
pub fn parse_response(body: &Value) -> Result<ModelResponse, ModelError> {
    if let Some(error) = body.get("error").filter(|e| !e.is_null()) {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(ModelError::new(
            ModelErrorKind::ProviderError,
            format!("the provider returned an error: {message}"),
        ));
    }
    let output = body
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ModelError::new(
                ModelErrorKind::InvalidResponse,
                "the response has no `output`",
            )
        })?;
    let calls: Vec<ToolCall> = output
        .iter()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("function_call"))
        .map(|item| ToolCall {
            id: item
                .get("call_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            name: item
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            arguments: match item.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
        })
        .collect();
    let finish = match body.get("status").and_then(Value::as_str) {
        Some("incomplete") => match body
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str)
        {
            Some("content_filter") => Some("content_filter"),
            _ => Some("length"),
        },
        Some("failed") => {
            return Err(ModelError::new(
                ModelErrorKind::ProviderError,
                "the provider reports the response as failed",
            ));
        }
        _ => None,
    };
    let usage = Usage {
        prompt_tokens: body
            .pointer("/usage/input_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        completion_tokens: body
            .pointer("/usage/output_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    };
    Ok(turn(response_text(body), calls, finish, usage))
}

/// The text of the response's `message` items.
fn response_text(body: &Value) -> Option<String> {
    let text: String = body
        .get("output")?
        .as_array()?
        .iter()
        .filter(|item| item.get("type").and_then(Value::as_str) == Some("message"))
        .flat_map(|item| {
            item.get("content")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|part| {
            part.get("text")
                .and_then(Value::as_str)
                .map(ToOwned::to_owned)
        })
        .collect();
    (!text.is_empty()).then_some(text)
}

async fn read_stream(
    client: &ProviderClient,
    response: reqwest::Response,
    events: &dyn EventSink,
) -> Result<ModelResponse, ModelError> {
    let mut decoder = SseDecoder::default();
    let mut chunks = ChunkReader::new(client, response);
    loop {
        let batch = if let Some(bytes) = chunks.next().await? {
            decoder.push(&bytes)
        } else {
            let last: Vec<_> = decoder.finish().into_iter().collect();
            if last.is_empty() {
                return Err(ModelError::new(
                    ModelErrorKind::StreamInterrupted,
                    "the stream ended before the response completed",
                ));
            }
            last
        };
        for event in batch {
            let data = event.data.trim();
            if data.is_empty() || data == "[DONE]" {
                continue;
            }
            let value = event_json(client, data)?;
            let kind = value
                .get("type")
                .and_then(Value::as_str)
                .or(event.event.as_deref())
                .unwrap_or_default();
            match kind {
                "response.output_text.delta" => {
                    if let Some(delta) = value.get("delta").and_then(Value::as_str) {
                        events.emit(&Event::TextDelta {
                            text: delta.to_owned(),
                        });
                    }
                }
                "response.completed" | "response.incomplete" | "response.failed" => {
                    let response = value.get("response").cloned().unwrap_or(Value::Null);
                    return parse_response(&response);
                }
                "error" => return Err(mid_stream_error(client, &value)),
                _ => {}
            }
        }
    }
}
