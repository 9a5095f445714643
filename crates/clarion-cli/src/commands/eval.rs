//! `clarion eval`: play scenarios live many times and report how often they pass.
//!
//! The engine of it is `clarion-eval`; this module chooses the model (flags, the flows'
//! `[provider]`, the environment, or else the local model `clarion demo` uses), prints
//! progress as samples end, measures Clarion's own CPU, and writes the results, HTML and
//! `JUnit` files. `--compare` and `--replay` work from results files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clarion_eval::{Evaluation, Results, Sample, Verdict};
use clarion_flow::Flow;
use clarion_flow::discover::eval_files;
use clarion_providers::select::{ProviderOverrides, resolve};
use clarion_testing::scenario::{FlowCache, load_file};
use clarion_testing::{ModelMode, Runner};
use clarion_tools::{BuiltinRegistry, ClarionTools};

use crate::args::EvalArgs;
use crate::commands::demo;
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;

pub(crate) fn run(args: &EvalArgs) -> Result<Exit, CliError> {
    if let Some(files) = &args.compare {
        return compare(&files[0], &files[1]);
    }
    let previous = args.replay.as_deref().map(read).transpose()?;
    let files = match &previous {
        Some(results) => results
            .scenarios
            .iter()
            .map(|s| PathBuf::from(&s.path))
            .collect(),
        None => scenarios(args)?,
    };
    let mut overrides = ProviderOverrides {
        base_url: args.base_url.clone(),
        api: args.api.map(Into::into),
        model: args.model.clone(),
        stream: None,
    };
    let flow = first_flow(&files);
    if previous.is_none() && !configured(&overrides, flow.as_deref()) {
        let script = demo::script()?;
        overrides.base_url = Some(demo::local_model(&script)?);
        overrides
            .model
            .get_or_insert_with(|| demo::LOCAL_MODEL.to_owned());
    }
    let model = match (&previous, &flow) {
        (Some(results), _) => results.model.clone(),
        (None, Some(flow)) => {
            let (_, config) = resolve(flow, &overrides, &|name| std::env::var(name).ok());
            config.model.unwrap_or_else(|| flow.assistant.model.clone())
        }
        (None, None) => overrides
            .model
            .clone()
            .unwrap_or_else(|| "the model".to_owned()),
    };
    let mode = if previous.is_some() {
        ModelMode::Replay
    } else {
        ModelMode::Live {
            record: args.record,
        }
    };
    let runner = Runner::new()
        .with_builtins(Arc::new(BuiltinRegistry::standard()))
        .with_executor(Arc::new(ClarionTools::new()))
        .with_model_mode(mode)
        .with_provider_overrides(overrides);
    let samples = previous.as_ref().map_or(args.samples, |r| r.samples);
    let total = files.len() * samples as usize;
    let done = Arc::new(AtomicUsize::new(0));
    let mut evaluation = Evaluation::new(runner, samples, model)
        .jobs(args.jobs as usize)
        .on_sample(Arc::new(move |file: &Path, sample: &Sample| {
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(n, total, file, sample);
        }));
    if let Some(replay) = &args.replay {
        evaluation = evaluation.record_to(recordings(replay));
    } else if args.record {
        evaluation = evaluation.record_to(recordings(&args.out));
    }
    output::err(&format!(
        "clarion eval: {} × {samples} samples, {} at a time\n",
        plural(files.len(), "scenario"),
        args.jobs
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    let cpu = cpu_seconds();
    let mut results = runtime.block_on(evaluation.run(&files));
    results.cpu_seconds = cpu.zip(cpu_seconds()).map(|(before, after)| after - before);
    if results.scenarios.iter().all(|s| s.not_evaluable.is_some()) {
        for scenario in &results.scenarios {
            output::error_line(&format!(
                "{} is not evaluable: {}",
                scenario.path,
                scenario.not_evaluable.as_deref().unwrap_or_default()
            ));
        }
        return Err(CliError::NoScenarios(
            "no scenario can be evaluated: each needs `[turns.expect]` to judge samples by"
                .to_owned(),
        ));
    }
    report(args, &results)
}

/// Writes the results, HTML and `JUnit` files and prints the summary; the exit code.
fn report(args: &EvalArgs, results: &Results) -> Result<Exit, CliError> {
    write(&args.out, &results.to_json())?;
    if let Some(path) = &args.report {
        write(
            path,
            &clarion_eval::html::report(results, args.min_pass_rate),
        )?;
    }
    if let Some(path) = &args.junit {
        write(
            path,
            &clarion_eval::summary::junit(results, args.min_pass_rate),
        )?;
    }
    output::out(&clarion_eval::summary::text(results, args.min_pass_rate));
    let mut written = vec![args.out.display().to_string()];
    written.extend(args.report.iter().map(|p| p.display().to_string()));
    written.extend(args.junit.iter().map(|p| p.display().to_string()));
    output::err(&format!("written: {}\n", written.join(", ")));
    let failing = args
        .min_pass_rate
        .is_some_and(|min| !clarion_eval::summary::below(results, min).is_empty());
    Ok(if failing {
        Exit::Problems
    } else {
        Exit::Success
    })
}

/// The scenario files the arguments name.
fn scenarios(args: &EvalArgs) -> Result<Vec<PathBuf>, CliError> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("flows")]
    } else {
        args.paths.clone()
    };
    let mut files = eval_files(&paths)?;
    if !args.filter.is_empty() {
        files.retain(|f| {
            let text = f.display().to_string();
            args.filter.iter().any(|k| text.contains(k.as_str()))
        });
    }
    if files.is_empty() {
        return Err(CliError::NoScenarios(format!(
            "no scenario files found{} in {} (scenarios are `*.toml` files in folders named `evals` or `scenarios`)",
            if args.filter.is_empty() {
                ""
            } else {
                " matching -k"
            },
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(files)
}

/// The flow of the first scenario that loads (to name the model).
fn first_flow(files: &[PathBuf]) -> Option<Arc<Flow>> {
    let flows = FlowCache::new();
    files
        .iter()
        .find_map(|f| load_file(f, &flows).scenario.map(|s| s.flow))
}

/// Whether a provider is configured: a flag, the flow's `[provider]` base URL, or the
/// environment. Otherwise the local model is used, as `clarion demo` does.
fn configured(overrides: &ProviderOverrides, flow: Option<&Flow>) -> bool {
    let env = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    overrides.base_url.is_some()
        || flow
            .and_then(|f| f.provider.as_ref())
            .is_some_and(|p| p.base_url.is_some())
        || env("OPENAI_BASE_URL")
        || env("OPENAI_API_KEY")
}

/// `eval-results.json` → `eval-results.recordings/`.
fn recordings(results: &Path) -> PathBuf {
    results.with_extension("recordings")
}

fn read(path: &Path) -> Result<Results, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
    Results::from_json(&text).map_err(|e| CliError::Io(format!("{}: {e}", path.display())))
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::Io(format!("cannot create {}: {e}", parent.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))
}

fn compare(before: &Path, after: &Path) -> Result<Exit, CliError> {
    let (a, b) = (read(before)?, read(after)?);
    let comparison = clarion_eval::compare::compare(&a, &b);
    output::out(&clarion_eval::compare::render(&comparison, &a, &b));
    Ok(if comparison.worse() > 0 {
        Exit::Problems
    } else {
        Exit::Success
    })
}

/// One line on stderr per finished sample.
fn progress(n: usize, total: usize, file: &Path, sample: &Sample) {
    let word = match sample.verdict {
        Verdict::Passed => "passed",
        Verdict::Failed => "FAILED",
        _ => "ERROR",
    };
    output::err(&format!(
        "[{n}/{total}] {word:<6} {:>6.1} s  {} (sample {})\n",
        sample.seconds,
        file.display(),
        sample.index
    ));
}

/// User and system CPU time of this process so far.
fn cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let seconds = |t: nix::sys::time::TimeVal| {
        #[allow(clippy::cast_precision_loss, reason = "seconds of CPU time")]
        let s = t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        s
    };
    Some(seconds(usage.user_time()) + seconds(usage.system_time()))
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
