//! `--store`: where `serve`, `verify`, `report` and `token` keep the journal and snapshots.
//! Without it (or with `files`) they are files in the data directory; with `postgres://…`
//! they are in that PostgreSQL database (`gongji_pg::PgStore`), while the data directory
//! still holds the admin token, the directory lock and a `store` file naming the store.

use anyhow::{bail, Context, Result};
use gongji_core::State;
use gongji_journal::Anchor;
use gongji_pg::{redact, PgStore, PgStoreOptions};
use gongji_server::{Config, Engine, OpenReport};

/// The PostgreSQL URL of a `--store` value; `None` for files.
pub fn postgres_url(store: Option<&str>) -> Result<Option<&str>> {
    gongji_pg::store_url(store).map_err(anyhow::Error::msg)
}

/// Opens the engine for serving (or `token`) on the data directory and the store.
pub fn open_engine(config: Config, store: Option<&str>) -> Result<(Engine, OpenReport)> {
    let dir = config.data_dir.display().to_string();
    match postgres_url(store)? {
        None => Engine::open(config).with_context(|| format!("cannot start on {dir}")),
        Some(url) => {
            let store = PgStore::open(url, PgStoreOptions::default())?;
            Engine::open_with(config, "postgres", Box::new(store))
                .with_context(|| format!("cannot start on {dir} with {}", redact(url)))
        }
    }
}

/// Recovers read-only (nothing changes) and returns the state and the journal head.
pub fn inspect(config: &Config, store: Option<&str>) -> Result<(State, Anchor, OpenReport)> {
    Ok(match postgres_url(store)? {
        None => gongji_server::inspect(config)?,
        Some(url) => gongji_server::inspect_store(config, &mut PgStore::open_read_only(url)?)?,
    })
}

/// `gongji verify --store postgres://…`: the journal rows (gaps, chain), recovery from the
/// newest snapshot, the state check, and replay from op 1 compared with it. Changes nothing.
pub fn verify_postgres(url: &str, config: &Config) -> Result<()> {
    let mut client = gongji_pg::connect_store(url)?;
    let (rows, chain_head) =
        gongji_pg::verify_journal(&mut client).context("journal verification failed")?;
    println!(
        "journal: {rows} rows verified in {}, head op {}",
        redact(url),
        chain_head.op
    );
    let (state, head, report) = inspect(config, Some(url)).context("replay failed")?;
    crate::ops::check_recovery(&state, &report)?;
    if head != chain_head {
        bail!(
            "recovery ends at op {} but the journal's head is op {}",
            head.op,
            chain_head.op
        );
    }
    let mut store = PgStore::open_read_only(url)?;
    let genesis =
        gongji_server::replay_from_genesis_store(config, &mut store, state.params().clone())
            .context("replay from op 1 failed")?;
    crate::ops::compare_with_genesis(&state, head, genesis, "rows")
}
