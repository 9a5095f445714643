//! What every request shares: the assistants (one engine per loaded flow), the store they
//! share, the API keys, and the runs whose tool outputs were just submitted.
//!
//! Threads in the Assistants API are not tied to an assistant; Clarion threads are tied to
//! a flow. A thread created through the API starts *unbound* (empty flow) and is bound to
//! the assistant of its first run; a later run with another assistant is refused with a
//! 400 naming the thread's assistant.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use clarion_engine::Engine;
use clarion_engine::{StoreError, ThreadHeader, ThreadStore};

use crate::auth::{ApiKeys, Caller, OWNER_KEY};
use crate::error::ApiError;
use crate::ids;
use crate::limit::RateLimiter;

/// One loaded flow, served as an assistant.
#[derive(Debug, Clone)]
pub struct Assistant {
    /// `asst_<flow name>`.
    pub id: String,
    /// The engine running the flow.
    pub engine: Arc<Engine>,
}

/// Shared server state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    assistants: Vec<Assistant>,
    store: Arc<dyn ThreadStore>,
    keys: ApiKeys,
    /// Runs whose outputs were accepted and whose engine task has not settled yet: they
    /// read as `in_progress`, never as the `requires_action` still in the store.
    submitted: Mutex<HashSet<String>>,
    /// Serialises the server's read-modify-write of thread rows (binding, metadata,
    /// deletion) with run creation; see [`AppState::lock_threads`].
    threads: tokio::sync::Mutex<()>,
    /// When the server started (seconds): the assistants' `created_at`.
    started_at: i64,
    /// Requests per second per key, if limited.
    limiter: Option<RateLimiter>,
    /// Run tasks in this process, so a shutdown can wait for them.
    runs: RunTasks,
    /// Renders `/metrics`, when the metrics are served on the API's listener.
    metrics: Option<MetricsRenderer>,
    /// How often a quiet event stream gets a comment line.
    keep_alive: std::time::Duration,
    /// Joins a request's span to the trace its headers name, when traces are exported.
    trace_context: Option<TraceContext>,
    /// The engine's events of recent runs, when kept ([`AppState::with_event_feed`]).
    feed: Option<Arc<crate::feed::EventFeed>>,
}

/// How often a streamed run that has nothing to say sends an SSE comment by default, so
/// proxies and clients do not drop a stream waiting on a slow model.
pub const DEFAULT_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// Renders the Prometheus text exposition of every metric recorded so far.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Makes a request's span (the first argument) the child of the trace its headers name —
/// the W3C `traceparent` — so the client's trace holds the request and the run it starts.
/// The server creates spans; what a trace context is belongs to the binary's exporter.
pub type TraceContext = Arc<dyn Fn(&tracing::Span, &axum::http::HeaderMap) + Send + Sync>;

/// Counts the run tasks alive in this process; [`RunTasks::idle`] waits until none is.
#[derive(Default)]
struct RunTasks {
    count: Mutex<usize>,
    changed: tokio::sync::Notify,
}

/// Held by a run task while it lives: dropping it (the task ended or was cancelled)
/// counts the task out.
pub struct RunTask(AppState);

impl Drop for RunTask {
    fn drop(&mut self) {
        let tasks = &(self.0).0.runs;
        if let Ok(mut count) = tasks.count.lock() {
            *count = count.saturating_sub(1);
        }
        tasks.changed.notify_waiters();
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("assistants", &self.0.assistants.len())
            .field("keys", &self.0.keys)
            .finish_non_exhaustive()
    }
}

/// Why the state could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// No flow to serve.
    #[error("no flow to serve; pass at least one flow file")]
    NoFlows,
    /// Two flows with the same `flow.name`.
    #[error("two flows are named `{0}`; assistant ids come from flow names, so rename one")]
    DuplicateFlow(String),
}

impl AppState {
    /// State for `engines`, which must all use `store`.
    pub fn new(
        store: Arc<dyn ThreadStore>,
        engines: Vec<Arc<Engine>>,
        keys: ApiKeys,
    ) -> Result<Self, StateError> {
        if engines.is_empty() {
            return Err(StateError::NoFlows);
        }
        let mut assistants: Vec<Assistant> = Vec::new();
        for engine in engines {
            let id = ids::assistant_id(&engine.flow().name);
            if assistants.iter().any(|a| a.id == id) {
                return Err(StateError::DuplicateFlow(engine.flow().name.clone()));
            }
            assistants.push(Assistant { id, engine });
        }
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(Self(Arc::new(Inner {
            assistants,
            store,
            keys,
            submitted: Mutex::new(HashSet::new()),
            threads: tokio::sync::Mutex::new(()),
            started_at,
            limiter: None,
            runs: RunTasks::default(),
            metrics: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
            trace_context: None,
            feed: None,
        })))
    }

