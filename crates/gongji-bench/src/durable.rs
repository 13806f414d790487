//! The durable benchmark: settlements through the real writer (queue → batch → journal →
//! fdatasync → reply) on a real file system, at several numbers of concurrent clients, beside
//! the PostgreSQL peer (`../shared/peers/pg/bench.sh`) run in the same invocation.
//!
//! The population has the peer's shape: N employees, every third bound to the two before it,
//! balances 500.00 to 5,499.99 yuan; each settlement picks a random person and a personally
//! borne part of 1.00 to 600.00 yuan, as `settle.pgbench` does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gongji_core::command::CREDIT_ITEMS_MAX;
use gongji_core::{Actor, Body, Fen, InstCode};
use gongji_server::{Config, Engine, WriteRequest, SUBMISSION_OP_COUNT_MAX};

use crate::population::{self, psn, Population, SetupOp, Triples, PEER_INST};
use crate::{thousands, Machine, SplitMix64};

#[derive(Clone, Debug)]
pub struct DurableOptions {
    pub persons: u32,
    pub clients: Vec<usize>,
    pub seconds: u64,
    /// Where the data directory is made (removed afterwards).
    pub dir: PathBuf,
    /// Path of the peer's bench.sh, when the peer should run.
    pub peer: Option<PathBuf>,
    /// A PostgreSQL server (`postgres://…`) on which to also run the engine with its journal
    /// in PostgreSQL (`--store`), in a database the benchmark creates and drops.
    pub store: Option<String>,
}

/// One measured run at a number of clients.
#[derive(Clone, Debug)]
pub struct Run {
    pub clients: usize,
    pub settlements: u64,
    pub per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub batches: u64,
    pub sync_ms_mean: f64,
    pub peer_tps: Option<f64>,
    pub peer_latency_ms: Option<f64>,
    /// The same run on the PostgreSQL store, when asked.
    pub pg_store: Option<Box<Run>>,
}

impl Run {
    /// The titles of the columns every table of runs starts with; `sync` names the durable
    /// commit (an fsync, or a PostgreSQL commit).
    pub(crate) fn head_titles(sync: &str) -> String {
        format!(
            "{:>8} {:>14} {:>9} {:>9} {:>9} {:>10} {:>9} {:>14}",
            "clients", "settlements/s", "p50 ms", "p99 ms", "max ms", "ops/batch", sync, "peer tps"
        )
    }

    /// This run's figures in the columns of [`Run::head_titles`], with the peer's `peer_tps`.
    pub(crate) fn head(&self, peer_tps: Option<f64>) -> String {
        let peer_tps = peer_tps.map_or("-".into(), |t| format!("{t:.0}"));
        format!(
            "{:>8} {:>14.0} {:>9.2} {:>9.2} {:>9.2} {:>10.1} {:>9.2} {:>14}",
            self.clients,
            self.per_second,
            self.p50_us as f64 / 1000.0,
            self.p99_us as f64 / 1000.0,
            self.max_us as f64 / 1000.0,
            self.settlements as f64 / self.batches.max(1) as f64,
            self.sync_ms_mean,
            peer_tps
        )
    }
}

fn admin(msgid: String, body: Body) -> WriteRequest {
    let actor = Actor::Admin;
    SetupOp { msgid, actor, body }.request(None)
}

/// Enrols the peer-shaped population: an institution, persons, bindings, credits.
pub(crate) fn populate(engine: &Engine, persons: u32) {
    let population = Population::Triples(Triples::peer(persons, CREDIT_ITEMS_MAX));
    population::submit(
        engine,
        &population,
        &mut Triples::rng(),
        SUBMISSION_OP_COUNT_MAX,
    )
    .expect("population");
}

