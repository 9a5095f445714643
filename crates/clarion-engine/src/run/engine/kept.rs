//! The threads an engine keeps between runs, with the indices it builds over their
//! histories.
//!
//! The model must be sent the whole history with every request, but nothing else needs
//! to re-read it: a run on a thread this engine drove before starts from the copy it kept
//! and reads from the store only the header and the messages appended since (the user's
//! new message), and the indices — what the user said, for grounding; the pairing check;
//! the token counts that cut a long history — read only what each step appended. So a step's cost beyond the request body does not
//! grow with the thread.
//!
//! The store stays the truth. A kept copy is used only if the store still holds its last
//! message at the same position (messages are append-only, and ids are unique), and the
//! header — slots, metadata, pending call, lock — always comes from the store. A run that
//! fails to commit, or whose driver is dropped, keeps nothing. The copy is bounded
//! ([`KEPT_THREADS`]), so a server driving many threads holds only the latest few.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use super::Engine;
use crate::run::EngineError;
use crate::run::grounding::Said;
use crate::run::protocol;
use crate::run::window;
use crate::thread::Thread;

/// How many threads an engine keeps: enough for a chat session or a few busy threads of
/// a server, small enough that their memory does not matter.
const KEPT_THREADS: usize = 8;

/// Indices over a thread's history that grow with it.
#[derive(Debug, Default)]
pub(super) struct Indices {
    /// What the user said, for grounded parameters (read when a call needs it).
    pub(super) said: Said,
    /// The pairing check, before every model request.
    pub(super) protocol: protocol::Checker,
    /// Token counts and turn starts, for what a request sends of a long thread.
    pub(super) window: window::Window,
}

/// The kept threads, most recently kept last.
#[derive(Debug, Default)]
pub(super) struct Kept(Mutex<VecDeque<(Thread, Indices)>>);

impl Kept {
    fn take(&self, thread_id: &str) -> Option<(Thread, Indices)> {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let at = kept.iter().position(|(t, _)| t.id == thread_id)?;
        kept.remove(at)
    }

    pub(super) fn keep(&self, thread: Thread, indices: Indices) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|(t, _)| t.id != thread.id);
        if kept.len() >= KEPT_THREADS {
            kept.pop_front();
        }
        kept.push_back((thread, indices));
    }
}

impl Engine {
    /// The thread a run works on, with its indices: the kept copy brought up to date from
    /// the store, or the whole thread read from it.
    pub(super) async fn working_thread(
        &self,
        thread_id: &str,
    ) -> Result<(Thread, Indices), EngineError> {
        if let Some((mut thread, indices)) = self.kept.take(thread_id) {
            // Read from the last kept message on, to see that the store still has it there.
            let from = thread.messages.len().saturating_sub(1);
            let (header, mut tail) = self.store.thread_since(thread_id, from).await?;
            let continues = match thread.messages.last() {
                Some(last) => tail.first().is_some_and(|m| m.id == last.id),
                None => true,
            };
            if continues && header.message_count == from + tail.len() {
                if !thread.messages.is_empty() {
                    tail.remove(0);
                }
                thread.messages.append(&mut tail);
                thread.flow = header.flow;
                thread.created_at = header.created_at;
                thread.slots = header.slots;
                thread.metadata = header.metadata;
                thread.pending = header.pending;
                thread.active_run = header.active_run;
                thread.route = header.route;
                return Ok((thread, indices));
            }
        }
        Ok((self.store.thread(thread_id).await?, Indices::default()))
    }
}
