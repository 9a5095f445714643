//! `clarion serve`: the flows given, served over an Assistants-API-compatible HTTP API.
//!
//! The command only wires things together: flows are loaded and checked as by `clarion
//! validate` (any error stops it, exit 1), every flow gets an engine over one shared store
//! (a SQLite file, or PostgreSQL shared with other replicas), runs interrupted by a
//! previous crash are marked failed (SQLite) or taken over when their lease expires
//! (PostgreSQL, [`clarion_server::spawn_takeover`]), and the server from `clarion-server`
//! listens until SIGTERM or Ctrl-C. The address goes to stderr as
//! `listening on http://ADDR/v1` (a JSON line's `message` with `--log-format json`), which
//! scripts and tests wait for.
//!
//! Stopping is graceful: the listener closes at once, requests and streams in flight and
//! runs being driven get `--shutdown-grace` to finish, then the process exits 0. A run
//! still going then stays `in_progress` in the store, exactly as after a crash, and the
//! next start marks it `interrupted` (`Engine::recover`); nothing it committed is lost.
//! A second signal exits at once.
//!
//! Metrics are recorded into a Prometheus recorder installed here and served at
//! `/metrics`, on the API's listener or on `--metrics-addr`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clarion_engine::Engine;
use clarion_engine::ThreadStore;
use clarion_flow::diagnostic::{Severity, render};
use clarion_flow::{LoadOptions, load_file_with};
use clarion_providers::select::{ProviderOverrides, model_for};
use clarion_server::{ApiKeys, AppState};
use clarion_store::SqliteStore;
use clarion_tools::ClarionTools;

use crate::args::{LogFormat, ServeArgs};
use crate::error::CliError;
use crate::exit::Exit;
use crate::logging::LogRedactor;
use crate::output;
use clarion_flow::discover::flow_files;

/// Histogram buckets in seconds: from a fast request (5 ms) to a slow run (5 min).
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

pub(crate) fn run(
    args: &ServeArgs,
    format: LogFormat,
    redactor: &LogRedactor,
    traces: bool,
) -> Result<Exit, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(serve(args, format, redactor, traces));
    // A store query already on the blocking pool gets a moment to commit or roll back.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// A start-up line on stderr: as is, or as a JSON log line with `--log-format json`.
fn say(format: LogFormat, text: &str) {
    match format {
        LogFormat::Text => output::err(&format!("{text}\n")),
        LogFormat::Json => {
            for line in text.lines() {
                let line = serde_json::json!({
                    "level": "INFO",
                    "target": "clarion::serve",
                    "message": line,
                });
                output::err(&format!("{line}\n"));
            }
        }
    }
}

async fn serve(
    args: &ServeArgs,
    format: LogFormat,
    redactor: &LogRedactor,
    traces: bool,
) -> Result<Exit, CliError> {
    let files = flow_files(&args.flows)?;
    let keys = api_keys(args, redactor)?;
    let (store, shown) = open_store(args).await?;
    let overrides = ProviderOverrides {
        base_url: args.base_url.clone(),
        api: args.api.map(Into::into),
        model: args.model.clone(),
        stream: None,
    };
    let Some(engines) = load(&files, &store, &overrides)? else {
        output::error_line("some flows have errors; fix them first (clarion validate)");
        return Ok(Exit::Problems);
    };
    for engine in &engines {
        redactor.add_flow(engine.flow());
    }
    recover(&engines, &store, &shown, format).await?;
    let names: Vec<String> = engines
        .iter()
        .map(|e| clarion_server::ids::assistant_id(&e.flow().name))
        .collect();
    let metrics = install_metrics()?;
    let render: clarion_server::MetricsRenderer = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.render())
    };
    let mut state = AppState::new(store, engines, keys.clone())
        .map_err(|e| CliError::Io(e.to_string()))?
        .with_rate_limit(args.rate_limit)
        .with_keep_alive(Duration::from_secs(args.sse_keep_alive.max(1)));
    if args.metrics_addr.is_none() {
        state = state.with_metrics(render.clone());
    }
    if traces {
        state = state.with_trace_context(crate::telemetry::trace_context());
    }
    let takeover = clarion_server::spawn_takeover(state.clone());
    let listener = bind(&args.bind).await?;
    let address = listener
        .local_addr()
        .map_err(|e| CliError::Io(format!("cannot listen on {}: {e}", args.bind)))?;
    let metrics_listener = metrics_listener(args).await?;
    let metrics_line = match &metrics_listener {
        Some((_, local)) => format!("metrics on http://{local}/metrics\n"),
        None => String::new(),
    };
    say(
        format,
        &format!(
            "assistants: {}\nkeys: {}\n{metrics_line}listening on http://{address}/v1",
            names.join(", "),
            if keys.enabled() {
                format!("{} configured (bearer)", keys.len())
            } else {
                "none (open server: keep it on loopback)".to_owned()
            }
        ),
    );
    let limits = clarion_server::Limits {
        body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
    };
    let upkeep = spawn_upkeep(metrics);
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some((listener, _)) = metrics_listener {
        tokio::spawn(clarion_server::serve_with(
            listener,
            clarion_server::metrics_router(render),
            clarion_server::HEADER_READ_TIMEOUT,
            async {
                let _ = metrics_stopped.await;
            },
        ));
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(clarion_server::serve(
        listener,
        state.clone(),
        limits,
        async {
            let _ = stopped.await;
        },
    ));
    if let Some(error) = until_stopped(
        &mut server,
        stop,
        &state,
        Duration::from_secs(args.shutdown_grace),
    )
    .await
    {
        return Err(error);
    }
    let _ = stop_metrics.send(());
    upkeep.abort();
    takeover.abort();
    Ok(Exit::Success)
}

