//! Stable identifiers: the engine's random ids (`run_5f0c…`) become `run_1`, `run_2`… in
//! order of appearance, so a transcript is the same on every machine and every run.

use std::collections::{HashMap, HashSet};

/// The prefixes of the engine's identifiers (see [`clarion_engine::new_id`]).
const PREFIXES: [&str; 5] = ["thread", "run", "msg", "call", "step"];

/// Length of the random part of an engine id.
const RANDOM_LEN: usize = 24;

/// Maps random ids to stable ones, per prefix, in order of first appearance.
#[derive(Debug, Default, Clone)]
pub struct StableIds {
    mapped: HashMap<String, String>,
    counters: HashMap<&'static str, usize>,
    taken: HashSet<String>,
}

impl StableIds {
    /// An empty mapping.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `id` out of the stable ids handed out (for ids that are already stable, such
    /// as a script's own call ids).
    pub fn reserve(&mut self, id: &str) {
        self.taken.insert(id.to_owned());
    }

    /// The stable id for `id` (itself, if it is not a random engine id).
    pub fn map(&mut self, id: &str) -> String {
        match random_prefix(id) {
            Some(prefix) => self.stable(prefix, id),
            None => id.to_owned(),
        }
    }

    /// Replaces every random engine id in `text`.
    pub fn replace_all(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        'scan: while !rest.is_empty() {
            for prefix in PREFIXES {
                let len = prefix.len() + 1 + RANDOM_LEN;
                let at_boundary = out
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
                if at_boundary
                    && rest.len() >= len
                    && rest.is_char_boundary(len)
                    && random_prefix(&rest[..len]) == Some(prefix)
                    && rest[len..]
                        .chars()
                        .next()
                        .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
                {
                    let stable = self.stable(prefix, &rest[..len]);
                    out.push_str(&stable);
                    rest = &rest[len..];
                    continue 'scan;
                }
            }
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
        out
    }

    fn stable(&mut self, prefix: &'static str, id: &str) -> String {
        if let Some(stable) = self.mapped.get(id) {
            return stable.clone();
        }
        let counter = self.counters.entry(prefix).or_default();
        let stable = loop {
            *counter += 1;
            let candidate = format!("{prefix}_{counter}");
            if !self.taken.contains(&candidate) {
                break candidate;
            }
        };
        self.taken.insert(stable.clone());
        self.mapped.insert(id.to_owned(), stable.clone());
        stable
    }
}

/// The prefix of a random engine id (`run_` + 24 hex digits), if `id` is one.
fn random_prefix(id: &str) -> Option<&'static str> {
    let (prefix, random) = id.split_once('_')?;
    let prefix = PREFIXES.into_iter().find(|p| *p == prefix)?;
    (random.len() == RANDOM_LEN && random.bytes().all(|b| b.is_ascii_hexdigit())).then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_become_sequential_per_prefix_in_order_of_appearance() {
        let run_a = clarion_engine::new_id("run");
        let run_b = clarion_engine::new_id("run");
        let call = clarion_engine::new_id("call");
        let mut ids = StableIds::new();
        ids.reserve("call_1");
        let text = format!("[{run_b}] {call} then {run_a}, again {run_b}.");
        assert_eq!(
            ids.replace_all(&text),
            "[run_1] call_2 then run_2, again run_1."
        );
        assert_eq!(ids.map(&run_a), "run_2");
        assert_eq!(ids.map("call_1"), "call_1", "stable ids stay");
    }

    #[test]
    fn lookalikes_are_left_alone() {
        let mut ids = StableIds::new();
        let text = "run_1 xrun_0123456789abcdef01234567 run_0123456789abcdef012345678 é";
        assert_eq!(ids.replace_all(text), text);
    }
}
