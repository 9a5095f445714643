//! The `ThreadStore` contract (`clarion_engine::contract`), run against the memory
//! store, SQLite in memory and SQLite in a file — the Postgres store runs the same suite in
//! its own crate. A store that passes it behaves the same under the engine. SQLite-only behaviour (corrupt files, schema versions, reopening, two
//! connections on one file) follows, and an ignored measurement of load time.

use std::path::{Path, PathBuf};

use clarion_engine::MessageKind;
use clarion_engine::contract::{
    backend, begin, busy_run, commit, load, message, run, thread, turn, user,
};
use clarion_engine::{MessageQuery, StoreError, ThreadStore};
use clarion_store::SqliteStore;
use clarion_store::sqlite::{DEFAULT_PATH, SCHEMA_VERSION};
use serde_json::json;
use tempfile::TempDir;

mod memory_store {
    clarion_engine::store_contract!(async { Some(clarion_engine::MemoryStore::new()) });
}

mod sqlite_in_memory {
    clarion_engine::store_contract!(async { Some(super::sqlite_memory()) });
}

mod sqlite_file {
    /// A store in a file, and the directory that holds it.
    struct InFile {
        _dir: tempfile::TempDir,
        store: clarion_store::SqliteStore,
    }

    impl clarion_engine::contract::Fixture for InFile {
        fn store(&self) -> &dyn clarion_engine::ThreadStore {
            &self.store
        }
    }

    clarion_engine::store_contract!(async {
        let (dir, store) = super::sqlite_file();
        Some(InFile { _dir: dir, store })
    });
}

/// A file store running its queries in place (`clarion chat`), on a current-thread runtime
/// where it does so.
mod sqlite_file_in_place {
    struct InFile {
        _dir: tempfile::TempDir,
        store: clarion_store::SqliteStore,
    }

    impl clarion_engine::contract::Fixture for InFile {
        fn store(&self) -> &dyn clarion_engine::ThreadStore {
            &self.store
        }
    }

    clarion_engine::store_contract!(current_thread; async {
        let (dir, store) = super::sqlite_file();
        Some(InFile { _dir: dir, store: store.in_place() })
    });
}

// ---- SQLite only --------------------------------------------------------------------------

fn sqlite_memory() -> SqliteStore {
    SqliteStore::open_in_memory().unwrap_or_else(|e| panic!("{e}"))
}

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("nested/dirs/threads.db")
}

fn sqlite_file() -> (TempDir, SqliteStore) {
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let store = SqliteStore::open(db_path(&dir)).unwrap_or_else(|e| panic!("{e}"));
    (dir, store)
}

/// A raw connection to the file, for what a store never does on its own.
fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_default_path_and_schema_version() {
    assert_eq!(DEFAULT_PATH, ".clarion/threads.db");
    let (dir, _store) = sqlite_file();
    let conn = raw(&db_path(&dir));
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mode, "wal", "the journal mode persists in the file");
}

