//! The TOML shown in `docs/` is TOML Clarion accepts.
//!
//! A TOML code block (fenced as `toml`) in a doc may carry a marker on the line before its fence:
//!
//! - `<!-- check: flow -->`: a whole flow; it loads with no errors, with the built-in
//!   catalog `clarion validate` uses (so `builtin = "…"` names and parameters are checked);
//! - `<!-- check: fragment -->`: tables that load with no errors once a minimal `[flow]` and
//!   `[assistant]` are put in front of them, where the block has none (e.g. a `[provider]`
//!   table);
//! - `<!-- check: excerpt PATH -->`: lines copied from the flow at PATH (from the repository
//!   root): each line of the block, comments and `…` aside, appears in that file in the same
//!   order, and the file itself loads with no errors;
//! - `<!-- check: none -->`: not a flow (a scenario, an editor's config…).
//!
//! In the docs listed in `EVERY_BLOCK_MARKED`, every TOML code block must carry a marker, so a
//! new snippet cannot slip in unchecked.

use std::path::{Path, PathBuf};

use clarion_flow::diagnostic::{Severity, render};
use clarion_flow::{LoadOptions, load_file_with, load_str_with};
use clarion_tools::ClarionTools;

/// Docs in which every TOML code block must say how it is checked.
const EVERY_BLOCK_MARKED: &[&str] = &[
    "flow-format.md",
    "migrating-from-assistants-api.md",
    "providers.md",
];

/// Put in front of a fragment that has no `[flow]` table.
const FLOW_HEADER: &str = "[flow]\nname = \"snippet\"\n\n";
/// Put in front of a fragment that has no `[assistant]` table.
const ASSISTANT_HEADER: &str =
    "[assistant]\nmodel = \"gpt-4.1-mini\"\ninstructions = \"A snippet from the docs.\"\n\n";

/// A fragment with the tables it leaves out put in front of it.
fn completed(fragment: &str) -> String {
    let has = |table: &str| fragment.lines().any(|l| l.trim() == table);
    let mut text = String::new();
    if !has("[flow]") {
        text.push_str(FLOW_HEADER);
    }
    if !has("[assistant]") {
        text.push_str(ASSISTANT_HEADER);
    }
    text + fragment
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One TOML code block: where it is, its marker, its text.
#[derive(Debug)]
struct Block {
    doc: String,
    line: usize,
    marker: Option<String>,
    text: String,
}

/// Every TOML code block of `markdown`, with the marker on the line before its fence.
fn toml_blocks(doc: &str, markdown: &str) -> Vec<Block> {
    code_blocks(doc, markdown, "toml")
}

/// Every code block of `markdown` fenced as `want`, with the marker on the line before it.
fn code_blocks(doc: &str, markdown: &str, want: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        let ticks = fence.len() - fence.trim_start_matches('`').len();
        let lang = fence.trim_start_matches('`').trim();
        // CommonMark: an info string never holds a backtick, so "```` ```toml ````" at the
        // start of a line is inline code, not a fence.
        if ticks >= 3 && !lang.contains('`') {
            let indent = lines[i].len() - fence.len();
            let closes = |line: &str| {
                let line = line.trim();
                line.len() >= ticks && line.chars().all(|c| c == '`')
            };
            let start = i;
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && !closes(lines[i]) {
                body.push(lines[i].get(indent..).unwrap_or(lines[i].trim_start()));
                i += 1;
            }
            if lang == want {
                let marker = start
                    .checked_sub(1)
                    .map(|j| lines[j].trim())
                    .and_then(|l| l.strip_prefix("<!-- check:"))
                    .and_then(|l| l.strip_suffix("-->"))
                    .map(|m| m.trim().to_owned());
                blocks.push(Block {
                    doc: doc.to_owned(),
                    line: start + 1,
                    marker,
                    text: body.join("\n") + "\n",
                });
            }
        }
        i += 1;
    }
    blocks
}

fn docs() -> Vec<(String, String)> {
    let dir = root().join("docs");
    let mut docs: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (name, text)
        })
        .collect();
    docs.sort();
    docs
}

/// Errors found loading `text` as a flow, rendered.
fn load_errors(name: &str, text: &str) -> Vec<String> {
    let tools = ClarionTools::new();
    let options = LoadOptions {
        builtins: Some(tools.builtins()),
        ..LoadOptions::default()
    };
    // `$ref` paths in docs are written as from a flow in `flows/`.
    let base = root().join("flows");
    let report = load_str_with(name, text, Some(&base), &options);
    report
        .diagnostics
        .iter()
        .filter(|d| d.severity() == Severity::Error)
        .map(|d| render::human(d, &report.source, false))
        .collect()
}

