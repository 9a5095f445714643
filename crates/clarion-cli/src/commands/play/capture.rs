//! The requests the playground's engines send to their models, kept so the inspector can
//! show the exact request of a step: the body the provider puts on the wire (built by the
//! provider's own `request_body`, so it is the real one; the API key travels in a header
//! and is never in it) and the rendered instructions.
//!
//! A request does not name its thread, but it carries the thread's history, whose first
//! message's id is unique and never changes: requests are filed under it, and the route
//! that lists a thread's requests reads that id from the store. Only the latest
//! [`KEPT`] requests are kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use clarion_engine::{BoxFuture, EventSink, Model, ModelError, ModelRequest, ModelResponse};
use clarion_flow::model::ProviderApi;
use clarion_providers::select::{ProviderOverrides, resolve};
use serde_json::{Value, json};

/// How many requests are kept, over every thread.
const KEPT: usize = 500;

/// One request sent to a model.
#[derive(Debug, Clone)]
struct Captured {
    /// The id of the first message of the thread's history.
    thread_key: String,
    /// The request, as JSON for the page.
    value: Value,
}

/// The requests kept.
#[derive(Debug, Default)]
pub(crate) struct Requests(Mutex<VecDeque<Captured>>);

impl Requests {
    /// The requests of the thread whose first message has id `thread_key`, oldest first.
    pub(crate) fn of(&self, thread_key: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|c| c.thread_key == thread_key)
            .map(|c| c.value.clone())
            .collect()
    }

    fn push(&self, captured: Captured) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(captured);
    }
}

/// A model that files each request in [`Requests`] before passing it on.
pub(crate) struct Capturing {
    inner: Arc<dyn Model>,
    requests: Arc<Requests>,
    overrides: ProviderOverrides,
}

impl Capturing {
    pub(crate) fn new(
        inner: Arc<dyn Model>,
        requests: Arc<Requests>,
        overrides: ProviderOverrides,
    ) -> Self {
        Self {
            inner,
            requests,
            overrides,
        }
    }
}

impl Model for Capturing {
    fn describe(&self, flow: &clarion_flow::Flow) -> clarion_engine::observe::ModelInfo {
        self.inner.describe(flow)
    }

    fn respond<'a>(
        &'a self,
        request: ModelRequest<'a>,
        events: &'a dyn EventSink,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        if let Some(first) = request.history.first() {
            let (api, config) = resolve(request.flow, &self.overrides, &|name| {
                std::env::var(name).ok()
            });
            let (endpoint, body) = match api {
                ProviderApi::ChatCompletions => (
                    "chat/completions",
                    clarion_providers::chat_completions::request_body(&config, &request),
                ),
                ProviderApi::Responses => (
                    "responses",
                    clarion_providers::responses::request_body(&config, &request),
                ),
            };
            let at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            self.requests.push(Captured {
                thread_key: first.id.clone(),
                value: json!({
                    "at_ms": at_ms,
                    "after_message": request.history.last().map(|m| m.id.clone()),
                    "url": config.url(endpoint),
                    "instructions": request.instructions,
                    "body": body,
                }),
            });
        }
        self.inner.respond(request, events)
    }
}
