//! [`PostgresStore`]: the [`ThreadStore`] operations as SQL over a connection pool.
//!
//! - **One transaction per write.** A step is one transaction: the thread row is updated
//!   first (`UPDATE … RETURNING`, which also takes its row lock), so two replicas committing
//!   to one thread queue on that lock and the second sees the first's count. Lock checks
//!   (`begin_run`, `add_user_message`…) read the thread `FOR UPDATE` inside the transaction
//!   that writes, so racing run creates on two replicas cannot both win.
//! - **Appends only.** A step inserts the messages it appended, in one statement
//!   (`unnest` over arrays), with `seq` continuing from the stored count.
//! - **Reads in one snapshot.** Loading a thread reads its row and its messages in one
//!   `REPEATABLE READ` transaction.
//! - **Leases use the database's clock** (`now()`), so replicas whose clocks differ still
//!   agree on when a lease expired. A step of a run whose live lease another handle holds
//!   is refused (fencing): a replica that lost its lease cannot write over the one that
//!   took the run over.

use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use serde::de::DeserializeOwned;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use clarion_engine::BoxFuture;
use clarion_engine::{Handoff, Message, MessageKind, Metadata, PendingCall, Thread};
use clarion_engine::{
    Lease, MessagePage, MessageQuery, Order, Step, StoreError, ThreadHeader, ThreadStore,
};
use clarion_engine::{Run, RunStatus};

/// Threads and runs in PostgreSQL, shared by every replica that connects to the database.
///
/// Cheap to clone (the pool is shared). Every method is cancel safe: a future dropped
/// before its transaction commits rolls it back (the connection is discarded or reset by
/// the pool), so a write is applied whole or not at all.
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) pool: Pool,
    /// This handle's lease owner id (`<host>:<pid>:<random>`).
    pub(crate) owner: String,
    pub(crate) lease: Duration,
    pub(crate) target: String,
    pub(crate) schema: Option<String>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A driver error, described without the connection string (which tokio-postgres never
/// puts in its errors either).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn fail(what: impl FnOnce() -> String) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Backend(format!("{}: {}", what(), describe(&e)))
}

fn parse<T: DeserializeOwned>(text: &str, what: impl FnOnce() -> String) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| {
        StoreError::Backend(format!(
            "{} is not valid ({e}); the database may hold a corrupt row",
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
            StoreError::Backend(format!("run `{run_id}` has an unknown status `{text}`"))
        })
}

/// A message row's `body` (the same JSON as the SQLite store's).
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

const HEADER_COLUMNS: &str = "id, flow, created_at, slots, metadata, pending, active_run, \
                              message_count, last_activity, route";

fn header_row(row: &tokio_postgres::Row) -> Result<ThreadHeader, StoreError> {
    let id: String = row.get(0);
    let pending: Option<String> = row.get(5);
    let pending: Option<PendingCall> = match pending {
        Some(text) => Some(parse(&text, || {
            format!("the pending call of thread `{id}`")
        })?),
        None => None,
    };
    let created_at: i64 = row.get(2);
    let slots: String = row.get(3);
    let metadata: String = row.get(4);
    let count: i64 = row.get(7);
    let last: Option<i64> = row.get(8);
    let route: Option<String> = row.get(9);
    let route: Vec<Handoff> = match route {
        Some(text) => parse(&text, || format!("the route of thread `{id}`"))?,
        None => Vec::new(),
    };
    Ok(ThreadHeader {
        flow: row.get(1),
        created_at,
        slots: parse(&slots, || format!("the slots of thread `{id}`"))?,
        metadata: parse(&metadata, || format!("the metadata of thread `{id}`"))?,
        pending,
        active_run: row.get(6),
        route,
        message_count: usize::try_from(count).unwrap_or_default(),
        last_activity: last.unwrap_or(created_at),
        id,
    })
}

const MESSAGE_COLUMNS: &str = "seq, id, run_id, created_at, body";

