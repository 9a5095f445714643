use super::*;
use serde_json::json;

const FLOW: &str = r#"[flow]
name = "savings"

[assistant]
model = "m"
instructions = "{% if slots.goal %}Goal: {{ slots.goal }}{% endif %}"

[slots.goal]
type = "number"

[slots.income]
type = "number"

[tools.plan]
description = "Plans."
builtin = "finance.savings_timeline"

[tools.plan.params.goal_amount]
type = "number"
ask = "How much?"
slot = "goal"

[tools.plan.params.monthly_income]
type = "number"
slot = "income"

[[tools.plan.after]]
when = "result.ok"
inject = "ok"

[[tools.plan.after]]
inject = "always"

[tools.plan.on_error]
inject = "failed"
"#;

fn flow() -> Arc<Flow> {
    let report = clarion_flow::load_str("savings.toml", FLOW, None);
    Arc::new(
        report
            .flow
            .unwrap_or_else(|| panic!("{:?}", report.diagnostics)),
    )
}

fn index() -> Arc<FlowIndex> {
    Arc::new(FlowIndex::new(flow()))
}

fn report(hits: &Hits) -> FlowReport {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("savings.toml");
    std::fs::write(&path, FLOW).unwrap_or_else(|e| panic!("{e}"));
    FlowReport::new(&path, hits).unwrap_or_else(|e| panic!("{e}"))
}

fn line(report: &FlowReport, element: &Element) -> usize {
    report
        .elements
        .iter()
        .find(|c| &c.element == element)
        .map_or(0, |c| c.line)
}

#[test]
fn every_element_is_listed_on_its_line() {
    let report = report(&Hits::new(index()));
    let tool = || "plan".to_owned();
    let expected = [
        (
            Element::SlotSet {
                slot: "goal".into(),
            },
            8,
        ),
        (
            Element::SlotRead {
                slot: "goal".into(),
            },
            8,
        ),
        (
            Element::SlotSet {
                slot: "income".into(),
            },
            11,
        ),
        (Element::Tool { tool: tool() }, 14),
        (
            Element::Ask {
                tool: tool(),
                param: "goal_amount".into(),
            },
            20,
        ),
        (
            Element::When {
                tool: tool(),
                rule: 0,
                value: true,
            },
            28,
        ),
        (
            Element::When {
                tool: tool(),
                rule: 0,
                value: false,
            },
            28,
        ),
        (
            Element::After {
                tool: tool(),
                rule: 1,
            },
            31,
        ),
        (Element::OnError { tool: tool() }, 34),
    ];
    for (element, at) in &expected {
        assert_eq!(line(&report, element), *at, "{element:?}");
    }
    assert_eq!(report.total(), 10);
    assert_eq!(report.covered(), 0);
    assert!(report.below(0.1));
}

#[test]
fn events_count_as_hits() {
    let mut collector = Collector::new(index());
    let events = [
        Event::ModelCalled {
            message_id: "m".into(),
        },
        Event::ToolCalled {
            call_id: "c".into(),
            name: "plan".into(),
            arguments: "{}".into(),
        },
        Event::QuestionAsked {
            call_id: "c".into(),
            tool: "plan".into(),
            params: vec!["goal_amount".into(), "monthly_income".into()],
            text: "?".into(),
        },
        Event::SlotSet {
            name: "income".into(),
            value: json!(1),
        },
        Event::FilledFromSlots {
            call_id: "c".into(),
            tool: "plan".into(),
            params: vec!["monthly_income".into()],
        },
        Event::RuleEvaluated {
            tool: "plan".into(),
            rule: RuleRef::After { index: 0 },
            applied: false,
        },
        Event::RuleEvaluated {
            tool: "plan".into(),
            rule: RuleRef::After { index: 1 },
            applied: true,
        },
        Event::SlotSet {
            name: "goal".into(),
            value: json!(5),
        },
        Event::ModelCalled {
            message_id: "m2".into(),
        },
        Event::ModelCalled {
            message_id: "m3".into(),
        },
    ];
    collector.events(&events);
    let hits = collector.finish();
    let tool = || "plan".to_owned();
    assert_eq!(hits.get(&Element::Tool { tool: tool() }), 1);
    let asked = Element::Ask {
        tool: tool(),
        param: "goal_amount".into(),
    };
    assert_eq!(hits.get(&asked), 1);
    assert_eq!(
        hits.get(&Element::SlotRead {
            slot: "income".into()
        }),
        1
    );
    // Only the two model calls after `goal` got a value read it.
    assert_eq!(
        hits.get(&Element::SlotRead {
            slot: "goal".into()
        }),
        2
    );
    let when = |value| Element::When {
        tool: tool(),
        rule: 0,
        value,
    };
    assert_eq!((hits.get(&when(true)), hits.get(&when(false))), (0, 1));
    assert_eq!(
        hits.get(&Element::After {
            tool: tool(),
            rule: 1
        }),
        1
    );
    assert_eq!(hits.get(&Element::OnError { tool: tool() }), 0);

    let report = report(&hits);
    assert_eq!((report.covered(), report.total()), (8, 10));
    let summary = render::summary(std::slice::from_ref(&report));
    assert!(summary.contains(": 80.0% (8 of 10 elements)"), "{summary}");
    assert!(
        summary.contains("savings.toml:28  `when` of after rule #1 of `plan` was never true"),
        "{summary}"
    );
    assert!(summary.contains("savings.toml:34  `on_error` of `plan` never ran"));
}

