//! `clarion lsp`: the language server on stdio, checking `builtin = "…"` names against the
//! built-ins this binary ships, as `clarion validate` does.

use std::sync::Arc;

use clarion_tools::BuiltinRegistry;

use crate::args::LspArgs;
use crate::error::CliError;
use crate::exit::Exit;

pub(crate) fn run(_args: &LspArgs) -> Result<Exit, CliError> {
    let options = clarion_lsp::Options {
        builtins: Some(Arc::new(BuiltinRegistry::standard())),
        ..clarion_lsp::Options::default()
    };
    match clarion_lsp::run_stdio(options) {
        Ok(()) => Ok(Exit::Success),
        Err(error) => Err(CliError::Lsp(error.to_string())),
    }
}
