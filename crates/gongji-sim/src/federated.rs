//! `gongji simulate --engines K`: the calibrated workload of [`crate::runner`] (the same seed,
//! persons and requests) against K federated engines that split the provinces between them,
//! each a real [`Engine`] with its journal on disk, joined by a reliable in-process bus.
//!
//! [`Hub`] stands where the national platform's routing stands: it sends each request to the
//! engine that owns its person (or institution); a wallet transfer or a binding whose two
//! persons live on two engines becomes the federation's exchange (`TransferOut`, `BindOut`;
//! accept and decline by xid on the receiver's engine, revocation by `Unbind`); and after
//! every piece of requests it carries every message the engines released to its destination
//! as a journaled `Deliver` op, until no engine has anything left to send. So when the
//! generator reads again, every exchange stands where the one engine's transfer would: a
//! cross-engine binding active (or refused) on both sides, a transfer pending on the
//! receiver's engine, an accepted one committed on the sender's, a declined one returned.
//! A binding's answer is the receiver engine's (active, or its refusal's code), as the one
//! engine answers at once. Ids are per engine: the hub gives the generator its own (indexes
//! into its tables of engine and local id, or xid) and translates them back.
//!
//! The generator reads through [`Reads`]: a person from its own engine, the statistics as
//! the sum of the engines' (`StatsView::plus`, as `gongji report --data A --data B` sums).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gongji_core::certno::admdvs_province;
use gongji_core::federation::{
    EngineId, EntryReply, ExchangeView, FedOp, FedOpen, FedReply, FederationConfig, LinkStatus,
    MoneyTotals, Outcome, XStatus, Xid,
};
use gongji_core::time::Period;
use gongji_core::views::{PersonView, StatsView, TransferStatus, TransferView};
use gongji_core::{Applied, Body, ErrCode, InstCode, PsnNo, Rejection, Reply, State};
use gongji_server::{
    Config, Engine, FedRequest, FedResult, WriteRequest, WriteResult, SUBMISSION_OP_COUNT_MAX,
};
use indicatif::ProgressBar;
use rustc_hash::FxHashMap;

use crate::population::AREAS;
use crate::runner::{self, SimulateOptions};
use crate::workload::{GenConfig, Generator, Reads, Tally, Target};

/// Most engines a run splits the provinces over.
pub const ENGINES_MAX: usize = 31;

/// The provinces of the population split over `k` engines `e1`…`ek` of about equal
/// population: the most populous province first, each to the engine holding the fewest
/// persons so far (ties to the lower index). Deterministic: the same `k`, the same split.
pub fn split(k: usize) -> Result<Vec<FederationConfig>, String> {
    let mut provinces: Vec<(f64, u8)> = AREAS
        .iter()
        .map(|(weight, areas)| (*weight, admdvs_province(areas[0])))
        .collect();
    if !(2..=ENGINES_MAX.min(provinces.len())).contains(&k) {
        return Err(format!(
            "--engines must be 2 to {} (one engine: leave it out)",
            ENGINES_MAX.min(provinces.len())
        ));
    }
    provinces.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut load = vec![0.0f64; k];
    let mut owned: Vec<Vec<u8>> = vec![Vec::new(); k];
    for (weight, province) in provinces {
        let e = (0..k)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]))
            .expect("k ≥ 2");
        load[e] += weight;
        owned[e].push(province);
    }
    let ids: Vec<EngineId> = (1..=k)
        .map(|i| EngineId::from(&format!("e{i}")).expect("short id"))
        .collect();
    (0..k)
        .map(|e| {
            let mut provinces = owned[e].clone();
            provinces.sort_unstable();
            let peers = (0..k)
                .filter(|&o| o != e)
                .map(|o| {
                    let mut p = owned[o].clone();
                    p.sort_unstable();
                    (ids[o], p)
                })
                .collect();
            let config = FederationConfig {
                engine: ids[e],
                provinces,
                peers,
            };
            config.validate().map(|()| config)
        })
        .collect()
}

/// A local id on one engine, or an exchange's or a binding's id across two.
#[derive(Clone, Copy, Debug)]
enum Local {
    Id(u64),
    /// A cross-engine transfer (with its sender, for the generator's view) or binding.
    Cross(Xid, Option<PsnNo>),
}

/// One op for one engine, in the order its requests came.
#[derive(Clone, Debug)]
enum Work {
    Core(WriteRequest),
    Fed(FedRequest),
}

