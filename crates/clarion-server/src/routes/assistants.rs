//! Assistants: one per loaded flow. Flows are loaded at startup, so "creating" an
//! assistant refers to a loaded flow by name and returns its assistant (idempotent).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
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

/// `POST /v1/assistants` body: the flow, by `metadata.clarion_flow` or `name`.
#[derive(Debug, serde::Deserialize)]
pub struct CreateAssistant {
    /// The flow's name.
    pub name: Option<String>,
    /// `clarion_flow`: the flow's name (wins over `name`).
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// `POST /v1/assistants`: the assistant of a loaded flow.
pub async fn create(
    State(state): State<AppState>,
    _caller: Caller,
    ApiJson(body): ApiJson<CreateAssistant>,
) -> Result<Json<Value>, ApiError> {
    let flow = body
        .metadata
        .as_ref()
        .and_then(|m| m.get("clarion_flow"))
        .and_then(Value::as_str)
        .or(body.name.as_deref())
        .ok_or_else(|| {
            ApiError::bad_request(
                "Name the flow: set metadata.clarion_flow (or name) to a flow's name. Flows are loaded when clarion serve starts.",
            )
            .param("metadata")
        })?;
    let assistant = state
        .assistant(&crate::ids::assistant_id(flow))
        .map_err(|_| {
            let loaded: Vec<&str> = state
                .assistants()
                .iter()
                .map(|a| a.engine.flow().name.as_str())
                .collect();
            ApiError::bad_request(format!(
                "No flow named '{flow}' is loaded (loaded: {}). Start clarion serve with its flow file.",
                loaded.join(", ")
            ))
            .param("metadata")
        })?;
    Ok(Json(objects::assistant(assistant, state.started_at())))
}
