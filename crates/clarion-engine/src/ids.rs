//! Identifiers with the prefixes people know from the Assistants API (`thread_`, `run_`,
//! `msg_`, `call_`), random so two processes sharing a store never collide.

/// A new random identifier such as `thread_5f0c…` (prefix, `_`, 24 hex digits).
#[must_use]
pub fn new_id(prefix: &str) -> String {
    let mut buffer = uuid::Uuid::encode_buffer();
    let hex = uuid::Uuid::new_v4().simple().encode_lower(&mut buffer);
    let mut id = String::with_capacity(prefix.len() + 25);
    id.push_str(prefix);
    id.push('_');
    id.push_str(&hex[..24]);
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_carry_their_prefix_and_differ() {
        let a = super::new_id("run");
        let b = super::new_id("run");
        assert!(a.starts_with("run_") && a.len() == 28);
        assert_ne!(a, b);
    }
}
