//! From a tool's `[http]` table and a call's arguments to the request to send.
//!
//! Everything that depends on the call is decided here, once, before the first attempt:
//! the URL (its template rendered with every value percent-encoded), the headers (their
//! templates rendered; any that read `env` marked sensitive), and where the remaining
//! arguments go. Arguments the URL template already uses are not repeated in the query
//! string or the JSON body: `…/customers/{{ args.email }}` sends the email once.

use clarion_engine::ToolErrorKind;
use std::collections::{BTreeMap, HashSet};

use clarion_engine::ToolError;
use clarion_flow::model::{HttpBody, HttpMethod, HttpSpec};
use clarion_flow::template::{self, describe, to_value};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Map, Value};

use super::encode::url_environment;

/// A request ready to send (and to send again, for a retry).
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
}

impl Plan {
    /// `GET https://host/path`, without the query (which may hold arguments or keys), for
    /// error messages.
    pub(super) fn describe(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        format!("{} {url}", self.method)
    }
}

/// Whether `method` may be retried: sending it twice has the effect of sending it once.
pub(crate) fn idempotent(method: HttpMethod) -> bool {
    matches!(
        method,
        HttpMethod::Get | HttpMethod::Put | HttpMethod::Delete
    )
}

fn method(method: HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
    }
}

/// Where arguments go when `body` is not set.
pub(crate) fn body_mode(spec: &HttpSpec) -> HttpBody {
    spec.body.unwrap_or(match spec.method {
        HttpMethod::Get | HttpMethod::Delete => HttpBody::Query,
        HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch => HttpBody::Json,
    })
}

fn invalid(message: String) -> ToolError {
    ToolError::new(ToolErrorKind::InvalidArguments, message)
}

/// The allow-listed environment variables that are set.
pub(crate) fn environment(spec: &HttpSpec) -> BTreeMap<String, String> {
    spec.env
        .iter()
        .filter_map(|name| Some((name.clone(), std::env::var(name).ok()?)))
        .collect()
}

/// Builds the request for one call.
pub(crate) fn plan(
    spec: &HttpSpec,
    args: &Map<String, Value>,
    env: &BTreeMap<String, String>,
) -> Result<Plan, ToolError> {
    let url_names = template::template_names(&spec.url)
        .map_err(|e| invalid(format!("the URL template is invalid: {}", describe(&e))))?;
    let mut env_used: HashSet<String> = env_names(&url_names);
    let context = minijinja::context! { args => to_value(args), env => to_value(env) };

    let mut headers = headers(spec, &context, &mut env_used)?;
    if let Some(missing) = env_used.iter().find(|name| !env.contains_key(*name)) {
        return Err(ToolError::new(
            ToolErrorKind::Unavailable,
            format!("environment variable `{missing}` is not set"),
        ));
    }

    let rendered = url_environment()
        .render_str(&spec.url, &context)
        .map_err(|e| invalid(format!("the URL could not be built: {}", describe(&e))))?;
    let mut url = Url::parse(rendered.trim())
        .map_err(|e| invalid(format!("`{rendered}` is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ToolError::new(
            ToolErrorKind::Refused,
            format!(
                "only http and https URLs are allowed, not `{}:`",
                url.scheme()
            ),
        ));
    }

    // Arguments the URL already carries are not sent twice.
    let in_url: HashSet<&str> = url_names
        .iter()
        .filter_map(|name| name.strip_prefix("args."))
        .map(|rest| rest.split('.').next().unwrap_or(rest))
        .collect();
    let rest = args
        .iter()
        .filter(|(name, value)| !in_url.contains(name.as_str()) && !value.is_null());
    let mut body = None;
    match body_mode(spec) {
        HttpBody::Query => {
            let pairs: Vec<(&String, &Value)> = rest.collect();
            if !pairs.is_empty() {
                let mut query = url.query_pairs_mut();
                for (name, value) in pairs {
                    match value {
                        Value::Array(items) => {
                            for item in items {
                                query.append_pair(name, &query_text(item));
                            }
                        }
                        other => {
                            query.append_pair(name, &query_text(other));
                        }
                    }
                }
            }
        }
        HttpBody::Json => {
            let object: Map<String, Value> = rest
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            let bytes = serde_json::to_vec(&Value::Object(object))
                .map_err(|e| invalid(format!("the arguments cannot be sent as JSON ({e})")))?;
            headers
                .entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            body = Some(bytes);
        }
        HttpBody::None => {}
    }
    headers
        .entry(ACCEPT)
        .or_insert(HeaderValue::from_static("application/json"));
    Ok(Plan {
        method: method(spec.method),
        url,
        headers,
        body,
    })
}

