//! Assistants: one per loaded flow, read-only.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::wire::list::{ListQuery, page};
use crate::wire::objects;

/// `GET /v1/assistants`.
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let items = state
        .assistants()
        .iter()
        .map(|a| (a.id.clone(), objects::assistant(a, state.started_at())))
        .collect();
    Ok(Json(page(items, &query)?))
}

/// `GET /v1/assistants/{assistant_id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let assistant = state.assistant(&id)?;
    Ok(Json(objects::assistant(assistant, state.started_at())))
}
