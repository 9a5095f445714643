//! Runs: create (also with a new thread), retrieve, list, cancel, submit tool outputs.
//!
//! A run executes in a background task: create returns it `queued` and clients poll, as
//! the SDKs' `create_and_poll` does; with `stream: true` the same task's progress comes
//! back as server-sent events (see [`crate::stream`]). Submitting tool outputs validates
//! them synchronously (a wrong set is a 400 and changes nothing), answers once they are
//! committed (so every replica sees them), and drives the run on in the background.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use clarion_engine::Metadata;
use clarion_engine::{EngineError, Event, EventSink, NoEvents};
use clarion_engine::{Run, RunStatus, ToolOutputSubmission};
use serde_json::Value;
use tracing::Instrument as _;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::{AppState, Assistant};
use crate::stream::{self, Start};
use crate::wire::list::{ListQuery, page};
use crate::wire::objects;
use crate::wire::requests::{
    CreateRun, CreateThreadAndRun, SubmitToolOutputs, metadata_pairs, refuse_overrides,
    truncation_last_messages,
};

fn run_metadata(metadata: Option<&serde_json::Map<String, Value>>) -> Result<Metadata, ApiError> {
    Metadata::new(metadata_pairs(metadata)?)
        .map_err(|e| ApiError::bad_request(e.to_string()).param("metadata"))
}

/// Drives a queued run in the background (counted in [`AppState::idle`]). The task ends
/// with the engine's verdict.
pub(crate) fn spawn_drive(
    state: &AppState,
    assistant: Assistant,
    run_id: String,
    sink: Arc<dyn EventSink>,
) -> tokio::task::JoinHandle<Result<(), EngineError>> {
    let task = state.run_task();
    let sink = state.tee(&run_id, sink);
    let state = state.clone();
    // The request's span goes along: the run's span is its child.
    tokio::spawn(
        async move {
            let result = assistant.engine.drive_run(&run_id, &*sink).await;
            state.run_ended(&run_id);
            drop(task);
            result.map(drop).inspect_err(|error| {
                tracing::warn!(run_id = %run_id, "run stopped: {error}");
            })
        }
        .in_current_span(),
    )
}

/// Submits accepted outputs in the background; the run reads `in_progress` until done.
/// The task ends with the engine's verdict.
pub(crate) fn spawn_submit(
    state: AppState,
    assistant: Assistant,
    run_id: String,
    outputs: Vec<ToolOutputSubmission>,
    sink: Arc<dyn EventSink>,
) -> tokio::task::JoinHandle<Result<(), EngineError>> {
    let task = state.run_task();
    let sink = state.tee(&run_id, sink);
    tokio::spawn(
        async move {
            let result = assistant
                .engine
                .submit_tool_outputs(&run_id, outputs, &*sink)
                .await;
            state.settled(&run_id);
            state.run_ended(&run_id);
            drop(task);
            result.map(drop).inspect_err(|error| {
                tracing::warn!(run_id = %run_id, "submitted run stopped: {error}");
            })
        }
        .in_current_span(),
    )
}

/// Tells a waiting request when a run's first step after it is committed.
struct Committed(std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>);

impl EventSink for Committed {
    fn emit(&self, event: &Event) {
        if matches!(event, Event::StepCommitted { .. })
            && let Some(tx) = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        {
            let _ = tx.send(());
        }
    }
}

/// Submits accepted outputs in the background and returns once they are committed, so
/// that a poll on any replica sees the run move on from the response on (an in-process
/// "submitted" mark alone would leave another replica showing `requires_action` until
/// the commit). A refusal before that — another replica submitting the same outputs at the
/// same moment — is the answer instead.
async fn submit_committed(
    state: &AppState,
    assistant: &Assistant,
    run_id: &str,
    outputs: Vec<ToolOutputSubmission>,
) -> Result<(), EngineError> {
    let (tx, committed) = tokio::sync::oneshot::channel();
    let sink = Arc::new(Committed(std::sync::Mutex::new(Some(tx))));
    let mut task = spawn_submit(
        state.clone(),
        assistant.clone(),
        run_id.to_owned(),
        outputs,
        sink,
    );
    tokio::select! {
        // Committed first: an error the run meets after that is the run's, not the answer.
        biased;
        // A dropped request leaves the task running: the outputs are accepted either way.
        Ok(()) = committed => Ok(()),
        joined = &mut task => joined.unwrap_or(Ok(())),
    }
}

/// The run JSON as a client should see it now.
pub(crate) fn shown(state: &AppState, assistant: &Assistant, run: &Run) -> Value {
    let status = objects::shown_status(run, state.is_submitted(&run.id));
    objects::run(assistant, run, status)
}

/// Starts a created run: streamed, or in the background with the queued run returned.
fn start(
    state: AppState,
    assistant: &Assistant,
    run: &Run,
    stream: bool,
    prelude: Vec<(&'static str, Value)>,
) -> Response {
    if stream {
        return stream::respond(
            state,
            assistant.clone(),
            run.clone(),
            prelude,
            Start::Create,
        );
    }
    spawn_drive(
        &state,
        assistant.clone(),
        run.id.clone(),
        Arc::new(NoEvents),
    );
    Json(objects::run(assistant, run, RunStatus::Queued)).into_response()
}

/// `POST /v1/threads/{thread_id}/runs`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(thread_id): Path<String>,
    ApiJson(body): ApiJson<CreateRun>,
) -> Result<Response, ApiError> {
    refuse_overrides([
        ("instructions", &body.instructions),
        ("model", &body.model),
        ("tools", &body.tools),
    ])?;
    let assistant = state.assistant(&body.assistant_id)?.clone();
    let metadata = run_metadata(body.metadata.as_ref())?;
    let last_messages = truncation_last_messages(body.truncation_strategy.as_ref())?;
    let inputs = body
        .additional_messages
        .iter()
        .map(|m| m.text().map(|_| m))
        .collect::<Result<Vec<_>, _>>()?;
    let guard = state.lock_threads().await;
    let thread = state.thread(&caller, &thread_id).await?;
    let thread = state.bind(&thread, &assistant).await?;
    for input in inputs {
        super::messages::append(&state, &thread.id, input).await?;
    }
    let run = assistant
        .engine
        .create_run_truncated(
            &thread.id,
            body.additional_instructions.clone(),
            metadata,
            last_messages,
        )
        .await?;
    drop(guard);
    Ok(start(
        state,
        &assistant,
        &run,
        body.stream == Some(true),
        Vec::new(),
    ))
}

