//! `[turns.expect]`: assertions over one turn's events, in the spirit of Rasa's end-to-end
//! tests. Each failure is a located diagnostic (`S015`) saying what happened instead.

use serde_json::{Map, Value};

use super::spec::{ExpectSpec, OneOrMany, ToolCalledSpec};
use crate::transcript::inline_json;
use clarion_engine::Event;
use clarion_engine::RunStatus;
use clarion_flow::diagnostic::{Diagnostic, DiagnosticKind};
use clarion_flow::spans::{SpanIndex, escape};

/// One call made during the turn.
struct Call<'a> {
    name: &'a str,
    /// The arguments it ran with, or as the model wrote them if it did not run.
    args: Map<String, Value>,
}

/// One expectation of a turn, judged: what `clarion eval` counts per expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The expectation's key (`tool_called`, `question_asked`, …).
    pub key: &'static str,
    /// The JSON pointer of its value in the scenario file, e.g.
    /// `/turns/0/expect/tool_called/1`: stable across runs, so samples add up.
    pub pointer: String,
    /// What happened instead, when it did not hold.
    pub failure: Option<String>,
}

impl Check {
    /// Whether the expectation held.
    #[must_use]
    pub fn held(&self) -> bool {
        self.failure.is_none()
    }

    /// A failed check as a located diagnostic (`S015`); `None` when it held.
    #[must_use]
    pub fn diagnostic(&self, spans: &SpanIndex) -> Option<Diagnostic> {
        let detail = self.failure.clone()?;
        Some(
            Diagnostic::new(
                DiagnosticKind::ExpectationFailed {
                    expectation: self.key.to_owned(),
                    detail,
                },
                spans.value_span(&self.pointer),
            )
            .with_label("expected here"),
        )
    }
}

/// Where checks go, below the `[turns.expect]` table's pointer.
struct Failures<'a> {
    at: &'a str,
    found: Vec<Check>,
}

impl Failures<'_> {
    /// `key` held, at `pointer` (below `at`).
    fn pass(&mut self, key: &'static str, pointer: &str) {
        self.found.push(Check {
            key,
            pointer: format!("{}/{pointer}", self.at),
            failure: None,
        });
    }

    /// A failure of `key`, with a caret under the value at `pointer` (below `at`).
    fn fail(&mut self, key: &'static str, pointer: &str, detail: String) {
        self.found.push(Check {
            key,
            pointer: format!("{}/{pointer}", self.at),
            failure: Some(detail),
        });
    }
}

/// The pointer of entry `k` of a one-or-many expectation.
fn entry<T>(key: &str, values: &OneOrMany<T>, k: usize) -> String {
    match values {
        OneOrMany::One(_) => key.to_owned(),
        OneOrMany::Many(_) => format!("{key}/{k}"),
    }
}

/// The failures of `expect` (at JSON pointer `at`) against a turn's `events` and the
/// status its last run ended in.
#[must_use]
pub fn evaluate(
    expect: &ExpectSpec,
    events: &[Event],
    status: Option<RunStatus>,
    spans: &SpanIndex,
    at: &str,
) -> Vec<Diagnostic> {
    check(expect, events, status, at)
        .iter()
        .filter_map(|c| c.diagnostic(spans))
        .collect()
}

