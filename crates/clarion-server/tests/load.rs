//! A bounded load test over loopback (ignored by default; figures in docs/serve.md):
//! `CLARION_LOAD_CLIENTS` concurrent clients (200) each run `CLARION_LOAD_LOOPS` (5) full
//! tool loops — create thread and run, poll to `requires_action`, submit the output, poll
//! to `completed`, list the messages — against the server with a model that answers at
//! once. Reports throughput, client-side and server-side latency (the server's own time per
//! request, measured by a middleware around the router), errors and protocol violations;
//! fails on any error or violation.
//!
//! The store is `CLARION_LOAD_STORE`: `sqlite` (default, a file; `CLARION_LOAD_LEASE=0`
//! opens it without run leases, the single-process baseline) or `postgres` (a fresh
//! database on `CLARION_TEST_POSTGRES`). With `CLARION_LOAD_REPLICAS` = N (1), N servers
//! share it — each on a runtime of its own with a store handle of its own (its own pool and
//! lease owner), as N processes would be — and every client sends each request to the next
//! replica in turn, so a run created on one is polled, submitted to and listed on others.
//!
//! ```sh
//! cargo test --release -p clarion-server --test load -- --ignored --nocapture
//! CLARION_LOAD_STORE=postgres CLARION_LOAD_REPLICAS=2 cargo test --release -p clarion-server --test load -- --ignored --nocapture
//! ```

#![allow(
    clippy::print_stderr,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    reason = "figures for people"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use serde_json::{Value, json};

use clarion_engine::ThreadStore;
use common::{LoopModel, client, serve_router, shop_state_on};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    client_us: Vec<u64>,
    errors: Vec<String>,
    violations: Vec<String>,
}

struct Client {
    http: reqwest::Client,
    /// One base URL per replica; requests go to each in turn.
    bases: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    tally: Arc<Mutex<Tally>>,
}

