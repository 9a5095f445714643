//! Sending a request to a provider: authentication, timeouts, retries, error bodies.
//!
//! What is retried is what a retry can fix: 408, 409, 429 and 5xx answers, connection
//! failures and timeouts — with exponential backoff and full jitter, honouring
//! `Retry-After` (and OpenAI's `retry-after-ms`) up to a cap. What is not retried is
//! surfaced at once with the provider's own message, redacted: 400, 401, 403, 404, 422…
//! Every outcome is a [`ModelError`] with a stable code.
//!
//! Timeouts say which limit ran out. A non-streamed request has one total limit
//! (`request_timeout`); a stream has two — the longest silence (`idle_timeout`: before the
//! response starts and between chunks) and the longest stream in all (`stream_timeout`) —
//! so a slow model that keeps writing is never cut off by a limit meant for a hung one.

use clarion_engine::Backoff;
use clarion_engine::ModelErrorKind;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::config::{AuthStyle, ProviderConfig};
use clarion_engine::ModelError;

/// An HTTP client for one provider endpoint.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    config: ProviderConfig,
    client: reqwest::Client,
    /// The endpoint's URL with the configured query, parsed once.
    url: reqwest::Url,
    /// What every request carries: the content type, the configured headers, the key.
    headers: HeaderMap,
}

impl ProviderClient {
    /// A client that POSTs to `endpoint` (such as `chat/completions`) under the configured
    /// base URL. Fails, as a [`ModelErrorKind::Configuration`] error, when the URL or a
    /// configured header is not valid: before any request, not at the first one.
    pub fn new(config: ProviderConfig, endpoint: &str) -> Result<Self, ModelError> {
        // rustls needs a process-wide crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No client-wide timeout: `post` and [`ChunkReader`] apply the one that fits.
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| configuration(format!("cannot build the HTTP client: {e}")))?;
        let mut url = reqwest::Url::parse(&config.url(endpoint)).map_err(|e| {
            configuration(format!(
                "the provider URL `{}` is not valid: {e}",
                config.base_url
            ))
        })?;
        if !config.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&config.query);
        }
        let headers = headers(&config)?;
        Ok(Self {
            config,
            client,
            url,
            headers,
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// POSTs `body` to the endpoint and returns the successful response, retrying what
    /// can be retried.
    pub async fn post(
        &self,
        body: &impl serde::Serialize,
    ) -> Result<reqwest::Response, ModelError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| configuration(format!("cannot serialize the request body: {e}")))?;
        self.post_json(body.into()).await
    }

    /// [`ProviderClient::post`] with a body already serialized (JSON).
    pub async fn post_json(&self, body: bytes::Bytes) -> Result<reqwest::Response, ModelError> {
        let mut attempt = 0;
        loop {
            // What `RequestBuilder::json` does, with the bytes shared across retries.
            let mut request = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .body(body.clone());
            if !self.config.stream {
                request = request.timeout(self.config.request_timeout);
            }
            let sent = if self.config.stream {
                tokio::time::timeout(self.config.idle_timeout, request.send()).await
            } else {
                Ok(request.send().await)
            };
            let Ok(sent) = sent else {
                let failure = Failure {
                    code: ModelErrorKind::Timeout,
                    message: format!(
                        "{} did not start its response within {} (the provider's `idle_timeout`)",
                        self.host(),
                        seconds(self.config.idle_timeout)
                    ),
                    wait: None,
                };
                if attempt >= self.config.max_retries {
                    return Err(failure.give_up(attempt));
                }
                tokio::time::sleep(self.backoff(attempt)).await;
                attempt += 1;
                continue;
            };
            let failure = match sent {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let wait = retry_after(&response);
                    let message = self.error_message(response).await;
                    if !retryable(status) {
                        return Err(ModelError::new(
                            status_code(status),
                            format!("{} returned {status}: {message}", self.host()),
                        ));
                    }
                    Failure {
                        code: status_code(status),
                        message: format!("{} returned {status}: {message}", self.host()),
                        wait,
                    }
                }
                Err(error) => self.send_failure(&error),
            };
            if attempt >= self.config.max_retries {
                return Err(failure.give_up(attempt));
            }
            let delay = match failure.wait {
                Some(wait) if wait > self.config.retry_after_cap => {
                    return Err(ModelError::new(
                        failure.code,
                        format!(
                            "{} (the server asked to retry after {}s, longer than the {}s cap)",
                            failure.message,
                            wait.as_secs(),
                            self.config.retry_after_cap.as_secs()
                        ),
                    ));
                }
                Some(wait) => wait,
                None => self.backoff(attempt),
            };
            log_retry(attempt + 1, delay, &failure);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// What a request that got no response means.
    fn send_failure(&self, error: &reqwest::Error) -> Failure {
        let (code, message) = if error.is_timeout() {
            (
                ModelErrorKind::Timeout,
                format!(
                    "{} sent no complete response within {} (the provider's `timeout`)",
                    self.host(),
                    seconds(self.config.request_timeout)
                ),
            )
        } else if error.is_connect() {
            (
                ModelErrorKind::Unavailable,
                format!(
                    "cannot connect to {} ({})",
                    self.host(),
                    self.config.redact(&root_cause(error))
                ),
            )
        } else {
            (
                ModelErrorKind::Unavailable,
                format!(
                    "cannot reach {}: {}",
                    self.host(),
                    self.config.redact(&describe(error))
                ),
            )
        };
        Failure {
            code,
            message,
            wait: None,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        Backoff {
            base: self.config.backoff_base,
            cap: self.config.backoff_cap,
        }
        .delay(attempt)
    }

    fn host(&self) -> String {
        reqwest::Url::parse(&self.config.base_url)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(port) => format!("{h}:{port}"),
                    None => h.to_owned(),
                })
            })
            .unwrap_or_else(|| "the provider".to_owned())
    }

    /// The provider's error message (`{"error": {"message": …}}`, or the body's start).
    async fn error_message(&self, response: reqwest::Response) -> String {
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let error = v.get("error")?;
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .map(ToOwned::to_owned)
                    .or_else(|| error.as_str().map(ToOwned::to_owned))
            })
            .unwrap_or_else(|| {
                let trimmed = text.trim();
                if trimmed.is_empty() {
                    "(no body)".to_owned()
                } else {
                    trimmed.chars().take(300).collect()
                }
            });
        self.config.redact(&message)
    }

    /// Reads a whole response body as JSON; an unreadable or malformed body is an
    /// `invalid_response` error quoting (redacted) the start of what arrived.
    pub async fn read_json(&self, response: reqwest::Response) -> Result<Value, ModelError> {
        let text = response.text().await.map_err(|e| {
            if e.is_timeout() {
                ModelError::new(
                    ModelErrorKind::Timeout,
                    format!(
                        "{} sent no complete response within {} (the provider's `timeout`)",
                        self.host(),
                        seconds(self.config.request_timeout)
                    ),
                )
            } else {
                ModelError::new(
                    ModelErrorKind::StreamInterrupted,
                    format!(
                        "the connection to {} closed before the whole response arrived ({})",
                        self.host(),
                        self.redact(&root_cause(&e))
                    ),
                )
            }
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ModelError::new(
                ModelErrorKind::InvalidResponse,
                format!(
                    "the response is not valid JSON ({e}): {}",
                    crate::chat_completions::excerpt(&self.redact(&text))
                ),
            )
        })
    }

    /// The labels of this provider's requests (the model the flags or the flow name):
    /// one answer for both protocols.
    pub(crate) fn describe(&self, flow: &clarion_flow::Flow) -> clarion_engine::observe::ModelInfo {
        clarion_engine::observe::ModelInfo {
            system: "openai",
            model: self
                .config
                .model
                .clone()
                .unwrap_or_else(|| flow.assistant.model.clone()),
        }
    }

    /// Redacts secrets from `text`.
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        self.config.redact(text)
    }
}

