//! Two evaluations side by side: per scenario and per expectation, what got better or
//! worse, and whether the difference is more than chance (Fisher's exact test, see
//! [`crate::stats`]). Scenarios are matched by path, expectations by their pointer in the
//! scenario file, so a run against another model — or after editing the flow — compares
//! line for line.

use std::fmt::Write as _;

use serde::Serialize;

use crate::results::{Results, rate};
use crate::stats::fisher_exact;

/// The significance level: a change with p below it is reported as significant.
pub const ALPHA: f64 = 0.05;

/// One scenario or expectation in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The scenario file, and for an expectation its key and turn.
    pub what: String,
    /// Passed and played in the first run.
    pub before: (u32, u32),
    /// Passed and played in the second.
    pub after: (u32, u32),
    /// Fisher's exact two-sided p-value.
    pub p: f64,
}

impl Change {
    /// The change of pass rate, in percentage points.
    #[must_use]
    pub fn points(&self) -> f64 {
        100.0 * (rate(self.after.0, self.after.1) - rate(self.before.0, self.before.1))
    }

    /// Whether the difference is more than chance.
    #[must_use]
    pub fn significant(&self) -> bool {
        self.p < ALPHA
    }
}

/// What changed between two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Scenarios in both runs.
    pub scenarios: Vec<Change>,
    /// Expectations in both runs whose pass rate moved.
    pub expectations: Vec<Change>,
    /// Scenarios in only one of the runs.
    pub unmatched: Vec<String>,
}

impl Comparison {
    /// Scenarios significantly worse in the second run.
    #[must_use]
    pub fn worse(&self) -> usize {
        self.scenarios
            .iter()
            .filter(|c| c.significant() && c.points() < 0.0)
            .count()
    }
}

/// Compares `before` with `after`.
#[must_use]
pub fn compare(before: &Results, after: &Results) -> Comparison {
    let mut comparison = Comparison {
        scenarios: Vec::new(),
        expectations: Vec::new(),
        unmatched: Vec::new(),
    };
    for a in &before.scenarios {
        let Some(b) = after.scenarios.iter().find(|b| b.path == a.path) else {
            comparison
                .unmatched
                .push(format!("{} (only in the first)", a.path));
            continue;
        };
        if a.total == 0 || b.total == 0 {
            continue;
        }
        comparison.scenarios.push(Change {
            what: a.path.clone(),
            before: (a.passed, a.total),
            after: (b.passed, b.total),
            p: fisher_exact(a.passed, a.total, b.passed, b.total),
        });
        for x in &a.expectations {
            let Some(y) = b.expectations.iter().find(|y| y.pointer == x.pointer) else {
                continue;
            };
            if (rate(x.passed, x.total) - rate(y.passed, y.total)).abs() < f64::EPSILON {
                continue;
            }
            comparison.expectations.push(Change {
                what: format!("{} {} (turn {})", a.path, x.key, x.turn),
                before: (x.passed, x.total),
                after: (y.passed, y.total),
                p: fisher_exact(x.passed, x.total, y.passed, y.total),
            });
        }
    }
    for b in &after.scenarios {
        if !before.scenarios.iter().any(|a| a.path == b.path) {
            comparison
                .unmatched
                .push(format!("{} (only in the second)", b.path));
        }
    }
    comparison
}

/// The comparison as text for a terminal: a table per scenario, the expectations that
/// moved, and a verdict line.
#[must_use]
pub fn render(comparison: &Comparison, before: &Results, after: &Results) -> String {
    let mut text = format!(
        "comparing {} ({} samples per scenario) with {} ({})\n\n",
        before.model, before.samples, after.model, after.samples
    );
    let width = comparison
        .scenarios
        .iter()
        .map(|c| c.what.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        text,
        "{:<width$}  {:>11}  {:>11}  change",
        "scenario", "first", "second"
    );
    for change in &comparison.scenarios {
        let _ = writeln!(
            text,
            "{:<width$}  {:>11}  {:>11}  {}",
            change.what,
            fraction(change.before),
            fraction(change.after),
            verdict(change)
        );
    }
    if !comparison.expectations.is_empty() {
        text.push_str("\nexpectations that moved:\n");
        for change in &comparison.expectations {
            let _ = writeln!(
                text,
                "  {}: {} → {}  {}",
                change.what,
                fraction(change.before),
                fraction(change.after),
                verdict(change)
            );
        }
    }
    for unmatched in &comparison.unmatched {
        let _ = writeln!(text, "not compared: {unmatched}");
    }
    let better = comparison
        .scenarios
        .iter()
        .filter(|c| c.significant() && c.points() > 0.0)
        .count();
    let _ = writeln!(
        text,
        "\n{better} significantly better, {} significantly worse (Fisher's exact test, p < {ALPHA})",
        comparison.worse()
    );
    text
}

fn fraction((k, n): (u32, u32)) -> String {
    format!("{k}/{n} {:>3.0}%", 100.0 * rate(k, n))
}

fn verdict(change: &Change) -> String {
    let points = change.points();
    if points.abs() < f64::EPSILON {
        return "same".to_owned();
    }
    let word = match (change.significant(), points > 0.0) {
        (true, true) => "better",
        (true, false) => "WORSE",
        (false, _) => "not significant",
    };
    format!("{points:+.0} points, p = {:.3}: {word}", change.p)
}
