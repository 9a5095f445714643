//! `clarion chat`: a conversation with a flow in the terminal, or over pipes.
//!
//! Replies go to stdout (streamed as the model writes them); tool activity, questions'
//! bookkeeping and status lines go to stderr, dimmed, so `clarion chat … > reply.txt`
//! captures only what the assistant said. Threads live in the SQLite store and can be
//! resumed with `--thread`. Ctrl-C cancels the run in progress — its open tool calls are
//! answered `cancelled`, so the thread stays consistent — and Ctrl-D ends the session.
//! When stdin is not a terminal each line is one user message, and a client tool's output
//! is read from the next line.
//!
//! On a terminal, input goes through a line editor (rustyline: it is a fraction of
//! reedline's dependencies, and a prompt with history is all a chat needs). It runs on a
//! thread of its own, because it blocks, and only while the user types: during a run the
//! terminal is back in cooked mode, so Ctrl-C arrives as SIGINT and cancels the run, while
//! Ctrl-C at the prompt only clears the line. History is kept beside the store
//! (`.clarion/history`), appended a line at a time so a killed session loses nothing. A
//! closed terminal (SIGHUP) cancels the run in progress the same way, then ends the session
//! with exit 2. While the model or a tool is working a spinner turns on stderr (only when
//! stderr is a terminal); it is erased before anything else is printed.

use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarion_engine::ErrorCode;
use clarion_engine::{Engine, Run, RunStatus, ToolOutputSubmission};
use clarion_engine::{Event, EventSink};
use clarion_engine::{Metadata, Thread};
use clarion_engine::{StoreError, ThreadStore};
use clarion_flow::{Flow, LoadOptions, load_file_with, load_str_with};
use clarion_providers::select::{ProviderOverrides, model_for, resolve};
use clarion_store::SqliteStore;
use clarion_testing::transcript::Transcript;
use clarion_tools::ClarionTools;
use tokio::sync::{mpsc, oneshot, watch};

use crate::args::ChatArgs;
use crate::error::CliError;
use crate::exit::Exit;
use crate::output;

/// Where the flow comes from: a file, or text built into the binary (`clarion demo`).
pub(crate) enum FlowSource<'a> {
    /// `args.flow`.
    File,
    /// A flow embedded in the binary, shown under `name`.
    Embedded {
        /// The name diagnostics and the banner use.
        name: &'a str,
        /// The flow file's text.
        text: &'a str,
    },
}

pub(crate) fn run(args: &ChatArgs) -> Result<Exit, CliError> {
    run_flow(args, &FlowSource::File)
}

/// `clarion chat` on a flow from `source`.
pub(crate) fn run_flow(args: &ChatArgs, source: &FlowSource<'_>) -> Result<Exit, CliError> {
    // One conversation needs no parallelism: a current-thread runtime runs the run's task,
    // the input and the signals on this thread, with no wake-ups across worker threads
    // (piped stdin is read on it too, see `piped_lines`; SQLite runs in place, see `open`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(chat(args, source));
    // A reader blocked on a closed terminal must not keep the process alive.
    runtime.shutdown_background();
    result
}

/// What a session needs: the engine, the flow, the thread, and a line describing the model.
struct Session {
    engine: Arc<Engine>,
    flow: Arc<Flow>,
    current: Current,
    banner: String,
}