/// A configuration error with `message`.
fn configuration(message: String) -> ModelError {
    ModelError::new(ModelErrorKind::Configuration, message)
}

/// The headers of every request to the provider: JSON, the configured ones, then the key
/// (marked sensitive, so it never shows in a debug print).
fn headers(config: &ProviderConfig) -> Result<HeaderMap, ModelError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in &config.headers {
        let parsed_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            configuration(format!(
                "the provider header name `{name}` is not a valid HTTP header name"
            ))
        })?;
        let parsed_value = HeaderValue::from_str(value).map_err(|_| {
            configuration(format!(
                "the value of the provider header `{name}` is not a valid HTTP header value \
                 (it must be visible ASCII)"
            ))
        })?;
        headers.append(parsed_name, parsed_value);
    }
    if let Some(key) = &config.api_key {
        let (name, value) = match config.auth {
            AuthStyle::Bearer => (
                reqwest::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {}", key.expose())),
            ),
            AuthStyle::ApiKeyHeader => (
                HeaderName::from_static("api-key"),
                HeaderValue::from_str(key.expose()),
            ),
        };
        let mut value = value.map_err(|_| {
            configuration(
                "the API key is not a valid HTTP header value (it must be visible ASCII)".into(),
            )
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// A retry, logged: the code on the ordinary log; the provider's message, which can quote
/// the request, only on the content target.
fn log_retry(attempt: u32, delay: Duration, failure: &Failure) {
    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let code = failure.code.as_str();
    tracing::warn!(
        attempt,
        delay_ms,
        code,
        "provider request failed ({code}), retrying"
    );
    tracing::warn!(
        target: clarion_engine::observe::CONTENT_TARGET,
        attempt,
        "provider request failed: {}",
        failure.message
    );
}

struct Failure {
    code: ModelErrorKind,
    message: String,
    wait: Option<Duration>,
}

impl Failure {
    fn give_up(self, attempt: u32) -> ModelError {
        let tries = match attempt + 1 {
            1 => "1 attempt".to_owned(),
            n => format!("{n} attempts"),
        };
        ModelError::new(
            self.code,
            format!("{} (gave up after {tries})", self.message),
        )
    }
}

/// Reads a streamed body chunk by chunk under the stream's two limits.
pub struct ChunkReader<'a> {
    client: &'a ProviderClient,
    response: reqwest::Response,
    deadline: tokio::time::Instant,
}

impl<'a> ChunkReader<'a> {
    /// Starts reading `response`; the stream's overall limit counts from now.
    #[must_use]
    pub fn new(client: &'a ProviderClient, response: reqwest::Response) -> Self {
        Self {
            client,
            response,
            deadline: tokio::time::Instant::now() + client.config.stream_timeout,
        }
    }

    /// The next chunk, `None` at the end of the body. Silence past `idle_timeout`, a
    /// stream past `stream_timeout` and a connection that breaks are errors that say so.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>, ModelError> {
        let config = &self.client.config;
        let idle_until = tokio::time::Instant::now() + config.idle_timeout;
        let overall = self.deadline <= idle_until;
        match tokio::time::timeout_at(self.deadline.min(idle_until), self.response.chunk()).await {
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(error)) => Err(ModelError::new(
                ModelErrorKind::StreamInterrupted,
                format!(
                    "the connection to {} broke off in the middle of the streamed response ({})",
                    self.client.host(),
                    self.client.redact(&root_cause(&error))
                ),
            )),
            Err(_) if overall => Err(ModelError::new(
                ModelErrorKind::Timeout,
                format!(
                    "the streamed response from {} took longer than {} in all (the provider's `stream_timeout`)",
                    self.client.host(),
                    seconds(config.stream_timeout)
                ),
            )),
            Err(_) => Err(ModelError::new(
                ModelErrorKind::Timeout,
                format!(
                    "{} sent nothing for {} in the middle of a streamed response (the provider's `idle_timeout`)",
                    self.client.host(),
                    seconds(config.idle_timeout)
                ),
            )),
        }
    }
}

