//! Streaming runs (`stream: true`): server-sent events with the Assistants event names.
//!
//! The run is driven by a background task exactly as without streaming; this module turns
//! its progress into events. Status changes while the run works (`thread.run.in_progress`,
//! `thread.run.cancelling`) go out live. Steps and messages go out once the run comes to
//! rest, read back from the store — so every id in the stream is the id stored in the
//! thread, and a message's text arrives as one `thread.message.delta`. Then the run's
//! resting event (`thread.run.completed`, `thread.run.requires_action`, `…failed`…) and
//! `done`. If the client goes away the run still finishes; nothing is lost.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use clarion_engine::events::{Event, EventSink};
use clarion_engine::run::{Run, RunStatus, ToolOutputSubmission};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::routes::runs::{shown, spawn_drive, spawn_submit};
use crate::state::{AppState, Assistant};
use crate::wire::objects;

/// How the streamed run starts.
#[derive(Debug)]
pub enum Start {
    /// A run just created (queued).
    Create,
    /// Outputs accepted for a run in `requires_action`.
    Submit(Vec<ToolOutputSubmission>),
}

/// Forwards status changes to the stream.
struct StatusSink(mpsc::UnboundedSender<RunStatus>);

impl EventSink for StatusSink {
    fn emit(&self, event: &Event) {
        if let Event::Status { status, .. } = event {
            let _ = self.0.send(*status);
        }
    }
}

/// The streaming response for a run; `prelude` events go first (e.g. `thread.created`).
#[must_use]
pub fn respond(
    state: AppState,
    assistant: Assistant,
    run: Run,
    prelude: Vec<(&'static str, Value)>,
    start: Start,
) -> Response {
    let (tx, mut rx) = mpsc::unbounded_channel::<SseEvent>();
    tokio::spawn(produce(state, assistant, run, prelude, start, tx));
    let events = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|event| event.map(Ok::<_, Infallible>))
    });
    Sse::new(events).into_response()
}

fn event(name: &str, data: &Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}

async fn produce(
    state: AppState,
    assistant: Assistant,
    run: Run,
    prelude: Vec<(&'static str, Value)>,
    start: Start,
    tx: mpsc::UnboundedSender<SseEvent>,
) {
    let send = |name: &str, data: &Value| {
        let _ = tx.send(event(name, data));
    };
    for (name, data) in &prelude {
        send(name, data);
    }
    let mark = state
        .store()
        .thread(&run.thread_id)
        .map_or(0, |t| t.messages.len());
    let (status_tx, mut status_rx) = mpsc::unbounded_channel();
    let sink: Arc<dyn EventSink> = Arc::new(StatusSink(status_tx));
    let mut task = match start {
        Start::Create => {
            send(
                "thread.run.created",
                &objects::run(&assistant, &run, RunStatus::Queued),
            );
            send(
                "thread.run.queued",
                &objects::run(&assistant, &run, RunStatus::Queued),
            );
            spawn_drive(assistant.clone(), run.id.clone(), sink)
        }
        Start::Submit(outputs) => {
            send(
                "thread.run.queued",
                &objects::run(&assistant, &run, RunStatus::Queued),
            );
            spawn_submit(
                state.clone(),
                assistant.clone(),
                run.id.clone(),
                outputs,
                sink,
            )
        }
    };
    let live = |status: RunStatus| {
        if matches!(status, RunStatus::InProgress | RunStatus::Cancelling) {
            let mut current = state.store().run(&run.id).unwrap_or_else(|_| run.clone());
            current.required_action.clear();
            send(
                &format!("thread.run.{}", status.as_str()),
                &objects::run(&assistant, &current, status),
            );
        }
    };
    loop {
        tokio::select! {
            Some(status) = status_rx.recv() => live(status),
            _ = &mut task => break,
        }
    }
    while let Ok(status) = status_rx.try_recv() {
        live(status);
    }
    settle(&state, &assistant, &run, mark, &send);
    send_done(&tx);
}

/// Sends the steps and messages the run appended after `mark`, then its resting event.
fn settle(
    state: &AppState,
    assistant: &Assistant,
    run: &Run,
    mark: usize,
    send: &dyn Fn(&str, &Value),
) {
    let (Ok(thread), Ok(settled)) = (
        state.store().thread(&run.thread_id),
        state.store().run(&run.id),
    ) else {
        send(
            "error",
            &json!({"message": "the run's thread could not be read back"}),
        );
        return;
    };
    let steps = objects::steps(assistant, &thread, &settled);
    for message in thread.messages.iter().skip(mark) {
        if message.run_id.as_deref() != Some(run.id.as_str()) {
            continue;
        }
        let Some((_, step)) = steps
            .iter()
            .find(|(id, _)| *id == crate::ids::step_id(&message.id))
        else {
            continue;
        };
        let mut created = step.clone();
        created["status"] = "in_progress".into();
        created["completed_at"] = Value::Null;
        send("thread.run.step.created", &created);
        if let Some(full) = objects::message(&thread, message) {
            let mut empty = full.clone();
            empty["status"] = "in_progress".into();
            empty["content"] = json!([]);
            empty["completed_at"] = Value::Null;
            send("thread.message.created", &empty);
            send("thread.message.in_progress", &empty);
            send(
                "thread.message.delta",
                &json!({
                    "id": message.id,
                    "object": "thread.message.delta",
                    "delta": {"content": [{
                        "index": 0,
                        "type": "text",
                        "text": {"value": message.text().unwrap_or(""), "annotations": []},
                    }]},
                }),
            );
            send("thread.message.completed", &full);
        }
        if step["status"] != "in_progress" {
            send("thread.run.step.completed", step);
        }
    }
    let status = objects::shown_status(&settled, state.is_submitted(&settled.id));
    send(
        &format!("thread.run.{}", status.as_str()),
        &shown(state, assistant, &settled),
    );
}

fn send_done(tx: &mpsc::UnboundedSender<SseEvent>) {
    let _ = tx.send(SseEvent::default().event("done").data("[DONE]"));
}
