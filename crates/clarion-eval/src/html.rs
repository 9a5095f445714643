//! The evaluation as one self-contained HTML file: inline CSS and SVG, no scripts, no
//! fonts, nothing fetched — it opens from a CI artefact or an e-mail attachment.
//!
//! Read top to bottom it answers, in order: how good is it overall; which scenario is weak
//! (a bar per scenario with its 95% interval as a whisker); which expectation inside it
//! fails and how (the most common failure, in words); how long samples take (a latency
//! histogram); and what the failing conversations looked like (each transcript, folded).
//! The markup is well-formed XML as well as HTML, so tests parse it with an XML parser.

use std::fmt::Write as _;

use crate::results::{Results, ScenarioResult, Verdict, rate};
use crate::stats::wilson;
use crate::summary::escape;

const STYLE: &str = "
:root { color-scheme: light; --ok: #1a7f37; --mid: #9a6700; --bad: #cf222e; --ink: #1f2328; --muted: #57606a; --line: #d0d7de; }
body { font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', sans-serif; color: var(--ink); max-width: 72rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid var(--line); }
.muted { color: var(--muted); } .big { font-size: 2.4rem; font-weight: 700; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ok { color: var(--ok); } .mid { color: var(--mid); } .bad { color: var(--bad); }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: 13px; }
details { margin: .4rem 0; } summary { cursor: pointer; }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
";

/// The report for `results`; `min_pass_rate` marks scenarios below it.
#[must_use]
pub fn report(results: &Results, min_pass_rate: Option<f64>) -> String {
    let (passed, total) = results.totals();
    let interval = wilson(passed, total);
    let mut html =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n");
    let _ = writeln!(
        html,
        "<title>clarion eval: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        escape(&results.model)
    );
    let _ = writeln!(
        html,
        "<header id=\"summary\">\n<h1>How well the flows work with {}</h1>",
        escape(&results.model)
    );
    let _ = writeln!(
        html,
        "<p><span class=\"big {}\">{:.0}%</span> of samples passed — {passed} of {total}, 95% interval {:.0}–{:.0}%.</p>",
        class(rate(passed, total)),
        100.0 * rate(passed, total),
        100.0 * interval.low,
        100.0 * interval.high
    );
    let _ = writeln!(
        html,
        "<p class=\"muted\">{} scenarios × {} samples, {:.0} s in all{}. Clarion {}.{}</p>\n</header>",
        results.scenarios.len(),
        results.samples,
        results.seconds,
        results
            .cpu_seconds
            .map_or_else(String::new, |cpu| format!("; Clarion's own CPU {cpu:.2} s")),
        escape(&results.clarion),
        min_pass_rate.map_or_else(String::new, |m| format!(
            " Scenarios below {:.0}% fail the run.",
            100.0 * m
        ))
    );
    scenario_chart(&mut html, results, min_pass_rate);
    expectations(&mut html, results);
    failures(&mut html, results);
    latency(&mut html, results);
    samples(&mut html, results);
    html.push_str("</body>\n</html>\n");
    html
}

/// The colour class of a rate.
fn class(rate: f64) -> &'static str {
    if rate >= 0.9 {
        "ok"
    } else if rate >= 0.5 {
        "mid"
    } else {
        "bad"
    }
}

fn colour(rate: f64) -> &'static str {
    match class(rate) {
        "ok" => "#1a7f37",
        "mid" => "#bf8700",
        _ => "#cf222e",
    }
}

