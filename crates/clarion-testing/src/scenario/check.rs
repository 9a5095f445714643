//! Checks of a structurally valid scenario against its flow: every tool, parameter and
//! slot it names exists (in the flow or one it hands off to), each mock and call says one thing, and client tools are answered
//! by the app and not mocked. (Whether every mock is used depends on the script, so
//! `play` checks it.)

use std::ops::Range;

use serde_json::{Map, Value};

use super::spec::{DecideSpec, ExpectSpec, OneOrMany, ScenarioFile, StepSpec};
use super::step_calls;
use clarion_flow::diagnostic::{Diagnostic, DiagnosticKind};
use clarion_flow::spans::{SpanIndex, escape};
use clarion_flow::suggest;
use clarion_flow::{Executor, Flow, Tool};

struct Checker<'a> {
    flow: &'a Flow,
    spans: &'a SpanIndex,
    diagnostics: Vec<Diagnostic>,
}

/// Every problem of `file` against `flow`.
#[must_use]
pub fn run(file: &ScenarioFile, flow: &Flow, spans: &SpanIndex) -> Vec<Diagnostic> {
    let mut checker = Checker {
        flow,
        spans,
        diagnostics: Vec::new(),
    };
    checker.mocks(file);
    for (i, turn) in file.turns.iter().enumerate() {
        for (j, step) in turn.model.iter().enumerate() {
            checker.step(step, &format!("/turns/{i}/model/{j}"));
        }
        for (k, submit) in turn.submit.iter().enumerate() {
            let at = format!("/turns/{i}/submit/{k}/tool");
            if let Some(tool) = checker.tool(&submit.tool, &at)
                && !matches!(tool.executor, Executor::Client)
            {
                let diagnostic = Diagnostic::new(
                    DiagnosticKind::NotClientTool {
                        tool: submit.tool.clone(),
                    },
                    spans.value_span(&at),
                )
                .with_label(format!("runs as `{}`", tool.executor.kind()))
                .with_help(
                    "only `client = true` tools wait for the app; mock other tools under [mocks]",
                );
                checker.diagnostics.push(diagnostic);
            }
        }
        if let Some(expect) = &turn.expect {
            checker.expect(expect, &format!("/turns/{i}/expect"));
        }
    }
    checker.diagnostics
}

impl<'a> Checker<'a> {
    fn mocks(&mut self, file: &ScenarioFile) {
        for (name, mock) in &file.mocks {
            let at = format!("/mocks/{}", escape(name));
            let Some(tool) = self.tool_at_key(name, &at) else {
                continue;
            };
            if matches!(tool.executor, Executor::Client) {
                self.client_mocked(name, self.spans.key_span(&at));
                continue;
            }
            self.outcome(
                &at,
                mock.result.is_some(),
                mock.error.is_some(),
                mock.timeout,
                &format!("the mock for `{name}`"),
                true,
            );
        }
    }

    /// A `decide` step (the model reading an answer to a confirmation), or `changes`
    /// without one.
    fn decide_step(&mut self, step: &StepSpec, at: &str) {
        if let Some(decide) = step.decide {
            let other = [
                "call",
                "calls",
                "text",
                "args",
                "arguments",
                "result",
                "error",
                "timeout",
            ]
            .into_iter()
            .find(|k| self.spans.get(&format!("{at}/{k}")).is_some());
            if let Some(other) = other {
                self.conflict(
                    at,
                    "decide",
                    other,
                    "a `decide` step is the model reading the user's answer to a confirmation: it has no text or tool call of its own; put the flow's reply in the next step",
                );
            } else if decide == DecideSpec::Change && step.changes.is_none() {
                let diagnostic = Diagnostic::new(
                    DiagnosticKind::MissingChoice {
                        what: "a `decide = \"change\"` step".to_owned(),
                        choices: "`changes`".to_owned(),
                    },
                    self.spans.key_span(&format!("{at}/decide")),
                )
                .with_help("say what the user changed, e.g. `changes = { amount = 300 }`");
                self.diagnostics.push(diagnostic);
            } else if decide != DecideSpec::Change && step.changes.is_some() {
                self.conflict(
                    at,
                    "decide",
                    "changes",
                    "`changes` goes with `decide = \"change\"` only",
                );
            }
            return;
        }
        if step.changes.is_some() {
            let diagnostic = Diagnostic::new(
                DiagnosticKind::MissingChoice {
                    what: "a model step with `changes`".to_owned(),
                    choices: "`decide = \"change\"`".to_owned(),
                },
                self.spans.key_span(&format!("{at}/changes")),
            )
            .with_help("`changes` says what the user changed when asked to confirm a call: add `decide = \"change\"`");
            self.diagnostics.push(diagnostic);
        }
    }

