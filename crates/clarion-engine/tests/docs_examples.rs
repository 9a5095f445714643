//! The Rust shown in `docs/migrating-from-assistants-api.md`, compiled and run.
//!
//! The doc's block carries `<!-- check: excerpt crates/clarion-engine/tests/docs_examples.rs -->`,
//! so `crates/clarion-cli/tests/docs_snippets.rs` fails when a line of it is no longer here:
//! change the example here first (where the compiler checks it), then copy it to the doc.

use std::sync::Arc;

use clarion_engine::EventLog;
use clarion_engine::FnExecutor;
use clarion_engine::MemoryStore;
use clarion_engine::Metadata;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{Engine, RunStatus};

#[tokio::test]
async fn polling_the_run_is_one_await() -> Result<(), Box<dyn std::error::Error>> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/personal-finance.toml");
    let flow = clarion_flow::load_file(&path).into_result()?;
    let model = ScriptedModel::new([ScriptedTurn::text("About four years.")]);
    let tools =
        FnExecutor(|_: &clarion_flow::Tool, _: &serde_json::Map<_, _>| Ok(serde_json::json!({})));
    let engine = Engine::new(
        Arc::new(flow),
        Arc::new(model),
        Arc::new(tools),
        Arc::new(MemoryStore::new()),
    );

    // docs/migrating-from-assistants-api.md, "1. Polling the run":
    let thread = engine.create_thread(Metadata::default()).await?;
    engine
        .add_message(&thread.id, "How long will it take me to save for a house?")
        .await?;
    let events = EventLog::new(); // or your own EventSink
    let run = engine.run(&thread.id, &events).await?; // no sleep, no retrieve
    assert_eq!(run.status, RunStatus::Completed);
    Ok(())
}
