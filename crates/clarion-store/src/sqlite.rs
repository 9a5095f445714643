//! The SQLite store: the embedded default, one file shared by every process that runs
//! flows on this machine (the CLI, a server, a test harness).
//!
//! Why SQLite, and why this shape:
//!
//! - **One transaction per write.** Every [`ThreadStore`] write is one SQLite transaction,
//!   so a step lands whole or not at all, even if the process is killed mid-write. Writes
//!   start `BEGIN IMMEDIATE`: the write lock is taken *before* the lock check reads the
//!   thread, so two processes can never both see a thread unlocked and both lock it (a
//!   deferred transaction would read first and fail to upgrade, or race).
//! - **Messages are rows, appended.** A step inserts only the messages it appended
//!   (`seq` continuing from the stored count); nothing already stored is rewritten, so a
//!   commit costs what the step added, not the thread's length. The store refuses a step
//!   whose counts do not add up rather than write a thread with a hole or a duplicate.
//! - **JSON bodies, typed keys.** Rows keep what queries need as columns (ids, `seq`,
//!   `kind`, `status`, times) and the rest as the serde JSON of the engine's types, so a
//!   new optional field needs no migration. A body that does not parse is an error naming
//!   the thread or run, never a panic.
//! - **Durability.** WAL journal with `synchronous = NORMAL`: a killed process loses
//!   nothing that was committed (the WAL is in the OS's hands), and a power cut can lose at
//!   most the last commits — never corrupt the file — which looks exactly like a crash in
//!   the middle of a step and is what [`clarion_engine::Engine::recover`] handles. `FULL` would
//!   add an fsync to every step for no state the engine cannot already recover from.
//! - **Two processes wait, not fail.** A busy timeout ([`BUSY_TIMEOUT`]) makes a writer
//!   wait for another process's transaction (they last milliseconds) instead of failing
//!   with "database is locked".
//! - **Processes say they are there.** Each open store holds a shared lock on a sidecar
//!   file (`threads.db-lock`) for its lifetime. Crash recovery must not touch another live
//!   process's runs (`clarion chat` started beside `clarion serve` would otherwise fail the
//!   server's runs in flight), and the store cannot tell whose a run is; so
//!   [`sole_user`](ThreadStore::sole_user) asks whether this handle could take that lock
//!   exclusively, and recovery only runs when it could.
//! - **Runs are leased.** A store opened on a file leases runs as the PostgreSQL store
//!   does ([`DEFAULT_LEASE`], [`SqliteStore::open_with_lease`]): the process driving a run
//!   holds its lease (`runs.lease_owner`, `runs.lease_until`) and renews it; a step of a run
//!   whose live lease another process holds is refused. A process killed mid-run leaves its
//!   leases to expire, and another process on the same file takes the runs over
//!   ([`ThreadStore::orphaned_runs`]) — a second `clarion serve` no longer waits for a
//!   process that opens the file alone. A process that *has* the file alone takes over a
//!   dead process's runs at once, without waiting for their leases. Lease times are this
//!   machine's clock: every process sharing a SQLite file runs on it.
//! - **Versioned from day one.** `PRAGMA user_version` is the schema version; [`open`]
//!   applies the missing migrations in order, one transaction each, and refuses a file
//!   written by a newer Clarion instead of guessing at its schema.
//!
//! [`open`]: SqliteStore::open

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::de::DeserializeOwned;

use clarion_engine::BoxFuture;
use clarion_engine::{Handoff, Message, MessageKind, Metadata, PendingCall, Thread};
use clarion_engine::{
    Lease, MessagePage, MessageQuery, Order, Step, StoreError, ThreadHeader, ThreadStore,
};
use clarion_engine::{Run, RunStatus};

/// Where the CLI and the server keep threads unless told otherwise (relative to the
/// working directory).
pub const DEFAULT_PATH: &str = ".clarion/threads.db";

/// How long a write waits for another connection's transaction before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a run's lease lasts unless told otherwise ([`SqliteStore::open_with_lease`]).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// `PRAGMA application_id` of a Clarion store ("Clar"), so a file of another application is
/// recognised and left alone instead of getting Clarion's tables added to it.
const APPLICATION_ID: i64 = 0x436C_6172;

/// Migrations in order: `MIGRATIONS[n]` takes a file from version `n` to `n + 1`. Never edit
/// one that has shipped; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: threads, their messages (one row each, appended) and runs.
    "
    CREATE TABLE threads (
        pos        INTEGER PRIMARY KEY,  -- insertion order: `thread_ids` lists newest first
        id         TEXT NOT NULL UNIQUE,
        flow       TEXT NOT NULL,
        created_at INTEGER NOT NULL,     -- ms since the epoch
        slots      TEXT NOT NULL,        -- JSON object
        metadata   TEXT NOT NULL,        -- JSON object of strings
        pending    TEXT,                 -- JSON PendingCall, NULL if none
        active_run TEXT                  -- the run holding the lock, if any
    ) STRICT;

    CREATE TABLE messages (
        pos        INTEGER PRIMARY KEY,
        thread_id  TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        seq        INTEGER NOT NULL,     -- 0-based position in the thread
        id         TEXT NOT NULL,
        run_id     TEXT,
        created_at INTEGER NOT NULL,
        kind       TEXT NOT NULL,        -- user, assistant, tool_calls, tool_output, ...
        body       TEXT NOT NULL,        -- JSON MessageKind, with its `kind` tag
        -- Also the index that loads a thread's messages in order and serves the cascade.
        UNIQUE (thread_id, seq)
    ) STRICT;

    CREATE TABLE runs (
        pos        INTEGER PRIMARY KEY,  -- insertion order: `runs` lists oldest first
        id         TEXT NOT NULL UNIQUE,
        thread_id  TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
        status     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        body       TEXT NOT NULL         -- JSON Run
    ) STRICT;

    CREATE INDEX runs_by_thread ON runs (thread_id);
    ",
    // 2: what a request needs without reading a thread's messages: their count and last
    // time on the thread row, which messages people read (`shown`), and indexes to find a
    // message by id (cursors) and a run's messages.
    "
    ALTER TABLE threads ADD COLUMN message_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE threads ADD COLUMN last_activity INTEGER;
    ALTER TABLE messages ADD COLUMN shown INTEGER NOT NULL DEFAULT 0;
    UPDATE threads SET
        message_count = (SELECT count(*) FROM messages WHERE thread_id = threads.id),
        last_activity = (SELECT created_at FROM messages WHERE thread_id = threads.id
                         ORDER BY seq DESC LIMIT 1);
    UPDATE messages SET shown = 1
        WHERE kind IN ('user', 'assistant', 'question')
           OR (kind = 'tool_calls' AND trim(coalesce(json_extract(body, '$.text'), '')) <> '');
    CREATE INDEX messages_by_id ON messages (thread_id, id);
    CREATE INDEX messages_by_run ON messages (run_id) WHERE run_id IS NOT NULL;
    ",
    // 3: run leases, so several processes sharing the file can take over each other's runs.
    "
    ALTER TABLE runs ADD COLUMN lease_owner TEXT;          -- the store handle driving it
    ALTER TABLE runs ADD COLUMN lease_until INTEGER;       -- ms since the epoch
    ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    -- What a takeover scan reads: unfinished runs, by lease expiry.
    CREATE INDEX runs_unfinished ON runs (lease_until)
        WHERE status IN ('queued', 'in_progress', 'cancelling');
    ",
    // 4: the flows a thread was handed to (`flow = "…"` tools).
    "
    ALTER TABLE threads ADD COLUMN route TEXT;  -- JSON array of handoffs, NULL if none
    ",
    // 5: a run's messages in order from its own index, so a page of them (`run_id=`) reads
    // only that run's rows, and stops at the page's end.
    "
    DROP INDEX messages_by_run;
    CREATE INDEX messages_by_run ON messages (run_id, seq) WHERE run_id IS NOT NULL;
    ",
];

