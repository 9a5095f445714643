//! `clarion completions SHELL`: the completion script clap generates from the same
//! definitions as the parser, so it never drifts from the real flags.

use clap::CommandFactory as _;

use crate::args::{Cli, CompletionsArgs};
use crate::exit::Exit;
use crate::output;

pub(crate) fn run(args: &CompletionsArgs) -> Exit {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "clarion", &mut script);
    output::out(&String::from_utf8_lossy(&script));
    Exit::Success
}
