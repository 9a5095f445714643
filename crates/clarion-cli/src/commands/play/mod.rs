//! `clarion play`: a playground in the browser — pick a flow, talk to it, watch each step
//! (tool calls, questions, slots, injected context, the request sent to the model), save
//! the conversation as a scenario, and see a flow edited on disk reloaded.
//!
//! The page (`assets/`, built into the binary with `include_str!`: plain HTML, CSS and
//! JavaScript, no bundler, no CDN, no font) talks to the engine through the routes of
//! `clarion serve` — the Assistants API under `/v1`, with its streaming runs — plus the
//! server's read-only events extension ([`clarion_server::feed`]). What only a
//! development tool should do lives here, under `/play/api/`: the flows with their
//! diagrams and diagnostics, the stored threads, the model requests captured
//! ([`capture`]), and saving a thread as a scenario ([`clarion_testing::save`]).
//!
//! It is its own command rather than `clarion serve --playground` because its defaults
//! are a production server's mistakes: no API keys, loopback only (other addresses are
//! refused), every run's events kept in memory with their content, scenario files written
//! into the repository, flows reloaded when their files change.
//!
//! Reloading swaps the whole API: a new [`AppState`] over the new engines and the same
//! store, feed and capture, behind a lock the router reads per request. A run already
//! going finishes on the engine it started on. A flow whose new version has errors keeps
//! its last good engine, and the page shows the diagnostics.

mod api;
mod capture;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use clarion_engine::{Engine, ThreadStore};
use clarion_flow::diagnostic::{Severity, render};
use clarion_flow::discover::flow_files;
use clarion_flow::graph::Graph;
use clarion_flow::{LoadOptions, load_file_with};
use clarion_providers::select::{ProviderOverrides, model_for};
use clarion_server::feed::EventFeed;
use clarion_server::{ApiKeys, AppState};
use clarion_store::SqliteStore;
use clarion_tools::ClarionTools;

use crate::args::PlayArgs;
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;

/// How often flow files are checked for changes. Polling the paths, rather than a
/// file-system watcher, needs no new dependency and sees an editor's save-by-rename.
const WATCH_EVERY: Duration = Duration::from_millis(250);

pub(crate) fn run(args: &PlayArgs) -> Result<Exit, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(play(args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// One flow file as the page sees it: its last good version, and the diagnostics of the
/// version on disk when that one has errors.
#[derive(Clone)]
pub(crate) struct FlowEntry {
    pub(crate) file: PathBuf,
    /// The last version that loaded, and its engine.
    pub(crate) flow: Option<Arc<clarion_flow::Flow>>,
    pub(crate) engine: Option<Arc<Engine>>,
    /// The version before it, if the file was edited since the playground started: what
    /// a conversation is replayed against to show what the edit changed.
    pub(crate) previous: Option<Arc<clarion_flow::Flow>>,
    /// The Mermaid diagram of that version.
    pub(crate) mermaid: String,
    /// The errors of the version on disk, rendered; empty when it loaded.
    pub(crate) diagnostics: String,
    modified: Option<SystemTime>,
}

/// What the routes read: the flows and the API over them, swapped whole on a reload.
pub(crate) struct Current {
    /// Bumped on every reload; the page polls it.
    pub(crate) version: u64,
    pub(crate) flows: Vec<FlowEntry>,
    pub(crate) api: axum::Router,
}

/// Everything the playground shares.
pub(crate) struct Playground {
    pub(crate) store: Arc<dyn ThreadStore>,
    pub(crate) tools: Arc<ClarionTools>,
    overrides: ProviderOverrides,
    feed: Arc<EventFeed>,
    pub(crate) capture: Arc<capture::Requests>,
    pub(crate) current: RwLock<Current>,
}

impl Playground {
    /// A snapshot of the current flows and API (cheap: `Arc`s and a router).
    pub(crate) fn current(&self) -> (u64, Vec<FlowEntry>, axum::Router) {
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (current.version, current.flows.clone(), current.api.clone())
    }
}

async fn play(args: &PlayArgs) -> Result<Exit, CliError> {
    let address: std::net::SocketAddr = args.bind.parse().map_err(|_| {
        CliError::Io(format!(
            "--bind {}: expected IP:PORT on loopback, e.g. 127.0.0.1:8765",
            args.bind
        ))
    })?;
    if !address.ip().is_loopback() {
        return Err(CliError::Io(format!(
            "--bind {}: the playground listens on loopback only (it has no keys and writes files); use clarion serve to serve flows to others",
            args.bind
        )));
    }
    let files = flow_files(&args.flows)?;
    if let Some(parent) = args.store.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| CliError::Store {
            path: args.store.clone(),
            reason: e.to_string(),
        })?;
    }
    let store: Arc<dyn ThreadStore> =
        Arc::new(SqliteStore::open(&args.store).map_err(|e| CliError::Store {
            path: args.store.clone(),
            reason: e.to_string(),
        })?);
    let playground = Arc::new(Playground {
        store,
        tools: Arc::new(ClarionTools::new()),
        overrides: ProviderOverrides {
            base_url: args.base_url.clone(),
            api: args.api.map(Into::into),
            model: args.model.clone(),
            stream: None,
        },
        feed: Arc::new(EventFeed::new()),
        capture: Arc::new(capture::Requests::default()),
        current: RwLock::new(Current {
            version: 0,
            flows: Vec::new(),
            api: axum::Router::new(),
        }),
    });
    let flows: Vec<FlowEntry> = files
        .iter()
        .map(|file| FlowEntry {
            file: file.clone(),
            flow: None,
            engine: None,
            previous: None,
            mermaid: String::new(),
            diagnostics: String::new(),
            modified: None,
        })
        .collect();
    let flows = load(&playground, flows, true)?;
    if flows.iter().any(|f| f.engine.is_none()) {
        output::error_line("some flows have errors; fix them first (clarion validate)");
        return Ok(Exit::Problems);
    }
    if let Some(engine) = flows.iter().find_map(|f| f.engine.clone()) {
        // Runs a previous process left going are failed, as `clarion chat` does: a
        // playground resumes nothing behind the user's back.
        engine
            .recover()
            .await
            .map_err(|e| CliError::Io(format!("cannot recover interrupted runs: {e}")))?;
    }
    install(&playground, flows)?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| CliError::Io(format!("cannot listen on {}: {e}", args.bind)))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Io(format!("cannot listen on {}: {e}", args.bind)))?;
    let names: Vec<String> = playground
        .current()
        .1
        .iter()
        .filter_map(|f| f.engine.as_ref().map(|e| e.flow().name.clone()))
        .collect();
    output::err(&format!(
        "flows: {}\nthreads in {}\nplayground on http://{local}/\n",
        names.join(", "),
        args.store.display()
    ));
    let watcher = tokio::spawn(watch(Arc::clone(&playground)));
    let router = api::router(Arc::clone(&playground), local);
    let stopped = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    clarion_server::serve_with(
        listener,
        router,
        clarion_server::HEADER_READ_TIMEOUT,
        stopped,
    )
    .await
    .map_err(|e| CliError::Io(format!("the server stopped: {e}")))?;
    watcher.abort();
    Ok(Exit::Success)
}

