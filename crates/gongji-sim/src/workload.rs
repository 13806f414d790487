//! The generator: a seeded year of mutual aid over a [`Population`], driven day by day
//! against any [`Target`] (the real engine, or the engine on fault-injecting storage).
//!
//! Each simulated day has three waves, each submitted and awaited before the next is planned:
//!
//! - **A, 06:00**: monthly crediting on the first day of a month; cancellations and reversals
//!   of some of yesterday's settlements; revocations, suspensions and new bindings.
//! - **B, 07:00–21:00**: planned while holding a read of the engine state: ordinary clinic and
//!   pharmacy visits, resident contributions paid by a relative, wallet transfers, and the
//!   mutual-aid settlements that steer the month to its quota; a timed-out HIS's reversal
//!   of a settlement it never sent, and that settlement arriving late (refused `REVERSED`).
//! - **C, 21:00**: receivers accept or decline the day's transfers; some are left to expire
//!   at 06:00 the next day.
//!
//! **Steering.** At wave B the generator reads the engine's own statistics for the month and
//! plans today's share of what is still missing (all of it on the month's last day). A
//! mutual-aid settlement is sized so that the giver part is exactly the planned amount: the
//! personally borne part is the receiver's own account and wallet plus the planned draw, and
//! the draw never exceeds what the receiver's in-province givers hold. That is exact only if
//! nothing else moves those balances between the read and the settlement, so each day a person
//! takes part in at most one planned movement (the `touched` marks). The table printed at the
//! end is read from the engine's statistics after the run, never from the generator's tally.

use std::collections::BTreeMap;

use gongji_core::time::{cst_day, day_start, format_cst, parse_date, period_of, Period};
use gongji_core::views::{BindingScope, PersonView, StatsView};
use gongji_core::{
    Actor, Body, CreditItem, Fen, InstCode, InstType, Msgid, PersonStatus, Reply, State,
    TransferSource,
};

/// The digits after the institution code in a national-form msgid: 14 of time, 6 of sequence.
const HIS_MSGID_SUFFIX_LEN: usize = 20;
use gongji_server::{WriteRequest, WriteResult};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashSet;

use crate::calib::{MonthPlan, Target as Quota, RESIDENT_CONTRIBUTION};
use crate::dist;
use crate::population::{self, Kind, Population, PopulationConfig};

/// Where the generator's writes go and its reads come from.
/// Requests handed to the target at once by [`Generator::send`] (and enrolments generated at
/// once by the set-up): a bound on the memory a send holds, whatever the scale.
const SEND_PIECE: usize = 1 << 18;

pub trait Target {
    /// Submits `requests` in order and waits for all of them; one result per request.
    fn submit(&mut self, requests: Vec<WriteRequest>) -> Vec<WriteResult>;
    /// Runs `f` on what the generator reads now (the state; several engines' together).
    fn read<R>(&mut self, f: impl FnOnce(&dyn Reads) -> R) -> R;
}

/// What the generator reads to plan a day: a person's view and the statistics table. One
/// engine's [`State`], or the engines of a federation read together, each person on its own
/// engine and the table their sum (`crate::federated`).
pub trait Reads {
    fn person(&self, psn_no: &str) -> Option<PersonView>;
    /// The table of `from..=to`, all provinces.
    fn stats(&self, from: Period, to: Period) -> StatsView;
}

impl Reads for State {
    fn person(&self, psn_no: &str) -> Option<PersonView> {
        State::person(self, psn_no).ok()
    }

    fn stats(&self, from: Period, to: Period) -> StatsView {
        State::stats(self, from, to, None)
    }
}

/// How much of everything happens.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub population: PopulationConfig,
    pub seed: u64,
    /// First and last simulated day (CST day numbers), within 2025.
    pub first_day: i32,
    pub last_day: i32,
    /// The quotas of the twelve months of 2025.
    pub plan: Vec<MonthPlan>,
    /// Ordinary (non-mutual-aid) settlements per employee and per resident a month.
    pub visits_per_employee_month: f64,
    pub visits_per_resident_month: f64,
    /// Share of settlements cancelled the next morning (of which some by reversal).
    pub cancel_share: f64,
    pub reversal_share_of_cancels: f64,
    /// Reversals of a settlement never received, per 10,000 visits.
    pub ghost_reversals_per_10k: f64,
    /// Transfers made besides the quota, as shares of it: declined, left to expire.
    pub transfer_decline_share: f64,
    pub transfer_expire_share: f64,
    /// Monthly shares: persons suspended, bindings revoked.
    pub suspend_share_month: f64,
    pub revoke_share_month: f64,
    /// Also send writes meant to be refused, replays and conflicting msgids, and reactivate
    /// suspended persons (deterministic simulation testing).
    pub chaos: bool,
}

impl GenConfig {
    /// The calibrated workload at `scale` over `from..=to` (months of 2025).
    pub fn calibrated(scale: f64, seed: u64, from: Period, to: Period) -> GenConfig {
        let first = period_first_day(from);
        let last = period_first_day(Period(to.0 + 1)) - 1;
        GenConfig {
            population: PopulationConfig::new(scale),
            seed,
            first_day: first,
            last_day: last,
            plan: crate::calib::plan_2025(scale),
            visits_per_employee_month: 0.5,
            visits_per_resident_month: 0.15,
            cancel_share: 0.004,
            reversal_share_of_cancels: 0.3,
            ghost_reversals_per_10k: 2.0,
            transfer_decline_share: 0.12,
            transfer_expire_share: 0.06,
            suspend_share_month: 0.000_2,
            revoke_share_month: 0.002,
            chaos: false,
        }
    }
}

