//! `clarion eval` end to end through the binary: a loopback "noisy" model that answers
//! correctly with a known probability, so the reported pass rates can be checked against
//! the truth; the results, HTML and `JUnit` files; `--compare`, `--record` / `--replay`;
//! and bad input.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::{Value, json};

/// A model that, asked a user's question, calls the savings tool with the right arguments
/// with probability `p` and otherwise answers in prose (so `tool_called` fails); after a
/// tool's output it answers in prose. Seeded: the same requests get the same answers.
struct Noisy {
    p: f64,
    state: Mutex<u64>,
}

impl Noisy {
    fn new(p: f64, seed: u64) -> Self {
        Self {
            p,
            state: Mutex::new(seed),
        }
    }

    /// splitmix64, as a fraction in [0, 1).
    fn draw(&self) -> f64 {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        #[allow(clippy::cast_precision_loss, reason = "53 bits of a random draw")]
        let fraction = (z >> 11) as f64 / (1_u64 << 53) as f64;
        fraction
    }
}

impl wiremock::Respond for Noisy {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let asked = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .is_some_and(|m| m["role"] == "user");
        let message = if asked && self.draw() < self.p {
            json!({ "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function",
                "function": { "name": "calculate_savings_timeline",
                    "arguments": "{\"goal_amount\": 10000, \"monthly_income\": 3000, \"monthly_savings\": 500}" } }] })
        } else {
            json!({ "role": "assistant", "content": "About 20 months." })
        };
        if body["stream"] == true {
            return support::reply(&body, &message);
        }
        let finish = if message["tool_calls"].is_array() {
            "tool_calls"
        } else {
            "stop"
        };
        wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
            "usage": { "prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110 }
        }))
    }
}

/// A noisy model on loopback for the life of the returned runtime.
fn model(p: f64, seed: u64) -> (tokio::runtime::Runtime, wiremock::MockServer) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let server = runtime.block_on(async {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(Noisy::new(p, seed))
            .mount(&server)
            .await;
        server
    });
    (runtime, server)
}

const EVALUABLE: &str = r#"[scenario]
name = "All three figures given"

[mocks.calculate_savings_timeline]
result = { months = 20, years = 1.7, attainable = true }

[[turns]]
user = "How long to save $10,000 at $500 a month? I earn $3,000."
[turns.expect]
tool_called = { tool = "calculate_savings_timeline", args = { goal_amount = 10000, monthly_income = 3000, monthly_savings = 500 } }
run_status = "completed"
"#;

const NO_EXPECTATIONS: &str = r#"[[turns]]
user = "Hello"
"#;