/// An op's answer (held briefly, a piece's worth: the size of the federation's reply is no
/// concern).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Done {
    Core(WriteResult),
    Fed(FedResult),
}

/// How a core op's reply's ids become the generator's.
#[derive(Clone, Copy, Debug)]
enum Ids {
    Same,
    NewSettlement,
    NewBinding,
    NewTransfer,
    Binding(u32),
    Transfer(u64),
}

/// How one request is answered once its engines have.
#[derive(Debug)]
enum Plan {
    Refused(Rejection),
    Core {
        k: usize,
        slot: usize,
        ids: Ids,
    },
    /// A crediting batch split by engine: one op on each engine holding some of its persons.
    Credit(Vec<(usize, usize)>),
    TransferOut {
        k: usize,
        slot: usize,
        to: usize,
    },
    BindOut {
        k: usize,
        slot: usize,
    },
    /// Accept or decline of a cross-engine transfer, or a cross-engine revocation.
    Fed {
        k: usize,
        slot: usize,
        ids: Ids,
    },
}

/// What the hub carried, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct HubStats {
    pub transfers_out: u64,
    pub binds_out: u64,
    pub unbinds: u64,
    pub delivered: u64,
    /// Messages an engine's relay queue dropped (full), recovered from its outbox.
    pub dropped: u64,
}

/// K engines as one [`Target`].
pub struct Hub<'a> {
    engines: &'a [Engine],
    ids: Vec<EngineId>,
    queue_op_count_max: usize,
    /// Engine index by province code (`u8::MAX`: none).
    owner: [u8; 100],
    persons: FxHashMap<PsnNo, u32>,
    institutions: FxHashMap<InstCode, u32>,
    settlements: Vec<(usize, u64)>,
    bindings: Vec<(usize, Local)>,
    transfers: Vec<(usize, Local)>,
    /// The latest time of any request: the one engine's clock; deliveries happen at it.
    clock: i64,
    dropped_seen: Vec<u64>,
    /// Deliveries an engine refused (none on a reliable bus: each is a failure).
    pub refused: Vec<String>,
    pub stats: HubStats,
    pub progress: Option<ProgressBar>,
}

