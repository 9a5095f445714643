//! Shared by the CLI's test binaries: a loopback OpenAI-compatible model's wire format.

// Each test binary uses part of this module.
#![allow(dead_code)]

use serde_json::{Value, json};

/// `message` (a Chat Completions assistant message) as an event stream: text in small
/// pieces, tool calls whole.
pub(crate) fn stream(message: &Value) -> String {
    let mut chunks = Vec::new();
    if let Some(text) = message["content"].as_str() {
        for piece in text.split_inclusive(' ') {
            chunks.push(json!({ "choices": [{ "index": 0, "delta": { "content": piece } }] }));
        }
    }
    let calls: Vec<Value> = message["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, mut call)| {
            call["index"] = json!(index);
            call
        })
        .collect();
    let finish = if calls.is_empty() {
        "stop"
    } else {
        chunks.push(json!({ "choices": [{ "index": 0, "delta": { "role": "assistant", "tool_calls": calls } }] }));
        "tool_calls"
    };
    chunks.push(json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": finish }] }));
    chunks.push(json!("[DONE]"));
    chunks
        .iter()
        .map(|c| match c.as_str() {
            Some(done) => format!("data: {done}\n\n"),
            None => format!("data: {c}\n\n"),
        })
        .collect::<Vec<_>>()
        .concat()
}

/// A Chat Completions response for `message`: streamed when the request asked for it.
pub(crate) fn reply(request: &Value, message: &Value) -> wiremock::ResponseTemplate {
    if request["stream"] == true {
        wiremock::ResponseTemplate::new(200).set_body_raw(stream(message), "text/event-stream")
    } else {
        wiremock::ResponseTemplate::new(200).set_body_json(
            json!({ "choices": [{ "index": 0, "message": message, "finish_reason": if message["tool_calls"].is_array() { "tool_calls" } else { "stop" } }] }),
        )
    }
}
