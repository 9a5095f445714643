//! `clarion demo`: a real conversation in one command, with no flow file, account or key.
//!
//! The example flow (`flows/personal-finance.toml`) is built into the binary. The model is
//! the one the environment names (`OPENAI_BASE_URL` / `OPENAI_API_KEY`, and `OPENAI_MODEL`
//! if set) or, when it names none, a small local model served by llama.cpp on loopback:
//! `scripts/local-model.sh` — also built in, and written to the cache beside the model, so
//! no checkout is needed — installs it (the first time: a build and a 1.1 GB download, with
//! its progress shown) and starts it (later runs: seconds). The server is left running for
//! the next demo; the line printed before the conversation says how to stop it.
//!
//! It is a command of its own rather than `clarion chat` without a FLOW: setting up a
//! model server is not something a mistyped `chat` should start, and `chat`'s missing-flow
//! error stays what it is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::args::{ChatArgs, DemoArgs};
use crate::commands::chat::{self, FlowSource};
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;

const FLOW: &str = include_str!("../../../../flows/personal-finance.toml");
const SCRIPT: &str = include_str!("../../../../scripts/local-model.sh");
const TEMPLATE: &str = include_str!("../../../../scripts/templates/qwen2.5-tools.jinja");
/// The name `scripts/local-model.sh` serves its model under.
pub(crate) const LOCAL_MODEL: &str = "qwen2.5-coder-1.5b-instruct";
/// What to do instead when the local model cannot be had.
const INSTEAD: &str = "or set OPENAI_BASE_URL (and OPENAI_API_KEY) to use a provider instead";

pub(crate) fn run(args: &DemoArgs) -> Result<Exit, CliError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (base_url, model) = if env("OPENAI_BASE_URL").is_some() || env("OPENAI_API_KEY").is_some() {
        (None, args.model.clone().or_else(|| env("OPENAI_MODEL")))
    } else {
        let script = script()?;
        let base_url = local_model(&script)?;
        note(&format!(
            "the local model keeps running for the next demo; stop it with: bash {} stop",
            script.display()
        ));
        (
            Some(base_url),
            Some(args.model.clone().unwrap_or_else(|| LOCAL_MODEL.to_owned())),
        )
    };
    let chat = ChatArgs {
        flow: PathBuf::from("personal-finance.toml"),
        thread: args.thread.clone(),
        store: args.store.clone(),
        base_url,
        api: None,
        model,
        no_stream: false,
        verbose: args.verbose,
    };
    chat::run_flow(
        &chat,
        &FlowSource::Embedded {
            name: "personal-finance.toml (built in)",
            text: FLOW,
        },
    )
}

/// The local-model script: `CLARION_LOCAL_MODEL_SCRIPT`, or the built-in one written to
/// the cache.
pub(crate) fn script() -> Result<PathBuf, CliError> {
    if let Some(path) = std::env::var_os("CLARION_LOCAL_MODEL_SCRIPT") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(CliError::Provider(format!(
                "CLARION_LOCAL_MODEL_SCRIPT names {}, which is not a file; unset it to use the built-in script",
                path.display()
            )));
        }
        return Ok(path);
    }
    let root = std::env::var_os("CLARION_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/clarion")))
        .ok_or_else(|| {
            CliError::Provider(format!(
                "neither CLARION_CACHE nor HOME is set, so the local model has no cache; set one, {INSTEAD}"
            ))
        })?;
    write_script(&root.join("scripts")).map_err(|e| {
        CliError::Provider(format!(
            "cannot write the local-model script under {}: {e}; set CLARION_CACHE to a writable folder, {INSTEAD}",
            root.display()
        ))
    })
}

/// Writes the built-in script and its chat template into `dir` (when they differ).
fn write_script(dir: &Path) -> std::io::Result<PathBuf> {
    let script = dir.join("local-model.sh");
    let template = dir.join("templates/qwen2.5-tools.jinja");
    for (path, text) in [(&script, SCRIPT), (&template, TEMPLATE)] {
        if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
    }
    Ok(script)
}

/// Installs (or finds) and starts the local model; its base URL.
pub(crate) fn local_model(script: &Path) -> Result<String, CliError> {
    note(&format!(
        "no provider configured (OPENAI_BASE_URL / OPENAI_API_KEY): using a local model, {LOCAL_MODEL} on llama.cpp"
    ));
    note(
        "the first run builds llama.cpp and fetches the model (1.1 GB; 10 to 30 minutes); later runs start in seconds",
    );
    step(script, "install", "installed")?;
    let started = step(script, "start", "started")?;
    started
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with("http"))
        .map(ToOwned::to_owned)
        .ok_or_else(|| {
            CliError::Provider(format!(
                "the local model started but `{} start` printed no URL; {INSTEAD}",
                script.display()
            ))
        })
}

/// Runs `bash SCRIPT STEP`, its progress on stderr; its stdout.
fn step(script: &Path, step: &str, done: &str) -> Result<String, CliError> {
    let output = Command::new("bash")
        .arg(script)
        .arg(step)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            CliError::Provider(format!(
                "cannot run bash for the local model: {e}; install bash, {INSTEAD}"
            ))
        })?;
    if !output.status.success() {
        let how = output
            .status
            .code()
            .map_or_else(|| "was killed".to_owned(), |code| format!("exited {code}"));
        return Err(CliError::Provider(format!(
            "the local model could not be {done}: `bash {} {step}` {how} (its log is above); fix that and run the command again, {INSTEAD}",
            script.display()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn note(text: &str) {
    let style = anstyle::Style::new().dimmed();
    output::err(&format!("{style}{text}{style:#}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_script_is_written_whole_beside_its_template() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let script = write_script(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&script), read(&repo.join("local-model.sh")));
        // The script finds its template beside itself, as in the repository.
        assert_eq!(
            read(&dir.path().join("templates/qwen2.5-tools.jinja")),
            read(&repo.join("templates/qwen2.5-tools.jinja"))
        );
        assert!(SCRIPT.contains("--alias \"$MODEL_NAME\"") && SCRIPT.contains(LOCAL_MODEL));
        // Written again only when it changed.
        std::fs::write(&script, "stale").unwrap_or_else(|e| panic!("{e}"));
        write_script(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&script), SCRIPT);
    }
}