/// CST day number of the first day of `period`.
pub fn period_first_day(period: Period) -> i32 {
    parse_date(&format!("{period}-01")).expect("valid period")
}

/// What to do with a request's result.
#[derive(Clone, Copy, Debug)]
enum Tag {
    None,
    Bind,
    Settle { mutual: bool },
    Transfer(Fate),
    Contribute { psn: u32, year: u16 },
    OpenWallet(u32),
    Revoke(u64),
    Status { psn: u32, suspended: bool },
}

/// What becomes of a transfer the day it is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Accept,
    Decline,
    Expire,
}

#[derive(Clone, Copy, Debug)]
struct SetlRec {
    setl_id: u64,
    msgid: Msgid,
    mutual: bool,
}

/// One planned write of a wave.
struct Event {
    time: i64,
    body: Body,
    tag: Tag,
    msgid: Option<Msgid>,
}

/// Counts of what was sent and how it was answered (for the run's summary; never the table).
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub applied: u64,
    pub replayed: u64,
    /// Rejections by `err_code`.
    pub rejected: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
pub struct Generator {
    pub cfg: GenConfig,
    pub pop: Population,
    rng: ChaCha8Rng,
    seq: u64,
    employees: Vec<u32>,
    residents: Vec<u32>,
    suspended: Vec<bool>,
    wallet_open: Vec<bool>,
    /// Has (or had) an in-province giver: its balances must be read before it settles.
    aided_flag: Vec<bool>,
    aided: Vec<u32>,
    /// Active bindings made: (binding_id, giver, receiver).
    active: Vec<(u64, u32, u32)>,
    pairs_in: Vec<(u32, u32)>,
    pairs_cross: Vec<(u32, u32)>,
    /// In-province (payer, resident) pairs for contributions.
    resident_pairs: Vec<(u32, u32)>,
    paid: FxHashSet<(u32, u16)>,
    /// Day stamp of the last planned movement per person (see the module docs).
    touched: Vec<i32>,
    /// Later bindings by day.
    later: BTreeMap<i32, Vec<usize>>,
    yesterday: Vec<SetlRec>,
    today: Vec<SetlRec>,
    transfers_today: Vec<(u64, Fate)>,
    /// Senders of transfers left to expire at 06:00 tomorrow: their account changes then.
    expiring_senders: Vec<u32>,
    /// Recent applied requests, for chaos replays.
    recent: Vec<WriteRequest>,
    pub tally: Tally,
}

const DAY: i64 = 86_400;

