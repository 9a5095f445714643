//! The binary's log: one `tracing` subscriber writing to stderr, as text for people or as
//! one JSON object per line for collectors (`--log-format`).
//!
//! Levels come from `RUST_LOG` (`tracing-subscriber`'s env-filter syntax), else `info` for
//! `serve` — a server's access log and run outcomes are what an operator reads — and `warn`
//! for the commands people run in a terminal, whose own output is the interface.
//!
//! Two guards keep secrets and conversations out, whatever `RUST_LOG` says:
//!
//! - lines under [`CONTENT_TARGET`] (tool arguments and results, provider and tool error
//!   text) are dropped by a filter of their own unless `--log-content` is given, so no
//!   `RUST_LOG=trace` turns them on by accident;
//! - every line passes through the same [`Redactor`] as transcripts before it is written:
//!   the secrets the flows' tools read from the environment and the server's API keys
//!   become `[redacted: NAME]`. Commands add what they know once they have loaded it
//!   ([`LogRedactor::add`]); nothing is logged before that except start-up errors.

use std::io::Write as _;
use std::sync::{Arc, PoisonError, RwLock};

use clarion_engine::Redactor;
use clarion_engine::observe::CONTENT_TARGET;
use clarion_flow::Flow;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

use crate::args::LogFormat;

/// The secrets every log line is cleaned of; shared with the writer.
#[derive(Clone, Default)]
pub(crate) struct LogRedactor(Arc<RwLock<Redactor>>);

impl LogRedactor {
    /// The secrets `flow`'s tools read from the environment.
    pub(crate) fn add_flow(&self, flow: &Flow) {
        let found = clarion_testing::transcript::redact::for_flow(flow);
        self.write().extend(&found);
    }

    /// One more secret, shown as `[redacted: NAME]` (values under 4 characters are not
    /// secrets and would mangle ordinary words).
    pub(crate) fn add(&self, name: &str, value: &str) {
        if value.chars().count() >= 4 {
            self.write().add_named(name, value);
        }
    }

    fn apply(&self, text: &str) -> String {
        // A poisoned lock still holds every secret: redact with it rather than skip.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(text)
            .into_owned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Redactor> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The redactor of the installed subscriber, for commands that load flows.
static REDACTOR: std::sync::OnceLock<LogRedactor> = std::sync::OnceLock::new();

/// The installed subscriber's redactor (a detached one if none is installed).
pub(crate) fn redactor() -> LogRedactor {
    REDACTOR.get().cloned().unwrap_or_default()
}

/// Installs the subscriber; returns the redactor its writer applies.
pub(crate) fn init(format: LogFormat, default_level: &str, log_content: bool) -> LogRedactor {
    let redactor = REDACTOR.get_or_init(LogRedactor::default).clone();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let content = filter_fn(move |meta| log_content || meta.target() != CONTENT_TARGET);
    let writer = RedactingStderr(redactor.clone());
    let layer = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_filter(content)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .with_filter(content)
            .boxed(),
    };
    // Fails only if a subscriber is already set, which `main` never does twice.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    redactor
}

/// Writes each formatted line to stderr after redaction. The formatter hands over a whole
/// event in one write, so a secret is never split across two calls.
#[derive(Clone)]
struct RedactingStderr(LogRedactor);

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            redactor: &self.0,
            buffer: Vec::new(),
        }
    }
}

/// Collects one event's bytes and writes them, redacted, when dropped.
struct LineWriter<'a> {
    redactor: &'a LogRedactor,
    buffer: Vec<u8>,
}

impl std::io::Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.buffer);
        let line = self.redactor.apply(&line);
        // A closed stderr is not worth a panic; the line is lost either way.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}
