//! Exactly one executor per tool: `builtin`, `http`, `command`, `mcp`, `flow`, or
//! `client = true`;
//! and `confirm` only where Clarion is the one that runs the tool.

use super::Checker;
use crate::diagnostic::{Diagnostic, DiagnosticKind};
use crate::spans::pointer;
use crate::suggest;

pub(super) fn check(checker: &mut Checker<'_>) {
    for (tool, spec) in &checker.file.tools {
        let at = pointer(&["tools", tool]);
        // A removed `builtin` or `client` key would make the count wrong; `http` and
        // `command` tables are repaired in place and still count.
        if ["", "/builtin", "/client", "/mcp", "/flow"]
            .iter()
            .any(|key| checker.broken.covers(&format!("{at}{key}")))
        {
            continue;
        }
        let mut found: Vec<&str> = Vec::new();
        if spec.builtin.is_some() {
            found.push("builtin");
        }
        if spec.http.is_some() {
            found.push("http");
        }
        if spec.command.is_some() {
            found.push("command");
        }
        if spec.mcp.is_some() {
            found.push("mcp");
        }
        if spec.client == Some(true) {
            found.push("client");
        }
        if spec.flow.is_some() {
            found.push("flow");
        }
        match found.as_slice() {
            ["client"] if spec.confirm.is_some() => checker.report(
                Diagnostic::new(
                    DiagnosticKind::ConfirmOnClientTool { tool: tool.clone() },
                    checker.key(&format!("{at}/confirm")),
                )
                .with_label("Clarion never runs a client tool, so it cannot hold it back")
                .with_help(
                    "the app runs client tools and asks its own confirmation; \
                     remove `confirm`, or give the tool a server-side executor",
                ),
            ),
            [_] => {}
            // A broken key may be a misspelt `builtin`; the typo is reported already.
            [] if checker.broken.has_broken_key(&at) => {}
            [] => checker.report(
                Diagnostic::new(
                    DiagnosticKind::NoExecutor { tool: tool.clone() },
                    checker.key(&at),
                )
                .with_label("nothing runs this tool")
                .with_help(
                    "add one of `builtin = \"…\"`, a `[tools.NAME.http]` table, a \
                         `[tools.NAME.command]` table, `mcp = \"SERVER\"`, `flow = \"NAME\"`, or `client = true`",
                ),
            ),
            [first, rest @ ..] => {
                let mut diagnostic = Diagnostic::new(
                    DiagnosticKind::MultipleExecutors {
                        tool: tool.clone(),
                        found: suggest::list(&found),
                    },
                    checker.key(&format!("{at}/{first}")),
                )
                .with_label(format!("`{first}` here"))
                .with_help("keep exactly one executor per tool; split it into two tools if both are needed");
                for other in rest {
                    if let Some(span) = checker.key(&format!("{at}/{other}")) {
                        diagnostic = diagnostic.with_related(span, format!("and `{other}` here"));
                    }
                }
                checker.report(diagnostic);
            }
        }
    }
}
