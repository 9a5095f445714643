//! What an evaluation found, as plain data: every sample of every scenario and the
//! aggregates computed from them. This is the JSON file `clarion eval --out` writes and
//! `--compare` reads, so it is versioned ([`FORMAT`]) and holds no secrets (transcripts
//! are redacted as `clarion test` redacts them).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::stats::{Interval, wilson};

/// The version of the results file; `--compare` refuses other versions.
pub const FORMAT: u32 = 1;

/// An evaluation: which model, how many samples, and each scenario's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`FORMAT`].
    pub format: u32,
    /// The Clarion version that ran it.
    pub clarion: String,
    /// The model the samples were played against (as sent to the provider).
    pub model: String,
    /// Samples per scenario.
    pub samples: u32,
    /// Wall time of the whole evaluation, in seconds.
    pub seconds: f64,
    /// CPU time of Clarion itself (the engine, not the model) over the evaluation, in
    /// seconds, where the platform reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// One entry per scenario, in the order given.
    pub scenarios: Vec<ScenarioResult>,
}

/// One scenario's samples and what they add up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// The scenario file, as given.
    pub path: String,
    /// `scenario.name`, or the file's stem.
    pub title: String,
    /// Why the scenario cannot be evaluated (it has no expectations, or does not load);
    /// such a scenario has no samples and is never counted as passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_evaluable: Option<String>,
    /// Samples in which every expectation held and nothing stopped the conversation.
    pub passed: u32,
    /// Samples played.
    pub total: u32,
    /// The 95% interval of the pass rate.
    pub interval: Interval,
    /// Per expectation, in the file's order.
    pub expectations: Vec<ExpectationResult>,
    /// The failure seen in most samples, if any failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub most_common_failure: Option<Failure>,
    /// Seconds per sample.
    pub latency: Latency,
    /// Mean prompt tokens per sample, as the provider reported them.
    pub prompt_tokens: f64,
    /// Mean completion tokens per sample.
    pub completion_tokens: f64,
    /// Every sample.
    pub samples: Vec<Sample>,
}

impl ScenarioResult {
    /// The pass rate, 0 when nothing was played.
    #[must_use]
    pub fn rate(&self) -> f64 {
        rate(self.passed, self.total)
    }
}

/// One expectation of a scenario over its samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectationResult {
    /// Its JSON pointer in the scenario file, e.g. `/turns/1/expect/tool_called`.
    pub pointer: String,
    /// Its key (`tool_called`, `question_includes`, …).
    pub key: String,
    /// The turn it belongs to, from 1.
    pub turn: usize,
    /// Its line in the scenario file, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Samples in which it held.
    pub passed: u32,
    /// Samples played.
    pub total: u32,
    /// The 95% interval of its pass rate.
    pub interval: Interval,
    /// What happened instead most often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub most_common_failure: Option<Failure>,
}

impl ExpectationResult {
    /// The pass rate, 0 when nothing was played.
    #[must_use]
    pub fn rate(&self) -> f64 {
        rate(self.passed, self.total)
    }
}

/// A failure and how often it was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The expectation that failed (its pointer), or none for a problem that stopped the
    /// conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// What happened instead.
    pub detail: String,
    /// Samples it was seen in.
    pub count: u32,
    /// `count` over the samples played.
    pub share: f64,
}

/// Seconds per sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The slowest.
    pub max: f64,
    /// Mean seconds per user turn.
    pub per_turn: f64,
}

/// One play of a scenario against the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// From 1.
    pub index: u32,
    /// How it ended.
    pub verdict: Verdict,
    /// Wall time.
    pub seconds: f64,
    /// User turns played to the end.
    pub turns: usize,
    /// Prompt tokens, as the provider reported them.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Expectations that did not hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<SampleFailure>,
    /// What stopped the conversation (a model that did not answer, a bad file…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// The conversation (redacted).
    pub transcript: String,
    /// The recording of its model exchanges, when recorded (for `--replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
}

impl Sample {
    /// A sample whose play stopped inside Clarion (`what` says how).
    pub(crate) fn crashed(index: u32, what: &str) -> Self {
        Self {
            index,
            verdict: Verdict::Error,
            seconds: 0.0,
            turns: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            failures: Vec::new(),
            problems: vec![format!("Clarion stopped playing this sample: {what}")],
            transcript: String::new(),
            recording: None,
        }
    }
}

/// How a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Verdict {
    /// Every expectation held.
    Passed,
    /// An expectation did not hold.
    Failed,
    /// The conversation could not be played to the end.
    Error,
}

impl Verdict {
    /// The word in reports.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Error => "error",
        }
    }
}

/// An expectation that did not hold in a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleFailure {
    /// The expectation's JSON pointer.
    pub pointer: String,
    /// What happened instead.
    pub detail: String,
}

/// An expectation as the scenario declares it, before any sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Declared {
    pub pointer: String,
    pub key: &'static str,
    pub turn: usize,
    pub line: Option<usize>,
}

impl ScenarioResult {
    /// A scenario that cannot be evaluated, and why.
    pub(crate) fn not_evaluable(path: String, title: String, why: String) -> Self {
        Self {
            path,
            title,
            not_evaluable: Some(why),
            passed: 0,
            total: 0,
            interval: wilson(0, 0),
            expectations: Vec::new(),
            most_common_failure: None,
            latency: Latency::default(),
            prompt_tokens: 0.0,
            completion_tokens: 0.0,
            samples: Vec::new(),
        }
    }

