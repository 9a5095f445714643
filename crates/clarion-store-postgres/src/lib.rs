//! The PostgreSQL thread store: several `clarion serve` replicas share one database, so any
//! replica answers for any thread, and a run whose replica dies is taken over by another.
//!
//! This crate owns the SQL schema and its migrations ([`migrate`]), connecting with errors
//! a person can act on ([`connect`]), and the [`ThreadStore`](clarion_engine::ThreadStore)
//! operations ([`store`]). It lives apart from `clarion-store` (SQLite) so that a build
//! that embeds Clarion with SQLite carries no PostgreSQL driver, and so the driver's
//! dependencies stay out of the crates that do not talk to a server.
//!
//! **Driver.** `tokio-postgres` with a `deadpool-postgres` pool: an async driver (no query
//! ever blocks a runtime worker), plain SQL with prepared statements cached per
//! connection, explicit transactions, and a small dependency tree — sqlx's compile-time
//! checked queries would need a database (or checked-in query data) at build time and
//! bring a much larger tree for a dozen queries.
//!
//! **Leases.** The handle that drives a run holds its lease (`runs.lease_owner`,
//! `runs.lease_until`, on the database's clock) and the engine renews it while it drives;
//! a step of a run whose live lease another handle holds is refused. A replica killed with
//! `kill -9` leaves its leases to expire, and [`ThreadStore::orphaned_runs`] lists those
//! runs for another replica to resume from their last committed step.
//!
//! [`ThreadStore::orphaned_runs`]: clarion_engine::ThreadStore::orphaned_runs
//!
//! Connecting migrates the schema; a failure says what happened, where, and never shows the
//! password of the URL (here nothing listens on port 1):
//!
//! ```
//! use clarion_store_postgres::PostgresStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let url = "postgres://clarion:s3cret@127.0.0.1:1/clarion";
//! let Err(error) = PostgresStore::connect(url).await else { panic!("nothing listens on port 1") };
//! let message = error.to_string();
//! assert!(message.contains("127.0.0.1:1") && !message.contains("s3cret"), "{message}");
//! // With a server: `let store = Arc::new(PostgresStore::connect(url).await?);`, then
//! // `Engine::new(flow, model, tools, store)` as with any `ThreadStore`.
//! # }
//! ```

pub mod connect;
pub mod migrate;
pub mod store;
pub mod testing;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use connect::{ConnectError, Target, redact_url};
pub use migrate::SCHEMA_VERSION;
pub use store::PostgresStore;

/// How long a run's lease lasts unless told otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// How to open a [`PostgresStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How long a run's lease lasts without renewal: a replica killed mid-run has its runs
    /// taken over by another within about this long (plus the other's scan interval).
    pub lease: Duration,
    /// The schema for Clarion's tables (created if missing); `None` uses the connection's
    /// `search_path` (normally `public`).
    pub schema: Option<String>,
    /// At most this many connections in the pool.
    pub max_connections: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            lease: DEFAULT_LEASE,
            schema: None,
            max_connections: 16,
        }
    }
}

/// Whether `text` names a PostgreSQL store rather than a SQLite file.
#[must_use]
pub fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

impl PostgresStore {
    /// Connects to `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`) with default
    /// options and brings the schema up to date.
    ///
    /// Cancel safe: dropped before it returns, at most a migration transaction is rolled
    /// back.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, Options::default()).await
    }

    /// Connects with `options`; see [`PostgresStore::connect`].
    ///
    /// Cancel safe, as [`PostgresStore::connect`].
    pub async fn connect_with(url: &str, options: Options) -> Result<Self, ConnectError> {
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| ConnectError::BadUrl {
                    url: redact_url(url),
                    reason: e.to_string(),
                })?;
        if let Some(schema) = &options.schema {
            config.options(format!("-c search_path={}", migrate::quote_ident(schema)));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let target = Target::of(&config);
        // One connection first, outside the pool: its error says exactly what went wrong.
        let (mut client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| connect::classify(&e, &config))?;
        let driver = tokio::spawn(connection);
        let migrated = migrate::migrate(&mut client, options.schema.as_deref()).await;
        drop(client);
        let _ = driver.await;
        migrated.map_err(|error| ConnectError::Schema {
            target: target.clone(),
            error,
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| ConnectError::Unreachable {
                target: target.clone(),
                reason: e.to_string(),
            })?;
        let owner = format!("{}:{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Ok(Self {
            pool,
            owner,
            lease: options.lease,
            target: target.to_string(),
            schema: options.schema,
        })
    }
}