    fn step(&mut self, step: &StepSpec, at: &str) {
        if step.decide.is_some() || step.changes.is_some() {
            self.decide_step(step, at);
            return;
        }
        let has_call_keys = step.args.is_some()
            || step.arguments.is_some()
            || step.result.is_some()
            || step.error.is_some()
            || step.timeout.is_some();
        if step.call.is_some() && step.calls.is_some() {
            self.conflict(
                at,
                "call",
                "calls",
                "use `call` for one tool call, `calls = [{ tool = …, args = … }, …]` for several",
            );
            return;
        }
        if step.calls.is_some() && has_call_keys {
            let key = ["args", "arguments", "result", "error", "timeout"]
                .into_iter()
                .find(|k| self.spans.get(&format!("{at}/{k}")).is_some())
                .unwrap_or("args");
            self.conflict(
                at,
                "calls",
                key,
                "with `calls`, give each call its own keys: `calls = [{ tool = …, args = … }]`",
            );
            return;
        }
        if step.call.is_none() && step.calls.is_none() {
            if has_call_keys {
                let key = ["args", "arguments", "result", "error", "timeout"]
                    .into_iter()
                    .find(|k| self.spans.get(&format!("{at}/{k}")).is_some())
                    .unwrap_or("args");
                let diagnostic = Diagnostic::new(
                    DiagnosticKind::MissingChoice {
                        what: format!("a model step with `{key}`"),
                        choices: "`call`".to_owned(),
                    },
                    self.spans.key_span(&format!("{at}/{key}")),
                )
                .with_help("name the tool, e.g. `call = \"TOOL\"`");
                self.diagnostics.push(diagnostic);
            } else if step.text.is_none() {
                let diagnostic = Diagnostic::new(
                    DiagnosticKind::MissingChoice {
                        what: "this model step".to_owned(),
                        choices: "`text`, `call` or `calls`".to_owned(),
                    },
                    self.spans.key_span(at),
                )
                .with_help("a reply is `text = \"…\"`; a tool call is `call = \"TOOL\"` with `args = { … }`");
                self.diagnostics.push(diagnostic);
            }
            return;
        }
        for (call, call_at, tool_at) in step_calls(step, at) {
            // The model answers in words through Clarion's own tool under `required`.
            if call.tool == clarion_flow::export::REPLY_TOOL
                && clarion_flow::export::offers_reply(self.flow)
            {
                continue;
            }
            let Some(tool) = self.tool(call.tool, &tool_at) else {
                continue;
            };
            if call.args.is_some() && call.arguments.is_some() {
                self.conflict(&call_at, "args", "arguments", "`args` is a table checked against the tool; `arguments` is raw text sent as is");
            }
            if let Some(args) = call.args {
                self.args(tool, args, &format!("{call_at}/args"));
            }
            if matches!(tool.executor, Executor::Client) {
                if call.has_outcome_keys() {
                    let key = ["result", "error", "timeout"]
                        .into_iter()
                        .find(|k| self.spans.get(&format!("{call_at}/{k}")).is_some())
                        .unwrap_or("result");
                    self.client_mocked(call.tool, self.spans.key_span(&format!("{call_at}/{key}")));
                }
            } else if call.has_outcome_keys() {
                self.outcome(
                    &call_at,
                    call.result.is_some(),
                    call.error.is_some(),
                    call.timeout,
                    "this call",
                    false,
                );
            }
        }
    }

