//! Cancel safety: a run's future dropped mid-model-call or mid-tool (a `timeout`, a
//! `select!`, a panicking tool) leaves nothing claimed, and the thread can then be driven
//! on, cancelled, or recovered — all in the same process, with the pairing invariant held.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use clarion_engine::BoxFuture;
use clarion_engine::ErrorCode;
use clarion_engine::Metadata;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{Engine, EngineError, RunStatus};
use clarion_engine::{EventSink, NoEvents};
use clarion_engine::{MemoryStore, ThreadStore};
use clarion_engine::{Model, ModelError, ModelRequest, ModelResponse};
use clarion_engine::{ToolError, ToolExecutor, ToolRequest};
use serde_json::{Value, json};
use support::{assert_protocol, flow_from};

const FLOW: &str = r#"
[flow]
name = "safety"
[assistant]
model = "m"
instructions = "Help."
[limits]
tool_timeout = "1h"
[tools.slow]
description = "Takes as long as the test wants."
builtin = "test.slow"
[tools.slow.params.n]
type = "integer"
description = "A number."
grounded = false
"#;

/// A model that hangs while `hang` is set, then plays its script.
struct Hanging {
    hang: AtomicBool,
    script: ScriptedModel,
}

impl Model for Hanging {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        if self.hang.load(Ordering::SeqCst) {
            return Box::pin(std::future::pending());
        }
        self.script.respond(request, events)
    }
}

/// A tool that hangs while `hang` is set, panics while `panic` is set, else answers.
#[derive(Default)]
struct Tool {
    hang: AtomicBool,
    panic: AtomicBool,
    ran: AtomicUsize,
}

impl ToolExecutor for Tool {
    fn execute<'a>(&'a self, _: ToolRequest<'a>) -> BoxFuture<'a, Result<Value, ToolError>> {
        self.ran.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panic.load(Ordering::SeqCst), "the tool panics");
        if self.hang.load(Ordering::SeqCst) {
            return Box::pin(std::future::pending());
        }
        Box::pin(async { Ok(json!({ "done": true })) })
    }
}

struct World {
    engine: Arc<Engine>,
    model: Arc<Hanging>,
    tool: Arc<Tool>,
    store: Arc<MemoryStore>,
}

fn world(turns: Vec<ScriptedTurn>) -> World {
    let model = Arc::new(Hanging {
        hang: AtomicBool::new(false),
        script: ScriptedModel::new(turns),
    });
    let tool = Arc::new(Tool::default());
    let store = Arc::new(MemoryStore::new());
    let engine = Arc::new(Engine::new(
        flow_from(FLOW),
        model.clone(),
        tool.clone(),
        store.clone(),
    ));
    World {
        engine,
        model,
        tool,
        store,
    }
}