/// A project: the finance flow pointed at `base_url` (none: the flow names no provider),
/// one evaluable scenario and one without expectations.
fn project(base_url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let flow = std::fs::read_to_string(workspace.join("flows/personal-finance.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let evals = dir.path().join("flows/pf/evals");
    std::fs::create_dir_all(&evals).unwrap_or_else(|e| panic!("{e}"));
    let provider = if base_url.is_empty() {
        String::new()
    } else {
        format!("\n[provider]\nbase_url = \"{base_url}\"\nstream = false\nmax_retries = 0\n")
    };
    std::fs::write(
        dir.path().join("flows/pf.toml"),
        format!("{flow}{provider}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(evals.join("all_given.toml"), EVALUABLE).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(evals.join("no_expectations.toml"), NO_EXPECTATIONS)
        .unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn clarion(dir: &Path, args: &[&str]) -> Output {
    clarion_with(dir, args, &[])
}

fn clarion_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env_remove("CI")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_MODEL")
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// The scenario of `results` whose path ends with `name`.
fn scenario<'a>(results: &'a Value, name: &str) -> &'a Value {
    results["scenarios"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|s| s["path"].as_str().is_some_and(|p| p.ends_with(name)))
        })
        .unwrap_or_else(|| panic!("no {name} in {results}"))
}

fn inside(interval: &Value, rate: f64) -> bool {
    interval["low"].as_f64().is_some_and(|low| low <= rate)
        && interval["high"].as_f64().is_some_and(|high| rate <= high)
}

#[test]
fn pass_rates_fall_inside_their_intervals_and_every_report_is_written() {
    const P: f64 = 0.7;
    let (_runtime, server) = model(P, 7);
    let dir = project(&format!("{}/v1", server.uri()));
    let output = clarion(
        dir.path(),
        &[
            "eval",
            "--samples",
            "40",
            "--jobs",
            "2",
            "--out",
            "out/results.json",
            "--report",
            "out/eval.html",
            "--junit",
            "out/eval.xml",
            "--min-pass-rate",
            "0.9",
        ],
    );
    let all = text(&output);
    // 70% is below 90%: the run fails, as CI needs it to.
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(!all.contains("panicked"), "{all}");

    let results = json_file(&dir.path().join("out/results.json"));
    assert_eq!(results["format"], 1);
    assert_eq!(results["samples"], 40);
    let evaluated = scenario(&results, "all_given.toml");
    assert_eq!(evaluated["total"], 40);
    assert_eq!(evaluated["samples"].as_array().map(Vec::len), Some(40));
    assert!(
        inside(&evaluated["interval"], P),
        "the true rate {P} is inside the reported interval: {}",
        evaluated["interval"]
    );
    let expectations = evaluated["expectations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(expectations.len(), 2, "{expectations:?}");
    let called = &expectations[0];
    assert_eq!(called["key"], "tool_called");
    assert_eq!(called["pointer"], "/turns/0/expect/tool_called");
    assert_eq!(called["line"], 10);
    assert!(inside(&called["interval"], P), "{called}");
    let failure = called["most_common_failure"]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(failure.contains("was not called"), "{failure}");
    // A prose answer still completes the run: that expectation always holds.
    assert_eq!(expectations[1]["key"], "run_status");
    assert_eq!(expectations[1]["passed"], 40);
    // Usage as the provider reported it: one or two requests of 100 prompt tokens.
    let prompt = evaluated["prompt_tokens"].as_f64().unwrap_or_default();
    assert!((100.0..=200.0).contains(&prompt), "{prompt}");
    assert!(results["cpu_seconds"].as_f64().is_some_and(|s| s > 0.0));

    // Without expectations a scenario is not evaluable, and never counted as passed.
    let skipped = scenario(&results, "no_expectations.toml");
    assert_eq!(skipped["total"], 0);
    assert!(
        skipped["not_evaluable"]
            .as_str()
            .is_some_and(|why| why.contains("no expectations")),
        "{skipped}"
    );
    assert!(all.contains("not evaluable"), "{all}");
    assert!(
        all.contains("1 scenario below --min-pass-rate 0.9"),
        "{all}"
    );
    assert!(all.contains("tool_called (turn 1, line 10)"), "{all}");

    // The HTML report is one well-formed file with every section and nothing fetched.
    let html = std::fs::read_to_string(dir.path().join("out/eval.html")).unwrap_or_default();
    for section in [
        "summary",
        "scenarios",
        "expectations",
        "failures",
        "latency",
        "samples",
    ] {
        assert!(
            html.contains(&format!("id=\"{section}\"")),
            "section {section}"
        );
    }
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    well_formed(&dir.path().join("out/eval.html"));
    // JUnit: the scenario below the threshold fails, the one without expectations is skipped.
    let junit = std::fs::read_to_string(dir.path().join("out/eval.xml")).unwrap_or_default();
    assert!(
        junit.contains("failures=\"1\"") && junit.contains("skipped=\"1\""),
        "{junit}"
    );
    well_formed(&dir.path().join("out/eval.xml"));
}

/// Parses `path` with Python's XML parser (the report is XHTML-compatible HTML).
#[allow(clippy::print_stderr, reason = "a skipped check says why")]
fn well_formed(path: &Path) {
    let checked = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as ET; ET.parse(sys.argv[1])",
        ])
        .arg(path)
        .output();
    match checked {
        Ok(output) => assert!(
            output.status.success(),
            "{} is not well-formed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) if std::env::var_os("CI").is_some() => panic!("python3 is needed under CI: {e}"),
        Err(e) => eprintln!("skipped: the well-formedness check needs python3 ({e})"),
    }
}

/// Runs an evaluation of `samples` against a model right with probability `p`; the results
/// file.
fn evaluate(dir: &Path, p: f64, samples: &str, out: &str, extra: &[&str]) -> PathBuf {
    let (_runtime, server) = model(p, 11);
    let base_url = format!("{}/v1", server.uri());
    // Point the flow at this run's server.
    let flow = dir.join("flows/pf.toml");
    let toml = std::fs::read_to_string(&flow).unwrap_or_default();
    let start = toml.find("base_url = \"").unwrap_or(0) + "base_url = \"".len();
    let end = start + toml[start..].find('"').unwrap_or(0);
    std::fs::write(
        &flow,
        format!("{}{base_url}{}", &toml[..start], &toml[end..]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut args = vec![
        "eval",
        "-k",
        "all_given",
        "--samples",
        samples,
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    let output = clarion(dir, &args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    dir.join(out)
}

#[test]
fn compare_says_what_got_worse_and_fails_only_then() {
    let dir = project("http://127.0.0.1:9/v1");
    let good = evaluate(dir.path(), 0.95, "20", "good.json", &[]);
    let bad = evaluate(dir.path(), 0.1, "20", "bad.json", &[]);
    let (good, bad) = (good.display().to_string(), bad.display().to_string());

    let output = clarion(dir.path(), &["eval", "--compare", &good, &bad]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("WORSE"), "{all}");
    assert!(all.contains("1 significantly worse"), "{all}");
    assert!(
        all.contains("tool_called (turn 1)"),
        "the expectation that moved: {all}"
    );

    let output = clarion(dir.path(), &["eval", "--compare", &bad, &good]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(
        all.contains("1 significantly better, 0 significantly worse"),
        "{all}"
    );
}

#[test]
fn recorded_samples_replay_offline_to_the_same_verdicts() {
    let dir = project("http://127.0.0.1:9/v1");
    let results = evaluate(dir.path(), 0.5, "6", "live.json", &["--record"]);
    let live = json_file(&results);
    let recordings = dir.path().join("live.recordings/pf/all_given");
    assert!(recordings.join("1.jsonl").is_file() && recordings.join("6.jsonl").is_file());

    // No model server now: the recordings answer.
    let output = clarion(
        dir.path(),
        &["eval", "--replay", "live.json", "--out", "replayed.json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let replayed = json_file(&dir.path().join("replayed.json"));
    let verdicts = |r: &Value| -> Vec<Value> {
        scenario(r, "all_given.toml")["samples"]
            .as_array()
            .map(|s| s.iter().map(|x| x["verdict"].clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(verdicts(&live), verdicts(&replayed));
    assert_eq!(verdicts(&live).len(), 6);
}

#[test]
fn bad_input_is_a_clear_usage_error() {
    let dir = project("http://127.0.0.1:9/v1");
    let output = clarion(dir.path(), &["eval", "--min-pass-rate", "90"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("for 90%, write 0.9"),
        "{}",
        text(&output)
    );

    std::fs::write(dir.path().join("not.json"), "{\"hello\": 1}").unwrap_or_else(|e| panic!("{e}"));
    let output = clarion(dir.path(), &["eval", "--compare", "not.json", "not.json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("not.json: not a `clarion eval` results file"),
        "{}",
        text(&output)
    );

    // Only scenarios without expectations: nothing to evaluate, and no model is started.
    let output = clarion(dir.path(), &["eval", "-k", "no_expectations"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("no scenario can be evaluated"),
        "{}",
        text(&output)
    );

    let output = clarion(dir.path(), &["eval", "-k", "nothing-matches"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("no scenario files found matching -k"));
}

/// With no provider anywhere, `clarion eval` sets up the local model as `clarion demo`
/// does (here a stand-in script that "starts" the noisy model) and names it in the results.
#[test]
fn without_a_provider_the_local_model_is_used() {
    let (_runtime, server) = model(1.0, 3);
    let dir = project("");
    let script = dir.path().join("fake-local-model.sh");
    std::fs::write(
        &script,
        format!(
            "case $1 in\n  install) echo '[local-model] model: cached' >&2 ;;\n  start) echo '{}/v1' ;;\n  *) exit 2 ;;\nesac\n",
            server.uri()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let script = script.display().to_string();
    let output = clarion_with(
        dir.path(),
        &[
            "eval",
            "-k",
            "all_given",
            "--samples",
            "2",
            "--out",
            "local.json",
        ],
        &[("CLARION_LOCAL_MODEL_SCRIPT", &script)],
    );
    let all = text(&output);
    assert_eq!(output.status.code(), Some(0), "{all}");
    assert!(all.contains("no provider configured"), "{all}");
    let results = json_file(&dir.path().join("local.json"));
    assert_eq!(results["model"], "qwen2.5-coder-1.5b-instruct");
    assert_eq!(
        scenario(&results, "all_given.toml")["passed"],
        2,
        "{results}"
    );
}
