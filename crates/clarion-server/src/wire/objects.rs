//! The objects the server returns: assistant, thread, message, run, run step.
//!
//! Clarion extensions are namespaced so no SDK field changes meaning: a thread carries
//! `clarion: {assistant_id, slots}` (slots are readable without using metadata keys), and
//! a question is an assistant message whose metadata says `clarion_kind: question` with
//! the tool and parameters it asks for.

use clarion_engine::ThreadHeader;
use clarion_engine::{ErrorCode, IncompleteReason, ModelErrorKind};
use clarion_engine::{Message, MessageKind, Metadata};
use clarion_engine::{Run, RunStatus};
use clarion_flow::Executor;
use serde_json::{Map, Value, json};

use crate::auth::RESERVED_PREFIX;
use crate::ids::{assistant_id, secs, step_id};
use crate::state::Assistant;

fn metadata(metadata: &Metadata) -> Value {
    Value::Object(
        metadata
            .iter()
            .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn tools(assistant: &Assistant) -> Vec<Value> {
    assistant
        .engine
        .flow()
        .tools
        .values()
        .map(|tool| {
            json!({
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "strict": false,
                },
                "x_clarion_executor": if matches!(tool.executor, Executor::Client) { "client" } else { "server" },
            })
        })
        .collect()
}

/// An assistant object for a loaded flow.
#[must_use]
pub fn assistant(assistant: &Assistant, created_at: i64) -> Value {
    let flow = assistant.engine.flow();
    json!({
        "id": assistant.id,
        "object": "assistant",
        "created_at": created_at,
        "name": flow.name,
        "description": flow.description,
        "model": flow.assistant.model,
        "instructions": flow.assistant.instructions,
        "tools": tools(assistant),
        "tool_resources": {},
        "metadata": {},
        "temperature": flow.assistant.temperature,
        "top_p": flow.assistant.top_p,
        "response_format": "auto",
    })
}

/// A thread object.
#[must_use]
pub fn thread(thread: &ThreadHeader) -> Value {
    json!({
        "id": thread.id,
        "object": "thread",
        "created_at": secs(thread.created_at),
        "metadata": metadata(&thread.metadata),
        "tool_resources": {},
        "clarion": {
            "assistant_id": (!thread.flow.is_empty()).then(|| assistant_id(&thread.flow)),
            "slots": thread.slots,
            "pending": thread.pending.as_ref().map(|p| json!({"tool": p.tool, "missing": p.missing})),
            // The flow that has the thread now: the assistant's own, or one it handed to.
            "active_flow": (!thread.flow.is_empty()).then(|| thread.active_flow()),
        },
    })
}

/// The role, text and metadata of a message people see; `None` for tool outputs, injected
/// context and tool calls without text (those are in run steps).
#[must_use]
pub fn visible(message: &Message) -> Option<(&'static str, &str, Map<String, Value>)> {
    match &message.kind {
        MessageKind::User { text } => Some(("user", text, Map::new())),
        MessageKind::Assistant { text } => Some(("assistant", text, Map::new())),
        MessageKind::ToolCalls {
            text: Some(text), ..
        } if !text.trim().is_empty() => Some(("assistant", text, Map::new())),
        MessageKind::Question {
            tool,
            params,
            text,
            confirm,
            ..
        } => {
            let mut meta = Map::new();
            let kind = if *confirm { "confirmation" } else { "question" };
            meta.insert("clarion_kind".into(), kind.into());
            meta.insert("clarion_tool".into(), tool.clone().into());
            meta.insert("clarion_params".into(), params.join(",").into());
            Some(("assistant", text, meta))
        }
        _ => None,
    }
}

/// A message object (for a visible message).
#[must_use]
pub fn message(thread: &ThreadHeader, message: &Message) -> Option<Value> {
    let (role, text, mut meta) = visible(message)?;
    for (key, value) in message.metadata.iter() {
        meta.insert(key.clone(), Value::String(value.clone()));
    }
    let created = secs(message.created_at);
    let from_run = message.run_id.is_some() && !thread.flow.is_empty();
    Some(json!({
        "id": message.id,
        "object": "thread.message",
        "created_at": created,
        "thread_id": thread.id,
        "role": role,
        "content": [{"type": "text", "text": {"value": text, "annotations": []}}],
        "assistant_id": from_run.then(|| assistant_id(&thread.flow)),
        "run_id": message.run_id,
        "attachments": [],
        "metadata": meta,
        "status": "completed",
        "incomplete_details": null,
        "completed_at": created,
        "incomplete_at": null,
    }))
}

/// The status a client sees: a run whose outputs were accepted reads as `in_progress`
/// until its task settles.
#[must_use]
pub fn shown_status(run: &Run, submitted: bool) -> RunStatus {
    if submitted && run.status == RunStatus::RequiresAction {
        RunStatus::InProgress
    } else {
        run.status
    }
}

/// A run object.
#[must_use]
pub fn run(assistant: &Assistant, run: &Run, status: RunStatus) -> Value {
    let flow = assistant.engine.flow();
    let at = |when: bool| {
        if when {
            run.completed_at.map(secs)
        } else {
            None
        }
    };
    let required_action = (status == RunStatus::RequiresAction && !run.required_action.is_empty())
        .then(|| {
            json!({
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {
                    "tool_calls": run.required_action.iter().map(|call| json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })).collect::<Vec<_>>(),
                },
            })
        });
    let last_error = run.last_error.as_ref().map(|e| {
        // The API's codes are `server_error`, `rate_limit_exceeded` and `invalid_prompt`;
        // Clarion's own code goes into the message.
        let code = match e.code {
            ErrorCode::Model(ModelErrorKind::RateLimited) => "rate_limit_exceeded",
            _ => "server_error",
        };
        json!({"code": code, "message": format!("{} ({})", e.message, e.code)})
    });
    let incomplete_details = (status == RunStatus::Incomplete).then(|| {
        let reason = match run.incomplete_details {
            Some(IncompleteReason::MaxOutputTokens) => "max_completion_tokens",
            Some(IncompleteReason::ContentFilter) => "content_filter",
            Some(IncompleteReason::RepeatedCall) => "repeated_call",
            Some(IncompleteReason::AsksExhausted) => "asks_exhausted",
            _ => "max_steps",
        };
        json!({"reason": reason})
    });
    let usage = status.is_terminal().then(|| {
        json!({
            "prompt_tokens": run.usage.prompt_tokens,
            "completion_tokens": run.usage.completion_tokens,
            "total_tokens": run.usage.total(),
        })
    });
    json!({
        "id": run.id,
        "object": "thread.run",
        "created_at": secs(run.created_at),
        "assistant_id": assistant.id,
        "thread_id": run.thread_id,
        "status": status.as_str(),
        "started_at": run.started_at.map(secs),
        "expires_at": run.expires_at.map(secs),
        "cancelled_at": at(status == RunStatus::Cancelled),
        "failed_at": at(status == RunStatus::Failed),
        "completed_at": at(status == RunStatus::Completed),
        "required_action": required_action,
        "last_error": last_error,
        "incomplete_details": incomplete_details,
        "model": flow.assistant.model,
        "instructions": flow.assistant.instructions,
        "additional_instructions": run.additional_instructions,
        "tools": tools(assistant),
        "metadata": metadata(&run.metadata),
        "usage": usage,
        "temperature": flow.assistant.temperature,
        "top_p": flow.assistant.top_p,
        "max_prompt_tokens": null,
        "max_completion_tokens": flow.assistant.max_output_tokens,
        "truncation_strategy": truncation_strategy(flow, run),
        "response_format": "auto",
        "tool_choice": "auto",
        "parallel_tool_calls": flow.assistant.parallel_tool_calls.unwrap_or(true),
    })
}

