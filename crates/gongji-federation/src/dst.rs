//! Deterministic simulation of a federation (`gongji federation dst`): K engines, each a
//! [`Node`] on fault-injecting storage, a [`Bus`] that drops, duplicates, reorders, delays,
//! damages and partitions, clients that bind persons across engines and revoke bindings,
//! send cross-engine transfers (mostly over a binding, sometimes without one: `NOT_BOUND`),
//! answer them, reverse them and resend what a crash left unanswered, and forgers whose
//! messages must be refused.
//! Every decision comes from one seed. After the faults stop and the partitions heal, the
//! engines run to quiescence and [`check_quiescent`] judges the outcome; a failure names its
//! seed.

use std::collections::BTreeMap;
use std::fmt;

use gongji_core::certno::certno_with_check;
use gongji_core::federation::codec::decode_message;
use gongji_core::federation::{
    EngineId, Entry, EntryApplied, EntryReply, ExchangeView, FedOp, FedReply, FederationConfig,
    LinkStatus, LinkView, Message, Outcome, XStatus, Xid, NO_DAY,
};
use gongji_core::time::{parse_cst, parse_period};
use gongji_core::{
    Actor, Body, Command, CreditItem, Fen, Insutype, Msgid, Op, PsnNo, Relation, State,
    TransferSource,
};
use gongji_journal::CrashMode;
use splitmix::SplitMix64;

use crate::bus::{Bus, BusFaults, BusStats};
use crate::node::{Node, Submitted};

/// The provinces the simulated engines own, one each.
const PROVINCES: [u8; 4] = [11, 31, 44, 32];
const PERSONS_PER_ENGINE: usize = 6;
const CREDIT_FEN: u64 = 100_000;

#[derive(Clone, Debug)]
pub struct FedDstOptions {
    pub seed: u64,
    /// Steps of faulty running before the faults stop.
    pub steps: u64,
    /// Self-test of the checker: after quiescence, one engine takes in a well-formed Prepare
    /// of an exchange no engine ever made and its receiver accepts it (money from nowhere).
    /// The run must then fail.
    pub sabotage: bool,
    /// Self-test of the binding checks: after quiescence, one engine takes in a well-formed
    /// Bind that its peer never made. The run must then fail.
    pub sabotage_binding: bool,
}

impl FedDstOptions {
    pub fn new(seed: u64) -> FedDstOptions {
        FedDstOptions {
            seed,
            steps: 1_500,
            sabotage: false,
            sabotage_binding: false,
        }
    }
}

/// What a seed did and what was checked.
#[derive(Clone, Debug, Default)]
pub struct FedDstReport {
    pub seed: u64,
    pub engines: usize,
    pub exchanges: u64,
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Cross-engine bindings by final status (`active`, `refused`, `revoked`).
    pub bindings: BTreeMap<&'static str, u64>,
    pub binds_acked: u64,
    pub unbinds_acked: u64,
    pub transfers_acked: u64,
    pub answers_acked: u64,
    pub client_retries: u64,
    pub crashes: u64,
    pub ops_journaled: u64,
    pub bus: BusStats,
    pub damaged_refused: u64,
    pub forged_refused: u64,
    pub quiescence_rounds: u64,
    pub national_received_fen: u64,
    /// Forgetting at quiescence: exchange and binding records dropped (over all engines),
    /// those still held after it, and the stale copies of every message ever sent that
    /// were then refused or answered from the record.
    pub forgotten_exchanges: u64,
    pub forgotten_bindings: u64,
    pub held_exchanges: u64,
    pub held_bindings: u64,
    pub stale_refused: u64,
    pub stale_replayed: u64,
}

impl fmt::Display for FedDstReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.bus;
        write!(
            f,
            "seed {}: {} engines, {} exchanges {:?}, bindings {:?} ({} binds, {} revocations \
             acknowledged), {} transfers and {} answers acknowledged, \
             {} client resends, {} crashes, {} ops journaled; bus {} sent, {} dropped, \
             {} duplicated, {} damaged, {} lost to partitions; refused {} damaged and {} \
             forged messages; quiescent after {} rounds; {:.2} yuan crossed engines; \
             forgot {} exchange and {} binding records ({} and {} held), {} stale copies \
             refused and {} answered, none taken in",
            self.seed,
            self.engines,
            self.exchanges,
            self.outcomes,
            self.bindings,
            self.binds_acked,
            self.unbinds_acked,
            self.transfers_acked,
            self.answers_acked,
            self.client_retries,
            self.crashes,
            self.ops_journaled,
            b.sent,
            b.dropped,
            b.duplicated,
            b.corrupted,
            b.partitioned,
            self.damaged_refused,
            self.forged_refused,
            self.quiescence_rounds,
            self.national_received_fen as f64 / 100.0,
            self.forgotten_exchanges,
            self.forgotten_bindings,
            self.held_exchanges,
            self.held_bindings,
            self.stale_refused,
            self.stale_replayed,
        )
    }
}

/// What a client waits for.
#[derive(Clone, Debug)]
enum Tag {
    Out { msgid: Msgid },
    Answer { accept: bool, msgid: Msgid },
    Reverse { msgid: Msgid },
    Bind { msgid: Msgid },
    Unbind,
}

impl Tag {
    /// The client's msgid, for a write it resends until answered.
    fn msgid(&self) -> Option<Msgid> {
        match self {
            Tag::Out { msgid }
            | Tag::Answer { msgid, .. }
            | Tag::Reverse { msgid }
            | Tag::Bind { msgid } => Some(*msgid),
            Tag::Unbind => None,
        }
    }
}

type SimNode = Node<Tag>;

/// What the clients were told (only replies released after a sync).
#[derive(Debug, Default)]
struct ClientLog {
    /// (engine, xid) → amount of every acknowledged cross-engine transfer.
    transfers: BTreeMap<(usize, Xid), Fen>,
    /// (engine, xid) → accepted? for every acknowledged accept or decline.
    answers: BTreeMap<(usize, Xid), bool>,
    /// Transfers, binds, answers and reversals submitted and not answered (a crash took the
    /// reply): resent later with the same msgid.
    unanswered: BTreeMap<(usize, Msgid), Entry>,
    /// (engine, bxid) of every acknowledged bind (giver's engine).
    binds: BTreeMap<(usize, Xid), ()>,
    /// (engine, bxid) of every acknowledged revocation.
    unbinds: BTreeMap<(usize, Xid), ()>,
}

