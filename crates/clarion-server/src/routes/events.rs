//! `GET /v1/threads/{thread_id}/runs/{run_id}/events`: the engine's events of a run as
//! server-sent events — a read-only extension, served only when the state keeps an event
//! feed (`clarion play`; see [`crate::feed`]). Each event is `clarion.event` with the
//! engine's event as JSON; the stream ends with `done` once the run's task has ended.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /v1/threads/{thread_id}/runs/{run_id}/events`.
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, run_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some(feed) = state.feed().cloned() else {
        return Err(ApiError::bad_request(
            "This server keeps no run events (they are kept by `clarion play`).",
        )
        .with_status(axum::http::StatusCode::NOT_FOUND));
    };
    super::runs::find_run(&state, &caller, &thread_id, &run_id).await?;
    let subscription = feed.subscribe(&run_id);
    let (tx, mut rx) = mpsc::unbounded_channel::<SseEvent>();
    let event = |data: &serde_json::Value| {
        SseEvent::default()
            .event("clarion.event")
            .data(data.to_string())
    };
    for past in &subscription.past {
        let _ = tx.send(event(past));
    }
    let mut live = subscription.live;
    let ended = subscription.ended;
    tokio::spawn(async move {
        // A run whose task already ended has nothing more to say.
        if !ended {
            loop {
                match live.recv().await {
                    Ok(item) if item.run_id == run_id => match item.event {
                        Some(value) => {
                            if tx.send(event(&value)).is_err() {
                                return;
                            }
                        }
                        None => break,
                    },
                    // A slow reader missed events: the client reloads the run's state from
                    // the API, which is the truth; the stream goes on.
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        }
        let _ = tx.send(SseEvent::default().event("done").data("[DONE]"));
    });
    let events = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|event| event.map(Ok::<_, Infallible>))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.keep_alive()))
        .into_response())
}
