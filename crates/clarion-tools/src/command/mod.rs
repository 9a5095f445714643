//! Command tools: `[tools.NAME.command]`.
//!
//! The protocol is deliberately small, so a tool can be written in any language in twenty
//! lines: the call's arguments arrive as one JSON object on stdin; the program prints its
//! result as one JSON value on stdout and exits 0. Anything else is a failure the model is
//! told about, with the end of stderr as the reason.
//!
//! The program is started directly from `argv` — never through a shell, so no argument is
//! ever parsed as shell syntax — in the flow file's directory (or `cwd`, relative to it),
//! with an environment holding only the variables the tool allow-lists. It runs in a process
//! group of its own that is killed when the call ends, times out, or is cancelled
//! (`group`); its output is bounded (`output`).
//!
//! Error kinds: `unavailable` (the program cannot be started), `timeout`, `failed` (non-zero
//! exit or killed by a signal), `invalid_output` (no JSON, not JSON, or too much of it).

pub(crate) mod group;
pub(crate) mod output;

use clarion_engine::ToolErrorKind;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use clarion_engine::ToolError;
use clarion_flow::Flow;
use clarion_flow::model::CommandSpec;
use clarion_flow::model::format_duration;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use clarion_engine::Redactor;
use group::ProcessGroup;
use output::{Overflow, Tail, drain_into, read_limited};

/// `max_output_bytes` when the flow does not set it.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// Variables commonly passed through that are not secrets; their values are not redacted
/// from error messages (every other allow-listed variable's value is).
pub(crate) const NOT_SECRET: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "PWD",
];

/// The variable that carries a call's idempotency key to the program.
pub const IDEMPOTENCY_KEY_VAR: &str = "CLARION_IDEMPOTENCY_KEY";

/// Runs command tools.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommandExecutor;

impl CommandExecutor {
    /// An executor.
    #[must_use]
    pub fn new() -> Self {
        Self
    }

    /// Runs one call of a tool with this `[command]` table. The program gets
    /// `idempotency_key` as `CLARION_IDEMPOTENCY_KEY`, beside the allow-listed variables.
    pub async fn call(
        &self,
        flow: &Flow,
        spec: &CommandSpec,
        arguments: &Map<String, Value>,
        idempotency_key: &str,
    ) -> Result<Value, ToolError> {
        let timeout = flow.limits.tool_timeout_or(spec.timeout.as_deref());
        let mut env: Vec<(String, String)> = spec
            .env
            .iter()
            .filter_map(|name| Some((name.clone(), std::env::var(name).ok()?)))
            .collect();
        let redactor = Redactor::masking(
            env.iter()
                .filter(|(name, _)| {
                    !NOT_SECRET.contains(&name.as_str()) && !name.starts_with("LC_")
                })
                .map(|(_, value)| value.clone()),
        );
        // Not a secret, and after the redactor is built: it may appear in errors.
        env.push((IDEMPOTENCY_KEY_VAR.to_owned(), idempotency_key.to_owned()));
        run(flow, spec, arguments, &env, timeout)
            .await
            .map_err(|error| redactor.error(error))
    }
}

/// The directory a command runs in: `cwd` relative to the flow file's directory, which is
/// also the default.
#[must_use]
pub fn working_directory(flow: &Flow, spec: &CommandSpec) -> PathBuf {
    let base = flow
        .path
        .as_deref()
        .and_then(Path::parent)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    match &spec.cwd {
        Some(cwd) => base.join(cwd),
        None => base,
    }
}

/// A started program and what it needs for the rest of the call.
struct Started {
    child: Child,
    group: ProcessGroup,
    shown: String,
}

