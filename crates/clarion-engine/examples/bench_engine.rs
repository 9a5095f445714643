//! Engine benchmarks: what the run loop costs on top of the model and the tools.
//!
//! A real model takes hundreds of milliseconds per turn, so the engine's own cost only
//! matters at scale — many threads on one server — and when a store sits in the loop. This
//! measures exactly that, against a baseline of the same model and tool calls made without
//! the engine:
//!
//! - **round trip**: user message → the model calls a tool → its output → the model replies,
//!   through `add_message` and `run`, with the memory store and with SQLite on a temp file;
//!   median and p99 over threads of 10 round trips each (threads stay short, as real ones
//!   are: the engine checks the whole history before every model request);
//! - **concurrency**: 1,000 threads × 10 round trips at once on one multi-threaded runtime
//!   with 2 workers: wall time, errors, and the peak resident memory of that phase; once
//!   with an instant model (throughput) and once with a 5 ms model, so that every run is
//!   in flight at the same time (memory).
//!
//! - **vocabularies**: how long OpenAI's tokenizers take to build (once per process);
//! - **long thread**: one thread of 300 round trips, without truncation (the baseline) and
//!   with it (`max_context_tokens`), tokens estimated and counted with `o200k_base`,
//!   interleaved; the median round trip at turns 281–300;
//! - **token counting**: a 1,000-message thread's tokens, estimated and counted with
//!   OpenAI's tokenizers, from scratch and after one appended message, beside serializing
//!   the same messages to JSON (the baseline).
//!
//! `--long` runs only the last three.
//!
//! A plain binary, not criterion, so the tests' compile time stays low. Run it in release:
//!
//! ```text
//! cargo run --release -p clarion-engine --example bench_engine
//! cargo run --release -p clarion-engine --example bench_engine -- --threads 200   # quicker
//! cargo run --release -p clarion-engine --example bench_engine -- --long
//! ```

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clarion_engine::BoxFuture;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{Engine, RunStatus, Usage};
use clarion_engine::{EventSink, NoEvents};
use clarion_engine::{FnExecutor, ToolError, ToolExecutor, ToolRequest};
use clarion_engine::{MemoryStore, ThreadStore};
use clarion_engine::{Message, MessageKind, Metadata, ToolCall};
use clarion_engine::{Model, ModelError, ModelRequest, ModelResponse, ModelTurn};
use clarion_flow::Flow;
use clarion_flow::load_str;
use clarion_store::SqliteStore;
use serde_json::{Map, Value, json};

const FLOW: &str = r#"
[flow]
name = "bench"
[assistant]
model = "m"
instructions = "Answer with the ping tool."
[tools.ping]
description = "Replies pong."
builtin = "bench.ping"
[tools.ping.params.n]
type = "integer"
description = "A number."
ask = "Which number?"
"#;

/// The model's arguments; the user says the number (`n` is grounded: a number with a question).
const ARGUMENTS: &str = r#"{"n": 1}"#;
/// Round trips per thread.
const ROUND_TRIPS: usize = 10;
/// A model's think time in the second concurrent phase, so every thread's run is in flight
/// at once (with an instant model, tasks mostly run one after another).
const MODEL_LATENCY: Duration = Duration::from_millis(5);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let mut threads = 1_000;
    let mut long_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                threads = args.next().ok_or("--threads needs a number")?.parse()?;
            }
            "--long" => long_only = true,
            other => {
                return Err(format!("unknown argument `{other}` (try --threads N, --long)").into());
            }
        }
    }
    let flow = Arc::new(
        load_str("bench.toml", FLOW, None)
            .into_result()
            .map_err(|_| "the bench flow does not load")?,
    );
    let mut out = std::io::stdout().lock();
    vocabularies(&mut out)?;
    long_thread(&mut out, &flow)?;
    token_counting(&mut out)?;
    if long_only {
        return Ok(());
    }
    writeln!(
        out,
        "clarion engine benchmarks ({threads} threads × {ROUND_TRIPS} round trips each)\n"
    )?;

    let baseline = latencies(threads * ROUND_TRIPS, |n| baseline_round_trips(&flow, n))?;
    report(&mut out, "baseline: model + tool, no engine", &baseline)?;
    let memory = latencies(threads, |n| {
        engine_round_trips(&flow, Arc::new(MemoryStore::new()), n)
    })?;
    report(&mut out, "engine, memory store", &memory)?;
    let dir = tempfile::tempdir()?;
    let sqlite = latencies(threads, |n| {
        let store = SqliteStore::open(dir.path().join("threads.db"))?;
        engine_round_trips(&flow, Arc::new(store), n)
    })?;
    report(&mut out, "engine, SQLite store (temp file)", &sqlite)?;

    writeln!(out)?;
    for latency in [Duration::ZERO, MODEL_LATENCY] {
        concurrent(
            &mut out,
            &flow,
            threads,
            latency,
            "memory",
            Arc::new(MemoryStore::new()),
        )?;
        let store = SqliteStore::open(
            dir.path()
                .join(format!("concurrent-{}.db", latency.as_millis())),
        )?;
        concurrent(&mut out, &flow, threads, latency, "SQLite", Arc::new(store))?;
    }
    Ok(())
}

