//! [`projection_lag_bench`] (`gongji project --bench-lag-seconds N`): the SQL projection's lag behind a real writer
//! (fsync on, in-process `Engine`) under full load. A sampler reads the writer's durable head
//! and the projector's committed cursor every 5 ms; an op's lag is the time from the first
//! sample where it is durable to the first where it is projected.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gongji_core::{Actor, Body, Fen, InstCode, Msgid, PsnNo, Relation};
use gongji_server::{Config, Engine, WriteRequest};

use crate::population::{self, Population, Triples};

/// What `gongji project --bench-lag-seconds` passes on.
#[derive(Clone, Debug)]
pub struct LagOptions {
    /// Parent of the temporary data directory.
    pub data: PathBuf,
    /// Connection string of the projection database.
    pub projection: String,
    pub persons: u32,
    pub clients: usize,
    /// Settlements per submission.
    pub batch: usize,
    /// Settlements per second all clients hold together (0: as fast as the writer takes them).
    pub rate: u64,
    pub seconds: u64,
}

/// The institution of the population and of every settlement.
const INST: &str = "H4401060001";

type Result<T, E = String> = std::result::Result<T, E>;

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn request(msgid: String, body: Body) -> WriteRequest {
    WriteRequest {
        msgid: Msgid::from(&msgid).expect("short msgid"),
        inf_time: None,
        actor: Actor::Admin,
        body,
    }
}

/// Persons `P0`… (every third person a receiver bound to the two before it, with 1.00 yuan so
/// that its settlements draw on its givers), one institution, a credit for every person.
fn populate(engine: &Engine, persons: u32) -> Result<()> {
    let population = Population::Triples(Triples {
        first: 0,
        persons,
        inst_code: INST,
        inst_name: "医院",
        area: 440_106,
        admdvs: |i| if i % 2 == 0 { 440_106 } else { 440_305 },
        relation: Relation::Parent,
        credit_items: 4_000,
        period: gongji_core::time::period_of(1_748_000_000),
        amount: |i, _| Fen(if i % 3 == 2 { 100 } else { 5_000_000 }),
    });
    population::submit(engine, &population, &mut Triples::rng(), 4_000)
}

