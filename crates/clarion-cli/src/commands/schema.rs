//! `clarion schema`: the flow format's JSON Schema on stdout.

use crate::args::SchemaArgs;
use crate::exit::Exit;
use crate::output;

pub fn run(_args: &SchemaArgs) -> Exit {
    output::out(&clarion_engine::flow::schema::flow_schema_text());
    Exit::Success
}