#[allow(clippy::unnecessary_wraps)] // the signature `FnExecutor` takes
fn ping(
    _tool: &clarion_flow::Tool,
    _args: &Map<String, Value>,
) -> std::result::Result<Value, ToolError> {
    Ok(json!({ "pong": true }))
}

fn round_trip_script(round_trips: usize) -> Vec<ScriptedTurn> {
    (0..round_trips)
        .flat_map(|_| {
            [
                ScriptedTurn::call("ping", ARGUMENTS),
                ScriptedTurn::text("pong"),
            ]
        })
        .collect()
}

/// Runs `measure` (which returns one duration per round trip) and sorts the result.
fn latencies(
    n: usize,
    measure: impl FnOnce(usize) -> Result<Vec<Duration>>,
) -> Result<Vec<Duration>> {
    let mut times = measure(n)?;
    times.sort_unstable();
    Ok(times)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(out: &mut impl std::io::Write, what: &str, sorted: &[Duration]) -> Result<()> {
    report_as(out, what, ("round trip", "round trips"), sorted)
}

fn report_as(
    out: &mut impl std::io::Write,
    what: &str,
    (unit, units): (&str, &str),
    sorted: &[Duration],
) -> Result<()> {
    writeln!(
        out,
        "{what:<36} {unit}: median {:>7.1} µs   p99 {:>7.1} µs   ({} {units})",
        micros(percentile(sorted, 50)),
        micros(percentile(sorted, 99)),
        sorted.len()
    )?;
    Ok(())
}

fn current_thread() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?)
}

/// The model's and the tool's share of a round trip, called directly: two model requests
/// (tool call, then reply) over a history of the same shape, and one tool execution.
fn baseline_round_trips(flow: &Flow, n: usize) -> Result<Vec<Duration>> {
    let model = ScriptedModel::new(round_trip_script(n));
    let tools = FnExecutor(ping);
    let tool = flow.tools.get("ping").ok_or("no ping tool")?;
    let arguments: Map<String, Value> = serde_json::from_str(ARGUMENTS)?;
    let message = |kind| Message {
        id: "msg".into(),
        run_id: None,
        created_at: 0,
        kind,
        metadata: Metadata::default(),
    };
    let history = vec![
        message(MessageKind::User {
            text: "ping 1".into(),
        }),
        message(MessageKind::ToolCalls {
            text: None,
            calls: vec![ToolCall {
                id: "call".into(),
                name: "ping".into(),
                arguments: ARGUMENTS.into(),
            }],
        }),
    ];
    let request = ModelRequest {
        flow,
        instructions: "Answer with the ping tool.",
        messages: &history,
        history: &history,
        words_only: false,
    };
    current_thread()?.block_on(async {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            model.respond(request, &NoEvents).await?;
            tools
                .execute(ToolRequest {
                    flow,
                    tool,
                    call_id: "call",
                    idempotency_key: "key_1",
                    arguments: &arguments,
                })
                .await?;
            model.respond(request, &NoEvents).await?;
            times.push(start.elapsed());
        }
        Ok(times)
    })
}