struct Sim {
    rng: SplitMix64,
    nodes: Vec<SimNode>,
    bus: Bus,
    step: u64,
    /// Simulated seconds since the start; each engine adds its own clock skew.
    now: i64,
    start: i64,
    skew: Vec<i64>,
    log: ClientLog,
    report: FedDstReport,
    next_msgid: u64,
}

fn fail<T>(seed: u64, what: impl fmt::Display) -> Result<T, String> {
    Err(format!(
        "seed {seed}: {what} (rerun: gongji federation dst --seeds 1 --from-seed {seed})"
    ))
}

/// Person `j` of engine `k`.
pub fn psn(engine: usize, j: usize) -> PsnNo {
    PsnNo::from(&format!("E{engine}P{j}")).expect("fits")
}

/// The place of engine `k`'s persons.
pub fn admdvs(engine: usize) -> u32 {
    u32::from(PROVINCES[engine]) * 10_000 + 105
}

fn engine_id(k: usize) -> EngineId {
    EngineId::from(&format!("e{k}")).expect("fits")
}

/// Runs one seed; `Err` names the seed and the first violation.
pub fn run(opts: &FedDstOptions) -> Result<FedDstReport, String> {
    let seed = opts.seed;
    let mut sim = Sim::new(seed).or_else(|e| fail(seed, e))?;
    for _ in 0..opts.steps {
        sim.faulty_step().or_else(|e| fail(seed, e))?;
    }
    sim.quiesce().or_else(|e| fail(seed, e))?;
    if opts.sabotage {
        sim.sabotage().or_else(|e| fail(seed, e))?;
    }
    if opts.sabotage_binding {
        sim.sabotage_binding().or_else(|e| fail(seed, e))?;
    }
    check_quiescent(&sim.nodes, &sim.log).or_else(|e| fail(seed, e))?;
    for node in &sim.nodes {
        node.check_replay_equals_live().or_else(|e| fail(seed, e))?;
    }
    // Counted before forgetting: the records go.
    for node in &sim.nodes {
        for l in node.state.links().filter(|l| l.giver_here) {
            *sim.report.bindings.entry(l.status.as_str()).or_default() += 1;
        }
        for x in node.state.exchanges().filter(|x| x.outgoing) {
            sim.report.exchanges += 1;
            if let XStatus::Closed(o) = x.status {
                *sim.report.outcomes.entry(o.as_str()).or_default() += 1;
            }
        }
    }
    sim.forget().or_else(|e| fail(seed, e))?;
    sim.replay_stale().or_else(|e| fail(seed, e))?;
    for node in &sim.nodes {
        node.check_replay_equals_live().or_else(|e| fail(seed, e))?;
    }
    let mut report = sim.report;
    report.bus = sim.bus.stats;
    report.crashes = sim.nodes.iter().map(|n| n.crashes).sum();
    report.ops_journaled = sim.nodes.iter().map(|n| n.ops_journaled).sum();
    report.national_received_fen = sim
        .nodes
        .iter()
        .map(|n| n.state.money_totals().fed_received)
        .sum();
    Ok(report)
}

impl Sim {
    fn new(seed: u64) -> Result<Sim, String> {
        let mut rng = SplitMix64::new(seed);
        let engines = 2 + rng.below(3) as usize;
        let mut nodes = Vec::new();
        for k in 0..engines {
            nodes.push(Node::new(engine_config(k, engines))?);
        }
        let faults = BusFaults {
            drop_per_mille: rng.range(0, 300),
            duplicate_per_mille: rng.range(0, 200),
            corrupt_per_mille: rng.range(0, 30),
            delay_steps_max: rng.range(0, 40),
        };
        let start = parse_cst("2025-05-20 07:00:00").expect("time");
        let skew = (0..engines).map(|_| rng.below(300) as i64).collect();
        let mut sim = Sim {
            rng,
            nodes,
            bus: Bus::new(faults),
            step: 0,
            now: 0,
            start,
            skew,
            log: ClientLog::default(),
            report: FedDstReport {
                seed,
                engines,
                ..FedDstReport::default()
            },
            next_msgid: 0,
        };
        for k in 0..engines {
            sim.populate(k)?;
        }
        Ok(sim)
    }

    /// The engine's time now: the simulated time plus its skew, never behind its clock.
    fn time(&self, k: usize) -> i64 {
        (self.start + self.now + self.skew[k]).max(self.nodes[k].state.clock())
    }

    fn msgid(&mut self) -> Msgid {
        self.next_msgid += 1;
        Msgid::from(&format!("c{}", self.next_msgid)).expect("fits")
    }

    /// Employees with open wallets and credited accounts, made durable before any fault.
    fn populate(&mut self, k: usize) -> Result<(), String> {
        let time = self.time(k);
        populate(&mut self.nodes[k], k, time)
    }

    fn other(&mut self, k: usize) -> usize {
        let n = self.nodes.len();
        (k + 1 + self.rng.below(n as u64 - 1) as usize) % n
    }

    fn crash_mode(&mut self) -> CrashMode {
        match self.rng.below(3) {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::KeepUnsynced,
            _ => CrashMode::Torn {
                seed: self.rng.next_u64(),
            },
        }
    }

    fn faulty_step(&mut self) -> Result<(), String> {
        self.step += 1;
        self.now += self.rng.range(1, 200) as i64;
        if self.rng.chance(5) {
            self.now += 6 * 3600;
        }
        let n = self.nodes.len();
        match self.rng.weighted(&[36, 22, 3, 6, 6, 4, 10, 2]) {
            0 => self.client_transfer()?,
            1 => self.client_answer()?,
            2 => self.client_reverse()?,
            3 => self.client_resend()?,
            4 => self.forge()?,
            6 => self.client_bind()?,
            7 => self.client_unbind()?,
            _ => {
                let k = self.rng.below(n as u64) as usize;
                let time = self.time(k);
                self.nodes[k].submit(&Entry::Core(Op::Tick { time }), None)?;
            }
        }
        self.deliver()?;
        for k in 0..n {
            if self.rng.chance(500) {
                self.sync(k)?;
            }
        }
        if self.step.is_multiple_of(10) {
            self.resend_outboxes();
        }
        if self.rng.chance(8) {
            let k = self.rng.below(n as u64) as usize;
            let mode = self.crash_mode();
            self.nodes[k].crash(mode)?;
        }
        if self.rng.chance(10) {
            let k = self.rng.below(n as u64) as usize;
            let (writes, syncs) = (self.rng.range(0, 5), self.rng.range(0, 3));
            self.nodes[k].arm_crash(writes, syncs);
        }
        if self.rng.chance(10) {
            let a = self.rng.below(n as u64) as usize;
            let b = self.other(a);
            let (a, b) = (engine_id(a), engine_id(b));
            if self.bus.is_partitioned(a, b) {
                self.bus.heal(a, b);
            } else {
                self.bus.partition(a, b);
            }
        }
        Ok(())
    }

