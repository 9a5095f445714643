//! A model that plays from a script: a queue of turns, one per request.
//!
//! Tests and scenarios use it to make the engine's behaviour exact and offline. It fails
//! clearly — never hangs or improvises — when the script runs out, and a turn can state
//! what it expects of the request (e.g. that the last message is a given tool's output),
//! so a script that has drifted from the engine's behaviour says so.

use crate::codes::ModelErrorKind;
use std::collections::VecDeque;
use std::sync::Mutex;

use super::{Model, ModelError, ModelRequest, ModelResponse, ModelTurn};
use crate::BoxFuture;
use crate::events::{Event, EventSink};
use crate::run::Usage;
use crate::thread::{MessageKind, ToolCall};

/// One scripted turn and, optionally, what the request must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedTurn {
    /// What the model "says".
    pub turn: ModelTurn,
    /// If set, the text of the last user message must contain this.
    pub expect_user: Option<String>,
}

impl ScriptedTurn {
    /// A text reply.
    #[must_use]
    pub fn text(text: &str) -> Self {
        Self {
            turn: ModelTurn::Text(text.to_owned()),
            expect_user: None,
        }
    }

    /// One tool call with JSON arguments (written as the model would: a string).
    #[must_use]
    pub fn call(name: &str, arguments: &str) -> Self {
        Self::calls(&[(name, arguments)])
    }

    /// Several tool calls in one turn.
    #[must_use]
    pub fn calls(calls: &[(&str, &str)]) -> Self {
        Self {
            turn: ModelTurn::ToolCalls {
                text: None,
                calls: calls
                    .iter()
                    .map(|(name, arguments)| ToolCall {
                        id: String::new(),
                        name: (*name).to_owned(),
                        arguments: (*arguments).to_owned(),
                    })
                    .collect(),
            },
            expect_user: None,
        }
    }

    /// Requires the last user message to contain `text`.
    #[must_use]
    pub fn expecting_user(mut self, text: &str) -> Self {
        self.expect_user = Some(text.to_owned());
        self
    }
}

/// Plays scripted turns in order.
#[derive(Debug, Default)]
pub struct ScriptedModel {
    turns: Mutex<VecDeque<ScriptedTurn>>,
    played: Mutex<usize>,
}

impl ScriptedModel {
    /// A model that will play `turns` in order.
    #[must_use]
    pub fn new(turns: impl IntoIterator<Item = ScriptedTurn>) -> Self {
        Self {
            turns: Mutex::new(turns.into_iter().collect()),
            played: Mutex::new(0),
        }
    }

    /// Adds turns at the end of the script.
    pub fn push(&self, turns: impl IntoIterator<Item = ScriptedTurn>) {
        if let Ok(mut queue) = self.turns.lock() {
            queue.extend(turns);
        }
    }

    /// Turns not played yet.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.turns.lock().map_or(0, |q| q.len())
    }

    fn next(&self, request: &ModelRequest<'_>) -> Result<ScriptedTurn, ModelError> {
        let mut played = self.played.lock().map_err(|_| poisoned())?;
        let turn = self
            .turns
            .lock()
            .map_err(|_| poisoned())?
            .pop_front()
            .ok_or_else(|| {
                ModelError::new(
                    ModelErrorKind::ScriptExhausted,
                    format!(
                        "the script has no turn left for model request #{}",
                        *played + 1
                    ),
                )
            })?;
        *played += 1;
        if let Some(expected) = &turn.expect_user {
            let last_user = request.messages.iter().rev().find_map(|m| match &m.kind {
                MessageKind::User { text } => Some(text.as_str()),
                _ => None,
            });
            if !last_user.is_some_and(|text| text.contains(expected.as_str())) {
                return Err(ModelError::new(
                    ModelErrorKind::ScriptMismatch,
                    format!(
                        "turn #{} expects the last user message to contain {expected:?}, but it is {:?}",
                        *played,
                        last_user.unwrap_or("(none)")
                    ),
                ));
            }
        }
        Ok(turn)
    }
}

fn poisoned() -> ModelError {
    ModelError::new(
        ModelErrorKind::ScriptPoisoned,
        "the script's lock was poisoned by a panic",
    )
}

impl Model for ScriptedModel {
    fn describe(&self, flow: &clarion_flow::Flow) -> crate::observe::ModelInfo {
        crate::observe::ModelInfo {
            system: "scripted",
            model: flow.assistant.model.clone(),
        }
    }

    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let turn = self.next(&request)?;
            if let ModelTurn::Text(text) = &turn.turn {
                events.emit(&Event::TextDelta { text: text.clone() });
            }
            Ok(ModelResponse {
                turn: turn.turn,
                usage: Usage::default(),
            })
        })
    }
}
