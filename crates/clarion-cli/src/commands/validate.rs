//! `clarion validate`: every problem in every file, then a summary line. With `--connect`,
//! each `[mcp]` server is started and the flow checked against what it lists now, and
//! every way that differs from the lock file is an error (`E030`).

use std::path::Path;

use clarion_flow::diagnostic::{Diagnostic, DiagnosticKind, render};
use clarion_flow::mcp::{self, LockedServer, McpLock, lock_path};
use clarion_flow::{LoadOptions, LoadReport, load_file_with};
use clarion_tools::BuiltinRegistry;

use crate::args::{DiagnosticFormat, ValidateArgs};
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;
use clarion_flow::discover::flow_files;

pub(crate) fn run(args: &ValidateArgs) -> Result<Exit, CliError> {
    let files = flow_files(&args.paths)?;
    let styled = output::stdout_styled();
    let (mut errors, mut warnings, mut failing_files) = (0, 0, 0);
    // `builtin` names and parameters are checked against the built-ins Clarion ships.
    let builtins = BuiltinRegistry::standard();
    let options = LoadOptions {
        builtins: Some(&builtins),
        ..LoadOptions::default()
    };
    for file in &files {
        let report = if args.connect {
            connected(file, &options)?
        } else {
            load_file_with(file, &options)
        };
        print_report(&report, args.format, styled);
        errors += report.error_count();
        warnings += report.warning_count();
        if report.error_count() > 0 || (args.deny_warnings && report.warning_count() > 0) {
            failing_files += 1;
        }
    }
    if args.format == DiagnosticFormat::Human {
        output::out(&summary(
            files.len(),
            errors,
            warnings,
            failing_files,
            styled,
        ));
    }
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    Ok(if failed {
        Exit::Problems
    } else {
        Exit::Success
    })
}

/// The report of `file` checked against its servers' live listing, plus the drift from
/// its lock file and the servers that could not be asked.
pub(crate) fn connected(file: &Path, options: &LoadOptions<'_>) -> Result<LoadReport, CliError> {
    let (live, unreachable) = crate::commands::mcp::live_lock(file)?;
    if live.servers.is_empty() && unreachable.is_empty() {
        return Ok(load_file_with(file, options));
    }
    let locked = McpLock::read(&lock_path(file)).ok();
    let mut report = load_file_with(
        file,
        &LoadOptions {
            mcp_lock: Some(&live),
            ..*options
        },
    );
    let header = |server: &str| {
        let text = report.source.text();
        let needle = format!("[mcp.{server}]");
        text.find(&needle).map(|at| at..at + needle.len())
    };
    let mut drift = Vec::new();
    for (server, error) in unreachable {
        drift.push(
            Diagnostic::new(
                DiagnosticKind::McpDrift {
                    server: server.clone(),
                    reason: format!("it cannot be asked for its tools: {error}"),
                },
                header(&server),
            )
            .with_help("start it by hand with the same command to see why"),
        );
    }
    for (server, listed) in &live.servers {
        let empty = LockedServer::default();
        let was = locked
            .as_ref()
            .and_then(|lock| lock.servers.get(server))
            .unwrap_or(&empty);
        for (_, reason) in mcp::drift(was, listed) {
            drift.push(
                Diagnostic::new(
                    DiagnosticKind::McpDrift {
                        server: server.clone(),
                        reason,
                    },
                    header(server),
                )
                .with_label("differs from the lock file")
                .with_help(
                    "run `clarion mcp lock` on this flow and review the diff of the lock file",
                ),
            );
        }
    }
    report.diagnostics.extend(drift);
    clarion_flow::diagnostic::sort(&mut report.diagnostics);
    if report.error_count() > 0 {
        report.flow = None;
    }
    Ok(report)
}

fn print_report(report: &LoadReport, format: DiagnosticFormat, styled: bool) {
    let mut text = String::new();
    for diagnostic in &report.diagnostics {
        match format {
            DiagnosticFormat::Human => {
                text.push_str(&render::human(diagnostic, &report.source, styled));
                text.push_str("\n\n");
            }
            DiagnosticFormat::Json => {
                let json = render::json(diagnostic, &report.source);
                text.push_str(&serde_json::to_string(&json).unwrap_or_default());
                text.push('\n');
            }
        }
    }
    output::out(&text);
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn summary(files: usize, errors: usize, warnings: usize, failing: usize, styled: bool) -> String {
    let checked = plural(files, "flow file");
    let line = if errors == 0 && warnings == 0 {
        format!("{checked} checked: no problems")
    } else {
        format!(
            "{checked} checked: {}, {} ({} failing)",
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(failing, "file")
        )
    };
    let style = if errors > 0 {
        anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Red.into()))
    } else if warnings > 0 {
        anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Yellow.into()))
    } else {
        anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Green.into()))
    };
    if styled {
        format!("{style}{line}{style:#}\n")
    } else {
        format!("{line}\n")
    }
}
