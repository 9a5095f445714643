//! The scenario file as written: plain serde types, one per TOML table.
//!
//! As for flows, these types are the single source of truth: `schemars` turns them (and
//! their doc comments) into `schemas/scenario.schema.json`, which editors read and which
//! the loader validates every scenario against. Rules a JSON Schema cannot express (a tool
//! must exist in the flow, `call` and `calls` exclude each other…) live in
//! [`super::check`].

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A conversation scenario: the user's turns, what the model does in each, tool stand-ins
/// and expectations. Reference: docs/testing.md.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Clarion scenario")]
pub struct ScenarioFile {
    /// What this scenario is about.
    #[serde(default)]
    pub scenario: ScenarioMeta,
    /// Stand-ins for tools, by tool name: every call of the tool gets this outcome unless
    /// its model step gives one of its own.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub mocks: IndexMap<String, MockSpec>,
    /// The conversation, one user message per turn.
    #[schemars(length(min = 1))]
    pub turns: Vec<TurnSpec>,
}

/// `[scenario]`: identification and set-up.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioMeta {
    /// A short title; the file name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub name: Option<String>,
    /// What the scenario shows, in a sentence or two (kept in the snapshot's header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The flow file, relative to this file. By default `flows/NAME/scenarios/*.toml` use
    /// `flows/NAME.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub flow: Option<String>,
    /// Thread metadata (what an app would attach, e.g. `{ today = "2025-06-02" }`), readable
    /// as `metadata.KEY` in the flow's instructions.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub metadata: IndexMap<String, String>,
}

/// A tool stand-in: exactly one of `result`, `error` or `timeout`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MockSpec {
    /// The tool's result, as JSON (a TOML table, array or value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The tool fails with this error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MockError>,
    /// The tool does not answer in time (the call fails with a `timeout` error at once;
    /// nothing waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<bool>,
}

/// A tool error, as the model and `on_error` rules see it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MockError {
    /// The error's kind (`error.kind` in `on_error` templates).
    #[serde(default)]
    pub kind: ErrorKind,
    /// What happened (`error.message`).
    pub message: String,
}

/// Kinds of tool errors a mock can raise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The tool ran and failed.
    #[default]
    Failed,
    /// The tool or the service behind it is unreachable.
    Unavailable,
    /// The tool refused the request.
    Refused,
    /// The tool answered with something unusable.
    InvalidOutput,
    /// The tool took too long.
    Timeout,
}

impl ErrorKind {
    /// The engine's kind for it.
    #[must_use]
    pub fn tool_kind(self) -> clarion_engine::ToolErrorKind {
        use clarion_engine::ToolErrorKind;
        match self {
            Self::Failed => ToolErrorKind::Failed,
            Self::Unavailable => ToolErrorKind::Unavailable,
            Self::Refused => ToolErrorKind::Refused,
            Self::InvalidOutput => ToolErrorKind::InvalidOutput,
            Self::Timeout => ToolErrorKind::Timeout,
        }
    }

    /// The kind as the engine writes it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Unavailable => "unavailable",
            Self::Refused => "refused",
            Self::InvalidOutput => "invalid_output",
            Self::Timeout => "timeout",
        }
    }
}

/// `[[turns]]`: one user message, the model's steps that answer it, and what to expect.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnSpec {
    /// What the user says.
    #[schemars(length(min = 1))]
    pub user: String,
    /// What the model does, one entry per model request, in order: a reply (`text`), or
    /// tool calls (`call` or `calls`). Needed by scripted runs; a live or replayed run
    /// ignores it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model: Vec<StepSpec>,
    /// Outputs the app submits for client tools, in order, when the run waits for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub submit: Vec<SubmitSpec>,
    /// What must have happened by the end of the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<ExpectSpec>,
}

