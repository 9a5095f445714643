//! Built-in tools: Rust functions a flow names with `builtin = "namespace.function"`.
//!
//! A built-in is an ordinary function from a typed argument struct to a serializable
//! result. The struct derives `Deserialize` (so arguments are parsed, not picked out of a
//! map by hand) and `JsonSchema` (so the registry knows the parameters the function takes).
//! That schema is what makes a flow checkable: [`BuiltinRegistry`] is a
//! [`BuiltinCatalog`], and the loader compares each tool's declared parameters with it —
//! a renamed field or an integer declared as a number is a diagnostic at load time instead
//! of a failed call in a conversation.
//!
//! Calls are synchronous and fast (the finance built-ins take about a microsecond), so they
//! run inline on the caller's task.

pub mod finance;
pub mod money;
mod schema;

use clarion_engine::ToolErrorKind;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use clarion_engine::ToolError;
use clarion_flow::BuiltinCatalog;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One built-in function, type-erased.
pub trait Builtin: Send + Sync {
    /// The JSON Schema of its arguments (an object schema).
    fn schema(&self) -> &Value;

    /// Runs it.
    fn call(&self, arguments: &Map<String, Value>) -> Result<Value, ToolError>;

    /// The JSON Schema of its result, when known.
    fn result_schema(&self) -> Option<&Value> {
        None
    }

    /// Whether it is a pure function: called again with the same arguments it returns the
    /// same result and changes nothing ([`ToolExecutor::replayable`](clarion_engine::ToolExecutor::replayable)).
    fn replayable(&self) -> bool {
        false
    }
}

/// A function with typed arguments `A` and result `R`.
struct Typed<A, R, F> {
    schema: Value,
    result: Value,
    function: F,
    replayable: bool,
    types: PhantomData<fn(A) -> R>,
}

impl<A, R, F> Builtin for Typed<A, R, F>
where
    A: DeserializeOwned,
    R: Serialize,
    F: Fn(A) -> Result<R, ToolError> + Send + Sync,
{
    fn schema(&self) -> &Value {
        &self.schema
    }

    fn result_schema(&self) -> Option<&Value> {
        Some(&self.result)
    }

    fn replayable(&self) -> bool {
        self.replayable
    }

    fn call(&self, arguments: &Map<String, Value>) -> Result<Value, ToolError> {
        let deserializer = serde::de::value::MapDeserializer::new(
            arguments.iter().map(|(name, value)| (name.as_str(), value)),
        );
        let arguments = A::deserialize(deserializer).map_err(|e: serde_json::Error| {
            ToolError::new(ToolErrorKind::InvalidArguments, e.to_string())
        })?;
        let result = (self.function)(arguments)?;
        serde_json::to_value(result).map_err(|e| {
            ToolError::new(
                ToolErrorKind::InvalidOutput,
                format!("the result cannot be represented as JSON: {e}"),
            )
        })
    }
}

/// Built-in functions by name.
pub struct BuiltinRegistry {
    functions: BTreeMap<String, Box<dyn Builtin>>,
}

impl std::fmt::Debug for BuiltinRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.functions.keys()).finish()
    }
}

impl Default for BuiltinRegistry {
    /// The built-ins Clarion ships: [`BuiltinRegistry::standard`].
    fn default() -> Self {
        Self::standard()
    }
}

impl BuiltinRegistry {
    /// A registry with no functions.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            functions: BTreeMap::new(),
        }
    }

    /// The built-ins Clarion ships: the [`finance`] functions.
    #[must_use]
    pub fn standard() -> Self {
        let mut registry = Self::empty();
        finance::register(&mut registry);
        registry
    }

    /// Adds (or replaces) the function `name`. Its arguments are parsed into `A`, whose
    /// derived JSON Schema is what flows are checked against; `R`'s schema tells editors
    /// the fields `result.…` has.
    pub fn register<A, R, F>(&mut self, name: impl Into<String>, function: F) -> &mut Self
    where
        A: DeserializeOwned + JsonSchema + 'static,
        R: Serialize + JsonSchema + 'static,
        F: Fn(A) -> Result<R, ToolError> + Send + Sync + 'static,
    {
        self.insert(name.into(), function, false)
    }

    /// [`BuiltinRegistry::register`] for a pure function — the same arguments always give
    /// the same result, and a call changes nothing — which the engine may therefore run
    /// again rather than store its step at once ([`Builtin::replayable`]).
    pub fn register_pure<A, R, F>(&mut self, name: impl Into<String>, function: F) -> &mut Self
    where
        A: DeserializeOwned + JsonSchema + 'static,
        R: Serialize + JsonSchema + 'static,
        F: Fn(A) -> Result<R, ToolError> + Send + Sync + 'static,
    {
        self.insert(name.into(), function, true)
    }

    fn insert<A, R, F>(&mut self, name: String, function: F, replayable: bool) -> &mut Self
    where
        A: DeserializeOwned + JsonSchema + 'static,
        R: Serialize + JsonSchema + 'static,
        F: Fn(A) -> Result<R, ToolError> + Send + Sync + 'static,
    {
        let typed = Typed {
            schema: schema::arguments::<A>(),
            result: schema::result::<R>(),
            function,
            replayable,
            types: PhantomData,
        };
        self.functions.insert(name, Box::new(typed));
        self
    }

    /// The function `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&dyn Builtin> {
        self.functions.get(name).map(AsRef::as_ref)
    }

    /// Runs the function `name`; an unknown name is an `unknown_tool` error.
    pub fn call(&self, name: &str, arguments: &Map<String, Value>) -> Result<Value, ToolError> {
        match self.get(name) {
            Some(function) => function.call(arguments),
            None => Err(ToolError::new(
                ToolErrorKind::UnknownTool,
                format!("there is no built-in `{name}`"),
            )),
        }
    }
}

