//! Where a provider lives and how to talk to it: base URL, credentials, timeouts, retries.
//!
//! One [`ProviderConfig`] covers every server that speaks the OpenAI protocols: OpenAI
//! itself (bearer key), Azure OpenAI (deployment path, `api-version` query, `api-key`
//! header), and local servers such as Ollama, vLLM and llama.cpp (no key). Secrets are held
//! in [`Secret`], whose `Debug` never shows the value, and are redacted from every error.

use std::time::Duration;

use clarion_engine::Redactor;

/// A credential. Its `Debug` output is `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How the key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY` (OpenAI, OpenRouter, vLLM, Groq…).
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKeyHeader,
}

/// The role injected context takes in the history sent to the model.
///
/// OpenAI accepts `system` messages anywhere, and Clarion's injected context is guidance
/// from the application, not words of the user, so `system` is the default. Some chat
/// templates of local models accept a system message only at the start; for those,
/// `User` sends context as a user message prefixed with `[context]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextRole {
    /// A `system` message (Chat Completions) or a `system` input item (Responses).
    System,
    /// A `user` message starting with `[context] `.
    User,
}

/// Everything needed to reach one provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`; endpoint paths
    /// (`/chat/completions`, `/responses`) are appended.
    pub base_url: String,
    /// The key, if the server needs one.
    pub api_key: Option<Secret>,
    /// How the key is sent.
    pub auth: AuthStyle,
    /// Query parameters for every request (Azure's `api-version`).
    pub query: Vec<(String, String)>,
    /// Extra headers for every request.
    pub headers: Vec<(String, String)>,
    /// Overrides the flow's `assistant.model` (e.g. `clarion chat --model`).
    pub model: Option<String>,
    /// Stream responses (server-sent events).
    pub stream: bool,
    /// The role of injected context.
    pub context_role: ContextRole,
    /// Send `max_tokens` instead of `max_completion_tokens` (older servers).
    pub legacy_max_tokens: bool,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for a whole non-streamed request, the response body included.
    pub request_timeout: Duration,
    /// Streams: the longest silence allowed — before the response starts and between two
    /// chunks. A slow but healthy stream keeps sending; a hung one stops.
    pub idle_timeout: Duration,
    /// Streams: the longest a whole stream may take, far above `idle_timeout`.
    pub stream_timeout: Duration,
    /// Retries after 429, 5xx, timeouts and connection failures.
    pub max_retries: u32,
    /// First backoff delay; doubled on each retry, with jitter.
    pub backoff_base: Duration,
    /// Longest backoff delay.
    pub backoff_cap: Duration,
    /// Longest `Retry-After` honoured; a server asking for more is given up on.
    pub retry_after_cap: Duration,
}

/// OpenAI's public endpoint.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

impl ProviderConfig {
    /// A provider at `base_url`, with defaults for everything else. A server on this
    /// machine (a loopback host) gets the [local-model timeouts](Self::local_timeouts).
    #[must_use]
    pub fn new(base_url: impl Into<String>) -> Self {
        let base_url = base_url.into();
        let local = is_loopback(&base_url);
        let config = Self {
            base_url,
            api_key: None,
            auth: AuthStyle::Bearer,
            query: Vec::new(),
            headers: Vec::new(),
            model: None,
            stream: false,
            context_role: ContextRole::System,
            legacy_max_tokens: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            stream_timeout: Duration::from_secs(600),
            max_retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(8),
            retry_after_cap: Duration::from_secs(60),
        };
        if local {
            config.local_timeouts()
        } else {
            config
        }
    }

    /// Timeouts for a model running on this machine, sized for two busy CPU cores: a
    /// small model there reads a long prompt for a minute or more before its first token
    /// and writes a few tokens a second. Five minutes of silence, half an hour in all.
    #[must_use]
    pub fn local_timeouts(mut self) -> Self {
        self.request_timeout = Duration::from_secs(1800);
        self.idle_timeout = Duration::from_secs(300);
        self.stream_timeout = Duration::from_secs(1800);
        self
    }

    /// OpenAI or any compatible server, from `OPENAI_BASE_URL` (default OpenAI's) and
    /// `OPENAI_API_KEY`.
    #[must_use]
    pub fn from_env() -> Self {
        let base_url = std::env::var("OPENAI_BASE_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| OPENAI_BASE_URL.to_owned());
        let mut config = Self::new(base_url);
        config.api_key = std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        config
    }

    /// Azure OpenAI: `https://RESOURCE.openai.azure.com`, a deployment, an API version.
    #[must_use]
    pub fn azure(endpoint: &str, deployment: &str, api_version: &str, api_key: Secret) -> Self {
        let base = format!(
            "{}/openai/deployments/{deployment}",
            endpoint.trim_end_matches('/')
        );
        let mut config = Self::new(base);
        config.api_key = Some(api_key);
        config.auth = AuthStyle::ApiKeyHeader;
        config
            .query
            .push(("api-version".to_owned(), api_version.to_owned()));
        config
    }

    /// The URL of an endpoint such as `chat/completions`.
    #[must_use]
    pub fn url(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.base_url.trim_end_matches('/'))
    }

    /// Replaces the API key in `text` with `***`, and anything shaped like an OpenAI key.
    #[must_use]
    pub fn redact(&self, text: &str) -> String {
        let mut redactor = Redactor::new().with_key_shapes();
        if let Some(key) = &self.api_key {
            redactor.add_secret(key.expose());
        }
        redactor.apply(text).into_owned()
    }
}

/// Whether `url`'s host is this machine (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let mut config = ProviderConfig::new("http://x");
        config.api_key = Some(Secret::new("hunter2-very-secret"));
        assert_eq!(format!("{:?}", config.api_key), "Some(Secret(***))");
        assert_eq!(
            config.redact("key hunter2-very-secret rejected"),
            "key *** rejected"
        );
        assert_eq!(
            config.redact("Incorrect API key provided: sk-proj-abcd1234********wxyz."),
            "Incorrect API key provided: sk-***."
        );
        assert_eq!(config.redact("task-sk-12"), "task-sk-12");
    }

    #[test]
    fn a_model_on_this_machine_gets_patient_timeouts() {
        for url in [
            "http://127.0.0.1:8089/v1",
            "http://localhost/v1",
            "http://[::1]:80/v1",
            "http://u@127.0.0.2/v1",
        ] {
            assert_eq!(
                ProviderConfig::new(url).idle_timeout,
                Duration::from_secs(300),
                "{url}"
            );
        }
        for url in [
            "https://api.openai.com/v1",
            "http://10.0.0.1/v1",
            "http://localhost.example/v1",
        ] {
            assert_eq!(
                ProviderConfig::new(url).idle_timeout,
                Duration::from_secs(60),
                "{url}"
            );
        }
    }

    #[test]
    fn azure_uses_the_deployment_path_and_api_key_header() {
        let config = ProviderConfig::azure(
            "https://r.openai.azure.com/",
            "gpt4",
            "2024-10-21",
            Secret::new("k"),
        );
        assert_eq!(
            config.url("chat/completions"),
            "https://r.openai.azure.com/openai/deployments/gpt4/chat/completions"
        );
        assert_eq!(config.auth, AuthStyle::ApiKeyHeader);
        assert_eq!(
            config.query,
            [("api-version".to_owned(), "2024-10-21".to_owned())]
        );
    }
}