/// Threads and runs in a SQLite file.
///
/// Every method runs its query on Tokio's blocking pool (`spawn_blocking`) when called on
/// a Tokio runtime, so a slow disk or a long transaction of another process never stalls
/// a runtime worker; elsewhere it runs in place. A handle made with
/// [`SqliteStore::in_place`] also runs in place on a current-thread runtime. Cancel safe:
/// the query runs to its end (one transaction, committed or rolled back) whether or not
/// its future is still there.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Db>,
    /// Run queries in place on a current-thread runtime ([`SqliteStore::in_place`]).
    in_place: bool,
}

/// The connection and the blocking operations on it.
struct Db {
    conn: Mutex<Connection>,
    /// The file, or `None` in memory.
    path: Option<PathBuf>,
    /// The sidecar lock file, locked shared while the store is open; `None` in memory, or
    /// when it cannot be created (then this process never counts as the sole user).
    presence: Option<Mutex<File>>,
    /// This handle's lease owner id (`<pid>:<time>:<n>`).
    owner: String,
    /// How long a run's lease lasts; `None` leases nothing (in memory).
    lease: Option<Duration>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.db.path)
            .finish_non_exhaustive()
    }
}

/// Whether `path` is `:memory:`, SQLite's name for a private in-memory database.
#[must_use]
pub fn is_memory(path: &Path) -> bool {
    path.as_os_str() == ":memory:"
}

/// Adds what was being done to a SQLite error.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Backend(format!("{}: {e}", what())))
    }
}

/// Parses a JSON column; `what` names the thread or run it belongs to.
fn parse<T: DeserializeOwned>(text: &str, what: impl FnOnce() -> String) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| {
        StoreError::Backend(format!(
            "{} is not valid ({e}); the store file may be corrupt",
            what()
        ))
    })
}

fn to_json<T: serde::Serialize>(
    value: &T,
    what: impl FnOnce() -> String,
) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("cannot serialize {}: {e}", what())))
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `kind` column: the serde tag of the message kind.
fn kind_name(kind: &MessageKind) -> &'static str {
    match kind {
        MessageKind::User { .. } => "user",
        MessageKind::Assistant { .. } => "assistant",
        MessageKind::ToolCalls { .. } => "tool_calls",
        MessageKind::ToolOutput { .. } => "tool_output",
        MessageKind::Context { .. } => "context",
        MessageKind::Question { .. } => "question",
    }
}

fn parse_status(text: &str, run_id: &str) -> Result<RunStatus, StoreError> {
    RunStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| {
            StoreError::Backend(format!(
                "run `{run_id}` has an unknown status `{text}`; the store file may be corrupt"
            ))
        })
}

impl SqliteStore {
    /// Opens (or creates) the store at `path`, creating its directory, and brings its
    /// schema up to date. Runs are leased for [`DEFAULT_LEASE`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_lease(path, DEFAULT_LEASE)
    }

    /// [`SqliteStore::open`], with runs leased for `lease`: a process killed mid-run has
    /// its runs taken over by another process on the file about this long after.
    /// `Duration::ZERO` leases nothing, for a file only one process ever opens: each run
    /// then costs two writes fewer, and a crash is recovered at the next start alone.
    ///
    /// The path `:memory:` (SQLite's own name for it) is a private in-memory store, as
    /// [`SqliteStore::open_in_memory`]: no file, nothing kept after the handle is gone.
    pub fn open_with_lease(path: impl AsRef<Path>, lease: Duration) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if is_memory(path) {
            return Self::open_in_memory();
        }
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!(
                    "cannot create the directory `{}` for the thread store: {e}",
                    dir.display()
                ))
            })?;
        }
        let shown = path.display().to_string();
        let conn = Connection::open(path).context(|| format!("opening `{shown}`"))?;
        let mut db = Db::setup(conn, Some(path.to_path_buf()))?;
        db.presence = presence(path).map(Mutex::new);
        db.lease = (!lease.is_zero()).then(|| lease.max(Duration::from_millis(30)));
        Ok(Self {
            db: Arc::new(db),
            in_place: false,
        })
    }

    /// A private in-memory store: for tests, and for conversations nobody needs to resume.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().context(|| "opening an in-memory store".into())?;
        Ok(Self {
            db: Arc::new(Db::setup(conn, None)?),
            in_place: false,
        })
    }

    /// The file, or `None` for an in-memory store.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.db.path.as_deref()
    }

    /// This handle, running its queries on the calling thread when that thread runs a
    /// current-thread Tokio runtime, instead of handing each one to the blocking pool and
    /// back: for a process driving one conversation (`clarion chat`), where that hop costs
    /// more than most queries and there is no other task a query could stall for long
    /// (a query waits at most [`BUSY_TIMEOUT`] for another process's transaction). On a
    /// multi-thread runtime (a server) queries still go to the blocking pool, so a slow
    /// store never stalls a worker. Still cancel safe: a query runs whole within one poll.
    #[must_use]
    pub fn in_place(mut self) -> Self {
        self.in_place = true;
        self
    }

    /// Runs `operation` on the blocking pool, or in place: off a Tokio runtime, or on a
    /// current-thread one for an [`in_place`](SqliteStore::in_place) handle.
    fn blocking<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let db = Arc::clone(&self.db);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if self.in_place
                    && runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread =>
            {
                // On the first poll, whole: no await point, so nothing half-done to drop.
                Box::pin(async move { operation(&db) })
            }
            Ok(runtime) => Box::pin(async move {
                runtime
                    .spawn_blocking(move || operation(&db))
                    .await
                    .map_err(|e| StoreError::Backend(format!("the store's worker stopped: {e}")))?
            }),
            Err(_) => Box::pin(std::future::ready(operation(&db))),
        }
    }
}

