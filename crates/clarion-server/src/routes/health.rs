//! Probes and metrics, outside `/v1` and without keys: orchestrators and scrapers carry
//! no API key, and none of these answers says anything about a thread.
//!
//! - `GET /healthz`: the process is up and serving (liveness). Always 200.
//! - `GET /readyz`: the store answers a query (readiness). 503 with the reason otherwise.
//!   The model provider is deliberately not checked: a provider outage would take every
//!   replica out of the load balancer at once, and runs already report it as
//!   `model_unavailable`.
//! - `GET /metrics`: the Prometheus text exposition, when served on this listener.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use clarion_engine::StoreError;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// A thread id that is never created: reading it is the cheapest query that touches
/// the store's tables.
const PROBE_THREAD: &str = "thread_readyz_probe";

/// `GET /healthz`.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store().thread_header(PROBE_THREAD).await {
        Ok(_) | Err(StoreError::ThreadNotFound(_)) => Json(json!({
            "status": "ready",
            "assistants": state.assistants().len(),
        }))
        .into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready: the store did not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "not_ready",
                    "reason": "the thread store did not answer; see the server log",
                })),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics() {
        Some(render) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            render(),
        )
            .into_response(),
        None => ApiError::bad_request(
            "Metrics are not served on this listener (see `clarion serve --metrics-addr`).",
        )
        .with_status(StatusCode::NOT_FOUND)
        .into_response(),
    }
}
