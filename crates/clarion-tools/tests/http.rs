//! HTTP tools against real servers on loopback: wiremock for well-behaved ones, and a raw
//! TCP server for bodies that trickle or never end. Nothing here leaves 127.0.0.1: the
//! refused addresses are refused before any connection is made.

use clarion_engine::ToolErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use clarion_engine::{ToolError, ToolExecutor, ToolRequest};
use clarion_flow::{Flow, load_str};
use clarion_tools::{ClarionTools, NetworkPolicy};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A flow with one HTTP tool `api` made of `table`, taking optional string `id` and `q`
/// and an optional integer `n`.
fn flow(table: &str) -> Flow {
    let text = format!(
        r#"
[flow]
name = "http"
[assistant]
model = "m"
instructions = "i"
[tools.api]
description = "Calls the API."
[tools.api.http]
{table}
[tools.api.params.id]
type = "string"
description = "An id."
required = false
[tools.api.params.q]
type = "string"
description = "A query."
required = false
[tools.api.params.n]
type = "integer"
description = "A number."
required = false
"#
    );
    let report = load_str("http.toml", &text, None);
    let messages: Vec<String> = report
        .diagnostics
        .iter()
        .map(clarion_flow::diagnostic::Diagnostic::message)
        .collect();
    report
        .into_result()
        .unwrap_or_else(|_| panic!("the test flow does not load: {messages:?}"))
}

async fn call_with(tools: &ClarionTools, flow: &Flow, args: Value) -> Result<Value, ToolError> {
    let arguments: Map<String, Value> = match args {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    tools
        .execute(ToolRequest {
            flow,
            tool: &flow.tools["api"],
            call_id: "call_1",
            idempotency_key: "key_1",
            arguments: &arguments,
        })
        .await
}

async fn call(flow: &Flow, args: Value) -> Result<Value, ToolError> {
    call_with(&ClarionTools::new(), flow, args).await
}

fn failure(result: Result<Value, ToolError>) -> ToolError {
    match result {
        Ok(value) => panic!("the call succeeded: {value}"),
        Err(error) => error,
    }
}

async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.unwrap_or_default()
}

#[tokio::test]
async fn a_get_sends_arguments_in_the_path_and_query_and_picks_the_result() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/customers/ana%2Bwork%40ex.com"))
        .and(query_param("n", "3"))
        .and(header("x-key", "clarion-tools"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"customer": {"name": "Ana", "plan": "pro"}})),
        )
        .mount(&server)
        .await;
    let flow = flow(&format!(
        r#"url = "{}/v2/customers/{{{{ args.id }}}}"
           headers = {{ X-Key = "{{{{ env.CARGO_PKG_NAME }}}}" }}
           env = ["CARGO_PKG_NAME"]
           result_pointer = "/customer"
           allow_private_network = true"#,
        server.uri()
    ));
    let result = call(&flow, json!({"id": "ana+work@ex.com", "n": 3})).await;
    assert_eq!(result, Ok(json!({"name": "Ana", "plan": "pro"})));
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].url.path(),
        "/v2/customers/ana%2Bwork%40ex.com",
        "the path value is percent-encoded"
    );
    assert_eq!(
        sent[0].url.query(),
        Some("n=3"),
        "`id` is in the path, not repeated"
    );
}

#[tokio::test]
async fn a_path_argument_cannot_change_the_path() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let flow = flow(&format!(
        r#"url = "{}/files/{{{{ args.id }}}}/meta"
           body = "none"
           allow_private_network = true"#,
        server.uri()
    ));
    call(&flow, json!({"id": "../../admin?x=1#"}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sent = requests(&server).await;
    assert_eq!(sent[0].url.path(), "/files/..%2F..%2Fadmin%3Fx%3D1%23/meta");
    assert_eq!(sent[0].url.query(), None);
    let error = failure(call(&flow, json!({"id": ".."})).await);
    assert_eq!(error.kind, ToolErrorKind::InvalidArguments);
    assert_eq!(requests(&server).await.len(), 1, "refused before sending");
}

#[tokio::test]
async fn a_post_sends_a_json_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tickets"))
        .and(body_json(json!({"q": "printer on fire", "n": 2})))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": "TCK-1"}})))
        .mount(&server)
        .await;
    let flow = flow(&format!(
        r#"method = "POST"
           url = "{}/tickets"
           result_pointer = "/ticket/id"
           allow_private_network = true"#,
        server.uri()
    ));
    let result = call(&flow, json!({"q": "printer on fire", "n": 2})).await;
    assert_eq!(result, Ok(json!("TCK-1")));
}

