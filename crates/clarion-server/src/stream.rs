//! Streaming runs (`stream: true`): server-sent events with the Assistants event names.
//!
//! The run is driven by a background task exactly as without streaming; this module turns
//! its progress into events. Status changes while the run works (`thread.run.in_progress`,
//! `thread.run.cancelling`) and the model's text go out live: the engine names the id of
//! the message a model turn will produce before the model streams (`ModelCalled`), so the
//! first text sends `thread.message.created` under the id the thread will store, and every
//! piece a `thread.message.delta`. Steps, the other messages (questions) and the
//! `…completed` events go out once the run comes to rest, read back from the store. Then
//! the run's resting event (`thread.run.completed`, `thread.run.requires_action`,
//! `…failed`…) and `done`. If the client goes away the run still finishes; nothing is lost.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use clarion_engine::{Event, EventSink};
use clarion_engine::{Run, RunStatus, ToolOutputSubmission};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::error::ApiError;
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

/// What the run's task reports to the stream while it works.
enum Live {
    Status(RunStatus),
    /// The model was asked; text that follows belongs to this message id.
    Reply(String),
    Text(String),
}

/// Forwards status changes and streamed text to the stream.
struct LiveSink(mpsc::UnboundedSender<Live>);

impl EventSink for LiveSink {
    fn emit(&self, event: &Event) {
        let live = match event {
            Event::Status { status, .. } => Live::Status(*status),
            Event::ModelCalled { message_id } => Live::Reply(message_id.clone()),
            Event::TextDelta { text } => Live::Text(text.clone()),
            _ => return,
        };
        let _ = self.0.send(live);
    }
}

/// The message being streamed: its id, and text held back while it is only whitespace (a
/// tool-call turn with blank text never becomes a visible message).
#[derive(Default)]
struct Reply {
    id: Option<String>,
    held: String,
    started: bool,
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
    let keep_alive = KeepAlive::new()
        .interval(state.keep_alive())
        .text("keep-alive");
    tokio::spawn(produce(state, assistant, run, prelude, start, tx));
    let events = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|event| event.map(Ok::<_, Infallible>))
    });
    // A run waiting on a slow model sends nothing for minutes; comments keep proxies
    // (and clients with read timeouts) from dropping the stream meanwhile.
    Sse::new(events).keep_alive(keep_alive).into_response()
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
        .thread_header(&run.thread_id)
        .await
        .map_or(0, |t| t.message_count);
    let (live_tx, mut live_rx) = mpsc::unbounded_channel();
    let sink: Arc<dyn EventSink> = Arc::new(LiveSink(live_tx));
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
            spawn_drive(&state, assistant.clone(), run.id.clone(), sink)
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
    let mut reply = Reply::default();
    let mut streamed = HashMap::new();
    let mut finished = false;
    loop {
        let update = tokio::select! {
            Some(update) = live_rx.recv() => update,
            _ = &mut task, if !finished => {
                finished = true;
                continue;
            }
            else => break,
        };
        match update {
            Live::Status(status)
                if matches!(status, RunStatus::InProgress | RunStatus::Cancelling) =>
            {
                let mut current = state
                    .store()
                    .run(&run.id)
                    .await
                    .unwrap_or_else(|_| run.clone());
                current.required_action.clear();
                send(
                    &format!("thread.run.{}", status.as_str()),
                    &objects::run(&assistant, &current, status),
                );
            }
            Live::Status(_) => {}
            Live::Reply(id) => {
                reply = Reply {
                    id: Some(id),
                    ..Reply::default()
                };
            }
            Live::Text(piece) => text(&assistant, &run, &mut reply, &mut streamed, &piece, &send),
        }
        if finished && live_rx.is_empty() {
            break;
        }
    }
    settle(&state, &assistant, &run, mark, &streamed, &send).await;
    send_done(&tx);
}

/// Messages streamed live, by id: the `thread.message.created` object and the text so far.
type Streamed = HashMap<String, (Value, String)>;

/// A piece of the model's text: the first visible one creates the message.
fn text(
    assistant: &Assistant,
    run: &Run,
    reply: &mut Reply,
    streamed: &mut Streamed,
    piece: &str,
    send: &dyn Fn(&str, &Value),
) {
    let Some(id) = reply.id.clone() else {
        return;
    };
    reply.held.push_str(piece);
    if !reply.started {
        if reply.held.trim().is_empty() {
            return;
        }
        reply.started = true;
        let now = crate::ids::secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        );
        let created = json!({
            "id": id,
            "object": "thread.message",
            "created_at": now,
            "thread_id": run.thread_id,
            "role": "assistant",
            "content": [],
            "assistant_id": assistant.id,
            "run_id": run.id,
            "attachments": [],
            "metadata": {},
            "status": "in_progress",
            "incomplete_details": null,
            "completed_at": null,
            "incomplete_at": null,
        });
        send("thread.message.created", &created);
        send("thread.message.in_progress", &created);
        streamed.insert(id.clone(), (created, String::new()));
    }
    let value = std::mem::take(&mut reply.held);
    if let Some((_, so_far)) = streamed.get_mut(&id) {
        so_far.push_str(&value);
    }
    send(
        "thread.message.delta",
        &json!({
            "id": id,
            "object": "thread.message.delta",
            "delta": {"content": [{
                "index": 0,
                "type": "text",
                "text": {"value": value, "annotations": []},
            }]},
        }),
    );
}

/// Sends the steps and messages the run appended after `mark` (a message whose text was
/// `streamed` live only completes), then the run's resting event.
async fn settle(
    state: &AppState,
    assistant: &Assistant,
    run: &Run,
    mark: usize,
    streamed: &Streamed,
    send: &(dyn Fn(&str, &Value) + Sync),
) {
    let read = async {
        let thread = state.store().thread_header(&run.thread_id).await?;
        let settled = state.store().run(&run.id).await?;
        let messages = crate::routes::steps::run_messages(state, &settled).await?;
        Ok::<_, ApiError>((thread, settled, messages))
    };
    let Ok((thread, settled, messages)) = read.await else {
        send(
            "error",
            &json!({"message": "the run's thread could not be read back"}),
        );
        return;
    };
    let steps = objects::steps(assistant, &settled, &messages);
    // The run's messages from this stream's start on (a submitted run's earlier turns were
    // streamed before).
    let before = thread.message_count.saturating_sub(mark);
    let skip = messages.len().saturating_sub(before);
    for message in messages.iter().skip(skip) {
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
        if let Some(full) = objects::message(&thread, message)
            && streamed.contains_key(&message.id)
        {
            send("thread.message.completed", &full);
        } else if let Some(full) = objects::message(&thread, message) {
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
    // A message that streamed but never landed (the model failed or the run was cancelled
    // mid-reply) ends as the API ends one: incomplete, with the text that did arrive.
    let reason = match settled.status {
        RunStatus::Cancelled | RunStatus::Cancelling => "run_cancelled",
        RunStatus::Expired => "run_expired",
        _ => "run_failed",
    };
    for (id, (created, text)) in streamed {
        if messages.iter().any(|m| &m.id == id) {
            continue;
        }
        let mut incomplete = created.clone();
        incomplete["status"] = "incomplete".into();
        incomplete["content"] =
            json!([{"type": "text", "text": {"value": text, "annotations": []}}]);
        incomplete["incomplete_details"] = json!({ "reason": reason });
        incomplete["incomplete_at"] = settled.completed_at.map_or_else(
            || created["created_at"].clone(),
            |ms| crate::ids::secs(ms).into(),
        );
        send("thread.message.incomplete", &incomplete);
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
