//! `gongji project` (one-shot catch-up of the SQL projection from a data directory) and the
//! projector thread of `gongji serve --projection URL`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gongji_pg::projection::{
    FileJournalSource, OpSource, PgJournalSource, Projector, ProjectorConfig,
};
use gongji_server::Engine;

#[derive(Debug, clap::Args)]
pub struct ProjectArgs {
    /// Data directory whose journal to project.
    #[arg(long, default_value = "./gongji-data")]
    pub data: PathBuf,
    /// Where the journal is: `files` (the data directory) or the `postgres://…` URL the server
    /// was started with as `--store`.
    #[arg(long)]
    pub store: Option<String>,
    /// PostgreSQL connection string of the projection database.
    #[arg(long)]
    pub projection: String,
    /// The engine's TOML file: required for a federated engine, whose `[federation]` table
    /// the projector must be given (a journal of another table, or of none, is refused).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Empty the projection and load it again from the newest snapshot, then catch up.
    #[arg(long)]
    pub rebuild: bool,
    /// Most ops written in one transaction.
    #[arg(long, default_value_t = 20_000)]
    pub chunk_ops: usize,
    /// Instead: measure the projection's lag behind a real writer (fsync on) under full load,
    /// for this many seconds, in a temporary data directory under --data.
    #[arg(long)]
    pub bench_lag_seconds: Option<u64>,
    /// Persons of the lag benchmark's population.
    #[arg(long, default_value_t = 100_000)]
    pub bench_persons: u32,
    /// Client threads of the lag benchmark, each submitting batches of settlements.
    #[arg(long, default_value_t = 8)]
    pub bench_clients: usize,
    /// Settlements per submission in the lag benchmark (1: one per request).
    #[arg(long, default_value_t = 200)]
    pub bench_batch: usize,
    /// Settlements per second the lag benchmark's clients hold together (0: as fast as the
    /// writer takes them).
    #[arg(long, default_value_t = 0)]
    pub bench_rate: u64,
}

pub fn run(args: ProjectArgs) -> Result<()> {
    if let Some(seconds) = args.bench_lag_seconds {
        return gongji_bench::projection_lag_bench(&gongji_bench::LagOptions {
            data: args.data.clone(),
            projection: args.projection.clone(),
            persons: args.bench_persons,
            clients: args.bench_clients,
            batch: args.bench_batch,
            rate: args.bench_rate,
            seconds,
        })
        .map_err(anyhow::Error::msg);
    }
    let started = Instant::now();
    let journal_dir = args.data.join("journal");
    let source = source(args.store.as_deref(), &journal_dir, None)?;
    let federation = match &args.config {
        Some(path) => {
            let mut engine = gongji_server::Config::new(&args.data);
            crate::config::ConfigFile::load(path)?.apply(&mut engine)?;
            engine.federation
        }
        None => None,
    };
    let config = ProjectorConfig {
        chunk_ops_max: args.chunk_ops.max(1),
        federation,
        ..ProjectorConfig::default()
    };
    let mut projector = Projector::open(&args.projection, source, config, args.rebuild)?;
    let opened = projector.cursor().op;
    projector.catch_up()?;
    let stats = projector.stats();
    let cursor = projector.cursor();
    if let Some(op) = stats.rebuilt_from {
        println!("loaded from the snapshot at op {op}");
    }
    if stats.replayed_at_open > 0 {
        println!(
            "replayed {} ops already projected to rebuild the replica",
            stats.replayed_at_open
        );
    }
    println!(
        "projected {} ops after op {opened} in {:.2} s",
        stats.ops_projected,
        started.elapsed().as_secs_f64()
    );
    println!("rows written: {}", stats.rows);
    println!(
        "cursor: op {} chain {}",
        cursor.op,
        hex::encode(cursor.chain_hash)
    );
    Ok(())
}

/// The projector beside a running engine: follows the journal behind the writer.
#[derive(Debug)]
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Running {
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        if self.thread.join().is_err() {
            tracing::error!("the projector thread panicked");
        }
    }
}

