//! `clarion chat`: a conversation with a flow in the terminal, or over pipes.
//!
//! Replies go to stdout (streamed as the model writes them); tool activity, questions'
//! bookkeeping and status lines go to stderr, dimmed, so `clarion chat … > reply.txt`
//! captures only what the assistant said. Threads live in the SQLite store and can be
//! resumed with `--thread`. Ctrl-C cancels the run in progress — its open tool calls are
//! answered `cancelled`, so the thread stays consistent — and Ctrl-D ends the session.
//! When stdin is not a terminal each line is one user message, and a client tool's output
//! is read from the next line.

use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use clarion_engine::diagnostic::{Severity, render};
use clarion_engine::events::{Event, EventSink};
use clarion_engine::flow::{Flow, LoadOptions, load_file_with};
use clarion_engine::provider::select::{ProviderOverrides, model_for, resolve};
use clarion_engine::run::{Engine, Run, RunStatus, ToolOutputSubmission};
use clarion_engine::store::{SqliteStore, StoreError};
use clarion_engine::thread::{Metadata, Thread};
use clarion_engine::transcript::Transcript;
use clarion_tools::ClarionTools;

use crate::args::{ApiArg, ChatArgs};
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;

pub fn run(args: &ChatArgs) -> Result<Exit, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(chat(args))
}

/// What a session needs: the engine, the flow, the thread, and a line describing the model.
struct Session {
    engine: Arc<Engine>,
    flow: Arc<Flow>,
    thread: Thread,
    banner: String,
}

/// Loads the flow, opens the store, picks the provider, and finds or creates the thread.
/// `Ok(None)` when the flow has errors (they are printed).
fn open(args: &ChatArgs) -> Result<Option<Session>, CliError> {
    if !args.flow.is_file() {
        return Err(CliError::MissingFlow(args.flow.clone()));
    }
    let tools = ClarionTools::new();
    let report = load_file_with(
        &args.flow,
        &LoadOptions {
            builtins: Some(tools.builtins()),
        },
    );
    let styled = output::stderr_styled();
    for diagnostic in report
        .diagnostics
        .iter()
        .filter(|d| d.severity() == Severity::Error)
    {
        output::err(&format!(
            "{}\n\n",
            render::human(diagnostic, &report.source, styled)
        ));
    }
    let Some(flow) = report.flow else {
        output::error_line(&format!(
            "{} has errors; fix them first (clarion validate)",
            args.flow.display()
        ));
        return Ok(None);
    };
    let flow = Arc::new(flow);
    let store = SqliteStore::open(&args.store).map_err(|e| CliError::Store {
        path: args.store.clone(),
        reason: e.to_string(),
    })?;
    let overrides = ProviderOverrides {
        base_url: args.base_url.clone(),
        api: args.api.map(|api| match api {
            ApiArg::ChatCompletions => clarion_engine::flow::model::ProviderApi::ChatCompletions,
            ApiArg::Responses => clarion_engine::flow::model::ProviderApi::Responses,
        }),
        model: args.model.clone(),
        stream: args.no_stream.then_some(false),
    };
    let model = model_for(&flow, &overrides).map_err(|e| CliError::Provider(e.to_string()))?;
    let engine = Arc::new(Engine::new(
        flow.clone(),
        model,
        Arc::new(tools),
        Arc::new(store),
    ));
    engine.recover().map_err(|e| CliError::Store {
        path: args.store.clone(),
        reason: e.to_string(),
    })?;
    let thread = match &args.thread {
        Some(id) => engine.thread(id).map_err(|e| match e {
            clarion_engine::run::EngineError::Store(StoreError::ThreadNotFound(_)) => {
                CliError::UnknownThread(id.clone(), args.store.clone())
            }
            other => CliError::Store {
                path: args.store.clone(),
                reason: other.to_string(),
            },
        })?,
        None => engine
            .create_thread(Metadata::default())
            .map_err(|e| CliError::Store {
                path: args.store.clone(),
                reason: e.to_string(),
            })?,
    };
    let (_, config) = resolve(&flow, &overrides, &|name| std::env::var(name).ok());
    let model_name = config
        .model
        .clone()
        .unwrap_or_else(|| flow.assistant.model.clone());
    let banner = format!(
        "{} · {model_name} at {} · thread {}",
        flow.name, config.base_url, thread.id
    );
    Ok(Some(Session {
        engine,
        flow,
        thread,
        banner,
    }))
}

