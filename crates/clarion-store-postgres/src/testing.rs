//! What test suites need to run against a real server: the server's URL from
//! `CLARION_TEST_POSTGRES`, skipping (locally) or failing (under `CI=true`) when it is not
//! set, and a fresh database per test so suites run in parallel.

use tokio_postgres::NoTls;

/// The environment variable naming the test server (`scripts/postgres.sh start` prints it).
pub const URL_VAR: &str = "CLARION_TEST_POSTGRES";

/// The test server's URL; `None` when it is not configured here, after saying so on stderr
/// ("skipped: why"). Under `CI=true` a missing server is a failure, never a skip.
///
/// # Panics
/// Under `CI=true` when the variable is not set.
#[must_use]
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: {URL_VAR} is not set under CI=true; `.ci/run` starts PostgreSQL with \
                 scripts/postgres.sh and must export it"
            );
            #[allow(clippy::print_stderr)] // the skip must be visible in the test output
            {
                eprintln!(
                    "skipped: {test}: no PostgreSQL configured (set {URL_VAR}, e.g. eval \"$(bash scripts/postgres.sh start)\")"
                );
            }
            None
        }
    }
}

/// Creates a new, empty database on the server of `url` and returns the URL of it.
///
/// # Panics
/// When the server refuses (a test fixture: the test cannot go on).
pub async fn fresh_database(url: &str) -> String {
    let config: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|e| panic!("{URL_VAR} is not a URL: {e}"));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", crate::redact_url(url)));
    let driver = tokio::spawn(connection);
    let name = format!("clarion_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    drop(client);
    let _ = driver.await;
    replace_database(url, &name)
}

/// `url` naming database `name` instead of its own.
fn replace_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(slash) => &head[..scheme_end + slash],
        None => head,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A unique schema name for one test.
#[must_use]
pub fn fresh_schema() -> String {
    format!("clarion_test_{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            super::replace_database("postgres://u:p@h:1/postgres", "x"),
            "postgres://u:p@h:1/x"
        );
        assert_eq!(
            super::replace_database("postgres://u:p@h:1?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
    }
}
