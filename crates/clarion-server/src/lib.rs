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
//!   reject with them; [`ids`]: ids and timestamps; [`openapi`]: the document of the subset.

pub mod auth;
pub mod error;
pub mod extract;
pub mod ids;
pub mod limit;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod stream;
pub mod wire;

pub use auth::ApiKeys;
pub use routes::{DEFAULT_BODY_LIMIT, DEFAULT_REQUEST_TIMEOUT, Limits, router, router_with};
pub use state::{AppState, StateError};

/// Serves `state` on `listener` with `limits` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router_with(state, limits))
        .with_graceful_shutdown(shutdown)
        .await
}
