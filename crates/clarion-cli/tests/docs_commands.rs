//! The commands the docs show are the CLI's, and the CLI's commands are in the docs.
//!
//! The docs are README.md, CONTRIBUTING.md and every `docs/*.md`. The CLI is the clap
//! command tree of `src/args.rs`, compiled into this test, so nothing here can drift from
//! what `clarion --help` prints.
//!
//! - Every `clarion …` line in a code block (and every `cargo run -- …` of this binary)
//!   parses with the real CLI (`try_parse_from`); the lines that only read files of this
//!   repository (`validate`, `export`, `graph`, `schema`, `completions`, scripted `test`)
//!   are also run, with `CI=true`, and must succeed.
//! - Every `` `clarion …` `` in running text names a real subcommand and real flags.
//! - Every subcommand has a row in the README's command table, and every one of its flags
//!   is named in that row or in a doc the row links to.
//!
//! Each failure names the doc and line and says how to fix it.

#[allow(
    dead_code,
    reason = "the parsed values are not read here: only the tree is"
)]
#[path = "../src/args.rs"]
mod args;

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::{CommandFactory, Parser};

use args::Cli;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `(name, text)` of README.md, CONTRIBUTING.md and every `docs/*.md`, names from the root.
fn docs() -> Vec<(String, String)> {
    let root = root();
    let mut names: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ lists")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| Path::new(name).extension().is_some_and(|e| e == "md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    names.sort();
    names.insert(0, "README.md".to_owned());
    if root.join("CONTRIBUTING.md").exists() {
        names.insert(1, "CONTRIBUTING.md".to_owned());
    }
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(root.join(&name))
                .unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
            (name, text)
        })
        .collect()
}

/// A word of a shell line, or an operator between commands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    /// `|`, `||`, `&&`, `;`: the next word starts a new command.
    Separator,
    /// `>`, `>>`, `<`, `2>`, `2>&1`…: the next word (if any) is a file, not an argument.
    Redirect {
        takes_file: bool,
    },
}

/// Splits a shell line into words (quotes removed) and operators; a `#` that starts a word
/// ends the line.
fn shell_tokens(line: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    word.push(q);
                }
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => flush(&mut word, &mut in_word, &mut tokens),
            '|' | '&' | ';' => {
                flush(&mut word, &mut in_word, &mut tokens);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                tokens.push(Token::Separator);
            }
            '>' | '<' => {
                // `2>` and `2>&1`: the digit belongs to the operator.
                if word == "1" || word == "2" {
                    word.clear();
                    in_word = false;
                }
                flush(&mut word, &mut in_word, &mut tokens);
                if chars.peek() == Some(&'>') {
                    chars.next();
                }
                let takes_file = if chars.peek() == Some(&'&') {
                    chars.next();
                    while chars.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                    }
                    false
                } else {
                    true
                };
                tokens.push(Token::Redirect { takes_file });
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut in_word, &mut tokens);
    tokens
}

/// The argument lists of `clarion` in a shell line: `clarion ARGS`, after any `NAME=value`
/// assignments, and `cargo run [--release] [--locked] -- ARGS` (this package's binary).
fn clarion_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut skip_file = false;
    let mut finish = |current: &mut Vec<String>| {
        let words = std::mem::take(current);
        let start = words
            .iter()
            .position(|w| !is_assignment(w))
            .unwrap_or(words.len());
        let words = &words[start..];
        match words.first().map(String::as_str) {
            Some("clarion") => commands.push(words.to_vec()),
            Some("cargo") if words.get(1).is_some_and(|w| w == "run") => {
                let (flags, rest) = words[2..]
                    .iter()
                    .position(|w| w == "--")
                    .map_or((&words[2..], &[][..]), |i| {
                        (&words[2..2 + i], &words[3 + i..])
                    });
                let own_binary = flags
                    .iter()
                    .all(|f| matches!(f.as_str(), "--release" | "--locked" | "-q" | "--quiet"));
                if own_binary {
                    let mut args = vec!["clarion".to_owned()];
                    args.extend(rest.iter().cloned());
                    commands.push(args);
                }
            }
            _ => {}
        }
    };
    for token in shell_tokens(line) {
        match token {
            Token::Word(_) if skip_file => skip_file = false,
            Token::Word(word) => current.push(word),
            Token::Separator => {
                skip_file = false;
                finish(&mut current);
            }
            Token::Redirect { takes_file } => skip_file = takes_file,
        }
    }
    finish(&mut current);
    commands
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// A shell line in a code block: `(doc, line number, text)`, continuation lines joined.
struct ShellLine {
    doc: String,
    line: usize,
    text: String,
}

