//! The playground's routes: the page and its assets at `/` and `/play/…`, what only a
//! development tool serves under `/play/api/…`, and everything else handed to the current
//! Assistants API router (`/v1/…`, swapped on a reload).
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the page |
//! | `GET /play/app.js`, `/play/app.css` | its script and styles |
//! | `GET /play/api/flows` | the flows: name, assistant id, file, Mermaid, diagnostics, and the reload version |
//! | `GET /play/api/threads` | the stored threads of the loaded flows, newest first |
//! | `GET /play/api/threads/{id}/requests` | the requests sent to the model for that thread |
//! | `POST /play/api/threads/{id}/save` | `{"name": "…"}`: the thread saved as a scenario |
//! | `POST /play/api/threads/{id}/replay` | the thread replayed on the flow's version before the last edit and on the current one, with the transcripts' diff |
//!
//! Every request must name the playground's own address in `Host` (a page on another
//! site cannot reach it through DNS rebinding), and the save route takes JSON only, which
//! a cross-site form cannot send without a preflight the playground never answers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use indexmap::IndexMap;
use serde_json::{Value, json};
use tower_service_shim::oneshot;

use super::Playground;
use clarion_testing::Runner;
use clarion_testing::save::{SaveError, save};
use clarion_tools::BuiltinRegistry;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// The playground's router, answering only requests addressed to `local`.
pub(crate) fn router(playground: Arc<Playground>, local: SocketAddr) -> Router {
    let hosts = [
        local.to_string(),
        format!("localhost:{}", local.port()),
        format!("[::1]:{}", local.port()),
    ];
    Router::new()
        .route("/", get(|| async { asset(INDEX, "text/html; charset=utf-8") }))
        .route(
            "/play/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/play/app.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/play/api/flows", get(flows))
        .route("/play/api/threads", get(threads))
        .route("/play/api/threads/{thread_id}/requests", get(requests))
        .route("/play/api/threads/{thread_id}/save", post(save_thread))
        .route("/play/api/threads/{thread_id}/replay", post(replay_thread))
        .fallback(to_api)
        .layer(from_fn(move |request: Request, next: Next| {
            let allowed = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|h| hosts.iter().any(|allowed| allowed == h));
            async move {
                if allowed {
                    next.run(request).await
                } else {
                    problem(
                        StatusCode::FORBIDDEN,
                        "the playground answers only requests addressed to its own loopback address",
                    )
                }
            }
        }))
        .with_state(playground)
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The assets are the binary's: a rebuilt binary serves new ones at once.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:",
                ),
            ),
        ],
        text,
    )
        .into_response()
}

/// An error in the API's shape.
fn problem(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
        .into_response()
}

/// Everything else goes to the current Assistants API.
async fn to_api(State(playground): State<Arc<Playground>>, request: Request) -> Response {
    let (_, _, api) = playground.current();
    oneshot(api, request).await
}

async fn flows(State(playground): State<Arc<Playground>>) -> Json<Value> {
    let (version, flows, _) = playground.current();
    let flows: Vec<Value> = flows
        .iter()
        .map(|f| {
            let name = f.engine.as_ref().map(|e| e.flow().name.clone());
            json!({
                "file": f.file.display().to_string(),
                "name": name,
                "assistant_id": name.as_deref().map(clarion_server::ids::assistant_id),
                "description": f.engine.as_ref().and_then(|e| e.flow().description.clone()),
                "mermaid": f.mermaid,
                "diagnostics": f.diagnostics,
            })
        })
        .collect();
    Json(json!({"version": version, "flows": flows}))
}

async fn threads(State(playground): State<Arc<Playground>>) -> Response {
    let (_, flows, _) = playground.current();
    let names: Vec<String> = flows
        .iter()
        .filter_map(|f| f.engine.as_ref().map(|e| e.flow().name.clone()))
        .collect();
    match playground.store.thread_headers(100).await {
        Ok(headers) => {
            let data: Vec<Value> = headers
                .iter()
                .filter(|t| names.contains(&t.flow))
                .map(|t| {
                    json!({
                        "id": t.id,
                        "flow": t.flow,
                        "assistant_id": clarion_server::ids::assistant_id(&t.flow),
                        "created_at": t.created_at,
                        "last_activity": t.last_activity,
                        "message_count": t.message_count,
                    })
                })
                .collect();
            Json(json!({"data": data})).into_response()
        }
        Err(error) => {
            tracing::warn!("cannot list threads: {error}");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "cannot list the threads")
        }
    }
}