    fn submit_client(&mut self, k: usize, entry: Entry, tag: Tag) -> Result<(), String> {
        if let Some(msgid) = tag.msgid() {
            self.log.unanswered.insert((k, msgid), entry.clone());
        }
        match self.nodes[k].submit(&entry, Some(tag.clone()))? {
            Submitted::Refused(_) => {
                // A business refusal (limits, balance, closed hours, NOT_BOUND, an answer to
                // an exchange no longer pending): the client gives up.
                if let Some(msgid) = tag.msgid() {
                    self.log.unanswered.remove(&(k, msgid));
                }
            }
            Submitted::Queued | Submitted::Crashed => {}
        }
        Ok(())
    }

    /// A giver on engine `k` binds a person of another engine (now and then one unknown
    /// there, whom that engine refuses).
    fn client_bind(&mut self) -> Result<(), String> {
        let k = self.rng.below(self.nodes.len() as u64) as usize;
        let to_engine = self.other(k);
        let giver = psn(k, self.rng.below(PERSONS_PER_ENGINE as u64) as usize);
        let receiver = if self.rng.chance(50) {
            PsnNo::from("NOBODY").expect("fits")
        } else {
            psn(
                to_engine,
                self.rng.below(PERSONS_PER_ENGINE as u64) as usize,
            )
        };
        let msgid = self.msgid();
        let entry = Entry::Fed(FedOp::BindOut {
            msgid,
            time: self.time(k),
            actor: Actor::Person(giver),
            giver_psn_no: giver,
            receiver_psn_no: receiver,
            receiver_admdvs: admdvs(to_engine),
            relation: Relation::ELIGIBLE[self.rng.below(8) as usize],
        });
        self.submit_client(k, entry, Tag::Bind { msgid })
    }

    /// Either person of a live binding revokes it on their own engine.
    fn client_unbind(&mut self) -> Result<(), String> {
        let k = self.rng.below(self.nodes.len() as u64) as usize;
        let live: Vec<LinkView> = self.nodes[k]
            .state
            .links()
            .filter(|l| l.status.is_live() && l.psn_no.is_some())
            .collect();
        let Some(l) = self.pick(&live) else {
            return Ok(());
        };
        let op = FedOp::Unbind {
            time: self.time(k),
            actor: Actor::Person(l.psn_no.expect("live")),
            bxid: l.bxid,
            msgid: Some(self.msgid()),
        };
        self.submit_client(k, Entry::Fed(op), Tag::Unbind)
    }

