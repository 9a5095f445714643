//! Choosing the model server for a flow: command-line overrides, then the flow's
//! `[provider]` table, then the environment (`OPENAI_BASE_URL`, `OPENAI_API_KEY`).
//!
//! The flow is explicit and the environment is a default: a flow that names a local server
//! keeps using it even where `OPENAI_BASE_URL` points elsewhere, and a flag beats both. The
//! key is always read from the environment, never from a file.

use std::sync::Arc;

use crate::chat_completions::ChatCompletions;
use crate::config::{ContextRole, OPENAI_BASE_URL, ProviderConfig, Secret};
use crate::responses::Responses;
use clarion_engine::{Model, ModelError};
use clarion_flow::Flow;
use clarion_flow::model::{ContextRoleSpec, ProviderApi, parse_duration};

/// Choices made on the command line, each overriding the flow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderOverrides {
    /// `--base-url`.
    pub base_url: Option<String>,
    /// `--api`.
    pub api: Option<ProviderApi>,
    /// `--model`.
    pub model: Option<String>,
    /// `--no-stream` (Some(false)).
    pub stream: Option<bool>,
}

/// The protocol and configuration for `flow` with `overrides`, reading the environment
/// through `env` (so tests need not touch the process environment).
#[must_use]
pub fn resolve(
    flow: &Flow,
    overrides: &ProviderOverrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> (ProviderApi, ProviderConfig) {
    let spec = flow.provider.clone().unwrap_or_default();
    let non_empty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let key_env = spec
        .api_key_env
        .clone()
        .unwrap_or_else(|| "OPENAI_API_KEY".to_owned());
    let api_key = non_empty(&key_env).map(Secret::new);
    let base_url = overrides
        .base_url
        .clone()
        .or_else(|| spec.base_url.clone())
        .or_else(|| non_empty("OPENAI_BASE_URL"))
        .unwrap_or_else(|| OPENAI_BASE_URL.to_owned());
    let mut config = match (&spec.azure, api_key.clone()) {
        (Some(azure), Some(key)) if overrides.base_url.is_none() => {
            ProviderConfig::azure(&base_url, &azure.deployment, &azure.api_version, key)
        }
        _ => {
            let mut config = ProviderConfig::new(base_url);
            config.api_key = api_key;
            config
        }
    };
    config.model.clone_from(&overrides.model);
    config.stream = overrides.stream.or(spec.stream).unwrap_or(true);
    config.context_role = match spec.context_role {
        Some(ContextRoleSpec::User) => ContextRole::User,
        _ => ContextRole::System,
    };
    config.legacy_max_tokens = spec.legacy_max_tokens.unwrap_or(false);
    if let Some(timeout) = spec.timeout.as_deref().and_then(parse_duration) {
        config.request_timeout = timeout;
    }
    if let Some(timeout) = spec.idle_timeout.as_deref().and_then(parse_duration) {
        config.idle_timeout = timeout;
    }
    if let Some(timeout) = spec.stream_timeout.as_deref().and_then(parse_duration) {
        config.stream_timeout = timeout;
    }
    if let Some(retries) = spec.max_retries {
        config.max_retries = retries;
    }
    let api = overrides
        .api
        .or(spec.api)
        .unwrap_or(ProviderApi::ChatCompletions);
    (api, config)
}

/// The model for `flow`, from the process environment and `overrides`.
pub fn model_for(flow: &Flow, overrides: &ProviderOverrides) -> Result<Arc<dyn Model>, ModelError> {
    let (api, config) = resolve(flow, overrides, &|name| std::env::var(name).ok());
    Ok(match api {
        ProviderApi::ChatCompletions => Arc::new(ChatCompletions::new(config)?),
        ProviderApi::Responses => Arc::new(Responses::new(config)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthStyle;
    use clarion_flow::load_str;

    fn flow(provider: &str) -> Flow {
        let text = format!(
            "[flow]\nname = \"f\"\n[assistant]\nmodel = \"m\"\ninstructions = \"i\"\n{provider}"
        );
        load_str("f.toml", &text, None)
            .into_result()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn flags_beat_the_flow_which_beats_the_environment() {
        let local = flow("[provider]\nbase_url = \"http://127.0.0.1:8089/v1\"\nstream = false\n");
        let environment = env(&[
            ("OPENAI_BASE_URL", "https://elsewhere/v1"),
            ("OPENAI_API_KEY", "k"),
        ]);
        let (api, config) = resolve(&local, &ProviderOverrides::default(), &environment);
        assert_eq!(api, ProviderApi::ChatCompletions);
        assert_eq!(config.base_url, "http://127.0.0.1:8089/v1");
        assert!(!config.stream);
        let flags = ProviderOverrides {
            base_url: Some("http://flag/v1".into()),
            stream: Some(true),
            ..Default::default()
        };
        let (_, config) = resolve(&local, &flags, &environment);
        assert_eq!(config.base_url, "http://flag/v1");
        assert!(config.stream);
        let (_, config) = resolve(&flow(""), &ProviderOverrides::default(), &environment);
        assert_eq!(config.base_url, "https://elsewhere/v1");
        assert_eq!(config.api_key.as_ref().map(Secret::expose), Some("k"));
        let (_, config) = resolve(&flow(""), &ProviderOverrides::default(), &env(&[]));
        assert_eq!(config.base_url, OPENAI_BASE_URL);
        assert!(config.api_key.is_none());
    }

    #[test]
    fn the_key_comes_from_the_named_variable_and_azure_from_its_table() {
        let azure = flow(
            "[provider]\nbase_url = \"https://r.openai.azure.com\"\napi_key_env = \"AZURE_KEY\"\n[provider.azure]\ndeployment = \"d\"\napi_version = \"2024-10-21\"\n",
        );
        let (_, config) = resolve(
            &azure,
            &ProviderOverrides::default(),
            &env(&[("AZURE_KEY", "az"), ("OPENAI_API_KEY", "nope")]),
        );
        assert_eq!(config.auth, AuthStyle::ApiKeyHeader);
        assert_eq!(config.api_key.as_ref().map(Secret::expose), Some("az"));
        assert_eq!(
            config.url("chat/completions"),
            "https://r.openai.azure.com/openai/deployments/d/chat/completions"
        );
        let responses = flow("[provider]\napi = \"responses\"\n");
        assert_eq!(
            resolve(&responses, &ProviderOverrides::default(), &env(&[])).0,
            ProviderApi::Responses
        );
    }
}
