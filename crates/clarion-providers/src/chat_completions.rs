//! OpenAI Chat Completions (`POST /chat/completions`), the protocol nearly every server
//! speaks: OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp's `llama-server`, LM Studio,
//! OpenRouter, Groq.
//!
//! The request starts from the flow's export ([`clarion_flow::export::definition`]), so `clarion
//! export` shows exactly what the model receives, and appends the conversation:
//!
//! | Clarion message | Chat Completions message |
//! | --- | --- |
//! | user | `user` |
//! | assistant reply, clarification question | `assistant` |
//! | tool calls | `assistant` with `tool_calls` (arguments as a JSON string) |
//! | tool output | `tool` with `tool_call_id` |
//! | injected context | `system` (or `user` with `[context]`, see [`ContextRole`]) |
//!
//! Responses are read whole or streamed (SSE): text deltas become `TextDelta` events as
//! they arrive, and tool-call deltas are assembled by their `index`.

use clarion_engine::{IncompleteReason, ModelErrorKind};
use std::collections::BTreeMap;

use std::borrow::Cow;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::config::{ContextRole, ProviderConfig};
use crate::http::{ChunkReader, ProviderClient};
use crate::sse::SseDecoder;
use clarion_engine::BoxFuture;
use clarion_engine::Usage;
use clarion_engine::{Event, EventSink};
use clarion_engine::{MessageKind, ToolCall};
use clarion_engine::{Model, ModelError, ModelRequest, ModelResponse, ModelTurn};
use clarion_flow::export::{ExportFormat, definition_borrowing};

/// A Chat Completions model.
#[derive(Debug, Clone)]
pub struct ChatCompletions {
    client: ProviderClient,
}

impl ChatCompletions {
    /// A model behind `config`. Fails, as a configuration error, when its base URL, a
    /// configured header or the key cannot go into a request: at start, not at the
    /// first turn.
    pub fn new(config: ProviderConfig) -> Result<Self, ModelError> {
        Ok(Self {
            client: ProviderClient::new(config, "chat/completions")?,
        })
    }
}

impl Model for ChatCompletions {
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
            let response = self
                .client
                .post(&RequestBody::new(config, &request))
                .await?;
            if config.stream {
                read_stream(&self.client, response, events).await
            } else {
                let body = self.client.read_json(response).await?;
                let response = parse_response(&body)?;
                if let ModelTurn::Text(text)
                | ModelTurn::ToolCalls {
                    text: Some(text), ..
                } = &response.turn
                {
                    events.emit(&Event::TextDelta { text: text.clone() });
                }
                Ok(response)
            }
        })
    }
}

/// The request body for `request`.
#[must_use]
pub fn request_body(config: &ProviderConfig, request: &ModelRequest<'_>) -> Value {
    // Serializing into a `Value` cannot fail: every key is a string.
    serde_json::to_value(RequestBody::new(config, request)).unwrap_or_default()
}

/// The request body, serialized straight from the thread's messages: [`request_body`]'s
/// JSON, byte for byte, without building a `Value` tree of the whole history for every
/// request (on a long thread, building and dropping it was most of a step's CPU).
pub struct RequestBody<'a> {
    /// Everything but the messages and the tools, in order; `null`s hold their places.
    head: Map<String, Value>,
    /// The offered tools' JSON, borrowed from the flow's export cache.
    tools: Vec<&'a serde_json::value::RawValue>,
    instructions: &'a str,
    messages: &'a [clarion_engine::Message],
    context_role: ContextRole,
}