async fn chat(args: &ChatArgs) -> Result<Exit, CliError> {
    let Some(Session {
        engine,
        flow,
        mut thread,
        banner,
    }) = open(args)?
    else {
        return Ok(Exit::Problems);
    };
    let interactive = std::io::stdin().is_terminal();
    let sink = Arc::new(Terminal::new(args.verbose));
    let hint = if interactive {
        " · /help for commands, Ctrl-D to leave"
    } else {
        ""
    };
    note(&format!("{banner}{hint}"));
    let mut transcript = Transcript::for_flow(&flow);
    let mut exit = Exit::Success;
    while let Some(line) = read_line(interactive, "you › ").await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(command) = line.strip_prefix('/') {
            match slash(
                command,
                &engine,
                &flow,
                &mut thread,
                &mut transcript,
                &args.store,
            ) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(message) => {
                    output::error_line(&message);
                    continue;
                }
            }
        }
        transcript.user(line);
        match turn(&engine, &thread.id, line, interactive, &sink).await {
            Ok(run) => {
                transcript.events(&sink.take());
                transcript.run(&run);
                if run.status != RunStatus::Completed {
                    let reason = run
                        .last_error
                        .as_ref()
                        .map(|e| format!(": {}", e.message))
                        .unwrap_or_default();
                    output::error_line(&format!("the run ended {}{reason}", run.status.as_str()));
                    if !interactive
                        && run
                            .last_error
                            .as_ref()
                            .is_some_and(|e| e.code.starts_with("model_"))
                    {
                        // Scripted use: an unreachable or refusing provider is a
                        // configuration problem, not a conversation.
                        exit = Exit::Usage;
                        break;
                    }
                }
            }
            Err(message) => output::error_line(&message),
        }
    }
    note(&format!(
        "thread {} saved; resume with --thread {}",
        thread.id, thread.id
    ));
    Ok(exit)
}

/// One user turn: the message, the run (cancelled by Ctrl-C), and client tool outputs.
async fn turn(
    engine: &Arc<Engine>,
    thread_id: &str,
    text: &str,
    interactive: bool,
    sink: &Arc<Terminal>,
) -> Result<Run, String> {
    engine
        .add_message(thread_id, text)
        .map_err(|e| e.to_string())?;
    let run = engine.create_run(thread_id).map_err(|e| e.to_string())?;
    let mut run = drive(engine, sink, run.id.clone(), None).await?;
    while run.status == RunStatus::RequiresAction {
        let mut outputs = Vec::new();
        for call in &run.required_action {
            note(&format!(
                "client tool {}({}) — type its JSON output:",
                call.name, call.arguments
            ));
            let Some(output) = read_line(interactive, "output › ").await else {
                let cancelled = engine
                    .cancel(&run.id, sink.as_ref())
                    .map_err(|e| e.to_string())?;
                return Ok(cancelled);
            };
            outputs.push(ToolOutputSubmission {
                call_id: call.id.clone(),
                output,
            });
        }
        run = drive(engine, sink, run.id.clone(), Some(outputs)).await?;
    }
    sink.end_line();
    Ok(run)
}

/// Drives a run (or submits outputs to one) in a task, cancelling it on Ctrl-C.
async fn drive(
    engine: &Arc<Engine>,
    sink: &Arc<Terminal>,
    run_id: String,
    outputs: Option<Vec<ToolOutputSubmission>>,
) -> Result<Run, String> {
    let task = {
        let (engine, sink, run_id) = (engine.clone(), sink.clone(), run_id.clone());
        tokio::spawn(async move {
            match outputs {
                Some(outputs) => {
                    engine
                        .submit_tool_outputs(&run_id, outputs, sink.as_ref())
                        .await
                }
                None => engine.drive_run(&run_id, sink.as_ref()).await,
            }
        })
    };
    tokio::pin!(task);
    let result = tokio::select! {
        result = &mut task => result,
        _ = tokio::signal::ctrl_c() => {
            sink.end_line();
            note("cancelling…");
            let _ = engine.cancel(&run_id, sink.as_ref());
            task.await
        }
    };
    result
        .map_err(|e| format!("the run stopped unexpectedly: {e}"))?
        .map_err(|e| e.to_string())
}

