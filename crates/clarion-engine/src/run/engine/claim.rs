//! Claiming a run: one driver per run in this process, and the cancel signal to it.

use super::Engine;
use crate::events::EventSink;
use crate::run::EngineError;
use crate::run::Run;
use crate::run::RunStatus;
use tokio::sync::watch;

impl Engine {
    /// Marks a run as being driven by this engine; fails if it already is.
    pub(super) fn claim(&self, run_id: &str) -> Result<watch::Receiver<bool>, EngineError> {
        let mut driving = self
            .driving
            .lock()
            .map_err(|_| EngineError::RunBusy(run_id.to_owned()))?;
        if driving.contains_key(run_id) {
            return Err(EngineError::RunBusy(run_id.to_owned()));
        }
        let (sender, receiver) = watch::channel(false);
        driving.insert(run_id.to_owned(), sender);
        Ok(receiver)
    }

    pub(super) fn release(&self, run_id: &str) {
        if let Ok(mut driving) = self.driving.lock() {
            driving.remove(run_id);
        }
    }

    /// Releases a run after driving it. A cancel that arrived after the loop's last check
    /// would be lost if the run came to rest in `requires_action`. `cancel` signals under
    /// the lock taken here, so the signal is either seen now — and honoured while the run
    /// is still claimed — or `cancel` finds the run released and cancels it itself.
    pub(super) fn release_driven(
        &self,
        run_id: &str,
        result: Result<Run, EngineError>,
        events: &dyn EventSink,
    ) -> Result<Run, EngineError> {
        let cancelled = self.driving.lock().is_ok_and(|mut driving| {
            let requested = driving.get(run_id).is_some_and(|signal| *signal.borrow());
            if !requested {
                driving.remove(run_id);
            }
            requested
        });
        if !cancelled {
            return result;
        }
        let settled = self
            .store
            .run(run_id)
            .map_err(EngineError::from)
            .and_then(|run| {
                if run.status == RunStatus::RequiresAction {
                    self.cancel_now(run, events)
                } else {
                    Ok(run)
                }
            });
        self.release(run_id);
        result.and(settled)
    }
}
