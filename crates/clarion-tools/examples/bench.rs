//! Benchmarks of the three executors, printed as a Markdown table:
//!
//! - a built-in call (through `BuiltinRegistry::call` and through `ClarionTools::execute`);
//! - an HTTP tool against a keep-alive server on loopback, compared with the same request
//!   sent with bare reqwest in the same run (interleaved, so both see the same machine);
//! - a command tool: spawn, JSON round trip through `/bin/cat`, exit, group cleanup.
//!
//! Run with `cargo run --release -p clarion-tools --example bench`. Targets: built-in under
//! 5 µs, HTTP overhead under 300 µs, command round trip under 5 ms.

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use clarion_engine::{ToolExecutor, ToolRequest};
use clarion_flow::{Flow, load_str};
use clarion_tools::{BuiltinRegistry, ClarionTools};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Calls per built-in loop.
const BUILTIN_CALLS: u32 = 500_000;
/// Requests per HTTP variant.
const HTTP_CALLS: usize = 3000;
/// Command tool calls.
const COMMAND_CALLS: usize = 500;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

struct Stats {
    mean: Duration,
    median: Duration,
    p90: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    let n = samples.len().max(1);
    Stats {
        mean: total / u32::try_from(n).unwrap_or(u32::MAX),
        median: samples.get(n / 2).copied().unwrap_or_default(),
        p90: samples.get(n * 9 / 10).copied().unwrap_or_default(),
    }
}

/// CPU time this thread has used, from `/proc/thread-self/stat` (utime + stime, in clock
/// ticks of 10 ms). On a loaded machine wall time also counts the time other processes
/// held the CPU; for the CPU-bound built-in loops (a second or more each) CPU time is the
/// figure that says what a call costs.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Wall and CPU time per iteration of `body`, run `n` times.
fn per_call(n: u32, mut body: impl FnMut()) -> (Duration, Option<Duration>) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    for _ in 0..n {
        body();
    }
    let wall = wall.elapsed() / n;
    let cpu = cpu
        .zip(cpu_time())
        .map(|(start, end)| end.saturating_sub(start) / n);
    (wall, cpu)
}

fn wall_and_cpu((wall, cpu): (Duration, Option<Duration>)) -> String {
    match cpu {
        Some(cpu) => format!("{} wall, {} CPU", us(wall), us(cpu)),
        None => format!("{} wall", us(wall)),
    }
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_nanos() as f64 / 1000.0)
}

fn flow(tools: &str) -> Flow {
    let text = format!(
        "[flow]\nname = \"bench\"\n[assistant]\nmodel = \"m\"\ninstructions = \"i\"\n{tools}"
    );
    let report = load_str("bench.toml", &text, None);
    let messages: Vec<String> = report
        .diagnostics
        .iter()
        .map(clarion_flow::diagnostic::Diagnostic::message)
        .collect();
    report
        .into_result()
        .unwrap_or_else(|_| panic!("bench flow: {messages:?}"))
}

/// Polls a future that is ready at once (built-ins are synchronous) without a runtime.
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

fn bench_builtins(rows: &mut Vec<String>) {
    let registry = BuiltinRegistry::standard();
    let cases = [
        (
            "finance.savings_timeline",
            json!({"goal_amount": 50000, "monthly_income": 5000, "monthly_savings": 1000}),
        ),
        (
            "finance.budget_analysis",
            json!({"monthly_income": 6000, "monthly_expenses": 4000}),
        ),
        (
            "finance.compound_growth",
            json!({"monthly_contribution": 100, "years": 10, "risk_tolerance": "medium"}),
        ),
        (
            "finance.loan_payment",
            json!({"principal": 200_000, "annual_rate_percent": 6.5, "years": 30}),
        ),
    ];
    for (name, args) in &cases {
        let args = object(args.clone());
        for _ in 0..10_000 {
            let _ = registry.call(name, &args);
        }
        let timing = per_call(BUILTIN_CALLS, || {
            let _ = std::hint::black_box(registry.call(name, std::hint::black_box(&args)));
        });
        rows.push(format!(
            "| built-in `{name}`, `BuiltinRegistry::call` | {} | < 5 µs |",
            wall_and_cpu(timing)
        ));
    }
    // Through the executor, as the engine calls it.
    let flow = flow(
        "[tools.loan]\ndescription = \"d\"\nbuiltin = \"finance.loan_payment\"\n\
         [tools.loan.params.principal]\ntype = \"number\"\ndescription = \"p\"\nask = \"?\"\n\
         [tools.loan.params.annual_rate_percent]\ntype = \"number\"\ndescription = \"r\"\nask = \"?\"\n\
         [tools.loan.params.years]\ntype = \"integer\"\ndescription = \"y\"\nask = \"?\"\n",
    );
    let tools = ClarionTools::new();
    let args = object(json!({"principal": 200_000, "annual_rate_percent": 6.5, "years": 30}));
    let request = ToolRequest {
        flow: &flow,
        tool: &flow.tools["loan"],
        call_id: "call_1",
        idempotency_key: "key_1",
        arguments: &args,
    };
    let mut ok = true;
    let timing = per_call(BUILTIN_CALLS, || {
        ok &= matches!(ready(tools.execute(request)), Some(Ok(_)));
    });
    assert!(ok, "the built-in failed");
    rows.push(format!(
        "| built-in `finance.loan_payment`, `ClarionTools::execute` | {} | < 5 µs |",
        wall_and_cpu(timing)
    ));
}

