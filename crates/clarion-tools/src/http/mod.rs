//! HTTP tools: `[tools.NAME.http]`.
//!
//! One call is: build the request (`request`), send it through a client whose resolver
//! and redirect policy enforce the [`NetworkPolicy`] (`policy`, `resolve`), read the body
//! within its size limit and pick the result (`response`), retrying idempotent requests
//! that failed in a way a retry can fix. The tool's timeout bounds all of it, retries
//! included, and every error message is redacted of the tool's secrets before it leaves.
//!
//! Error kinds: `refused` (the network policy, or a non-HTTP URL), `timeout`, `unavailable`
//! (cannot connect, a 5xx or 429 response, an unset secret), `failed` (any other non-2xx
//! response, too many redirects), `invalid_output` (too large, not JSON, nothing at the
//! result pointer), `invalid_arguments` (the URL or a header cannot be built from the
//! arguments).

pub mod encode;
pub mod policy;
mod request;
mod resolve;
mod response;

use clarion_engine::ToolErrorKind;
use clarion_engine::{Backoff, retry_after};
use std::error::Error as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clarion_engine::ToolError;
use clarion_flow::Flow;
use clarion_flow::model::HttpSpec;
use clarion_flow::model::format_duration;
use reqwest::{Client, StatusCode, redirect};
use serde_json::{Map, Value};
use tokio::time::Instant;

pub use policy::{NetworkPolicy, Refused};

use clarion_engine::Redactor;
use request::Plan;
use resolve::GuardedResolver;
use response::{BodyError, read_limited, snippet};

/// `max_response_bytes` when the flow does not set it.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// Waits between retries: at most 100 ms for the first, doubling, never above 2 s.
const BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(2),
};

/// The deadline of a call whose timeout is too long for the clock (about 30 years).
const LONGEST_WAIT: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// Runs HTTP tools. Holds two connection pools: one for tools that may reach private
/// addresses, one for those that may not (the policy lives in each client's resolver and
/// redirect policy).
pub struct HttpExecutor {
    policy: Arc<NetworkPolicy>,
    guarded: OnceLock<Result<Client, String>>,
    open: OnceLock<Result<Client, String>>,
}

impl std::fmt::Debug for HttpExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpExecutor")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Default for HttpExecutor {
    fn default() -> Self {
        Self::new(NetworkPolicy::new())
    }
}

/// How one attempt failed, and whether another may succeed.
struct Failure {
    error: ToolError,
    retry: bool,
    after: Option<Duration>,
}

impl Failure {
    fn fatal(error: ToolError) -> Self {
        Self {
            error,
            retry: false,
            after: None,
        }
    }

    fn transient(error: ToolError) -> Self {
        Self {
            error,
            retry: true,
            after: None,
        }
    }
}