fn message_row(thread_id: &str, row: &tokio_postgres::Row) -> Result<Message, StoreError> {
    let seq: i64 = row.get(0);
    let id: String = row.get(1);
    let body: String = row.get(4);
    let BodyIn { kind, metadata } = parse(&body, || {
        format!("message `{id}` (#{seq}) of thread `{thread_id}`")
    })?;
    Ok(Message {
        id,
        run_id: row.get(2),
        created_at: row.get(3),
        kind,
        metadata,
    })
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

/// Appends `messages` at `first_seq…` in one statement, and moves the thread's count and
/// last activity on.
async fn insert_messages(
    tx: &deadpool_postgres::Transaction<'_>,
    thread_id: &str,
    first_seq: usize,
    messages: &[Message],
) -> Result<(), StoreError> {
    if messages.is_empty() {
        return Ok(());
    }
    let appending = || format!("appending to thread `{thread_id}`");
    let mut seqs = Vec::with_capacity(messages.len());
    let mut ids = Vec::with_capacity(messages.len());
    let mut run_ids = Vec::with_capacity(messages.len());
    let mut times = Vec::with_capacity(messages.len());
    let mut kinds = Vec::with_capacity(messages.len());
    let mut bodies = Vec::with_capacity(messages.len());
    let mut shown = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        seqs.push(to_i64(first_seq + i));
        ids.push(message.id.as_str());
        run_ids.push(message.run_id.as_deref());
        times.push(message.created_at);
        kinds.push(kind_name(&message.kind));
        bodies.push(to_json(
            &BodyOut {
                kind: &message.kind,
                metadata: &message.metadata,
            },
            || format!("message `{}`", message.id),
        )?);
        shown.push(message.is_shown());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO messages (thread_id, seq, id, run_id, created_at, kind, body, shown)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[],
                                      $6::text[], $7::text[], $8::bool[])",
        )
        .await
        .map_err(fail(appending))?;
    tx.execute(
        &stmt,
        &[
            &thread_id, &seqs, &ids, &run_ids, &times, &kinds, &bodies, &shown,
        ],
    )
    .await
    .map_err(fail(appending))?;
    let last = messages.last().map(|m| m.created_at);
    let stmt = tx
        .prepare_cached("UPDATE threads SET message_count = $2, last_activity = $3 WHERE id = $1")
        .await
        .map_err(fail(appending))?;
    tx.execute(
        &stmt,
        &[&thread_id, &to_i64(first_seq + messages.len()), &last],
    )
    .await
    .map_err(fail(appending))?;
    Ok(())
}

/// The run holding the thread's lock, if it is still active, reading the thread row `FOR
/// UPDATE` (the lock other writers of this thread queue on). `Err(ThreadNotFound)` if
/// there is no such thread. Also returns the stored message count.
///
/// Two statements on purpose: under READ COMMITTED, a statement that waited for the row
/// lock re-reads the locked row but not the rows it joins, so a join would miss the run
/// that the transaction it waited for inserted — and both racing creates would win. The
/// second statement takes a fresh snapshot, taken after the lock was granted.
async fn lock_thread(
    tx: &deadpool_postgres::Transaction<'_>,
    thread_id: &str,
) -> Result<(Option<String>, usize), StoreError> {
    let checking = || format!("checking the lock of thread `{thread_id}`");
    let stmt = tx
        .prepare_cached("SELECT active_run, message_count FROM threads WHERE id = $1 FOR UPDATE")
        .await
        .map_err(fail(checking))?;
    let row = tx
        .query_opt(&stmt, &[&thread_id])
        .await
        .map_err(fail(checking))?
        .ok_or_else(|| StoreError::ThreadNotFound(thread_id.to_owned()))?;
    let active: Option<String> = row.get(0);
    let count: i64 = row.get(1);
    let count = usize::try_from(count).unwrap_or_default();
    let Some(run_id) = active else {
        return Ok((None, count));
    };
    let stmt = tx
        .prepare_cached("SELECT status FROM runs WHERE id = $1")
        .await
        .map_err(fail(checking))?;
    let status = tx
        .query_opt(&stmt, &[&run_id])
        .await
        .map_err(fail(checking))?;
    // A lock naming a run that is gone or over holds nothing (as in the other stores).
    let holder = match status {
        Some(row) if !parse_status(row.get(0), &run_id)?.is_terminal() => Some(run_id),
        _ => None,
    };
    Ok((holder, count))
}

