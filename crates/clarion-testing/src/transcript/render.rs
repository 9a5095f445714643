//! The renderer: events in, lines out.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::{Redactor, StableIds};
use clarion_engine::Decision;
use clarion_engine::Event;
use clarion_engine::ExhaustedOutcome;
use clarion_engine::IncompleteReason;
use clarion_engine::OutputStatus;
use clarion_engine::{Run, RunStatus};
use clarion_flow::Flow;

/// A transcript being written. Feed it in conversation order, then [`Transcript::finish`].
#[derive(Debug, Default)]
pub struct Transcript {
    out: String,
    ids: StableIds,
    redactor: Redactor,
    /// Arguments each call was made with, as the model wrote them (parsed).
    called: HashMap<String, Option<Map<String, Value>>>,
    /// Calls in the current model response; outputs name their tool when there are several.
    batch: usize,
    /// Whether the previous event was a tool call (a new response starts a new batch).
    calling: bool,
    /// Whether the current response's tools are running: rule effects come before their
    /// call's output in the event stream, and are shown after it.
    executing: bool,
    effects: Vec<String>,
    /// Each tool's parameters in declaration order, for showing the arguments calls ran
    /// with in a stable, familiar order.
    params: HashMap<String, Vec<String>>,
}

impl Transcript {
    /// An empty transcript that redacts with `redactor`.
    #[must_use]
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            ..Self::default()
        }
    }

    /// An empty transcript of a conversation with `flow`: arguments are listed in the
    /// order the flow declares its parameters, and the flow's secrets are redacted.
    #[must_use]
    pub fn for_flow(flow: &Flow) -> Self {
        let params = flow
            .tools
            .values()
            .map(|t| (t.name.clone(), t.params.keys().cloned().collect()))
            .collect();
        Self {
            params,
            ..Self::new(super::redact::for_flow(flow))
        }
    }

    /// Keeps an id that is already stable (e.g. a scripted call id) out of the renumbering.
    pub fn reserve_id(&mut self, id: &str) {
        self.ids.reserve(id);
    }

    /// The user's message (starts a turn).
    pub fn user(&mut self, text: &str) {
        self.flush();
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        self.block("user: ", text);
    }

    /// Whether [`Transcript::events`] shows `event`: what a session that renders its
    /// transcript later must keep. Streamed text, status changes, commits and model
    /// requests are not shown (the reply, the tools and the run's end are), nor are the
    /// coverage events.
    #[must_use]
    pub fn shows(event: &Event) -> bool {
        !matches!(
            event,
            Event::TextDelta { .. }
                | Event::Status { .. }
                | Event::StepCommitted { .. }
                | Event::ModelCalled { .. }
                | Event::FilledFromSlots { .. }
                | Event::RuleEvaluated { .. }
        )
    }

    /// The events of a run (or part of one), in the order they were emitted.
    pub fn events(&mut self, events: &[Event]) {
        for event in events {
            self.event(event);
        }
    }

    /// The app submitted the output of a client tool call.
    pub fn submitted(&mut self, tool: &str) {
        self.flush();
        self.line(&format!("  ⇠ the app answers {tool}"));
        self.calling = false;
    }

    /// Where a run ended up (or stopped to wait).
    pub fn run(&mut self, run: &Run) {
        self.flush();
        let id = self.ids.map(&run.id);
        let status = run.status.as_str();
        let line = match (run.status, &run.last_error) {
            (RunStatus::RequiresAction, _) => {
                let tools: Vec<&str> = run
                    .required_action
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                format!(
                    "[{id} {status}: waiting for the app to run {}]",
                    tools.join(", ")
                )
            }
            (RunStatus::Incomplete, _) => {
                let why = match run.incomplete_details {
                    Some(IncompleteReason::MaxOutputTokens) => {
                        "the model's turn was cut off at its output token limit".to_owned()
                    }
                    Some(IncompleteReason::ContentFilter) => {
                        "the provider's content filter stopped the model's turn".to_owned()
                    }
                    Some(IncompleteReason::RepeatedCall) => {
                        "the model repeated a call that had already succeeded, twice".to_owned()
                    }
                    Some(IncompleteReason::AsksExhausted) => {
                        "the user was asked `max_asks` times without a usable value".to_owned()
                    }
                    _ => format!(
                        "the step limit was reached after {} model requests",
                        run.steps
                    ),
                };
                format!("[{id} {status}: {why}]")
            }
            (_, Some(error)) => format!("[{id} {status}: {} — {}]", error.code, error.message),
            _ => format!("[{id} {status}]"),
        };
        self.line(&line);
        self.executing = false;
    }

    /// The transcript, with ids renumbered and secrets redacted.
    #[must_use]
    pub fn finish(mut self) -> String {
        self.flush();
        let text = self.ids.replace_all(&self.out);
        self.redactor.apply(&text).into_owned()
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::ToolCalled {
                call_id,
                name,
                arguments,
            } => self.tool_called(call_id, name, arguments),
            Event::ToolStarted {
                call_id,
                name,
                arguments,
            } => {
                self.calling = false;
                self.flush();
                self.executing = true;
                let Value::Object(args) = arguments else {
                    return;
                };
                let as_called = self.called.get(call_id).cloned().flatten();
                if as_called.as_ref() != Some(args) {
                    let tool = self.tool_prefix(name, " ");
                    let args = self.in_declared_order(name, args);
                    self.line(&format!("  ▸ {tool}runs with {}", arguments_list(&args)));
                }
            }
            Event::ToolFinished {
                name,
                status,
                content,
                ..
            } => {
                self.calling = false;
                let line = format!(
                    "  ← {}{}",
                    self.tool_prefix(name, ": "),
                    output(*status, content)
                );
                self.line(&line);
                self.flush();
            }
            Event::QuestionAsked { params, text, .. } => {
                self.calling = false;
                self.flush();
                self.executing = false;
                self.line(&format!(
                    "  ? asks for {}: {}",
                    params.join(", "),
                    quoted(text)
                ));
            }
            Event::ConfirmationAsked { .. } | Event::ConfirmationAnswered { .. } => {
                self.confirmation(event);
            }
            Event::HandedOff { .. } | Event::HandedBack { .. } => self.handoff(event),
            Event::ContextInjected { tool, text } => {
                self.calling = false;
                let prefix = if self.batch > 1 {
                    format!("  + context from {tool}: ")
                } else {
                    "  + context: ".to_owned()
                };
                self.effect(&prefix, text);
            }
            Event::SlotSet { name, value } => {
                self.effect_line(&format!("  = slot {name} ← {}", inline_json(value)));
            }
            Event::NotStated { params, .. } => {
                let params = params.join(", ");
                self.effect_line(&format!("  ✗ not stated by the user, dropped: {params}"));
            }
            Event::ValueRejected {
                param,
                keyword,
                limit,
                value,
                ..
            } => self.value_rejected(param, keyword, limit.as_ref(), value),
            Event::AsksExhausted {
                params,
                asked,
                outcome,
                ..
            } => self.asks_exhausted(params, *asked, *outcome),
            Event::PendingAbandoned { tool, .. } => {
                self.calling = false;
                self.flush();
                self.line(&format!("  ✗ abandons the pending {tool} call"));
            }
            Event::RuleSkipped { tool, reason } => {
                self.effect_line(&format!("  ! a rule of {tool} was skipped: {reason}"));
            }
            Event::AssistantMessage { text } => {
                self.calling = false;
                self.flush();
                self.executing = false;
                self.block("assistant: ", text);
            }
            // Streamed text is in the assistant line; statuses come from `run`. A kind of
            // event added later is not shown until it is given a line here.
            _ => {}
        }
    }

    /// A value dropped for failing its schema (the question that follows is the flow's
    /// `invalid` message).
    fn value_rejected(&mut self, param: &str, keyword: &str, limit: Option<&Value>, value: &Value) {
        let limit = limit.map_or_else(String::new, |l| format!(" {}", inline_json(l)));
        self.effect_line(&format!(
            "  ✗ {param} = {} fails `{keyword}`{limit}, dropped",
            inline_json(value)
        ));
    }

    /// A call given up after `max_asks` questions, and what follows.
    fn asks_exhausted(&mut self, params: &[String], asked: u32, outcome: ExhaustedOutcome) {
        let next = match outcome {
            ExhaustedOutcome::Inject => "the call is given up, context for the model",
            ExhaustedOutcome::End => "the call is given up, the run ends",
            ExhaustedOutcome::HandOff => "the call is given up, another flow takes over",
            _ => "the call is given up",
        };
        self.effect_line(&format!(
            "  ✗ asked for {} {asked} {} without a usable value (max_asks): {next}",
            params.join(", "),
            if asked == 1 { "time" } else { "times" },
        ));
    }

    /// A call line; consecutive calls form one batch.
    fn tool_called(&mut self, call_id: &str, name: &str, arguments: &str) {
        self.flush();
        if !self.calling {
            self.batch = 0;
            self.executing = false;
        }
        self.calling = true;
        self.batch += 1;
        let parsed = serde_json::from_str::<Value>(arguments)
            .ok()
            .and_then(|v| match v {
                Value::Object(map) => Some(map),
                _ => None,
            });
        let line = match &parsed {
            Some(args) => format!("  → {name}({})", arguments_list(args)),
            None => format!("  → {name} with arguments `{arguments}` (not a JSON object)"),
        };
        self.called.insert(call_id.to_owned(), parsed);
        self.line(&line);
    }

    /// `args` in the order `tool` declares its parameters (unknown ones last).
    fn in_declared_order(&self, tool: &str, args: &Map<String, Value>) -> Map<String, Value> {
        let mut ordered = Map::new();
        for param in self.params.get(tool).into_iter().flatten() {
            if let Some(value) = args.get(param) {
                ordered.insert(param.clone(), value.clone());
            }
        }
        for (key, value) in args {
            if !ordered.contains_key(key) {
                ordered.insert(key.clone(), value.clone());
            }
        }
        ordered
    }

    /// `name: ` before an output when the response made several calls.
    fn tool_prefix(&self, name: &str, separator: &str) -> String {
        if self.batch > 1 {
            format!("{name}{separator}")
        } else {
            String::new()
        }
    }

    /// A one-line effect (slot set, value dropped, rule skipped), which ends a call block.
    fn effect_line(&mut self, line: &str) {
        self.calling = false;
        self.effect("", line);
    }

    /// A slot set, context injected or rule skipped: held back while tools run, so it shows
    /// under the output that caused it.
    fn effect(&mut self, prefix: &str, text: &str) {
        let mut rendered = String::new();
        write_block(&mut rendered, prefix, text);
        if self.executing {
            self.effects.push(rendered);
        } else {
            self.out.push_str(&rendered);
        }
    }

    fn flush(&mut self) {
        for effect in self.effects.drain(..) {
            self.out.push_str(&effect);
        }
    }

    fn line(&mut self, line: &str) {
        self.out.push_str(line);
        self.out.push('\n');
    }

    /// A confirmation asked, or the reading of the user's answer to one.
    fn confirmation(&mut self, event: &Event) {
        self.calling = false;
        self.flush();
        match event {
            Event::ConfirmationAsked { tool, text, .. } => {
                self.executing = false;
                self.line(&format!("  ? asks to confirm {tool}: {}", quoted(text)));
            }
            Event::ConfirmationAnswered { tool, decision, .. } => {
                self.line(&answered(tool, decision));
            }
            _ => {}
        }
    }

    /// The thread handed to another flow, or back.
    fn handoff(&mut self, event: &Event) {
        self.calling = false;
        self.flush();
        let slots = |slots: &Map<String, Value>| {
            if slots.is_empty() {
                String::new()
            } else {
                let pairs: Vec<String> = slots.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!(" with {}", pairs.join(", "))
            }
        };
        match event {
            Event::HandedOff {
                to,
                comes_back,
                slots: with,
                ..
            } => {
                let back = if *comes_back { " (comes back)" } else { "" };
                self.line(&format!("  >> handed to {to}{back}{}", slots(with)));
            }
            Event::HandedBack {
                from,
                to,
                slots: back,
            } => {
                self.line(&format!("  << {from} handed back to {to}{}", slots(back)));
            }
            _ => {}
        }
    }

    fn block(&mut self, prefix: &str, text: &str) {
        write_block(&mut self.out, prefix, text);
    }
}