/// The run's `truncation_strategy`: its own `last_messages`, else the flow's
/// `limits.truncation`.
fn truncation_strategy(flow: &clarion_flow::Flow, run: &Run) -> Value {
    let flow_messages = match flow.limits.truncation {
        clarion_flow::Truncation::Auto => None,
        clarion_flow::Truncation::LastMessages(n) => Some(n),
    };
    match run.last_messages.or(flow_messages) {
        Some(n) => json!({"type": "last_messages", "last_messages": n}),
        None => json!({"type": "auto", "last_messages": null}),
    }
}

/// The steps of a run, oldest first, derived from the messages it appended (`messages`,
/// oldest first): a `tool_calls` step per model turn with calls (outputs filled in as they
/// arrive) and a `message_creation` step per visible assistant message.
#[must_use]
pub fn steps(assistant: &Assistant, run: &Run, messages: &[Message]) -> Vec<(String, Value)> {
    let mut steps = Vec::new();
    for message in messages {
        if message.run_id.as_deref() != Some(run.id.as_str()) {
            continue;
        }
        let created = secs(message.created_at);
        let (kind, details, done) = match &message.kind {
            MessageKind::ToolCalls { calls, .. } => {
                let mut all_done = true;
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|call| {
                        let output = messages.iter().find_map(|m| match &m.kind {
                            MessageKind::ToolOutput {
                                call_id, content, ..
                            } if *call_id == call.id => Some(content.clone()),
                            _ => None,
                        });
                        all_done &= output.is_some();
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments, "output": output},
                        })
                    })
                    .collect();
                (
                    "tool_calls",
                    json!({"type": "tool_calls", "tool_calls": calls}),
                    all_done || run.status.is_terminal(),
                )
            }
            _ if visible(message).is_some() && message.kind_is_reply() => (
                "message_creation",
                json!({"type": "message_creation", "message_creation": {"message_id": message.id}}),
                true,
            ),
            _ => continue,
        };
        let status = if done {
            match run.status {
                RunStatus::Cancelled if kind == "tool_calls" => "cancelled",
                RunStatus::Expired if kind == "tool_calls" => "expired",
                _ => "completed",
            }
        } else {
            "in_progress"
        };
        let id = step_id(&message.id);
        steps.push((
            id.clone(),
            json!({
                "id": id,
                "object": "thread.run.step",
                "created_at": created,
                "assistant_id": assistant.id,
                "thread_id": run.thread_id,
                "run_id": run.id,
                "type": kind,
                "status": status,
                "step_details": details,
                "last_error": null,
                "expired_at": null,
                "cancelled_at": null,
                "failed_at": null,
                "completed_at": (status == "completed").then_some(created),
                "metadata": {},
                "usage": null,
            }),
        ));
    }
    steps
}

/// Whether a message is a reply (assistant text or question), as opposed to calls.
trait ReplyKind {
    fn kind_is_reply(&self) -> bool;
}

impl ReplyKind for Message {
    fn kind_is_reply(&self) -> bool {
        matches!(
            self.kind,
            MessageKind::Assistant { .. } | MessageKind::Question { .. }
        )
    }
}
