//! How fast the flow loader is, and how much memory loaded flows take.
//!
//! A plain binary rather than a criterion bench, so `cargo test` compiles nothing extra.
//! It generates realistic flows (variations on `flows/personal-finance.toml`: 3–8 tools of
//! every executor kind, 2–5 parameters each, slots they fill, `after` rules, `on_error`,
//! templates in instructions, questions and URLs), checks each loads with no errors, then
//! measures:
//!
//! 1. the first load in the process (it compiles the flow schema's validator);
//! 2. one flow with `load_str`, median and p99 over `--iterations` runs (default 2,000);
//! 3. 100 flows read from disk with `load_file`, in one process;
//! 4. 1,000 flows from disk with every report kept alive, in a fresh process (`--hold DIR`),
//!    and that process's peak RSS (`VmHWM`).
//!
//! ```text
//! cargo run --release -p clarion-engine --example bench_load
//! cargo run --release -p clarion-engine --example bench_load -- --write DIR 100
//! ```
//!
//! `--write DIR N` only writes N generated flows to DIR (for timing `clarion validate DIR`;
//! `scripts/bench.sh` does both). Figures and targets are in `docs/benchmarks.md`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clarion_flow::{LoadReport, load_file, load_str};

const FINANCE: &str = include_str!("../../../flows/personal-finance.toml");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--write", dir, count] => match count.parse() {
            Ok(count) => match write_flows(Path::new(dir), count) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => fail(&format!("cannot write flows to {dir}: {error}")),
            },
            Err(_) => fail("usage: bench_load --write DIR COUNT"),
        },
        ["--hold", dir] => hold(Path::new(dir)),
        [] => run(2_000),
        ["--iterations", n] => n.parse().map_or_else(|_| fail("bad --iterations"), run),
        _ => fail("usage: bench_load [--iterations N] | --write DIR COUNT"),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("bench_load: {message}");
    ExitCode::FAILURE
}

fn run(iterations: usize) -> ExitCode {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => return fail(&format!("no temporary directory: {error}")),
    };
    let paths = match write_flows(dir.path(), 1_000) {
        Ok(paths) => paths,
        Err(error) => return fail(&format!("cannot write flows: {error}")),
    };
    let texts: Vec<String> = (0..1_000).map(generate).collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    println!(
        "generated 1000 flows: {} KiB, {} lines on average",
        bytes / 1024,
        texts.iter().map(|t| t.lines().count()).sum::<usize>() / texts.len()
    );

    // 1. Cold: the first load compiles the flow schema's validator, once per process.
    let started = Instant::now();
    let report = load_str("flow-0.toml", &texts[0], None);
    println!("first load in the process: {}", ms(started.elapsed()));
    if let Err(message) = clean(&report) {
        return fail(&message);
    }
    // Every generated flow must load cleanly, or the figures measure the wrong path.
    for (i, text) in texts.iter().enumerate() {
        if let Err(message) = clean(&load_str(format!("flow-{i}.toml"), text, None)) {
            return fail(&message);
        }
    }

    // 2. One flow, warm.
    for (name, text) in [
        ("generated flow", &texts[0]),
        ("personal-finance.toml", &FINANCE.to_owned()),
    ] {
        let mut times: Vec<Duration> = (0..iterations)
            .map(|_| {
                let started = Instant::now();
                let report = load_str("flow.toml", text, None);
                let elapsed = started.elapsed();
                std::hint::black_box(report);
                elapsed
            })
            .collect();
        times.sort();
        println!(
            "load_str, {name} ({} lines), {iterations} runs: median {}, p99 {}, max {}",
            text.lines().count(),
            ms(percentile(&times, 50)),
            ms(percentile(&times, 99)),
            ms(times.last().copied().unwrap_or_default()),
        );
    }

    // 3. 100 flows from disk, one process.
    let mut runs: Vec<Duration> = (0..20)
        .map(|_| {
            let started = Instant::now();
            for path in &paths[..100] {
                std::hint::black_box(load_file(path));
            }
            started.elapsed()
        })
        .collect();
    runs.sort();
    println!(
        "load_file of 100 flows, 20 runs: median {}, min {}",
        ms(percentile(&runs, 50)),
        ms(runs[0])
    );

    // 4. 1,000 flows kept alive, in a fresh process so its peak RSS is theirs alone.
    drop(texts);
    let held = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .arg("--hold")
            .arg(dir.path())
            .status()
    });
    if !held.is_ok_and(|status| status.success()) {
        return fail("the --hold child failed");
    }
    ExitCode::SUCCESS
}

