//! Preparing one tool call: from the model's raw arguments to arguments a tool can run
//! with, or a precise reason why not.
//!
//! The order of sources is the user's intent: what the model passed now wins, then what a
//! pending call already knew, then remembered slots. Every problem with the arguments is
//! reported at once, so the model can fix them all in one more turn; a required parameter
//! that is still missing is not an error but a question for the user. A grounded
//! parameter's value the user never stated is dropped first (see [`super::grounding`]).
//!
//! A value that fails its parameter's schema is the model's mistake to fix, unless the
//! flow gave the parameter an `invalid` message: then the value is the user's (an amount
//! out of range, a term too long), so it is dropped and the user is asked with the
//! author's words ([`Rejection`] carries what the message may quote). Each question is
//! counted on the pending call; one more than `max_asks` gives the call up
//! ([`Prepared::Exhausted`]) instead of asking again.

use crate::codes::ToolErrorKind;
use std::collections::{BTreeMap, HashMap};

use jsonschema::error::ValidationErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::grounding::{Claim, Said, ValueKind};
use crate::thread::{PendingCall, ToolCall};
use crate::tool::ToolError;
use clarion_flow::suggest;
use clarion_flow::{Flow, Tool};

/// Compiled JSON Schema validators for every parameter and slot of a flow, built once.
pub(crate) struct Validators {
    params: HashMap<(String, String), jsonschema::Validator>,
    slots: HashMap<String, jsonschema::Validator>,
}

