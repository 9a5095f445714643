//! `clarion test --review`: each new or changed transcript, its diff, and a question on
//! stdin — accept (write the `.snap`), reject (keep the old one) or skip (leave a
//! `.snap.new` for later).

use std::io::BufRead;

use clarion_testing::{SnapshotState, pending_path};

use super::Result;
use crate::output;

pub(super) fn review(results: &mut [Result], styled: bool) {
    let reviewable: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.outcome.problems.is_empty()
                && matches!(
                    r.check.state,
                    Some(SnapshotState::New | SnapshotState::Changed { .. })
                )
        })
        .map(|(i, _)| i)
        .collect();
    let total = reviewable.len();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut skip_rest = false;
    for (n, i) in reviewable.into_iter().enumerate() {
        let result = &mut results[i];
        let path = result.outcome.snapshot_path();
        let new = result.outcome.snapshot();
        if skip_rest {
            write_pending(result, &new, &path);
            continue;
        }
        let old = match &result.check.state {
            Some(SnapshotState::Changed { old }) => old.clone(),
            _ => String::new(),
        };
        let mut text = format!(
            "\nreviewing {}/{total}: {} ({})\n",
            n + 1,
            result.outcome.path.display(),
            if old.is_empty() { "new" } else { "changed" }
        );
        text.push_str(&clarion_testing::unified_diff(&old, &new.body, styled));
        text.push_str("accept (a), reject (r) or skip (s)? ");
        output::out(&text);
        let answer = loop {
            match lines.next() {
                Some(Ok(line)) => match line.trim() {
                    "a" | "accept" => break Some('a'),
                    "r" | "reject" => break Some('r'),
                    "s" | "skip" | "" => break Some('s'),
                    _ => output::out("please answer a, r or s: "),
                },
                _ => break None,
            }
        };
        match answer {
            Some('a') => match new.write(&path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(pending_path(&path));
                    result.check.accepted = true;
                    result.check.written = Some(path);
                }
                Err(error) => {
                    result.check.error = Some(format!("cannot write {}: {error}", path.display()));
                }
            },
            Some('r') => {
                let _ = std::fs::remove_file(pending_path(&path));
            }
            Some(_) => write_pending(result, &new, &path),
            None => {
                // stdin closed: leave the rest for later.
                skip_rest = true;
                output::out("\n");
                write_pending(result, &new, &path);
            }
        }
    }
}

fn write_pending(result: &mut Result, new: &clarion_testing::Snapshot, path: &std::path::Path) {
    let pending = pending_path(path);
    match new.write(&pending) {
        Ok(()) => result.check.written = Some(pending),
        Err(error) => {
            result.check.error = Some(format!("cannot write {}: {error}", pending.display()));
        }
    }
}
