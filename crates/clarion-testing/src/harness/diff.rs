//! Unified diffs of transcripts, with `similar` (the diff library insta uses).

use similar::{ChangeTag, TextDiff};
use std::fmt::Write as _;

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// A unified diff from `old` (the snapshot) to `new` (this run's transcript), three lines
/// of context; ANSI-coloured when `styled`.
#[must_use]
pub fn unified_diff(old: &str, new: &str, styled: bool) -> String {
    let paint = |colour: &str, text: &str| {
        if styled {
            format!("{colour}{text}{RESET}")
        } else {
            text.to_owned()
        }
    };
    let old = super::snapshot::normalize(old);
    let new = super::snapshot::normalize(new);
    let mut out = String::new();
    out.push_str(&paint(BOLD, "--- snapshot"));
    out.push('\n');
    out.push_str(&paint(BOLD, "+++ this run"));
    out.push('\n');
    if old.is_empty() {
        // A new snapshot: every line is new (a line diff would pair the empty old text
        // with the first blank line).
        let lines: Vec<&str> = new.lines().collect();
        out.push_str(&paint(CYAN, &format!("@@ -0,0 +1,{} @@", lines.len())));
        out.push('\n');
        for line in lines {
            out.push_str(&paint(GREEN, &format!("+{line}")));
            out.push('\n');
        }
        return out;
    }
    let (old, new) = (old + "\n", new + "\n");
    let diff = TextDiff::from_lines(&old, &new);
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        out.push_str(&paint(CYAN, &hunk.header().to_string()));
        out.push('\n');
        for change in hunk.iter_changes() {
            let line = change.value().trim_end_matches('\n');
            match change.tag() {
                ChangeTag::Delete => out.push_str(&paint(RED, &format!("-{line}"))),
                ChangeTag::Insert => out.push_str(&paint(GREEN, &format!("+{line}"))),
                ChangeTag::Equal => {
                    let _ = write!(out, " {line}");
                }
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_lines_show_with_context() {
        let old = "user: a\nassistant: b\n[run_1 completed]\n";
        let new = "user: a\nassistant: c\n[run_1 completed]\n";
        assert_eq!(
            unified_diff(old, new, false),
            "--- snapshot\n+++ this run\n@@ -1,3 +1,3 @@\n user: a\n-assistant: b\n+assistant: c\n [run_1 completed]\n"
        );
        assert!(unified_diff(old, new, true).contains("\x1b[31m-assistant: b\x1b[0m"));
        assert_eq!(
            unified_diff("", "a\n\nb\n", false),
            "--- snapshot\n+++ this run\n@@ -0,0 +1,3 @@\n+a\n+\n+b\n"
        );
    }
}
