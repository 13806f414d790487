//! `gongji simulate`: the calibrated generator against the real engine (journal on, the same
//! writer as the server, `inf_time` on every request), then the engine's statistics table
//! beside the published figures scaled by the population factor.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gongji_core::time::Period;
use gongji_core::views::StatsView;
use gongji_server::{Config, Engine, WriteRequest, WriteResult, SUBMISSION_OP_COUNT_MAX};
use indicatif::{ProgressBar, ProgressStyle};

use crate::calib::{self, Figure, Published};
use crate::workload::{GenConfig, Generator, Reads, Tally, Target};

#[derive(Clone, Debug)]
pub struct SimulateOptions {
    pub scale: f64,
    pub from: Period,
    pub to: Period,
    pub seed: u64,
    /// Data directory; a temporary one (removed at the end) when `None`.
    pub data: Option<PathBuf>,
    pub progress: bool,
}

/// The real engine as a [`Target`]: requests go in submissions of at most
/// [`SUBMISSION_OP_COUNT_MAX`], several in flight, never more than the queue holds.
pub struct EngineTarget<'a> {
    pub engine: &'a Engine,
    queue_op_count_max: usize,
    pub progress: Option<ProgressBar>,
}

impl std::fmt::Debug for EngineTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineTarget").finish_non_exhaustive()
    }
}

impl<'a> EngineTarget<'a> {
    pub fn new(engine: &'a Engine, config: &Config) -> EngineTarget<'a> {
        EngineTarget {
            engine,
            queue_op_count_max: config.queue_op_count_max,
            progress: None,
        }
    }
}

type Receiver = tokio::sync::oneshot::Receiver<Vec<WriteResult>>;

impl Target for EngineTarget<'_> {
    fn submit(&mut self, requests: Vec<WriteRequest>) -> Vec<WriteResult> {
        submit_core(
            self.engine,
            self.queue_op_count_max,
            requests,
            self.progress.as_ref(),
        )
    }

    fn read<R>(&mut self, f: impl FnOnce(&dyn Reads) -> R) -> R {
        self.engine.read(|s| f(s))
    }
}

/// Submits `requests` to `engine` in order, in submissions of at most
/// [`SUBMISSION_OP_COUNT_MAX`], several in flight but never more than `queue_op_count_max` ops,
/// and waits for every answer.
pub(crate) fn submit_core(
    engine: &Engine,
    queue_op_count_max: usize,
    requests: Vec<WriteRequest>,
    progress: Option<&ProgressBar>,
) -> Vec<WriteResult> {
    let mut in_flight: VecDeque<(usize, Receiver)> = VecDeque::new();
    let mut queued = 0;
    let mut results = Vec::with_capacity(requests.len());
    let take = |in_flight: &mut VecDeque<(usize, Receiver)>, results: &mut Vec<_>| {
        let (n, rx) = in_flight.pop_front().expect("a submission in flight");
        let got: Vec<WriteResult> = rx.blocking_recv().expect("the writer stopped");
        assert_eq!(got.len(), n);
        results.extend(got);
        n
    };
    // Chunks taken from the front as they go (a `split_off` per chunk would copy the rest
    // each time: quadratic in a submission of millions).
    let mut requests = requests.into_iter();
    loop {
        let chunk: Vec<WriteRequest> = requests.by_ref().take(SUBMISSION_OP_COUNT_MAX).collect();
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        while queued + n > queue_op_count_max {
            queued -= take(&mut in_flight, &mut results);
        }
        let rx = engine
            .submit(chunk)
            .unwrap_or_else(|e| panic!("submit refused: {e:?}"));
        in_flight.push_back((n, rx));
        queued += n;
        if let Some(p) = progress {
            p.inc(n as u64);
        }
    }
    while !in_flight.is_empty() {
        take(&mut in_flight, &mut results);
    }
    results
}

/// What a run measured.
#[derive(Debug)]
pub struct SimulateReport {
    pub stats: StatsView,
    pub published: Option<Published>,
    pub opts: SimulateOptions,
    pub persons: usize,
    pub bindings: usize,
    pub tally: Tally,
    pub elapsed: Duration,
    pub setup_elapsed: Duration,
    pub ops_journaled: u64,
    pub check: Result<(), String>,
    pub data_dir: PathBuf,
    /// Months whose engine statistics missed the generator's quota (channel, got, wanted).
    pub off_quota: Vec<String>,
    /// The ledger's totals at the end (compared with a federated run's sum).
    pub money: gongji_core::federation::MoneyTotals,
    /// The table of each province over the run's months.
    pub provinces: Vec<(u8, StatsView)>,
}