/// Loads every flow in `dir` and keeps every report: what an application holding all its
/// flows pays. Prints the time and the process's peak RSS.
fn hold(dir: &Path) -> ExitCode {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(error) => return fail(&format!("cannot read {}: {error}", dir.display())),
    };
    paths.sort();
    let before = status_kib("VmRSS");
    let started = Instant::now();
    let reports: Vec<LoadReport> = paths.iter().map(|path| load_file(path)).collect();
    let elapsed = started.elapsed();
    let loaded = reports.iter().filter(|r| r.flow.is_some()).count();
    println!(
        "load_file of {} flows, all kept (fresh process): {} ({loaded} loaded); \
         RSS {} MiB before, {} MiB after; peak RSS (VmHWM) {} MiB",
        reports.len(),
        ms(elapsed),
        mib(before),
        mib(status_kib("VmRSS")),
        mib(status_kib("VmHWM")),
    );
    drop(reports);
    ExitCode::SUCCESS
}

fn clean(report: &LoadReport) -> Result<(), String> {
    if report.diagnostics.is_empty() {
        return Ok(());
    }
    let found: Vec<String> = report
        .diagnostics
        .iter()
        .map(|d| format!("{} {}", d.code(), d.message()))
        .collect();
    Err(format!(
        "generated flow {} is not clean: {found:?}",
        report.source.path().display()
    ))
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "?".to_owned(),
        |k| format!("{}.{}", k / 1024, k % 1024 * 10 / 1024),
    )
}

/// A `kB` field of `/proc/self/status` (Linux only; `None` elsewhere).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn write_flows(dir: &Path, count: usize) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    (0..count)
        .map(|i| {
            let path = dir.join(format!("flow-{i:04}.toml"));
            std::fs::write(&path, generate(i))?;
            Ok(path)
        })
        .collect()
}

// ---- generating realistic flows ------------------------------------------------------

const DOMAINS: &[&str] = &[
    "personal finance",
    "travel booking",
    "customer support",
    "home insurance",
    "recipe planning",
    "fitness coaching",
];

/// A slot (and the parameters that fill it): name, JSON Schema lines, description.
const SLOTS: &[(&str, &str, &str)] = &[
    (
        "monthly_income",
        "type = \"number\"\nminimum = 0",
        "Net monthly income in dollars.",
    ),
    (
        "goal_amount",
        "type = \"number\"\nexclusiveMinimum = 0",
        "The current savings goal in dollars.",
    ),
    (
        "risk_tolerance",
        "type = \"string\"\nenum = [\"low\", \"medium\", \"high\"]",
        "How much investment risk the user accepts.",
    ),
    (
        "city",
        "type = \"string\"\nminLength = 1",
        "The city the user is asking about.",
    ),
    (
        "years",
        "type = \"integer\"\nminimum = 1\nmaximum = 60",
        "The planning horizon in years.",
    ),
    (
        "email",
        "type = \"string\"\nformat = \"email\"",
        "The user's e-mail address.",
    ),
    (
        "party_size",
        "type = \"integer\"\nminimum = 1\nmaximum = 20",
        "How many people are travelling.",
    ),
];

/// Parameters that fill no slot.
const PARAMS: &[(&str, &str, &str)] = &[
    (
        "principal",
        "type = \"number\"\nexclusiveMinimum = 0",
        "Amount borrowed in dollars.",
    ),
    (
        "annual_rate_percent",
        "type = \"number\"\nminimum = 0\nmaximum = 100",
        "Annual interest rate in percent.",
    ),
    (
        "ticket_id",
        "type = \"string\"\npattern = \"^T-[0-9]+$\"",
        "The support ticket's id.",
    ),
    (
        "date",
        "type = \"string\"\nformat = \"date\"",
        "The date, as YYYY-MM-DD.",
    ),
    (
        "notes",
        "type = \"string\"\nmaxLength = 500\nrequired = false",
        "Anything else the user said.",
    ),
    (
        "priority",
        "type = \"string\"\nenum = [\"low\", \"normal\", \"urgent\"]",
        "How urgent the request is.",
    ),
];

/// A small deterministic generator (xorshift), so every run measures the same flows.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }
}

/// The `i`-th generated flow: always the same text for the same `i`, always clean.
#[must_use]
fn generate(i: usize) -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let domain = DOMAINS[i % DOMAINS.len()];
    let slot_count = rng.between(2, 5);
    let first_slot = rng.below(SLOTS.len());
    let slots: Vec<_> = (0..slot_count)
        .map(|k| SLOTS[(first_slot + k) % SLOTS.len()])
        .collect();
    let mut text = String::new();
    let _ = write!(
        text,
        "#:schema ../schemas/flow.schema.json\n# Generated flow {i} for the loader benchmark.\n\n\
         [flow]\nname = \"bench-{i}\"\ndescription = \"A {domain} assistant (generated).\"\n\
         version = \"1.0.{i}\"\n\n\
         [assistant]\nmodel = \"gpt-4.1-mini\"\ntemperature = 0.2\nparallel_tool_calls = true\n\
         instructions = \"\"\"\nYou are a careful {domain} assistant. Use the tools for every \
         calculation and lookup; never guess. Keep answers short and concrete.\n"
    );
    for (name, _, _) in &slots {
        let _ = writeln!(
            text,
            "{{% if slots.{name} %}}The user's {} is {{{{ slots.{name} }}}}.{{% endif %}}",
            name.replace('_', " ")
        );
    }
    text.push_str("\"\"\"\n\n[limits]\nmax_steps = 8\ntool_timeout = \"10s\"\nmax_consecutive_failures = 2\n\n");
    for (name, schema, description) in &slots {
        let _ = write!(
            text,
            "[slots.{name}]\n{schema}\ndescription = \"{description}\"\n\n"
        );
    }
    for t in 0..rng.between(3, 8) {
        tool(&mut text, &mut rng, t, &slots);
    }
    text
}

