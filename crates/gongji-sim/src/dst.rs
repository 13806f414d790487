//! Deterministic simulation testing: the generator (in chaos mode, with writes meant to be
//! refused and replays) against an engine on [`FaultStorage`], crashed at random writes and
//! syncs and restarted under a random [`CrashMode`], all drawn from one seed.
//!
//! An independent in-memory [`State`] (the reference) is fed exactly the acknowledged
//! requests. Every acknowledged reply must equal the reference's; after every restart the
//! recovered state must be the acknowledged prefix (plus at most a prefix of the submission
//! that was in flight, which was never answered), pass [`State::check`] (money conserved,
//! counters recomputed), and answer a sample of acknowledged msgids with their first replies.
//! Then the unanswered submissions are resent, as a client would. Up to three submissions
//! are in flight at once, so that crashes also strike batches that group several of them.
//!
//! Reproducibility: the workload and every fault decision come from the seed. The shadow
//! snapshot thread writes to the same storage concurrently, so the exact write a crash lands
//! on can shift by a snapshot between runs of one seed; the workload and the checks do not.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use gongji_core::time::{parse_date, Period};
use gongji_core::{Applied, Command, Fen, Op, Params, Reply, State};
use gongji_journal::{CrashMode, FaultStorage, JournalConfig};
use gongji_server::{Config, Engine, SubmitError, WriteRequest, WriteResult};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::calib::Target as Quota;
use crate::workload::{GenConfig, Generator, Reads, Target};

#[derive(Clone, Debug)]
pub struct DstOptions {
    pub seed: u64,
    /// Population factor (2e-6: about 2,600 persons).
    pub scale: f64,
    /// Simulated days (from a seed-dependent start in 2025).
    pub days: i32,
    /// Chance, per submission, of arming a crash a few writes or syncs ahead.
    pub crash_chance: f64,
    /// Chance, per submission, of a clean shutdown and restart.
    pub restart_chance: f64,
    /// Requests per submission at most (each submission a random size up to it).
    pub submission_ops_max: usize,
    /// Self-test of the harness: after the first crash, apply one request to the reference
    /// that the engine never saw. The run must then fail.
    pub sabotage_reference: bool,
}

impl DstOptions {
    pub fn new(seed: u64) -> DstOptions {
        DstOptions {
            seed,
            scale: 2e-6,
            days: 12,
            crash_chance: 0.12,
            restart_chance: 0.01,
            submission_ops_max: 64,
            sabotage_reference: false,
        }
    }
}

/// What one seed did.
#[derive(Clone, Debug, Default)]
pub struct DstOutcome {
    pub seed: u64,
    pub requests: u64,
    pub submissions: u64,
    pub crashes: u64,
    pub clean_restarts: u64,
    /// Crashes whose recovery kept part of the unanswered submission, and that lost it.
    pub in_flight_kept: u64,
    pub in_flight_lost: u64,
    pub replays_checked: u64,
    pub ops: u64,
    /// The generator's requests refused, by `err_code` (chaos writes are meant to be).
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    pub elapsed: Duration,
}

impl std::fmt::Display for DstOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} requests in {} submissions, {} ops, {} crashes ({} kept part of the \
             unanswered submission, {} lost it), {} clean restarts, {} replays checked, {:.1} s; \
             refused: {:?}",
            self.seed,
            self.requests,
            self.submissions,
            self.ops,
            self.crashes,
            self.in_flight_kept,
            self.in_flight_lost,
            self.clean_restarts,
            self.replays_checked,
            self.elapsed.as_secs_f64(),
            self.rejected
        )
    }
}

fn config() -> Config {
    let mut config = Config::new("/nonexistent/gongji-dst");
    // Small segments and frequent snapshots: segment rolls, snapshot writes and pruning are
    // among the crash points.
    config.journal = JournalConfig {
        segment_size_bytes: 128 * 1024,
        body_bytes_max: 60 * 1024,
        batch_bytes_max: 256 * 1024,
    };
    config.snapshot_interval_ops = 700;
    config.idle_tick_seconds = 10 * 365 * 86_400;
    config
}

