//! Runs whose replica died: every replica looks for them and drives them on.
//!
//! With a store that leases runs (PostgreSQL), a replica killed mid-run stops renewing its
//! leases. [`spawn_takeover`] scans the store every quarter lease for unfinished runs whose
//! lease expired and hands each to the engine of its thread's flow
//! ([`Engine::take_over`](clarion_engine::Engine::take_over)), which claims the lease
//! — only one replica wins it — and resumes the run from its last committed step. A store
//! without leases has no orphans, and the task ends at once.

use std::sync::Arc;
use std::time::Duration;

use clarion_engine::NoEvents;

use crate::state::AppState;

/// At most this many orphans are taken per scan (the rest wait for the next one).
const PER_SCAN: usize = 64;

/// Starts the scan in the background (a no-op for a store without leases). Dropping the
/// handle does not stop it; abort it to stop.
#[must_use = "abort the handle to stop the scan"]
pub fn spawn_takeover(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(lease) = state.store().lease_duration() else {
            return;
        };
        // A quarter: a run is taken over at most a quarter lease after its lease ran out
        // (one indexed query per scan, however many runs the store holds).
        let every = (lease / 4).max(Duration::from_millis(50));
        loop {
            take_over_orphans(&state).await;
            tokio::time::sleep(every).await;
        }
    })
}

/// One scan: starts driving every orphaned run this server has an assistant for; how many.
///
/// Cancel safe: a run is only handed to a spawned task, which claims its lease.
pub async fn take_over_orphans(state: &AppState) -> usize {
    let store = state.store();
    let orphans = match store.orphaned_runs(PER_SCAN).await {
        Ok(orphans) => orphans,
        Err(error) => {
            tracing::warn!("could not look for runs whose replica stopped: {error}");
            return 0;
        }
    };
    let mut started = 0;
    for run_id in orphans {
        let Ok(run) = store.run(&run_id).await else {
            continue;
        };
        let Ok(header) = store.thread_header(&run.thread_id).await else {
            continue;
        };
        let Some(assistant) = state.assistant_of(&header).cloned() else {
            continue;
        };
        started += 1;
        tokio::spawn(async move {
            match assistant
                .engine
                .take_over(&run_id, &*Arc::new(NoEvents))
                .await
            {
                Ok(run) => tracing::info!(run_id, status = run.status.as_str(), "took over a run"),
                Err(error) => tracing::debug!(run_id, "did not take over the run: {error}"),
            }
        });
    }
    started
}