/// A horizontal bar per scenario, its interval as a whisker, the threshold as a line.
fn scenario_chart(html: &mut String, results: &Results, min: Option<f64>) {
    html.push_str("<section id=\"scenarios\">\n<h2>Pass rate per scenario</h2>\n");
    let evaluable: Vec<&ScenarioResult> = results
        .scenarios
        .iter()
        .filter(|s| s.not_evaluable.is_none())
        .collect();
    let (left, width, row) = (330.0, 420.0, 26.0);
    #[allow(clippy::cast_precision_loss, reason = "a few hundred rows at most")]
    let height = row * evaluable.len() as f64 + 30.0;
    let _ = writeln!(
        html,
        "<svg role=\"img\" aria-labelledby=\"chart-title\" viewBox=\"0 0 {} {height}\" width=\"100%\">\n<title id=\"chart-title\">Pass rate of each scenario with its 95% interval</title>",
        left + width + 70.0
    );
    for (i, scenario) in evaluable.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "a few hundred rows at most")]
        let y = row * i as f64 + 4.0;
        let r = scenario.rate();
        let _ = writeln!(
            html,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y + 14.0,
            escape(&short(&scenario.title, 44))
        );
        let _ = writeln!(
            html,
            "<rect x=\"{left}\" y=\"{y:.1}\" width=\"{width}\" height=\"18\" fill=\"#eaeef2\"/><rect x=\"{left}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"18\" fill=\"{}\"><title>{}: {}/{} passed</title></rect>",
            width * r,
            colour(r),
            escape(&scenario.path),
            scenario.passed,
            scenario.total
        );
        let (lo, hi) = (
            left + width * scenario.interval.low,
            left + width * scenario.interval.high,
        );
        let _ = writeln!(
            html,
            "<path d=\"M{lo:.1} {:.1}H{hi:.1}M{lo:.1} {:.1}v8M{hi:.1} {:.1}v8\" stroke=\"#1f2328\" stroke-width=\"1.5\" fill=\"none\"/>",
            y + 9.0,
            y + 5.0,
            y + 5.0
        );
        let _ = writeln!(
            html,
            "<text x=\"{:.1}\" y=\"{:.1}\">{:.0}%</text>",
            left + width + 8.0,
            y + 14.0,
            100.0 * r
        );
    }
    if let Some(min) = min {
        let x = left + width * min;
        let _ = writeln!(
            html,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"{:.1}\" stroke=\"#cf222e\" stroke-dasharray=\"4 3\"/>",
            height - 20.0
        );
    }
    html.push_str("</svg>\n");
    let not_evaluable: Vec<&ScenarioResult> = results
        .scenarios
        .iter()
        .filter(|s| s.not_evaluable.is_some())
        .collect();
    if !not_evaluable.is_empty() {
        html.push_str("<p>Not evaluable (not counted as passed):</p>\n<ul>\n");
        for scenario in not_evaluable {
            let _ = writeln!(
                html,
                "<li><code>{}</code>: {}</li>",
                escape(&scenario.path),
                escape(scenario.not_evaluable.as_deref().unwrap_or_default())
            );
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</section>\n");
}

/// Per scenario, each expectation's rate with a small bar.
fn expectations(html: &mut String, results: &Results) {
    html.push_str("<section id=\"expectations\">\n<h2>Pass rate per expectation</h2>\n<table>\n<thead><tr><th>scenario</th><th>expectation</th><th class=\"num\">passed</th><th class=\"num\">95% interval</th><th>most common failure</th></tr></thead>\n<tbody>\n");
    for scenario in results
        .scenarios
        .iter()
        .filter(|s| s.not_evaluable.is_none())
    {
        for e in &scenario.expectations {
            let r = e.rate();
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td><code>{}</code> (turn {}{})</td><td class=\"num {}\"><svg role=\"img\" aria-label=\"{:.0}%\" width=\"60\" height=\"10\"><rect width=\"60\" height=\"10\" fill=\"#eaeef2\"/><rect width=\"{:.1}\" height=\"10\" fill=\"{}\"/></svg> {}/{}</td><td class=\"num\">{:.0}–{:.0}%</td><td>{}</td></tr>",
                escape(&scenario.title),
                escape(&e.key),
                e.turn,
                e.line.map_or_else(String::new, |l| format!(", line {l}")),
                class(r),
                100.0 * r,
                60.0 * r,
                colour(r),
                e.passed,
                e.total,
                100.0 * e.interval.low,
                100.0 * e.interval.high,
                e.most_common_failure
                    .as_ref()
                    .map_or_else(String::new, |f| format!(
                        "{} <span class=\"muted\">({:.0}% of samples)</span>",
                        escape(&f.detail),
                        100.0 * f.share
                    ))
            );
        }
    }
    html.push_str("</tbody>\n</table>\n</section>\n");
}

