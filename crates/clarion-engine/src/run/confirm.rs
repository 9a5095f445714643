//! Confirmation before a tool acts (`confirm`): the question, and what the user's answer
//! means.
//!
//! A call to a tool with `confirm` is complete but does not run: it is answered
//! `needs_confirmation`, the user is asked the flow's question, and the call waits as the
//! thread's pending call. The next run reads the user's answer and the engine itself makes
//! the call again, in the model's place, so the history shows what happened:
//!
//! - **confirm**: the call runs, once;
//! - **decline**: the call is answered `declined` and nothing runs;
//! - **change**: the call with the changed values is confirmed again;
//! - **unrelated**: the waiting call is dropped and the model answers as usual (a call it
//!   makes again is confirmed anew).
//!
//! The answer is judged by a second, constrained model request, never by keywords: the
//! judge is offered one tool, `decide`, whose `decision` is an enum and whose `changes`
//! take the confirmed tool's own parameter schemas, so "sure, go ahead" confirms and "no
//! wait, make it 300" changes `amount` to 300. Why not simply let the flow's model call the
//! tool again when the user agrees? Because a model that misreads "no" would then run the
//! call: a decline must never depend on the model choosing not to act. The judge's answer
//! only ever selects one of the four outcomes, and anything unusable — no `decide` call, an
//! unknown decision, a failed request — counts as *unrelated*, which runs nothing.
//! An embedder with buttons skips the judge and gives the [`Decision`] itself
//! (`Engine::create_run_deciding`).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use clarion_flow::spec::ToolChoice;
use clarion_flow::{Executor, Flow, Param, Tool};

use crate::model::ModelTurn;

/// The one tool of the model request that reads a user's answer to a confirmation
/// question: its `decision` is `confirm`, `decline`, `change` (with `changes`) or
/// `unrelated`. Scripted models and recordings answer that request with a call of it.
pub const DECIDE_TOOL: &str = "decide";

/// The metadata key on the message of the call the engine makes in the model's place after
/// a confirmation: the decision it acts on (`confirm`, `decline` or `change`). A saved
/// conversation replays that message as the reading of the answer, not as a model turn.
pub const DECISION_KEY: &str = "clarion_decision";

/// The judge's output limit: a `decide` call is a few dozen tokens.
const JUDGE_MAX_TOKENS: u32 = 256;

/// What the user answered when asked to confirm a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decision {
    /// Run the call as asked.
    Confirm,
    /// Do not run it: it is answered `declined`.
    Decline,
    /// Run it with these arguments changed — after the user confirms the changed call.
    Change {
        /// The new values, by parameter name.
        changes: Map<String, Value>,
    },
    /// The answer is about something else: the waiting call is dropped and the model
    /// answers the user as usual.
    Unrelated,
}

impl Decision {
    /// The decision's name, as the judge writes it.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Decline => "decline",
            Self::Change { .. } => "change",
            Self::Unrelated => "unrelated",
        }
    }
}

/// The judge flow of every tool with `confirm`: the flow's model and provider at
/// temperature 0, offered only `decide`, with a short output limit. Not forced to call it
/// (`tool_choice = "required"`): under a grammar, small local models then write the call
/// as text and pad it to the token limit; words instead of a call read as `unrelated`.
pub(crate) fn judges(flow: &Flow) -> IndexMap<String, Flow> {
    flow.tools
        .values()
        .filter(|tool| tool.confirm.is_some())
        .map(|tool| {
            let mut tools = IndexMap::new();
            tools.insert(DECIDE_TOOL.to_owned(), decide_tool(tool));
            let mut judge = flow.with_tools(format!("{}.confirm.{}", flow.name, tool.name), tools);
            judge.assistant.tool_choice = Some(ToolChoice::Auto);
            judge.assistant.temperature = Some(0.0);
            judge.assistant.top_p = None;
            judge.assistant.parallel_tool_calls = None;
            judge.assistant.max_output_tokens = Some(JUDGE_MAX_TOKENS);
            (tool.name.clone(), judge)
        })
        .collect()
}

fn decide_tool(tool: &Tool) -> Tool {
    let properties: Map<String, Value> = tool
        .params
        .values()
        .map(|p| (p.name.clone(), p.schema.clone()))
        .collect();
    let param = |name: &str, required: bool, schema: Value| {
        let description = schema
            .get("description")
            .and_then(Value::as_str)
            .map(ToOwned::to_owned);
        (
            name.to_owned(),
            Param {
                name: name.to_owned(),
                description,
                required,
                ask: None,
                slot: None,
                grounded: false,
                invalid: None,
                max_asks: None,
                on_exhausted: None,
                schema,
            },
        )
    };
    Tool {
        name: DECIDE_TOOL.to_owned(),
        description: Some(
            "Records what the user decided about the call they were asked to confirm.".to_owned(),
        ),
        executor: Executor::Client,
        strict: Some(false),
        follows: Vec::new(),
        confirm: None,
        params: IndexMap::from([
            param(
                "decision",
                true,
                json!({
                    "type": "string",
                    "enum": ["confirm", "decline", "change", "unrelated"],
                    "description": "confirm: the user agrees to exactly this call. decline: the user refuses or cancels it. change: the user wants it with different values. unrelated: the answer is about something else."
                }),
            ),
            param(
                "changes",
                false,
                json!({
                    "type": "object",
                    "properties": properties,
                    "additionalProperties": false,
                    "description": "Only with `change`: the arguments the user changed, with their new values."
                }),
            ),
        ]),
        after: Vec::new(),
        on_error: None,
    }
}