/// Every expectation of `expect` (at JSON pointer `at`), held or not, in the table's order
/// of keys.
#[must_use]
pub fn check(
    expect: &ExpectSpec,
    events: &[Event],
    status: Option<RunStatus>,
    at: &str,
) -> Vec<Check> {
    let mut failures = Failures {
        at,
        found: Vec::new(),
    };
    if let Some(expected) = &expect.tool_called {
        tool_called(&mut failures, expected, events);
    }
    if let Some(expected) = &expect.question_asked {
        question_asked(&mut failures, expected, events, true);
    }
    if let Some(expected) = &expect.question_includes {
        question_asked(&mut failures, expected, events, false);
    }
    for (name, value) in expect.slot_set.iter().flatten() {
        let set = events.iter().rev().find_map(|e| match e {
            Event::SlotSet { name: n, value } if n == name => Some(value),
            _ => None,
        });
        let pointer = format!("slot_set/{}", escape(name));
        let detail = match set {
            Some(actual) if matches(value, actual) => {
                failures.pass("slot_set", &pointer);
                continue;
            }
            Some(actual) => format!("slot `{name}` was set to {}", inline_json(actual)),
            None => format!("slot `{name}` was not set"),
        };
        failures.fail("slot_set", &pointer, detail);
    }
    if let Some(expected) = &expect.context_injected {
        context_injected(&mut failures, expected, events);
    }
    if let Some(expected) = expect.run_status {
        if status == Some(expected.status()) {
            failures.pass("run_status", "run_status");
        } else {
            let detail = match status {
                Some(status) => format!("the run ended `{}`", status.as_str()),
                None => "no run ended".to_owned(),
            };
            failures.fail("run_status", "run_status", detail);
        }
    }
    if let Some(expected) = expect.pending_abandoned {
        let abandoned = events.iter().find_map(|e| match e {
            Event::PendingAbandoned { tool, .. } => Some(tool.as_str()),
            _ => None,
        });
        let detail = match (expected, abandoned) {
            (true, None) => Some("no pending call was abandoned".to_owned()),
            (false, Some(tool)) => Some(format!("the pending `{tool}` call was abandoned")),
            _ => None,
        };
        match detail {
            Some(detail) => failures.fail("pending_abandoned", "pending_abandoned", detail),
            None => failures.pass("pending_abandoned", "pending_abandoned"),
        }
    }
    if let Some(expected) = &expect.confirmation_asked {
        let asked: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::ConfirmationAsked { tool, .. } => Some(tool.as_str()),
                _ => None,
            })
            .collect();
        if asked.contains(&expected.as_str()) {
            failures.pass("confirmation_asked", "confirmation_asked");
        } else {
            let detail = match asked.as_slice() {
                [] => format!("no confirmation of `{expected}` was asked; none was"),
                others => format!(
                    "no confirmation of `{expected}` was asked (the turn asked for `{}`)",
                    others.join("`, `")
                ),
            };
            failures.fail("confirmation_asked", "confirmation_asked", detail);
        }
    }
    if let Some(expected) = expect.decided {
        let decided = events.iter().find_map(|e| match e {
            Event::ConfirmationAnswered { decision, .. } => Some(decision.as_str()),
            _ => None,
        });
        match decided {
            Some(decided) if decided == expected.as_str() => failures.pass("decided", "decided"),
            Some(decided) => failures.fail(
                "decided",
                "decided",
                format!("the answer was taken as `{decided}`"),
            ),
            None => failures.fail(
                "decided",
                "decided",
                "no answer to a confirmation was read in this turn".to_owned(),
            ),
        }
    }
    moves(&mut failures, expect, events);
    failures.found
}

/// `handed_to` and `handed_back_to`: where the turn moved the thread.
fn moves(failures: &mut Failures<'_>, expect: &ExpectSpec, events: &[Event]) {
    for (key, expected, moves) in [
        ("handed_to", &expect.handed_to, handoffs(events, true)),
        (
            "handed_back_to",
            &expect.handed_back_to,
            handoffs(events, false),
        ),
    ] {
        let Some(expected) = expected else { continue };
        if moves.contains(&expected.as_str()) {
            failures.pass(key, key);
        } else {
            let detail = match moves.as_slice() {
                [] => format!("the thread did not move to `{expected}`; it stayed where it was"),
                others => format!(
                    "the thread did not move to `{expected}` (it moved to `{}`)",
                    others.join("`, `")
                ),
            };
            failures.fail(key, key, detail);
        }
    }
}

/// The flows the thread was handed to (`to_other`) or back to in a turn.
fn handoffs(events: &[Event], to_other: bool) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::HandedOff { to, .. } if to_other => Some(to.as_str()),
            Event::HandedBack { to, .. } if !to_other => Some(to.as_str()),
            _ => None,
        })
        .collect()
}

