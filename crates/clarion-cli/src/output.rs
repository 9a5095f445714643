//! Writing to the terminal: colour only on a TTY (anstream strips it otherwise, and honours
//! `NO_COLOR` / `CLICOLOR_FORCE`), and a closed pipe (`clarion validate | head`) ends
//! quietly instead of panicking.

use std::io::Write;
use std::path::Path;

use clarion_flow::Flow;
use clarion_flow::LoadReport;
use clarion_flow::diagnostic::{Severity, render};

/// Writes `text` to stdout in one `write` (a piped reader sees whole lines).
pub(crate) fn out(text: &str) {
    write_once(&mut std::io::stdout().lock(), stdout_styled(), text);
}

/// Writes `text` to stderr in one `write`.
pub(crate) fn err(text: &str) {
    write_once(&mut std::io::stderr().lock(), stderr_styled(), text);
}

/// Strips styles first when the stream takes none, so the text goes out in one write:
/// `anstream` writes each unstyled run on its own (a line and its newline apart).
fn write_once(stream: &mut impl Write, styled: bool, text: &str) {
    let _ = if styled || !text.contains('\x1b') {
        stream.write_all(text.as_bytes())
    } else {
        stream.write_all(anstream::adapter::strip_str(text).to_string().as_bytes())
    };
    let _ = stream.flush();
}

/// Whether styled output would reach a colour terminal on stdout (asked once: the answer
/// reads the environment and the stream).
pub(crate) fn stdout_styled() -> bool {
    static STYLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STYLED.get_or_init(|| {
        anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
    })
}

/// Whether styled output would reach a colour terminal on stderr (asked once).
pub(crate) fn stderr_styled() -> bool {
    static STYLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STYLED.get_or_init(|| {
        anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never
    })
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
