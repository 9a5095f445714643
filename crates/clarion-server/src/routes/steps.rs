//! Run steps, derived from the messages a run appended (see [`crate::wire::objects::steps`]).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::wire::list::{ListQuery, page};
use crate::wire::objects;

fn run_steps(
    state: &AppState,
    caller: &Caller,
    thread_id: &str,
    run_id: &str,
) -> Result<Vec<(String, Value)>, ApiError> {
    let thread = state.thread(caller, thread_id)?;
    let not_found = || ApiError::not_found("run", run_id);
    let assistant = state.assistant_of(&thread).ok_or_else(not_found)?;
    let run = state.store().run(run_id).map_err(|_| not_found())?;
    if run.thread_id != thread.id {
        return Err(not_found());
    }
    Ok(objects::steps(assistant, &thread, &run))
}

/// `GET /v1/threads/{thread_id}/runs/{run_id}/steps`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, run_id)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let steps = run_steps(&state, &caller, &thread_id, &run_id)?;
    Ok(Json(page(steps, &query)?))
}

/// `GET /v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, run_id, step_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    run_steps(&state, &caller, &thread_id, &run_id)?
        .into_iter()
        .find(|(id, _)| *id == step_id)
        .map(|(_, v)| Json(v))
        .ok_or_else(|| ApiError::not_found("run step", &step_id))
}
