//! Writing to the terminal: colour only on a TTY (anstream strips it otherwise, and honours
//! `NO_COLOR` / `CLICOLOR_FORCE`), and a closed pipe (`clarion validate | head`) ends
//! quietly instead of panicking.

use std::io::Write;
use std::path::Path;

use clarion_flow::Flow;
use clarion_flow::LoadReport;
use clarion_flow::diagnostic::{Severity, render};

/// Writes `text` to stdout.
pub(crate) fn out(text: &str) {
    let mut stdout = anstream::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes `text` to stderr.
pub(crate) fn err(text: &str) {
    let mut stderr = anstream::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// Whether styled output would reach a colour terminal on stdout.
pub(crate) fn stdout_styled() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
}

/// Whether styled output would reach a colour terminal on stderr.
pub(crate) fn stderr_styled() -> bool {
    anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
}

/// `error: MESSAGE` on stderr, rustc style.
pub(crate) fn error_line(message: &str) {
    let style = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Red.into()));
    err(&format!("{style}error{style:#}: {message}\n"));
}

/// The flow of `report`, or `None` after saying why on stderr: its errors (and warnings too,
/// with `warnings`) rendered, then one line "cannot VERB PATH: it has N error(s)…".
pub(crate) fn flow_or_errors(
    report: LoadReport,
    verb: &str,
    path: &Path,
    warnings: bool,
) -> Option<Flow> {
    let styled = stderr_styled();
    for diagnostic in report
        .diagnostics
        .iter()
        .filter(|d| warnings || d.severity() == Severity::Error)
    {
        err(&format!(
            "{}\n\n",
            render::human(diagnostic, &report.source, styled)
        ));
    }
    if report.flow.is_none() {
        error_line(&format!(
            "cannot {verb} {}: it has {} error(s); fix them first (clarion validate)",
            path.display(),
            report.error_count()
        ));
    }
    report.flow
}
