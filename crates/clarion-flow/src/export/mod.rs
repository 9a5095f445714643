//! Assistant definitions for model providers: `clarion export`.
//!
//! One [`Flow`] becomes the JSON a provider expects — a Chat Completions request
//! skeleton, a Responses API request skeleton, or an Assistants API `POST /assistants`
//! body. Each tool's parameters become one JSON Schema object (`type: object`,
//! `properties`, `required`, `additionalProperties: false`). Clarion's own keys (`ask`,
//! `slot`, `$ref`) never reach the model: it sees descriptions and schemas only.
//!
//! A required parameter that Clarion can obtain itself — it has an `ask`, or a `slot` to
//! fill it from — is *optional to the model*. The model should pass what the user said and
//! leave out what they did not; Clarion then fills it from the slot or asks the flow's
//! question. Marking it required would push the model to invent a value (and in strict
//! mode force it to). Only required parameters with neither stay required for the model.
//!
//! With `tool_choice = "required"` the model must call a tool on every turn, which keeps a
//! small model from answering in prose with invented numbers — but it must still be able
//! to talk. So Clarion adds one tool of its own, [`REPLY_TOOL`]: the model answers the user
//! by calling it, and the engine turns that call into an ordinary reply (it never reaches
//! the thread as a tool call, and users never see it as one).

pub mod strict;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::template;
use crate::{Flow, Tool};

/// The tool through which a model under `tool_choice = "required"` answers in words.
pub const REPLY_TOOL: &str = "reply";

/// Whether the model is sent [`REPLY_TOOL`]: tools must be called, and there are tools.
#[must_use]
pub fn offers_reply(flow: &Flow) -> bool {
    flow.assistant.tool_choice == Some(crate::spec::ToolChoice::Required) && !flow.tools.is_empty()
}

/// [`REPLY_TOOL`]'s parameters.
fn reply_parameters() -> Value {
    json!({
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "description": "Your message to the user, in plain words."
            }
        },
        "required": ["text"],
        "additionalProperties": false,
    })
}

fn reply_function() -> Map<String, Value> {
    let mut function = Map::new();
    function.insert("name".to_owned(), json!(REPLY_TOOL));
    function.insert(
        "description".to_owned(),
        json!("Answers the user in words: the answer once the other tools have given you what you need, or a reply when no other tool fits. Never put numbers here that no tool returned or the user said."),
    );
    function.insert("parameters".to_owned(), reply_parameters());
    function.insert("strict".to_owned(), Value::Bool(true));
    function
}

/// The provider format to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// OpenAI Chat Completions (`/v1/chat/completions`) and compatible servers.
    ChatCompletions,
    /// OpenAI Responses API (`/v1/responses`).
    Responses,
    /// The (retired) Assistants API's `POST /v1/assistants` body.
    Assistants,
}

/// Failures while exporting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExportError {
    /// The instructions template failed to render with the given slots and metadata.
    #[error("cannot render the instructions: {0}")]
    Instructions(String),
}

/// Whether a tool is sent in strict mode.
#[must_use]
pub fn uses_strict(tool: &Tool) -> bool {
    tool.strict != Some(false) && strict::unsupported(&raw_parameters(tool)).is_none()
}

/// The tool's parameters as one JSON Schema object, as the model sees it (strict-mode
/// rewrites applied when [`uses_strict`]).
#[must_use]
pub fn parameters(tool: &Tool) -> Value {
    let raw = raw_parameters(tool);
    if uses_strict(tool) {
        strict::strictify(&raw)
    } else {
        raw
    }
}

