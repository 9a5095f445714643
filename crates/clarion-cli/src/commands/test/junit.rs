//! `clarion test --junit FILE`: the results as `JUnit` XML, one `<testsuite>` per flow
//! folder, for CI systems that display test reports.

use std::fmt::Write as _;

use super::Result;

pub(super) fn report(results: &[Result]) -> String {
    let mut suites: Vec<(String, Vec<&Result>)> = Vec::new();
    for result in results {
        let suite = suite_name(result);
        match suites.iter_mut().find(|(name, _)| *name == suite) {
            Some((_, members)) => members.push(result),
            None => suites.push((suite, vec![result])),
        }
    }
    let failures = results.iter().filter(|r| !r.passed()).count();
    let time: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"clarion test\" tests=\"{}\" failures=\"{failures}\" time=\"{time:.3}\">",
        results.len()
    );
    for (name, members) in &suites {
        let failed = members.iter().filter(|r| !r.passed()).count();
        let time: f64 = members.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" time=\"{time:.3}\">",
            escape(name),
            members.len()
        );
        for result in members {
            let outcome = &result.outcome;
            let _ = write!(
                xml,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" time=\"{:.3}\"",
                escape(&outcome.name),
                escape(name),
                escape(&outcome.path.display().to_string()),
                result.elapsed.as_secs_f64()
            );
            if result.passed() {
                xml.push_str("/>\n");
            } else {
                let report = outcome.failure_report(&result.check, false);
                let _ = writeln!(
                    xml,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    escape(&failure_message(result)),
                    escape(&report)
                );
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// The flow folder a scenario belongs to: `flows/NAME/scenarios/x.toml` → `NAME`.
fn suite_name(result: &Result) -> String {
    result
        .outcome
        .path
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "scenarios"))
        .and_then(|p| p.parent())
        .and_then(|p| p.file_name())
        .map_or_else(
            || "scenarios".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
}

fn failure_message(result: &Result) -> String {
    let outcome = &result.outcome;
    if let Some(first) = outcome
        .problems
        .first()
        .or_else(|| outcome.failures.first())
    {
        return first.message();
    }
    match &result.check.state {
        Some(clarion_testing::SnapshotState::New) => "no snapshot yet".to_owned(),
        Some(clarion_testing::SnapshotState::Changed { .. }) => {
            "the transcript differs from its snapshot".to_owned()
        }
        _ => result
            .check
            .error
            .clone()
            .unwrap_or_else(|| "failed".to_owned()),
    }
}

/// XML text and attribute escaping; control characters XML cannot hold are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_and_control_characters_are_escaped() {
        assert_eq!(
            super::escape("a<b & \"c\"\u{1b}[1m"),
            "a&lt;b &amp; &quot;c&quot;[1m"
        );
    }
}
