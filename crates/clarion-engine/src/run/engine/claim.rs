//! Claiming a run: one driver per run in this process, the cancel signal to it, and what
//! happens when a driver's future is dropped.
//!
//! A claim is an RAII guard. It is taken before a run is driven (or settled: expired,
//! cancelled) and given back when the guard is dropped — also when the future holding it
//! is dropped mid-`.await` (a `tokio::time::timeout`, a `select!`, a panicking tool). A
//! dropped driver leaves the run as its last committed step left it (each step is one
//! store commit) and is remembered as *abandoned*: [`Engine::drive_run`] resumes such a
//! run, [`Engine::cancel`] cancels it and [`Engine::recover`] fails it, all in the same
//! process, and nothing stays claimed.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::Engine;
use crate::events::EventSink;
use crate::run::{EngineError, Run, RunStatus};

/// How long [`Engine::claim_soon`] waits for a claim held in this process.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The runs this engine is driving, each with its cancel signal, and the runs whose
/// driver was dropped before it finished.
#[derive(Debug, Default)]
pub(super) struct Claims {
    driving: Mutex<HashMap<String, watch::Sender<bool>>>,
    abandoned: Mutex<HashSet<String>>,
    /// Told whenever a claim is given back, for [`Claims::claim_soon`].
    released: tokio::sync::Notify,
}

impl Claims {
    /// Claims `run_id` to drive it (`drives`) or only to settle it; `RunBusy` if this
    /// engine already holds it.
    pub(super) fn claim(&self, run_id: &str, drives: bool) -> Result<Claim<'_>, EngineError> {
        let mut driving = self.driving();
        if driving.contains_key(run_id) {
            return Err(EngineError::RunBusy(run_id.to_owned()));
        }
        let (sender, cancel) = watch::channel(false);
        driving.insert(run_id.to_owned(), sender);
        Ok(Claim {
            claims: self,
            run_id: run_id.to_owned(),
            cancel,
            settled: !drives,
        })
    }

    /// Claims `run_id` to drive it, waiting up to `wait` for a holder that is letting go
    /// of it: a client answering a run in `requires_action` can arrive while the driver
    /// that committed that step is still on its way out. `RunBusy` if it is still held
    /// then.
    ///
    /// Cancel safe: waiting holds nothing.
    pub(super) async fn claim_soon(
        &self,
        run_id: &str,
        wait: std::time::Duration,
    ) -> Result<Claim<'_>, EngineError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before trying, so a release between the try and the wait is seen.
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            match self.claim(run_id, true) {
                Ok(claim) => return Ok(claim),
                Err(busy) if tokio::time::Instant::now() >= deadline => return Err(busy),
                Err(_) => {
                    let _ = tokio::time::timeout_at(deadline, released).await;
                }
            }
        }
    }

    /// Signals the driver of `run_id` to stop; whether one is driving it.
    pub(super) fn signal_cancel(&self, run_id: &str) -> bool {
        self.driving()
            .get(run_id)
            .map(|signal| signal.send_replace(true))
            .is_some()
    }

    /// Whether this engine is driving `run_id` right now.
    pub(super) fn is_driving(&self, run_id: &str) -> bool {
        self.driving().contains_key(run_id)
    }

    /// Whether `run_id`'s driver in this process was dropped mid-run.
    pub(super) fn was_abandoned(&self, run_id: &str) -> bool {
        self.abandoned().contains(run_id)
    }

    /// The runs whose driver was dropped mid-run.
    pub(super) fn abandoned_runs(&self) -> Vec<String> {
        self.abandoned().iter().cloned().collect()
    }

    /// `run_id` is settled (resumed, cancelled, recovered): no longer abandoned.
    pub(super) fn forget(&self, run_id: &str) {
        self.abandoned().remove(run_id);
    }

    // A poisoned lock only means a panic elsewhere while it was held; the maps stay valid.
    fn driving(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<bool>>> {
        self.driving.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn abandoned(&self) -> MutexGuard<'_, HashSet<String>> {
        self.abandoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A claimed run; dropping it releases the claim.
#[derive(Debug)]
pub(super) struct Claim<'a> {
    claims: &'a Claims,
    run_id: String,
    /// Becomes `true` when [`Engine::cancel`] asks the driver to stop.
    pub(super) cancel: watch::Receiver<bool>,
    /// The holder got to the end (or only settles the run); a driving claim dropped
    /// before that was abandoned.
    settled: bool,
}

impl Claim<'_> {
    /// The holder is done. Releases the claim unless a cancel arrived meanwhile, and says
    /// whether one did. `cancel` signals under the same lock, so a signal is either seen
    /// here — and honoured while the run is still claimed — or `cancel` finds the run
    /// released and cancels it itself: a cancel can never be lost between the two.
    fn finish(&mut self) -> bool {
        self.settled = true;
        let mut driving = self.claims.driving();
        let requested = driving
            .get(&self.run_id)
            .is_some_and(|signal| *signal.borrow());
        if !requested {
            driving.remove(&self.run_id);
            self.claims.released.notify_waiters();
        }
        requested
    }
}

impl Claim<'_> {
    /// Gives the claim back without having driven the run (another process holds it):
    /// the run is not abandoned here.
    pub(super) fn give_back(mut self) {
        self.settled = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.claims.driving().remove(&self.run_id).is_some() {
            self.claims.released.notify_waiters();
        }
        if !self.settled {
            self.claims.abandoned().insert(self.run_id.clone());
        }
    }
}

impl Engine {
    /// Claims a run to drive it; `RunBusy` if this engine already holds it.
    pub(super) fn claim(&self, run_id: &str) -> Result<Claim<'_>, EngineError> {
        self.claims.claim(run_id, true)
    }

    /// Claims a run to drive it, waiting a moment for a holder in this process that is
    /// letting go of it ([`Claims::claim_soon`]).
    pub(super) async fn claim_soon(&self, run_id: &str) -> Result<Claim<'_>, EngineError> {
        self.claims.claim_soon(run_id, CLAIM_WAIT).await
    }

    /// Claims a run only to settle it (expire or cancel it); given back when dropped.
    pub(super) fn claim_to_settle(&self, run_id: &str) -> Result<Claim<'_>, EngineError> {
        self.claims.claim(run_id, false)
    }

    /// Gives back a claim the holder got to the end of. A cancel that arrived after the
    /// loop's last check would be lost if the run came to rest in `requires_action`, so it
    /// is honoured here, before the claim goes.
    pub(super) async fn release_driven(
        &self,
        mut claim: Claim<'_>,
        result: Result<Run, EngineError>,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        if !claim.finish() {
            return result;
        }
        let settled = match self.store.run(&claim.run_id).await {
            Ok(run) if run.status == RunStatus::RequiresAction => {
                self.cancel_now(run, events).await
            }
            Ok(run) => Ok(run),
            Err(error) => Err(error.into()),
        };
        drop(claim);
        result.and(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn claim_soon_waits_for_a_holder_letting_go_and_no_longer() {
        let claims = Claims::default();
        let held = claims
            .claim("run_1", true)
            .unwrap_or_else(|e| panic!("{e}"));
        // Held for good: busy after the wait.
        let busy = claims.claim_soon("run_1", Duration::from_millis(30)).await;
        assert!(matches!(busy, Err(EngineError::RunBusy(_))), "{busy:?}");
        // Let go meanwhile: the waiter gets it.
        let waiter = claims.claim_soon("run_1", Duration::from_secs(5));
        let release = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        };
        let (claim, ()) = tokio::join!(waiter, release);
        assert!(claim.is_ok());
    }
}
