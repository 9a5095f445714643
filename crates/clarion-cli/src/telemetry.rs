//! OpenTelemetry traces over OTLP/HTTP: the exporter, the `tracing` layer that turns the
//! engine's and the server's spans into OpenTelemetry spans, and the W3C trace context a
//! client's request carries.
//!
//! Off unless the standard variables ask for it: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set (and `OTEL_SDK_DISABLED` not `true`). The exporter then
//! reads the rest of the standard configuration itself (headers, timeout, compression,
//! `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`); the service is `clarion` unless
//! `OTEL_SERVICE_NAME` or the resource attributes name another.
//!
//! What reaches a trace is decided here, not at the call sites: only Clarion's own spans
//! and events at `info` or above, whatever `RUST_LOG` says, and never anything under
//! [`CONTENT_TARGET`] — not even with `--log-content`, because a collector's storage is
//! not the operator's terminal. The spans carry names, ids, codes and token counts; the
//! header values the exporter sends (`OTEL_EXPORTER_OTLP_HEADERS`, usually an API key)
//! are added to the log redactor and never logged.
//!
//! The batch processor exports from a thread of its own with a blocking HTTP client, so
//! it works the same under every command's runtime; [`Tracing::shutdown`] flushes what is
//! queued before the process exits, so a short `clarion chat` loses no span.

use std::time::Duration;

use clarion_engine::observe::CONTENT_TARGET;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use crate::logging::LogRedactor;

/// The variables that turn traces on, in the order the exporter reads them.
pub(crate) const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// How long the exit waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The tracer provider while traces are exported; flushed by [`Tracing::shutdown`] (or,
/// as a last resort, on drop).
pub(crate) struct Tracing {
    provider: Option<SdkTracerProvider>,
}

/// Why traces could not be set up: the variable at fault and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub(crate) struct TracingError {
    variable: &'static str,
    problem: String,
}

impl Tracing {
    /// Traces off.
    pub(crate) fn off() -> Self {
        Self { provider: None }
    }

    /// Keeps `provider` to flush at exit.
    pub(crate) fn on(provider: SdkTracerProvider) -> Self {
        Self {
            provider: Some(provider),
        }
    }

    /// Whether spans are being exported.
    pub(crate) fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports what is queued and stops the exporter. A collector that does not answer
    /// costs at most [`FLUSH_TIMEOUT`], and a warning.
    pub(crate) fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            tracing::warn!("could not export the last trace spans: {error}");
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads the standard variables. `Ok(None)` when traces are off; otherwise the provider
/// (kept by the caller to flush at exit) and the layer to add to the subscriber.
pub(crate) fn from_env<S>(
    redactor: &LogRedactor,
) -> Result<Option<(SdkTracerProvider, impl Layer<S>)>, TracingError>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    if env_is("OTEL_SDK_DISABLED", "true") || !ENDPOINT_VARS.iter().any(|v| env_set(v)) {
        return Ok(None);
    }
    // The exporter reads the headers itself; the logs must never show their values.
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ] {
        if let Ok(headers) = std::env::var(variable) {
            for pair in headers.split(',') {
                if let Some((_, value)) = pair.split_once('=') {
                    redactor.add(variable, value.trim());
                }
            }
        }
    }
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(protocol) = std::env::var(variable)
            && !protocol.is_empty()
            && protocol != "http/protobuf"
        {
            return Err(TracingError {
                variable,
                problem: format!(
                    "`{protocol}` is not supported: Clarion exports OTLP over `http/protobuf` \
                     (a collector's port 4318); unset it or set it to `http/protobuf`"
                ),
            });
        }
    }
    // The exporter's client speaks TLS to an `https` collector with the process's
    // provider, the same one the model and tool clients install.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|error| TracingError {
            variable: ENDPOINT_VARS
                .into_iter()
                .find(|v| env_set(v))
                .unwrap_or(ENDPOINT_VARS[1]),
            problem: format!("the OTLP exporter cannot be set up: {error}"),
        })?;
    let mut resource = Resource::builder();
    let named = env_set("OTEL_SERVICE_NAME")
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name("clarion");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("clarion");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        // Spans are linked through the subscriber's tree; making each one OpenTelemetry's
        // current context on every poll of the future it instruments is cost for nothing
        // (nothing here reads that context).
        .with_context_activation(false)
        .with_target(false)
        .with_level(false)
        .with_filter(filter_fn(|meta| {
            meta.target().starts_with("clarion")
                && meta.target() != CONTENT_TARGET
                && *meta.level() <= Level::INFO
        }));
    Ok(Some((provider, layer)))
}

/// What `serve` joins each request's span to the client's trace with: the W3C
/// `traceparent` (and `tracestate`) headers; a request without a valid one starts its own
/// trace.
pub(crate) fn trace_context() -> clarion_server::TraceContext {
    std::sync::Arc::new(|span, headers| {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let Some(traceparent) = header("traceparent") else {
            return;
        };
        let context = TraceContextPropagator::new().extract(&W3cHeaders {
            traceparent: Some(traceparent),
            tracestate: header("tracestate"),
        });
        // Fails only without the OpenTelemetry layer, where there is no trace to join.
        let _ = span.set_parent(context);
    })
}

/// The two headers of the W3C trace context, as the propagator reads them.
struct W3cHeaders<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for W3cHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

fn env_set(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|v| !v.trim().is_empty())
}

fn env_is(variable: &str, value: &str) -> bool {
    std::env::var(variable).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
}
