//! The access log and the HTTP metrics: one middleware sees every request once, after
//! routing, and records both from the same facts — method, route template, status,
//! latency — so the log and the metrics can never disagree.
//!
//! The route is axum's matched template (`/v1/threads/{thread_id}/runs`), never the raw
//! path: ids would make every request its own series and would put them in every log
//! line. Requests no route matched are `unmatched`; methods outside the standard ones are
//! `other`, so a client cannot mint label values. The caller is named by its key id (the
//! owner id of [`crate::auth`], a digest prefix), never by the key. Bodies — and so message
//! content — are never read here.
//!
//! For a streamed run the latency is the time to the response's head: the events that
//! follow belong to the run, which the engine measures.
//!
//! The same middleware opens the request's span (`http request`, named `METHOD route` in
//! a trace, with the OpenTelemetry HTTP attributes) for the API's routes — not for probes
//! and scrapes, which would bury them. Handlers run inside it and the run
//! tasks they spawn carry it along, so a run's span is the child of the request that
//! started it; when traces are exported, [`AppState::trace_context`] first makes the span
//! the child of the client's own trace (its `traceparent`).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use clarion_engine::observe::MetricKind;
use tracing::Instrument as _;

use crate::state::AppState;

/// Requests answered, by method, route template and status.
pub const HTTP_REQUESTS_TOTAL: &str = "clarion_http_requests_total";
/// Seconds to answer a request (to the response's head), by method, route and status.
pub const HTTP_REQUEST_DURATION: &str = "clarion_http_request_duration_seconds";

/// Every metric the server records itself: name, kind, help.
pub const METRICS: &[(&str, MetricKind, &str)] = &[
    (
        HTTP_REQUESTS_TOTAL,
        MetricKind::Counter,
        "Requests answered, by method, route template and status.",
    ),
    (
        HTTP_REQUEST_DURATION,
        MetricKind::Histogram,
        "Seconds to answer a request (to the response's head for a stream), by method, route template and status.",
    ),
];

/// The log line's target, so access logs can be filtered on their own
/// (`RUST_LOG=info,clarion::access=off`).
pub const ACCESS_TARGET: &str = "clarion::access";

/// The request span's target: `RUST_LOG=clarion::http=off` keeps it out of the log's
/// `span` field; traces take it whatever `RUST_LOG` says.
pub const SPAN_TARGET: &str = "clarion::http";

/// Logs and counts one request, inside its span.
pub async fn access(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = bounded_method(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let key_id = if state.keys().enabled() {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state
            .keys()
            .caller(authorization)
            .ok()
            .and_then(|c| c.owner)
    } else {
        None
    };
    // Probes and scrapes every few seconds would bury the API's traces.
    let span = if route.starts_with("/v1") {
        tracing::info_span!(
            target: SPAN_TARGET,
            "http request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            http.request.method = method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    if let Some(adopt) = state.trace_context() {
        adopt(&span, request.headers());
    }
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    metrics::counter!(HTTP_REQUESTS_TOTAL, "method" => method, "route" => route.clone(),
        "status" => status.to_string())
    .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, "method" => method, "route" => route.clone(),
        "status" => status.to_string())
    .record(elapsed.as_secs_f64());
    // Microseconds are as fine as a log reader needs.
    let latency_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    let key_id = key_id.as_deref().unwrap_or("-");
    if response.status().is_server_error() {
        tracing::warn!(target: ACCESS_TARGET, method, route, status, latency_ms, key_id, "request");
    } else {
        tracing::info!(target: ACCESS_TARGET, method, route, status, latency_ms, key_id, "request");
    }
    response
}

fn bounded_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