fn op_of(request: &WriteRequest) -> Op {
    Op::Write(Command {
        msgid: request.msgid,
        time: request.inf_time.expect("every simulated write has a time"),
        actor: request.actor.clone(),
        body: request.body.clone(),
    })
}

struct DstTarget {
    opts: DstOptions,
    storage: FaultStorage,
    engine: Option<Engine>,
    reference: State,
    rng: ChaCha8Rng,
    armed: bool,
    sabotaged: bool,
    /// Acknowledged applied requests with their replies (for replay checks).
    acked: Vec<(WriteRequest, Reply)>,
    outcome: DstOutcome,
}

impl DstTarget {
    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("an engine")
    }

    fn open(storage: &FaultStorage) -> Engine {
        Engine::open_on(config(), storage.clone(), storage.clone())
            .unwrap_or_else(|e| panic!("open failed: {e}"))
            .0
    }

    fn maybe_arm(&mut self) {
        if self.armed || !self.rng.random_bool(self.opts.crash_chance) {
            return;
        }
        let k = self.rng.random_range(1..=6);
        if self.rng.random_bool(0.5) {
            self.storage
                .set_crash_at_write(self.storage.writes_total() + k);
        } else {
            self.storage
                .set_crash_at_sync(self.storage.syncs_total() + k);
        }
        self.armed = true;
    }

    /// Submits several submissions at once (so the writer may commit them in one batch),
    /// then waits for each in order. Answers come in order: once one submission is
    /// unanswered (the writer stopped), none after it may be answered. The unanswered ones
    /// are the in-flight writes of the crash; after recovery they are resent one by one.
    fn submit_group(&mut self, chunks: Vec<Vec<WriteRequest>>) -> Vec<WriteResult> {
        self.maybe_arm();
        let mut receivers = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            self.outcome.submissions += 1;
            receivers.push(match self.engine().submit(chunk.clone()) {
                Ok(rx) => Some(rx),
                Err(SubmitError::Stopped) => None,
                Err(SubmitError::Overloaded) => panic!("one client cannot overload the queue"),
            });
        }
        let mut out = Vec::new();
        let mut unanswered = None;
        for (i, rx) in receivers.into_iter().enumerate() {
            match rx.and_then(|rx| rx.blocking_recv().ok()) {
                Some(results) => {
                    assert!(
                        unanswered.is_none(),
                        "submission {i} was answered after an earlier one was lost"
                    );
                    self.compare(&chunks[i], &results);
                    out.extend(results);
                }
                None => {
                    unanswered.get_or_insert(i);
                }
            }
        }
        match unanswered {
            None => {
                if !self.armed && self.rng.random_bool(self.opts.restart_chance) {
                    self.clean_restart();
                }
            }
            Some(first) => {
                let in_flight: Vec<WriteRequest> = chunks[first..].concat();
                self.recover(&in_flight);
                for chunk in &chunks[first..] {
                    out.extend(self.submit_group(vec![chunk.clone()]));
                }
            }
        }
        out
    }

    /// Every acknowledged reply equals the reference's for the same request.
    fn compare(&mut self, chunk: &[WriteRequest], results: &[WriteResult]) {
        for (request, result) in chunk.iter().zip(results) {
            let want = self.reference.apply(&op_of(request));
            assert_eq!(
                &want, result,
                "the engine's reply differs from the reference's for {:?}",
                request.body
            );
            if let Ok(Applied {
                reply,
                replayed: false,
            }) = result
            {
                self.acked.push((request.clone(), reply.clone()));
            }
        }
        self.outcome.requests += chunk.len() as u64;
    }

    fn clean_restart(&mut self) {
        let engine = self.engine.take().expect("an engine");
        engine.shutdown().expect("clean shutdown");
        drop(engine);
        // A clean shutdown syncs everything: any crash mode must give the same state.
        let storage = self.storage.after_crash(CrashMode::DropUnsynced);
        let engine = Self::open(&storage);
        self.engine = Some(engine);
        self.storage = storage;
        self.armed = false;
        self.outcome.clean_restarts += 1;
        let (ops, hash) = self.engine().read(|s| (s.op_count(), s.state_hash()));
        assert!(
            ops == self.reference.op_count() && hash == self.reference.state_hash(),
            "after a clean restart the state ({ops} ops) differs from the reference ({} ops)",
            self.reference.op_count()
        );
        self.engine()
            .read(|s| s.check())
            .unwrap_or_else(|e| panic!("state check after a clean restart: {e}"));
    }

    /// After the writer stopped on a crash: restart on what survived, check it, and leave
    /// the reference equal to it.
    fn recover(&mut self, in_flight: &[WriteRequest]) {
        let engine = self.engine.take().expect("an engine");
        let _ = engine.shutdown();
        drop(engine);
        let mode = match self.rng.random_range(0..3) {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::KeepUnsynced,
            _ => CrashMode::Torn {
                seed: self.rng.random(),
            },
        };
        let storage = self.storage.after_crash(mode);
        let engine = Engine::open_on(config(), storage.clone(), storage.clone())
            .unwrap_or_else(|e| panic!("restart after a crash ({mode:?}) failed: {e}"));
        let engine = engine.0;
        engine
            .read(|s| s.check())
            .unwrap_or_else(|e| panic!("state check after a crash ({mode:?}): {e}"));
        if self.opts.sabotage_reference && !self.sabotaged {
            self.sabotaged = true;
            let extra = WriteRequest {
                msgid: gongji_core::Msgid::from("dst-sabotage").expect("msgid"),
                inf_time: Some(self.reference.clock()),
                actor: gongji_core::Actor::Admin,
                body: gongji_core::Body::RegisterInstitution {
                    fixmedins_code: gongji_core::InstCode::from("X11010500001").expect("code"),
                    fixmedins_name: "never sent to the engine".into(),
                    fixmedins_type: gongji_core::InstType::Medical,
                    admdvs: 110105,
                },
            };
            let _ = self.reference.apply(&op_of(&extra));
        }
        let (ops, hash) = engine.read(|s| (s.op_count(), s.state_hash()));
        let acked_ops = self.reference.op_count();
        assert!(
            ops >= acked_ops,
            "acknowledged ops lost after a crash ({mode:?}): {ops} < {acked_ops}"
        );
        let mut matched = ops == acked_ops && hash == self.reference.state_hash();
        let mut kept = 0;
        for request in in_flight {
            if matched {
                break;
            }
            let _ = self.reference.apply(&op_of(request));
            kept += 1;
            matched = ops == self.reference.op_count() && hash == self.reference.state_hash();
        }
        assert!(
            matched,
            "after a crash ({mode:?}) the recovered state ({ops} ops) is neither the \
             acknowledged ops ({acked_ops}) nor those plus a prefix of the unanswered submission"
        );
        if kept > 0 {
            self.outcome.in_flight_kept += 1;
        } else {
            self.outcome.in_flight_lost += 1;
        }
        self.check_replays(&engine, hash);
        self.engine = Some(engine);
        self.storage = storage;
        self.armed = false;
        self.outcome.crashes += 1;
    }

    /// A sample of acknowledged writes still within the msgid retention answer their first
    /// replies again and change nothing.
    fn check_replays(&mut self, engine: &Engine, hash: [u8; 32]) {
        let clock = engine.read(|s| s.clock());
        let window = i64::from(Params::default().msgid_retention_days - 1) * 86_400;
        let recent: Vec<usize> = (0..self.acked.len())
            .filter(|&i| self.acked[i].0.inf_time.expect("time") > clock - window)
            .collect();
        if recent.is_empty() {
            return;
        }
        let sample: Vec<usize> = (0..32)
            .map(|_| recent[self.rng.random_range(0..recent.len())])
            .collect();
        let requests: Vec<WriteRequest> = sample.iter().map(|&i| self.acked[i].0.clone()).collect();
        let results = engine
            .submit_wait(requests)
            .expect("a restarted engine runs");
        for (&i, result) in sample.iter().zip(results) {
            assert_eq!(
                result,
                Ok(Applied {
                    reply: self.acked[i].1.clone(),
                    replayed: true
                }),
                "an acknowledged write does not replay with its reply after a restart: {:?}",
                self.acked[i].0.body
            );
        }
        self.outcome.replays_checked += sample.len() as u64;
        assert_eq!(
            engine.read(|s| s.state_hash()),
            hash,
            "replays changed the state"
        );
    }
}

