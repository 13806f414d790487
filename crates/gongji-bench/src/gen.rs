//! The command generator: a stream of settlements, cancellations, wallet transfers and
//! contributions over the planned population, with a clock that moves a little per command.
//!
//! Ids that only the engine knows (a transfer's id, which depends on which earlier transfers
//! were refused) are left as slots that the apply loop fills in from earlier replies.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use gongji_core::time::{cst_day, cst_second_of_day, day_start, format_cst};
use gongji_core::{Actor, Body, Command, Fen, InstCode, Msgid, Op, TransferSource};

use crate::plan::{area_pool, inst_code, psn_no, put_digits, Plan};
use splitmix::SplitMix64;

/// Kinds of generated commands, for counting and timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Settle = 0,
    Cancel = 1,
    TransferCreate = 2,
    TransferAccept = 3,
    TransferDecline = 4,
    Contribute = 5,
    /// Only in the end-to-end mix (`bind_per_mille > 0`).
    Bind = 6,
}

pub(crate) const KINDS: [Kind; 6] = [
    Kind::Settle,
    Kind::Cancel,
    Kind::TransferCreate,
    Kind::TransferAccept,
    Kind::TransferDecline,
    Kind::Contribute,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Settle => "settle",
            Kind::Cancel => "cancel",
            Kind::TransferCreate => "transfer_create",
            Kind::TransferAccept => "transfer_accept",
            Kind::TransferDecline => "transfer_decline",
            Kind::Contribute => "contribute",
            Kind::Bind => "bind",
        }
    }
}

/// How the apply loop treats an op's reply or body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fix {
    None,
    /// A transfer creation: remember the transfer id in this slot.
    Record(u32),
    /// An accept (or decline) by `receiver` of the transfer in `slot` (skipped if its creation
    /// was refused).
    Use {
        slot: u32,
        receiver: u32,
        accept: bool,
    },
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub kind: Kind,
    pub fix: Fix,
}

/// Seconds of the CST day after which no transfer is started (so that its accept comes
/// before the 22:00 close and the 06:00 expiry).
const LAST_TRANSFER_SECOND: u32 = 21 * 3600 + 50 * 60;
const CLOSE_SECOND: u32 = 22 * 3600;
const OPEN_SECOND: i64 = 6 * 3600;
/// Recent settlements a cancellation may pick from.
const RECENT: usize = 4096;

#[derive(Debug)]
pub(crate) struct Generator {
    rng: SplitMix64,
    pub time: i64,
    /// Commands generated so far (also makes msgids unique).
    pub count: u64,
    /// setl_id the next settlement will get (all generated settlements apply).
    next_setl_id: u64,
    recent: VecDeque<(u64, u32)>,
    pub slots: u32,
    follow_ups: BinaryHeap<Reverse<(u64, u32, u32, bool)>>,
    wallet_day: Vec<u32>,
    /// Persons with at least one in-province giver.
    aided: Vec<u32>,
    /// (giver, receiver) with the receiver's wallet open.
    transfer_pairs: Vec<(u32, u32)>,
    /// (payer, resident), one per resident, shuffled; consumed from the front.
    contributions: Vec<(u32, u32)>,
    contribution_next: usize,
    /// Person → pooling area index; institutions by pooling area.
    person_pool: Vec<u16>,
    pool_insts: Vec<Vec<u32>>,
    inst_codes: Vec<InstCode>,
    stamp_time: i64,
    stamp: String,
    /// Per mille of commands that bind two persons (0 in the core bench).
    pub bind_per_mille: u64,
    /// Employees: the possible givers of new bindings.
    employees: Vec<u32>,
}

impl Generator {
    pub fn new(plan: &Plan, seed: u64, start: i64, first_setl_id: u64) -> Generator {
        let mut rng = SplitMix64::new(seed);
        let n = plan.persons.len();
        let mut aided_flag = vec![false; n];
        let mut transfer_pairs = Vec::new();
        let mut contributions = Vec::new();
        let mut paid = vec![false; n];
        for b in &plan.bindings {
            let r = &plan.persons[b.receiver as usize];
            if b.in_province {
                aided_flag[b.receiver as usize] = true;
                if r.resident && !paid[b.receiver as usize] {
                    paid[b.receiver as usize] = true;
                    contributions.push((b.giver, b.receiver));
                }
            }
            if r.wallet {
                transfer_pairs.push((b.giver, b.receiver));
            }
        }
        rng.shuffle(&mut contributions);
        let aided = (0..n as u32).filter(|&i| aided_flag[i as usize]).collect();
        let mut pools: Vec<u32> = plan.persons.iter().map(|p| area_pool(p.area)).collect();
        let person_pool_raw = pools.clone();
        pools.sort_unstable();
        pools.dedup();
        let pool_index = |pool: u32| pools.binary_search(&pool).expect("known pool") as u16;
        let person_pool = person_pool_raw.iter().map(|&p| pool_index(p)).collect();
        let mut pool_insts = vec![Vec::new(); pools.len()];
        let mut inst_codes = Vec::with_capacity(plan.institutions.len());
        for (i, &(admdvs, pharmacy)) in plan.institutions.iter().enumerate() {
            inst_codes.push(inst_code(i as u32, admdvs, pharmacy));
            if let Ok(p) = pools.binary_search(&(admdvs / 100)) {
                pool_insts[p].push(i as u32);
            }
        }
        Generator {
            rng,
            time: start,
            count: 0,
            next_setl_id: first_setl_id,
            recent: VecDeque::with_capacity(RECENT),
            slots: 0,
            follow_ups: BinaryHeap::new(),
            wallet_day: vec![0; n],
            aided,
            transfer_pairs,
            contributions,
            contribution_next: 0,
            person_pool,
            pool_insts,
            inst_codes,
            stamp_time: i64::MIN,
            stamp: String::new(),
            bind_per_mille: 0,
            employees: (0..n as u32)
                .filter(|&i| !plan.persons[i as usize].resident)
                .collect(),
        }
    }