/// Lines of code blocks that are shell (`sh`, `bash`, `console`, `text`, or unmarked), with
/// a `$ ` prompt removed. `text` blocks count only for prompted lines: the rest is output.
fn shell_lines(doc: &str, markdown: &str) -> Vec<ShellLine> {
    let mut found = Vec::new();
    let mut fence: Option<(usize, String)> = None;
    let mut pending: Option<ShellLine> = None;
    for (index, raw) in markdown.lines().enumerate() {
        let trimmed = raw.trim_start();
        let ticks = trimmed.len() - trimmed.trim_start_matches('`').len();
        if ticks >= 3 {
            let info = trimmed.trim_start_matches('`').trim();
            match &fence {
                Some((open, _)) if ticks >= *open && info.is_empty() => fence = None,
                None if !info.contains('`') => fence = Some((ticks, info.to_owned())),
                _ => {}
            }
            continue;
        }
        let Some((_, lang)) = &fence else { continue };
        let (prompted, body) = match trimmed.strip_prefix("$ ") {
            Some(body) => (true, body),
            None => (false, trimmed),
        };
        let shell = matches!(lang.as_str(), "sh" | "bash" | "shell" | "console" | "");
        if !(shell || prompted && lang == "text") {
            continue;
        }
        let text = match pending.take() {
            Some(mut line) => {
                line.text.push(' ');
                line.text.push_str(body);
                line
            }
            None => ShellLine {
                doc: doc.to_owned(),
                line: index + 1,
                text: body.to_owned(),
            },
        };
        if let Some(stripped) = text.text.strip_suffix('\\') {
            pending = Some(ShellLine {
                text: stripped.to_owned(),
                ..text
            });
        } else {
            found.push(text);
        }
    }
    found
}

/// `(line, span)` of every inline code span of running text that starts with `clarion `.
fn inline_commands(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_code = false;
    for (index, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut parts = line.split('`');
        // Odd parts are inside backticks (a line's spans never cross lines in these docs).
        parts.next();
        while let Some(span) = parts.next() {
            if span.starts_with("clarion ") {
                found.push((index + 1, span.to_owned()));
            }
            parts.next();
        }
    }
    found
}

/// Why `words` (a synopsis, placeholders allowed) names no real command or flag, if so.
fn synopsis_problem(words: &[String]) -> Option<String> {
    let cli = Cli::command();
    let mut words = words
        .iter()
        .skip(1)
        .map(|w| w.trim_start_matches('[').trim_end_matches([']', '…']));
    let first = words.next()?;
    if first == "…" || first.is_empty() {
        return None;
    }
    if first.starts_with('-') {
        return (!has_flag(&cli, first)).then(|| format!("`clarion` has no flag `{first}`"));
    }
    let Some(sub) = cli.find_subcommand(first) else {
        return Some(format!("`clarion` has no subcommand `{first}`"));
    };
    let mut scopes = vec![sub.clone()];
    let rest: Vec<&str> = words.collect();
    if sub.has_subcommands()
        && let Some(next) = rest.first()
    {
        for alternative in next.split('|') {
            match sub.find_subcommand(alternative) {
                Some(nested) => scopes.push(nested.clone()),
                None if alternative.chars().all(|c| c.is_ascii_lowercase()) => {
                    return Some(format!(
                        "`clarion {first}` has no subcommand `{alternative}`"
                    ));
                }
                None => {}
            }
        }
    }
    for word in rest {
        if word == "|" {
            break;
        }
        if word.starts_with('-') && word.len() > 1 && !scopes.iter().any(|s| has_flag(s, word)) {
            return Some(format!("`clarion {first}` has no flag `{word}`"));
        }
    }
    None
}

