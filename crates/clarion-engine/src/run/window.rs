//! What one model request sends of a long thread: `limits.max_context_tokens` and
//! `limits.truncation`.
//!
//! The thread keeps every message; only the request is cut, and only at turn boundaries —
//! a turn is a user message and everything up to the next one — so the pairing rule
//! ([`protocol`](super::protocol)) holds by construction: a tool call and its outputs
//! never straddle a user message. The latest turn and the turn of a pending call are
//! always sent; the instructions (with the slots) are always sent by the engine. What is
//! sent is therefore a suffix of the history, `&messages[start..]`: no copy.
//!
//! Tokens are counted by the engine's [`Counter`] — OpenAI's tokenizer for its model
//! families, an estimate for the rest ([`tokens`](super::tokens)). The counts are kept as
//! prefix sums beside the thread ([`Window`]) and grow with it, as the pairing check does:
//! each message is counted once, when a request first reads it, and a request finds its
//! start by binary search. The rendered instructions change only with the slots, so their
//! count is kept too.

use super::tokens::{Counter, MESSAGE_OVERHEAD};
use crate::thread::{Message, MessageKind, PendingCall};
use clarion_flow::Truncation;

/// The bounds a request's history must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Tokens for the instructions and the history together, if bounded.
    pub max_tokens: Option<u64>,
    /// Messages, if bounded.
    pub max_messages: Option<usize>,
}

impl Budget {
    /// The budget `[limits]` sets, with a run's own `last_messages` over the flow's.
    #[must_use]
    pub fn of(limits: &clarion_flow::Limits, last_messages: Option<u32>) -> Self {
        let flow_messages = match limits.truncation {
            Truncation::Auto => None,
            Truncation::LastMessages(n) => Some(n),
        };
        Self {
            max_tokens: limits.max_context_tokens.map(u64::from),
            max_messages: last_messages.or(flow_messages).map(|n| n as usize),
        }
    }

    /// Whether nothing is bounded: every request sends the whole history.
    #[must_use]
    pub fn is_unbounded(&self) -> bool {
        self.max_tokens.is_none() && self.max_messages.is_none()
    }
}

/// Token counts and turn starts over a history that only grows, read incrementally.
#[derive(Debug, Clone)]
pub struct Window {
    /// How texts are counted; another counter reads the history again.
    counter: Counter,
    /// `prefix[i]`: the tokens of the first `i` messages read.
    prefix: Vec<u64>,
    /// Where each turn starts, ascending: 0, then every user message after the first.
    turns: Vec<usize>,
    /// The id of the last message read: a history that does not continue it is read again.
    last_id: Option<String>,
    /// The last instructions counted, and their tokens with the framing.
    instructions: Option<(String, u64)>,
}

impl Default for Window {
    fn default() -> Self {
        Self::new(Counter::Estimate)
    }
}

impl Window {
    /// An empty window that counts with `counter`.
    #[must_use]
    pub fn new(counter: Counter) -> Self {
        Self {
            counter,
            prefix: vec![0],
            turns: Vec::new(),
            last_id: None,
            instructions: None,
        }
    }

    /// Where the history a request sends starts under `budget`, with `instructions`,
    /// counted with `counter`: 0 when nothing is bounded (nothing is read then).
    pub fn sent_from(
        &mut self,
        messages: &[Message],
        instructions: &str,
        budget: Budget,
        pending: Option<&PendingCall>,
        counter: Counter,
    ) -> usize {
        if budget.is_unbounded() {
            return 0;
        }
        if counter != self.counter {
            *self = Self::new(counter);
        }
        self.update(messages);
        let instructions = self.instructions_tokens(instructions);
        self.start(messages, instructions, budget, pending)
    }

