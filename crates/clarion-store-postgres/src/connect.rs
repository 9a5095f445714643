//! Connecting: a URL in, a pool out, and an error that says what happened — a URL that
//! does not parse, a server that refuses the connection, a password it refuses, a database
//! it does not have — without ever printing the password.

use std::fmt;

use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use clarion_engine::StoreError;

/// Why a [`PostgresStore`](crate::PostgresStore) could not be opened. `Display` never shows
/// a password: URLs are shown with it replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a PostgreSQL connection string.
    #[error(
        "`{url}` is not a PostgreSQL URL ({reason}); expected postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    BadUrl {
        /// The URL, password hidden.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// Nothing accepts connections there.
    #[error(
        "cannot connect to PostgreSQL at {target}: connection refused (is the server running and listening there?)"
    )]
    Refused {
        /// Host, port and database.
        target: Target,
    },
    /// The server refused the user or its password.
    #[error("PostgreSQL at {target} refused user `{user}`: {reason}")]
    AuthFailed {
        /// Host, port and database.
        target: Target,
        /// The user name.
        user: String,
        /// What the server said (never the password).
        reason: String,
    },
    /// The server has no such database.
    #[error("PostgreSQL at {target} has no database `{database}`; create it first (createdb)")]
    NoDatabase {
        /// Host, port and database.
        target: Target,
        /// The database name.
        database: String,
    },
    /// Any other reason the server could not be reached (name resolution, a timeout…).
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Unreachable {
        /// Host, port and database.
        target: Target,
        /// What went wrong.
        reason: String,
    },
    /// Connected, but the schema could not be brought up to date.
    #[error("PostgreSQL at {target}: {error}")]
    Schema {
        /// Host, port and database.
        target: Target,
        /// What the migration said.
        error: StoreError,
    },
}

/// Where a store connects to, for messages: hosts, port and database; no user, no
/// password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    hosts: Vec<String>,
    port: Option<u16>,
    database: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.hosts.join(","))?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "/{}", self.database)
    }
}

impl Target {
    pub(crate) fn of(config: &tokio_postgres::Config) -> Self {
        let hosts = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>();
        Self {
            hosts: if hosts.is_empty() {
                vec!["localhost".to_owned()]
            } else {
                hosts
            },
            port: config.get_ports().first().copied(),
            database: database(config),
        }
    }
}

/// The database a config names (PostgreSQL defaults it to the user name).
pub(crate) fn database(config: &tokio_postgres::Config) -> String {
    config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres")
        .to_owned()
}

/// `url` with the password of its user info replaced by `***` (and nothing else changed).
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // The key=value form: hide a password=… pair.
        return url
            .split_whitespace()
            .map(|pair| {
                if pair.to_ascii_lowercase().starts_with("password=") {
                    "password=***"
                } else {
                    pair
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return hide_query_password(url);
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let shown = if userinfo.contains(':') {
        format!("{scheme}://{user}:***@{host}{tail}")
    } else {
        format!("{scheme}://{userinfo}@{host}{tail}")
    };
    hide_query_password(&shown)
}

/// Hides `password=…` in a URL's query.
fn hide_query_password(url: &str) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let query = query
        .split('&')
        .map(|pair| {
            if pair.to_ascii_lowercase().starts_with("password=") {
                "password=***"
            } else {
                pair
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{head}?{query}")
}

/// Classifies a failure to connect.
pub(crate) fn classify(
    error: &tokio_postgres::Error,
    config: &tokio_postgres::Config,
) -> ConnectError {
    let target = Target::of(config);
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return ConnectError::AuthFailed {
                target,
                user: config.get_user().unwrap_or("").to_owned(),
                reason: db.message().to_owned(),
            };
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return ConnectError::NoDatabase {
                database: database(config),
                target,
            };
        }
        return ConnectError::Unreachable {
            target,
            reason: db.message().to_owned(),
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return ConnectError::Refused { target };
            }
            return ConnectError::Unreachable {
                target,
                reason: io.to_string(),
            };
        }
        source = e.source();
    }
    let reason = error.to_string();
    if reason.contains("password") && reason.contains("missing") {
        return ConnectError::AuthFailed {
            target,
            user: config.get_user().unwrap_or("").to_owned(),
            reason: "the server asks for a password and the URL has none".to_owned(),
        };
    }
    ConnectError::Unreachable { target, reason }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_in_every_form() {
        assert_eq!(
            redact_url("postgres://ada:s3cret@db:5432/clarion"),
            "postgres://ada:***@db:5432/clarion"
        );
        assert_eq!(
            redact_url("postgresql://ada@db/clarion?password=s3cret&sslmode=disable"),
            "postgresql://ada@db/clarion?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("host=db user=ada password=s3cret"),
            "host=db user=ada password=***"
        );
        assert_eq!(redact_url("postgres://db/clarion"), "postgres://db/clarion");
        assert_eq!(
            redact_url("postgres://ada:p@ss@db/x"),
            "postgres://ada:***@db/x",
            "an @ in the password"
        );
    }
}