/// The engine's configuration for history loading: every write carries its own `inf_time`,
/// so the writer must not move the clock to the wall clock when a pause occurs.
pub fn engine_config(data_dir: PathBuf) -> Config {
    let mut config = Config::new(data_dir);
    config.idle_tick_seconds = 10 * 365 * 86_400;
    config
}

/// Opens the engine on the data directory without `Engine::open`'s admin-token bootstrap:
/// that write would carry the wall clock (today), after which no write of 2025 could be
/// applied (`INVALID_TIME`). The directory is locked as `Engine::open` locks it; `gongji
/// serve` creates the admin token when it first starts on the directory.
pub(crate) fn open_for_history(
    config: &Config,
) -> Result<(Engine, gongji_server::OpenReport, std::fs::File), String> {
    let io = |e: std::io::Error| format!("{}: {e}", config.data_dir.display());
    gongji_journal::private::create_private_dir(&config.data_dir).map_err(io)?;
    let lock = gongji_server::lock_data_dir(&config.data_dir).map_err(|e| e.to_string())?;
    let storage =
        |_| gongji_journal::FsStorage::open(config.journal_dir()).map_err(|e| e.to_string());
    let history = gongji_server::HistoryDir::create(config.history_dir()).map_err(io)?;
    let (engine, report) =
        Engine::open_on_with_history(config.clone(), storage(0)?, storage(1)?, history)
            .map_err(|e| e.to_string())?;
    Ok((engine, report, lock))
}

/// The months and scale the simulator is calibrated for.
pub(crate) fn check_options(opts: &SimulateOptions) -> Result<(), String> {
    let first = Period(2025 * 12);
    let last = Period(2025 * 12 + 11);
    if opts.from < first || opts.to > last || opts.from > opts.to {
        return Err(
            "the simulator is calibrated for the months of 2025: --from and --to must \
                    lie in 2025-01..2025-12, --from not after --to"
                .into(),
        );
    }
    if !(opts.scale > 0.0 && opts.scale <= 0.01) {
        return Err("--scale must be in (0, 0.01]".into());
    }
    Ok(())
}

pub fn simulate(opts: &SimulateOptions) -> Result<SimulateReport, String> {
    check_options(opts)?;
    let temp;
    let data_dir = match &opts.data {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("gongji-simulate-")
                .tempdir()
                .map_err(|e| format!("temporary directory: {e}"))?;
            temp.path().to_owned()
        }
    };
    let config = engine_config(data_dir.clone());
    let (engine, report, _lock) = open_for_history(&config)?;
    // Any op at all (even `gongji serve`'s admin token, written at today's clock) would
    // refuse the history that follows.
    if report.replayed_ops > 0 || engine.read(|s| s.op_count()) > 0 {
        return Err(format!(
            "{} already holds data: simulate into an empty directory",
            data_dir.display()
        ));
    }
    let started = Instant::now();
    let cfg = GenConfig::calibrated(opts.scale, opts.seed, opts.from, opts.to);
    let mut gen = Generator::new(cfg);
    let mut target = EngineTarget::new(&engine, &config);
    let setup_elapsed = drive(&mut gen, &mut target, opts.progress, started, |t, bar| {
        std::mem::replace(&mut t.progress, bar)
    });
    let elapsed = started.elapsed();
    let stats = engine.read(|s| s.stats(opts.from, opts.to, None));
    let check = engine.read(|s| s.check());
    let off_quota = engine.read(|s| off_quota(s, &gen));
    let (money, provinces) = engine.read(|s| {
        let tables = provinces()
            .map(|p| (p, s.stats(opts.from, opts.to, Some(p))))
            .collect();
        (s.money_totals(), tables)
    });
    let ops_journaled = engine
        .counters()
        .ops_applied_total
        .load(std::sync::atomic::Ordering::Relaxed);
    engine.shutdown().map_err(|e| e.to_string())?;
    let published = [calib::JAN_MAY_2025, calib::FULL_2025]
        .into_iter()
        .find(|p| p.from == opts.from.to_string().as_str() && p.to == opts.to.to_string().as_str());
    Ok(SimulateReport {
        stats,
        published,
        opts: opts.clone(),
        persons: gen.pop.persons.len(),
        bindings: gen.binding_count(),
        tally: gen.tally.clone(),
        elapsed,
        setup_elapsed,
        ops_journaled,
        check,
        data_dir,
        off_quota,
        money,
        provinces,
    })
}

/// The province codes of the population, in order.
pub fn provinces() -> impl Iterator<Item = u8> {
    let mut codes: Vec<u8> = crate::population::AREAS
        .iter()
        .map(|(_, areas)| gongji_core::certno::admdvs_province(areas[0]))
        .collect();
    codes.sort_unstable();
    codes.into_iter()
}