/// `[[turns.model]]`: one model response. `text` alone is a reply; with `call` or `calls`
/// it is text alongside tool calls.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The reply (or text alongside tool calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Calls one tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    /// The call's arguments, checked against the tool's parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
    /// The call's arguments as raw text, exactly as a model would write them — for
    /// invalid JSON or unknown parameters. Not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// Several tool calls in one response (parallel calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub calls: Option<Vec<CallSpec>>,
    /// This call's result, instead of the tool's mock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// This call fails with this error, instead of the tool's mock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MockError>,
    /// This call times out, instead of the tool's mock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<bool>,
    /// The model reading the user's answer to a confirmation question (`confirm`): what
    /// it takes the answer to mean. A step of its own, before the flow's model replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide: Option<DecideSpec>,
    /// With `decide = "change"`: the arguments the user changed, with their new values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Map<String, Value>>,
}

/// `decide`: what the user's answer to a confirmation question means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecideSpec {
    /// The user agrees: the call runs.
    Confirm,
    /// The user refuses: the call is answered `declined`.
    Decline,
    /// The user wants other values (`changes`): the changed call is confirmed again.
    Change,
    /// The answer is about something else: the waiting call is dropped.
    Unrelated,
}

impl DecideSpec {
    /// The decision as the judge writes it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Decline => "decline",
            Self::Change => "change",
            Self::Unrelated => "unrelated",
        }
    }
}

/// One of several calls in a model response.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    /// The tool.
    #[schemars(length(min = 1))]
    pub tool: String,
    /// The arguments, checked against the tool's parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
    /// The arguments as raw text (not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// This call's result, instead of the tool's mock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// This call fails with this error, instead of the tool's mock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MockError>,
    /// This call times out, instead of the tool's mock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<bool>,
}

/// `[[turns.submit]]`: the output the app submits for a client tool call.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitSpec {
    /// The client tool whose waiting call this answers.
    #[schemars(length(min = 1))]
    pub tool: String,
    /// The output: a table (sent as JSON) or a string (sent as is).
    pub output: Value,
}

/// `[turns.expect]`: assertions over what happened during the turn. All are optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    /// A tool was called (with at least these arguments, as it ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_called: Option<OneOrMany<ToolCalledSpec>>,
    /// The user was asked for exactly these parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub question_asked: Option<Vec<String>>,
    /// The user was asked for at least these parameters (others may be asked too): for
    /// live runs, where a model may leave out more than the user did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub question_includes: Option<Vec<String>>,
    /// These slots got these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_set: Option<IndexMap<String, Value>>,
    /// Context containing this text was injected (a list: each was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_injected: Option<OneOrMany<String>>,
    /// The status the turn's run ended in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_status: Option<ExpectedStatus>,
    /// Whether a pending call was abandoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_abandoned: Option<bool>,
    /// The user was asked to confirm a call of this tool (`confirm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub confirmation_asked: Option<String>,
    /// The user's answer to a confirmation question was taken to mean this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<DecideSpec>,
    /// The thread was handed to this flow (a `flow = "…"` tool's call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub handed_to: Option<String>,
    /// The thread came back to this flow (the flow it was handed to had its `returns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub handed_back_to: Option<String>,
}

/// `tool_called`: the tool, and a subset of the arguments it ran with.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCalledSpec {
    /// The tool.
    #[schemars(length(min = 1))]
    pub tool: String,
    /// Arguments the call must have had (others may be present too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
}

/// One value or a list of them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "OneOrMany_{T}")]
pub enum OneOrMany<T> {
    /// One.
    One(T),
    /// Several.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values, one or several.
    #[must_use]
    pub fn as_slice(&self) -> &[T] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

/// Statuses a turn's run can end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedStatus {
    /// The model replied or a question was asked.
    Completed,
    /// The run failed.
    Failed,
    /// The step limit ended the run.
    Incomplete,
    /// The run waits for client tool outputs.
    RequiresAction,
    /// The run was cancelled.
    Cancelled,
    /// The run waited too long for client tool outputs.
    Expired,
}

impl ExpectedStatus {
    /// The run status it stands for.
    #[must_use]
    pub fn status(self) -> clarion_engine::RunStatus {
        use clarion_engine::RunStatus;
        match self {
            Self::Completed => RunStatus::Completed,
            Self::Failed => RunStatus::Failed,
            Self::Incomplete => RunStatus::Incomplete,
            Self::RequiresAction => RunStatus::RequiresAction,
            Self::Cancelled => RunStatus::Cancelled,
            Self::Expired => RunStatus::Expired,
        }
    }
}