async fn requests(
    State(playground): State<Arc<Playground>>,
    Path(thread_id): Path<String>,
) -> Response {
    match playground.store.thread(&thread_id).await {
        Ok(thread) => {
            let data = thread
                .messages
                .first()
                .map(|m| playground.capture.of(&m.id))
                .unwrap_or_default();
            Json(json!({"data": data})).into_response()
        }
        Err(_) => problem(
            StatusCode::NOT_FOUND,
            &format!("No thread found with id '{thread_id}'."),
        ),
    }
}

async fn save_thread(
    State(playground): State<Arc<Playground>>,
    Path(thread_id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let Some(Json(body)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "send {\"name\": \"…\"} as JSON (Content-Type: application/json)",
        );
    };
    let name = body["name"].as_str().unwrap_or_default().trim().to_owned();
    let Ok(thread) = playground.store.thread(&thread_id).await else {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("No thread found with id '{thread_id}'."),
        );
    };
    let (_, flows, _) = playground.current();
    let Some((file, engine)) = flows.iter().find_map(|f| {
        f.engine
            .as_ref()
            .filter(|e| e.flow().name == thread.flow)
            .map(|e| (f.file.clone(), Arc::clone(e)))
    }) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the thread's flow is not loaded in this playground",
        );
    };
    let metadata: IndexMap<String, String> = thread
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("_clarion"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let runner = Runner::new()
        .with_builtins(Arc::new(BuiltinRegistry::standard()))
        .with_executor(Arc::clone(&playground.tools) as Arc<dyn clarion_engine::ToolExecutor>);
    match save(
        &runner,
        &file,
        engine.flow(),
        &thread.messages,
        &name,
        metadata,
    )
    .await
    {
        Ok(saved) => Json(json!({
            "scenario": saved.scenario.display().to_string(),
            "snapshot": saved.snapshot.display().to_string(),
            "turns": saved.turns,
            "command": format!("clarion test {}", saved.scenario.display()),
        }))
        .into_response(),
        Err(error) => {
            let status = match error {
                SaveError::Exists(_) => StatusCode::CONFLICT,
                SaveError::Write { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            problem(status, &error.to_string())
        }
    }
}

/// The thread replayed on the version of its flow before the last edit and on the
/// current one: both transcripts, why either stopped early, and their diff.
async fn replay_thread(
    State(playground): State<Arc<Playground>>,
    Path(thread_id): Path<String>,
) -> Response {
    let Ok(thread) = playground.store.thread(&thread_id).await else {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("No thread found with id '{thread_id}'."),
        );
    };
    let (_, flows, _) = playground.current();
    let Some(entry) = flows
        .iter()
        .find(|f| f.flow.as_ref().is_some_and(|flow| flow.name == thread.flow))
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the thread's flow is not loaded in this playground (was it renamed?)",
        );
    };
    let Some(now) = entry.flow.clone() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "the flow has no version that loaded",
        );
    };
    let before = entry.previous.clone().unwrap_or_else(|| Arc::clone(&now));
    let metadata: IndexMap<String, String> = thread
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("_clarion"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let executor = Some(Arc::clone(&playground.tools) as Arc<dyn clarion_engine::ToolExecutor>);
    let old = clarion_testing::save::replay(
        &entry.file,
        before,
        &thread.messages,
        metadata.clone(),
        executor.clone(),
    )
    .await;
    let new =
        clarion_testing::save::replay(&entry.file, now, &thread.messages, metadata, executor).await;
    let changed = old.transcript != new.transcript || old.problems != new.problems;
    Json(json!({
        "edited": entry.previous.is_some(),
        "changed": changed,
        "diff": clarion_testing::unified_diff(&old.transcript, &new.transcript, false),
        "before": {"transcript": old.transcript, "problems": old.problems},
        "after": {"transcript": new.transcript, "problems": new.problems},
    }))
    .into_response()
}

/// Calling a router once (`tower::ServiceExt::oneshot` without the `tower` crate).
mod tower_service_shim {
    use axum::extract::Request;
    use axum::response::Response;
    use tower_service::Service as _;

    pub(super) async fn oneshot(mut router: axum::Router, request: Request) -> Response {
        match router.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}
