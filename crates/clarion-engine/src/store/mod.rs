//! Thread stores: where threads and runs live between steps.
//!
//! The engine commits each step as one [`Step`] — the thread's new state, the messages the
//! step appended and the run — and a store must apply it atomically: all or nothing. Two
//! operations also check the thread's lock atomically (starting a run, adding a user
//! message), so two processes sharing a store cannot both run one thread.
//!
//! **Async, and cheap per request.** Every method returns a future, so a store backed by a
//! database never blocks a runtime worker (the SQLite store runs its queries on
//! `spawn_blocking`; the PostgreSQL store uses an async driver). And a request's cost must
//! not grow with what a user can grow: a thread's header ([`ThreadStore::thread_header`]),
//! a page of its messages ([`ThreadStore::messages`]), one run, or an appended message are
//! each one indexed operation, whatever the thread's length. Only a run needs a whole
//! thread ([`ThreadStore::thread`]), because the model is sent the whole history anyway;
//! an engine that kept the thread from its last run reads only what was appended since
//! ([`ThreadStore::thread_since`]).
//!
//! **Cancel safety.** A store's futures hold no lock across an `.await`: dropping one
//! either leaves the operation undone or lets it finish on its own (a blocking task runs to
//! its end), never half-applied, and nothing stays locked.
//!
//! **Leases, for stores shared by processes that each drive runs.** A store may lease runs
//! ([`ThreadStore::lease_duration`]): the engine then takes a run's lease before driving it,
//! renews it while it drives, and gives it back; a process that dies leaves its leases to
//! expire, and another takes its runs over ([`ThreadStore::orphaned_runs`],
//! [`crate::run::Engine::take_over`]). Stores private to one process keep the defaults.
//!
//! [`memory`] keeps everything in a map (tests, short-lived embeddings); the SQLite store
//! (`clarion-store`) is the embedded default for the CLI and the server; the PostgreSQL
//! store (`clarion-store-postgres`) lets several server replicas share threads. `contract`
//! (feature `contract`) is the suite each of them passes.

#[cfg(feature = "contract")]
pub mod contract;
pub(crate) mod memory;

use serde_json::{Map, Value};

use crate::BoxFuture;
use crate::run::Run;
use crate::thread::{Handoff, Message, Metadata, PendingCall, Thread};

pub use memory::MemoryStore;

/// What a store can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// A message cursor (`after`, `before`) that is not a message of the thread.
    #[error("no message `{message_id}` in thread `{thread_id}`")]
    MessageNotFound {
        /// The thread.
        thread_id: String,
        /// The id given.
        message_id: String,
    },
    /// The storage backend failed (disk, corruption…).
    #[error("storage failed: {0}")]
    Backend(String),
}

/// A thread without its messages: what most requests need, one read whatever the
/// thread's length.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadHeader {
    /// `thread_…`.
    pub id: String,
    /// The flow it runs (`flow.name`); empty while unbound (`clarion serve`).
    pub flow: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Slot values remembered across turns.
    pub slots: Map<String, Value>,
    /// String metadata for the embedding application.
    pub metadata: Metadata,
    /// A tool call waiting for the user's answers.
    pub pending: Option<PendingCall>,
    /// The run holding the thread's lock, if one is active.
    pub active_run: Option<String>,
    /// The flows that took the thread over from its own, oldest first.
    pub route: Vec<Handoff>,
    /// How many messages the thread has.
    pub message_count: usize,
    /// When the last message was added (the thread's creation if it has none).
    pub last_activity: i64,
}

impl ThreadHeader {
    /// The flow that runs the thread now: the last of its route, else its own.
    #[must_use]
    pub fn active_flow(&self) -> &str {
        crate::thread::active_flow(&self.flow, &self.route)
    }
}