/// Drains histogram samples, which wait in the recorder until drained, between scrapes.
fn spawn_upkeep(
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            metrics.run_upkeep();
        }
    })
}

/// The keys from `--api-key-env` and `--api-keys-file`; the log's redactor learns them.
fn api_keys(args: &ServeArgs, redactor: &LogRedactor) -> Result<ApiKeys, CliError> {
    let mut keys = match &args.api_key_env {
        None => ApiKeys::open(),
        Some(name) => {
            let value = std::env::var(name).unwrap_or_default();
            for key in value.split([',', '\n']) {
                redactor.add(name, key.trim());
            }
            let keys = ApiKeys::parse(&value);
            if keys.is_empty() {
                return Err(CliError::Io(format!(
                    "--api-key-env {name}: the variable is unset or empty; set it to one or more comma-separated keys"
                )));
            }
            keys
        }
    };
    if let Some(path) = &args.api_keys_file {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Io(format!("--api-keys-file {shown}: cannot read it: {e}")))?;
        let from_file = ApiKeys::from_file_text(&text)
            .map_err(|e| CliError::Io(format!("--api-keys-file {shown}: {e}")))?;
        for line in text.lines().map(str::trim) {
            if !line.starts_with('#') && !line.starts_with("sha256:") {
                redactor.add("API key", line);
            }
        }
        if from_file.is_empty() {
            return Err(CliError::Io(format!(
                "--api-keys-file {shown}: no key in it; put one key (or `sha256:` and its digest) per line"
            )));
        }
        keys = keys.union(from_file);
    }
    Ok(keys)
}

/// Waits for SIGTERM or SIGINT, then stops `server` accepting (through `stop`) and gives
/// requests, streams and runs in flight `grace` to finish. An error if the server ended
/// on its own.
async fn until_stopped(
    server: &mut tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    state: &AppState,
    grace: Duration,
) -> Option<CliError> {
    let signal = tokio::select! {
        signal = stop_signal() => signal,
        ended = &mut *server => {
            let reason = match ended {
                Ok(Ok(())) => "it returned".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            return Some(CliError::Io(format!("the server stopped: {reason}")));
        }
    };
    tracing::info!(
        signal,
        grace_s = grace.as_secs(),
        runs_in_flight = state.running(),
        "shutting down: no new connections; waiting for requests, streams and runs in flight"
    );
    let _ = stop.send(());
    let drain = async {
        let _ = (&mut *server).await;
        state.idle().await;
    };
    tokio::select! {
        drained = tokio::time::timeout(grace, drain) => {
            if drained.is_ok() {
                tracing::info!("drained; exiting");
            } else {
                tracing::warn!(
                    runs_left = state.running(),
                    "shutdown grace ran out; runs still in progress stay in the store and the next start marks them interrupted"
                );
            }
        }
        signal = stop_signal() => tracing::warn!(
            signal,
            runs_left = state.running(),
            "second signal: exiting now; runs still in progress are marked interrupted by the next start"
        ),
    }
    None
}

/// The store `--store` names — a PostgreSQL URL or a SQLite file — and how to show it in
/// messages (a URL without its password).
async fn open_store(args: &ServeArgs) -> Result<(Arc<dyn ThreadStore>, PathBuf), CliError> {
    let lease = Duration::try_from_secs_f64(args.run_lease)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            CliError::Io(format!(
                "--run-lease {}: expected a positive number of seconds",
                args.run_lease
            ))
        })?;
    if crate::store::is_url(&args.store) {
        let store = crate::store::postgres(&args.store, lease).await?;
        return Ok((Arc::new(store), crate::store::shown(&args.store)));
    }
    if let Some(parent) = args.store.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| CliError::Store {
            path: args.store.clone(),
            reason: e.to_string(),
        })?;
    }
    let store = SqliteStore::open_with_lease(&args.store, lease).map_err(|e| CliError::Store {
        path: args.store.clone(),
        reason: e.to_string(),
    })?;
    Ok((Arc::new(store), args.store.clone()))
}