impl std::fmt::Debug for Validators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validators")
            .field("params", &self.params.len())
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Validators {
    /// Compiles every schema of `flow` (the loader has meta-validated them, so a schema
    /// that still fails to compile accepts anything rather than blocking the run).
    #[must_use]
    pub(crate) fn new(flow: &Flow) -> Self {
        let mut params = HashMap::new();
        for tool in flow.tools.values() {
            for param in tool.params.values() {
                if let Ok(validator) = jsonschema::validator_for(&param.schema) {
                    params.insert((tool.name.clone(), param.name.clone()), validator);
                }
            }
        }
        let slots = flow
            .slots
            .values()
            .filter_map(|slot| {
                Some((
                    slot.name.clone(),
                    jsonschema::validator_for(&slot.schema).ok()?,
                ))
            })
            .collect();
        Self { params, slots }
    }

    /// Every problem with `value` as parameter `param` of `tool`.
    #[must_use]
    pub(crate) fn param_problems(&self, tool: &str, param: &str, value: &Value) -> Vec<String> {
        self.params
            .get(&(tool.to_owned(), param.to_owned()))
            .map(|v| {
                v.iter_errors(value)
                    .map(|e| {
                        let at = e.instance_path().as_str().to_owned();
                        format!("`{param}{at}`: {e}")
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Why `value` fails parameter `param` of `tool`, as an `invalid` message may quote
    /// it: the first failing keyword (in the schema's order), or `None` when it fits.
    #[must_use]
    pub(crate) fn rejection(&self, tool: &str, param: &str, value: &Value) -> Option<Rejection> {
        let validator = self.params.get(&(tool.to_owned(), param.to_owned()))?;
        let error = validator.iter_errors(value).next()?;
        let kind = error.kind();
        Some(Rejection {
            param: param.to_owned(),
            keyword: kind.keyword().to_owned(),
            limit: limit(kind),
            value: value.clone(),
        })
    }

    /// Whether `value` fits slot `slot`.
    #[must_use]
    pub(crate) fn slot_accepts(&self, slot: &str, value: &Value) -> bool {
        self.slots.get(slot).is_none_or(|v| v.is_valid(value))
    }
}

/// A value the model passed that failed its parameter's schema, where the parameter has an
/// `invalid` message: what that message may read as `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rejection {
    /// The parameter.
    pub param: String,
    /// The JSON Schema keyword the value failed (`maximum`, `enum`, `type`…), as
    /// jsonschema names it.
    pub keyword: String,
    /// The keyword's limit where it has one: `50` for `maximum = 50`, the allowed values
    /// for `enum`, the pattern for `pattern`; `None` for keywords without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Value>,
    /// The rejected value.
    pub value: Value,
}

/// The limit a failed keyword names, from jsonschema's error kind (the value the author
/// wrote in the schema).
fn limit(kind: &ValidationErrorKind) -> Option<Value> {
    match kind {
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => Some(limit.clone()),
        ValidationErrorKind::MaxLength { limit }
        | ValidationErrorKind::MinLength { limit }
        | ValidationErrorKind::MaxItems { limit }
        | ValidationErrorKind::MinItems { limit }
        | ValidationErrorKind::MaxProperties { limit }
        | ValidationErrorKind::MinProperties { limit } => Some(Value::from(*limit)),
        ValidationErrorKind::Enum { options } => Some(options.as_ref().clone()),
        ValidationErrorKind::Constant { expected_value } => Some(expected_value.as_ref().clone()),
        ValidationErrorKind::Pattern { pattern } => Some(Value::String(pattern.clone())),
        ValidationErrorKind::Format { format } => Some(Value::String(format.clone())),
        ValidationErrorKind::MultipleOf { multiple_of } => {
            serde_json::Number::from_f64(*multiple_of).map(Value::Number)
        }
        _ => None,
    }
}

/// A call given up because a missing parameter's asks ran out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GivenUp {
    /// The parameters whose asks are used up, in declaration order.
    pub params: Vec<String>,
    /// How many times the user was asked for them.
    pub asked: u32,
    /// Validated arguments known so far.
    pub args: Map<String, Value>,
    /// Values dropped for failing their schema on this last try.
    pub rejected: Vec<Rejection>,
}

/// What a call is ready for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Prepared {
    /// It cannot run; the model reads why.
    Rejected(ToolError),
    /// A missing parameter has been asked for `max_asks` times already: the call is given
    /// up rather than asked again.
    Exhausted(GivenUp),
    /// Required parameters are missing; the user will be asked.
    NeedsInput {
        /// Validated arguments known so far.
        args: Map<String, Value>,
        /// Missing parameters in declaration order.
        missing: Vec<String>,
        /// Grounded parameters whose value the model made up, dropped.
        unstated: Vec<String>,
        /// Parameters filled from their slot.
        from_slots: Vec<String>,
        /// Values dropped for failing their schema, each asked with its `invalid`.
        rejected: Vec<Rejection>,
        /// How many times each missing parameter will have been asked, this time included.
        asked: BTreeMap<String, u32>,
    },
    /// It is complete, and waits for the user's confirmation (`confirm`) before it runs.
    NeedsConfirmation {
        /// Validated, complete arguments.
        args: Map<String, Value>,
    },
    /// It can run.
    Ready {
        /// Validated, complete arguments.
        args: Map<String, Value>,
        /// Grounded parameters whose value the model made up, dropped.
        unstated: Vec<String>,
        /// Parameters filled from their slot.
        from_slots: Vec<String>,
    },
}

/// Prepares `call`. `pending` is the thread's pending call when it is for the same tool;
/// `said` is what the user said in the thread, for grounded parameters.
#[must_use]
pub(crate) fn prepare(
    flow: &Flow,
    validators: &Validators,
    call: &ToolCall,
    slots: &Map<String, Value>,
    pending: Option<&PendingCall>,
    said: &Said,
) -> Prepared {
    let Some(tool) = flow.tools.get(&call.name) else {
        let names: Vec<&str> = flow.tools.keys().map(String::as_str).collect();
        let hint = suggest::closest(&call.name, names.iter().copied())
            .map_or_else(String::new, |near| format!("; did you mean `{near}`?"));
        return Prepared::Rejected(ToolError::new(
            ToolErrorKind::UnknownTool,
            format!(
                "there is no tool `{}`{hint} (tools: {})",
                call.name,
                names.join(", ")
            ),
        ));
    };
    let mut args = match parse_arguments(&call.arguments) {
        Ok(args) => args,
        Err(message) => {
            return Prepared::Rejected(ToolError::new(ToolErrorKind::InvalidArguments, message));
        }
    };
    let mut problems: Vec<String> = args
        .keys()
        .filter(|name| !tool.params.contains_key(*name))
        .map(|name| {
            format!(
                "`{name}` is not a parameter of `{}` (parameters: {})",
                tool.name,
                param_list(tool)
            )
        })
        .collect();
    let mut rejected = Vec::new();
    for (name, value) in &args {
        let Some(param) = tool.params.get(name) else {
            continue;
        };
        // The author's message replaces the model's error only for a value the user can
        // be asked for again (the loader allows `invalid` on required parameters only).
        if param.invalid.is_some() && param.required {
            rejected.extend(validators.rejection(&tool.name, name, value));
        } else {
            problems.extend(validators.param_problems(&tool.name, name, value));
        }
    }
    if !problems.is_empty() {
        return Prepared::Rejected(ToolError::new(
            ToolErrorKind::InvalidArguments,
            problems.join("; "),
        ));
    }
    for rejection in &rejected {
        args.remove(&rejection.param);
    }
    // Only now, so a malformed value is reported to the model rather than silently asked.
    let mut unstated = unstated(tool, &args, pending, said);
    let dropped: Vec<(String, Option<Value>)> = unstated
        .iter()
        .map(|name| (name.clone(), args.remove(name)))
        .collect();
    // `fill` takes a pending or remembered value only when it fits the parameter.
    let from_slots = fill(tool, validators, &mut args, slots, pending, &rejected);
    // A value the slot or the pending call gives back unchanged was known, not guessed.
    unstated.retain(|name| {
        dropped
            .iter()
            .any(|(dropped, value)| dropped == name && args.get(name) != value.as_ref())
    });
    let missing: Vec<String> = tool
        .params
        .values()
        .filter(|p| p.required && !args.contains_key(&p.name))
        .map(|p| p.name.clone())
        .collect();
    if missing.is_empty() {
        return Prepared::Ready {
            args,
            unstated,
            from_slots,
        };
    }
    ask_or_give_up(tool, pending, args, missing, unstated, from_slots, rejected)
}

/// A call with `missing` parameters: a question for the user, counted against each
/// parameter's `max_asks` — or, when one has been asked that many times, the call given up.
fn ask_or_give_up(
    tool: &Tool,
    pending: Option<&PendingCall>,
    args: Map<String, Value>,
    missing: Vec<String>,
    unstated: Vec<String>,
    from_slots: Vec<String>,
    rejected: Vec<Rejection>,
) -> Prepared {
    let asked: BTreeMap<String, u32> = missing
        .iter()
        .map(|name| {
            let before = pending.map_or(0, |p| p.times_asked(name));
            (name.clone(), before.saturating_add(1))
        })
        .collect();
    let exhausted: Vec<String> = missing
        .iter()
        .filter(|name| {
            let limit = tool.params.get(*name).and_then(|p| p.max_asks);
            limit.is_some_and(|limit| asked.get(*name).is_some_and(|n| *n > limit))
        })
        .cloned()
        .collect();
    if !exhausted.is_empty() {
        let asked = exhausted
            .iter()
            .filter_map(|name| asked.get(name))
            .max()
            .map_or(0, |n| n.saturating_sub(1));
        return Prepared::Exhausted(GivenUp {
            params: exhausted,
            asked,
            args,
            rejected,
        });
    }
    Prepared::NeedsInput {
        args,
        missing,
        unstated,
        from_slots,
        rejected,
        asked,
    }
}

/// The grounded parameters whose values the user did not state. Every value of the call
/// takes part (one mention grounds one value), grounded or not; the parameters the
/// pending call asked for may take a derived answer from the user's latest message.
fn unstated(
    tool: &Tool,
    args: &Map<String, Value>,
    pending: Option<&PendingCall>,
    said: &Said,
) -> Vec<String> {
    if !tool
        .params
        .values()
        .any(|p| p.grounded && args.contains_key(&p.name))
    {
        return Vec::new();
    }
    let claims: Vec<Claim<'_>> = tool
        .params
        .values()
        .filter_map(|p| {
            Some(Claim {
                param: &p.name,
                value: args.get(&p.name)?,
                kind: ValueKind::of(&p.schema),
                grounded: p.grounded,
                asked: pending.is_some_and(|pending| pending.missing.contains(&p.name)),
            })
        })
        .collect();
    said.unstated(&claims)
}

/// Parses the model's arguments: a JSON object, where `null` means "not given" (strict mode
/// makes optional parameters nullable). An empty string is an empty object.
pub(crate) fn parse_arguments(raw: &str) -> Result<Map<String, Value>, String> {
    if raw.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(mut args)) => {
            args.retain(|_, v| !v.is_null());
            Ok(args)
        }
        Ok(other) => Err(format!(
            "arguments must be a JSON object, not {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
        Err(error) => Err(format!("arguments are not valid JSON ({error})")),
    }
}

/// Fills parameters the model left out: from the pending call, then from slots, each only
/// when the value fits the parameter. Returns the parameters filled from their slot.
fn fill(
    tool: &Tool,
    validators: &Validators,
    args: &mut Map<String, Value>,
    slots: &Map<String, Value>,
    pending: Option<&PendingCall>,
    rejected: &[Rejection],
) -> Vec<String> {
    let mut from_slots = Vec::new();
    for param in tool.params.values() {
        // A rejected value is the user's latest word on it: an older one would overrule
        // them silently, so they are asked.
        if args.contains_key(&param.name) || rejected.iter().any(|r| r.param == param.name) {
            continue;
        }
        let from_pending = pending.and_then(|p| p.known.get(&param.name));
        let from_slot = param.slot.as_ref().and_then(|s| slots.get(s));
        let fits = |v: &&Value| {
            validators
                .param_problems(&tool.name, &param.name, v)
                .is_empty()
        };
        if let Some(value) = from_pending.filter(fits) {
            args.insert(param.name.clone(), value.clone());
        } else if let Some(value) = from_slot.filter(fits) {
            args.insert(param.name.clone(), value.clone());
            from_slots.push(param.name.clone());
        }
    }
    from_slots
}

fn param_list(tool: &Tool) -> String {
    tool.params
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_names_the_failed_keyword_and_its_limit() {
        let text = r#"
            [flow]
            name = "t"
            [assistant]
            model = "m"
            instructions = "i"
            [tools.loan]
            description = "Loan."
            client = true
            [tools.loan.params.years]
            type = "integer"
            maximum = 50
            description = "Years."
            ask = "How many years?"
            [tools.loan.params.kind]
            type = "string"
            enum = ["fixed", "variable"]
            description = "Rate kind."
            ask = "Fixed or variable?"
        "#;
        let Some(flow) = clarion_flow::load_str("t.toml", text, None).flow else {
            panic!("the flow does not load");
        };
        let validators = Validators::new(&flow);
        let years = validators.rejection("loan", "years", &serde_json::json!(80));
        assert_eq!(
            years.map(|r| (r.keyword, r.limit)),
            Some(("maximum".to_owned(), Some(serde_json::json!(50))))
        );
        let kind = validators.rejection("loan", "kind", &serde_json::json!("mixed"));
        assert_eq!(
            kind.map(|r| (r.keyword, r.limit)),
            Some((
                "enum".to_owned(),
                Some(serde_json::json!(["fixed", "variable"]))
            ))
        );
        let typed = validators.rejection("loan", "years", &serde_json::json!("thirty"));
        assert_eq!(
            typed.map(|r| (r.keyword, r.limit)),
            Some(("type".to_owned(), None))
        );
        assert_eq!(
            validators.rejection("loan", "years", &serde_json::json!(30)),
            None
        );
    }

    #[test]
    fn arguments_parse_leniently_but_not_loosely() {
        assert_eq!(parse_arguments(""), Ok(Map::new()));
        let args = parse_arguments(r#"{"a": 1, "b": null}"#).unwrap_or_default();
        assert_eq!(args.len(), 1, "null means not given");
        assert_eq!(
            parse_arguments("[1]"),
            Err("arguments must be a JSON object, not an array".into())
        );
        assert!(
            parse_arguments("{oops").is_err_and(|e| e.starts_with("arguments are not valid JSON"))
        );
    }
}
