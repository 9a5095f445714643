//! Messages: create (refused while a run is active, as the API did), list, retrieve, and
//! modify (metadata).

use axum::Json;
use axum::extract::{Path, State};
use clarion_engine::store::StoreError;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::wire::list::{ListQuery, page};
use crate::wire::objects;
use crate::wire::requests::{MessageInput, ModifyMessage, metadata_pairs};

/// Appends a request message to a thread; 400 while a run holds it.
pub(crate) fn append(
    state: &AppState,
    thread_id: &str,
    input: &MessageInput,
) -> Result<clarion_engine::thread::Message, ApiError> {
    let message = super::threads::message(input)?;
    state
        .store()
        .add_user_message(thread_id, &message)
        .map_err(|e| refused_while_running(e, "add messages to"))?;
    Ok(message)
}

/// A store error as the API reports it; a thread held by a run is the API's 400, e.g.
/// "Can't add messages to thread_… while a run run_… is active."
fn refused_while_running(error: StoreError, doing: &str) -> ApiError {
    match error {
        StoreError::Locked { thread_id, run_id } => ApiError::bad_request(format!(
            "Can't {doing} {thread_id} while a run {run_id} is active."
        )),
        other => other.into(),
    }
}

/// `POST /v1/threads/{thread_id}/messages`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(thread_id): Path<String>,
    ApiJson(input): ApiJson<MessageInput>,
) -> Result<Json<Value>, ApiError> {
    let thread = state.thread(&caller, &thread_id)?;
    let message = append(&state, &thread.id, &input)?;
    objects::message(&thread, &message)
        .map(Json)
        .ok_or_else(|| ApiError::internal("a created message is not visible"))
}

/// `GET /v1/threads/{thread_id}/messages`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(thread_id): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let thread = state.thread(&caller, &thread_id)?;
    let items = thread
        .messages
        .iter()
        .filter(|m| {
            query
                .run_id
                .as_ref()
                .is_none_or(|run| m.run_id.as_ref() == Some(run))
        })
        .filter_map(|m| objects::message(&thread, m).map(|v| (m.id.clone(), v)))
        .collect();
    Ok(Json(page(items, &query)?))
}

/// `GET /v1/threads/{thread_id}/messages/{message_id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, message_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let thread = state.thread(&caller, &thread_id)?;
    thread
        .messages
        .iter()
        .find(|m| m.id == message_id)
        .and_then(|m| objects::message(&thread, m))
        .map(Json)
        .ok_or_else(|| ApiError::not_found("message", &message_id))
}

/// `POST /v1/threads/{thread_id}/messages/{message_id}`: merges metadata (an empty value
/// removes a key). Refused while a run holds the thread, like adding a message.
pub async fn modify(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, message_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<ModifyMessage>,
) -> Result<Json<Value>, ApiError> {
    let thread = state.thread(&caller, &thread_id)?;
    let not_found = || ApiError::not_found("message", &message_id);
    let message = thread
        .messages
        .iter()
        .find(|m| m.id == message_id && objects::visible(m).is_some())
        .ok_or_else(not_found)?;
    let mut updated = message.clone();
    updated
        .metadata
        .merge(metadata_pairs(body.metadata.as_ref())?)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("metadata"))?;
    let found = state
        .store()
        .set_message_metadata(&thread.id, &message_id, &updated.metadata)
        .map_err(|e| refused_while_running(e, "modify messages of"))?;
    if !found {
        return Err(not_found());
    }
    objects::message(&thread, &updated)
        .map(Json)
        .ok_or_else(not_found)
}