/// A minimal keep-alive HTTP/1.1 server answering every request with the same JSON.
async fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let body = br#"{"data":{"id":42,"name":"widget","price":9.99,"tags":["a","b"]}}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let response = [head.as_bytes(), body.as_slice()].concat();
                let mut buffer = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        buffer.drain(..end + 4);
                        if socket.write_all(&response).await.is_err() {
                            return;
                        }
                    }
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    format!("http://{address}")
}

async fn bench_http(rows: &mut Vec<String>) {
    let base = serve().await;
    let flow = flow(&format!(
        "[tools.item]\ndescription = \"d\"\n[tools.item.http]\n\
         url = \"{base}/v1/items/{{{{ args.id }}}}\"\n\
         headers = {{ Authorization = \"Bearer {{{{ env.HOME }}}}\" }}\n\
         env = [\"HOME\"]\nresult_pointer = \"/data\"\nallow_private_network = true\n\
         [tools.item.params.id]\ntype = \"string\"\ndescription = \"i\"\nask = \"?\"\n\
         [tools.item.params.q]\ntype = \"string\"\ndescription = \"q\"\nask = \"?\"\n\
         [tools.item.params.n]\ntype = \"integer\"\ndescription = \"n\"\nask = \"?\"\n"
    ));
    let tools = ClarionTools::new();
    let args = object(json!({"id": "42", "q": "hello", "n": 3}));
    let request = ToolRequest {
        flow: &flow,
        tool: &flow.tools["item"],
        call_id: "call_1",
        idempotency_key: "key_1",
        arguments: &args,
    };
    let token = format!("Bearer {}", std::env::var("HOME").unwrap_or_default());
    // reqwest is built without a default crypto provider; the HTTP executor installs `ring`
    // when it builds its clients, but this client comes first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{base}/v1/items/42?q=hello&n=3");
    let bare_call = || async {
        let response = client
            .get(&url)
            .header("authorization", &token)
            .header("accept", "application/json")
            .send()
            .await
            .ok()?;
        let bytes = response.bytes().await.ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        value.pointer("/data").cloned()
    };
    for _ in 0..300 {
        let _ = bare_call().await;
        let _ = tools.execute(request).await;
    }
    let (mut bare_samples, mut tool_samples) = (
        Vec::with_capacity(HTTP_CALLS),
        Vec::with_capacity(HTTP_CALLS),
    );
    for _ in 0..HTTP_CALLS {
        let started = Instant::now();
        let a = bare_call().await;
        bare_samples.push(started.elapsed());
        let started = Instant::now();
        let b = tools.execute(request).await;
        tool_samples.push(started.elapsed());
        assert!(a.is_some() && b.is_ok(), "{b:?}");
    }
    let (plain, tool) = (stats(bare_samples), stats(tool_samples));
    rows.push(format!(
        "| HTTP GET, bare reqwest (median / mean / p90) | {} / {} / {} | |",
        us(plain.median),
        us(plain.mean),
        us(plain.p90)
    ));
    rows.push(format!(
        "| HTTP GET, HTTP tool (median / mean / p90) | {} / {} / {} | |",
        us(tool.median),
        us(tool.mean),
        us(tool.p90)
    ));
    rows.push(format!(
        "| HTTP tool overhead (median, mean) | {}, {} | < 300 µs |",
        us(tool.median.saturating_sub(plain.median)),
        us(tool.mean.saturating_sub(plain.mean))
    ));
}

async fn bench_command(rows: &mut Vec<String>) {
    let flow = flow(
        "[tools.cat]\ndescription = \"d\"\n[tools.cat.command]\nargv = [\"/bin/cat\"]\n\
         [tools.cat.params.q]\ntype = \"string\"\ndescription = \"q\"\nask = \"?\"\n",
    );
    let tools = ClarionTools::new();
    let args = object(json!({"q": "hello"}));
    let request = ToolRequest {
        flow: &flow,
        tool: &flow.tools["cat"],
        call_id: "call_1",
        idempotency_key: "key_1",
        arguments: &args,
    };
    for _ in 0..20 {
        let _ = tools.execute(request).await;
    }
    let mut samples = Vec::with_capacity(COMMAND_CALLS);
    for _ in 0..COMMAND_CALLS {
        let started = Instant::now();
        let result = tools.execute(request).await;
        samples.push(started.elapsed());
        assert_eq!(result.ok(), Some(json!({"q": "hello"})));
    }
    let s = stats(samples);
    rows.push(format!(
        "| command `/bin/cat`: spawn + JSON round trip (median / mean / p90) | {} / {} / {} | < 5 ms |",
        us(s.median),
        us(s.mean),
        us(s.p90)
    ));
}

fn main() {
    let mut rows = vec![
        "| measurement | result | target |".to_owned(),
        "| --- | --- | --- |".to_owned(),
    ];
    bench_builtins(&mut rows);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        bench_http(&mut rows).await;
        bench_command(&mut rows).await;
    });
    println!("{}", rows.join("\n"));
}
