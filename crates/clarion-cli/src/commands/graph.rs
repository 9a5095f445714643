//! `clarion graph FLOW`: the flow as a Mermaid (default) or Graphviz diagram on stdout.
//!
//! The diagram itself is built by [`clarion_flow::graph`], which library users can call
//! too; this command loads the flow, reports its problems like `clarion export` does, and
//! prints. A flow with errors has no diagram: exit 1, as `clarion validate` would.

use clarion_flow::graph::Graph;
use clarion_flow::{LoadOptions, load_file_with};
use clarion_tools::BuiltinRegistry;

use crate::args::{GraphArgs, GraphFormat};
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;

pub(crate) fn run(args: &GraphArgs) -> Result<Exit, CliError> {
    if !args.flow.is_file() {
        return Err(CliError::MissingFlow(args.flow.clone()));
    }
    let builtins = BuiltinRegistry::standard();
    let report = load_file_with(
        &args.flow,
        &LoadOptions {
            builtins: Some(&builtins),
            ..LoadOptions::default()
        },
    );
    let Some(flow) = output::flow_or_errors(report, "draw", &args.flow, false) else {
        return Ok(Exit::Problems);
    };
    let graph = Graph::of(&flow);
    output::out(&match args.format {
        GraphFormat::Mermaid => graph.mermaid(),
        GraphFormat::Dot => graph.dot(),
    });
    Ok(Exit::Success)
}
