//! Thread stores: where threads and runs live between steps.
//!
//! The engine commits each step as one [`Step`] — the thread's new state, the messages the
//! step appended and the run — and a store must apply it atomically: all or nothing. Two
//! operations also check the thread's lock atomically (starting a run, adding a user
//! message), so two processes sharing a store cannot both run one thread.
//!
//! [`memory`] keeps everything in a map (tests, short-lived embeddings); the SQLite store
//! (`clarion-store`) is the embedded default for the CLI and the server.

pub mod memory;

use crate::run::Run;
use crate::thread::{Message, Metadata, Thread};

pub use memory::MemoryStore;

/// What a store can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No thread with this id.
    #[error("no thread `{0}`")]
    ThreadNotFound(String),
    /// No run with this id.
    #[error("no run `{0}`")]
    RunNotFound(String),
    /// The thread has an active run.
    #[error(
        "thread `{thread_id}` has an active run `{run_id}`; wait for it to finish or cancel it"
    )]
    Locked {
        /// The thread.
        thread_id: String,
        /// The run holding it.
        run_id: String,
    },
    /// A thread with this id already exists.
    #[error("thread `{0}` already exists")]
    Duplicate(String),
    /// The storage backend failed (disk, corruption…).
    #[error("storage failed: {0}")]
    Backend(String),
}

/// One step to commit atomically.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The thread after the step (slots, metadata, pending call, lock, all messages).
    pub thread: &'a Thread,
    /// The messages the step appended (the tail of `thread.messages`).
    pub appended: &'a [Message],
    /// The run after the step.
    pub run: Option<&'a Run>,
}

/// Where threads and runs are kept.
pub trait ThreadStore: Send + Sync {
    /// Stores a new thread.
    fn insert_thread(&self, thread: &Thread) -> Result<(), StoreError>;
    /// A thread by id.
    fn thread(&self, id: &str) -> Result<Thread, StoreError>;
    /// Deletes a thread and its runs; whether it existed.
    fn delete_thread(&self, id: &str) -> Result<bool, StoreError>;
    /// Ids of all threads, newest first, at most `limit`.
    fn thread_ids(&self, limit: usize) -> Result<Vec<String>, StoreError>;
    /// A run by id.
    fn run(&self, id: &str) -> Result<Run, StoreError>;
    /// The runs of a thread, oldest first.
    fn runs(&self, thread_id: &str) -> Result<Vec<Run>, StoreError>;
    /// Appends a user message unless a run holds the thread.
    fn add_user_message(&self, thread_id: &str, message: &Message) -> Result<(), StoreError>;
    /// Replaces the metadata of message `message_id` of the thread, unless a run holds the
    /// thread; whether the message exists.
    fn set_message_metadata(
        &self,
        thread_id: &str,
        message_id: &str,
        metadata: &Metadata,
    ) -> Result<bool, StoreError>;
    /// Locks the thread for `run` and stores the run, unless another active run holds it.
    /// Returns the thread as stored.
    fn begin_run(&self, run: &Run) -> Result<Thread, StoreError>;
    /// Applies one step atomically.
    fn commit(&self, step: Step<'_>) -> Result<(), StoreError>;
    /// Ids of the threads whose lock names a run — what crash recovery has to look at.
    /// The default reads every thread; a store with an index answers it with a query.
    fn locked_thread_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut locked = Vec::new();
        for id in self.thread_ids(usize::MAX)? {
            if self.thread(&id)?.active_run.is_some() {
                locked.push(id);
            }
        }
        Ok(locked)
    }
    /// Whether this process is the only one using the store, so that every unfinished run
    /// in it was left by a process that died ([`crate::run::Engine::recover`] asks). A
    /// store private to the process always is.
    fn sole_user(&self) -> bool {
        true
    }
}
