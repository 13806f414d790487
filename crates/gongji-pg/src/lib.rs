//! PostgreSQL for sites that run on it: the journal and snapshots as a store
//! (`gongji serve --store postgres://…`), the SQL projection for analysts
//! (`--projection postgres://…`, `gongji project --rebuild`), and the versioned migrations both
//! apply on start.
//!
//! Everything here talks to a real server through `postgres`, the blocking client built on
//! `tokio-postgres`: the writer thread and the projector are plain threads, and a blocking
//! client keeps them so.

pub mod migrate;
pub mod projection;
pub mod store;
pub mod testkit;

pub use migrate::{migrate, Migration, MIGRATIONS};
pub use store::{
    connect_store, journal_first_op, journal_head, read_journal, verify_journal, JournalRecord,
    PgStore, PgStoreOptions,
};

/// Connects without TLS: the engine and its database sit on one host or a private network.
pub fn connect(url: &str) -> Result<postgres::Client, postgres::Error> {
    postgres::Client::connect(url, postgres::NoTls)
}

/// Checks that `url` is a connection string at all (nothing is contacted), so that a typo is
/// refused at start while an unreachable server is waited for.
pub fn check_url(url: &str) -> Result<(), String> {
    url.parse::<postgres::Config>()
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", redact(url)))
}

/// The URL `url` with its database replaced by `database` (`postgres://…/database?…`).
pub fn database_url(url: &str, database: &str) -> String {
    testkit::with_database(url, database)
}

/// Masks a connection string's password for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((auth, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://gj:secret@db:5432/x"),
            "postgres://gj:***@db:5432/x"
        );
        assert_eq!(redact("postgres://gj@db/x"), "postgres://gj@db/x");
        assert_eq!(redact("host=/tmp user=x"), "host=/tmp user=x");
    }
}
