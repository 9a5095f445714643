//! Playing samples: each scenario's user turns against the live model, `samples` times,
//! at most `jobs` conversations at once, judged by the scenario's expectations.
//!
//! The scripted `[[turns.model]]` steps are ignored (the model answers for real); mocks,
//! submissions and expectations are the scenario's, exactly as `clarion test --live`
//! plays them, because it is the same [`Runner`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clarion_testing::scenario::expect;
use clarion_testing::scenario::{FlowCache, load_file};
use clarion_testing::{Outcome, Runner};

use crate::results::{Declared, FORMAT, Results, Sample, SampleFailure, ScenarioResult, Verdict};

/// Called as each sample ends: the scenario file and the sample.
pub type OnSample = dyn Fn(&Path, &Sample) + Send + Sync;

/// An evaluation to run: a runner (model mode, provider, tools), how many samples of each
/// scenario and how many at once.
pub struct Evaluation {
    runner: Arc<Runner>,
    samples: u32,
    jobs: usize,
    model: String,
    recordings: Option<PathBuf>,
    on_sample: Option<Arc<OnSample>>,
}

impl std::fmt::Debug for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluation")
            .field("samples", &self.samples)
            .field("jobs", &self.jobs)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Evaluation {
    /// `samples` plays of each scenario with `runner` (which must play a live or replayed
    /// model: a script would pass every time), one at a time; `model` names the model in
    /// the results.
    #[must_use]
    pub fn new(runner: Runner, samples: u32, model: impl Into<String>) -> Self {
        Self {
            runner: Arc::new(runner),
            samples: samples.max(1),
            jobs: 1,
            model: model.into(),
            recordings: None,
            on_sample: None,
        }
    }

    /// At most `jobs` conversations at once.
    #[must_use]
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self
    }

    /// Each sample's model exchanges are recorded under `dir` (the runner must record:
    /// `ModelMode::Live { record: true }`), one file per sample, named in the results.
    #[must_use]
    pub fn record_to(mut self, dir: PathBuf) -> Self {
        self.recordings = Some(dir);
        self
    }

    /// `callback` hears of each sample as it ends (for progress output).
    #[must_use]
    pub fn on_sample(mut self, callback: Arc<OnSample>) -> Self {
        self.on_sample = Some(callback);
        self
    }

    /// Plays every sample of `files` and adds them up. Samples are started scenario by
    /// scenario within each round (sample 1 of every scenario, then sample 2…), so an
    /// evaluation stopped early has seen every scenario.
    ///
    /// Cancel safety: dropping the future stops the samples in flight (each is a task on
    /// the current runtime, aborted with it); nothing is written by this method.
    pub async fn run(&self, files: &[PathBuf]) -> Results {
        let started = Instant::now();
        let flows = FlowCache::new();
        let declared: Vec<Result<Vec<Declared>, String>> =
            files.iter().map(|f| declared(f, &flows)).collect();
        let slots = Arc::new(tokio::sync::Semaphore::new(self.jobs));
        let mut tasks = tokio::task::JoinSet::new();
        // Which sample each task plays, to report one that panicked.
        let mut playing = std::collections::HashMap::new();
        for index in 1..=self.samples {
            for (k, file) in files.iter().enumerate() {
                if declared[k].is_err() {
                    continue;
                }
                let runner = Arc::clone(&self.runner);
                let slots = Arc::clone(&slots);
                let file = file.clone();
                let recording = self.recording(&file, index);
                let on_sample = self.on_sample.clone();
                let task = tasks.spawn(async move {
                    // The semaphore is never closed, so a permit always comes.
                    let _slot = slots.acquire_owned().await.ok();
                    let started = Instant::now();
                    let outcome = match &recording {
                        Some(path) => runner.run_recording(&file, path.clone()).await,
                        None => runner.run(&file).await,
                    };
                    let sample =
                        sample(index, &outcome, started.elapsed().as_secs_f64(), recording);
                    if let Some(callback) = on_sample {
                        callback(&file, &sample);
                    }
                    (k, sample)
                });
                playing.insert(task.id(), (k, index));
            }
        }
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); files.len()];
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((_, (k, sample))) => samples[k].push(sample),
                // A bug in Clarion, not the model's doing: an error sample that says so,
                // never a sample quietly missing from the count.
                Err(error) => {
                    if let Some(&(k, index)) = playing.get(&error.id()) {
                        samples[k].push(Sample::crashed(index, &error.to_string()));
                    }
                }
            }
        }
        let scenarios = files
            .iter()
            .zip(declared)
            .zip(samples)
            .map(|((file, declared), samples)| {
                let path = file.display().to_string();
                let title = title(file, &flows);
                match declared {
                    Ok(declared) => ScenarioResult::aggregate(path, title, &declared, samples),
                    Err(why) => ScenarioResult::not_evaluable(path, title, why),
                }
            })
            .collect();
        Results {
            format: FORMAT,
            clarion: env!("CARGO_PKG_VERSION").to_owned(),
            model: self.model.clone(),
            samples: self.samples,
            seconds: started.elapsed().as_secs_f64(),
            cpu_seconds: None,
            scenarios,
        }
    }

    /// Where sample `index` of `file` is recorded, if recording.
    fn recording(&self, file: &Path, index: u32) -> Option<PathBuf> {
        let dir = self.recordings.as_ref()?;
        let flow = file
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .map_or_else(|| "flow".into(), |n| n.to_string_lossy().into_owned());
        let stem = file
            .file_stem()
            .map_or_else(|| "scenario".into(), |n| n.to_string_lossy().into_owned());
        Some(dir.join(flow).join(stem).join(format!("{index}.jsonl")))
    }
}

