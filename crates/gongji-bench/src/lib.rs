//! `gongji-bench`: benchmarks and load generation.
//!
//! [`core_bench`] measures the in-memory state machine alone: it builds a population of
//! families (employees `310` with personal accounts, residents `390` without, bindings between
//! close relatives, some across provinces), credits the employees' accounts, then applies a
//! pre-generated stream of mixed commands and times only the `apply` calls.
//!
//! Everything is deterministic for a seed: the generator uses its own splitmix64, and the
//! engine takes time from the commands.

mod durable;
mod durable_pg;
mod e2e;
mod gen;
mod httpload;
mod journal_write;
mod plan;
mod population;
mod projection_lag;
mod store;
mod sys;

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use gongji_core::time::{format_cst, parse_cst, period_of};
use gongji_core::views::StatsView;
use gongji_core::{Applied, Body, Command, Fen, Op, Params, Reply, State};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use durable::{durable_bench, recovery_bench, DurableOptions, RecoveryOptions};
pub use e2e::{e2e_bench, E2eOptions, E2eReport};
use gen::{set_transfer_id, Fix, Generator, Kind, Meta, KINDS};
pub use httpload::{http_bench, HttpOptions};
pub use journal_write::{journal_write_bench, JournalWriteOptions};
use plan::Plan;
use population::{Population, SetupOp};
pub use projection_lag::{projection_lag_bench, LagOptions};
pub use splitmix::SplitMix64;
pub use store::{store_bench, StoreBenchOptions, StoreKind, StoreReport};
pub use sys::{mib, CpuSample, Machine, Rss};

/// Items per crediting batch (the API's largest).
const CREDIT_BATCH: usize = gongji_core::command::CREDIT_ITEMS_MAX;
/// Commands generated ahead of each timed stretch.
const CHUNK: usize = 1 << 18;
/// When the population is built (its enrolment msgids are forgotten 30 days later, before the
/// run starts) and when the run starts.
const BUILD_TIME: &str = "2024-12-02 09:00:00";
const RUN_START: &str = "2025-01-02 08:00:00";
use population::FAMILIES_CREDIT_PERIOD as CREDIT_PERIOD;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreBenchOptions {
    /// Persons enrolled before the run.
    pub persons: u32,
    /// Mixed commands applied in the timed run.
    pub commands: u64,
    pub seed: u64,
    pub institutions: u32,
    /// Settlements of the second, pure-settlement pass (0: none).
    pub pure_settlements: u64,
    /// Show progress bars (only ever drawn when stdout is a terminal).
    pub progress: bool,
}