impl Target for DstTarget {
    fn submit(&mut self, requests: Vec<WriteRequest>) -> Vec<WriteResult> {
        let mut out = Vec::with_capacity(requests.len());
        let mut left = requests.len();
        // Taken from the front as they go (a `split_off` would copy the rest each time).
        let mut rest = requests.into_iter();
        while left > 0 {
            let mut group = Vec::new();
            for _ in 0..self.rng.random_range(1..=3) {
                if left == 0 {
                    break;
                }
                let n = self
                    .rng
                    .random_range(1..=self.opts.submission_ops_max)
                    .min(left);
                left -= n;
                group.push(rest.by_ref().take(n).collect());
            }
            out.extend(self.submit_group(group));
        }
        out
    }

    fn read<R>(&mut self, f: impl FnOnce(&dyn Reads) -> R) -> R {
        self.engine().read(|s| f(s))
    }
}

/// The generator's configuration for simulation testing: a small population, a seed-chosen
/// stretch of 2025, more of everything per person than the calibrated run, and chaos.
pub fn dst_gen_config(opts: &DstOptions) -> GenConfig {
    let jan1 = parse_date("2025-01-01").expect("date");
    let first = jan1 + 1 + (opts.seed.wrapping_mul(37) % 330) as i32;
    let last = (first + opts.days - 1).min(jan1 + 364);
    let mut cfg = GenConfig::calibrated(
        opts.scale,
        opts.seed,
        Period(2025 * 12),
        Period(2025 * 12 + 11),
    );
    cfg.first_day = first;
    cfg.last_day = last;
    for m in &mut cfg.plan {
        m.draw.count *= 10;
        m.draw.amount = Fen(m.draw.amount.0 * 10);
        m.contributions *= 10;
        m.wallet_in_province = Quota {
            count: 60,
            amount: Fen(60 * 50_000),
        };
        m.wallet_cross_province = Quota {
            count: 40,
            amount: Fen(40 * 50_000),
        };
    }
    cfg.cancel_share = 0.05;
    cfg.ghost_reversals_per_10k = 300.0;
    cfg.suspend_share_month = 0.01;
    cfg.revoke_share_month = 0.05;
    cfg.chaos = true;
    cfg
}