impl<'a> RequestBody<'a> {
    /// The body for `request`.
    #[must_use]
    pub fn new(config: &ProviderConfig, request: &ModelRequest<'a>) -> Self {
        // The instructions go in as the first message when the body is written.
        let (mut body, tools) = definition_borrowing(
            request.flow,
            ExportFormat::ChatCompletions,
            String::new(),
            &|tool| request.offers(tool),
        );
        if let Some(model) = &config.model {
            body.insert("model".to_owned(), Value::String(model.clone()));
        }
        if let Some(choice) = request.tool_choice_override(ExportFormat::ChatCompletions) {
            body.insert("tool_choice".to_owned(), choice);
        }
        if config.legacy_max_tokens
            && let Some(n) = body.remove("max_completion_tokens")
        {
            body.insert("max_tokens".to_owned(), n);
        }
        // A placeholder where the messages go, so the keys keep the order they always had.
        body.insert("messages".to_owned(), Value::Null);
        if config.stream {
            body.insert("stream".to_owned(), Value::Bool(true));
            body.insert(
                "stream_options".to_owned(),
                json!({ "include_usage": true }),
            );
        }
        Self {
            head: body,
            tools,
            instructions: request.instructions,
            messages: request.messages,
            context_role: config.context_role,
        }
    }
}

impl Serialize for RequestBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.head.len()))?;
        for (key, value) in &self.head {
            if key == "messages" {
                map.serialize_entry(key, &Messages(self))?;
            } else if key == "tools" {
                map.serialize_entry(key, &self.tools)?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// The `messages` array: the instructions as the system message, then the thread's.
struct Messages<'b, 'a>(&'b RequestBody<'a>);

impl Serialize for Messages<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let body = self.0;
        let mut seq = serializer.serialize_seq(Some(body.messages.len() + 1))?;
        seq.serialize_element(&Out::Text {
            role: "system",
            content: body.instructions.into(),
        })?;
        for message in body.messages {
            seq.serialize_element(&out(&message.kind, body.context_role))?;
        }
        seq.end()
    }
}

/// One Chat Completions message, its keys in the order the protocol's examples use.
#[derive(Serialize)]
#[serde(untagged)]
enum Out<'a> {
    Text {
        role: &'static str,
        content: Cow<'a, str>,
    },
    Calls {
        role: &'static str,
        content: Option<&'a str>,
        tool_calls: Vec<OutCall<'a>>,
    },
    Tool {
        role: &'static str,
        tool_call_id: &'a str,
        content: &'a str,
    },
}

#[derive(Serialize)]
struct OutCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    arguments: &'a str,
}

fn text<'a>(role: &'static str, content: &'a str) -> Out<'a> {
    Out::Text {
        role,
        content: content.into(),
    }
}

fn out(kind: &MessageKind, context_role: ContextRole) -> Out<'_> {
    match kind {
        MessageKind::User { text: content } => text("user", content),
        MessageKind::Assistant { text: content } | MessageKind::Question { text: content, .. } => {
            text("assistant", content)
        }
        MessageKind::ToolCalls { text, calls } => Out::Calls {
            role: "assistant",
            content: text.as_deref(),
            tool_calls: calls
                .iter()
                .map(|c| OutCall {
                    id: &c.id,
                    kind: "function",
                    function: OutFunction {
                        name: &c.name,
                        arguments: &c.arguments,
                    },
                })
                .collect(),
        },
        MessageKind::ToolOutput {
            call_id, content, ..
        } => Out::Tool {
            role: "tool",
            tool_call_id: call_id,
            content,
        },
        MessageKind::Context { text: content, .. } => match context_role {
            ContextRole::System => text("system", content),
            ContextRole::User => Out::Text {
                role: "user",
                content: format!("[context] {content}").into(),
            },
        },
    }
}

/// Parses a non-streamed response.
pub fn parse_response(body: &Value) -> Result<ModelResponse, ModelError> {
    if let Some(error) = body.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(ModelError::new(
            ModelErrorKind::ProviderError,
            format!("the provider returned an error: {message}"),
        ));
    }
    let choice = body
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| {
            ModelError::new(
                ModelErrorKind::InvalidResponse,
                "the response has no choices",
            )
        })?;
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let text = content_text(message.get("content"));
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| calls.iter().map(tool_call).collect())
        .unwrap_or_default();
    let finish_reason = choice.get("finish_reason").and_then(Value::as_str);
    Ok(turn(
        text,
        calls,
        finish_reason,
        usage_from(body.get("usage")),
    ))
}