impl Thread {
    /// The thread's header.
    #[must_use]
    pub fn header(&self) -> ThreadHeader {
        ThreadHeader {
            id: self.id.clone(),
            flow: self.flow.clone(),
            created_at: self.created_at,
            slots: self.slots.clone(),
            metadata: self.metadata.clone(),
            pending: self.pending.clone(),
            active_run: self.active_run.clone(),
            route: self.route.clone(),
            message_count: self.messages.len(),
            last_activity: self
                .messages
                .last()
                .map_or(self.created_at, |m| m.created_at),
        }
    }
}

/// The order of a page of messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first (the Assistants API's default).
    #[default]
    Desc,
}

/// Which messages of a thread to read, as the Assistants API pages them: `after` and
/// `before` are message ids in the chosen order; with `before` alone the page is the one
/// just before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageQuery {
    /// The order.
    pub order: Order,
    /// At most this many messages.
    pub limit: usize,
    /// Messages after this one (in `order`).
    pub after: Option<String>,
    /// Messages before this one (in `order`).
    pub before: Option<String>,
    /// Only the messages this run created.
    pub run_id: Option<String>,
    /// Only the messages people read ([`Message::is_shown`]).
    pub shown_only: bool,
}

impl Default for MessageQuery {
    fn default() -> Self {
        Self {
            order: Order::Desc,
            limit: 20,
            after: None,
            before: None,
            run_id: None,
            shown_only: false,
        }
    }
}

/// A page of messages, in the query's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessagePage {
    /// The messages.
    pub messages: Vec<Message>,
    /// Whether more lie beyond the page, in the direction it was read.
    pub has_more: bool,
}

impl MessageQuery {
    /// The page of `messages` (the thread's, oldest first) this query selects: the
    /// reference semantics every store implements.
    pub fn select<'a>(
        &self,
        thread_id: &str,
        messages: impl DoubleEndedIterator<Item = &'a Message>,
    ) -> Result<MessagePage, StoreError> {
        let matching = |m: &&Message| {
            (!self.shown_only || m.is_shown())
                && self
                    .run_id
                    .as_ref()
                    .is_none_or(|r| m.run_id.as_ref() == Some(r))
        };
        let mut items: Vec<&Message> = match self.order {
            Order::Asc => messages.filter(matching).collect(),
            Order::Desc => messages.rev().filter(matching).collect(),
        };
        let position = |cursor: &String| {
            items
                .iter()
                .position(|m| &m.id == cursor)
                .ok_or_else(|| StoreError::MessageNotFound {
                    thread_id: thread_id.to_owned(),
                    message_id: cursor.clone(),
                })
        };
        let start = self
            .after
            .as_ref()
            .map(position)
            .transpose()?
            .map_or(0, |p| p + 1);
        let end = self
            .before
            .as_ref()
            .map(position)
            .transpose()?
            .unwrap_or(items.len());
        let window: Vec<&Message> = if start < end {
            items.drain(start..end).collect()
        } else {
            Vec::new()
        };
        let (chosen, has_more) = if self.before.is_some() && self.after.is_none() {
            let skip = window.len().saturating_sub(self.limit);
            (window[skip..].to_vec(), skip > 0)
        } else {
            let has_more = window.len() > self.limit;
            (window.into_iter().take(self.limit).collect(), has_more)
        };
        Ok(MessagePage {
            messages: chosen.into_iter().cloned().collect(),
            has_more,
        })
    }
}

/// A run's lease, as [`ThreadStore::renew_lease`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This handle holds it, renewed; another process may have asked to cancel the run.
    Held {
        /// [`ThreadStore::request_cancel`] was called for the run.
        cancel_requested: bool,
    },
    /// Another handle took it over (this one let it expire), or the run ended.
    Lost,
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