/// Runs `clients` threads submitting one settlement each at a time for `seconds`.
pub(crate) fn measure(
    engine: &Arc<Engine>,
    persons: u32,
    clients: usize,
    seconds: u64,
    round: usize,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let batches_before = engine.counters().batches_total.load(Ordering::Relaxed);
    let sync_before = engine.counters().sync_nanos_total.load(Ordering::Relaxed);
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new((round * 100_000 + c) as u64 + 1);
                let mut latencies_us = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let part = rng.range(100, 60_000);
                    let body = Body::Settle {
                        fixmedins_code: InstCode::from(PEER_INST).expect("short"),
                        psn_no: psn(rng.range(1, u64::from(persons)) as u32),
                        medfee_sumamt: Fen(part),
                        fund_pay_sumamt: Fen(0),
                        acct_used: true,
                    };
                    let request = admin(format!("r{round}-c{c}-{n}"), body);
                    let t = Instant::now();
                    let result = engine.submit_wait(vec![request]).expect("engine running");
                    assert!(result[0].is_ok(), "settlement refused: {:?}", result[0]);
                    latencies_us.push(t.elapsed().as_micros() as u64);
                    n += 1;
                }
                latencies_us
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client"))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    let batches = engine.counters().batches_total.load(Ordering::Relaxed) - batches_before;
    let sync_nanos = engine.counters().sync_nanos_total.load(Ordering::Relaxed) - sync_before;
    Run {
        clients,
        settlements: latencies.len() as u64,
        per_second: latencies.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: *latencies.last().unwrap_or(&0),
        batches,
        sync_ms_mean: sync_nanos as f64 / 1e6 / batches.max(1) as f64,
        peer_tps: None,
        peer_latency_ms: None,
        pg_store: None,
    }
}

/// Runs the peer's bench.sh and reads pgbench's tps and mean latency.
pub(crate) fn peer(
    script: &Path,
    persons: u32,
    clients: usize,
    seconds: u64,
) -> Option<(f64, f64)> {
    peer_on_port(script, persons, clients, seconds, None)
}

/// [`peer`] with the port of the peer's throwaway cluster (`None`: bench.sh's default, 55432,
/// which another benchmark on the machine may be using).
pub(crate) fn peer_on_port(
    script: &Path,
    persons: u32,
    clients: usize,
    seconds: u64,
    port: Option<u16>,
) -> Option<(f64, f64)> {
    let mut args = vec![
        persons.to_string(),
        clients.to_string(),
        seconds.to_string(),
    ];
    args.extend(port.map(|p| p.to_string()));
    let out = Process::new("bash").arg(script).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let number = |prefix: &str| {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| {
            l.split(['=', ' '])
                .filter_map(|w| w.parse::<f64>().ok())
                .next()
        })
    };
    Some((number("tps")?, number("latency average")?))
}