impl BuiltinCatalog for BuiltinRegistry {
    fn names(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }

    fn describe(&self, name: &str) -> Option<Value> {
        self.get(name).map(|function| function.schema().clone())
    }

    fn describe_result(&self, name: &str) -> Option<Value> {
        self.get(name)?.result_schema().cloned()
    }
}

/// Marker for argument structs that take nothing.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArguments {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Greet {
        name: String,
        times: Option<u32>,
    }

    #[test]
    fn only_functions_registered_as_pure_are_replayable() {
        let mut registry = BuiltinRegistry::standard();
        assert!(
            registry
                .get("finance.savings_timeline")
                .is_some_and(Builtin::replayable)
        );
        registry.register("app.send_mail", |_: NoArguments| Ok(true));
        registry.register_pure("app.double", |n: Greet| Ok(n.times.unwrap_or(1) * 2));
        assert!(
            registry
                .get("app.send_mail")
                .is_some_and(|f| !f.replayable())
        );
        assert!(registry.get("app.double").is_some_and(Builtin::replayable));
    }

    fn registry() -> BuiltinRegistry {
        let mut registry = BuiltinRegistry::empty();
        registry.register("demo.greet", |args: Greet| {
            Ok(json!({ "greeting": format!("hi {}", args.name).repeat(args.times.unwrap_or(1) as usize) }))
        });
        registry.register("demo.nothing", |_: NoArguments| Ok(json!(null)));
        registry
    }

    fn args(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn typed_arguments_are_parsed_and_errors_are_structured() {
        let registry = registry();
        assert_eq!(
            registry.call("demo.greet", &args(json!({"name": "Ana"}))),
            Ok(json!({"greeting": "hi Ana"}))
        );
        let error = registry
            .call("demo.greet", &args(json!({"name": 3})))
            .err()
            .unwrap_or_else(|| panic!("accepted a number"));
        assert_eq!(error.kind, ToolErrorKind::InvalidArguments);
        assert!(
            error.message.contains("expected a string"),
            "{}",
            error.message
        );
        let error = registry
            .call("demo.greet", &args(json!({"name": "a", "extra": 1})))
            .err()
            .unwrap_or_else(|| panic!("accepted an unknown field"));
        assert!(
            error.message.contains("unknown field `extra`"),
            "{}",
            error.message
        );
        let error = registry
            .call("demo.greet", &Map::new())
            .err()
            .unwrap_or_else(|| panic!("accepted nothing"));
        assert!(
            error.message.contains("missing field `name`"),
            "{}",
            error.message
        );
        let error = registry
            .call("demo.nope", &Map::new())
            .err()
            .unwrap_or_else(|| panic!("ran an unknown built-in"));
        assert_eq!(error.kind, ToolErrorKind::UnknownTool);
        assert_eq!(registry.call("demo.nothing", &Map::new()), Ok(json!(null)));
    }

    #[test]
    fn the_catalog_describes_parameters_from_the_rust_types() {
        let registry = registry();
        assert_eq!(registry.names(), ["demo.greet", "demo.nothing"]);
        let schema = registry
            .describe("demo.greet")
            .unwrap_or_else(|| panic!("no schema"));
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"]["name"]["type"], "string");
        assert_eq!(
            schema["properties"]["times"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(schema["required"], json!(["name"]));
        assert!(registry.describe("demo.nope").is_none());
    }
}