    /// Limits each key (or, on an open server, all callers together) to `per_second`
    /// requests per second. Call it on the state [`AppState::new`] returned, before
    /// cloning it.
    #[must_use]
    pub fn with_rate_limit(mut self, per_second: f64) -> Self {
        let inner = Arc::get_mut(&mut self.0);
        debug_assert!(
            inner.is_some(),
            "with_rate_limit after the state was cloned"
        );
        if let Some(inner) = inner {
            inner.limiter = (per_second > 0.0).then(|| RateLimiter::new(per_second));
        }
        self
    }

    /// Serves `/metrics` with `render` on the API's own listener. Call it before cloning
    /// the state, as [`AppState::with_rate_limit`].
    #[must_use]
    pub fn with_metrics(mut self, render: MetricsRenderer) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.metrics = Some(render);
        }
        self
    }

    /// Sends a `: keep-alive` comment on a streamed run's events after `every` of silence.
    /// Call it before cloning the state.
    #[must_use]
    pub fn with_keep_alive(mut self, every: std::time::Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.keep_alive = every.max(std::time::Duration::from_millis(100));
        }
        self
    }

    /// Joins each request's span to the trace its headers name, with `adopt`. Call it
    /// before cloning the state, as [`AppState::with_rate_limit`].
    #[must_use]
    pub fn with_trace_context(mut self, adopt: TraceContext) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.trace_context = Some(adopt);
        }
        self
    }

    /// Keeps the engine's events of recent runs in `feed` and serves them at
    /// `GET /v1/threads/{thread_id}/runs/{run_id}/events` (see [`crate::feed`]). For a
    /// development tool such as `clarion play`, not for production: events hold content.
    /// A feed can outlive the state (a reloaded playground keeps its runs' events). Call it
    /// before cloning the state.
    #[must_use]
    pub fn with_event_feed(mut self, feed: Arc<crate::feed::EventFeed>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.feed = Some(feed);
        }
        self
    }

    /// The event feed, if kept.
    #[must_use]
    pub fn feed(&self) -> Option<&Arc<crate::feed::EventFeed>> {
        self.0.feed.as_ref()
    }

    /// `sink`, also recording into the event feed when there is one.
    #[must_use]
    pub(crate) fn tee(
        &self,
        run_id: &str,
        sink: Arc<dyn clarion_engine::EventSink>,
    ) -> Arc<dyn clarion_engine::EventSink> {
        match &self.0.feed {
            Some(feed) => feed.tee(run_id, sink),
            None => sink,
        }
    }

    /// The task driving `run_id` ended (for the event feed).
    pub(crate) fn run_ended(&self, run_id: &str) {
        if let Some(feed) = &self.0.feed {
            feed.ended(run_id);
        }
    }

    /// What joins a request's span to its caller's trace, if traces are exported.
    #[must_use]
    pub fn trace_context(&self) -> Option<&TraceContext> {
        self.0.trace_context.as_ref()
    }

    /// The keep-alive interval of event streams.
    #[must_use]
    pub fn keep_alive(&self) -> std::time::Duration {
        self.0.keep_alive
    }

    /// What renders `/metrics`, if it is served here.
    #[must_use]
    pub fn metrics(&self) -> Option<&MetricsRenderer> {
        self.0.metrics.as_ref()
    }

    /// Counts a run task in until the returned guard is dropped.
    #[must_use]
    pub fn run_task(&self) -> RunTask {
        if let Ok(mut count) = self.0.runs.count.lock() {
            *count += 1;
        }
        RunTask(self.clone())
    }

    /// How many run tasks are alive.
    #[must_use]
    pub fn running(&self) -> usize {
        self.0.runs.count.lock().map_or(0, |c| *c)
    }

    /// Resolves once no run task is alive. Cancel safe.
    pub async fn idle(&self) {
        loop {
            // Registered before the count is read, so a task ending in between still wakes
            // this waiter.
            let changed = self.0.runs.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            changed.await;
        }
    }

    /// The rate limiter, if any.
    #[must_use]
    pub fn limiter(&self) -> Option<&RateLimiter> {
        self.0.limiter.as_ref()
    }

    /// Every assistant, in load order.
    #[must_use]
    pub fn assistants(&self) -> &[Assistant] {
        &self.0.assistants
    }

    /// When the server started (seconds since the epoch).
    #[must_use]
    pub fn started_at(&self) -> i64 {
        self.0.started_at
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn ThreadStore> {
        &self.0.store
    }

    /// The API keys.
    #[must_use]
    pub fn keys(&self) -> &ApiKeys {
        &self.0.keys
    }

    /// An assistant by id (404 otherwise).
    pub fn assistant(&self, id: &str) -> Result<&Assistant, ApiError> {
        self.0
            .assistants
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| ApiError::not_found("assistant", id).param("assistant_id"))
    }

    /// The assistant a thread is bound to, if any.
    #[must_use]
    pub fn assistant_of(&self, thread: &ThreadHeader) -> Option<&Assistant> {
        if thread.flow.is_empty() {
            return None;
        }
        self.0
            .assistants
            .iter()
            .find(|a| a.engine.flow().name == thread.flow)
    }

    /// The header of a thread the caller may see (404 otherwise, also for other keys'
    /// threads), after expiring a run that waited too long for tool outputs. One read,
    /// whatever the thread's length.
    pub async fn thread(&self, caller: &Caller, id: &str) -> Result<ThreadHeader, ApiError> {
        let not_found = |e: StoreError| match e {
            StoreError::ThreadNotFound(_) => ApiError::not_found("thread", id),
            other => other.into(),
        };
        let thread = self.0.store.thread_header(id).await.map_err(not_found)?;
        if !caller.may_see(thread.metadata.get(OWNER_KEY)) {
            return Err(ApiError::not_found("thread", id));
        }
        if let (Some(run_id), Some(assistant)) = (&thread.active_run, self.assistant_of(&thread)) {
            let run = assistant.engine.run_status(run_id).await?;
            if run.status.is_terminal() {
                return self.0.store.thread_header(id).await.map_err(not_found);
            }
        }
        Ok(thread)
    }

    /// Held while the server rewrites a thread row (binding it, its metadata, deleting it)
    /// or starts a run on it. A thread row written from a stale read could otherwise undo a
    /// run's lock; runs only start under this guard, so a rewrite that saw no active run
    /// cannot race one. An async lock: waiting for it is cancel safe.
    pub async fn lock_threads(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.threads.lock().await
    }

    /// Binds an unbound thread to `assistant`; refuses a thread bound to another one.
    /// Call it holding [`AppState::lock_threads`].
    pub async fn bind(
        &self,
        thread: &ThreadHeader,
        assistant: &Assistant,
    ) -> Result<ThreadHeader, ApiError> {
        let flow = &assistant.engine.flow().name;
        let mut thread = self.0.store.thread_header(&thread.id).await?;
        if thread.flow.is_empty() {
            thread.flow.clone_from(flow);
            self.0.store.update_thread(&thread).await?;
        } else if &thread.flow != flow {
            return Err(ApiError::bad_request(format!(
                "Thread {} belongs to assistant {}; Clarion threads run one flow. Create a new thread for {}.",
                thread.id,
                ids::assistant_id(&thread.flow),
                assistant.id
            ))
            .param("assistant_id"));
        }
        Ok(thread)
    }

    /// Marks a run as having its outputs accepted (until [`AppState::settled`]).
    pub(crate) fn submitted(&self, run_id: &str) -> bool {
        self.0
            .submitted
            .lock()
            .is_ok_and(|mut s| s.insert(run_id.to_owned()))
    }

    /// The engine task of a submitted run has settled.
    pub(crate) fn settled(&self, run_id: &str) {
        if let Ok(mut s) = self.0.submitted.lock() {
            s.remove(run_id);
        }
    }

    /// Whether a run's outputs were accepted and its task has not settled.
    pub(crate) fn is_submitted(&self, run_id: &str) -> bool {
        self.0.submitted.lock().is_ok_and(|s| s.contains(run_id))
    }
}