fn locked(thread_id: &str, run_id: String) -> StoreError {
    StoreError::Locked {
        thread_id: thread_id.to_owned(),
        run_id,
    }
}

/// A step as the async side needs it: owned, already checked to be the tail of the thread
/// it came with.
struct OwnedStep {
    header: ThreadHeader,
    total: usize,
    appended: Vec<Message>,
    run: Option<Run>,
}

impl PostgresStore {
    /// A pooled connection.
    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            StoreError::Backend(format!(
                "cannot get a connection to PostgreSQL at {}: {e}",
                self.target
            ))
        })
    }

    /// The schema it was opened on, if one was chosen.
    #[must_use]
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// This handle's lease owner id.
    #[must_use]
    pub fn owner(&self) -> &str {
        &self.owner
    }

    async fn load_header(client: &Object, id: &str) -> Result<ThreadHeader, StoreError> {
        let loading = || format!("loading thread `{id}`");
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {HEADER_COLUMNS} FROM threads WHERE id = $1"
            ))
            .await
            .map_err(fail(loading))?;
        let row = client
            .query_opt(&stmt, &[&id])
            .await
            .map_err(fail(loading))?
            .ok_or_else(|| StoreError::ThreadNotFound(id.to_owned()))?;
        header_row(&row)
    }

    async fn do_insert_thread(&self, thread: &Thread) -> Result<(), StoreError> {
        let inserting = || format!("inserting thread `{}`", thread.id);
        let (slots, metadata, pending, route) = thread_columns(&thread.header())?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(fail(inserting))?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO threads (id, flow, created_at, slots, metadata, pending, active_run,
                                      route)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
            )
            .await
            .map_err(fail(inserting))?;
        let inserted = tx
            .execute(
                &stmt,
                &[
                    &thread.id,
                    &thread.flow,
                    &thread.created_at,
                    &slots,
                    &metadata,
                    &pending,
                    &thread.active_run,
                    &route,
                ],
            )
            .await
            .map_err(fail(inserting))?;
        if inserted == 0 {
            return Err(StoreError::Duplicate(thread.id.clone()));
        }
        insert_messages(&tx, &thread.id, 0, &thread.messages).await?;
        tx.commit().await.map_err(fail(inserting))
    }

    async fn do_thread(&self, id: &str) -> Result<Thread, StoreError> {
        let loading = || format!("loading thread `{id}`");
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(fail(loading))?;
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {HEADER_COLUMNS} FROM threads WHERE id = $1"
            ))
            .await
            .map_err(fail(loading))?;
        let row = tx
            .query_opt(&stmt, &[&id])
            .await
            .map_err(fail(loading))?
            .ok_or_else(|| StoreError::ThreadNotFound(id.to_owned()))?;
        let header = header_row(&row)?;
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = $1 ORDER BY seq"
            ))
            .await
            .map_err(fail(loading))?;
        let rows = tx.query(&stmt, &[&id]).await.map_err(fail(loading))?;
        let mut messages = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.get(0);
            if seq != to_i64(messages.len()) {
                return Err(StoreError::Backend(format!(
                    "thread `{id}`: a message is stored at position {seq} where {} was \
                     expected; the database may hold a corrupt row",
                    messages.len()
                )));
            }
            messages.push(message_row(id, row)?);
        }
        tx.commit().await.map_err(fail(loading))?;
        if messages.len() != header.message_count {
            return Err(StoreError::Backend(format!(
                "thread `{id}` counts {} messages but holds {}",
                header.message_count,
                messages.len()
            )));
        }
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

    /// The position of message `id`, for a cursor: it must be one `query` lists.
    async fn message_seq(
        tx: &deadpool_postgres::Transaction<'_>,
        thread_id: &str,
        id: &str,
        query: &MessageQuery,
    ) -> Result<i64, StoreError> {
        let stmt = tx
            .prepare_cached(
                "SELECT seq, run_id, shown FROM messages WHERE thread_id = $1 AND id = $2",
            )
            .await
            .map_err(fail(|| format!("finding message `{id}`")))?;
        let row = tx
            .query_opt(&stmt, &[&thread_id, &id])
            .await
            .map_err(fail(|| format!("finding message `{id}`")))?;
        match row {
            Some(row)
                if (!query.shown_only || row.get::<_, bool>(2))
                    && query
                        .run_id
                        .as_ref()
                        .is_none_or(|r| row.get::<_, Option<String>>(1).as_ref() == Some(r)) =>
            {
                Ok(row.get(0))
            }
            _ => Err(StoreError::MessageNotFound {
                thread_id: thread_id.to_owned(),
                message_id: id.to_owned(),
            }),
        }
    }

    async fn do_messages(
        &self,
        thread_id: &str,
        query: &MessageQuery,
    ) -> Result<MessagePage, StoreError> {
        let paging = || format!("paging the messages of thread `{thread_id}`");
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(fail(paging))?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM threads WHERE id = $1")
            .await
            .map_err(fail(paging))?;
        if tx
            .query_opt(&exists, &[&thread_id])
            .await
            .map_err(fail(paging))?
            .is_none()
        {
            return Err(StoreError::ThreadNotFound(thread_id.to_owned()));
        }
        let after = match &query.after {
            Some(id) => Some(Self::message_seq(&tx, thread_id, id, query).await?),
            None => None,
        };
        let before = match &query.before {
            Some(id) => Some(Self::message_seq(&tx, thread_id, id, query).await?),
            None => None,
        };
        let desc = query.order == Order::Desc;
        let (low, high) = if desc {
            (before, after)
        } else {
            (after, before)
        };
        let towards_start = query.before.is_some() && query.after.is_none();
        let reads_desc = desc != towards_start;
        // The run filter as its own condition when there is one, so a run's page is one
        // range of `messages_by_run (run_id, seq)` (`$4 IS NULL OR run_id = $4` matches no
        // index, and a page of an early run scanned the rest of the thread); `$4` keeps
        // its type in both statements.
        let run = if query.run_id.is_some() {
            "run_id = $4"
        } else {
            "$4::text IS NULL"
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE thread_id = $1 AND seq > $2 AND seq < $3
               AND {run} AND (NOT $5 OR shown)
             ORDER BY seq {} LIMIT $6",
            if reads_desc { "DESC" } else { "ASC" }
        );
        let limit = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
        let stmt = tx.prepare_cached(&sql).await.map_err(fail(paging))?;
        let params: [&(dyn ToSql + Sync); 6] = [
            &thread_id,
            &low.unwrap_or(-1),
            &high.unwrap_or(i64::MAX),
            &query.run_id,
            &query.shown_only,
            &limit,
        ];
        let rows = tx.query(&stmt, &params).await.map_err(fail(paging))?;
        tx.commit().await.map_err(fail(paging))?;
        let has_more = rows.len() > query.limit;
        let mut messages = rows
            .iter()
            .take(query.limit)
            .map(|row| message_row(thread_id, row))
            .collect::<Result<Vec<_>, _>>()?;
        if towards_start {
            messages.reverse();
        }
        Ok(MessagePage { messages, has_more })
    }

    async fn do_message(
        &self,
        thread_id: &str,
        message_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        let loading = || format!("loading message `{message_id}` of thread `{thread_id}`");
        let client = self.client().await?;
        // One round trip: the thread's existence and the message together.
        let stmt = client
            .prepare_cached(
                "SELECT m.seq, m.id, m.run_id, m.created_at, m.body
                 FROM threads t LEFT JOIN messages m ON m.thread_id = t.id AND m.id = $2
                 WHERE t.id = $1",
            )
            .await
            .map_err(fail(loading))?;
        let row = client
            .query_opt(&stmt, &[&thread_id, &message_id])
            .await
            .map_err(fail(loading))?
            .ok_or_else(|| StoreError::ThreadNotFound(thread_id.to_owned()))?;
        if row.get::<_, Option<i64>>(0).is_none() {
            return Ok(None);
        }
        message_row(thread_id, &row).map(Some)
    }

    async fn do_thread_headers(&self, limit: usize) -> Result<Vec<ThreadHeader>, StoreError> {
        let listing = || "listing threads".to_owned();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {HEADER_COLUMNS} FROM threads ORDER BY pos DESC LIMIT $1"
            ))
            .await
            .map_err(fail(listing))?;
        let rows = client
            .query(&stmt, &[&to_i64(limit)])
            .await
            .map_err(fail(listing))?;
        rows.iter().map(header_row).collect()
    }

    async fn do_run(&self, id: &str) -> Result<Run, StoreError> {
        let loading = || format!("loading run `{id}`");
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT body FROM runs WHERE id = $1")
            .await
            .map_err(fail(loading))?;
        let row = client
            .query_opt(&stmt, &[&id])
            .await
            .map_err(fail(loading))?
            .ok_or_else(|| StoreError::RunNotFound(id.to_owned()))?;
        parse(row.get(0), || format!("the stored body of run `{id}`"))
    }

    async fn do_runs(&self, thread_id: &str) -> Result<Vec<Run>, StoreError> {
        let listing = || format!("listing the runs of thread `{thread_id}`");
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT id, body FROM runs WHERE thread_id = $1 ORDER BY pos")
            .await
            .map_err(fail(listing))?;
        let rows = client
            .query(&stmt, &[&thread_id])
            .await
            .map_err(fail(listing))?;
        rows.iter()
            .map(|row| {
                let id: &str = row.get(0);
                parse(row.get(1), || format!("the stored body of run `{id}`"))
            })
            .collect()
    }

    async fn do_add_user_message(
        &self,
        thread_id: &str,
        message: &Message,
    ) -> Result<(), StoreError> {
        let adding = || format!("adding a message to thread `{thread_id}`");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(fail(adding))?;
        let (holder, count) = lock_thread(&tx, thread_id).await?;
        if let Some(run_id) = holder {
            return Err(locked(thread_id, run_id));
        }
        insert_messages(&tx, thread_id, count, std::slice::from_ref(message)).await?;
        tx.commit().await.map_err(fail(adding))
    }

    async fn do_set_message_metadata(
        &self,
        thread_id: &str,
        message_id: &str,
        metadata: &Metadata,
    ) -> Result<Option<Message>, StoreError> {
        let updating = || format!("updating message `{message_id}` of thread `{thread_id}`");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(fail(updating))?;
        let (holder, _) = lock_thread(&tx, thread_id).await?;
        if let Some(run_id) = holder {
            return Err(locked(thread_id, run_id));
        }
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = $1 AND id = $2"
            ))
            .await
            .map_err(fail(updating))?;
        let Some(row) = tx
            .query_opt(&stmt, &[&thread_id, &message_id])
            .await
            .map_err(fail(updating))?
        else {
            return Ok(None);
        };
        let mut message = message_row(thread_id, &row)?;
        message.metadata = metadata.clone();
        let body = to_json(
            &BodyOut {
                kind: &message.kind,
                metadata,
            },
            updating,
        )?;
        let stmt = tx
            .prepare_cached("UPDATE messages SET body = $3 WHERE thread_id = $1 AND id = $2")
            .await
            .map_err(fail(updating))?;
        tx.execute(&stmt, &[&thread_id, &message_id, &body])
            .await
            .map_err(fail(updating))?;
        tx.commit().await.map_err(fail(updating))?;
        Ok(Some(message))
    }

    async fn do_update_thread(&self, header: &ThreadHeader) -> Result<(), StoreError> {
        let id = &header.id;
        let updating = || format!("updating thread `{id}`");
        // The route changes only with a run's step (`commit`).
        let (slots, metadata, pending, _) = thread_columns(header)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(fail(updating))?;
        let (holder, _) = lock_thread(&tx, id).await?;
        if let Some(run_id) = holder {
            return Err(locked(id, run_id));
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE threads SET flow = $2, slots = $3, metadata = $4, pending = $5 WHERE id = $1",
            )
            .await
            .map_err(fail(updating))?;
        tx.execute(&stmt, &[id, &header.flow, &slots, &metadata, &pending])
            .await
            .map_err(fail(updating))?;
        tx.commit().await.map_err(fail(updating))
    }

    async fn do_begin_run(&self, run: &Run) -> Result<(), StoreError> {
        let thread_id = &run.thread_id;
        let beginning = || format!("starting run `{}` on thread `{thread_id}`", run.id);
        let body = to_json(run, || format!("run `{}`", run.id))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(fail(beginning))?;
        let (holder, _) = lock_thread(&tx, thread_id).await?;
        if let Some(run_id) = holder {
            return Err(locked(thread_id, run_id));
        }
        // The creator holds the new run's lease, so no other replica takes over a run that
        // is only waiting for its creator to drive it.
        let stmt = tx
            .prepare_cached(
                "INSERT INTO runs (id, thread_id, status, created_at, body, lease_owner, lease_until)
                 VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
            )
            .await
            .map_err(fail(beginning))?;
        tx.execute(
            &stmt,
            &[
                &run.id,
                thread_id,
                &run.status.as_str(),
                &run.created_at,
                &body,
                &self.owner,
                &self.lease.as_secs_f64(),
            ],
        )
        .await
        .map_err(fail(beginning))?;
        let stmt = tx
            .prepare_cached("UPDATE threads SET active_run = $1 WHERE id = $2")
            .await
            .map_err(fail(beginning))?;
        tx.execute(&stmt, &[&run.id, thread_id])
            .await
            .map_err(fail(beginning))?;
        tx.commit().await.map_err(fail(beginning))
    }

    async fn do_commit(&self, step: &OwnedStep) -> Result<(), StoreError> {
        let thread = &step.header;
        let id = &thread.id;
        let committing = || format!("committing a step of thread `{id}`");
        let (slots, metadata, pending, route) = thread_columns(thread)?;
        let run_body = match &step.run {
            Some(run) => Some(to_json(run, || format!("run `{}`", run.id))?),
            None => None,
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(fail(committing))?;
        // The thread row first: its row lock orders concurrent steps on one thread.
        let stmt = tx
            .prepare_cached(
                "UPDATE threads SET flow = $2, slots = $3, metadata = $4, pending = $5,
                 active_run = $6, route = $7 WHERE id = $1 RETURNING message_count",
            )
            .await
            .map_err(fail(committing))?;
        let row = tx
            .query_opt(
                &stmt,
                &[
                    id,
                    &thread.flow,
                    &slots,
                    &metadata,
                    &pending,
                    &thread.active_run,
                    &route,
                ],
            )
            .await
            .map_err(fail(committing))?
            .ok_or_else(|| StoreError::ThreadNotFound(id.clone()))?;
        let stored = usize::try_from(row.get::<_, i64>(0)).unwrap_or_default();
        let appended = step.appended.len();
        if stored + appended != step.total {
            return Err(StoreError::Backend(format!(
                "refusing an inconsistent step for thread `{id}`: the store holds {stored} \
                 messages and the step appends {appended}, but the thread it carries has \
                 {}; nothing was written",
                step.total
            )));
        }
        insert_messages(&tx, id, stored, &step.appended).await?;
        if let (Some(run), Some(body)) = (&step.run, run_body) {
            self.save_run(&tx, id, run, &body).await?;
        }
        tx.commit().await.map_err(fail(committing))
    }

    /// Saves the run of a step (inside its transaction): refused when the run already
    /// ended, or when another handle holds its live lease (fencing); a run that rests or
    /// ended gives its lease back.
    async fn save_run(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        id: &str,
        run: &Run,
        body: &str,
    ) -> Result<(), StoreError> {
        let committing = || format!("committing a step of thread `{id}`");
        let stmt = tx
            .prepare_cached(
                "SELECT status, lease_owner IS NOT NULL AND lease_owner <> $2
                        AND lease_until > now()
                 FROM runs WHERE id = $1 FOR UPDATE",
            )
            .await
            .map_err(fail(committing))?;
        let previous = tx
            .query_opt(&stmt, &[&run.id, &self.owner])
            .await
            .map_err(fail(committing))?;
        if let Some(previous) = previous {
            let status = parse_status(previous.get(0), &run.id)?;
            if status.is_terminal() && status != run.status {
                return Err(StoreError::Backend(format!(
                    "refusing a stale step for run `{}`: it already ended as `{}`; nothing \
                     was written",
                    run.id,
                    status.as_str()
                )));
            }
            if previous.get::<_, bool>(1) {
                return Err(StoreError::Backend(format!(
                    "refusing a step for run `{}`: another replica holds its lease (this \
                     one lost it); nothing was written",
                    run.id
                )));
            }
        }
        // A run that rests (waiting for outputs) or ended holds no lease.
        let rests = run.status.is_terminal() || run.status == RunStatus::RequiresAction;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO runs (id, thread_id, status, created_at, body)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body,
                     lease_owner = CASE WHEN $6 THEN NULL ELSE runs.lease_owner END,
                     lease_until = CASE WHEN $6 THEN NULL ELSE runs.lease_until END,
                     cancel_requested = runs.cancel_requested AND NOT $6
                 WHERE runs.thread_id = excluded.thread_id",
            )
            .await
            .map_err(fail(committing))?;
        let saved = tx
            .execute(
                &stmt,
                &[
                    &run.id,
                    &id,
                    &run.status.as_str(),
                    &run.created_at,
                    &body,
                    &rests,
                ],
            )
            .await
            .map_err(fail(|| format!("saving run `{}`", run.id)))?;
        if saved == 0 {
            return Err(StoreError::Backend(format!(
                "refusing a step of thread `{id}`: run `{}` belongs to another thread",
                run.id
            )));
        }
        Ok(())
    }

    async fn do_locked_thread_ids(&self) -> Result<Vec<String>, StoreError> {
        let listing = || "listing locked threads".to_owned();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT id FROM threads WHERE active_run IS NOT NULL ORDER BY pos")
            .await
            .map_err(fail(listing))?;
        let rows = client.query(&stmt, &[]).await.map_err(fail(listing))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn do_claim_run(&self, run_id: &str) -> Result<bool, StoreError> {
        let claiming = || format!("claiming the lease of run `{run_id}`");
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE runs SET lease_owner = $2,
                     lease_until = now() + make_interval(secs => $3)
                 WHERE id = $1
                   AND status NOT IN ('completed', 'failed', 'incomplete', 'cancelled', 'expired')
                   AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < now())",
            )
            .await
            .map_err(fail(claiming))?;
        let claimed = client
            .execute(&stmt, &[&run_id, &self.owner, &self.lease.as_secs_f64()])
            .await
            .map_err(fail(claiming))?;
        Ok(claimed > 0)
    }

    async fn do_renew_lease(&self, run_id: &str) -> Result<Lease, StoreError> {
        let renewing = || format!("renewing the lease of run `{run_id}`");
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE runs SET lease_until = now() + make_interval(secs => $3)
                 WHERE id = $1 AND lease_owner = $2
                 RETURNING cancel_requested",
            )
            .await
            .map_err(fail(renewing))?;
        let row = client
            .query_opt(&stmt, &[&run_id, &self.owner, &self.lease.as_secs_f64()])
            .await
            .map_err(fail(renewing))?;
        Ok(match row {
            Some(row) => Lease::Held {
                cancel_requested: row.get(0),
            },
            None => Lease::Lost,
        })
    }

    async fn do_release_run(&self, run_id: &str) -> Result<(), StoreError> {
        let releasing = || format!("releasing the lease of run `{run_id}`");
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE runs SET lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND lease_owner = $2",
            )
            .await
            .map_err(fail(releasing))?;
        client
            .execute(&stmt, &[&run_id, &self.owner])
            .await
            .map_err(fail(releasing))?;
        Ok(())
    }

    async fn do_request_cancel(&self, run_id: &str) -> Result<bool, StoreError> {
        let requesting = || format!("asking the driver of run `{run_id}` to cancel it");
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE runs SET cancel_requested = true
                 WHERE id = $1 AND lease_owner IS NOT NULL AND lease_owner <> $2
                   AND lease_until > now()
                   AND status IN ('queued', 'in_progress', 'cancelling')",
            )
            .await
            .map_err(fail(requesting))?;
        let requested = client
            .execute(&stmt, &[&run_id, &self.owner])
            .await
            .map_err(fail(requesting))?;
        Ok(requested > 0)
    }

    async fn do_orphaned_runs(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let listing = || "listing runs whose lease expired".to_owned();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id FROM runs
                 WHERE status IN ('queued', 'in_progress', 'cancelling')
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY lease_until NULLS FIRST LIMIT $1",
            )
            .await
            .map_err(fail(listing))?;
        let rows = client
            .query(&stmt, &[&to_i64(limit)])
            .await
            .map_err(fail(listing))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