/// Resumes the runs a previous process left unfinished, on a store this process has to
/// itself, from their last committed step (each on the engine of its thread's flow, in the
/// background); a run whose flow is not loaded keeps its thread locked for the process
/// that loads it. Says what it did.
async fn recover(
    engines: &[Arc<Engine>],
    store: &Arc<dyn ThreadStore>,
    shown: &Path,
    format: LogFormat,
) -> Result<(), CliError> {
    if let Some(engine) = engines.first() {
        let failed = |e: clarion_engine::EngineError| CliError::Store {
            path: shown.to_path_buf(),
            reason: e.to_string(),
        };
        let interrupted = engine.interrupted_runs().await.map_err(failed)?;
        let (mut resumed, mut waiting) = (0, 0);
        for run in interrupted {
            let header = store
                .thread_header(&run.thread_id)
                .await
                .map_err(|e| failed(e.into()))?;
            let Some(engine) = engines.iter().find(|e| e.flow().name == header.flow) else {
                waiting += 1;
                continue;
            };
            let engine = engine.clone();
            resumed += 1;
            tokio::spawn(async move {
                match engine.take_over(&run.id, &clarion_engine::NoEvents).await {
                    Ok(run) => {
                        tracing::info!(run_id = %run.id, status = run.status.as_str(), "resumed a run interrupted by the last stop");
                    }
                    Err(error) => {
                        tracing::warn!(run_id = %run.id, "could not resume a run interrupted by the last stop: {error}");
                    }
                }
            });
        }
        if resumed > 0 {
            say(
                format,
                &format!("resuming {resumed} run(s) interrupted by the last stop"),
            );
        }
        if waiting > 0 {
            say(
                format,
                &format!(
                    "{waiting} run(s) interrupted by the last stop belong to flows not loaded here; their threads stay locked until a server that loads them starts"
                ),
            );
        }
        if let Some(lease) = store.lease_duration().filter(|_| !store.sole_user()) {
            say(
                format,
                &format!(
                    "runs are leased ({:.0} s): another process shares this store, and one that \
                     stops mid-run has its runs taken over by another",
                    lease.as_secs_f64()
                ),
            );
        }
    }
    Ok(())
}

/// The listener of `--metrics-addr`, if given, with its address.
async fn metrics_listener(
    args: &ServeArgs,
) -> Result<Option<(tokio::net::TcpListener, std::net::SocketAddr)>, CliError> {
    let Some(addr) = &args.metrics_addr else {
        return Ok(None);
    };
    let listener = bind(addr).await?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Io(format!("--metrics-addr {addr}: {e}")))?;
    Ok(Some((listener, local)))
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, CliError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Io(format!("cannot listen on {addr}: {e}")))
}

/// The Prometheus recorder, with every metric described and real histograms (buckets).
fn install_metrics() -> Result<metrics_exporter_prometheus::PrometheusHandle, CliError> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .and_then(metrics_exporter_prometheus::PrometheusBuilder::install_recorder)
        .map_err(|e| CliError::Io(format!("cannot set up the metrics: {e}")))?;
    clarion_engine::observe::describe(clarion_engine::observe::METRICS);
    clarion_engine::observe::describe(clarion_server::observe::METRICS);
    Ok(handle)
}

/// Resolves on SIGTERM (how orchestrators stop a process) or SIGINT (Ctrl-C), naming it.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

/// One engine per flow file over the shared store; `None` if any flow has errors (they
/// are printed).
fn load(
    files: &[PathBuf],
    store: &Arc<dyn ThreadStore>,
    overrides: &ProviderOverrides,
) -> Result<Option<Vec<Arc<Engine>>>, CliError> {
    let mut engines = Vec::new();
    let mut broken = false;
    // One executor for every flow: an MCP server two flows declare alike is one connection.
    let tools = Arc::new(ClarionTools::new());
    for file in files {
        let report = load_file_with(
            file,
            &LoadOptions {
                builtins: Some(tools.builtins()),
                ..LoadOptions::default()
            },
        );
        for diagnostic in report
            .diagnostics
            .iter()
            .filter(|d| d.severity() == Severity::Error)
        {
            output::err(&format!(
                "{}\n\n",
                render::human(diagnostic, &report.source, output::stderr_styled())
            ));
        }
        let Some(flow) = report.flow else {
            broken = true;
            continue;
        };
        let flow = Arc::new(flow);
        let model = model_for(&flow, overrides).map_err(|e| CliError::Provider(e.to_string()))?;
        engines.push(Arc::new(Engine::new(
            flow,
            model,
            Arc::clone(&tools) as Arc<dyn clarion_engine::ToolExecutor>,
            store.clone(),
        )));
    }
    Ok((!broken).then_some(engines))
}