fn tool(text: &mut String, rng: &mut Rng, t: usize, slots: &[(&str, &str, &str)]) {
    let name = format!("tool_{t}");
    let _ = write!(
        text,
        "# --- {name} ----------------------------------------------------------------\n\n\
         [tools.{name}]\ndescription = \"Does step {t} of the job and returns what it found; \
         call it when the user asks for it.\"\n"
    );
    // Executors of every kind; a built-in gets exactly the parameters the real one takes,
    // so `clarion validate` (which checks built-ins against their functions) passes too.
    let executor = rng.below(4);
    let mut params: Vec<(String, &str, &str, Option<&str>)> = Vec::new();
    match executor {
        0 => {
            let _ = writeln!(text, "builtin = \"finance.savings_timeline\"");
            for (param, description) in [
                ("goal_amount", "Target amount in dollars."),
                ("monthly_income", "Net monthly income in dollars."),
                ("monthly_savings", "Amount saved each month in dollars."),
            ] {
                let slot = slots.iter().find(|s| s.0 == param).map(|s| s.0);
                params.push((
                    param.to_owned(),
                    "type = \"number\"\nminimum = 0",
                    description,
                    slot,
                ));
            }
        }
        1 => {
            let _ = writeln!(text, "client = true");
        }
        _ => {}
    }
    // Other tools' parameters: some fill slots (and share their schema), the rest stand alone.
    for k in 0..rng.between(2, 5) {
        if executor == 0 {
            break;
        }
        if k < slots.len() && rng.below(2) == 0 {
            let (slot, schema, description) = slots[(t + k) % slots.len()];
            if params.iter().all(|p| p.0 != slot) {
                params.push((slot.to_owned(), schema, description, Some(slot)));
                continue;
            }
        }
        let (param, schema, description) = PARAMS[(t + k) % PARAMS.len()];
        if params.iter().all(|p| p.0 != param) {
            params.push((param.to_owned(), schema, description, None));
        }
    }
    let first = &params[0].0;
    if executor == 2 {
        let _ = write!(
            text,
            "\n[tools.{name}.http]\nmethod = \"GET\"\n\
             url = \"https://api.example.com/v1/{name}/{{{{ args.{first} }}}}\"\n\
             headers = {{ Authorization = \"Bearer {{{{ env.API_TOKEN }}}}\", Accept = \"application/json\" }}\n\
             env = [\"API_TOKEN\"]\nresult_pointer = \"/data\"\ntimeout = \"5s\"\n"
        );
    } else if executor == 3 {
        let _ = write!(
            text,
            "\n[tools.{name}.command]\nargv = [\"python3\", \"tools/{name}.py\"]\ncwd = \".\"\n\
             timeout = \"3s\"\nmax_output_bytes = 4096\nenv = [\"PATH\"]\n"
        );
    }
    for (param, schema, description, slot) in &params {
        let _ = write!(
            text,
            "\n[tools.{name}.params.{param}]\n{schema}\ndescription = \"{description}\"\n"
        );
        if !schema.contains("required = false") {
            let _ = writeln!(
                text,
                "ask = \"What is the {}?\"",
                description.trim_end_matches('.').to_lowercase()
            );
        }
        if let Some(slot) = slot {
            let _ = writeln!(text, "slot = \"{slot}\"");
        }
    }
    rules(text, rng, &name, first);
    text.push('\n');
}

/// `after` rules and `on_error` for the tool `name`, whose first parameter is `first`.
fn rules(text: &mut String, rng: &mut Rng, name: &str, first: &str) {
    for r in 0..rng.below(3) {
        if r == 0 {
            let _ = write!(
                text,
                "\n[[tools.{name}.after]]\nwhen = \"not result.ok\"\ninject = \"\"\"\n\
                 The call with {{{{ args.{first} }}}} found nothing ({{{{ result.reason }}}}). \
                 Ask the user whether to try again with different values.\n\"\"\"\n"
            );
        } else {
            let _ = write!(
                text,
                "\n[[tools.{name}.after]]\nwhen = \"result.ok and result.count > 0\"\n\
                 inject = \"Found {{{{ result.count }}}} results for {{{{ args.{first} }}}}; \
                 summarise the best three.\"\n"
            );
        }
    }
    if rng.below(2) == 0 {
        let _ = write!(
            text,
            "\n[tools.{name}.on_error]\ninject = \"The {name} call failed ({{{{ error.message }}}}). \
             Apologise briefly and ask the user to restate the request.\"\n"
        );
    }
}