/// `prefix` then `text`; further lines of `text` are indented to line up under the first.
fn write_block(out: &mut String, prefix: &str, text: &str) {
    let indent = " ".repeat(prefix.chars().count());
    let mut lines = text.trim_end().lines();
    let first = lines.next().unwrap_or_default();
    let _ = writeln!(out, "{prefix}{first}");
    for line in lines {
        if line.trim().is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{indent}{line}");
        }
    }
}

/// The line for how a user's answer to a confirmation was read.
fn answered(tool: &str, decision: &Decision) -> String {
    match decision {
        Decision::Confirm => format!("  ✓ the user confirms {tool}"),
        Decision::Decline => format!("  ✗ the user declines {tool}"),
        Decision::Change { changes } => {
            format!("  ~ the user changes {tool}: {}", arguments_list(changes))
        }
        _ => format!("  ✗ the answer is not about {tool}: the call is dropped"),
    }
}

fn arguments_list(args: &Map<String, Value>) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}: {}", inline_json(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn output(status: OutputStatus, content: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(content).ok();
    match status {
        OutputStatus::Ok => match &parsed {
            Some(value) => format!("ok {}", inline_json(value)),
            None => format!("ok {}", quoted(content)),
        },
        OutputStatus::NeedsInput => {
            let missing: Vec<&str> = parsed
                .as_ref()
                .and_then(|v| v.get("missing"))
                .and_then(Value::as_array)
                .map(|m| m.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("needs input: {}", missing.join(", "))
        }
        OutputStatus::NeedsConfirmation => "needs confirmation".to_owned(),
        OutputStatus::Error | OutputStatus::Cancelled | OutputStatus::Expired => {
            let word = match status {
                OutputStatus::Cancelled => "cancelled",
                OutputStatus::Expired => "expired",
                _ => "error",
            };
            let error = parsed.as_ref().and_then(|v| v.get("error"));
            let kind = error.and_then(|e| e.get("kind")).and_then(Value::as_str);
            let message = error.and_then(|e| e.get("message")).and_then(Value::as_str);
            match (kind, message) {
                (Some(kind), Some(message)) if kind == word => format!("{word}: {message}"),
                (Some(kind), Some(message)) => format!("{word} ({kind}): {message}"),
                _ => format!("{word} {content}"),
            }
        }
    }
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.trim().replace('\n', " "))
}