/// The lines of an excerpt that must be found in its file.
fn significant(line: &str) -> Option<&str> {
    let line = line.trim();
    (!line.is_empty() && !line.starts_with('#') && line != "…" && line != "...").then_some(line)
}

/// Problems with an excerpt of `path`: lines not found in order, or a file that does not load.
fn excerpt_problems(block: &Block, path: &str) -> Vec<String> {
    let file = root().join(path);
    let Ok(text) = std::fs::read_to_string(&file) else {
        return vec![format!("cannot read `{path}`")];
    };
    let mut problems = Vec::new();
    let mut rest = text.lines().map(str::trim);
    for line in block.text.lines().filter_map(significant) {
        // A comment after two spaces is the doc's own note; the code before it must match.
        let code = line
            .split_once("  #")
            .map_or(line, |(code, _)| code.trim_end());
        if !rest.any(|l| l == line || l == code) {
            problems.push(format!(
                "`{line}` is not in `{path}` (or not in this order)"
            ));
            break;
        }
    }
    let tools = ClarionTools::new();
    let report = load_file_with(
        &file,
        &LoadOptions {
            builtins: Some(tools.builtins()),
            ..LoadOptions::default()
        },
    );
    if report.error_count() > 0 {
        problems.push(format!("`{path}` itself has errors"));
    }
    problems
}

fn problems(block: &Block) -> Vec<String> {
    let name = format!("docs/{}:{}", block.doc, block.line);
    match block.marker.as_deref() {
        Some("flow") => load_errors(&name, &block.text),
        Some("fragment") => load_errors(&name, &completed(&block.text)),
        Some("none") => Vec::new(),
        Some(other) => match other.strip_prefix("excerpt ") {
            Some(path) => excerpt_problems(block, path.trim()),
            None => vec![format!("unknown marker `{other}`")],
        },
        None if EVERY_BLOCK_MARKED.contains(&block.doc.as_str()) => vec![
            "a ```toml block here needs a `<!-- check: … -->` marker on the line before it"
                .to_owned(),
        ],
        None => Vec::new(),
    }
}

