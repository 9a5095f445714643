//! What every subcommand shares: an `Examples:` section in its help, a place in the shell
//! completions, and the exit codes documented in README.md (0 success, 1 problems found,
//! 2 usage or configuration error), pinned here command by command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `clarion` in the workspace with no input, CI set (nothing is ever written by
/// `clarion test`) and no provider in the environment.
fn clarion(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clarion"))
        .args(args)
        .current_dir(workspace())
        .env("CI", "true")
        .env_remove("INSTA_UPDATE")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The subcommands a help text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(ToOwned::to_owned)
        .collect()
}

/// Every command path: `["validate"]`, …, `["threads", "list"]`, ….
fn command_paths() -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for name in subcommands(&stdout(&clarion(&["--help"]))) {
        let nested = subcommands(&stdout(&clarion(&[&name, "--help"])));
        paths.push(vec![name.clone()]);
        for sub in nested {
            paths.push(vec![name.clone(), sub]);
        }
    }
    paths
}

#[test]
fn the_command_list_is_what_we_think_it_is() {
    let names: Vec<String> = command_paths().iter().map(|p| p.join(" ")).collect();
    for expected in [
        "validate",
        "schema",
        "export",
        "test",
        "eval",
        "chat",
        "threads",
        "threads list",
        "threads show",
        "threads delete",
        "threads export",
        "graph",
        "completions",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

#[test]
fn every_command_has_examples_in_its_help() {
    let top = clarion(&["--help"]);
    assert_eq!(top.status.code(), Some(0));
    assert!(stdout(&top).contains("Examples:"), "{}", stdout(&top));
    for path in command_paths() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = clarion(&args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let help = stdout(&output);
        let Some((_, examples)) = help.split_once("Examples:\n") else {
            panic!("`clarion {}` has no Examples: {help}", path.join(" "));
        };
        let command = format!("  clarion {}", path.join(" "));
        assert!(
            examples.contains(&command),
            "an example runs `{command}`: {help}"
        );
    }
}

#[test]
fn completions_for_every_shell_and_bash_knows_every_command() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let output = clarion(&["completions", shell]);
        assert_eq!(output.status.code(), Some(0), "{shell}");
        assert!(stdout(&output).contains("clarion"), "{shell}");
    }
    let bash = stdout(&clarion(&["completions", "bash"]));
    for path in command_paths() {
        // clap_complete names each command's completion case after its path.
        let case = format!("clarion__subcmd__{}", path.join("__subcmd__"));
        assert!(
            bash.contains(&format!("{case})")),
            "bash completes `clarion {}`",
            path.join(" ")
        );
    }
    // And bash itself completes with it.
    let script = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(script.path(), &bash).unwrap_or_else(|e| panic!("{e}"));
    let completed = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(clarion thr); COMP_CWORD=1; _clarion clarion thr clarion; \
             echo \"${{COMPREPLY[@]}}\"; COMP_WORDS=(clarion threads ''); COMP_CWORD=2; \
             _clarion clarion '' threads; echo \"${{COMPREPLY[@]}}\"",
            script.path().display()
        ))
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
    let completed = stdout(&completed);
    let mut lines = completed.lines();
    assert_eq!(lines.next(), Some("threads"), "{completed}");
    let words: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    for verb in ["list", "show", "delete", "export", "--store"] {
        assert!(words.contains(&verb), "{verb} in {completed}");
    }
    for flag in ["--store", "--format", "--deny-warnings", "--thread"] {
        assert!(bash.contains(flag), "bash completes {flag}");
    }
    let unknown = clarion(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
}

const BROKEN: &str = "[flow]\nname = \"typo\"\ndescripton = \"x\"\n[assistant]\nmodel = \"m\"\ninstructions = \"Hi\"\n";

const NEW_SCENARIO: &str = "[[turns]]\nuser = \"Hi\"\n[[turns.model]]\ntext = \"Hello.\"\n";