/// Loads every flow whose file changed since `flows` was loaded (all of them on `first`),
/// keeping the last good engine of a flow whose new version has errors.
fn load(
    playground: &Playground,
    flows: Vec<FlowEntry>,
    first: bool,
) -> Result<Vec<FlowEntry>, CliError> {
    let mut loaded = Vec::with_capacity(flows.len());
    for mut entry in flows {
        let modified = std::fs::metadata(&entry.file)
            .and_then(|m| m.modified())
            .ok();
        if !first && modified == entry.modified {
            loaded.push(entry);
            continue;
        }
        entry.modified = modified;
        let report = load_file_with(
            &entry.file,
            &LoadOptions {
                builtins: Some(playground.tools.builtins()),
                ..LoadOptions::default()
            },
        );
        let errors: Vec<String> = report
            .diagnostics
            .iter()
            .filter(|d| d.severity() == Severity::Error)
            .map(|d| render::human(d, &report.source, false))
            .collect();
        if first {
            for error in &errors {
                output::err(&format!("{error}\n\n"));
            }
        }
        entry.diagnostics = errors.join("\n\n");
        if let Some(flow) = report.flow {
            let flow = Arc::new(flow);
            let model = model_for(&flow, &playground.overrides)
                .map_err(|e| CliError::Provider(e.to_string()))?;
            let model = capture::Capturing::new(
                model,
                Arc::clone(&playground.capture),
                playground.overrides.clone(),
            );
            entry.mermaid = Graph::of(&flow).mermaid();
            entry.previous = entry.flow.replace(Arc::clone(&flow));
            entry.engine = Some(Arc::new(Engine::new(
                flow,
                Arc::new(model),
                Arc::clone(&playground.tools) as Arc<dyn clarion_engine::ToolExecutor>,
                Arc::clone(&playground.store),
            )));
        }
        loaded.push(entry);
    }
    Ok(loaded)
}

/// Serves `flows`: a new API over their engines, the version bumped.
fn install(playground: &Playground, flows: Vec<FlowEntry>) -> Result<(), CliError> {
    let engines: Vec<Arc<Engine>> = flows.iter().filter_map(|f| f.engine.clone()).collect();
    let state = AppState::new(Arc::clone(&playground.store), engines, ApiKeys::open())
        .map_err(|e| CliError::Io(e.to_string()))?
        .with_event_feed(Arc::clone(&playground.feed));
    let api = clarion_server::router_with(state, clarion_server::Limits::default());
    let mut current = playground
        .current
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    current.version += 1;
    current.flows = flows;
    current.api = api;
    Ok(())
}

/// Reloads flows whose files change, for as long as the playground runs.
async fn watch(playground: Arc<Playground>) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        let (_, flows, _) = playground.current();
        let changed = flows
            .iter()
            .any(|f| std::fs::metadata(&f.file).and_then(|m| m.modified()).ok() != f.modified);
        if !changed {
            continue;
        }
        let reloaded = match load(&playground, flows, false) {
            Ok(flows) => install(&playground, flows),
            Err(error) => Err(error),
        };
        match reloaded {
            Ok(()) => tracing::info!("flows reloaded"),
            Err(error) => tracing::warn!("could not reload the flows: {error}"),
        }
    }
}
