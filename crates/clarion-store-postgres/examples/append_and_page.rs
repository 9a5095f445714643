//! SQLite against PostgreSQL on what a chat request costs the store: append one user
//! message to a long thread, then read the newest page of 20 messages.
//!
//! ```sh
//! eval "$(bash scripts/postgres.sh start)"
//! cargo run --release -p clarion-store-postgres --example append_and_page
//! ```
//!
//! Prints the median and p99 of each operation for each store (figures in
//! docs/benchmarks.md). Each store gets a thread of `LENGTH` messages first.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark prints its figures

use std::time::{Duration, Instant};

use clarion_engine::contract::{thread, user};
use clarion_engine::{MessageQuery, ThreadStore};
use clarion_store::SqliteStore;
use clarion_store_postgres::testing::fresh_schema;
use clarion_store_postgres::{Options, PostgresStore};

const LENGTH: usize = 10_000;
const ROUNDS: usize = 2_000;

/// The `per_mille`/1000 quantile of sorted durations.
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    let index = sorted.len().saturating_sub(1) * per_mille / 1000;
    sorted.get(index).copied().unwrap_or_default()
}

async fn measure(name: &str, store: &dyn ThreadStore) {
    let mut t = thread("thread_bench");
    for i in 0..LENGTH {
        t.messages.push(user(
            &format!("msg_seed{i}"),
            "a message of ordinary length, some forty chars",
        ));
    }
    store
        .insert_thread(&t)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (mut appends, mut pages) = (Vec::new(), Vec::new());
    let query = MessageQuery::default();
    for i in 0..ROUNDS {
        let started = Instant::now();
        store
            .add_user_message("thread_bench", &user(&format!("msg_b{i}"), "and one more"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        appends.push(started.elapsed());
        let started = Instant::now();
        let page = store
            .messages("thread_bench", &query)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        pages.push(started.elapsed());
        assert_eq!(page.messages.len(), 20);
    }
    appends.sort();
    pages.sort();
    println!(
        "{name:<22} append p50 {:>9.3?} p99 {:>9.3?} | page of 20 p50 {:>9.3?} p99 {:>9.3?}",
        percentile(&appends, 500),
        percentile(&appends, 990),
        percentile(&pages, 500),
        percentile(&pages, 990),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("a thread of {LENGTH} messages; {ROUNDS} rounds of append + newest page of 20");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sqlite = SqliteStore::open(dir.path().join("threads.db")).unwrap_or_else(|e| panic!("{e}"));
    measure("SQLite (file, WAL)", &sqlite).await;
    let Ok(url) = std::env::var(clarion_store_postgres::testing::URL_VAR) else {
        eprintln!("skipped PostgreSQL: set CLARION_TEST_POSTGRES (scripts/postgres.sh start)");
        return;
    };
    let postgres = PostgresStore::connect_with(
        &url,
        Options {
            schema: Some(fresh_schema()),
            ..Options::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    measure("PostgreSQL (loopback)", &postgres).await;
}
