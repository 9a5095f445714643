//! The process group of one command call, and the guarantee that it dies with the call.
//!
//! Killing the program Clarion started is not enough: a shell script's children, a Python
//! tool's subprocess or a daemon it forked keep running — and keep its stdout open, so a
//! reader would wait for them too. So each command starts in a new process group of its own
//! (`process_group(0)`: the group id is the child's pid) and the whole group is killed with
//! `SIGKILL`:
//!
//! - when the call times out or its output passes the limit;
//! - when the call ends normally, so nothing it left behind outlives it;
//! - when the call's future is dropped (the engine's own timeout, a cancelled run), through
//!   [`ProcessGroup`]'s `Drop`.
//!
//! `SIGKILL` rather than `SIGTERM` first: the tool has had its time, and a grace period would
//! stretch the timeout the flow promises. A process that escapes its group on purpose
//! (`setsid`) is out of reach of any group kill; containing that is the job of a sandbox.

/// Kills a process group when asked, and when dropped.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    #[cfg(unix)]
    id: Option<nix::unistd::Pid>,
}

impl ProcessGroup {
    /// The group led by the process `leader` (which was started with `process_group(0)`).
    pub(crate) fn new(leader: Option<u32>) -> Self {
        #[cfg(unix)]
        {
            Self {
                id: leader
                    .and_then(|pid| i32::try_from(pid).ok())
                    .filter(|pid| *pid > 1)
                    .map(nix::unistd::Pid::from_raw),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = leader;
            Self {}
        }
    }

    /// Sends `SIGKILL` to every process in the group. Harmless when the group is gone.
    ///
    /// The group id stays reserved while any member lives, so this reaches only the call's
    /// processes; once every member has exited it fails with `ESRCH`, which is ignored.
    pub(crate) fn kill(&self) {
        #[cfg(unix)]
        if let Some(id) = self.id {
            let _ = nix::sys::signal::killpg(id, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}
