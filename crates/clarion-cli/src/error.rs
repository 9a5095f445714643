//! Errors that stop a command before it can do its job (exit code 2).

use std::path::PathBuf;

use clarion_flow::discover::DiscoverError;

/// A usage or configuration error, printed as one `error:` line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Finding flow or scenario files failed.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// The flow file given does not exist.
    #[error("no such flow file: {}", .0.display())]
    MissingFlow(PathBuf),
    /// A `NAME=VALUE` argument without `=`.
    #[error("{flag} {item}: expected NAME=VALUE")]
    BadPair {
        /// The flag, e.g. `--slot`.
        flag: &'static str,
        /// What was given.
        item: String,
    },
    /// No scenario to run.
    #[error("{0}")]
    NoScenarios(String),
    /// The runtime could not start, or a report could not be written.
    #[error("{0}")]
    Io(String),
    /// The thread store cannot be opened.
    #[error("cannot open the thread store {path}: {reason}")]
    Store {
        /// The store's path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `--thread` naming a thread the store does not hold.
    #[error("no thread `{0}` in {1}; start a new conversation without --thread")]
    UnknownThread(String, PathBuf),
    /// The language server's connection failed (a client that broke the protocol).
    #[error("the language server stopped: {0}")]
    Lsp(String),
    /// The provider cannot be set up, or cannot be reached.
    #[error("{0}")]
    Provider(String),
    /// `--slot` naming a slot the flow does not declare.
    #[error("--slot {0}: the flow declares no slot `{0}`")]
    UnknownSlot(String),
    /// `clarion threads`: no store file where one was expected.
    #[error(
        "no thread store at {}; `clarion chat` creates it with the first conversation (or pass --store PATH)",
        .0.display()
    )]
    NoStore(PathBuf),
    /// `clarion threads`: an id the store does not hold.
    #[error("no thread `{id}` in {}; `clarion threads list` shows the stored ones", store.display())]
    NoSuchThread {
        /// The id given.
        id: String,
        /// The store searched.
        store: PathBuf,
    },
}