    fn advance_clock(&mut self) {
        if self.rng.below(4) == 0 {
            self.time += 1;
        }
        if cst_second_of_day(self.time) >= CLOSE_SECOND {
            // Night: the bench skips to the next morning's opening.
            self.time = day_start(cst_day(self.time) + 1) + OPEN_SECOND;
        }
    }

    /// National HIS msgid form: institution code, 14-digit time, 4-digit sequence.
    fn his_msgid(&mut self, inst: u32) -> Msgid {
        if self.stamp_time != self.time {
            self.stamp_time = self.time;
            self.stamp = format_cst(self.time).replace(['-', ' ', ':'], "");
        }
        let mut m = Msgid::new();
        m.push_str(&self.inst_codes[inst as usize]);
        m.push_str(&self.stamp);
        let mut seq = [0u8; 4];
        put_digits(&mut seq, self.count % 10_000);
        m.push_str(std::str::from_utf8(&seq).expect("ASCII"));
        m
    }

    fn app_msgid(&self, prefix: u8) -> Msgid {
        let mut bytes = [prefix; 13];
        put_digits(&mut bytes[1..], self.count);
        Msgid::from(std::str::from_utf8(&bytes).expect("ASCII")).expect("fits")
    }

    fn write(&self, msgid: Msgid, actor: Actor, body: Body) -> Op {
        Op::Write(Command {
            msgid,
            time: self.time,
            actor,
            body,
        })
    }

    /// The next command of the mixed stream.
    pub fn next_mixed(&mut self) -> (Op, Meta) {
        self.advance_clock();
        let out = self.pick();
        self.count += 1;
        out
    }

    /// The next command of a stream of settlements only.
    pub fn next_settlement(&mut self) -> Op {
        self.advance_clock();
        let (op, _) = self.settle();
        self.count += 1;
        op
    }

    fn pick(&mut self) -> (Op, Meta) {
        if let Some(&Reverse((due, slot, receiver, accept))) = self.follow_ups.peek() {
            if due <= self.count {
                self.follow_ups.pop();
                return self.follow_up(slot, receiver, accept);
            }
        }
        let r = self.rng.below(1000);
        if r < 20 && !self.recent.is_empty() {
            return self.cancel();
        }
        if (20..50).contains(&r) && cst_second_of_day(self.time) < LAST_TRANSFER_SECOND {
            if let Some(out) = self.transfer() {
                return out;
            }
        }
        if (50..70).contains(&r) && self.contribution_next < self.contributions.len() {
            return self.contribute();
        }
        if (70..70 + self.bind_per_mille).contains(&r) && !self.employees.is_empty() {
            return self.bind();
        }
        self.settle()
    }

    fn settle(&mut self) -> (Op, Meta) {
        let rng = &mut self.rng;
        let psn = if !self.aided.is_empty() && rng.below(100) < 75 {
            self.aided[rng.below(self.aided.len() as u64) as usize]
        } else {
            rng.below(self.person_pool.len() as u64) as u32
        };
        let local = &self.pool_insts[usize::from(self.person_pool[psn as usize])];
        let inst = if !local.is_empty() && rng.below(100) < 95 {
            local[rng.below(local.len() as u64) as usize]
        } else {
            rng.below(self.inst_codes.len() as u64) as u32
        };
        // Outpatient and pharmacy visits, larger outpatient bills, inpatient stays (fen).
        let kind = rng.below(100);
        let (medfee, fund_pct) = if kind < 70 {
            (rng.range(1_000, 30_000), rng.range(0, 50))
        } else if kind < 97 {
            (rng.range(10_000, 150_000), rng.range(40, 75))
        } else {
            (rng.range(200_000, 3_000_000), rng.range(60, 90))
        };
        let fund = medfee * fund_pct / 100;
        let acct_used = rng.below(100) < 97;
        let code = self.inst_codes[inst as usize];
        let msgid = self.his_msgid(inst);
        let op = self.write(
            msgid,
            Actor::Institution(code),
            Body::Settle {
                fixmedins_code: code,
                psn_no: psn_no(psn),
                medfee_sumamt: Fen(medfee),
                fund_pay_sumamt: Fen(fund),
                acct_used,
            },
        );
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((self.next_setl_id, inst));
        self.next_setl_id += 1;
        (op, meta(Kind::Settle, Fix::None))
    }

