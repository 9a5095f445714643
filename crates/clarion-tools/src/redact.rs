//! Secrets out of error text.
//!
//! A tool's error message goes to the model, into the thread's transcript and into logs. An
//! HTTP tool's secrets (the values of its allow-listed environment variables) can reach a
//! message in many ways — a URL in a connection error, a server echoing a header back —
//! so rather than guarding each path, every message is passed through [`Redactor::apply`]
//! before it leaves the executor: each secret value becomes `***`.

use std::borrow::Cow;

use clarion_engine::tool::ToolError;

/// Replaces known secret values with `***`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    // Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these values (empty ones are ignored: they would match everywhere).
    #[must_use]
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(Into::into)
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Whether there is nothing to redact.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced by `***`.
    #[must_use]
    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut text = Cow::Borrowed(text);
        for secret in &self.secrets {
            // Also catch the secret as it appears inside a URL.
            let encoded = crate::http::encode::component(secret);
            for form in [secret.as_str(), encoded.as_ref()] {
                if text.contains(form) {
                    text = Cow::Owned(text.replace(form, "***"));
                }
            }
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

    /// `value` with every string (and object key) redacted.
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

#[cfg(test)]
mod tests {
    use super::*;
    use clarion_engine::codes::ToolErrorKind;
    use serde_json::json;

    #[test]
    fn secrets_become_stars_wherever_they_appear() {
        let redactor = Redactor::new(["s3cr3t", "", "s3cr3t-long value"]);
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
        assert!(Redactor::new([""]).is_empty());
    }
}
