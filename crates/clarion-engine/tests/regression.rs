//! Regression tests: one function per bug found, named after it, replaying the exact
//! interleaving that exposed it.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use clarion_engine::clock::ManualClock;
use clarion_engine::events::NoEvents;
use clarion_engine::provider::BoxFuture;
use clarion_engine::provider::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::run::{Engine, EngineError, Run, RunStatus};
use clarion_engine::store::{MemoryStore, Step, StoreError, ThreadStore};
use clarion_engine::thread::{Message, Metadata, Thread};
use clarion_engine::tool::{ToolError, ToolExecutor, ToolRequest};
use serde_json::{Value, json};
use support::{assert_protocol, flow_from};

// ---- a store that plays exact interleavings (protocol_property found these races) -------

/// Pauses the next `run()` read after it has read, until resumed.
struct Gate {
    reached: mpsc::Sender<()>,
    resume: mpsc::Receiver<()>,
}

type CommitHook = Box<dyn FnOnce(&Run) + Send>;

/// A memory store with two hooks: a gate on the next run read (a request that read a run
/// and is about to act on it) and a callback after the commit of a run in
/// `requires_action` (another request arriving at that instant).
#[derive(Default)]
struct Hooked {
    inner: MemoryStore,
    gate: Mutex<Option<Gate>>,
    on_requires_action: Mutex<Option<CommitHook>>,
}

impl Hooked {
    /// Arms the gate; returns (reached, resume) for the test's side.
    fn arm(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (reached_tx, reached_rx) = mpsc::channel();
        let (resume_tx, resume_rx) = mpsc::channel();
        *self.gate.lock().unwrap_or_else(|e| panic!("{e}")) = Some(Gate {
            reached: reached_tx,
            resume: resume_rx,
        });
        (reached_rx, resume_tx)
    }
}

impl ThreadStore for Hooked {
    fn insert_thread(&self, thread: &Thread) -> Result<(), StoreError> {
        self.inner.insert_thread(thread)
    }
    fn thread(&self, id: &str) -> Result<Thread, StoreError> {
        self.inner.thread(id)
    }
    fn delete_thread(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_thread(id)
    }
    fn thread_ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.thread_ids(limit)
    }
    fn run(&self, id: &str) -> Result<Run, StoreError> {
        let run = self.inner.run(id);
        let gate = self.gate.lock().ok().and_then(|mut g| g.take());
        if let Some(gate) = gate {
            gate.reached.send(()).ok();
            gate.resume.recv().ok();
        }
        run
    }
    fn runs(&self, thread_id: &str) -> Result<Vec<Run>, StoreError> {
        self.inner.runs(thread_id)
    }
    fn add_user_message(&self, thread_id: &str, message: &Message) -> Result<(), StoreError> {
        self.inner.add_user_message(thread_id, message)
    }
    fn begin_run(&self, run: &Run) -> Result<Thread, StoreError> {
        self.inner.begin_run(run)
    }
    fn commit(&self, step: Step<'_>) -> Result<(), StoreError> {
        self.inner.commit(step)?;
        if let Some(run) = step.run.filter(|r| r.status == RunStatus::RequiresAction) {
            let hook = self
                .on_requires_action
                .lock()
                .ok()
                .and_then(|mut h| h.take());
            if let Some(hook) = hook {
                hook(run);
            }
        }
        Ok(())
    }
}

const FLOW: &str = r#"
[flow]
name = "races"
[assistant]
model = "m"
instructions = "Book."
[limits]
requires_action_timeout = "1m"
tool_timeout = "1h"
[tools.confirm]
description = "The app asks the user to confirm."
client = true
[tools.wait]
description = "Finishes when the test says so."
builtin = "test.wait"
"#;

/// A tool that finishes when the test notifies it.
#[derive(Default)]
struct Waits {
    started: AtomicBool,
    finish: tokio::sync::Notify,
}

impl ToolExecutor for Waits {
    fn execute<'a>(&'a self, _request: ToolRequest<'a>) -> BoxFuture<'a, Result<Value, ToolError>> {
        self.started.store(true, Ordering::SeqCst);
        Box::pin(async move {
            self.finish.notified().await;
            Ok(json!({ "done": true }))
        })
    }
}

struct Race {
    engine: Arc<Engine>,
    store: Arc<Hooked>,
    tools: Arc<Waits>,
    clock: Arc<ManualClock>,
    thread_id: String,
}

