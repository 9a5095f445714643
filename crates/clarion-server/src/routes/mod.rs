//! The routes of the Assistants v2 subset, under `/v1`, one module per resource.
//!
//! Every handler takes the [`Caller`](crate::auth::Caller) (which checks the API key) and
//! reads threads through [`AppState::thread`], so ownership is enforced in one place.

pub mod assistants;
pub mod events;
pub mod health;
pub mod messages;
pub mod runs;
pub mod steps;
pub mod threads;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, Uri};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

/// The largest request body accepted by default (1 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// How long a request may take by default, body upload included (streams excepted).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest body accepted (413 beyond).
    pub body_bytes: usize,
    /// How long reading the request and producing the response may take (408 beyond).
    /// A streamed run's events are not cut: the response starts at once.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// The router with every route, API errors for unknown paths and methods, and a body limit
/// (other limits at their defaults).
pub fn router(state: AppState, body_limit: usize) -> Router {
    router_with(
        state,
        Limits {
            body_bytes: body_limit,
            ..Limits::default()
        },
    )
}

/// The router with `limits`.
pub fn router_with(state: AppState, limits: Limits) -> Router {
    let v1 = Router::new()
        .route(
            "/assistants",
            get(assistants::list).post(assistants::create),
        )
        .route("/assistants/{assistant_id}", get(assistants::retrieve))
        .route("/threads", post(threads::create))
        .route("/threads/runs", post(runs::create_thread_and_run))
        .route(
            "/threads/{thread_id}",
            get(threads::retrieve)
                .post(threads::modify)
                .delete(threads::delete),
        )
        .route(
            "/threads/{thread_id}/messages",
            get(messages::list).post(messages::create),
        )
        .route(
            "/threads/{thread_id}/messages/{message_id}",
            get(messages::retrieve).post(messages::modify),
        )
        .route(
            "/threads/{thread_id}/runs",
            get(runs::list).post(runs::create),
        )
        .route("/threads/{thread_id}/runs/{run_id}", get(runs::retrieve))
        .route(
            "/threads/{thread_id}/runs/{run_id}/cancel",
            post(runs::cancel),
        )
        .route(
            "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
            post(runs::submit_tool_outputs),
        )
        .route("/threads/{thread_id}/runs/{run_id}/steps", get(steps::list))
        .route(
            "/threads/{thread_id}/runs/{run_id}/steps/{step_id}",
            get(steps::retrieve),
        )
        .route(
            "/threads/{thread_id}/runs/{run_id}/events",
            get(events::stream),
        );
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(from_fn(move |request: Request, next: Next| {
            within(limits.request_timeout, request, next)
        }))
        .layer(from_fn(in_api_shape))
        .layer(from_fn_with_state(state.clone(), crate::observe::access))
        .with_state(state)
}

/// A router with only `/metrics` (rendered by `render`) and `/healthz`, for a separate
/// metrics listener (`clarion serve --metrics-addr`).
pub fn metrics_router(render: crate::state::MetricsRenderer) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        render(),
                    )
                }
            }),
        )
        .fallback(unknown_route)
}

/// Errors axum produces itself — a path parameter that is not valid UTF-8, say — come as
/// plain text; clients of the API expect its JSON error body on every error, so such a
/// response is rewritten into one, with the same status and axum's text as the message.
async fn in_api_shape(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    // axum's rejection texts are one line; more than this is not a rejection text.
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("The request failed.")
            .to_owned()
    } else {
        text
    };
    let error = if status.is_server_error() {
        ApiError::internal(&message)
    } else {
        ApiError::bad_request(message)
    };
    error.with_status(status).into_response()
}

/// A request that takes longer than `limit` (a slow or stalled upload) gets 408.
async fn within(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::bad_request(format!(
            "The request did not complete within {} ms.",
            limit.as_millis()
        ))
        .with_status(StatusCode::REQUEST_TIMEOUT)
        .into_response(),
    }
}

async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::bad_request(format!(
        "Invalid URL ({}): clarion serve implements the Assistants v2 routes under /v1 (see docs/serve.md).",
        uri.path()
    ))
    .with_status(StatusCode::NOT_FOUND)
}

async fn wrong_method(uri: Uri) -> ApiError {
    ApiError::bad_request(format!("This method is not allowed on {}.", uri.path()))
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
}