#[test]
fn every_checked_toml_snippet_in_the_docs_is_valid() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (doc, text) in docs() {
        for block in toml_blocks(&doc, &text) {
            if block.marker.as_deref().is_some_and(|m| m != "none") {
                checked += 1;
            }
            for problem in problems(&block) {
                failures.push(format!("docs/{}:{}: {problem}", block.doc, block.line));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        checked >= 10,
        "only {checked} snippets are checked; are the markers still there?"
    );
}

#[test]
fn the_checker_catches_a_broken_snippet() {
    let markdown = "<!-- check: flow -->\n```toml\n[flow]\nname = \"x\"\n```\n\n\
                    <!-- check: fragment -->\n```toml\n[provider]\nstream = \"yes\"\n```\n\n\
                    <!-- check: excerpt flows/personal-finance.toml -->\n```toml\n[tools.nope]\n```\n\n\
                    ```toml\n[flow]\n```\n\n\
                    ```` ```toml ```` is inline code, not a fence\n";
    let blocks = toml_blocks("migrating-from-assistants-api.md", markdown);
    assert_eq!(blocks.len(), 4);
    for block in &blocks {
        assert!(
            !problems(block).is_empty(),
            "block at line {} should fail",
            block.line
        );
    }
    let good = "<!-- check: excerpt flows/personal-finance.toml -->\n```toml\n\
                [tools.calculate_savings_timeline]\n…\nask = \"How much do you want to save in total?\"  # asked when missing\n```\n";
    let blocks = toml_blocks("x.md", good);
    assert_eq!(problems(&blocks[0]), Vec::<String>::new());
}

/// A line of Rust as the excerpt check compares it: no `//!` or `///` doc-comment prefix
/// (examples in crate docs count), no trailing `// comment`, trimmed.
fn rust_code(line: &str) -> &str {
    let line = line.trim();
    let line = line
        .strip_prefix("//!")
        .or_else(|| line.strip_prefix("///"))
        .map_or(line, str::trim);
    line.split_once(" //")
        .map_or(line, |(code, _)| code)
        .trim_end()
}

/// Problems with a Rust block: every block needs a marker, and an excerpt's lines (comment
/// lines aside) must appear in its file in the same order — a file the compiler checks.
fn rust_problems(block: &Block) -> Vec<String> {
    let Some(marker) = block.marker.as_deref() else {
        return vec![
            "a ```rust block needs `<!-- check: excerpt FILE -->` (FILE: a compiled test or \
             crate doc that holds the same lines) or `<!-- check: none -->` on the line before it"
                .to_owned(),
        ];
    };
    if marker == "none" {
        return Vec::new();
    }
    let Some(path) = marker.strip_prefix("excerpt ").map(str::trim) else {
        return vec![format!("unknown marker `{marker}`")];
    };
    let Ok(text) = std::fs::read_to_string(root().join(path)) else {
        return vec![format!("cannot read `{path}`")];
    };
    let mut rest = text.lines().map(rust_code);
    for line in block.text.lines().map(rust_code) {
        if line.is_empty() || line.starts_with("//") || line == "…" {
            continue;
        }
        if !rest.any(|l| l == line) {
            return vec![format!(
                "`{line}` is not in `{path}` (or not in this order): change the example there, \
                 where it compiles, and copy it here"
            )];
        }
    }
    Vec::new()
}

#[test]
fn every_rust_example_in_the_docs_is_compiled_code() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (doc, text) in docs() {
        for block in code_blocks(&doc, &text, "rust") {
            checked += 1;
            for problem in rust_problems(&block) {
                failures.push(format!("docs/{}:{}: {problem}", block.doc, block.line));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 3, "only {checked} Rust blocks found");
}

#[test]
fn the_rust_checker_catches_a_stale_example() {
    let markdown = "<!-- check: excerpt crates/clarion-engine/tests/docs_examples.rs -->\n\
                    ```rust\nlet thread = engine.create_thread(Metadata::default())?;\n```\n\n\
                    ```rust\nfn unmarked() {}\n```\n";
    let blocks = code_blocks("x.md", markdown, "rust");
    assert_eq!(blocks.len(), 2);
    for block in &blocks {
        assert!(!rust_problems(block).is_empty(), "line {}", block.line);
    }
    assert_eq!(rust_code("//! let a = 1;   // note"), "let a = 1;");
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor of a markdown file (headings outside code blocks, with GitHub's `-1`, `-2`…
/// for repeats).
fn anchors(markdown: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let base = anchor(line.trim_start_matches('#').trim());
        let repeats = seen
            .iter()
            .filter(|a| **a == base || a.starts_with(&format!("{base}-")))
            .count();
        seen.push(if repeats == 0 {
            base
        } else {
            format!("{base}-{repeats}")
        });
    }
    seen
}

/// `(target, line)` of every relative link `[text](target)` outside code blocks.
fn links(markdown: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut in_code = false;
    for (number, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                found.push((target.to_owned(), number + 1));
            }
            rest = &after[end..];
        }
    }
    found
}

/// README.md and CONTRIBUTING.md (links relative to the root), then every `docs/*.md`
/// (links relative to `docs/`): `(name from the root, folder its links start from, text)`.
fn linking_docs() -> Vec<(String, PathBuf, String)> {
    let root = root();
    let mut all = Vec::new();
    for name in ["README.md", "CONTRIBUTING.md"] {
        if let Ok(text) = std::fs::read_to_string(root.join(name)) {
            all.push((name.to_owned(), root.clone(), text));
        }
    }
    for (doc, text) in docs() {
        all.push((format!("docs/{doc}"), root.join("docs"), text));
    }
    all
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut broken = Vec::new();
    for (doc, dir, text) in linking_docs() {
        for (target, line) in links(&text) {
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                root().join(&doc)
            } else {
                dir.join(path)
            };
            if !file.exists() {
                broken.push(format!(
                    "{doc}:{line}: `{target}`: no such file (links are relative to the linking \
                     file's folder)"
                ));
                continue;
            }
            if fragment.is_empty() || file.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let markdown = std::fs::read_to_string(&file).unwrap_or_default();
            if !anchors(&markdown).iter().any(|a| a == fragment) {
                broken.push(format!(
                    "{doc}:{line}: `{target}`: no heading has the anchor `#{fragment}` (GitHub's \
                     anchor: the heading in lower case, spaces as `-`, punctuation dropped)"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn anchors_follow_githubs_rules() {
    assert_eq!(anchor("`[tools.NAME.on_error]`"), "toolsnameon_error");
    assert_eq!(
        anchor("The local model: llama.cpp with `scripts/local-model.sh`"),
        "the-local-model-llamacpp-with-scriptslocal-modelsh"
    );
    assert_eq!(anchors("# A\n## A\n```\n# not\n```\n"), ["a", "a-1"]);
    assert_eq!(
        links("see [x](a.md#b) and [y](https://e.x) `[z](c.md)`"),
        [("a.md#b".to_owned(), 1), ("c.md".to_owned(), 1)]
    );
}
