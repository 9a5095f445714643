//! A real server on loopback for the integration tests: the test flow, a scripted model,
//! the real built-in tools, and a SQLite store in a temporary directory.

#![allow(dead_code, reason = "each test file uses part of the harness")]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use clarion_engine::BoxFuture;
use clarion_engine::Engine;
use clarion_engine::EventSink;
use clarion_engine::ThreadStore;
use clarion_engine::Usage;
use clarion_engine::scripted::{ScriptedModel, ScriptedTurn};
use clarion_engine::{MessageKind, ToolCall};
use clarion_engine::{Model, ModelError, ModelRequest, ModelResponse, ModelTurn};
use clarion_flow::{LoadOptions, load_file_with};
use clarion_server::{ApiKeys, AppState};
use clarion_store::SqliteStore;
use clarion_tools::ClarionTools;

/// A running server.
pub(crate) struct Server {
    /// `http://127.0.0.1:PORT/v1`.
    pub base: String,
    /// The address.
    pub addr: SocketAddr,
    /// The model's script (push more turns while the test runs).
    pub model: Arc<ScriptedModel>,
    /// Stops the server when dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

/// Starts a server for the `shop` flow playing `turns`, with `keys` (none: open).
pub(crate) async fn start(turns: Vec<ScriptedTurn>, keys: &[&str], body_limit: usize) -> Server {
    start_limited(turns, keys, body_limit, 0.0).await
}

/// [`start`] with a rate limit (requests per second per key; 0: none).
pub(crate) async fn start_limited(
    turns: Vec<ScriptedTurn>,
    keys: &[&str],
    body_limit: usize,
    rate: f64,
) -> Server {
    let model = Arc::new(ScriptedModel::new(turns));
    let (state, dir) = shop_state(model.clone(), keys, rate);
    let router = clarion_server::router(state, body_limit);
    let (addr, stop) = serve_router(router).await;
    Server {
        base: format!("http://{addr}/v1"),
        addr,
        model,
        _stop: stop,
        _dir: dir,
    }
}

/// A server over `state` with a model of its own (the script stays empty).
pub(crate) async fn start_state(state: AppState, dir: tempfile::TempDir) -> Server {
    let router = clarion_server::router(state, clarion_server::DEFAULT_BODY_LIMIT);
    let (addr, stop) = serve_router(router).await;
    Server {
        base: format!("http://{addr}/v1"),
        addr,
        model: Arc::new(ScriptedModel::default()),
        _stop: stop,
        _dir: dir,
    }
}

/// Serves `router` on a loopback port until the returned sender is dropped, with the
/// server's own accept loop.
pub(crate) async fn serve_router(
    router: axum::Router,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    serve_router_with(router, clarion_server::HEADER_READ_TIMEOUT).await
}

/// [`serve_router`] with a header-read timeout of its own.
pub(crate) async fn serve_router_with(
    router: axum::Router,
    header_timeout: std::time::Duration,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = clarion_server::serve_with(listener, router, header_timeout, async {
            let _ = stopped.await;
        })
        .await;
    });
    (addr, stop)
}

/// State for the `shop` flow with `model`, a SQLite store in a new temporary directory
/// (kept alive by the returned guard), `keys` (none: open) and a rate limit (0: none).
pub(crate) fn shop_state(
    model: Arc<dyn Model>,
    keys: &[&str],
    rate: f64,
) -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store: Arc<dyn ThreadStore> = Arc::new(
        SqliteStore::open(dir.path().join("threads.db")).unwrap_or_else(|e| panic!("{e}")),
    );
    (shop_state_on(model, store, keys, rate), dir)
}

/// The shop flow's server state on `store`.
pub(crate) fn shop_state_on(
    model: Arc<dyn Model>,
    store: Arc<dyn ThreadStore>,
    keys: &[&str],
    rate: f64,
) -> AppState {
    let tools = ClarionTools::new();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flows/shop.toml");
    let flow = load_file_with(
        &path,
        &LoadOptions {
            builtins: Some(tools.builtins()),
            ..LoadOptions::default()
        },
    )
    .flow
    .unwrap_or_else(|| panic!("tests/flows/shop.toml has errors"));
    let engine = Arc::new(Engine::new(
        Arc::new(flow),
        model,
        Arc::new(tools),
        store.clone(),
    ));
    let keys = if keys.is_empty() {
        ApiKeys::open()
    } else {
        ApiKeys::new(keys.iter().copied())
    };
    AppState::new(store, vec![engine], keys)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_rate_limit(rate)
}

/// A model for any number of concurrent conversations: a user message gets a `pay` call,
/// a tool output gets a reply. It looks only at the request, so runs never share a script.
pub(crate) struct LoopModel;

impl Model for LoopModel {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        _events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        let turn = match request.messages.last().map(|m| &m.kind) {
            Some(MessageKind::ToolOutput { .. }) => ModelTurn::Text("Paid.".to_owned()),
            _ => ModelTurn::ToolCalls {
                text: None,
                calls: vec![ToolCall {
                    id: String::new(),
                    name: "pay".to_owned(),
                    arguments: r#"{"amount": 1}"#.to_owned(),
                }],
            },
        };
        Box::pin(async move {
            Ok(ModelResponse {
                turn,
                usage: Usage::default(),
            })
        })
    }
}

/// The turns of the classic loop: a server-side call, then a client call, then a reply.
pub(crate) fn pay_loop() -> Vec<ScriptedTurn> {
    vec![
        ScriptedTurn::call(
            "savings",
            r#"{"goal_amount": 1200, "monthly_income": 3000, "monthly_savings": 100}"#,
        ),
        ScriptedTurn::call("pay", r#"{"amount": 42}"#),
        ScriptedTurn::text("Paid $42. Your goal takes 12 months."),
    ]
}

/// An HTTP client (rustls needs its process-wide provider even for plain HTTP).
pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A request's status and JSON body.
pub(crate) async fn call(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_else(|e| panic!("{e}"));
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

/// Polls a run until it leaves `queued`/`in_progress`/`cancelling`.
pub(crate) async fn poll(
    client: &reqwest::Client,
    base: &str,
    thread: &str,
    run: &str,
) -> serde_json::Value {
    for _ in 0..200 {
        let (status, body) = call(client.get(format!("{base}/threads/{thread}/runs/{run}"))).await;
        assert_eq!(status, 200, "{body}");
        if !matches!(
            body["status"].as_str(),
            Some("queued" | "in_progress" | "cancelling")
        ) {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("run {run} did not settle");
}

/// Plays a script and remembers the instructions of every request.
pub(crate) struct Recorder {
    /// The script.
    pub script: ScriptedModel,
    /// Instructions seen, in request order.
    pub instructions: std::sync::Mutex<Vec<String>>,
    /// How many messages each request sent, in request order.
    pub sent: std::sync::Mutex<Vec<usize>>,
}

impl Recorder {
    /// A recorder playing `turns`, with nothing seen yet.
    pub(crate) fn new(turns: impl IntoIterator<Item = ScriptedTurn>) -> Self {
        Self {
            script: ScriptedModel::new(turns),
            instructions: std::sync::Mutex::default(),
            sent: std::sync::Mutex::default(),
        }
    }
}

impl Model for Recorder {
    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        if let Ok(mut seen) = self.instructions.lock() {
            seen.push(request.instructions.to_owned());
        }
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(request.messages.len());
        }
        self.script.respond(request, events)
    }
}
