//! The article's cases, each as a conversation through the engine with a scripted model
//! over flows/personal-finance.toml. Every test also checks the protocol invariant.

mod support;

use clarion_engine::{ErrorCode, ModelErrorKind, ToolErrorKind};
use std::sync::Arc;

use clarion_engine::RunStatus;
use clarion_engine::scripted::ScriptedTurn;
use clarion_engine::{Event, EventLog, NoEvents, RuleRef};
use clarion_engine::{FnExecutor, ToolError};
use clarion_engine::{MessageKind, OutputStatus};
use serde_json::json;
use support::*;

#[tokio::test]
async fn missing_parameters_are_asked_in_one_question_and_the_answer_completes_the_call() {
    let h = finance_harness(vec![
        ScriptedTurn::call("calculate_savings_timeline", r#"{"goal_amount": 50000}"#),
        ScriptedTurn::call(
            "calculate_savings_timeline",
            r#"{"monthly_income": 5000, "monthly_savings": 1000}"#,
        )
        .expecting_user("5000"),
        ScriptedTurn::text("About 4.2 years."),
    ]);
    let thread = h.thread().await;
    h.engine
        .add_message(
            &thread.id,
            "How long will it take me to save $50,000 for a house?",
        )
        .await
        .ok();
    let events = EventLog::new();
    let run = h
        .engine
        .run(&thread.id, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    // Both questions, in declaration order, in one assistant message.
    assert_eq!(
        last_text(&thread),
        "What is your net monthly income? How much do you plan to save each month?"
    );
    let pending = thread
        .pending
        .clone()
        .unwrap_or_else(|| panic!("no pending call"));
    assert_eq!(pending.missing, ["monthly_income", "monthly_savings"]);
    assert_eq!(pending.known["goal_amount"], json!(50000));
    assert_eq!(
        thread.slots["goal_amount"],
        json!(50000),
        "known values are remembered"
    );
    assert!(
        events
            .events()
            .iter()
            .any(|e| matches!(e, Event::QuestionAsked { params, .. } if params.len() == 2))
    );
    assert_eq!(outputs(&thread)[0].1, OutputStatus::NeedsInput);

    h.engine
        .add_message(&thread.id, "I earn 5000 a month and can save 1000")
        .await
        .ok();
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert!(
        thread.pending.is_none(),
        "the answer completed the pending call"
    );
    let (_, status, result) = outputs(&thread)
        .pop()
        .unwrap_or_else(|| panic!("no output"));
    assert_eq!(status, OutputStatus::Ok);
    assert_eq!(
        result["months"],
        json!(50.0),
        "goal 50000 came from the pending call"
    );
    assert_eq!(
        contexts(&thread),
        ["The user's savings plan indicates a 4.2-year timeline (50.0 months)."]
    );
    assert_eq!(last_text(&thread), "About 4.2 years.");
    assert_eq!(h.model.remaining(), 0);
}

#[tokio::test]
async fn an_unrealistic_goal_injects_guidance() {
    let h = finance_harness(vec![
        ScriptedTurn::call(
            "calculate_savings_timeline",
            r#"{"goal_amount": 2000000, "monthly_income": 3000, "monthly_savings": 100}"#,
        ),
        ScriptedTurn::text("That would take too long; let's adjust."),
    ]);
    let thread = h.thread().await;
    h.engine
        .add_message(
            &thread.id,
            "I earn 3000 a month and want to save two million with 100 a month",
        )
        .await
        .ok();
    h.engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    let injected = contexts(&thread);
    assert_eq!(
        injected.len(),
        1,
        "only the unrealistic-goal rule fires: {injected:?}"
    );
    assert!(injected[0].starts_with("The goal is out of reach with this plan: saving $100 of a $3000 income would take 1666.7 years."));
}

#[tokio::test]
async fn budget_analysis_chains_into_the_savings_timeline_through_a_slot() {
    let h = finance_harness(vec![
        ScriptedTurn::call(
            "analyze_budget",
            r#"{"monthly_income": 6000, "monthly_expenses": 4000}"#,
        ),
        ScriptedTurn::call("calculate_savings_timeline", r#"{"goal_amount": 24000}"#),
        ScriptedTurn::text("Two years."),
    ]);
    let thread = h.thread().await;
    h.engine
        .add_message(
            &thread.id,
            "I earn 6000 and spend 4000 a month; how long to save 24k?",
        )
        .await
        .ok();
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.steps, 3);
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert_eq!(
        thread.slots["monthly_savings"],
        json!(1200.0),
        "set by the budget's after rule"
    );
    let timeline = &outputs(&thread)[1].2;
    assert_eq!(
        timeline["months"],
        json!(20.0),
        "24000 / 1200, income and savings from slots"
    );
    assert!(contexts(&thread)[0].contains("$1200.0 per month"));
}

#[tokio::test]
async fn a_tool_failure_becomes_an_output_with_on_error_context_and_the_run_goes_on() {
    let executor = FnExecutor(
        |_: &clarion_flow::Tool, _: &serde_json::Map<String, serde_json::Value>| {
            Err(ToolError::new(ToolErrorKind::Failed, "division by zero"))
        },
    );
    let h = harness(
        personal_finance(),
        Arc::new(executor),
        vec![
            ScriptedTurn::call(
                "calculate_savings_timeline",
                r#"{"goal_amount": 1000, "monthly_income": 100, "monthly_savings": 10}"#,
            ),
            ScriptedTurn::text("Sorry, could you restate the numbers?"),
        ],
    );
    let thread = h.thread().await;
    h.engine
        .add_message(
            &thread.id,
            "plan 1000 on an income of 100, saving 10 a month",
        )
        .await
        .ok();
    let log = EventLog::new();
    let run = h
        .engine
        .run(&thread.id, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    // Coverage sees the `on_error` run; no `after` rule runs for a failure.
    let rules: Vec<Event> = log
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::RuleEvaluated { .. }))
        .collect();
    assert_eq!(
        rules,
        [Event::RuleEvaluated {
            tool: "calculate_savings_timeline".to_owned(),
            rule: RuleRef::OnError,
            applied: true,
        }]
    );
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    let (_, status, content) = &outputs(&thread)[0];
    assert_eq!(*status, OutputStatus::Error);
    assert_eq!(
        content,
        &json!({"error": {"kind": "failed", "message": "division by zero"}})
    );
    assert_eq!(
        contexts(&thread),
        [
            "The savings calculation failed (division by zero). Apologise briefly and ask the user to restate the numbers."
        ]
    );
}

#[tokio::test]
async fn too_many_failures_in_a_row_fail_the_run_and_the_thread_stays_usable() {
    let executor = FnExecutor(
        |_: &clarion_flow::Tool, _: &serde_json::Map<String, serde_json::Value>| {
            Err(ToolError::new(ToolErrorKind::Failed, "backend down"))
        },
    );
    let call = r#"{"monthly_income": 100, "monthly_expenses": 50}"#;
    let h = harness(
        personal_finance(),
        Arc::new(executor),
        vec![
            ScriptedTurn::call("analyze_budget", call),
            ScriptedTurn::call("analyze_budget", call),
            ScriptedTurn::text("recovered"),
        ],
    );
    let thread = h.thread().await;
    h.engine
        .add_message(&thread.id, "budget please: I earn 100 and spend 50")
        .await
        .ok();
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.last_error.unwrap_or_else(|| panic!("no last_error"));
    assert_eq!(error.code, ErrorCode::ToolFailures);
    assert_eq!(
        error.message,
        "2 tool calls failed in a row (the flow allows 2); see the tool outputs for each error"
    );
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert!(
        thread.active_run.is_none(),
        "a failed run releases the thread"
    );
    h.engine
        .add_message(&thread.id, "try again later")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
}

#[tokio::test]
async fn the_user_changing_their_mind_mid_clarification() {
    // A new goal: the model calls the same tool with a different goal; it wins over the
    // pending call's, and the slot is overwritten.
    let h = finance_harness(vec![
        ScriptedTurn::call(
            "calculate_savings_timeline",
            r#"{"goal_amount": 50000, "monthly_income": 4000}"#,
        ),
        ScriptedTurn::call(
            "calculate_savings_timeline",
            r#"{"goal_amount": 80000, "monthly_savings": 2000}"#,
        ),
        ScriptedTurn::text("40 months."),
    ]);
    let thread = h.thread().await;
    h.engine
        .add_message(&thread.id, "save 50k, I earn 4000")
        .await
        .ok();
    h.engine.run(&thread.id, &NoEvents).await.ok();
    h.engine
        .add_message(&thread.id, "actually make it 80k, saving 2000 a month")
        .await
        .ok();
    h.engine.run(&thread.id, &NoEvents).await.ok();
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert_eq!(thread.slots["goal_amount"], json!(80000));
    assert_eq!(
        outputs(&thread).last().map(|o| o.2["months"].clone()),
        Some(json!(40.0))
    );

    // "Cancel that": the model answers in text, and the pending call is abandoned, loudly.
    let h = finance_harness(vec![
        ScriptedTurn::call("calculate_savings_timeline", r#"{"goal_amount": 50000}"#),
        ScriptedTurn::text("No problem, cancelled."),
    ]);
    let thread = h.thread().await;
    h.engine.add_message(&thread.id, "save 50k").await.ok();
    h.engine.run(&thread.id, &NoEvents).await.ok();
    h.engine.add_message(&thread.id, "cancel that").await.ok();
    let events = EventLog::new();
    h.engine.run(&thread.id, &events).await.ok();
    let thread = h.reload(&thread).await;
    assert!(thread.pending.is_none());
    assert!(events.events().iter().any(|e| matches!(e, Event::PendingAbandoned { tool, .. } if tool == "calculate_savings_timeline")));

    // A corrected value for a different tool: the pending call is abandoned, the slot
    // keeps what the user said before, and the new call runs.
    let h = finance_harness(vec![
        ScriptedTurn::call(
            "calculate_savings_timeline",
            r#"{"goal_amount": 50000, "monthly_income": 4000}"#,
        ),
        ScriptedTurn::call(
            "analyze_budget",
            r#"{"monthly_income": 4500, "monthly_expenses": 3000}"#,
        ),
        ScriptedTurn::text("done"),
    ]);
    let thread = h.thread().await;
    h.engine
        .add_message(&thread.id, "save 50k, I earn 4000")
        .await
        .ok();
    h.engine.run(&thread.id, &NoEvents).await.ok();
    h.engine
        .add_message(
            &thread.id,
            "sorry, I earn 4500 and spend 3000; check my budget instead",
        )
        .await
        .ok();
    let events = EventLog::new();
    h.engine.run(&thread.id, &events).await.ok();
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert!(thread.pending.is_none());
    assert_eq!(
        thread.slots["monthly_income"],
        json!(4500),
        "the corrected value overwrites the slot"
    );
    assert_eq!(thread.slots["goal_amount"], json!(50000));
    assert!(
        events
            .events()
            .iter()
            .any(|e| matches!(e, Event::PendingAbandoned { .. }))
    );
}

#[tokio::test]
async fn parallel_calls_all_get_outputs_in_call_order_and_incomplete_ones_ask() {
    let h = finance_harness(vec![ScriptedTurn::calls(&[
        (
            "analyze_budget",
            r#"{"monthly_income": 5000, "monthly_expenses": 4500}"#,
        ),
        ("calculate_loan_payment", r#"{"principal": 200000}"#),
        (
            "calculate_savings_timeline",
            r#"{"goal_amount": 10000, "monthly_income": 5000, "monthly_savings": 500}"#,
        ),
    ])]);
    let thread = h.thread().await;
    h.engine
        .add_message(
            &thread.id,
            "budget, a $200,000 loan and $10,000 of savings please: I earn 5000, spend 4500 and save 500 a month",
        )
        .await.ok();
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    let outputs = outputs(&thread);
    let names: Vec<&str> = outputs.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "analyze_budget",
            "calculate_loan_payment",
            "calculate_savings_timeline"
        ]
    );
    let statuses: Vec<OutputStatus> = outputs.iter().map(|o| o.1).collect();
    assert_eq!(
        statuses,
        [OutputStatus::Ok, OutputStatus::NeedsInput, OutputStatus::Ok]
    );
    assert_eq!(
        last_text(&thread),
        "What is the annual interest rate? Over how many years?"
    );
    assert_eq!(
        thread.pending.as_ref().map(|p| p.tool.as_str()),
        Some("calculate_loan_payment")
    );
    // Contexts come after all outputs: the budget's two rules and the timeline's one.
    let kinds: Vec<&str> = thread
        .messages
        .iter()
        .map(|m| match &m.kind {
            MessageKind::User { .. } => "user",
            MessageKind::ToolCalls { .. } => "calls",
            MessageKind::ToolOutput { .. } => "output",
            MessageKind::Context { .. } => "context",
            MessageKind::Question { .. } => "question",
            MessageKind::Assistant { .. } => "assistant",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "user", "calls", "output", "output", "output", "context", "context", "context",
            "question"
        ]
    );
}

#[tokio::test]
async fn invalid_arguments_are_all_reported_so_the_model_can_correct_itself() {
    let h = finance_harness(vec![
        ScriptedTurn::call(
            "calculate_savings_timeline",
            r#"{"goal_amount": -5, "monthly_income": "lots", "bogus": 1}"#,
        ),
        ScriptedTurn::call("calculate_savings_timeline", "not json"),
        ScriptedTurn::call("no_such_tool", "{}"),
        ScriptedTurn::call("calculate_savings_timeline", "[1, 2]"),
        ScriptedTurn::text("Let me ask you properly."),
    ]);
    let thread = h.thread().await;
    h.engine.add_message(&thread.id, "go").await.ok();
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    let outputs = outputs(&thread);
    assert!(outputs.iter().all(|o| o.1 == OutputStatus::Error));
    let message = |i: usize| {
        outputs[i].2["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(outputs[0].2["error"]["kind"], "invalid_arguments");
    assert!(
        message(0).contains("`bogus` is not a parameter of `calculate_savings_timeline`"),
        "{}",
        message(0)
    );
    assert!(
        message(0).contains("`goal_amount`: -5 is less than or equal to the minimum of 0"),
        "{}",
        message(0)
    );
    assert!(
        message(0).contains("`monthly_income`: \"lots\" is not of type \"number\""),
        "{}",
        message(0)
    );
    assert!(message(1).starts_with("arguments are not valid JSON"));
    assert_eq!(outputs[2].2["error"]["kind"], "unknown_tool");
    assert_eq!(message(3), "arguments must be a JSON object, not an array");
    assert!(thread.slots.is_empty(), "nothing invalid is remembered");
}

#[tokio::test]
async fn the_step_limit_ends_the_run_as_incomplete_with_every_call_answered() {
    // Each call differs (the loop guard stops identical ones sooner).
    let h = finance_harness(
        (0..8)
            .map(|i| {
                let call = format!(
                    r#"{{"monthly_income": 5000, "monthly_expenses": {}}}"#,
                    1000 + i
                );
                ScriptedTurn::call("analyze_budget", &call)
            })
            .collect(),
    );
    let thread = h.thread().await;
    h.engine
        .add_message(
            &thread.id,
            "I earn 5000 and spend 1000, 1001, 1002, 1003, 1004, 1005, 1006 or 1007; loop forever",
        )
        .await
        .ok();
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Incomplete);
    assert_eq!(run.steps, 8, "max_steps in the flow");
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert!(thread.active_run.is_none());
}

#[tokio::test]
async fn a_model_error_fails_the_run_with_its_reason() {
    let h = finance_harness(vec![]);
    let thread = h.thread().await;
    h.engine.add_message(&thread.id, "hello").await.ok();
    let run = h
        .engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.last_error.unwrap_or_else(|| panic!("no last_error"));
    assert_eq!(
        error.code,
        ErrorCode::Model(ModelErrorKind::ScriptExhausted)
    );
    assert_eq!(
        error.message,
        "the model failed: the script has no turn left for model request #1"
    );
    assert!(h.reload(&thread).await.active_run.is_none());
}

/// The e2e finding with a 1.5B local model: asked about a goal alone, the model invents an
/// income and a savings rate. `grounded = true` drops values the user never said, so the
/// question is asked instead of a confident wrong answer.
#[tokio::test]
async fn invented_values_for_grounded_parameters_are_asked_for_not_used() {
    let h = finance_harness(vec![
        ScriptedTurn::call(
            "calculate_savings_timeline",
            r#"{"goal_amount": 30000, "monthly_income": 5000, "monthly_savings": 500}"#,
        ),
        ScriptedTurn::call(
            "calculate_savings_timeline",
            r#"{"goal_amount": 30000, "monthly_income": 4200, "monthly_savings": 600}"#,
        )
        .expecting_user("4,200"),
        ScriptedTurn::text("50 months."),
    ]);
    let thread = h.thread().await;
    h.engine
        .add_message(&thread.id, "How long until I have saved $30000 for a car?")
        .await
        .ok();
    let events = EventLog::new();
    let run = h
        .engine
        .run(&thread.id, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert!(events.events().iter().any(|e| matches!(
        e,
        Event::NotStated { params, .. } if params == &["monthly_income", "monthly_savings"]
    )));
    assert_eq!(
        last_text(&thread),
        "What is your net monthly income? How much do you plan to save each month?"
    );
    let (_, status, output) = outputs(&thread)
        .pop()
        .unwrap_or_else(|| panic!("no output"));
    assert_eq!(status, OutputStatus::NeedsInput);
    assert_eq!(
        output["not_stated"],
        json!(["monthly_income", "monthly_savings"]),
        "the model reads what it must not guess"
    );
    assert_eq!(
        thread.slots.get("monthly_income"),
        None,
        "a guess is never remembered"
    );
    assert_eq!(
        thread.slots["goal_amount"],
        json!(30000),
        "what was said is kept"
    );

    // Stated in an earlier message or this one, values count; the call completes.
    h.engine
        .add_message(&thread.id, "I take home $4,200 and put aside $600 a month.")
        .await
        .ok();
    let events = EventLog::new();
    h.engine
        .run(&thread.id, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let thread = h.reload(&thread).await;
    assert_protocol(&thread);
    assert!(
        !events
            .events()
            .iter()
            .any(|e| matches!(e, Event::NotStated { .. }))
    );
    let (_, status, result) = outputs(&thread)
        .pop()
        .unwrap_or_else(|| panic!("no output"));
    assert_eq!(status, OutputStatus::Ok);
    assert_eq!(result["months"], json!(50.0));
    assert_eq!(thread.slots["monthly_income"], json!(4200));
}

#[tokio::test]
async fn a_grounded_value_the_model_got_wrong_is_reported_before_it_is_grounded() {
    // A malformed value is the model's to fix: it reads the schema error, not a question.
    let h = finance_harness(vec![
        ScriptedTurn::call(
            "analyze_budget",
            r#"{"monthly_income": "lots", "monthly_expenses": 100}"#,
        ),
        ScriptedTurn::text("Could you give me numbers?"),
    ]);
    let thread = h.thread().await;
    h.engine
        .add_message(&thread.id, "check my budget")
        .await
        .ok();
    h.engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let thread = h.reload(&thread).await;
    let (_, status, output) = outputs(&thread)
        .pop()
        .unwrap_or_else(|| panic!("no output"));
    assert_eq!(status, OutputStatus::Error);
    assert!(output.to_string().contains("monthly_income"), "{output}");
}

/// The events coverage counts: which `after` rules applied (each `when`, true or false),
/// `on_error`, and the parameters filled from slots.
#[tokio::test]
async fn rules_evaluated_and_slots_read_are_events() {
    let h = finance_harness(vec![
        ScriptedTurn::call(
            "analyze_budget",
            r#"{"monthly_income": 6000, "monthly_expenses": 4000}"#,
        ),
        ScriptedTurn::call("calculate_savings_timeline", r#"{"goal_amount": 24000}"#),
        ScriptedTurn::text("Two years."),
    ]);
    let thread = h.thread().await;
    h.engine
        .add_message(
            &thread.id,
            "I earn 6000 and spend 4000 a month; how long to save 24k?",
        )
        .await
        .ok();
    let log = EventLog::new();
    h.engine
        .run(&thread.id, &log)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = log.events();
    let rules: Vec<(&str, RuleRef, bool)> = events
        .iter()
        .filter_map(|e| match e {
            Event::RuleEvaluated {
                tool,
                rule,
                applied,
            } => Some((tool.as_str(), *rule, *applied)),
            _ => None,
        })
        .collect();
    assert_eq!(
        rules,
        [
            // No `when`: it applies. Not overspending: the second's `when` is false.
            ("analyze_budget", RuleRef::After { index: 0 }, true),
            ("analyze_budget", RuleRef::After { index: 1 }, false),
            // Attainable: the first `when` is false, the second true.
            (
                "calculate_savings_timeline",
                RuleRef::After { index: 0 },
                false
            ),
            (
                "calculate_savings_timeline",
                RuleRef::After { index: 1 },
                true
            ),
        ]
    );
    let filled: Vec<&Vec<String>> = events
        .iter()
        .filter_map(|e| match e {
            Event::FilledFromSlots { tool, params, .. } if tool == "calculate_savings_timeline" => {
                Some(params)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        filled,
        [&vec![
            "monthly_income".to_owned(),
            "monthly_savings".to_owned()
        ]]
    );
}