impl World {
    /// A thread with a message and a queued run.
    async fn queued(&self) -> (String, String) {
        let thread = self
            .engine
            .create_thread(Metadata::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.engine
            .add_message(&thread.id, "go")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let run = self
            .engine
            .create_run(&thread.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (thread.id, run.id)
    }

    /// Drives the run and drops the future after `after`, mid-flight.
    async fn drop_mid_run(&self, run_id: &str) {
        let dropped = tokio::time::timeout(
            Duration::from_millis(100),
            self.engine.drive_run(run_id, &NoEvents),
        )
        .await;
        assert!(dropped.is_err(), "the run was still in flight: {dropped:?}");
    }

    async fn status(&self, run_id: &str) -> RunStatus {
        self.store
            .run(run_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status
    }

    async fn assert_usable(&self, thread_id: &str) {
        let thread = self
            .store
            .thread(thread_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_protocol(&thread);
        assert!(thread.active_run.is_none(), "the thread is unlocked");
        self.engine
            .add_message(thread_id, "again")
            .await
            .unwrap_or_else(|e| panic!("a new message: {e}"));
    }
}

#[tokio::test]
async fn a_run_dropped_mid_model_call_is_resumed_by_driving_it_again() {
    let w = world(vec![ScriptedTurn::text("Here you are.")]);
    let (thread_id, run_id) = w.queued().await;
    w.model.hang.store(true, Ordering::SeqCst);
    w.drop_mid_run(&run_id).await;
    assert_eq!(w.status(&run_id).await, RunStatus::InProgress);
    // Nothing stays claimed: driving again is not `RunBusy`, and resumes the run.
    w.model.hang.store(false, Ordering::SeqCst);
    let run = w
        .engine
        .drive_run(&run_id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("resuming: {e}"));
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        run.steps, 1,
        "the dropped request was never committed; the resumed run made it again"
    );
    w.assert_usable(&thread_id).await;
    // A finished run cannot be driven again.
    assert!(matches!(
        w.engine.drive_run(&run_id, &NoEvents).await,
        Err(EngineError::RunNotActive { .. })
    ));
}

#[tokio::test]
async fn a_run_dropped_mid_tool_can_be_cancelled_and_the_thread_goes_on() {
    let w = world(vec![ScriptedTurn::call("slow", r#"{"n": 1}"#)]);
    let (thread_id, run_id) = w.queued().await;
    w.tool.hang.store(true, Ordering::SeqCst);
    w.drop_mid_run(&run_id).await;
    assert_eq!(w.tool.ran.load(Ordering::SeqCst), 1);
    let run = w
        .engine
        .cancel(&run_id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("cancelling: {e}"));
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(w.status(&run_id).await, RunStatus::Cancelled);
    w.assert_usable(&thread_id).await;
}

#[tokio::test]
async fn a_run_dropped_mid_model_call_is_failed_by_recover() {
    let w = world(vec![ScriptedTurn::text("late")]);
    let (thread_id, run_id) = w.queued().await;
    w.model.hang.store(true, Ordering::SeqCst);
    w.drop_mid_run(&run_id).await;
    let recovered = w.engine.recover().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].status, RunStatus::Failed);
    assert_eq!(
        recovered[0].last_error.as_ref().map(|e| &e.code),
        Some(&ErrorCode::Interrupted)
    );
    w.assert_usable(&thread_id).await;
    // And a new run drives normally.
    w.model.hang.store(false, Ordering::SeqCst);
    let run = w
        .engine
        .run(&thread_id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
}

#[tokio::test]
async fn a_panicking_tool_leaves_the_run_resumable_not_busy() {
    let w = world(vec![
        ScriptedTurn::call("slow", r#"{"n": 1}"#),
        ScriptedTurn::call("slow", r#"{"n": 1}"#),
        ScriptedTurn::text("done"),
    ]);
    let (thread_id, run_id) = w.queued().await;
    w.tool.panic.store(true, Ordering::SeqCst);
    let driver = {
        let (engine, run_id) = (w.engine.clone(), run_id.clone());
        tokio::spawn(async move { engine.drive_run(&run_id, &NoEvents).await })
    };
    assert!(
        driver.await.is_err_and(|e| e.is_panic()),
        "the panic ends the task"
    );
    w.tool.panic.store(false, Ordering::SeqCst);
    let run = w
        .engine
        .drive_run(&run_id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("resuming after a panic: {e}"));
    assert_eq!(run.status, RunStatus::Completed);
    w.assert_usable(&thread_id).await;
}

#[tokio::test]
async fn a_dropped_run_is_not_resumed_by_another_engine_in_the_process() {
    // Resuming is for this engine's own abandoned runs: another engine on the same store
    // cannot know the run is not being driven elsewhere.
    let w = world(vec![ScriptedTurn::text("x")]);
    let (_, run_id) = w.queued().await;
    w.model.hang.store(true, Ordering::SeqCst);
    w.drop_mid_run(&run_id).await;
    let other = Engine::new(
        flow_from(FLOW),
        Arc::new(ScriptedModel::new([ScriptedTurn::text("x")])),
        w.tool.clone(),
        w.store.clone(),
    );
    assert!(matches!(
        other.drive_run(&run_id, &NoEvents).await,
        Err(EngineError::RunNotActive {
            status: RunStatus::InProgress,
            ..
        })
    ));
}