/// Whether `words` is a synopsis (`clarion test [PATHS…]`) rather than a command to type.
fn is_synopsis(words: &[String]) -> bool {
    words.iter().any(|w| w.starts_with('[') || w.ends_with('…'))
}

/// Whether `command` takes `flag` (`--long`, `--long=value` or `-s`).
fn has_flag(command: &clap::Command, flag: &str) -> bool {
    let flag = flag.split_once('=').map_or(flag, |(name, _)| name);
    if matches!(flag, "--help" | "-h") || flag == "--version" || flag == "-V" {
        return true;
    }
    command.get_arguments().any(|arg| {
        if let Some(long) = flag.strip_prefix("--") {
            arg.get_long() == Some(long)
        } else {
            let short = flag.trim_start_matches('-');
            short.chars().count() == 1 && arg.get_short() == short.chars().next()
        }
    })
}

/// Subcommands that read only files of this repository and write only to stdout.
const RUN_OFFLINE: &[&str] = &[
    "validate",
    "export",
    "graph",
    "schema",
    "completions",
    "test",
];

/// Flags that need a model, a recording or a person, or write files: a line with one is
/// parsed, not run.
const NOT_OFFLINE: &[&str] = &[
    "--live",
    "--record",
    "--replay",
    "--review",
    "--accept",
    "--junit",
    "--coverage-format",
    "--coverage-output",
];