#[tokio::test]
async fn a_4xx_fails_at_once_with_the_body_and_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"error": "no customer ana@ex.com"})),
        )
        .mount(&server)
        .await;
    let flow = flow(&format!(
        r#"url = "{}/customers"
           retries = 3
           allow_private_network = true"#,
        server.uri()
    ));
    let error = failure(call(&flow, json!({"q": "ana@ex.com"})).await);
    assert_eq!(error.kind, ToolErrorKind::Failed);
    assert_eq!(
        error.message,
        format!(
            "GET {}/customers returned HTTP 404 Not Found: {{\"error\":\"no customer ana@ex.com\"}}",
            server.uri()
        )
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_5xx_is_retried_for_idempotent_methods_only() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string("down for maintenance"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let get = flow(&format!(
        r#"url = "{}/status"
           retries = 2
           allow_private_network = true"#,
        server.uri()
    ));
    let error = failure(call(&get, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Unavailable);
    assert!(
        error
            .message
            .ends_with("returned HTTP 503 Service Unavailable: down for maintenance")
    );
    assert_eq!(
        requests(&server).await.len(),
        3,
        "the first attempt and two retries"
    );

    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let post = flow(&format!(
        r#"method = "POST"
           url = "{}/tickets"
           retries = 2
           allow_private_network = true"#,
        server.uri()
    ));
    let error = failure(call(&post, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Unavailable);
    assert_eq!(
        requests(&server).await.len(),
        1,
        "a POST is never sent twice"
    );
}

#[tokio::test]
async fn a_retry_can_succeed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .with_priority(2)
        .mount(&server)
        .await;
    let flow = flow(&format!(
        r#"url = "{}/flaky"
           retries = 1
           allow_private_network = true"#,
        server.uri()
    ));
    assert_eq!(call(&flow, json!({})).await, Ok(json!({"ok": true})));
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({}))
                .set_delay(Duration::from_secs(10)),
        )
        .mount(&server)
        .await;
    let flow = flow(&format!(
        r#"url = "{}/slow"
           timeout = "300ms"
           retries = 5
           allow_private_network = true"#,
        server.uri()
    ));
    let started = Instant::now();
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Timeout);
    assert_eq!(error.message, "no complete response within 300ms");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn invalid_json_is_invalid_output() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>Welcome</html>"))
        .mount(&server)
        .await;
    let flow = flow(&format!(
        r#"url = "{}/page"
           allow_private_network = true"#,
        server.uri()
    ));
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::InvalidOutput);
    assert!(
        error.message.starts_with("the response is not JSON (")
            && error
                .message
                .ends_with("it starts with: <html>Welcome</html>"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_missing_result_pointer_is_invalid_output() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {}})))
        .mount(&server)
        .await;
    let flow = flow(&format!(
        r#"url = "{}/x"
           result_pointer = "/data/offers"
           allow_private_network = true"#,
        server.uri()
    ));
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::InvalidOutput);
    assert!(error.message.contains("nothing at `/data/offers`"));
}

#[tokio::test]
async fn an_oversized_body_with_a_length_is_refused_unread() {
    let server = MockServer::start().await;
    let big = format!("\"{}\"", "x".repeat(2 * 1024 * 1024));
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(big, "application/json"))
        .mount(&server)
        .await;
    let flow = flow(&format!(
        r#"url = "{}/big"
           allow_private_network = true"#,
        server.uri()
    ));
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::InvalidOutput);
    assert!(
        error.message.ends_with(
            "the response is larger than 1048576 bytes (the tool's `max_response_bytes`)"
        ),
        "{}",
        error.message
    );
}

