//! The protocol invariant: every tool call has exactly one output, outputs follow their
//! calls, and no output is orphaned.
//!
//! Chat Completions, the Responses API and every compatible server reject a history that
//! breaks this ("No tool output found for function call…", "Expected tool outputs for
//! `call_ids`…"), and most agent-loop bugs people report are exactly that. The engine checks
//! the history before *every* model request; a violation fails the run with a clear
//! error instead of sending the model something it will reject.

use std::collections::HashSet;

use crate::thread::{Message, MessageKind};

/// A way a history can break the pairing rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    /// A call with no output before the next non-output message (or the end).
    #[error("tool call `{0}` has no output")]
    MissingOutput(String),
    /// A call answered twice.
    #[error("tool call `{0}` has more than one output")]
    DuplicateOutput(String),
    /// An output whose call is not directly before it.
    #[error("tool output for `{0}` does not follow its call")]
    OrphanOutput(String),
    /// Two calls with the same id.
    #[error("tool call id `{0}` is used more than once")]
    DuplicateCallId(String),
}

/// Checks a whole history.
pub fn check(messages: &[Message]) -> Result<(), ProtocolViolation> {
    let mut all_calls: HashSet<&str> = HashSet::new();
    // Calls of the current block still waiting for an output, and those answered.
    let mut open: Vec<&str> = Vec::new();
    let mut answered: HashSet<&str> = HashSet::new();
    let mut in_block = false;
    for message in messages {
        match &message.kind {
            MessageKind::ToolOutput { call_id, .. } => {
                if !in_block
                    || !(open.contains(&call_id.as_str()) || answered.contains(call_id.as_str()))
                {
                    return Err(ProtocolViolation::OrphanOutput(call_id.clone()));
                }
                if !answered.insert(call_id) {
                    return Err(ProtocolViolation::DuplicateOutput(call_id.clone()));
                }
                open.retain(|id| id != call_id);
            }
            other => {
                if let Some(missing) = open.first() {
                    return Err(ProtocolViolation::MissingOutput((*missing).to_owned()));
                }
                answered.clear();
                in_block = false;
                if let MessageKind::ToolCalls { calls, .. } = other {
                    for call in calls {
                        if !all_calls.insert(&call.id) {
                            return Err(ProtocolViolation::DuplicateCallId(call.id.clone()));
                        }
                        open.push(&call.id);
                    }
                    in_block = true;
                }
            }
        }
    }
    match open.first() {
        Some(missing) => Err(ProtocolViolation::MissingOutput((*missing).to_owned())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thread::{OutputStatus, ToolCall};

    fn message(kind: MessageKind) -> Message {
        Message {
            id: String::new(),
            run_id: None,
            created_at: 0,
            kind,
            metadata: crate::thread::Metadata::default(),
        }
    }
    fn user() -> Message {
        message(MessageKind::User { text: "hi".into() })
    }
    fn calls(ids: &[&str]) -> Message {
        message(MessageKind::ToolCalls {
            text: None,
            calls: ids
                .iter()
                .map(|id| ToolCall {
                    id: (*id).into(),
                    name: "t".into(),
                    arguments: "{}".into(),
                })
                .collect(),
        })
    }
    fn output(id: &str) -> Message {
        message(MessageKind::ToolOutput {
            call_id: id.into(),
            name: "t".into(),
            status: OutputStatus::Ok,
            content: "{}".into(),
        })
    }

    #[test]
    fn well_formed_histories_pass() {
        assert_eq!(check(&[]), Ok(()));
        assert_eq!(
            check(&[user(), calls(&["a", "b"]), output("b"), output("a"), user()]),
            Ok(())
        );
        assert_eq!(
            check(&[
                user(),
                calls(&["a"]),
                output("a"),
                calls(&["b"]),
                output("b")
            ]),
            Ok(())
        );
    }

    #[test]
    fn every_kind_of_break_is_named() {
        assert_eq!(
            check(&[calls(&["a", "b"]), output("a")]),
            Err(ProtocolViolation::MissingOutput("b".into()))
        );
        assert_eq!(
            check(&[calls(&["a"]), user(), output("a")]),
            Err(ProtocolViolation::MissingOutput("a".into()))
        );
        assert_eq!(
            check(&[calls(&["a"]), output("a"), output("a")]),
            Err(ProtocolViolation::DuplicateOutput("a".into()))
        );
        assert_eq!(
            check(&[user(), output("x")]),
            Err(ProtocolViolation::OrphanOutput("x".into()))
        );
        assert_eq!(
            check(&[calls(&["a"]), output("b")]),
            Err(ProtocolViolation::OrphanOutput("b".into()))
        );
        assert_eq!(
            check(&[
                calls(&["a"]),
                output("a"),
                user(),
                calls(&["a"]),
                output("a")
            ]),
            Err(ProtocolViolation::DuplicateCallId("a".into()))
        );
        assert_eq!(
            check(&[calls(&["a", "a"])]),
            Err(ProtocolViolation::DuplicateCallId("a".into()))
        );
    }
}
