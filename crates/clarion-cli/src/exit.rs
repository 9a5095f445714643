//! Exit codes CI can rely on (documented in README.md and `clarion --help`).

/// How `clarion` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything checked out.
    Success,
    /// 1: problems were found (invalid flows, failed tests).
    Problems,
    /// 2: the command could not do its job (bad arguments, missing files).
    Usage,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Success => Self::SUCCESS,
            Exit::Problems => Self::from(1),
            Exit::Usage => Self::from(2),
        }
    }
}