impl std::fmt::Debug for Hub<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl<'a> Hub<'a> {
    pub fn new(engines: &'a [Engine], configs: &[FederationConfig], config: &Config) -> Hub<'a> {
        let mut owner = [u8::MAX; 100];
        for (k, c) in configs.iter().enumerate() {
            for &p in &c.provinces {
                owner[usize::from(p)] = k as u8;
            }
        }
        Hub {
            engines,
            ids: configs.iter().map(|c| c.engine).collect(),
            queue_op_count_max: config.queue_op_count_max,
            owner,
            persons: FxHashMap::default(),
            institutions: FxHashMap::default(),
            settlements: Vec::new(),
            bindings: Vec::new(),
            transfers: Vec::new(),
            clock: i64::MIN,
            dropped_seen: vec![0; engines.len()],
            refused: Vec::new(),
            stats: HubStats::default(),
            progress: None,
        }
    }

    fn engine_of_admdvs(&self, admdvs: u32) -> Option<usize> {
        let k = *self.owner.get(usize::from(admdvs_province(admdvs)))?;
        (k != u8::MAX).then_some(usize::from(k))
    }

    fn home(&self, psn_no: &PsnNo) -> Result<(usize, u32), Rejection> {
        let admdvs = *self
            .persons
            .get(psn_no)
            .ok_or(Rejection::new(ErrCode::PersonNotFound))?;
        let k = self
            .engine_of_admdvs(admdvs)
            .ok_or(Rejection::new(ErrCode::InvalidAdmdvs))?;
        Ok((k, admdvs))
    }

    fn engine_index(&self, id: EngineId) -> usize {
        self.ids
            .iter()
            .position(|&e| e == id)
            .unwrap_or_else(|| panic!("a message for engine {id}, which is not in the run"))
    }

    /// Where `request` goes: its ops queued on their engines, and how it will be answered.
    fn route(&mut self, request: WriteRequest, work: &mut [Vec<Work>]) -> Plan {
        match self.route_or_refuse(request, work) {
            Ok(plan) => plan,
            Err(rejection) => Plan::Refused(rejection),
        }
    }

    fn route_or_refuse(
        &mut self,
        request: WriteRequest,
        work: &mut [Vec<Work>],
    ) -> Result<Plan, Rejection> {
        let time = request.inf_time.expect("the generator times every request");
        let mut core = |k: usize, request: WriteRequest, ids: Ids| {
            work[k].push(Work::Core(request));
            Plan::Core {
                k,
                slot: work[k].len() - 1,
                ids,
            }
        };
        let fed_request = |op: FedOp| {
            Work::Fed(FedRequest {
                inf_time: Some(time),
                op,
            })
        };
        let invalid = || Rejection::new(ErrCode::InvalidAdmdvs);
        Ok(match &request.body {
            Body::RegisterInstitution {
                fixmedins_code,
                admdvs,
                ..
            } => {
                let k = self.engine_of_admdvs(*admdvs).ok_or_else(invalid)?;
                self.institutions.insert(*fixmedins_code, *admdvs);
                core(k, request, Ids::Same)
            }
            Body::Enrol { psn_no, admdvs, .. } => {
                let k = self.engine_of_admdvs(*admdvs).ok_or_else(invalid)?;
                self.persons.insert(*psn_no, *admdvs);
                core(k, request, Ids::Same)
            }
            Body::Credit { period, items } => {
                let mut by_engine = vec![Vec::new(); self.engines.len()];
                for item in items {
                    by_engine[self.home(&item.psn_no)?.0].push(item.clone());
                }
                let mut parts = Vec::new();
                for (k, items) in by_engine.into_iter().enumerate() {
                    if items.is_empty() {
                        continue;
                    }
                    let body = Body::Credit {
                        period: *period,
                        items,
                    };
                    work[k].push(Work::Core(WriteRequest {
                        body,
                        ..request.clone()
                    }));
                    parts.push((k, work[k].len() - 1));
                }
                Plan::Credit(parts)
            }
            Body::OpenWallet { psn_no } | Body::SetStatus { psn_no, .. } => {
                core(self.home(psn_no)?.0, request, Ids::Same)
            }
            Body::Settle { psn_no, .. } => core(self.home(psn_no)?.0, request, Ids::NewSettlement),
            Body::Contribute { payer_psn_no, .. } => {
                core(self.home(payer_psn_no)?.0, request, Ids::Same)
            }
            Body::Cancel { setl_id } => {
                let &(k, local) = self
                    .settlements
                    .get(handle(*setl_id)?)
                    .ok_or(Rejection::new(ErrCode::SettlementNotFound))?;
                let body = Body::Cancel { setl_id: local + 1 };
                core(k, WriteRequest { body, ..request }, Ids::Same)
            }
            Body::Reverse {
                fixmedins_code: None,
                ..
            } => {
                // A reversal by its HIS goes where the HIS settles: its own province's engine.
                let gongji_core::Actor::Institution(code) = request.actor else {
                    panic!("the generator's reversals come from institutions")
                };
                let admdvs = *self
                    .institutions
                    .get(&code)
                    .ok_or(Rejection::new(ErrCode::InstitutionNotFound))?;
                core(
                    self.engine_of_admdvs(admdvs).ok_or_else(invalid)?,
                    request,
                    Ids::Same,
                )
            }
            Body::Bind {
                giver_psn_no,
                receiver_psn_no,
                relation,
            } => {
                let (g, _) = self.home(giver_psn_no)?;
                let (r, receiver_admdvs) = self.home(receiver_psn_no)?;
                if g == r {
                    return Ok(core(g, request, Ids::NewBinding));
                }
                self.stats.binds_out += 1;
                work[g].push(fed_request(FedOp::BindOut {
                    msgid: request.msgid,
                    time,
                    actor: request.actor.clone(),
                    giver_psn_no: *giver_psn_no,
                    receiver_psn_no: *receiver_psn_no,
                    receiver_admdvs,
                    relation: *relation,
                }));
                Plan::BindOut {
                    k: g,
                    slot: work[g].len() - 1,
                }
            }
            Body::Revoke { binding_id } => {
                let h = handle(*binding_id)?;
                let &(k, local) = self
                    .bindings
                    .get(h)
                    .ok_or(Rejection::new(ErrCode::BindingNotFound))?;
                match local {
                    Local::Id(local) => {
                        let body = Body::Revoke {
                            binding_id: local + 1,
                        };
                        core(k, WriteRequest { body, ..request }, Ids::Binding(h as u32))
                    }
                    Local::Cross(bxid, _) => {
                        self.stats.unbinds += 1;
                        work[k].push(fed_request(FedOp::Unbind {
                            time,
                            actor: request.actor.clone(),
                            bxid,
                            msgid: Some(request.msgid),
                        }));
                        Plan::Fed {
                            k,
                            slot: work[k].len() - 1,
                            ids: Ids::Binding(h as u32),
                        }
                    }
                }
            }
            Body::TransferCreate {
                from_psn_no,
                to_psn_no,
                amount,
                source,
            } => {
                let (from, _) = self.home(from_psn_no)?;
                let (to, to_admdvs) = self.home(to_psn_no)?;
                if from == to {
                    return Ok(core(from, request, Ids::NewTransfer));
                }
                self.stats.transfers_out += 1;
                work[from].push(fed_request(FedOp::TransferOut {
                    msgid: request.msgid,
                    time,
                    actor: request.actor.clone(),
                    from_psn_no: *from_psn_no,
                    to_psn_no: *to_psn_no,
                    to_admdvs,
                    amount: *amount,
                    source: *source,
                }));
                Plan::TransferOut {
                    k: from,
                    slot: work[from].len() - 1,
                    to,
                }
            }
            Body::TransferAccept { transfer_id } | Body::TransferDecline { transfer_id } => {
                let accept = matches!(request.body, Body::TransferAccept { .. });
                let &(k, local) = self
                    .transfers
                    .get(handle(*transfer_id)?)
                    .ok_or(Rejection::new(ErrCode::NotFound))?;
                match local {
                    Local::Id(local) => {
                        let body = if accept {
                            Body::TransferAccept { transfer_id: local }
                        } else {
                            Body::TransferDecline { transfer_id: local }
                        };
                        let ids = Ids::Transfer(*transfer_id);
                        core(k, WriteRequest { body, ..request }, ids)
                    }
                    Local::Cross(xid, _) => {
                        let actor = request.actor.clone();
                        let msgid = Some(request.msgid);
                        let op = FedOp::answer(accept, time, actor, xid, msgid);
                        work[k].push(fed_request(op));
                        Plan::Fed {
                            k,
                            slot: work[k].len() - 1,
                            ids: Ids::Transfer(*transfer_id),
                        }
                    }
                }
            }
            other => panic!("a calibrated run sends no {other:?}"),
        })
    }

    /// Runs one engine's ops in order: each run of core ops one [`runner::submit_core`], each
    /// run of federation ops in submissions of at most [`SUBMISSION_OP_COUNT_MAX`].
    fn run(&self, k: usize, work: Vec<Work>) -> Vec<Done> {
        let mut out = Vec::with_capacity(work.len());
        let mut work = work.into_iter().peekable();
        while let Some(first) = work.next() {
            match first {
                Work::Core(r) => {
                    let mut run = vec![r];
                    while let Some(Work::Core(_)) = work.peek() {
                        let Some(Work::Core(r)) = work.next() else {
                            unreachable!()
                        };
                        run.push(r);
                    }
                    let engine = &self.engines[k];
                    let results = runner::submit_core(engine, self.queue_op_count_max, run, None);
                    out.extend(results.into_iter().map(Done::Core));
                }
                Work::Fed(r) => {
                    let mut run = vec![r];
                    while let Some(Work::Fed(_)) = work.peek() {
                        let Some(Work::Fed(r)) = work.next() else {
                            unreachable!()
                        };
                        run.push(r);
                    }
                    let results = submit_fed(&self.engines[k], run);
                    out.extend(results.into_iter().map(Done::Fed));
                }
            }
        }
        out
    }

    /// Carries every message the engines released to its destination, as a `Deliver` op at
    /// the hub's clock, until none is left. A message the relay queue dropped (full) is sent
    /// again from its engine's outbox, as the real relay's resend would.
    fn deliver_all(&mut self) {
        loop {
            let mut by_dest: Vec<Vec<FedRequest>> = vec![Vec::new(); self.engines.len()];
            let mut any = false;
            for (k, engine) in self.engines.iter().enumerate() {
                let mut msgs = engine.take_fed_sends();
                let dropped = engine
                    .counters()
                    .fed_sends_dropped_total
                    .load(Ordering::Relaxed);
                if dropped != self.dropped_seen[k] {
                    self.stats.dropped += dropped - self.dropped_seen[k];
                    self.dropped_seen[k] = dropped;
                    msgs.extend(engine.read(|s| s.fed_outbox()));
                }
                for msg in msgs {
                    any = true;
                    let to = self.engine_index(msg.to());
                    by_dest[to].push(FedRequest {
                        inf_time: Some(self.clock),
                        op: FedOp::Deliver {
                            time: self.clock,
                            msg,
                        },
                    });
                }
            }
            if !any {
                return;
            }
            for (k, requests) in by_dest.into_iter().enumerate() {
                if requests.is_empty() {
                    continue;
                }
                self.stats.delivered += requests.len() as u64;
                let results = submit_fed(&self.engines[k], requests.clone());
                for (request, result) in requests.iter().zip(results) {
                    if let Err(r) = result {
                        self.refused.push(format!(
                            "engine {} refused {:?}: {r:?}",
                            self.ids[k], request.op
                        ));
                    }
                }
            }
        }
    }

    fn new_handle(table: &mut Vec<(usize, Local)>, entry: (usize, Local)) -> u32 {
        table.push(entry);
        u32::try_from(table.len() - 1).expect("fewer than 2^32 ids")
    }

    /// A core op's answer with the generator's ids.
    fn core_answer(&mut self, k: usize, ids: Ids, result: WriteResult) -> WriteResult {
        let mut applied = result?;
        match (ids, &mut applied.reply) {
            (Ids::NewSettlement, Reply::Settled(i)) => {
                self.settlements.push((k, u64::from(*i)));
                *i = u32::try_from(self.settlements.len() - 1).expect("fewer than 2^32 ids");
            }
            (Ids::NewBinding, Reply::Bound { binding, .. }) => {
                let local = Local::Id(u64::from(*binding));
                *binding = Self::new_handle(&mut self.bindings, (k, local));
            }
            (Ids::Binding(h), Reply::Bound { binding, .. }) => *binding = h,
            (Ids::NewTransfer, Reply::Transfer(view)) => {
                let local = Local::Id(view.transfer_id);
                view.transfer_id = u64::from(Self::new_handle(&mut self.transfers, (k, local))) + 1;
            }
            (Ids::Transfer(id), Reply::Transfer(view)) => view.transfer_id = id,
            _ => {}
        }
        Ok(applied)
    }

    /// Answers a request once every engine has answered its ops and every message arrived.
    fn answer(&mut self, plan: Plan, done: &mut [Vec<Option<Done>>]) -> WriteResult {
        let mut take = |k: usize, slot: usize| done[k][slot].take().expect("answered once");
        match plan {
            Plan::Refused(r) => Err(r),
            Plan::Core { k, slot, ids } => match take(k, slot) {
                Done::Core(result) => self.core_answer(k, ids, result),
                Done::Fed(_) => unreachable!("a core op answered as a federation op"),
            },
            Plan::Credit(parts) => {
                let (mut count, mut sum) = (0u32, gongji_core::Fen::ZERO);
                for (k, slot) in parts {
                    let Done::Core(result) = take(k, slot) else {
                        unreachable!("a core op answered as a federation op")
                    };
                    if let Reply::Credited { count: c, sum: s } = result?.reply {
                        count += c;
                        sum = sum.checked_add(s).expect("credited sum");
                    }
                }
                Ok(Applied {
                    reply: Reply::Credited { count, sum },
                    replayed: false,
                })
            }
            Plan::TransferOut { k, slot, to } => {
                let applied = fed_applied(take(k, slot))?;
                let EntryReply::Fed(FedReply::Exchange(x)) = &applied.reply else {
                    unreachable!("a transfer answered {:?}", applied.reply)
                };
                let local = Local::Cross(x.xid, x.psn_no);
                let id = u64::from(Self::new_handle(&mut self.transfers, (to, local))) + 1;
                Ok(Applied {
                    reply: Reply::Transfer(Box::new(transfer_view(x, id, x.psn_no))),
                    replayed: applied.replayed,
                })
            }
            Plan::BindOut { k, slot } => {
                let applied = fed_applied(take(k, slot))?;
                let EntryReply::Fed(FedReply::Binding(link)) = &applied.reply else {
                    unreachable!("a binding answered {:?}", applied.reply)
                };
                // The receiver's engine has judged it by now: its answer is the answer.
                let bxid = link.bxid;
                let now = self.engines[k].read(|s| s.cross_binding(&bxid));
                match now.map(|l| l.status) {
                    Some(LinkStatus::Active) => {
                        let local = Local::Cross(bxid, None);
                        let binding = Self::new_handle(&mut self.bindings, (k, local));
                        Ok(Applied {
                            reply: Reply::Bound {
                                binding,
                                priority: 0,
                                active: true,
                            },
                            replayed: applied.replayed,
                        })
                    }
                    Some(LinkStatus::Refused(why)) => Err(Rejection::new(why.code())),
                    other => panic!("binding {bxid} is {other:?} after every message arrived"),
                }
            }
            Plan::Fed { k, slot, ids } => {
                let applied = fed_applied(take(k, slot))?;
                let reply = match (ids, &applied.reply) {
                    (Ids::Transfer(id), EntryReply::Fed(FedReply::Exchange(x))) => {
                        let from = match self.transfers[handle(id).expect("an id")].1 {
                            Local::Cross(_, from) => from,
                            Local::Id(_) => None,
                        };
                        Reply::Transfer(Box::new(transfer_view(x, id, from)))
                    }
                    (Ids::Binding(h), EntryReply::Fed(FedReply::Binding(_))) => Reply::Bound {
                        binding: h,
                        priority: 0,
                        active: false,
                    },
                    (_, other) => unreachable!("a federation op answered {other:?}"),
                };
                Ok(Applied {
                    reply,
                    replayed: applied.replayed,
                })
            }
        }
    }
}

/// The hub's index of an id the generator holds (ids start at 1).
fn handle(id: u64) -> Result<usize, Rejection> {
    id.checked_sub(1)
        .map(|h| h as usize)
        .ok_or(Rejection::new(ErrCode::NotFound))
}

fn fed_applied(done: Done) -> Result<gongji_core::federation::EntryApplied, Rejection> {
    match done {
        Done::Fed(result) => result,
        Done::Core(_) => unreachable!("a federation op answered as a core op"),
    }
}

/// A cross-engine transfer as the generator sees a transfer.
fn transfer_view(x: &ExchangeView, transfer_id: u64, from: Option<PsnNo>) -> TransferView {
    TransferView {
        transfer_id,
        from_psn_no: from.unwrap_or_default(),
        to_psn_no: x.to_psn_no,
        amount: x.amount,
        source: x.source,
        cross_province: true,
        status: match x.status {
            XStatus::InFlight | XStatus::Pending => TransferStatus::Pending,
            XStatus::Closed(Outcome::Accepted) => TransferStatus::Accepted,
            XStatus::Closed(Outcome::Declined) => TransferStatus::Declined,
            XStatus::Closed(_) => TransferStatus::Returned,
        },
        created: x.created,
        expires_at: x.expires_at,
        sender_balances: None,
    }
}

/// Federation ops to `engine` in order, one submission of at most
/// [`SUBMISSION_OP_COUNT_MAX`] at a time; every answer.
fn submit_fed(engine: &Engine, requests: Vec<FedRequest>) -> Vec<FedResult> {
    let mut out = Vec::with_capacity(requests.len());
    let mut requests = requests.into_iter();
    loop {
        let chunk: Vec<FedRequest> = requests.by_ref().take(SUBMISSION_OP_COUNT_MAX).collect();
        if chunk.is_empty() {
            return out;
        }
        let n = chunk.len();
        let rx = engine
            .submit_fed(chunk)
            .unwrap_or_else(|e| panic!("submit refused: {e:?}"));
        let got = rx.blocking_recv().expect("the writer stopped");
        assert_eq!(got.len(), n);
        out.extend(got);
    }
}

impl Target for Hub<'_> {
    fn submit(&mut self, requests: Vec<WriteRequest>) -> Vec<WriteResult> {
        let n = requests.len();
        let mut work: Vec<Vec<Work>> = vec![Vec::new(); self.engines.len()];
        let mut plans = Vec::with_capacity(n);
        for request in requests {
            self.clock = self.clock.max(request.inf_time.expect("timed"));
            plans.push(self.route(request, &mut work));
        }
        let mut done: Vec<Vec<Option<Done>>> = work
            .into_iter()
            .enumerate()
            .map(|(k, w)| self.run(k, w).into_iter().map(Some).collect())
            .collect();
        self.deliver_all();
        let results = plans
            .into_iter()
            .map(|plan| self.answer(plan, &mut done))
            .collect();
        if let Some(p) = &self.progress {
            p.inc(n as u64);
        }
        results
    }