/// `threads` threads, one after another, of [`ROUND_TRIPS`] round trips each.
fn engine_round_trips(
    flow: &Arc<Flow>,
    store: Arc<dyn ThreadStore>,
    threads: usize,
) -> Result<Vec<Duration>> {
    let model = Arc::new(ScriptedModel::new(round_trip_script(threads * ROUND_TRIPS)));
    let engine = Engine::new(flow.clone(), model, Arc::new(FnExecutor(ping)), store);
    current_thread()?.block_on(async {
        let mut times = Vec::with_capacity(threads * ROUND_TRIPS);
        for _ in 0..threads {
            let thread = engine.create_thread(Metadata::default()).await?;
            for _ in 0..ROUND_TRIPS {
                let start = Instant::now();
                engine.add_message(&thread.id, "ping 1").await?;
                let run = engine.run(&thread.id, &NoEvents).await?;
                times.push(start.elapsed());
                if run.status != RunStatus::Completed || run.steps != 2 {
                    return Err(format!(
                        "round trip ended {:?} after {} steps",
                        run.status, run.steps
                    )
                    .into());
                }
            }
        }
        Ok(times)
    })
}

/// A model for many threads at once: a tool call after a user message, else a reply,
/// after `latency` (zero: at once).
struct PingPong {
    latency: Duration,
}

impl Model for PingPong {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        _events: &'a dyn EventSink,
    ) -> BoxFuture<'a, std::result::Result<ModelResponse, ModelError>> {
        let asked = matches!(
            request.messages.last().map(|m| &m.kind),
            Some(MessageKind::User { .. })
        );
        let turn = if asked {
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![ToolCall {
                    id: String::new(),
                    name: "ping".into(),
                    arguments: ARGUMENTS.into(),
                }],
            }
        } else {
            ModelTurn::Text("pong".into())
        };
        Box::pin(async move {
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            Ok(ModelResponse {
                turn,
                usage: Usage::default(),
            })
        })
    }
}

