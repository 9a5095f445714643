//! The [`ThreadStore`] contract: one suite every store must pass — the memory store, SQLite
//! (in memory and in a file), PostgreSQL, and any store an embedding application writes.
//!
//! Each check is an `async fn` taking `&dyn ThreadStore` that panics when the store breaks
//! the contract; [`store_contract!`](crate::store_contract) turns them into one
//! `#[tokio::test]` each for a store made by a fixture, so a new store runs the same suite
//! with one line. Behind the `contract` feature: only test suites need it. The fixtures
//! (threads, messages, runs with every optional part filled) are public too, for a store's
//! own tests.
#![allow(clippy::missing_panics_doc)]

use serde_json::{Map, Value, json};

use crate::run::{Ask, LastError, Run, RunStatus, StagedTurn, Usage};
use crate::store::{MessageQuery, Order, Step, StoreError, ThreadStore};
use crate::thread::{
    Handoff, Message, MessageKind, Metadata, OutputStatus, PendingCall, Thread, ToolCall,
};

/// What a contract test runs against: a store, and whatever must live as long as it (a
/// temporary directory, a database to drop).
pub trait Fixture {
    /// The store under test.
    fn store(&self) -> &dyn ThreadStore;
}

impl<S: ThreadStore> Fixture for S {
    fn store(&self) -> &dyn ThreadStore {
        self
    }
}

/// Leases between two handles of one shared store (two processes, two replicas), each
/// leasing for `lease`: a new run's lease is its creator's; another handle cannot claim it
/// until it expires, sees it as an orphan only then, and can ask its holder to cancel; the
/// holder that lost it is fenced off (its step refused, nothing written); a released lease
/// is free. Not in [`store_contract!`](crate::store_contract): it needs two handles.
pub async fn leases_are_exclusive_until_they_expire_and_fence_the_old_holder(
    first: &dyn ThreadStore,
    second: &dyn ThreadStore,
    lease: std::time::Duration,
) {
    use crate::store::Lease;
    assert_eq!(first.lease_duration(), Some(lease));
    first
        .insert_thread(&thread("thread_l"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = run("run_l", "thread_l");
    let t = begin(first, &r).await;
    // The creator holds the new run's lease.
    assert_eq!(first.claim_run("run_l").await, Ok(true));
    assert_eq!(
        second.claim_run("run_l").await,
        Ok(false),
        "held by the first"
    );
    assert_eq!(second.orphaned_runs(10).await, Ok(Vec::new()));
    let held = |cancel_requested| Ok(Lease::Held { cancel_requested });
    assert_eq!(first.renew_lease("run_l").await, held(false));
    // Another handle asks for a cancel; the holder sees it at its next renewal.
    assert_eq!(second.request_cancel("run_l").await, Ok(true));
    assert_eq!(first.request_cancel("run_l").await, Ok(false), "its own");
    assert_eq!(first.renew_lease("run_l").await, held(true));
    // The first stops renewing (killed): the lease expires; the second sees the orphan
    // and takes it.
    tokio::time::sleep(lease + lease / 4).await;
    assert_eq!(second.orphaned_runs(10).await, Ok(vec!["run_l".to_owned()]));
    assert_eq!(second.claim_run("run_l").await, Ok(true));
    assert_eq!(first.renew_lease("run_l").await, Ok(Lease::Lost));
    assert_eq!(second.orphaned_runs(10).await, Ok(Vec::new()));
    // A step from the first, which lost the lease, is refused; the second's goes through.
    let mut stale = r.clone();
    stale.steps = 1;
    let step = || Step {
        thread: &t,
        appended: &[],
        run: Some(&stale),
    };
    let refused = first.commit(step()).await;
    assert!(
        matches!(&refused, Err(StoreError::Backend(m)) if m.contains("holds its lease")),
        "{refused:?}"
    );
    second
        .commit(step())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    second
        .release_run("run_l")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.claim_run("run_l").await, Ok(true), "released");
}

/// A fixture: `thread`.
#[must_use]
pub fn thread(id: &str) -> Thread {
    let metadata =
        Metadata::new([("user".to_owned(), "ada".to_owned())]).unwrap_or_else(|e| panic!("{e}"));
    Thread::new(
        id.to_owned(),
        "personal-finance".to_owned(),
        1_000,
        metadata,
    )
}

/// A fixture: `message`.
#[must_use]
pub fn message(id: &str, run_id: Option<&str>, kind: MessageKind) -> Message {
    Message {
        id: id.to_owned(),
        run_id: run_id.map(str::to_owned),
        created_at: 2_000,
        kind,
        metadata: Metadata::default(),
    }
}

/// A fixture: `user`.
#[must_use]
pub fn user(id: &str, text: &str) -> Message {
    message(
        id,
        None,
        MessageKind::User {
            text: text.to_owned(),
        },
    )
}

/// A fixture: `run`.
#[must_use]
pub fn run(id: &str, thread_id: &str) -> Run {
    Run::new(id.to_owned(), thread_id.to_owned(), 3_000)
}

/// A fixture: `object`.
#[must_use]
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// A step's worth of every message kind, for `run_id`.
#[must_use]
pub fn turn(run_id: &str) -> Vec<Message> {
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
                confirm: false,
            },
        ),
    ]
}