/// A server that answers one request with a chunked body of `chunk` every `every`, forever
/// (well: at most 400 chunks), and reports how long after its first chunk the client hung up.
async fn endless_server(
    chunk: &'static [u8],
    every: Duration,
) -> (String, tokio::task::JoinHandle<Option<Duration>>) {
    let listener = TcpListener::bind((LOOPBACK, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let address: SocketAddr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.ok()?;
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buffer).await.ok()?;
            if n == 0 {
                return None;
            }
            request.extend_from_slice(&buffer[..n]);
        }
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        socket.write_all(head).await.ok()?;
        let started = Instant::now();
        for _ in 0..400 {
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
            if socket.write_all(&frame).await.is_err() || socket.flush().await.is_err() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(every).await;
        }
        None
    });
    (format!("http://{address}"), task)
}

#[tokio::test]
async fn a_body_that_trickles_forever_times_out_and_the_connection_is_dropped() {
    let (uri, server) = endless_server(b" ", Duration::from_millis(50)).await;
    let flow = flow(&format!(
        r#"url = "{uri}/trickle"
           timeout = "500ms"
           allow_private_network = true"#
    ));
    let started = Instant::now();
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));
    let hung_up = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    assert!(
        hung_up.is_some_and(|after| after < Duration::from_secs(5)),
        "the server kept streaming to nobody: {hung_up:?}"
    );
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_limit() {
    static CHUNK: [u8; 16384] = [b' '; 16384];
    let (uri, server) = endless_server(&CHUNK, Duration::from_millis(1)).await;
    let flow = flow(&format!(
        r#"url = "{uri}/endless"
           max_response_bytes = 100000
           timeout = "10s"
           allow_private_network = true"#
    ));
    let started = Instant::now();
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::InvalidOutput);
    assert!(
        error.message.contains("larger than 100000 bytes"),
        "{}",
        error.message
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let hung_up = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    assert!(hung_up.is_some(), "the client did not hang up");
}

