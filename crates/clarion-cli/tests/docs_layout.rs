//! The maps of the repository in README.md and docs/architecture.md match the repository.
//!
//! A newcomer reads the README's Layout and architecture.md's Crates and Where things
//! live before any code; a crate, doc, module or command missing there (or listed there
//! and gone) sends them the wrong way. Each failure names the file and line to change.

#[allow(
    dead_code,
    reason = "the parsed values are not read here: only the tree is"
)]
#[path = "../src/args.rs"]
mod args;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use args::Cli;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Names of the entries of `dir` (relative to the root) that `keep` accepts, sorted.
fn entries(dir: &str, keep: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| keep(path))
        .filter_map(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

fn crates() -> Vec<String> {
    entries("crates", |p| p.join("Cargo.toml").exists())
}

/// The lines of the `## heading` section of `markdown`, numbered from 1 in the file.
fn section<'a>(markdown: &'a str, heading: &str) -> Vec<(usize, &'a str)> {
    let mut lines = Vec::new();
    let mut inside = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.starts_with("## ") {
            inside = line == heading;
            continue;
        }
        if inside {
            lines.push((index + 1, line));
        }
    }
    assert!(!lines.is_empty(), "no `{heading}` section");
    lines
}

/// Every code span (text between backticks) of `line`.
fn spans(line: &str) -> impl Iterator<Item = &str> {
    line.split('`').skip(1).step_by(2)
}

