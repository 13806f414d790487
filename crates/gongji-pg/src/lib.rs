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
/// Test support, not part of the product: built only with the `testkit` feature.
#[cfg(feature = "testkit")]
pub mod testkit;

pub use migrate::{migrate, Migration, MIGRATIONS};
pub use store::{
    connect_store, journal_first_op, journal_head, read_journal, verify_journal, JournalRecord,
    PgStore, PgStoreOptions,
};

/// How long a connection attempt may take when the connection string does not say
/// (`connect_timeout`). Without one, a host that drops packets (rather than refusing) holds
/// the caller for the kernel's SYN retries, minutes, and whoever waits for it with it.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `url` parsed, with [`CONNECT_TIMEOUT`] unless it names its own `connect_timeout`.
pub fn config(url: &str) -> Result<postgres::Config, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// Connects without TLS (the engine and its database sit on one host or a private network),
/// giving up after [`CONNECT_TIMEOUT`] unless the string says otherwise.
pub fn connect(url: &str) -> Result<postgres::Client, postgres::Error> {
    config(url)?.connect(postgres::NoTls)
}

/// `--store`: `None` for `files` (or nothing), the URL for a `postgres://…` one; anything else
/// is refused with a message that shows no password.
pub fn store_url(store: Option<&str>) -> Result<Option<&str>, String> {
    match store {
        None | Some("files") => Ok(None),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Some(url))
        }
        Some(other) => Err(format!(
            "--store {:?}: expected files or a postgres://… URL",
            redact(other)
        )),
    }
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
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// A connection string as it may appear in a log or an error: the password masked, in both
/// forms PostgreSQL takes (`postgres://user:pw@host/db?password=pw` and `key=value` pairs such
/// as `host=db password='p w'`). A string that parses as neither is hidden whole: nobody can
/// tell where its secret is.
pub fn redact(conn: &str) -> String {
    let url_form = ["postgres://", "postgresql://"]
        .iter()
        .any(|p| conn.len() >= p.len() && conn[..p.len()].eq_ignore_ascii_case(p));
    let redacted = if url_form {
        redact_url(conn)
    } else {
        redact_key_values(conn)
    };
    redacted.unwrap_or_else(|| "<connection string hidden: it does not parse>".to_owned())
}

const MASK: &str = "***";

fn redact_url(conn: &str) -> Option<String> {
    let mut url = url::Url::parse(conn).ok()?;
    if url.password().is_some() {
        url.set_password(Some(MASK)).ok()?;
    }
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if pairs.iter().any(|(k, _)| k == "password") {
        let mut query = url.query_pairs_mut();
        query.clear();
        for (k, v) in &pairs {
            query.append_pair(k, if k == "password" { MASK } else { v });
        }
    }
    Some(url.to_string())
}

/// libpq's `key = value` form: values bare or single-quoted with `\` escapes.
fn redact_key_values(conn: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut rest = conn.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return None;
        }
        rest = rest[eq + 1..].trim_start();
        let value_len = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut escaped = false;
            let close = quoted.char_indices().find(|&(_, c)| {
                let end = c == '\'' && !escaped;
                escaped = c == '\\' && !escaped;
                end
            })?;
            close.0 + 2
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        let value = &rest[..value_len];
        out.push(format!(
            "{key}={}",
            if key == "password" { MASK } else { value }
        ));
        rest = rest[value_len..].trim_start();
    }
    Some(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::{database_url, redact};

    #[test]
    fn with_database_replaces_only_the_database() {
        assert_eq!(
            database_url("postgres://u@h:1/postgres", "t"),
            "postgres://u@h:1/t"
        );
        assert_eq!(database_url("postgres://u@h:1", "t"), "postgres://u@h:1/t");
        assert_eq!(
            database_url("postgres://u@h:1/p?sslmode=disable", "t"),
            "postgres://u@h:1/t?sslmode=disable"
        );
    }

    #[test]
    fn connect_has_a_timeout_unless_the_string_names_one() {
        // Proves every connection gongji_pg::connect makes is bounded in time: the default
        // applies to both forms of connection string, and an explicit one is kept.
        for url in ["postgres://u@db/x", "host=db user=u dbname=x"] {
            let config = super::config(url).expect("parses");
            assert_eq!(config.get_connect_timeout(), Some(&super::CONNECT_TIMEOUT));
        }
        let config = super::config("postgres://u@db/x?connect_timeout=2").expect("parses");
        assert_eq!(
            config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(2))
        );
    }

    #[test]
    fn redact_hides_only_the_password() {
        // Proves: the password is masked in the URL's user info and query and in key=value
        // strings (bare, quoted, with escapes and spaces), everything else is kept, and a
        // string that parses as neither form is hidden whole.
        assert_eq!(
            redact("postgres://gj:secret@db:5432/x"),
            "postgres://gj:***@db:5432/x"
        );
        assert_eq!(redact("postgres://gj@db/x"), "postgres://gj@db/x");
        assert_eq!(
            redact("postgresql://gj@db/x?password=secret&sslmode=disable"),
            "postgresql://gj@db/x?password=***&sslmode=disable"
        );
        assert_eq!(
            redact("postgres://gj:p%40ss@db/x?connect_timeout=3"),
            "postgres://gj:***@db/x?connect_timeout=3"
        );
        assert_eq!(redact("host=/tmp user=x"), "host=/tmp user=x");
        assert_eq!(
            redact("host=db password=secret user=gj"),
            "host=db password=*** user=gj"
        );
        assert_eq!(
            redact("host = db  password = 'se cr\\'et' dbname=x"),
            "host=db password=*** dbname=x"
        );
        for hostile in [
            "password='unterminated",
            "postgres://[bad",
            "just words",
            "=x",
        ] {
            let r = redact(hostile);
            assert_eq!(
                r, "<connection string hidden: it does not parse>",
                "{hostile}"
            );
        }
        for conn in [
            "postgres://gj:secret@db/x",
            "postgres://gj@db/x?password=secret",
            "password=secret",
            "password='secret'",
            "host=db password = secret",
        ] {
            assert!(!redact(conn).contains("secret"), "{conn}");
        }
    }
}