/// `90s`, `1.5s`, `250ms`: a limit as the flow file writes it.
fn seconds(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms > 1000 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

/// The innermost cause of an error, which names what happened ("connection refused",
/// "unexpected end of file") where the outer ones name only the step that failed.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost: &(dyn std::error::Error + 'static) = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    if let Some(io) = innermost.downcast_ref::<std::io::Error>() {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::ConnectionReset => "connection reset by the server".to_owned(),
            std::io::ErrorKind::UnexpectedEof => "the connection closed early".to_owned(),
            _ => io.to_string(),
        };
    }
    let text = innermost.to_string();
    if text.is_empty() {
        error.to_string()
    } else {
        text
    }
}

fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

fn status_code(status: u16) -> ModelErrorKind {
    match status {
        400 | 422 => ModelErrorKind::BadRequest,
        401 => ModelErrorKind::Unauthorized,
        403 => ModelErrorKind::Forbidden,
        404 => ModelErrorKind::NotFound,
        408 => ModelErrorKind::Timeout,
        429 => ModelErrorKind::RateLimited,
        500..=599 => ModelErrorKind::Unavailable,
        _ => ModelErrorKind::HttpError,
    }
}

/// The wait the provider asked for, if any.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let header = |name: &str| response.headers().get(name)?.to_str().ok();
    clarion_engine::retry_after(header("retry-after-ms"), header("retry-after"))
}

/// A reqwest error with its causes, which carry the useful part ("connection refused").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_retry_can_fix_is_retried() {
        for status in [408, 409, 429, 500, 502, 503, 504] {
            assert!(retryable(status), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(!retryable(status), "{status}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut config = ProviderConfig::new("http://x");
        config.backoff_base = Duration::from_millis(100);
        config.backoff_cap = Duration::from_secs(1);
        let Ok(client) = ProviderClient::new(config, "chat/completions") else {
            panic!("client")
        };
        for attempt in 0..10 {
            let delay = client.backoff(attempt);
            assert!(
                delay <= Duration::from_millis((100 << attempt).min(1000)),
                "{attempt}: {delay:?}"
            );
        }
    }
}