    /// The tokens of `instructions` with their framing, counted again only when they
    /// changed (a slot was set, the run added instructions).
    fn instructions_tokens(&mut self, instructions: &str) -> u64 {
        match &self.instructions {
            Some((text, tokens)) if text == instructions => *tokens,
            _ => {
                let tokens = self.counter.text(instructions) + MESSAGE_OVERHEAD;
                self.instructions = Some((instructions.to_owned(), tokens));
                tokens
            }
        }
    }

    /// Reads the messages appended since the last call (all of them, if `messages` does
    /// not continue the history read before).
    pub fn update(&mut self, messages: &[Message]) {
        let read = self.prefix.len() - 1;
        let continues = match read.checked_sub(1) {
            None => true,
            Some(last) => messages
                .get(last)
                .is_some_and(|m| self.last_id.as_deref() == Some(m.id.as_str())),
        };
        if !continues || messages.len() < read {
            *self = Self::new(self.counter);
        }
        let read = self.prefix.len() - 1;
        let mut total = self.prefix[read];
        for (i, message) in messages.iter().enumerate().skip(read) {
            if i == 0 || matches!(message.kind, MessageKind::User { .. }) {
                self.turns.push(i);
            }
            total += self.counter.message(message);
            self.prefix.push(total);
        }
        self.last_id = messages.last().map(|m| m.id.clone());
    }

    /// Where the history sent with `instructions_tokens` of instructions starts under
    /// `budget`: the earliest turn from which everything fits, but never after the
    /// latest turn or the pending call's. `messages` must be what [`Window::update`] read.
    #[must_use]
    pub fn start(
        &self,
        messages: &[Message],
        instructions_tokens: u64,
        budget: Budget,
        pending: Option<&PendingCall>,
    ) -> usize {
        let end = self.prefix.len() - 1;
        let Some(&latest) = self.turns.last() else {
            return 0;
        };
        // Both bounds only loosen as the start moves later: the first turn that meets
        // them is found by binary search.
        let mut from = self.turns.partition_point(|&s| {
            let tokens_ok = budget
                .max_tokens
                .is_none_or(|max| instructions_tokens + self.prefix[end] - self.prefix[s] <= max);
            let count_ok = budget.max_messages.is_none_or(|max| end - s <= max);
            !(tokens_ok && count_ok)
        });
        let mut start = self.turns.get(from).copied().unwrap_or(latest).min(latest);
        if let Some(pending) = pending
            && let Some(at) = call_position(&messages[..start.min(messages.len())], pending)
        {
            from = self.turns.partition_point(|&s| s <= at);
            start = self.turns[from.saturating_sub(1)];
        }
        start
    }

    /// The tokens of `messages[start..]`, as read.
    #[must_use]
    pub fn tokens_from(&self, start: usize) -> u64 {
        let end = self.prefix.len() - 1;
        self.prefix[end] - self.prefix[start.min(end)]
    }
}