/// A progress bar of `len` steps named `what` (none without `progress`).
pub(crate) fn bar(progress: bool, len: u64, what: &str) -> Option<ProgressBar> {
    if !progress {
        return None;
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
        )
        .expect("template"),
    );
    bar.set_message(what.to_owned());
    Some(bar)
}

/// The generator's run against `target`: the population's set-up (its progress bar handed to
/// the target by `set_bar`, which returns the one it replaces), then every day. Returns how
/// long the run had taken since `started` when the set-up ended.
pub(crate) fn drive<T: Target>(
    gen: &mut Generator,
    target: &mut T,
    progress: bool,
    started: Instant,
    set_bar: impl Fn(&mut T, Option<ProgressBar>) -> Option<ProgressBar>,
) -> Duration {
    let credited = gen
        .pop
        .persons
        .iter()
        .filter(|p| !p.opening.is_zero())
        .count();
    let setup_ops = gen.pop.persons.len()
        + gen.pop.institutions.len()
        + credited.div_ceil(gongji_core::command::CREDIT_ITEMS_MAX)
        + gen.pop.bindings.iter().filter(|b| !b.later).count();
    set_bar(target, bar(progress, setup_ops as u64, "population"));
    gen.setup(target);
    if let Some(p) = set_bar(target, None) {
        p.finish();
    }
    let setup_elapsed = started.elapsed();
    let days: Vec<i32> = gen.days().collect();
    let day_bar = bar(progress, days.len() as u64, "days");
    for &day in &days {
        gen.day(target, day);
        if let Some(p) = &day_bar {
            p.set_message(gongji_core::time::format_date(day));
            p.inc(1);
        }
    }
    if let Some(p) = day_bar {
        p.finish();
    }
    setup_elapsed
}

/// The months whose statistics (read from the engine, or the sum of a federation's) differ
/// from the quotas the generator steered for: a diagnostic of the steering, printed under the
/// table.
pub(crate) fn off_quota(state: &dyn Reads, gen: &Generator) -> Vec<String> {
    let mut out = Vec::new();
    for day in gen.days() {
        let period = gongji_core::time::period_of(gongji_core::time::day_start(day));
        if crate::workload::period_first_day(period) != day {
            continue;
        }
        let Some(plan) = gen.cfg.plan.iter().find(|m| m.period == period) else {
            continue;
        };
        let s = state.stats(period, period);
        for (name, got, want) in [
            ("account draws", s.account_draw, plan.draw),
            ("wallet in province", s.in_province, plan.wallet_in_province),
            (
                "wallet cross province",
                s.cross_province,
                plan.wallet_cross_province,
            ),
        ] {
            if got.count != want.count || got.amount != want.amount {
                out.push(format!(
                    "{period} {name}: {} for {} yuan, quota {} for {} yuan",
                    got.count, got.amount, want.count, want.amount
                ));
            }
        }
    }
    out
}

/// One row of the table: the engine's cell and, when published, the scaled figure.
struct Row {
    label: &'static str,
    cell: gongji_core::views::StatsCell,
    published: Option<Figure>,
    /// How the published figure was obtained when it is not a cell of the source.
    derived: bool,
}

fn rows(r: &SimulateReport) -> Vec<Row> {
    let s = r.stats;
    let p = r.published;
    let field = |f: fn(&Published) -> Option<Figure>| p.as_ref().and_then(f);
    // Where the source publishes a total and the wallet, but not account draws apart, the
    // account-draw figure is their difference (and likewise in-province wallet transfers).
    let minus = |a: Option<Figure>, b: Option<Figure>| match (a, b) {
        (Some(a), Some(b)) => Some(Figure {
            count: a.count - b.count,
            amount_yuan: a.amount_yuan - b.amount_yuan,
        }),
        _ => None,
    };
    let draw = field(|p| p.account_draw);
    let (draw, draw_derived) = match draw {
        Some(d) => (Some(d), false),
        None => (minus(field(|p| p.total), field(|p| p.wallet)), true),
    };
    let in_province = minus(field(|p| p.wallet), field(|p| p.cross_province));
    vec![
        Row {
            label: "all family mutual aid",
            cell: s.total,
            published: field(|p| p.total),
            derived: false,
        },
        Row {
            label: "instant call of a bound giver's account",
            cell: s.account_draw,
            published: draw,
            derived: draw_derived && draw.is_some(),
        },
        Row {
            label: "  same pooling area",
            cell: s.same_pool,
            published: None,
            derived: false,
        },
        Row {
            label: "  another pooling area",
            cell: s.cross_pool,
            published: None,
            derived: false,
        },
        Row {
            label: "medical-insurance wallet transfers",
            cell: s.wallet_transfer,
            published: field(|p| p.wallet),
            derived: false,
        },
        Row {
            label: "  in province",
            cell: s.in_province,
            published: in_province,
            derived: in_province.is_some(),
        },
        Row {
            label: "  cross province",
            cell: s.cross_province,
            published: field(|p| p.cross_province),
            derived: false,
        },
    ]
}

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn yuan(fen: u64) -> String {
    format!("{}.{:02}", thousands(fen / 100), fen % 100)
}

