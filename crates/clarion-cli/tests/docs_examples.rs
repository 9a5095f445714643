//! The Rust shown in `docs/testing.md`'s "From `cargo test`: the Rust harness", compiled and
//! run. The doc's block carries `<!-- check: excerpt crates/clarion-cli/tests/docs_examples.rs -->`,
//! so `crates/clarion-cli/tests/docs_snippets.rs` fails when a line of it is no longer here:
//! change the example here first (where the compiler checks it), then copy it to the doc.

use clarion_testing::{Runner, UpdateMode};
use clarion_tools::{BuiltinRegistry, ClarionTools};
use std::sync::Arc;

async fn check_parallel_calls() {
    let runner = Runner::new()
        .with_builtins(Arc::new(BuiltinRegistry::standard())) // check builtin names, as validate does
        .with_executor(Arc::new(ClarionTools::new())); // run unmocked built-ins for real
    let outcome = runner
        .run("flows/personal-finance/scenarios/parallel_calls.toml".as_ref())
        .await;
    assert!(outcome.problems.is_empty() && outcome.failures.is_empty());
    let check = outcome.check_snapshot(UpdateMode::from_env());
    assert!(
        outcome.passed(&check),
        "{}",
        outcome.failure_report(&check, false)
    );
}

/// The example's path is from the repository root, where `clarion test` runs; this test
/// binary holds no other test, so changing its directory affects nothing else.
#[test]
fn the_runner_example_passes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::set_current_dir(root).expect("the repository root exists");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime starts");
    runtime.block_on(check_parallel_calls());
}
