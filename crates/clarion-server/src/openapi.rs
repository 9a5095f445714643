//! The `OpenAPI` 3.0 document of the implemented subset, built here next to the routes and
//! checked in at `schemas/serve.openapi.json` (a test fails when the two differ). It
//! documents what the server accepts and returns, and drives the schemathesis fuzz run.

use serde_json::{Value, json};

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn ok(schema: &str) -> Value {
    json!({
        "200": {"description": "OK", "content": {"application/json": {"schema": reference(schema)}}},
        "default": {"description": "An error", "content": {"application/json": {"schema": reference("Error")}}},
    })
}

fn streamable(schema: &str) -> Value {
    let mut responses = ok(schema);
    responses["200"]["content"]["text/event-stream"] = json!({"schema": {"type": "string"}});
    responses
}

/// A stream of server-sent events and nothing else (the events extension).
fn events() -> Value {
    json!({
        "200": {"description": "Server-sent events", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        "default": {"description": "An error", "content": {"application/json": {"schema": reference("Error")}}},
    })
}

/// Links from a created thread or run to the operations that take its ids, so the
/// stateful fuzzing phase reaches real threads and runs instead of 404s.
fn with_links(mut responses: Value, links: &[(&str, &[(&str, &str)])]) -> Value {
    let links: serde_json::Map<String, Value> = links
        .iter()
        .map(|(operation, params)| {
            let parameters: serde_json::Map<String, Value> = params
                .iter()
                .map(|(name, pointer)| {
                    (
                        (*name).to_owned(),
                        json!(format!("$response.body#/{pointer}")),
                    )
                })
                .collect();
            (
                (*operation).to_owned(),
                json!({"operationId": operation, "parameters": parameters}),
            )
        })
        .collect();
    responses["200"]["links"] = Value::Object(links);
    responses
}

const THREAD_LINKS: &[(&str, &[(&str, &str)])] = &[
    ("getThread", &[("thread_id", "id")]),
    ("modifyThread", &[("thread_id", "id")]),
    ("createMessage", &[("thread_id", "id")]),
    ("listMessages", &[("thread_id", "id")]),
    ("createRun", &[("thread_id", "id")]),
    ("listRuns", &[("thread_id", "id")]),
    ("deleteThread", &[("thread_id", "id")]),
];

const RUN_LINKS: &[(&str, &[(&str, &str)])] = &[
    ("getRun", &[("thread_id", "thread_id"), ("run_id", "id")]),
    ("cancelRun", &[("thread_id", "thread_id"), ("run_id", "id")]),
    (
        "submitToolOutputs",
        &[("thread_id", "thread_id"), ("run_id", "id")],
    ),
    (
        "listRunSteps",
        &[("thread_id", "thread_id"), ("run_id", "id")],
    ),
];

fn path(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn list_params(with_run: bool) -> Vec<Value> {
    let mut params = vec![
        json!({"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}}),
        json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}}),
        json!({"name": "after", "in": "query", "schema": {"type": "string"}}),
        json!({"name": "before", "in": "query", "schema": {"type": "string"}}),
    ];
    if with_run {
        params.push(json!({"name": "run_id", "in": "query", "schema": {"type": "string"}}));
    }
    params
}

fn body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": reference(schema)}}})
}

fn operation(
    id: &str,
    summary: &str,
    params: &[Value],
    body: Option<Value>,
    responses: &Value,
) -> Value {
    let mut op = json!({
        "operationId": id,
        "summary": summary,
        "parameters": params,
        "responses": responses,
    });
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    op
}

fn schemas() -> Value {
    let nullable_string = json!({"type": "string", "nullable": true});
    let object = |name: &str| {
        json!({"type": "object", "required": ["id", "object"], "properties": {
            "id": {"type": "string"}, "object": {"type": "string", "enum": [name]},
        }})
    };
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["message", "type", "param", "code"], "properties": {
                "message": {"type": "string"}, "type": {"type": "string"},
                "param": nullable_string, "code": nullable_string,
            }}}},
        "Metadata": {"type": "object", "maxProperties": 16, "additionalProperties": {"type": "string", "maxLength": 512}},
        "MessageInput": {"type": "object", "required": ["role", "content"], "properties": {
            "role": {"type": "string", "enum": ["user", "assistant"]},
            "content": {"oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object", "required": ["type", "text"], "properties": {
                    "type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}}}},
            ]},
            "metadata": reference("Metadata"),
        }},
        "CreateThread": {"type": "object", "properties": {
            "messages": {"type": "array", "items": reference("MessageInput")},
            "metadata": reference("Metadata"),
        }},
        "CreateAssistant": {"type": "object", "properties": {
            "name": {"type": "string"},
            "metadata": reference("Metadata"),
        }},
        "ModifyThread": {"type": "object", "properties": {"metadata": reference("Metadata")}},
        "ModifyMessage": {"type": "object", "properties": {"metadata": reference("Metadata")}},
        "CreateRun": {"type": "object", "required": ["assistant_id"], "properties": {
            "assistant_id": {"type": "string"},
            "additional_instructions": nullable_string,
            "additional_messages": {"type": "array", "items": reference("MessageInput")},
            "metadata": reference("Metadata"),
            "stream": {"type": "boolean"},
            "truncation_strategy": reference("TruncationStrategy"),
        }},
        "TruncationStrategy": {"type": ["object", "null"], "required": ["type"], "properties": {
            "type": {"type": "string", "enum": ["auto", "last_messages"]},
            "last_messages": {"type": ["integer", "null"], "minimum": 1},
        }},
        "CreateThreadAndRun": {"type": "object", "required": ["assistant_id"], "properties": {
            "assistant_id": {"type": "string"},
            "thread": reference("CreateThread"),
            "metadata": reference("Metadata"),
            "stream": {"type": "boolean"},
            "truncation_strategy": reference("TruncationStrategy"),
        }},
        "SubmitToolOutputs": {"type": "object", "required": ["tool_outputs"], "properties": {
            "tool_outputs": {"type": "array", "items": {"type": "object", "required": ["tool_call_id"], "properties": {
                "tool_call_id": {"type": "string"}, "output": {"type": "string"}}}},
            "stream": {"type": "boolean"},
        }},
        "Assistant": object("assistant"),
        "Thread": object("thread"),
        "Message": object("thread.message"),
        "Run": object("thread.run"),
        "RunStep": object("thread.run.step"),
        "ThreadDeleted": object("thread.deleted"),
        "List": {"type": "object", "required": ["object", "data", "first_id", "last_id", "has_more"], "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": {"type": "object"}},
            "first_id": nullable_string, "last_id": nullable_string,
            "has_more": {"type": "boolean"},
        }},
    })
}