/// Peak resident memory since the last reset, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets the peak to the current resident memory, so each phase reports its own peak.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn concurrent(
    out: &mut impl std::io::Write,
    flow: &Arc<Flow>,
    threads: usize,
    latency: Duration,
    name: &str,
    store: Arc<dyn ThreadStore>,
) -> Result<()> {
    let engine = Arc::new(Engine::new(
        flow.clone(),
        Arc::new(PingPong { latency }),
        Arc::new(FnExecutor(ping)),
        store,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    let reset = reset_peak_rss();
    let start = Instant::now();
    let errors = runtime.block_on(async {
        let tasks: Vec<_> = (0..threads)
            .map(|_| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let thread = engine
                        .create_thread(Metadata::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    for _ in 0..ROUND_TRIPS {
                        engine
                            .add_message(&thread.id, "ping 1")
                            .await
                            .map_err(|e| e.to_string())?;
                        let run = engine
                            .run(&thread.id, &NoEvents)
                            .await
                            .map_err(|e| e.to_string())?;
                        if run.status != RunStatus::Completed || run.steps != 2 {
                            return Err(format!(
                                "ended {:?} after {} steps",
                                run.status, run.steps
                            ));
                        }
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        let mut errors = Vec::new();
        for task in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => errors.push(error),
                Err(error) => errors.push(error.to_string()),
            }
        }
        errors
    });
    let wall = start.elapsed();
    let peak = peak_rss_mib().map_or_else(|| "unknown".to_owned(), |mib| format!("{mib:.1} MiB"));
    writeln!(
        out,
        "concurrent, {name} store, model latency {} ms: {threads} threads × {ROUND_TRIPS} round trips \
         on 2 workers in {:.2} s ({:.0} round trips/s), {} errors, peak RSS {peak}{}",
        latency.as_millis(),
        wall.as_secs_f64(),
        f64::from(u32::try_from(threads * ROUND_TRIPS).unwrap_or(u32::MAX)) / wall.as_secs_f64(),
        errors.len(),
        if reset {
            ""
        } else {
            " (process peak: the reset is not supported here)"
        }
    )?;
    if let Some(first) = errors.first() {
        writeln!(out, "  first error: {first}")?;
    }
    Ok(())
}

/// Turns of the long thread, and how many threads of each kind are interleaved.
const LONG_TURNS: usize = 300;
const LONG_REPEATS: usize = 15;

/// How long each OpenAI vocabulary takes to build: once per process, when an engine
/// starts on a flow that counts with it. First in the run, before anything builds them.
fn vocabularies(out: &mut impl std::io::Write) -> Result<()> {
    use clarion_engine::bench::Counter;
    writeln!(out, "tokenizer vocabularies, built once per process:")?;
    for (name, counter) in [
        ("o200k_base", Counter::O200kBase),
        ("cl100k_base", Counter::Cl100kBase),
    ] {
        let start = Instant::now();
        counter.prepare();
        writeln!(
            out,
            "{name:<36} {:>7.1} ms{}",
            start.elapsed().as_secs_f64() * 1e3,
            if counter.is_exact() {
                ""
            } else {
                " (built without the tiktoken feature: nothing to build)"
            }
        )?;
    }
    writeln!(out)?;
    Ok(())
}

/// One thread of [`LONG_TURNS`] round trips, without truncation and with it (tokens
/// estimated, and counted with `o200k_base`), interleaved so that the machine's load falls
/// on all alike: the median round trip of the last 20 turns.
fn long_thread(out: &mut impl std::io::Write, flow: &Arc<Flow>) -> Result<()> {
    let limited = |limits: &str| -> Result<Arc<Flow>> {
        Ok(Arc::new(
            load_str("bench.toml", &format!("{FLOW}[limits]\n{limits}\n"), None)
                .into_result()
                .map_err(|_| "a truncated bench flow does not load")?,
        ))
    };
    let estimated = limited("max_context_tokens = 2000\ntokenizer = \"estimate\"")?;
    let counted = limited("max_context_tokens = 2000\ntokenizer = \"o200k_base\"")?;
    let mut whole = Vec::new();
    let mut cut = Vec::new();
    let mut cut_counted = Vec::new();
    for _ in 0..LONG_REPEATS {
        whole.extend(one_long_thread(flow)?);
        cut.extend(one_long_thread(&estimated)?);
        cut_counted.extend(one_long_thread(&counted)?);
    }
    whole.sort();
    cut.sort();
    cut_counted.sort();
    writeln!(
        out,
        "one thread of {LONG_TURNS} round trips ({LONG_REPEATS} threads each, interleaved), turns 281–300:"
    )?;
    report(out, "baseline: whole history sent", &whole)?;
    report(out, "max_context_tokens = 2000, estimate", &cut)?;
    report(out, "max_context_tokens = 2000, o200k_base", &cut_counted)?;
    for (what, times) in [("estimated", &cut), ("counted", &cut_counted)] {
        let ratio = micros(percentile(times, 50)) / micros(percentile(&whole, 50));
        writeln!(
            out,
            "  truncation, tokens {what}, adds {:+.1} % to the median",
            (ratio - 1.0) * 100.0
        )?;
    }
    writeln!(out)?;
    Ok(())
}

/// The round trips of turns 281–300 of one thread on the memory store.
fn one_long_thread(flow: &Arc<Flow>) -> Result<Vec<Duration>> {
    let model = Arc::new(PingPong {
        latency: Duration::ZERO,
    });
    let engine = Engine::new(
        flow.clone(),
        model,
        Arc::new(FnExecutor(ping)),
        Arc::new(MemoryStore::new()),
    );
    current_thread()?.block_on(async {
        let thread = engine.create_thread(Metadata::default()).await?;
        let mut times = Vec::new();
        for turn in 1..=LONG_TURNS {
            let start = Instant::now();
            // The number the model passes is one the user said (grounding).
            engine.add_message(&thread.id, "ping 1").await?;
            let run = engine.run(&thread.id, &NoEvents).await?;
            let took = start.elapsed();
            if run.status != RunStatus::Completed || run.steps != 2 {
                return Err(format!(
                    "turn {turn} ended {:?} after {} steps",
                    run.status, run.steps
                )
                .into());
            }
            if turn > LONG_TURNS - 20 {
                times.push(took);
            }
        }
        Ok(times)
    })
}

/// The tokens of a 1,000-message thread, estimated and counted with each OpenAI
/// tokenizer: from scratch (a thread the engine has not kept) and after one more message
/// (the kept case); beside serializing the same messages to JSON, which every request
/// does anyway.
fn token_counting(out: &mut impl std::io::Write) -> Result<()> {
    use clarion_engine::bench::{Budget, Counter, Window};
    let messages = thousand_messages();
    let budget = Budget {
        max_tokens: Some(4_000),
        max_messages: None,
    };
    let mut baseline = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        let body = serde_json::to_string(&messages)?;
        baseline.push(start.elapsed());
        std::hint::black_box(body);
    }
    baseline.sort();
    writeln!(
        out,
        "tokens of a 1,000-message thread ({} bytes as JSON):",
        serde_json::to_string(&messages)?.len()
    )?;
    report_as(
        out,
        "baseline: serialize to JSON",
        ("pass", "passes"),
        &baseline,
    )?;
    for (name, counter) in [
        ("estimate", Counter::Estimate),
        ("o200k_base", Counter::O200kBase),
        ("cl100k_base", Counter::Cl100kBase),
    ] {
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        let mut total = 0;
        for _ in 0..200 {
            let start = Instant::now();
            let mut window = Window::new(counter);
            window.update(&messages);
            let from = window.start(&messages, 100, budget, None);
            cold.push(start.elapsed());
            total = window.tokens_from(0);
            std::hint::black_box(from);

            let mut window = Window::new(counter);
            window.update(&messages[..messages.len() - 1]);
            let start = Instant::now();
            window.update(&messages);
            let from = window.start(&messages, 100, budget, None);
            warm.push(start.elapsed());
            std::hint::black_box(from);
        }
        cold.sort();
        warm.sort();
        writeln!(out, "{name}: {total} tokens")?;
        report_as(out, "  from scratch", ("pass", "passes"), &cold)?;
        report_as(out, "  after one message", ("pass", "passes"), &warm)?;
    }
    writeln!(out)?;
    Ok(())
}

/// 250 turns of four messages: a question, a call, its output, a reply.
fn thousand_messages() -> Vec<Message> {
    let message = |i: usize, kind: MessageKind| Message {
        id: format!("msg_{i}"),
        run_id: None,
        created_at: 0,
        kind,
        metadata: Metadata::default(),
    };
    let mut messages = Vec::with_capacity(1_000);
    for turn in 0..250 {
        let at = messages.len();
        messages.push(message(
            at,
            MessageKind::User {
                text: format!(
                    "Turn {turn}: how much will I have saved by next spring if I keep this up?"
                ),
            },
        ));
        messages.push(message(
            at + 1,
            MessageKind::ToolCalls {
                text: None,
                calls: vec![ToolCall {
                    id: format!("call_{turn}"),
                    name: "calculate_savings_timeline".into(),
                    arguments: r#"{"goal_amount": 12000, "monthly_savings": 450}"#.into(),
                }],
            },
        ));
        messages.push(message(
            at + 2,
            MessageKind::ToolOutput {
                call_id: format!("call_{turn}"),
                name: "calculate_savings_timeline".into(),
                status: clarion_engine::OutputStatus::Ok,
                content: r#"{"months": 27, "years": 2.3, "attainable": true}"#.into(),
            },
        ));
        messages.push(message(
            at + 3,
            MessageKind::Assistant {
                text: "At 450 a month you reach 12,000 in 27 months, a little over two years."
                    .into(),
            },
        ));
    }
    messages
}
