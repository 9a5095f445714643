//! `clarion`: validate, export, test and run conversational flows.
//!
//! The binary is thin on purpose: argument parsing ([`args`]), one module per subcommand
//! under [`commands`], and exit codes in one place ([`exit`]). Everything a library user
//! could want lives in `clarion-engine`.

mod args;
mod commands;
mod error;
mod exit;
mod logging;
mod output;
mod store;
mod telemetry;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::Exit;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) | Command::Play(_) => "info",
        _ => "warn",
    };
    let (redactor, traces) = logging::init(cli.log_format, default_level, cli.log_content);
    let mut traces = match traces {
        Ok(traces) => traces,
        Err(error) => {
            output::error_line(&format!("cannot export traces: {error}"));
            return Exit::Usage.into();
        }
    };
    let result = match cli.command {
        Command::Validate(args) => commands::validate::run(&args),
        Command::Schema(args) => Ok(commands::schema::run(&args)),
        Command::Export(args) => commands::export::run(&args),
        Command::Test(args) => commands::test::run(&args),
        Command::Eval(args) => commands::eval::run(&args),
        Command::Chat(args) => commands::chat::run(&args),
        Command::Threads(args) => commands::threads::run(&args),
        Command::Graph(args) => commands::graph::run(&args),
        Command::Completions(args) => Ok(commands::completions::run(&args)),
        Command::Demo(args) => commands::demo::run(&args),
        Command::Lsp(args) => commands::lsp::run(&args),
        Command::Mcp(args) => commands::mcp::run(&args),
        Command::Play(args) => commands::play::run(&args),
        Command::Serve(args) => {
            commands::serve::run(&args, cli.log_format, &redactor, traces.is_on())
        }
    };
    // The last spans of a short command are still queued: export them before exiting.
    traces.shutdown();
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            output::error_line(&error.to_string());
            Exit::Usage.into()
        }
    }
}