/// JSON on one line, spaced for reading: `{"months": 50, "tags": ["a", "b"]}`.
#[must_use]
pub fn inline_json(value: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, value);
    out
}

fn write_json(out: &mut String, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_json(out, item);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_spaced_on_one_line() {
        let value = json!({"a": [1, 2.5, "x"], "b": {"c": null, "d": true}});
        assert_eq!(
            inline_json(&value),
            r#"{"a": [1, 2.5, "x"], "b": {"c": null, "d": true}}"#
        );
    }

    #[test]
    fn multi_line_text_lines_up_under_its_prefix() {
        let mut out = String::new();
        write_block(&mut out, "assistant: ", "One.\n\nTwo.\n");
        assert_eq!(out, "assistant: One.\n\n           Two.\n");
    }

    /// What `shows` leaves out renders nothing, wherever it falls among what it keeps.
    #[test]
    fn events_not_shown_render_nothing() {
        use clarion_engine::{RuleRef, RunStatus};
        let hidden = [
            Event::TextDelta {
                text: "It takes".into(),
            },
            Event::Status {
                run_id: "run_1".into(),
                status: RunStatus::InProgress,
            },
            Event::StepCommitted {
                run_id: "run_1".into(),
                status: RunStatus::Completed,
            },
            Event::ModelCalled {
                message_id: "msg_1".into(),
            },
            Event::FilledFromSlots {
                call_id: "call_1".into(),
                tool: "calc".into(),
                params: vec!["income".into()],
            },
            Event::RuleEvaluated {
                tool: "calc".into(),
                rule: RuleRef::After { index: 0 },
                applied: true,
            },
        ];
        let shown = [
            Event::ToolCalled {
                call_id: "call_1".into(),
                name: "calc".into(),
                arguments: r#"{"income": 5000}"#.into(),
            },
            Event::SlotSet {
                name: "income".into(),
                value: json!(5000),
            },
            Event::AssistantMessage {
                text: "It takes 12 months.".into(),
            },
        ];
        assert!(hidden.iter().all(|e| !Transcript::shows(e)));
        assert!(shown.iter().all(Transcript::shows));
        let render = |events: &[Event]| {
            let mut transcript = Transcript::default();
            transcript.user("How long?");
            transcript.events(events);
            transcript.finish()
        };
        let expected = render(&shown);
        for (i, event) in hidden.iter().enumerate() {
            for at in 0..=shown.len() {
                let mut events = shown.to_vec();
                events.insert(at, event.clone());
                assert_eq!(render(&events), expected, "hidden event {i} at {at}");
            }
        }
    }

    #[test]
    fn errors_read_as_kind_and_message() {
        let content = r#"{"error": {"kind": "failed", "message": "division by zero"}}"#;
        assert_eq!(
            output(OutputStatus::Error, content),
            "error (failed): division by zero"
        );
        let content = r#"{"error": {"kind": "cancelled", "message": "stopped"}}"#;
        assert_eq!(
            output(OutputStatus::Cancelled, content),
            "cancelled: stopped"
        );
    }
}