/// Builds the turn: a finish reason that cut it off makes it `Stopped` (not an error).
pub(super) fn turn(
    text: Option<String>,
    calls: Vec<ToolCall>,
    finish_reason: Option<&str>,
    usage: Usage,
) -> ModelResponse {
    let stopped = match finish_reason {
        Some("length") => Some(IncompleteReason::MaxOutputTokens),
        Some("content_filter") => Some(IncompleteReason::ContentFilter),
        _ => None,
    };
    let turn = if let Some(reason) = stopped {
        ModelTurn::Stopped { reason }
    } else if calls.is_empty() {
        ModelTurn::Text(text.unwrap_or_default())
    } else {
        ModelTurn::ToolCalls { text, calls }
    };
    ModelResponse { turn, usage }
}

/// `content` may be a string, null, "" or (some servers) an array of parts.
fn content_text(content: Option<&Value>) -> Option<String> {
    let text = match content? {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

fn tool_call(call: &Value) -> ToolCall {
    let function = call.get("function");
    ToolCall {
        id: call
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        name: function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        arguments: arguments_text(function.and_then(|f| f.get("arguments"))),
    }
}

/// Arguments are a JSON *string*; a server that sends an object gets it re-serialised.
fn arguments_text(arguments: Option<&Value>) -> String {
    match arguments {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

pub(super) fn usage_from(usage: Option<&Value>) -> Usage {
    let field = |name: &str| {
        usage
            .and_then(|u| u.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Usage {
        prompt_tokens: field("prompt_tokens"),
        completion_tokens: field("completion_tokens"),
    }
}

/// A tool call being assembled from stream deltas.
#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// What a stream has said so far.
#[derive(Debug, Default)]
struct StreamState {
    text: String,
    calls: BTreeMap<u64, PartialCall>,
    finish_reason: Option<String>,
    usage: Usage,
    done: bool,
}

/// One streamed chunk, its text borrowed from the event: a well-formed chunk parses
/// straight into this (building a `Value` tree of every chunk was ~3% of a `clarion chat`
/// round trip). A chunk with a field of another type than the protocol's is read as a
/// `Value` and taken apart leniently instead ([`Chunk::lenient`]), so both ways give the
/// same turn.
#[derive(Debug, Default, Deserialize)]
struct Chunk<'a> {
    /// Present: the provider reports an error, which the lenient reading describes.
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    usage: Option<Value>,
    /// Only the first choice is read (Clarion asks for one).
    #[serde(default, borrow)]
    choices: Option<Vec<Choice<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<CallDelta<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
struct CallDelta<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

impl<'a> Chunk<'a> {
    /// What a chunk of any shape says, as the protocol's types: a field of another type is
    /// left out, except arguments sent as a JSON value instead of its text.
    fn lenient(chunk: &'a Value) -> Self {
        let text = |value: &'a Value, key: &str| value.get(key)?.as_str().map(Cow::Borrowed);
        let choice = |choice: &'a Value| {
            let delta = choice.get("delta").map(|delta| Delta {
                content: text(delta, "content"),
                tool_calls: delta
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .map(|calls| {
                        calls
                            .iter()
                            .map(|call| CallDelta {
                                index: call.get("index").and_then(Value::as_u64),
                                id: text(call, "id"),
                                function: call.get("function").map(|function| FunctionDelta {
                                    name: text(function, "name"),
                                    arguments: match function.get("arguments") {
                                        Some(Value::String(piece)) => Some(Cow::Borrowed(piece)),
                                        Some(Value::Null) | None => None,
                                        Some(other) => Some(Cow::Owned(other.to_string())),
                                    },
                                }),
                            })
                            .collect()
                    }),
            });
            Choice {
                delta,
                finish_reason: text(choice, "finish_reason"),
            }
        };
        Self {
            error: None,
            usage: chunk.get("usage").cloned(),
            choices: chunk
                .get("choices")
                .and_then(Value::as_array)
                .and_then(|choices| choices.first())
                .map(|first| vec![choice(first)]),
        }
    }
}

impl StreamState {
    /// Applies one `data:` payload.
    fn apply(
        &mut self,
        client: &ProviderClient,
        data: &str,
        events: &dyn EventSink,
    ) -> Result<(), ModelError> {
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let value: Value;
        let chunk = match serde_json::from_str::<Chunk<'_>>(data) {
            Ok(chunk) if chunk.error.is_none() => chunk,
            _ => {
                value = event_json(client, data)?;
                if let Some(error) = value.get("error").filter(|error| !error.is_null()) {
                    return Err(mid_stream_error(client, error));
                }
                Chunk::lenient(&value)
            }
        };
        if let Some(usage) = chunk.usage.as_ref().filter(|usage| usage.is_object()) {
            self.usage = usage_from(Some(usage));
        }
        let Some(choice) = chunk.choices.unwrap_or_default().into_iter().next() else {
            return Ok(());
        };
        let delta = choice.delta.unwrap_or_default();
        if let Some(piece) = delta.content
            && !piece.is_empty()
        {
            self.text.push_str(&piece);
            events.emit(&Event::TextDelta {
                text: piece.into_owned(),
            });
        }
        for (position, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
            let index = call.index.unwrap_or(position as u64);
            let partial = self.calls.entry(index).or_default();
            if let Some(id) = call.id {
                partial.id = id.into_owned();
            }
            if let Some(function) = call.function {
                if let Some(name) = function.name {
                    partial.name.push_str(&name);
                }
                if let Some(piece) = function.arguments {
                    partial.arguments.push_str(&piece);
                }
            }
        }
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(reason.into_owned());
        }
        Ok(())
    }

    fn into_response(self) -> Result<ModelResponse, ModelError> {
        if !self.done && self.finish_reason.is_none() {
            return Err(ModelError::new(
                ModelErrorKind::StreamInterrupted,
                "the stream ended before the model finished its turn",
            ));
        }
        let calls = self
            .calls
            .into_values()
            .map(|c| ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            })
            .collect();
        let text = (!self.text.is_empty()).then_some(self.text);
        Ok(turn(text, calls, self.finish_reason.as_deref(), self.usage))
    }
}

/// Reads a streamed response: text deltas are emitted as they arrive; tool-call deltas are
/// assembled by index. A stream that ends before `[DONE]` or a finish reason is an error,
/// never a silently truncated turn.
async fn read_stream(
    client: &ProviderClient,
    response: reqwest::Response,
    events: &dyn EventSink,
) -> Result<ModelResponse, ModelError> {
    let mut decoder = SseDecoder::default();
    let mut state = StreamState::default();
    let mut chunks = ChunkReader::new(client, response);
    while !state.done {
        let Some(bytes) = chunks.next().await? else {
            if let Some(event) = decoder.finish() {
                state.apply(client, event.data.trim(), events)?;
            }
            break;
        };
        for event in decoder.push(&bytes) {
            state.apply(client, event.data.trim(), events)?;
            if state.done {
                break;
            }
        }
    }
    state.into_response()
}

/// A stream event's `data` as JSON, or the error that says it is not.
pub(super) fn event_json(client: &ProviderClient, data: &str) -> Result<Value, ModelError> {
    serde_json::from_str(data).map_err(|e| {
        ModelError::new(
            ModelErrorKind::InvalidResponse,
            format!(
                "a stream event is not valid JSON ({e}): {}",
                excerpt(&client.redact(data))
            ),
        )
    })
}

/// The error a provider reported in a stream: `error` is the event's error object.
pub(super) fn mid_stream_error(client: &ProviderClient, error: &Value) -> ModelError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    ModelError::new(
        ModelErrorKind::ProviderError,
        format!(
            "the provider reported an error mid-stream: {}",
            client.redact(message)
        ),
    )
}

pub(super) fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}
