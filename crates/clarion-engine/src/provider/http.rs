//! Sending a request to a provider: authentication, timeouts, retries, error bodies.
//!
//! What is retried is what a retry can fix: 408, 409, 429 and 5xx answers, connection
//! failures and timeouts — with exponential backoff and full jitter, honouring
//! `Retry-After` (and OpenAI's `retry-after-ms`) up to a cap. What is not retried is
//! surfaced at once with the provider's own message, redacted: 400, 401, 403, 404, 422…
//! Every outcome is a [`ModelError`] with a stable code.

use std::time::Duration;

use serde_json::Value;

use super::ModelError;
use super::config::{AuthStyle, ProviderConfig};

/// An HTTP client for one provider.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    config: ProviderConfig,
    client: reqwest::Client,
}

impl ProviderClient {
    /// A client for `config`.
    pub fn new(config: ProviderConfig) -> Result<Self, ModelError> {
        // rustls needs a process-wide crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| {
                ModelError::new(
                    "configuration",
                    format!("cannot build the HTTP client: {e}"),
                )
            })?;
        Ok(Self { config, client })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// POSTs `body` to `endpoint` and returns the successful response, retrying what can
    /// be retried.
    pub async fn post(
        &self,
        endpoint: &str,
        body: &Value,
    ) -> Result<reqwest::Response, ModelError> {
        let mut url = reqwest::Url::parse(&self.config.url(endpoint)).map_err(|e| {
            ModelError::new(
                "configuration",
                format!(
                    "the provider URL `{}` is not valid: {e}",
                    self.config.base_url
                ),
            )
        })?;
        if !self.config.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.config.query);
        }
        let mut attempt = 0;
        loop {
            let mut request = self.client.post(url.clone()).json(body);
            for (name, value) in &self.config.headers {
                request = request.header(name, value);
            }
            if let Some(key) = &self.config.api_key {
                request = match self.config.auth {
                    AuthStyle::Bearer => request.bearer_auth(key.expose()),
                    AuthStyle::ApiKeyHeader => request.header("api-key", key.expose()),
                };
            }
            let failure = match request.send().await {
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
                Err(error) => Failure {
                    code: if error.is_timeout() {
                        "timeout"
                    } else {
                        "unavailable"
                    },
                    message: format!(
                        "cannot reach {}: {}",
                        self.host(),
                        self.config.redact(&describe(&error))
                    ),
                    wait: None,
                },
            };
            if attempt >= self.config.max_retries {
                let tries = attempt + 1;
                return Err(ModelError::new(
                    failure.code,
                    format!("{} (gave up after {tries} attempts)", failure.message),
                ));
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
            tracing::warn!(
                attempt = attempt + 1,
                delay_ms = delay.as_millis() as u64,
                "provider request failed, retrying: {}",
                failure.message
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Exponential backoff with full jitter: a random delay in `[0, min(cap, base·2^n)]`.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.backoff_base.as_millis() as u64;
        let ceiling = base
            .saturating_mul(1_u64 << attempt.min(20))
            .min(self.config.backoff_cap.as_millis() as u64);
        Duration::from_millis(fastrand::u64(0..=ceiling))
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
            ModelError::new(
                "invalid_response",
                format!("the response body could not be read: {e}"),
            )
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ModelError::new(
                "invalid_response",
                format!(
                    "the response is not valid JSON ({e}): {}",
                    super::chat_completions::excerpt(&self.redact(&text))
                ),
            )
        })
    }

    /// Redacts secrets from `text`.
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        self.config.redact(text)
    }
}

struct Failure {
    code: &'static str,
    message: String,
    wait: Option<Duration>,
}

fn retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 429) || status >= 500
}

fn status_code(status: u16) -> &'static str {
    match status {
        400 | 422 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        408 => "timeout",
        429 => "rate_limited",
        500..=599 => "unavailable",
        _ => "http_error",
    }
}

/// `retry-after-ms` (OpenAI) or `Retry-After` in seconds.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)?
            .to_str()
            .ok()
            .map(str::trim)
            .map(ToOwned::to_owned)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    header("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
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
        let Ok(client) = ProviderClient::new(config) else {
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