#[tokio::test]
async fn loopback_is_refused_without_the_flag_and_nothing_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let port = server.address().port();
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://2130706433:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://localhost:{port}/x"),
    ] {
        let flow = flow(&format!(r#"url = "{url}""#));
        let error = failure(call(&flow, json!({})).await);
        assert_eq!(error.kind, ToolErrorKind::Refused, "{url}: {error}");
        assert!(
            error.message.contains("loopback address"),
            "{url}: {}",
            error.message
        );
    }
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn every_redirect_is_checked_again() {
    let server = MockServer::start().await;
    let port = server.address().port();
    Mock::given(path("/to-metadata"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", "http://169.254.169.254/latest/meta-data/"),
        )
        .mount(&server)
        .await;
    Mock::given(path("/to-internal-name"))
        .respond_with(
            ResponseTemplate::new(307).insert_header("location", "http://db.internal.test:5432/"),
        )
        .mount(&server)
        .await;
    Mock::given(path("/to-self"))
        .respond_with(ResponseTemplate::new(301).insert_header("location", "/final"))
        .mount(&server)
        .await;
    Mock::given(path("/final"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"arrived": true})))
        .mount(&server)
        .await;
    Mock::given(path("/loop"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/loop"))
        .mount(&server)
        .await;
    // The test server is trusted explicitly, as a deployment would trust one internal API;
    // the flow itself does not allow private addresses, so redirects away from it are judged
    // like any other request. `api.test` and `db.internal.test` resolve through the policy's
    // own host table: no DNS, and nothing is ever sent to 10.0.0.7.
    let tools = ClarionTools::new().with_network_policy(
        NetworkPolicy::new()
            .trust(LOOPBACK)
            .with_host("api.test", &[LOOPBACK])
            .with_host(
                "db.internal.test",
                &[IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))],
            ),
    );
    let at = |route: &str| flow(&format!(r#"url = "http://api.test:{port}{route}""#));

    let error = failure(call_with(&tools, &at("/to-metadata"), json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Refused);
    assert!(
        error
            .message
            .starts_with("169.254.169.254 is a link-local address;"),
        "{}",
        error.message
    );
    let error = failure(call_with(&tools, &at("/to-internal-name"), json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Refused);
    assert!(
        error
            .message
            .starts_with("`db.internal.test` resolves to 10.0.0.7, a private address;"),
        "{}",
        error.message
    );
    assert_eq!(
        call_with(&tools, &at("/to-self"), json!({})).await,
        Ok(json!({"arrived": true})),
        "a redirect to an allowed address is followed"
    );
    let error = failure(call_with(&tools, &at("/loop"), json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Failed);
    assert!(
        error.message.ends_with("more than 5 redirects"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn secrets_never_appear_in_errors_or_results() {
    let server = MockServer::start().await;
    Mock::given(path("/deny"))
        .respond_with(ResponseTemplate::new(403).set_body_string("key clarion-tools is revoked"))
        .mount(&server)
        .await;
    Mock::given(path("/echo"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"you_sent": "clarion-tools"})),
        )
        .mount(&server)
        .await;
    let with_key = |route: &str| {
        flow(&format!(
            r#"url = "{}{route}?key={{{{ env.CARGO_PKG_NAME }}}}"
               env = ["CARGO_PKG_NAME"]
               allow_private_network = true"#,
            server.uri()
        ))
    };
    let error = failure(call(&with_key("/deny"), json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Failed);
    assert!(
        error
            .message
            .ends_with("returned HTTP 403 Forbidden: key *** is revoked"),
        "{}",
        error.message
    );
    assert!(!error.message.contains("clarion-tools"));
    assert_eq!(
        call(&with_key("/echo"), json!({})).await,
        Ok(json!({"you_sent": "***"}))
    );
    // A refused connection names the URL; its key is redacted there too.
    let closed = TcpListener::bind((LOOPBACK, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = closed.local_addr().map(|a| a.port()).unwrap_or_default();
    drop(closed);
    let flow = flow(&format!(
        r#"url = "http://127.0.0.1:{port}/clarion-tools/x"
           headers = {{ Authorization = "Bearer {{{{ env.CARGO_PKG_NAME }}}}" }}
           env = ["CARGO_PKG_NAME"]
           allow_private_network = true"#
    ));
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Unavailable);
    assert!(
        error.message.starts_with(&format!(
            "GET http://127.0.0.1:{port}/***/x: cannot connect"
        )),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn an_unset_secret_is_unavailable_before_anything_is_sent() {
    let server = MockServer::start().await;
    let flow = flow(&format!(
        r#"url = "{}/x"
           headers = {{ Authorization = "Bearer {{{{ env.CLARION_SURELY_UNSET_TOKEN }}}}" }}
           env = ["CLARION_SURELY_UNSET_TOKEN"]
           allow_private_network = true"#,
        server.uri()
    ));
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Unavailable);
    assert_eq!(
        error.message,
        "environment variable `CLARION_SURELY_UNSET_TOKEN` is not set"
    );
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn absurd_durations_neither_panic_nor_wait() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(503).insert_header("retry-after", "18446744073709551615"),
        )
        .mount(&server)
        .await;
    let flow = flow(&format!(
        r#"url = "{}/x"
           timeout = "5000000000000h"
           retries = 3
           allow_private_network = true"#,
        server.uri()
    ));
    let started = Instant::now();
    let error = failure(call(&flow, json!({})).await);
    assert_eq!(error.kind, ToolErrorKind::Unavailable, "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        requests(&server).await.len(),
        1,
        "a wait past the deadline is not waited"
    );
}

#[tokio::test]
async fn every_request_carries_the_calls_idempotency_key_unless_the_flow_sets_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/pay"))
        .and(header("idempotency-key", "key_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"paid": true})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/own"))
        .and(header("idempotency-key", "the-flows-own"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"paid": true})))
        .mount(&server)
        .await;
    let paid = call(
        &flow(&format!(
            r#"method = "POST"
               url = "{}/pay"
               allow_private_network = true"#,
            server.uri()
        )),
        json!({"n": 3}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(paid, json!({"paid": true}));
    let own = call(
        &flow(&format!(
            r#"method = "POST"
               url = "{}/own"
               headers = {{ Idempotency-Key = "the-flows-own" }}
               allow_private_network = true"#,
            server.uri()
        )),
        json!({}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(own, json!({"paid": true}));
}
