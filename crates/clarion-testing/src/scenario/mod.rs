//! Conversation scenarios: a flow's conversations, scripted and checked offline.
//!
//! A scenario file (TOML, `flows/NAME/scenarios/*.toml` beside `flows/NAME.toml`) holds the
//! user's turns and, for each, what the model does — reply, or call tools with given
//! arguments — plus tool stand-ins ([`mock`]) and expectations ([`expect`]). Playing it
//! (`play`) drives the real [`Engine`](clarion_engine::Engine) with a scripted model, so the
//! flow's rules, slots, questions and pending calls behave exactly as in production, and
//! yields a [`transcript`](crate::transcript) to snapshot.
//!
//! - [`spec`]: the file format as serde types (the source of its JSON Schema);
//! - [`schema`]: the generated JSON Schema (`schemas/scenario.schema.json`);
//! - [`structure`]: structural checks against it;
//! - [`check`]: checks against the flow (tools, parameters, mocks, slots);
//! - [`load`]: file → checked [`Scenario`], or every diagnostic;
//! - [`mock`]: the mocking tool executor;
//! - `play`: runs a scenario through the engine;
//! - [`expect`]: evaluates `[turns.expect]`.
//!
//! The reference is docs/testing.md; `clarion test` and [`crate`] use this.

pub mod check;
pub mod expect;
pub mod load;
pub mod mock;
pub mod play;
pub mod schema;
pub mod spec;
pub mod structure;

use serde_json::{Map, Value};

pub use load::{FlowCache, Scenario, ScenarioReport, default_flow_path, load_file, load_str};
pub use mock::{MockExecutor, MockOutcome};
pub use play::{Played, play};

use spec::{MockError, StepSpec};

/// One tool call of a model step, as scripted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScriptedCall<'a> {
    pub tool: &'a str,
    pub args: Option<&'a Map<String, Value>>,
    pub arguments: Option<&'a str>,
    pub result: Option<&'a Value>,
    pub error: Option<&'a MockError>,
    pub timeout: Option<bool>,
}

impl ScriptedCall<'_> {
    /// The arguments as the model would send them.
    pub(crate) fn arguments_text(&self) -> String {
        match (self.arguments, self.args) {
            (Some(raw), _) => raw.to_owned(),
            (None, Some(args)) => Value::Object(args.clone()).to_string(),
            (None, None) => "{}".to_owned(),
        }
    }

    /// The call's own outcome, if it has exactly one.
    pub(crate) fn outcome(&self) -> Option<MockOutcome> {
        MockOutcome::from_parts(self.result, self.error, self.timeout)
    }

    /// Whether the call sets any of `result`, `error` or `timeout`.
    pub(crate) fn has_outcome_keys(&self) -> bool {
        self.result.is_some() || self.error.is_some() || self.timeout.is_some()
    }
}

/// The calls of a step with, for each, the JSON pointer of its table and of its tool name.
pub(crate) fn step_calls<'a>(
    step: &'a StepSpec,
    at: &str,
) -> Vec<(ScriptedCall<'a>, String, String)> {
    if let Some(tool) = &step.call {
        let call = ScriptedCall {
            tool,
            args: step.args.as_ref(),
            arguments: step.arguments.as_deref(),
            result: step.result.as_ref(),
            error: step.error.as_ref(),
            timeout: step.timeout,
        };
        return vec![(call, at.to_owned(), format!("{at}/call"))];
    }
    step.calls
        .iter()
        .flatten()
        .enumerate()
        .map(|(k, c)| {
            let call = ScriptedCall {
                tool: &c.tool,
                args: c.args.as_ref(),
                arguments: c.arguments.as_deref(),
                result: c.result.as_ref(),
                error: c.error.as_ref(),
                timeout: c.timeout,
            };
            let here = format!("{at}/calls/{k}");
            let tool_at = format!("{here}/tool");
            (call, here, tool_at)
        })
        .collect()
}