/// Loads the flow, opens the store, picks the provider, and finds or creates the thread.
/// `Ok(None)` when the flow has errors (they are printed).
async fn open(
    args: &ChatArgs,
    source: &FlowSource<'_>,
    spinner: &Arc<Spinner>,
) -> Result<Option<Session>, CliError> {
    // An MCP server's progress notifications show in the spinner: "running TOOL (2/5: …)".
    let progress_spinner = Arc::clone(spinner);
    let tools = ClarionTools::new().with_mcp_progress(Arc::new(move |progress| {
        progress_spinner.spin(&progress_label(progress));
    }));
    let options = LoadOptions {
        builtins: Some(tools.builtins()),
        ..LoadOptions::default()
    };
    let report = match source {
        FlowSource::File => {
            if !args.flow.is_file() {
                return Err(CliError::MissingFlow(args.flow.clone()));
            }
            load_file_with(&args.flow, &options)
        }
        FlowSource::Embedded { name, text } => load_str_with(*name, text, None, &options),
    };
    let Some(flow) = output::flow_or_errors(report, "chat with", &args.flow, false) else {
        return Ok(None);
    };
    crate::logging::redactor().add_flow(&flow);
    let flow = Arc::new(flow);
    let shown = crate::store::shown(&args.store);
    let store: Arc<dyn ThreadStore> = if crate::store::is_url(&args.store) {
        Arc::new(crate::store::postgres(&args.store, clarion_store_postgres::DEFAULT_LEASE).await?)
    } else {
        // One conversation on a current-thread runtime: queries run in place, without a
        // hop to the blocking pool and back for each of a turn's dozen store calls.
        Arc::new(
            SqliteStore::open(&args.store)
                .map_err(|e| CliError::Store {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?
                .in_place(),
        )
    };
    let overrides = ProviderOverrides {
        base_url: args.base_url.clone(),
        api: args.api.map(Into::into),
        model: args.model.clone(),
        stream: args.no_stream.then_some(false),
    };
    let model = model_for(&flow, &overrides).map_err(|e| CliError::Provider(e.to_string()))?;
    // A turn of pure built-ins is stored with the answer that follows it, one write fewer
    // per round trip; another process reading the same store sees that turn only then.
    let engine = Arc::new(
        Engine::new(flow.clone(), model, Arc::new(tools), store).defer_replayable_steps(true),
    );
    engine.recover().await.map_err(|e| CliError::Store {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let current = match &args.thread {
        Some(id) => Current {
            thread: engine.thread(id).await.map_err(|e| match e {
                clarion_engine::EngineError::Store(StoreError::ThreadNotFound(_)) => {
                    CliError::UnknownThread(id.clone(), shown.clone())
                }
                other => CliError::Store {
                    path: shown.clone(),
                    reason: other.to_string(),
                },
            })?,
            stored: true,
        },
        // Stored with the first turn (one write instead of two), or at the end.
        None => Current {
            thread: engine.new_thread(Metadata::default()),
            stored: false,
        },
    };
    let (_, config) = resolve(&flow, &overrides, &|name| std::env::var(name).ok());
    let model_name = config
        .model
        .clone()
        .unwrap_or_else(|| flow.assistant.model.clone());
    let banner = format!(
        "{} · {model_name} at {} · thread {}",
        flow.name, config.base_url, current.thread.id
    );
    Ok(Some(Session {
        engine,
        flow,
        current,
        banner,
    }))
}

async fn chat(args: &ChatArgs, source: &FlowSource<'_>) -> Result<Exit, CliError> {
    let spinner = Spinner::start(std::io::stderr().is_terminal());
    let Some(Session {
        engine,
        flow,
        mut current,
        banner,
    }) = open(args, source, &spinner).await?
    else {
        return Ok(Exit::Problems);
    };
    let interactive = std::io::stdin().is_terminal();
    let sink = Arc::new(Terminal::new(args.verbose, spinner));
    let mut input = Input::new(interactive, history_path(&args.store), hangup_signal());
    let hint = if interactive {
        " · /help for commands, Ctrl-D to leave"
    } else {
        ""
    };
    note(&format!("{banner}{hint}"));
    let mut log = Log::default();
    let mut exit = Exit::Success;
    loop {
        let line = match input.read("you › ", true).await {
            Line::Text(line) => line,
            Line::Interrupted => continue,
            Line::End => break,
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(command) = line.strip_prefix('/') {
            // Every command may read the thread, and `/reset` says the old one stays.
            if let Err(message) = current.keep(&engine).await {
                output::error_line(&message);
                continue;
            }
            match slash(
                command,
                &engine,
                &flow,
                &mut current,
                &mut log,
                &crate::store::shown(&args.store),
                matches!(source, FlowSource::File).then_some(args.flow.as_path()),
            )
            .await
            {
                Ok(true) => continue,
                Ok(false) => break,
                Err(message) => {
                    output::error_line(&message);
                    continue;
                }
            }
        }
        log.0.push(Logged::User(line.to_owned()));
        match turn(&engine, &mut current, line, &mut input, &sink).await {
            Ok(run) => {
                log.0.push(Logged::Events(sink.take()));
                log.0.push(Logged::Run(Box::new(run.clone())));
                if input.hung_up() {
                    break;
                }
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
                            .is_some_and(|e| matches!(e.code, ErrorCode::Model(_)))
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
    let kept = !clarion_store::sqlite::is_memory(&args.store);
    Ok(farewell(&engine, current, input.hung_up(), kept, exit).await)
}

/// Ends the session: stores a thread never spoken in, as the last line promises, and
/// says how to resume it (unless the store is in memory: then nothing can be).
async fn farewell(
    engine: &Engine,
    mut current: Current,
    hung_up: bool,
    kept: bool,
    exit: Exit,
) -> Exit {
    if let Err(message) = current.keep(engine).await {
        output::error_line(&message);
    }
    let id = &current.thread.id;
    if !kept {
        note(&format!(
            "thread {id} ends with this session: --store :memory: keeps nothing"
        ));
        return if hung_up { Exit::Usage } else { exit };
    }
    if hung_up {
        // Nobody may read this, but a log capturing stderr would.
        output::error_line(&format!(
            "the terminal closed; thread {id} is saved: resume it with --thread {id}"
        ));
        return Exit::Usage;
    }
    note(&format!("thread {id} saved; resume with --thread {id}"));
    exit
}

/// One user turn: the message, the run (cancelled by Ctrl-C), and client tool outputs.
async fn turn(
    engine: &Arc<Engine>,
    current: &mut Current,
    text: &str,
    input: &mut Input,
    sink: &Arc<Terminal>,
) -> Result<Run, String> {
    // The message and the run's start in one store write (`Engine::send`), with the thread
    // itself when it is new (`Engine::send_first`); the run's id is known beforehand, for
    // Ctrl-C.
    let work = if current.stored {
        Work::Send {
            thread_id: current.thread.id.clone(),
            text: text.to_owned(),
        }
    } else {
        Work::SendFirst {
            thread: Box::new(current.thread.clone()),
            text: text.to_owned(),
        }
    };
    let first = drive(
        engine,
        sink,
        clarion_engine::new_id("run"),
        work,
        &input.hangup,
    )
    .await;
    if !current.stored {
        // Failed before its write, the thread is still not stored.
        current.stored = first.is_ok() || engine.thread_header(&current.thread.id).await.is_ok();
    }
    let mut run = first?;
    while run.status == RunStatus::RequiresAction && !input.hung_up() {
        let mut outputs = Vec::new();
        for call in &run.required_action {
            note(&format!(
                "client tool {}({}) — type its JSON output:",
                call.name, call.arguments
            ));
            let Line::Text(output) = input.read("output › ", false).await else {
                let cancelled = engine
                    .cancel(&run.id, sink.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(cancelled);
            };
            outputs.push(ToolOutputSubmission {
                call_id: call.id.clone(),
                output,
            });
        }
        let work = Work::Submit(outputs);
        run = drive(engine, sink, run.id.clone(), work, &input.hangup).await?;
    }
    sink.end_line();
    Ok(run)
}

/// The session's thread. A new one (at the start, after `/reset`) is stored with its first
/// turn, or before a command or at the session's end ([`Current::keep`]).
struct Current {
    thread: Thread,
    stored: bool,
}

impl Current {
    /// Stores the thread if it is not yet.
    async fn keep(&mut self, engine: &Engine) -> Result<(), String> {
        if !self.stored {
            engine
                .store()
                .insert_thread(&self.thread)
                .await
                .map_err(|e| format!("cannot store thread {}: {e}", self.thread.id))?;
            self.stored = true;
        }
        Ok(())
    }
}

/// What [`drive`] does with its run.
enum Work {
    /// Adds the user's message and starts the run with it.
    Send { thread_id: String, text: String },
    /// Stores a new thread with the user's message and starts the run with it.
    SendFirst { thread: Box<Thread>, text: String },
    /// Submits client tool outputs to the run.
    Submit(Vec<ToolOutputSubmission>),
}

/// Drives a run in a task, cancelling it on Ctrl-C or when the terminal closes.
async fn drive(
    engine: &Arc<Engine>,
    sink: &Arc<Terminal>,
    run_id: String,
    work: Work,
    hangup: &watch::Receiver<bool>,
) -> Result<Run, String> {
    sink.spinner.spin("thinking");
    let task = {
        let (engine, sink, run_id) = (engine.clone(), sink.clone(), run_id.clone());
        tokio::spawn(async move {
            match work {
                Work::Send { thread_id, text } => {
                    engine.send(&thread_id, &text, &run_id, sink.as_ref()).await
                }
                Work::SendFirst { thread, text } => {
                    engine
                        .send_first(*thread, &text, &run_id, sink.as_ref())
                        .await
                }
                Work::Submit(outputs) => {
                    engine
                        .submit_tool_outputs(&run_id, outputs, sink.as_ref())
                        .await
                }
            }
        })
    };
    tokio::pin!(task);
    let mut hangup = hangup.clone();
    let result = tokio::select! {
        result = &mut task => result,
        _ = tokio::signal::ctrl_c() => {
            sink.end_line();
            sink.say("cancelling…");
            sink.flush();
            let _ = engine.cancel(&run_id, sink.as_ref()).await;
            task.await
        }
        Ok(_) = hangup.wait_for(|closed| *closed) => {
            let _ = engine.cancel(&run_id, sink.as_ref()).await;
            task.await
        }
    };
    sink.flush();
    sink.spinner.stop();
    result
        .map_err(|e| format!("the run stopped unexpectedly: {e}"))?
        .map_err(|e| e.to_string())
}

/// Handles `/command`; `Ok(false)` ends the session.
async fn slash(
    command: &str,
    engine: &Engine,
    flow: &Flow,
    current: &mut Current,
    log: &mut Log,
    store: &Path,
    flow_path: Option<&Path>,
) -> Result<bool, String> {
    let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
    // The thread's header as the store has it now, for the commands that show it.
    let fresh = async || {
        engine
            .thread_header(&current.thread.id)
            .await
            .map_err(|e| e.to_string())
    };
    match name {
        "slots" => {
            let fresh = fresh().await?;
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
            let fresh = fresh().await?;
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
            // Stored with its first turn, one write instead of two.
            *current = Current {
                thread: engine.new_thread(Metadata::default()),
                stored: false,
            };
            log.0.clear();
            note(&format!(
                "new thread {} (the old one stays in {})",
                current.thread.id,
                store.display()
            ));
        }
        "transcript" => {
            let path = rest.trim();
            if path.is_empty() {
                return Err("/transcript needs a file name, e.g. /transcript chat.txt".to_owned());
            }
            let text = log.render(flow);
            std::fs::write(path, &text).map_err(|e| format!("cannot write {path}: {e}"))?;
            note(&format!("transcript of this session written to {path}"));
        }
        "save" => {
            let id = &current.thread.id;
            Box::pin(save(engine, flow, id, rest.trim(), flow_path)).await?;
        }
        "quit" | "exit" => return Ok(false),
        "help" => output::out(
            "  /slots  /metadata  /reset  /transcript FILE  /save NAME  /quit — Ctrl-C cancels a run, Ctrl-D exits\n",
        ),
        other => return Err(format!("unknown command /{other}; try /help")),
    }
    Ok(true)
}

/// `/save NAME`: the conversation so far as the scenario `flows/FLOW/scenarios/NAME.toml`
/// with its accepted snapshot, played as `clarion test` will play it (see
/// [`clarion_testing::save`]).
async fn save(
    engine: &Engine,
    flow: &Flow,
    thread_id: &str,
    name: &str,
    flow_path: Option<&Path>,
) -> Result<(), String> {
    if name.is_empty() {
        return Err("/save needs a scenario name, e.g. /save missing_income".to_owned());
    }
    let Some(flow_path) = flow_path else {
        return Err("/save needs the flow's file: the built-in demo flow has none".to_owned());
    };
    let thread = engine.thread(thread_id).await.map_err(|e| e.to_string())?;
    let metadata = thread
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("_clarion"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let runner = clarion_testing::Runner::new()
        .with_builtins(Arc::new(clarion_tools::BuiltinRegistry::standard()))
        .with_executor(Arc::new(ClarionTools::new()));
    let saved =
        clarion_testing::save::save(&runner, flow_path, flow, &thread.messages, name, metadata)
            .await
            .map_err(|e| e.to_string())?;
    note(&format!(
        "saved {} ({} turns) and its snapshot {}; run it with `clarion test {}`",
        saved.scenario.display(),
        saved.turns,
        saved.snapshot.display(),
        saved.scenario.display()
    ));
    Ok(())
}

/// What the user typed.
enum Line {
    /// A line.
    Text(String),
    /// Ctrl-C at the prompt: the line was dropped.
    Interrupted,
    /// Ctrl-D, end of input, or the terminal closed.
    End,
}

/// The user's side of the conversation: the line editor on a terminal, plain lines
/// otherwise; either gives up when the terminal closes.
struct Input {
    source: Source,
    hangup: watch::Receiver<bool>,
}

/// Where lines come from.
enum Source {
    /// The line editor, on a terminal.
    Editor(Editor),
    /// A pipe or a file, read by one thread for the whole session (a blocking task per
    /// line cost a thread hand-off per line).
    Piped(mpsc::Receiver<Line>),
}

impl Input {
    fn new(interactive: bool, history: Option<PathBuf>, hangup: watch::Receiver<bool>) -> Self {
        let editor = if interactive {
            Editor::spawn(history)
                .inspect_err(|e| note(&format!("no line editing: {e}")))
                .ok()
        } else {
            None
        };
        let source = editor.map_or_else(|| Source::Piped(piped_lines()), Source::Editor);
        Self { source, hangup }
    }

    fn hung_up(&self) -> bool {
        *self.hangup.borrow()
    }

    /// Reads one line; `remember` adds it to the history.
    async fn read(&mut self, prompt: &'static str, remember: bool) -> Line {
        if self.hung_up() {
            return Line::End;
        }
        let answer = async {
            match &mut self.source {
                Source::Editor(editor) => {
                    let (reply, answer) = oneshot::channel();
                    let request = Request {
                        prompt,
                        remember,
                        reply,
                    };
                    if editor.requests.send(request).is_err() {
                        return Line::End;
                    }
                    answer.await.unwrap_or(Line::End)
                }
                Source::Piped(lines) => lines.recv().await.unwrap_or(Line::End),
            }
        };
        let mut hangup = self.hangup.clone();
        tokio::select! {
            line = answer => line,
            Ok(_) = hangup.wait_for(|closed| *closed) => Line::End,
        }
    }
}

/// Reads stdin line by line, up to 64 lines ahead of the conversation; the channel
/// closes after the end of the input (or a read error, or a line that is not UTF-8). A
/// pipe is read on the runtime whenever it is readable; anything else (a file or
/// `/dev/null`, which epoll cannot wait on, or a socket, which `/proc` cannot open again)
/// on a thread of its own.
fn piped_lines() -> mpsc::Receiver<Line> {
    // Room for the lines a script sends at once (`/reset` and a question): a full
    // channel parks the reader, and waking it again costs a hand-off per line.
    const READ_AHEAD: usize = 64;
    let (sender, lines) = mpsc::channel(READ_AHEAD);
    if let Some(pipe) = pipe::Stdin::open() {
        tokio::spawn(pipe.lines(sender));
        return lines;
    }
    let reader = move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = String::new();
            let Ok(1..) = stdin.read_line(&mut line) else {
                return;
            };
            let line = Line::Text(line.trim_end_matches(['\n', '\r']).to_owned());
            if sender.blocking_send(line).is_err() {
                return;
            }
        }
    };
    // Without the thread there is no input: the receiver's sender is gone, so it reads
    // as the end of the input.
    let _ = std::thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(reader);
    lines
}

/// Stdin as a pipe the runtime waits on. Read on a thread, each line a script sends cost
/// a hand-off from that thread to the runtime's (a wake-up across CPUs).
mod pipe {
    use tokio::net::unix::pipe::{OpenOptions, Receiver};
    use tokio::sync::mpsc;

    use super::Line;

    pub(super) struct Stdin(Receiver);

    impl Stdin {
        /// Stdin, when it is a pipe: opened again through `/proc/self/fd/0`, a
        /// description of its own that can be non-blocking without changing stdin's for
        /// the processes that share it. `None` elsewhere (a file, a socket, a terminal,
        /// no `/proc`).
        pub(super) fn open() -> Option<Self> {
            OpenOptions::new()
                .open_receiver("/proc/self/fd/0")
                .ok()
                .map(Self)
        }

        /// Sends each line read until the end of the input, a read error, a line that is
        /// not UTF-8, or the receiver's end.
        pub(super) async fn lines(self, sender: mpsc::Sender<Line>) {
            let mut buffer = vec![0; 64 * 1024];
            let mut pending: Vec<u8> = Vec::new();
            loop {
                if self.0.readable().await.is_err() {
                    return;
                }
                let read = match self.0.try_read(&mut buffer) {
                    Ok(read) => read,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue;
                    }
                    Err(_) => return,
                };
                if read == 0 {
                    if !pending.is_empty() {
                        let _ = send(&sender, std::mem::take(&mut pending)).await;
                    }
                    return;
                }
                pending.extend_from_slice(&buffer[..read]);
                let mut start = 0;
                while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                    let line = pending[start..start + end].to_vec();
                    start += end + 1;
                    if !send(&sender, line).await {
                        return;
                    }
                }
                pending.drain(..start);
            }
        }
    }

    /// Sends one line; false when the input should end (not UTF-8, or no receiver).
    async fn send(sender: &mpsc::Sender<Line>, line: Vec<u8>) -> bool {
        let Ok(line) = String::from_utf8(line) else {
            return false;
        };
        let line = Line::Text(line.trim_end_matches('\r').to_owned());
        sender.send(line).await.is_ok()
    }
}

/// A request to the line editor's thread.
struct Request {
    prompt: &'static str,
    remember: bool,
    reply: oneshot::Sender<Line>,
}

/// rustyline on a thread of its own (it blocks while the user types).
struct Editor {
    requests: std::sync::mpsc::Sender<Request>,
}

impl Editor {
    fn spawn(history: Option<PathBuf>) -> Result<Self, String> {
        let (requests, incoming) = std::sync::mpsc::channel::<Request>();
        let (ready, started) = std::sync::mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("line-editor".to_owned())
            .spawn(move || {
                let config = rustyline::Config::builder()
                    .behavior(rustyline::config::Behavior::PreferTerm)
                    .auto_add_history(false)
                    .build();
                let mut editor = match rustyline::DefaultEditor::with_config(config) {
                    Ok(editor) => editor,
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                };
                if let Some(path) = &history {
                    // A missing file is a first session; a broken one starts over.
                    let _ = editor.load_history(path);
                }
                let _ = ready.send(Ok(()));
                for request in incoming {
                    let line = match editor.readline(request.prompt) {
                        Ok(line) => {
                            if request.remember && !line.trim().is_empty() {
                                let _ = editor.add_history_entry(line.as_str());
                                if let Some(path) = &history {
                                    let _ = editor.append_history(path);
                                }
                            }
                            Line::Text(line)
                        }
                        Err(rustyline::error::ReadlineError::Interrupted) => Line::Interrupted,
                        // Ctrl-D, or the terminal went away (EIO).
                        Err(_) => Line::End,
                    };
                    let _ = request.reply.send(line);
                }
            })
            .map_err(|e| e.to_string())?;
        started
            .recv()
            .map_err(|_| "the line editor did not start".to_owned())??;
        Ok(Self { requests })
    }
}

/// The history file: `history` beside the store.
fn history_path(store: &Path) -> Option<PathBuf> {
    if crate::store::is_url(store) || clarion_store::sqlite::is_memory(store) {
        // A database or memory has no directory: the history stays where the default
        // store would be.
        return Some(PathBuf::from(".clarion/history"));
    }
    let dir = store.parent()?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    Some(dir.join("history"))
}

/// Becomes `true` when the terminal closes (SIGHUP). Installing the handler replaces the
/// default action (exit at once, mid-write) with an orderly end.
fn hangup_signal() -> watch::Receiver<bool> {
    let (closed, hangup) = watch::channel(false);
    if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            if signal.recv().await.is_some() {
                let _ = closed.send(true);
            }
        });
    }
    hangup
}

fn note(text: &str) {
    let style = anstyle::Style::new().dimmed();
    output::err(&format!("{style}{text}{style:#}\n"));
}

/// The spinner's label for an MCP progress notification, e.g. `running get_data (2/5:
/// fetching)`.
fn progress_label(progress: &clarion_tools::mcp::McpProgress) -> String {
    let count = match progress.total {
        Some(total) => format!("{}/{}", progress.progress, total),
        None => progress.progress.to_string(),
    };
    match &progress.message {
        Some(message) => format!("running {} ({count}: {message})", progress.tool),
        None => format!("running {} ({count})", progress.tool),
    }
}

/// A spinner on stderr while the model or a tool works: a small task redraws one line
/// every 100 ms while there is a label, and whatever else is printed erases it first (under
/// the same lock, so a frame never lands in the middle of a reply).
struct Spinner {
    enabled: bool,
    state: Mutex<SpinState>,
}

#[derive(Default)]
struct SpinState {
    label: Option<String>,
    frame: usize,
    shown: bool,
}

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

impl Spinner {
    /// A spinner drawing on stderr when `enabled` (stderr is a terminal), else inert.
    fn start(enabled: bool) -> Arc<Self> {
        let spinner = Arc::new(Self {
            enabled,
            state: Mutex::new(SpinState::default()),
        });
        if enabled {
            let weak = Arc::downgrade(&spinner);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(spinner) = weak.upgrade() else { break };
                    spinner.draw();
                }
            });
        }
        spinner
    }

    fn draw(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let Some(label) = state.label.clone() else {
            return;
        };
        let frame = FRAMES[state.frame % FRAMES.len()];
        state.frame += 1;
        let style = if output::stderr_styled() {
            anstyle::Style::new().dimmed()
        } else {
            anstyle::Style::new()
        };
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r{style}{frame} {label}…{style:#}\x1b[K");
        let _ = stderr.flush();
        state.shown = true;
    }

    /// Spins with `label` from the next tick on.
    fn spin(&self, label: &str) {
        if let Ok(mut state) = self.state.lock()
            && self.enabled
        {
            state.label = Some(label.to_owned());
        }
    }

    /// Stops spinning and erases the spinner.
    fn stop(&self) {
        self.quiet(|| {});
        if let Ok(mut state) = self.state.lock() {
            state.label = None;
        }
    }

    /// Runs `print` with the spinner erased; it comes back on the next tick.
    fn quiet(&self, print: impl FnOnce()) {
        let Ok(mut state) = self.state.lock() else {
            print();
            return;
        };
        if state.shown {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
            state.shown = false;
        }
        print();
    }
}

/// What `/transcript` writes: the session since it began, was reset or was last written,
/// kept as it happened and rendered only when asked for (rendering each turn as it ended
/// cost ~2% of a round trip, for a command most sessions never use).
#[derive(Default)]
struct Log(Vec<Logged>);

enum Logged {
    User(String),
    Events(Vec<Event>),
    Run(Box<Run>),
}

impl Log {
    /// The transcript of what was logged, which the log then forgets.
    fn render(&mut self, flow: &Flow) -> String {
        let mut transcript = Transcript::for_flow(flow);
        for logged in self.0.drain(..) {
            match logged {
                Logged::User(text) => transcript.user(&text),
                Logged::Events(events) => transcript.events(&events),
                Logged::Run(run) => transcript.run(&run),
            }
        }
        transcript.finish()
    }
}

/// Prints events as they happen: reply text to stdout, everything else dimmed to stderr.
struct Terminal {
    verbose: bool,
    spinner: Arc<Spinner>,
    /// Whether reply text is mid-line on stdout.
    open_line: Mutex<bool>,
    /// Events of the current run that the session transcript shows.
    events: Mutex<Vec<Event>>,
    /// Tools started and not finished, and the rule effects held back until they finish:
    /// the engine applies a call's rules before announcing its output, but people read
    /// the result first.
    running: Mutex<(usize, Vec<String>)>,
    /// Notes said and not yet written: a burst of them (a call's slots, the call, its
    /// result, a rule's effects) goes out in one write when the run next waits.
    notes: Mutex<String>,
}

impl Terminal {
    fn new(verbose: bool, spinner: Arc<Spinner>) -> Self {
        Self {
            verbose,
            spinner,
            open_line: Mutex::new(false),
            events: Mutex::new(Vec::new()),
            running: Mutex::new((0, Vec::new())),
            notes: Mutex::new(String::new()),
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
            self.out("\n");
            *open = false;
        }
    }

    /// Reply text on stdout, after the notes said before it.
    fn out(&self, text: &str) {
        self.spinner.quiet(|| {
            self.write_notes();
            output::out(text);
        });
    }

    /// A dimmed line on stderr, written with the next [`flush`](Terminal::flush).
    fn say(&self, text: &str) {
        if let Ok(mut notes) = self.notes.lock() {
            // Unstyled where stderr takes no styles, rather than styled and stripped.
            let style = if output::stderr_styled() {
                anstyle::Style::new().dimmed()
            } else {
                anstyle::Style::new()
            };
            let _ = writeln!(notes, "{style}{text}{style:#}");
        }
    }

    /// Writes the notes said so far: before anything that waits (a tool, the model, the
    /// user), so nothing said is still held back while the session waits.
    fn flush(&self) {
        if self.notes.lock().is_ok_and(|notes| !notes.is_empty()) {
            self.spinner.quiet(|| self.write_notes());
        }
    }

    fn write_notes(&self) {
        if let Ok(mut notes) = self.notes.lock()
            && !notes.is_empty()
        {
            output::err(&notes);
            notes.clear();
        }
    }

    /// Prints a rule effect now, or after the running tools finish.
    fn effect(&self, line: String) {
        match self.running.lock() {
            Ok(mut running) if running.0 > 0 => running.1.push(line),
            _ => self.say(&line),
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
        // Only what `/transcript` shows is kept: not every streamed piece of every reply.
        if Transcript::shows(event)
            && let Ok(mut events) = self.events.lock()
        {
            events.push(event.clone());
        }
        match event {
            Event::TextDelta { text } => {
                self.spinner.stop();
                self.out(text);
                if let Ok(mut open) = self.open_line.lock() {
                    *open = true;
                }
            }
            Event::AssistantMessage { .. } => self.end_line(),
            Event::QuestionAsked { text, .. } | Event::ConfirmationAsked { text, .. } => {
                self.spinner.stop();
                self.end_line();
                self.out(&format!("{text}\n"));
            }
            Event::ToolStarted {
                name, arguments, ..
            } => {
                self.end_line();
                if let Ok(mut running) = self.running.lock() {
                    running.0 += 1;
                }
                self.say(&format!(
                    "  → {name}({})",
                    self.short(&arguments.to_string())
                ));
                self.spinner.spin(&format!("running {name}"));
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
                self.say(&format!("  ← {name} {status}: {}", self.short(content)));
                if let Ok(mut running) = self.running.lock() {
                    running.0 = running.0.saturating_sub(1);
                    if running.0 == 0 {
                        for line in running.1.drain(..) {
                            self.say(&line);
                        }
                        self.spinner.spin("thinking");
                    }
                }
            }
            Event::ContextInjected { text, .. } => {
                self.effect(format!("  + context: {}", self.short(text)));
            }
            Event::SlotSet { name, value } => self.effect(format!("  = {name} ← {value}")),
            Event::ConfirmationAnswered { tool, decision, .. } => {
                self.say(&format!(
                    "  · {tool}: the answer reads as `{}`",
                    decision.as_str()
                ));
            }
            Event::PendingAbandoned { tool, .. } => {
                self.say(&format!("  × the pending {tool} call was dropped"));
            }
            Event::HandedOff { to, comes_back, .. } => {
                let back = if *comes_back {
                    ", and back when done"
                } else {
                    ""
                };
                self.say(&format!("  >> handed to {to}{back}"));
            }
            Event::HandedBack { from, to, .. } => {
                self.say(&format!("  << {from} handed back to {to}"));
            }
            Event::NotStated { params, .. } => {
                self.effect(format!("  × not stated, dropped: {}", params.join(", ")));
            }
            Event::RuleSkipped { tool, reason } => self.effect(format!("  ! {tool}: {reason}")),
            Event::ValueRejected {
                param,
                keyword,
                value,
                ..
            } => self.effect(format!("  × {param} = {value} fails `{keyword}`, dropped")),
            Event::AsksExhausted { params, asked, .. } => self.effect(format!(
                "  × asked for {} {asked}× without a usable value: given up",
                params.join(", ")
            )),
            // Statuses come from the run; calls are shown with their results.
            _ => {}
        }
        // What comes next waits: a tool runs, the model thinks, or the run has ended.
        if matches!(
            event,
            Event::ToolStarted { .. } | Event::ModelCalled { .. } | Event::Status { .. }
        ) {
            self.flush();
        }
    }
}
