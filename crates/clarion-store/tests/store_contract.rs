//! The `ThreadStore` contract, run against every store: the memory store, SQLite in
//! memory and SQLite in a file. A store that passes these behaves the same under the
//! engine. SQLite-only behaviour (corrupt files, schema versions, reopening, two
//! connections on one file) follows, and an ignored measurement of load time.

use std::path::{Path, PathBuf};

use clarion_engine::run::{Ask, LastError, Run, RunStatus, StagedTurn, Usage};
use clarion_engine::store::{MessageQuery, Order, Step, StoreError, ThreadStore};
use clarion_engine::thread::{
    Message, MessageKind, Metadata, OutputStatus, PendingCall, Thread, ToolCall,
};
use clarion_store::SqliteStore;
use clarion_store::sqlite::{DEFAULT_PATH, SCHEMA_VERSION};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

// ---- fixtures -----------------------------------------------------------------------------

fn thread(id: &str) -> Thread {
    let metadata =
        Metadata::new([("user".to_owned(), "ada".to_owned())]).unwrap_or_else(|e| panic!("{e}"));
    Thread::new(
        id.to_owned(),
        "personal-finance".to_owned(),
        1_000,
        metadata,
    )
}

fn message(id: &str, run_id: Option<&str>, kind: MessageKind) -> Message {
    Message {
        id: id.to_owned(),
        run_id: run_id.map(str::to_owned),
        created_at: 2_000,
        kind,
        metadata: Metadata::default(),
    }
}

fn user(id: &str, text: &str) -> Message {
    message(
        id,
        None,
        MessageKind::User {
            text: text.to_owned(),
        },
    )
}