    /// The aggregates of `samples` over the `declared` expectations.
    pub(crate) fn aggregate(
        path: String,
        title: String,
        declared: &[Declared],
        mut samples: Vec<Sample>,
    ) -> Self {
        samples.sort_by_key(|s| s.index);
        let total = count(samples.len());
        let passed = count(
            samples
                .iter()
                .filter(|s| s.verdict == Verdict::Passed)
                .count(),
        );
        let expectations = declared
            .iter()
            .map(|d| {
                let mut failures = Counter::default();
                let mut held = 0;
                for sample in &samples {
                    match sample.failures.iter().find(|f| f.pointer == d.pointer) {
                        Some(failure) => failures.add(None, &failure.detail),
                        None if sample.verdict == Verdict::Error => {
                            // A conversation that stopped early may never have reached it.
                            let why = sample.problems.first().map_or("", String::as_str);
                            failures.add(None, &format!("not reached: {why}"));
                        }
                        None => held += 1,
                    }
                }
                ExpectationResult {
                    pointer: d.pointer.clone(),
                    key: d.key.to_owned(),
                    turn: d.turn,
                    line: d.line,
                    passed: held,
                    total,
                    interval: wilson(held, total),
                    most_common_failure: failures.most_common(total),
                }
            })
            .collect();
        let mut failures = Counter::default();
        for sample in &samples {
            // A sample counts once per distinct failure.
            let mut seen = Vec::new();
            for failure in &sample.failures {
                let key = (Some(failure.pointer.clone()), failure.detail.clone());
                if !seen.contains(&key) {
                    failures.add(key.0.clone(), &key.1);
                    seen.push(key);
                }
            }
            if let Some(problem) = sample.problems.first() {
                failures.add(None, problem);
            }
        }
        let mut seconds: Vec<f64> = samples.iter().map(|s| s.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        let turns: usize = samples.iter().map(|s| s.turns).sum();
        let latency = Latency {
            p50: percentile(&seconds, 0.5),
            p90: percentile(&seconds, 0.9),
            max: seconds.last().copied().unwrap_or(0.0),
            per_turn: if turns == 0 {
                0.0
            } else {
                seconds.iter().sum::<f64>() / f64::from(count(turns))
            },
        };
        let mean = |f: &dyn Fn(&Sample) -> u64| {
            if samples.is_empty() {
                0.0
            } else {
                #[allow(
                    clippy::cast_precision_loss,
                    reason = "token counts are far below 2^52"
                )]
                let sum = samples.iter().map(f).sum::<u64>() as f64;
                sum / f64::from(total)
            }
        };
        Self {
            path,
            title,
            not_evaluable: None,
            passed,
            total,
            interval: wilson(passed, total),
            expectations,
            most_common_failure: failures.most_common(total),
            latency,
            prompt_tokens: mean(&|s| s.prompt_tokens),
            completion_tokens: mean(&|s| s.completion_tokens),
            samples,
        }
    }
}

impl Results {
    /// Samples passed and played over every evaluable scenario.
    #[must_use]
    pub fn totals(&self) -> (u32, u32) {
        self.scenarios
            .iter()
            .fold((0, 0), |(p, t), s| (p + s.passed, t + s.total))
    }

    /// Reads a results file written by `clarion eval --out`.
    ///
    /// # Errors
    ///
    /// When the text is not a results file, or one of another [`FORMAT`].
    pub fn from_json(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Version {
            format: Option<u32>,
        }
        let version: Version = serde_json::from_str(text)
            .map_err(|e| format!("not a `clarion eval` results file: {e}"))?;
        match version.format {
            Some(FORMAT) => {
                serde_json::from_str(text).map_err(|e| format!("a damaged results file: {e}"))
            }
            Some(other) => Err(format!(
                "results format {other}; this clarion reads format {FORMAT} (re-run the evaluation with it)"
            )),
            None => Err("not a `clarion eval` results file: it has no `format` field".to_owned()),
        }
    }

    /// The results as pretty JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Plain data of strings and numbers: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Failures by what they were, counted.
#[derive(Default)]
struct Counter {
    seen: HashMap<(Option<String>, String), (u32, usize)>,
}

impl Counter {
    fn add(&mut self, pointer: Option<String>, detail: &str) {
        let order = self.seen.len();
        self.seen
            .entry((pointer, detail.to_owned()))
            .or_insert((0, order))
            .0 += 1;
    }

    /// The most frequent; the first seen among equals.
    fn most_common(self, total: u32) -> Option<Failure> {
        let ((pointer, detail), (count, _)) = self
            .seen
            .into_iter()
            .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))?;
        Some(Failure {
            pointer,
            detail,
            count,
            share: rate(count, total),
        })
    }
}

/// `k / n`, 0 when `n` is 0.
pub(crate) fn rate(k: u32, n: u32) -> f64 {
    if n == 0 {
        0.0
    } else {
        f64::from(k) / f64::from(n)
    }
}

/// A count as `u32`, saturating (samples are far fewer).
pub(crate) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank within a short list"
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
