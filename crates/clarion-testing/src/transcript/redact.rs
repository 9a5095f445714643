//! Secrets out of transcripts: the values of the environment variables a flow's HTTP and
//! command tools may read are replaced by `[redacted: NAME]`.

use clarion_flow::{Executor, Flow};

/// Values too short to be secrets would mangle ordinary text if replaced.
const MIN_SECRET_LEN: usize = 4;

/// Replaces secret values in text.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    secrets: Vec<(String, String)>,
}

impl Redactor {
    /// Nothing to redact.
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// The variables `flow`'s tools allow-list, with their values from this process's
    /// environment.
    #[must_use]
    pub fn for_flow(flow: &Flow) -> Self {
        let mut redactor = Self::default();
        for tool in flow.tools.values() {
            let names = match &tool.executor {
                Executor::Http(http) => http.env.as_slice(),
                Executor::Command(command) => command.env.as_slice(),
                Executor::Builtin(_) | Executor::Client => &[],
            };
            for name in names {
                if let Ok(value) = std::env::var(name) {
                    redactor.add(name, &value);
                }
            }
        }
        redactor
    }

    /// Adds a secret.
    pub fn add(&mut self, name: &str, value: &str) {
        let known = self.secrets.iter().any(|(_, v)| v == value);
        if value.chars().count() >= MIN_SECRET_LEN && !known {
            self.secrets.push((name.to_owned(), value.to_owned()));
            // Longest first, so a secret containing another is replaced whole.
            self.secrets
                .sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        }
    }

    /// Adds every secret `other` knows.
    pub fn extend(&mut self, other: &Self) {
        for (name, value) in &other.secrets {
            self.add(name, value);
        }
    }

    /// `text` with every secret value replaced.
    #[must_use]
    pub fn apply(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (name, value) in &self.secrets {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), &format!("[redacted: {name}]"));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_longest_first_and_short_values_ignored() {
        let mut r = Redactor::none();
        r.add("SHORT", "abc");
        r.add("TOKEN", "sk-123");
        r.add("LONG", "sk-123456");
        assert_eq!(
            r.apply("Bearer sk-123456 and sk-123, abc"),
            "Bearer [redacted: LONG] and [redacted: TOKEN], abc"
        );
    }
}
