//! An in-memory store: a map behind a lock. Each operation holds the lock for its whole
//! duration, which makes every step atomic; no operation waits on anything while holding
//! it, so its futures are ready at once and every method is cancel safe.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{MessagePage, MessageQuery, Step, StoreError, ThreadHeader, ThreadStore};
use crate::BoxFuture;
use crate::run::Run;
use crate::thread::{Message, Metadata, Thread};

#[derive(Debug, Default)]
struct State {
    threads: HashMap<String, Thread>,
    order: Vec<String>,
    runs: HashMap<String, Run>,
    thread_runs: HashMap<String, Vec<String>>,
}

/// Threads and runs in memory.
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<State>);

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.0
            .lock()
            .map_err(|_| StoreError::Backend("the store's lock was poisoned by a panic".to_owned()))
    }
}

/// The run holding `thread`, if it is still active.
fn holder(state: &State, thread: &Thread) -> Option<String> {
    let run_id = thread.active_run.as_ref()?;
    let run = state.runs.get(run_id)?;
    (!run.status.is_terminal()).then(|| run_id.clone())
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

fn locked(thread_id: &str, run_id: String) -> StoreError {
    StoreError::Locked {
        thread_id: thread_id.to_owned(),
        run_id,
    }
}

impl MemoryStore {
    fn with_thread<T>(&self, id: &str, read: impl FnOnce(&Thread) -> T) -> Result<T, StoreError> {
        self.state()?
            .threads
            .get(id)
            .map(read)
            .ok_or_else(|| StoreError::ThreadNotFound(id.to_owned()))
    }

    /// Runs `write` on a thread no active run holds.
    fn unlocked<T>(&self, id: &str, write: impl FnOnce(&mut Thread) -> T) -> Result<T, StoreError> {
        let mut state = self.state()?;
        let thread = state
            .threads
            .get(id)
            .ok_or_else(|| StoreError::ThreadNotFound(id.to_owned()))?;
        if let Some(run_id) = holder(&state, thread) {
            return Err(locked(id, run_id));
        }
        let thread = state
            .threads
            .get_mut(id)
            .ok_or_else(|| StoreError::ThreadNotFound(id.to_owned()))?;
        Ok(write(thread))
    }

    fn begin(&self, run: &Run) -> Result<(), StoreError> {
        let mut state = self.state()?;
        let thread = state
            .threads
            .get(&run.thread_id)
            .ok_or_else(|| StoreError::ThreadNotFound(run.thread_id.clone()))?;
        if let Some(run_id) = holder(&state, thread) {
            return Err(locked(&run.thread_id, run_id));
        }
        state.runs.insert(run.id.clone(), run.clone());
        state
            .thread_runs
            .entry(run.thread_id.clone())
            .or_default()
            .push(run.id.clone());
        if let Some(thread) = state.threads.get_mut(&run.thread_id) {
            thread.active_run = Some(run.id.clone());
        }
        Ok(())
    }

    fn apply(&self, step: Step<'_>) -> Result<(), StoreError> {
        let mut state = self.state()?;
        let Some(stored) = state.threads.get(&step.thread.id) else {
            return Err(StoreError::ThreadNotFound(step.thread.id.clone()));
        };
        step.check(stored.messages.len())?;
        // Every check before any write: a refused step writes nothing.
        if let Some(run) = step.run
            && let Some(previous) = state.runs.get(&run.id)
            && previous.status.is_terminal()
            && previous.status != run.status
        {
            return Err(StoreError::Backend(format!(
                "refusing a stale step for run `{}`: it already ended as `{}`",
                run.id,
                previous.status.as_str()
            )));
        }
        state
            .threads
            .insert(step.thread.id.clone(), step.thread.clone());
        if let Some(run) = step.run
            && state.runs.insert(run.id.clone(), run.clone()).is_none()
        {
            // A run first stored by a step is listed with its thread, as one begun is.
            state
                .thread_runs
                .entry(run.thread_id.clone())
                .or_default()
                .push(run.id.clone());
        }
        Ok(())
    }
}

impl ThreadStore for MemoryStore {
    fn insert_thread<'a>(&'a self, thread: &'a Thread) -> BoxFuture<'a, Result<(), StoreError>> {
        ready((|| {
            let mut state = self.state()?;
            if state.threads.contains_key(&thread.id) {
                return Err(StoreError::Duplicate(thread.id.clone()));
            }
            state.order.push(thread.id.clone());
            state.threads.insert(thread.id.clone(), thread.clone());
            Ok(())
        })())
    }

    fn thread<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Thread, StoreError>> {
        ready(self.with_thread(id, Thread::clone))
    }

    fn thread_header<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ThreadHeader, StoreError>> {
        ready(self.with_thread(id, Thread::header))
    }

    fn thread_since<'a>(
        &'a self,
        id: &'a str,
        from: usize,
    ) -> BoxFuture<'a, Result<(ThreadHeader, Vec<Message>), StoreError>> {
        ready(self.with_thread(id, |t| {
            let tail = t.messages.get(from..).unwrap_or_default().to_vec();
            (t.header(), tail)
        }))
    }

    fn messages<'a>(
        &'a self,
        thread_id: &'a str,
        query: &'a MessageQuery,
    ) -> BoxFuture<'a, Result<MessagePage, StoreError>> {
        ready(
            self.with_thread(thread_id, |t| query.select(thread_id, t.messages.iter()))
                .and_then(|page| page),
        )
    }

    fn message<'a>(
        &'a self,
        thread_id: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Message>, StoreError>> {
        ready(self.with_thread(thread_id, |t| {
            t.messages.iter().find(|m| m.id == message_id).cloned()
        }))
    }

    fn delete_thread<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        ready((|| {
            let mut state = self.state()?;
            let existed = state.threads.remove(id).is_some();
            state.order.retain(|t| t != id);
            for run in state.thread_runs.remove(id).unwrap_or_default() {
                state.runs.remove(&run);
            }
            Ok(existed)
        })())
    }

    fn thread_headers(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ThreadHeader>, StoreError>> {
        ready(self.state().map(|state| {
            state
                .order
                .iter()
                .rev()
                .take(limit)
                .filter_map(|id| state.threads.get(id).map(Thread::header))
                .collect()
        }))
    }

    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Run, StoreError>> {
        ready(self.state().and_then(|state| {
            state
                .runs
                .get(id)
                .cloned()
                .ok_or_else(|| StoreError::RunNotFound(id.to_owned()))
        }))
    }

    fn runs<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<Vec<Run>, StoreError>> {
        ready(self.state().map(|state| {
            state
                .thread_runs
                .get(thread_id)
                .into_iter()
                .flatten()
                .filter_map(|id| state.runs.get(id).cloned())
                .collect()
        }))
    }

    fn add_user_message<'a>(
        &'a self,
        thread_id: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(self.unlocked(thread_id, |t| t.messages.push(message.clone())))
    }

    fn set_message_metadata<'a>(
        &'a self,
        thread_id: &'a str,
        message_id: &'a str,
        metadata: &'a Metadata,
    ) -> BoxFuture<'a, Result<Option<Message>, StoreError>> {
        ready(self.unlocked(thread_id, |t| {
            t.messages.iter_mut().find(|m| m.id == message_id).map(|m| {
                m.metadata = metadata.clone();
                m.clone()
            })
        }))
    }

    fn update_thread<'a>(
        &'a self,
        header: &'a ThreadHeader,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(self.unlocked(&header.id, |t| {
            t.flow.clone_from(&header.flow);
            t.slots.clone_from(&header.slots);
            t.metadata = header.metadata.clone();
            t.pending.clone_from(&header.pending);
        }))
    }

    fn begin_run<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(self.begin(run))
    }

    fn commit<'a>(&'a self, step: Step<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(self.apply(step))
    }

    fn locked_thread_ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        ready(self.state().map(|state| {
            state
                .order
                .iter()
                .filter(|id| {
                    state
                        .threads
                        .get(*id)
                        .is_some_and(|t| t.active_run.is_some())
                })
                .cloned()
                .collect()
        }))
    }
}