/// The rendered headers; adds the environment variables they read to `env_used`.
fn headers(
    spec: &HttpSpec,
    context: &minijinja::Value,
    env_used: &mut HashSet<String>,
) -> Result<HeaderMap, ToolError> {
    let mut headers = HeaderMap::new();
    for (name, source) in &spec.headers {
        let names = template::template_names(source).map_err(|e| {
            invalid(format!(
                "the template of header `{name}` is invalid: {}",
                describe(&e)
            ))
        })?;
        let reads_env = env_names(&names);
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("`{name}` is not a valid HTTP header name")))?;
        let text = template::environment()
            .render_str(source, context)
            .map_err(|e| {
                invalid(format!(
                    "header `{name}` failed to render: {}",
                    describe(&e)
                ))
            })?;
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            invalid(format!(
                "header `{name}` has a value HTTP does not allow (line breaks or control characters)"
            ))
        })?;
        // Keeps the value out of `Debug` output.
        value.set_sensitive(!reads_env.is_empty());
        env_used.extend(reads_env);
        headers.insert(header, value);
    }
    Ok(headers)
}

fn env_names(names: &HashSet<String>) -> HashSet<String> {
    names
        .iter()
        .filter_map(|name| name.strip_prefix("env."))
        .map(|rest| rest.split('.').next().unwrap_or(rest).to_owned())
        .collect()
}

/// A query value: strings as themselves, objects as JSON, everything else as printed.
fn query_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(toml_table: &str) -> HttpSpec {
        toml::from_str(toml_table).unwrap_or_else(|e| panic!("{e}"))
    }

    fn args(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn get_arguments_go_to_the_query_except_those_in_the_path() {
        let spec = spec(
            r#"url = "https://api.example/v2/hotels/{{ args.destination }}?sort=price"
               headers = { Authorization = "Bearer {{ env.KEY }}" }
               env = ["KEY"]"#,
        );
        let env = BTreeMap::from([("KEY".to_owned(), "k3y".to_owned())]);
        let plan = plan(
            &spec,
            &args(json!({"destination": "JFK", "guests": 2, "tags": ["a b", "c"], "note": null})),
            &env,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.method, Method::GET);
        assert_eq!(
            plan.url.as_str(),
            "https://api.example/v2/hotels/JFK?sort=price&guests=2&tags=a+b&tags=c"
        );
        assert!(plan.body.is_none());
        let auth = &plan.headers["authorization"];
        assert_eq!(auth, "Bearer k3y");
        assert!(auth.is_sensitive());
        assert_eq!(plan.headers["accept"], "application/json");
        assert_eq!(plan.describe(), "GET https://api.example/v2/hotels/JFK");
    }

    #[test]
    fn post_arguments_are_a_json_body() {
        let spec = spec(
            r#"method = "POST"
               url = "https://api.example/tickets/{{ args.id }}/comments""#,
        );
        let plan = plan(
            &spec,
            &args(json!({"id": "T/1", "text": "hello"})),
            &BTreeMap::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            plan.url.as_str(),
            "https://api.example/tickets/T%2F1/comments"
        );
        assert_eq!(
            plan.body.as_deref(),
            Some(br#"{"text":"hello"}"#.as_slice())
        );
        assert_eq!(plan.headers["content-type"], "application/json");
    }

    #[test]
    fn bad_requests_are_refused_before_sending() {
        let cases = [
            (
                r#"url = "file:///etc/passwd""#,
                json!({}),
                ToolErrorKind::Refused,
            ),
            (
                r#"url = "https://x.example/{{ args.p }}""#,
                json!({"p": ".."}),
                ToolErrorKind::InvalidArguments,
            ),
            (
                r#"url = "https://x.example/"
                   headers = { X-Note = "{{ args.note }}" }
                   body = "none""#,
                json!({"note": "a\r\nInjected: 1"}),
                ToolErrorKind::InvalidArguments,
            ),
            (
                r#"url = "https://x.example/"
                   headers = { Authorization = "{{ env.UNSET_TOKEN }}" }
                   env = ["UNSET_TOKEN"]"#,
                json!({}),
                ToolErrorKind::Unavailable,
            ),
            (
                r#"url = "not a url""#,
                json!({}),
                ToolErrorKind::InvalidArguments,
            ),
        ];
        for (table, arguments, kind) in cases {
            let error = plan(&spec(table), &args(arguments), &BTreeMap::new())
                .err()
                .unwrap_or_else(|| panic!("{table} was accepted"));
            assert_eq!(error.kind, kind, "{table}: {error}");
        }
    }

    #[test]
    fn only_get_put_and_delete_are_retried() {
        assert!(idempotent(HttpMethod::Get));
        assert!(idempotent(HttpMethod::Put));
        assert!(idempotent(HttpMethod::Delete));
        assert!(!idempotent(HttpMethod::Post));
        assert!(!idempotent(HttpMethod::Patch));
    }
}
