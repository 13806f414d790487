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
    match store {
        None | Some("files") => Ok(None),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Some(url))
        }
        Some(other) => bail!(
            "--store {:?}: expected files or a postgres://… URL",
            redact(other)
        ),
    }
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
    println!(
        "replay: snapshot at op {}, {} ops replayed, {} persons, state check ok ({} ms)",
        report
            .snapshot_op
            .map_or("none".to_owned(), |op| op.to_string()),
        report.replayed_ops,
        state.person_count(),
        report.elapsed.as_millis()
    );
    for skipped in &report.skipped_snapshots {
        println!("snapshot skipped: {} ({})", skipped.file, skipped.defect);
    }
    if head != chain_head {
        bail!(
            "recovery ends at op {} but the journal's head is op {}",
            head.op,
            chain_head.op
        );
    }
    println!("head op {} hash {}", head.op, hex::encode(head.chain_hash));
    let state_hash = state.state_hash();
    println!("state hash {}", hex::encode(state_hash));
    let mut store = PgStore::open_read_only(url)?;
    match gongji_server::replay_from_genesis_store(config, &mut store, state.params().clone())
        .context("replay from op 1 failed")?
    {
        Some((genesis, genesis_head)) => {
            if genesis_head != head || genesis.state_hash() != state_hash {
                bail!(
                    "the snapshot disagrees with the journal: replay from op 1 gives state hash {} at op {}",
                    hex::encode(genesis.state_hash()),
                    genesis_head.op
                );
            }
            println!("replay from op 1: {} ops, same state hash", genesis_head.op);
        }
        None => println!("replay from op 1: not possible, early rows were removed"),
    }
    Ok(())
}
