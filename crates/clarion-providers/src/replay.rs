//! Record and replay: any model's exchanges saved to a file and served back offline.
//!
//! Recording happens at the engine's seam, not on the wire: a recording holds Clarion's
//! view of each request (instructions, messages, tool names) and the model's turn. So a
//! conversation recorded against one provider replays in CI with no network, no key and
//! no provider at all, and a recording never holds an `Authorization` header. Known secret
//! values are still redacted from the file, in case a prompt quoted one.
//!
//! Replay serves the recorded turns in order and insists the engine asks the same thing it
//! asked when recording; if it does not (a flow or engine change altered the request), it
//! fails with a unified diff of the two requests instead of answering a question nobody
//! recorded.

use clarion_engine::{IncompleteReason, ModelErrorKind};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use clarion_engine::BoxFuture;
use clarion_engine::ToolCall;
use clarion_engine::Usage;
use clarion_engine::{Event, EventSink};
use clarion_engine::{Model, ModelError, ModelRequest, ModelResponse, ModelTurn};

/// One recorded exchange (a line of the recording file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// What the engine asked.
    pub request: Value,
    /// What the model answered, or why it did not.
    pub outcome: Outcome,
}

/// A recorded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A turn.
    Turn {
        /// Text of the turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Tool calls of the turn.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        calls: Vec<ToolCall>,
        /// Tokens used.
        #[serde(default)]
        usage: Usage,
    },
    /// The provider stopped the turn short.
    Stopped {
        /// Why.
        reason: IncompleteReason,
        /// Tokens used.
        #[serde(default)]
        usage: Usage,
    },
    /// An error.
    Error {
        /// Its code.
        code: String,
        /// Its message.
        message: String,
    },
}

/// Clarion's view of a request: what decides the model's answer, without ids or times.
#[must_use]
pub fn canonical_request(request: &ModelRequest<'_>) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| serde_json::to_value(&m.kind).unwrap_or(Value::Null))
        .collect();
    json!({
        "model": request.flow.assistant.model,
        "instructions": request.instructions,
        "tools": request.flow.tools.keys().collect::<Vec<_>>(),
        "messages": messages,
    })
}

/// Wraps a model and appends every exchange to a JSON Lines file.
pub struct RecordingModel<M> {
    inner: M,
    path: PathBuf,
    secrets: Vec<String>,
    file: Mutex<Option<std::fs::File>>,
}

impl<M> std::fmt::Debug for RecordingModel<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingModel")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<M: Model> RecordingModel<M> {
    /// Records `inner`'s exchanges to `path` (created or truncated), replacing each of
    /// `secrets` with `***`.
    pub fn new(
        inner: M,
        path: impl Into<PathBuf>,
        secrets: Vec<String>,
    ) -> Result<Self, ModelError> {
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| record_error(&path, &e))?;
        }
        let file = std::fs::File::create(&path).map_err(|e| record_error(&path, &e))?;
        Ok(Self {
            inner,
            path,
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
            file: Mutex::new(Some(file)),
        })
    }

    fn write(&self, exchange: &Exchange) -> Result<(), ModelError> {
        let mut line = serde_json::to_string(exchange)
            .map_err(|e| ModelError::new(ModelErrorKind::Recording, e.to_string()))?;
        for secret in &self.secrets {
            line = line.replace(secret.as_str(), "***");
        }
        line.push('\n');
        let mut file = self.file.lock().map_err(|_| {
            ModelError::new(ModelErrorKind::Recording, "the recording lock was poisoned")
        })?;
        match file.as_mut() {
            Some(file) => file
                .write_all(line.as_bytes())
                .map_err(|e| record_error(&self.path, &e)),
            None => Ok(()),
        }
    }
}

fn record_error(path: &Path, error: &std::io::Error) -> ModelError {
    ModelError::new(
        ModelErrorKind::Recording,
        format!("cannot write the recording {}: {error}", path.display()),
    )
}

impl<M: Model> Model for RecordingModel<M> {
    fn describe(&self, flow: &clarion_flow::Flow) -> clarion_engine::observe::ModelInfo {
        self.inner.describe(flow)
    }

    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let canonical = canonical_request(&request);
            let result = self.inner.respond(request, events).await;
            let outcome = match &result {
                Ok(response) => match &response.turn {
                    ModelTurn::Text(text) => Outcome::Turn {
                        text: Some(text.clone()),
                        calls: Vec::new(),
                        usage: response.usage,
                    },
                    ModelTurn::ToolCalls { text, calls } => Outcome::Turn {
                        text: text.clone(),
                        calls: calls.clone(),
                        usage: response.usage,
                    },
                    ModelTurn::Stopped { reason } => Outcome::Stopped {
                        reason: *reason,
                        usage: response.usage,
                    },
                },
                Err(error) => Outcome::Error {
                    code: error.kind.as_str().to_owned(),
                    message: error.message.clone(),
                },
            };
            self.write(&Exchange {
                request: canonical,
                outcome,
            })?;
            result
        })
    }
}