fn raw_parameters(tool: &Tool) -> Value {
    let properties: Map<String, Value> = tool
        .params
        .values()
        .map(|p| (p.name.clone(), p.schema.clone()))
        .collect();
    let required: Vec<Value> = tool
        .params
        .values()
        .filter(|p| required_from_model(p))
        .map(|p| Value::String(p.name.clone()))
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// Whether the model must supply `param`: required, and Clarion has no way to get it
/// otherwise (no `ask`, no `slot`).
#[must_use]
pub fn required_from_model(param: &crate::Param) -> bool {
    param.required && param.ask.is_none() && param.slot.is_none()
}

fn function(tool: &Tool) -> Map<String, Value> {
    let mut function = Map::new();
    function.insert("name".to_owned(), Value::String(tool.name.clone()));
    if let Some(description) = &tool.description {
        function.insert("description".to_owned(), Value::String(description.clone()));
    }
    function.insert("parameters".to_owned(), parameters(tool));
    function.insert("strict".to_owned(), Value::Bool(uses_strict(tool)));
    function
}

/// Exports `flow` for `format`, rendering the instructions with `slots` and `metadata`.
pub fn export(
    flow: &Flow,
    format: ExportFormat,
    slots: &Map<String, Value>,
    metadata: &Map<String, Value>,
) -> Result<Value, ExportError> {
    let instructions = template::render_instructions(&flow.assistant.instructions, slots, metadata)
        .map_err(|e| ExportError::Instructions(template::describe(&e)))?;
    Ok(Value::Object(definition(flow, format, instructions)))
}

/// A flow's tools as each export format lists them. They depend only on the flow's tools
/// and tool choice, which do not change once it is loaded, and a provider sends them with
/// every request: built once, not per request (strict-mode schemas are the costly part).
/// A clone of the flow starts empty, so a changed copy never sends its original's tools.
#[derive(Default)]
pub(crate) struct ToolsCache([std::sync::OnceLock<Vec<CachedTool>>; 3]);

/// One exported tool, as a value and as the JSON text a request body copies (serializing
/// every tool's schema again for each request was ~2% of a `clarion chat` round trip).
struct CachedTool {
    value: Value,
    json: Box<RawValue>,
}

impl Clone for ToolsCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for ToolsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolsCache")
    }
}

/// The assistant definition with already-rendered `instructions`. Providers start every
/// request from this, so what `clarion export` prints is exactly what a model receives.
#[must_use]
pub fn definition(flow: &Flow, format: ExportFormat, instructions: String) -> Map<String, Value> {
    definition_offering(flow, format, instructions, &|_| true)
}

/// [`definition`] with only the tools `offered` accepts: a request leaves out a tool whose
/// `follows` have not returned yet.
#[must_use]
pub fn definition_offering(
    flow: &Flow,
    format: ExportFormat,
    instructions: String,
    offered: &dyn Fn(&Tool) -> bool,
) -> Map<String, Value> {
    let (mut body, tools) = definition_with(flow, format, instructions, offered, |tool| {
        tool.value.clone()
    });
    if let Some(slot) = body.get_mut("tools") {
        *slot = Value::Array(tools);
    }
    body
}

/// [`definition_offering`] with `tools` left `null` in its place and the offered tools'
/// JSON borrowed from the flow's cache instead: a provider writes them in that place on
/// every request without serializing their schemas again.
#[must_use]
pub fn definition_borrowing<'f>(
    flow: &'f Flow,
    format: ExportFormat,
    instructions: String,
    offered: &dyn Fn(&Tool) -> bool,
) -> (Map<String, Value>, Vec<&'f RawValue>) {
    definition_with(flow, format, instructions, offered, |tool| &*tool.json)
}