#[test]
fn exit_codes_are_pinned_for_every_command() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, BROKEN).unwrap_or_else(|e| panic!("{e}"));
    let broken = broken.display().to_string();
    // A project whose one scenario has no snapshot yet: under CI it fails.
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("flows/pf/scenarios")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        workspace().join("flows/personal-finance.toml"),
        project.join("flows/pf.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(project.join("flows/pf/scenarios/new.toml"), NEW_SCENARIO)
        .unwrap_or_else(|e| panic!("{e}"));
    let unsnapshotted = project.join("flows").display().to_string();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap_or_else(|e| panic!("{e}"));
    let empty = empty.display().to_string();
    let no_store = dir.path().join("none.db").display().to_string();
    let store = dir.path().join("threads.db");
    drop(clarion_store::SqliteStore::open(&store).unwrap_or_else(|e| panic!("{e}")));
    let store = store.display().to_string();
    let pf = "flows/personal-finance.toml";

    let cases: &[(&[&str], i32)] = &[
        (&["--help"], 0),
        (&["--version"], 0),
        (&["frobnicate"], 2),
        (&[], 2),
        // validate
        (&["validate", "flows/"], 0),
        (&["validate", &broken], 1),
        (&["validate", "flows/nope.toml"], 2),
        (&["validate"], 2),
        // schema
        (&["schema"], 0),
        // export
        (&["export", pf, "--format", "responses"], 0),
        (&["export", &broken, "--format", "responses"], 1),
        (&["export", "nope.toml", "--format", "responses"], 2),
        (
            &["export", pf, "--format", "responses", "--slot", "nope=1"],
            2,
        ),
        // test
        (&["test", "flows/personal-finance"], 0),
        (&["test", &unsnapshotted], 1),
        (&["test", &empty], 2),
        // eval (0 and 1 against a loopback model are in eval.rs)
        (&["eval", &empty], 2),
        (&["eval", "--compare", "nope.json", "nope.json"], 2),
        (&["eval", "--samples", "0"], 2),
        // chat (a conversation itself is covered in chat.rs)
        (&["chat", &broken, "--store", &no_store], 1),
        (&["chat", "nope.toml"], 2),
        // threads
        (&["threads", "list", "--store", &store], 0),
        (&["threads", "list", "--store", &no_store], 2),
        (&["threads", "show", "thread_nope", "--store", &store], 2),
        (&["threads", "delete", "thread_nope", "--store", &store], 2),
        (&["threads", "export", "thread_nope", "--store", &store], 2),
        (&["threads"], 2),
        // graph
        (&["graph", pf], 0),
        (&["graph", pf, "--format", "dot"], 0),
        (&["graph", &broken], 1),
        (&["graph", "nope.toml"], 2),
        // completions
        (&["completions", "zsh"], 0),
        (&["completions"], 2),
    ];
    for (args, code) in cases {
        let output = clarion(args);
        assert_eq!(
            output.status.code(),
            Some(*code),
            "clarion {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(
        !Path::new(&no_store).exists(),
        "no command created the missing store"
    );
    // A flow with errors: its diagnostics, then one line naming what could not be done.
    for (args, verb) in [
        (&["chat", &broken, "--store", &no_store][..], "chat with"),
        (&["export", &broken, "--format", "responses"][..], "export"),
        (&["graph", &broken][..], "draw"),
    ] {
        let stderr = String::from_utf8_lossy(&clarion(args).stderr).into_owned();
        let last = stderr.lines().last().unwrap_or_default().to_owned();
        assert!(
            last.starts_with(&format!("error: cannot {verb} {broken}: it has "))
                && last.ends_with("error(s); fix them first (clarion validate)"),
            "{stderr}"
        );
        assert!(
            stderr.contains("error["),
            "the diagnostics come first: {stderr}"
        );
    }
}

#[test]
fn the_exit_codes_are_documented() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap_or_default();
    for row in [
        "| `0` | success",
        "| `1` | problems found",
        "| `2` | usage or configuration error",
    ] {
        assert!(readme.contains(row), "README.md documents {row}");
    }
}

#[test]
fn export_renders_the_instructions_with_metadata() {
    let output = clarion(&[
        "export",
        "flows/travel-booking.toml",
        "--format",
        "chat-completions",
        "--metadata",
        "today=2026-12-03",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("Today is 2026-12-03."), "{out}");
}
