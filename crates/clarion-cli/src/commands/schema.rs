//! `clarion schema`: the flow format's JSON Schema on stdout (`--scenario`: the scenario
//! format's).

use crate::args::SchemaArgs;
use crate::exit::Exit;
use crate::output;

pub(crate) fn run(args: &SchemaArgs) -> Exit {
    if args.scenario {
        output::out(&clarion_testing::scenario::schema::scenario_schema_text());
        return Exit::Success;
    }
    output::out(&clarion_flow::schema::flow_schema_text());
    Exit::Success
}
