//! Running one server-side tool call under its timeout.

use super::*;
use crate::codes::ToolErrorKind;
use clarion_flow::model::format_duration;
use std::fmt::Write as _;

impl Engine {
    pub(super) async fn execute(
        &self,
        flow: &Flow,
        tool: &Tool,
        call: &ToolCall,
        args: &Map<String, Value>,
        idempotency_key: &str,
        events: &dyn EventSink,
    ) -> Result<Value, ToolError> {
        events.emit(&Event::ToolStarted {
            call_id: call.id.clone(),
            name: call.name.clone(),
            arguments: Value::Object(args.clone()),
        });
        // The engine hands the thread over itself once the turn has landed.
        if let clarion_flow::Executor::Flow(link) = &tool.executor {
            return Ok(handoff::output(link));
        }
        let timeout = tool.timeout(&flow.limits);
        let request = ToolRequest {
            flow,
            tool,
            call_id: &call.id,
            idempotency_key,
            arguments: args,
        };
        // Argument values can be personal data: spans carry names only.
        let span = crate::observe::tool_span(tool, &call.id);
        let execution =
            tokio::time::timeout(timeout, self.tools.execute(request)).instrument(span.clone());
        let started = std::time::Instant::now();
        let result = match execution.await {
            Ok(result) => result,
            Err(_) => Err(ToolError::new(
                ToolErrorKind::Timeout,
                format!(
                    "`{}` did not finish within {}",
                    tool.name,
                    format_duration(timeout)
                ),
            )),
        };
        let outcome = result.as_ref().map_or_else(|e| e.kind.as_str(), |_| "ok");
        crate::observe::tool_called(flow, tool, &span, outcome, started.elapsed());
        if let Err(error) = &result {
            // Failures are part of the loop (the model reads them and goes on), so info;
            // the message can quote arguments or a response, so only the content target.
            tracing::info!(call_id = %call.id, tool = %tool.name, executor = tool.executor.kind(), code = error.kind.as_str(), "tool failed ({})", error.kind.as_str());
            tracing::info!(target: crate::observe::CONTENT_TARGET, call_id = %call.id, tool = %tool.name, "tool failed: {}", error.message);
        }
        result
    }
}

/// `value` as JSON with every object's keys sorted, each item followed by `,`.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => canonical_object(map, out),
        Value::Array(items) => {
            out.push('[');
            for item in items {
                canonical(item, out);
                out.push(',');
            }
            out.push(']');
        }
        // A scalar's JSON text, written in place.
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn canonical_object(map: &Map<String, Value>, out: &mut String) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by_key(|(key, _)| *key);
    out.push('{');
    for (key, value) in entries {
        let _ = write!(out, "{}:", Value::from(key.as_str()));
        canonical(value, out);
        out.push(',');
    }
    out.push('}');
}

/// The idempotency key of a call: a name-based UUID (v5) of the run, its step, the tool and
/// the arguments with their keys sorted. A takeover that asks the model again at the same
/// step gets the same key for the same call, and a different one for a different call.
pub(super) fn idempotency_key(
    run_id: &str,
    step: u32,
    tool: &str,
    args: &Map<String, Value>,
) -> String {
    let mut name = format!("{run_id}\n{step}\n{tool}\n");
    canonical_object(args, &mut name);
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::idempotency_key;
    use serde_json::json;

    fn args(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        match value {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }

    #[test]
    fn the_key_depends_on_run_step_tool_and_arguments_not_on_key_order() {
        let a = args(
            json!({ "to": "x", "amount": 3, "meta": { "b": 1, "a": [1, { "d": 2, "c": 3 }] } }),
        );
        let b = args(
            json!({ "meta": { "a": [1, { "c": 3, "d": 2 }], "b": 1 }, "amount": 3, "to": "x" }),
        );
        let key = idempotency_key("run_1", 2, "pay", &a);
        assert_eq!(key, idempotency_key("run_1", 2, "pay", &b));
        assert_eq!(key.len(), 36);
        assert_ne!(key, idempotency_key("run_2", 2, "pay", &a));
        assert_ne!(key, idempotency_key("run_1", 3, "pay", &a));
        assert_ne!(key, idempotency_key("run_1", 2, "refund", &a));
        assert_ne!(
            key,
            idempotency_key("run_1", 2, "pay", &args(json!({ "to": "x", "amount": 4 })))
        );
    }

    /// The key's text is what the first definition wrote (keys persist with runs: a
    /// takeover by a newer build must compute the same ones).
    mod same_as_before {
        use proptest::prelude::*;
        use serde_json::Value;

        fn canonical(value: &Value, out: &mut String) {
            match value {
                Value::Object(map) => {
                    let mut keys: Vec<&String> = map.keys().collect();
                    keys.sort();
                    out.push('{');
                    for key in keys {
                        out.push_str(&Value::String(key.clone()).to_string());
                        out.push(':');
                        canonical(&map[key], out);
                        out.push(',');
                    }
                    out.push('}');
                }
                Value::Array(items) => {
                    out.push('[');
                    for item in items {
                        canonical(item, out);
                        out.push(',');
                    }
                    out.push(']');
                }
                other => out.push_str(&other.to_string()),
            }
        }

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                "[a-z\"\\\\\\n\u{e9}\u{1f600}]{0,6}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::btree_map("[a-z\"\\\\]{0,3}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn canonical_text_is_unchanged(value in json()) {
                let (mut now, mut before) = (String::new(), String::new());
                super::super::canonical(&value, &mut now);
                canonical(&value, &mut before);
                prop_assert_eq!(now, before);
            }
        }
    }
}
