//! Threads: one conversation's messages, slots, metadata and pending call.
//!
//! A thread is plain data. The engine changes it only inside a run, a step at a time, and
//! the store saves each step atomically, so a thread read from the store is always one the
//! engine could have left: never a tool call without its output, never half a step.

mod message;
mod metadata;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use message::{Message, MessageKind, OutputStatus, ToolCall, content_value};
pub use metadata::{MAX_KEY_CHARS, MAX_KEYS, MAX_VALUE_CHARS, Metadata, MetadataError};

/// A conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    /// `thread_…`.
    pub id: String,
    /// The flow it runs (`flow.name`).
    pub flow: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Every message, oldest first.
    pub messages: Vec<Message>,
    /// Slot values remembered across turns.
    pub slots: Map<String, Value>,
    /// String metadata for the embedding application.
    pub metadata: Metadata,
    /// A tool call waiting for the user's answers.
    pub pending: Option<PendingCall>,
    /// The run holding the thread's lock, if one is active.
    pub active_run: Option<String>,
    /// The flows that took the thread over from its own (`flow = "…"` tools), oldest
    /// first: the last one runs it, with `slots`. Empty: the thread's own flow runs it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<Handoff>,
}

/// A flow that took a thread over: the call of a tool with `flow = "…"` handed it on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    /// The flow that runs the thread from here (`flow.name`).
    pub flow: String,
    /// The tool, of the flow before, whose call handed the thread over.
    pub tool: String,
    /// The slots of the flow before, kept while this one runs: they are its slots again
    /// when the thread comes back.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub slots_before: Map<String, Value>,
    /// Whether the thread comes back to the flow before (the tool has `returns`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub comes_back: bool,
}

/// The flow that runs a thread: the last of its route, else its own.
#[must_use]
pub(crate) fn active_flow<'t>(flow: &'t str, route: &'t [Handoff]) -> &'t str {
    route.last().map_or(flow, |handoff| handoff.flow.as_str())
}

/// A call that could not run yet: required parameters were missing (its known arguments
/// fill the same tool's next call), or it waits for the user's confirmation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCall {
    /// The call that was answered with `needs_input`.
    pub call_id: String,
    /// The tool.
    pub tool: String,
    /// Arguments already known (validated).
    pub known: Map<String, Value>,
    /// Parameters still missing, in declaration order.
    pub missing: Vec<String>,
    /// Set when nothing is missing and the call waits for the user's confirmation
    /// (`confirm`): the question they were asked. `known` then holds every argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
    /// How many times the user has been asked for each parameter while this call (and
    /// the calls it continues) waited: what `max_asks` is compared with. Absent in
    /// threads stored before it existed, which then count their one question.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub asked: BTreeMap<String, u32>,
}

impl PendingCall {
    /// How many times the user has been asked for `param` so far.
    #[must_use]
    pub fn times_asked(&self, param: &str) -> u32 {
        self.asked
            .get(param)
            .copied()
            .unwrap_or_else(|| u32::from(self.missing.iter().any(|m| m == param)))
    }
}

impl Thread {
    /// A new, empty thread for `flow`.
    #[must_use]
    pub fn new(id: String, flow: String, created_at: i64, metadata: Metadata) -> Self {
        Self {
            id,
            flow,
            created_at,
            messages: Vec::new(),
            slots: Map::new(),
            metadata,
            pending: None,
            active_run: None,
            route: Vec::new(),
        }
    }

    /// The flow that runs the thread now: the last of its [route](Thread::route), else
    /// its own.
    #[must_use]
    pub fn active_flow(&self) -> &str {
        active_flow(&self.flow, &self.route)
    }
}