    fn expect(&mut self, expect: &ExpectSpec, at: &str) {
        if let Some(tool) = &expect.confirmation_asked {
            self.tool(tool, &format!("{at}/confirmation_asked"));
        }
        if let Some(called) = &expect.tool_called {
            let many = matches!(called, OneOrMany::Many(_));
            for (k, spec) in called.as_slice().iter().enumerate() {
                let here = if many {
                    format!("{at}/tool_called/{k}")
                } else {
                    format!("{at}/tool_called")
                };
                if let Some(tool) = self.tool(&spec.tool, &format!("{here}/tool"))
                    && let Some(args) = &spec.args
                {
                    self.args(tool, args, &format!("{here}/args"));
                }
            }
        }
        let asked = [
            ("question_asked", &expect.question_asked),
            ("question_includes", &expect.question_includes),
        ];
        for (key, k, param) in asked.iter().flat_map(|(key, params)| {
            params
                .iter()
                .flatten()
                .enumerate()
                .map(move |(k, p)| (*key, k, p))
        }) {
            let flows = self.flow.reachable();
            let tools = || flows.iter().flat_map(|f| f.tools.values());
            let known = tools().any(|t| t.params.contains_key(param));
            if !known {
                let mut names: Vec<&str> = Vec::new();
                for name in tools().flat_map(|t| t.params.keys()) {
                    if !names.contains(&name.as_str()) {
                        names.push(name);
                    }
                }
                let diagnostic = Diagnostic::new(
                    DiagnosticKind::UnknownParam {
                        param: param.clone(),
                        owner: format!("any tool of flow `{}`", self.flow.name),
                    },
                    self.spans.value_span(&format!("{at}/{key}/{k}")),
                );
                self.diagnostics
                    .push(with_suggestion(diagnostic, param, &names, "parameters"));
            }
        }
        for name in expect.slot_set.iter().flat_map(|s| s.keys()) {
            let flows = self.flow.reachable();
            if !flows.iter().any(|f| f.slots.contains_key(name)) {
                let names: Vec<&str> = flows
                    .iter()
                    .flat_map(|f| f.slots.keys())
                    .map(String::as_str)
                    .collect();
                let diagnostic = Diagnostic::new(
                    DiagnosticKind::UndeclaredSlot { slot: name.clone() },
                    self.spans
                        .key_span(&format!("{at}/slot_set/{}", escape(name))),
                );
                self.diagnostics
                    .push(with_suggestion(diagnostic, name, &names, "slots"));
            }
        }
    }

