//! Thread metadata, with the limits Assistants API users know: at most 16 keys, keys up to
//! 64 characters, values up to 512. A violation is an error naming the key and the limit;
//! nothing is stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most keys a thread's metadata may hold.
pub const MAX_KEYS: usize = 16;
/// Longest key, in characters.
pub const MAX_KEY_CHARS: usize = 64;
/// Longest value, in characters.
pub const MAX_VALUE_CHARS: usize = 512;

/// String key/value pairs attached to a thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

/// Why metadata was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// More than [`MAX_KEYS`] keys.
    #[error("metadata can hold at most {MAX_KEYS} keys; this would make {0}")]
    TooManyKeys(usize),
    /// A key longer than [`MAX_KEY_CHARS`].
    #[error("metadata key `{0}…` is longer than {MAX_KEY_CHARS} characters")]
    KeyTooLong(String),
    /// An empty key.
    #[error("metadata keys cannot be empty")]
    EmptyKey,
    /// A value longer than [`MAX_VALUE_CHARS`].
    #[error("metadata value for `{0}` is longer than {MAX_VALUE_CHARS} characters")]
    ValueTooLong(String),
}

impl Metadata {
    /// Metadata from pairs, checked against the limits.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Self, MetadataError> {
        let mut metadata = Self::default();
        metadata.merge(pairs)?;
        Ok(metadata)
    }

    /// Sets every pair (an empty value removes the key, as in the Assistants API), or
    /// nothing if any pair breaks a limit.
    pub fn merge(
        &mut self,
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), MetadataError> {
        let mut next = self.0.clone();
        for (key, value) in pairs {
            if key.is_empty() {
                return Err(MetadataError::EmptyKey);
            }
            if key.chars().count() > MAX_KEY_CHARS {
                return Err(MetadataError::KeyTooLong(
                    key.chars().take(MAX_KEY_CHARS).collect(),
                ));
            }
            if value.chars().count() > MAX_VALUE_CHARS {
                return Err(MetadataError::ValueTooLong(key));
            }
            if value.is_empty() {
                next.remove(&key);
            } else {
                next.insert(key, value);
            }
        }
        if next.len() > MAX_KEYS {
            return Err(MetadataError::TooManyKeys(next.len()));
        }
        self.0 = next;
        Ok(())
    }

    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// All pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn limits_are_enforced_and_nothing_changes_on_error() {
        let mut m = Metadata::new((0..16).map(|i| pair(&format!("k{i}"), "v"))).unwrap_or_default();
        assert_eq!(m.len(), 16);
        assert_eq!(
            m.merge([pair("k16", "v")]),
            Err(MetadataError::TooManyKeys(17))
        );
        assert_eq!(m.len(), 16);
        assert!(matches!(
            m.merge([pair(&"k".repeat(65), "v")]),
            Err(MetadataError::KeyTooLong(_))
        ));
        assert_eq!(
            m.merge([pair("k0", &"v".repeat(513))]),
            Err(MetadataError::ValueTooLong("k0".to_owned()))
        );
        assert_eq!(m.merge([pair("", "v")]), Err(MetadataError::EmptyKey));
        assert!(
            m.merge([pair("k0", &"€".repeat(512))]).is_ok(),
            "limits count characters"
        );
        assert!(m.merge([pair("k1", "")]).is_ok());
        assert_eq!(m.len(), 15, "an empty value removes the key");
    }

    #[test]
    fn messages_name_the_limit() {
        assert_eq!(
            MetadataError::TooManyKeys(17).to_string(),
            "metadata can hold at most 16 keys; this would make 17"
        );
        assert_eq!(
            MetadataError::KeyTooLong("abc".into()).to_string(),
            "metadata key `abc…` is longer than 64 characters"
        );
        assert_eq!(
            MetadataError::EmptyKey.to_string(),
            "metadata keys cannot be empty"
        );
        assert_eq!(
            MetadataError::ValueTooLong("k".into()).to_string(),
            "metadata value for `k` is longer than 512 characters"
        );
    }
}
