//! The HTTP API over loopback: shapes, statuses and error bodies as the Assistants API
//! had them, the classic tool loop, questions, streaming, cancellation, keys and limits.

mod common;

use clarion_engine::ModelErrorKind;
use clarion_engine::scripted::ScriptedTurn;
use serde_json::{Value, json};

use common::{
    LoopModel, Recorder, Server, call, client, pay_loop, poll, shop_state, start, start_limited,
    start_state,
};

const LIMIT: usize = clarion_server::DEFAULT_BODY_LIMIT;

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"]["type"].as_str().unwrap_or("?"),
        body["error"]["message"].as_str().unwrap_or("?"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classic_loop_stops_for_client_tools_only_and_refuses_messages_meanwhile() {
    let server = start(pay_loop(), &[], LIMIT).await;
    let (c, base) = (client(), server.base.clone());
    let (status, thread) = call(
        c.post(format!("{base}/threads"))
            .json(&json!({"metadata": {"user": "u1"}})),
    )
    .await;
    assert_eq!(status, 200, "{thread}");
    let tid = thread["id"].as_str().unwrap_or_default().to_owned();
    assert!(tid.starts_with("thread_"));
    assert_eq!(thread["object"], "thread");
    assert_eq!(thread["metadata"], json!({"user": "u1"}));

    let (status, message) = call(
        c.post(format!("{base}/threads/{tid}/messages"))
            .json(&json!({"role": "user", "content": "Save 1200 and pay my $42 bill"})),
    )
    .await;
    assert_eq!(status, 200, "{message}");
    assert!(
        message["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );
    assert_eq!(
        message["content"][0]["text"]["value"],
        "Save 1200 and pay my $42 bill"
    );

    let (status, run) = call(
        c.post(format!("{base}/threads/{tid}/runs"))
            .json(&json!({"assistant_id": "asst_shop", "metadata": {"k": "v"}})),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "queued");
    assert_eq!(run["object"], "thread.run");
    let rid = run["id"].as_str().unwrap_or_default().to_owned();
    let run = poll(&c, &base, &tid, &rid).await;
    assert_eq!(run["status"], "requires_action", "{run}");
    assert_eq!(run["metadata"], json!({"k": "v"}));
    let calls = &run["required_action"]["submit_tool_outputs"]["tool_calls"];
    assert_eq!(
        calls.as_array().map(Vec::len),
        Some(1),
        "only the client tool: {calls}"
    );
    assert_eq!(calls[0]["function"]["name"], "pay");
    let call_id = calls[0]["id"].as_str().unwrap_or_default().to_owned();
    assert!(call_id.starts_with("call_"));

    refuses_messages_and_wrong_outputs_then_completes(&c, &base, &tid, &rid, &call_id).await;
    let (_, messages) = call(c.get(format!("{base}/threads/{tid}/messages"))).await;
    assert_eq!(messages["object"], "list");
    assert_eq!(messages["data"][0]["role"], "assistant");
    assert_eq!(
        messages["data"][0]["content"][0]["text"]["value"],
        "Paid $42. Your goal takes 12 months."
    );
    assert_eq!(messages["data"][0]["assistant_id"], "asst_shop");
    assert_eq!(messages["data"][0]["run_id"], rid.as_str());
    assert_eq!(
        messages["data"].as_array().map(Vec::len),
        Some(2),
        "tool traffic is not a message"
    );

    let (_, steps) = call(c.get(format!("{base}/threads/{tid}/runs/{rid}/steps?order=asc"))).await;
    let kinds: Vec<&str> = steps["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["type"].as_str())
        .collect();
    assert_eq!(kinds, ["tool_calls", "tool_calls", "message_creation"]);
    let savings = &steps["data"][0]["step_details"]["tool_calls"][0]["function"];
    assert_eq!(savings["name"], "savings");
    assert!(
        savings["output"]
            .as_str()
            .is_some_and(|o| o.contains("months")),
        "{savings}"
    );
    assert_eq!(
        steps["data"][1]["step_details"]["tool_calls"][0]["function"]["output"],
        "{\"paid\": true}"
    );
    let step_id = steps["data"][2]["id"].as_str().unwrap_or_default();
    assert!(step_id.starts_with("step_"));
    let (status, step) =
        call(c.get(format!("{base}/threads/{tid}/runs/{rid}/steps/{step_id}"))).await;
    assert_eq!(
        (status, step["step_details"]["type"].clone()),
        (200, json!("message_creation"))
    );

    let (_, runs) = call(c.get(format!("{base}/threads/{tid}/runs"))).await;
    assert_eq!(runs["data"][0]["id"], rid.as_str());
    let (status, _) = call(c.post(format!("{base}/threads/{tid}/runs/{rid}/cancel"))).await;
    assert_eq!(status, 400, "a completed run cannot be cancelled");
    assert_eq!(server.model.remaining(), 0);
}

/// While a run waits for outputs: the thread is locked, wrong outputs change nothing, and
/// the right ones complete the run.
async fn refuses_messages_and_wrong_outputs_then_completes(
    c: &reqwest::Client,
    base: &str,
    tid: &str,
    rid: &str,
    call_id: &str,
) {
    // While the run waits, the thread is locked, with the API's 400.
    let (status, body) = call(
        c.post(format!("{base}/threads/{tid}/messages"))
            .json(&json!({"role": "user", "content": "hello?"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": {"message": format!("Can't add messages to {tid} while a run {rid} is active."), "type": "invalid_request_error", "param": null, "code": null}})
    );
    let (status, body) = call(
        c.post(format!("{base}/threads/{tid}/runs"))
            .json(&json!({"assistant_id": "asst_shop"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        error_of(&body).1,
        format!("Thread {tid} already has an active run {rid}.")
    );

    // Metadata cannot change under a run: its commits would undo the change.
    let (status, body) = call(
        c.post(format!("{base}/threads/{tid}"))
            .json(&json!({"metadata": {"x": "1"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        format!("Can't modify thread {tid} while a run {rid} is active.")
    );
    // A wrong set of outputs is refused and changes nothing.
    let (status, body) = call(
        c.post(format!(
            "{base}/threads/{tid}/runs/{rid}/submit_tool_outputs"
        ))
        .json(&json!({"tool_outputs": [{"tool_call_id": "call_nope", "output": "{}"}]})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "tool_outputs");
    let (status, body) = call(
        c.post(format!(
            "{base}/threads/{tid}/runs/{rid}/submit_tool_outputs"
        ))
        .json(&json!({"tool_outputs": [{"tool_call_id": call_id, "output": "{\"paid\": true}"}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "in_progress");
    let run = poll(c, base, tid, rid).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(run["completed_at"].as_i64().is_some());
    assert!(run["usage"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_parameter_is_an_assistant_question_and_the_answer_completes_the_call() {
    let server = start(
        vec![
            ScriptedTurn::call("savings", r#"{"goal_amount": 12000}"#),
            ScriptedTurn::call(
                "savings",
                r#"{"monthly_income": 5000, "monthly_savings": 1000}"#,
            )
            .expecting_user("5000"),
            ScriptedTurn::text("About a year."),
        ],
        &[],
        LIMIT,
    )
    .await;
    let (c, base) = (client(), server.base.clone());
    let (status, run) = call(c.post(format!("{base}/threads/runs")).json(&json!({
        "assistant_id": "asst_shop",
        "thread": {"messages": [{"role": "user", "content": [{"type": "text", "text": "How long to save $12,000?"}]}]},
    }))).await;
    assert_eq!(status, 200, "{run}");
    let tid = run["thread_id"].as_str().unwrap_or_default().to_owned();
    let rid = run["id"].as_str().unwrap_or_default().to_owned();
    let run = poll(&c, &base, &tid, &rid).await;
    assert_eq!(run["status"], "completed");
    let (_, messages) = call(c.get(format!("{base}/threads/{tid}/messages?limit=1"))).await;
    let question = &messages["data"][0];
    assert_eq!(question["role"], "assistant");
    assert_eq!(question["metadata"]["clarion_kind"], "question");
    assert_eq!(
        question["metadata"]["clarion_params"],
        "monthly_income,monthly_savings"
    );
    assert!(
        question["content"][0]["text"]["value"]
            .as_str()
            .is_some_and(|t| t.contains("net monthly income")),
        "{question}"
    );
    assert_eq!(messages["has_more"], true);
    let (_, thread) = call(c.get(format!("{base}/threads/{tid}"))).await;
    assert_eq!(thread["clarion"]["slots"]["goal_amount"], 12000);
    assert_eq!(thread["clarion"]["pending"]["tool"], "savings");

    let (status, run) = call(c.post(format!("{base}/threads/{tid}/runs")).json(&json!({
        "assistant_id": "asst_shop",
        "additional_messages": [{"role": "user", "content": "I earn 5000 and save 1000 a month"}],
    })))
    .await;
    assert_eq!(status, 200, "{run}");
    let run = poll(&c, &base, &tid, run["id"].as_str().unwrap_or_default()).await;
    assert_eq!(run["status"], "completed", "{run}");
    let (_, messages) = call(c.get(format!("{base}/threads/{tid}/messages?order=asc"))).await;
    let texts: Vec<&str> = messages["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"][0]["text"]["value"].as_str())
        .collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[3], "About a year.");
    let (_, page) = call(c.get(format!(
        "{base}/threads/{tid}/messages?order=asc&limit=2&after={}",
        messages["data"][1]["id"].as_str().unwrap_or_default()
    )))
    .await;
    assert_eq!(page["first_id"], messages["data"][2]["id"]);
    assert_eq!(page["has_more"], false);
}

/// The data of the first `event` in an SSE body.
fn event_data(text: &str, event: &str) -> Value {
    text.lines()
        .skip_while(|l| *l != format!("event: {event}"))
        .find_map(|l| l.strip_prefix("data: "))
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_sends_the_assistants_events_in_order() {
    let server = start(pay_loop(), &[], LIMIT).await;
    let (c, base) = (client(), server.base.clone());
    let response = c
        .post(format!("{base}/threads/runs"))
        .json(&json!({"assistant_id": "asst_shop", "stream": true, "thread": {"messages": [{"role": "user", "content": "pay 42"}]}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let text = response.text().await.unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "thread.created",
            "thread.run.created",
            "thread.run.queued",
            "thread.run.in_progress",
            "thread.run.step.created",
            "thread.run.step.completed",
            "thread.run.step.created",
            "thread.run.requires_action",
            "done"
        ],
        "{text}"
    );
    let run = event_data(&text, "thread.run.requires_action");
    let (tid, rid) = (
        run["thread_id"].as_str().unwrap_or_default(),
        run["id"].as_str().unwrap_or_default(),
    );
    let call_id = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
        .as_str()
        .unwrap_or_default();
    let text = c
        .post(format!(
            "{base}/threads/{tid}/runs/{rid}/submit_tool_outputs"
        ))
        .json(&json!({"stream": true, "tool_outputs": [{"tool_call_id": call_id, "output": "ok"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "thread.run.queued",
            "thread.run.in_progress",
            // The model's text streams live, under the id the thread stores it with.
            "thread.message.created",
            "thread.message.in_progress",
            "thread.message.delta",
            "thread.run.step.created",
            "thread.message.completed",
            "thread.run.step.completed",
            "thread.run.completed",
            "done"
        ],
        "{text}"
    );
    assert!(text.contains(r#""value":"Paid $42. Your goal takes 12 months.""#));
    let data_of = |event: &str| event_data(&text, event);
    let streamed_id = data_of("thread.message.created")["id"].clone();
    assert!(
        streamed_id
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );
    assert_eq!(data_of("thread.message.delta")["id"], streamed_id);
    assert_eq!(data_of("thread.message.completed")["id"], streamed_id);
    let (_, listed) = call(c.get(format!("{base}/threads/{tid}/messages"))).await;
    assert_eq!(
        listed["data"][0]["id"], streamed_id,
        "the stored message has the streamed id"
    );
    assert!(text.ends_with("event: done\ndata: [DONE]\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_can_be_cancelled_and_the_thread_is_usable_again() {
    let server = start(pay_loop(), &[], LIMIT).await;
    let (c, base) = (client(), server.base.clone());
    let (_, run) = call(c.post(format!("{base}/threads/runs")).json(&json!({"assistant_id": "asst_shop", "thread": {"messages": [{"role": "user", "content": "pay"}]}}))).await;
    let (tid, rid) = (
        run["thread_id"].as_str().unwrap_or_default(),
        run["id"].as_str().unwrap_or_default(),
    );
    assert_eq!(poll(&c, &base, tid, rid).await["status"], "requires_action");
    let (status, run) = call(c.post(format!("{base}/threads/{tid}/runs/{rid}/cancel"))).await;
    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("cancelled")),
        "{run}"
    );
    assert!(run["cancelled_at"].as_i64().is_some());
    let (status, _) = call(
        c.post(format!("{base}/threads/{tid}/messages"))
            .json(&json!({"role": "user", "content": "never mind"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, deleted) = call(c.delete(format!("{base}/threads/{tid}"))).await;
    assert_eq!(
        (status, deleted),
        (
            200,
            json!({"id": tid, "object": "thread.deleted", "deleted": true})
        )
    );
    let (status, body) = call(c.get(format!("{base}/threads/{tid}"))).await;
    assert_eq!(status, 404);
    assert_eq!(
        error_of(&body),
        (
            "invalid_request_error",
            format!("No thread found with id '{tid}'.").as_str()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_api_error_body_and_status() {
    let server = start(Vec::new(), &[], 4096).await;
    let (c, base) = (client(), server.base.clone());
    let (_, thread) = call(c.post(format!("{base}/threads"))).await;
    let tid = thread["id"].as_str().unwrap_or_default();
    let cases: Vec<(reqwest::RequestBuilder, u16, Option<&str>)> = vec![
        (
            c.get(format!("{base}/assistants/asst_nope")),
            404,
            Some("assistant_id"),
        ),
        (
            c.get(format!("{base}/threads/thread_nope/messages")),
            404,
            None,
        ),
        (
            c.get(format!("{base}/threads/{tid}/runs/run_nope")),
            404,
            None,
        ),
        (
            c.get(format!("{base}/threads/{tid}/messages/msg_nope")),
            404,
            None,
        ),
        (
            c.post(format!("{base}/threads/{tid}/messages"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            None,
        ),
        (
            c.post(format!("{base}/threads/{tid}/messages"))
                .json(&json!({"role": "user"})),
            400,
            None,
        ),
        (
            c.post(format!("{base}/threads/{tid}/messages"))
                .json(&json!({"role": "system", "content": "x"})),
            400,
            Some("role"),
        ),
        (
            c.post(format!("{base}/threads/{tid}/messages"))
                .json(&json!({"role": "user", "content": "  "})),
            400,
            Some("content"),
        ),
        (
            c.post(format!("{base}/threads/{tid}/messages"))
                .json(&json!({"role": "user", "content": "x".repeat(5000)})),
            413,
            None,
        ),
        (
            c.post(format!("{base}/threads/{tid}/runs"))
                .json(&json!({"assistant_id": "asst_shop", "model": "gpt-4o"})),
            400,
            Some("model"),
        ),
        (
            c.post(format!("{base}/threads/{tid}"))
                .json(&json!({"metadata": {"_clarion_owner": "x"}})),
            400,
            Some("metadata"),
        ),
        (
            c.post(format!("{base}/threads/{tid}"))
                .json(&json!({"metadata": {"n": 1}})),
            400,
            Some("metadata"),
        ),
        (
            c.get(format!("{base}/threads/{tid}/messages?limit=500")),
            400,
            Some("limit"),
        ),
        (
            c.get(format!("{base}/threads/{tid}/messages?order=sideways")),
            400,
            Some("order"),
        ),
        (c.get(format!("{base}/nowhere")), 404, None),
        (c.put(format!("{base}/threads/{tid}")), 405, None),
    ];
    for (request, status, param) in cases {
        let (got, body) = call(request).await;
        assert_eq!(got, status, "{body}");
        assert_api_error(&body, param);
    }
}

/// The API's error body: a message, a type, a code (possibly null) and the parameter.
fn assert_api_error(body: &Value, param: Option<&str>) {
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        error["type"].is_string() && error.get("code").is_some(),
        "{body}"
    );
    assert_eq!(error["param"].as_str(), param, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_merges_and_flows_are_listed_as_assistants() {
    let server = start(Vec::new(), &[], LIMIT).await;
    let (c, base) = (client(), server.base.clone());
    let (_, thread) = call(c.post(format!("{base}/threads"))).await;
    let tid = thread["id"].as_str().unwrap_or_default();
    let (status, thread) = call(
        c.post(format!("{base}/threads/{tid}"))
            .json(&json!({"metadata": {"a": "1", "b": "2"}})),
    )
    .await;
    assert_eq!(
        (status, thread["metadata"].clone()),
        (200, json!({"a": "1", "b": "2"}))
    );
    let (_, thread) = call(
        c.post(format!("{base}/threads/{tid}"))
            .json(&json!({"metadata": {"a": ""}})),
    )
    .await;
    assert_eq!(thread["metadata"], json!({"b": "2"}));
    let (status, list) = call(c.get(format!("{base}/assistants"))).await;
    assert_eq!(
        (status, list["data"][0]["id"].clone()),
        (200, json!("asst_shop"))
    );
    assert_eq!(list["data"][0]["tools"][1]["x_clarion_executor"], "client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_sees_only_its_own_threads() {
    let server = start(Vec::new(), &["sk-alice", "sk-bob"], LIMIT).await;
    let (c, base) = (client(), server.base.clone());
    let (status, body) = call(c.post(format!("{base}/threads"))).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let (status, _) = call(c.post(format!("{base}/threads")).bearer_auth("sk-mallory")).await;
    assert_eq!(status, 401);
    let (status, thread) = call(
        c.post(format!("{base}/threads"))
            .bearer_auth("sk-alice")
            .json(&json!({"metadata": {"a": "1"}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        thread["metadata"],
        json!({"a": "1"}),
        "the owner id is not shown"
    );
    let tid = thread["id"].as_str().unwrap_or_default();
    let (status, _) = call(
        c.get(format!("{base}/threads/{tid}"))
            .bearer_auth("sk-alice"),
    )
    .await;
    assert_eq!(status, 200);
    for request in [
        c.get(format!("{base}/threads/{tid}")),
        c.get(format!("{base}/threads/{tid}/messages")),
        c.post(format!("{base}/threads/{tid}/messages"))
            .json(&json!({"role": "user", "content": "hi"})),
        c.post(format!("{base}/threads/{tid}/runs"))
            .json(&json!({"assistant_id": "asst_shop"})),
        c.delete(format!("{base}/threads/{tid}")),
    ] {
        let (status, body) = call(request.bearer_auth("sk-bob")).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(
            body["error"]["message"],
            format!("No thread found with id '{tid}'.")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_has_its_own_rate_limit() {
    let server = start_limited(Vec::new(), &["sk-alice", "sk-bob"], LIMIT, 3.0).await;
    let (c, base) = (client(), server.base.clone());
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, body) =
            call(c.get(format!("{base}/assistants")).bearer_auth("sk-alice")).await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            assert_eq!(body["error"]["type"], "requests");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..3], [200, 200, 200]);
    assert_eq!(statuses[4], 429, "{statuses:?}");
    let (status, _) = call(c.get(format!("{base}/assistants")).bearer_auth("sk-bob")).await;
    assert_eq!(status, 200, "bob has his own bucket");
}

/// One client's classic loop on a thread of its own; the run id and what went wrong, if
/// anything did.
async fn one_loop(c: &reqwest::Client, base: &str, n: usize) -> Result<(), String> {
    let (_, run) = call(c.post(format!("{base}/threads/runs")).json(&json!({
        "assistant_id": "asst_shop",
        "thread": {"messages": [{"role": "user", "content": format!("pay bill {n}")}]},
    })))
    .await;
    let (tid, rid) = (
        run["thread_id"].as_str().unwrap_or_default(),
        run["id"].as_str().unwrap_or_default(),
    );
    let run = poll(c, base, tid, rid).await;
    if run["status"] != "requires_action" {
        return Err(format!("expected requires_action: {run}"));
    }
    let call_id = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
        .as_str()
        .unwrap_or_default();
    let (status, body) = call(
        c.post(format!(
            "{base}/threads/{tid}/runs/{rid}/submit_tool_outputs"
        ))
        .json(&json!({"tool_outputs": [{"tool_call_id": call_id, "output": "ok"}]})),
    )
    .await;
    if status != 200 {
        return Err(format!("submit: {body}"));
    }
    let run = poll(c, base, tid, rid).await;
    let (_, messages) = call(c.get(format!("{base}/threads/{tid}/messages?order=asc"))).await;
    let texts: Vec<&str> = messages["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"][0]["text"]["value"].as_str())
        .collect();
    let user = format!("pay bill {n}");
    if run["status"] != "completed" || texts != [user.as_str(), "Paid."] {
        return Err(format!("{run} {texts:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_threads_run_in_parallel_and_each_thread_has_one_active_run() {
    let (state, dir) = shop_state(std::sync::Arc::new(LoopModel), &[], 0.0);
    let server = start_state(state, dir).await;
    let (c, base) = (client(), server.base.clone());
    let loops = (0..40).map(|n| {
        let (c, base) = (c.clone(), base.clone());
        tokio::spawn(async move { one_loop(&c, &base, n).await })
    });
    for result in futures_util::future::join_all(loops).await {
        result
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let (_, thread) = call(
        c.post(format!("{base}/threads"))
            .json(&json!({"messages": [{"role": "user", "content": "pay"}]})),
    )
    .await;
    let tid = thread["id"].as_str().unwrap_or_default();
    let races = (0..8).map(|_| {
        call(
            c.post(format!("{base}/threads/{tid}/runs"))
                .json(&json!({"assistant_id": "asst_shop"})),
        )
    });
    let statuses: Vec<u16> = futures_util::future::join_all(races)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        7,
        "{statuses:?}"
    );
}

/// A shop server whose model is `recorder`, and a thread holding the user's "hi".
async fn recorded_with_thread(recorder: &std::sync::Arc<Recorder>) -> (Server, String) {
    let (state, dir) = shop_state(recorder.clone(), &[], 0.0);
    let server = start_state(state, dir).await;
    let (_, thread) = call(
        client()
            .post(format!("{}/threads", server.base))
            .json(&json!({"messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    let tid = thread["id"].as_str().unwrap_or_default().to_owned();
    (server, tid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn additional_instructions_reach_the_model_for_that_run_only() {
    let recorder = std::sync::Arc::new(Recorder::new([
        ScriptedTurn::text("Bonjour."),
        ScriptedTurn::text("Hello."),
    ]));
    let (server, tid) = recorded_with_thread(&recorder).await;
    let (c, base, tid) = (client(), server.base.clone(), tid.as_str());
    for extra in [Some("Answer in French."), None] {
        let (status, run) = call(
            c.post(format!("{base}/threads/{tid}/runs"))
                .json(&json!({"assistant_id": "asst_shop", "additional_instructions": extra})),
        )
        .await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["additional_instructions"].as_str(), extra);
        let run = poll(&c, &base, tid, run["id"].as_str().unwrap_or_default()).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    let seen = recorder
        .instructions
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].starts_with("You plan savings") && seen[0].ends_with("\n\nAnswer in French."),
        "{seen:?}"
    );
    assert!(!seen[1].contains("French"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_strategy_bounds_what_a_run_sends() {
    let recorder = std::sync::Arc::new(Recorder::new([
        ScriptedTurn::text("One."),
        ScriptedTurn::text("Two."),
        ScriptedTurn::text("Three."),
    ]));
    let (server, tid) = recorded_with_thread(&recorder).await;
    let (c, base, tid) = (client(), server.base.clone(), tid.as_str());
    for bad in [
        json!("auto"),
        json!({"type": "everything"}),
        json!({"type": "last_messages"}),
        json!({"type": "last_messages", "last_messages": 0}),
    ] {
        let (status, error) = call(
            c.post(format!("{base}/threads/{tid}/runs"))
                .json(&json!({"assistant_id": "asst_shop", "truncation_strategy": bad})),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {error}");
        assert_eq!(error["error"]["param"], "truncation_strategy", "{error}");
    }
    // Three runs on a growing thread: auto sends everything, last_messages = 2 the
    // latest turn only (a user message and nothing after it).
    let strategies = [
        json!({"type": "auto"}),
        json!({"type": "last_messages", "last_messages": 2}),
        json!(null),
    ];
    for (i, strategy) in strategies.iter().enumerate() {
        if i > 0 {
            call(
                c.post(format!("{base}/threads/{tid}/messages"))
                    .json(&json!({"role": "user", "content": "more"})),
            )
            .await;
        }
        let (status, run) = call(
            c.post(format!("{base}/threads/{tid}/runs"))
                .json(&json!({"assistant_id": "asst_shop", "truncation_strategy": strategy})),
        )
        .await;
        assert_eq!(status, 200, "{run}");
        let expected = if i == 1 {
            json!({"type": "last_messages", "last_messages": 2})
        } else {
            json!({"type": "auto", "last_messages": null})
        };
        assert_eq!(run["truncation_strategy"], expected);
        let run = poll(&c, &base, tid, run["id"].as_str().unwrap_or_default()).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    let sent = recorder.sent.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(sent, [1, 1, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_gets_408_within_the_request_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (state, dir) = shop_state(std::sync::Arc::new(LoopModel), &[], 0.0);
    let limits = clarion_server::Limits {
        request_timeout: std::time::Duration::from_millis(300),
        ..clarion_server::Limits::default()
    };
    let (addr, _stop) = common::serve_router(clarion_server::router_with(state, limits)).await;
    let _dir = dir;
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Headers promise a body that never comes.
    socket
        .write_all(b"POST /v1/threads HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"me")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    let mut response = vec![0; 4096];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        socket.read(&mut response),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer within 5 s"))
    .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not complete within 300 ms"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_an_assistant_refers_to_a_loaded_flow() {
    let server = start(Vec::new(), &[], LIMIT).await;
    let (c, base) = (client(), server.base.clone());
    let (status, assistant) = call(
        c.post(format!("{base}/assistants"))
            .json(&json!({"model": "gpt-4o", "metadata": {"clarion_flow": "shop"}})),
    )
    .await;
    assert_eq!(
        (status, assistant["id"].as_str()),
        (200, Some("asst_shop")),
        "{assistant}"
    );
    let (status, assistant) = call(
        c.post(format!("{base}/assistants"))
            .json(&json!({"name": "shop"})),
    )
    .await;
    assert_eq!(
        (status, assistant["object"].as_str()),
        (200, Some("assistant"))
    );
    let (status, body) = call(
        c.post(format!("{base}/assistants"))
            .json(&json!({"name": "travel"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "No flow named 'travel' is loaded (loaded: shop). Start clarion serve with its flow file."
    );
    let (status, _) = call(c.post(format!("{base}/assistants")).json(&json!({}))).await;
    assert_eq!(status, 400);
}

/// Streams "Hello" and waits for the test to release it before " world".
struct HalfwayModel {
    release: tokio::sync::Notify,
}

impl clarion_engine::Model for HalfwayModel {
    fn respond<'a>(
        &'a self,
        _request: clarion_engine::ModelRequest<'a>,
        events: &'a dyn clarion_engine::EventSink,
    ) -> clarion_engine::BoxFuture<
        'a,
        Result<clarion_engine::ModelResponse, clarion_engine::ModelError>,
    > {
        use clarion_engine::Event;
        Box::pin(async move {
            events.emit(&Event::TextDelta {
                text: "Hello".into(),
            });
            self.release.notified().await;
            events.emit(&Event::TextDelta {
                text: " world".into(),
            });
            Ok(clarion_engine::ModelResponse {
                turn: clarion_engine::ModelTurn::Text("Hello world".into()),
                usage: clarion_engine::Usage::default(),
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_text_reaches_the_client_while_the_model_is_still_writing() {
    use futures_util::StreamExt as _;
    let model = std::sync::Arc::new(HalfwayModel {
        release: tokio::sync::Notify::new(),
    });
    let (state, dir) = shop_state(model.clone(), &[], 0.0);
    let server = start_state(state, dir).await;
    let (c, base) = (client(), server.base.clone());
    let response = c
        .post(format!("{base}/threads/runs"))
        .json(&json!({"assistant_id": "asst_shop", "stream": true, "thread": {"messages": [{"role": "user", "content": "hi"}]}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    // The first delta arrives while the model is blocked half-way through its reply.
    while !seen.contains(r#""value":"Hello""#) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .unwrap_or_else(|_| panic!("no live delta; the stream so far: {seen}"))
            .unwrap_or_else(|| panic!("the stream ended: {seen}"))
            .unwrap_or_else(|e| panic!("{e}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: thread.message.created"), "{seen}");
    assert!(!seen.contains("thread.run.completed"), "{seen}");
    model.release.notify_one();
    while let Some(chunk) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(
            &chunk.unwrap_or_else(|e| panic!("{e}")),
        ));
    }
    let deltas: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains(r#""object":"thread.message.delta""#))
        .collect();
    assert_eq!(deltas.len(), 2, "one delta per streamed piece: {seen}");
    assert!(deltas[1].contains(r#""value":" world""#));
    assert!(seen.contains("event: thread.run.completed"), "{seen}");
    assert!(
        seen.contains(r#""value":"Hello world""#),
        "the completed message: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (state, dir) = shop_state(std::sync::Arc::new(LoopModel), &[], 0.0);
    let router = clarion_server::router(state, LIMIT);
    let (addr, _stop) =
        common::serve_router_with(router, std::time::Duration::from_millis(300)).await;
    let _dir = dir;
    let mut slow = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    slow.write_all(b"GET /v1/assistants HTTP/1.1\r\nHost: clarion\r\nX-Slow: ")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The server closes the connection: the read ends (EOF or reset) instead of waiting.
    let mut buffer = Vec::new();
    let ended = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        slow.read_to_end(&mut buffer),
    )
    .await;
    assert!(ended.is_ok(), "the slow connection was never closed");
    // Meanwhile a well-behaved client is served.
    let (status, _) = call(client().get(format!("http://{addr}/v1/assistants"))).await;
    assert_eq!(status, 200);
}

/// Streams a few words, then fails.
struct BrokenOffModel;

impl clarion_engine::Model for BrokenOffModel {
    fn respond<'a>(
        &'a self,
        _request: clarion_engine::ModelRequest<'a>,
        events: &'a dyn clarion_engine::EventSink,
    ) -> clarion_engine::BoxFuture<
        'a,
        Result<clarion_engine::ModelResponse, clarion_engine::ModelError>,
    > {
        Box::pin(async move {
            events.emit(&clarion_engine::Event::TextDelta {
                text: "Your goal takes".into(),
            });
            Err(clarion_engine::ModelError::new(
                ModelErrorKind::StreamInterrupted,
                "the stream broke off",
            ))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cut_off_mid_stream_ends_as_an_incomplete_message() {
    let (state, dir) = shop_state(std::sync::Arc::new(BrokenOffModel), &[], 0.0);
    let server = start_state(state, dir).await;
    let (c, base) = (client(), server.base.clone());
    let text = c
        .post(format!("{base}/threads/runs"))
        .json(&json!({"assistant_id": "asst_shop", "stream": true, "thread": {"messages": [{"role": "user", "content": "hi"}]}}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .filter(|n| n.starts_with("thread.message") || n.starts_with("thread.run.failed"))
        .collect();
    assert_eq!(
        names,
        [
            "thread.message.created",
            "thread.message.in_progress",
            "thread.message.delta",
            "thread.message.incomplete",
            "thread.run.failed"
        ],
        "{text}"
    );
    let incomplete = event_data(&text, "thread.message.incomplete");
    assert_eq!(
        incomplete["id"],
        event_data(&text, "thread.message.created")["id"]
    );
    assert_eq!(incomplete["status"], "incomplete");
    assert_eq!(incomplete["incomplete_details"]["reason"], "run_failed");
    assert_eq!(incomplete["content"][0]["text"]["value"], "Your goal takes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_metadata_is_stored_and_returned() {
    let server = start(pay_loop(), &[], LIMIT).await;
    let (c, base) = (client(), server.base.clone());
    let (status, thread) = call(c.post(format!("{base}/threads")).json(&json!({
        "messages": [{"role": "user", "content": "hi", "metadata": {"source": "import"}}]
    })))
    .await;
    assert_eq!(status, 200, "{thread}");
    let tid = thread["id"].as_str().unwrap_or_default();
    let (status, created) = call(
        c.post(format!("{base}/threads/{tid}/messages"))
            .json(&json!({"role": "user", "content": "pay 42", "metadata": {"channel": "web"}})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["metadata"], json!({"channel": "web"}));
    let mid = created["id"].as_str().unwrap_or_default();
    let (_, retrieved) = call(c.get(format!("{base}/threads/{tid}/messages/{mid}"))).await;
    assert_eq!(
        retrieved["metadata"],
        json!({"channel": "web"}),
        "stored, not just echoed"
    );
    let (_, listed) = call(c.get(format!("{base}/threads/{tid}/messages?order=asc"))).await;
    assert_eq!(listed["data"][0]["metadata"], json!({"source": "import"}));
    let (status, error) = call(
        c.post(format!("{base}/threads/{tid}/messages"))
            .json(&json!({"role": "user", "content": "x", "metadata": {"n": 1}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["param"], "metadata");

    // Modify merges, and an empty value removes a key.
    let (status, modified) = call(
        c.post(format!("{base}/threads/{tid}/messages/{mid}"))
            .json(&json!({"metadata": {"reviewed": "yes", "channel": ""}})),
    )
    .await;
    assert_eq!(status, 200, "{modified}");
    assert_eq!(modified["metadata"], json!({"reviewed": "yes"}));
    let (_, retrieved) = call(c.get(format!("{base}/threads/{tid}/messages/{mid}"))).await;
    assert_eq!(retrieved["metadata"], json!({"reviewed": "yes"}));
    assert_eq!(retrieved["content"][0]["text"]["value"], "pay 42");
    let (status, _) = call(
        c.post(format!("{base}/threads/{tid}/messages/msg_nope"))
            .json(&json!({"metadata": {"a": "b"}})),
    )
    .await;
    assert_eq!(status, 404);

    // While a run holds the thread, as for adding a message.
    let (status, run) = call(
        c.post(format!("{base}/threads/{tid}/runs"))
            .json(&json!({"assistant_id": "asst_shop"})),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let rid = run["id"].as_str().unwrap_or_default();
    poll(&c, &base, tid, rid).await;
    let (status, error) = call(
        c.post(format!("{base}/threads/{tid}/messages/{mid}"))
            .json(&json!({"metadata": {"a": "b"}})),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("Can't modify messages of {tid} while a run"))),
        "{error}"
    );
}