/// Starts the program: argv as is, in its directory, with only the allow-listed variables,
/// in a process group of its own.
fn start(flow: &Flow, spec: &CommandSpec, env: &[(String, String)]) -> Result<Started, ToolError> {
    let Some((program, rest)) = spec.argv.split_first() else {
        return Err(ToolError::new(
            ToolErrorKind::Unavailable,
            "the command's `argv` is empty",
        ));
    };
    let shown = spec.argv.join(" ");
    let cwd = working_directory(flow, spec);
    // A relative program path with a slash means "relative to cwd", which the OS would
    // otherwise resolve against Clarion's own directory.
    let program_path = if program.contains('/') && Path::new(program).is_relative() {
        cwd.join(program)
    } else {
        PathBuf::from(program)
    };
    let mut command = Command::new(&program_path);
    command
        .args(rest)
        .current_dir(&cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let child = command.spawn().map_err(|e| {
        ToolError::new(
            ToolErrorKind::Unavailable,
            format!("cannot start `{shown}` in {}: {e}", cwd.display()),
        )
    })?;
    let group = ProcessGroup::new(child.id());
    Ok(Started {
        child,
        group,
        shown,
    })
}

async fn run(
    flow: &Flow,
    spec: &CommandSpec,
    arguments: &Map<String, Value>,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Value, ToolError> {
    let input = serde_json::to_vec(arguments).map_err(|e| {
        ToolError::new(
            ToolErrorKind::InvalidArguments,
            format!("cannot encode arguments: {e}"),
        )
    })?;
    let limit = spec.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES);
    let Started {
        mut child,
        group,
        shown,
    } = start(flow, spec, env)?;
    let tail = Mutex::new(Tail::default());
    let outcome =
        tokio::time::timeout(timeout, exchange(&mut child, &group, &input, limit, &tail)).await;
    // Whatever happened, nothing the call started outlives it.
    group.kill();
    let stderr = tail.lock().map(|t| t.text()).unwrap_or_default();
    let with_stderr = |message: String| {
        if stderr.is_empty() {
            message
        } else {
            format!("{message}; stderr: {stderr}")
        }
    };
    let Ok((out, status)) = outcome else {
        // Reap the killed leader now rather than leave a zombie until the next spawn.
        let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
        return Err(ToolError::new(
            ToolErrorKind::Timeout,
            with_stderr(format!(
                "`{shown}` did not finish within {}; its process group was killed",
                format_duration(timeout)
            )),
        ));
    };
    let Ok(out) = out else {
        return Err(ToolError::new(
            ToolErrorKind::InvalidOutput,
            format!("`{shown}` printed more than {limit} bytes (the tool's `max_output_bytes`)"),
        ));
    };
    let status = status.map_err(|e| {
        ToolError::new(
            ToolErrorKind::Failed,
            format!("cannot wait for `{shown}`: {e}"),
        )
    })?;
    if !status.success() {
        return Err(ToolError::new(
            ToolErrorKind::Failed,
            with_stderr(exit_message(&shown, status)),
        ));
    }
    parse(&shown, &out).map_err(|error| match error.kind {
        ToolErrorKind::InvalidOutput if out.iter().all(u8::is_ascii_whitespace) => {
            ToolError::new(error.kind, with_stderr(error.message))
        }
        _ => error,
    })
}

/// Writes the input, reads stdout (killing the group if it passes `limit`) and stderr, and
/// waits for the program to exit.
async fn exchange(
    child: &mut Child,
    group: &ProcessGroup,
    input: &[u8],
    limit: u64,
    tail: &Mutex<Tail>,
) -> (Result<Vec<u8>, Overflow>, std::io::Result<ExitStatus>) {
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let write = async {
        if let Some(mut stdin) = stdin {
            // A program that exits without reading its input is not an error here; its
            // exit status says whether it worked.
            let _ = stdin.write_all(input).await;
            let _ = stdin.shutdown().await;
        }
    };
    let read = async {
        let Some(stdout) = stdout else {
            return Ok(Vec::new());
        };
        let result = read_limited(stdout, limit).await;
        if result.is_err() {
            group.kill();
        }
        result
    };
    let drain = async {
        if let Some(stderr) = stderr {
            drain_into(stderr, tail).await;
        }
    };
    let ((), out, ()) = tokio::join!(write, read, drain);
    (out, child.wait().await)
}

/// The program's stdout as its JSON result.
fn parse(shown: &str, out: &[u8]) -> Result<Value, ToolError> {
    let text = String::from_utf8_lossy(out);
    let text = text.trim();
    if text.is_empty() {
        return Err(ToolError::new(
            ToolErrorKind::InvalidOutput,
            format!(
                "`{shown}` printed nothing on stdout; a command tool prints its result as JSON"
            ),
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        let start: String = text.chars().take(120).collect();
        ToolError::new(
            ToolErrorKind::InvalidOutput,
            format!("`{shown}` printed something that is not JSON ({e}): {start}"),
        )
    })
}

fn exit_message(shown: &str, status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("`{shown}` exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned());
            return format!("`{shown}` was killed by {name}");
        }
    }
    format!("`{shown}` failed ({status})")
}