/// The expectations `file` declares, or why it cannot be evaluated.
fn declared(file: &Path, flows: &FlowCache) -> Result<Vec<Declared>, String> {
    let report = load_file(file, flows);
    let Some(scenario) = report.scenario else {
        let first = report.diagnostics.first().map_or_else(
            || "it does not load".to_owned(),
            clarion_flow::diagnostic::Diagnostic::message,
        );
        return Err(format!(
            "it does not load ({first}); `clarion test {}` shows every problem",
            file.display()
        ));
    };
    let mut declared = Vec::new();
    for (i, turn) in scenario.file.turns.iter().enumerate() {
        let Some(spec) = &turn.expect else { continue };
        // Judged against nothing, every expectation yields its check: the list of them.
        for check in expect::check(spec, &[], None, &format!("/turns/{i}/expect")) {
            let line = scenario
                .spans
                .value_span(&check.pointer)
                .map(|span| report.source.line_column(span.start).line);
            declared.push(Declared {
                pointer: check.pointer,
                key: check.key,
                turn: i + 1,
                line,
            });
        }
    }
    if declared.is_empty() {
        return Err(
            "it has no expectations: add a `[turns.expect]` table (e.g. `tool_called`, `question_asked`) to judge samples by"
                .to_owned(),
        );
    }
    Ok(declared)
}

/// `scenario.name`, or the file's stem.
fn title(file: &Path, flows: &FlowCache) -> String {
    load_file(file, flows).scenario.map_or_else(
        || {
            file.file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        },
        |s| s.title,
    )
}

/// A played scenario as a sample.
fn sample(index: u32, outcome: &Outcome, seconds: f64, recording: Option<PathBuf>) -> Sample {
    let failures: Vec<SampleFailure> = outcome
        .checks
        .iter()
        .filter_map(|c| {
            Some(SampleFailure {
                pointer: c.pointer.clone(),
                detail: c.failure.clone()?,
            })
        })
        .collect();
    let problems: Vec<String> = outcome
        .problems
        .iter()
        .map(clarion_flow::diagnostic::Diagnostic::message)
        .collect();
    let verdict = if !problems.is_empty() {
        Verdict::Error
    } else if failures.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
    Sample {
        index,
        verdict,
        seconds,
        turns: outcome.turns,
        prompt_tokens: outcome.usage.prompt_tokens,
        completion_tokens: outcome.usage.completion_tokens,
        failures,
        problems,
        transcript: outcome.transcript.clone(),
        recording: recording.map(|p| p.display().to_string()),
    }
}