    fn cancel(&mut self) -> (Op, Meta) {
        let i = self.rng.below(self.recent.len() as u64) as usize;
        let (setl_id, inst) = self.recent.swap_remove_back(i).expect("in range");
        let code = self.inst_codes[inst as usize];
        let msgid = self.his_msgid(inst);
        let op = self.write(msgid, Actor::Institution(code), Body::Cancel { setl_id });
        (op, meta(Kind::Cancel, Fix::None))
    }

    fn transfer(&mut self) -> Option<(Op, Meta)> {
        if self.transfer_pairs.is_empty() {
            return None;
        }
        let today = cst_day(self.time) as u32;
        for _ in 0..4 {
            let k = self.rng.below(self.transfer_pairs.len() as u64) as usize;
            let (from, to) = self.transfer_pairs[k];
            let day = self.wallet_day[from as usize];
            let sent = if day >> 8 == today { day & 0xff } else { 0 };
            if sent >= 3 {
                continue; // the sender's three transfers today are used up
            }
            self.wallet_day[from as usize] = (today << 8) | (sent + 1);
            let amount = Fen(self.rng.range(1, 50) * 1_000);
            let slot = self.slots;
            self.slots += 1;
            let fate = self.rng.below(100);
            if fate < 95 {
                let due = self.count + self.rng.range(8, 400);
                self.follow_ups.push(Reverse((due, slot, to, fate < 80)));
            }
            let from_no = psn_no(from);
            let op = self.write(
                self.app_msgid(b'T'),
                Actor::Person(from_no),
                Body::TransferCreate {
                    from_psn_no: from_no,
                    to_psn_no: psn_no(to),
                    amount,
                    source: TransferSource::Acct,
                },
            );
            return Some((op, meta(Kind::TransferCreate, Fix::Record(slot))));
        }
        None
    }

    /// Puts an accept or decline back, `delay` commands later: its transfer's creation has not
    /// been answered yet (the end-to-end bench has batches in flight).
    pub fn postpone(&mut self, fix: Fix, delay: u64) {
        if let Fix::Use {
            slot,
            receiver,
            accept,
        } = fix
        {
            self.follow_ups
                .push(Reverse((self.count + delay, slot, receiver, accept)));
        }
    }

    /// A new binding: an employee binds another person as a sibling (the engine cannot know
    /// who is related; a pair bound already or a full list is refused, as it would be).
    fn bind(&mut self) -> (Op, Meta) {
        let giver = self.employees[self.rng.below(self.employees.len() as u64) as usize];
        let mut receiver = self.rng.below(self.person_pool.len() as u64) as u32;
        if receiver == giver {
            receiver = (receiver + 1) % self.person_pool.len() as u32;
        }
        let giver_no = psn_no(giver);
        let op = self.write(
            self.app_msgid(b'B'),
            Actor::Person(giver_no),
            Body::Bind {
                giver_psn_no: giver_no,
                receiver_psn_no: psn_no(receiver),
                relation: gongji_core::Relation::Sibling,
            },
        );
        (op, meta(Kind::Bind, Fix::None))
    }

    fn follow_up(&mut self, slot: u32, receiver: u32, accept: bool) -> (Op, Meta) {
        // The id is filled in by the apply loop from the creation's reply.
        let (body, kind) = if accept {
            (
                Body::TransferAccept { transfer_id: 0 },
                Kind::TransferAccept,
            )
        } else {
            (
                Body::TransferDecline { transfer_id: 0 },
                Kind::TransferDecline,
            )
        };
        let op = self.write(self.app_msgid(b'A'), Actor::Person(psn_no(receiver)), body);
        let fix = Fix::Use {
            slot,
            receiver,
            accept,
        };
        (op, meta(kind, fix))
    }

    fn contribute(&mut self) -> (Op, Meta) {
        let (payer, psn) = self.contributions[self.contribution_next];
        self.contribution_next += 1;
        let payer_no = psn_no(payer);
        let op = self.write(
            self.app_msgid(b'C'),
            Actor::Person(payer_no),
            Body::Contribute {
                payer_psn_no: payer_no,
                psn_no: psn_no(psn),
                year: 2025,
                amount: Fen(40_000),
            },
        );
        (op, meta(Kind::Contribute, Fix::None))
    }
}

fn meta(kind: Kind, fix: Fix) -> Meta {
    Meta { kind, fix }
}

/// Sets the transfer id of an accept or decline.
pub(crate) fn set_transfer_id(op: &mut Op, id: u64) {
    if let Op::Write(Command {
        body: Body::TransferAccept { transfer_id } | Body::TransferDecline { transfer_id },
        ..
    }) = op
    {
        *transfer_id = id;
    }
}
