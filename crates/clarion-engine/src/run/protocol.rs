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
    Checker::default().check(messages)
}

/// The pairing check, kept beside a history that only grows: each [`Checker::check`]
/// reads only the messages appended since the last one, so checking before every model
/// request costs what the step appended, not the thread's length. It gives exactly what
/// [`check`] gives on the whole history.
#[derive(Debug, Clone, Default)]
pub struct Checker {
    /// How many messages were read, and the id of the last: a history that does not
    /// continue the one read is checked again from its start.
    read: usize,
    last_id: Option<String>,
    /// Every call id seen.
    all_calls: HashSet<String>,
    /// Calls of the current block still waiting for an output, and those answered.
    open: Vec<String>,
    answered: HashSet<String>,
    in_block: bool,
}

impl Checker {
    /// Checks `messages`, the history read before with messages appended.
    pub fn check(&mut self, messages: &[Message]) -> Result<(), ProtocolViolation> {
        let continues = match self.read.checked_sub(1) {
            None => true,
            Some(last) => messages
                .get(last)
                .is_some_and(|m| self.last_id.as_deref() == Some(m.id.as_str())),
        };
        if !continues {
            *self = Self::default();
        }
        for message in &messages[self.read..] {
            if let Err(violation) = self.read_one(message) {
                // Half-read state is worthless: the next check starts over.
                *self = Self::default();
                return Err(violation);
            }
        }
        self.read = messages.len();
        self.last_id = messages.last().map(|m| m.id.clone());
        match self.open.first() {
            Some(missing) => Err(ProtocolViolation::MissingOutput(missing.clone())),
            None => Ok(()),
        }
    }

    /// The ids of every tool call in the history read so far.
    #[must_use]
    pub fn call_ids(&self) -> &HashSet<String> {
        &self.all_calls
    }

    fn read_one(&mut self, message: &Message) -> Result<(), ProtocolViolation> {
        match &message.kind {
            MessageKind::ToolOutput { call_id, .. } => {
                if !self.in_block
                    || !(self.open.contains(call_id) || self.answered.contains(call_id))
                {
                    return Err(ProtocolViolation::OrphanOutput(call_id.clone()));
                }
                if !self.answered.insert(call_id.clone()) {
                    return Err(ProtocolViolation::DuplicateOutput(call_id.clone()));
                }
                self.open.retain(|id| id != call_id);
            }
            other => {
                if let Some(missing) = self.open.first() {
                    return Err(ProtocolViolation::MissingOutput(missing.clone()));
                }
                self.answered.clear();
                self.in_block = false;
                if let MessageKind::ToolCalls { calls, .. } = other {
                    for call in calls {
                        if !self.all_calls.insert(call.id.clone()) {
                            return Err(ProtocolViolation::DuplicateCallId(call.id.clone()));
                        }
                        self.open.push(call.id.clone());
                    }
                    self.in_block = true;
                }
            }
        }
        Ok(())
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

    /// Checking a history as it grows, one message at a time, gives what checking each
    /// prefix whole gives; after a violation, a grown history is checked afresh.
    #[test]
    fn the_incremental_check_agrees_with_the_whole_one() {
        let histories = [
            vec![user(), calls(&["a", "b"]), output("b"), output("a"), user()],
            vec![calls(&["a", "b"]), output("a"), user()],
            vec![calls(&["a"]), output("a"), output("a")],
            vec![user(), output("x"), user()],
            vec![
                calls(&["a"]),
                output("a"),
                user(),
                calls(&["a"]),
                output("a"),
            ],
            vec![
                calls(&["a"]),
                output("a"),
                calls(&["b"]),
                output("b"),
                user(),
            ],
        ];
        for history in &histories {
            let mut history: Vec<Message> = history.clone();
            for (i, m) in history.iter_mut().enumerate() {
                m.id = format!("msg_{i}");
            }
            let mut checker = Checker::default();
            for end in 0..=history.len() {
                assert_eq!(
                    checker.check(&history[..end]),
                    check(&history[..end]),
                    "{history:?} up to {end}"
                );
            }
            // Another history than the one read is read from its start.
            let mut other = history.clone();
            other.insert(0, user());
            other[0].id = "other".into();
            assert_eq!(checker.check(&other), check(&other));
        }
    }
}
