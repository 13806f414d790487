//! Versioned schema migrations, applied on start.
//!
//! Each migration is a SQL file under `migrations/`, compiled into the binary and listed in
//! [`MIGRATIONS`] in version order. [`migrate`] applies the ones a database lacks, each in its
//! own transaction, under an advisory lock so that two processes starting together do not race.
//! The text of every applied migration is recorded by hash: a database whose applied migration
//! differs from this binary's is refused rather than silently diverging.

use postgres::Client;

/// One migration: a version (strictly increasing), a name, and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations of this build, in version order. Add new files at the end; never edit one
/// that has shipped.
/// Version 1 is the store's (the journal and snapshots in PostgreSQL); version 2 the
/// projection's (schema `gongji`), version 3 its federated tables (exchanges, cross-engine
/// bindings) and the statistics counting accepted exchanges. The store's applies without the
/// projection's.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "store",
        sql: include_str!("../migrations/0001_store.sql"),
    },
    Migration {
        version: 2,
        name: "projection",
        sql: include_str!("../migrations/0002_projection.sql"),
    },
    Migration {
        version: 3,
        name: "federation",
        sql: include_str!("../migrations/0003_federation.sql"),
    },
    Migration {
        version: 4,
        name: "exchange sender",
        sql: include_str!("../migrations/0004_exchange_sender.sql"),
    },
];

/// The advisory lock key that serializes migrations (`'gongji'` as bytes).
const LOCK_KEY: i64 = 0x67_6f_6e_67_6a_69;

#[derive(Debug)]
pub enum MigrateError {
    Postgres(postgres::Error),
    /// An applied migration's text differs from this build's.
    Changed {
        version: i32,
        name: String,
    },
    /// The database has a migration this build does not know: it was written by a newer one.
    Newer {
        version: i32,
    },
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrateError::Postgres(e) => write!(f, "postgresql: {e}"),
            MigrateError::Changed { version, name } => write!(
                f,
                "migration {version} ({name}) applied to this database differs from this build's"
            ),
            MigrateError::Newer { version } => write!(
                f,
                "the database has migration {version}, which this build does not know: \
                 it was written by a newer gongji"
            ),
        }
    }
}

impl std::error::Error for MigrateError {}

impl From<postgres::Error> for MigrateError {
    fn from(e: postgres::Error) -> Self {
        MigrateError::Postgres(e)
    }
}

/// Applies the missing ones of `migrations`; returns the versions it applied.
pub fn migrate(client: &mut Client, migrations: &[Migration]) -> Result<Vec<i32>, MigrateError> {
    debug_assert!(migrations.windows(2).all(|w| w[0].version < w[1].version));
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS gongji_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             sha        text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let applied: Vec<(i32, String, String)> = tx
        .query(
            "SELECT version, name, sha FROM gongji_migrations ORDER BY version",
            &[],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    for (version, name, sha) in &applied {
        match migrations.iter().find(|m| m.version == *version) {
            None => return Err(MigrateError::Newer { version: *version }),
            Some(m) if sha_of(m.sql) != *sha => {
                return Err(MigrateError::Changed {
                    version: *version,
                    name: name.clone(),
                })
            }
            Some(_) => {}
        }
    }
    let mut done = Vec::new();
    for m in migrations {
        if applied.iter().any(|(v, _, _)| *v == m.version) {
            continue;
        }
        tx.batch_execute(m.sql)?;
        tx.execute(
            "INSERT INTO gongji_migrations (version, name, sha) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &sha_of(m.sql)],
        )?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        done.push(m.version);
    }
    tx.commit()?;
    Ok(done)
}

fn sha_of(sql: &str) -> String {
    hex::encode(blake3::hash(sql.as_bytes()).as_bytes())
}