fn run(id: &str, thread_id: &str) -> Run {
    Run::new(id.to_owned(), thread_id.to_owned(), 3_000)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// A step's worth of every message kind, for `run_id`.
fn turn(run_id: &str) -> Vec<Message> {
    let r = Some(run_id);
    vec![
        message(
            "msg_calls",
            r,
            MessageKind::ToolCalls {
                text: Some("Let me check.".to_owned()),
                calls: vec![
                    ToolCall {
                        id: "call_1".to_owned(),
                        name: "calculate_savings_timeline".to_owned(),
                        arguments: r#"{"goal_amount": 50000}"#.to_owned(),
                    },
                    ToolCall {
                        id: "call_2".to_owned(),
                        name: "analyze_budget".to_owned(),
                        arguments: "not json at all".to_owned(),
                    },
                ],
            },
        ),
        message(
            "msg_out1",
            r,
            MessageKind::ToolOutput {
                call_id: "call_1".to_owned(),
                name: "calculate_savings_timeline".to_owned(),
                status: OutputStatus::NeedsInput,
                content: r#"{"status":"needs_input"}"#.to_owned(),
            },
        ),
        message(
            "msg_out2",
            r,
            MessageKind::ToolOutput {
                call_id: "call_2".to_owned(),
                name: "analyze_budget".to_owned(),
                status: OutputStatus::Error,
                content: r#"{"error":{"kind":"invalid_arguments","message":"…"}}"#.to_owned(),
            },
        ),
        message(
            "msg_ctx",
            r,
            MessageKind::Context {
                tool: "analyze_budget".to_owned(),
                text: "Ünïcödé context — with \"quotes\" and\nnewlines.".to_owned(),
            },
        ),
        message(
            "msg_q",
            r,
            MessageKind::Question {
                call_id: "call_1".to_owned(),
                tool: "calculate_savings_timeline".to_owned(),
                params: vec!["monthly_income".to_owned(), "monthly_savings".to_owned()],
                text: "What is your income?".to_owned(),
            },
        ),
    ]
}

/// A run with every optional part filled, so the round trip covers them.
fn busy_run(id: &str, thread_id: &str) -> Run {
    let mut run = run(id, thread_id);
    run.status = RunStatus::RequiresAction;
    run.steps = 3;
    run.usage = Usage {
        prompt_tokens: 120,
        completion_tokens: 40,
    };
    run.consecutive_failures = 1;
    run.started_at = Some(3_001);
    run.expires_at = Some(9_000);
    run.last_error = Some(LastError {
        code: clarion_engine::codes::ErrorCode::Model(
            clarion_engine::codes::ModelErrorKind::Unavailable,
        ),
        message: "earlier hiccup".to_owned(),
    });
    run.required_action = vec![ToolCall {
        id: "call_9".to_owned(),
        name: "book_flight".to_owned(),
        arguments: "{}".to_owned(),
    }];
    run.staged = Some(StagedTurn {
        outputs: vec![user("msg_staged", "staged")],
        contexts: Vec::new(),
        asks: vec![Ask {
            call_id: "call_8".to_owned(),
            tool: "book_flight".to_owned(),
            args: object(json!({ "offer_id": "o1" })),
            missing: vec!["travelers".to_owned()],
        }],
    });
    run
}

async fn begin(store: &dyn ThreadStore, run: &Run) -> Thread {
    store
        .begin_run(run)
        .await
        .unwrap_or_else(|e| panic!("begin_run {}: {e}", run.id));
    load(store, &run.thread_id).await
}

async fn load(store: &dyn ThreadStore, id: &str) -> Thread {
    store
        .thread(id)
        .await
        .unwrap_or_else(|e| panic!("thread {id}: {e}"))
}

async fn commit(store: &dyn ThreadStore, thread: &Thread, mark: usize, run: Option<&Run>) {
    store
        .commit(Step {
            thread,
            appended: &thread.messages[mark..],
            run,
        })
        .await
        .unwrap_or_else(|e| panic!("commit: {e}"));
}

/// Ends `run` and unlocks its thread.
async fn finish(store: &dyn ThreadStore, thread_id: &str, run: &mut Run, status: RunStatus) {
    let mut thread = load(store, thread_id).await;
    thread.active_run = None;
    run.status = status;
    run.completed_at = Some(4_000);
    commit(store, &thread, thread.messages.len(), Some(run)).await;
}

// ---- the contract -------------------------------------------------------------------------

async fn insert_load_delete(store: &dyn ThreadStore) {
    let mut t = thread("thread_a");
    let mut hello = user("msg_1", "hello");
    hello.metadata =
        Metadata::new([("source".to_owned(), "web".to_owned())]).unwrap_or_else(|e| panic!("{e}"));
    t.messages.push(hello);
    t.messages.push(user("msg_2", "no metadata"));
    t.slots = object(json!({ "goal_amount": 50000, "nested": { "list": [1, 2.5, null] } }));
    t.pending = Some(PendingCall {
        call_id: "call_0".to_owned(),
        tool: "calculate_savings_timeline".to_owned(),
        known: object(json!({ "goal_amount": 50000 })),
        missing: vec!["monthly_income".to_owned()],
    });
    store
        .insert_thread(&t)
        .await
        .unwrap_or_else(|e| panic!("insert: {e}"));
    assert_eq!(load(store, "thread_a").await, t);
    assert_eq!(
        store.thread("thread_nope").await,
        Err(StoreError::ThreadNotFound("thread_nope".to_owned()))
    );

    let r = run("run_a", "thread_a");
    begin(store, &r).await;
    assert_eq!(store.delete_thread("thread_a").await, Ok(true));
    assert_eq!(
        store.thread("thread_a").await,
        Err(StoreError::ThreadNotFound("thread_a".to_owned()))
    );
    assert_eq!(
        store.run("run_a").await,
        Err(StoreError::RunNotFound("run_a".to_owned())),
        "deleting a thread deletes its runs"
    );
    assert_eq!(store.runs("thread_a").await, Ok(Vec::new()));
    assert_eq!(store.delete_thread("thread_a").await, Ok(false));
    assert_eq!(store.thread_headers(10).await, Ok(Vec::new()));

    // The id is free again, and the new thread starts with its own (empty) history.
    store
        .insert_thread(&thread("thread_a"))
        .await
        .unwrap_or_else(|e| panic!("re-insert: {e}"));
    assert_eq!(load(store, "thread_a").await, thread("thread_a"));
}

async fn duplicate_thread(store: &dyn ThreadStore) {
    store
        .insert_thread(&thread("thread_d"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut other = thread("thread_d");
    "other".clone_into(&mut other.flow);
    assert_eq!(
        store.insert_thread(&other).await,
        Err(StoreError::Duplicate("thread_d".to_owned()))
    );
    assert_eq!(
        load(store, "thread_d").await.flow,
        "personal-finance",
        "unchanged"
    );
}

async fn thread_ids_newest_first_with_limit(store: &dyn ThreadStore) {
    for i in 1..=5 {
        store
            .insert_thread(&thread(&format!("thread_{i}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let ids = async |limit| {
        store
            .thread_headers(limit)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|h| h.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(3).await, ["thread_5", "thread_4", "thread_3"]);
    assert_eq!(ids(0).await, Vec::<String>::new());
    assert_eq!(ids(usize::MAX).await.len(), 5);
    assert_eq!(store.delete_thread("thread_4").await, Ok(true));
    store
        .insert_thread(&thread("thread_6"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ids(usize::MAX).await,
        ["thread_6", "thread_5", "thread_3", "thread_2", "thread_1"]
    );
}

async fn add_user_message_appends_unless_locked(store: &dyn ThreadStore) {
    store
        .insert_thread(&thread("thread_u"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store
            .add_user_message("thread_nope", &user("msg_x", "x"))
            .await,
        Err(StoreError::ThreadNotFound("thread_nope".to_owned()))
    );
    store
        .add_user_message("thread_u", &user("msg_1", "one"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .add_user_message("thread_u", &user("msg_2", "two"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    begin(store, &run("run_u", "thread_u")).await;
    assert_eq!(
        store
            .add_user_message("thread_u", &user("msg_3", "three"))
            .await,
        Err(StoreError::Locked {
            thread_id: "thread_u".to_owned(),
            run_id: "run_u".to_owned(),
        })
    );
    let ids: Vec<String> = load(store, "thread_u")
        .await
        .messages
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, ["msg_1", "msg_2"], "nothing appended while locked");
}

async fn message_metadata_is_replaced_unless_locked(store: &dyn ThreadStore) {
    store
        .insert_thread(&thread("thread_mm"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .add_user_message("thread_mm", &user("msg_1", "one"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tagged =
        Metadata::new([("channel".to_owned(), "web".to_owned())]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store
            .set_message_metadata("thread_mm", "msg_1", &tagged)
            .await
            .map(|m| m.map(|m| m.metadata)),
        Ok(Some(tagged.clone()))
    );
    assert_eq!(
        store
            .set_message_metadata("thread_mm", "msg_nope", &tagged)
            .await,
        Ok(None)
    );
    assert_eq!(
        store
            .set_message_metadata("thread_nope", "msg_1", &tagged)
            .await,
        Err(StoreError::ThreadNotFound("thread_nope".to_owned()))
    );
    let loaded = load(store, "thread_mm").await;
    assert_eq!(loaded.messages[0].metadata, tagged);
    assert_eq!(
        loaded.messages[0].text(),
        Some("one"),
        "only the metadata changed"
    );
    begin(store, &run("run_mm", "thread_mm")).await;
    assert_eq!(
        store
            .set_message_metadata("thread_mm", "msg_1", &Metadata::default())
            .await,
        Err(StoreError::Locked {
            thread_id: "thread_mm".to_owned(),
            run_id: "run_mm".to_owned(),
        })
    );
    assert_eq!(load(store, "thread_mm").await.messages[0].metadata, tagged);
}

async fn begin_run_locks_until_the_run_is_terminal(store: &dyn ThreadStore) {
    store
        .insert_thread(&thread("thread_l"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.begin_run(&run("run_x", "thread_nope")).await,
        Err(StoreError::ThreadNotFound("thread_nope".to_owned()))
    );
    let mut first = run("run_1", "thread_l");
    let locked = begin(store, &first).await;
    assert_eq!(locked.active_run.as_deref(), Some("run_1"));
    assert_eq!(
        load(store, "thread_l").await.active_run.as_deref(),
        Some("run_1")
    );
    assert_eq!(
        store.begin_run(&run("run_2", "thread_l")).await,
        Err(StoreError::Locked {
            thread_id: "thread_l".to_owned(),
            run_id: "run_1".to_owned(),
        })
    );
    assert_eq!(
        store.run("run_2").await,
        Err(StoreError::RunNotFound("run_2".to_owned())),
        "a refused run is not stored"
    );

    // Terminal, even with the thread still naming it: the lock is free.
    first.status = RunStatus::Failed;
    commit(store, &load(store, "thread_l").await, 0, Some(&first)).await;
    assert_eq!(
        load(store, "thread_l").await.active_run.as_deref(),
        Some("run_1")
    );
    store
        .add_user_message("thread_l", &user("msg_1", "again"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = begin(store, &run("run_2", "thread_l")).await;
    assert_eq!(second.active_run.as_deref(), Some("run_2"));
    assert_eq!(
        second.messages.len(),
        1,
        "begin_run returns the stored thread"
    );

    // Unlocked by the engine's final commit.
    let mut second = run("run_2", "thread_l");
    finish(store, "thread_l", &mut second, RunStatus::Completed).await;
    assert_eq!(load(store, "thread_l").await.active_run, None);
    begin(store, &run("run_3", "thread_l")).await;
}

async fn commit_appends_exactly_the_new_messages(store: &dyn ThreadStore) {
    store
        .insert_thread(&thread("thread_c"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .add_user_message("thread_c", &user("msg_u", "plan my savings"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut r = run("run_c", "thread_c");
    let mut t = begin(store, &r).await;
    r.status = RunStatus::InProgress;
    r.started_at = Some(3_001);
    commit(store, &t, t.messages.len(), Some(&r)).await;
    assert_eq!(store.run("run_c").await, Ok(r.clone()));

    // One step: every kind of message, slots, metadata and a pending call.
    let mark = t.messages.len();
    t.messages.extend(turn("run_c"));
    t.slots.insert("monthly_income".to_owned(), json!(5000.5));
    t.metadata
        .merge([("plan".to_owned(), "house".to_owned())])
        .unwrap_or_else(|e| panic!("{e}"));
    t.pending = Some(PendingCall {
        call_id: "call_1".to_owned(),
        tool: "calculate_savings_timeline".to_owned(),
        known: object(json!({ "goal_amount": 50000 })),
        missing: vec!["monthly_income".to_owned(), "monthly_savings".to_owned()],
    });
    let r = busy_run("run_c", "thread_c");
    commit(store, &t, mark, Some(&r)).await;
    let stored = load(store, "thread_c").await;
    assert_eq!(stored, t, "load gives back exactly what was committed");
    let kinds: Vec<&str> = stored
        .messages
        .iter()
        .map(|m| match m.kind {
            MessageKind::User { .. } => "user",
            MessageKind::Assistant { .. } => "assistant",
            MessageKind::ToolCalls { .. } => "tool_calls",
            MessageKind::ToolOutput { .. } => "tool_output",
            MessageKind::Context { .. } => "context",
            MessageKind::Question { .. } => "question",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "user",
            "tool_calls",
            "tool_output",
            "tool_output",
            "context",
            "question"
        ]
    );
    assert_eq!(
        store.run("run_c").await,
        Ok(r.clone()),
        "every run field round-trips"
    );

    // A step that appends nothing (metadata only, no run) changes only what it carries.
    t.metadata
        .merge([("plan".to_owned(), String::new())])
        .unwrap_or_else(|e| panic!("{e}"));
    t.pending = None;
    commit(store, &t, t.messages.len(), None).await;
    assert_eq!(load(store, "thread_c").await, t);
    assert_eq!(
        store.run("run_c").await,
        Ok(r),
        "no run in the step: run unchanged"
    );

    // The last step: one message, the run ends, the thread unlocks.
    let mark = t.messages.len();
    t.messages.push(message(
        "msg_done",
        Some("run_c"),
        MessageKind::Assistant {
            text: "About 4.2 years.".to_owned(),
        },
    ));
    t.active_run = None;
    let mut done = run("run_c", "thread_c");
    done.status = RunStatus::Completed;
    commit(store, &t, mark, Some(&done)).await;
    assert_eq!(load(store, "thread_c").await, t);
    assert_eq!(load(store, "thread_c").await.messages.len(), 7);

    let ghost = thread("thread_ghost");
    assert_eq!(
        store
            .commit(Step {
                thread: &ghost,
                appended: &[],
                run: None,
            })
            .await,
        Err(StoreError::ThreadNotFound("thread_ghost".to_owned()))
    );
}

async fn runs_are_listed_oldest_first(store: &dyn ThreadStore) {
    for id in ["thread_r", "thread_s"] {
        store
            .insert_thread(&thread(id))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut ids = Vec::new();
    for i in 1..=3 {
        let mut r = run(&format!("run_{i}"), "thread_r");
        begin(store, &r).await;
        finish(store, "thread_r", &mut r, RunStatus::Completed).await;
        ids.push(r.id);
    }
    begin(store, &run("run_s", "thread_s")).await;
    let listed: Vec<(String, RunStatus)> = store
        .runs("thread_r")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| (r.id, r.status))
        .collect();
    assert_eq!(
        listed,
        ids.iter()
            .map(|id| (id.clone(), RunStatus::Completed))
            .collect::<Vec<_>>()
    );
    assert_eq!(store.runs("thread_nope").await, Ok(Vec::new()));
    assert_eq!(
        store.run("run_nope").await,
        Err(StoreError::RunNotFound("run_nope".to_owned()))
    );
    assert_eq!(
        store
            .runs("thread_s")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .len(),
        1
    );
}

/// A thread of 12 messages over two runs, every kind, for paging.
async fn paged_thread(store: &dyn ThreadStore) -> Thread {
    let mut t = thread("thread_p");
    t.messages.push(user("msg_u1", "first"));
    t.messages.extend(turn("run_a"));
    t.messages.push(message(
        "msg_reply",
        Some("run_a"),
        MessageKind::Assistant {
            text: "done".to_owned(),
        },
    ));
    t.messages.push(user("msg_u2", "second"));
    for (i, m) in turn("run_b").into_iter().enumerate() {
        t.messages.push(Message {
            id: format!("{}_b{i}", m.id),
            ..m
        });
    }
    for (i, m) in t.messages.iter_mut().enumerate() {
        m.created_at = 2_000 + i64::try_from(i).unwrap_or_default();
    }
    store
        .insert_thread(&t)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t
}

async fn headers_count_without_loading_messages(store: &dyn ThreadStore) {
    let t = paged_thread(store).await;
    let header = store
        .thread_header("thread_p")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(header, t.header());
    assert_eq!(header.message_count, 13);
    assert_eq!(header.last_activity, 2_012);
    store
        .add_user_message("thread_p", &user("msg_u3", "third"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let header = store
        .thread_header("thread_p")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((header.message_count, header.last_activity), (14, 2_000));
    assert_eq!(
        store.thread_header("thread_nope").await,
        Err(StoreError::ThreadNotFound("thread_nope".to_owned()))
    );
    let listed = store
        .thread_headers(10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed, vec![header]);
}

/// Every page a client can ask for is the reference page ([`MessageQuery::select`] over
/// the whole thread): orders, limits, cursors either side, a run, people's messages only.
async fn message_pages_match_the_reference(store: &dyn ThreadStore) {
    let t = paged_thread(store).await;
    let cursors: Vec<Option<String>> = [
        None,
        Some("msg_u1"),
        Some("msg_ctx"),
        Some("msg_u2"),
        Some("msg_q_b4"),
    ]
    .into_iter()
    .map(|c| c.map(str::to_owned))
    .collect();
    let mut checked = 0;
    for order in [Order::Asc, Order::Desc] {
        for limit in [1, 2, 5, 20] {
            for after in &cursors {
                for before in &cursors {
                    for run_id in [None, Some("run_a".to_owned())] {
                        for shown_only in [false, true] {
                            let query = MessageQuery {
                                order,
                                limit,
                                after: after.clone(),
                                before: before.clone(),
                                run_id: run_id.clone(),
                                shown_only,
                            };
                            let expected = query.select("thread_p", t.messages.iter());
                            let got = store.messages("thread_p", &query).await;
                            assert_eq!(got, expected, "{query:?}");
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * 4 * 5 * 5 * 2 * 2);
    let newest = store
        .messages("thread_p", &MessageQuery::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        newest.messages.first().map(|m| m.id.as_str()),
        Some("msg_q_b4")
    );
    assert_eq!(newest.messages.len(), 13);
    assert!(!newest.has_more);
    assert_eq!(
        store
            .messages(
                "thread_p",
                &MessageQuery {
                    after: Some("msg_gone".to_owned()),
                    ..MessageQuery::default()
                }
            )
            .await,
        Err(StoreError::MessageNotFound {
            thread_id: "thread_p".to_owned(),
            message_id: "msg_gone".to_owned()
        })
    );
    assert_eq!(
        store
            .message("thread_p", "msg_ctx")
            .await
            .map(|m| m.map(|m| m.id)),
        Ok(Some("msg_ctx".to_owned()))
    );
    assert_eq!(store.message("thread_p", "msg_gone").await, Ok(None));
}

async fn update_thread_rewrites_the_row_unless_locked(store: &dyn ThreadStore) {
    let t = paged_thread(store).await;
    let mut header = t.header();
    "travel-booking".clone_into(&mut header.flow);
    header.slots = object(json!({ "origin": "LIS" }));
    header.metadata = Metadata::default();
    store
        .update_thread(&header)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored = load(store, "thread_p").await;
    assert_eq!(stored.header(), header);
    assert_eq!(stored.messages, t.messages, "messages are untouched");
    let r = run("run_u", "thread_p");
    begin(store, &r).await;
    "other".clone_into(&mut header.flow);
    assert_eq!(
        store.update_thread(&header).await,
        Err(StoreError::Locked {
            thread_id: "thread_p".to_owned(),
            run_id: "run_u".to_owned()
        })
    );
}

/// Runs each contract test against every store.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(#[tokio::test]
            async fn $name() {
                super::$name(&clarion_engine::store::MemoryStore::new()).await;
            })*
        }
        mod sqlite_in_memory {
            $(#[tokio::test]
            async fn $name() {
                super::$name(&super::sqlite_memory()).await;
            })*
        }
        mod sqlite_file {
            $(#[tokio::test]
            async fn $name() {
                let (_dir, store) = super::sqlite_file();
                super::$name(&store).await;
            })*
        }
    };
}

contract!(
    insert_load_delete,
    duplicate_thread,
    thread_ids_newest_first_with_limit,
    add_user_message_appends_unless_locked,
    message_metadata_is_replaced_unless_locked,
    locked_threads_are_listed,
    begin_run_locks_until_the_run_is_terminal,
    commit_appends_exactly_the_new_messages,
    runs_are_listed_oldest_first,
    headers_count_without_loading_messages,
    message_pages_match_the_reference,
    update_thread_rewrites_the_row_unless_locked,
);

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

fn backend(result: Result<impl std::fmt::Debug, StoreError>) -> String {
    match result {
        Err(StoreError::Backend(message)) => message,
        other => panic!("expected a Backend error, got {other:?}"),
    }
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
async fn a_step_that_does_not_continue_the_stored_history_is_refused() {
    let store = sqlite_memory();
    store
        .insert_thread(&thread("thread_i"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .add_user_message("thread_i", &user("msg_u", "hi"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = load(&store, "thread_i").await;

    // Claims to append two messages but the thread only grew by one.
    let mut t = before.clone();
    t.messages.push(user("msg_2", "two"));
    t.slots.insert("x".to_owned(), json!(1));
    let message = backend(
        store
            .commit(Step {
                thread: &t,
                appended: &t.messages[0..],
                run: None,
            })
            .await,
    );
    assert!(message.contains("thread `thread_i`"), "{message}");
    assert!(message.contains("holds 1 messages"), "{message}");
    // A stale thread (the store has moved on) appending nothing.
    let message = backend(
        store
            .commit(Step {
                thread: &thread("thread_i"),
                appended: &[],
                run: None,
            })
            .await,
    );
    assert!(message.contains("nothing was written"), "{message}");
    // Right counts, but `appended` is not the thread's tail.
    let other = [user("msg_other", "other")];
    backend(
        store
            .commit(Step {
                thread: &t,
                appended: &other,
                run: None,
            })
            .await,
    );
    assert_eq!(
        load(&store, "thread_i").await,
        before,
        "nothing was written"
    );
}

#[tokio::test]
async fn a_run_that_ended_is_not_revived_by_a_stale_step() {
    let store = sqlite_memory();
    store
        .insert_thread(&thread("thread_z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut r = run("run_z", "thread_z");
    let t = begin(&store, &r).await;
    // Another process recovers the run as failed…
    finish(&store, "thread_z", &mut r, RunStatus::Failed).await;
    // …and the original process, still alive, commits its next step.
    let mut stale = r.clone();
    stale.status = RunStatus::InProgress;
    let message = backend(
        store
            .commit(Step {
                thread: &t,
                appended: &[],
                run: Some(&stale),
            })
            .await,
    );
    assert!(message.contains("already ended as `failed`"), "{message}");
    assert_eq!(load(&store, "thread_z").await.active_run, None);
    assert_eq!(
        store.run("run_z").await.map(|r| r.status),
        Ok(RunStatus::Failed)
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

async fn locked_threads_are_listed(store: &dyn ThreadStore) {
    for id in ["thread_l1", "thread_l2", "thread_l3"] {
        store
            .insert_thread(&thread(id))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(store.locked_thread_ids().await, Ok(Vec::new()));
    begin(store, &run("run_l2", "thread_l2")).await;
    assert_eq!(
        store.locked_thread_ids().await,
        Ok(vec!["thread_l2".to_owned()])
    );
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