    fn client_transfer(&mut self) -> Result<(), String> {
        let k = self.rng.below(self.nodes.len() as u64) as usize;
        let active: Vec<LinkView> = self.nodes[k]
            .state
            .links()
            .filter(|l| l.status == LinkStatus::Active)
            .collect();
        // Mostly over an active binding (either way); sometimes to anyone, which is NOT_BOUND
        // unless they happen to be bound.
        let bound = if self.rng.chance(850) {
            self.pick(&active)
        } else {
            None
        };
        let (from, to_engine, to_psn_no) = match bound {
            Some(l) => {
                let (remote, remote_admdvs) = if l.giver_here {
                    (l.receiver_psn_no, l.receiver_admdvs)
                } else {
                    (l.giver_psn_no, l.giver_admdvs)
                };
                let to_engine = PROVINCES
                    .iter()
                    .position(|&p| u32::from(p) == remote_admdvs / 10_000)
                    .expect("a simulated province");
                let from = psn_index(&l.psn_no.expect("active"));
                (from, to_engine, remote)
            }
            None => {
                let to_engine = self.other(k);
                let to = self.rng.below(PERSONS_PER_ENGINE as u64) as usize;
                let from = self.rng.below(PERSONS_PER_ENGINE as u64) as usize;
                (from, to_engine, psn(to_engine, to))
            }
        };
        let amount = if self.rng.chance(30) {
            250_000
        } else {
            self.rng.range(1, 30_000)
        };
        let source = if self.rng.chance(200) {
            TransferSource::Wallet
        } else {
            TransferSource::Acct
        };
        let msgid = self.msgid();
        let entry = Entry::Fed(FedOp::TransferOut {
            msgid,
            time: self.time(k),
            actor: Actor::Person(psn(k, from)),
            from_psn_no: psn(k, from),
            to_psn_no,
            to_admdvs: admdvs(to_engine),
            amount: Fen(amount),
            source,
        });
        self.submit_client(k, entry, Tag::Out { msgid })
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.rng.below(items.len() as u64) as usize].clone())
    }

    fn client_answer(&mut self) -> Result<(), String> {
        let k = self.rng.below(self.nodes.len() as u64) as usize;
        let pending: Vec<ExchangeView> = self.nodes[k]
            .state
            .exchanges()
            .filter(|x| !x.outgoing && x.status == XStatus::Pending)
            .collect();
        let Some(x) = self.pick(&pending) else {
            return Ok(());
        };
        let accept = self.rng.chance(750);
        let (time, xid, msgid) = (self.time(k), x.xid, self.msgid());
        let actor = Actor::Person(x.psn_no.expect("a pending exchange has its receiver"));
        let op = FedOp::answer(accept, time, actor, xid, Some(msgid));
        self.submit_client(k, Entry::Fed(op), Tag::Answer { accept, msgid })
    }

    fn client_reverse(&mut self) -> Result<(), String> {
        let k = self.rng.below(self.nodes.len() as u64) as usize;
        let out: Vec<(Msgid, PsnNo)> = self
            .log
            .unanswered
            .iter()
            .filter(|((e, _), _)| *e == k)
            .filter_map(|((_, m), entry)| match entry {
                Entry::Fed(FedOp::TransferOut { from_psn_no, .. }) => Some((*m, *from_psn_no)),
                _ => None,
            })
            .collect();
        // A client reverses what it never got an answer for (API.md's timeout path).
        let Some((omsgid, sender)) = self.pick(&out) else {
            return Ok(());
        };
        let msgid = self.msgid();
        let op = FedOp::Reverse {
            time: self.time(k),
            actor: Actor::Person(sender),
            omsgid,
            msgid: Some(msgid),
        };
        self.submit_client(k, Entry::Fed(op), Tag::Reverse { msgid })
    }

    /// A client resends a write whose reply a crash took, with the same msgid.
    fn client_resend(&mut self) -> Result<(), String> {
        let waiting: Vec<((usize, Msgid), Entry)> = self
            .log
            .unanswered
            .iter()
            .map(|(key, entry)| (*key, entry.clone()))
            .collect();
        let Some(((k, msgid), entry)) = self.pick(&waiting) else {
            return Ok(());
        };
        let Entry::Fed(mut op) = entry else {
            return Ok(());
        };
        let tag = match op {
            FedOp::TransferOut { .. } => Tag::Out { msgid },
            FedOp::BindOut { .. } => Tag::Bind { msgid },
            FedOp::Accept { .. } => Tag::Answer {
                accept: true,
                msgid,
            },
            FedOp::Decline { .. } => Tag::Answer {
                accept: false,
                msgid,
            },
            FedOp::Reverse { .. } => Tag::Reverse { msgid },
            _ => return Ok(()),
        };
        op.set_time(self.time(k));
        self.report.client_retries += 1;
        self.submit_client(k, Entry::Fed(op), tag)
    }

    /// A well-formed message that lies (another amount, another engine, an unknown id, a
    /// province the receiver does not own): it must be refused and change nothing.
    fn forge(&mut self) -> Result<(), String> {
        let k = self.rng.below(self.nodes.len() as u64) as usize;
        if self.rng.chance(100) {
            return self.forge_watermark(k);
        }
        if self.rng.chance(400) {
            return self.forge_binding(k);
        }
        let known: Vec<ExchangeView> = self.nodes[k].state.exchanges().collect();
        let Some(x) = self.pick(&known) else {
            return Ok(());
        };
        let me = engine_id(k);
        let variant = self.rng.below(4);
        let other = engine_id(self.other(k));
        let msg = if x.outgoing {
            // An outcome for our own exchange that does not match it.
            let (from_engine, amount, xid) = match variant {
                1 => (me, x.amount, x.xid),
                2 => (
                    x.peer,
                    x.amount,
                    Xid {
                        engine: me,
                        key: self.rng.next_u64().into(),
                    },
                ),
                _ => (x.peer, Fen(x.amount.0 + 1), x.xid),
            };
            Message::Outcome {
                xid,
                from_engine,
                amount,
                outcome: Outcome::Accepted,
            }
        } else {
            // A Prepare for an exchange we hold with its amount changed, or claiming a
            // receiver province we do not own, a sender province its engine does not own,
            // or another engine as its destination.
            let sender = engine_index(x.xid.engine);
            let (mut to_engine, mut to_admdvs, mut sender_admdvs, mut amount) =
                (me, admdvs(k), admdvs(sender), x.amount);
            match variant {
                1 => to_admdvs = admdvs(engine_index(other)),
                2 => sender_admdvs = admdvs(k),
                3 => to_engine = other,
                _ => amount = Fen(amount.0 + 1),
            }
            Message::Prepare {
                xid: x.xid,
                to_engine,
                to_psn_no: x.to_psn_no,
                to_admdvs,
                amount,
                from_psn_no: psn(sender, 0),
                sender_admdvs,
                created: x.created,
                expires_at: x.expires_at,
            }
        };
        let before = self.nodes[k].state.state_hash();
        let time = self.time(k);
        match self.nodes[k].submit(&Entry::Fed(FedOp::Deliver { time, msg }), None)? {
            Submitted::Refused(_) => {
                if self.nodes[k].state.state_hash() != before {
                    return Err(format!("engine {k}: a refused forgery changed the state"));
                }
                self.report.forged_refused += 1;
                Ok(())
            }
            other => Err(format!(
                "engine {k}: a forged message was taken in: {other:?}"
            )),
        }
    }

    /// A binding message that lies: a status of pending, one claimed by this engine itself,
    /// an Unbind of a binding nobody made from an engine that did not make it, or a Bind
    /// whose receiver lives in a province the receiving engine does not own.
    fn forge_binding(&mut self, k: usize) -> Result<(), String> {
        let known: Vec<LinkView> = self.nodes[k].state.links().collect();
        let Some(l) = self.pick(&known) else {
            return Ok(());
        };
        let me = engine_id(k);
        let msg = match self.rng.below(4) {
            0 => Message::BindStatus {
                bxid: l.bxid,
                from_engine: l.peer,
                to_engine: me,
                status: LinkStatus::Pending,
            },
            1 => Message::BindStatus {
                bxid: l.bxid,
                from_engine: me,
                to_engine: me,
                status: LinkStatus::Revoked,
            },
            2 => Message::Unbind {
                bxid: Xid {
                    engine: me,
                    key: self.rng.next_u64().into(),
                },
                from_engine: l.peer,
                to_engine: me,
                created: Some(l.created),
            },
            _ => Message::Bind {
                bxid: l.bxid,
                to_engine: me,
                giver_psn_no: l.giver_psn_no,
                giver_admdvs: admdvs(engine_index(l.peer)),
                receiver_psn_no: psn(k, 0),
                receiver_admdvs: admdvs(engine_index(l.peer)),
                relation: Relation::Parent,
                created: l.created,
            },
        };
        let before = self.nodes[k].state.state_hash();
        let time = self.time(k);
        match self.nodes[k].submit(&Entry::Fed(FedOp::Deliver { time, msg }), None)? {
            Submitted::Refused(_) if self.nodes[k].state.state_hash() == before => {
                self.report.forged_refused += 1;
                Ok(())
            }
            other => Err(format!("engine {k}: a forged binding message: {other:?}")),
        }
    }

    /// A forgetting message that lies (docs/FEDERATION.md, "Forgetting"): an answer to a
    /// claim this engine never made (it claims only at quiescence), a claim of a day not yet
    /// past here, a claim of nothing, or one from this engine to itself.
    fn forge_watermark(&mut self, k: usize) -> Result<(), String> {
        let (me, other) = (engine_id(k), engine_id(self.other(k)));
        let time = self.time(k);
        let today = gongji_core::time::cst_day(time);
        let claim = |from, exchanges, bindings| Message::ClosedThrough {
            from_engine: from,
            to_engine: me,
            exchanges,
            bindings,
        };
        let msg = match self.rng.below(4) {
            0 => Message::ForgetThrough {
                from_engine: other,
                to_engine: me,
                exchanges: today - 3,
                bindings: NO_DAY,
            },
            1 => claim(other, today, NO_DAY),
            2 => claim(other, NO_DAY, NO_DAY),
            _ => claim(me, today - 3, today - 3),
        };
        let before = self.nodes[k].state.state_hash();
        match self.nodes[k].submit(&Entry::Fed(FedOp::Deliver { time, msg }), None)? {
            Submitted::Refused(_) if self.nodes[k].state.state_hash() == before => {
                self.report.forged_refused += 1;
                Ok(())
            }
            other => Err(format!("engine {k}: a forged watermark message: {other:?}")),
        }
    }

    fn deliver(&mut self) -> Result<(), String> {
        for m in self.bus.take_due(&mut self.rng, self.step) {
            let msg = match decode_message(&m.bytes) {
                Ok(msg) => msg,
                Err(_) => {
                    self.report.damaged_refused += 1;
                    continue;
                }
            };
            let k = engine_index(m.to);
            let time = self.time(k);
            let entry = Entry::Fed(FedOp::Deliver { time, msg });
            if let Submitted::Refused(r) = self.nodes[k].submit(&entry, None)? {
                return Err(format!(
                    "engine {k} refused an honest message: {r:?}: {entry:?}"
                ));
            }
        }
        Ok(())
    }

    fn sync(&mut self, k: usize) -> Result<(), String> {
        let mode = self.crash_mode();
        let Some((sends, answers)) = self.nodes[k].sync(mode)? else {
            return Ok(());
        };
        for msg in &sends {
            self.bus.send(&mut self.rng, self.step, msg);
        }
        for (tag, applied) in answers {
            self.acknowledge(k, tag, applied)?;
        }
        Ok(())
    }

    fn acknowledge(&mut self, k: usize, tag: Tag, applied: EntryApplied) -> Result<(), String> {
        if let EntryReply::Fed(FedReply::Binding(l)) = &applied.reply {
            match tag {
                Tag::Bind { msgid } => {
                    self.log.unanswered.remove(&(k, msgid));
                    self.log.binds.insert((k, l.bxid), ());
                    self.report.binds_acked += 1;
                }
                Tag::Unbind => {
                    if l.status != LinkStatus::Revoked {
                        return Err(format!(
                            "engine {k}: revocation of {} answered {l:?}",
                            l.bxid
                        ));
                    }
                    self.log.unbinds.insert((k, l.bxid), ());
                    self.report.unbinds_acked += 1;
                }
                _ => {}
            }
            return Ok(());
        }
        let EntryReply::Fed(FedReply::Exchange(x)) = applied.reply else {
            return Ok(());
        };
        match tag {
            Tag::Out { msgid } => {
                self.log.unanswered.remove(&(k, msgid));
                self.log.transfers.insert((k, x.xid), x.amount);
                self.report.transfers_acked += 1;
            }
            Tag::Answer { accept, msgid } => {
                // A retry is answered as the first time: with the status it closed with.
                let wanted = if accept {
                    Outcome::Accepted
                } else {
                    Outcome::Declined
                };
                if x.status != XStatus::Closed(wanted) {
                    return Err(format!(
                        "engine {k}: answer {msgid} to {} shows {:?}",
                        x.xid, x.status
                    ));
                }
                self.log.unanswered.remove(&(k, msgid));
                let before = self.log.answers.insert((k, x.xid), accept);
                if before.is_some_and(|b| b != accept) {
                    return Err(format!("engine {k}: {} both accepted and declined", x.xid));
                }
                self.report.answers_acked += 1;
            }
            Tag::Reverse { msgid } => {
                self.log.unanswered.remove(&(k, msgid));
            }
            Tag::Bind { .. } | Tag::Unbind => {}
        }
        Ok(())
    }

    /// The relay's resend: every exchange in flight, until its outcome is journaled.
    /// Resends every outbox, then delivers for as many steps as the bus may delay a message,
    /// syncing every engine after each.
    fn resend_and_deliver(&mut self) -> Result<(), String> {
        self.resend_outboxes();
        for _ in 0..=self.bus.faults.delay_steps_max {
            self.step += 1;
            self.deliver()?;
            for k in 0..self.nodes.len() {
                self.sync(k)?;
            }
        }
        Ok(())
    }

    fn resend_outboxes(&mut self) {
        for k in 0..self.nodes.len() {
            for msg in self.nodes[k].durable_outbox().to_vec() {
                self.bus.send(&mut self.rng, self.step, &msg);
            }
        }
    }

    /// No more faults or clients; partitions heal; time runs on (so pending transfers expire)
    /// until nothing is in flight and the bus is empty.
    fn quiesce(&mut self) -> Result<(), String> {
        self.bus.heal_all();
        self.bus.faults = BusFaults {
            drop_per_mille: 0,
            corrupt_per_mille: 0,
            ..self.bus.faults
        };
        for round in 1..=200 {
            self.report.quiescence_rounds = round;
            self.now += 3 * 3600;
            for k in 0..self.nodes.len() {
                let time = self.time(k);
                self.nodes[k].submit(&Entry::Core(Op::Tick { time }), None)?;
                self.sync(k)?;
            }
            self.resend_and_deliver()?;
            let open = self.nodes.iter().any(|n| {
                let bindings = n
                    .state
                    .links()
                    .any(|l| l.unbind || l.status == LinkStatus::Pending);
                bindings
                    || n.state
                        .exchanges()
                        .any(|x| matches!(x.status, XStatus::InFlight | XStatus::Pending))
            });
            if !open && self.bus.is_empty() {
                return Ok(());
            }
        }
        Err("not quiescent after 200 rounds: an exchange or a binding never resolved".into())
    }

    /// Forgetting at quiescence (docs/FEDERATION.md, "Forgetting"), driven as the relay
    /// drives it: each engine's periodic step (`FedOp::Forget`) whenever one is due, its
    /// `ClosedThrough` and the peers' `ForgetThrough` over the same faulty bus. Two days on
    /// the engines agree their watermarks; forty days on (past the 30-day msgid window)
    /// the closed records go. What `reconcile` and `report` read must not change, and every
    /// exchange record must have gone (all were closed, on days both sides agreed).
    fn forget(&mut self) -> Result<(), String> {
        let before: Vec<String> = self.nodes.iter().map(|n| figures(&n.state)).collect();
        // Every live binding is revoked first (by an admin, on either engine), so that the
        // bindings' days close too and their records can go.
        let rounds = self.report.quiescence_rounds;
        for k in 0..self.nodes.len() {
            let live: Vec<Xid> = self.nodes[k]
                .state
                .links()
                .filter(|l| l.status.is_live() && l.psn_no.is_some())
                .map(|l| l.bxid)
                .collect();
            for bxid in live {
                let op = FedOp::Unbind {
                    time: self.time(k),
                    actor: Actor::Admin,
                    bxid,
                    msgid: Some(self.msgid()),
                };
                if let Submitted::Refused(r) = self.nodes[k].submit(&Entry::Fed(op), None)? {
                    return Err(format!("engine {k}: revocation of {bxid} refused: {r:?}"));
                }
            }
            self.sync(k)?;
        }
        self.quiesce()?;
        self.report.quiescence_rounds = rounds;
        for days in [2, 40] {
            self.now += days * 86_400;
            self.settle_forgetting()?;
        }
        for (k, node) in self.nodes.iter().enumerate() {
            if figures(&node.state) != before[k] {
                return Err(format!("engine {k}: forgetting changed the figures"));
            }
            let (exchanges, links, x_dropped, l_dropped) = node.state.fed_record_counts();
            if exchanges != 0 || links != 0 {
                return Err(format!(
                    "engine {k}: {exchanges} exchange and {links} binding records left after \
                     forgetting"
                ));
            }
            self.report.forgotten_exchanges += x_dropped;
            self.report.forgotten_bindings += l_dropped;
            self.report.held_bindings += links;
        }
        let states: Vec<(EngineId, &State)> = self.nodes.iter().map(|n| (n.id, &n.state)).collect();
        let may = parse_period("2025-05").expect("period");
        let credited = (self.nodes.len() * PERSONS_PER_ENGINE) as u64 * CREDIT_FEN;
        check_states(
            &states,
            credited,
            (may, parse_period("2025-12").expect("period")),
        )
    }

    /// Runs the periodic forgetting step on every engine until no step is due, no claim is
    /// unconfirmed and the bus is empty.
    fn settle_forgetting(&mut self) -> Result<(), String> {
        for _ in 0..100 {
            for k in 0..self.nodes.len() {
                let time = self.time(k);
                if self.nodes[k].state.fed_forget_due(time) {
                    let op = Entry::Fed(FedOp::Forget { time });
                    if let Submitted::Refused(r) = self.nodes[k].submit(&op, None)? {
                        return Err(format!("engine {k}: a due forgetting step refused: {r:?}"));
                    }
                }
                self.sync(k)?;
            }
            self.resend_and_deliver()?;
            let busy = (0..self.nodes.len()).any(|k| {
                let node = &self.nodes[k];
                !node.durable_outbox().is_empty() || node.state.fed_forget_due(self.time(k))
            });
            if !busy && self.bus.is_empty() {
                return Ok(());
            }
        }
        Err("forgetting did not settle after 100 rounds".into())
    }

    /// The bus delivers a stale copy of every message it was ever given, to every engine it
    /// was for, after forgetting: each must be refused (a forgotten or unknown id) or answered
    /// from the record, and no engine may change: nothing forgotten comes back.
    fn replay_stale(&mut self) -> Result<(), String> {
        let hashes: Vec<[u8; 32]> = self.nodes.iter().map(|n| n.state.state_hash()).collect();
        let stale: Vec<Message> = self
            .bus
            .sent_ever()
            .map(|bytes| decode_message(bytes).map_err(|e| format!("a clean copy: {e}")))
            .collect::<Result<_, _>>()?;
        let mut answers = Vec::new();
        for msg in stale {
            self.deliver_stale(&msg)?;
        }
        for k in 0..self.nodes.len() {
            if let Some((sends, _)) = self.nodes[k].sync(CrashMode::DropUnsynced)? {
                answers.extend(sends);
            }
        }
        // The answers stale copies drew (a claim answered again) are stale too.
        for msg in answers {
            self.deliver_stale(&msg)?;
        }
        for (k, (node, hash)) in self.nodes.iter_mut().zip(hashes).enumerate() {
            node.sync(CrashMode::DropUnsynced)?;
            if node.state.state_hash() != hash {
                return Err(format!("engine {k}: stale messages changed the state"));
            }
            self.report.held_exchanges += node.state.fed_record_counts().0;
        }
        Ok(())
    }

    fn deliver_stale(&mut self, msg: &Message) -> Result<(), String> {
        let k = engine_index(msg.to());
        let time = self.time(k);
        let before = self.nodes[k].state.state_hash();
        let entry = Entry::Fed(FedOp::Deliver {
            time,
            msg: msg.clone(),
        });
        match self.nodes[k].submit(&entry, None)? {
            Submitted::Refused(_) => self.report.stale_refused += 1,
            Submitted::Queued if self.nodes[k].state.state_hash() == before => {
                self.report.stale_replayed += 1
            }
            other => {
                return Err(format!(
                    "engine {k}: a stale {msg:?} was taken in: {other:?}"
                ))
            }
        }
        Ok(())
    }

    fn sabotage_binding(&mut self) -> Result<(), String> {
        let (k, from) = (0, 1);
        let time = self.time(k);
        let msg = Message::Bind {
            bxid: Xid {
                engine: engine_id(from),
                key: 0xdead_beef,
            },
            to_engine: engine_id(k),
            giver_psn_no: psn(from, 0),
            giver_admdvs: admdvs(from),
            receiver_psn_no: psn(k, 0),
            receiver_admdvs: admdvs(k),
            relation: Relation::Parent,
            created: time,
        };
        self.nodes[k].submit(&Entry::Fed(FedOp::Deliver { time, msg }), None)?;
        self.sync(k)
    }

    fn sabotage(&mut self) -> Result<(), String> {
        let (k, from) = (0, 1);
        let xid = Xid {
            engine: engine_id(from),
            key: 0xdead_beef,
        };
        let time = self.time(k);
        let msg = Message::Prepare {
            xid,
            to_engine: engine_id(k),
            to_psn_no: psn(k, 0),
            to_admdvs: admdvs(k),
            amount: Fen(100),
            from_psn_no: psn(from, 0),
            sender_admdvs: admdvs(from),
            created: time,
            expires_at: time + 86_400,
        };
        self.nodes[k].submit(&Entry::Fed(FedOp::Deliver { time, msg }), None)?;
        let accept = FedOp::Accept {
            time,
            actor: Actor::Admin,
            xid,
            msgid: None,
        };
        self.nodes[k].submit(&Entry::Fed(accept), None)?;
        self.sync(k)
    }
}