/// Runs one seed; a failure names the seed that reproduces it.
pub fn run_seed(opts: &DstOptions) -> Result<DstOutcome, String> {
    let started = Instant::now();
    let seed = opts.seed;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let storage = FaultStorage::new();
        let engine = DstTarget::open(&storage);
        let mut target = DstTarget {
            opts: opts.clone(),
            storage,
            engine: Some(engine),
            reference: State::new(Params::default()),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_fa17),
            armed: false,
            sabotaged: false,
            acked: Vec::new(),
            outcome: DstOutcome {
                seed,
                ..DstOutcome::default()
            },
        };
        let mut gen = Generator::new(dst_gen_config(opts));
        gen.setup(&mut target);
        for day in gen.days() {
            gen.day(&mut target, day);
        }
        // The end: no crash pending, a clean shutdown, a restart, the same state.
        target.storage.set_crash_at_write(u64::MAX);
        target.storage.set_crash_at_sync(u64::MAX);
        if target.storage.is_crashed() {
            // The armed crash struck a snapshot write after the last answered submission.
            target.recover(&[]);
        }
        target.clean_restart();
        let engine = target.engine.take().expect("an engine");
        engine.shutdown().expect("final shutdown");
        let mut outcome = target.outcome;
        outcome.ops = target.reference.op_count();
        outcome.rejected = gen.tally.rejected.clone();
        outcome
    }));
    match result {
        Ok(mut outcome) => {
            outcome.elapsed = started.elapsed();
            Ok(outcome)
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned());
            Err(format!(
                "DST failed with seed {seed}: {message}\n  reproduce: gongji dst --seeds 1 --from-seed {seed}"
            ))
        }
    }
}
