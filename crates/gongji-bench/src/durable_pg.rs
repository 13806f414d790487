//! The durable benchmark on the PostgreSQL store: the same engine, population and clients with
//! the journal and snapshots in PostgreSQL (`gongji serve --store`), in a database created for
//! the run on the given server and dropped afterwards. Each batch is one multi-row INSERT, one
//! durable commit.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use gongji_pg::{redact, PgStore, PgStoreOptions};
use gongji_server::{Config, Engine};

use crate::durable::{populate, Run};
use crate::thousands;

pub(crate) struct PgEngine {
    pub engine: Arc<Engine>,
    config: Config,
    server_url: String,
    db_url: String,
    db_name: String,
    setup_s: f64,
}

fn settings(client: &mut postgres::Client) -> String {
    let show = |c: &mut postgres::Client, name: &str| {
        c.query_one(&format!("SHOW {name}"), &[])
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_else(|_| "?".into())
    };
    format!(
        "PostgreSQL {}, fsync={}, synchronous_commit={}, shared_buffers={}",
        show(client, "server_version"),
        show(client, "fsync"),
        show(client, "synchronous_commit"),
        show(client, "shared_buffers")
    )
}

impl PgEngine {
    /// Creates the database, opens the engine on it and enrols the population.
    pub fn start(url: &str, config: &Config, persons: u32) -> PgEngine {
        let db_name = format!("gongji_bench_{}", std::process::id());
        let mut admin = gongji_pg::connect_store(url).unwrap_or_else(|e| panic!("{e}"));
        for sql in [
            format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"),
            format!("CREATE DATABASE {db_name}"),
        ] {
            admin.batch_execute(&sql).unwrap_or_else(|e| {
                panic!(
                    "cannot create the benchmark database on {}: {}",
                    redact(url),
                    gongji_pg::store::describe(&e)
                )
            });
        }
        let db_url = gongji_pg::database_url(url, &db_name);
        let store =
            PgStore::open(&db_url, PgStoreOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let (engine, _) = Engine::open_store(config.clone(), Box::new(store))
            .unwrap_or_else(|e| panic!("the engine on the PostgreSQL store: {e}"));
        let setup = Instant::now();
        populate(&engine, persons);
        PgEngine {
            engine: Arc::new(engine),
            config: config.clone(),
            server_url: url.to_owned(),
            db_url,
            db_name,
            setup_s: setup.elapsed().as_secs_f64(),
        }
    }

    /// Shuts down (final snapshot into PostgreSQL), times a recovery from PostgreSQL, drops the
    /// database, and renders the table beside the file store's and the peer's figures.
    pub fn finish(self, runs: &[Run]) -> String {
        let stop = Instant::now();
        self.engine.shutdown().expect("clean shutdown");
        let shutdown_s = stop.elapsed().as_secs_f64();
        // After the shutdown: idle ticks may have been journaled until then.
        let c = self.engine.counters();
        let bytes = c.journal_bytes_total.load(Ordering::Relaxed);
        let ops = c.journal_head_op.load(Ordering::Relaxed);
        let hash = self.engine.read(|s| s.state_hash());
        drop(self.engine);
        let mut client = gongji_pg::connect_store(&self.db_url).expect("connect");
        let server = settings(&mut client);
        let table_bytes: i64 = client
            .query_one("SELECT pg_total_relation_size('gongji_journal')", &[])
            .map(|r| r.get(0))
            .unwrap_or(0);
        drop(client);
        let recovery = Instant::now();
        let store = PgStore::open(&self.db_url, PgStoreOptions::default()).expect("store reopens");
        let (engine, report) =
            Engine::open_store(self.config.clone(), Box::new(store)).expect("recovers");
        let recovery_s = recovery.elapsed().as_secs_f64();
        let same = engine.read(|s| s.state_hash()) == hash;
        engine.shutdown().expect("clean shutdown");
        drop(engine);
        if let Ok(mut admin) = gongji_pg::connect_store(&self.server_url) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ));
        }

        let mut out = String::new();
        let _ = writeln!(
            out,
            "PostgreSQL store ({}; {server}), setup {:.1} s:",
            redact(&self.server_url),
            self.setup_s
        );
        let _ = writeln!(
            out,
            "{} {:>9} {:>9}",
            Run::head_titles("commit ms"),
            "vs peer",
            "vs files"
        );
        for r in runs {
            let Some(p) = &r.pg_store else { continue };
            let ratio = r
                .peer_tps
                .map_or("-".into(), |t| format!("{:.1}x", p.per_second / t));
            let _ = writeln!(
                out,
                "{} {ratio:>9} {:>8.2}x",
                p.head(r.peer_tps),
                p.per_second / r.per_second.max(1e-9)
            );
        }
        let _ = writeln!(
            out,
            "PostgreSQL journal: {} ops, {} bytes sent, table {} bytes; shutdown (snapshot) {shutdown_s:.1} s; \
             recovery from PostgreSQL {recovery_s:.2} s ({} ops replayed after snapshot op {:?}), same state hash: {same}",
            thousands(ops),
            thousands(bytes),
            thousands(table_bytes.max(0) as u64),
            report.replayed_ops,
            report.snapshot_op
        );
        out
    }
}