#[test]
fn every_command_line_in_the_docs_parses() {
    let mut problems = Vec::new();
    let mut parsed = 0;
    for (doc, text) in docs() {
        for line in shell_lines(&doc, &text) {
            for words in clarion_commands(&line.text) {
                if is_synopsis(&words) {
                    if let Some(problem) = synopsis_problem(&words) {
                        problems.push(format!("{}:{}: {problem}", line.doc, line.line));
                    }
                    continue;
                }
                parsed += 1;
                match Cli::try_parse_from(&words) {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            clap::error::ErrorKind::DisplayHelp
                                | clap::error::ErrorKind::DisplayVersion
                        ) => {}
                    Err(e) => problems.push(format!(
                        "{}:{}: `{}` does not parse: {}",
                        line.doc,
                        line.line,
                        words.join(" "),
                        e.render().to_string().lines().next().unwrap_or_default()
                    )),
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "command lines in the docs that the CLI refuses (fix the doc, or the CLI if the doc \
         is right):\n{}",
        problems.join("\n")
    );
    assert!(
        parsed >= 15,
        "only {parsed} command lines found: is the scanner broken?"
    );
}

/// `--help` is documentation too: every example in a command's help parses.
#[test]
fn every_example_in_the_help_parses() {
    let cli = Cli::command();
    let mut commands = vec![cli.clone()];
    for sub in cli.get_subcommands() {
        commands.push(sub.clone());
        commands.extend(sub.get_subcommands().cloned());
    }
    let mut problems = Vec::new();
    let mut parsed = 0;
    for command in &commands {
        let Some(help) = command.get_after_help() else {
            continue;
        };
        for line in help.to_string().lines() {
            for words in clarion_commands(line.trim()) {
                if is_synopsis(&words) {
                    continue;
                }
                parsed += 1;
                if let Err(e) = Cli::try_parse_from(&words) {
                    problems.push(format!(
                        "src/args.rs, the help of `{}`: `{}` does not parse: {}",
                        command.get_name(),
                        words.join(" "),
                        e.render().to_string().lines().next().unwrap_or_default()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(parsed >= 20, "only {parsed} help examples found");
}

#[test]
fn every_inline_clarion_command_names_real_commands_and_flags() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (doc, text) in docs() {
        for (line, span) in inline_commands(&text) {
            checked += 1;
            let span = span.replace("\\|", "|");
            let words: Vec<String> = span.split_whitespace().map(ToOwned::to_owned).collect();
            if let Some(problem) = synopsis_problem(&words) {
                problems.push(format!("{doc}:{line}: `{span}`: {problem}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "commands in the docs' text that `clarion --help` does not have (fix the doc, or \
         the CLI if the doc is right):\n{}",
        problems.join("\n")
    );
    assert!(
        checked >= 30,
        "only {checked} inline commands found: is the scanner broken?"
    );
}

#[test]
fn offline_command_lines_in_the_docs_run() {
    let root = root();
    let mut problems = Vec::new();
    let mut ran = 0;
    for (doc, text) in docs() {
        for line in shell_lines(&doc, &text) {
            for words in clarion_commands(&line.text) {
                let Some(sub) = words.get(1) else { continue };
                if is_synopsis(&words)
                    || !RUN_OFFLINE.contains(&sub.as_str())
                    || words.iter().any(|w| NOT_OFFLINE.contains(&w.as_str()))
                    || Cli::try_parse_from(&words).is_err()
                {
                    continue;
                }
                // A line about a file of the reader's (`savings.toml`) is not runnable here.
                let files_exist = words[2..]
                    .iter()
                    .filter(|w| {
                        !w.starts_with('-')
                            && (w.contains('/')
                                || Path::new(w).extension().is_some_and(|e| e == "toml"))
                    })
                    .all(|w| root.join(w).exists());
                if !files_exist {
                    continue;
                }
                ran += 1;
                let output = Process::new(env!("CARGO_BIN_EXE_clarion"))
                    .args(&words[1..])
                    .current_dir(&root)
                    .env("NO_COLOR", "1")
                    // `clarion test` never writes a snapshot under CI.
                    .env("CI", "true")
                    .output()
                    .expect("clarion runs");
                if !output.status.success() {
                    problems.push(format!(
                        "{}:{}: `{}` exits {}:\n{}",
                        line.doc,
                        line.line,
                        words.join(" "),
                        output.status,
                        String::from_utf8_lossy(&output.stderr)
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "command lines in the docs that fail when run from the repository root:\n{}",
        problems.join("\n")
    );
    assert!(
        ran >= 3,
        "only {ran} offline command lines ran: is the scanner broken?"
    );
}

/// The README's command table: `(line, first cell, whole row)` per row.
fn readme_command_rows(readme: &str) -> Vec<(usize, String, String)> {
    let mut rows = Vec::new();
    let mut in_section = false;
    for (index, line) in readme.lines().enumerate() {
        if line.starts_with("## ") {
            in_section = line == "## Commands";
            continue;
        }
        if in_section && line.starts_with("| `clarion ") {
            let first = line.split(" | ").next().unwrap_or_default();
            rows.push((index + 1, first.to_owned(), line.to_owned()));
        }
    }
    rows
}

/// The docs a table row links to (`[text](docs/NAME.md#…)`), read.
fn linked_docs(row: &str) -> Vec<String> {
    row.split("](")
        .skip(1)
        .filter_map(|rest| rest.split([')', '#']).next())
        .filter(|target| Path::new(target).extension().is_some_and(|e| e == "md"))
        .filter_map(|target| std::fs::read_to_string(root().join(target)).ok())
        .collect()
}

/// Whether `text` holds `flag` as a whole flag (`--limit`, not the start of `--limits`).
fn mentions(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(at, _)| {
        !text[at + flag.len()..]
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn every_command_and_flag_is_in_the_readme_command_table() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md reads");
    let rows = readme_command_rows(&readme);
    let section = readme
        .lines()
        .position(|l| l == "## Commands")
        .map_or(0, |i| i + 1);
    let mut problems = Vec::new();
    let cli = Cli::command();
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = sub.get_name();
        let Some((line, _, row)) = rows.iter().find(|(_, first, _)| {
            first
                .strip_prefix(&format!("| `clarion {name}"))
                .is_some_and(|rest| rest.starts_with([' ', '`']))
        }) else {
            problems.push(format!(
                "README.md:{section}: `clarion {name}` has no row in the command table; add \
                 one, its first cell starting with `clarion {name}` in backticks"
            ));
            continue;
        };
        let mut text = row.clone();
        for doc in linked_docs(row) {
            text.push_str(&doc);
        }
        let mut commands = vec![sub.clone()];
        commands.extend(sub.get_subcommands().cloned());
        for command in &commands {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if long == "help" || long == "version" {
                    continue;
                }
                let short = arg.get_short().map(|s| format!("-{s} "));
                let named = mentions(&text, &format!("--{long}"))
                    || short.is_some_and(|s| text.contains(&format!("`{s}")));
                if !named {
                    problems.push(format!(
                        "README.md:{line}: `--{long}` of `clarion {name}` is in neither this \
                         row nor a doc it links to; name it in the row (or in the linked doc)"
                    ));
                }
            }
        }
    }
    for (line, first, _) in &rows {
        let name = first
            .trim_start_matches("| `clarion ")
            .split([' ', '`'])
            .next()
            .unwrap_or_default();
        if cli.find_subcommand(name).is_none() {
            problems.push(format!(
                "README.md:{line}: the command table lists `clarion {name}`, which `clarion \
                 --help` does not have; remove the row or add the command"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanners_find_what_they_should() {
    let words = |line: &str| clarion_commands(line);
    assert_eq!(
        words("OPENAI_API_KEY=… clarion test --live -k x   # a note"),
        [["clarion", "test", "--live", "-k", "x"]]
    );
    assert_eq!(
        words("echo 'a | b' | clarion chat f.toml 2>&1 > out.txt && clarion schema > s.json"),
        [vec!["clarion", "chat", "f.toml"], vec!["clarion", "schema"]]
    );
    assert_eq!(
        words("cargo run --release -- validate flows/"),
        [["clarion", "validate", "flows/"]]
    );
    assert!(
        words("cargo run --release -p clarion-engine --example bench -- --threads 2").is_empty()
    );
    let lines = shell_lines(
        "x.md",
        "```sh\nclarion a \\\n  --b\n```\n```text\n$ clarion c\nclarion d\n```\n```toml\nclarion = 1\n```\n",
    );
    let texts: Vec<_> = lines.iter().map(|l| (l.line, l.text.as_str())).collect();
    assert_eq!(texts, [(2, "clarion a  --b"), (6, "clarion c")]);
    assert_eq!(
        inline_commands("run `clarion test --review` or `cargo test`, `clarion chat`"),
        [
            (1, "clarion test --review".to_owned()),
            (1, "clarion chat".to_owned())
        ]
    );
    let synopsis = |s: &str| {
        synopsis_problem(
            &s.split_whitespace()
                .map(ToOwned::to_owned)
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(synopsis("clarion threads list|show ID|delete ID"), None);
    assert_eq!(
        synopsis("clarion test [PATHS…] [-k NAME]… [--accept | --review]"),
        None
    );
    assert!(synopsis("clarion run FLOW").is_some());
    assert!(synopsis("clarion test --no-such-flag").is_some());
    assert!(synopsis("clarion threads purge").is_some());
    assert!(mentions("`--limit N`", "--limit"));
    assert!(!mentions("`--limits N`", "--limit"));
}
