//! `clarion threads list|show|delete|export`: the conversations `clarion chat` stored.
//!
//! These commands only read (or delete from) an existing store: a missing `--store` file is
//! an error, never an empty database created as a side effect of looking. `show` renders
//! the stored messages through the same [`Transcript`] renderer as `clarion test` and
//! `/transcript`, so a conversation reads the same everywhere; the thread's messages are
//! replayed as the events that produced them (slot assignments are not messages, so the
//! final slot values are shown in the header instead).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use clarion_engine::Event;
use clarion_engine::Run;
use clarion_engine::{MessageKind, Thread};
use clarion_engine::{StoreError, ThreadHeader, ThreadStore};
use clarion_store::SqliteStore;
use clarion_testing::transcript::{Redactor, Transcript, inline_json};
use serde_json::{Value, json};

use crate::args::{
    ExportThreadFormat, ListFormat, ThreadsArgs, ThreadsCommand, ThreadsDeleteArgs,
    ThreadsExportArgs, ThreadsListArgs, ThreadsShowArgs,
};
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;

pub(crate) fn run(args: &ThreadsArgs) -> Result<Exit, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let store = open(args).await?;
        let store = &*store;
        match &args.command {
            ThreadsCommand::List(list) => self::list(store, args, list).await,
            ThreadsCommand::Show(show) => self::show(store, args, show).await,
            ThreadsCommand::Delete(delete) => self::delete(store, args, delete).await,
            ThreadsCommand::Export(export) => self::export(store, args, export).await,
        }
    })
}

/// Opens an existing store; never creates a SQLite file (a PostgreSQL database gets its
/// schema if it has none, as every replica does).
async fn open(args: &ThreadsArgs) -> Result<Box<dyn ThreadStore>, CliError> {
    if crate::store::is_url(&args.store) {
        let store =
            crate::store::postgres(&args.store, clarion_store_postgres::DEFAULT_LEASE).await?;
        return Ok(Box::new(store));
    }
    if !args.store.exists() {
        return Err(CliError::NoStore(args.store.clone()));
    }
    let unusable = |reason: String| CliError::Store {
        path: args.store.clone(),
        reason,
    };
    if args.store.is_dir() {
        return Err(unusable(
            "it is a directory; pass --store with the database file in it".to_owned(),
        ));
    }
    let store = SqliteStore::open(&args.store).map_err(|e| {
        unusable(format!(
            "{e}; --store must name a thread store written by `clarion chat`"
        ))
    })?;
    Ok(Box::new(store))
}

fn store_error(args: &ThreadsArgs, error: &StoreError) -> CliError {
    CliError::Store {
        path: crate::store::shown(&args.store),
        reason: error.to_string(),
    }
}

/// The thread and its runs, or the one-line "no such thread" error.
async fn load(
    store: &dyn ThreadStore,
    args: &ThreadsArgs,
    id: &str,
) -> Result<(Thread, Vec<Run>), CliError> {
    let thread = store.thread(id).await.map_err(|e| match e {
        StoreError::ThreadNotFound(_) => CliError::NoSuchThread {
            id: id.to_owned(),
            store: crate::store::shown(&args.store),
        },
        other => store_error(args, &other),
    })?;
    let runs = store.runs(id).await.map_err(|e| store_error(args, &e))?;
    Ok((thread, runs))
}

/// One row of `threads list`.
struct Summary {
    id: String,
    flow: String,
    messages: usize,
    created_at: i64,
    last_activity: i64,
    last_run: Option<String>,
}

fn summary(thread: &ThreadHeader, runs: &[Run]) -> Summary {
    let last_message = Some(thread.last_activity);
    let last_run_time = runs
        .iter()
        .flat_map(|r| [Some(r.created_at), r.started_at, r.completed_at])
        .flatten()
        .max();
    let last_activity = [Some(thread.created_at), last_message, last_run_time]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(thread.created_at);
    Summary {
        id: thread.id.clone(),
        flow: thread.flow.clone(),
        messages: thread.message_count,
        created_at: thread.created_at,
        last_activity,
        last_run: runs.last().map(|r| r.status.as_str().to_owned()),
    }
}

