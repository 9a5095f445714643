//! Threads: create (with messages and metadata), retrieve, modify, delete.

use axum::Json;
use axum::extract::{Path, State};
use clarion_engine::new_id;
use clarion_engine::{Message, MessageKind, Metadata, Thread};
use serde_json::{Value, json};

use crate::auth::{Caller, OWNER_KEY};
use crate::error::ApiError;
use crate::extract::{ApiJson, OptionalJson};
use crate::ids::now_ms;
use crate::state::AppState;
use crate::wire::objects;
use crate::wire::requests::{CreateThread, MessageInput, ModifyThread, metadata_pairs};

/// Builds (does not store) a thread for `caller` from a create request.
pub(crate) fn build(
    caller: &Caller,
    flow: String,
    body: &CreateThread,
) -> Result<Thread, ApiError> {
    let mut pairs = metadata_pairs(body.metadata.as_ref())?;
    if let Some(owner) = &caller.owner {
        pairs.push((OWNER_KEY.to_owned(), owner.clone()));
    }
    let metadata =
        Metadata::new(pairs).map_err(|e| ApiError::bad_request(e.to_string()).param("metadata"))?;
    let mut thread = Thread::new(new_id("thread"), flow, now_ms(), metadata);
    for input in &body.messages {
        thread.messages.push(message(input)?);
    }
    Ok(thread)
}

/// A thread message from a request message.
pub(crate) fn message(input: &MessageInput) -> Result<Message, ApiError> {
    let text = input.text()?;
    let kind = if input.role == "assistant" {
        MessageKind::Assistant { text }
    } else {
        MessageKind::User { text }
    };
    let metadata = Metadata::new(metadata_pairs(input.metadata.as_ref())?)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("metadata"))?;
    Ok(Message {
        id: new_id("msg"),
        run_id: None,
        created_at: now_ms(),
        kind,
        metadata,
    })
}

/// `POST /v1/threads`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<CreateThread>,
) -> Result<Json<Value>, ApiError> {
    let thread = build(&caller, String::new(), &body)?;
    state.store().insert_thread(&thread).await?;
    Ok(Json(objects::thread(&thread.header())))
}

/// `GET /v1/threads/{thread_id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(objects::thread(&state.thread(&caller, &id).await?)))
}

/// `POST /v1/threads/{thread_id}`: merges metadata (an empty value removes a key). Refused
/// while a run is active: the run's own commits would undo the change.
pub async fn modify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ModifyThread>,
) -> Result<Json<Value>, ApiError> {
    let pairs = metadata_pairs(body.metadata.as_ref())?;
    let _guard = state.lock_threads().await;
    let mut thread = state.thread(&caller, &id).await?;
    let refused = |run_id: &str| {
        ApiError::bad_request(format!(
            "Can't modify thread {id} while a run {run_id} is active."
        ))
    };
    if let Some(run_id) = &thread.active_run {
        return Err(refused(run_id));
    }
    thread
        .metadata
        .merge(pairs)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("metadata"))?;
    state
        .store()
        .update_thread(&thread)
        .await
        .map_err(|e| match e {
            clarion_engine::StoreError::Locked { run_id, .. } => refused(&run_id),
            other => other.into(),
        })?;
    Ok(Json(objects::thread(&thread)))
}

/// `DELETE /v1/threads/{thread_id}`. A thread with an active run is kept: cancel the run
/// first.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let _guard = state.lock_threads().await;
    let thread = state.thread(&caller, &id).await?;
    if let Some(run_id) = &thread.active_run {
        return Err(ApiError::bad_request(format!(
            "Can't delete thread {id} while a run {run_id} is active; cancel it first."
        )));
    }
    let deleted = state.store().delete_thread(&id).await?;
    Ok(Json(
        json!({"id": id, "object": "thread.deleted", "deleted": deleted}),
    ))
}
