//! Regression tests: one function per bug found, named after it, replaying the exact
//! interleaving or input that exposed it. Two parts: the run engine's races (found by
//! `protocol_property`), then the flow loader's bugs (found by `robustness` and
//! `loader_never_panics`).

mod support;

use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarion_engine::BoxFuture;
use clarion_engine::ManualClock;
use clarion_engine::NoEvents;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{Engine, EngineError, Run, RunStatus};
use clarion_engine::{
    MemoryStore, MessagePage, MessageQuery, Step, StoreError, ThreadHeader, ThreadStore,
};
use clarion_engine::{Message, Metadata, Thread};
use clarion_engine::{ToolError, ToolExecutor, ToolRequest};
use clarion_flow::diagnostic::{Diagnostic, render};
use clarion_flow::{LoadReport, load_bytes, load_file, load_str};
use serde_json::{Value, json};
use support::{assert_protocol, flow_from};

// ---- a store that plays exact interleavings (protocol_property found these races) -------

/// Pauses the next `run()` read after it has read, until resumed.
struct Gate {
    reached: tokio::sync::oneshot::Sender<()>,
    resume: tokio::sync::oneshot::Receiver<()>,
}

type CommitHook = Box<dyn FnOnce(Run) -> BoxFuture<'static, ()> + Send>;

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
    fn arm(
        &self,
    ) -> (
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (reached_tx, reached_rx) = tokio::sync::oneshot::channel();
        let (resume_tx, resume_rx) = tokio::sync::oneshot::channel();
        *self.gate.lock().unwrap_or_else(|e| panic!("{e}")) = Some(Gate {
            reached: reached_tx,
            resume: resume_rx,
        });
        (reached_rx, resume_tx)
    }
}

impl ThreadStore for Hooked {
    fn insert_thread<'a>(&'a self, thread: &'a Thread) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.insert_thread(thread)
    }
    fn thread<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Thread, StoreError>> {
        self.inner.thread(id)
    }
    fn thread_header<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ThreadHeader, StoreError>> {
        self.inner.thread_header(id)
    }
    fn messages<'a>(
        &'a self,
        thread_id: &'a str,
        query: &'a MessageQuery,
    ) -> BoxFuture<'a, Result<MessagePage, StoreError>> {
        self.inner.messages(thread_id, query)
    }
    fn message<'a>(
        &'a self,
        thread_id: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Message>, StoreError>> {
        self.inner.message(thread_id, message_id)
    }
    fn delete_thread<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.delete_thread(id)
    }
    fn thread_headers(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ThreadHeader>, StoreError>> {
        self.inner.thread_headers(limit)
    }
    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Run, StoreError>> {
        let gate = self.gate.lock().ok().and_then(|mut g| g.take());
        Box::pin(async move {
            let run = self.inner.run(id).await;
            if let Some(gate) = gate {
                gate.reached.send(()).ok();
                gate.resume.await.ok();
            }
            run
        })
    }
    fn runs<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<Vec<Run>, StoreError>> {
        self.inner.runs(thread_id)
    }
    fn add_user_message<'a>(
        &'a self,
        thread_id: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.add_user_message(thread_id, message)
    }
    fn set_message_metadata<'a>(
        &'a self,
        thread_id: &'a str,
        message_id: &'a str,
        metadata: &'a Metadata,
    ) -> BoxFuture<'a, Result<Option<Message>, StoreError>> {
        self.inner
            .set_message_metadata(thread_id, message_id, metadata)
    }
    fn update_thread<'a>(
        &'a self,
        header: &'a ThreadHeader,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.update_thread(header)
    }
    fn begin_run<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.begin_run(run)
    }
    fn commit<'a>(&'a self, step: Step<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.commit(step).await?;
            if let Some(run) = step.run.filter(|r| r.status == RunStatus::RequiresAction) {
                let hook = self
                    .on_requires_action
                    .lock()
                    .ok()
                    .and_then(|mut h| h.take());
                if let Some(hook) = hook {
                    hook(run.clone()).await;
                }
            }
            Ok(())
        })
    }
    fn locked_thread_ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.locked_thread_ids()
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