/// The newest threads: their headers (no messages are read) and runs.
async fn list(
    store: &dyn ThreadStore,
    args: &ThreadsArgs,
    list: &ThreadsListArgs,
) -> Result<Exit, CliError> {
    let headers = store
        .thread_headers(list.limit.unwrap_or(usize::MAX))
        .await
        .map_err(|e| store_error(args, &e))?;
    let mut rows = Vec::with_capacity(headers.len());
    for header in &headers {
        let runs = store
            .runs(&header.id)
            .await
            .map_err(|e| store_error(args, &e))?;
        rows.push(summary(header, &runs));
    }
    match list.format {
        ListFormat::Json => {
            let items: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "flow": r.flow,
                        "messages": r.messages,
                        "created_at": r.created_at,
                        "last_activity": r.last_activity,
                        "last_run_status": r.last_run,
                    })
                })
                .collect();
            output::out(&format!("{}\n", pretty(&Value::Array(items))));
        }
        ListFormat::Human if rows.is_empty() => output::out(&format!(
            "no threads in {}; `clarion chat FLOW` starts one\n",
            crate::store::shown(&args.store).display()
        )),
        ListFormat::Human => output::out(&table(&rows)),
    }
    Ok(Exit::Success)
}

/// The aligned table of `threads list`.
fn table(rows: &[Summary]) -> String {
    let header = ["ID", "FLOW", "MESSAGES", "LAST ACTIVITY", "LAST RUN"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.flow.clone(),
                r.messages.to_string(),
                utc(r.last_activity),
                r.last_run.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |row: [&str; 5]| {
        let mut text = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i == 2 {
                let _ = write!(text, "{cell:>width$}  ");
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}

async fn show(
    store: &dyn ThreadStore,
    args: &ThreadsArgs,
    show: &ThreadsShowArgs,
) -> Result<Exit, CliError> {
    let (thread, runs) = load(store, args, &show.id).await?;
    let text = match show.format {
        ListFormat::Json => format!("{}\n", pretty(&full_json(&thread, &runs))),
        ListFormat::Human => readable(&thread, &runs),
    };
    output::out(&text);
    Ok(Exit::Success)
}

async fn delete(
    store: &dyn ThreadStore,
    args: &ThreadsArgs,
    delete: &ThreadsDeleteArgs,
) -> Result<Exit, CliError> {
    let (thread, _) = load(store, args, &delete.id).await?;
    if let Some(run) = thread.active_run.as_ref().filter(|_| !delete.force) {
        return Err(CliError::Io(format!(
            "thread `{}` is held by run `{run}`; wait for it to finish, or pass --force if the \
             process running it is gone",
            thread.id
        )));
    }
    match store.delete_thread(&thread.id).await {
        Ok(true) => {
            output::out(&format!(
                "deleted thread {} ({} messages) from {}\n",
                thread.id,
                thread.messages.len(),
                crate::store::shown(&args.store).display()
            ));
            Ok(Exit::Success)
        }
        Ok(false) => Err(CliError::NoSuchThread {
            id: delete.id.clone(),
            store: crate::store::shown(&args.store),
        }),
        Err(e) => Err(store_error(args, &e)),
    }
}

async fn export(
    store: &dyn ThreadStore,
    args: &ThreadsArgs,
    export: &ThreadsExportArgs,
) -> Result<Exit, CliError> {
    let (thread, runs) = load(store, args, &export.id).await?;
    let text = match export.format {
        ExportThreadFormat::Json => format!("{}\n", pretty(&full_json(&thread, &runs))),
        ExportThreadFormat::Transcript => readable(&thread, &runs),
    };
    match &export.output {
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))?;
            output::err(&format!(
                "thread {} written to {}\n",
                thread.id,
                path.display()
            ));
        }
        None => output::out(&text),
    }
    Ok(Exit::Success)
}