    fn read<R>(&mut self, f: impl FnOnce(&dyn Reads) -> R) -> R {
        read_all(self.engines, Vec::new(), |states| {
            f(&Together {
                states,
                hub: &*self,
            })
        })
    }
}

/// Runs `f` with every engine's state, each under its read lock.
fn read_all<R>(engines: &[Engine], states: Vec<&State>, f: impl FnOnce(&[&State]) -> R) -> R {
    match engines.split_first() {
        None => f(&states),
        Some((first, rest)) => first.read(|s| {
            let mut states = states;
            states.push(s);
            read_all(rest, states, f)
        }),
    }
}

/// The engines read together: a person on its own engine, the table their sum.
struct Together<'s> {
    states: &'s [&'s State],
    hub: &'s Hub<'s>,
}

impl Reads for Together<'_> {
    fn person(&self, psn_no: &str) -> Option<PersonView> {
        let (k, _) = self.hub.home(&PsnNo::from(psn_no).ok()?).ok()?;
        self.states[k].person(psn_no).ok()
    }

    fn stats(&self, from: Period, to: Period) -> StatsView {
        sum_stats(self.states, from, to)
    }
}

/// The national table: the engines' tables summed, as `gongji report` sums them.
pub fn sum_stats(states: &[&State], from: Period, to: Period) -> StatsView {
    states
        .iter()
        .map(|s| s.stats(from, to, None))
        .reduce(StatsView::plus)
        .unwrap_or_default()
}

