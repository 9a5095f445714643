//! `clarion export`: the assistant definition for a provider, as pretty JSON on stdout.
//! Diagnostics (warnings, or the errors that stop the export) go to stderr. MCP tools come
//! from the lock file; with `--connect`, from what the servers list now, and a server that
//! drifted from the lock stops the export.

use clarion_flow::export::{ExportFormat, export};
use clarion_flow::{LoadOptions, load_file_with};
use clarion_tools::BuiltinRegistry;
use serde_json::{Map, Value};

use crate::args::{ExportArgs, ProviderFormat};
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;

pub(crate) fn run(args: &ExportArgs) -> Result<Exit, CliError> {
    if !args.flow.is_file() {
        return Err(CliError::MissingFlow(args.flow.clone()));
    }
    let slots = pairs(&args.slots, "--slot", true)?;
    let metadata = pairs(&args.metadata, "--metadata", false)?;
    let builtins = BuiltinRegistry::standard();
    let options = LoadOptions {
        builtins: Some(&builtins),
        ..LoadOptions::default()
    };
    let report = if args.connect {
        crate::commands::validate::connected(&args.flow, &options)?
    } else {
        load_file_with(&args.flow, &options)
    };
    let Some(flow) = output::flow_or_errors(report, "export", &args.flow, true) else {
        return Ok(Exit::Problems);
    };
    for name in slots.keys() {
        if !flow.slots.contains_key(name) {
            return Err(CliError::UnknownSlot(name.clone()));
        }
    }
    let format = match args.format {
        ProviderFormat::ChatCompletions => ExportFormat::ChatCompletions,
        ProviderFormat::Responses => ExportFormat::Responses,
        ProviderFormat::Assistants => ExportFormat::Assistants,
    };
    match export(&flow, format, &slots, &metadata) {
        Ok(body) => {
            let text = serde_json::to_string_pretty(&body).unwrap_or_default();
            output::out(&format!("{text}\n"));
            Ok(Exit::Success)
        }
        Err(error) => {
            output::error_line(&format!("{error}"));
            Ok(Exit::Problems)
        }
    }
}

/// Parses `NAME=VALUE` pairs; with `json`, a VALUE that parses as JSON is used as such.
fn pairs(items: &[String], flag: &'static str, json: bool) -> Result<Map<String, Value>, CliError> {
    let mut map = Map::new();
    for item in items {
        let Some((name, value)) = item.split_once('=') else {
            return Err(CliError::BadPair {
                flag,
                item: item.clone(),
            });
        };
        let value = if json {
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()))
        } else {
            Value::String(value.to_owned())
        };
        map.insert(name.to_owned(), value);
    }
    Ok(map)
}