impl Default for CoreBenchOptions {
    fn default() -> CoreBenchOptions {
        CoreBenchOptions {
            persons: 1_000_000,
            commands: 10_000_000,
            seed: 1,
            institutions: 1_000,
            pure_settlements: 1_000_000,
            progress: true,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PopulationFigures {
    pub persons: u32,
    pub employees: u32,
    pub residents: u32,
    pub families: u32,
    pub institutions: u32,
    pub bindings: u32,
    pub wallet_only_bindings: u32,
    pub wallets: u32,
    pub credited_count: u64,
    pub credited_sum: Fen,
    pub credit_batches: u32,
    pub build: Duration,
    pub plan: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryFigures {
    /// After the population plan is made, before anything is applied.
    pub before_population: Rss,
    pub after_population: Rss,
    /// `(after_population − before) / persons`, from VmRSS: the population's state together
    /// with the build's msgid records (one per enrolment, binding, credit batch and wallet).
    pub bytes_per_person: u64,
    /// After a tick past the msgid retention window: the build's msgid records are forgotten
    /// and their tables shrunk.
    pub after_retention: Rss,
    /// `(after_retention − before) / persons`: the population's state alone (plus whatever
    /// freed heap the allocator keeps instead of returning it).
    pub bytes_per_person_after_retention: u64,
    pub after_run: Rss,
    /// Size of one generated `Op` and of a chunk of them (part of the RSS after the run).
    pub op_size: usize,
    pub chunk_bytes: usize,
    /// Msgid records (each with its remembered reply) held after the build and after the run.
    pub msgids_after_population: usize,
    pub msgids_after_run: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindFigures {
    pub kind: &'static str,
    /// Passed to `apply`.
    pub attempted: u64,
    pub applied: u64,
    pub rejected: u64,
    /// Time attributed to this kind (see [`RunFigures::settlement_ns_runs`]).
    pub time: Duration,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFigures {
    /// Commands passed to `apply` in the mixed run.
    pub commands: u64,
    /// Accepts and declines not applied because their transfer's creation was refused.
    pub skipped: u64,
    pub chunks: u32,
    /// Sum of the timed apply loops.
    pub elapsed: Duration,
    pub commands_per_sec: f64,
    pub per_kind: Vec<KindFigures>,
    pub settlements_applied: u64,
    /// Mixed run, run attribution: the loop reads the clock only where the kind of command
    /// changes, and each maximal run of same-kind commands is charged to its kind.
    pub settlement_ns_runs: f64,
    pub pure_settlements: u64,
    pub pure_elapsed: Duration,
    /// Second pass: a stream of settlements only, timed as a whole.
    pub settlement_ns_pure: f64,
    /// (kind, err_code) → count.
    pub rejections: BTreeMap<(&'static str, &'static str), u64>,
    pub first_time: i64,
    pub last_time: i64,
    pub generation: Duration,
    /// Clock reads inside the timed loops, and what one costs on this machine.
    pub clock_reads: u64,
    pub clock_read_ns: f64,
    /// The statistics over the run's months (net of cancellations).
    pub stats: StatsView,
    pub stats_from: String,
    pub stats_to: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CoreBenchReport {
    pub machine: Machine,
    pub options: CoreBenchOptions,
    pub population: PopulationFigures,
    pub memory: MemoryFigures,
    pub run: RunFigures,
    pub check: Result<(), String>,
    pub check_time: Duration,
    pub op_count: u64,
}

fn bar(len: u64, msg: &'static str, show: bool) -> ProgressBar {
    let target = if show && std::io::stdout().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    pb.set_style(
        ProgressStyle::with_template("{msg:>22} [{bar:40}] {human_pos}/{human_len} {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

/// Applies a population-building write; a refusal is a bug in the builder.
fn build_write(state: &mut State, time: i64, op: SetupOp) -> Reply {
    let op = Op::Write(Command {
        msgid: gongji_core::Msgid::from(&op.msgid).expect("short msgid"),
        time,
        actor: op.actor,
        body: op.body,
    });
    match state.apply(&op) {
        Ok(applied) => applied.reply,
        Err(r) => panic!("building the population: {op:?} refused: {}", r.message()),
    }
}

/// Builds the population, runs the mixed commands and the pure-settlement pass, checks the
/// state. Panics if building the population is refused (a generator bug).
pub fn core_bench(opts: CoreBenchOptions) -> CoreBenchReport {
    assert!(opts.persons >= 1 && opts.institutions >= 1);
    let machine = Machine::detect();
    let mut rng = SplitMix64::new(opts.seed);
    let build_time = parse_cst(BUILD_TIME).expect("valid time");
    let start = parse_cst(RUN_START).expect("valid time");

    // 1. The plan (not part of the measured memory).
    let t = Instant::now();
    let plan = Plan::make(opts.persons, opts.institutions, &mut rng);
    let mut pop = PopulationFigures {
        persons: opts.persons,
        families: plan.families,
        institutions: opts.institutions,
        bindings: plan.bindings.len() as u32,
        wallet_only_bindings: plan.bindings.iter().filter(|b| !b.in_province).count() as u32,
        plan: t.elapsed(),
        ..PopulationFigures::default()
    };
    let mut mem = MemoryFigures {
        before_population: Rss::now(),
        op_size: std::mem::size_of::<Op>(),
        ..MemoryFigures::default()
    };

    // 2. The population.
    let t = Instant::now();
    let mut state = State::new(Params::default());
    let population = Population::Families(&plan);
    let pb = bar(population.op_count(), "building population", opts.progress);
    population.build(&mut rng, |op| {
        let credit = matches!(op.body, Body::Credit { .. });
        let wallet = matches!(op.body, Body::OpenWallet { .. });
        match build_write(&mut state, build_time, op) {
            Reply::Credited { count, sum } => {
                pop.credited_count += u64::from(count);
                pop.credited_sum = pop.credited_sum.checked_add(sum).expect("in range");
                pop.credit_batches += 1;
            }
            other => assert!(!credit, "unexpected credit reply {other:?}"),
        }
        pop.wallets += u32::from(wallet);
        pb.inc(1);
    });
    pb.finish_and_clear();
    pop.residents = plan.persons.iter().filter(|p| p.resident).count() as u32;
    pop.employees = opts.persons - pop.residents;
    pop.build = t.elapsed();
    mem.after_population = Rss::now();
    mem.msgids_after_population = state.msgid_count();
    mem.bytes_per_person = mem
        .after_population
        .rss_kib
        .saturating_sub(mem.before_population.rss_kib)
        * 1024
        / u64::from(opts.persons);
    // The run starts a month later: the build's msgids leave the retention window.
    state
        .apply(&Op::Tick { time: start })
        .expect("the clock moves forward");
    // At rest: `gongji`'s purge thread returns what the allocator freed a second or more ago.
    std::thread::sleep(e2e::SETTLE);
    mem.after_retention = Rss::now();
    mem.bytes_per_person_after_retention = mem
        .after_retention
        .rss_kib
        .saturating_sub(mem.before_population.rss_kib)
        * 1024
        / u64::from(opts.persons);

    // 3. The mixed run: generate a chunk, apply it timed, repeat.
    let mut run = RunFigures {
        first_time: start,
        clock_read_ns: clock_read_cost(),
        ..RunFigures::default()
    };
    let mut per_kind: Vec<KindFigures> = KINDS
        .iter()
        .map(|k| KindFigures {
            kind: k.name(),
            ..KindFigures::default()
        })
        .collect();
    let mut generator = Generator::new(&plan, opts.seed ^ 0x5EED, start, 1);
    let mut slots: Vec<u64> = Vec::new();
    let mut ops: Vec<Op> = Vec::with_capacity(CHUNK.min(opts.commands as usize));
    let mut metas: Vec<Meta> = Vec::with_capacity(ops.capacity());
    mem.chunk_bytes = ops.capacity() * (mem.op_size + std::mem::size_of::<Meta>());
    let pb = bar(opts.commands, "running commands", opts.progress);
    let mut remaining = opts.commands;
    while remaining > 0 {
        let size = (CHUNK as u64).min(remaining) as usize;
        remaining -= size as u64;
        let t = Instant::now();
        ops.clear();
        metas.clear();
        for _ in 0..size {
            let (op, meta) = generator.next_mixed();
            ops.push(op);
            metas.push(meta);
        }
        slots.resize(generator.slots as usize, 0);
        run.generation += t.elapsed();
        let elapsed = apply_chunk(
            &mut state,
            &mut ops,
            &metas,
            &mut slots,
            &mut per_kind,
            &mut run,
        );
        run.elapsed += elapsed;
        run.chunks += 1;
        pb.inc(size as u64);
    }
    pb.finish_and_clear();
    run.per_kind = per_kind;
    run.commands = run.per_kind.iter().map(|k| k.attempted).sum();
    run.settlements_applied = run.per_kind[Kind::Settle as usize].applied;
    run.commands_per_sec = run.commands as f64 / run.elapsed.as_secs_f64().max(1e-9);
    let settle = &run.per_kind[Kind::Settle as usize];
    run.settlement_ns_runs = settle.time.as_nanos() as f64 / settle.attempted.max(1) as f64;

    // 4. The pure-settlement pass.
    if opts.pure_settlements > 0 {
        let pure: Vec<Op> = (0..opts.pure_settlements)
            .map(|_| generator.next_settlement())
            .collect();
        let t = Instant::now();
        let mut applied = 0u64;
        for op in &pure {
            match state.apply(op) {
                Ok(_) => applied += 1,
                Err(r) => {
                    *run.rejections
                        .entry(("settle (pure)", r.code.as_str()))
                        .or_default() += 1
                }
            }
        }
        run.pure_elapsed = t.elapsed();
        run.pure_settlements = applied;
        run.settlement_ns_pure = run.pure_elapsed.as_nanos() as f64 / opts.pure_settlements as f64;
    }
    run.last_time = state.clock();
    let (from, to) = (period_of(start), period_of(state.clock()));
    run.stats = state.stats(from, to, None);
    run.stats_from = from.to_string();
    run.stats_to = to.to_string();
    mem.after_run = Rss::now();
    mem.msgids_after_run = state.msgid_count();

    // 5. The full check.
    let t = Instant::now();
    let check = state.check();
    let check_time = t.elapsed();
    CoreBenchReport {
        machine,
        options: opts,
        population: pop,
        memory: mem,
        run,
        check,
        check_time,
        op_count: state.op_count(),
    }
}

/// Applies one chunk; returns the time spent in the loop. Only the clock reads at changes of
/// command kind and the bookkeeping of replies are added to the engine's own time.
fn apply_chunk(
    state: &mut State,
    ops: &mut [Op],
    metas: &[Meta],
    slots: &mut [u64],
    per_kind: &mut [KindFigures],
    run: &mut RunFigures,
) -> Duration {
    let begin = Instant::now();
    let mut run_start = begin;
    let mut run_kind = metas.first().map_or(Kind::Settle, |m| m.kind);
    for (op, meta) in ops.iter_mut().zip(metas) {
        if meta.kind != run_kind {
            run.clock_reads += 1;
            let now = Instant::now();
            per_kind[run_kind as usize].time += now - run_start;
            run_start = now;
            run_kind = meta.kind;
        }
        if let Fix::Use { slot, .. } = meta.fix {
            match slots[slot as usize] {
                0 => {
                    run.skipped += 1;
                    continue;
                }
                id => set_transfer_id(op, id),
            }
        }
        let figures = &mut per_kind[meta.kind as usize];
        figures.attempted += 1;
        match state.apply(op) {
            Ok(Applied { reply, .. }) => {
                figures.applied += 1;
                if let (Fix::Record(slot), Reply::Transfer(t)) = (meta.fix, reply) {
                    slots[slot as usize] = t.transfer_id;
                }
            }
            Err(r) => {
                figures.rejected += 1;
                *run.rejections
                    .entry((meta.kind.name(), r.code.as_str()))
                    .or_default() += 1;
            }
        }
    }
    let end = Instant::now();
    per_kind[run_kind as usize].time += end - run_start;
    end - begin
}

/// What one `Instant::now()` costs here, in ns (median of a few rounds of 100,000).
fn clock_read_cost() -> f64 {
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let mut last = t;
            for _ in 0..100_000 {
                last = std::hint::black_box(Instant::now());
            }
            (last - t).as_nanos() as f64 / 100_000.0
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

/// `1234567` → `"1,234,567"`.
pub fn thousands(v: u64) -> String {
    let digits = v.to_string().into_bytes();
    let groups: Vec<&str> = digits
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).expect("ASCII digits"))
        .collect();
    groups.join(",")
}

impl fmt::Display for CoreBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (o, p, m, r) = (&self.options, &self.population, &self.memory, &self.run);
        let th = thousands;
        writeln!(f, "gongji bench core")?;
        writeln!(f, "machine     {}", self.machine)?;
        writeln!(
            f,
            "options     --persons {} --commands {} --seed {} ({} institutions, {} pure settlements)",
            o.persons,
            o.commands,
            o.seed,
            th(u64::from(o.institutions)),
            th(o.pure_settlements)
        )?;
        writeln!(f)?;
        writeln!(f, "population")?;
        writeln!(
            f,
            "  {} persons in {} families: {} employees (310), {} residents (390)",
            th(u64::from(p.persons)),
            th(u64::from(p.families)),
            th(u64::from(p.employees)),
            th(u64::from(p.residents))
        )?;
        writeln!(
            f,
            "  {} bindings ({} wallet_only across provinces), {} wallets open, {} institutions",
            th(u64::from(p.bindings)),
            th(u64::from(p.wallet_only_bindings)),
            th(u64::from(p.wallets)),
            th(u64::from(p.institutions))
        )?;
        writeln!(
            f,
            "  credited {} accounts for {CREDIT_PERIOD}, {} yuan, in {} batches of up to {}",
            th(p.credited_count),
            p.credited_sum,
            p.credit_batches,
            th(CREDIT_BATCH as u64)
        )?;
        writeln!(
            f,
            "  planned in {:.2} s, applied in {:.2} s (at {}, untimed)",
            p.plan.as_secs_f64(),
            p.build.as_secs_f64(),
            BUILD_TIME
        )?;
        writeln!(f)?;
        writeln!(f, "memory (from /proc/self/status)")?;
        writeln!(f, "  before population     {}", m.before_population)?;
        writeln!(f, "  after population      {}", m.after_population)?;
        writeln!(
            f,
            "  bytes per person      {} = (VmRSS after population - before) / persons; includes \
             the {} msgid records of the build (enrolment, binding, credit, wallet replies, kept \
             30 days)",
            th(m.bytes_per_person),
            th(m.msgids_after_population as u64)
        )?;
        writeln!(
            f,
            "  after retention tick  {} (the run's first op, a month later: those records \
             forgotten, their tables shrunk), {} s later at rest",
            m.after_retention,
            e2e::SETTLE.as_secs()
        )?;
        writeln!(
            f,
            "  bytes per person      {} = (VmRSS after retention tick - before) / persons: the \
             population's state without msgid records, plus freed memory the allocator keeps for \
             reuse (`gongji`'s purge thread returns what was freed a second or more ago)",
            th(m.bytes_per_person_after_retention)
        )?;
        writeln!(
            f,
            "  after command run     {} ({} msgid records held; includes one generated chunk: \
             {} ops of {} bytes = {})",
            m.after_run,
            th(m.msgids_after_run as u64),
            th(CHUNK as u64),
            m.op_size,
            mib(m.chunk_bytes as u64 / 1024)
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "run  {} .. {} (CST; the clock moves ~0.25 s a command, 22:00-06:00 skipped)",
            format_cst(r.first_time),
            format_cst(r.last_time)
        )?;
        writeln!(
            f,
            "  generated in {} chunks of up to {} before each timed stretch ({:.2} s, untimed)",
            r.chunks,
            th(CHUNK as u64),
            r.generation.as_secs_f64()
        )?;
        writeln!(
            f,
            "  {} commands applied in {:.3} s  =>  {} commands/s",
            th(r.commands),
            r.elapsed.as_secs_f64(),
            th(r.commands_per_sec as u64)
        )?;
        writeln!(
            f,
            "  {:<18} {:>12} {:>12} {:>10} {:>10} {:>9}",
            "kind", "attempted", "applied", "rejected", "time s", "ns/op"
        )?;
        for k in &r.per_kind {
            writeln!(
                f,
                "  {:<18} {:>12} {:>12} {:>10} {:>10.3} {:>9.0}",
                k.kind,
                th(k.attempted),
                th(k.applied),
                th(k.rejected),
                k.time.as_secs_f64(),
                k.time.as_nanos() as f64 / k.attempted.max(1) as f64
            )?;
        }
        writeln!(
            f,
            "  ({} clock reads in the timed loop at {:.0} ns each, counted in the time above)",
            th(r.clock_reads),
            r.clock_read_ns
        )?;
        if r.skipped > 0 {
            writeln!(
                f,
                "  ({} accepts/declines not sent: their transfer's creation was refused)",
                th(r.skipped)
            )?;
        }
        writeln!(
            f,
            "  settlements applied {}: {:.0} ns/settlement in the mixed run (the loop reads the \
             clock where the command kind changes; each run of same-kind commands is charged \
             to its kind)",
            th(r.settlements_applied),
            r.settlement_ns_runs
        )?;
        if o.pure_settlements > 0 {
            writeln!(
                f,
                "  second pass: {} settlements only, timed as one loop, in {:.3} s  =>  {:.0} \
                 ns/settlement",
                th(r.pure_settlements),
                r.pure_elapsed.as_secs_f64(),
                r.settlement_ns_pure
            )?;
        }
        writeln!(f, "  rejections by code:")?;
        if r.rejections.is_empty() {
            writeln!(f, "    none")?;
        }
        for ((kind, code), count) in &r.rejections {
            writeln!(f, "    {code:<24} {:>12}  ({kind})", th(*count))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "statistics {}..{} (net of cancellations)",
            r.stats_from, r.stats_to
        )?;
        let s = &r.stats;
        for (label, c) in [
            ("total", s.total),
            ("account_draw", s.account_draw),
            ("  same_pool", s.same_pool),
            ("  cross_pool", s.cross_pool),
            ("wallet_transfer", s.wallet_transfer),
            ("  in_province", s.in_province),
            ("  cross_province", s.cross_province),
        ] {
            writeln!(
                f,
                "  {label:<18} {:>12} {:>18}",
                th(c.count),
                c.amount.to_string()
            )?;
        }
        writeln!(f)?;
        match &self.check {
            Ok(()) => writeln!(
                f,
                "check()  OK in {:.2} s ({} ops applied in all)",
                self.check_time.as_secs_f64(),
                th(self.op_count)
            ),
            Err(e) => writeln!(
                f,
                "check()  FAILED in {:.2} s: {e}",
                self.check_time.as_secs_f64()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn small_core_bench_is_consistent() {
        let report = core_bench(CoreBenchOptions {
            persons: 2_000,
            commands: 20_000,
            seed: 7,
            pure_settlements: 2_000,
            progress: false,
            ..CoreBenchOptions::default()
        });
        assert_eq!(report.check, Ok(()), "{report}");
        assert!(report.run.settlements_applied > 0, "{report}");
        assert!(report.run.stats.account_draw.count > 0, "{report}");
        assert!(report.run.stats.wallet_transfer.count > 0, "{report}");
        assert!(report.population.wallet_only_bindings > 0, "{report}");
        let settle = &report.run.per_kind[Kind::Settle as usize];
        assert_eq!(settle.rejected, 0, "{report}");
        assert!(
            report.run.per_kind.iter().all(|k| k.attempted > 0),
            "{report}"
        );
        // Deterministic for a seed: the same figures again (times aside).
        let again = core_bench(report.options.clone());
        assert_eq!(again.run.stats, report.run.stats);
        assert_eq!(again.run.rejections, report.run.rejections);
    }
}
