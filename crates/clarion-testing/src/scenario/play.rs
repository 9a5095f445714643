//! Playing a scenario: the real engine, a scripted model, mocked tools.
//!
//! Each turn adds the user's message, loads the turn's model steps into the script and
//! runs; while the run waits for client tools, the turn's `[[turns.submit]]` outputs are
//! submitted in order. After the turn the script must be used up exactly: a script that
//! runs out, or has steps left, stops the scenario with a located error, because every
//! later turn would answer the wrong question.

use clarion_engine::{ErrorCode, ModelErrorKind};
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::expect::{self, Check};
use super::load::Scenario;
use super::mock::{MockExecutor, MockOutcome};
use super::spec::{DecideSpec, SubmitSpec};
use super::step_calls;
use crate::coverage::{Collector, FlowIndex, Hits};
use crate::transcript::Transcript;
use clarion_engine::MemoryStore;
use clarion_engine::ToolExecutor;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{DECIDE_TOOL, Metadata, ToolCall};
use clarion_engine::{Engine, EngineError, Run, RunStatus, ToolOutputSubmission, Usage};
use clarion_engine::{Event, EventLog};
use clarion_engine::{Model, ModelTurn};
use clarion_flow::diagnostic::{Diagnostic, DiagnosticKind};
use clarion_flow::spans::escape;

/// A played scenario.
#[derive(Debug, Clone, Default)]
pub struct Played {
    /// The transcript: the whole conversation, or as far as it got when `problems` is not
    /// empty.
    pub transcript: String,
    /// Problems that stopped the scenario (the script ran out, outputs the run did not
    /// wait for…). A scenario with problems has no transcript worth snapshotting.
    pub problems: Vec<Diagnostic>,
    /// Expectations that did not hold.
    pub failures: Vec<Diagnostic>,
    /// Every expectation of the turns played, held or not (`failures` are those that did
    /// not hold, as diagnostics).
    pub checks: Vec<Check>,
    /// The model's token usage over every run, as its provider reported it.
    pub usage: Usage,
    /// The turns played to the end.
    pub turns: usize,
    /// What the scenario exercised of its flow, when coverage was asked for
    /// ([`play_covered`]).
    pub hits: Option<Hits>,
    /// The engine's events of each turn played to the end, in order: what expectations
    /// are judged on, and what saving a conversation as a scenario fills them in from.
    pub events: Vec<Vec<Event>>,
}

/// Plays `scenario` with its scripted model steps. Calls no mock answers go to `executor`
/// (HTTP tools excepted); without one, every call must be mocked.
pub async fn play(scenario: &Scenario, executor: Option<Arc<dyn ToolExecutor>>) -> Played {
    play_with(scenario, executor, None).await
}

/// Plays `scenario` against `model` instead of its script (a live provider, or a replayed
/// recording): the user's turns, tool mocks (per tool; a step's own outcome belongs to a
/// scripted call), submissions and expectations are the scenario's, the model's answers
/// are whatever the model says. With `model` `None`, the scripted steps are the model.
pub async fn play_with(
    scenario: &Scenario,
    executor: Option<Arc<dyn ToolExecutor>>,
    model: Option<Arc<dyn Model>>,
) -> Played {
    play_covered(scenario, executor, model, None).await
}