/// The configuration of engine `k` of `engines`: `e<k>` owns one province, the others are
/// its peers.
pub fn engine_config(k: usize, engines: usize) -> FederationConfig {
    let peers = (0..engines)
        .filter(|&o| o != k)
        .map(|o| (engine_id(o), vec![PROVINCES[o]]))
        .collect();
    FederationConfig {
        engine: engine_id(k),
        provinces: vec![PROVINCES[k]],
        peers,
    }
}

/// The simulation's population of engine `k`: `E<k>P0`… employees with open wallets and
/// 1,000.00 yuan credited each, durable.
pub fn populate<T>(node: &mut Node<T>, k: usize, time: i64) -> Result<(), String> {
    let mut seq = 0;
    let mut admin = |node: &mut Node<T>, body: Body| -> Result<(), String> {
        seq += 1;
        let op = Op::Write(Command {
            msgid: Msgid::from(&format!("setup{seq}")).expect("fits"),
            time,
            actor: Actor::Admin,
            body,
        });
        match node.submit(&Entry::Core(op), None)? {
            Submitted::Queued => Ok(()),
            other => Err(format!("engine {k}: set-up op {other:?}")),
        }
    };
    for j in 0..PERSONS_PER_ENGINE {
        let first17 = format!("{}19900101{j:03}", admdvs(k));
        let certno = certno_with_check(&first17).ok_or("certno")?;
        let certno = gongji_core::command::ArrayString::from(&certno).map_err(|_| "certno")?;
        let enrol = Body::Enrol {
            psn_no: psn(k, j),
            certno,
            psn_name: "张三".into(),
            insutype: Insutype::Employee,
            admdvs: admdvs(k),
        };
        admin(node, enrol)?;
        admin(node, Body::OpenWallet { psn_no: psn(k, j) })?;
    }
    let items = (0..PERSONS_PER_ENGINE)
        .map(|j| CreditItem {
            psn_no: psn(k, j),
            amount: Fen(CREDIT_FEN),
        })
        .collect();
    let period = parse_period("2025-05").ok_or("period")?;
    admin(node, Body::Credit { period, items })?;
    match node.sync(CrashMode::DropUnsynced)? {
        Some(_) => Ok(()),
        None => Err("set-up sync failed".into()),
    }
}

