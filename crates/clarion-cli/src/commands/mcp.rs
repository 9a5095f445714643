//! `clarion mcp lock`: ask each `[mcp]` server of a flow for its tools and write the lock
//! file next to the flow; and the live listing `clarion validate --connect` compares with
//! it.
//!
//! The lock is the reviewed copy of what servers say about their tools (see
//! `clarion_flow::mcp`): writing it is the one step that runs the servers, so it is a
//! command of its own, run by the author, whose result is a diff to read.

use std::path::Path;

use clarion_flow::mcp::{LOCK_VERSION, McpLock, lock_path, servers_of};
use clarion_tools::ClarionTools;

use crate::args::{McpArgs, McpCommand};
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;

pub(crate) fn run(args: &McpArgs) -> Result<Exit, CliError> {
    match &args.command {
        McpCommand::Lock(lock) => {
            let files = clarion_flow::discover::flow_files(&lock.paths)?;
            let mut failed = false;
            for file in &files {
                let (live, errors) = live_lock(file)?;
                if live.servers.is_empty() && errors.is_empty() {
                    continue;
                }
                for (server, error) in &errors {
                    output::error_line(&format!(
                        "{}: MCP server `{server}`: {error}",
                        file.display()
                    ));
                }
                if !errors.is_empty() {
                    failed = true;
                    continue;
                }
                let path = lock_path(file);
                let before = std::fs::read_to_string(&path).ok();
                let text = live.to_text();
                if before.as_deref() == Some(text.as_str()) {
                    output::out(&format!("{}: unchanged\n", path.display()));
                    continue;
                }
                std::fs::write(&path, &text)
                    .map_err(|e| CliError::Io(format!("cannot write {}: {e}", path.display())))?;
                let tools: usize = live.servers.values().map(|s| s.tools.len()).sum();
                output::out(&format!(
                    "{}: {} from {} (review the diff before you commit it)\n",
                    path.display(),
                    plural(tools, "tool"),
                    plural(live.servers.len(), "server")
                ));
            }
            Ok(if failed {
                Exit::Problems
            } else {
                Exit::Success
            })
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// What every `[mcp]` server of the flow at `path` lists now, and the servers that could
/// not be asked, with why.
pub(crate) fn live_lock(path: &Path) -> Result<(McpLock, Vec<(String, String)>), CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Io(format!("cannot read {}: {e}", path.display())))?;
    let servers =
        servers_of(&text).map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
    let mut lock = McpLock {
        version: LOCK_VERSION,
        servers: std::collections::BTreeMap::new(),
    };
    if servers.is_empty() {
        return Ok((lock, Vec::new()));
    }
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    let tools = ClarionTools::new();
    let mut errors = Vec::new();
    runtime.block_on(async {
        for (name, spec) in &servers {
            match tools.mcp().list(dir, name, spec).await {
                Ok(listed) => {
                    lock.servers.insert(name.clone(), listed);
                }
                Err(error) => errors.push((name.clone(), error.message)),
            }
        }
    });
    runtime.shutdown_background();
    Ok((lock, errors))
}