impl Db {
    fn setup(mut conn: Connection, path: Option<PathBuf>) -> Result<Self, StoreError> {
        let name = path.as_ref().map_or_else(
            || "the in-memory store".to_owned(),
            |p| format!("`{}`", p.display()),
        );
        let opening = || format!("opening {name}");
        conn.busy_timeout(BUSY_TIMEOUT).context(opening)?;
        // The first statement that reads the file, so also where "not a database" shows.
        // It answers with the mode in force: "memory" in memory, and a file system that
        // cannot do WAL keeps a rollback journal, slower for concurrent readers but just as
        // atomic, so the answer is not an error.
        retry_busy(|| {
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        })
        .context(opening)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context(opening)?;
        conn.pragma_update(None, "foreign_keys", true)
            .context(opening)?;
        migrate(&mut conn, &name)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
            presence: None,
            owner: owner_id(),
            lease: None,
        })
    }

    /// The connection. A panic while it was held cannot leave a transaction open (a
    /// dropped [`Tx`] rolls back), so a poisoned lock is safe to take over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A transaction whose `BEGIN`, `COMMIT` and `ROLLBACK` are cached statements: rusqlite's
/// `Transaction` parses each anew (`execute_batch`), a measurable share of a chat turn's
/// four short transactions. Dropped without [`commit`](Tx::commit), it rolls back.
struct Tx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Tx<'c> {
    /// `BEGIN IMMEDIATE`: the write lock is taken before anything is read.
    fn write(conn: &'c Connection) -> rusqlite::Result<Self> {
        Self::begin(conn, "BEGIN IMMEDIATE")
    }

    /// `BEGIN`: one snapshot for several reads.
    fn read(conn: &'c Connection) -> rusqlite::Result<Self> {
        Self::begin(conn, "BEGIN")
    }

    fn begin(conn: &'c Connection, sql: &str) -> rusqlite::Result<Self> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(Self { conn, open: true })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        // A failed `COMMIT` (busy) leaves the transaction open too; `is_autocommit` says
        // whether SQLite already ended it (an error that rolls back by itself).
        if self.open && !self.conn.is_autocommit() {
            let _ = self
                .conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut stmt| stmt.execute([]));
        }
    }
}

/// A lease owner id unique to this handle: the process id, the time it opened, a counter.
fn owner_id() -> String {
    static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}:{nanos:x}:{n}", std::process::id())
}

/// Now, in ms since the epoch (the unit of `lease_until`).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// When a lease taken now ends, in ms since the epoch.
fn lease_end(lease: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

/// Runs `attempt` again while SQLite answers "busy" without waiting itself, for up to
/// [`BUSY_TIMEOUT`]. Switching a new file to WAL needs its exclusive lock, and when two
/// processes open a new store at once SQLite reports the conflict at once instead of
/// calling the busy handler (waiting could deadlock), so the loser retries here.
fn retry_busy<T>(mut attempt: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match attempt() {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Opens `<store>-lock` and locks it shared, for as long as the store is open.
fn presence(path: &Path) -> Option<File> {
    let mut name = path.as_os_str().to_owned();
    name.push("-lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(name)
        .ok()?;
    file.lock_shared().ok()?;
    Some(file)
}

/// Brings the schema to [`SCHEMA_VERSION`], one transaction per migration, re-reading the
/// version inside each (another process may be migrating the same file right now).
fn migrate(conn: &mut Connection, name: &str) -> Result<(), StoreError> {
    let known = MIGRATIONS.len();
    let reading = || format!("reading the schema version of {name}");
    loop {
        let version = check_version(conn, name)?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > known {
            return Err(StoreError::Backend(format!(
                "{name} was created by a newer Clarion (schema version {version}; this build \
                 knows versions up to {known}); upgrade Clarion to open it"
            )));
        }
        if version == known {
            return Ok(());
        }
        let migrating = || format!("migrating {name} from schema version {version}");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(migrating)?;
        if check_version(&tx, name)? != to_i64(version) {
            continue; // another process migrated it meanwhile: look again
        }
        if version == 0 {
            let tables: i64 = tx
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
                    [],
                    |row| row.get(0),
                )
                .context(reading)?;
            if tables > 0 {
                return Err(StoreError::Backend(format!(
                    "{name} is a SQLite database of another application (it has tables but \
                     no Clarion schema); choose another file for the thread store"
                )));
            }
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .context(migrating)?;
        }
        tx.execute_batch(MIGRATIONS[version]).context(migrating)?;
        tx.pragma_update(None, "user_version", to_i64(version + 1))
            .context(migrating)?;
        tx.commit().context(migrating)?;
    }
}

/// The file's schema version, after checking that it is a Clarion store (or empty).
fn check_version(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    let reading = || format!("reading the schema version of {name}");
    let application: i64 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .context(reading)?;
    if application != 0 && application != APPLICATION_ID {
        return Err(StoreError::Backend(format!(
            "{name} is not a Clarion thread store (it belongs to another application, id \
             {application:#x}); choose another file for the thread store"
        )));
    }
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .context(reading)
}

// ---- rows ---------------------------------------------------------------------------------

/// A thread's row, without its messages.
fn load_header(conn: &Connection, id: &str) -> Result<ThreadHeader, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT flow, created_at, slots, metadata, pending, active_run, message_count,
                    last_activity, route
             FROM threads WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, Option<String>>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, Option<i64>>(7)?,
                    row.get::<_, Option<String>>(8)?,
                ))
            })
            .optional()
        })
        .context(|| format!("loading thread `{id}`"))?;
    let Some((flow, created_at, slots, metadata, pending, active_run, count, last, route)) = row
    else {
        return Err(StoreError::ThreadNotFound(id.to_owned()));
    };
    header(
        id,
        flow,
        created_at,
        (slots, metadata, pending, route),
        active_run,
        count,
        last,
    )
}

fn header(
    id: &str,
    flow: String,
    created_at: i64,
    (slots, metadata, pending, route): Columns,
    active_run: Option<String>,
    message_count: i64,
    last_activity: Option<i64>,
) -> Result<ThreadHeader, StoreError> {
    let route: Vec<Handoff> = match route {
        Some(text) => parse(&text, || format!("the route of thread `{id}`"))?,
        None => Vec::new(),
    };
    let pending: Option<PendingCall> = match pending {
        Some(text) => Some(parse(&text, || {
            format!("the pending call of thread `{id}`")
        })?),
        None => None,
    };
    Ok(ThreadHeader {
        id: id.to_owned(),
        flow,
        created_at,
        slots: parse(&slots, || format!("the slots of thread `{id}`"))?,
        metadata: parse(&metadata, || format!("the metadata of thread `{id}`"))?,
        pending,
        active_run,
        route,
        message_count: usize::try_from(message_count).unwrap_or_default(),
        last_activity: last_activity.unwrap_or(created_at),
    })
}

/// The thread with its messages (call inside a transaction, so the row and the messages
/// are one snapshot).
fn load_thread(conn: &Connection, id: &str) -> Result<Thread, StoreError> {
    let (header, messages) = load_since(conn, id, 0)?;
    Ok(Thread {
        id: header.id,
        flow: header.flow,
        created_at: header.created_at,
        messages,
        slots: header.slots,
        metadata: header.metadata,
        pending: header.pending,
        active_run: header.active_run,
        route: header.route,
    })
}