/// The fen credited to each engine by [`populate`].
pub const CREDITED_PER_ENGINE_FEN: u64 = PERSONS_PER_ENGINE as u64 * CREDIT_FEN;

/// `j` of person `E<k>P<j>`.
fn psn_index(p: &PsnNo) -> usize {
    p.split_once('P')
        .and_then(|(_, j)| j.parse().ok())
        .expect("E<k>P<j>")
}

fn engine_index(id: EngineId) -> usize {
    id[1..].parse().expect("e<k>")
}

/// What `gongji federation reconcile` and `gongji report` read of one engine: its
/// reconciliation counters, money and statistics.
fn figures(state: &State) -> String {
    let (may, dec) = (
        parse_period("2025-05").expect("period"),
        parse_period("2025-12").expect("period"),
    );
    format!(
        "{:?} {:?} {:?}",
        state.fed_counters(),
        state.money_totals(),
        state.stats(may, dec, None)
    )
}

/// The checks at quiescence, over every engine's state and what the clients were told.
fn check_quiescent(nodes: &[SimNode], log: &ClientLog) -> Result<(), String> {
    check_engines(
        nodes,
        (nodes.len() * PERSONS_PER_ENGINE) as u64 * CREDIT_FEN,
    )?;
    check_client_log(nodes, log)
}

