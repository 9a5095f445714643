//! The example flow end to end with the real built-ins: a scripted model, the engine, and
//! `ClarionTools`. The `after` rules render the built-ins' actual numbers.

use std::path::Path;
use std::sync::Arc;

use clarion_engine::NoEvents;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{Engine, RunStatus};
use clarion_engine::{MemoryStore, ThreadStore};
use clarion_engine::{MessageKind, Metadata, OutputStatus, Thread};
use clarion_flow::{LoadOptions, load_file_with};
use clarion_tools::ClarionTools;
use serde_json::{Value, json};

fn engine(turns: Vec<ScriptedTurn>) -> (Engine, Arc<MemoryStore>) {
    let tools = ClarionTools::new();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../flows/personal-finance.toml");
    let report = load_file_with(
        &path,
        &LoadOptions {
            builtins: Some(tools.builtins()),
            ..LoadOptions::default()
        },
    );
    let flow = report.into_result().unwrap_or_else(|e| panic!("{e}"));
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::new(
        Arc::new(flow),
        Arc::new(ScriptedModel::new(turns)),
        Arc::new(tools),
        store.clone(),
    );
    (engine, store)
}

async fn converse(turns: Vec<ScriptedTurn>, user: &str) -> Thread {
    let (engine, store) = engine(turns);
    let thread = engine
        .create_thread(Metadata::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine
        .add_message(&thread.id, user)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = engine
        .run(&thread.id, &NoEvents)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.status, RunStatus::Completed);
    store
        .thread(&thread.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn contexts(thread: &Thread) -> Vec<String> {
    thread
        .messages
        .iter()
        .filter_map(|m| match &m.kind {
            MessageKind::Context { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn outputs(thread: &Thread) -> Vec<(String, OutputStatus, Value)> {
    thread
        .messages
        .iter()
        .filter_map(|m| match &m.kind {
            MessageKind::ToolOutput {
                name,
                status,
                content,
                ..
            } => Some((
                name.clone(),
                *status,
                serde_json::from_str(content).unwrap_or(Value::Null),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_savings_plan_renders_real_numbers() {
    let thread = converse(
        vec![
            ScriptedTurn::call(
                "calculate_savings_timeline",
                r#"{"goal_amount": 50000, "monthly_income": 5000, "monthly_savings": 1000}"#,
            ),
            ScriptedTurn::text("About four years."),
        ],
        "How long to save 50k? I earn 5000 and save 1000 a month.",
    )
    .await;
    assert_eq!(
        contexts(&thread),
        ["The user's savings plan indicates a 4.2-year timeline (50 months)."]
    );
}

#[tokio::test]
async fn an_unrealistic_goal_triggers_the_out_of_reach_rule() {
    let thread = converse(
        vec![
            ScriptedTurn::call(
                "calculate_savings_timeline",
                r#"{"goal_amount": 2000000, "monthly_income": 3000, "monthly_savings": 100}"#,
            ),
            ScriptedTurn::text("Let's adjust."),
        ],
        "Two million with 100 a month, on a 3000 income?",
    )
    .await;
    let injected = contexts(&thread);
    assert_eq!(injected.len(), 1, "{injected:?}");
    assert!(
        injected[0].starts_with(
            "The goal is out of reach with this plan: saving $100 of a $3000 income would take 1666.7 years."
        ),
        "{}",
        injected[0]
    );
}

#[tokio::test]
async fn the_budget_chains_into_the_savings_timeline() {
    let thread = converse(
        vec![
            ScriptedTurn::call(
                "analyze_budget",
                r#"{"monthly_income": 6000, "monthly_expenses": 5000}"#,
            ),
            ScriptedTurn::call("calculate_savings_timeline", r#"{"goal_amount": 24000}"#),
            ScriptedTurn::text("Two years."),
        ],
        "Budget: I earn 6000 and spend 5000. Then 24k.",
    )
    .await;
    assert_eq!(
        thread.slots["monthly_savings"],
        json!(1000),
        "min(20 %, surplus)"
    );
    assert_eq!(
        contexts(&thread),
        [
            "Based on the budget, the user can save about $1000 per month. Use this for any savings plan unless the user says otherwise.",
            "The user spends more than 80% of their income. Point out the largest gap to the 50/30/20 targets, kindly.",
            "The user's savings plan indicates a 2-year timeline (24 months).",
        ]
    );
}

#[tokio::test]
async fn growth_and_loans_report_published_figures() {
    let thread = converse(
        vec![
            ScriptedTurn::calls(&[
                (
                    "project_investment_growth",
                    r#"{"monthly_contribution": 100, "years": 10, "risk_tolerance": "medium"}"#,
                ),
                (
                    "calculate_loan_payment",
                    r#"{"principal": 200000, "annual_rate_percent": 6.5, "years": 30}"#,
                ),
            ]),
            ScriptedTurn::text("Here are the numbers."),
        ],
        "Growth of $100 a month over 10 years at medium risk, and a $200,000 mortgage at 6.5% for 30 years, please.",
    )
    .await;
    assert_eq!(
        contexts(&thread),
        [
            "Projected value after 10 years: $16387.93 (assumed 6% a year). Remind the user that returns are not guaranteed."
        ]
    );
    let outputs = outputs(&thread);
    assert!(
        outputs.iter().all(|o| o.1 == OutputStatus::Ok),
        "{outputs:?}"
    );
    assert_eq!(
        outputs[1].2,
        json!({"monthly_payment": 1264.14, "total_paid": 455_088.98, "total_interest": 255_088.98, "months": 360})
    );
}
