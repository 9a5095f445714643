//! Testing conversations from `cargo test`: run scenario files, compare their transcripts
//! with snapshots, and fail with located errors and a diff.
//!
//! ```no_run
//! // tests/scenarios.rs
//! #[test]
//! fn scenarios() {
//!     clarion_testing::assert_scenarios("flows");
//! }
//! ```
//!
//! [`assert_scenarios`] plays every scenario under a folder (see [`scenario_files`]) and
//! panics once, listing every failure: problems in a scenario file, expectations that did
//! not hold, transcripts that differ from their snapshot. New and changed snapshots are
//! written as `.snap.new` beside the `.snap` for `clarion test --review`; with `CI` set
//! nothing is ever written ([`UpdateMode::from_env`]). (`cargo insta review` finds only
//! snapshots inside a Cargo package, so not those of a top-level `flows/`.)
//!
//! Calls without a mock go to the executor given with [`Runner::with_executor`] (e.g. the
//! real built-in tools; HTTP tools always need a mock); without one, every call must be
//! mocked. [`Runner::with_model_mode`] plays the user's turns against a real provider or a
//! recording instead of the script ([`ModelMode`]), checking expectations only. The same
//! [`Runner`] is what `clarion test` uses; docs/testing.md is the reference.

mod diff;
mod snapshot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use clarion_flow::discover::{DiscoverError, scenario_files};
pub use diff::unified_diff;
pub use snapshot::{Snapshot, SnapshotState, UpdateMode, is_ci, normalize, pending_path};

use crate::coverage::{Indexes, ScenarioHits};
use crate::scenario::Scenario;
use crate::scenario::expect::Check;
use crate::scenario::{self, FlowCache};
use clarion_engine::BoxFuture;
use clarion_engine::EventSink;
use clarion_engine::ToolExecutor;
use clarion_engine::Usage;
use clarion_engine::{Model, ModelError, ModelRequest, ModelResponse};
use clarion_flow::BuiltinCatalog;
use clarion_flow::diagnostic::{Diagnostic, DiagnosticKind, render};
use clarion_flow::source::SourceFile;
use clarion_providers::replay::{RecordingModel, ReplayModel};
use clarion_providers::select::{self, ProviderOverrides};

/// Where the model's answers come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ModelMode {
    /// The scenario's `[[turns.model]]` steps; transcripts are compared with snapshots.
    #[default]
    Scripted,
    /// The flow's real provider (its `[provider]` table and the environment, as for
    /// `clarion chat`): the same user turns, mocks and submissions, but the model answers
    /// for real. Only expectations are checked; with `record`, every exchange is written to
    /// the scenario's recording ([`recording_path`]) for offline replay.
    Live {
        /// Write the recording.
        record: bool,
    },
    /// The scenario's recording, offline and deterministic. Only expectations are checked.
    Replay,
}

/// Plays scenarios; shares loaded flows between them.
#[derive(Default)]
pub struct Runner {
    flows: FlowCache,
    executor: Option<Arc<dyn ToolExecutor>>,
    mode: ModelMode,
    overrides: ProviderOverrides,
    /// With coverage: the flows' indexes, shared by their scenarios.
    coverage: Option<Indexes>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("executor", &self.executor.is_some())
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner without a tool executor: every call must be mocked.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks flows' `builtin = "…"` names and parameters against `builtins` (as
    /// `clarion validate` does).
    #[must_use]
    pub fn with_builtins(mut self, builtins: Arc<dyn BuiltinCatalog + Send + Sync>) -> Self {
        self.flows = std::mem::take(&mut self.flows).with_builtins(builtins);
        self
    }

