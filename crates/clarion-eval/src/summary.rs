//! The evaluation as text for a terminal and as `JUnit` XML for CI.

use std::fmt::Write as _;

use crate::results::{Results, ScenarioResult};

/// Per scenario: its pass rate and interval, each expectation below 100% with its most
/// common failure; then the totals, latency, tokens and Clarion's own CPU per sample.
#[must_use]
pub fn text(results: &Results, min_pass_rate: Option<f64>) -> String {
    let mut text = format!(
        "{} × {} samples against {}\n\n",
        plural(results.scenarios.len(), "scenario"),
        results.samples,
        results.model
    );
    for scenario in &results.scenarios {
        if let Some(why) = &scenario.not_evaluable {
            let _ = writeln!(text, "  not evaluable  {}: {why}", scenario.path);
            continue;
        }
        let below = min_pass_rate.is_some_and(|min| scenario.rate() < min);
        let _ = writeln!(
            text,
            "{} {:>4.0}%  [{:.0}–{:.0}%]  {}/{}  {}",
            if below { "✗" } else { " " },
            100.0 * scenario.rate(),
            100.0 * scenario.interval.low,
            100.0 * scenario.interval.high,
            scenario.passed,
            scenario.total,
            scenario.path
        );
        for expectation in scenario.expectations.iter().filter(|e| e.passed < e.total) {
            let _ = write!(
                text,
                "        {:>4.0}%  {} (turn {}{})",
                100.0 * expectation.rate(),
                expectation.key,
                expectation.turn,
                expectation
                    .line
                    .map_or_else(String::new, |l| format!(", line {l}"))
            );
            if let Some(failure) = &expectation.most_common_failure {
                let _ = write!(
                    text,
                    ": {} ({:.0}% of samples)",
                    failure.detail,
                    100.0 * failure.share
                );
            }
            text.push('\n');
        }
    }
    let (passed, total) = results.totals();
    let interval = crate::stats::wilson(passed, total);
    let _ = writeln!(
        text,
        "\n{passed}/{total} samples passed ({:.0}%, 95% interval {:.0}–{:.0}%)",
        100.0 * crate::results::rate(passed, total),
        100.0 * interval.low,
        100.0 * interval.high
    );
    let not_evaluable = results
        .scenarios
        .iter()
        .filter(|s| s.not_evaluable.is_some())
        .count();
    if not_evaluable > 0 {
        let _ = writeln!(
            text,
            "{} not evaluable (not counted as passed)",
            plural(not_evaluable, "scenario")
        );
    }
    if let Some(min) = min_pass_rate {
        let below = below(results, min).len();
        let _ = writeln!(
            text,
            "{} below --min-pass-rate {min}",
            plural(below, "scenario")
        );
    }
    let samples: Vec<_> = results.scenarios.iter().flat_map(|s| &s.samples).collect();
    if !samples.is_empty() {
        let mut seconds: Vec<f64> = samples.iter().map(|s| s.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        let n = f64::from(crate::results::count(samples.len()));
        #[allow(
            clippy::cast_precision_loss,
            reason = "token counts are far below 2^52"
        )]
        let tokens = |f: &dyn Fn(&&crate::results::Sample) -> u64| {
            samples.iter().map(f).sum::<u64>() as f64 / n
        };
        let _ = write!(
            text,
            "per sample: median {:.1} s, slowest {:.1} s; {:.0} prompt and {:.0} completion tokens",
            seconds[seconds.len() / 2],
            seconds[seconds.len() - 1],
            tokens(&|s| s.prompt_tokens),
            tokens(&|s| s.completion_tokens),
        );
        if let Some(cpu) = results.cpu_seconds {
            let _ = write!(text, "; Clarion's own CPU {:.1} ms", 1000.0 * cpu / n);
        }
        text.push('\n');
    }
    text
}

/// The evaluable scenarios whose pass rate is below `min`.
#[must_use]
pub fn below(results: &Results, min: f64) -> Vec<&ScenarioResult> {
    results
        .scenarios
        .iter()
        .filter(|s| s.not_evaluable.is_none() && s.rate() < min)
        .collect()
}

/// `JUnit` XML: a test case per scenario, failed when its pass rate is below `min` (never
/// without one), skipped when it is not evaluable.
#[must_use]
pub fn junit(results: &Results, min_pass_rate: Option<f64>) -> String {
    let failures = min_pass_rate.map_or(0, |min| below(results, min).len());
    let skipped = results
        .scenarios
        .iter()
        .filter(|s| s.not_evaluable.is_some())
        .count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"clarion eval\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">",
        results.scenarios.len(),
        results.seconds
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"clarion eval: {}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
        escape(&results.model),
        results.scenarios.len()
    );
    for scenario in &results.scenarios {
        let seconds: f64 = scenario.samples.iter().map(|s| s.seconds).sum();
        let _ = write!(
            xml,
            "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" time=\"{seconds:.3}\">",
            escape(&scenario.title),
            escape(&classname(&scenario.path)),
            escape(&scenario.path)
        );
        if let Some(why) = &scenario.not_evaluable {
            let _ = write!(xml, "<skipped message=\"not evaluable: {}\"/>", escape(why));
        } else if let Some(min) = min_pass_rate.filter(|&min| scenario.rate() < min) {
            let mut message = format!(
                "pass rate {:.0}% ({}/{}) is below {:.0}%",
                100.0 * scenario.rate(),
                scenario.passed,
                scenario.total,
                100.0 * min
            );
            if let Some(failure) = &scenario.most_common_failure {
                let _ = write!(
                    message,
                    "; most common failure: {} ({} of {})",
                    failure.detail, failure.count, scenario.total
                );
            }
            let _ = write!(
                xml,
                "<failure message=\"{}\" type=\"pass rate\"/>",
                escape(&message)
            );
        }
        let _ = write!(
            xml,
            "<system-out>{}</system-out>",
            escape(&format!(
                "{}/{} samples passed (95% interval {:.0}–{:.0}%)",
                scenario.passed,
                scenario.total,
                100.0 * scenario.interval.low,
                100.0 * scenario.interval.high
            ))
        );
        xml.push_str("</testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// The flow's folder name, as `clarion test --junit` names classes.
fn classname(path: &str) -> String {
    let parts: Vec<&str> = path.split(['/', '\\']).collect();
    parts
        .len()
        .checked_sub(3)
        .and_then(|i| parts.get(i))
        .map_or_else(|| "scenarios".to_owned(), |s| (*s).to_owned())
}

/// Text for XML (and HTML) attribute values and content.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Characters XML 1.0 forbids (ANSI escapes in a transcript, say).
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
