//! MCP tools against real published servers: `mcp-server-time` (`PyPI`) over stdio and
//! `@modelcontextprotocol/server-everything` (npm) over stdio and streamable HTTP, as
//! `scripts/mcp-servers.sh` installs them (`CLARION_TEST_MCP_TIME`,
//! `CLARION_TEST_MCP_EVERYTHING`). Without them a test prints "skipped: why" and passes,
//! except under CI, where it fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clarion_engine::{ToolError, ToolErrorKind, ToolExecutor, ToolRequest};
use clarion_flow::mcp::{LOCK_VERSION, McpLock, servers_of};
use clarion_flow::{Flow, LoadOptions, load_str_with};
use clarion_tools::ClarionTools;
use serde_json::{Map, Value, json};

/// The server an environment variable names, or `None` (and "skipped: why") outside CI.
fn server(var: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|path| path.exists());
    if found.is_none() {
        let why = format!("{var} names no installed MCP server (run scripts/mcp-servers.sh)");
        assert!(std::env::var_os("CI").is_none(), "{why}");
        #[allow(clippy::print_stderr)] // the suites' convention for a skipped test
        {
            eprintln!("skipped: {why}");
        }
    }
    found
}

const HEADER: &str = r#"
[flow]
name = "mcp"
[assistant]
model = "m"
instructions = "i"
"#;

/// Lists the servers of `text` (a flow after the header) and loads the flow against what
/// they list, as `clarion validate --connect` does.
async fn flow(tools: &ClarionTools, dir: &Path, text: &str) -> (Flow, McpLock) {
    let text = format!("{HEADER}{text}");
    let mut lock = McpLock {
        version: LOCK_VERSION,
        servers: std::collections::BTreeMap::new(),
    };
    let servers = servers_of(&text).unwrap_or_else(|e| panic!("{e}"));
    for (name, spec) in &servers {
        let listed = tools
            .mcp()
            .list(dir, name, spec)
            .await
            .unwrap_or_else(|e| panic!("listing `{name}`: {}", e.message));
        lock.servers.insert(name.clone(), listed);
    }
    let report = load_str_with(
        dir.join("mcp.toml"),
        &text,
        Some(dir),
        &LoadOptions {
            mcp_lock: Some(&lock),
            ..LoadOptions::default()
        },
    );
    let messages: Vec<String> = report
        .diagnostics
        .iter()
        .map(clarion_flow::diagnostic::Diagnostic::message)
        .collect();
    let flow = report
        .into_result()
        .unwrap_or_else(|_| panic!("the test flow does not load: {messages:?}"));
    (flow, lock)
}