    /// Calls no mock answers go to `executor` (HTTP tools excepted: they always need a
    /// mock, so a transcript never depends on a remote service).
    #[must_use]
    pub fn with_executor(mut self, executor: Arc<dyn ToolExecutor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Plays scenarios with `mode`'s model instead of their scripts.
    #[must_use]
    pub fn with_model_mode(mut self, mode: ModelMode) -> Self {
        self.mode = mode;
        self
    }

    /// Live runs use `overrides` over the flow's `[provider]` table and the environment
    /// (as `clarion chat`'s `--base-url`, `--model`… do).
    #[must_use]
    pub fn with_provider_overrides(mut self, overrides: ProviderOverrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Also counts what each scenario exercised of its flow ([`Outcome::coverage`]; add
    /// them up with [`crate::coverage::Coverage`]).
    #[must_use]
    pub fn with_coverage(mut self) -> Self {
        self.coverage = Some(Indexes::default());
        self
    }

    /// Loads and plays the scenario at `path` (a live model records to, and a replay
    /// reads, its [`recording_path`]).
    pub async fn run(&self, path: &Path) -> Outcome {
        self.run_recording(path, recording_path(path)).await
    }

    /// Loads and plays the scenario at `path`, the recording of a live or replayed model at
    /// `recording` instead of the scenario's own (one file per sample of `clarion eval`).
    pub async fn run_recording(&self, path: &Path, recording: PathBuf) -> Outcome {
        let report = scenario::load_file(path, &self.flows);
        let name = path.file_stem().map_or_else(
            || "scenario".to_owned(),
            |s| s.to_string_lossy().into_owned(),
        );
        let mut outcome = Outcome {
            path: path.to_path_buf(),
            title: name.clone(),
            name,
            description: None,
            source: report.source,
            problems: report.diagnostics,
            failures: Vec::new(),
            transcript: String::new(),
            compared: self.mode == ModelMode::Scripted,
            checks: Vec::new(),
            usage: Usage::default(),
            turns: 0,
            coverage: None,
            events: Vec::new(),
        };
        if let Some(scenario) = report.scenario {
            outcome.title.clone_from(&scenario.title);
            outcome.description.clone_from(&scenario.description);
            let model = match self.model(&scenario, recording) {
                Ok(model) => model,
                Err(diagnostic) => {
                    outcome.problems.push(*diagnostic);
                    return outcome;
                }
            };
            let played = scenario::play::play_covered(
                &scenario,
                self.executor.clone(),
                model,
                self.coverage.as_ref().map(|i| i.get(&scenario.flow)),
            )
            .await;
            outcome.problems = played.problems;
            outcome.failures = played.failures;
            outcome.transcript = played.transcript;
            outcome.checks = played.checks;
            outcome.usage = played.usage;
            outcome.turns = played.turns;
            outcome.events = played.events;
            outcome.coverage = played.hits.map(|hits| ScenarioHits {
                flow_path: scenario.flow_path.clone(),
                hits,
            });
        }
        outcome
    }

    /// The model `mode` asks for, `None` for the script.
    fn model(
        &self,
        scenario: &Scenario,
        recording: PathBuf,
    ) -> Result<Option<Arc<dyn Model>>, Box<Diagnostic>> {
        let unavailable = |error: ModelError, help: &str| {
            Box::new(
                Diagnostic::new(
                    DiagnosticKind::ModelUnavailable {
                        reason: error.message,
                    },
                    None,
                )
                .with_help(help),
            )
        };
        match self.mode {
            ModelMode::Scripted => Ok(None),
            ModelMode::Replay => ReplayModel::open(&recording)
                .map(|m| Some(Arc::new(m) as Arc<dyn Model>))
                .map_err(|e| {
                    unavailable(
                        e,
                        "record one with `clarion test --live --record`, against a real provider",
                    )
                }),
            ModelMode::Live { record } => {
                let help = "set the flow's [provider] table, or OPENAI_BASE_URL and OPENAI_API_KEY";
                let model = select::model_for(&scenario.flow, &self.overrides)
                    .map_err(|e| unavailable(e, help))?;
                if !record {
                    return Ok(Some(model));
                }
                let key_env = scenario
                    .flow
                    .provider
                    .as_ref()
                    .and_then(|p| p.api_key_env.clone())
                    .unwrap_or_else(|| "OPENAI_API_KEY".to_owned());
                let secrets = std::env::var(key_env).into_iter().collect();
                RecordingModel::new(Shared(model), recording, secrets)
                    .map(|m| Some(Arc::new(m) as Arc<dyn Model>))
                    .map_err(|e| unavailable(e, "check that the scenario's folder is writable"))
            }
        }
    }

    /// Plays the scenario at `path` and panics unless it passes (see [`assert_scenarios`]).
    pub fn assert(&self, path: impl AsRef<Path>) {
        self.assert_all(&[path.as_ref().to_path_buf()]);
    }

    /// Plays every scenario under `paths` and panics once, listing every failure.
    pub fn assert_all(&self, paths: &[PathBuf]) {
        let files = scenario_files(paths).unwrap_or_else(|e| panic!("{e}"));
        assert!(!files.is_empty(), "no scenario files found in {paths:?}");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start a runtime: {e}"));
        let mode = UpdateMode::from_env();
        let mut failed = Vec::new();
        for file in &files {
            let outcome = runtime.block_on(self.run(file));
            let check = outcome.check_snapshot(mode);
            if !outcome.passed(&check) {
                failed.push(outcome.failure_report(&check, false));
            }
        }
        assert!(
            failed.is_empty(),
            "{} of {} scenario(s) failed:\n\n{}",
            failed.len(),
            files.len(),
            failed.join("\n")
        );
    }
}

/// `scenarios/recordings/NAME.jsonl` beside the scenario `NAME.toml`: what
/// [`ModelMode::Live`] records and [`ModelMode::Replay`] plays.
#[must_use]
pub fn recording_path(scenario: &Path) -> PathBuf {
    let name = scenario.file_stem().unwrap_or_default().to_string_lossy();
    scenario
        .parent()
        .unwrap_or(Path::new(""))
        .join("recordings")
        .join(format!("{name}.jsonl"))
}

/// A shared model, as a model (the recorder owns what it wraps).
struct Shared(Arc<dyn Model>);

impl Model for Shared {
    fn describe(&self, flow: &clarion_flow::Flow) -> clarion_engine::observe::ModelInfo {
        self.0.describe(flow)
    }

    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        self.0.respond(request, events)
    }
}

/// Plays every scenario under `path` (a folder, or one scenario file) without a tool
/// executor, and panics once, listing every failure.
pub fn assert_scenarios(path: impl AsRef<Path>) {
    Runner::new().assert(path);
}

/// A played scenario.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario file.
    pub path: PathBuf,
    /// The file's stem (the snapshot's name).
    pub name: String,
    /// `scenario.name`, or the file's stem.
    pub title: String,
    /// `scenario.description`.
    pub description: Option<String>,
    /// The scenario's text, for rendering its diagnostics.
    pub source: SourceFile,
    /// Why the scenario could not be played to the end (bad file, script ran out…).
    pub problems: Vec<Diagnostic>,
    /// Expectations that did not hold.
    pub failures: Vec<Diagnostic>,
    /// The transcript (partial when there are problems, empty if nothing ran).
    pub transcript: String,
    /// Whether the transcript is compared with the snapshot (scripted runs only: a live or
    /// replayed model's conversation is checked by its expectations).
    pub compared: bool,
    /// Every expectation of the turns played, held or not.
    pub checks: Vec<Check>,
    /// The model's token usage, as its provider reported it.
    pub usage: Usage,
    /// The turns played to the end.
    pub turns: usize,
    /// What the scenario exercised of its flow, when the runner counts coverage
    /// ([`Runner::with_coverage`]) and the scenario loaded.
    pub coverage: Option<ScenarioHits>,
    /// The engine's events of each turn played to the end.
    pub events: Vec<Vec<clarion_engine::Event>>,
}

/// What comparing with the snapshot found, and what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCheck {
    /// How the transcript compares; `None` when the scenario has problems (a partial
    /// transcript is never compared or written).
    pub state: Option<SnapshotState>,
    /// The file written, if any (`.snap` when accepted, `.snap.new` when pending).
    pub written: Option<PathBuf>,
    /// Whether a new or changed transcript was accepted into the `.snap`.
    pub accepted: bool,
    /// A snapshot file that could not be read or written.
    pub error: Option<String>,
}

