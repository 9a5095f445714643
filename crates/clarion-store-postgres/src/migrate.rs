//! The schema and its versions: an ordered list of SQL scripts applied at start-up, safe
//! when several replicas start at once.
//!
//! `clarion_migrations` records the versions applied. `migrate` opens one transaction,
//! takes a transaction-scoped advisory lock named after the schema, reads the version and
//! applies the missing scripts, all before committing: PostgreSQL's DDL is transactional,
//! so a replica killed mid-migration leaves nothing half-applied, and a second replica
//! starting at the same moment waits on the lock and then finds the work done. Never edit a
//! migration that has shipped; append a new one.

use tokio_postgres::Client;

use clarion_engine::StoreError;

/// Migrations in order: `MIGRATIONS[n]` takes a schema from version `n` to `n + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: threads, their messages (one row each, appended), runs with their leases.
    "
    CREATE TABLE threads (
        pos           BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE, -- newest first by pos
        id            TEXT PRIMARY KEY,
        flow          TEXT NOT NULL,
        created_at    BIGINT NOT NULL,     -- ms since the epoch
        slots         TEXT NOT NULL,       -- JSON object, verbatim
        metadata      TEXT NOT NULL,       -- JSON object of strings
        pending       TEXT,                -- JSON PendingCall, NULL if none
        active_run    TEXT,                -- the run holding the lock, if any
        message_count BIGINT NOT NULL DEFAULT 0,
        last_activity BIGINT
    );

    CREATE TABLE messages (
        thread_id  TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        seq        BIGINT NOT NULL,        -- 0-based position in the thread
        id         TEXT NOT NULL,
        run_id     TEXT,
        created_at BIGINT NOT NULL,
        kind       TEXT NOT NULL,
        body       TEXT NOT NULL,          -- JSON MessageKind (+ metadata), verbatim
        shown      BOOLEAN NOT NULL,
        PRIMARY KEY (thread_id, seq)       -- loads a thread in order, reads a page
    );
    CREATE INDEX messages_by_id ON messages (thread_id, id);
    CREATE INDEX messages_by_run ON messages (run_id) WHERE run_id IS NOT NULL;

    CREATE TABLE runs (
        pos              BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
        id               TEXT PRIMARY KEY,
        thread_id        TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        status           TEXT NOT NULL,
        created_at       BIGINT NOT NULL,
        body             TEXT NOT NULL,    -- JSON Run
        lease_owner      TEXT,             -- the store handle driving it, if any
        lease_until      TIMESTAMPTZ,      -- the database's clock: replicas' clocks may differ
        cancel_requested BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX runs_by_thread ON runs (thread_id, pos);
    -- What takeover scans: unfinished runs, by lease expiry.
    CREATE INDEX runs_unfinished ON runs (lease_until)
        WHERE status IN ('queued', 'in_progress', 'cancelling');
    ",
    // 2: the flows a thread was handed to (`flow = "…"` tools).
    "
    ALTER TABLE threads ADD COLUMN route TEXT;  -- JSON array of handoffs, NULL if none
    ",
    // 3: a run's messages in order from their own index, so a page of them (`run_id=`)
    // reads only that run's rows, and stops at the page's end, in a generic plan too.
    "
    DROP INDEX messages_by_run;
    CREATE INDEX messages_by_run ON messages (run_id, seq) WHERE run_id IS NOT NULL;
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

fn backend(what: &str, e: &tokio_postgres::Error) -> StoreError {
    StoreError::Backend(format!("{what}: {}", crate::store::describe(e)))
}

/// Brings the schema of the connection's `search_path` up to [`SCHEMA_VERSION`], under an
/// advisory lock, in one transaction.
pub(crate) async fn migrate(client: &mut Client, schema: Option<&str>) -> Result<(), StoreError> {
    let migrating = "migrating the Clarion schema";
    if let Some(schema) = schema {
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(schema)
            ))
            .await
            .or_else(|e| {
                // Two replicas creating the schema at once: the loser sees a unique
                // violation on the catalog, and the schema exists.
                if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                    Ok(())
                } else {
                    Err(backend("creating the schema", &e))
                }
            })?;
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| backend(migrating, &e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('clarion-migrations:' || current_schema()))",
        &[],
    )
    .await
    .map_err(|e| backend(migrating, &e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS clarion_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(|e| backend(migrating, &e))?;
    let version: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM clarion_migrations",
            &[],
        )
        .await
        .map_err(|e| backend(migrating, &e))?
        .get(0);
    let version = usize::try_from(version).unwrap_or(0);
    let known = MIGRATIONS.len();
    if version > known {
        return Err(StoreError::Backend(format!(
            "the database was migrated by a newer Clarion (schema version {version}; this \
             build knows versions up to {known}); upgrade Clarion to use it"
        )));
    }
    for (n, script) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(script)
            .await
            .map_err(|e| backend(&format!("applying migration {}", n + 1), &e))?;
        let next = i32::try_from(n + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO clarion_migrations (version) VALUES ($1)",
            &[&next],
        )
        .await
        .map_err(|e| backend(migrating, &e))?;
    }
    tx.commit().await.map_err(|e| backend(migrating, &e))
}

/// A SQL identifier, quoted.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
