//! Coverage reports as text: a summary for the terminal, JSON for tools, and LCOV so that
//! coverage viewers and CI annotations show uncovered lines of the flow file.
//!
//! LCOV has lines and branches, not elements, so elements map onto them: a line's count
//! (`DA`) is the smallest count of the elements reported on it — a line is covered when
//! everything on it was exercised — and each `when` is also a branch pair (`BRDA`, branch 0
//! true, branch 1 false, block = the rule's index).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Element, FlowReport, percent};

/// The terminal summary: per flow, its percentage and each uncovered element at
/// `file:line`; then the total when there are several flows.
#[must_use]
pub fn summary(reports: &[FlowReport]) -> String {
    let mut text = String::new();
    for report in reports {
        let _ = writeln!(
            text,
            "coverage of {} ({}): {:.1}% ({} of {} elements)",
            report.path.display(),
            report.flow,
            report.percent(),
            report.covered(),
            report.total()
        );
        for covered in report.uncovered() {
            let _ = writeln!(
                text,
                "  {}:{}  {}",
                report.path.display(),
                covered.line,
                covered.element.uncovered()
            );
        }
    }
    if reports.len() > 1 {
        let (covered, total) = totals(reports);
        let _ = writeln!(
            text,
            "coverage: {:.1}% ({covered} of {total} elements in {} flows)",
            percent(covered, total),
            reports.len()
        );
    }
    text
}

fn totals(reports: &[FlowReport]) -> (usize, usize) {
    reports.iter().fold((0, 0), |(covered, total), r| {
        (covered + r.covered(), total + r.total())
    })
}

#[derive(Serialize)]
struct JsonReport<'a> {
    covered: usize,
    total: usize,
    percent: f64,
    flows: Vec<JsonFlow<'a>>,
}

#[derive(Serialize)]
struct JsonFlow<'a> {
    covered: usize,
    total: usize,
    percent: f64,
    #[serde(flatten)]
    report: &'a FlowReport,
}

/// The reports as one JSON document: totals, then per flow its totals and every element
/// (`kind` and names, `line`, `hits`).
#[must_use]
pub fn json(reports: &[FlowReport]) -> String {
    let (covered, total) = totals(reports);
    let document = JsonReport {
        covered,
        total,
        percent: round(percent(covered, total)),
        flows: reports
            .iter()
            .map(|report| JsonFlow {
                covered: report.covered(),
                total: report.total(),
                percent: round(report.percent()),
                report,
            })
            .collect(),
    };
    // Plain data with string keys: serializing it cannot fail.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

/// Two decimals are plenty, and keep the document stable across platforms.
fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The reports as an LCOV tracefile: one record (`SF:` … `end_of_record`) per flow file.
#[must_use]
pub fn lcov(reports: &[FlowReport]) -> String {
    let mut text = String::new();
    for report in reports {
        text.push_str("TN:clarion\n");
        let _ = writeln!(text, "SF:{}", report.path.display());
        let mut lines: BTreeMap<usize, u64> = BTreeMap::new();
        for covered in &report.elements {
            lines
                .entry(covered.line)
                .and_modify(|n| *n = (*n).min(covered.hits))
                .or_insert(covered.hits);
        }
        let (mut found, mut hit) = (0, 0);
        for covered in &report.elements {
            if let Element::When { rule, value, .. } = &covered.element {
                let branch = usize::from(!value);
                let _ = writeln!(
                    text,
                    "BRDA:{},{rule},{branch},{}",
                    covered.line, covered.hits
                );
                found += 1;
                hit += usize::from(covered.hits > 0);
            }
        }
        if found > 0 {
            let _ = writeln!(text, "BRF:{found}\nBRH:{hit}");
        }
        for (line, count) in &lines {
            let _ = writeln!(text, "DA:{line},{count}");
        }
        let _ = writeln!(
            text,
            "LF:{}\nLH:{}",
            lines.len(),
            lines.values().filter(|n| **n > 0).count()
        );
        text.push_str("end_of_record\n");
    }
    text
}
