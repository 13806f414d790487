//! The end-to-end benchmark (`gongji bench`): a population built through the real writer, then
//! client threads submitting batches of a national-shaped mix of commands through
//! [`Engine::submit`] (queue → batch → apply → journal → fdatasync → replies) while a query
//! thread reads persons and statistics through [`Engine::read`]; then crediting 10 M accounts in
//! atomic crediting batches, and the statistics query timed many times. Optionally the
//! PostgreSQL peer runs in the same invocation, and the ratio is printed.
//!
//! The commands come from one generator shared by the clients (the same one the core bench
//! uses), so that times increase in queue order: each client takes the generator's lock,
//! makes its batch and puts it in the queue before letting go. The batch's latency runs from
//! that submission to its replies. Ids only the engine knows (a transfer's) come back in
//! replies: an accept whose transfer is still in flight is put back a batch later.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gongji_core::command::CREDIT_ITEMS_MAX;
use gongji_core::time::{cst_day, day_start, parse_period, period_of, Period};
use gongji_core::{Actor, Body, Command, CreditItem, Fen, InstType, Insutype, Msgid, Op, Reply};
use gongji_server::{Config, Engine, SubmitError, WriteRequest, WriteResult};

use crate::gen::{Fix, Generator, Kind, Meta};
use crate::plan::{self, psn_no, Plan};
use crate::population;
use crate::{mib, thousands, CpuSample, Machine, Rss, SplitMix64};

/// The population is built at 09:00 CST the day after today (the engine's clock starts at the
/// machine's time when the admin token is made, and times only move forward); the run starts
/// a month later at 08:00, so that the build's msgid records are forgotten before it (an
/// untimed write at that time does it).
#[derive(Clone, Copy, Debug)]
struct Times {
    build: i64,
    run_start: i64,
}

impl Times {
    fn from_now() -> Times {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let build = day_start(cst_day(now) + 1) + 9 * 3600;
        let run_start = day_start(cst_day(build) + 31) + 8 * 3600;
        Times { build, run_start }
    }

    /// The run's first five months.
    fn five_months(self) -> (Period, Period) {
        let from = period_of(self.run_start);
        (from, Period(from.0 + 4))
    }
}
/// Kinds of the mix, indexed by `Kind as usize`.
const MIX_KINDS: [Kind; 7] = [
    Kind::Settle,
    Kind::Cancel,
    Kind::TransferCreate,
    Kind::TransferAccept,
    Kind::TransferDecline,
    Kind::Contribute,
    Kind::Bind,
];

#[derive(Clone, Debug)]
pub struct E2eOptions {
    pub persons: u32,
    pub institutions: u32,
    /// Length of the timed mixed run.
    pub seconds: u64,
    /// Commands per submitted batch.
    pub batch_ops: usize,
    /// Client threads, each with one batch in flight.
    pub clients: usize,
    /// Offered load in commands per second; `None`: as fast as the clients go (closed loop).
    pub load: Option<u64>,
    /// Person and statistics queries per second during the run (one query thread).
    pub query_rate: u64,
    /// Accounts credited in the crediting test (0: skip it).
    pub credit_accounts: u32,
    /// Times the statistics query is timed after the run.
    pub stats_queries: u32,
    pub seed: u64,
    pub dir: PathBuf,
    pub peer: Option<PathBuf>,
    pub peer_clients: usize,
    /// The engine's `snapshot_interval_ops` in the mixed run (the product's default unless set).
    pub snapshot_interval_ops: u64,
}

impl Default for E2eOptions {
    fn default() -> E2eOptions {
        E2eOptions {
            persons: 1_000_000,
            institutions: 1_000,
            seconds: 30,
            batch_ops: 8_190,
            clients: 4,
            load: None,
            query_rate: 1_000,
            credit_accounts: 10_000_000,
            stats_queries: 100_000,
            seed: 1,
            dir: PathBuf::from("."),
            peer: None,
            peer_clients: 16,
            snapshot_interval_ops: Config::new(".").snapshot_interval_ops,
        }
    }
}

/// Per-kind tallies of the run.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub attempted: [u64; MIX_KINDS.len()],
    pub applied: [u64; MIX_KINDS.len()],
    /// (kind, err_code) → count.
    pub rejections: std::collections::BTreeMap<(&'static str, &'static str), u64>,
    /// Accepts and declines not sent: their transfer's creation was refused.
    pub skipped: u64,
    /// Submissions refused with `Overloaded` and retried.
    pub overloaded: u64,
    pub batch_latency_us: Vec<u64>,
    /// Time the clients spent making batches (under the generator's lock).
    pub generation: Duration,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for k in 0..MIX_KINDS.len() {
            self.attempted[k] += other.attempted[k];
            self.applied[k] += other.applied[k];
        }
        for (key, n) in other.rejections {
            *self.rejections.entry(key).or_default() += n;
        }
        self.skipped += other.skipped;
        self.overloaded += other.overloaded;
        self.batch_latency_us.extend(other.batch_latency_us);
        self.generation += other.generation;
    }
}

/// The generator and what replies taught it, shared by the clients.
struct Feed {
    generator: Generator,
    /// Transfer id by slot: 0 not answered yet, `REFUSED` creation refused.
    slots: Vec<u64>,
    batch_ops: usize,
}

const REFUSED: u64 = u64::MAX;