/// The thread's header and its messages from position `from` on (inside a transaction,
/// as [`load_thread`]).
fn load_since(
    conn: &Connection,
    id: &str,
    from: usize,
) -> Result<(ThreadHeader, Vec<Message>), StoreError> {
    let header = load_header(conn, id)?;
    let messages = load_messages(conn, id, from)?;
    if from.max(header.message_count) != from + messages.len() {
        return Err(StoreError::Backend(format!(
            "thread `{id}` counts {} messages but holds {}; the store file may be corrupt",
            header.message_count,
            from.min(header.message_count) + messages.len()
        )));
    }
    Ok((header, messages))
}

/// One message row as stored.
fn message_row(
    thread_id: &str,
    (seq, id, run_id, created_at, body): (i64, String, Option<String>, i64, String),
) -> Result<Message, StoreError> {
    let BodyIn { kind, metadata } = parse(&body, || {
        format!("message `{id}` (#{seq}) of thread `{thread_id}`")
    })?;
    Ok(Message {
        id,
        run_id,
        created_at,
        kind,
        metadata,
    })
}

type MessageColumns = (i64, String, Option<String>, i64, String);

fn message_columns(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageColumns> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

/// The thread's messages from position `from` on, in order.
fn load_messages(
    conn: &Connection,
    thread_id: &str,
    from: usize,
) -> Result<Vec<Message>, StoreError> {
    let loading = || format!("loading the messages of thread `{thread_id}`");
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, id, run_id, created_at, body FROM messages
             WHERE thread_id = ?1 AND seq >= ?2 ORDER BY seq",
        )
        .context(loading)?;
    let rows = stmt
        .query_map(params![thread_id, to_i64(from)], message_columns)
        .context(loading)?;
    let mut messages = Vec::new();
    for row in rows {
        let row = row.context(loading)?;
        let expected = to_i64(from + messages.len());
        if row.0 != expected {
            return Err(StoreError::Backend(format!(
                "thread `{thread_id}`: message `{}` is stored at position {} where {expected} \
                 was expected; the store file may be corrupt",
                row.1, row.0
            )));
        }
        messages.push(message_row(thread_id, row)?);
    }
    Ok(messages)
}

/// The position of message `id` in the thread, for a cursor: it must be one of the
/// messages `query` lists.
fn message_seq(
    conn: &Connection,
    thread_id: &str,
    id: &str,
    query: &MessageQuery,
) -> Result<i64, StoreError> {
    let row: Option<(i64, Option<String>, bool)> = conn
        .prepare_cached("SELECT seq, run_id, shown FROM messages WHERE thread_id = ?1 AND id = ?2")
        .and_then(|mut stmt| {
            stmt.query_row([thread_id, id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()
        })
        .context(|| format!("finding message `{id}` of thread `{thread_id}`"))?;
    match row {
        Some((seq, run_id, shown))
            if (!query.shown_only || shown)
                && query
                    .run_id
                    .as_ref()
                    .is_none_or(|r| run_id.as_ref() == Some(r)) =>
        {
            Ok(seq)
        }
        _ => Err(StoreError::MessageNotFound {
            thread_id: thread_id.to_owned(),
            message_id: id.to_owned(),
        }),
    }
}

/// A page of messages: one range read on the `(thread_id, seq)` index, whatever the
/// thread's length. Same semantics as [`MessageQuery::select`].
fn page_messages(
    conn: &Connection,
    thread_id: &str,
    query: &MessageQuery,
) -> Result<MessagePage, StoreError> {
    let paging = || format!("paging the messages of thread `{thread_id}`");
    load_header(conn, thread_id)?;
    let after = query
        .after
        .as_deref()
        .map(|id| message_seq(conn, thread_id, id, query))
        .transpose()?;
    let before = query
        .before
        .as_deref()
        .map(|id| message_seq(conn, thread_id, id, query))
        .transpose()?;
    // In seq terms: ascending pages read (after, before) upwards; descending ones
    // downwards. `before` alone reads from the cursor towards the start, nearest first.
    let desc = query.order == Order::Desc;
    let (low, high) = if desc {
        (before, after)
    } else {
        (after, before)
    };
    let towards_start = query.before.is_some() && query.after.is_none();
    let reads_desc = desc != towards_start;
    // A run's page is one range of its own index, `(run_id, seq)`, whatever the thread's
    // length; written as `?4 IS NULL OR run_id = ?4` the filter could use no index, and a
    // page of an early run scanned the rest of the thread.
    let (index, run) = if query.run_id.is_some() {
        ("INDEXED BY messages_by_run", "AND run_id = ?4")
    } else {
        ("", "")
    };
    let sql = format!(
        "SELECT seq, id, run_id, created_at, body FROM messages {index}
         WHERE thread_id = ?1 AND seq > ?2 AND seq < ?3 {run}
           AND (?5 = 0 OR shown = 1)
         ORDER BY seq {} LIMIT ?6",
        if reads_desc { "DESC" } else { "ASC" }
    );
    let limit = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&sql).context(paging)?;
    let rows: Vec<MessageColumns> = stmt
        .query_map(
            params![
                thread_id,
                low.unwrap_or(-1),
                high.unwrap_or(i64::MAX),
                query.run_id,
                query.shown_only,
                limit
            ],
            message_columns,
        )
        .and_then(Iterator::collect)
        .context(paging)?;
    let has_more = rows.len() > query.limit;
    let mut messages = rows
        .into_iter()
        .take(query.limit)
        .map(|row| message_row(thread_id, row))
        .collect::<Result<Vec<_>, _>>()?;
    if towards_start {
        messages.reverse();
    }
    Ok(MessagePage { messages, has_more })
}

/// A message row's `body`: its kind's fields, and its metadata when it has any (added
/// without a migration: rows written before have none).
#[derive(serde::Serialize)]
struct BodyOut<'a> {
    #[serde(flatten)]
    kind: &'a MessageKind,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    metadata: &'a Metadata,
}

#[derive(serde::Deserialize)]
struct BodyIn {
    #[serde(flatten)]
    kind: MessageKind,
    #[serde(default)]
    metadata: Metadata,
}

/// The last activity `messages` bring, as a `coalesce(?, last_activity)` parameter:
/// `None` leaves the thread's as it is.
fn last_activity(messages: &[Message]) -> Option<i64> {
    messages.last().map(|m| m.created_at)
}

