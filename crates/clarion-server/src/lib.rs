//! `clarion serve`: the Assistants API (v2) over Clarion flows, so code written for the
//! Assistants API moves to Clarion by changing `base_url`.
//!
//! Each loaded flow is an assistant (`asst_<flow name>`); threads, messages and runs are
//! the engine's, stored in the engine's store, with the API's ids, shapes, statuses and
//! error bodies. Clarion's behaviour shows through the API as applications expect it:
//! a clarification question is an assistant message, a client tool (`client = true`) is
//! `requires_action`, and server-side tools run inside and never surface.
//!
//! - [`state`]: the assistants, the store, the keys; threads bound to a flow on first run;
//! - [`auth`]: bearer keys kept as digests, and per-key ownership of threads; [`limit`]:
//!   a per-key rate limit;
//! - [`routes`]: one module per resource; [`stream`]: server-sent events for runs;
//! - [`wire`]: the JSON objects, request bodies and list pages;
//! - [`error`]: the API's error bodies and status codes; [`extract`]: extractors that
//!   reject with them; [`ids`]: ids and timestamps; [`openapi`]: the document of the subset;
//! - [`takeover`]: runs whose replica died, driven on by this one (shared stores).
//! - [`feed`]: the engine's events of recent runs, kept for `clarion play`'s inspector and
//!   served as a read-only extension (off unless asked for).
//! - [`observe`]: the access log and HTTP metrics; `routes::health`: `/healthz`,
//!   `/readyz` and `/metrics`, outside `/v1` and without keys.
//!
//! Embedded in a program of one's own: a flow's engine, a store, keys, and [`serve`] on a
//! listener, stopped by a future (here a one-shot channel; `clarion serve` uses SIGTERM):
//!
//! ```
//! use std::sync::Arc;
//! use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
//! use clarion_engine::{Engine, FnExecutor, MemoryStore, ThreadStore};
//! use clarion_server::{ApiKeys, AppState, Limits};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let flow = clarion_flow::load_str("hello.toml", r#"
//!     [flow]
//!     name = "hello"
//!     [assistant]
//!     model = "gpt-4.1-mini"
//!     instructions = "Greet people."
//! "#, None).into_result()?;
//! let store: Arc<dyn ThreadStore> = Arc::new(MemoryStore::new());
//! let engine = Engine::new(
//!     Arc::new(flow),
//!     Arc::new(ScriptedModel::new([ScriptedTurn::text("Hello!")])),
//!     Arc::new(FnExecutor(|_: &clarion_flow::Tool, _: &serde_json::Map<_, _>| Ok(serde_json::json!({})))),
//!     store.clone(),
//! );
//! let state = AppState::new(store, vec![Arc::new(engine)], ApiKeys::new(["sk-local"]))?;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let base = format!("http://{}/v1", listener.local_addr()?);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(clarion_server::serve(listener, state, Limits::default(), async {
//!     let _ = stopped.await;
//! }));
//!
//! # let _ = rustls::crypto::ring::default_provider().install_default();
//! let assistant: serde_json::Value = reqwest::Client::new()
//!     .get(format!("{base}/assistants/asst_hello"))
//!     .bearer_auth("sk-local")
//!     .send()
//!     .await?
//!     .json()
//!     .await?;
//! assert_eq!(assistant["instructions"], "Greet people.");
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod error;
pub mod extract;
pub mod feed;
pub mod ids;
pub mod limit;
pub mod observe;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod stream;
pub mod takeover;
pub mod wire;

pub use auth::ApiKeys;
pub use routes::{
    DEFAULT_BODY_LIMIT, DEFAULT_REQUEST_TIMEOUT, Limits, metrics_router, router, router_with,
};
pub use state::{AppState, MetricsRenderer, StateError, TraceContext};
pub use takeover::spawn_takeover;

/// How long a client may take to send a request's headers once it has started; beyond it
/// the connection is closed (a slow-headers client cannot hold connections open). The
/// body then has the request timeout of [`Limits`].
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `state` on `listener` with `limits` until `shutdown` resolves, then lets the
/// requests in flight finish.
///
/// The accept loop is hyper's own rather than `axum::serve`, which sets no timer and so no
/// header-read timeout.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        listener,
        router_with(state, limits),
        HEADER_READ_TIMEOUT,
        shutdown,
    )
    .await
}

/// [`serve`] for any router and header-read timeout.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of file descriptors and the like: wait instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The peer's address, for what is limited per client rather than per key.
        let service = tower_layer::Layer::layer(
            &axum::Extension(axum::extract::ConnectInfo(peer)),
            router.clone(),
        );
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    graceful.shutdown().await;
    Ok(())
}
