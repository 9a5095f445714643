//! Secrets out of text: the one redactor behind tool errors and results, provider error
//! messages, transcripts and logs.
//!
//! A secret can reach text in many ways — a URL in a connection error, a server echoing a
//! header back, a provider quoting the key it refused — so rather than guarding each path,
//! text is passed through [`Redactor::apply`] before it leaves the component that knew the
//! secret. Each secret is also caught percent-encoded (as it appears inside a URL), longer
//! secrets are replaced first (a secret that contains another is replaced whole), and
//! optionally anything shaped like an OpenAI key (`sk-…`), which providers echo partly
//! masked in their 401 messages.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::tool::ToolError;

/// Everything but RFC 3986's unreserved characters: how a value is written in a URL.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Replaces known secret values (and optionally key-shaped tokens) in text.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// `(value, what replaces it)`, longest value first.
    secrets: Vec<(String, String)>,
    key_shapes: bool,
}

impl Redactor {
    /// Nothing to redact (yet).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A redactor that replaces each of `values` with `***` (empty ones are ignored:
    /// they would match everywhere).
    #[must_use]
    pub fn masking<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut redactor = Self::new();
        for value in values {
            redactor.add(value.into(), "***");
        }
        redactor
    }

    /// Also replaces `value` with `***`.
    pub fn add_secret(&mut self, value: &str) {
        self.add(value.to_owned(), "***");
    }

    /// Also replaces `value` with `[redacted: NAME]`, for text people read to find out
    /// which secret was there (transcripts).
    pub fn add_named(&mut self, name: &str, value: &str) {
        self.add(value.to_owned(), &format!("[redacted: {name}]"));
    }

    /// Also replaces every secret `other` knows, as `other` does.
    pub fn extend(&mut self, other: &Self) {
        for (value, mask) in &other.secrets {
            if !self.secrets.iter().any(|(known, _)| known == value) {
                self.secrets.push((value.clone(), mask.clone()));
            }
        }
        self.secrets
            .sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        self.key_shapes |= other.key_shapes;
    }

    /// Also masks `sk-…` tokens of 8 characters or more as `sk-***`.
    #[must_use]
    pub fn with_key_shapes(mut self) -> Self {
        self.key_shapes = true;
        self
    }

    fn add(&mut self, value: String, mask: &str) {
        if value.is_empty() || self.secrets.iter().any(|(known, _)| *known == value) {
            return;
        }
        let encoded = utf8_percent_encode(&value, COMPONENT).to_string();
        if encoded != value && !self.secrets.iter().any(|(known, _)| *known == encoded) {
            self.secrets.push((encoded, mask.to_owned()));
        }
        self.secrets.push((value, mask.to_owned()));
        self.secrets
            .sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
    }

    /// Whether there is nothing to redact.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && !self.key_shapes
    }

    /// `text` with every secret replaced (borrowed when there was none).
    #[must_use]
    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for (value, mask) in &self.secrets {
            if text.contains(value.as_str()) {
                text = Cow::Owned(text.replace(value.as_str(), mask));
            }
        }
        if self.key_shapes && text.contains("sk-") {
            text = Cow::Owned(mask_key_shapes(&text));
        }
        text
    }

    /// `error` with its message redacted.
    #[must_use]
    pub fn error(&self, mut error: ToolError) -> ToolError {
        if let Cow::Owned(clean) = self.apply(&error.message) {
            error.message = clean;
        }
        error
    }

    /// Redacts every string (and object key) in `value`.
    pub fn value(&self, value: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(text) => {
                if let Cow::Owned(clean) = self.apply(text) {
                    *text = clean;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut item) in entries {
                    self.value(&mut item);
                    map.insert(self.apply(&key).into_owned(), item);
                }
            }
            _ => {}
        }
    }
}

/// Masks `sk-…` tokens (OpenAI echoes partial keys in 401 messages); shorter runs such as
/// `task-sk-12` are ordinary words.
fn mask_key_shapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("sk-") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 3..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*'))
            .unwrap_or(tail.len());
        if len >= 8 {
            out.push_str("sk-***");
        } else {
            out.push_str(&rest[at..at + 3 + len]);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ToolErrorKind;
    use serde_json::json;

    #[test]
    fn secrets_become_stars_wherever_they_appear() {
        let redactor = Redactor::masking(["s3cr3t", "", "s3cr3t-long value"]);
        assert_eq!(
            redactor.apply("token s3cr3t-long value and s3cr3t"),
            "token *** and ***"
        );
        assert_eq!(
            redactor.apply("https://x.example/?k=s3cr3t-long%20value"),
            "https://x.example/?k=***"
        );
        assert!(matches!(redactor.apply("nothing here"), Cow::Borrowed(_)));
        let mut value = json!({"echo": ["Bearer s3cr3t"], "s3cr3t": 1});
        redactor.value(&mut value);
        assert_eq!(value, json!({"echo": ["Bearer ***"], "***": 1}));
        let error = redactor.error(ToolError::new(
            ToolErrorKind::Failed,
            "GET ?key=s3cr3t failed",
        ));
        assert_eq!(error.message, "GET ?key=*** failed");
        assert!(Redactor::masking([""]).is_empty());
    }

    #[test]
    fn named_secrets_say_which_and_the_longest_goes_first() {
        let mut r = Redactor::new();
        r.add_named("TOKEN", "sk-123");
        r.add_named("LONG", "sk-123456");
        assert_eq!(
            r.apply("Bearer sk-123456 and sk-123"),
            "Bearer [redacted: LONG] and [redacted: TOKEN]"
        );
    }

    #[test]
    fn key_shapes_are_masked_and_short_runs_are_words() {
        let r = Redactor::new().with_key_shapes();
        assert_eq!(
            r.apply("Incorrect API key provided: sk-proj-abcd1234********wxyz."),
            "Incorrect API key provided: sk-***."
        );
        assert_eq!(r.apply("task-sk-12"), "task-sk-12");
    }
}
