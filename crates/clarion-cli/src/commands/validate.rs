//! `clarion validate`: every problem in every file, then a summary line.

use clarion_flow::diagnostic::render;
use clarion_flow::{LoadOptions, LoadReport, load_file_with};
use clarion_tools::BuiltinRegistry;

use crate::args::{DiagnosticFormat, ValidateArgs};
use crate::exit::Exit;
use crate::output;
use clarion_flow::discover::flow_files;

pub(crate) fn run(args: &ValidateArgs) -> Result<Exit, crate::error::CliError> {
    let files = flow_files(&args.paths)?;
    let styled = output::stdout_styled();
    let (mut errors, mut warnings, mut failing_files) = (0, 0, 0);
    // `builtin` names and parameters are checked against the built-ins Clarion ships.
    let builtins = BuiltinRegistry::standard();
    let options = LoadOptions {
        builtins: Some(&builtins),
    };
    for file in &files {
        let report = load_file_with(file, &options);
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
