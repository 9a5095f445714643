//! Shared by the CLI's test binaries: a loopback OpenAI-compatible model's wire format, the
//! example flow pointed at it, an HTTP client for `clarion serve`, and the Python with the
//! `openai` SDK.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// `flows/personal-finance.toml` with a `[provider]` at `base_url` (not streamed, no
/// retries, a 600 s timeout so a slow test machine never times a request out), written
/// into `dir`.
pub(crate) fn flow_for(dir: &Path, base_url: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text =
        std::fs::read_to_string(workspace.join("flows/personal-finance.toml")).unwrap_or_default();
    let path = dir.join("finance.toml");
    std::fs::write(
        &path,
        format!("{text}\n[provider]\nbase_url = \"{base_url}\"\nstream = false\nmax_retries = 0\ntimeout = \"600s\"\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path
}

/// An HTTP client for the server under test.
pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Sends `request`: the status and the JSON body (null when there is none).
pub(crate) async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The Python of `scripts/sdk-venv.sh` (or `CLARION_SDK_PYTHON`) when it has the `openai`
/// package; without it the caller skips, except under CI, where this fails.
pub(crate) fn sdk_python() -> Option<PathBuf> {
    let candidate = std::env::var_os("CLARION_SDK_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/clarion/sdk-venv/bin/python"))
        })?;
    let works = std::process::Command::new(&candidate)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(candidate);
    }
    let why = format!(
        "no Python with the openai package at {} (run scripts/sdk-venv.sh)",
        candidate.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{why}");
    #[allow(clippy::print_stderr)]
    {
        eprintln!("skipped: {why}");
    }
    None
}

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

/// `flows/bank-transfer.toml` with a `[provider]` at `base_url` and its ledger script
/// beside it (as in the repository, so `tools/bank.py` resolves), written into `dir`.
pub(crate) fn bank_flow_for(dir: &Path, base_url: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(workspace.join("flows/bank-transfer.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.join("tools")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        workspace.join("flows/tools/bank.py"),
        dir.join("tools/bank.py"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("bank-transfer.toml");
    std::fs::write(
        &path,
        format!("{text}\n[provider]\nbase_url = \"{base_url}\"\nstream = false\nmax_retries = 0\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path
}

/// The bank flow's model, as the assistant message answering a Chat Completions `body`:
/// the reading of a confirmation answer (the request that offers `decide`) from the
/// user's words — "sure" confirms, "make it 300" changes the amount, anything else
/// declines; a transfer of $200 when the user asks to move money; else "Done."
pub(crate) fn bank_answer(body: &Value) -> Value {
    let offers = |name: &str| {
        body["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["function"]["name"] == name)
    };
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let said = last["content"].as_str().unwrap_or_default().to_owned();
    let call = |name: &str, arguments: &str| {
        json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": format!("call_{}", messages.len()), "type": "function",
            "function": { "name": name, "arguments": arguments } }] })
    };
    if offers("decide") {
        let decision = if said.contains("sure") {
            r#"{"decision": "confirm"}"#
        } else if said.contains("300") {
            r#"{"decision": "change", "changes": {"amount": 300}}"#
        } else {
            r#"{"decision": "decline"}"#
        };
        call("decide", decision)
    } else if last["role"] == "user" && said.contains("Move") {
        call(
            "transfer_funds",
            r#"{"amount": 200, "from_account": "checking", "to_account": "savings"}"#,
        )
    } else {
        json!({ "role": "assistant", "content": "Done." })
    }
}

/// A loopback model server's answer with [`bank_answer`], for `wiremock`.
pub(crate) struct BankModel;

impl wiremock::Respond for BankModel {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        wiremock::ResponseTemplate::new(200).set_body_json(json!({ "choices": [{ "index": 0,
            "message": bank_answer(&body), "finish_reason": "stop" }] }))
    }
}

/// `flows/front-desk.toml` with a `[provider]` at `base_url`, written into `root/flows`
/// beside the three flows it hands off to, with the schema files they `$ref` in
/// `root/schemas` (as in the repository).
pub(crate) fn desk_flow_for(root: &Path, base_url: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("flows");
    for sub in ["flows", "schemas"] {
        std::fs::create_dir_all(root.join(sub)).unwrap_or_else(|e| panic!("{e}"));
    }
    for entry in std::fs::read_dir(workspace.join("schemas")).unwrap_or_else(|e| panic!("{e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, root.join("schemas").join(name)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    for name in ["personal-finance", "travel-booking", "support-triage"] {
        let file = format!("flows/{name}.toml");
        std::fs::copy(workspace.join(&file), dir.join(format!("{name}.toml")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let desk = std::fs::read_to_string(workspace.join("flows/front-desk.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("front-desk.toml");
    std::fs::write(
        &path,
        format!("{desk}\n[provider]\nbase_url = \"{base_url}\"\nstream = false\nmax_retries = 0\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    path
}

/// The front desk's model and the flows' after it: when `money` is offered (the desk has
/// the thread) it hands the user's message to personal-finance; after a tool's output,
/// "It takes 12 months."; else it repeats what the user said.
pub(crate) struct DeskModel;

impl wiremock::Respond for DeskModel {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let last = messages.last().cloned().unwrap_or(Value::Null);
        let desk = body["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().any(|t| t["function"]["name"] == "money"));
        let message = if desk && last["role"] == "user" {
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": format!("call_{}", messages.len()), "type": "function",
                "function": { "name": "money", "arguments": "{}" } }] })
        } else if last["role"] == "tool" {
            json!({ "role": "assistant", "content": "It takes 12 months." })
        } else {
            json!({ "role": "assistant", "content": format!("You said: {}", last["content"].as_str().unwrap_or_default()) })
        };
        reply(&body, &message)
    }
}