/// Where the pending call's message is, searched from the end (it is nearly always in the
/// turn before the latest).
fn call_position(messages: &[Message], pending: &PendingCall) -> Option<usize> {
    messages.iter().rposition(|m| match &m.kind {
        MessageKind::ToolCalls { calls, .. } => calls.iter().any(|c| c.id == pending.call_id),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::protocol;
    use crate::thread::{Metadata, OutputStatus, ToolCall};
    use proptest::prelude::*;

    fn message_tokens(message: &Message) -> u64 {
        Counter::Estimate.message(message)
    }

    fn message(id: usize, kind: MessageKind) -> Message {
        Message {
            id: format!("msg_{id}"),
            run_id: None,
            created_at: 0,
            kind,
            metadata: Metadata::default(),
        }
    }

    /// One turn: the user's text, then blocks of calls (each with its outputs, answered
    /// in any order, and maybe context), then maybe a reply.
    #[derive(Debug, Clone)]
    struct TurnShape {
        user_len: usize,
        blocks: Vec<(usize, bool, usize)>,
        reply_len: Option<usize>,
    }

    fn turn_shape() -> impl Strategy<Value = TurnShape> {
        (
            0..400usize,
            prop::collection::vec((1..4usize, any::<bool>(), 0..300usize), 0..3),
            prop::option::of(0..400usize),
        )
            .prop_map(|(user_len, blocks, reply_len)| TurnShape {
                user_len,
                blocks,
                reply_len,
            })
    }

    fn history(lead: usize, turns: &[TurnShape]) -> Vec<Message> {
        let mut out = Vec::new();
        let mut call = 0;
        for _ in 0..lead {
            let id = out.len();
            out.push(message(
                id,
                MessageKind::Assistant {
                    text: "hello".into(),
                },
            ));
        }
        for turn in turns {
            let id = out.len();
            out.push(message(
                id,
                MessageKind::User {
                    text: "u".repeat(turn.user_len),
                },
            ));
            for &(calls, reversed, len) in &turn.blocks {
                let ids: Vec<String> = (0..calls).map(|k| format!("call_{}", call + k)).collect();
                call += calls;
                let id = out.len();
                out.push(message(
                    id,
                    MessageKind::ToolCalls {
                        text: None,
                        calls: ids
                            .iter()
                            .map(|c| ToolCall {
                                id: c.clone(),
                                name: "t".into(),
                                arguments: "a".repeat(len),
                            })
                            .collect(),
                    },
                ));
                let mut answers = ids.clone();
                if reversed {
                    answers.reverse();
                }
                for c in answers {
                    let id = out.len();
                    out.push(message(
                        id,
                        MessageKind::ToolOutput {
                            call_id: c,
                            name: "t".into(),
                            status: OutputStatus::Ok,
                            content: "o".repeat(len),
                        },
                    ));
                }
            }
            if let Some(len) = turn.reply_len {
                let id = out.len();
                out.push(message(
                    id,
                    MessageKind::Assistant {
                        text: "r".repeat(len),
                    },
                ));
            }
        }
        out
    }

    fn pending_for(messages: &[Message], pick: usize) -> Option<PendingCall> {
        let ids: Vec<&str> = messages
            .iter()
            .flat_map(|m| match &m.kind {
                MessageKind::ToolCalls { calls, .. } => {
                    calls.iter().map(|c| c.id.as_str()).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        let id = ids.get(pick % ids.len().max(1))?;
        Some(PendingCall {
            call_id: (*id).to_owned(),
            tool: "t".into(),
            known: serde_json::Map::new(),
            missing: Vec::new(),
            confirm: None,
            asked: std::collections::BTreeMap::new(),
        })
    }

    proptest! {
        /// Over random histories, budgets and pending calls, read whole or as they grow:
        /// every history sent passes the pairing check; it starts at a turn; it holds the
        /// latest turn and the pending call; it fits the budget whenever the turns it must
        /// hold do; and it drops no turn it did not have to.
        #[test]
        fn what_is_sent_keeps_the_pairing_and_the_budget(
            lead in 0..2usize,
            turns in prop::collection::vec(turn_shape(), 0..25),
            max_tokens in prop::option::of(1..3000u64),
            max_messages in prop::option::of(1..40usize),
            instructions in 0..500u64,
            pending in prop::option::of(any::<usize>()),
            steps in 1..4usize,
        ) {
            let messages = history(lead, &turns);
            prop_assert_eq!(protocol::check(&messages), Ok(()));
            let budget = Budget { max_tokens, max_messages };
            let pending = pending.and_then(|p| pending_for(&messages, p));
            let mut window = Window::default();
            // Read in `steps` growing prefixes, as a thread is between requests.
            for step in 1..=steps {
                let end = messages.len() * step / steps;
                window.update(&messages[..end]);
            }
            let start = window.start(&messages, instructions, budget, pending.as_ref());
            let sent = &messages[start..];
            prop_assert_eq!(protocol::check(sent), Ok(()));
            let turn_starts: Vec<usize> = (0..messages.len())
                .filter(|&i| i == 0 || matches!(messages[i].kind, MessageKind::User { .. }))
                .collect();
            if messages.is_empty() {
                prop_assert_eq!(start, 0);
                return Ok(());
            }
            prop_assert!(turn_starts.contains(&start));
            let latest = *turn_starts.last().unwrap_or(&0);
            prop_assert!(start <= latest);
            if let Some(p) = &pending {
                prop_assert!(call_position(sent, p).is_some(), "the pending call was cut");
            }
            let fits = |s: usize| {
                let tokens: u64 = messages[s..].iter().map(message_tokens).sum();
                max_tokens.is_none_or(|m| instructions + tokens <= m)
                    && max_messages.is_none_or(|m| messages.len() - s <= m)
            };
            // The earliest turn that fits is sent, unless a turn that must be kept is
            // earlier still.
            let must = pending
                .as_ref()
                .and_then(|p| call_position(&messages, p))
                .map_or(latest, |at| {
                    turn_starts.iter().copied().filter(|&s| s <= at).max().unwrap_or(0).min(latest)
                });
            let best = turn_starts.iter().copied().find(|&s| fits(s)).unwrap_or(latest).min(latest);
            prop_assert_eq!(start, best.min(must));
            prop_assert_eq!(window.tokens_from(start), sent.iter().map(message_tokens).sum::<u64>());
        }
    }

    #[test]
    fn an_unrelated_history_is_read_again() {
        let a = history(
            0,
            &[TurnShape {
                user_len: 8,
                blocks: vec![],
                reply_len: Some(8),
            }],
        );
        let mut window = Window::default();
        window.update(&a);
        let mut b = a.clone();
        b[1].id = "other".into();
        b.push(message(
            9,
            MessageKind::User {
                text: "x".repeat(40),
            },
        ));
        window.update(&b);
        assert_eq!(
            window.tokens_from(0),
            b.iter().map(message_tokens).sum::<u64>()
        );
    }

    #[test]
    fn a_runs_last_messages_overrides_the_flows() {
        let mut limits = clarion_flow::Limits {
            max_steps: 10,
            tool_timeout: std::time::Duration::from_secs(30),
            max_consecutive_failures: 3,
            requires_action_timeout: std::time::Duration::from_secs(600),
            max_context_tokens: None,
            truncation: Truncation::Auto,
            tokenizer: clarion_flow::Tokenizer::Auto,
        };
        assert!(Budget::of(&limits, None).is_unbounded());
        limits.max_context_tokens = Some(100);
        limits.truncation = Truncation::LastMessages(8);
        let budget = Budget::of(&limits, None);
        assert_eq!(
            (budget.max_tokens, budget.max_messages),
            (Some(100), Some(8))
        );
        assert_eq!(Budget::of(&limits, Some(3)).max_messages, Some(3));
    }

    #[test]
    fn another_counter_reads_the_history_again_and_instructions_are_counted_once() {
        let turns = vec![
            TurnShape {
                user_len: 50,
                blocks: vec![(2, true, 40)],
                reply_len: Some(30),
            };
            5
        ];
        let messages = history(0, &turns);
        let budget = Budget {
            max_tokens: Some(10_000),
            max_messages: None,
        };
        let mut window = Window::default();
        assert_eq!(
            window.sent_from(&messages, "be brief", budget, None, Counter::Estimate),
            0
        );
        assert_eq!(
            window.tokens_from(0),
            messages.iter().map(message_tokens).sum::<u64>()
        );
        // Another counter: the counts are its own, read again from the start.
        let exact = Counter::Cl100kBase;
        window.sent_from(&messages, "be brief", budget, None, exact);
        assert_eq!(
            window.tokens_from(0),
            messages.iter().map(|m| exact.message(m)).sum::<u64>()
        );
        assert_eq!(
            window.instructions_tokens("be brief"),
            exact.text("be brief") + MESSAGE_OVERHEAD
        );
        assert_eq!(
            window.instructions_tokens("be brief, please"),
            exact.text("be brief, please") + MESSAGE_OVERHEAD
        );
    }
}