fn tool_called(
    failures: &mut Failures<'_>,
    expected: &OneOrMany<ToolCalledSpec>,
    events: &[Event],
) {
    let calls = calls(events);
    for (k, spec) in expected.as_slice().iter().enumerate() {
        let wanted = Value::Object(spec.args.clone().unwrap_or_default());
        let found = calls
            .iter()
            .any(|c| c.name == spec.tool && matches(&wanted, &Value::Object(c.args.clone())));
        if found {
            failures.pass("tool_called", &entry("tool_called", expected, k));
            continue;
        }
        let same: Vec<String> = calls
            .iter()
            .filter(|c| c.name == spec.tool)
            .map(|c| format!("{}({})", c.name, arguments(&c.args)))
            .collect();
        let detail = if !same.is_empty() {
            format!("`{}` ran as {}", spec.tool, same.join(" and "))
        } else if calls.is_empty() {
            format!("`{}` was not called; no tool was", spec.tool)
        } else {
            let names: Vec<String> = calls.iter().map(|c| format!("`{}`", c.name)).collect();
            format!(
                "`{}` was not called (the turn called {})",
                spec.tool,
                names.join(", ")
            )
        };
        failures.fail("tool_called", &entry("tool_called", expected, k), detail);
    }
}

/// The question asked for exactly `expected` (or, not `exact`, at least for it).
fn question_asked(failures: &mut Failures<'_>, expected: &[String], events: &[Event], exact: bool) {
    let asked: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::QuestionAsked { params, .. } => Some(params.iter().map(String::as_str)),
            _ => None,
        })
        .flatten()
        .collect();
    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
    let mut got = asked.clone();
    want.sort_unstable();
    got.sort_unstable();
    let held = if exact {
        want == got
    } else {
        want.iter().all(|w| got.contains(w))
    };
    let key = if exact {
        "question_asked"
    } else {
        "question_includes"
    };
    if held {
        failures.pass(key, key);
    } else {
        let detail = if asked.is_empty() {
            "no question was asked".to_owned()
        } else {
            format!("the question asked for {}", asked.join(", "))
        };
        failures.fail(key, key, detail);
    }
}

fn context_injected(failures: &mut Failures<'_>, expected: &OneOrMany<String>, events: &[Event]) {
    let injected: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::ContextInjected { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    for (k, wanted) in expected.as_slice().iter().enumerate() {
        if injected.iter().any(|text| text.contains(wanted.as_str())) {
            failures.pass("context_injected", &entry("context_injected", expected, k));
            continue;
        }
        let detail = if injected.is_empty() {
            "no context was injected".to_owned()
        } else {
            let quoted: Vec<String> = injected.iter().map(|t| format!("{:?}", t.trim())).collect();
            format!("none of the context contains it: {}", quoted.join(", "))
        };
        failures.fail(
            "context_injected",
            &entry("context_injected", expected, k),
            detail,
        );
    }
}

fn calls(events: &[Event]) -> Vec<Call<'_>> {
    let mut calls: Vec<(&str, Call<'_>)> = Vec::new();
    for event in events {
        match event {
            Event::ToolCalled {
                call_id,
                name,
                arguments,
            } => {
                let args = match serde_json::from_str(arguments) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                calls.push((call_id, Call { name, args }));
            }
            Event::ToolStarted {
                call_id,
                arguments: Value::Object(args),
                ..
            } => {
                if let Some((_, call)) = calls.iter_mut().find(|(id, _)| id == call_id) {
                    call.args.clone_from(args);
                }
            }
            _ => {}
        }
    }
    calls.into_iter().map(|(_, call)| call).collect()
}

fn arguments(args: &Map<String, Value>) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}: {}", inline_json(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `actual` has everything `expected` has: tables match on their keys (extra keys
/// in `actual` are fine), numbers by value (`50000` equals `50000.0`), the rest exactly.
#[must_use]
pub fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => want
            .iter()
            .all(|(k, v)| got.get(k).is_some_and(|g| matches(v, g))),
        (Value::Array(want), Value::Array(got)) => {
            want.len() == got.len() && want.iter().zip(got).all(|(w, g)| matches(w, g))
        }
        (Value::Number(want), Value::Number(got)) => match (want.as_f64(), got.as_f64()) {
            (Some(w), Some(g)) => (w - g).abs() <= f64::EPSILON * w.abs().max(g.abs()).max(1.0),
            _ => want == got,
        },
        _ => expected == actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_match_on_a_subset_and_numbers_by_value() {
        assert!(matches(&json!({"a": 1}), &json!({"a": 1.0, "b": 2})));
        assert!(!matches(&json!({"a": 1}), &json!({"b": 1})));
        assert!(matches(
            &json!([1, {"x": "y"}]),
            &json!([1.0, {"x": "y", "z": 0}])
        ));
        assert!(!matches(&json!("1"), &json!(1)));
    }
}