/// Serves a recording back, in order, checking each request against the recorded one.
#[derive(Debug)]
pub struct ReplayModel {
    path: PathBuf,
    exchanges: Mutex<std::collections::VecDeque<Exchange>>,
    served: Mutex<usize>,
}

impl ReplayModel {
    /// Loads a recording.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, ModelError> {
        let path = path.into();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ModelError::new(
                ModelErrorKind::Replay,
                format!("cannot read the recording {}: {e}", path.display()),
            )
        })?;
        let mut exchanges = std::collections::VecDeque::new();
        for (number, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let exchange = serde_json::from_str(line).map_err(|e| {
                ModelError::new(
                    ModelErrorKind::Replay,
                    format!(
                        "{}:{}: not a recorded exchange: {e}",
                        path.display(),
                        number + 1
                    ),
                )
            })?;
            exchanges.push_back(exchange);
        }
        Ok(Self {
            path,
            exchanges: Mutex::new(exchanges),
            served: Mutex::new(0),
        })
    }

    fn next(&self, request: &Value) -> Result<Outcome, ModelError> {
        let poisoned = || ModelError::new(ModelErrorKind::Replay, "the replay lock was poisoned");
        let mut served = self.served.lock().map_err(|_| poisoned())?;
        let exchange = self
            .exchanges
            .lock()
            .map_err(|_| poisoned())?
            .pop_front()
            .ok_or_else(|| {
                ModelError::new(
                    ModelErrorKind::ReplayExhausted,
                    format!(
                        "{} holds {} exchange(s); the engine asked for one more",
                        self.path.display(),
                        *served
                    ),
                )
            })?;
        *served += 1;
        if &exchange.request != request {
            let recorded = serde_json::to_string_pretty(&exchange.request).unwrap_or_default();
            let asked = serde_json::to_string_pretty(request).unwrap_or_default();
            let diff = similar::TextDiff::from_lines(&recorded, &asked)
                .unified_diff()
                .context_radius(3)
                .header("recorded", "requested")
                .to_string();
            return Err(ModelError::new(
                ModelErrorKind::ReplayMismatch,
                format!(
                    "request #{} differs from {}; re-record it if the change is intended:\n{diff}",
                    *served,
                    self.path.display()
                ),
            ));
        }
        Ok(exchange.outcome)
    }
}

impl Model for ReplayModel {
    fn describe(&self, flow: &clarion_flow::Flow) -> clarion_engine::observe::ModelInfo {
        clarion_engine::observe::ModelInfo {
            system: "replay",
            model: flow.assistant.model.clone(),
        }
    }

    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            match self.next(&canonical_request(&request))? {
                Outcome::Turn { text, calls, usage } => {
                    if let Some(text) = &text {
                        events.emit(&Event::TextDelta { text: text.clone() });
                    }
                    let turn = if calls.is_empty() {
                        ModelTurn::Text(text.unwrap_or_default())
                    } else {
                        ModelTurn::ToolCalls { text, calls }
                    };
                    Ok(ModelResponse { turn, usage })
                }
                Outcome::Stopped { reason, usage } => Ok(ModelResponse {
                    turn: ModelTurn::Stopped { reason },
                    usage,
                }),
                Outcome::Error { code, message } => recorded(&code, message),
            }
        })
    }
}

/// A recorded error, as it is replayed. Recordings made before a cut-off turn was a turn
/// of its own stored it as an error coded `length` or `content_filter`; those replay as the
/// turn they were. A code this build does not know replays as a provider error.
fn recorded(code: &str, message: String) -> Result<ModelResponse, ModelError> {
    let stopped = |reason| {
        Ok(ModelResponse {
            turn: ModelTurn::Stopped { reason },
            usage: Usage::default(),
        })
    };
    match code {
        "length" => stopped(IncompleteReason::MaxOutputTokens),
        "content_filter" => stopped(IncompleteReason::ContentFilter),
        _ => Err(ModelError::new(
            ModelErrorKind::parse(code).unwrap_or(ModelErrorKind::ProviderError),
            message,
        )),
    }
}