fn race(turns: Vec<ScriptedTurn>) -> Race {
    let store = Arc::new(Hooked::default());
    let tools = Arc::new(Waits::default());
    let clock = Arc::new(ManualClock::new(1_000_000));
    let engine = Arc::new(
        Engine::new(
            flow_from(FLOW),
            Arc::new(ScriptedModel::new(turns)),
            tools.clone(),
            store.clone(),
        )
        .with_clock(clock.clone()),
    );
    let thread_id = engine
        .create_thread(Metadata::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    engine
        .add_message(&thread_id, "book it")
        .unwrap_or_else(|e| panic!("{e}"));
    Race {
        engine,
        store,
        tools,
        clock,
        thread_id,
    }
}

impl Race {
    async fn waiting_for_client(&self) -> Run {
        let run = self
            .engine
            .run(&self.thread_id, &NoEvents)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.status, RunStatus::RequiresAction);
        run
    }

    fn stored(&self, run_id: &str) -> (Thread, Run) {
        let thread = self
            .store
            .thread(&self.thread_id)
            .unwrap_or_else(|e| panic!("{e}"));
        let run = self.store.run(run_id).unwrap_or_else(|e| panic!("{e}"));
        (thread, run)
    }

    /// Runs `first` on another thread until it has read the run, then `second` to the end,
    /// then lets `first` finish; returns `first`'s result.
    fn interleave<T: Send + 'static>(
        &self,
        first: impl FnOnce(&Engine) -> T + Send + 'static,
        second: impl FnOnce(),
    ) -> T {
        let (reached, resume) = self.store.arm();
        let engine = self.engine.clone();
        let first = std::thread::spawn(move || first(&engine));
        reached
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("the first request never read the run: {e}"));
        second();
        resume.send(()).ok();
        first
            .join()
            .unwrap_or_else(|_| panic!("the first request panicked"))
    }
}

/// `cancel` acknowledged a run ("cancelling") in the instant after the loop's last cancel
/// check, as the run came to rest in `requires_action`: the signal died with the driver
/// and the run waited for the client as if never cancelled.
#[tokio::test]
async fn cancel_lost_when_the_run_comes_to_rest_in_requires_action() {
    let r = race(vec![ScriptedTurn::call("confirm", "{}")]);
    let acknowledged = Arc::new(Mutex::new(None));
    let weak = Arc::downgrade(&r.engine);
    let seen = acknowledged.clone();
    *r.store
        .on_requires_action
        .lock()
        .unwrap_or_else(|e| panic!("{e}")) = Some(Box::new(move |run: &Run| {
        let engine = weak.upgrade().unwrap_or_else(|| panic!("no engine"));
        *seen.lock().unwrap_or_else(|e| panic!("{e}")) =
            Some(engine.cancel(&run.id, &NoEvents).map(|r| r.status));
    }));
    let run = r
        .engine
        .run(&r.thread_id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        *acknowledged.lock().unwrap_or_else(|e| panic!("{e}")),
        Some(Ok(RunStatus::Cancelling)),
        "the cancel reached the run while it was being driven"
    );
    assert_eq!(run.status, RunStatus::Cancelled);
    let (thread, stored) = r.stored(&run.id);
    assert_eq!(stored.status, RunStatus::Cancelled);
    assert!(thread.active_run.is_none());
    assert_protocol(&thread);
}

/// `cancel` and `run_status` read the run, then claimed it and acted on what they had read.
/// A request that settled the run in between (another cancel, another status read that
/// expired it, the driver finishing) was undone: calls answered twice, a completed run
/// turned cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_run_acted_on_after_claim() {
    // Two cancels of a waiting run.
    let r = race(vec![ScriptedTurn::call("confirm", "{}")]);
    let run = r.waiting_for_client().await;
    let id = run.id.clone();
    let first = r.interleave(
        move |engine| engine.cancel(&id, &NoEvents),
        || {
            let second = r.engine.cancel(&run.id, &NoEvents);
            assert_eq!(second.map(|r| r.status), Ok(RunStatus::Cancelled));
        },
    );
    assert!(
        matches!(
            first,
            Err(EngineError::RunNotActive {
                status: RunStatus::Cancelled,
                ..
            })
        ),
        "{first:?}"
    );
    assert_protocol(&r.stored(&run.id).0);

    // Two status reads of a run that is due to expire.
    let r = race(vec![ScriptedTurn::call("confirm", "{}")]);
    let run = r.waiting_for_client().await;
    r.clock.advance(Duration::from_secs(61));
    let id = run.id.clone();
    let first = r.interleave(
        move |engine| engine.run_status(&id),
        || {
            let second = r.engine.run_status(&run.id);
            assert_eq!(second.map(|r| r.status), Ok(RunStatus::Expired));
        },
    );
    assert_eq!(first.map(|r| r.status), Ok(RunStatus::Expired));
    assert_protocol(&r.stored(&run.id).0);

    // A cancel that read the run just before it completed.
    let r = race(vec![
        ScriptedTurn::call("wait", "{}"),
        ScriptedTurn::text("done"),
    ]);
    let run = r
        .engine
        .create_run(&r.thread_id)
        .unwrap_or_else(|e| panic!("{e}"));
    let driver = {
        let engine = r.engine.clone();
        let id = run.id.clone();
        tokio::spawn(async move { engine.drive_run(&id, &NoEvents).await })
    };
    while !r.tools.started.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let id = run.id.clone();
    // Blocking in place hands this worker's tasks (the driver) to another thread.
    let first = tokio::task::block_in_place(|| {
        r.interleave(
            move |engine| engine.cancel(&id, &NoEvents),
            || {
                r.tools.finish.notify_one();
                while !driver.is_finished() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            },
        )
    });
    let outcome = driver.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.map(|r| r.status), Ok(RunStatus::Completed));
    assert!(
        matches!(
            first,
            Err(EngineError::RunNotActive {
                status: RunStatus::Completed,
                ..
            })
        ),
        "{first:?}"
    );
    let (thread, stored) = r.stored(&run.id);
    assert_eq!(
        stored.status,
        RunStatus::Completed,
        "a finished run stays finished"
    );
    assert_protocol(&thread);
}
