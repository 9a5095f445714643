//! An in-memory store: a map behind a lock. Each operation holds the lock for its whole
//! duration, which makes every step atomic.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Step, StoreError, ThreadStore};
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

impl ThreadStore for MemoryStore {
    fn insert_thread(&self, thread: &Thread) -> Result<(), StoreError> {
        let mut state = self.state()?;
        if state.threads.contains_key(&thread.id) {
            return Err(StoreError::Duplicate(thread.id.clone()));
        }
        state.order.push(thread.id.clone());
        state.threads.insert(thread.id.clone(), thread.clone());
        Ok(())
    }

    fn thread(&self, id: &str) -> Result<Thread, StoreError> {
        self.state()?
            .threads
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::ThreadNotFound(id.to_owned()))
    }

    fn delete_thread(&self, id: &str) -> Result<bool, StoreError> {
        let mut state = self.state()?;
        let existed = state.threads.remove(id).is_some();
        state.order.retain(|t| t != id);
        for run in state.thread_runs.remove(id).unwrap_or_default() {
            state.runs.remove(&run);
        }
        Ok(existed)
    }

    fn thread_ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .state()?
            .order
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    fn run(&self, id: &str) -> Result<Run, StoreError> {
        self.state()?
            .runs
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::RunNotFound(id.to_owned()))
    }

    fn runs(&self, thread_id: &str) -> Result<Vec<Run>, StoreError> {
        let state = self.state()?;
        let ids = state
            .thread_runs
            .get(thread_id)
            .cloned()
            .unwrap_or_default();
        Ok(ids
            .iter()
            .filter_map(|id| state.runs.get(id).cloned())
            .collect())
    }

    fn add_user_message(&self, thread_id: &str, message: &Message) -> Result<(), StoreError> {
        let mut state = self.state()?;
        let thread = state
            .threads
            .get(thread_id)
            .ok_or_else(|| StoreError::ThreadNotFound(thread_id.to_owned()))?;
        if let Some(run_id) = holder(&state, thread) {
            return Err(StoreError::Locked {
                thread_id: thread_id.to_owned(),
                run_id,
            });
        }
        if let Some(thread) = state.threads.get_mut(thread_id) {
            thread.messages.push(message.clone());
        }
        Ok(())
    }

    fn set_message_metadata(
        &self,
        thread_id: &str,
        message_id: &str,
        metadata: &Metadata,
    ) -> Result<bool, StoreError> {
        let mut state = self.state()?;
        let thread = state
            .threads
            .get(thread_id)
            .ok_or_else(|| StoreError::ThreadNotFound(thread_id.to_owned()))?;
        if let Some(run_id) = holder(&state, thread) {
            return Err(StoreError::Locked {
                thread_id: thread_id.to_owned(),
                run_id,
            });
        }
        let message = state
            .threads
            .get_mut(thread_id)
            .and_then(|t| t.messages.iter_mut().find(|m| m.id == message_id));
        Ok(message.map(|m| m.metadata = metadata.clone()).is_some())
    }

    fn begin_run(&self, run: &Run) -> Result<Thread, StoreError> {
        let mut state = self.state()?;
        let thread = state
            .threads
            .get(&run.thread_id)
            .ok_or_else(|| StoreError::ThreadNotFound(run.thread_id.clone()))?;
        if let Some(run_id) = holder(&state, thread) {
            return Err(StoreError::Locked {
                thread_id: run.thread_id.clone(),
                run_id,
            });
        }
        state.runs.insert(run.id.clone(), run.clone());
        state
            .thread_runs
            .entry(run.thread_id.clone())
            .or_default()
            .push(run.id.clone());
        let thread = state
            .threads
            .get_mut(&run.thread_id)
            .ok_or_else(|| StoreError::ThreadNotFound(run.thread_id.clone()))?;
        thread.active_run = Some(run.id.clone());
        Ok(thread.clone())
    }

    fn commit(&self, step: Step<'_>) -> Result<(), StoreError> {
        let mut state = self.state()?;
        if !state.threads.contains_key(&step.thread.id) {
            return Err(StoreError::ThreadNotFound(step.thread.id.clone()));
        }
        state
            .threads
            .insert(step.thread.id.clone(), step.thread.clone());
        if let Some(run) = step.run {
            state.runs.insert(run.id.clone(), run.clone());
        }
        Ok(())
    }
}