/// Every distinct failure, most frequent first.
fn failures(html: &mut String, results: &Results) {
    html.push_str("<section id=\"failures\">\n<h2>What went wrong</h2>\n");
    let mut rows: Vec<(u32, &str, String)> = Vec::new();
    for scenario in &results.scenarios {
        for e in &scenario.expectations {
            let mut by_detail: Vec<(&str, u32)> = Vec::new();
            for sample in &scenario.samples {
                for f in sample.failures.iter().filter(|f| f.pointer == e.pointer) {
                    match by_detail.iter_mut().find(|(d, _)| *d == f.detail) {
                        Some((_, n)) => *n += 1,
                        None => by_detail.push((&f.detail, 1)),
                    }
                }
            }
            for (detail, n) in by_detail {
                rows.push((
                    n,
                    &scenario.title,
                    format!("{} (turn {}): {detail}", e.key, e.turn),
                ));
            }
        }
        for sample in &scenario.samples {
            for problem in &sample.problems {
                rows.push((1, &scenario.title, format!("stopped: {problem}")));
            }
        }
    }
    rows.sort_by_key(|row| std::cmp::Reverse(row.0));
    if rows.is_empty() {
        html.push_str("<p class=\"ok\">Nothing: every expectation held in every sample.</p>\n");
    } else {
        html.push_str("<table>\n<thead><tr><th class=\"num\">samples</th><th>scenario</th><th>what happened instead</th></tr></thead>\n<tbody>\n");
        for (n, title, what) in rows {
            let _ = writeln!(
                html,
                "<tr><td class=\"num\">{n}</td><td>{}</td><td>{}</td></tr>",
                escape(title),
                escape(&what)
            );
        }
        html.push_str("</tbody>\n</table>\n");
    }
    html.push_str("</section>\n");
}

/// Bars in the latency histogram.
const BINS: usize = 12;

/// A histogram of seconds per sample.
fn latency(html: &mut String, results: &Results) {
    html.push_str("<section id=\"latency\">\n<h2>Latency per sample</h2>\n");
    let seconds: Vec<f64> = results
        .scenarios
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| x.seconds))
        .collect();
    let max = seconds.iter().copied().fold(0.0_f64, f64::max);
    if seconds.is_empty() || max <= 0.0 {
        html.push_str("<p class=\"muted\">No samples.</p>\n</section>\n");
        return;
    }
    let mut bins = [0_u32; BINS];
    for s in &seconds {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a bin index below BINS"
        )]
        let bin = ((s / max) * BINS as f64).floor() as usize;
        bins[bin.min(BINS - 1)] += 1;
    }
    let tallest = f64::from(bins.iter().copied().max().unwrap_or(1).max(1));
    let (w, h) = (40.0, 140.0);
    let _ = writeln!(
        html,
        "<svg role=\"img\" aria-labelledby=\"latency-title\" viewBox=\"0 0 {} {}\" width=\"100%\" style=\"max-width:40rem\">\n<title id=\"latency-title\">How many samples took how long, from 0 to {max:.1} s</title>",
        w * 12.0 + 20.0,
        h + 40.0
    );
    for (i, n) in bins.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "i < 12")]
        let x = 10.0 + w * i as f64;
        let bar = h * f64::from(*n) / tallest;
        #[allow(clippy::cast_precision_loss, reason = "i < 12")]
        let upto = max * (i + 1) as f64 / BINS as f64;
        let _ = writeln!(
            html,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"#0969da\"><title>{n} samples up to {upto:.1} s</title></rect>",
            h - bar + 10.0,
            w - 4.0
        );
        if *n > 0 {
            let _ = writeln!(
                html,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{n}</text>",
                x + (w - 4.0) / 2.0,
                h - bar + 6.0
            );
        }
    }
    let _ = writeln!(
        html,
        "<text x=\"10\" y=\"{:.1}\">0 s</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{max:.1} s</text>",
        h + 28.0,
        w * 12.0 + 6.0,
        h + 28.0
    );
    html.push_str("</svg>\n");
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let _ = writeln!(
        html,
        "<p class=\"muted\">Median {:.1} s, slowest {max:.1} s, over {} samples.</p>\n</section>",
        sorted[sorted.len() / 2],
        sorted.len()
    );
}

/// Each failing sample's conversation, folded.
fn samples(html: &mut String, results: &Results) {
    html.push_str("<section id=\"samples\">\n<h2>Failing samples</h2>\n");
    let mut any = false;
    for scenario in &results.scenarios {
        for sample in scenario
            .samples
            .iter()
            .filter(|s| s.verdict != Verdict::Passed)
        {
            any = true;
            let _ = writeln!(
                html,
                "<details>\n<summary><strong>{}</strong>, sample {}: {} — {}</summary>",
                escape(&scenario.title),
                sample.index,
                sample.verdict.as_str(),
                escape(
                    &sample
                        .failures
                        .iter()
                        .map(|f| f.detail.clone())
                        .chain(sample.problems.iter().cloned())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            );
            let _ = writeln!(
                html,
                "<pre>{}</pre>\n</details>",
                escape(&sample.transcript)
            );
        }
    }
    if !any {
        html.push_str("<p class=\"ok\">None.</p>\n");
    }
    html.push_str("</section>\n");
}

/// `text`, cut to `max` characters with an ellipsis.
fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}
