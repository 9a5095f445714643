//! What the engine tells operators: log lines through `tracing` and metrics through the
//! `metrics` facade. The engine owns the names and the labels; the binary decides where
//! they go (a subscriber, a Prometheus recorder). With neither installed every call here
//! is a cheap no-op, so embedding applications pay nothing for it.
//!
//! Two rules hold everything here together:
//!
//! - **Labels are bounded.** Flow, tool, executor, parameter, model, status and code come
//!   from the flow file or from Clarion's enums; no label holds an id, a user's words or a
//!   provider's free text, so the number of series a server exports is fixed by its flows.
//! - **Content is opt-in.** Anything that can carry what people said — tool arguments and
//!   results, a tool's or a provider's error text — is logged only under
//!   [`CONTENT_TARGET`], which the `clarion` binary drops unless `--log-content` is given.
//!   Every other line names runs, tools and codes, never text.
//!
//! The spans follow OpenTelemetry's semantic conventions for generative AI (`gen_ai.*`),
//! so a tracing layer can export them as they are: `run` holds one `chat` span per model
//! request (`model_span`: `gen_ai.system`, `gen_ai.request.model`, token usage, finish
//! reason) and one `execute_tool` span per server-side call (`tool_span`:
//! `gen_ai.tool.name`, executor, outcome); questions asked and context injected are
//! events inside `run`. The same two rules hold: names, ids, codes and counts, never text.

use std::time::Duration;

use clarion_flow::{Flow, Tool};

use crate::run::{Run, RunStatus};

/// The `tracing` target of every log line that may hold message content. Subscribers
/// drop it unless content logging was asked for.
pub const CONTENT_TARGET: &str = "clarion::content";

/// Runs that came to an end, by flow, final status and code.
pub const RUNS_TOTAL: &str = "clarion_runs_total";
/// Seconds from a run's creation to its end, by flow and final status.
pub const RUN_DURATION: &str = "clarion_run_duration_seconds";
/// Runs being driven right now, by flow.
pub const RUNS_ACTIVE: &str = "clarion_runs_active";
/// Model requests, by flow, system, model and outcome.
pub const MODEL_REQUESTS_TOTAL: &str = "clarion_model_requests_total";
/// Seconds a model request took, by system, model and outcome.
pub const MODEL_REQUEST_DURATION: &str = "clarion_model_request_duration_seconds";
/// Tokens the provider reported, by system, model and type (`input`, `output`).
pub const MODEL_TOKENS_TOTAL: &str = "clarion_model_tokens_total";
/// Server-side tool calls, by flow, tool, executor and outcome.
pub const TOOL_CALLS_TOTAL: &str = "clarion_tool_calls_total";
/// Seconds a server-side tool call took, by flow, tool, executor and outcome.
pub const TOOL_CALL_DURATION: &str = "clarion_tool_call_duration_seconds";
/// Parameters users were asked for (they left them out), by flow, tool and parameter.
pub const QUESTIONS_TOTAL: &str = "clarion_questions_total";

/// Every metric the engine records: name, kind, help. The order is the docs' order.
pub const METRICS: &[(&str, MetricKind, &str)] = &[
    (
        RUNS_TOTAL,
        MetricKind::Counter,
        "Runs that came to an end, by flow, final status and code (`none` unless failed, expired or incomplete).",
    ),
    (
        RUN_DURATION,
        MetricKind::Histogram,
        "Seconds from a run's creation to its end, by flow and final status.",
    ),
    (
        RUNS_ACTIVE,
        MetricKind::Gauge,
        "Runs being driven right now, by flow.",
    ),
    (
        MODEL_REQUESTS_TOTAL,
        MetricKind::Counter,
        "Model requests, by flow, system, model and outcome (`ok`, `stopped`, or the error kind).",
    ),
    (
        MODEL_REQUEST_DURATION,
        MetricKind::Histogram,
        "Seconds a model request took, by system, model and outcome.",
    ),
    (
        MODEL_TOKENS_TOTAL,
        MetricKind::Counter,
        "Tokens the provider reported, by system, model and type (`input`, `output`).",
    ),
    (
        TOOL_CALLS_TOTAL,
        MetricKind::Counter,
        "Server-side tool calls, by flow, tool, executor and outcome (`ok` or the error kind).",
    ),
    (
        TOOL_CALL_DURATION,
        MetricKind::Histogram,
        "Seconds a server-side tool call took, by flow, tool, executor and outcome.",
    ),
    (
        QUESTIONS_TOTAL,
        MetricKind::Counter,
        "Parameters users were asked for because they left them out, by flow, tool and parameter.",
    ),
];