/// [`play_with`], and with the index of the scenario's flow also counts what the scenario
/// exercised of it ([`Played::hits`]).
pub async fn play_covered(
    scenario: &Scenario,
    executor: Option<Arc<dyn ToolExecutor>>,
    model: Option<Arc<dyn Model>>,
    coverage: Option<Arc<FlowIndex>>,
) -> Played {
    if model.is_none() {
        let unused = unused_mocks(scenario);
        if !unused.is_empty() {
            return Played {
                problems: unused,
                ..Played::default()
            };
        }
    }
    let Script {
        turns,
        mocks,
        calls,
    } = script(scenario, executor);
    let mocks = Arc::new(mocks);
    let (scripted, model): (Option<Arc<ScriptedModel>>, Arc<dyn Model>) = if let Some(model) = model
    {
        (None, model)
    } else {
        let script = Arc::new(ScriptedModel::new([]));
        (Some(Arc::clone(&script)), script)
    };
    let engine = Engine::new(
        Arc::clone(&scenario.flow),
        model,
        Arc::clone(&mocks) as _,
        Arc::new(MemoryStore::new()),
    );
    let mut played = Played::default();
    let metadata = Metadata::new(
        scenario
            .file
            .scenario
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let created = match metadata {
        Ok(metadata) => engine
            .create_thread(metadata)
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let thread = match created {
        Ok(thread) => thread,
        Err(message) => {
            played.problems.push(
                Diagnostic::new(
                    DiagnosticKind::TurnRefused { turn: 1, message },
                    scenario.spans.key_span("/scenario/metadata"),
                )
                .with_help("metadata keys are at most 64 characters and values at most 512"),
            );
            return played;
        }
    };
    let mut session = Player {
        scenario,
        engine,
        script: scripted,
        mocks,
        calls,
        thread_id: thread.id,
        transcript: Transcript::for_flow(&scenario.flow),
        collector: coverage.map(Collector::new),
    };
    for (i, steps) in turns.into_iter().enumerate() {
        match session.turn(i, steps).await {
            Ok((checks, usage, events)) => {
                played.events.push(events);
                played
                    .failures
                    .extend(checks.iter().filter_map(|c| c.diagnostic(&scenario.spans)));
                played.checks.extend(checks);
                played.usage.add(usage);
                played.turns += 1;
            }
            Err(problem) => {
                played.problems.push(*problem);
                break;
            }
        }
    }
    played.transcript = session.transcript.finish();
    played.hits = session.collector.map(Collector::finish);
    played
}

/// A scenario being played.
struct Player<'a> {
    scenario: &'a Scenario,
    engine: Engine,
    /// The scripted model, unless a real or replayed model plays the scenario.
    script: Option<Arc<ScriptedModel>>,
    mocks: Arc<MockExecutor>,
    /// Call id → (tool, JSON pointer of the tool's name in the file).
    calls: HashMap<String, (String, String)>,
    thread_id: String,
    transcript: Transcript,
    /// Counts coverage, when asked for.
    collector: Option<Collector>,
}

impl Player<'_> {
    /// Plays turn `i` with its model `steps`: its expectations judged and the model's
    /// usage, or the problem that stops the scenario.
    async fn turn(
        &mut self,
        i: usize,
        steps: Vec<ScriptedTurn>,
    ) -> Result<(Vec<Check>, Usage, Vec<Event>), Box<Diagnostic>> {
        let scenario = self.scenario;
        let turn = &scenario.file.turns[i];
        let at = format!("/turns/{i}");
        let scripted = steps.len();
        if let Some(script) = &self.script {
            script.push(steps);
        }
        self.transcript.user(&turn.user);
        let log = EventLog::new();
        let refused = |error: EngineError| {
            Box::new(Diagnostic::new(
                DiagnosticKind::TurnRefused {
                    turn: i + 1,
                    message: error.to_string(),
                },
                scenario.spans.value_span(&format!("{at}/user")),
            ))
        };
        self.engine
            .add_message(&self.thread_id, &turn.user)
            .await
            .map_err(refused)?;
        let mut run = self
            .engine
            .run(&self.thread_id, &log)
            .await
            .map_err(refused)?;
        let mut events: Vec<Event> = log.take();
        self.transcript.events(&events);
        if let Some(collector) = &mut self.collector {
            collector.events(&events);
        }
        self.transcript.run(&run);
        let mut submits = turn.submit.iter().enumerate();
        while run.status == RunStatus::RequiresAction {
            let outputs = self.outputs(i, &run, &mut submits)?;
            run = self
                .engine
                .submit_tool_outputs(&run.id, outputs, &log)
                .await
                .map_err(refused)?;
            let more = log.take();
            self.transcript.events(&more);
            if let Some(collector) = &mut self.collector {
                collector.events(&more);
            }
            self.transcript.run(&run);
            events.extend(more);
        }
        if let Some((k, submit)) = submits.next() {
            return Err(Box::new(
                Diagnostic::new(
                    DiagnosticKind::SubmitMismatch {
                        turn: i + 1,
                        reason: format!(
                            "this submits an output for `{}`, but no run waits for one",
                            submit.tool
                        ),
                    },
                    scenario.spans.value_span(&format!("{at}/submit/{k}/tool")),
                )
                .with_help(run_note(&run)),
            ));
        }
        if let Some(problem) = self.unmocked() {
            return Err(problem);
        }
        let remaining = self.script.as_ref().map(|s| s.remaining());
        if let Some(problem) =
            remaining.and_then(|left| script_problem(scenario, i, scripted, left, &run))
        {
            return Err(Box::new(problem));
        }
        let checks = turn.expect.as_ref().map_or_else(Vec::new, |spec| {
            expect::check(spec, &events, Some(run.status), &format!("{at}/expect"))
        });
        Ok((checks, run.usage, events))
    }

    /// A call that had no mock and nothing else could run, as a problem.
    fn unmocked(&self) -> Option<Box<Diagnostic>> {
        let scenario = self.scenario;
        let misses = self.mocks.misses();
        let (id, called) = misses.first()?;
        // A scripted call is located in the file; a live model's call only has its tool.
        let (tool, at) = self
            .calls
            .get(id)
            .cloned()
            .unwrap_or_else(|| (called.clone(), String::new()));
        let remote = scenario
            .flow
            .reachable()
            .iter()
            .find_map(|f| f.tools.get(&tool))
            .is_some_and(|t| t.executor.is_remote());
        let reason = if remote {
            "HTTP tools (and MCP servers reached by URL) always need one in scenarios, so a transcript never depends on a remote service"
        } else {
            "no tool executor was given to run it"
        };
        Some(Box::new(
            Diagnostic::new(
                DiagnosticKind::Unmocked {
                    tool: tool.clone(),
                    reason: reason.to_owned(),
                },
                // A live model's calls are not in the file.
                Some(at.as_str())
                    .filter(|at| !at.is_empty())
                    .and_then(|at| scenario.spans.value_span(at)),
            )
            .with_help(format!(
                "add `[mocks.{tool}]` with `result = {{ … }}`, or give this call its own `result`"
            )),
        ))
    }

    /// The outputs for every client call `run` waits for, from the turn's next
    /// `[[turns.submit]]` entries, in call order.
    fn outputs<'s>(
        &mut self,
        i: usize,
        run: &Run,
        submits: &mut impl Iterator<Item = (usize, &'s SubmitSpec)>,
    ) -> Result<Vec<ToolOutputSubmission>, Box<Diagnostic>> {
        let spans = &self.scenario.spans;
        let mut outputs = Vec::new();
        for call in &run.required_action {
            let Some((k, submit)) = submits.next() else {
                return Err(Box::new(Diagnostic::new(
                    DiagnosticKind::SubmitMismatch {
                        turn: i + 1,
                        reason: format!(
                            "the run waits for the app's output of `{}`, but the turn submits nothing more",
                            call.name
                        ),
                    },
                    spans.key_span(&format!("/turns/{i}")),
                )
                .with_help(format!(
                    "add `[[turns.submit]]` with `tool = \"{}\"` and `output = {{ … }}` to this turn",
                    call.name
                ))));
            };
            if submit.tool != call.name {
                return Err(Box::new(
                    Diagnostic::new(
                        DiagnosticKind::SubmitMismatch {
                            turn: i + 1,
                            reason: format!(
                                "the run waits for the output of `{}`, but this submits `{}`",
                                call.name, submit.tool
                            ),
                        },
                        spans.value_span(&format!("/turns/{i}/submit/{k}/tool")),
                    )
                    .with_help("submit outputs in the order the model called the tools"),
                ));
            }
            let output = match &submit.output {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            self.transcript.submitted(&submit.tool);
            outputs.push(ToolOutputSubmission {
                call_id: call.id.clone(),
                output,
            });
        }
        Ok(outputs)
    }
}

/// The script ran out, or has steps the conversation never reached.
fn script_problem(
    scenario: &Scenario,
    turn: usize,
    scripted: usize,
    remaining: usize,
    run: &Run,
) -> Option<Diagnostic> {
    let exhausted = run
        .last_error
        .as_ref()
        .is_some_and(|e| e.code == ErrorCode::Model(ModelErrorKind::ScriptExhausted));
    if exhausted {
        let last = scripted.saturating_sub(1);
        let diagnostic = Diagnostic::new(
            DiagnosticKind::ScriptExhausted {
                turn: turn + 1,
                scripted,
            },
            scenario
                .spans
                .key_span(&format!("/turns/{turn}/model/{last}"))
                .or_else(|| scenario.spans.key_span(&format!("/turns/{turn}/model"))),
        )
        .with_label("the last scripted step")
        .with_help("add a `[[turns.model]]` step for what the model does next: the transcript so far shows where the conversation stands");
        return Some(diagnostic);
    }
    if remaining > 0 {
        let first_unused = scripted - remaining;
        let diagnostic = Diagnostic::new(
            DiagnosticKind::ScriptUnused {
                turn: turn + 1,
                unused: remaining,
            },
            scenario
                .spans
                .key_span(&format!("/turns/{turn}/model/{first_unused}")),
        )
        .with_label("never reached")
        .with_help(run_note(run));
        return Some(diagnostic);
    }
    None
}

/// Mocks for tools no scripted step calls (a live model may call anything, so live and
/// replayed runs do not check this).
fn unused_mocks(scenario: &Scenario) -> Vec<Diagnostic> {
    let called: Vec<&str> = scenario
        .file
        .turns
        .iter()
        .flat_map(|turn| &turn.model)
        .flat_map(|step| step_calls(step, ""))
        .map(|(call, _, _)| call.tool)
        .collect();
    scenario
        .file
        .mocks
        .keys()
        .filter(|tool| !called.contains(&tool.as_str()))
        .map(|tool| {
            Diagnostic::new(
                DiagnosticKind::UnusedMock { tool: tool.clone() },
                scenario.spans.key_span(&format!("/mocks/{}", escape(tool))),
            )
            .with_label("no model step calls this tool")
            .with_help(format!(
                "remove the mock, or add a step that calls it: `call = \"{tool}\"`"
            ))
        })
        .collect()
}

/// Why a run stopped, for help lines.
fn run_note(run: &Run) -> String {
    match (&run.last_error, run.status) {
        (Some(error), status) => format!(
            "the turn's run ended `{}`: {}",
            status.as_str(),
            error.message
        ),
        (None, RunStatus::Completed) => {
            "the turn's run had already completed (a reply, or a question for the user, ends a run)"
                .to_owned()
        }
        (None, RunStatus::Incomplete) => format!(
            "the turn's run ended `incomplete` ({})",
            run.incomplete_details
                .map_or("max_steps", clarion_engine::IncompleteReason::as_str)
        ),
        (None, status) => format!("the turn's run ended `{}`", status.as_str()),
    }
}

/// A scenario's script, ready for the engine.
struct Script {
    /// The model's turns, per scenario turn.
    turns: Vec<Vec<ScriptedTurn>>,
    /// The executor, with every mock.
    mocks: MockExecutor,
    /// Call id → (tool, JSON pointer of the tool's name in the file).
    calls: HashMap<String, (String, String)>,
}

/// A `decide` step: the judge's call of its one tool (see the engine's `run/confirm.rs`).
fn decide_turn(decide: DecideSpec, changes: Option<&Map<String, Value>>) -> ScriptedTurn {
    let mut args = Map::new();
    args.insert("decision".to_owned(), Value::from(decide.as_str()));
    if let Some(changes) = changes {
        args.insert("changes".to_owned(), Value::Object(changes.clone()));
    }
    ScriptedTurn {
        turn: ModelTurn::ToolCalls {
            text: None,
            calls: vec![ToolCall {
                id: String::new(),
                name: DECIDE_TOOL.to_owned(),
                arguments: Value::Object(args).to_string(),
            }],
        },
        expect_user: None,
    }
}

/// Scripted calls get stable ids (`call_1`, `call_2`…) in script order.
fn script(scenario: &Scenario, fallback: Option<Arc<dyn ToolExecutor>>) -> Script {
    let mut mocks = MockExecutor::new();
    if let Some(fallback) = fallback {
        mocks = mocks.with_fallback(fallback);
    }
    for (tool, spec) in &scenario.file.mocks {
        if let Some(outcome) = MockOutcome::from_spec(spec) {
            mocks.mock_tool(tool, outcome);
        }
    }
    let mut next_id = 0;
    let mut ids = HashMap::new();
    let turns = scenario
        .file
        .turns
        .iter()
        .enumerate()
        .map(|(i, turn)| {
            turn.model
                .iter()
                .enumerate()
                .map(|(j, step)| {
                    if let Some(decide) = step.decide {
                        return decide_turn(decide, step.changes.as_ref());
                    }
                    let calls: Vec<ToolCall> = step_calls(step, &format!("/turns/{i}/model/{j}"))
                        .into_iter()
                        .map(|(call, _, tool_at)| {
                            next_id += 1;
                            let id = format!("call_{next_id}");
                            ids.insert(id.clone(), (call.tool.to_owned(), tool_at));
                            if let Some(outcome) = call.outcome() {
                                mocks.mock_call(&id, outcome);
                            }
                            ToolCall {
                                id,
                                name: call.tool.to_owned(),
                                arguments: call.arguments_text(),
                            }
                        })
                        .collect();
                    let turn = if calls.is_empty() {
                        ModelTurn::Text(step.text.clone().unwrap_or_default())
                    } else {
                        ModelTurn::ToolCalls {
                            text: step.text.clone(),
                            calls,
                        }
                    };
                    ScriptedTurn {
                        turn,
                        expect_user: None,
                    }
                })
                .collect()
        })
        .collect();
    Script {
        turns,
        mocks,
        calls: ids,
    }
}