/// How many messages the thread holds (its row keeps the count); `ThreadNotFound` if
/// there is no such thread.
fn message_count(conn: &Connection, thread_id: &str) -> Result<usize, StoreError> {
    let count: Option<i64> = conn
        .prepare_cached("SELECT message_count FROM threads WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([thread_id], |row| row.get(0)).optional())
        .context(|| format!("counting the messages of thread `{thread_id}`"))?;
    let count = count.ok_or_else(|| StoreError::ThreadNotFound(thread_id.to_owned()))?;
    Ok(usize::try_from(count).unwrap_or_default())
}

/// Appends `messages` to the thread after the count its row keeps, and moves the row on:
/// the count, the last activity and, with `active_run`, the run that holds it. One
/// statement to read the row and one to write it: SQLite's `UPDATE … RETURNING`, which
/// would make them one, costs more than the two (it buffers what it returns).
fn append_messages(
    conn: &Connection,
    thread_id: &str,
    messages: &[Message],
    active_run: Option<&str>,
) -> Result<(), StoreError> {
    let appending = || format!("appending to thread `{thread_id}`");
    let count = message_count(conn, thread_id)?;
    insert_rows(conn, thread_id, count, messages)?;
    conn.prepare_cached(
        "UPDATE threads SET message_count = ?2, last_activity = coalesce(?3, last_activity),
                            active_run = coalesce(?4, active_run)
         WHERE id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            thread_id,
            to_i64(count + messages.len()),
            last_activity(messages),
            active_run
        ])
    })
    .context(appending)?;
    Ok(())
}

/// Inserts the rows of `messages` at positions `first_seq…`; the caller moves the
/// thread's count on in the same transaction.
fn insert_rows(
    conn: &Connection,
    thread_id: &str,
    first_seq: usize,
    messages: &[Message],
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let appending = || format!("appending to thread `{thread_id}`");
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO messages (thread_id, seq, id, run_id, created_at, kind, body, shown)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .context(appending)?;
    for (i, message) in messages.iter().enumerate() {
        let body = to_json(
            &BodyOut {
                kind: &message.kind,
                metadata: &message.metadata,
            },
            || format!("message `{}`", message.id),
        )?;
        stmt.execute(params![
            thread_id,
            to_i64(first_seq + i),
            message.id,
            message.run_id,
            message.created_at,
            kind_name(&message.kind),
            body,
            message.is_shown(),
        ])
        .context(|| format!("appending message `{}` to thread `{thread_id}`", message.id))?;
    }
    Ok(())
}

/// The JSON columns of a thread: slots, metadata, pending, route.
type Columns = (String, String, Option<String>, Option<String>);

/// The JSON columns of a thread's header.
fn thread_columns(header: &ThreadHeader) -> Result<Columns, StoreError> {
    let what = |part: &str| format!("the {part} of thread `{}`", header.id);
    let pending = match &header.pending {
        Some(pending) => Some(to_json(pending, || what("pending call"))?),
        None => None,
    };
    let route = if header.route.is_empty() {
        None
    } else {
        Some(to_json(&header.route, || what("route"))?)
    };
    Ok((
        to_json(&header.slots, || what("slots"))?,
        to_json(&header.metadata, || what("metadata"))?,
        pending,
        route,
    ))
}

/// The run holding the thread's lock, if it is still active. `Err(ThreadNotFound)` if
/// there is no such thread.
fn holder(conn: &Connection, thread_id: &str) -> Result<Option<String>, StoreError> {
    let checking = || format!("checking the lock of thread `{thread_id}`");
    let active: Option<Option<String>> = conn
        .prepare_cached("SELECT active_run FROM threads WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([thread_id], |row| row.get(0)).optional())
        .context(checking)?;
    let Some(active) = active else {
        return Err(StoreError::ThreadNotFound(thread_id.to_owned()));
    };
    let Some(run_id) = active else {
        return Ok(None);
    };
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM runs WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([&run_id], |row| row.get(0)).optional())
        .context(checking)?;
    // A lock naming a run that is gone or over holds nothing (as in the memory store).
    match status {
        Some(status) if !parse_status(&status, &run_id)?.is_terminal() => Ok(Some(run_id)),
        _ => Ok(None),
    }
}

fn locked(thread_id: &str, run_id: String) -> StoreError {
    StoreError::Locked {
        thread_id: thread_id.to_owned(),
        run_id,
    }
}

fn load_run(conn: &Connection, id: &str) -> Result<Run, StoreError> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM runs WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([id], |row| row.get(0)).optional())
        .context(|| format!("loading run `{id}`"))?;
    let body = body.ok_or_else(|| StoreError::RunNotFound(id.to_owned()))?;
    parse(&body, || format!("the stored body of run `{id}`"))
}

/// A step as the blocking side gets it: owned, already checked to be the tail of the
/// thread it came with.
struct OwnedStep {
    header: ThreadHeader,
    /// The length of the thread the step carried.
    total: usize,
    appended: Vec<Message>,
    run: Option<Run>,
}

/// Inserts a new thread and its messages (inside a write transaction) and, from
/// `begin_thread`, the first message after them and the run that holds the thread: the
/// row is written once, with the count, last activity and run these make. `Duplicate`
/// if the id is taken.
fn insert_thread_in(
    tx: &Connection,
    thread: &Thread,
    begun: Option<(&Message, &Run)>,
) -> Result<(), StoreError> {
    let inserting = || format!("inserting thread `{}`", thread.id);
    let (slots, metadata, pending, route) = thread_columns(&thread.header())?;
    let first = begun.map(|(message, _)| std::slice::from_ref(message));
    let first = first.unwrap_or_default();
    let active_run = begun.map_or(thread.active_run.as_deref(), |(_, run)| Some(&run.id));
    let inserted = tx
        .prepare_cached(
            "INSERT INTO threads (id, flow, created_at, slots, metadata, pending, active_run,
                                  route, message_count, last_activity)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                thread.id,
                thread.flow,
                thread.created_at,
                slots,
                metadata,
                pending,
                active_run,
                route,
                to_i64(thread.messages.len() + first.len()),
                last_activity(first).or_else(|| last_activity(&thread.messages)),
            ])
        })
        .context(inserting)?;
    if inserted == 0 {
        return Err(StoreError::Duplicate(thread.id.clone()));
    }
    insert_rows(tx, &thread.id, 0, &thread.messages)?;
    insert_rows(tx, &thread.id, thread.messages.len(), first)
}

impl Db {
    fn insert_thread(&self, thread: &Thread) -> Result<(), StoreError> {
        let inserting = || format!("inserting thread `{}`", thread.id);
        let conn = self.conn();
        let tx = Tx::write(&conn).context(inserting)?;
        insert_thread_in(&tx, thread, None)?;
        tx.commit().context(inserting)
    }

    /// A new thread, its first message and its run, in one transaction of three
    /// statements (and one per message the thread already has).
    fn begin_thread(
        &self,
        thread: &Thread,
        message: &Message,
        run: &Run,
    ) -> Result<(), StoreError> {
        let beginning = || format!("starting thread `{}` with run `{}`", thread.id, run.id);
        clarion_engine::run_belongs_to(thread, run)?;
        let conn = self.conn();
        let tx = Tx::write(&conn).context(beginning)?;
        insert_thread_in(&tx, thread, Some((message, run)))?;
        self.insert_run(&tx, run)?;
        tx.commit().context(beginning)
    }

    /// A read transaction: the thread row and its messages come from one snapshot even
    /// while another process commits a step.
    fn read<T>(
        &self,
        what: impl Fn() -> String,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn();
        let tx = Tx::read(&conn).context(what)?;
        read(&tx)
    }