/// The checks over engines at quiescence (any transport): every exchange is known to both
/// sides and closed alike (accepted = committed; declined, expired, blocked = returned), none
/// in flight or pending, money conserved per engine and nationally with in-flight counted
/// (`credited_fen` entered the federation and nothing left it), and the national statistics
/// are the sum of the engines', each accepted transfer counted once.
pub fn check_engines<T>(nodes: &[Node<T>], credited_fen: u64) -> Result<(), String> {
    let states: Vec<(EngineId, &State)> = nodes.iter().map(|n| (n.id, &n.state)).collect();
    let may = parse_period("2025-05").expect("period");
    let dec = parse_period("2025-12").expect("period");
    check_states(&states, credited_fen, (may, dec))
}

/// [`check_engines`] over engines' states however they were obtained (`gongji federation
/// chaos` reads real engines' data directories), with the national statistics summed over
/// `periods` (every month an exchange may have been accepted in).
pub fn check_states(
    nodes: &[(EngineId, &State)],
    credited_fen: u64,
    periods: (gongji_core::time::Period, gongji_core::time::Period),
) -> Result<(), String> {
    type Side = Option<(EngineId, ExchangeView)>;
    let mut by_xid: BTreeMap<Xid, [Side; 2]> = BTreeMap::new();
    for &(id, state) in nodes {
        state.check().map_err(|e| format!("engine {id}: {e}"))?;
        for x in state.exchanges() {
            let side = usize::from(!x.outgoing);
            if by_xid.entry(x.xid).or_default()[side]
                .replace((id, x))
                .is_some()
            {
                return Err("an exchange twice on one side".into());
            }
        }
    }
    let mut accepted = (0u64, 0u64);
    for (xid, [sent, received]) in &by_xid {
        let (Some((s_engine, s)), Some((r_engine, r))) = (sent, received) else {
            return Err(format!("exchange {xid} known to one side only"));
        };
        let engines_agree = *s_engine == xid.engine && r.peer == xid.engine && s.peer == *r_engine;
        if s.amount != r.amount || !engines_agree {
            return Err(format!(
                "exchange {xid}: the sides disagree on amount or engine"
            ));
        }
        match (s.status, r.status) {
            (XStatus::Closed(a), XStatus::Closed(b)) if a == b => {
                if a == Outcome::Accepted {
                    accepted = (accepted.0 + 1, accepted.1 + s.amount.0);
                }
            }
            other => return Err(format!("exchange {xid}: sender and receiver {other:?}")),
        }
    }
    // Exchanges forgotten on days both sides agreed (docs/FEDERATION.md, "Forgetting"):
    // counted by their totals, which `reconcile` below compares side by side.
    for &(_, state) in nodes {
        for c in state.fed_forgotten_counters().values() {
            accepted = (
                accepted.0 + c.accepted.count,
                accepted.1 + c.accepted.amount,
            );
        }
    }
    // Money, per engine and nationally, in-flight counted.
    let (mut inside, mut external, mut sent, mut received) = (0u128, 0i128, 0u64, 0u64);
    for &(id, state) in nodes {
        let t = state.money_totals();
        let left = t.inside as i128 + t.in_flight as i128;
        let right = t.external_net + t.fed_received as i128 - t.fed_sent as i128;
        if left != right || t.in_flight != 0 {
            return Err(format!("engine {id}: money not conserved: {t:?}"));
        }
        inside += u128::from(t.inside);
        external += t.external_net;
        sent += t.fed_sent;
        received += t.fed_received;
    }
    if sent != received || inside as i128 != external || received != accepted.1 {
        return Err(format!(
            "national money: sent {sent}, received {received}, accepted {accepted:?}, \
             balances {inside}, credited net {external}"
        ));
    }
    let credited = i128::from(credited_fen);
    if external != credited {
        return Err(format!("credited net {external} != {credited}"));
    }
    // National statistics are the sum of the engines', each transfer counted once.
    let counted = nodes.iter().fold((0, 0), |(c, a), (_, state)| {
        let cell = state.stats(periods.0, periods.1, None).cross_province;
        (c + cell.count, a + cell.amount.0)
    });
    if counted != accepted {
        return Err(format!("statistics {counted:?} != accepted {accepted:?}"));
    }
    check_bindings(nodes)?;
    // Reconciliation between engines finds nothing.
    let counters: Vec<_> = nodes
        .iter()
        .map(|(id, state)| (*id, state.fed_counters()))
        .collect();
    if let Some(first) = crate::reconcile::reconcile(&counters).first() {
        return Err(format!("reconciliation: {first}"));
    }
    Ok(())
}