/// The whole thread and its runs: what `show --format json` and `export` write.
fn full_json(thread: &Thread, runs: &[Run]) -> Value {
    json!({ "thread": thread, "runs": runs })
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A header (id, flow, times, slots, metadata, what is pending) and the transcript.
fn readable(thread: &Thread, runs: &[Run]) -> String {
    let row = summary(&thread.header(), runs);
    let mut out = format!(
        "thread {} · flow {} · {} · {}\ncreated {} · last activity {}\n",
        thread.id,
        thread.flow,
        plural(row.messages, "message"),
        plural(runs.len(), "run"),
        utc(thread.created_at),
        utc(row.last_activity),
    );
    if !thread.slots.is_empty() {
        let slots: Vec<String> = thread
            .slots
            .iter()
            .map(|(k, v)| format!("{k} = {}", inline_json(v)))
            .collect();
        let _ = writeln!(out, "slots: {}", slots.join(", "));
    }
    if !thread.metadata.is_empty() {
        let pairs: Vec<String> = thread
            .metadata
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        let _ = writeln!(out, "metadata: {}", pairs.join(", "));
    }
    if let Some(pending) = &thread.pending {
        let _ = writeln!(
            out,
            "pending: {} waits for {}",
            pending.tool,
            pending.missing.join(", ")
        );
    }
    if let Some(run) = &thread.active_run {
        let _ = writeln!(out, "held by run {run}");
    }
    out.push('\n');
    let transcript = transcript(thread, runs);
    if transcript.is_empty() {
        out.push_str("(no messages yet)\n");
    } else {
        out.push_str(&transcript);
    }
    out
}

/// Replays the stored messages through the transcript renderer, with each run's outcome
/// after its messages. Runs that left no message (a model that could not be reached) are
/// shown before the next user message.
fn transcript(thread: &Thread, runs: &[Run]) -> String {
    let with_messages: HashSet<&str> = thread
        .messages
        .iter()
        .filter_map(|m| m.run_id.as_deref())
        .collect();
    let mut replay = Replay {
        transcript: Transcript::new(Redactor::new()),
        runs,
        shown: HashSet::new(),
    };
    let mut current: Option<&str> = None;
    // Arguments as called, so a tool's start does not print them a second time.
    let mut called: HashMap<String, Value> = HashMap::new();
    for message in &thread.messages {
        if message.run_id.as_deref() != current {
            replay.close(current);
        }
        current = message.run_id.as_deref();
        let events = match &message.kind {
            MessageKind::User { text } => {
                let silent: Vec<&str> = runs
                    .iter()
                    .filter(|r| {
                        r.created_at < message.created_at && !with_messages.contains(r.id.as_str())
                    })
                    .map(|r| r.id.as_str())
                    .collect();
                for id in silent {
                    replay.close(Some(id));
                }
                replay.transcript.user(text);
                continue;
            }
            MessageKind::Assistant { text } => vec![Event::AssistantMessage { text: text.clone() }],
            MessageKind::ToolCalls { text, calls } => {
                let mut events = Vec::new();
                if let Some(text) = text.as_ref().filter(|t| !t.trim().is_empty()) {
                    events.push(Event::AssistantMessage { text: text.clone() });
                }
                for call in calls {
                    called.insert(
                        call.id.clone(),
                        serde_json::from_str(&call.arguments).unwrap_or(Value::Null),
                    );
                    events.push(Event::ToolCalled {
                        call_id: call.id.clone(),
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                    });
                }
                events
            }
            MessageKind::ToolOutput {
                call_id,
                name,
                status,
                content,
            } => vec![
                Event::ToolStarted {
                    call_id: call_id.clone(),
                    name: name.clone(),
                    arguments: called.get(call_id).cloned().unwrap_or(Value::Null),
                },
                Event::ToolFinished {
                    call_id: call_id.clone(),
                    name: name.clone(),
                    status: *status,
                    content: content.clone(),
                },
            ],
            MessageKind::Context { tool, text } => vec![Event::ContextInjected {
                tool: tool.clone(),
                text: text.clone(),
            }],
            MessageKind::Question { .. } => question_events(&message.kind, &called),
        };
        replay.transcript.events(&events);
    }
    replay.close(current);
    for run in runs {
        replay.close(Some(&run.id));
    }
    replay.transcript.finish()
}

/// The transcript being replayed, and which runs' outcomes it already shows.
struct Replay<'a> {
    transcript: Transcript,
    runs: &'a [Run],
    shown: HashSet<String>,
}

impl Replay<'_> {
    /// Shows the outcome of run `id`, once.
    fn close(&mut self, id: Option<&str>) {
        let Some(run) = id.and_then(|id| self.runs.iter().find(|r| r.id == id)) else {
            return;
        };
        if self.shown.insert(run.id.clone()) {
            self.transcript.run(run);
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `YYYY-MM-DD HH:MM UTC` from milliseconds since the epoch (no time-zone database needed).
fn utc(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        in_day / 3600,
        in_day % 3600 / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The event a stored question stands for: a confirmation, or a question for parameters.
fn question_events(kind: &MessageKind, called: &HashMap<String, Value>) -> Vec<Event> {
    match kind {
        MessageKind::Question {
            call_id,
            tool,
            text,
            confirm: true,
            ..
        } => vec![Event::ConfirmationAsked {
            call_id: call_id.clone(),
            tool: tool.clone(),
            args: match called.get(call_id) {
                Some(Value::Object(args)) => args.clone(),
                _ => serde_json::Map::new(),
            },
            text: text.clone(),
        }],
        MessageKind::Question {
            call_id,
            tool,
            params,
            text,
            confirm: false,
        } => vec![Event::QuestionAsked {
            call_id: call_id.clone(),
            tool: tool.clone(),
            params: params.clone(),
            text: text.clone(),
        }],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_665_180_000), "2026-11-26 03:53 UTC");
        assert_eq!(utc(-60_000), "1969-12-31 23:59 UTC");
    }
}
