//! Tool stand-ins: a fixed result, an error or a timeout per tool or per call, and the
//! real executor for everything else.

use clarion_engine::ToolErrorKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::spec::{MockError, MockSpec};
use clarion_engine::BoxFuture;
use clarion_engine::{ToolError, ToolExecutor, ToolRequest};
use clarion_flow::model::format_duration;

/// What a mocked call returns.
#[derive(Debug, Clone, PartialEq)]
pub enum MockOutcome {
    /// This result.
    Result(Value),
    /// This error.
    Error {
        /// `failed`, `unavailable`, `refused`, `invalid_output` or `timeout`.
        kind: ToolErrorKind,
        /// What happened.
        message: String,
    },
    /// A timeout, reported at once with the message the engine would give after waiting.
    Timeout,
}

impl MockOutcome {
    /// The outcome `result`/`error`/`timeout` describe, if exactly one of them does.
    #[must_use]
    pub fn from_parts(
        result: Option<&Value>,
        error: Option<&MockError>,
        timeout: Option<bool>,
    ) -> Option<Self> {
        match (result, error, timeout.unwrap_or(false)) {
            (Some(result), None, false) => Some(Self::Result(result.clone())),
            (None, Some(error), false) => Some(Self::Error {
                kind: error.kind.tool_kind(),
                message: error.message.clone(),
            }),
            (None, None, true) => Some(Self::Timeout),
            _ => None,
        }
    }

    /// A mock table's outcome.
    #[must_use]
    pub fn from_spec(spec: &MockSpec) -> Option<Self> {
        Self::from_parts(spec.result.as_ref(), spec.error.as_ref(), spec.timeout)
    }
}

/// Runs tool calls from mocks — per call first, then per tool — and hands the rest to a
/// real executor, if there is one.
#[derive(Default)]
pub struct MockExecutor {
    by_call: HashMap<String, MockOutcome>,
    by_tool: HashMap<String, MockOutcome>,
    fallback: Option<Arc<dyn ToolExecutor>>,
    /// Calls that had neither a mock nor a fallback, by id.
    misses: Mutex<Vec<(String, String)>>,
}

impl std::fmt::Debug for MockExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockExecutor")
            .field("by_call", &self.by_call)
            .field("by_tool", &self.by_tool)
            .field("fallback", &self.fallback.is_some())
            .field("misses", &self.misses())
            .finish()
    }
}

impl MockExecutor {
    /// Mocks nothing and has no fallback: every call fails as `unavailable`.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls no mock answers go to `executor` — except HTTP tools': a transcript must never
    /// depend on a remote service, so they always need a mock.
    #[must_use]
    pub fn with_fallback(mut self, executor: Arc<dyn ToolExecutor>) -> Self {
        self.fallback = Some(executor);
        self
    }

    /// Every call of `tool` gets `outcome` (unless its call has a mock of its own).
    pub fn mock_tool(&mut self, tool: &str, outcome: MockOutcome) {
        self.by_tool.insert(tool.to_owned(), outcome);
    }

    /// The call with id `call_id` gets `outcome`.
    pub fn mock_call(&mut self, call_id: &str, outcome: MockOutcome) {
        self.by_call.insert(call_id.to_owned(), outcome);
    }

    /// Ids and tools of the calls so far that had no mock and nothing else could run (they failed as
    /// `unavailable`): no fallback, or an HTTP tool.
    #[must_use]
    pub fn misses(&self) -> Vec<(String, String)> {
        self.misses.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn outcome(&self, request: &ToolRequest<'_>) -> Option<&MockOutcome> {
        self.by_call
            .get(request.call_id)
            .or_else(|| self.by_tool.get(&request.tool.name))
    }
}

impl ToolExecutor for MockExecutor {
    fn execute<'a>(&'a self, request: ToolRequest<'a>) -> BoxFuture<'a, Result<Value, ToolError>> {
        let result = match self.outcome(&request) {
            Some(MockOutcome::Result(value)) => Ok(value.clone()),
            Some(MockOutcome::Error { kind, message }) => {
                Err(ToolError::new(*kind, message.clone()))
            }
            Some(MockOutcome::Timeout) => Err(ToolError::new(
                ToolErrorKind::Timeout,
                format!(
                    "`{}` did not finish within {}",
                    request.tool.name,
                    format_duration(request.tool.timeout(&request.flow.limits))
                ),
            )),
            None => {
                let remote = request.tool.executor.is_remote();
                if let Some(fallback) = self.fallback.as_ref().filter(|_| !remote) {
                    return fallback.execute(request);
                }
                if let Ok(mut misses) = self.misses.lock() {
                    misses.push((request.call_id.to_owned(), request.tool.name.clone()));
                }
                Err(ToolError::new(
                    ToolErrorKind::Unavailable,
                    format!("no mock for `{}`", request.tool.name),
                ))
            }
        };
        Box::pin(async move { result })
    }
}