impl Feed {
    /// The next batch: requests and what each one is.
    fn batch(&mut self, tally: &mut Tally) -> (Vec<WriteRequest>, Vec<Meta>) {
        let mut requests = Vec::with_capacity(self.batch_ops);
        let mut metas = Vec::with_capacity(self.batch_ops);
        while requests.len() < self.batch_ops {
            let (mut op, meta) = self.generator.next_mixed();
            if let Fix::Use { slot, .. } = meta.fix {
                match self.slots.get(slot as usize).copied().unwrap_or(0) {
                    0 => {
                        // In flight: ask again a batch later.
                        self.generator.postpone(meta.fix, self.batch_ops as u64);
                        continue;
                    }
                    REFUSED => {
                        tally.skipped += 1;
                        continue;
                    }
                    id => crate::gen::set_transfer_id(&mut op, id),
                }
            }
            let Op::Write(Command {
                msgid,
                time,
                actor,
                body,
            }) = op
            else {
                unreachable!("the generator makes writes")
            };
            requests.push(WriteRequest {
                msgid,
                inf_time: Some(time),
                actor,
                body,
            });
            metas.push(meta);
        }
        self.slots.resize(self.generator.slots as usize, 0);
        (requests, metas)
    }

    fn learn(&mut self, metas: &[Meta], results: &[WriteResult]) {
        for (meta, result) in metas.iter().zip(results) {
            if let Fix::Record(slot) = meta.fix {
                self.slots[slot as usize] = match result {
                    Ok(a) => match &a.reply {
                        Reply::Transfer(t) => t.transfer_id,
                        _ => REFUSED,
                    },
                    Err(_) => REFUSED,
                };
            }
        }
    }
}

fn admin(msgid: String, time: i64, body: Body) -> WriteRequest {
    WriteRequest {
        msgid: Msgid::from(&msgid).expect("short msgid"),
        inf_time: Some(time),
        actor: Actor::Admin,
        body,
    }
}