    /// A write transaction on a thread no active run holds.
    fn write_unlocked<T>(
        &self,
        thread_id: &str,
        what: impl Fn() -> String,
        write: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn();
        let tx = Tx::write(&conn).context(&what)?;
        if let Some(run_id) = holder(&tx, thread_id)? {
            return Err(locked(thread_id, run_id));
        }
        let value = write(&tx)?;
        tx.commit().context(what)?;
        Ok(value)
    }

    fn delete_thread(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .conn()
            .prepare_cached("DELETE FROM threads WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute([id]))
            .context(|| format!("deleting thread `{id}`"))?;
        Ok(deleted > 0)
    }

    fn thread_headers(&self, limit: usize) -> Result<Vec<ThreadHeader>, StoreError> {
        let listing = || "listing threads".to_owned();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, flow, created_at, slots, metadata, pending, active_run,
                        message_count, last_activity, route
                 FROM threads ORDER BY pos DESC LIMIT ?1",
            )
            .context(listing)?;
        let rows = stmt
            .query_map([to_i64(limit)], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    (
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, Option<String>>(5)?,
                        row.get::<_, Option<String>>(9)?,
                    ),
                    row.get::<_, Option<String>>(6)?,
                    row.get::<_, i64>(7)?,
                    row.get::<_, Option<i64>>(8)?,
                ))
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
            .context(listing)?;
        rows.into_iter()
            .map(|(id, flow, created, json, active, count, last)| {
                header(&id, flow, created, json, active, count, last)
            })
            .collect()
    }

    fn runs(&self, thread_id: &str) -> Result<Vec<Run>, StoreError> {
        let listing = || format!("listing the runs of thread `{thread_id}`");
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, body FROM runs WHERE thread_id = ?1 ORDER BY pos")
            .context(listing)?;
        let rows: Vec<(String, String)> = stmt
            .query_map([thread_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .context(listing)?;
        rows.iter()
            .map(|(id, body)| parse(body, || format!("the stored body of run `{id}`")))
            .collect()
    }

    fn set_message_metadata(
        &self,
        thread_id: &str,
        message_id: &str,
        metadata: &Metadata,
    ) -> Result<Option<Message>, StoreError> {
        let updating = || format!("updating message `{message_id}` of thread `{thread_id}`");
        self.write_unlocked(thread_id, updating, |tx| {
            let row: Option<MessageColumns> = tx
                .query_row(
                    "SELECT seq, id, run_id, created_at, body FROM messages
                     WHERE thread_id = ?1 AND id = ?2",
                    params![thread_id, message_id],
                    message_columns,
                )
                .optional()
                .context(updating)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let mut message = message_row(thread_id, row)?;
            message.metadata = metadata.clone();
            let body = to_json(
                &BodyOut {
                    kind: &message.kind,
                    metadata,
                },
                updating,
            )?;
            tx.execute(
                "UPDATE messages SET body = ?3 WHERE thread_id = ?1 AND id = ?2",
                params![thread_id, message_id, body],
            )
            .context(updating)?;
            Ok(Some(message))
        })
    }

    fn update_thread(&self, header: &ThreadHeader) -> Result<(), StoreError> {
        let id = &header.id;
        let updating = || format!("updating thread `{id}`");
        // The route changes only with a run's step (`commit`).
        let (slots, metadata, pending, _) = thread_columns(header)?;
        self.write_unlocked(id, updating, |tx| {
            tx.prepare_cached(
                "UPDATE threads SET flow = ?2, slots = ?3, metadata = ?4, pending = ?5 WHERE id = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![id, header.flow, slots, metadata, pending]))
            .context(updating)?;
            Ok(())
        })
    }

    fn add_user_message(&self, thread_id: &str, message: &Message) -> Result<(), StoreError> {
        let adding = || format!("adding a message to thread `{thread_id}`");
        self.write_unlocked(thread_id, adding, |tx| {
            append_messages(tx, thread_id, std::slice::from_ref(message), None)
        })
    }

    /// Begins `run`, after appending `message` if there is one: one transaction.
    fn begin_run(&self, message: Option<&Message>, run: &Run) -> Result<(), StoreError> {
        let thread_id = &run.thread_id;
        let beginning = || format!("starting run `{}` on thread `{thread_id}`", run.id);
        self.write_unlocked(thread_id, beginning, |tx| {
            self.start_run_in(tx, message, run)
        })
    }

    /// Appends `message` (if any), stores `run` and locks its thread for it (inside a
    /// write transaction that checked no other run holds the thread).
    fn start_run_in(
        &self,
        tx: &Connection,
        message: Option<&Message>,
        run: &Run,
    ) -> Result<(), StoreError> {
        let message = message.map(std::slice::from_ref).unwrap_or_default();
        append_messages(tx, &run.thread_id, message, Some(&run.id))?;
        self.insert_run(tx, run)
    }

    /// Inserts `run` (inside the write transaction that locks its thread for it).
    fn insert_run(&self, tx: &Connection, run: &Run) -> Result<(), StoreError> {
        let thread_id = &run.thread_id;
        let beginning = || format!("starting run `{}` on thread `{thread_id}`", run.id);
        let body = to_json(run, || format!("run `{}`", run.id))?;
        // The creator holds the new run's lease, so no other process takes over a run
        // that is only waiting for its creator to drive it.
        let (owner, until) = match self.lease {
            Some(lease) => (Some(self.owner.as_str()), Some(lease_end(lease))),
            None => (None, None),
        };
        tx.prepare_cached(
            "INSERT INTO runs (id, thread_id, status, created_at, body, lease_owner, lease_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                run.id,
                thread_id,
                run.status.as_str(),
                run.created_at,
                body,
                owner,
                until
            ])
        })
        .context(beginning)?;
        Ok(())
    }

    /// One query over the threads table instead of loading every thread and its messages
    /// (`clarion chat` recovers at every start).
    fn locked_thread_ids(&self) -> Result<Vec<String>, StoreError> {
        let listing = || "listing locked threads".to_owned();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id FROM threads WHERE active_run IS NOT NULL ORDER BY pos")
            .context(listing)?;
        let ids = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .context(listing)?
            .collect::<Result<Vec<_>, _>>()
            .context(listing)?;
        Ok(ids)
    }

    /// Whether no other open store shares the file: this handle's shared lock is traded
    /// for an exclusive one and back. Another process checking at the same instant may
    /// also see itself alone; both are at startup, before either drives a run.
    fn sole_user(&self) -> bool {
        let Some(presence) = &self.presence else {
            return self.path.is_none();
        };
        let file = presence.lock().unwrap_or_else(PoisonError::into_inner);
        if file.unlock().is_err() {
            return false;
        }
        let sole = file.try_lock().is_ok();
        // Back to shared (from exclusive, or from nothing if another process holds it).
        let _ = file.unlock();
        let _ = file.lock_shared();
        sole
    }

    fn claim_run(&self, run_id: &str) -> Result<bool, StoreError> {
        let Some(lease) = self.lease else {
            return Ok(true);
        };
        if self.take_lease(run_id, lease, false)? {
            return Ok(true);
        }
        // Held by another handle: alone on the file, that handle's process is dead. Asked
        // only now, because asking briefly lets go of this handle's own presence lock.
        Ok(self.sole_user() && self.take_lease(run_id, lease, true)?)
    }

    /// Takes an unfinished run's lease when it is free, this handle's, expired — or held
    /// by anyone, with `steal` (the holder is known dead).
    fn take_lease(&self, run_id: &str, lease: Duration, steal: bool) -> Result<bool, StoreError> {
        let claiming = || format!("claiming the lease of run `{run_id}`");
        let claimed = self
            .conn()
            .prepare_cached(
                "UPDATE runs SET lease_owner = ?2, lease_until = ?3
                 WHERE id = ?1
                   AND status NOT IN ('completed', 'failed', 'incomplete', 'cancelled', 'expired')
                   AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until < ?4 OR ?5)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    run_id,
                    self.owner,
                    lease_end(lease),
                    now_ms(),
                    steal
                ])
            })
            .context(claiming)?;
        Ok(claimed > 0)
    }

    fn renew_lease(&self, run_id: &str) -> Result<Lease, StoreError> {
        let Some(lease) = self.lease else {
            return Ok(Lease::Held {
                cancel_requested: false,
            });
        };
        let renewing = || format!("renewing the lease of run `{run_id}`");
        let conn = self.conn();
        let cancel: Option<bool> = conn
            .prepare_cached(
                "UPDATE runs SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2
                 RETURNING cancel_requested",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![run_id, self.owner, lease_end(lease)], |row| {
                    row.get(0)
                })
                .optional()
            })
            .context(renewing)?;
        Ok(match cancel {
            Some(cancel_requested) => Lease::Held { cancel_requested },
            None => Lease::Lost,
        })
    }

    fn release_run(&self, run_id: &str) -> Result<(), StoreError> {
        if self.lease.is_none() {
            return Ok(());
        }
        let releasing = || format!("releasing the lease of run `{run_id}`");
        self.conn()
            .prepare_cached(
                "UPDATE runs SET lease_owner = NULL, lease_until = NULL
                 WHERE id = ?1 AND lease_owner = ?2",
            )
            .and_then(|mut stmt| stmt.execute(params![run_id, self.owner]))
            .context(releasing)?;
        Ok(())
    }

    fn request_cancel(&self, run_id: &str) -> Result<bool, StoreError> {
        if self.lease.is_none() {
            return Ok(false);
        }
        let requesting = || format!("asking the driver of run `{run_id}` to cancel it");
        let requested = self
            .conn()
            .prepare_cached(
                "UPDATE runs SET cancel_requested = 1
                 WHERE id = ?1 AND lease_owner IS NOT NULL AND lease_owner <> ?2
                   AND lease_until > ?3
                   AND status IN ('queued', 'in_progress', 'cancelling')",
            )
            .and_then(|mut stmt| stmt.execute(params![run_id, self.owner, now_ms()]))
            .context(requesting)?;
        Ok(requested > 0)
    }

    /// Unfinished runs whose lease expired — and, when this handle has the file to itself,
    /// those leased by a handle that is gone (its process died: nobody else has the file
    /// open), without waiting for the lease to run out.
    fn orphaned_runs(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        if self.lease.is_none() {
            return Ok(Vec::new());
        }
        let alone = self.sole_user();
        let listing = || "listing runs whose lease expired".to_owned();
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id FROM runs
                 WHERE status IN ('queued', 'in_progress', 'cancelling')
                   AND (lease_until IS NULL OR lease_until < ?1
                        OR (?2 AND lease_owner <> ?3))
                 ORDER BY lease_until LIMIT ?4",
            )
            .context(listing)?;
        let ids = stmt
            .query_map(params![now_ms(), alone, self.owner, to_i64(limit)], |row| {
                row.get::<_, String>(0)
            })
            .context(listing)?
            .collect::<Result<Vec<_>, _>>()
            .context(listing)?;
        Ok(ids)
    }

    /// Saves the run of a step (inside its transaction): refused when the run already
    /// ended, or when another handle holds its live lease (fencing); a run that rests or
    /// ended gives its lease back.
    fn save_run(&self, tx: &Connection, id: &str, run: &Run, body: &str) -> Result<(), StoreError> {
        let committing = || format!("committing a step of thread `{id}`");
        let previous: Option<(String, bool)> = tx
            .prepare_cached(
                "SELECT status, lease_owner IS NOT NULL AND lease_owner <> ?2
                        AND lease_until > ?3
                 FROM runs WHERE id = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![run.id, self.owner, now_ms()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()
            })
            .context(committing)?;
        // A run that ended stays ended: a step from a process that lost the run (e.g.
        // `recover` in another process failed it meanwhile) must not revive it.
        if let Some((previous, leased_elsewhere)) = previous {
            // Fencing: a process whose lease expired and was taken cannot write over
            // the process that took the run over.
            if leased_elsewhere {
                return Err(StoreError::Backend(format!(
                    "refusing a step for run `{}`: another process holds its lease (this \
                     one lost it); nothing was written",
                    run.id
                )));
            }
            let previous = parse_status(&previous, &run.id)?;
            if previous.is_terminal() && previous != run.status {
                return Err(StoreError::Backend(format!(
                    "refusing a stale step for run `{}`: it already ended as `{}`; nothing \
                     was written",
                    run.id,
                    previous.as_str()
                )));
            }
        }
        // A run that rests (waiting for outputs) or ended holds no lease.
        let rests = run.status.is_terminal() || run.status == RunStatus::RequiresAction;
        let saved = tx
            .prepare_cached(
                "INSERT INTO runs (id, thread_id, status, created_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body,
                 lease_owner = CASE WHEN ?6 THEN NULL ELSE runs.lease_owner END,
                 lease_until = CASE WHEN ?6 THEN NULL ELSE runs.lease_until END,
                 cancel_requested = runs.cancel_requested AND NOT ?6
             WHERE runs.thread_id = excluded.thread_id",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    run.id,
                    id,
                    run.status.as_str(),
                    run.created_at,
                    body,
                    rests
                ])
            })
            .context(|| format!("saving run `{}`", run.id))?;
        if saved == 0 {
            return Err(StoreError::Backend(format!(
                "refusing a step of thread `{id}`: run `{}` belongs to another thread",
                run.id
            )));
        }
        Ok(())
    }

    fn commit(&self, step: &OwnedStep) -> Result<(), StoreError> {
        let thread = &step.header;
        let id = &thread.id;
        let committing = || format!("committing a step of thread `{id}`");
        let (slots, metadata, pending, route) = thread_columns(thread)?;
        let run_body = match &step.run {
            Some(run) => Some(to_json(run, || format!("run `{}`", run.id))?),
            None => None,
        };
        let conn = self.conn();
        let tx = Tx::write(&conn).context(committing)?;
        // The count the row holds, to check the step against before anything is written.
        // (A read and a write: SQLite's `UPDATE … RETURNING` costs more than both.)
        let stored = message_count(&tx, id)?;
        // The step must continue exactly where the store is: anything else means the
        // caller's thread is stale, and writing it would leave a hole or a duplicate.
        let appended = step.appended.len();
        if stored + appended != step.total {
            return Err(StoreError::Backend(format!(
                "refusing an inconsistent step for thread `{id}`: the store holds {stored} \
                 messages and the step appends {appended}, but the thread it carries has \
                 {}; nothing was written",
                step.total
            )));
        }
        insert_rows(&tx, id, stored, &step.appended)?;
        tx.prepare_cached(
            "UPDATE threads SET flow = ?2, slots = ?3, metadata = ?4, pending = ?5,
             active_run = ?6, route = ?7, message_count = ?8,
             last_activity = coalesce(?9, last_activity)
             WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                thread.flow,
                slots,
                metadata,
                pending,
                thread.active_run,
                route,
                to_i64(step.total),
                last_activity(&step.appended),
            ])
        })
        .context(committing)?;
        if let (Some(run), Some(body)) = (&step.run, run_body) {
            self.save_run(&tx, id, run, &body)?;
        }
        tx.commit().context(committing)
    }
}