impl Client {
    /// The replica for the next request.
    fn base(&self) -> &str {
        let k = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.bases[k % self.bases.len()]
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Option<Value> {
        let start = Instant::now();
        let result = request.send().await;
        let outcome = match result {
            Ok(response) => {
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status.is_success() {
                    Ok(body)
                } else {
                    Err(format!("{status}: {body}"))
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let elapsed = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut tally = self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tally.client_us.push(elapsed);
        match outcome {
            Ok(body) => Some(body),
            Err(error) => {
                tally.errors.push(error);
                None
            }
        }
    }

    fn violation(&self, what: String) {
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .violations
            .push(what);
    }

    async fn poll(&self, thread: &str, run: &str) -> Option<Value> {
        for _ in 0..3000 {
            let run = self
                .call(
                    self.http
                        .get(format!("{}/threads/{thread}/runs/{run}", self.base())),
                )
                .await?;
            match run["status"].as_str() {
                Some("queued" | "in_progress") => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Some(_) => return Some(run),
                None => {
                    self.violation(format!("a run without status: {run}"));
                    return None;
                }
            }
        }
        self.violation(format!("run {run} never settled"));
        None
    }

    async fn one_loop(&self, n: usize) -> Option<()> {
        let user = format!("pay bill {n}");
        let run = self
            .call(
                self.http
                    .post(format!("{}/threads/runs", self.base()))
                    .json(&json!({
                        "assistant_id": "asst_shop",
                        "thread": {"messages": [{"role": "user", "content": user}]},
                    })),
            )
            .await?;
        let (tid, rid) = (
            run["thread_id"].as_str()?.to_owned(),
            run["id"].as_str()?.to_owned(),
        );
        let run = self.poll(&tid, &rid).await?;
        let calls = &run["required_action"]["submit_tool_outputs"]["tool_calls"];
        if run["status"] != "requires_action" || calls.as_array().map(Vec::len) != Some(1) {
            self.violation(format!("expected one pay call in requires_action: {run}"));
            return None;
        }
        let call_id = calls[0]["id"].as_str()?;
        self.call(
            self.http
                .post(format!(
                    "{}/threads/{tid}/runs/{rid}/submit_tool_outputs",
                    self.base()
                ))
                .json(&json!({"tool_outputs": [{"tool_call_id": call_id, "output": "ok"}]})),
        )
        .await?;
        let run = self.poll(&tid, &rid).await?;
        let messages = self
            .call(
                self.http
                    .get(format!("{}/threads/{tid}/messages?order=asc", self.base())),
            )
            .await?;
        let texts: Vec<&str> = messages["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["content"][0]["text"]["value"].as_str())
            .collect();
        if run["status"] != "completed" || texts != [user.as_str(), "Paid."] {
            self.violation(format!(
                "expected a completed run and two messages: {} {texts:?}",
                run["status"]
            ));
        }
        Some(())
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

/// The store one replica opens: `CLARION_LOAD_STORE`'s, at `place` (a SQLite file or a
/// PostgreSQL URL).
async fn open_store(place: &str) -> Arc<dyn ThreadStore> {
    if place.starts_with("postgres") {
        Arc::new(
            clarion_store_postgres::PostgresStore::connect(place)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        )
    } else {
        // `CLARION_LOAD_LEASE` seconds (default 10; 0: no leases, the baseline).
        let lease = std::env::var("CLARION_LOAD_LEASE")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(
                clarion_store::sqlite::DEFAULT_LEASE,
                Duration::from_secs_f64,
            );
        Arc::new(
            clarion_store::SqliteStore::open_with_lease(place, lease)
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }
}

/// Starts a replica on a thread and runtime of its own; its address, and what stops it.
fn replica(
    place: String,
    server_us: Arc<Mutex<Vec<u64>>>,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (ready, addr) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        runtime.block_on(async move {
            let store = open_store(&place).await;
            let state = shop_state_on(Arc::new(LoopModel), store, &[], 0.0);
            let takeover = clarion_server::spawn_takeover(state.clone());
            let timer = server_us;
            let router = clarion_server::router(state, clarion_server::DEFAULT_BODY_LIMIT).layer(
                from_fn(move |request: Request, next: Next| {
                    let timer = timer.clone();
                    async move {
                        let start = Instant::now();
                        let response = next.run(request).await;
                        let elapsed =
                            u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                        timer
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(elapsed);
                        response
                    }
                }),
            );
            let (addr, stop) = serve_router(router).await;
            let _ = ready.send(addr);
            let _ = stopped.await;
            takeover.abort();
            drop(stop);
        });
    });
    let addr = addr.recv().unwrap_or_else(|e| panic!("{e}"));
    (addr, stop, thread)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a load test: run it on purpose, in release mode (see the module docs)"]
async fn load_200_clients_full_tool_loops() {
    let clients = env_or("CLARION_LOAD_CLIENTS", 200);
    let loops = env_or("CLARION_LOAD_LOOPS", 5);
    let replicas = env_or("CLARION_LOAD_REPLICAS", 1).max(1);
    let kind = std::env::var("CLARION_LOAD_STORE").unwrap_or_else(|_| "sqlite".to_owned());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let place = match kind.as_str() {
        "postgres" => {
            let url = clarion_store_postgres::testing::server_url("load").unwrap_or_else(|| {
                panic!("CLARION_LOAD_STORE=postgres needs CLARION_TEST_POSTGRES")
            });
            clarion_store_postgres::testing::fresh_database(&url).await
        }
        _ => dir.path().join("threads.db").display().to_string(),
    };
    let server_us = Arc::new(Mutex::new(Vec::<u64>::new()));
    // Each replica gets a runtime of its own, so its requests never queue behind the load
    // generator's tasks on the same workers (they all still share the machine's cores).
    let servers: Vec<_> = (0..replicas)
        .map(|_| replica(place.clone(), server_us.clone()))
        .collect();
    let bases: Vec<String> = servers
        .iter()
        .map(|(addr, _, _)| format!("http://{addr}/v1"))
        .collect();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let http = client();
    let started = Instant::now();
    let tasks = (0..clients).map(|c| {
        let client = Client {
            http: http.clone(),
            bases: bases.clone(),
            next: std::sync::atomic::AtomicUsize::new(c),
            tally: tally.clone(),
        };
        tokio::spawn(async move {
            for n in 0..loops {
                client.one_loop(c * loops + n).await;
            }
        })
    });
    futures_util::future::join_all(tasks).await;
    let wall = started.elapsed().as_secs_f64();
    let tally = std::mem::take(
        &mut *tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let mut client_us = tally.client_us;
    client_us.sort_unstable();
    let mut server = std::mem::take(
        &mut *server_us
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    server.sort_unstable();
    eprintln!(
        "load on {kind}, {replicas} replica(s): {clients} clients × {loops} loops = {} tool loops in {wall:.2} s ({:.0} loops/s)\n\
         requests: {} ({:.0}/s); errors: {}; protocol violations: {}\n\
         client latency ms: p50 {:.2}, p99 {:.2}, max {:.2}\n\
         server time per request ms: p50 {:.3}, p99 {:.3}, max {:.3}",
        clients * loops,
        (clients * loops) as f64 / wall,
        client_us.len(),
        client_us.len() as f64 / wall,
        tally.errors.len(),
        tally.violations.len(),
        percentile(&client_us, 50.0),
        percentile(&client_us, 99.0),
        percentile(&client_us, 100.0),
        percentile(&server, 50.0),
        percentile(&server, 99.0),
        percentile(&server, 100.0),
    );
    for (_, stop, thread) in servers {
        drop(stop);
        let _ = thread.join();
    }
    assert!(
        tally.errors.is_empty(),
        "errors: {:?}",
        &tally.errors[..tally.errors.len().min(5)]
    );
    assert!(
        tally.violations.is_empty(),
        "violations: {:?}",
        &tally.violations[..tally.violations.len().min(5)]
    );
}