/// A run with every optional part filled, so the round trip covers them.
#[must_use]
pub fn busy_run(id: &str, thread_id: &str) -> Run {
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
        code: crate::codes::ErrorCode::Model(crate::codes::ModelErrorKind::Unavailable),
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
            confirm: None,
            rejected: Vec::new(),
            asked: std::collections::BTreeMap::new(),
        }],
        end: None,
        hand_off: Some("desk".to_owned()),
    });
    run
}

/// A fixture: `begin`.
pub async fn begin(store: &dyn ThreadStore, run: &Run) -> Thread {
    store
        .begin_run(run)
        .await
        .unwrap_or_else(|e| panic!("begin_run {}: {e}", run.id));
    load(store, &run.thread_id).await
}

/// A fixture: `load`.
pub async fn load(store: &dyn ThreadStore, id: &str) -> Thread {
    store
        .thread(id)
        .await
        .unwrap_or_else(|e| panic!("thread {id}: {e}"))
}

/// A fixture: `commit`.
pub async fn commit(store: &dyn ThreadStore, thread: &Thread, mark: usize, run: Option<&Run>) {
    store
        .commit(Step {
            thread,
            appended: &thread.messages[mark..],
            run,
        })
        .await
        .unwrap_or_else(|e| panic!("commit: {e}"));
}

/// The store holds `thread` as it is: loaded whole, and in its header (the count and
/// last activity, which the store keeps on the thread row).
pub async fn stored_as(store: &dyn ThreadStore, thread: &Thread) {
    assert_eq!(load(store, &thread.id).await, *thread);
    assert_eq!(store.thread_header(&thread.id).await, Ok(thread.header()));
}

/// Ends `run` and unlocks its thread.
pub async fn finish(store: &dyn ThreadStore, thread_id: &str, run: &mut Run, status: RunStatus) {
    let mut thread = load(store, thread_id).await;
    thread.active_run = None;
    run.status = status;
    run.completed_at = Some(4_000);
    commit(store, &thread, thread.messages.len(), Some(run)).await;
}

// ---- the contract -------------------------------------------------------------------------

