//! What one model request costs as a thread grows, part by part: the part the protocol
//! forces (building the Chat Completions body from the whole history and serializing it,
//! what `respond()` posts) beside two whole-history passes the engine makes before each
//! request (the protocol check, and the grounding index of the user's messages before a
//! tool call runs), and parsing the history back from JSON, which the SQLite store does
//! for every message each time a run starts. Run by `scripts/bench-roundtrip.sh` on the thread its long run stored;
//! figures in docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p clarion-providers --example bench_history -- MESSAGES.json
//! ```
//!
//! MESSAGES.json is the thread's messages as a JSON array of `Message`s. Each figure is the
//! median wall time of single calls on one thread (on a loaded machine the median is the
//! CPU time of a call that was not preempted), at the first request of turn 1, of the
//! middle turn and of the last turn.

#![allow(clippy::print_stdout, missing_docs)]

use std::path::Path;
use std::time::Instant;

use clarion_engine::bench::Said;
use clarion_engine::protocol;
use clarion_engine::{Message, MessageKind, ModelRequest};
use clarion_flow::{LoadOptions, load_file_with};
use clarion_providers::chat_completions::request_body;
use clarion_providers::config::ProviderConfig;

fn median_us(reps: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut times = Vec::with_capacity(reps);
    let mut sink = 0;
    for _ in 0..reps {
        let start = Instant::now();
        sink += f();
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    std::hint::black_box(sink);
    times.sort_by(f64::total_cmp);
    times[reps / 2]
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: bench_history MESSAGES.json");
    let text = std::fs::read_to_string(&path).expect("readable messages file");
    let messages: Vec<Message> = serde_json::from_str(&text).expect("a JSON array of messages");
    let report = load_file_with(
        Path::new("flows/personal-finance.toml"),
        &LoadOptions::default(),
    );
    let flow = report.flow.expect("flows/personal-finance.toml loads");
    let mut config = ProviderConfig::new("http://127.0.0.1:9/v1");
    config.model = Some("x".to_owned());
    config.stream = true;
    // Turn k's first request carries everything up to and including its user message.
    let turns: Vec<usize> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m.kind, MessageKind::User { .. }))
        .map(|(i, _)| i + 1)
        .collect();
    let n = turns.len();
    println!(
        "| turn | messages sent | request body | body: build + serialize | protocol check | grounding index | parse the history from JSON |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for turn in [1, n / 2, n] {
        let history = &messages[..turns[turn - 1]];
        let request = ModelRequest {
            flow: &flow,
            instructions: "You are a personal finance assistant.",
            messages: history,
            history,
            words_only: false,
        };
        let bytes = serde_json::to_vec(&request_body(&config, &request))
            .expect("serializable")
            .len();
        let reps = 2000;
        let body = median_us(reps, || {
            serde_json::to_vec(&request_body(&config, &request))
                .expect("serializable")
                .len()
        });
        let check = median_us(reps, || usize::from(protocol::check(history).is_ok()));
        let said = median_us(reps, || {
            std::hint::black_box(Said::from_messages(history));
            0
        });
        // What the SQLite store's `thread()` does per row after reading it (its rows hold
        // the same JSON without the id, run and time columns).
        let stored: Vec<String> = history
            .iter()
            .map(|m| serde_json::to_string(m).expect("serializable"))
            .collect();
        let parse = median_us(reps / 4, || {
            let mut parsed = 0;
            for text in &stored {
                let message: Message = serde_json::from_str(text).expect("parses");
                parsed += message.id.len();
            }
            parsed
        });
        println!(
            "| {turn} | {} | {:.1} KB | {body:.1} µs | {check:.1} µs | {said:.1} µs | {parse:.1} µs |",
            history.len(),
            f64::from(u32::try_from(bytes).unwrap_or(u32::MAX)) / 1000.0
        );
    }
}