/// `POST /v1/threads/runs`: a new thread and a run on it.
pub async fn create_thread_and_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateThreadAndRun>,
) -> Result<Response, ApiError> {
    refuse_overrides([
        ("instructions", &body.instructions),
        ("model", &body.model),
        ("tools", &body.tools),
    ])?;
    let assistant = state.assistant(&body.assistant_id)?.clone();
    let metadata = run_metadata(body.metadata.as_ref())?;
    let last_messages = truncation_last_messages(body.truncation_strategy.as_ref())?;
    let request = body.thread.unwrap_or_default();
    let thread = super::threads::build(&caller, assistant.engine.flow().name.clone(), &request)?;
    state.store().insert_thread(&thread).await?;
    let run = assistant
        .engine
        .create_run_truncated(&thread.id, None, metadata, last_messages)
        .await?;
    let prelude = vec![("thread.created", objects::thread(&thread.header()))];
    Ok(start(
        state,
        &assistant,
        &run,
        body.stream == Some(true),
        prelude,
    ))
}

/// A run of a thread the caller may see, after expiring it if it waited too long.
pub(crate) async fn find_run(
    state: &AppState,
    caller: &Caller,
    thread_id: &str,
    run_id: &str,
) -> Result<(Assistant, Run), ApiError> {
    let thread = state.thread(caller, thread_id).await?;
    let not_found = || ApiError::not_found("run", run_id);
    let assistant = state.assistant_of(&thread).ok_or_else(not_found)?.clone();
    let run = assistant
        .engine
        .run_status(run_id)
        .await
        .map_err(|e| match e {
            EngineError::Store(clarion_engine::StoreError::RunNotFound(_)) => not_found(),
            other => other.into(),
        })?;
    if run.thread_id != thread.id {
        return Err(not_found());
    }
    Ok((assistant, run))
}

/// `GET /v1/threads/{thread_id}/runs/{run_id}`.
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (assistant, run) = find_run(&state, &caller, &thread_id, &run_id).await?;
    Ok(Json(shown(&state, &assistant, &run)))
}

/// `GET /v1/threads/{thread_id}/runs`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(thread_id): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let thread = state.thread(&caller, &thread_id).await?;
    let items = match state.assistant_of(&thread) {
        Some(assistant) => state
            .store()
            .runs(&thread.id)
            .await?
            .iter()
            .map(|run| (run.id.clone(), shown(&state, assistant, run)))
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(page(items, &query)?))
}

/// `POST /v1/threads/{thread_id}/runs/{run_id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (assistant, _) = find_run(&state, &caller, &thread_id, &run_id).await?;
    let run = assistant.engine.cancel(&run_id, &NoEvents).await?;
    Ok(Json(objects::run(&assistant, &run, run.status)))
}

/// `POST /v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs`.
pub async fn submit_tool_outputs(
    State(state): State<AppState>,
    caller: Caller,
    Path((thread_id, run_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<SubmitToolOutputs>,
) -> Result<Response, ApiError> {
    let (assistant, run) = find_run(&state, &caller, &thread_id, &run_id).await?;
    let status = objects::shown_status(&run, state.is_submitted(&run.id));
    if status != RunStatus::RequiresAction {
        return Err(ApiError::bad_request(format!(
            "Runs in status \"{}\" do not accept tool outputs.",
            status.as_str()
        )));
    }
    let expected: Vec<&str> = run.required_action.iter().map(|c| c.id.as_str()).collect();
    let mut seen = HashSet::new();
    for output in &body.tool_outputs {
        if !expected.contains(&output.tool_call_id.as_str()) {
            return Err(ApiError::bad_request(format!(
                "No tool call found with id '{}' in the run's required action.",
                output.tool_call_id
            ))
            .param("tool_outputs"));
        }
        if !seen.insert(output.tool_call_id.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Tool call '{}' has more than one output.",
                output.tool_call_id
            ))
            .param("tool_outputs"));
        }
    }
    let missing: Vec<&str> = expected
        .iter()
        .filter(|id| !seen.contains(*id))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Expected tool outputs for call_ids {expected:?}, got {:?}; missing {missing:?}. Submit all of them at once.",
            seen.iter().collect::<Vec<_>>()
        ))
        .param("tool_outputs"));
    }
    if !state.submitted(&run.id) {
        return Err(ApiError::bad_request(
            "Runs in status \"in_progress\" do not accept tool outputs.",
        ));
    }
    let outputs = body
        .tool_outputs
        .into_iter()
        .map(|o| ToolOutputSubmission {
            call_id: o.tool_call_id,
            output: o.output,
        })
        .collect();
    if body.stream == Some(true) {
        return Ok(stream::respond(
            state,
            assistant,
            run,
            Vec::new(),
            Start::Submit(outputs),
        ));
    }
    submit_committed(&state, &assistant, &run.id, outputs).await?;
    // The run as its committed step left it, as the Assistants API answers.
    Ok(Json(objects::run(&assistant, &run, RunStatus::InProgress)).into_response())
}