/// The contract: `insert_load_delete`.
pub async fn insert_load_delete(store: &dyn ThreadStore) {
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
        known: object(json!({ "goal_amount": 50000, "monthly_income": 4000 })),
        missing: Vec::new(),
        // A call waiting for confirmation: its question is stored with it.
        confirm: Some("Plan with $50,000 and $4,000 a month?".to_owned()),
        asked: std::collections::BTreeMap::new(),
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

/// The contract: `duplicate_thread`.
pub async fn duplicate_thread(store: &dyn ThreadStore) {
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

/// The contract: `thread_ids_newest_first_with_limit`.
pub async fn thread_ids_newest_first_with_limit(store: &dyn ThreadStore) {
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

/// The contract: `add_user_message_appends_unless_locked`.
pub async fn add_user_message_appends_unless_locked(store: &dyn ThreadStore) {
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

/// The contract: `begin_run_after_appends_the_message_and_locks`.
pub async fn begin_run_after_appends_the_message_and_locks(store: &dyn ThreadStore) {
    store
        .insert_thread(&thread("thread_ba"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store
            .begin_run_after(&user("msg_x", "x"), &run("run_x", "thread_nope"))
            .await,
        Err(StoreError::ThreadNotFound("thread_nope".to_owned()))
    );
    // A run may begin already started (the engine folds its start into its creation).
    let mut first = run("run_ba", "thread_ba");
    first.status = RunStatus::InProgress;
    first.started_at = Some(3_001);
    store
        .begin_run_after(&user("msg_1", "one"), &first)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = load(store, "thread_ba").await;
    assert_eq!(loaded.active_run.as_deref(), Some("run_ba"));
    assert_eq!(loaded.messages, [user("msg_1", "one")]);
    assert_eq!(store.thread_header("thread_ba").await, Ok(loaded.header()));
    assert_eq!(store.run("run_ba").await, Ok(first.clone()));
    assert_eq!(
        store
            .begin_run_after(&user("msg_2", "two"), &run("run_bb", "thread_ba"))
            .await,
        Err(StoreError::Locked {
            thread_id: "thread_ba".to_owned(),
            run_id: "run_ba".to_owned(),
        })
    );
    assert_eq!(
        load(store, "thread_ba").await.messages.len(),
        1,
        "nothing appended"
    );
    assert_eq!(store.thread_header("thread_ba").await, Ok(loaded.header()));
    assert_eq!(
        store.run("run_bb").await,
        Err(StoreError::RunNotFound("run_bb".to_owned()))
    );
}

/// The contract: `begin_thread_stores_the_thread_its_message_and_run`.
pub async fn begin_thread_stores_the_thread_its_message_and_run(store: &dyn ThreadStore) {
    let mut first = run("run_bt", "thread_bt");
    first.status = RunStatus::InProgress;
    first.started_at = Some(3_001);
    store
        .begin_thread(&thread("thread_bt"), &user("msg_1", "one"), &first)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = load(store, "thread_bt").await;
    assert_eq!(loaded.active_run.as_deref(), Some("run_bt"));
    assert_eq!(loaded.messages, [user("msg_1", "one")]);
    assert_eq!(store.run("run_bt").await, Ok(first.clone()));
    assert_eq!(
        store
            .thread_header("thread_bt")
            .await
            .map(|h| h.message_count),
        Ok(1)
    );
    // A taken id: nothing of the second attempt is written.
    assert_eq!(
        store
            .begin_thread(
                &thread("thread_bt"),
                &user("msg_2", "two"),
                &run("run_bu", "thread_bt")
            )
            .await,
        Err(StoreError::Duplicate("thread_bt".to_owned()))
    );
    assert_eq!(load(store, "thread_bt").await.messages.len(), 1);
    assert_eq!(
        store.run("run_bu").await,
        Err(StoreError::RunNotFound("run_bu".to_owned()))
    );
    // A run of another thread would write that thread unchecked: refused, nothing written.
    assert!(matches!(
        store
            .begin_thread(
                &thread("thread_bv"),
                &user("msg_3", "three"),
                &run("run_bv", "thread_bt")
            )
            .await,
        Err(StoreError::Backend(_))
    ));
    assert_eq!(
        store.thread("thread_bv").await.map(|t| t.id),
        Err(StoreError::ThreadNotFound("thread_bv".to_owned()))
    );
    assert_eq!(load(store, "thread_bt").await.messages.len(), 1);
}

/// The contract: `message_metadata_is_replaced_unless_locked`.
pub async fn message_metadata_is_replaced_unless_locked(store: &dyn ThreadStore) {
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

/// The contract: `begin_run_locks_until_the_run_is_terminal`.
pub async fn begin_run_locks_until_the_run_is_terminal(store: &dyn ThreadStore) {
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

/// A pending call that has asked twice for one parameter and once for another.
fn counted_pending() -> PendingCall {
    PendingCall {
        call_id: "call_1".to_owned(),
        tool: "calculate_savings_timeline".to_owned(),
        known: object(json!({ "goal_amount": 50000 })),
        missing: vec!["monthly_income".to_owned(), "monthly_savings".to_owned()],
        confirm: None,
        // Counted asks live in the pending call's JSON: stored and read back unchanged.
        asked: std::collections::BTreeMap::from([
            ("monthly_income".to_owned(), 2),
            ("monthly_savings".to_owned(), 1),
        ]),
    }
}

/// A question asking the user to confirm a call, as `confirm` writes it.
fn confirmation(run_id: &str) -> Message {
    message(
        "msg_confirm",
        Some(run_id),
        MessageKind::Question {
            call_id: "call_1".to_owned(),
            tool: "calculate_savings_timeline".to_owned(),
            params: Vec::new(),
            text: "Transfer $200 to savings?".to_owned(),
            confirm: true,
        },
    )
}

/// The contract: `commit_appends_exactly_the_new_messages`.
pub async fn commit_appends_exactly_the_new_messages(store: &dyn ThreadStore) {
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
    t.messages.push(confirmation("run_c"));
    t.slots.insert("monthly_income".to_owned(), json!(5000.5));
    t.metadata
        .merge([("plan".to_owned(), "house".to_owned())])
        .unwrap_or_else(|e| panic!("{e}"));
    t.pending = Some(counted_pending());
    // Handed to another flow: the route, with the slots the flow before keeps.
    t.route = vec![Handoff {
        flow: "travel-booking".to_owned(),
        tool: "book_trip".to_owned(),
        slots_before: Map::from_iter([("budget".to_owned(), json!(900))]),
        comes_back: true,
    }];
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
            "question",
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
    t.route.clear();
    commit(store, &t, t.messages.len(), None).await;
    stored_as(store, &t).await;
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
    stored_as(store, &t).await;
    assert_eq!(t.messages.len(), 8);

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

/// The contract: `runs_are_listed_oldest_first`.
pub async fn runs_are_listed_oldest_first(store: &dyn ThreadStore) {
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
pub async fn paged_thread(store: &dyn ThreadStore) -> Thread {
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

/// The contract: `headers_count_without_loading_messages`.
pub async fn headers_count_without_loading_messages(store: &dyn ThreadStore) {
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

/// `thread_since` gives the header and exactly the messages from a position on, as the
/// whole thread has them; past the end, none.
pub async fn thread_since_reads_the_tail(store: &dyn ThreadStore) {
    let t = paged_thread(store).await;
    for from in [0, 1, 7, 12, 13, 20] {
        let (header, tail) = store
            .thread_since("thread_p", from)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(header, t.header(), "from {from}");
        assert_eq!(
            tail,
            t.messages.get(from..).unwrap_or_default(),
            "from {from}"
        );
    }
    assert_eq!(
        store.thread_since("thread_nope", 0).await.map(|_| ()),
        Err(StoreError::ThreadNotFound("thread_nope".to_owned()))
    );
}

/// Every page a client can ask for is the reference page ([`MessageQuery::select`] over
/// the whole thread): orders, limits, cursors either side, a run, people's messages only.
pub async fn message_pages_match_the_reference(store: &dyn ThreadStore) {
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

/// The contract: `update_thread_rewrites_the_row_unless_locked`.
pub async fn update_thread_rewrites_the_row_unless_locked(store: &dyn ThreadStore) {
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

/// The contract: `locked_threads_are_listed`.
pub async fn locked_threads_are_listed(store: &dyn ThreadStore) {
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

/// The message of a `StoreError::Backend`; panics on anything else.
pub fn backend(result: Result<impl std::fmt::Debug, StoreError>) -> String {
    match result {
        Err(StoreError::Backend(message)) => message,
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

/// A step that does not continue the stored history (stale, or not the tail of the thread
/// it carries) is refused, and nothing is written.
pub async fn a_step_that_does_not_continue_the_stored_history_is_refused(store: &dyn ThreadStore) {
    store
        .insert_thread(&thread("thread_i"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .add_user_message("thread_i", &user("msg_u", "hi"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = load(store, "thread_i").await;

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
    assert_eq!(load(store, "thread_i").await, before, "nothing was written");
    assert_eq!(
        store.thread_header("thread_i").await,
        Ok(before.header()),
        "the count is where it was"
    );
}

/// A run that ended stays ended: a stale step of it is refused.
pub async fn a_run_that_ended_is_not_revived_by_a_stale_step(store: &dyn ThreadStore) {
    store
        .insert_thread(&thread("thread_z"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut r = run("run_z", "thread_z");
    let t = begin(store, &r).await;
    // Another process recovers the run as failed…
    finish(store, "thread_z", &mut r, RunStatus::Failed).await;
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
    assert_eq!(load(store, "thread_z").await.active_run, None);
    assert_eq!(
        store.run("run_z").await.map(|r| r.status),
        Ok(RunStatus::Failed)
    );
}

/// The contract: `a_step_stores_its_run_whether_stored_or_not`.
pub async fn a_step_stores_its_run_whether_stored_or_not(store: &dyn ThreadStore) {
    store
        .insert_thread(&thread("thread_n"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t = load(store, "thread_n").await;
    // A run the store has not seen: the step stores it.
    let mut r = run("run_n", "thread_n");
    r.status = RunStatus::InProgress;
    commit(store, &t, t.messages.len(), Some(&r)).await;
    assert_eq!(store.run("run_n").await, Ok(r.clone()));
    // The same run again: the step replaces it.
    r.status = RunStatus::Completed;
    r.completed_at = Some(4_000);
    commit(store, &t, t.messages.len(), Some(&r)).await;
    assert_eq!(store.run("run_n").await, Ok(r));
    assert_eq!(
        store
            .runs("thread_n")
            .await
            .map(|runs| runs.len())
            .unwrap_or_default(),
        1
    );
}

/// Runs the whole [`ThreadStore`] contract against a store: one `#[tokio::test]` per check,
/// in the module where it is invoked. `$fixture` is an expression of a future that gives
/// `Option<impl Fixture>`; `None` skips the check (a store whose server is not configured
/// here, which the fixture says on stderr).
///
/// The checks run on a two-worker runtime; `current_thread;` before the fixture runs them
/// on a current-thread one (a store that behaves differently there, as SQLite's
/// `in_place`).
///
/// ```ignore
/// mod memory_store {
///     clarion_engine::store_contract!(async { Some(clarion_engine::store::MemoryStore::new()) });
/// }
/// ```
#[macro_export]
macro_rules! store_contract {
    (@flavor $flavor:tt; $fixture:expr) => {
        $crate::store_contract!(@each $flavor; $fixture;
            insert_load_delete,
            duplicate_thread,
            thread_ids_newest_first_with_limit,
            add_user_message_appends_unless_locked,
            begin_run_after_appends_the_message_and_locks,
            begin_thread_stores_the_thread_its_message_and_run,
            message_metadata_is_replaced_unless_locked,
            locked_threads_are_listed,
            begin_run_locks_until_the_run_is_terminal,
            commit_appends_exactly_the_new_messages,
            runs_are_listed_oldest_first,
            headers_count_without_loading_messages,
            thread_since_reads_the_tail,
            message_pages_match_the_reference,
            update_thread_rewrites_the_row_unless_locked,
            a_step_that_does_not_continue_the_stored_history_is_refused,
            a_run_that_ended_is_not_revived_by_a_stale_step,
            a_step_stores_its_run_whether_stored_or_not,
        );
    };
    (@each $flavor:tt; $fixture:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test $flavor]
            async fn $name() {
                let Some(fixture) = ($fixture).await else {
                    return;
                };
                $crate::contract::$name($crate::contract::Fixture::store(&fixture))
                    .await;
            }
        )*
    };
    (current_thread; $fixture:expr) => {
        $crate::store_contract!(@flavor (flavor = "current_thread"); $fixture);
    };
    ($fixture:expr) => {
        $crate::store_contract!(@flavor (flavor = "multi_thread", worker_threads = 2); $fixture);
    };
}
