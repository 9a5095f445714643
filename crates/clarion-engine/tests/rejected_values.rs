//! A value that fails its parameter's schema, where the flow has an `invalid` message: the
//! user is asked with it, every question is counted on the pending call, and `max_asks`
//! gives the call up with `on_exhausted`. The scenarios of flows/personal-finance show the
//! `inject` outcome; these pin `end`, the stored count, and what the model reads.

mod support;

use std::sync::Arc;

use clarion_engine::scripted::ScriptedTurn;
use clarion_engine::{Event, EventLog, ExhaustedOutcome, IncompleteReason, RunStatus};
use clarion_engine::{FnExecutor, MessageKind, OutputStatus, PendingCall};
use serde_json::json;
use support::*;

const LOAN: &str = "calculate_loan_payment";

/// The example flow with `years` ending the run after one question.
fn ending_flow() -> Arc<clarion_flow::Flow> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/personal-finance.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let start = text
        .find("on_exhausted = { inject")
        .unwrap_or_else(|| panic!("the example flow has no on_exhausted"));
    let end = start + text[start..].find('\n').unwrap_or_default();
    let text = format!(
        "{}on_exhausted = {{ end = \"Let's pick this up when you know the term you want ({{{{ args.principal }}}} dollars).\" }}{}",
        &text[..start],
        &text[end..]
    )
    .replace("max_asks = 2", "max_asks = 1");
    flow_from(&text)
}

#[tokio::test]
async fn a_rejected_value_is_asked_with_the_flows_words_then_end_stops_the_run() {
    let h = harness(
        ending_flow(),
        Arc::new(FnExecutor(finance)),
        vec![
            ScriptedTurn::call(
                LOAN,
                r#"{"principal": 300000, "annual_rate_percent": 6.5, "years": 80}"#,
            ),
            ScriptedTurn::call(LOAN, r#"{"years": 90}"#),
        ],
    );
    let thread = h.thread().await;
    h.engine
        .add_message(&thread.id, "$300,000 at 6.5% over 80 years?")
        .await
        .ok();
    let events = EventLog::new();
    let run = h
        .engine
        .run(&thread.id, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        run.status,
        RunStatus::Completed,
        "a question completes a run"
    );
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert_eq!(
        last_text(&thread),
        "A loan term has to be between 1 and 50 years, and 80 is not. Over how many years?"
    );
    assert!(events.events().iter().any(|e| matches!(
        e,
        Event::ValueRejected { param, keyword, limit, value, .. }
            if param == "years" && keyword == "maximum" && limit == &Some(json!(50)) && value == &json!(80)
    )));
    let output = &outputs(&thread)[0];
    assert_eq!(output.1, OutputStatus::NeedsInput);
    assert_eq!(
        output.2["rejected"],
        json!(["years"]),
        "the model reads why"
    );
    let pending = thread
        .pending
        .clone()
        .unwrap_or_else(|| panic!("no pending call"));
    assert_eq!(pending.times_asked("years"), 1, "the question is counted");
    assert_eq!(
        pending.known.get("years"),
        None,
        "the rejected value is not kept"
    );

    h.engine.add_message(&thread.id, "90 years").await.ok();
    let events = EventLog::new();
    let run = h
        .engine
        .run(&thread.id, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Incomplete);
    assert_eq!(
        run.incomplete_details,
        Some(IncompleteReason::AsksExhausted)
    );
    assert!(run.last_error.is_none(), "incomplete is not failed");
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert!(thread.pending.is_none(), "nothing waits any more");
    let last = outputs(&thread)
        .pop()
        .unwrap_or_else(|| panic!("no output"));
    assert_eq!(last.1, OutputStatus::Error);
    assert_eq!(
        last.2["error"]["kind"],
        json!("asks_exhausted"),
        "{}",
        last.2
    );
    assert!(matches!(
        thread.messages.last().map(|m| &m.kind),
        Some(MessageKind::Assistant { text })
            if text == "Let's pick this up when you know the term you want (300000 dollars)."
    ));
    assert!(events.events().iter().any(|e| matches!(
        e,
        Event::AsksExhausted { params, asked: 1, outcome: ExhaustedOutcome::End, .. }
            if params == &["years"]
    )));
}

#[test]
fn a_pending_call_stored_before_the_count_existed_counts_its_one_question() {
    let old: PendingCall = serde_json::from_value(json!({
        "call_id": "call_1",
        "tool": LOAN,
        "known": { "principal": 300_000 },
        "missing": ["years"],
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(old.times_asked("years"), 1);
    assert_eq!(old.times_asked("principal"), 0);
    let text = serde_json::to_string(&old).unwrap_or_default();
    assert!(
        !text.contains("asked"),
        "an empty count is not written: {text}"
    );
}
