//! What the engine's public operations can fail with. Every variant leaves the thread and
//! run exactly as they were.

use crate::run::RunStatus;
use crate::store::StoreError;
use crate::thread::MetadataError;

/// An operation the engine refused or could not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The store failed, or the thread or run does not exist, or the thread is locked.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Metadata over the limits.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The thread was created for another flow.
    #[error("thread `{thread_id}` belongs to flow `{thread_flow}`, not `{flow}`")]
    WrongFlow {
        /// The thread.
        thread_id: String,
        /// Its flow.
        thread_flow: String,
        /// The engine's flow.
        flow: String,
    },
    /// An empty user message.
    #[error("a message needs some text")]
    EmptyMessage,
    /// The run is over.
    #[error("run `{run_id}` is already {}", .status.as_str())]
    RunNotActive {
        /// The run.
        run_id: String,
        /// Its terminal status.
        status: RunStatus,
    },
    /// Outputs submitted for a run that is not waiting for them.
    #[error("run `{run_id}` is {}, not requires_action; there is nothing to submit", .status.as_str())]
    NotRequiresAction {
        /// The run.
        run_id: String,
        /// Its status.
        status: RunStatus,
    },
    /// Submitted outputs leave calls unanswered.
    #[error("missing tool outputs for {}; submit all of them at once", .0.join(", "))]
    MissingToolOutputs(Vec<String>),
    /// An output for a call the run is not waiting for.
    #[error("run is not waiting for tool call `{0}`")]
    UnknownToolCall(String),
    /// Two outputs for one call.
    #[error("tool call `{0}` has more than one output in this submission")]
    DuplicateToolOutput(String),
    /// The run is being driven by another task right now.
    #[error("run `{0}` is busy in another request; try again when it settles")]
    RunBusy(String),
    /// A decision about a confirmation, for a thread where no call waits for one.
    #[error("no call of thread `{0}` waits for confirmation; there is nothing to decide")]
    NothingToConfirm(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_says_what_and_what_to_do() {
        let cases: Vec<(EngineError, &str)> = vec![
            (
                StoreError::ThreadNotFound("t".into()).into(),
                "no thread `t`",
            ),
            (
                MetadataError::EmptyKey.into(),
                "metadata keys cannot be empty",
            ),
            (
                EngineError::WrongFlow {
                    thread_id: "t".into(),
                    thread_flow: "a".into(),
                    flow: "b".into(),
                },
                "thread `t` belongs to flow `a`, not `b`",
            ),
            (EngineError::EmptyMessage, "a message needs some text"),
            (
                EngineError::RunNotActive {
                    run_id: "r".into(),
                    status: RunStatus::Completed,
                },
                "run `r` is already completed",
            ),
            (
                EngineError::NotRequiresAction {
                    run_id: "r".into(),
                    status: RunStatus::InProgress,
                },
                "run `r` is in_progress, not requires_action; there is nothing to submit",
            ),
            (
                EngineError::MissingToolOutputs(vec!["call_1".into(), "call_2".into()]),
                "missing tool outputs for call_1, call_2; submit all of them at once",
            ),
            (
                EngineError::UnknownToolCall("x".into()),
                "run is not waiting for tool call `x`",
            ),
            (
                EngineError::DuplicateToolOutput("x".into()),
                "tool call `x` has more than one output in this submission",
            ),
            (
                EngineError::RunBusy("r".into()),
                "run `r` is busy in another request; try again when it settles",
            ),
            (
                EngineError::NothingToConfirm("t".into()),
                "no call of thread `t` waits for confirmation; there is nothing to decide",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }
}