fn error_pct(got: f64, want: f64) -> (String, f64) {
    if want == 0.0 {
        return ("—".into(), 0.0);
    }
    let e = (got - want) / want * 100.0;
    // No "-0.00 %" for a difference far below the printed precision.
    let shown = if e.abs() < 0.005 { 0.0 } else { e };
    (format!("{shown:+.2} %"), e.abs())
}

/// The largest relative error over the published cells, in percent (None: nothing published).
pub fn worst_error_pct(r: &SimulateReport) -> Option<f64> {
    let scale = r.opts.scale;
    rows(r)
        .iter()
        .filter_map(|row| {
            let p = row.published?;
            let c = error_pct(row.cell.count as f64, p.count * scale).1;
            let a = error_pct(row.cell.amount.0 as f64, p.amount_yuan * 100.0 * scale).1;
            Some(c.max(a))
        })
        .reduce(f64::max)
}

impl std::fmt::Display for SimulateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.opts;
        let scale = o.scale;
        writeln!(
            f,
            "Family mutual aid, {} to {}, all provinces — the engine's statistics after the run \
             (scale {}, seed {})",
            o.from, o.to, scale, o.seed
        )?;
        match &self.published {
            Some(p) => writeln!(f, "published: {} — scaled by {scale}", p.source)?,
            None => writeln!(f, "no published figures for this range of months")?,
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<40} {:>9} {:>9} {:>8}  {:>15} {:>15} {:>8}",
            "", "count", "published", "error", "amount (yuan)", "published", "error"
        );
        for row in rows(self) {
            let (pc, pa, ec, ea) = match row.published {
                Some(p) => {
                    let want_c = p.count * scale;
                    let want_a = p.amount_yuan * scale;
                    let mark = if row.derived { "*" } else { "" };
                    (
                        format!("{}{mark}", thousands(want_c.round() as u64)),
                        format!("{}{mark}", yuan((want_a * 100.0).round() as u64)),
                        error_pct(row.cell.count as f64, want_c).0,
                        error_pct(row.cell.amount.0 as f64, want_a * 100.0).0,
                    )
                }
                None => ("—".into(), "—".into(), String::new(), String::new()),
            };
            let _ = writeln!(
                out,
                "{:<40} {:>9} {:>9} {:>8}  {:>15} {:>15} {:>8}",
                row.label,
                thousands(row.cell.count),
                pc,
                ec,
                yuan(row.cell.amount.0),
                pa,
                ea
            );
        }
        f.write_str(&out)?;
        if rows(self).iter().any(|r| r.derived) {
            writeln!(
                f,
                "* derived from published cells (total − wallet; wallet − cross-province)"
            )?;
        }
        if let Some(e) = worst_error_pct(self) {
            writeln!(
                f,
                "largest error over published cells: {e:.2} % ({})",
                if e <= 2.0 {
                    "within 2 %"
                } else {
                    "NOT within 2 %"
                }
            )?;
        }
        if self.off_quota.is_empty() {
            writeln!(f, "every month landed exactly on its quota")?;
        }
        for line in &self.off_quota {
            writeln!(f, "off quota: {line}")?;
        }
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "population: {} persons, {} active bindings; {} ops journaled in {:.1} s \
             ({:.0} ops/s; population set-up {:.1} s)",
            thousands(self.persons as u64),
            thousands(self.bindings as u64),
            thousands(self.ops_journaled),
            secs,
            self.ops_journaled as f64 / secs.max(1e-9),
            self.setup_elapsed.as_secs_f64()
        )?;
        let t = &self.tally;
        let rejected: Vec<String> = t
            .rejected
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        writeln!(
            f,
            "requests: {} sent, {} applied, {} replayed, rejected: {}",
            thousands(t.requests),
            thousands(t.applied),
            thousands(t.replayed),
            if rejected.is_empty() {
                "none".to_owned()
            } else {
                rejected.join(", ")
            }
        )?;
        match &self.check {
            Ok(()) => writeln!(f, "state check (money conserved, counters recomputed): ok")?,
            Err(e) => writeln!(f, "state check FAILED: {e}")?,
        }
        if o.data.is_some() {
            writeln!(f, "data directory: {}", self.data_dir.display())?;
        }
        Ok(())
    }
}