/// The definition with `tools` left `null`, and the offered tools as `pick` takes them
/// from the flow's cache (their value, or their JSON text): one pass over the tools for
/// both [`definition_offering`] and [`definition_borrowing`].
fn definition_with<'f, T>(
    flow: &'f Flow,
    format: ExportFormat,
    instructions: String,
    offered: &dyn Fn(&Tool) -> bool,
    pick: impl Fn(&'f CachedTool) -> T,
) -> (Map<String, Value>, Vec<T>) {
    let assistant = &flow.assistant;
    let mut body = Map::new();
    body.insert("model".to_owned(), Value::String(assistant.model.clone()));
    let tools: Vec<T> = offered_tools(flow, format, offered).map(pick).collect();
    match format {
        ExportFormat::ChatCompletions => {
            body.insert(
                "messages".to_owned(),
                json!([{ "role": "system", "content": instructions }]),
            );
        }
        ExportFormat::Responses => {
            body.insert("instructions".to_owned(), Value::String(instructions));
            body.insert("store".to_owned(), Value::Bool(false));
        }
        ExportFormat::Assistants => {
            body.insert("name".to_owned(), Value::String(flow.name.clone()));
            if let Some(description) = &flow.description {
                body.insert("description".to_owned(), Value::String(description.clone()));
            }
            body.insert("instructions".to_owned(), Value::String(instructions));
        }
    }
    // No tool offered (only tools that follow others): no tools, and no `tool_choice`,
    // which providers refuse without them.
    if !tools.is_empty() {
        body.insert("tools".to_owned(), Value::Null);
        if format != ExportFormat::Assistants {
            if let Some(choice) = assistant.tool_choice {
                body.insert(
                    "tool_choice".to_owned(),
                    serde_json::to_value(choice).unwrap_or(Value::Null),
                );
            }
            if let Some(parallel) = assistant.parallel_tool_calls {
                body.insert("parallel_tool_calls".to_owned(), Value::Bool(parallel));
            }
        }
    }
    if let Some(t) = assistant.temperature {
        body.insert("temperature".to_owned(), json!(t));
    }
    if let Some(p) = assistant.top_p {
        body.insert("top_p".to_owned(), json!(p));
    }
    match format {
        ExportFormat::ChatCompletions => {
            if let Some(n) = assistant.max_output_tokens {
                body.insert("max_completion_tokens".to_owned(), json!(n));
            }
            if let Some(seed) = assistant.seed {
                body.insert("seed".to_owned(), json!(seed));
            }
        }
        ExportFormat::Responses => {
            if let Some(n) = assistant.max_output_tokens {
                body.insert("max_output_tokens".to_owned(), json!(n));
            }
        }
        ExportFormat::Assistants => {
            let mut meta = Map::new();
            meta.insert("clarion_flow".to_owned(), Value::String(flow.name.clone()));
            if let Some(version) = &flow.version {
                meta.insert(
                    "clarion_flow_version".to_owned(),
                    Value::String(version.clone()),
                );
            }
            body.insert("metadata".to_owned(), Value::Object(meta));
        }
    }
    (body, tools)
}

/// The tools of `flow` that `offered` accepts, as `format` lists them, from the flow's cache
/// (built once per format: strict-mode schemas are the costly part).
fn offered_tools<'f>(
    flow: &'f Flow,
    format: ExportFormat,
    offered: &dyn Fn(&Tool) -> bool,
) -> impl Iterator<Item = &'f CachedTool> {
    let entry = |function: Map<String, Value>| match format {
        ExportFormat::Responses => {
            let mut entry = Map::new();
            entry.insert("type".to_owned(), json!("function"));
            entry.extend(function);
            Value::Object(entry)
        }
        ExportFormat::ChatCompletions | ExportFormat::Assistants => {
            json!({ "type": "function", "function": Value::Object(function) })
        }
    };
    let cached = match format {
        ExportFormat::ChatCompletions => &flow.exported.0[0],
        ExportFormat::Responses => &flow.exported.0[1],
        ExportFormat::Assistants => &flow.exported.0[2],
    };
    let all = cached.get_or_init(|| {
        let mut tools: Vec<Value> = flow
            .tools
            .values()
            .map(|tool| entry(function(tool)))
            .collect();
        // The Assistants format has no tool_choice in its definition; the app sets it per run.
        if offers_reply(flow) && format != ExportFormat::Assistants {
            tools.push(entry(reply_function()));
        }
        tools
            .into_iter()
            .map(|value| CachedTool {
                // A `Value` always serializes (its keys are strings).
                json: serde_json::value::to_raw_value(&value).unwrap_or_default(),
                value,
            })
            .collect()
    });
    // The cache holds the flow's tools in order, then the reply tool, which is always
    // offered.
    all.iter().enumerate().filter_map(move |(i, entry)| {
        flow.tools
            .get_index(i)
            .is_none_or(|(_, tool)| offered(tool))
            .then_some(entry)
    })
}