/// The journal the projector follows: the data directory's files (read only up to the
/// writer's durable head when `engine` runs beside it), or the PostgreSQL store's table, whose
/// rows are visible only once committed.
pub(crate) fn source(
    store: Option<&str>,
    journal_dir: &Path,
    engine: Option<&Arc<Engine>>,
) -> Result<Box<dyn OpSource>> {
    Ok(match crate::store::postgres_url(store)? {
        Some(url) => Box::new(PgJournalSource::new(url)?),
        None => {
            let source = FileJournalSource::new(journal_dir)?;
            match engine {
                Some(engine) => {
                    let writer = engine.clone();
                    Box::new(source.with_durable_head(move || {
                        writer.counters().journal_head_op.load(Ordering::Acquire)
                    }))
                }
                None => Box::new(source),
            }
        }
    })
}

pub(crate) fn open(
    url: &str,
    store: Option<&str>,
    engine: &Arc<Engine>,
    journal_dir: &Path,
) -> Result<Projector<Box<dyn OpSource>>> {
    let source = source(store, journal_dir, Some(engine))?;
    // A federated engine's journal is projected with its table (docs/FEDERATION.md).
    let config = ProjectorConfig {
        federation: engine.federation(),
        ..ProjectorConfig::default()
    };
    Ok(Projector::open(url, source, config, false)?)
}

/// Follows the journal on a thread. Only a malformed URL stops the start; everything that
/// touches the database happens on the thread, so `serve` binds its listener without waiting:
/// a database that is down, unreachable (packets dropped: each attempt ends after
/// `gongji_pg::CONNECT_TIMEOUT`) or refusing this journal leaves `gongji_projection_up 0` and
/// is retried with backoff, and an error later reopens the projector the same way (its replica
/// may be ahead of the tables after a failed commit).
pub fn spawn(
    url: &str,
    store: Option<&str>,
    engine: &Arc<Engine>,
    journal_dir: PathBuf,
) -> Result<Running> {
    gongji_pg::check_url(url)
        .map_err(anyhow::Error::msg)
        .context("--projection is not a PostgreSQL connection string")?;
    gongji_http::prometheus(); // installs the recorder, so the gauge below is not lost
    metrics::gauge!("gongji_projection_up").set(0.0);
    let stop = Arc::new(AtomicBool::new(false));
    let (url, store, engine, flag) = (
        url.to_string(),
        store.map(str::to_owned),
        engine.clone(),
        stop.clone(),
    );
    let thread = std::thread::Builder::new()
        .name("projector".into())
        .spawn(move || follow(&url, store.as_deref(), &engine, &journal_dir, &flag))
        .context("projector thread")?;
    Ok(Running { stop, thread })
}

fn follow(
    url: &str,
    store: Option<&str>,
    engine: &Arc<Engine>,
    journal_dir: &Path,
    stop: &AtomicBool,
) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    while !stop.load(Ordering::Acquire) {
        match open(url, store, engine, journal_dir) {
            Ok(mut projector) => {
                metrics::gauge!("gongji_projection_up").set(1.0);
                tracing::info!(
                    cursor = projector.cursor().op,
                    url = %gongji_pg::redact(url),
                    "projection opened"
                );
                backoff = Duration::from_millis(100);
                match projector.follow(stop) {
                    Ok(()) => return,
                    Err(e) => tracing::error!("projection stopped: {e}; reopening"),
                }
            }
            Err(e) if first => tracing::error!(
                "the SQL projection cannot open: {e:#}; serving without it, retrying"
            ),
            Err(e) => tracing::error!("projection cannot open: {e:#}"),
        }
        first = false;
        metrics::gauge!("gongji_projection_up").set(0.0);
        sleep_unless_stopped(backoff, stop);
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Sleeps `duration` in short steps, so that shutdown does not wait out a 30 s backoff.
fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    while !stop.load(Ordering::Acquire) && Instant::now() < until {
        std::thread::sleep(
            Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())),
        );
    }
}