impl Step<'_> {
    /// Refuses a step that does not continue exactly where the store is (`stored`
    /// messages): anything else means the caller's thread is stale or the step is not its
    /// tail, and writing it would leave a hole or a duplicate in the history.
    pub fn check(&self, stored: usize) -> Result<(), StoreError> {
        let id = &self.thread.id;
        if let Some(run) = self.run
            && run.thread_id != *id
        {
            return Err(StoreError::Backend(format!(
                "refusing a step of thread `{id}` that carries run `{}` of thread `{}`",
                run.id, run.thread_id
            )));
        }
        let total = self.thread.messages.len();
        let appended = self.appended.len();
        if stored + appended != total
            || self
                .thread
                .messages
                .get(stored..)
                .is_none_or(|tail| tail != self.appended)
        {
            return Err(StoreError::Backend(format!(
                "refusing an inconsistent step for thread `{id}`: the store holds {stored} \
                 messages and the step appends {appended}, but the thread it carries has \
                 {total} (or the appended messages are not its tail); nothing was written"
            )));
        }
        Ok(())
    }
}

/// The check every [`ThreadStore::begin_thread`] makes first (store implementations call
/// it): its run must belong to the new thread, or it would write another thread without
/// checking that thread's lock.
///
/// # Errors
///
/// [`StoreError::Backend`] naming both, when they differ.
pub fn run_belongs_to(thread: &Thread, run: &Run) -> Result<(), StoreError> {
    if run.thread_id == thread.id {
        return Ok(());
    }
    Err(StoreError::Backend(format!(
        "refusing to start thread `{}` with run `{}` of thread `{}`; nothing was written",
        thread.id, run.id, run.thread_id
    )))
}