async fn call(
    tools: &ClarionTools,
    flow: &Flow,
    tool: &str,
    args: Value,
) -> Result<Value, ToolError> {
    let arguments: Map<String, Value> = match args {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    tools
        .execute(ToolRequest {
            flow,
            tool: &flow.tools[tool],
            call_id: "call_1",
            idempotency_key: "key_1",
            arguments: &arguments,
        })
        .await
}

fn failure(result: Result<Value, ToolError>) -> ToolError {
    match result {
        Ok(value) => panic!("the call succeeded: {value}"),
        Err(error) => error,
    }
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn time_server_lists_its_tools_and_answers_a_call_with_arguments() {
    let Some(time) = server("CLARION_TEST_MCP_TIME") else {
        return;
    };
    let dir = temp();
    let tools = ClarionTools::new();
    let (flow, lock) = flow(
        &tools,
        dir.path(),
        &format!(
            r#"
[mcp.time]
command = ["{}", "--local-timezone", "UTC"]
tools = ["convert_time"]
[tools.now]
mcp = "time"
mcp_tool = "get_current_time"
[tools.now.params.timezone]
ask = "Which time zone?"
"#,
            time.display()
        ),
    )
    .await;
    let listed: Vec<&String> = lock.servers["time"].tools.keys().collect();
    assert_eq!(listed, ["convert_time", "get_current_time"]);
    // The description and the schema come from the server; the question from the flow.
    assert_eq!(
        flow.tools["now"].description.as_deref(),
        Some("Get current time in a specific timezone")
    );
    assert_eq!(
        flow.tools["now"].params["timezone"].ask.as_deref(),
        Some("Which time zone?")
    );
    assert_eq!(flow.tools["convert_time"].params.len(), 3);

    let result = call(
        &tools,
        &flow,
        "convert_time",
        json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Kolkata"}),
    )
    .await
    .unwrap_or_else(|e| panic!("{}", e.message));
    let target = result["target"]["datetime"].as_str().unwrap_or_default();
    assert!(target.contains("T17:30:00"), "{result}");

    let now = call(&tools, &flow, "now", json!({"timezone": "Europe/Paris"}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(now["timezone"], "Europe/Paris", "{now}");
}

#[tokio::test]
async fn a_call_the_server_rejects_is_a_tool_error_with_its_message() {
    let Some(time) = server("CLARION_TEST_MCP_TIME") else {
        return;
    };
    let dir = temp();
    let tools = ClarionTools::new();
    let (flow, _) = flow(
        &tools,
        dir.path(),
        &format!(
            "[mcp.time]\ncommand = [\"{}\"]\ntools = [\"get_current_time\"]\n",
            time.display()
        ),
    )
    .await;
    let error = failure(
        call(
            &tools,
            &flow,
            "get_current_time",
            json!({"timezone": "Mars/Olympus_Mons"}),
        )
        .await,
    );
    assert_eq!(error.kind, ToolErrorKind::Failed, "{}", error.message);
    assert!(
        error.message.contains("Mars/Olympus_Mons"),
        "{}",
        error.message
    );
    // The connection survives a rejected call.
    call(
        &tools,
        &flow,
        "get_current_time",
        json!({"timezone": "UTC"}),
    )
    .await
    .unwrap_or_else(|e| panic!("{}", e.message));
}

/// server-everything over stdio, its pid written to `pid` by the shell that `exec`s it.
fn everything_stdio(js: &Path, pid: &Path, timeout: &str) -> String {
    format!(
        r#"
[mcp.everything]
command = ["sh", "-c", "echo $$ > '{}'; exec node '{}' stdio"]
env = ["PATH"]
timeout = "{timeout}"
tools = ["echo"]
[tools.long]
mcp = "everything"
mcp_tool = "trigger-long-running-operation"
"#,
        pid.display(),
        js.display()
    )
}

fn pid_in(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_server_killed_mid_call_fails_that_call_and_is_started_again_for_the_next() {
    let Some(js) = server("CLARION_TEST_MCP_EVERYTHING") else {
        return;
    };
    let dir = temp();
    let pid_file = dir.path().join("server.pid");
    let tools = ClarionTools::new();
    let (flow, _) = flow(&tools, dir.path(), &everything_stdio(&js, &pid_file, "30s")).await;
    let echoed = call(&tools, &flow, "echo", json!({"message": "hello"}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(echoed, json!("Echo: hello"));
    let first = pid_in(&pid_file);

    let long = call(&tools, &flow, "long", json!({"duration": 20, "steps": 2}));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &first])
            .status()
            .is_ok_and(|s| s.success());
        assert!(killed, "cannot kill the server {first}");
    };
    let (result, ()) = tokio::join!(long, kill);
    let error = failure(result);
    assert_eq!(error.kind, ToolErrorKind::Failed, "{}", error.message);
    assert!(
        error.message.contains("stopped during the call"),
        "{}",
        error.message
    );

    let again = call(&tools, &flow, "echo", json!({"message": "again"}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(again, json!("Echo: again"));
    assert_ne!(pid_in(&pid_file), first, "the server was not started again");
}

#[tokio::test]
async fn a_server_that_died_between_calls_is_started_again_and_the_call_succeeds() {
    let Some(js) = server("CLARION_TEST_MCP_EVERYTHING") else {
        return;
    };
    let dir = temp();
    let pid_file = dir.path().join("server.pid");
    let tools = ClarionTools::new();
    let (flow, _) = flow(&tools, dir.path(), &everything_stdio(&js, &pid_file, "30s")).await;
    call(&tools, &flow, "echo", json!({"message": "one"}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    let first = pid_in(&pid_file);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first])
        .status()
        .is_ok_and(|s| s.success());
    assert!(killed, "cannot kill the server {first}");
    // Between calls: the connection notices its server is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No call was in flight: nothing is lost, and the next call simply works.
    let again = call(&tools, &flow, "echo", json!({"message": "two"}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(again, json!("Echo: two"));
    assert_ne!(pid_in(&pid_file), first, "the server was not started again");
}

#[tokio::test]
async fn a_call_past_the_servers_timeout_is_a_timeout_and_the_server_stays_usable() {
    let Some(js) = server("CLARION_TEST_MCP_EVERYTHING") else {
        return;
    };
    let dir = temp();
    let pid_file = dir.path().join("server.pid");
    let tools = ClarionTools::new();
    let (flow, _) = flow(&tools, dir.path(), &everything_stdio(&js, &pid_file, "1s")).await;
    // Start the server first: the timeout covers the call, and a cold start is slower.
    call(&tools, &flow, "echo", json!({"message": "warm"}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    let started = Instant::now();
    let error = failure(call(&tools, &flow, "long", json!({"duration": 10, "steps": 2})).await);
    assert_eq!(error.kind, ToolErrorKind::Timeout, "{}", error.message);
    assert!(error.message.contains("within 1s"), "{}", error.message);
    assert!(started.elapsed() < Duration::from_secs(5));
    call(&tools, &flow, "echo", json!({"message": "still here"}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
}

#[tokio::test]
async fn progress_notifications_of_a_call_reach_the_sink() {
    let Some(js) = server("CLARION_TEST_MCP_EVERYTHING") else {
        return;
    };
    let dir = temp();
    let pid_file = dir.path().join("server.pid");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let tools = ClarionTools::new().with_mcp_progress(std::sync::Arc::new(
        move |progress: &clarion_tools::mcp::McpProgress| {
            if let Ok(mut seen) = sink.lock() {
                seen.push(progress.clone());
            }
        },
    ));
    let (flow, _) = flow(&tools, dir.path(), &everything_stdio(&js, &pid_file, "30s")).await;
    call(&tools, &flow, "long", json!({"duration": 1, "steps": 3}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(!seen.is_empty(), "no progress notification arrived");
    assert!(
        seen.iter().all(|p| p.server == "everything"
            && p.tool == "trigger-long-running-operation"
            && p.total == Some(3.0)),
        "{seen:?}"
    );
}

/// server-everything over streamable HTTP on a free loopback port; killed on drop.
struct HttpServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_server(js: &Path) -> HttpServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or_else(|e| panic!("{e}"), |a| a.port());
    let child = std::process::Command::new("node")
        .arg(js)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server-everything did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    HttpServer { child, port }
}

#[tokio::test]
async fn everything_over_streamable_http_lists_and_calls() {
    let Some(js) = server("CLARION_TEST_MCP_EVERYTHING") else {
        return;
    };
    let http = http_server(&js);
    let dir = temp();
    let tools = ClarionTools::new();
    let (flow, lock) = flow(
        &tools,
        dir.path(),
        &format!(
            r#"
[mcp.everything]
url = "http://127.0.0.1:{}/mcp"
allow_private_network = true
tools = ["echo", "get-sum"]

# A narrowed schema: two of the server's three cities.
[tools.weather]
mcp = "everything"
mcp_tool = "get-structured-content"
[tools.weather.params.location]
enum = ["Chicago", "New York"]
ask = "Which city?"
"#,
            http.port
        ),
    )
    .await;
    assert!(lock.servers["everything"].tools.contains_key("echo"));
    let echoed = call(&tools, &flow, "echo", json!({"message": "over http"}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(echoed, json!("Echo: over http"));
    let sum = call(&tools, &flow, "get-sum", json!({"a": 2, "b": 3}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert!(sum.to_string().contains('5'), "{sum}");
    assert_eq!(
        flow.tools["weather"].params["location"].schema["enum"],
        json!(["Chicago", "New York"])
    );
    // Structured content is the result, as the server's output schema describes it.
    let weather = call(&tools, &flow, "weather", json!({"location": "Chicago"}))
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(weather["temperature"], json!(36), "{weather}");
    assert_eq!(weather["humidity"], json!(82), "{weather}");
}

#[tokio::test]
async fn an_http_server_on_loopback_is_refused_unless_the_flow_allows_it() {
    let Some(js) = server("CLARION_TEST_MCP_EVERYTHING") else {
        return;
    };
    let http = http_server(&js);
    let dir = temp();
    let tools = ClarionTools::new();
    let text = format!(
        "{HEADER}[mcp.everything]\nurl = \"http://127.0.0.1:{}/mcp\"\n",
        http.port
    );
    let servers = servers_of(&text).unwrap_or_else(|e| panic!("{e}"));
    let error = tools
        .mcp()
        .list(dir.path(), "everything", &servers["everything"])
        .await
        .err()
        .unwrap_or_else(|| panic!("a loopback server was reached"));
    assert_eq!(error.kind, ToolErrorKind::Refused, "{}", error.message);
    assert!(
        error.message.contains("allow_private_network"),
        "{}",
        error.message
    );
}

/// The median and 99th percentile of `samples`, in microseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100].as_secs_f64() * 1e6;
    (at(50), at(99))
}

/// What a call costs through Clarion over the same call straight through `rmcp` to the
/// same server (stdio, warm), and what the first call costs with the server's start.
/// Figures in docs/benchmarks.md; run with
/// `cargo test --release -p clarion-tools --test mcp -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a benchmark: run it on purpose, in release"]
#[allow(
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]
async fn benchmark_call_overhead_over_the_servers_own_time() {
    use rmcp::ServiceExt;
    use rmcp::model::CallToolRequestParams;
    const CALLS: usize = 2000;
    let Some(js) = server("CLARION_TEST_MCP_EVERYTHING") else {
        return;
    };
    let dir = temp();
    let pid_file = dir.path().join("server.pid");
    let tools = ClarionTools::new();
    let (flow, _) = flow(&tools, dir.path(), &everything_stdio(&js, &pid_file, "30s")).await;
    let args = json!({"message": "hello"});

    let started = Instant::now();
    call(&tools, &flow, "echo", args.clone())
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    let first = started.elapsed();

    let mut through_clarion = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        call(&tools, &flow, "echo", args.clone())
            .await
            .unwrap_or_else(|e| panic!("{}", e.message));
        through_clarion.push(started.elapsed());
    }

    let mut child = tokio::process::Command::new("node")
        .arg(&js)
        .arg("stdio")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        panic!("no pipes");
    };
    let direct = ().serve((stdout, stdin)).await.unwrap_or_else(|e| panic!("{e}"));
    let Value::Object(arguments) = args else {
        panic!("not an object")
    };
    let mut straight = Vec::with_capacity(CALLS);
    for _ in 0..=CALLS {
        let request = CallToolRequestParams::new("echo").with_arguments(arguments.clone());
        let started = Instant::now();
        direct
            .call_tool(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        straight.push(started.elapsed());
    }
    straight.remove(0); // the first call of a fresh client warms it

    let (clarion_median, clarion_p99) = percentiles(&mut through_clarion);
    let (direct_median, direct_p99) = percentiles(&mut straight);
    println!(
        "mcp echo over stdio, {CALLS} warm calls: through Clarion median {clarion_median:.0} µs \
         (p99 {clarion_p99:.0}), straight through rmcp median {direct_median:.0} µs (p99 \
         {direct_p99:.0}): overhead {:.0} µs; first call with the server's start {:.0} ms",
        clarion_median - direct_median,
        first.as_secs_f64() * 1e3
    );
    assert!(
        clarion_median - direct_median < 1000.0,
        "Clarion adds {:.0} µs to a warm call",
        clarion_median - direct_median
    );
}

/// The first call of `mcp-server-time` (a Python program) with its start, and warm calls.
#[tokio::test]
#[ignore = "a benchmark: run it on purpose, in release"]
#[allow(clippy::print_stdout)]
async fn benchmark_first_call_of_mcp_server_time() {
    let Some(time) = server("CLARION_TEST_MCP_TIME") else {
        return;
    };
    let dir = temp();

    let tools = ClarionTools::new();
    let (time_flow, _) = flow(
        &tools,
        dir.path(),
        &format!(
            "[mcp.time]\ncommand = [\"{}\"]\ntools = [\"get_current_time\"]\n",
            time.display()
        ),
    )
    .await;
    let started = Instant::now();
    call(
        &tools,
        &time_flow,
        "get_current_time",
        json!({"timezone": "UTC"}),
    )
    .await
    .unwrap_or_else(|e| panic!("{}", e.message));
    let first = started.elapsed();
    let mut warm = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        call(
            &tools,
            &time_flow,
            "get_current_time",
            json!({"timezone": "UTC"}),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
        warm.push(started.elapsed());
    }
    let (median, p99) = percentiles(&mut warm);
    println!(
        "mcp-server-time over stdio: first call with the server's start {:.0} ms; warm \
         median {median:.0} µs (p99 {p99:.0})",
        first.as_secs_f64() * 1e3
    );
}
