//! What `--store` names: a SQLite file (the default) or a PostgreSQL URL, opened the same
//! way by every subcommand that keeps threads (`serve`, `chat`, `threads`), and shown in
//! messages without a URL's password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clarion_store_postgres::{Options, PostgresStore, is_postgres_url, redact_url};

use crate::error::CliError;

/// Whether `--store` names a PostgreSQL database.
pub(crate) fn is_url(store: &Path) -> bool {
    is_postgres_url(&store.to_string_lossy())
}

/// `--store` as messages show it: a URL without its password, a path as it is.
pub(crate) fn shown(store: &Path) -> PathBuf {
    if is_url(store) {
        PathBuf::from(redact_url(&store.to_string_lossy()))
    } else {
        store.to_path_buf()
    }
}

/// Connects to the PostgreSQL database `store` names, with runs leased for `lease`.
pub(crate) async fn postgres(store: &Path, lease: Duration) -> Result<PostgresStore, CliError> {
    let options = Options {
        lease,
        ..Options::default()
    };
    PostgresStore::connect_with(&store.to_string_lossy(), options)
        .await
        .map_err(|e| CliError::Io(format!("cannot open the thread store: {e}")))
}