impl ThreadStore for PostgresStore {
    fn insert_thread<'a>(&'a self, thread: &'a Thread) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.do_insert_thread(thread))
    }

    fn thread<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Thread, StoreError>> {
        Box::pin(self.do_thread(id))
    }

    fn thread_header<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ThreadHeader, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            Self::load_header(&client, id).await
        })
    }

    fn messages<'a>(
        &'a self,
        thread_id: &'a str,
        query: &'a MessageQuery,
    ) -> BoxFuture<'a, Result<MessagePage, StoreError>> {
        Box::pin(self.do_messages(thread_id, query))
    }

    fn message<'a>(
        &'a self,
        thread_id: &'a str,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Message>, StoreError>> {
        Box::pin(self.do_message(thread_id, message_id))
    }

    fn delete_thread<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let deleting = || format!("deleting thread `{id}`");
            let client = self.client().await?;
            let stmt = client
                .prepare_cached("DELETE FROM threads WHERE id = $1")
                .await
                .map_err(fail(deleting))?;
            let deleted = client
                .execute(&stmt, &[&id])
                .await
                .map_err(fail(deleting))?;
            Ok(deleted > 0)
        })
    }

    fn thread_headers(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ThreadHeader>, StoreError>> {
        Box::pin(self.do_thread_headers(limit))
    }

    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Run, StoreError>> {
        Box::pin(self.do_run(id))
    }

    fn runs<'a>(&'a self, thread_id: &'a str) -> BoxFuture<'a, Result<Vec<Run>, StoreError>> {
        Box::pin(self.do_runs(thread_id))
    }

    fn add_user_message<'a>(
        &'a self,
        thread_id: &'a str,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.do_add_user_message(thread_id, message))
    }

    fn set_message_metadata<'a>(
        &'a self,
        thread_id: &'a str,
        message_id: &'a str,
        metadata: &'a Metadata,
    ) -> BoxFuture<'a, Result<Option<Message>, StoreError>> {
        Box::pin(self.do_set_message_metadata(thread_id, message_id, metadata))
    }

    fn update_thread<'a>(
        &'a self,
        header: &'a ThreadHeader,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.do_update_thread(header))
    }

    fn begin_run<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.do_begin_run(run))
    }

    fn commit<'a>(&'a self, step: Step<'a>) -> BoxFuture<'a, Result<(), StoreError>> {
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
        Box::pin(async move { self.do_commit(&owned).await })
    }

    fn locked_thread_ids(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.do_locked_thread_ids())
    }

    fn lease_duration(&self) -> Option<Duration> {
        Some(self.lease)
    }

    fn claim_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.do_claim_run(run_id))
    }

    fn renew_lease<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Lease, StoreError>> {
        Box::pin(self.do_renew_lease(run_id))
    }

    fn release_run<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.do_release_run(run_id))
    }

    fn request_cancel<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.do_request_cancel(run_id))
    }

    fn orphaned_runs(&self, limit: usize) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.do_orphaned_runs(limit))
    }

    /// Never: other replicas may be driving the runs this one sees unfinished. Runs of a
    /// replica that died are taken over when their leases expire instead.
    fn sole_user(&self) -> bool {
        false
    }
}
