//! Every scenario of every example flow (`flows/*/scenarios/*.toml`), played through the
//! public harness and compared with its snapshot — what a Rust user of Clarion writes to
//! test their own flows from `cargo test`.
//!
//! A new or changed transcript is written beside its snapshot as `.snap.new` (never with
//! `CI` set); review it with `clarion test --review` (`cargo insta review` does not find
//! `flows/`: it searches Cargo packages only).

use std::path::Path;

#[test]
fn every_example_scenario_matches_its_snapshot() {
    let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows");
    clarion_testing::assert_scenarios(flows);
}
