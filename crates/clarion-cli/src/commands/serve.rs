//! `clarion serve`: the flows given, served over an Assistants-API-compatible HTTP API.
//!
//! The command only wires things together: flows are loaded and checked as by `clarion
//! validate` (any error stops it, exit 1), every flow gets an engine over one shared store
//! (a SQLite file, or PostgreSQL shared with other replicas), runs interrupted by a
//! previous crash are marked failed (SQLite) or taken over when their lease expires
//! (PostgreSQL, [`clarion_server::spawn_takeover`]), and the server
//! from `clarion-server` listens until Ctrl-C. The address goes to stderr as
//! `listening on http://ADDR/v1`, which scripts and tests wait for.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clarion_engine::run::Engine;
use clarion_engine::store::ThreadStore;
use clarion_flow::diagnostic::{Severity, render};
use clarion_flow::{LoadOptions, load_file_with};
use clarion_providers::select::{ProviderOverrides, model_for};
use clarion_server::{ApiKeys, AppState};
use clarion_store::SqliteStore;
use clarion_tools::ClarionTools;

use crate::args::ServeArgs;
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;
use clarion_flow::discover::flow_files;

pub(crate) fn run(args: &ServeArgs) -> Result<Exit, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> Result<Exit, CliError> {
    let files = flow_files(&args.flows)?;
    let mut keys = match &args.api_key_env {
        None => ApiKeys::open(),
        Some(name) => {
            let keys = ApiKeys::parse(&std::env::var(name).unwrap_or_default());
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
        if from_file.is_empty() {
            return Err(CliError::Io(format!(
                "--api-keys-file {shown}: no key in it; put one key (or `sha256:` and its digest) per line"
            )));
        }
        keys = keys.union(from_file);
    }
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
    if let Some(engine) = engines.first() {
        let recovered = engine.recover().await.map_err(|e| CliError::Store {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        if !recovered.is_empty() {
            output::err(&format!(
                "marked {} run(s) interrupted by the last stop as failed\n",
                recovered.len()
            ));
        }
        if store.lease_duration().is_some() {
            output::err(
                "runs are leased: a replica that stops mid-run has its runs taken over by \
                 another\n",
            );
        } else if !store.sole_user() {
            output::err(
                "note: another process has this store open, so runs left unfinished by a \
                 crash stay locked until a process opens it alone\n",
            );
        }
    }
    let names: Vec<String> = engines
        .iter()
        .map(|e| clarion_server::ids::assistant_id(&e.flow().name))
        .collect();
    let state = AppState::new(store, engines, keys.clone())
        .map_err(|e| CliError::Io(e.to_string()))?
        .with_rate_limit(args.rate_limit);
    let takeover = clarion_server::spawn_takeover(state.clone());
    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .map_err(|e| CliError::Io(format!("cannot listen on {}: {e}", args.bind)))?;
    let address = listener
        .local_addr()
        .map_err(|e| CliError::Io(format!("cannot listen on {}: {e}", args.bind)))?;
    output::err(&format!(
        "assistants: {}\nkeys: {}\nlistening on http://{address}/v1\n",
        names.join(", "),
        if keys.enabled() {
            format!("{} configured (bearer)", keys.len())
        } else {
            "none (open server: keep it on loopback)".to_owned()
        }
    ));
    let limits = clarion_server::Limits {
        body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
    };
    clarion_server::serve(listener, state, limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| CliError::Io(format!("the server stopped: {e}")))?;
    takeover.abort();
    Ok(Exit::Success)
}

/// The store `--store` names — a PostgreSQL URL or a SQLite file — and how to show it in
/// messages (a URL without its password).
async fn open_store(args: &ServeArgs) -> Result<(Arc<dyn ThreadStore>, PathBuf), CliError> {
    if crate::store::is_url(&args.store) {
        let lease = Duration::try_from_secs_f64(args.run_lease)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                CliError::Io(format!(
                    "--run-lease {}: expected a positive number of seconds",
                    args.run_lease
                ))
            })?;
        let store = crate::store::postgres(&args.store, lease).await?;
        return Ok((Arc::new(store), crate::store::shown(&args.store)));
    }
    if let Some(parent) = args.store.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| CliError::Store {
            path: args.store.clone(),
            reason: e.to_string(),
        })?;
    }
    let store = SqliteStore::open(&args.store).map_err(|e| CliError::Store {
        path: args.store.clone(),
        reason: e.to_string(),
    })?;
    Ok((Arc::new(store), args.store.clone()))
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
    for file in files {
        let tools = ClarionTools::new();
        let report = load_file_with(
            file,
            &LoadOptions {
                builtins: Some(tools.builtins()),
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
            Arc::new(tools),
            store.clone(),
        )));
    }
    Ok((!broken).then_some(engines))
}
