//! The language server's figures (docs/benchmarks.md, "The language server"): how soon
//! diagnostics for a 500-line flow are republished after a change, how fast completion
//! answers, and the memory with every example flow and scenario open.
//!
//! The server runs in this process on an in-memory connection (`lsp_server::Connection::
//! memory`, the same loop `clarion lsp` runs on stdio), with the built-in catalog the CLI
//! passes. Run: `cargo run --release -p clarion-lsp --example bench_lsp`.

// A measuring script: one straight `main`, printing its figures, failing loudly.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lsp_server::{Connection, Message, Notification, Request, RequestId};
use serde_json::{Value, json};

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (server, client) = Connection::memory();
    let thread = std::thread::spawn(move || {
        let options = clarion_lsp::Options {
            builtins: Some(Arc::new(clarion_tools::BuiltinRegistry::standard())),
            ..clarion_lsp::Options::default()
        };
        clarion_lsp::serve(&server, options).unwrap();
    });
    let mut next_id = 0;
    let mut request = |client: &Connection, method: &str, params: Value| -> Value {
        next_id += 1;
        client
            .sender
            .send(Message::Request(Request::new(
                RequestId::from(next_id),
                method.to_owned(),
                params,
            )))
            .unwrap();
        loop {
            if let Message::Response(response) = client.receiver.recv().unwrap()
                && response.id == RequestId::from(next_id)
            {
                return response.response_result.unwrap_or(Value::Null);
            }
        }
    };
    let notify = |client: &Connection, method: &str, params: Value| {
        client
            .sender
            .send(Message::Notification(Notification::new(
                method.to_owned(),
                params,
            )))
            .unwrap();
    };
    let wait_diagnostics = |client: &Connection, uri: &str, version: i64| -> usize {
        loop {
            if let Message::Notification(n) = client.receiver.recv().unwrap()
                && n.method == "textDocument/publishDiagnostics"
                && n.params["uri"] == uri
                && n.params["version"].as_i64().is_none_or(|v| v >= version)
            {
                return n.params["diagnostics"].as_array().map_or(0, Vec::len);
            }
        }
    };
    request(&client, "initialize", json!({ "capabilities": {} }));
    notify(&client, "initialized", json!({}));

    // A 500-line flow: the personal-finance flow with its savings tool copied under new names.
    let base = std::fs::read_to_string(repo.join("flows/personal-finance.toml")).unwrap();
    let start = base.find("[tools.calculate_savings_timeline]").unwrap();
    let end = base.find("# --- Budget analysis").unwrap();
    let mut text = base.clone();
    let mut copy = 0;
    while text.lines().count() < 500 {
        copy += 1;
        text.push('\n');
        text.push_str(&base[start..end].replace(
            "calculate_savings_timeline",
            &format!("calculate_savings_timeline_{copy}"),
        ));
    }
    let lines = text.lines().count();
    let path = std::env::temp_dir().join("clarion-bench-500.toml");
    let uri = format!("file://{}", path.display());
    notify(
        &client,
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "toml", "version": 1, "text": text } }),
    );
    let found = wait_diagnostics(&client, &uri, 1);
    assert_eq!(found, 0, "the generated flow should be clean");

    // Change → diagnostics republished: type one character into a description and delete it.
    let at = text.find("Target amount").unwrap();
    let line = text[..at].matches('\n').count();
    let character = at - text[..at].rfind('\n').map_or(0, |i| i + 1);
    let mut latencies = Vec::new();
    for version in 2..=201i64 {
        let change = if version % 2 == 0 {
            json!({ "range": { "start": { "line": line, "character": character }, "end": { "line": line, "character": character } }, "text": "X" })
        } else {
            json!({ "range": { "start": { "line": line, "character": character }, "end": { "line": line, "character": character + 1 } }, "text": "" })
        };
        let sent = Instant::now();
        notify(
            &client,
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri, "version": version }, "contentChanges": [change] }),
        );
        wait_diagnostics(&client, &uri, version);
        latencies.push(sent.elapsed());
    }
    report(
        &format!("change → diagnostics, {lines}-line flow (incl. the 8 ms debounce)"),
        &mut latencies,
    );

    // Completion of slot names inside `slot = "…"`.
    let at = text.find("slot = \"goal_amount\"").unwrap() + 8;
    let line = text[..at].matches('\n').count();
    let character = at - text[..at].rfind('\n').map_or(0, |i| i + 1);
    let mut latencies = Vec::new();
    for _ in 0..500 {
        let sent = Instant::now();
        let items = request(
            &client,
            "textDocument/completion",
            json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } }),
        );
        latencies.push(sent.elapsed());
        assert!(items.as_array().is_some_and(|i| !i.is_empty()));
    }
    report(
        &format!("completion of `slot = \"…\"`, {lines}-line flow"),
        &mut latencies,
    );
    let mut latencies = Vec::new();
    let at = text.find("{{ args.monthly_savings").unwrap() + 8;
    let line = text[..at].matches('\n').count();
    let character = at - text[..at].rfind('\n').map_or(0, |i| i + 1);
    for _ in 0..500 {
        let sent = Instant::now();
        request(
            &client,
            "textDocument/completion",
            json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } }),
        );
        latencies.push(sent.elapsed());
    }
    report(
        &format!("completion of `{{{{ args.` in a template, {lines}-line flow"),
        &mut latencies,
    );
    notify(
        &client,
        "textDocument/didClose",
        json!({ "textDocument": { "uri": uri } }),
    );

    // Every example flow and scenario open.
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(repo.join("flows")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        } else if path.is_dir() {
            for folder in ["scenarios", "evals"] {
                if let Ok(read) = std::fs::read_dir(path.join(folder)) {
                    files.extend(
                        read.flatten()
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|e| e == "toml")),
                    );
                }
            }
        }
    }
    files.sort_by_key(|p| p.components().count());
    let started = Instant::now();
    for path in &files {
        let uri = format!("file://{}", path.canonicalize().unwrap().display());
        let text = std::fs::read_to_string(path).unwrap();
        notify(
            &client,
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "toml", "version": 1, "text": text } }),
        );
    }
    // Each file's first publication (a flow's opening re-checks the open scenarios too).
    let mut waiting: std::collections::HashSet<String> = files
        .iter()
        .map(|path| format!("file://{}", path.canonicalize().unwrap().display()))
        .collect();
    while !waiting.is_empty() {
        if let Message::Notification(n) = client.receiver.recv().unwrap()
            && n.method == "textDocument/publishDiagnostics"
        {
            waiting.remove(n.params["uri"].as_str().unwrap_or_default());
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or(name)
            .to_owned()
    };
    println!(
        "{} files open (every example flow, scenario and eval), all checked in {:.0?}; {}; {}",
        files.len(),
        started.elapsed(),
        field("VmRSS"),
        field("VmHWM")
    );
    request(&client, "shutdown", Value::Null);
    notify(&client, "exit", Value::Null);
    thread.join().unwrap();
}

fn report(what: &str, latencies: &mut [Duration]) {
    latencies.sort();
    let at = |percent: usize| latencies[(latencies.len() - 1) * percent / 100];
    println!(
        "{what}: median {:.2?}, p95 {:.2?}, max {:.2?} ({} runs)",
        at(50),
        at(95),
        at(100),
        latencies.len()
    );
}