#[tokio::test]
async fn reopening_a_file_keeps_everything() {
    let (dir, store) = sqlite_file();
    store
        .insert_thread(&thread("thread_k"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .add_user_message("thread_k", &user("msg_u", "hi"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut t = begin(&store, &run("run_k", "thread_k")).await;
    let mark = t.messages.len();
    t.messages.extend(turn("run_k"));
    t.slots.insert("goal_amount".to_owned(), json!(1));
    let r = busy_run("run_k", "thread_k");
    commit(&store, &t, mark, Some(&r)).await;
    drop(store);

    let store = SqliteStore::open(db_path(&dir)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(load(&store, "thread_k").await, t);
    assert_eq!(store.run("run_k").await, Ok(r.clone()));
    assert_eq!(store.runs("thread_k").await, Ok(vec![r]));
    assert_eq!(store.thread_headers(10).await, Ok(vec![t.header()]));
    assert_eq!(
        store.begin_run(&run("run_2", "thread_k")).await,
        Err(StoreError::Locked {
            thread_id: "thread_k".to_owned(),
            run_id: "run_k".to_owned(),
        }),
        "the lock survives a reopen"
    );
}

#[tokio::test]
async fn corrupt_json_is_an_error_naming_the_row_not_a_panic() {
    let (dir, store) = sqlite_file();
    store
        .insert_thread(&thread("thread_j"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .add_user_message("thread_j", &user("msg_u", "hi"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    begin(&store, &run("run_j", "thread_j")).await;
    let conn = raw(&db_path(&dir));
    let exec = |sql: &str| {
        conn.execute(sql, [])
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    };

    exec("UPDATE messages SET body = '{\"kind\": \"user\"' WHERE id = 'msg_u'");
    let message = backend(store.thread("thread_j").await);
    assert!(
        message.contains("message `msg_u`") && message.contains("thread `thread_j`"),
        "{message}"
    );
    exec("UPDATE messages SET body = '{\"kind\": \"telepathy\"}' WHERE id = 'msg_u'");
    assert!(backend(store.thread("thread_j").await).contains("msg_u"));
    exec(r#"UPDATE messages SET body = '{"kind": "user", "text": "hi"}' WHERE id = 'msg_u'"#);
    assert_eq!(load(&store, "thread_j").await.messages.len(), 1, "repaired");

    exec("UPDATE threads SET slots = 'not json' WHERE id = 'thread_j'");
    let message = backend(store.thread("thread_j").await);
    assert!(message.contains("slots of thread `thread_j`"), "{message}");
    exec("UPDATE threads SET slots = '[1, 2]' WHERE id = 'thread_j'");
    backend(store.thread("thread_j").await);

    exec("UPDATE runs SET body = '{}' WHERE id = 'run_j'");
    let message = backend(store.run("run_j").await);
    assert!(message.contains("run `run_j`"), "{message}");
    backend(store.runs("thread_j").await);

    exec("UPDATE runs SET status = 'dancing' WHERE id = 'run_j'");
    let message = backend(
        store
            .add_user_message("thread_j", &user("msg_2", "x"))
            .await,
    );
    assert!(message.contains("unknown status `dancing`"), "{message}");
}

#[tokio::test]
async fn a_file_from_a_newer_clarion_is_refused_clearly() {
    let (dir, store) = sqlite_file();
    drop(store);
    raw(&db_path(&dir))
        .pragma_update(None, "user_version", 999)
        .unwrap_or_else(|e| panic!("{e}"));
    let message = backend(SqliteStore::open(db_path(&dir)));
    assert!(
        message.contains("created by a newer Clarion")
            && message.contains("schema version 999")
            && message.contains("threads.db"),
        "{message}"
    );
}

#[tokio::test]
async fn files_that_are_not_clarion_stores_are_refused() {
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap_or_else(|e| panic!("{e}"));
    let message = backend(SqliteStore::open(&garbage));
    assert!(message.contains("garbage.db"), "{message}");

    let foreign = dir.path().join("foreign.db");
    raw(&foreign)
        .execute_batch("CREATE TABLE notes (body TEXT);")
        .unwrap_or_else(|e| panic!("{e}"));
    let message = backend(SqliteStore::open(&foreign));
    assert!(message.contains("another application"), "{message}");
    let tables: i64 = raw(&foreign)
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tables, 1, "the foreign file is left alone");

    let other_app = dir.path().join("other-app.db");
    raw(&other_app)
        .pragma_update(None, "application_id", 42)
        .unwrap_or_else(|e| panic!("{e}"));
    let message = backend(SqliteStore::open(&other_app));
    assert!(message.contains("not a Clarion thread store"), "{message}");
}

#[tokio::test]
async fn two_connections_on_one_file_cannot_both_lock_a_thread() {
    let (dir, first) = sqlite_file();
    first
        .insert_thread(&thread("thread_t"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Many connections (as many processes would) race to lock the same thread.
    let runtime = tokio::runtime::Handle::current();
    let winners: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = db_path(&dir);
                let runtime = runtime.clone();
                scope.spawn(move || {
                    let store = SqliteStore::open(path).unwrap_or_else(|e| panic!("{e}"));
                    let r = run(&format!("run_{i}"), "thread_t");
                    match runtime.block_on(store.begin_run(&r)) {
                        Ok(()) => Some(r.id),
                        Err(StoreError::Locked { .. }) => None,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|_| panic!("a racer panicked")))
            .collect()
    });
    assert_eq!(
        winners.len(),
        1,
        "exactly one run locks the thread: {winners:?}"
    );
    assert_eq!(
        load(&first, "thread_t").await.active_run.as_ref(),
        winners.first()
    );
    assert_eq!(
        first
            .add_user_message("thread_t", &user("msg_x", "x"))
            .await,
        Err(StoreError::Locked {
            thread_id: "thread_t".to_owned(),
            run_id: winners[0].clone(),
        })
    );
}

#[tokio::test]
async fn concurrent_migrations_of_a_new_file_agree() {
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("threads.db");
    std::thread::scope(|scope| {
        for _ in 0..6 {
            let path = path.clone();
            scope.spawn(move || {
                SqliteStore::open(path).unwrap_or_else(|e| panic!("{e}"));
            });
        }
    });
    let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    store
        .insert_thread(&thread("thread_m"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Loads one 20-message thread among 10,000 (200,000 messages). Run with
/// `cargo test --release -p clarion-engine --test store_contract -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check; takes a few seconds"]
#[allow(clippy::print_stderr, clippy::cast_precision_loss)]
async fn load_time_of_one_thread_among_ten_thousand() {
    let (_dir, store) = sqlite_file();
    let started = std::time::Instant::now();
    for i in 0..10_000 {
        let mut t = thread(&format!("thread_{i:05}"));
        for j in 0..20 {
            let text = format!("message {j} of thread {i}: {}", "lorem ipsum ".repeat(8));
            t.messages.push(if j % 2 == 0 {
                user(&format!("msg_{i}_{j}"), &text)
            } else {
                message(
                    &format!("msg_{i}_{j}"),
                    Some("run_x"),
                    MessageKind::Assistant { text },
                )
            });
        }
        store
            .insert_thread(&t)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!("filled 10,000 threads in {:?}", started.elapsed());
    let rounds = 2_000_u32;
    let mut times = Vec::new();
    for round in 0..rounds {
        let id = format!("thread_{:05}", (round * 7_919) % 10_000);
        let started = std::time::Instant::now();
        let t = load(&store, &id).await;
        times.push(started.elapsed());
        assert_eq!(t.messages.len(), 20);
    }
    times.sort();
    let median = times[times.len() / 2];
    let p99 = times[times.len() * 99 / 100];
    eprintln!(
        "load one 20-message thread: median {median:?}, p99 {p99:?}, mean {:?}",
        times.iter().sum::<std::time::Duration>() / rounds
    );

    // What crash recovery reads at every `clarion chat` start: the locked threads, by
    // query, against loading every thread as it used to.
    let started = std::time::Instant::now();
    let locked = store
        .locked_thread_ids()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let query = started.elapsed();
    let started = std::time::Instant::now();
    let mut scanned = Vec::new();
    for header in store
        .thread_headers(usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    {
        if load(&store, &header.id).await.active_run.is_some() {
            scanned.push(header.id);
        }
    }
    let scan = started.elapsed();
    eprintln!("locked threads among 10,000: query {query:?}, loading every thread {scan:?}");
    assert_eq!(locked, scanned);
}

#[tokio::test]
async fn a_sqlite_store_knows_whether_another_handle_has_the_file_open() {
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("threads.db");
    let first = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(first.sole_user(), "alone");
    assert!(
        first.sole_user(),
        "asking keeps the shared lock: still alone"
    );
    // Another handle locks the sidecar like another process would (flock is per open file).
    let second = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!first.sole_user());
    assert!(!second.sole_user());
    drop(second);
    assert!(first.sole_user(), "the other handle is gone");
    assert!(
        SqliteStore::open_in_memory()
            .unwrap_or_else(|e| panic!("{e}"))
            .sole_user(),
        "an in-memory store is private to its process"
    );
}

/// A file written by the first schema (before threads counted their messages) opens with
/// its counts, last activity and shown flags filled in from the rows it has.
#[tokio::test]
async fn a_version_1_file_is_migrated_with_its_counts_filled_in() {
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("old.db");
    let conn = raw(&path);
    conn.execute_batch(
        "PRAGMA application_id = 1131176306;
         CREATE TABLE threads (pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, flow TEXT NOT NULL,
             created_at INTEGER NOT NULL, slots TEXT NOT NULL, metadata TEXT NOT NULL, pending TEXT,
             active_run TEXT) STRICT;
         CREATE TABLE messages (pos INTEGER PRIMARY KEY,
             thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
             seq INTEGER NOT NULL, id TEXT NOT NULL, run_id TEXT, created_at INTEGER NOT NULL,
             kind TEXT NOT NULL, body TEXT NOT NULL, UNIQUE (thread_id, seq)) STRICT;
         CREATE TABLE runs (pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
             thread_id TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
             status TEXT NOT NULL, created_at INTEGER NOT NULL, body TEXT NOT NULL) STRICT;
         CREATE INDEX runs_by_thread ON runs (thread_id);
         INSERT INTO threads VALUES (1, 'thread_old', 'f', 1000, '{}', '{}', NULL, NULL);
         INSERT INTO messages VALUES (1, 'thread_old', 0, 'msg_1', NULL, 1500, 'user',
             '{\"kind\":\"user\",\"text\":\"hi\"}');
         INSERT INTO messages VALUES (2, 'thread_old', 1, 'msg_2', 'run_1', 1600, 'tool_calls',
             '{\"kind\":\"tool_calls\",\"text\":null,\"calls\":[]}');
         INSERT INTO messages VALUES (3, 'thread_old', 2, 'msg_3', 'run_1', 1700, 'assistant',
             '{\"kind\":\"assistant\",\"text\":\"ok\"}');
         PRAGMA user_version = 1;",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    drop(conn);
    let store = SqliteStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let header = store
        .thread_header("thread_old")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((header.message_count, header.last_activity), (3, 1700));
    let shown = store
        .messages(
            "thread_old",
            &MessageQuery {
                shown_only: true,
                ..MessageQuery::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = shown.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["msg_3", "msg_1"], "a call without text is not shown");
    assert_eq!(load(&store, "thread_old").await.messages.len(), 3);
}

/// Two handles on one file lease runs as two processes would (the contract's lease check,
/// as PostgreSQL's replicas pass it); then a handle alone on the file takes a gone
/// holder's runs at once, and a store in memory leases nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_exclusive_until_it_expires_and_fences_the_old_holder() {
    use std::time::Duration;
    let dir = TempDir::new().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("threads.db");
    let lease = Duration::from_millis(600);
    let first = SqliteStore::open_with_lease(&path, lease).unwrap_or_else(|e| panic!("{e}"));
    let second = SqliteStore::open_with_lease(&path, lease).unwrap_or_else(|e| panic!("{e}"));
    clarion_engine::contract::leases_are_exclusive_until_they_expire_and_fence_the_old_holder(
        &first, &second, lease,
    )
    .await;
    // The second takes the run again, and its process dies holding a live lease: a handle
    // alone on the file takes the run over at once, without waiting for the lease.
    first
        .release_run("run_l")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.claim_run("run_l").await, Ok(true));
    assert_eq!(
        first.claim_run("run_l").await,
        Ok(false),
        "the second is alive"
    );
    drop(second);
    assert!(first.sole_user());
    assert_eq!(first.orphaned_runs(10).await, Ok(vec!["run_l".to_owned()]));
    assert_eq!(first.claim_run("run_l").await, Ok(true));
    first
        .release_run("run_l")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // In memory nothing is leased.
    let memory = sqlite_memory();
    assert_eq!(memory.lease_duration(), None);
    assert_eq!(memory.orphaned_runs(10).await, Ok(Vec::new()));
}
