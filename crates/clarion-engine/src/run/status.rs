//! The run state machine: every status and every legal transition, in one table.
//!
//! ```text
//! queued ─► in_progress ─► completed | failed | incomplete
//!   │          │   ▲
//!   │          ▼   │
//!   │     requires_action ─► expired | failed
//!   ▼          │
//! cancelling ◄─┘ (from queued, in_progress or requires_action) ─► cancelled | failed
//! ```
//!
//! `queued` may also go straight to `failed` (a run interrupted before it started). The
//! Mermaid diagram in `docs/architecture.md` draws the same table, and
//! `tests/docs_state_machine.rs` fails when the two differ.
//!
//! Nothing else changes a run's status: the engine calls [`RunStatus::transition`], and an
//! illegal move is an error, never a silent overwrite. Terminal statuses have no way out.

use serde::{Deserialize, Serialize};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, not started.
    Queued,
    /// The engine is working: asking the model or running tools.
    InProgress,
    /// Waiting for the embedding application's client tool outputs.
    RequiresAction,
    /// Cancellation requested; the engine is answering open calls.
    Cancelling,
    /// Cancelled.
    Cancelled,
    /// Failed; `last_error` says why.
    Failed,
    /// Finished: the model replied, or a question was asked.
    Completed,
    /// `requires_action` waited too long.
    Expired,
    /// The step limit ended it.
    Incomplete,
}

impl RunStatus {
    /// Every status, for exhaustive tests and listings.
    pub const ALL: [Self; 9] = [
        Self::Queued,
        Self::InProgress,
        Self::RequiresAction,
        Self::Cancelling,
        Self::Cancelled,
        Self::Failed,
        Self::Completed,
        Self::Expired,
        Self::Incomplete,
    ];
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a run cannot go from `{}` to `{}`", .from.as_str(), .to.as_str())]
pub struct IllegalTransition {
    /// The status the run was in.
    pub from: RunStatus,
    /// The status asked for.
    pub to: RunStatus,
}

impl RunStatus {
    /// The wire name (`in_progress`…).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::RequiresAction => "requires_action",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Incomplete => "incomplete",
        }
    }

    /// Whether the run is over.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Cancelled | Self::Failed | Self::Completed | Self::Expired | Self::Incomplete
        )
    }

    /// Whether `self → to` is legal.
    #[must_use]
    pub fn can_become(self, to: Self) -> bool {
        use RunStatus::{
            Cancelled, Cancelling, Completed, Expired, Failed, InProgress, Incomplete, Queued,
            RequiresAction,
        };
        matches!(
            (self, to),
            (Queued, InProgress | Cancelling | Failed)
                | (
                    InProgress,
                    RequiresAction | Completed | Failed | Incomplete | Cancelling
                )
                | (RequiresAction, InProgress | Cancelling | Expired | Failed)
                | (Cancelling, Cancelled | Failed)
        )
    }

    /// Moves to `to`, or says why not.
    pub fn transition(&mut self, to: Self) -> Result<(), IllegalTransition> {
        if self.can_become(to) {
            *self = to;
            Ok(())
        } else {
            Err(IllegalTransition { from: *self, to })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out: a change to the state machine changes this test.
    #[test]
    fn every_pair_of_statuses_is_legal_or_illegal_as_designed() {
        use RunStatus::*;
        let legal = [
            (Queued, InProgress),
            (Queued, Cancelling),
            (Queued, Failed),
            (InProgress, RequiresAction),
            (InProgress, Completed),
            (InProgress, Failed),
            (InProgress, Incomplete),
            (InProgress, Cancelling),
            (RequiresAction, InProgress),
            (RequiresAction, Cancelling),
            (RequiresAction, Expired),
            (RequiresAction, Failed),
            (Cancelling, Cancelled),
            (Cancelling, Failed),
        ];
        for from in RunStatus::ALL {
            for to in RunStatus::ALL {
                let mut status = from;
                let result = status.transition(to);
                if legal.contains(&(from, to)) {
                    assert_eq!(result, Ok(()), "{from:?} → {to:?} should be legal");
                    assert_eq!(status, to);
                } else {
                    assert_eq!(
                        result,
                        Err(IllegalTransition { from, to }),
                        "{from:?} → {to:?}"
                    );
                    assert_eq!(status, from, "an illegal transition changes nothing");
                }
            }
        }
    }

    #[test]
    fn terminal_statuses_have_no_way_out() {
        for from in RunStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(
                RunStatus::ALL.iter().all(|to| !from.can_become(*to)),
                "{from:?}"
            );
        }
    }

    #[test]
    fn illegal_transitions_say_what_was_tried() {
        let error = IllegalTransition {
            from: RunStatus::Completed,
            to: RunStatus::InProgress,
        };
        assert_eq!(
            error.to_string(),
            "a run cannot go from `completed` to `in_progress`"
        );
    }
}