impl ThreadStore for SqliteStore {
    fn insert_thread<'a>(&'a self, thread: &'a Thread) -> BoxFuture<'a, Result<(), StoreError>> {
        let thread = thread.clone();
        self.blocking(move |db| db.insert_thread(&thread))
    }

    fn thread<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Thread, StoreError>> {
        let id = id.to_owned();
        self.blocking(move |db| {
            db.read(
                || format!("loading thread `{id}`"),
                |tx| load_thread(tx, &id),
            )
        })
    }

    fn thread_header<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ThreadHeader, StoreError>> {
        let id = id.to_owned();
        self.blocking(move |db| load_header(&db.conn(), &id))
    }

    fn thread_since<'a>(
        &'a self,
        id: &'a str,
        from: usize,
    ) -> BoxFuture<'a, Result<(ThreadHeader, Vec<Message>), StoreError>> {
        let id = id.to_owned();
        self.blocking(move |db| {
            db.read(
                || format!("loading thread `{id}`"),
                |tx| load_since(tx, &id, from),
            )
        })
    }

    fn messages<'a>(
        &'a self,
        thread_id: &'a str,
        query: &'a MessageQuery,
    ) -> BoxFuture<'a, Result<MessagePage, StoreError>> {
        let (thread_id, query) = (thread_id.to_owned(), query.clone());
        self.blocking(move |db| {
            db.read(
                || format!("paging the messages of thread `{thread_id}`"),
                |tx| page_messages(tx, &thread_id, &query),
            )
        })
    }

    fn message<'a>(
        &'a self,
        thread_id: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Message>, StoreError>> {
        let (thread_id, message_id) = (thread_id.to_owned(), message_id.to_owned());
        self.blocking(move |db| {
            let conn = db.conn();
            load_header(&conn, &thread_id)?;
            let row: Option<MessageColumns> = conn
                .prepare_cached(
                    "SELECT seq, id, run_id, created_at, body FROM messages
                     WHERE thread_id = ?1 AND id = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row([&thread_id, &message_id], message_columns)
                        .optional()
                })
                .context(|| format!("loading message `{message_id}` of thread `{thread_id}`"))?;
            row.map(|row| message_row(&thread_id, row)).transpose()
        })
    }

    fn delete_thread<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let id = id.to_owned();
        self.blocking(move |db| db.delete_thread(&id))
    }

    fn thread_headers(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ThreadHeader>, StoreError>> {
        self.blocking(move |db| db.thread_headers(limit))
    }

    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Run, StoreError>> {
        let id = id.to_owned();
        self.blocking(move |db| load_run(&db.conn(), &id))
    }

    fn runs<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<Vec<Run>, StoreError>> {
        let thread_id = thread_id.to_owned();
        self.blocking(move |db| db.runs(&thread_id))
    }

    fn add_user_message<'a>(
        &'a self,
        thread_id: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (thread_id, message) = (thread_id.to_owned(), message.clone());
        self.blocking(move |db| db.add_user_message(&thread_id, &message))
    }

    fn set_message_metadata<'a>(
        &'a self,
        thread_id: &'a str,
        message_id: &'a str,
        metadata: &'a Metadata,
    ) -> BoxFuture<'a, Result<Option<Message>, StoreError>> {
        let (thread_id, message_id, metadata) = (
            thread_id.to_owned(),
            message_id.to_owned(),
            metadata.clone(),
        );
        self.blocking(move |db| db.set_message_metadata(&thread_id, &message_id, &metadata))
    }

    fn update_thread<'a>(
        &'a self,
        header: &'a ThreadHeader,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let header = header.clone();
        self.blocking(move |db| db.update_thread(&header))
    }

    fn begin_run<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>> {
        let run = run.clone();
        self.blocking(move |db| db.begin_run(None, &run))
    }

    fn begin_run_after<'a>(
        &'a self,
        message: &'a Message,
        run: &'a Run,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (message, run) = (message.clone(), run.clone());
        self.blocking(move |db| db.begin_run(Some(&message), &run))
    }

    fn begin_thread<'a>(
        &'a self,
        thread: &'a Thread,
        message: &'a Message,
        run: &'a Run,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (thread, message, run) = (thread.clone(), message.clone(), run.clone());
        self.blocking(move |db| db.begin_thread(&thread, &message, &run))
    }

    fn commit<'a>(&'a self, step: Step<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
        // What needs the whole thread is checked here; the blocking side gets owned data.
        let checked = step
            .thread
            .messages
            .len()
            .checked_sub(step.appended.len())
            .map(|stored| step.check(stored));
        if let Some(Err(error)) = checked {
            return Box::pin(std::future::ready(Err(error)));
        }
        let owned = OwnedStep {
            header: step.thread.header(),
            total: step.thread.messages.len(),
            appended: step.appended.to_vec(),
            run: step.run.cloned(),
        };
        self.blocking(move |db| db.commit(&owned))
    }

    fn locked_thread_ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.blocking(Db::locked_thread_ids)
    }

    fn sole_user(&self) -> bool {
        self.db.sole_user()
    }

    fn lease_duration(&self) -> Option<Duration> {
        self.db.lease
    }

    fn claim_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let run_id = run_id.to_owned();
        self.blocking(move |db| db.claim_run(&run_id))
    }

    fn renew_lease<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Lease, StoreError>> {
        let run_id = run_id.to_owned();
        self.blocking(move |db| db.renew_lease(&run_id))
    }

    fn release_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let run_id = run_id.to_owned();
        self.blocking(move |db| db.release_run(&run_id))
    }

    fn request_cancel<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        let run_id = run_id.to_owned();
        self.blocking(move |db| db.request_cancel(&run_id))
    }

    fn orphaned_runs(&self, limit: usize) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.blocking(move |db| db.orphaned_runs(limit))
    }
}
