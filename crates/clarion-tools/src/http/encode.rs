//! Putting argument values into a URL without letting them change its shape.
//!
//! A URL template is written by the flow's author, but the values spliced into it come from
//! the model, which copies them from the user. A value such as `a/../../admin?x=1#` must stay
//! one path segment (or one query value), not rewrite the path, add a query or cut it off.
//! So every `{{ … }}` in a URL template is percent-encoded as a URI *component*: everything
//! but the unreserved characters (`A–Z a–z 0–9 - . _ ~`) is escaped, which is correct in a
//! path segment and in a query value alike. A value that is exactly `.` or `..` is refused:
//! URL parsers treat it (even escaped as `%2E`) as "this/parent directory" and would move
//! the request elsewhere.

use std::borrow::Cow;
use std::sync::OnceLock;

use minijinja::{Environment, Error, ErrorKind, Value};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` percent-encoded as one URI component.
#[must_use]
pub fn component(text: &str) -> Cow<'_, str> {
    utf8_percent_encode(text, COMPONENT).into()
}

/// The text a template value prints as: strings as themselves, unset values as nothing.
fn plain(value: &Value) -> String {
    if value.is_undefined() || value.is_none() {
        String::new()
    } else if let Some(text) = value.as_str() {
        text.to_owned()
    } else {
        value.to_string()
    }
}

/// The environment for URL templates: the engine's, with every value component-encoded.
pub fn url_environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = clarion_flow::template::environment().clone();
        env.set_formatter(|out, _state, value| {
            let text = plain(value);
            if text == "." || text == ".." {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("`{text}` cannot be used as a value in a URL"),
                ));
            }
            out.write_str(&component(&text))
                .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
        });
        env
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn render(template: &str, value: &serde_json::Value) -> Result<String, Error> {
        url_environment().render_str(
            template,
            context! { args => clarion_flow::template::to_value(value) },
        )
    }

    #[test]
    fn values_stay_one_component() {
        let url = render(
            "https://api.example/v2/customers/{{ args.email }}?q={{ args.q }}",
            &serde_json::json!({"email": "ana+work@ex.com", "q": "a/../b?c=d&e#f g"}),
        );
        assert_eq!(
            url.ok().as_deref(),
            Some(
                "https://api.example/v2/customers/ana%2Bwork%40ex.com?q=a%2F..%2Fb%3Fc%3Dd%26e%23f%20g"
            )
        );
        assert_eq!(
            render(
                "/x/{{ args.n }}/{{ args.missing }}",
                &serde_json::json!({"n": 42})
            )
            .ok()
            .as_deref(),
            Some("/x/42/")
        );
        assert_eq!(
            render("/x/{{ args.v }}", &serde_json::json!({"v": "é ü"}))
                .ok()
                .as_deref(),
            Some("/x/%C3%A9%20%C3%BC")
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        for dots in [".", ".."] {
            let error = render("/files/{{ args.f }}", &serde_json::json!({ "f": dots }));
            assert!(error.is_err(), "{dots} was accepted");
        }
        assert!(render("/files/{{ args.f }}", &serde_json::json!({"f": "..."})).is_ok());
    }
}
