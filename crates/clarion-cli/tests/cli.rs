//! The `clarion` binary end to end: real processes, real files, exit codes CI relies on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn clarion(args: &[&str]) -> Output {
    clarion_env(args, &[])
}

fn clarion_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clarion"));
    command.args(args).current_dir(workspace());
    // Colour must depend on the terminal only; the test's environment must not leak in.
    command.env_remove("CLICOLOR_FORCE").env_remove("NO_COLOR");
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run clarion: {e}"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn flow_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

const MINIMAL: &str = "[flow]\nname = \"hello\"\n[assistant]\nmodel = \"m\"\ninstructions = \"Hi {% if slots.name %}{{ slots.name }}{% endif %}\"\n[slots.name]\ntype = \"string\"\ndescription = \"The user's name.\"\n";

const TYPO: &str = "[flow]\nname = \"typo\"\ndescripton = \"x\"\n[assistant]\nmodel = \"m\"\ninstructions = \"Hi\"\n";

const WARNING_ONLY: &str = "[flow]\nname = \"w\"\n[assistant]\nmodel = \"m\"\ninstructions = \"Hi\"\n[slots.unused]\ntype = \"string\"\n";

#[test]
fn validate_example_flows_succeeds() {
    let output = clarion(&["validate", "flows/"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("checked: no problems"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn validate_dot_in_this_repository_checks_the_example_flows_only() {
    // Cargo.toml files, scenarios, evaluation sets and test fixtures are TOML too.
    let output = clarion(&["validate", "."]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(
        stdout(&output).lines().last(),
        Some("6 flow files checked: no problems")
    );
}

#[test]
fn a_walked_toml_file_is_a_flow_only_when_it_says_so() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.path().join("sub/.hidden")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.path().join("built")).unwrap_or_else(|e| panic!("{e}"));
    flow_file(&dir, "Cargo.toml", "[package]\nname = \"x\"\n");
    flow_file(&dir, "sub/plain.toml", TYPO);
    flow_file(
        &dir,
        "sub/schema_line.toml",
        "#:schema ../schemas/flow.schema.json\n[assistant]\nmodel = \"m\"\n",
    );
    flow_file(&dir, "sub/.hidden/secret.toml", TYPO);
    flow_file(&dir, "built/copy.toml", TYPO);
    flow_file(&dir, ".gitignore", "built/\n");
    let output = clarion(&["validate", &dir.path().display().to_string()]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(
        text.ends_with("2 flow files checked: 3 errors, 0 warnings (2 files failing)\n"),
        "{text}"
    );
    assert!(
        text.contains("plain.toml") && text.contains("schema_line.toml"),
        "{text}"
    );
    assert!(
        !text.contains("Cargo.toml") && !text.contains("secret") && !text.contains("copy"),
        "{text}"
    );
    // Named explicitly, any file is checked as a flow.
    let cargo = dir.path().join("Cargo.toml").display().to_string();
    let output = clarion(&["validate", &cargo]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("unknown key `package`"),
        "{}",
        stdout(&output)
    );
    // A folder with no flow says what a flow file is.
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    flow_file(&empty, "Cargo.toml", "[package]\n");
    let output = clarion(&["validate", &empty.path().display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("(a flow file is a `*.toml` file with a `[flow]` table)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn validate_reports_code_frame_and_exits_1() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = flow_file(&dir, "typo.toml", TYPO);
    let output = clarion(&["validate", &path]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("error[E004]: unknown key `descripton` in [flow]"),
        "{text}"
    );
    assert!(text.contains(&format!("{path}:3:1")), "{text}");
    assert!(text.contains("^^^^^^^^^^ unknown key"), "{text}");
    assert!(text.contains("help: did you mean `description`?"), "{text}");
    assert!(
        text.contains("1 flow file checked: 1 error, 0 warnings (1 file failing)"),
        "{text}"
    );
}

#[test]
fn validate_json_is_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = flow_file(&dir, "typo.toml", TYPO);
    let output = clarion(&["validate", "--format", "json", &path]);
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 1);
    let d = &lines[0];
    assert_eq!(d["code"], "E004");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 3);
    assert_eq!(d["column"], 1);
    assert_eq!(d["end_column"], 11);
    assert_eq!(d["file"], path);
    assert_eq!(d["help"], "did you mean `description`?");
}

#[test]
fn warnings_pass_unless_denied() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = flow_file(&dir, "w.toml", WARNING_ONLY);
    let output = clarion(&["validate", &path]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("warning[W002]"));
    let denied = clarion(&["validate", "--deny-warnings", &path]);
    assert_eq!(denied.status.code(), Some(1));
}

#[test]
fn every_file_in_a_directory_is_checked_in_one_pass() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    flow_file(&dir, "a.toml", TYPO);
    flow_file(&dir, "b.toml", MINIMAL);
    flow_file(&dir, "c.toml", TYPO);
    let output = clarion(&["validate", &dir.path().display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert_eq!(text.matches("error[E004]").count(), 2, "{text}");
    assert!(
        text.contains("3 flow files checked: 2 errors, 0 warnings (2 files failing)"),
        "{text}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let missing = clarion(&["validate", "no/such/flow.toml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("error: no such file or directory: no/such/flow.toml"));
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let output = clarion(&["validate", &empty.path().display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no flow files"));
    assert_eq!(clarion(&["validate"]).status.code(), Some(2));
    assert_eq!(clarion(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn colour_only_when_forced_or_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = flow_file(&dir, "typo.toml", TYPO);
    let plain = clarion(&["validate", &path]);
    assert!(
        !stdout(&plain).contains('\u{1b}'),
        "piped output must not be coloured"
    );
    let forced = clarion_env(&["validate", &path], &[("CLICOLOR_FORCE", "1")]);
    assert!(
        stdout(&forced).contains('\u{1b}'),
        "CLICOLOR_FORCE=1 must colour"
    );
}

#[test]
fn schema_prints_the_checked_in_schema() {
    let output = clarion(&["schema"]);
    assert_eq!(output.status.code(), Some(0));
    let checked_in =
        std::fs::read_to_string(workspace().join("schemas/flow.schema.json")).unwrap_or_default();
    assert_eq!(stdout(&output), checked_in);
    let schema: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap_or_default();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
}

#[test]
fn export_in_every_format() {
    for (format, tools_at) in [
        ("chat-completions", "/tools/0/function/name"),
        ("responses", "/tools/0/name"),
        ("assistants", "/tools/0/function/name"),
    ] {
        let output = clarion(&["export", "flows/personal-finance.toml", "--format", format]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{format}: {}",
            stderr(&output)
        );
        let body: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap_or_default();
        assert_eq!(
            body.pointer(tools_at),
            Some(&serde_json::json!("calculate_savings_timeline")),
            "{format}"
        );
    }
}

#[test]
fn export_renders_instructions_with_given_slots() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = flow_file(&dir, "hello.toml", MINIMAL);
    let output = clarion(&[
        "export",
        &path,
        "--format",
        "responses",
        "--slot",
        "name=Nina",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let body: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap_or_default();
    assert_eq!(body["instructions"], "Hi Nina");
    assert_eq!(body["store"], false);
    let unknown = clarion(&["export", &path, "--format", "responses", "--slot", "nope=1"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("declares no slot `nope`"));
    let malformed = clarion(&["export", &path, "--format", "responses", "--slot", "name"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(stderr(&malformed).contains("expected NAME=VALUE"));
}

#[test]
fn export_of_an_invalid_flow_shows_why_and_exits_1() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = flow_file(&dir, "typo.toml", TYPO);
    let output = clarion(&["export", &path, "--format", "chat-completions"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty(), "nothing half-written on stdout");
    assert!(stderr(&output).contains("error[E004]"));
    let missing = clarion(&["export", "nope.toml", "--format", "chat-completions"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn help_has_an_example_for_every_command() {
    for command in ["validate", "schema", "export"] {
        let output = clarion(&[command, "--help"]);
        assert_eq!(output.status.code(), Some(0));
        assert!(
            stdout(&output).contains(&format!("clarion {command}")),
            "{command} --help lacks an example"
        );
    }
    let version = clarion(&["--version"]);
    assert!(stdout(&version).starts_with("clarion "));
}

#[test]
fn validate_and_export_check_builtins_against_the_shipped_ones() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text = "[flow]\nname = \"loan\"\n[assistant]\nmodel = \"m\"\ninstructions = \"Hi\"\n[tools.pay]\ndescription = \"Loan payment.\"\nbuiltin = \"finance.loan_paymnt\"\n";
    let path = flow_file(&dir, "loan.toml", text);
    let output = clarion(&["validate", &path]);
    assert_eq!(output.status.code(), Some(1));
    let shown = stdout(&output);
    assert!(
        shown.contains("error[E021]: unknown built-in `finance.loan_paymnt`"),
        "{shown}"
    );
    assert!(
        shown.contains("help: did you mean `finance.loan_payment`?"),
        "{shown}"
    );
    let export = clarion(&["export", &path, "--format", "chat-completions"]);
    assert_eq!(export.status.code(), Some(1));
    assert!(stderr(&export).contains("error[E021]"));
}
