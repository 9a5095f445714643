//! The `ThreadStore` contract (`clarion_engine::contract`) against a real
//! PostgreSQL — the same suite the memory and SQLite stores pass — each test in a schema of
//! its own, so they run in parallel. Then what only a shared server has: migrations racing
//! from two replicas, racing run creates, leases and their takeover, and connection errors
//! that say what happened without the password.
//!
//! The server comes from `CLARION_TEST_POSTGRES` (`eval "$(bash scripts/postgres.sh
//! start)"`); without it each test prints "skipped: why", except under `CI=true`, where it
//! fails.

use std::time::Duration;

use clarion_engine::contract::{run, thread};
use clarion_engine::{StoreError, ThreadStore};
use clarion_store_postgres::testing::{fresh_schema, server_url};
use clarion_store_postgres::{ConnectError, Options, PostgresStore};

/// A store in a fresh schema of the test server, or `None` (skipped).
async fn store(test: &str, lease: Duration) -> Option<PostgresStore> {
    let url = server_url(test)?;
    let options = Options {
        lease,
        schema: Some(fresh_schema()),
        max_connections: 4,
    };
    Some(
        PostgresStore::connect_with(&url, options)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

mod postgres {
    clarion_engine::store_contract!(super::store("contract", std::time::Duration::from_secs(10)));
}

/// A second handle on the same schema: another replica.
async fn replica(test: &str, schema: &str, lease: Duration) -> PostgresStore {
    let url = server_url(test).unwrap_or_default();
    PostgresStore::connect_with(
        &url,
        Options {
            lease,
            schema: Some(schema.to_owned()),
            max_connections: 4,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_agree_on_the_schema() {
    let Some(url) = server_url("replicas_starting_at_once_agree_on_the_schema") else {
        return;
    };
    let schema = fresh_schema();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::spawn(async move {
                PostgresStore::connect_with(
                    &url,
                    Options {
                        schema: Some(schema),
                        max_connections: 2,
                        ..Options::default()
                    },
                )
                .await
            })
        })
        .collect();
    let mut stores = Vec::new();
    for handle in handles {
        let store = handle
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("a replica failed to start: {e}"));
        stores.push(store);
    }
    // Every replica sees what another wrote.
    stores[0]
        .insert_thread(&thread("thread_m"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for store in &stores {
        assert_eq!(
            store.thread_header("thread_m").await.map(|h| h.id),
            Ok("thread_m".to_owned())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_run_creates_on_two_replicas_let_exactly_one_win() {
    let test = "racing_run_creates_on_two_replicas_let_exactly_one_win";
    let Some(a) = store(test, Duration::from_secs(10)).await else {
        return;
    };
    let schema = a_schema(&a);
    let b = replica(test, &schema, Duration::from_secs(10)).await;
    for round in 0..20 {
        let id = format!("thread_r{round}");
        a.insert_thread(&thread(&id))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (ra, rb) = (
            run(&format!("run_a{round}"), &id),
            run(&format!("run_b{round}"), &id),
        );
        let (x, y) = tokio::join!(a.begin_run(&ra), b.begin_run(&rb));
        let won = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {x:?} {y:?}");
        let lost = if x.is_ok() { y } else { x };
        assert!(matches!(lost, Err(StoreError::Locked { .. })), "{lost:?}");
    }
}

/// The schema a store was opened on (its owner string does not say; ask the server).
fn a_schema(store: &PostgresStore) -> String {
    store.schema().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_exclusive_until_it_expires_and_fences_the_old_holder() {
    let test = "a_lease_is_exclusive_until_it_expires_and_fences_the_old_holder";
    let lease = Duration::from_secs(3);
    let Some(first) = store(test, lease).await else {
        return;
    };
    let second = replica(test, &a_schema(&first), lease).await;
    clarion_engine::contract::leases_are_exclusive_until_they_expire_and_fence_the_old_holder(
        &first, &second, lease,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_say_what_happened_without_the_password() {
    let Some(url) = server_url("connection_errors_say_what_happened_without_the_password") else {
        return;
    };
    let error = |result: Result<PostgresStore, ConnectError>| match result {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    };
    // A wrong password.
    let config: tokio_postgres::Config = url.parse().unwrap_or_else(|e| panic!("{e}"));
    let user = config.get_user().unwrap_or("postgres").to_owned();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let wrong = format!("postgres://{user}:not-the-password-42@{host}:{port}/postgres");
    let e = error(PostgresStore::connect(&wrong).await);
    assert!(matches!(e, ConnectError::AuthFailed { .. }), "{e:?}");
    let shown = e.to_string();
    assert!(shown.contains("refused user"), "{shown}");
    assert!(!shown.contains("not-the-password-42"), "{shown}");
    // Nothing listening.
    let closed = format!("postgres://{user}:secret-xyz@127.0.0.1:1/postgres");
    let e = error(PostgresStore::connect(&closed).await);
    assert!(matches!(e, ConnectError::Refused { .. }), "{e:?}");
    assert!(e.to_string().contains("connection refused"), "{e}");
    assert!(!e.to_string().contains("secret-xyz"), "{e}");
    // Not a URL.
    let e = error(PostgresStore::connect("postgres://ada:secret-xyz@host:notaport/db").await);
    assert!(matches!(e, ConnectError::BadUrl { .. }), "{e:?}");
    assert!(!e.to_string().contains("secret-xyz"), "{e}");
    assert!(e.to_string().contains("ada:***@"), "{e}");
    // No such database.
    let Some(password) = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
    else {
        return;
    };
    let missing = format!("postgres://{user}:{password}@{host}:{port}/no_such_db_here");
    let e = error(PostgresStore::connect(&missing).await);
    assert!(matches!(e, ConnectError::NoDatabase { .. }), "{e:?}");
    assert!(!e.to_string().contains(&password), "{e}");
}