/// Every cross-engine binding is known to both engines, the giver's (which made its id) and
/// the receiver's, and both hold it alike: the same persons, places and relation, the same
/// final status (active, refused, revoked), nothing proposed or revoked unconfirmed. An
/// `Unbind` that outran its `Bind` leaves the receiver's record without the binding's fields.
/// Every exchange was sent by a person with a binding to its receiver on that engine.
fn check_bindings(nodes: &[(EngineId, &State)]) -> Result<(), String> {
    type Side = Option<(EngineId, LinkView)>;
    let mut by_bxid: BTreeMap<Xid, [Side; 2]> = BTreeMap::new();
    for &(id, state) in nodes {
        for l in state.links() {
            let side = usize::from(!l.giver_here);
            if by_bxid.entry(l.bxid).or_default()[side]
                .replace((id, l))
                .is_some()
            {
                return Err("a binding twice on one side".into());
            }
        }
    }
    for (bxid, [giver, receiver]) in &by_bxid {
        let (Some((g_engine, g)), Some((r_engine, r))) = (giver, receiver) else {
            return Err(format!("binding {bxid} known to one side only"));
        };
        let engines_agree = *g_engine == bxid.engine && r.peer == *g_engine && g.peer == *r_engine;
        let outran = r.psn_no.is_none() && r.receiver_psn_no.is_empty();
        let fields = |l: &LinkView| {
            (
                l.giver_psn_no,
                l.giver_admdvs,
                l.receiver_psn_no,
                l.receiver_admdvs,
                l.relation,
                l.created,
            )
        };
        if !engines_agree || !(outran || fields(g) == fields(r)) {
            return Err(format!("binding {bxid}: the sides disagree: {g:?} / {r:?}"));
        }
        let open = |l: &LinkView| l.unbind || l.status == LinkStatus::Pending;
        if g.status != r.status || open(g) || open(r) {
            return Err(format!(
                "binding {bxid}: giver's {:?} {}, receiver's {:?} {}",
                g.status, g.unbind, r.status, r.unbind
            ));
        }
    }
    for &(id, state) in nodes {
        let links: Vec<LinkView> = state.links().collect();
        for x in state.exchanges().filter(|x| x.outgoing) {
            let bound = links.iter().any(|l| {
                let remote = if l.giver_here {
                    l.receiver_psn_no
                } else {
                    l.giver_psn_no
                };
                let was_active = matches!(l.status, LinkStatus::Active | LinkStatus::Revoked);
                l.psn_no == x.psn_no && remote == x.to_psn_no && l.peer == x.peer && was_active
            });
            if !bound {
                return Err(format!(
                    "engine {id}: exchange {} sent without a binding",
                    x.xid
                ));
            }
        }
    }
    Ok(())
}

/// Every acknowledged reply is in the state it promised.
fn check_client_log(nodes: &[SimNode], log: &ClientLog) -> Result<(), String> {
    for (k, bxid) in log.binds.keys() {
        if !nodes[*k]
            .state
            .cross_binding(bxid)
            .is_some_and(|l| l.giver_here)
        {
            return Err(format!("acknowledged binding {bxid} lost on engine {k}"));
        }
    }
    for (k, bxid) in log.unbinds.keys() {
        let status = nodes[*k].state.cross_binding(bxid).map(|l| l.status);
        // Revoked, or refused: a binding revoked while proposed that the receiver's engine
        // had refused stays refused.
        if !matches!(status, Some(LinkStatus::Revoked | LinkStatus::Refused(_))) {
            return Err(format!("acknowledged revocation of {bxid}: {status:?}"));
        }
    }
    for ((k, xid), amount) in &log.transfers {
        let x = nodes[*k].state.exchange(xid);
        if x.as_ref().map(|x| (x.outgoing, x.amount)) != Some((true, *amount)) {
            return Err(format!("acknowledged transfer {xid} lost on engine {k}"));
        }
    }
    for ((k, xid), accept) in &log.answers {
        let want = if *accept {
            Outcome::Accepted
        } else {
            Outcome::Declined
        };
        let status = nodes[*k].state.exchange(xid).map(|x| x.status);
        if status != Some(XStatus::Closed(want)) {
            return Err(format!("acknowledged answer on {xid}: {status:?}"));
        }
    }
    Ok(())
}