    /// The tool named at `at` (a value), or a diagnostic.
    fn tool(&mut self, name: &str, at: &str) -> Option<&'a Tool> {
        let span = self.spans.value_span(at);
        self.find_tool(name, span)
    }

    /// The tool named by the key at `at`, or a diagnostic.
    fn tool_at_key(&mut self, name: &str, at: &str) -> Option<&'a Tool> {
        let span = self.spans.key_span(at);
        self.find_tool(name, span)
    }

    fn find_tool(&mut self, name: &str, span: Option<Range<usize>>) -> Option<&'a Tool> {
        let flow = self.flow;
        // A tool of a flow this one hands off to counts: the thread may get there.
        let flows = flow.reachable();
        if let Some(tool) = flows.iter().find_map(|f| f.tools.get(name)) {
            return Some(tool);
        }
        let names: Vec<&str> = flows
            .iter()
            .flat_map(|f| f.tools.keys())
            .map(String::as_str)
            .collect();
        let diagnostic = Diagnostic::new(
            DiagnosticKind::UnknownTool {
                tool: name.to_owned(),
                flow: flow.name.clone(),
            },
            span,
        )
        .with_label("unknown tool");
        self.diagnostics
            .push(with_suggestion(diagnostic, name, &names, "tools"));
        None
    }

    fn args(&mut self, tool: &Tool, args: &Map<String, Value>, at: &str) {
        for param in args.keys() {
            if tool.params.contains_key(param) {
                continue;
            }
            let names: Vec<&str> = tool.params.keys().map(String::as_str).collect();
            let diagnostic = Diagnostic::new(
                DiagnosticKind::UnknownParam {
                    param: param.clone(),
                    owner: format!("tool `{}`", tool.name),
                },
                self.spans.key_span(&format!("{at}/{}", escape(param))),
            )
            .with_label("unknown parameter");
            let diagnostic = with_suggestion(diagnostic, param, &names, "parameters");
            // Only suggest the escape hatch when there is no typo to fix.
            let diagnostic = if diagnostic
                .help
                .as_deref()
                .is_some_and(|h| h.starts_with("did you mean"))
            {
                diagnostic
            } else {
                let help = diagnostic.help.clone().unwrap_or_default();
                diagnostic.with_help(format!(
                    "{help}; to test a model that sends unknown arguments, write them raw: `arguments = '{{\"{param}\": …}}'`"
                ))
            };
            self.diagnostics.push(diagnostic);
        }
    }

    /// Exactly one of `result`, `error`, `timeout` (when `required`; at most one otherwise).
    fn outcome(
        &mut self,
        at: &str,
        result: bool,
        error: bool,
        timeout: Option<bool>,
        what: &str,
        required: bool,
    ) {
        let set: Vec<&str> = [
            ("result", result),
            ("error", error),
            ("timeout", timeout == Some(true)),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect();
        if let [first, second, ..] = set.as_slice() {
            self.conflict(
                at,
                first,
                second,
                "a call has one outcome: a `result`, an `error` or a `timeout`",
            );
            return;
        }
        if required && set.is_empty() {
            let help = if timeout == Some(false) {
                "`timeout = false` is no outcome; give a `result` instead, e.g. `result = { … }`"
            } else {
                "e.g. `result = { … }`, `error = { kind = \"failed\", message = \"…\" }` or `timeout = true`"
            };
            let diagnostic = Diagnostic::new(
                DiagnosticKind::MissingChoice {
                    what: what.to_owned(),
                    choices: "`result`, `error` or `timeout = true`".to_owned(),
                },
                self.spans.key_span(at),
            )
            .with_help(help);
            self.diagnostics.push(diagnostic);
        }
    }

    fn conflict(&mut self, at: &str, first: &str, second: &str, help: &str) {
        let diagnostic = Diagnostic::new(
            DiagnosticKind::ConflictingKeys {
                first: first.to_owned(),
                second: second.to_owned(),
            },
            self.spans.key_span(&format!("{at}/{second}")),
        )
        .with_help(help);
        let diagnostic = match self
            .spans
            .get(&format!("{at}/{first}"))
            .and_then(|n| n.key.clone())
        {
            Some(span) => diagnostic.with_related(span, format!("`{first}` is here")),
            None => diagnostic,
        };
        self.diagnostics.push(diagnostic);
    }

    fn client_mocked(&mut self, tool: &str, span: Option<Range<usize>>) {
        let diagnostic = Diagnostic::new(DiagnosticKind::ClientToolMocked { tool: tool.to_owned() }, span)
            .with_help(format!(
                "the run waits for the app; answer it in the turn with `[[turns.submit]]`, `tool = \"{tool}\"`, `output = {{ … }}`"
            ));
        self.diagnostics.push(diagnostic);
    }
}

/// Adds "did you mean" or the list of names to choose from.
fn with_suggestion(diagnostic: Diagnostic, name: &str, names: &[&str], what: &str) -> Diagnostic {
    match suggest::closest(name, names.iter().copied()) {
        Some(near) => diagnostic.with_help(format!("did you mean `{near}`?")),
        None if names.is_empty() => {
            diagnostic.with_help(format!("there are no {what} to choose from"))
        }
        None => diagnostic.with_help(format!("the {what} are {}", suggest::list(names))),
    }
}