impl Outcome {
    /// `scenarios/snapshots/NAME.snap` beside the scenario.
    #[must_use]
    pub fn snapshot_path(&self) -> PathBuf {
        self.path
            .parent()
            .unwrap_or(Path::new(""))
            .join("snapshots")
            .join(format!("{}.snap", self.name))
    }

    /// This run's snapshot.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let description = match &self.description {
            Some(text) if self.title != self.name => {
                Some(format!("{}: {}", self.title, text.trim()))
            }
            Some(text) => Some(text.trim().to_owned()),
            None if self.title != self.name => Some(self.title.clone()),
            None => None,
        };
        Snapshot {
            source: source_name(&self.path),
            description,
            body: self.transcript.clone(),
        }
    }

    /// Compares the transcript with the snapshot on disk and writes what `mode` allows: a
    /// match removes a stale `.snap.new`; a new or changed transcript is written to
    /// `.snap.new` ([`UpdateMode::Pending`]) or `.snap` ([`UpdateMode::Accept`]).
    #[must_use]
    pub fn check_snapshot(&self, mode: UpdateMode) -> SnapshotCheck {
        let mut check = SnapshotCheck {
            state: None,
            written: None,
            accepted: false,
            error: None,
        };
        if !self.problems.is_empty() || !self.compared {
            return check;
        }
        let path = self.snapshot_path();
        let new = self.snapshot();
        let state = match Snapshot::read(&path) {
            Ok(Some(old)) if old.same_body(&new) => SnapshotState::Matches,
            Ok(Some(old)) => SnapshotState::Changed { old: old.body },
            Ok(None) => SnapshotState::New,
            Err(error) => {
                check.error = Some(format!("cannot read {}: {error}", path.display()));
                return check;
            }
        };
        let pending = pending_path(&path);
        let written = match (&state, mode) {
            (_, UpdateMode::Never) => Ok(None),
            (SnapshotState::Matches, _) => {
                if pending.exists() {
                    let _ = std::fs::remove_file(&pending);
                }
                Ok(None)
            }
            (_, UpdateMode::Accept) => {
                if pending.exists() {
                    let _ = std::fs::remove_file(&pending);
                }
                check.accepted = true;
                new.write(&path).map(|()| Some(path.clone()))
            }
            (_, UpdateMode::Pending) => new.write(&pending).map(|()| Some(pending.clone())),
        };
        match written {
            Ok(written) => check.written = written,
            Err(error) => {
                check.accepted = false;
                check.error = Some(format!(
                    "cannot write a snapshot beside {}: {error}",
                    path.display()
                ));
            }
        }
        check.state = Some(state);
        check
    }

    /// Whether the scenario passed: it played to the end, every expectation held, and the
    /// transcript matches its snapshot (or was just accepted as it).
    #[must_use]
    pub fn passed(&self, check: &SnapshotCheck) -> bool {
        let snapshot_ok =
            !self.compared || check.state == Some(SnapshotState::Matches) || check.accepted;
        self.problems.is_empty() && self.failures.is_empty() && check.error.is_none() && snapshot_ok
    }

    /// The problems and failed expectations as code frames.
    #[must_use]
    pub fn diagnostics(&self, styled: bool) -> String {
        let mut text = String::new();
        for diagnostic in self.problems.iter().chain(&self.failures) {
            text.push_str(&render::human(diagnostic, &self.source, styled));
            text.push_str("\n\n");
        }
        text
    }

    /// Everything about a failed scenario: its diagnostics, the transcript so far when it
    /// stopped early, the diff with its snapshot, and what was written.
    #[must_use]
    pub fn failure_report(&self, check: &SnapshotCheck, styled: bool) -> String {
        let mut text = format!("scenario {}\n", self.path.display());
        text.push_str(&self.diagnostics(styled));
        if (!self.problems.is_empty() || !self.compared) && !self.transcript.is_empty() {
            text.push_str(if self.problems.is_empty() {
                "the conversation:\n"
            } else {
                "the conversation so far:\n"
            });
            for line in self.transcript.lines() {
                text.push_str("  | ");
                text.push_str(line);
                text.push('\n');
            }
            text.push('\n');
        }
        if let Some(error) = &check.error {
            text.push_str(error);
            text.push('\n');
        }
        match &check.state {
            Some(SnapshotState::Changed { old }) if !check.accepted => {
                let _ = writeln!(
                    text,
                    "the transcript differs from {}:",
                    self.snapshot_path().display()
                );
                text.push_str(&unified_diff(old, &self.transcript, styled));
            }
            Some(SnapshotState::New) if !check.accepted => {
                let _ = writeln!(
                    text,
                    "no snapshot yet ({}); this run's transcript:",
                    self.snapshot_path().display()
                );
                text.push_str(&unified_diff("", &self.transcript, styled));
            }
            _ => {}
        }
        if let Some(written) = check.written.as_ref().filter(|_| !check.accepted) {
            let _ = writeln!(
                text,
                "written to {}; review it with `clarion test --review`",
                written.display()
            );
        }
        text
    }
}

/// The scenario's path relative to its repository's root (the nearest folder above it
/// with a `.git`), with `/` separators, so snapshot headers do not depend on where tests
/// run from.
fn source_name(path: &Path) -> String {
    let absolute = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let relative = absolute
        .ancestors()
        .skip(1)
        .find(|dir| dir.join(".git").exists())
        .and_then(|root| absolute.strip_prefix(root).ok())
        .unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