impl Generator {
    pub fn new(cfg: GenConfig) -> Generator {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let pop = population::generate(&cfg.population, &mut rng);
        let n = pop.persons.len();
        let (mut employees, mut residents) = (Vec::new(), Vec::new());
        for (i, p) in pop.persons.iter().enumerate() {
            if p.kind == Kind::Resident {
                residents.push(i as u32);
            } else {
                employees.push(i as u32);
            }
        }
        let days = (cfg.last_day - cfg.first_day + 1).max(1);
        let mut later: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, b) in pop.bindings.iter().enumerate() {
            if b.later {
                later
                    .entry(cfg.first_day + rng.random_range(0..days))
                    .or_default()
                    .push(i);
            }
        }
        Generator {
            cfg,
            pop,
            rng,
            seq: 0,
            employees,
            residents,
            suspended: vec![false; n],
            wallet_open: vec![false; n],
            aided_flag: vec![false; n],
            aided: Vec::new(),
            active: Vec::new(),
            pairs_in: Vec::new(),
            pairs_cross: Vec::new(),
            resident_pairs: Vec::new(),
            paid: FxHashSet::default(),
            touched: vec![i32::MIN; n],
            later,
            yesterday: Vec::new(),
            today: Vec::new(),
            transfers_today: Vec::new(),
            expiring_senders: Vec::new(),
            recent: Vec::new(),
            tally: Tally::default(),
        }
    }

    pub fn days(&self) -> std::ops::RangeInclusive<i32> {
        self.cfg.first_day..=self.cfg.last_day
    }

    pub fn binding_count(&self) -> usize {
        self.active.len()
    }

    fn msgid(&mut self) -> Msgid {
        self.seq += 1;
        Msgid::from(&format!("SIM{:011}", self.seq)).expect("short msgid")
    }

    /// A settlement's msgid in the national form: institution code, CST time, sequence.
    fn his_msgid(&mut self, code: &str, time: i64) -> Msgid {
        self.seq += 1;
        let stamp: String = format_cst(time)
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let msgid = format!("{code}{stamp}{:06}", self.seq % 1_000_000);
        debug_assert_eq!(msgid.len(), code.len() + HIS_MSGID_SUFFIX_LEN);
        Msgid::from(&msgid).expect("short msgid")
    }

    /// Sends events in time order (stable), handles each result, returns them. Settlements
    /// and their reversals come from the institution's HIS, in its msgid scope; everything else
    /// from the platform (admin). History carries `inf_time` for every request, which the HTTP
    /// API allows admins only; the engine below it judges time the same for every actor.
    fn send<T: Target>(&mut self, target: &mut T, mut events: Vec<Event>) -> Vec<WriteResult> {
        if events.is_empty() {
            return Vec::new();
        }
        events.sort_by_key(|e| e.time);
        let mut requests = Vec::with_capacity(events.len());
        let mut tags = Vec::with_capacity(events.len());
        for e in events {
            let actor = his_actor(&e.body).unwrap_or(Actor::Admin);
            let msgid = match e.msgid {
                Some(m) => m,
                None => self.msgid(),
            };
            requests.push(WriteRequest {
                msgid,
                inf_time: Some(e.time),
                actor,
                body: e.body,
            });
            tags.push(e.tag);
        }
        // In pieces, so that the copy handed to the target is never the whole of a big send.
        let mut results = Vec::with_capacity(requests.len());
        let mut tags = tags.into_iter();
        let mut requests = requests.into_iter();
        loop {
            let piece: Vec<WriteRequest> = requests.by_ref().take(SEND_PIECE).collect();
            if piece.is_empty() {
                break;
            }
            let got = target.submit(piece.clone());
            assert_eq!(got.len(), piece.len(), "one result per request");
            for ((request, tag), result) in piece.into_iter().zip(tags.by_ref()).zip(&got) {
                self.absorb(request, tag, result);
            }
            results.extend(got);
        }
        results
    }

    fn absorb(&mut self, request: WriteRequest, tag: Tag, result: &WriteResult) {
        self.tally.requests += 1;
        let applied = match result {
            Err(rejection) => {
                *self
                    .tally
                    .rejected
                    .entry(rejection.code.as_str())
                    .or_default() += 1;
                return;
            }
            Ok(applied) => applied,
        };
        if applied.replayed {
            self.tally.replayed += 1;
            return;
        }
        self.tally.applied += 1;
        match (tag, &applied.reply) {
            (Tag::Bind, Reply::Bound { binding, .. }) => {
                let Body::Bind {
                    giver_psn_no,
                    receiver_psn_no,
                    ..
                } = &request.body
                else {
                    unreachable!("a bind tag on a bind")
                };
                let (g, r) = (index_of(giver_psn_no), index_of(receiver_psn_no));
                self.active.push((u64::from(*binding) + 1, g, r));
                if self.same_province(g, r) {
                    self.pairs_in.push((g, r));
                    if !self.aided_flag[r as usize] {
                        self.aided_flag[r as usize] = true;
                        self.aided.push(r);
                    }
                    if self.pop.persons[r as usize].kind == Kind::Resident {
                        self.resident_pairs.push((g, r));
                    }
                } else {
                    self.pairs_cross.push((g, r));
                }
            }
            (Tag::Settle { mutual }, Reply::Settled(s)) => self.today.push(SetlRec {
                setl_id: u64::from(*s) + 1,
                msgid: request.msgid,
                mutual,
            }),
            (Tag::Transfer(fate), Reply::Transfer(view)) => {
                self.transfers_today.push((view.transfer_id, fate));
                if fate == Fate::Expire {
                    self.expiring_senders.push(index_of(&view.from_psn_no));
                }
            }
            (Tag::Contribute { psn, year }, _) => {
                self.paid.insert((psn, year));
            }
            (Tag::OpenWallet(p), _) => self.wallet_open[p as usize] = true,
            (Tag::Revoke(id), _) => {
                if let Some(k) = self.active.iter().position(|a| a.0 == id) {
                    let (_, g, r) = self.active.swap_remove(k);
                    for list in [
                        &mut self.pairs_in,
                        &mut self.pairs_cross,
                        &mut self.resident_pairs,
                    ] {
                        if let Some(k) = list.iter().position(|&x| x == (g, r)) {
                            list.swap_remove(k);
                        }
                    }
                }
            }
            (Tag::Status { psn, suspended }, _) => self.suspended[psn as usize] = suspended,
            _ => {}
        }
        if self.cfg.chaos {
            if self.recent.len() >= 256 {
                let k = self.rng.random_range(0..self.recent.len());
                self.recent.swap_remove(k);
            }
            self.recent.push(request);
        }
    }

    fn same_province(&self, a: u32, b: u32) -> bool {
        let p = &self.pop.persons;
        p[a as usize].admdvs / 10_000 == p[b as usize].admdvs / 10_000
    }

    /// Registers the institutions, enrols everyone, credits the balances carried into the
    /// first month (labelled with the month before it) and makes the bindings that exist
    /// already, all at 09:00 on the day before the first simulated day.
    pub fn setup<T: Target>(&mut self, target: &mut T) {
        let time = day_start(self.cfg.first_day - 1) + 9 * 3600;
        let event = |body, tag| Event {
            time,
            body,
            tag,
            msgid: None,
        };
        let mut events: Vec<Event> = self
            .pop
            .institutions
            .iter()
            .map(|inst| {
                event(
                    Body::RegisterInstitution {
                        fixmedins_code: inst.code,
                        fixmedins_name: format!("定点机构 {}", inst.code),
                        fixmedins_type: inst.inst_type,
                        admdvs: inst.admdvs,
                    },
                    Tag::None,
                )
            })
            .collect();
        for i in 0..self.pop.persons.len() {
            if events.len() == SEND_PIECE {
                self.send(target, std::mem::take(&mut events));
            }
            let p = &self.pop.persons[i];
            events.push(event(
                Body::Enrol {
                    psn_no: self.pop.psn_no(i as u32),
                    certno: p.certno(),
                    psn_name: population::name_of(i as u32),
                    insutype: if p.kind == Kind::Resident {
                        gongji_core::Insutype::Resident
                    } else {
                        gongji_core::Insutype::Employee
                    },
                    admdvs: p.admdvs,
                },
                Tag::None,
            ));
        }
        self.send(target, events);
        let period = period_of(day_start(self.cfg.first_day) - DAY);
        let items: Vec<CreditItem> = self
            .pop
            .persons
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.opening.is_zero())
            .map(|(i, p)| CreditItem {
                psn_no: self.pop.psn_no(i as u32),
                amount: p.opening,
            })
            .collect();
        let events = credit_events(items, period, time);
        self.send(target, events);
        let events = (0..self.pop.bindings.len())
            .filter(|&i| !self.pop.bindings[i].later)
            .map(|i| self.bind_event(i, time))
            .collect();
        self.send(target, events);
    }

    fn bind_event(&self, i: usize, time: i64) -> Event {
        let b = self.pop.bindings[i];
        Event {
            time,
            body: Body::Bind {
                giver_psn_no: self.pop.psn_no(b.giver),
                receiver_psn_no: self.pop.psn_no(b.receiver),
                relation: b.relation,
            },
            tag: Tag::Bind,
            msgid: None,
        }
    }

    fn month_plan(&self, period: Period) -> MonthPlan {
        *self
            .cfg
            .plan
            .iter()
            .find(|m| m.period == period)
            .unwrap_or_else(|| panic!("no plan for {period}"))
    }

    /// Simulates one day: waves A, B and C.
    pub fn day<T: Target>(&mut self, target: &mut T, day: i32) {
        self.yesterday = std::mem::take(&mut self.today);
        self.transfers_today.clear();
        let events = self.wave_a(day);
        self.send(target, events);
        for p in std::mem::take(&mut self.expiring_senders) {
            self.touch(p, day);
        }
        let events = target.read(|state| self.wave_b(state, day));
        self.send(target, events);
        let events = self.wave_c(day);
        self.send(target, events);
    }

    fn wave_a(&mut self, day: i32) -> Vec<Event> {
        let t0 = day_start(day) + 6 * 3600;
        let period = period_of(t0);
        let first_of_month = period_first_day(period) == day;
        let mut events = Vec::new();
        if first_of_month {
            let items: Vec<CreditItem> = self
                .employees
                .iter()
                .filter(|&&i| !self.suspended[i as usize])
                .map(|&i| CreditItem {
                    psn_no: self.pop.psn_no(i),
                    amount: self.pop.persons[i as usize].credit,
                })
                .collect();
            events.extend(credit_events(items, period, t0));
        }
        let at = |rng: &mut ChaCha8Rng| t0 + 60 + rng.random_range(0..3_000);
        let yesterday_period = period_of(t0 - DAY);
        for k in 0..self.yesterday.len() {
            let rec = self.yesterday[k];
            if !self.rng.random_bool(self.cfg.cancel_share) {
                continue;
            }
            // A cancellation takes the settlement out of its own month: never reopen a month
            // whose quota is already settled.
            if rec.mutual && yesterday_period != period {
                continue;
            }
            let body = if self.rng.random_bool(self.cfg.reversal_share_of_cancels) {
                Body::Reverse {
                    omsgid: rec.msgid,
                    fixmedins_code: None,
                }
            } else {
                Body::Cancel {
                    setl_id: rec.setl_id,
                }
            };
            let time = at(&mut self.rng);
            events.push(Event {
                time,
                body,
                tag: Tag::None,
                msgid: None,
            });
        }
        self.revocations_and_suspensions(period, t0, &mut events);
        if let Some(later) = self.later.remove(&day) {
            for i in later {
                let mut e = self.bind_event(i, 0);
                e.time = at(&mut self.rng);
                events.push(e);
            }
        }
        events
    }

    /// Some bindings revoked and some persons suspended (in chaos mode, some reactivated).
    fn revocations_and_suspensions(&mut self, period: Period, t0: i64, events: &mut Vec<Event>) {
        let at = |rng: &mut ChaCha8Rng| t0 + 60 + rng.random_range(0..3_000);
        let days_in_month =
            f64::from(period_first_day(Period(period.0 + 1)) - period_first_day(period));
        let revokes = dist::round_random(
            &mut self.rng,
            self.active.len() as f64 * self.cfg.revoke_share_month / days_in_month,
        );
        for _ in 0..revokes {
            let (id, _, _) = self.active[self.rng.random_range(0..self.active.len())];
            let time = at(&mut self.rng);
            events.push(Event {
                time,
                body: Body::Revoke { binding_id: id },
                tag: Tag::Revoke(id),
                msgid: None,
            });
        }
        let n = self.pop.persons.len();
        let suspends = dist::round_random(
            &mut self.rng,
            n as f64 * self.cfg.suspend_share_month / days_in_month,
        );
        for _ in 0..suspends {
            let psn = self.rng.random_range(0..n) as u32;
            let suspended = !self.suspended[psn as usize] || !self.cfg.chaos;
            let time = at(&mut self.rng);
            events.push(Event {
                time,
                body: Body::SetStatus {
                    psn_no: self.pop.psn_no(psn),
                    status: if suspended {
                        PersonStatus::Suspended
                    } else {
                        PersonStatus::Active
                    },
                },
                tag: Tag::Status { psn, suspended },
                msgid: None,
            });
        }
    }

    fn wave_c(&mut self, day: i32) -> Vec<Event> {
        let t0 = day_start(day) + 21 * 3600;
        let transfers = std::mem::take(&mut self.transfers_today);
        let mut events = Vec::new();
        for (transfer_id, fate) in transfers {
            let body = match fate {
                Fate::Accept => Body::TransferAccept { transfer_id },
                Fate::Decline => Body::TransferDecline { transfer_id },
                Fate::Expire => continue,
            };
            events.push(Event {
                time: t0 + self.rng.random_range(0..3_000),
                body,
                tag: Tag::None,
                msgid: None,
            });
        }
        events
    }

    /// A time in clinic hours, 07:00–20:00, with the morning peak.
    fn visit_time(&mut self, day: i32) -> i64 {
        let start = day_start(day);
        let second = if self.rng.random_bool(0.6) {
            self.rng.random_range(8 * 3600..12 * 3600)
        } else {
            self.rng.random_range(7 * 3600..20 * 3600)
        };
        start + second
    }

    fn is_touched(&self, p: u32, day: i32) -> bool {
        self.touched[p as usize] == day
    }

    fn touch(&mut self, p: u32, day: i32) {
        self.touched[p as usize] = day;
    }

    fn institution_for(&mut self, psn: u32, pharmacy: bool) -> gongji_core::InstCode {
        let pool = population::pool_of(self.pop.persons[psn as usize].admdvs);
        let want = if pharmacy {
            InstType::Pharmacy
        } else {
            InstType::Medical
        };
        if let Some(list) = self.pop.insts_by_pool.get(&pool) {
            for _ in 0..4 {
                let i = list[self.rng.random_range(0..list.len())];
                if self.pop.institutions[i as usize].inst_type == want {
                    return self.pop.institutions[i as usize].code;
                }
            }
            return self.pop.institutions[list[0] as usize].code;
        }
        let n = self.pop.institutions.len();
        self.pop.institutions[self.rng.random_range(0..n)].code
    }

    /// A settlement whose personally borne part is `psn_part`: at a pharmacy the fund pays
    /// nothing; at a clinic the pooled outpatient fund pays about as much again.
    fn settle_event(
        &mut self,
        psn: u32,
        day: i32,
        psn_part: Fen,
        pharmacy: bool,
        acct_used: bool,
        mutual: bool,
    ) -> Event {
        let fund = if pharmacy {
            Fen::ZERO
        } else {
            Fen((psn_part.0 as f64 * self.rng.random_range(0.5..1.5)).round() as u64)
        };
        let medfee = psn_part.checked_add(fund).expect("small amounts");
        let code = self.institution_for(psn, pharmacy);
        let time = self.visit_time(day);
        let msgid = self.his_msgid(&code, time);
        Event {
            time,
            body: Body::Settle {
                fixmedins_code: code,
                psn_no: self.pop.psn_no(psn),
                medfee_sumamt: medfee,
                fund_pay_sumamt: fund,
                acct_used,
            },
            tag: Tag::Settle { mutual },
            msgid: Some(msgid),
        }
    }

    fn wave_b(&mut self, state: &dyn Reads, day: i32) -> Vec<Event> {
        let noon = day_start(day) + 12 * 3600;
        let period = period_of(noon);
        let plan = self.month_plan(period);
        let month_first = period_first_day(period);
        let days_in_month = period_first_day(Period(period.0 + 1)) - month_first;
        let days_left = days_in_month - (day - month_first);
        let stats = state.stats(period, period);
        let mut events = Vec::new();
        self.ordinary_visits(state, day, f64::from(days_in_month), &mut events);
        let dom = i64::from(day - month_first);
        let c_total = plan.contributions as i64;
        let c_done_by = |d: i64| c_total * d / i64::from(days_in_month);
        let contrib_today = (c_done_by(dom + 1) - c_done_by(dom)) as u64;
        let contrib_left = (c_total - c_done_by(dom)) as u64;
        self.contributions(
            state,
            day,
            contrib_today,
            plan.contribution_year,
            &mut events,
        );
        for (quota, got, cross) in [
            (plan.wallet_in_province, stats.in_province, false),
            (plan.wallet_cross_province, stats.cross_province, true),
        ] {
            let need = remaining(quota, got.count, got.amount);
            self.transfers(state, day, need, days_left, cross, &mut events);
        }
        let draw_need = Quota {
            count: plan
                .draw
                .count
                .saturating_sub(stats.account_draw.count + contrib_left),
            amount: Fen(plan.draw.amount.0.saturating_sub(
                stats.account_draw.amount.0 + contrib_left * RESIDENT_CONTRIBUTION.0,
            )),
        };
        self.mutual_aid(state, day, draw_need, days_left, &mut events);
        if self.cfg.chaos {
            self.chaos(state, day, &mut events);
        }
        events
    }

    fn ordinary_visits(
        &mut self,
        state: &dyn Reads,
        day: i32,
        days_in_month: f64,
        events: &mut Vec<Event>,
    ) {
        let n_emp = dist::round_random(
            &mut self.rng,
            self.employees.len() as f64 * self.cfg.visits_per_employee_month / days_in_month,
        );
        let n_res = dist::round_random(
            &mut self.rng,
            self.residents.len() as f64 * self.cfg.visits_per_resident_month / days_in_month,
        );
        let ghosts = dist::round_random(
            &mut self.rng,
            (n_emp + n_res) as f64 * self.cfg.ghost_reversals_per_10k / 10_000.0,
        );
        for k in 0..n_emp + n_res {
            let psn = if k < n_emp {
                self.employees[self.rng.random_range(0..self.employees.len())]
            } else {
                self.residents[self.rng.random_range(0..self.residents.len())]
            };
            if self.suspended[psn as usize] || self.is_touched(psn, day) {
                continue;
            }
            let (yuan, pharmacy) = dist::visit_amount(&mut self.rng);
            let mut psn_part = dist::fen(yuan);
            let mut acct_used = true;
            if self.aided_flag[psn as usize] {
                // It must not draw on its givers unplanned: the own balances pay at most.
                let own = own_balances(state, &self.pop.psn_no(psn));
                if own.is_zero() {
                    acct_used = false;
                } else {
                    psn_part = psn_part.min(own);
                }
            }
            self.touch(psn, day);
            events.push(self.settle_event(psn, day, psn_part, pharmacy, acct_used, false));
        }
        for _ in 0..ghosts {
            // The HIS timed out before its request left: it reverses the msgid, and the
            // settlement that arrives later is refused (REVERSED).
            let psn = self.residents[self.rng.random_range(0..self.residents.len())];
            let mut late = self.settle_event(psn, day, dist::fen(30.0), true, false, false);
            events.push(Event {
                time: late.time,
                body: Body::Reverse {
                    omsgid: late.msgid.expect("his msgid"),
                    fixmedins_code: None,
                },
                tag: Tag::None,
                msgid: None,
            });
            late.time += 60;
            events.push(late);
        }
    }

    fn contributions(
        &mut self,
        state: &dyn Reads,
        day: i32,
        count: u64,
        year: u16,
        events: &mut Vec<Event>,
    ) {
        let mut made = 0;
        let mut tries = 0;
        while made < count && tries < count * 50 + 50 && !self.resident_pairs.is_empty() {
            tries += 1;
            let (payer, psn) =
                self.resident_pairs[self.rng.random_range(0..self.resident_pairs.len())];
            if self.is_touched(payer, day)
                || self.is_touched(psn, day)
                || self.suspended[payer as usize]
                || self.paid.contains(&(psn, year))
            {
                continue;
            }
            let Some(view) = view(state, &self.pop.psn_no(payer)) else {
                continue;
            };
            if view.status != PersonStatus::Active || view.acct_balc < RESIDENT_CONTRIBUTION {
                continue;
            }
            self.touch(payer, day);
            self.touch(psn, day);
            let time = self.visit_time(day);
            events.push(Event {
                time,
                body: Body::Contribute {
                    payer_psn_no: view.psn_no,
                    psn_no: self.pop.psn_no(psn),
                    year,
                    amount: RESIDENT_CONTRIBUTION,
                },
                tag: Tag::Contribute { psn, year },
                msgid: None,
            });
            made += 1;
        }
    }

    /// Today's wallet transfers on one channel: the quota's share (all of what is missing on
    /// the month's last day), plus some that will be declined or left to expire.
    fn transfers(
        &mut self,
        state: &dyn Reads,
        day: i32,
        need: Quota,
        days_left: i32,
        cross: bool,
        events: &mut Vec<Event>,
    ) {
        if need.count == 0 {
            return;
        }
        let k = if days_left == 1 {
            need.count
        } else {
            dist::round_random(&mut self.rng, need.count as f64 / f64::from(days_left))
                .min(need.count)
        };
        if k == 0 {
            return;
        }
        let amounts = self.transfer_amounts(need, k);
        let extra_decline =
            dist::round_random(&mut self.rng, k as f64 * self.cfg.transfer_decline_share);
        let extra_expire =
            dist::round_random(&mut self.rng, k as f64 * self.cfg.transfer_expire_share);
        let mut plans: Vec<(u64, Fate)> = amounts
            .into_iter()
            .filter(|&a| a > 0)
            .map(|a| (a, Fate::Accept))
            .collect();
        for _ in 0..extra_decline {
            plans.push((
                dist::fen(dist::lognormal(&mut self.rng, 300.0, 0.6).min(2_000.0)).0,
                Fate::Decline,
            ));
        }
        for _ in 0..extra_expire {
            plans.push((
                dist::fen(dist::lognormal(&mut self.rng, 300.0, 0.6).min(2_000.0)).0,
                Fate::Expire,
            ));
        }
        for (amount, fate) in plans {
            self.place_transfer(state, day, amount, fate, cross, events);
        }
    }

    /// Amounts of `k` accepted transfers out of what the month still `need`s: the month's
    /// last ones take exactly the rest (within the 2,000.00 yuan limit).
    fn transfer_amounts(&mut self, need: Quota, k: u64) -> Vec<u64> {
        let cap = 200_000u64; // the national 2,000.00 yuan limit per transfer
        let mean = need.amount.0 as f64 / need.count as f64;
        let raw: Vec<f64> = (0..k)
            .map(|_| dist::lognormal(&mut self.rng, 1.0, 0.6))
            .collect();
        // The month's last transfers take exactly what the month still needs.
        if k == need.count {
            dist::apportion(need.amount.0, &raw, &vec![cap; k as usize]).0
        } else {
            // Spread around the mean, but leave the month's later transfers at least half
            // the mean each, so that the last one never faces an amount it cannot carry.
            let norm = dist::lognormal_mean(1.0, 0.6);
            let high = (2.0 * mean).min(cap as f64);
            let mut amounts: Vec<f64> = raw
                .iter()
                .map(|r| (mean * r / norm).clamp(0.3 * mean, high).max(100.0))
                .collect();
            let reserve = (need.count - k) as f64 * mean / 2.0;
            let budget = (need.amount.0 as f64 - reserve).max(0.0);
            let sum: f64 = amounts.iter().sum();
            if sum > budget {
                amounts.iter_mut().for_each(|a| *a *= budget / sum);
            }
            amounts.into_iter().map(|a| a.round() as u64).collect()
        }
    }

    /// Finds a sender and receiver for one transfer (random pairs first, then every pair
    /// from a random start: a large amount may need one of the few senders who hold it).
    fn place_transfer(
        &mut self,
        state: &dyn Reads,
        day: i32,
        amount: u64,
        fate: Fate,
        cross: bool,
        events: &mut Vec<Event>,
    ) -> bool {
        let pairs_len = if cross {
            self.pairs_cross.len()
        } else {
            self.pairs_in.len()
        };
        if pairs_len == 0 {
            return false;
        }
        // Random pairs first, then every pair from a random start: a large amount may
        // need one of the few senders who hold it.
        let start = self.rng.random_range(0..pairs_len);
        for attempt in 0..200 + pairs_len {
            let i = if attempt < 200 {
                self.rng.random_range(0..pairs_len)
            } else {
                (start + attempt - 200) % pairs_len
            };
            let (from, to) = if cross {
                self.pairs_cross[i]
            } else {
                self.pairs_in[i]
            };
            if self.is_touched(from, day)
                || self.is_touched(to, day)
                || self.suspended[from as usize]
            {
                continue;
            }
            let Some(sender) = view(state, &self.pop.psn_no(from)) else {
                continue;
            };
            if sender.status != PersonStatus::Active || sender.acct_balc.0 < amount {
                continue;
            }
            self.touch(from, day);
            self.touch(to, day);
            let time = day_start(day) + self.rng.random_range(8 * 3600..20 * 3600);
            if !self.wallet_open[to as usize] {
                events.push(Event {
                    time,
                    body: Body::OpenWallet {
                        psn_no: self.pop.psn_no(to),
                    },
                    tag: Tag::OpenWallet(to),
                    msgid: None,
                });
            }
            events.push(Event {
                time,
                body: Body::TransferCreate {
                    from_psn_no: sender.psn_no,
                    to_psn_no: self.pop.psn_no(to),
                    amount: Fen(amount),
                    source: TransferSource::Acct,
                },
                tag: Tag::Transfer(fate),
                msgid: None,
            });
            return true;
        }
        false
    }

    /// Today's mutual-aid settlements: receivers whose in-province givers hold enough, each
    /// drawn for a planned amount; the amounts follow the visit mixture scaled to today's
    /// share of what the month still needs.
    fn mutual_aid(
        &mut self,
        state: &dyn Reads,
        day: i32,
        need: Quota,
        days_left: i32,
        events: &mut Vec<Event>,
    ) {
        if need.count == 0 || need.amount.is_zero() || self.aided.is_empty() {
            return;
        }
        let k = if days_left == 1 {
            need.count
        } else {
            dist::round_random(&mut self.rng, need.count as f64 / f64::from(days_left))
                .min(need.count)
        };
        let amount_today = if days_left == 1 {
            need.amount.0
        } else {
            (need.amount.0 as f64 * k as f64 / need.count as f64).round() as u64
        };
        // (receiver, own balances, givers' capacity)
        let mut chosen: Vec<(u32, Fen, u64)> = Vec::new();
        let mut tries = 0u64;
        while (chosen.len() as u64) < k && tries < k * 40 + 100 {
            tries += 1;
            chosen.extend(self.pick_receiver(state, day));
        }
        let mut raw = Vec::with_capacity(chosen.len());
        let mut pharmacy = Vec::with_capacity(chosen.len());
        for _ in 0..chosen.len() {
            let (yuan, at_pharmacy) = dist::visit_amount(&mut self.rng);
            raw.push(yuan);
            pharmacy.push(at_pharmacy);
        }
        let caps: Vec<u64> = chosen.iter().map(|c| c.2).collect();
        let (parts, _unplaced) = dist::apportion(amount_today, &raw, &caps);
        for (((r, own, _), part), at_pharmacy) in chosen.into_iter().zip(parts).zip(pharmacy) {
            if part == 0 {
                continue;
            }
            let psn_part = own.checked_add(Fen(part)).expect("small amounts");
            events.push(self.settle_event(r, day, psn_part, at_pharmacy, true, true));
        }
    }

    /// A receiver for a mutual-aid settlement, untouched today with untouched givers, and
    /// what it holds itself and what its active in-province givers hold; marks them touched.
    fn pick_receiver(&mut self, state: &dyn Reads, day: i32) -> Option<(u32, Fen, u64)> {
        let r = self.aided[self.rng.random_range(0..self.aided.len())];
        if self.is_touched(r, day) || self.suspended[r as usize] {
            return None;
        }
        let v = view(state, &self.pop.psn_no(r))?;
        if v.status != PersonStatus::Active {
            return None;
        }
        let own = v.acct_balc.checked_add(v.wallet_balc).expect("balances");
        // Mutual aid comes after the own account: mostly those whose own is spent.
        if own.0 > 30_000 && self.rng.random_bool(0.9) {
            return None;
        }
        let mut givers = Vec::new();
        let mut capacity = 0u64;
        for b in v
            .bindings_received
            .iter()
            .filter(|b| b.active && b.scope == BindingScope::InProvince)
        {
            let g = index_of(&b.giver_psn_no);
            if self.is_touched(g, day) {
                return None;
            }
            let gv = view(state, &b.giver_psn_no)?;
            if gv.status == PersonStatus::Active {
                capacity += gv.acct_balc.0;
            }
            givers.push(g);
        }
        if capacity < 100 {
            return None;
        }
        self.touch(r, day);
        for g in givers {
            self.touch(g, day);
        }
        Some((r, own, capacity))
    }

    /// Writes meant to be refused or replayed, for simulation testing: a replay of a recent
    /// applied request, the same msgid with another body, a transfer beyond the balance, a
    /// fund part above the total, a binding to oneself.
    fn chaos(&mut self, _state: &dyn Reads, day: i32, events: &mut Vec<Event>) {
        let time = self.visit_time(day);
        if !self.recent.is_empty() {
            let old = self.recent[self.rng.random_range(0..self.recent.len())].clone();
            events.push(Event {
                time,
                body: old.body.clone(),
                tag: Tag::None,
                msgid: Some(old.msgid),
            });
            events.push(Event {
                time,
                body: Body::OpenWallet {
                    psn_no: self.pop.psn_no(0),
                },
                tag: Tag::None,
                msgid: Some(old.msgid),
            });
        }
        let a = self.employees[self.rng.random_range(0..self.employees.len())];
        let p = self.pop.psn_no(a);
        let code = self.pop.institutions[0].code;
        events.push(Event {
            time,
            body: Body::Settle {
                fixmedins_code: code,
                psn_no: p,
                medfee_sumamt: Fen(100),
                fund_pay_sumamt: Fen(200),
                acct_used: true,
            },
            tag: Tag::None,
            msgid: None,
        });
        events.push(Event {
            time,
            body: Body::Bind {
                giver_psn_no: p,
                receiver_psn_no: p,
                relation: gongji_core::Relation::Spouse,
            },
            tag: Tag::None,
            msgid: None,
        });
        if let Some(&(from, to)) = self.pairs_in.first() {
            events.push(Event {
                time,
                body: Body::TransferCreate {
                    from_psn_no: self.pop.psn_no(from),
                    to_psn_no: self.pop.psn_no(to),
                    amount: Fen(199_999),
                    source: TransferSource::Wallet,
                },
                tag: Tag::None,
                msgid: None,
            });
        }
    }
}