async fn race(turns: Vec<ScriptedTurn>) -> Race {
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
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    engine
        .add_message(&thread_id, "book it")
        .await
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

    async fn stored(&self, run_id: &str) -> (Thread, Run) {
        let thread = self
            .store
            .thread(&self.thread_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let run = self
            .store
            .run(run_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (thread, run)
    }

    /// Runs `first` as another task until it has read the run, then `second` to the end,
    /// then lets `first` finish; returns `first`'s result.
    async fn interleave<T, F>(
        &self,
        first: impl FnOnce(Arc<Engine>) -> F,
        second: impl Future<Output = ()>,
    ) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (reached, resume) = self.store.arm();
        let first = tokio::spawn(first(Arc::clone(&self.engine)));
        tokio::time::timeout(Duration::from_secs(5), reached)
            .await
            .unwrap_or_else(|e| panic!("the first request never read the run: {e}"))
            .unwrap_or_else(|e| panic!("the gate was dropped: {e}"));
        second.await;
        resume.send(()).ok();
        first
            .await
            .unwrap_or_else(|_| panic!("the first request panicked"))
    }
}

/// `cancel` acknowledged a run ("cancelling") in the instant after the loop's last cancel
/// check, as the run came to rest in `requires_action`: the signal died with the driver
/// and the run waited for the client as if never cancelled.
#[tokio::test]
async fn cancel_lost_when_the_run_comes_to_rest_in_requires_action() {
    let r = race(vec![ScriptedTurn::call("confirm", "{}")]).await;
    let acknowledged = Arc::new(Mutex::new(None));
    let weak = Arc::downgrade(&r.engine);
    let seen = acknowledged.clone();
    *r.store
        .on_requires_action
        .lock()
        .unwrap_or_else(|e| panic!("{e}")) = Some(Box::new(move |run: Run| {
        Box::pin(async move {
            let engine = weak.upgrade().unwrap_or_else(|| panic!("no engine"));
            let status = engine.cancel(&run.id, &NoEvents).await.map(|r| r.status);
            *seen.lock().unwrap_or_else(|e| panic!("{e}")) = Some(status);
        })
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
    let (thread, stored) = r.stored(&run.id).await;
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
    let r = race(vec![ScriptedTurn::call("confirm", "{}")]).await;
    let run = r.waiting_for_client().await;
    let id = run.id.clone();
    let first = r
        .interleave(
            move |engine| async move { engine.cancel(&id, &NoEvents).await },
            async {
                let second = r.engine.cancel(&run.id, &NoEvents).await;
                assert_eq!(second.map(|r| r.status), Ok(RunStatus::Cancelled));
            },
        )
        .await;
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
    assert_protocol(&r.stored(&run.id).await.0);

    // Two status reads of a run that is due to expire.
    let r = race(vec![ScriptedTurn::call("confirm", "{}")]).await;
    let run = r.waiting_for_client().await;
    r.clock.advance(Duration::from_secs(61));
    let id = run.id.clone();
    let first = r
        .interleave(
            move |engine| async move { engine.run_status(&id).await },
            async {
                let second = r.engine.run_status(&run.id).await;
                assert_eq!(second.map(|r| r.status), Ok(RunStatus::Expired));
            },
        )
        .await;
    assert_eq!(first.map(|r| r.status), Ok(RunStatus::Expired));
    assert_protocol(&r.stored(&run.id).await.0);

    // A cancel that read the run just before it completed.
    let r = race(vec![
        ScriptedTurn::call("wait", "{}"),
        ScriptedTurn::text("done"),
    ])
    .await;
    let run = r
        .engine
        .create_run(&r.thread_id)
        .await
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
    let first = r
        .interleave(
            move |engine| async move { engine.cancel(&id, &NoEvents).await },
            async {
                r.tools.finish.notify_one();
                while !driver.is_finished() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            },
        )
        .await;
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
    let (thread, stored) = r.stored(&run.id).await;
    assert_eq!(
        stored.status,
        RunStatus::Completed,
        "a finished run stays finished"
    );
    assert_protocol(&thread);
}

// ---- the flow loader: inputs that broke it ----------------------------------------------

/// Every span is inside the text and on character boundaries, so it can be sliced.
fn assert_spans_slice(report: &LoadReport) {
    let text = report.source.text();
    for diagnostic in &report.diagnostics {
        if let Some(span) = &diagnostic.span {
            assert!(
                text.get(span.clone()).is_some(),
                "{} span {span:?} cannot slice a {}-byte text",
                diagnostic.code(),
                text.len()
            );
        }
    }
}

const MINIMAL: &str = "[flow]\nname = \"t\"\n[assistant]\nmodel = \"m\"\ninstructions = \"i\"\n";

/// The span of an invalid UTF-8 sequence was one byte long, but the kept (lossy) text has
/// a three-byte U+FFFD there: slicing the text at the span panicked.
#[test]
fn invalid_utf8_span_split_the_replacement_character() {
    let report = load_bytes("bad.toml", b"name = \"\xFF\"\n", None);
    assert_eq!(report.diagnostics.len(), 1);
    assert_spans_slice(&report);
    let span = report.diagnostics[0].span.clone().unwrap_or_default();
    assert_eq!(&report.source.text()[span], "\u{FFFD}");
}

/// Each unknown key was removed from its table with `shift_remove`, which moves every
/// later key: 30,000 unknown keys in `[limits]` took 7.8 s in a release build.
#[test]
fn unknown_keys_were_removed_in_quadratic_time() {
    let mut text = format!("{MINIMAL}[limits]\n");
    for i in 0..20_000 {
        let _ = writeln!(text, "k{i} = {i}");
    }
    let report = load_str("keys.toml", &text, None);
    assert_eq!(report.error_count(), 20_000);
}

/// Whether a part was broken was answered by scanning every broken part, once per tool,
/// parameter and template: 5,000 broken parameters took 19 s in a debug build (now 1.4 s).
#[test]
fn broken_parts_were_scanned_once_per_check() {
    let mut text = format!("{MINIMAL}[tools.t]\ndescription = \"d\"\nclient = true\n");
    for i in 0..5_000 {
        let _ = writeln!(
            text,
            "[tools.t.params.p{i}]\ntype = \"nummber\"\ndescription = \"d\"\nask = \"{{{{ args.p{i} }}}}\""
        );
    }
    let report = load_str("params.toml", &text, None);
    assert!(report.error_count() >= 5_000);
}

/// A `$ref` to a device was read to the end: `/dev/zero` never ends, so the loader filled
/// memory until the allocation failed (or the OOM killer came). Absolute paths are refused
/// now, but a relative path still climbs there, and a symlink or a FIFO in a repository
/// gets there too.
#[test]
fn ref_to_a_device_was_read_forever() {
    if !Path::new("/dev/zero").exists() {
        return;
    }
    let climb = "../".repeat(64);
    let text = format!(
        "{MINIMAL}[tools.t]\ndescription = \"d\"\nclient = true\n\
         [tools.t.params.p]\n\"$ref\" = \"{climb}dev/zero\"\nask = \"?\"\n"
    );
    let report = load_str("ref.toml", &text, Some(Path::new("/tmp")));
    let messages: Vec<String> = report.diagnostics.iter().map(Diagnostic::message).collect();
    assert!(
        messages.iter().any(|m| m.contains("not a regular file")),
        "{messages:?}"
    );
}

/// `load_file` trusted the file's metadata for its size, which is 0 for a device:
/// `clarion validate /dev/zero` read forever.
#[test]
fn flow_file_on_a_device_was_read_forever() {
    let path = Path::new("/dev/zero");
    if !path.exists() {
        return;
    }
    let report = load_file(path);
    let codes: Vec<&str> = report.diagnostics.iter().map(Diagnostic::code).collect();
    assert_eq!(codes, ["E001"]);
    assert!(report.diagnostics[0].message().contains("limited to"));
}

/// Each code frame handed the renderer the whole file, which it reads to the end: a file
/// with a problem on each of its 10,000 lines took a minute to print in a debug build.
#[test]
fn rendering_read_the_whole_file_for_each_diagnostic() {
    let mut text = format!("{MINIMAL}[limits]\n");
    for i in 0..5_000 {
        let _ = writeln!(text, "k{i} = {i}");
    }
    let report = load_str("keys.toml", &text, None);
    let last = report
        .diagnostics
        .last()
        .map(|d| render::human(d, &report.source, false));
    assert!(last.unwrap_or_default().contains("5006 | k4999 = 4999"));
    let rendered: usize = report
        .diagnostics
        .iter()
        .map(|d| render::human(d, &report.source, false).len())
        .sum();
    assert!(rendered > 5_000 * 100);
}

/// MiniJinja reports an unexpected character as one byte; inside a template, the
/// diagnostic's span then ended in the middle of a two-byte `¡`. Found by
/// `loader_never_panics::mutated_personal_finance`.
#[test]
fn template_error_span_split_a_multibyte_character() {
    for template in ["{{ ¡ }}", "{% if ¡ %}x{% endif %}", "a {{ 1 + 😀 }}"] {
        let text = format!(
            "{MINIMAL}[tools.t]\ndescription = \"d\"\nclient = true\n\
             [tools.t.on_error]\ninject = \"{template}\"\n"
        );
        let report = load_str("template.toml", &text, None);
        assert_eq!(report.error_count(), 1, "{template}");
        assert_spans_slice(&report);
    }
}