/// Handles `/command`; `Ok(false)` ends the session.
fn slash(
    command: &str,
    engine: &Engine,
    flow: &Flow,
    thread: &mut Thread,
    transcript: &mut Transcript,
    store: &Path,
) -> Result<bool, String> {
    let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
    let fresh = engine.thread(&thread.id).map_err(|e| e.to_string())?;
    match name {
        "slots" => {
            let slots: Vec<String> = flow
                .slots
                .keys()
                .map(|name| match fresh.slots.get(name) {
                    Some(value) => format!("  {name} = {value}"),
                    None => format!("  {name} (not set)"),
                })
                .collect();
            output::out(&format!(
                "{}\n",
                if slots.is_empty() {
                    "  (the flow declares no slots)".to_owned()
                } else {
                    slots.join("\n")
                }
            ));
        }
        "metadata" => {
            let pairs: Vec<String> = fresh
                .metadata
                .iter()
                .map(|(k, v)| format!("  {k} = {v}"))
                .collect();
            output::out(&format!(
                "{}\n",
                if pairs.is_empty() {
                    "  (no metadata)".to_owned()
                } else {
                    pairs.join("\n")
                }
            ));
        }
        "reset" => {
            *thread = engine
                .create_thread(Metadata::default())
                .map_err(|e| e.to_string())?;
            *transcript = Transcript::for_flow(flow);
            note(&format!(
                "new thread {} (the old one stays in {})",
                thread.id,
                store.display()
            ));
        }
        "transcript" => {
            let path = rest.trim();
            if path.is_empty() {
                return Err("/transcript needs a file name, e.g. /transcript chat.txt".to_owned());
            }
            let text = std::mem::replace(transcript, Transcript::for_flow(flow)).finish();
            std::fs::write(path, &text).map_err(|e| format!("cannot write {path}: {e}"))?;
            note(&format!("transcript of this session written to {path}"));
        }
        "quit" | "exit" => return Ok(false),
        "help" => output::out(
            "  /slots  /metadata  /reset  /transcript FILE  /quit — Ctrl-C cancels a run, Ctrl-D exits\n",
        ),
        other => return Err(format!("unknown command /{other}; try /help")),
    }
    Ok(true)
}

/// Reads one line from stdin (off the async runtime); `None` at end of input.
async fn read_line(interactive: bool, prompt: &'static str) -> Option<String> {
    if interactive {
        output::err(prompt);
    }
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_owned()),
        }
    })
    .await
    .ok()
    .flatten()
}

fn note(text: &str) {
    let style = anstyle::Style::new().dimmed();
    output::err(&format!("{style}{text}{style:#}\n"));
}

/// Prints events as they happen: reply text to stdout, everything else dimmed to stderr.
struct Terminal {
    verbose: bool,
    /// Whether reply text is mid-line on stdout.
    open_line: Mutex<bool>,
    /// Events of the current run, for the session transcript.
    events: Mutex<Vec<Event>>,
    /// Tools started and not finished, and the rule effects held back until they finish:
    /// the engine applies a call's rules before announcing its output, but people read
    /// the result first.
    running: Mutex<(usize, Vec<String>)>,
}

impl Terminal {
    fn new(verbose: bool) -> Self {
        Self {
            verbose,
            open_line: Mutex::new(false),
            events: Mutex::new(Vec::new()),
            running: Mutex::new((0, Vec::new())),
        }
    }

    fn take(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }

    fn end_line(&self) {
        if let Ok(mut open) = self.open_line.lock()
            && *open
        {
            output::out("\n");
            *open = false;
        }
    }

    /// Prints a rule effect now, or after the running tools finish.
    fn effect(&self, line: String) {
        match self.running.lock() {
            Ok(mut running) if running.0 > 0 => running.1.push(line),
            _ => note(&line),
        }
    }

    fn short(&self, text: &str) -> String {
        if self.verbose || text.chars().count() <= 100 {
            text.to_owned()
        } else {
            format!("{}…", text.chars().take(100).collect::<String>())
        }
    }
}

impl EventSink for Terminal {
    fn emit(&self, event: &Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event.clone());
        }
        match event {
            Event::TextDelta { text } => {
                output::out(text);
                if let Ok(mut open) = self.open_line.lock() {
                    *open = true;
                }
            }
            Event::AssistantMessage { .. } => self.end_line(),
            Event::QuestionAsked { text, .. } => {
                self.end_line();
                output::out(&format!("{text}\n"));
            }
            Event::ToolStarted {
                name, arguments, ..
            } => {
                self.end_line();
                if let Ok(mut running) = self.running.lock() {
                    running.0 += 1;
                }
                note(&format!(
                    "  → {name}({})",
                    self.short(&arguments.to_string())
                ));
            }
            Event::ToolFinished {
                name,
                status,
                content,
                ..
            } => {
                let status = serde_json::to_value(status)
                    .ok()
                    .and_then(|v| v.as_str().map(ToOwned::to_owned))
                    .unwrap_or_default();
                note(&format!("  ← {name} {status}: {}", self.short(content)));
                if let Ok(mut running) = self.running.lock() {
                    running.0 = running.0.saturating_sub(1);
                    if running.0 == 0 {
                        for line in running.1.drain(..) {
                            note(&line);
                        }
                    }
                }
            }
            Event::ContextInjected { text, .. } => {
                self.effect(format!("  + context: {}", self.short(text)));
            }
            Event::SlotSet { name, value } => self.effect(format!("  = {name} ← {value}")),
            Event::PendingAbandoned { tool, .. } => {
                note(&format!("  × the pending {tool} call was dropped"));
            }
            Event::NotStated { params, .. } => {
                self.effect(format!("  × not stated, dropped: {}", params.join(", ")));
            }
            Event::RuleSkipped { tool, reason } => self.effect(format!("  ! {tool}: {reason}")),
            Event::Status { .. } | Event::ToolCalled { .. } => {}
        }
    }
}
