//! Run steps, derived from the messages a run appended (see [`crate::wire::objects::steps`]).

use axum::Json;
use axum::extract::{Path, State};
use clarion_engine::{MessageQuery, Order};
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::wire::list::{ListQuery, page};
use crate::wire::objects;

/// The steps of a run: read from the run's own messages (an index on the run), never the
/// whole thread.
async fn run_steps(
    state: &AppState,
    caller: &Caller,
    thread_id: &str,
    run_id: &str,
) -> Result<Vec<(String, Value)>, ApiError> {
    let thread = state.thread(caller, thread_id).await?;
    let not_found = || ApiError::not_found("run", run_id);
    let assistant = state.assistant_of(&thread).ok_or_else(not_found)?;
    let run = state.store().run(run_id).await.map_err(|_| not_found())?;
    if run.thread_id != thread.id {
        return Err(not_found());
    }
    let messages = run_messages(state, &run).await?;
    Ok(objects::steps(assistant, &run, &messages))
}

/// Every message a run appended, oldest first.
pub(crate) async fn run_messages(
    state: &AppState,
    run: &clarion_engine::Run,
) -> Result<Vec<clarion_engine::Message>, ApiError> {
    let query = MessageQuery {
        order: Order::Asc,
        limit: usize::MAX - 1,
        run_id: Some(run.id.clone()),
        ..MessageQuery::default()
    };
    Ok(state
        .store()
        .messages(&run.thread_id, &query)
        .await?
        .messages)
}

/// `GET /v1/threads/{thread_id}/runs/{run_id}/steps`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, run_id)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let steps = run_steps(&state, &caller, &thread_id, &run_id).await?;
    Ok(Json(page(steps, &query)?))
}

/// `GET /v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, run_id, step_id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    run_steps(&state, &caller, &thread_id, &run_id)
        .await?
        .into_iter()
        .find(|(id, _)| *id == step_id)
        .map(|(_, v)| Json(v))
        .ok_or_else(|| ApiError::not_found("run step", &step_id))
}