/// One engine after a federated run.
#[derive(Debug)]
pub struct EngineRun {
    pub config: FederationConfig,
    pub data_dir: PathBuf,
    pub persons: usize,
    pub ops_journaled: u64,
    pub check: Result<(), String>,
    pub open: FedOpen,
    pub money: MoneyTotals,
    pub stats: StatsView,
    /// The exchanges this engine sent, by where they ended (`accepted`, `declined`, …).
    pub sent: std::collections::BTreeMap<&'static str, u64>,
}

/// What a federated run measured.
#[derive(Debug)]
pub struct FedSimulateReport {
    pub opts: SimulateOptions,
    pub engines: Vec<EngineRun>,
    /// The sum of the engines' tables over the run's months.
    pub stats: StatsView,
    pub tally: Tally,
    pub hub: HubStats,
    pub refused: Vec<String>,
    /// Each province's table, summed over the engines.
    pub provinces: Vec<(u8, StatsView)>,
    pub off_quota: Vec<String>,
    pub elapsed: Duration,
    pub setup_elapsed: Duration,
}

impl FedSimulateReport {
    /// Every engine's full check, no delivery refused, and the federation's money: nationally
    /// Σ fed_sent = Σ fed_received once every message arrived (nothing accepted is left
    /// uncommitted).
    pub fn check(&self) -> Result<(), String> {
        for e in &self.engines {
            if let Err(err) = &e.check {
                return Err(format!("engine {}: {err}", e.config.engine));
            }
        }
        if let Some(r) = self.refused.first() {
            return Err(format!(
                "{} deliveries refused, first: {r}",
                self.refused.len()
            ));
        }
        let sent: u64 = self.engines.iter().map(|e| e.money.fed_sent).sum();
        let received: u64 = self.engines.iter().map(|e| e.money.fed_received).sum();
        if sent != received {
            return Err(format!(
                "Σ fed_sent {sent} ≠ Σ fed_received {received} after every message arrived"
            ));
        }
        Ok(())
    }
}