/// A metric's type, as Prometheus names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution in buckets.
    Histogram,
}

impl MetricKind {
    /// `counter`, `gauge` or `histogram`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Gives every metric in `metrics` its help text in the installed recorder.
pub fn describe(metrics: &[(&'static str, MetricKind, &'static str)]) {
    for &(name, kind, help) in metrics {
        match kind {
            MetricKind::Counter => metrics::describe_counter!(name, help),
            MetricKind::Gauge => metrics::describe_gauge!(name, help),
            MetricKind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

/// Who answers a model request, for metrics and logs: the provider's system (`openai`
/// for any OpenAI-compatible server) and the model's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The provider's protocol family, as OpenTelemetry's `gen_ai.system`.
    pub system: &'static str,
    /// The model name sent to the provider.
    pub model: String,
}

/// Counts a run as active while it lives (a guard: a dropped driver counts down too).
pub(crate) struct ActiveRun {
    flow: String,
}

impl ActiveRun {
    pub(crate) fn start(flow: &Flow) -> Self {
        metrics::gauge!(RUNS_ACTIVE, "flow" => flow.name.clone()).increment(1.0);
        Self {
            flow: flow.name.clone(),
        }
    }
}

impl Drop for ActiveRun {
    fn drop(&mut self) {
        metrics::gauge!(RUNS_ACTIVE, "flow" => std::mem::take(&mut self.flow)).decrement(1.0);
    }
}

/// A run came to rest in a terminal status: one log line and its metrics.
pub(crate) fn run_ended(flow: &Flow, run: &Run) {
    let status = run.status.as_str();
    let code = match (&run.last_error, run.incomplete_details) {
        (Some(error), _) => bounded_code(&error.code),
        (None, Some(reason)) => reason.as_str().into(),
        (None, None) => "none".into(),
    };
    let seconds = run
        .completed_at
        .map_or(0.0, |end| ms_to_seconds(end.saturating_sub(run.created_at)));
    metrics::counter!(RUNS_TOTAL, "flow" => flow.name.clone(), "status" => status, "code" => code.clone())
        .increment(1);
    metrics::histogram!(RUN_DURATION, "flow" => flow.name.clone(), "status" => status)
        .record(seconds);
    let (input, output) = (run.usage.prompt_tokens, run.usage.completion_tokens);
    if run.status == RunStatus::Failed {
        tracing::warn!(
            run_id = %run.id, thread_id = %run.thread_id, flow = %flow.name, status, code = %code,
            steps = run.steps, input_tokens = input, output_tokens = output,
            "run failed ({code})"
        );
        if let Some(error) = &run.last_error {
            // A provider's or a tool's message can quote what it was sent.
            tracing::warn!(target: CONTENT_TARGET, run_id = %run.id, code = %code, "run failed: {}", error.message);
        }
    } else {
        tracing::info!(
            run_id = %run.id, thread_id = %run.thread_id, flow = %flow.name, status, code = %code,
            steps = run.steps, input_tokens = input, output_tokens = output,
            duration_ms = seconds * 1000.0, "run ended"
        );
    }
}

/// One model request finished: its metrics (outcome `ok`, `stopped` or the error kind),
/// its log line, and how it ended on its `span` ([`model_span`]).
pub(crate) fn model_requested(
    flow: &Flow,
    info: &ModelInfo,
    span: &tracing::Span,
    response: &Result<crate::model::ModelResponse, crate::model::ModelError>,
    elapsed: Duration,
) {
    model_span_end(span, response);
    let (outcome, usage) = match response {
        Ok(crate::model::ModelResponse {
            turn: crate::model::ModelTurn::Stopped { .. },
            usage,
        }) => ("stopped", *usage),
        Ok(response) => ("ok", response.usage),
        Err(error) => (error.kind.as_str(), crate::run::Usage::default()),
    };
    metrics::counter!(MODEL_REQUESTS_TOTAL, "flow" => flow.name.clone(), "system" => info.system,
        "model" => info.model.clone(), "outcome" => outcome)
    .increment(1);
    metrics::histogram!(MODEL_REQUEST_DURATION, "system" => info.system,
        "model" => info.model.clone(), "outcome" => outcome)
    .record(elapsed.as_secs_f64());
    for (kind, tokens) in [
        ("input", usage.prompt_tokens),
        ("output", usage.completion_tokens),
    ] {
        if tokens > 0 {
            metrics::counter!(MODEL_TOKENS_TOTAL, "system" => info.system,
                "model" => info.model.clone(), "type" => kind)
            .increment(tokens);
        }
    }
    tracing::debug!(
        system = info.system, model = %info.model, outcome,
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        input_tokens = usage.prompt_tokens, output_tokens = usage.completion_tokens,
        "model request"
    );
}

/// The span of one model request (`chat` in the `gen_ai` conventions), filled in by
/// [`model_requested`].
pub(crate) fn model_span(info: &ModelInfo) -> tracing::Span {
    tracing::info_span!(
        "chat",
        otel.name = %format_args!("chat {}", info.model),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.system = info.system,
        gen_ai.request.model = %info.model,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
        gen_ai.response.finish_reasons = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records how a model request ended on its span: the provider's token counts and finish
/// reason (`stop`, `tool_calls`, `length`, `content_filter`), or the error kind.
fn model_span_end(
    span: &tracing::Span,
    response: &Result<crate::model::ModelResponse, crate::model::ModelError>,
) {
    use crate::codes::IncompleteReason;
    use crate::model::ModelTurn;
    match response {
        Ok(response) => {
            span.record("gen_ai.usage.input_tokens", response.usage.prompt_tokens);
            span.record(
                "gen_ai.usage.output_tokens",
                response.usage.completion_tokens,
            );
            let reason = match &response.turn {
                ModelTurn::Text(_) => "stop",
                ModelTurn::ToolCalls { .. } => "tool_calls",
                ModelTurn::Stopped {
                    reason: IncompleteReason::MaxOutputTokens,
                } => "length",
                ModelTurn::Stopped { reason } => reason.as_str(),
            };
            span.record("gen_ai.response.finish_reasons", reason);
        }
        Err(error) => span_failed(span, error.kind.as_str()),
    }
}

/// The span of one server-side tool call (`execute_tool` in the `gen_ai` conventions);
/// [`tool_called`] records its outcome.
pub(crate) fn tool_span(tool: &Tool, call_id: &str) -> tracing::Span {
    tracing::info_span!(
        "execute_tool",
        otel.name = %format_args!("execute_tool {}", tool.name),
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = %tool.name,
        gen_ai.tool.call.id = call_id,
        clarion.tool.executor = tool.executor.kind(),
        clarion.tool.outcome = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Marks `span` failed with a bounded `code`.
pub(crate) fn span_failed(span: &tracing::Span, code: &str) {
    span.record("error.type", code);
    span.record("otel.status_code", "error");
}

/// One server-side tool call finished: `outcome` is `ok` or the error kind.
pub(crate) fn tool_called(
    flow: &Flow,
    tool: &Tool,
    span: &tracing::Span,
    outcome: &'static str,
    elapsed: Duration,
) {
    span.record("clarion.tool.outcome", outcome);
    if outcome != "ok" {
        span_failed(span, outcome);
    }
    let executor = tool.executor.kind();
    metrics::counter!(TOOL_CALLS_TOTAL, "flow" => flow.name.clone(), "tool" => tool.name.clone(),
        "executor" => executor, "outcome" => outcome)
    .increment(1);
    metrics::histogram!(TOOL_CALL_DURATION, "flow" => flow.name.clone(), "tool" => tool.name.clone(),
        "executor" => executor, "outcome" => outcome)
    .record(elapsed.as_secs_f64());
}

/// The user was asked for `params` of `tool`.
pub(crate) fn question_asked(flow: &Flow, tool: &str, params: &[String]) {
    for param in params {
        metrics::counter!(QUESTIONS_TOTAL, "flow" => flow.name.clone(), "tool" => tool.to_owned(),
            "param" => param.clone())
        .increment(1);
    }
    tracing::info!(flow = %flow.name, tool, params = %params.join(","), "question asked");
}

/// A rule of `tool` injected context for the model (its text is content: not here).
pub(crate) fn context_injected(flow: &Flow, tool: &str) {
    tracing::info!(flow = %flow.name, tool, "context injected");
}

/// A code fit for a label: codes this build does not know (read back from a store)
/// collapse into `other`, so stored text can never become a series.
fn bounded_code(code: &crate::codes::ErrorCode) -> std::borrow::Cow<'static, str> {
    match code {
        crate::codes::ErrorCode::Other(_) => "other".into(),
        known => known.as_str(),
    }
}

#[allow(clippy::cast_precision_loss)] // milliseconds of a run fit an f64 exactly
fn ms_to_seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}