pub fn projection_lag_bench(args: &LagOptions) -> Result<()> {
    let seconds = args.seconds;
    let dir = args
        .data
        .join(format!("gongji-lag-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _cleanup = RemoveOnDrop(dir.clone());
    let config = Config::new(&dir);
    let (engine, _) = Engine::open(config.clone()).map_err(text)?;
    let engine = Arc::new(engine);
    let started = Instant::now();
    populate(&engine, args.persons)?;
    let head = || engine.counters().journal_head_op.load(Ordering::Acquire);
    println!(
        "population: {} persons, {} ops in {:.1} s",
        args.persons,
        head(),
        started.elapsed().as_secs_f64()
    );
    // A fresh engine: the projection database is emptied and loaded from its first snapshot.
    let writer = engine.clone();
    let source = gongji_pg::projection::FileJournalSource::new(config.journal_dir())
        .map_err(text)?
        .with_durable_head(move || writer.counters().journal_head_op.load(Ordering::Acquire));
    let mut projector = gongji_pg::projection::Projector::open(
        &args.projection,
        source,
        gongji_pg::projection::ProjectorConfig::default(),
        true,
    )
    .map_err(text)?;
    let caught = Instant::now();
    projector.catch_up().map_err(text)?;
    println!(
        "projection of the population: cursor {} in {:.1} s",
        projector.cursor().op,
        caught.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let cursor = Arc::new(AtomicU64::new(projector.cursor().op));
    let projector_thread = {
        let (stop, cursor) = (stop.clone(), cursor.clone());
        std::thread::spawn(move || -> Result<gongji_pg::projection::ProjectorStats> {
            while !stop.load(Ordering::Acquire) {
                if projector.step().map_err(text)? == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                cursor.store(projector.cursor().op, Ordering::Release);
            }
            Ok(projector.stats())
        })
    };
    let settled = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let (engine, stop, settled) = (engine.clone(), stop.clone(), settled.clone());
            let (batch, persons) = (args.batch.max(1), args.persons);
            let rate_per_client = args.rate as f64 / args.clients.max(1) as f64;
            std::thread::spawn(move || {
                let mut n: u64 = 0;
                let started = Instant::now();
                while !stop.load(Ordering::Acquire) {
                    if rate_per_client > 0.0 {
                        // Hold the rate: wait until this client's next batch is due.
                        let due = Duration::from_secs_f64(n as f64 / rate_per_client);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let requests: Vec<WriteRequest> = (0..batch)
                        .map(|_| {
                            n += 1;
                            let receiver = (n * 3 + 2) % u64::from(persons.max(3));
                            request(
                                format!("s{c}-{n}"),
                                Body::Settle {
                                    fixmedins_code: InstCode::from(INST).expect("short"),
                                    psn_no: PsnNo::from(&format!("P{receiver}")).expect("short"),
                                    medfee_sumamt: Fen(12_000),
                                    fund_pay_sumamt: Fen(4_000),
                                    acct_used: true,
                                },
                            )
                        })
                        .collect();
                    if let Ok(results) = engine.submit_wait(requests) {
                        settled.fetch_add(
                            results.iter().filter(|r| r.is_ok()).count() as u64,
                            Ordering::Relaxed,
                        );
                    }
                }
            })
        })
        .collect();

    // Sample (time, durable head, projected cursor).
    let load_started = Instant::now();
    let first_op = head();
    let mut samples: Vec<(Duration, u64, u64)> = Vec::new();
    while load_started.elapsed() < Duration::from_secs(seconds) {
        samples.push((
            load_started.elapsed(),
            head(),
            cursor.load(Ordering::Acquire),
        ));
        std::thread::sleep(Duration::from_millis(5));
    }
    let load_secs = load_started.elapsed().as_secs_f64();
    let last_head = head();
    stop.store(true, Ordering::Release);
    for c in clients {
        let _ = c.join();
    }
    let stats = projector_thread
        .join()
        .map_err(|_| "projector panicked".to_owned())??;
    // Lag of each sampled head: until the first sample whose cursor reaches it.
    let mut lags: Vec<f64> = Vec::new();
    let mut j = 0;
    for &(t, h, _) in &samples {
        while j < samples.len() && samples[j].2 < h {
            j += 1;
        }
        if j == samples.len() {
            break;
        }
        lags.push(samples[j].0.saturating_sub(t).as_secs_f64() * 1000.0);
    }
    lags.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lags[((lags.len() - 1) as f64 * p) as usize];
    let ops = last_head - first_op;
    println!(
        "load: {} clients x {} settlements per submission for {load_secs:.1} s: {:.0} settlements/s \
         durable ({ops} ops)",
        args.clients,
        args.batch,
        settled.load(Ordering::Relaxed) as f64 / load_secs,
    );
    if lags.is_empty() {
        return Err("the projection never caught up with a sampled head".into());
    }
    println!(
        "projection lag (durable → committed in SQL), {} samples: p50 {:.0} ms, p99 {:.0} ms, \
         max {:.0} ms; projector: {} ops in {} chunks ({:.0} ops/chunk)",
        lags.len(),
        pct(0.5),
        pct(0.99),
        lags[lags.len() - 1],
        stats.ops_projected,
        stats.chunks,
        stats.ops_projected as f64 / stats.chunks.max(1) as f64
    );
    println!(
        "projector time: applying ops to its replica {:.1} s, writing rows and committing {:.1} s",
        stats.apply_time.as_secs_f64(),
        stats.write_time.as_secs_f64()
    );
    let behind = samples.last().map_or(0, |s| s.1.saturating_sub(s.2));
    println!("ops not yet projected at the end of the load: {behind}");
    engine.shutdown().map_err(text)?;
    Ok(())
}

/// Removes the benchmark's data directory however the run ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