/// What is still missing of `quota` after `count` and `amount`.
fn remaining(quota: Quota, count: u64, amount: Fen) -> Quota {
    Quota {
        count: quota.count.saturating_sub(count),
        amount: Fen(quota.amount.0.saturating_sub(amount.0)),
    }
}

fn credit_events(items: Vec<CreditItem>, period: Period, time: i64) -> Vec<Event> {
    items
        .chunks(gongji_core::command::CREDIT_ITEMS_MAX)
        .map(|chunk| Event {
            time,
            body: Body::Credit {
                period,
                items: chunk.to_vec(),
            },
            tag: Tag::None,
            msgid: None,
        })
        .collect()
}

/// The generator's psn_no ends in the person's index (8 digits).
fn index_of(psn_no: &str) -> u32 {
    psn_no[psn_no.len() - 8..]
        .parse()
        .expect("a generated psn_no")
}

fn view(state: &dyn Reads, psn_no: &str) -> Option<PersonView> {
    state.person(psn_no)
}

/// A person's own account plus wallet.
fn own_balances(state: &dyn Reads, psn_no: &str) -> Fen {
    view(state, psn_no).map_or(Fen::ZERO, |v| {
        v.acct_balc.checked_add(v.wallet_balc).expect("balances")
    })
}

/// The CST day of an instant (re-exported for the runner).
pub fn day_of(unix: i64) -> i32 {
    cst_day(unix)
}

/// The HIS that sends `body`, when an institution's system sends it: a settlement comes from
/// its institution, and a reversal of a national-form msgid (code, 14-digit time, 6-digit
/// sequence; see `his_msgid`) from the institution whose code leads it.
fn his_actor(body: &Body) -> Option<Actor> {
    match body {
        Body::Settle { fixmedins_code, .. } => Some(Actor::Institution(*fixmedins_code)),
        Body::Reverse {
            omsgid,
            fixmedins_code: None,
        } => {
            let code = omsgid
                .len()
                .checked_sub(HIS_MSGID_SUFFIX_LEN)
                .filter(|&n| n > 0)?;
            let (code, suffix) = omsgid.split_at(code);
            suffix
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| InstCode::from(code).ok().map(Actor::Institution))
                .flatten()
        }
        _ => None,
    }
}
