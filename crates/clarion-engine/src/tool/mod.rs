//! Tool execution, as the engine sees it: one trait, no concrete tools.
//!
//! `clarion-tools` implements [`ToolExecutor`] for built-in, HTTP and command tools; tests
//! implement it with closures. The engine applies the timeout around the call, so an
//! executor that hangs cannot hang a run, and turns every failure into a structured output
//! the model can read.

use serde_json::{Map, Value};

use crate::BoxFuture;
pub(crate) use crate::codes::ToolErrorKind;
use clarion_flow::{Flow, Tool};

/// One call to execute.
#[derive(Debug, Clone, Copy)]
pub struct ToolRequest<'a> {
    /// The flow the tool belongs to.
    pub flow: &'a Flow,
    /// The tool.
    pub tool: &'a Tool,
    /// The call's id.
    pub call_id: &'a str,
    /// The same for the same call at the same step of the same run, whichever replica
    /// makes it: HTTP tools send it as `Idempotency-Key`, command tools get it as
    /// `CLARION_IDEMPOTENCY_KEY`, so a tool run again after a takeover can deduplicate.
    /// (The call id cannot serve: the model asked again names its calls anew.)
    pub idempotency_key: &'a str,
    /// Validated arguments.
    pub arguments: &'a Map<String, Value>,
}

/// How a tool failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// What kind of failure: the model and `on_error` rules read its wire form.
    pub kind: ToolErrorKind,
    /// What happened, with secrets redacted.
    pub message: String,
}

impl ToolError {
    /// An error of `kind`.
    #[must_use]
    pub fn new(kind: ToolErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The JSON the model reads as the call's output.
    #[must_use]
    pub fn to_output(&self) -> Value {
        serde_json::json!({ "error": { "kind": self.kind.as_str(), "message": self.message } })
    }
}

/// Runs tools.
pub trait ToolExecutor: Send + Sync {
    /// Runs one call and returns its JSON result.
    fn execute<'a>(&'a self, request: ToolRequest<'a>) -> BoxFuture<'a, Result<Value, ToolError>>;

    /// Whether `tool` is a pure function: run again with the same arguments it returns the
    /// same output and changes nothing anywhere. An engine that
    /// [defers replayable steps](crate::Engine::defer_replayable_steps) stores the step of
    /// a turn whose calls are all replayable together with the run's next step, so after a
    /// crash in between such a tool runs again. `false` unless the executor says so.
    fn replayable(&self, tool: &Tool) -> bool {
        let _ = tool;
        false
    }
}

/// An executor built from a closure, for tests and small embeddings.
pub struct FnExecutor<F>(pub F);

impl<F> ToolExecutor for FnExecutor<F>
where
    F: Fn(&Tool, &Map<String, Value>) -> Result<Value, ToolError> + Send + Sync,
{
    fn execute<'a>(&'a self, request: ToolRequest<'a>) -> BoxFuture<'a, Result<Value, ToolError>> {
        let result = (self.0)(request.tool, request.arguments);
        Box::pin(async move { result })
    }
}