pub fn durable_bench(opts: &DurableOptions) -> (Vec<Run>, String) {
    let dir = opts
        .dir
        .join(format!("gongji-durable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::new(&dir);
    config.snapshot_interval_ops = u64::MAX / 2;
    let (engine, _) = Engine::open(config.clone()).expect("engine opens");
    let engine = Arc::new(engine);
    let setup = Instant::now();
    populate(&engine, opts.persons);
    let setup_s = setup.elapsed().as_secs_f64();
    let mut pg = opts
        .store
        .as_deref()
        .map(|url| crate::durable_pg::PgEngine::start(url, &config, opts.persons));
    let mut runs = Vec::new();
    for (round, &clients) in opts.clients.iter().enumerate() {
        let mut run = measure(&engine, opts.persons, clients, opts.seconds, round);
        if let Some(pg) = &pg {
            run.pg_store = Some(Box::new(measure(
                &pg.engine,
                opts.persons,
                clients,
                opts.seconds,
                round,
            )));
        }
        if let Some(script) = &opts.peer {
            // The peer's throwaway cluster takes 64 connections, a few reserved.
            let peer_clients = clients.min(crate::httpload::PEER_CLIENTS_MAX);
            if let Some((tps, ms)) = peer(script, opts.persons, peer_clients, opts.seconds) {
                run.peer_tps = Some(tps);
                run.peer_latency_ms = Some(ms);
            }
        }
        runs.push(run);
    }
    let journal_bytes = engine
        .counters()
        .journal_bytes_total
        .load(Ordering::Relaxed);
    let ops = engine.counters().journal_head_op.load(Ordering::Relaxed);
    engine.shutdown().expect("clean shutdown");
    drop(engine);
    let snapshot_bytes = dir_bytes(&config.journal_dir(), ".snap");
    let recovery = Instant::now();
    let (engine, report) = Engine::open(config).expect("recovers");
    let recovery_s = recovery.elapsed().as_secs_f64();
    engine.shutdown().expect("clean shutdown");
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);

    let mut out = String::new();
    let _ = writeln!(out, "machine: {}", Machine::detect());
    let _ = writeln!(
        out,
        "population: {} persons (every third bound to the two before), setup {setup_s:.1} s",
        thousands(u64::from(opts.persons))
    );
    let _ = writeln!(
        out,
        "{} {:>9} {:>7}  (peer clients: at most 48)",
        Run::head_titles("fsync ms"),
        "peer ms",
        "ratio"
    );
    for r in &runs {
        let peer_ms = r.peer_latency_ms.map_or("-".into(), |t| format!("{t:.2}"));
        let ratio = r
            .peer_tps
            .map_or("-".into(), |t| format!("{:.1}x", r.per_second / t));
        let _ = writeln!(out, "{} {peer_ms:>9} {ratio:>7}", r.head(r.peer_tps));
    }
    if let Some(pg) = pg.take() {
        out.push_str(&pg.finish(&runs));
    }
    let settlements: u64 = runs.iter().map(|r| r.settlements).sum();
    let _ = writeln!(
        out,
        "journal: {} ops, {} bytes written, {:.0} bytes per op",
        ops,
        thousands(journal_bytes),
        journal_bytes as f64 / ops.max(1) as f64
    );
    let _ = writeln!(
        out,
        "snapshot: {} bytes, {:.0} bytes per person",
        thousands(snapshot_bytes),
        snapshot_bytes as f64 / f64::from(opts.persons.max(1))
    );
    let _ = writeln!(out, "recovery: {recovery_s:.2} s to start ({} ops replayed after snapshot op {:?}; {settlements} settlements measured)", report.replayed_ops, report.snapshot_op);
    (runs, out)
}

fn dir_bytes(dir: &Path, suffix: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[derive(Clone, Debug)]
pub struct RecoveryOptions {
    pub persons: u32,
    /// Settlements journaled after the population.
    pub settlements: u64,
    pub dir: PathBuf,
    /// Leave the data directory in place (its path is printed), with its shutdown snapshot,
    /// so that a start of `gongji serve` on it can be timed or profiled.
    pub keep: bool,
    /// Journal nothing: time one start on this existing data directory (one kept by `keep`,
    /// or made by `gongji simulate --data`).
    pub reuse: Option<PathBuf>,
}

/// One start on an existing data directory, timed: wall, CPU (all threads), resident memory.
fn reuse_bench(dir: &std::path::Path) -> String {
    let load = |s: &str| {
        let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        format!(
            "{s} {}",
            avg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        )
    };
    let before = load("load average before");
    let config = Config::new(dir);
    let (cpu, t) = (crate::sys::process_cpu_seconds(), Instant::now());
    let (engine, report) = Engine::open(config).expect("recovers");
    let (secs, cpu) = (
        t.elapsed().as_secs_f64(),
        crate::sys::process_cpu_seconds() - cpu,
    );
    let rss = crate::sys::Rss::now();
    let persons = engine.read(|s| s.person_count());
    engine.shutdown().expect("clean shutdown");
    let mut out = String::new();
    let _ = writeln!(out, "machine: {}", Machine::detect());
    let _ = writeln!(
        out,
        "start on {}: {secs:.2} s, {cpu:.2} s of CPU (all threads), {} persons, {} ops replayed after snapshot op {:?}, {} history chunks attached",
        dir.display(),
        thousands(persons as u64),
        thousands(report.replayed_ops),
        report.snapshot_op,
        report.history_chunks
    );
    let _ = writeln!(out, "rss after the start = {rss}");
    let _ = writeln!(out, "{before}; {}", load("after"));
    out
}

/// Journals a population and `settlements` settlements through the real writer, then times
/// start-up twice: from the shutdown snapshot (nothing to replay), and with every snapshot but
/// the first removed, so that the whole journal is replayed (the worst case: a crash long
/// after the last snapshot).
pub fn recovery_bench(opts: &RecoveryOptions) -> String {
    if let Some(dir) = &opts.reuse {
        return reuse_bench(dir);
    }
    let dir = opts
        .dir
        .join(format!("gongji-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::new(&dir);
    config.snapshot_interval_ops = u64::MAX / 2;
    let (engine, _) = Engine::open(config.clone()).expect("engine opens");
    let started = Instant::now();
    populate(&engine, opts.persons);
    let mut rng = SplitMix64::new(3);
    let mut n = 0u64;
    while n < opts.settlements {
        let count = (opts.settlements - n).min(SUBMISSION_OP_COUNT_MAX as u64);
        let requests = (0..count)
            .map(|k| {
                let part = rng.range(100, 60_000);
                let body = Body::Settle {
                    fixmedins_code: InstCode::from(PEER_INST).expect("short"),
                    psn_no: psn(rng.range(1, u64::from(opts.persons)) as u32),
                    medfee_sumamt: Fen(part),
                    fund_pay_sumamt: Fen(0),
                    acct_used: true,
                };
                admin(format!("rec-{}", n + k), body)
            })
            .collect();
        population::submit_wait(&engine, requests).expect("settlements");
        n += count;
    }
    let load_s = started.elapsed().as_secs_f64();
    let ops = engine.counters().journal_head_op.load(Ordering::Relaxed);
    let journal_bytes = engine
        .counters()
        .journal_bytes_total
        .load(Ordering::Relaxed);
    engine.shutdown().expect("clean shutdown");
    drop(engine);
    let time_open = |config: &Config| {
        let t = Instant::now();
        let (engine, report) = Engine::open(config.clone()).expect("recovers");
        let secs = t.elapsed().as_secs_f64();
        let persons = engine.read(|s| s.person_count());
        engine.shutdown().expect("clean shutdown");
        (secs, report.replayed_ops, persons)
    };
    let (with_snapshot_s, replayed_a, _) = time_open(&config);
    // Keep only the genesis snapshot: the next start replays every op.
    for entry in std::fs::read_dir(config.journal_dir())
        .expect("journal dir")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".snap") && gongji_journal::parse_snapshot_name(&name) != Some(0) {
            std::fs::remove_file(entry.path()).expect("remove snapshot");
        }
    }
    let (replay_s, replayed_b, persons) = time_open(&config);
    if !opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut out = String::new();
    let _ = writeln!(out, "machine: {}", Machine::detect());
    let _ = writeln!(
        out,
        "journaled {} ops ({} bytes) for {} persons and {} settlements in {load_s:.1} s",
        thousands(ops),
        thousands(journal_bytes),
        thousands(u64::from(persons as u32)),
        thousands(opts.settlements)
    );
    let _ = writeln!(
        out,
        "start from the shutdown snapshot: {with_snapshot_s:.2} s ({replayed_a} ops replayed)"
    );
    let _ = writeln!(
        out,
        "start from the journal alone:     {replay_s:.2} s ({} ops replayed)",
        thousands(replayed_b)
    );
    if opts.keep {
        let _ = writeln!(out, "data directory kept: {}", dir.display());
    }
    out
}
