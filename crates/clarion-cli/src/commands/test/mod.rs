//! `clarion test`: play every scenario in parallel, compare transcripts with snapshots,
//! then a list of results, the details of each failure, and a summary line.
//!
//! Scenarios are independent (each has its own engine, store and script), so they run as
//! tasks on a multi-threaded runtime; results are printed in discovery order, whatever
//! order they finish in. With `--coverage`, what they exercised of each flow follows
//! (`coverage.rs`).

mod coverage;
mod junit;
mod review;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clarion_testing::{
    ModelMode, Outcome, Runner, SnapshotCheck, SnapshotState, UpdateMode, is_ci, scenario_files,
};

use clarion_tools::{BuiltinRegistry, ClarionTools};

use crate::args::TestArgs;
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;

/// One scenario's result.
pub(crate) struct Result {
    pub outcome: Outcome,
    pub check: SnapshotCheck,
    pub elapsed: Duration,
}

impl Result {
    fn passed(&self) -> bool {
        self.outcome.passed(&self.check)
    }
}

pub(crate) fn run(args: &TestArgs) -> std::result::Result<Exit, CliError> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("flows")]
    } else {
        args.paths.clone()
    };
    let mut files = scenario_files(&paths)?;
    if files.is_empty() {
        return Err(CliError::NoScenarios(format!(
            "no scenario files found in {} (scenarios are `*.toml` files in folders named `scenarios`)",
            list(&paths)
        )));
    }
    if !args.filter.is_empty() {
        files.retain(|f| {
            let text = f.display().to_string();
            args.filter.iter().any(|k| text.contains(k.as_str()))
        });
        if files.is_empty() {
            return Err(CliError::NoScenarios(format!(
                "no scenario matches {}",
                args.filter
                    .iter()
                    .map(|k| format!("`-k {k}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
    }
    let ci = is_ci();
    let mode = if ci || args.review {
        UpdateMode::Never
    } else if args.accept {
        UpdateMode::Accept
    } else {
        UpdateMode::Pending
    };
    let styled = output::stdout_styled();
    if ci && (args.accept || args.review) {
        output::out(&note(
            "CI is set: snapshots are compared but never written (--accept and --review are ignored)",
            styled,
        ));
    }
    let model = if args.live {
        ModelMode::Live {
            record: args.record,
        }
    } else if args.replay {
        ModelMode::Replay
    } else {
        ModelMode::Scripted
    };
    let jobs = args
        .jobs
        .map(|n| n as usize)
        .or(args.live.then_some(LIVE_JOBS))
        .unwrap_or(usize::MAX);
    let coverage = coverage::Options::from_args(args);
    let mut results = play_all(files, mode, model, jobs, coverage.is_some())?;
    if args.review && !ci {
        review::review(&mut results, styled);
    }
    print_results(&results, styled);
    if let Some(path) = &args.junit {
        std::fs::write(path, junit::report(&results))
            .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))?;
    }
    let covered = match &coverage {
        Some(options) => coverage::report(options, &results, styled)?,
        None => true,
    };
    let failed = results.iter().filter(|r| !r.passed()).count();
    output::out(&summary(results.len() - failed, failed, styled));
    Ok(if failed > 0 || !covered {
        Exit::Problems
    } else {
        Exit::Success
    })
}

/// Live scenarios played at once by default: a real model server is the bottleneck, and
/// requests queued behind many others would only wait (and time out) there.
const LIVE_JOBS: usize = 4;

/// Plays the files, `jobs` at a time, and checks their snapshots; results in input order.
fn play_all(
    files: Vec<PathBuf>,
    mode: UpdateMode,
    model: ModelMode,
    jobs: usize,
    coverage: bool,
) -> std::result::Result<Vec<Result>, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    // Unmocked built-in and command tools run for real; HTTP tools always need a mock.
    let mut runner = Runner::new()
        .with_builtins(Arc::new(BuiltinRegistry::standard()))
        .with_executor(Arc::new(ClarionTools::new()))
        .with_model_mode(model);
    if coverage {
        runner = runner.with_coverage();
    }
    let runner = Arc::new(runner);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        jobs.min(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    runtime.block_on(async move {
        let tasks: Vec<_> = files
            .into_iter()
            .map(|file| {
                let runner = Arc::clone(&runner);
                let slots = Arc::clone(&slots);
                tokio::spawn(async move {
                    // The semaphore is never closed, so a permit always comes.
                    let _slot = slots.acquire_owned().await.ok();
                    let started = Instant::now();
                    let outcome = runner.run(&file).await;
                    let check = outcome.check_snapshot(mode);
                    Result {
                        outcome,
                        check,
                        elapsed: started.elapsed(),
                    }
                })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            let result = task
                .await
                .map_err(|e| CliError::Io(format!("a scenario panicked: {e}")))?;
            results.push(result);
        }
        Ok(results)
    })
}

fn print_results(results: &[Result], styled: bool) {
    let mut text = String::new();
    for result in results {
        let (word, colour) = status(result);
        let _ = writeln!(
            text,
            "{} {}",
            paint(&format!("{word:<8}"), colour, styled),
            result.outcome.path.display()
        );
    }
    // A live or replayed conversation is worth reading even when its expectations held.
    for result in results.iter().filter(|r| r.passed() && !r.outcome.compared) {
        let _ = writeln!(
            text,
            "\nthe conversation of {}:",
            result.outcome.path.display()
        );
        for line in result.outcome.transcript.lines() {
            let _ = writeln!(text, "  | {line}");
        }
    }
    let failures: Vec<&Result> = results.iter().filter(|r| !r.passed()).collect();
    if !failures.is_empty() {
        text.push('\n');
        for result in &failures {
            text.push_str(&result.outcome.failure_report(&result.check, styled));
            text.push('\n');
        }
    }
    let pending = results
        .iter()
        .filter(|r| r.check.written.is_some() && !r.check.accepted)
        .count();
    let accepted = results.iter().filter(|r| r.check.accepted).count();
    if accepted > 0 {
        text.push_str(&note(
            &format!("{} accepted into .snap files", plural(accepted, "snapshot")),
            styled,
        ));
    }
    if pending > 0 {
        text.push_str(&note(
            &format!(
                "{} written as .snap.new: review with `clarion test --review`, or accept all with `clarion test --accept`",
                plural(pending, "new or changed snapshot")
            ),
            styled,
        ));
    }
    output::out(&text);
}

/// The word in the results list, and its colour.
fn status(result: &Result) -> (&'static str, anstyle::AnsiColor) {
    use anstyle::AnsiColor::{Green, Red, Yellow};
    let outcome = &result.outcome;
    if !outcome.problems.is_empty() {
        return ("ERROR", Red);
    }
    if !outcome.failures.is_empty() {
        return ("FAILED", Red);
    }
    if !outcome.compared {
        return ("ok", Green);
    }
    match (&result.check.state, result.check.accepted) {
        (Some(SnapshotState::Matches), _) => ("ok", Green),
        (Some(_), true) => ("accepted", Yellow),
        (Some(SnapshotState::New), false) => ("NEW", Red),
        (Some(SnapshotState::Changed { .. }), false) => ("CHANGED", Red),
        (None, _) => ("ERROR", Red),
    }
}

fn summary(passed: usize, failed: usize, styled: bool) -> String {
    let line = format!("{passed} passed, {failed} failed");
    let colour = if failed > 0 {
        anstyle::AnsiColor::Red
    } else {
        anstyle::AnsiColor::Green
    };
    format!("{}\n", paint(&line, colour, styled))
}

fn note(text: &str, styled: bool) -> String {
    format!(
        "{}: {text}\n",
        paint("note", anstyle::AnsiColor::Cyan, styled)
    )
}

fn paint(text: &str, colour: anstyle::AnsiColor, styled: bool) -> String {
    if styled {
        let style = anstyle::Style::new().bold().fg_color(Some(colour.into()));
        format!("{style}{text}{style:#}")
    } else {
        text.to_owned()
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