/// The document.
#[must_use]
pub fn document() -> Value {
    let thread = path("thread_id");
    let run = path("run_id");
    let with = |extra: &[Value]| {
        let mut params = vec![thread.clone()];
        params.extend_from_slice(extra);
        params
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "clarion serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The subset of the Assistants API (v2) that clarion serve implements. See docs/serve.md.",
        },
        "servers": [{"url": "/v1"}],
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/assistants": {
                "get": operation("listAssistants", "The loaded flows", &list_params(false), None, &ok("List")),
                "post": operation("createAssistant", "The assistant of a loaded flow, named by metadata.clarion_flow or name", &[], Some(body("CreateAssistant")), &ok("Assistant")),
            },
            "/assistants/{assistant_id}": {"get": operation("getAssistant", "One flow", &[path("assistant_id")], None, &ok("Assistant"))},
            "/threads": {"post": operation("createThread", "Create a thread", &[], Some(body("CreateThread")), &with_links(ok("Thread"), THREAD_LINKS))},
            "/threads/runs": {"post": operation("createThreadAndRun", "Create a thread and run it", &[], Some(body("CreateThreadAndRun")), &with_links(streamable("Run"), RUN_LINKS))},
            "/threads/{thread_id}": {
                "get": operation("getThread", "A thread", &with(&[]), None, &ok("Thread")),
                "post": operation("modifyThread", "Merge metadata", &with(&[]), Some(body("ModifyThread")), &ok("Thread")),
                "delete": operation("deleteThread", "Delete a thread", &with(&[]), None, &ok("ThreadDeleted")),
            },
            "/threads/{thread_id}/messages": {
                "get": operation("listMessages", "Messages people see", &with(&list_params(true)), None, &ok("List")),
                "post": operation("createMessage", "Add a message (400 while a run is active)", &with(&[]), Some(body("MessageInput")), &ok("Message")),
            },
            "/threads/{thread_id}/messages/{message_id}": {
                "get": operation("getMessage", "A message", &with(&[path("message_id")]), None, &ok("Message")),
                "post": operation("modifyMessage", "Merge a message's metadata", &with(&[path("message_id")]), Some(body("ModifyMessage")), &ok("Message")),
            },
            "/threads/{thread_id}/runs": {
                "get": operation("listRuns", "Runs of a thread", &with(&list_params(false)), None, &ok("List")),
                "post": operation("createRun", "Run a thread", &with(&[]), Some(body("CreateRun")), &with_links(streamable("Run"), RUN_LINKS)),
            },
            "/threads/{thread_id}/runs/{run_id}": {"get": operation("getRun", "A run", &with(std::slice::from_ref(&run)), None, &ok("Run"))},
            "/threads/{thread_id}/runs/{run_id}/cancel": {"post": operation("cancelRun", "Cancel a run", &with(std::slice::from_ref(&run)), None, &ok("Run"))},
            "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs": {"post": operation("submitToolOutputs", "Outputs of the client tool calls", &with(std::slice::from_ref(&run)), Some(body("SubmitToolOutputs")), &streamable("Run"))},
            "/threads/{thread_id}/runs/{run_id}/steps": {"get": operation("listRunSteps", "Steps of a run", &with(&[run.clone(), list_params(false)[0].clone(), list_params(false)[1].clone(), list_params(false)[2].clone(), list_params(false)[3].clone()]), None, &ok("List"))},
            "/threads/{thread_id}/runs/{run_id}/steps/{step_id}": {"get": operation("getRunStep", "A step", &with(&[run.clone(), path("step_id")]), None, &ok("RunStep"))},
            "/threads/{thread_id}/runs/{run_id}/events": {"get": operation("streamRunEvents", "Extension: the engine's events of a run as server-sent events (`clarion.event`, then `done`); only where the server keeps them (clarion play), else 404", &with(std::slice::from_ref(&run)), None, &events())},
        },
    })
}
