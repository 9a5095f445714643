//! `clarion test --coverage`: the scenarios' hits added up per flow, printed as a summary,
//! written as JSON or LCOV, and held against `--min-coverage`. Counting and rendering are
//! `clarion_testing::coverage`'s; this module only decides what to print and write.

use std::fmt::Write as _;
use std::path::PathBuf;

use clarion_testing::coverage::{Coverage, FlowReport, render};

use super::{Result, note, paint};
use crate::args::{CoverageFormat, TestArgs};
use crate::error::CliError;

/// What `args` ask of coverage, if anything.
pub(crate) struct Options {
    format: Option<(CoverageFormat, PathBuf)>,
    min: Option<f64>,
}

impl Options {
    pub(crate) fn from_args(args: &TestArgs) -> Option<Self> {
        let wanted = args.coverage || args.coverage_format.is_some() || args.min_coverage.is_some();
        wanted.then(|| Self {
            format: args.coverage_format.map(|format| {
                let output = args
                    .coverage_output
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format.default_output()));
                (format, output)
            }),
            min: args.min_coverage,
        })
    }
}

/// Prints the summary and writes the report; whether every flow reached `--min-coverage`.
pub(crate) fn report(
    options: &Options,
    results: &[Result],
    styled: bool,
) -> std::result::Result<bool, CliError> {
    let mut coverage = Coverage::new();
    for hits in results.iter().filter_map(|r| r.outcome.coverage.as_ref()) {
        coverage.add(hits);
    }
    let reports = coverage
        .reports()
        .map_err(|e| CliError::Io(e.to_string()))?;
    let mut text = String::from("\n");
    text.push_str(&render::summary(&reports));
    if reports.is_empty() {
        text.push_str("coverage: no scenario played, so no flow was covered\n");
    }
    if let Some((format, path)) = &options.format {
        let body = match format {
            CoverageFormat::Json => render::json(&reports),
            CoverageFormat::Lcov => render::lcov(&reports),
        };
        std::fs::write(path, body)
            .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))?;
        text.push_str(&note(
            &format!("coverage written to {}", path.display()),
            styled,
        ));
    }
    let below: Vec<&FlowReport> = options
        .min
        .map(|min| reports.iter().filter(|r| r.below(min)).collect())
        .unwrap_or_default();
    if let (Some(min), false) = (options.min, below.is_empty()) {
        for report in &below {
            let _ = writeln!(
                text,
                "{}: coverage of {} is {:.1}%, below --min-coverage {min}",
                paint("error", anstyle::AnsiColor::Red, styled),
                report.path.display(),
                report.percent()
            );
        }
    }
    crate::output::out(&text);
    Ok(below.is_empty())
}