/// The subcommands of `clarion`, from the clap tree `clarion --help` prints.
fn subcommands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn the_readme_layout_lists_every_crate_and_doc() {
    let readme = read("README.md");
    let layout = section(&readme, "## Layout");
    let text = layout
        .iter()
        .map(|(_, l)| *l)
        .collect::<Vec<_>>()
        .join("\n");
    let at = layout[0].0;
    let mut missing = Vec::new();
    for name in crates() {
        let path = format!("crates/{name}");
        if !text.contains(&format!("{path} ")) {
            missing.push(format!(
                "README.md:{at}: the Layout section does not list `{path}`; add a line saying \
                 what it does"
            ));
        }
    }
    let docs = entries("docs", |p| p.extension().is_some_and(|e| e == "md"));
    let contributing = root().join("CONTRIBUTING.md").exists();
    let docs = docs
        .iter()
        .map(|d| format!("docs/{d}"))
        .chain(contributing.then(|| "CONTRIBUTING.md".to_owned()));
    for doc in docs {
        if !text.contains(&format!("({doc})")) {
            missing.push(format!(
                "README.md:{at}: the Layout section's table of docs has no row linking \
                 `{doc}`; add `| [{doc}]({doc}) | what it holds |`"
            ));
        }
    }
    for (line, text) in &layout {
        if let Some(name) = text
            .strip_prefix("crates/")
            .and_then(|r| r.split_whitespace().next())
            && !root().join("crates").join(name).exists()
        {
            missing.push(format!(
                "README.md:{line}: the Layout section lists `crates/{name}`, which does not \
                 exist; remove the line"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn architecture_lists_every_crate_and_command() {
    let doc = read("docs/architecture.md");
    let table = section(&doc, "## Crates");
    let mut problems = Vec::new();
    let listed: BTreeSet<&str> = table
        .iter()
        .filter_map(|(_, l)| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let at = table[0].0;
    for name in crates() {
        if !listed.contains(name.as_str()) {
            problems.push(format!(
                "docs/architecture.md:{at}: the Crates table has no row for `{name}`; add one \
                 with its job and what it depends on"
            ));
        }
    }
    for name in &listed {
        if !root().join("crates").join(name).exists() {
            problems.push(format!(
                "docs/architecture.md:{at}: the Crates table lists `{name}`, which is not under \
                 crates/; remove the row"
            ));
        }
    }
    let places = section(&doc, "## Where things live");
    let (line, _) = places
        .iter()
        .find(|(_, l)| l.starts_with("`crates/clarion-cli/src/`"))
        .expect("a `crates/clarion-cli/src/` paragraph in Where things live");
    let paragraph = places
        .iter()
        .skip_while(|(n, _)| n != line)
        .take_while(|(_, l)| !l.is_empty())
        .map(|(_, l)| *l)
        .collect::<Vec<_>>()
        .join(" ");
    let named: BTreeSet<&str> = spans(&paragraph).map(|s| s.trim_end_matches('/')).collect();
    for command in subcommands() {
        if !named.contains(command.as_str()) {
            problems.push(format!(
                "docs/architecture.md:{line}: `clarion {command}` is not among the commands of \
                 the `crates/clarion-cli/src/` paragraph; add `{command}` there"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every path below `dir`, relative to it, directories with a trailing `/`.
fn tree(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            out.push(format!("{prefix}{name}/"));
            tree(&entry.path(), &format!("{prefix}{name}/"), out);
        } else {
            out.push(format!("{prefix}{name}"));
        }
    }
}

#[test]
fn architecture_names_only_files_that_exist_and_every_module() {
    let doc = read("docs/architecture.md");
    let places = section(&doc, "## Where things live");
    let mut problems = Vec::new();
    // Which crate's `src/` the current paragraph or table is about, and its files.
    let mut base: Option<(String, Vec<String>)> = None;
    let mut mentioned: Vec<(String, BTreeSet<String>, usize)> = Vec::new();
    for (line, text) in &places {
        for span in spans(text) {
            if let Some(dir) = span
                .strip_prefix("crates/")
                .and_then(|s| s.strip_suffix("/src/"))
            {
                let mut files = Vec::new();
                tree(&root().join(format!("crates/{dir}/src")), "", &mut files);
                if files.is_empty() {
                    problems.push(format!(
                        "docs/architecture.md:{line}: `{span}` does not exist; remove or rename \
                         it"
                    ));
                }
                base = Some((span.to_owned(), files));
                mentioned.push((span.to_owned(), BTreeSet::new(), *line));
                continue;
            }
            let is_path = !span.contains([' ', ':', '*', '"', '='])
                && (Path::new(span).extension().is_some_and(|e| e == "rs") || span.ends_with('/'));
            let Some((base_name, files)) = base.as_ref() else {
                continue;
            };
            if !is_path {
                continue;
            }
            // A path from the root (`crates/…/tests/x.rs`) is checked as it is.
            if span.starts_with("crates/") {
                if !root().join(span).exists() {
                    problems.push(format!(
                        "docs/architecture.md:{line}: `{span}` does not exist; update the doc"
                    ));
                }
                continue;
            }
            let found = files
                .iter()
                .any(|f| f == span || f.ends_with(&format!("/{span}")));
            if !found {
                problems.push(format!(
                    "docs/architecture.md:{line}: `{span}` is not in {base_name}; the module was \
                     renamed or removed: update the doc"
                ));
            }
            if let Some((_, seen, _)) = mentioned.last_mut() {
                seen.insert(
                    span.trim_end_matches('/')
                        .trim_end_matches(".rs")
                        .to_owned(),
                );
            }
        }
    }
    // Every top-level module of every crate is named where its crate is described.
    for (base_name, seen, line) in &mentioned {
        let dir = base_name.trim_end_matches('/');
        for module in entries(dir, |_| true) {
            let stem = module.trim_end_matches(".rs");
            if matches!(stem, "lib" | "main" | "mod") {
                continue;
            }
            if !seen.contains(stem) {
                problems.push(format!(
                    "docs/architecture.md:{line}: `{dir}/{module}` is not described under \
                     `{base_name}`; say in a few words what it holds and why it is separate"
                ));
            }
        }
    }
    for name in crates() {
        let base = format!("crates/{name}/src/");
        if !mentioned.iter().any(|(b, _, _)| *b == base) {
            problems.push(format!(
                "docs/architecture.md: Where things live has no `{base}` paragraph or table; \
                 add one"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `cargo metadata` of the workspace's own packages (offline: no registry is asked).
fn cargo_metadata() -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// What crates.io shows of a crate is there for every crate: a description, a licence, a
/// readme that exists, keywords as crates.io takes them (at most 5, each up to 20
/// characters of `a-z0-9_-`), and categories.
#[test]
fn every_crate_is_described_for_crates_io() {
    let metadata = cargo_metadata();
    let mut problems = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or("?");
        let manifest = package["manifest_path"].as_str().unwrap_or("?");
        let mut missing = |what: &str| {
            problems.push(format!("{manifest}: `{name}` has no {what}"));
        };
        if package["description"].as_str().is_none_or(str::is_empty) {
            missing("description");
        }
        if package["license"].as_str().is_none_or(str::is_empty) {
            missing("license");
        }
        let readme = package["readme"].as_str().map(|r| {
            Path::new(manifest)
                .parent()
                .map_or_else(|| PathBuf::from(r), |dir| dir.join(r))
        });
        if !readme.is_some_and(|r| r.exists()) {
            missing("readme that exists (`readme.workspace = true`)");
        }
        let keywords: Vec<&str> = package["keywords"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str())
            .collect();
        let fit = |k: &&str| {
            k.len() <= 20
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        if keywords.is_empty() || keywords.len() > 5 || !keywords.iter().all(fit) {
            missing("1 to 5 keywords crates.io accepts (`keywords.workspace = true`)");
        }
        if package["categories"].as_array().is_none_or(Vec::is_empty) {
            missing("categories (crates.io's category slugs)");
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The README's install command installs a binary named `clarion`, from a package whose
/// manifest says so (what `cargo install --path` reads). `.ci/run` does the install itself.
#[test]
fn the_readme_install_command_installs_clarion() {
    let readme = read("README.md");
    let (line, path) = readme
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            l.strip_prefix("cargo install --locked --path ")
                .map(|p| (i + 1, p.trim().to_owned()))
        })
        .expect("README.md shows `cargo install --locked --path …`");
    let metadata = cargo_metadata();
    let manifest = root().join(&path).join("Cargo.toml").canonicalize();
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .and_then(|m| Path::new(m).canonicalize().ok())
                .is_some_and(|m| manifest.as_ref().is_ok_and(|want| *want == m))
        })
        .unwrap_or_else(|| {
            panic!("README.md:{line}: `--path {path}` is not a package of the workspace")
        });
    let bins: Vec<&str> = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        bins,
        ["clarion"],
        "README.md:{line}: `cargo install --path {path}` must install exactly the `clarion` \
         binary the docs run"
    );
}

/// Paths the docs show as files of the reader's own, not of this repository.
const EXAMPLE_PATHS: &[&str] = &[
    // docs/diagnostics.md's broken flow, shown with the output it gives.
    "flows/loan.toml",
];

/// Top-level folders of the repository: a code span starting with one is a path in it.
const TOP_LEVEL: &[&str] = &[
    "crates/", "docs/", "flows/", "schemas/", "scripts/", "tests/", ".ci/",
];

#[test]
fn every_repository_path_in_the_docs_exists() {
    let mut docs = vec!["README.md".to_owned(), "CONTRIBUTING.md".to_owned()];
    docs.extend(
        entries("docs", |p| p.extension().is_some_and(|e| e == "md"))
            .into_iter()
            .map(|d| format!("docs/{d}")),
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in docs.iter().filter(|d| root().join(d).exists()) {
        let text = read(doc);
        let mut in_code = false;
        for (index, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            for span in spans(line) {
                if !TOP_LEVEL.iter().any(|t| span.starts_with(t)) || span.contains(' ') {
                    continue;
                }
                // `path#anchor`, `path:line:column`.
                let path = span.split(['#', ':']).next().unwrap_or(span);
                let placeholder = path.contains('*')
                    || path.split('/').any(|segment| {
                        segment.split('.').next().is_some_and(|s| {
                            !s.is_empty() && s.chars().all(|c| c.is_ascii_uppercase())
                        })
                    });
                if placeholder || EXAMPLE_PATHS.contains(&path) {
                    continue;
                }
                checked += 1;
                if !root().join(path).exists() {
                    problems.push(format!(
                        "{doc}:{}: `{path}` does not exist (paths are from the repository \
                         root); fix the path, or add it to EXAMPLE_PATHS if it is the reader's \
                         own file",
                        index + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked >= 40,
        "only {checked} paths found: is the scanner broken?"
    );
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for path in read.filter_map(Result::ok).map(|e| e.path()) {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Environment variables `source` reads by name: `var("NAME")`, `var_os("NAME")`,
/// `env("NAME")`, `non_empty("NAME")`, and any whole literal `"OPENAI_…"`, `"CLARION_…"`,
/// `"INSTA_…"` (a default variable name, say).
fn variables_read(source: &str) -> BTreeSet<String> {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    let mut found = BTreeSet::new();
    for call in ["var(\"", "var_os(\"", "env(\"", "non_empty(\""] {
        for (at, _) in source.match_indices(call) {
            let rest = &source[at + call.len()..];
            if let Some(name) = rest.split_once("\")").map(|(n, _)| n)
                && is_name(name)
            {
                found.insert(name.to_owned());
            }
        }
    }
    for literal in source.split('"').skip(1).step_by(2) {
        if is_name(literal)
            && ["OPENAI_", "CLARION_", "INSTA_"]
                .iter()
                .any(|p| literal.starts_with(p))
        {
            found.insert(literal.to_owned());
        }
    }
    found
}

#[test]
fn every_environment_variable_the_code_reads_is_documented() {
    let doc = read("docs/configuration.md");
    let documented: BTreeSet<&str> = doc
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split(" | ").next())
        .flat_map(spans)
        .collect();
    let mut files = Vec::new();
    for name in crates() {
        rust_files(&root().join(format!("crates/{name}/src")), &mut files);
    }
    let mut problems = Vec::new();
    let mut code = String::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap_or_default();
        for name in variables_read(&source) {
            if !documented.contains(name.as_str()) {
                let shown = file
                    .strip_prefix(root())
                    .unwrap_or(file)
                    .display()
                    .to_string();
                problems.push(format!(
                    "{shown} reads `{name}`, which docs/configuration.md's table does not list; \
                     add a row: who reads it, what it means, its default"
                ));
            }
        }
        code.push_str(&source);
    }
    let mut scripts = Vec::new();
    for entry in std::fs::read_dir(root().join("scripts"))
        .expect("scripts/ lists")
        .flatten()
    {
        scripts.push(std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    for name in &documented {
        if !code.contains(name) && !scripts.iter().any(|s| s.contains(name)) {
            problems.push(format!(
                "docs/configuration.md lists `{name}`, which no crate or script mentions; \
                 remove the row"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        documented.len() >= 8,
        "the table of docs/configuration.md was not found"
    );
}

#[test]
fn the_variable_scanner_finds_reads_and_default_names() {
    let source = r#"std::env::var("CI"); env("OPENAI_MODEL"); var_os(name);
        let key = x.unwrap_or_else(|| "OPENAI_API_KEY".to_owned()); let s = "NOT_A_READ";"#;
    let found: Vec<String> = variables_read(source).into_iter().collect();
    assert_eq!(found, ["CI", "OPENAI_API_KEY", "OPENAI_MODEL"]);
}