/// Runs the calibrated workload of `opts` on engines split by [`split`]`(k)`, each in
/// `dir/<engine>` (which must not hold data).
pub fn simulate_federated(
    opts: &SimulateOptions,
    k: usize,
    dir: &Path,
) -> Result<FedSimulateReport, String> {
    runner::check_options(opts)?;
    let configs = split(k)?;
    let mut engines = Vec::new();
    let mut locks = Vec::new();
    let mut base = None;
    for c in &configs {
        let mut config = runner::engine_config(dir.join(c.engine.as_str()));
        config.federation = Some(c.clone());
        let (engine, report, lock) = runner::open_for_history(&config)?;
        if report.replayed_ops > 0 || engine.read(|s| s.op_count()) > 0 {
            return Err(format!(
                "{} already holds data: simulate into an empty directory",
                config.data_dir.display()
            ));
        }
        engines.push(engine);
        locks.push(lock);
        base.get_or_insert(config);
    }
    let base = base.expect("k ≥ 2");
    let started = Instant::now();
    let cfg = GenConfig::calibrated(opts.scale, opts.seed, opts.from, opts.to);
    let mut gen = Generator::new(cfg);
    let mut hub = Hub::new(&engines, &configs, &base);
    let setup_elapsed = runner::drive(&mut gen, &mut hub, opts.progress, started, |h, bar| {
        std::mem::replace(&mut h.progress, bar)
    });
    let elapsed = started.elapsed();
    let off_quota = hub.read(|r| runner::off_quota(r, &gen));
    let provinces = read_all(&engines, Vec::new(), |states| {
        runner::provinces()
            .map(|p| {
                let table = states
                    .iter()
                    .map(|s| s.stats(opts.from, opts.to, Some(p)))
                    .reduce(StatsView::plus)
                    .unwrap_or_default();
                (p, table)
            })
            .collect()
    });
    let (hub_stats, refused) = (hub.stats, std::mem::take(&mut hub.refused));
    let mut runs = Vec::new();
    for (engine, config) in engines.into_iter().zip(configs) {
        let (persons, check, open, money, stats, sent) = engine.read(|s| {
            let mut sent = std::collections::BTreeMap::new();
            for x in s.exchanges().filter(|x| x.outgoing) {
                let end = match x.status {
                    XStatus::Closed(o) => o.as_str(),
                    XStatus::InFlight | XStatus::Pending => "in flight",
                };
                *sent.entry(end).or_default() += 1;
            }
            (
                s.person_count(),
                s.check(),
                s.fed_open(),
                s.money_totals(),
                s.stats(opts.from, opts.to, None),
                sent,
            )
        });
        let ops_journaled = engine.counters().ops_applied_total.load(Ordering::Relaxed);
        engine.shutdown().map_err(|e| e.to_string())?;
        runs.push(EngineRun {
            data_dir: dir.join(config.engine.as_str()),
            config,
            persons,
            ops_journaled,
            check,
            open,
            money,
            stats,
            sent,
        });
    }
    drop(locks);
    let stats = runs
        .iter()
        .map(|r| r.stats)
        .reduce(StatsView::plus)
        .unwrap_or_default();
    Ok(FedSimulateReport {
        opts: opts.clone(),
        engines: runs,
        stats,
        tally: gen.tally.clone(),
        hub: hub_stats,
        refused,
        provinces,
        off_quota,
        elapsed,
        setup_elapsed,
    })
}

