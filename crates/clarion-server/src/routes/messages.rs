//! Messages: create (refused while a run is active, as the API did), list, retrieve, and
//! modify (metadata).

use axum::Json;
use axum::extract::{Path, State};
use clarion_engine::StoreError;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::wire::list::{ListQuery, list_page};
use crate::wire::objects;
use crate::wire::requests::{MessageInput, ModifyMessage, metadata_pairs};

/// Appends a request message to a thread; 400 while a run holds it. One insert, whatever
/// the thread's length.
pub(crate) async fn append(
    state: &AppState,
    thread_id: &str,
    input: &MessageInput,
) -> Result<clarion_engine::Message, ApiError> {
    let message = super::threads::message(input)?;
    state
        .store()
        .add_user_message(thread_id, &message)
        .await
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
    let thread = state.thread(&caller, &thread_id).await?;
    let message = append(&state, &thread.id, &input).await?;
    objects::message(&thread, &message)
        .map(Json)
        .ok_or_else(|| ApiError::internal("a created message is not visible"))
}

/// `GET /v1/threads/{thread_id}/messages`: one page read from the store (an indexed range,
/// whatever the thread's length).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(thread_id): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let thread = state.thread(&caller, &thread_id).await?;
    let mut wanted = query.to_message_query()?;
    wanted.shown_only = true;
    let page = state
        .store()
        .messages(&thread.id, &wanted)
        .await
        .map_err(|e| match e {
            StoreError::MessageNotFound { message_id, .. } => {
                let param = if query.after.as_deref() == Some(message_id.as_str()) {
                    "after"
                } else {
                    "before"
                };
                ApiError::bad_request(format!(
                    "Invalid '{param}': no item with id '{message_id}' in this list."
                ))
                .param(param)
            }
            other => other.into(),
        })?;
    let items = page
        .messages
        .iter()
        .filter_map(|m| objects::message(&thread, m).map(|v| (m.id.clone(), v)))
        .collect();
    Ok(Json(list_page(items, page.has_more)))
}

/// `GET /v1/threads/{thread_id}/messages/{message_id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, message_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let thread = state.thread(&caller, &thread_id).await?;
    message_of(&state, &thread.id, &message_id)
        .await?
        .and_then(|m| objects::message(&thread, &m))
        .map(Json)
        .ok_or_else(|| ApiError::not_found("message", &message_id))
}

/// One message of a thread, by id (an index lookup).
async fn message_of(
    state: &AppState,
    thread_id: &str,
    message_id: &str,
) -> Result<Option<clarion_engine::Message>, ApiError> {
    Ok(state.store().message(thread_id, message_id).await?)
}

/// `POST /v1/threads/{thread_id}/messages/{message_id}`: merges metadata (an empty value
/// removes a key). Refused while a run holds the thread, like adding a message.
pub async fn modify(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, message_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<ModifyMessage>,
) -> Result<Json<Value>, ApiError> {
    let thread = state.thread(&caller, &thread_id).await?;
    let not_found = || ApiError::not_found("message", &message_id);
    let message = message_of(&state, &thread.id, &message_id)
        .await?
        .filter(|m| objects::visible(m).is_some())
        .ok_or_else(not_found)?;
    let mut metadata = message.metadata.clone();
    metadata
        .merge(metadata_pairs(body.metadata.as_ref())?)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("metadata"))?;
    let updated = state
        .store()
        .set_message_metadata(&thread.id, &message_id, &metadata)
        .await
        .map_err(|e| refused_while_running(e, "modify messages of"))?
        .ok_or_else(not_found)?;
    objects::message(&thread, &updated)
        .map(Json)
        .ok_or_else(not_found)
}