/// The judge's instructions for one waiting call: the call and the question in words.
/// The request's only message is the user's answer — a small model shown the question as
/// an assistant turn of its own answers in kind, with text instead of a call.
pub(crate) fn instructions(tool: &Tool, args: &Map<String, Value>, question: &str) -> String {
    let what = tool
        .description
        .as_deref()
        .map_or_else(String::new, |d| format!(" ({})", d.trim()));
    let args: Vec<String> = args.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!(
        "You read a user's answer to a confirmation question and record what they decided.\n\n\
         The assistant is about to call {tool}{what} with {args}, and asked the user: \
         \"{question}\"\n\n\
         Call {DECIDE_TOOL} with decision \"confirm\" when the user agrees to exactly this \
         (\"yes\", \"sure, go ahead\", \"do it\"); \"decline\" when the user refuses or cancels it \
         (\"no\", \"cancel\", \"don't\"); \"change\" when the user wants other values \
         (\"no wait, make it 300\"), with only the changed arguments and their new values in \
         changes; \"unrelated\" when the answer is about something else.",
        tool = tool.name,
        args = args.join(", "),
    )
}

/// What the judge's turn decided. Anything but one `decide` call with a known decision
/// (and, for `change`, at least one change) is `Unrelated`: it runs nothing.
pub(crate) fn verdict(turn: &ModelTurn) -> Decision {
    let ModelTurn::ToolCalls { calls, .. } = turn else {
        return Decision::Unrelated;
    };
    let Some(call) = calls.iter().find(|c| c.name == DECIDE_TOOL) else {
        return Decision::Unrelated;
    };
    let Ok(Value::Object(mut args)) = serde_json::from_str::<Value>(&call.arguments) else {
        return Decision::Unrelated;
    };
    match args.get("decision").and_then(Value::as_str) {
        Some("confirm") => Decision::Confirm,
        Some("decline") => Decision::Decline,
        Some("change") => match args.remove("changes") {
            Some(Value::Object(changes)) if !changes.is_empty() => Decision::Change { changes },
            _ => Decision::Unrelated,
        },
        _ => Decision::Unrelated,
    }
}

/// The output a call waiting for confirmation gets: the model reads that nothing ran yet.
pub(crate) fn needs_confirmation_output() -> String {
    json!({
        "status": "needs_confirmation",
        "note": "Nothing was done yet: the user has been asked to confirm this call, and their answer comes as the next user message. Clarion makes the call once they confirm; do not call it again yourself.",
    })
    .to_string()
}

/// The rendered question: the flow's `confirm` template, or a plain one when it fails.
pub(crate) fn question(
    tool: &Tool,
    args: &Map<String, Value>,
    slots: &Map<String, Value>,
) -> String {
    tool.confirm
        .as_deref()
        .and_then(|template| super::rules::render_with_args(template, args, slots))
        .unwrap_or_else(|| {
            let shown: Vec<String> = args.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            format!(
                "Shall I go ahead with {} ({})?",
                tool.name,
                shown.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thread::ToolCall;

    fn decide(arguments: &str) -> ModelTurn {
        ModelTurn::ToolCalls {
            text: None,
            calls: vec![ToolCall {
                id: "c".to_owned(),
                name: DECIDE_TOOL.to_owned(),
                arguments: arguments.to_owned(),
            }],
        }
    }

    #[test]
    fn only_a_clear_decide_call_decides() {
        assert_eq!(
            verdict(&decide(r#"{"decision":"confirm"}"#)),
            Decision::Confirm
        );
        assert_eq!(
            verdict(&decide(r#"{"decision":"decline"}"#)),
            Decision::Decline
        );
        assert_eq!(
            verdict(&decide(r#"{"decision":"change","changes":{"amount":300}}"#)),
            Decision::Change {
                changes: serde_json::from_str(r#"{"amount":300}"#).unwrap_or_default()
            }
        );
        // A change that changes nothing, an unknown decision, broken JSON, words, or
        // another tool: nothing runs.
        for unusable in [
            decide(r#"{"decision":"change"}"#),
            decide(r#"{"decision":"change","changes":{}}"#),
            decide(r#"{"decision":"yes"}"#),
            decide("{not json"),
            ModelTurn::Text("Sure!".to_owned()),
            ModelTurn::ToolCalls {
                text: None,
                calls: vec![ToolCall {
                    id: "c".to_owned(),
                    name: "reply".to_owned(),
                    arguments: r#"{"decision":"confirm"}"#.to_owned(),
                }],
            },
        ] {
            assert_eq!(verdict(&unusable), Decision::Unrelated, "{unusable:?}");
        }
    }

    #[test]
    fn decisions_serialize_as_the_judge_writes_them() {
        let change = Decision::Change {
            changes: serde_json::from_str(r#"{"amount":300}"#).unwrap_or_default(),
        };
        assert_eq!(
            serde_json::to_string(&change).unwrap_or_default(),
            r#"{"decision":"change","changes":{"amount":300}}"#
        );
        assert_eq!(change.as_str(), "change");
        assert_eq!(
            serde_json::to_string(&Decision::Confirm).unwrap_or_default(),
            r#"{"decision":"confirm"}"#
        );
    }
}