impl std::fmt::Display for FedSimulateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.opts;
        writeln!(
            f,
            "Federated run: scale {}, seed {}, {} to {}, {} engines",
            o.scale,
            o.seed,
            o.from,
            o.to,
            self.engines.len()
        )?;
        for e in &self.engines {
            let provinces: Vec<String> = e.config.provinces.iter().map(|p| p.to_string()).collect();
            let in_flight: u64 = e.open.in_flight.values().map(|v| v.0).sum();
            writeln!(
                f,
                "  engine {}: provinces {}; {} persons, {} ops journaled; open at the end: {} \
                 in flight, {} pending, {} bindings unanswered; state check {}",
                e.config.engine,
                provinces.join(" "),
                e.persons,
                e.ops_journaled,
                in_flight,
                e.open.pending,
                e.open.bindings_unanswered,
                match &e.check {
                    Ok(()) => "ok".to_owned(),
                    Err(err) => format!("FAILED: {err}"),
                }
            )?;
        }
        let h = &self.hub;
        let mut ends = std::collections::BTreeMap::new();
        for (end, n) in self.engines.iter().flat_map(|e| &e.sent) {
            *ends.entry(*end).or_insert(0u64) += n;
        }
        let ends: Vec<String> = ends.iter().map(|(end, n)| format!("{n} {end}")).collect();
        writeln!(
            f,
            "  across engines: {} transfers ({}), {} bindings, {} revocations; {} messages \
             delivered ({} dropped by a full relay queue and resent), {} refused",
            h.transfers_out,
            if ends.is_empty() {
                "none".to_owned()
            } else {
                ends.join(", ")
            },
            h.binds_out,
            h.unbinds,
            h.delivered,
            h.dropped,
            self.refused.len()
        )?;
        writeln!(
            f,
            "  {:.1} s (population set-up {:.1} s)",
            self.elapsed.as_secs_f64(),
            self.setup_elapsed.as_secs_f64()
        )
    }
}