/// Where threads and runs are kept. Every method is cancel safe (see the module docs).
pub trait ThreadStore: Send + Sync {
    /// Stores a new thread.
    fn insert_thread<'a>(&'a self, thread: &'a Thread) -> BoxFuture<'a, Result<(), StoreError>>;
    /// A thread by id, with every message: what a run works on.
    fn thread<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Thread, StoreError>>;
    /// A thread's header, without its messages.
    fn thread_header<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ThreadHeader, StoreError>>;
    /// A thread's header and its messages from position `from` on (none if it has fewer),
    /// read together: what a caller that holds the first `from` messages needs to bring
    /// its copy up to date. A store should read only those messages; the default loads
    /// the whole thread.
    fn thread_since<'a>(
        &'a self,
        id: &'a str,
        from: usize,
    ) -> BoxFuture<'a, Result<(ThreadHeader, Vec<Message>), StoreError>> {
        Box::pin(async move {
            let mut thread = self.thread(id).await?;
            let header = thread.header();
            let tail = thread.messages.split_off(from.min(thread.messages.len()));
            Ok((header, tail))
        })
    }
    /// A page of a thread's messages.
    fn messages<'a>(
        &'a self,
        thread_id: &'a str,
        query: &'a MessageQuery,
    ) -> BoxFuture<'a, Result<MessagePage, StoreError>>;
    /// One message of a thread, by id; `None` if the thread has no such message.
    fn message<'a>(
        &'a self,
        thread_id: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Message>, StoreError>>;
    /// Deletes a thread and its runs; whether it existed.
    fn delete_thread<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// The headers of the newest threads, newest first, at most `limit`.
    fn thread_headers(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ThreadHeader>, StoreError>>;
    /// A run by id.
    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Run, StoreError>>;
    /// The runs of a thread, oldest first.
    fn runs<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<Vec<Run>, StoreError>>;
    /// Appends a user message unless a run holds the thread.
    fn add_user_message<'a>(
        &'a self,
        thread_id: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Replaces the metadata of message `message_id` of the thread, unless a run holds the
    /// thread; the message as it is now, `None` if there is no such message.
    fn set_message_metadata<'a>(
        &'a self,
        thread_id: &'a str,
        message_id: &'a str,
        metadata: &'a Metadata,
    ) -> BoxFuture<'a, Result<Option<Message>, StoreError>>;
    /// Rewrites a thread's row — flow, slots, metadata, pending call — from `header`,
    /// unless a run holds the thread (a run owns the row while it runs).
    fn update_thread<'a>(
        &'a self,
        header: &'a ThreadHeader,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Locks the thread for `run` and stores the run, unless another active run holds it.
    fn begin_run<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Appends the user's `message` and begins `run` (as [`ThreadStore::begin_run`]) on
    /// the run's thread, unless another active run holds it: how a conversation's turn
    /// starts, in one write where the store can (SQLite: one transaction). The default
    /// calls [`ThreadStore::add_user_message`] then [`ThreadStore::begin_run`], so a
    /// failure or a drop between them leaves the message without its run, as two separate
    /// calls would.
    fn begin_run_after<'a>(
        &'a self,
        message: &'a Message,
        run: &'a Run,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.add_user_message(&run.thread_id, message).await?;
            self.begin_run(run).await
        })
    }
    /// Stores the new `thread` (as [`ThreadStore::insert_thread`]; `Duplicate` if its id
    /// is taken) with the user's `message` and begins `run` on it: a conversation's first
    /// turn, in one write where the store can (SQLite: one transaction). The default calls
    /// [`ThreadStore::insert_thread`] then [`ThreadStore::begin_run_after`], so a failure
    /// or a drop between them leaves the thread stored without the message. A `run` of
    /// another thread is refused ([`run_belongs_to`]), with nothing written.
    fn begin_thread<'a>(
        &'a self,
        thread: &'a Thread,
        message: &'a Message,
        run: &'a Run,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            run_belongs_to(thread, run)?;
            self.insert_thread(thread).await?;
            self.begin_run_after(message, run).await
        })
    }
    /// Applies one step atomically.
    fn commit<'a>(&'a self, step: Step<'a>) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Ids of the threads whose lock names a run — what crash recovery has to look at.
    fn locked_thread_ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    /// How long a run's lease lasts, for a store shared by several processes that each drive
    /// runs (PostgreSQL, a SQLite file). `None` for a store without leases: the engine's
    /// in-process claim is then the only one, and [`ThreadStore::sole_user`] decides crash
    /// recovery.
    ///
    /// With leases, the process driving a run holds its lease (owner and expiry), renews it
    /// every third of this duration ([`ThreadStore::renew_lease`]) and releases it when the
    /// run stops; a process that dies leaves its leases to expire, and another process
    /// takes the run over ([`ThreadStore::orphaned_runs`]) from its last committed step.
    fn lease_duration(&self) -> Option<std::time::Duration> {
        None
    }
    /// Takes the lease of an unfinished run for this store handle: when nobody holds it,
    /// this handle already does, or the holder's lease expired. Whether it was taken.
    /// Without leases, always `true`.
    fn claim_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let _ = run_id;
        Box::pin(std::future::ready(Ok(true)))
    }
    /// Extends this handle's lease of a run; what the store says about it.
    fn renew_lease<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Lease, StoreError>> {
        let _ = run_id;
        Box::pin(std::future::ready(Ok(Lease::Held {
            cancel_requested: false,
        })))
    }
    /// Gives back this handle's lease of a run (nothing if it holds none).
    fn release_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = run_id;
        Box::pin(std::future::ready(Ok(())))
    }
    /// Asks the process that holds a run's live lease to cancel it (it sees the request at
    /// its next renewal); whether another process holds one. `false` means nobody else is
    /// driving the run, so the caller settles it itself.
    fn request_cancel<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let _ = run_id;
        Box::pin(std::future::ready(Ok(false)))
    }
    /// Unfinished runs (`queued`, `in_progress`, `cancelling`) whose lease expired: their
    /// process died, and another one should take them over. Oldest first, at most `limit`.
    /// Without leases, none.
    fn orphaned_runs(&self, limit: usize) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let _ = limit;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
    /// Whether this process is the only one using the store, so that every unfinished run
    /// in it was left by a process that died ([`crate::run::Engine::recover`] asks). A
    /// store private to the process always is.
    fn sole_user(&self) -> bool {
        true
    }
}