#[test]
fn lcov_has_a_line_per_element_line_and_a_branch_pair_per_when() {
    let mut hits = Hits::new(index());
    hits.add(
        &Element::Tool {
            tool: "plan".into(),
        },
        1,
    );
    hits.add(
        &Element::When {
            tool: "plan".into(),
            rule: 0,
            value: true,
        },
        1,
    );
    let report = report(&hits);
    let lcov = render::lcov(std::slice::from_ref(&report));
    assert!(lcov.starts_with("TN:clarion\nSF:"), "{lcov}");
    assert!(lcov.contains("\nDA:14,1\n"), "{lcov}");
    assert!(
        lcov.contains("\nDA:28,0\n"),
        "the false branch was never seen: {lcov}"
    );
    assert!(lcov.contains("\nBRDA:28,0,0,1\nBRDA:28,0,1,0\n"), "{lcov}");
    assert!(lcov.contains("\nBRF:2\nBRH:1\n"), "{lcov}");
    assert!(lcov.contains("\nLF:7\nLH:1\nend_of_record\n"), "{lcov}");
    let json: serde_json::Value =
        serde_json::from_str(&render::json(&[report])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["flows"][0]["covered"], 2);
    assert_eq!(json["flows"][0]["elements"][4]["kind"], "tool");
    assert_eq!(json["flows"][0]["elements"][4]["hits"], 1);
}

#[test]
fn a_question_after_a_rejected_value_counts_the_invalid_message_not_the_ask() {
    let text = r#"[flow]
name = "loan"

[assistant]
model = "m"
instructions = "Loans."

[tools.loan]
description = "Loan payment."
builtin = "finance.loan_payment"

[tools.loan.params.years]
type = "integer"
maximum = 50
ask = "Over how many years?"
invalid = "At most {{ error.limit }} years. Over how many?"
max_asks = 2
on_exhausted = { inject = "Offer common terms." }
"#;
    let report = clarion_flow::load_str("loan.toml", text, None);
    let flow = Arc::new(
        report
            .flow
            .unwrap_or_else(|| panic!("{:?}", report.diagnostics)),
    );
    let mut collector = Collector::new(Arc::new(FlowIndex::new(flow)));
    let asked = |text: &str| Event::QuestionAsked {
        call_id: "c".into(),
        tool: "loan".into(),
        params: vec!["years".into()],
        text: text.into(),
    };
    collector.events(&[
        asked("Over how many years?"),
        Event::ValueRejected {
            call_id: "c2".into(),
            tool: "loan".into(),
            param: "years".into(),
            keyword: "maximum".into(),
            limit: Some(json!(50)),
            value: json!(80),
        },
        asked("At most 50 years. Over how many?"),
        Event::AsksExhausted {
            call_id: "c3".into(),
            tool: "loan".into(),
            params: vec!["years".into()],
            asked: 2,
            outcome: clarion_engine::ExhaustedOutcome::Inject,
        },
    ]);
    let hits = collector.finish();
    let (tool, param) = (|| "loan".to_owned(), || "years".to_owned());
    let ask = Element::Ask {
        tool: tool(),
        param: param(),
    };
    let invalid = Element::Invalid {
        tool: tool(),
        param: param(),
    };
    let exhausted = Element::Exhausted {
        tool: tool(),
        param: param(),
    };
    assert_eq!(hits.get(&ask), 1, "the first question is the `ask`");
    assert_eq!(hits.get(&invalid), 1, "the second is the `invalid` message");
    assert_eq!(hits.get(&exhausted), 1);
}