/// Submits setup writes in batches of `batch_ops`, a few in flight; any refusal is a bug.
fn submit_setup(engine: &Engine, requests: Vec<WriteRequest>, batch_ops: usize) {
    let mut in_flight = std::collections::VecDeque::new();
    let mut requests = requests.into_iter().peekable();
    while requests.peek().is_some() || !in_flight.is_empty() {
        while in_flight.len() < 4 && requests.peek().is_some() {
            let chunk: Vec<_> = requests.by_ref().take(batch_ops).collect();
            loop {
                match engine.submit(chunk.clone()) {
                    Ok(rx) => {
                        in_flight.push_back(rx);
                        break;
                    }
                    Err(SubmitError::Overloaded) => std::thread::yield_now(),
                    Err(SubmitError::Stopped) => panic!("the writer stopped"),
                }
            }
        }
        if let Some(rx) = in_flight.pop_front() {
            let results = rx.blocking_recv().expect("writer replies");
            if let Some(Err(r)) = results.iter().find(|r| r.is_err()) {
                panic!("setup write refused: {r:?}");
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Population {
    pub ops: u64,
    pub bindings: usize,
    pub wallets: u32,
    pub build: Duration,
}

/// Institutions, persons, bindings, a crediting and wallets, through the writer at `time`.
fn build(
    engine: &Engine,
    plan: &Plan,
    batch_ops: usize,
    rng: &mut SplitMix64,
    time: i64,
) -> Population {
    let t = Instant::now();
    // Submitted a million at a time as they are made: holding all of them (22 M requests at
    // 10 M persons) took gigabytes the allocator then kept, counted in the engine's RSS.
    const PART: usize = 1 << 20;
    let mut requests = Vec::with_capacity(PART);
    let (mut wallets, mut ops) = (0, 0u64);
    population::Population::Families(plan).build(rng, |op| {
        wallets += u32::from(matches!(op.body, Body::OpenWallet { .. }));
        requests.push(op.request(Some(time)));
        ops += 1;
        if requests.len() == PART {
            submit_setup(
                engine,
                std::mem::replace(&mut requests, Vec::with_capacity(PART)),
                batch_ops,
            );
        }
    });
    submit_setup(engine, requests, batch_ops);
    Population {
        ops,
        bindings: plan.bindings.len(),
        wallets,
        build: t.elapsed(),
    }
}

/// Figures of the timed mixed run.
#[derive(Clone, Debug, Default)]
pub struct RunFigures {
    pub elapsed: Duration,
    pub tally: Tally,
    pub offered_ops: u64,
    pub accepted_ops: u64,
    /// History chunks in files (and out of the heap) at the end of the run.
    pub history_chunks: u64,
    pub batches_written: u64,
    pub sync_nanos: u64,
    pub queries: QueryNs,
    /// CPU seconds of each thread name during the run, and the load average before and after.
    pub cpu: Vec<(String, f64)>,
    pub loadavg: (f64, f64),
    /// Resident memory halfway through the run (the end is `E2eReport::rss_after_run`).
    pub rss_mid_run: Rss,
    /// The highest resident memory (KiB) sampled in each third of the run: snapshots make it
    /// rise and fall every few seconds, so two single samples may catch a peak and a trough.
    pub rss_peaks: [u64; 3],
    /// Snapshots frozen during the run, and the writer's longest pause to freeze one.
    pub snapshots: u64,
    pub freeze_nanos_max: u64,
}

fn run_mix(engine: &Arc<Engine>, plan: &Plan, opts: &E2eOptions, times: Times) -> RunFigures {
    let start = times.run_start;
    let mut generator = Generator::new(plan, opts.seed ^ 0x5EED, start, 1);
    generator.bind_per_mille = 1;
    let feed = Arc::new(Mutex::new(Feed {
        generator,
        slots: Vec::new(),
        batch_ops: opts.batch_ops,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let offered = Arc::new(AtomicU64::new(0));
    let c = engine.counters();
    let (batches_before, sync_before, applied_before) = (
        c.batches_total.load(Ordering::Relaxed),
        c.sync_nanos_total.load(Ordering::Relaxed),
        c.ops_applied_total.load(Ordering::Relaxed),
    );
    let snapshots_before = c.snapshots_frozen_total.load(Ordering::Relaxed);
    c.snapshot_freeze_nanos_max.store(0, Ordering::Relaxed);
    let cpu_before = CpuSample::now();
    let started = Instant::now();
    // Each client's share of the offered load, as the interval between its batches.
    let interval = opts.load.map(|load| {
        Duration::from_secs_f64(opts.batch_ops as f64 * opts.clients as f64 / load.max(1) as f64)
    });
    let clients: Vec<_> = (0..opts.clients)
        .map(|k| {
            let (engine, feed, stop, offered) =
                (engine.clone(), feed.clone(), stop.clone(), offered.clone());
            std::thread::Builder::new()
                .name("bench-client".into())
                .spawn(move || client(&engine, &feed, &stop, &offered, interval, started, k))
                .expect("client thread")
        })
        .collect();
    let queries = {
        let (engine, stop) = (engine.clone(), stop.clone());
        let (persons, rate, seed) = (opts.persons, opts.query_rate, opts.seed);
        let months = times.five_months();
        std::thread::Builder::new()
            .name("bench-query".into())
            .spawn(move || query_loop(&engine, &stop, persons, rate, seed, months))
            .expect("query thread")
    };
    // Resident memory every quarter second; the middle's is the first sample past half-time.
    let (run, mut rss_mid_run, mut rss_samples) =
        (Duration::from_secs(opts.seconds), None, Vec::new());
    while started.elapsed() < run {
        std::thread::sleep(RSS_SAMPLE_EVERY.min(run.saturating_sub(started.elapsed())));
        let rss = Rss::now();
        rss_samples.push((started.elapsed(), rss.rss_kib));
        if rss_mid_run.is_none() && started.elapsed() >= run / 2 {
            rss_mid_run = Some(rss);
        }
    }
    let rss_mid_run = rss_mid_run.unwrap_or_else(Rss::now);
    // Sampled before the clients stop: an ended thread leaves /proc/self/task.
    let cpu_after = CpuSample::now();
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for client in clients {
        tally.merge(client.join().expect("client thread"));
    }
    let elapsed = started.elapsed();
    let queries = queries.join().expect("query thread");
    let c = engine.counters();
    RunFigures {
        elapsed,
        offered_ops: offered.load(Ordering::Relaxed),
        accepted_ops: c.ops_applied_total.load(Ordering::Relaxed) - applied_before,
        batches_written: c.batches_total.load(Ordering::Relaxed) - batches_before,
        sync_nanos: c.sync_nanos_total.load(Ordering::Relaxed) - sync_before,
        tally,
        queries,
        cpu: cpu_after.since(&cpu_before),
        loadavg: (cpu_before.loadavg_1m, cpu_after.loadavg_1m),
        rss_mid_run,
        rss_peaks: thirds_peaks(&rss_samples, run),
        snapshots: c.snapshots_frozen_total.load(Ordering::Relaxed) - snapshots_before,
        freeze_nanos_max: c.snapshot_freeze_nanos_max.load(Ordering::Relaxed),
        history_chunks: c.history_chunks_swapped_total.load(Ordering::Relaxed),
    }
}

/// An institution registered by an untimed write (the `n`th of these codes), which moves
/// the engine clock.
fn untimed_institution(n: u32) -> Body {
    Body::RegisterInstitution {
        fixmedins_code: plan::inst_code(n, 440_106, false),
        fixmedins_name: "定点医院".into(),
        fixmedins_type: InstType::Medical,
        admdvs: 440_106,
    }
}

/// The pause before the population's resident memory is measured again.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);

/// How often the run samples resident memory.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The highest of the `(time, KiB)` samples in each third of `run`.
fn thirds_peaks(samples: &[(Duration, u64)], run: Duration) -> [u64; 3] {
    let mut peaks = [0; 3];
    for &(t, kib) in samples {
        let third = ((3 * t.as_nanos()) / run.as_nanos().max(1)).min(2) as usize;
        peaks[third] = peaks[third].max(kib);
    }
    peaks
}

/// One client: make a batch under the generator's lock and queue it, wait for its replies,
/// tell the generator what it learnt. With an offered load, batches leave on a schedule.
fn client(
    engine: &Engine,
    feed: &Mutex<Feed>,
    stop: &AtomicBool,
    offered: &AtomicU64,
    interval: Option<Duration>,
    started: Instant,
    k: usize,
) -> Tally {
    let mut tally = Tally::default();
    let mut due = started + interval.map_or(Duration::ZERO, |i| i.mul_f64(k as f64 / 8.0));
    while !stop.load(Ordering::Relaxed) {
        if let Some(interval) = interval {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            due += interval;
        }
        let (rx, metas, submitted) = {
            let mut feed = feed.lock().expect("feed lock");
            let t = Instant::now();
            let (requests, metas) = feed.batch(&mut tally);
            tally.generation += t.elapsed();
            let n = requests.len() as u64;
            let rx = loop {
                offered.fetch_add(n, Ordering::Relaxed);
                match engine.submit(requests.clone()) {
                    Ok(rx) => break rx,
                    Err(SubmitError::Overloaded) => {
                        // Retried with the same msgids, as a client of the API would.
                        tally.overloaded += 1;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(SubmitError::Stopped) => panic!("the writer stopped"),
                }
            };
            (rx, metas, Instant::now())
        };
        let results = rx.blocking_recv().expect("writer replies");
        tally
            .batch_latency_us
            .push(submitted.elapsed().as_micros() as u64);
        feed.lock().expect("feed lock").learn(&metas, &results);
        for (meta, result) in metas.iter().zip(&results) {
            let kind = meta.kind as usize;
            tally.attempted[kind] += 1;
            match result {
                Ok(_) => tally.applied[kind] += 1,
                Err(r) => {
                    *tally
                        .rejections
                        .entry((meta.kind.name(), r.code.as_str()))
                        .or_default() += 1
                }
            }
        }
    }
    tally
}

/// Latencies of the query thread, in ns: until answered (the read, then the wait until what it
/// saw is durable, as the HTTP layer answers), and of the read alone (lock and view).
#[derive(Clone, Debug, Default)]
pub struct QueryNs {
    pub person: Vec<u64>,
    pub stats: Vec<u64>,
    /// A person's first page of entries, or a settlement from the older half.
    pub history: Vec<u64>,
    pub person_view: Vec<u64>,
    pub stats_view: Vec<u64>,
    pub history_view: Vec<u64>,
    /// Person and history reads that could not be answered as of the last durable op and
    /// waited.
    pub person_waited: u64,
    pub history_waited: u64,
}

/// One read of the query thread.
enum Query {
    Stats,
    Person(gongji_core::PsnNo),
    /// Entries (true) or an old settlement (false), with a random number to pick it.
    History(bool, u64),
}

/// Reads a random person (eight times in ten), a person's entries or an old settlement (one in
/// ten) or the statistics of the run's five months (one in ten), `rate` times a second: a
/// person and history as of the last durable op, as the HTTP layer answers
/// (`State::person_as_of`, `entries_as_of`, `settlement_as_of`; else answered once what it saw
/// is durable, [`Engine::durable`]), the statistics as of the last durable batch, without the
/// lock or a wait ([`Engine::stats_durable`]).
fn query_loop(
    engine: &Engine,
    stop: &AtomicBool,
    persons: u32,
    rate: u64,
    seed: u64,
    (from, to): (Period, Period),
) -> QueryNs {
    let mut ns = QueryNs::default();
    if rate == 0 {
        return ns;
    }
    let mut rng = SplitMix64::new(seed ^ 0x0E1);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        due += interval;
        let pick = rng.below(20);
        let kind = match pick {
            0 | 1 => Query::Stats,
            2 | 3 => Query::History(pick == 2, rng.next_u64()),
            _ => Query::Person(psn_no(rng.below(u64::from(persons)) as u32)),
        };
        let t = Instant::now();
        let seen = match &kind {
            // As of the last durable batch: no lock, nothing to wait for.
            Query::Stats => {
                std::hint::black_box(engine.stats_durable(from, to, None));
                0
            }
            // As of the last durable op, as the HTTP layer answers: nothing to wait for
            // unless that op is not a point the writer sealed (counted).
            Query::Person(psn) => {
                let (view, seen) = read_as_of(
                    engine,
                    |s, durable| s.person_as_of(psn, durable),
                    |s| s.person(psn),
                );
                assert!(view.is_ok(), "an enrolled person is found");
                ns.person_waited += u64::from(seen > 0);
                seen
            }
            // A person's oldest entries (the walk back covers all of them), or a settlement
            // from the older half: from history files when their chunks are cold.
            Query::History(true, r) => {
                let psn = psn_no((r % u64::from(persons)) as u32);
                let (page, seen) = read_as_of(
                    engine,
                    |s, durable| s.entries_as_of(&psn, None, 100, durable),
                    |s| s.entries(&psn, None, 100),
                );
                assert!(page.is_ok(), "an enrolled person's entries are found");
                ns.history_waited += u64::from(seen > 0);
                seen
            }
            Query::History(false, r) => {
                // The older half of those made by the last durable op (or by now).
                let (view, seen) = read_as_of(
                    engine,
                    |s, durable| {
                        let older_half = s.settlement_count_as_of(durable)? as u64 / 2;
                        Some((older_half > 0).then(|| {
                            let view = s.settlement_as_of(1 + r % older_half, durable);
                            view.expect("as of a durable op")
                        }))
                    },
                    |s| {
                        let older_half = s.settlement_count() as u64 / 2;
                        (older_half > 0).then(|| s.settlement(1 + r % older_half))
                    },
                );
                ns.history_waited += u64::from(seen > 0);
                let view = std::hint::black_box(view);
                assert!(view.is_none_or(|v| v.is_ok()), "an old settlement is found");
                seen
            }
        };
        let (answered, viewed) = match kind {
            Query::Stats => (&mut ns.stats, &mut ns.stats_view),
            Query::History(..) => (&mut ns.history, &mut ns.history_view),
            Query::Person(_) => (&mut ns.person, &mut ns.person_view),
        };
        viewed.push(t.elapsed().as_nanos() as u64);
        if engine.wait_durable(seen).is_err() {
            break;
        }
        answered.push(t.elapsed().as_nanos() as u64);
    }
    ns
}

/// A read as of the last durable op (`as_of`, from the state's priors), as the HTTP layer
/// answers it, with nothing to wait for (0); or, when the priors cannot tell, `current`, with
/// the op count it saw, to wait for.
fn read_as_of<R>(
    engine: &Engine,
    as_of: impl FnOnce(&gongji_core::State, u64) -> Option<R>,
    current: impl FnOnce(&gongji_core::State) -> R,
) -> (R, u64) {
    engine.read(|s| match as_of(s, engine.durable_op()) {
        Some(answer) => (answer, 0),
        None => (current(s), s.op_count()),
    })
}

/// The crediting test's figures.
#[derive(Clone, Debug, Default)]
pub struct CreditFigures {
    pub accounts: u32,
    pub enrol: Duration,
    pub credit: Duration,
    pub batches: u32,
    pub credited_count: u64,
    pub rss_after: Rss,
    pub data_bytes: u64,
}

/// Enrols `accounts` employees, moves the clock a month on (their enrolment msgids expire),
/// then credits every account in atomic batches of 10,000 items, `clients` batches in flight,
/// and times the crediting alone.
fn credit_test(opts: &E2eOptions, times: Times) -> CreditFigures {
    let dir = opts
        .dir
        .join(format!("gongji-credit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (engine, _) = Engine::open(Config::new(&dir)).expect("engine opens");
    let build = times.build;
    let mut figures = CreditFigures {
        accounts: opts.credit_accounts,
        ..CreditFigures::default()
    };
    let t = Instant::now();
    let psn = |i: u32| psn_no(i);
    let mut start = 0u32;
    while start < opts.credit_accounts {
        // Made a million at a time, so that the requests never all sit in memory at once.
        let end = opts.credit_accounts.min(start + 1_000_000);
        let requests = (start..end)
            .map(|i| {
                let body = Body::Enrol {
                    psn_no: psn(i),
                    certno: population::unique_certno(110_105, i),
                    psn_name: "张三".into(),
                    insutype: Insutype::Employee,
                    admdvs: 440_106,
                };
                admin(format!("E{i}"), build, body)
            })
            .collect();
        submit_setup(&engine, requests, opts.batch_ops);
        start = end;
    }
    figures.enrol = t.elapsed();
    let later = build + 31 * 86_400;
    let warm = untimed_institution(0);
    submit_setup(&engine, vec![admin("warm".into(), later, warm)], 1);
    let period = parse_period("2025-01").expect("valid period");
    let mut rng = SplitMix64::new(opts.seed);
    let batches: Vec<WriteRequest> = (0..opts.credit_accounts)
        .collect::<Vec<_>>()
        .chunks(CREDIT_ITEMS_MAX)
        .enumerate()
        .map(|(n, chunk)| {
            let items = chunk
                .iter()
                .map(|&i| CreditItem {
                    psn_no: psn(i),
                    amount: Fen(rng.range(5_000, 60_000)),
                })
                .collect();
            admin(format!("C{n}"), later, Body::Credit { period, items })
        })
        .collect();
    figures.batches = batches.len() as u32;
    let t = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    let mut batches = batches.into_iter().peekable();
    while batches.peek().is_some() || !in_flight.is_empty() {
        while in_flight.len() < opts.clients.max(1) && batches.peek().is_some() {
            let request = batches.next().expect("peeked");
            in_flight.push_back(engine.submit(vec![request]).expect("queue has room"));
        }
        if let Some(rx) = in_flight.pop_front() {
            for result in rx.blocking_recv().expect("writer replies") {
                match result {
                    Ok(applied) => match applied.reply {
                        Reply::Credited { count, .. } => figures.credited_count += u64::from(count),
                        other => panic!("unexpected reply {other:?}"),
                    },
                    Err(r) => panic!("crediting refused: {r:?}"),
                }
            }
        }
    }
    figures.credit = t.elapsed();
    figures.rss_after = Rss::now();
    figures.data_bytes = dir_size(&dir);
    engine.shutdown().expect("clean shutdown");
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    figures
}

/// Bytes of every file under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Percentile `p` (0..=100) of sorted values.
fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

/// Bytes by part of the state (`State::memory`).
pub type StateMemory = Vec<(&'static str, u64)>;

/// Everything `gongji bench` prints.
#[derive(Clone, Debug, Default)]
pub struct E2eReport {
    pub options: Option<E2eOptions>,
    pub machine: Machine,
    pub population: Population,
    pub rss_after_population: Rss,
    /// The same, [`SETTLE`] and one more write later.
    pub rss_settled: Rss,
    /// `State::memory` after the population and after the run.
    pub memory: (StateMemory, StateMemory),
    pub run: RunFigures,
    pub rss_after_run: Rss,
    /// The same once at rest: no snapshot in progress, [`SETTLE`] later.
    pub rss_after_run_at_rest: Rss,
    pub data_bytes: u64,
    pub journal_bytes: u64,
    pub stats_ns: Vec<u64>,
    pub stats_months: (String, String),
    pub credit: Option<CreditFigures>,
    pub peer: Option<(f64, f64)>,
    pub check: Option<Result<(), String>>,
}

impl E2eReport {
    /// Settlements applied per second in the timed run.
    pub fn settlements_per_sec(&self) -> f64 {
        self.run.tally.applied[Kind::Settle as usize] as f64
            / self.run.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Waits until no snapshot is in progress (until then the writer's copy-on-write copies and the
/// queued msgid records' sorted copy are held twice), then [`SETTLE`], in which `gongji`'s
/// purge thread returns what the allocator freed.
fn at_rest(engine: &Engine) {
    let c = engine.counters();
    let waited = Instant::now();
    while c.snapshots_written_total.load(Ordering::Acquire)
        < c.snapshots_frozen_total.load(Ordering::Acquire)
        && waited.elapsed() < Duration::from_secs(600)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(SETTLE);
}

/// Runs the whole benchmark (see the module documentation).
pub fn e2e_bench(opts: &E2eOptions) -> E2eReport {
    assert!(opts.persons >= 10 && opts.institutions >= 1 && opts.clients >= 1);
    assert!((1..=gongji_server::SUBMISSION_OP_COUNT_MAX).contains(&opts.batch_ops));
    let mut report = E2eReport {
        options: Some(opts.clone()),
        machine: Machine::detect(),
        ..E2eReport::default()
    };
    let times = Times::from_now();
    let mut rng = SplitMix64::new(opts.seed);
    let plan = Plan::make(opts.persons, opts.institutions, &mut rng);
    let dir = opts
        .dir
        .join(format!("gongji-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::new(&dir);
    config.snapshot_interval_ops = opts.snapshot_interval_ops;
    {
        let (engine, _) = Engine::open(config.clone()).expect("engine opens");
        let engine = Arc::new(engine);
        report.population = build(&engine, &plan, opts.batch_ops, &mut rng, times.build);
        // An untimed write a month later: the build's msgid records expire before the run.
        let start = times.run_start;
        let warm = untimed_institution(99_999);
        submit_setup(&engine, vec![admin("warm".into(), start, warm)], 1);
        report.rss_after_population = Rss::now();
        // Measured again at rest, and after one more write (the write above has just freed
        // the build's msgid records).
        at_rest(&engine);
        let settle = untimed_institution(99_998);
        submit_setup(&engine, vec![admin("settle".into(), start, settle)], 1);
        report.rss_settled = Rss::now();
        report.memory.0 = engine.read(gongji_core::State::memory);
        report.run = run_mix(&engine, &plan, opts, times);
        report.rss_after_run = Rss::now();
        at_rest(&engine);
        report.rss_after_run_at_rest = Rss::now();
        report.memory.1 = engine.read(gongji_core::State::memory);
        let (from, to) = times.five_months();
        report.stats_months = (from.to_string(), to.to_string());
        let mut ns = Vec::with_capacity(opts.stats_queries as usize);
        for _ in 0..opts.stats_queries {
            let t = Instant::now();
            let view = engine.read(|s| s.stats(from, to, None));
            ns.push(t.elapsed().as_nanos() as u64);
            std::hint::black_box(view);
        }
        report.stats_ns = ns;
        report.journal_bytes = engine
            .counters()
            .journal_bytes_total
            .load(Ordering::Relaxed);
        report.check = Some(engine.read(|s| s.check()));
        engine.shutdown().expect("clean shutdown");
        report.data_bytes = dir_size(&dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if opts.credit_accounts > 0 {
        report.credit = Some(credit_test(opts, times));
    }
    if let Some(script) = &opts.peer {
        // A port free right now, so that a peer another benchmark runs on the default port
        // does not make this one fail.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok();
        report.peer = crate::durable::peer_on_port(
            script,
            opts.persons,
            opts.peer_clients,
            opts.seconds,
            port,
        );
    }
    report
}

impl std::fmt::Display for E2eReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = self.options.clone().unwrap_or_default();
        let th = thousands;
        let r = &self.run;
        let secs = r.elapsed.as_secs_f64().max(1e-9);
        let ms = |us: u64| us as f64 / 1000.0;
        writeln!(f, "gongji bench: end to end through the writer, fsync on")?;
        writeln!(f, "machine = {}", self.machine)?;
        writeln!(
            f,
            "options = --persons {} --seconds {} --batch-ops {} --clients {} --load {} \
             --query-rate {} --credit-accounts {} --seed {} --snapshot-interval-ops {}",
            o.persons,
            o.seconds,
            o.batch_ops,
            o.clients,
            o.load.map_or("max".into(), |l| l.to_string()),
            o.query_rate,
            o.credit_accounts,
            o.seed,
            o.snapshot_interval_ops
        )?;
        let p = &self.population;
        writeln!(
            f,
            "population = {} persons, {} bindings, {} wallets, {} institutions: {} ops through \
             the writer in {:.1} s ({} ops/s)",
            th(u64::from(o.persons)),
            th(p.bindings as u64),
            th(u64::from(p.wallets)),
            th(u64::from(o.institutions)),
            th(p.ops),
            p.build.as_secs_f64(),
            th((p.ops as f64 / p.build.as_secs_f64().max(1e-9)) as u64)
        )?;
        writeln!(f)?;
        let t = &r.tally;
        let attempted: u64 = t.attempted.iter().sum();
        writeln!(
            f,
            "load offered = {} commands/s{}",
            th((r.offered_ops as f64 / secs) as u64),
            if o.load.is_none() {
                " (closed loop: each client sends its next batch when the last is answered)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "load accepted = {} commands/s ({} answered in {:.1} s; {} applied and journaled, \
             the rest refused by business rules)",
            th((attempted as f64 / secs) as u64),
            th(attempted),
            secs,
            th(r.accepted_ops)
        )?;
        writeln!(
            f,
            "settlements = {} /s durable ({} applied)",
            th(self.settlements_per_sec() as u64),
            th(t.applied[Kind::Settle as usize])
        )?;
        let mut lat = t.batch_latency_us.clone();
        lat.sort_unstable();
        for q in [1.0, 50.0, 99.0, 100.0] {
            writeln!(f, "batch latency p{q} = {:.2} ms", ms(pct(&lat, q)))?;
        }
        writeln!(
            f,
            "batches = {} submitted of {} commands; {} written by the writer ({:.0} ops each), \
             fsync {:.2} ms mean; {} queue-full retries",
            th(lat.len() as u64),
            th(o.batch_ops as u64),
            th(r.batches_written),
            r.accepted_ops as f64 / r.batches_written.max(1) as f64,
            r.sync_nanos as f64 / 1e6 / r.batches_written.max(1) as f64,
            th(t.overloaded)
        )?;
        let q = &r.queries;
        let as_of = |waited| {
            format!(
                "as of the last durable op, {} of them waited for the sync",
                th(waited)
            )
        };
        let (person_how, history_how) = (as_of(q.person_waited), as_of(q.history_waited));
        for (label, how, values, viewed) in [
            ("person", person_how.as_str(), &q.person, &q.person_view),
            (
                "stats",
                "as of the last durable batch, no lock",
                &q.stats,
                &q.stats_view,
            ),
            (
                "history: entries or an old settlement",
                history_how.as_str(),
                &q.history,
                &q.history_view,
            ),
        ] {
            let mut v = values.clone();
            v.sort_unstable();
            let mut w = viewed.clone();
            w.sort_unstable();
            writeln!(
                f,
                "query latency ({label}, {} during the run, {how}) \
                 p1 = {:.3} ms p50 = {:.3} ms p99 = {:.3} ms p100 = {:.3} ms; the read alone \
                 (lock + view) p50 = {:.3} ms p99 = {:.3} ms p100 = {:.3} ms",
                th(v.len() as u64),
                pct(&v, 1.0) as f64 / 1e6,
                pct(&v, 50.0) as f64 / 1e6,
                pct(&v, 99.0) as f64 / 1e6,
                pct(&v, 100.0) as f64 / 1e6,
                pct(&w, 50.0) as f64 / 1e6,
                pct(&w, 99.0) as f64 / 1e6,
                pct(&w, 100.0) as f64 / 1e6
            )?;
        }
        writeln!(
            f,
            "  {:<18} {:>12} {:>12} {:>8}",
            "mix", "attempted", "applied", "share"
        )?;
        for kind in MIX_KINDS {
            let k = kind as usize;
            writeln!(
                f,
                "  {:<18} {:>12} {:>12} {:>7.2}%",
                kind.name(),
                th(t.attempted[k]),
                th(t.applied[k]),
                100.0 * t.attempted[k] as f64 / attempted.max(1) as f64
            )?;
        }
        for ((kind, code), n) in &t.rejections {
            writeln!(f, "  refused {code:<22} {:>10}  ({kind})", th(*n))?;
        }
        if t.skipped > 0 {
            writeln!(
                f,
                "  ({} accepts/declines not sent: their transfer was refused)",
                th(t.skipped)
            )?;
        }
        writeln!(
            f,
            "client time making batches = {:.2} s of {:.1} s",
            t.generation.as_secs_f64(),
            secs
        )?;
        let named = |name: &str| {
            r.cpu
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, s)| s)
                .sum::<f64>()
        };
        let total: f64 = r.cpu.iter().map(|(_, s)| s).sum();
        let (writer, snapshot) = (named("gongji-writer"), named("gongji-snapshot"));
        let (clients, queries) = (named("bench-client"), named("bench-query"));
        writeln!(
            f,
            "cpu during the run = {:.2} of {} cores for this process: writer {:.0}%, snapshot \
             thread {:.0}%, clients {:.0}%, queries {:.0}%, other {:.0}% of one core; machine \
             load average {:.1} before, {:.1} after (other work shares these cores)",
            total / secs,
            self.machine.cpus,
            100.0 * writer / secs,
            100.0 * snapshot / secs,
            100.0 * clients / secs,
            100.0 * queries / secs,
            (100.0 * (total - writer - snapshot - clients - queries) / secs).max(0.0),
            r.loadavg.0,
            r.loadavg.1
        )?;
        writeln!(
            f,
            "cpu per command answered = writer {:.2} us, snapshot thread {:.2} us, clients {:.2} \
             us (thread CPU time / commands: what the figures above would be with a core each)",
            1e6 * writer / attempted.max(1) as f64,
            1e6 * snapshot / attempted.max(1) as f64,
            1e6 * clients / attempted.max(1) as f64
        )?;
        writeln!(
            f,
            "rss after population = {}; at rest (no snapshot in progress, {} s and one write \
             later) = {}",
            self.rss_after_population,
            SETTLE.as_secs(),
            self.rss_settled
        )?;
        writeln!(
            f,
            "rss in the middle of the run = {}, after the run = {}: the end is {:+.1}% of the \
             middle; resident growth = {:.1} bytes per applied command over the run ({} history \
             chunks of 64 K records in files)",
            r.rss_mid_run,
            self.rss_after_run,
            100.0 * (self.rss_after_run.rss_kib as f64 / r.rss_mid_run.rss_kib.max(1) as f64 - 1.0),
            1024.0 * (self.rss_after_run.rss_kib as f64 - self.rss_settled.rss_kib as f64)
                / r.accepted_ops.max(1) as f64,
            r.history_chunks
        )?;
        writeln!(
            f,
            "rss at rest after the run (no snapshot in progress, {} s later) = {}: resident \
             growth at rest = {:.1} bytes per applied command over the run",
            SETTLE.as_secs(),
            self.rss_after_run_at_rest,
            1024.0 * (self.rss_after_run_at_rest.rss_kib as f64 - self.rss_settled.rss_kib as f64)
                / r.accepted_ops.max(1) as f64,
        )?;
        let [a, b, c] = r.rss_peaks;
        writeln!(
            f,
            "rss peak in each third of the run (sampled every {} ms) = {} / {} / {} MiB: the last third's is {:+.1}% of the middle third's",
            RSS_SAMPLE_EVERY.as_millis(),
            a / 1024,
            b / 1024,
            c / 1024,
            100.0 * (c as f64 / b.max(1) as f64 - 1.0)
        )?;
        let parts: Vec<String> = self
            .memory
            .0
            .iter()
            .zip(&self.memory.1)
            .map(|((part, before), (_, after))| {
                format!(
                    "{part} {:.0} → {:.0}",
                    *before as f64 / 1048576.0,
                    *after as f64 / 1048576.0
                )
            })
            .collect();
        writeln!(
            f,
            "state memory by part, MiB after population → after run: {}",
            parts.join(", ")
        )?;
        writeln!(
            f,
            "snapshots during the run = {} (one every {} ops at most), longest writer pause to \
             freeze one = {:.3} ms",
            r.snapshots,
            self.options.as_ref().map_or(0, |o| o.snapshot_interval_ops),
            r.freeze_nanos_max as f64 / 1e6
        )?;
        writeln!(
            f,
            "data file size = {} ({} journal bytes written in the run and build; snapshots \
             included)",
            mib(self.data_bytes / 1024),
            th(self.journal_bytes)
        )?;
        if let Some(check) = &self.check {
            writeln!(
                f,
                "state check = {}",
                match check {
                    Ok(()) => "OK".to_string(),
                    Err(e) => format!("FAILED: {e}"),
                }
            )?;
        }
        let mut s = self.stats_ns.clone();
        s.sort_unstable();
        writeln!(
            f,
            "statistics query over 5 months ({}..{}, after the run, {} times) p50 = {:.1} us \
             p99 = {:.1} us p100 = {:.1} us",
            self.stats_months.0,
            self.stats_months.1,
            th(s.len() as u64),
            pct(&s, 50.0) as f64 / 1e3,
            pct(&s, 99.0) as f64 / 1e3,
            pct(&s, 100.0) as f64 / 1e3
        )?;
        if let Some(c) = &self.credit {
            writeln!(
                f,
                "crediting = {} accounts in {} atomic batches of {} in {:.2} s ({:.0} ns per \
                 account, {} accounts/s); enrolling them took {:.1} s; rss {}; data {}",
                th(u64::from(c.accounts)),
                th(u64::from(c.batches)),
                th(CREDIT_ITEMS_MAX as u64),
                c.credit.as_secs_f64(),
                c.credit.as_nanos() as f64 / c.credited_count.max(1) as f64,
                th((c.credited_count as f64 / c.credit.as_secs_f64().max(1e-9)) as u64),
                c.enrol.as_secs_f64(),
                c.rss_after,
                mib(c.data_bytes / 1024)
            )?;
        }
        if o.peer.is_some() {
            match self.peer {
                Some((tps, latency_ms)) => {
                    writeln!(
                        f,
                        "peer pg = {} settlements/s ({} persons, {} pgbench clients, {} s, mean \
                         latency {latency_ms:.2} ms)",
                        th(tps as u64),
                        th(u64::from(o.persons)),
                        o.peer_clients,
                        o.seconds
                    )?;
                    writeln!(
                        f,
                        "ratio = {:.1}x (our durable settlements/s in the mix / the peer's)",
                        self.settlements_per_sec() / tps.max(1e-9)
                    )?;
                }
                None => writeln!(f, "peer pg = failed (see stderr)")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_peaks_are_taken_per_third() {
        // Proves: each sample counts in its own third (the last instant in the last), and a
        // third's figure is its highest sample.
        let s = |ms: u64, kib: u64| (Duration::from_millis(ms), kib);
        let samples = [
            s(100, 5),
            s(900, 9),
            s(1_000, 4),
            s(1_999, 7),
            s(2_000, 3),
            s(3_000, 6),
        ];
        assert_eq!(thirds_peaks(&samples, Duration::from_secs(3)), [9, 7, 6]);
        assert_eq!(thirds_peaks(&[], Duration::from_secs(3)), [0, 0, 0]);
    }

    /// A small run end to end: the mix is applied through the writer, every kind appears,
    /// accepts find their transfers, and the state checks.
    #[test]
    fn small_end_to_end_run() {
        let dir = std::env::temp_dir().join(format!("gongji-e2e-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let opts = E2eOptions {
            persons: 3_000,
            institutions: 20,
            seconds: 2,
            batch_ops: 500,
            clients: 2,
            query_rate: 200,
            credit_accounts: 25_000,
            stats_queries: 100,
            dir: dir.clone(),
            ..E2eOptions::default()
        };
        let report = e2e_bench(&opts);
        let _ = std::fs::remove_dir_all(&dir);
        let text = report.to_string();
        assert_eq!(report.check, Some(Ok(())), "{text}");
        let t = &report.run.tally;
        assert!(t.applied[Kind::Settle as usize] > 1_000, "{text}");
        for kind in [Kind::Cancel, Kind::TransferCreate, Kind::TransferAccept] {
            assert!(t.applied[kind as usize] > 0, "{}: {text}", kind.name());
        }
        assert!(!report.run.queries.person.is_empty(), "{text}");
        let credit = report.credit.as_ref().expect("credit test ran");
        assert_eq!(credit.credited_count, 25_000, "{text}");
        assert_eq!(credit.batches, 3, "{text}");
        assert!(report.data_bytes > 0, "{text}");
        assert!(text.contains("batch latency p99 = "), "{text}");
        assert!(report.rss_after_run_at_rest.rss_kib > 0, "{text}");
        assert!(text.contains("rss at rest after the run"), "{text}");
    }
}