impl HttpExecutor {
    /// An executor enforcing `policy`.
    #[must_use]
    pub fn new(policy: NetworkPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
            guarded: OnceLock::new(),
            open: OnceLock::new(),
        }
    }

    fn client(&self, allow_private: bool) -> Result<&Client, ToolError> {
        let cell = if allow_private {
            &self.open
        } else {
            &self.guarded
        };
        cell.get_or_init(|| build_client(&self.policy, allow_private))
            .as_ref()
            .map_err(|e| ToolError::new(ToolErrorKind::Unavailable, e.clone()))
    }

    /// Runs one call of a tool with this `[http]` table. `idempotency_key` goes out as the
    /// `Idempotency-Key` header unless the flow sets that header itself.
    pub async fn call(
        &self,
        flow: &Flow,
        spec: &HttpSpec,
        arguments: &Map<String, Value>,
        idempotency_key: &str,
    ) -> Result<Value, ToolError> {
        let timeout = flow.limits.tool_timeout_or(spec.timeout.as_deref());
        let env = request::environment(spec);
        let redactor = Redactor::masking(env.values().cloned());
        // Durations come from the flow and headers; none may overflow the clock.
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + LONGEST_WAIT);
        let outcome = tokio::time::timeout_at(deadline, async {
            let mut plan = request::plan(spec, arguments, &env)?;
            if let Ok(key) = reqwest::header::HeaderValue::from_str(idempotency_key) {
                plan.headers
                    .entry(reqwest::header::HeaderName::from_static("idempotency-key"))
                    .or_insert(key);
            }
            self.policy
                .check_url(&plan.url, spec.allow_private_network)
                .map_err(|refused| ToolError::new(ToolErrorKind::Refused, refused.to_string()))?;
            let client = self.client(spec.allow_private_network)?;
            self.attempts(client, spec, &plan, deadline).await
        })
        .await;
        match outcome {
            Ok(Ok(mut value)) => {
                redactor.value(&mut value);
                Ok(value)
            }
            Ok(Err(error)) => Err(redactor.error(error)),
            Err(_) => Err(ToolError::new(
                ToolErrorKind::Timeout,
                format!("no complete response within {}", format_duration(timeout)),
            )),
        }
    }

    /// The first attempt and the retries, until one succeeds, one fails for good, or the
    /// next wait would pass the deadline.
    async fn attempts(
        &self,
        client: &Client,
        spec: &HttpSpec,
        plan: &Plan,
        deadline: Instant,
    ) -> Result<Value, ToolError> {
        let retries = if request::idempotent(spec.method) {
            spec.retries.unwrap_or(0)
        } else {
            0
        };
        let limit = spec
            .max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
        let mut attempt = 0;
        loop {
            let failure = match send(client, plan, limit, spec.result_pointer.as_deref()).await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if !failure.retry || attempt >= retries {
                return Err(failure.error);
            }
            // The server's `Retry-After` wins; one that would pass the deadline ends the call.
            let wait = failure.after.unwrap_or_else(|| BACKOFF.delay(attempt));
            if Instant::now()
                .checked_add(wait)
                .is_none_or(|end| end >= deadline)
            {
                return Err(failure.error);
            }
            tracing::debug!(attempt, wait_ms = wait.as_millis(), "retrying an HTTP tool");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Sends `plan` once and reads the result.
async fn send(
    client: &Client,
    plan: &Plan,
    limit: u64,
    pointer: Option<&str>,
) -> Result<Value, Failure> {
    let mut request = client
        .request(plan.method.clone(), plan.url.clone())
        .headers(plan.headers.clone());
    if let Some(body) = &plan.body {
        request = request.body(body.clone());
    }
    let mut response = request.send().await.map_err(|e| transport(plan, &e))?;
    let status = response.status();
    let body = match read_limited(&mut response, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(limit)) => {
            return Err(Failure::fatal(ToolError::new(
                ToolErrorKind::InvalidOutput,
                format!(
                    "{}: the response is larger than {limit} bytes (the tool's `max_response_bytes`)",
                    plan.describe()
                ),
            )));
        }
        Err(BodyError::Read(e)) => return Err(transport(plan, &e)),
    };
    if !status.is_success() {
        return Err(status_failure(plan, status, &response, &body));
    }
    response::result(&body, pointer).map_err(Failure::fatal)
}

/// A non-2xx response: 5xx, 408 and 429 may be retried, others may not.
fn status_failure(
    plan: &Plan,
    status: StatusCode,
    response: &reqwest::Response,
    body: &[u8],
) -> Failure {
    let detail = snippet(body, 300);
    let message = if detail.is_empty() {
        format!("{} returned HTTP {status}", plan.describe())
    } else {
        format!("{} returned HTTP {status}: {detail}", plan.describe())
    };
    let transient = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    let kind = if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        ToolErrorKind::Unavailable
    } else {
        ToolErrorKind::Failed
    };
    let header = |name: &str| response.headers().get(name)?.to_str().ok();
    let after = retry_after(header("retry-after-ms"), header("retry-after"));
    Failure {
        error: ToolError::new(kind, message),
        retry: transient,
        after,
    }
}

/// A failure below HTTP: refused by the policy, cannot connect, connection lost.
fn transport(plan: &Plan, error: &reqwest::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return Failure::fatal(ToolError::new(ToolErrorKind::Refused, refused.to_string()));
        }
        if cause.downcast_ref::<TooManyRedirects>().is_some() {
            return Failure::fatal(ToolError::new(
                ToolErrorKind::Failed,
                format!("{}: more than {MAX_REDIRECTS} redirects", plan.describe()),
            ));
        }
        source = cause.source();
    }
    let detail = innermost(error);
    let what = if error.is_connect() {
        format!("cannot connect ({detail})")
    } else if error.is_timeout() {
        format!("timed out ({detail})")
    } else {
        format!("the connection failed ({detail})")
    };
    Failure::transient(ToolError::new(
        ToolErrorKind::Unavailable,
        format!("{}: {what}", plan.describe()),
    ))
}

/// The most specific cause of an error ("Connection refused (os error 111)").
fn innermost(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(cause) = source {
        text = cause.to_string();
        source = cause.source();
    }
    text
}

#[derive(Debug)]
struct TooManyRedirects;

impl std::fmt::Display for TooManyRedirects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {MAX_REDIRECTS} redirects")
    }
}

impl std::error::Error for TooManyRedirects {}

/// A client under `policy` (its resolver and redirect policy), for MCP servers over HTTP.
pub(crate) fn guarded_client(
    policy: &Arc<NetworkPolicy>,
    allow_private: bool,
) -> Result<Client, String> {
    build_client(policy, allow_private)
}

fn build_client(policy: &Arc<NetworkPolicy>, allow_private: bool) -> Result<Client, String> {
    install_crypto_provider();
    let redirect_policy = Arc::clone(policy);
    Client::builder()
        // A proxy would resolve names itself, past the policy.
        .no_proxy()
        .dns_resolver(GuardedResolver {
            policy: Arc::clone(policy),
            allow_private,
        })
        .redirect(redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(TooManyRedirects);
            }
            match redirect_policy.check_url(attempt.url(), allow_private) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        }))
        // URLs may carry keys; never echo them to the next host.
        .referer(false)
        // Retries are this module's decision (idempotent methods only).
        .retry(reqwest::retry::never())
        .user_agent(concat!("clarion/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot create the HTTP client: {e}"))
}

/// reqwest is built without a default TLS crypto provider (no OpenSSL, no C toolchain for
/// aws-lc): install `ring` once for the process, unless something else already installed one.
fn install_crypto_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: one provider is all that is needed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}
