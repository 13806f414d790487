//! A seeded workload of every command kind, applied to an engine state and journaled to a real
//! data directory the way the writer does it: accepted ops only, replays and rejections not.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use arrayvec::ArrayString;
use gongji_core::certno::certno_with_check;
use gongji_core::codec::encode_op;
use gongji_core::reply::ReversalResult;
use gongji_core::time::{parse_cst, period_of};
use gongji_core::{
    Actor, Body, Command, CreditItem, Fen, InstCode, InstType, Insutype, Msgid, Op, Params,
    PersonStatus, PsnNo, Relation, Reply, State, TransferSource,
};
use gongji_journal::{write_snapshot, FsStorage, Journal, JournalConfig};

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gongji-proj-{label}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Small segments, so that runs span several and trimming can be tested.
pub fn journal_config() -> JournalConfig {
    JournalConfig {
        segment_size_bytes: 64 * 1024,
        body_bytes_max: 16 * 1024,
        batch_bytes_max: 1024 * 1024,
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The engine and its journal in a data directory.
pub struct Run {
    pub dir: TempDir,
    pub state: State,
    journal: Journal<FsStorage>,
    snapshots: FsStorage,
    rng: Rng,
    seq: u64,
    time: i64,
    persons: Vec<String>,
    insts: Vec<String>,
    setl_msgids: Vec<String>,
    /// Applied op kinds, to check the workload covers them all.
    pub kinds: std::collections::BTreeSet<&'static str>,
}

const AREAS: [u32; 6] = [440106, 440305, 440106, 110105, 110108, 320102];
const NAMES: [&str; 4] = ["张三", "李四", "王小明", "欧阳娜娜"];

impl Run {
    /// A fresh data directory with the genesis snapshot, as the server's first start leaves.
    pub fn new(label: &str, seed: u64) -> Run {
        let dir = TempDir::new(label);
        let state = State::new(Params::default());
        let journal_storage = FsStorage::open(&dir.0).unwrap();
        let (journal, _) = Journal::open(journal_storage, journal_config(), None).unwrap();
        let snapshots = FsStorage::open(&dir.0).unwrap();
        let mut run = Run {
            dir,
            state,
            journal,
            snapshots,
            rng: Rng(seed | 1),
            seq: 0,
            time: parse_cst("2025-01-03 08:00:00").unwrap(),
            persons: Vec::new(),
            insts: Vec::new(),
            setl_msgids: Vec::new(),
            kinds: Default::default(),
        };
        run.snapshot();
        run
    }

    pub fn journal_dir(&self) -> &Path {
        &self.dir.0
    }

    pub fn head(&self) -> u64 {
        self.journal.head().op
    }

    /// Writes a snapshot of the state at the journal head.
    pub fn snapshot(&mut self) -> u64 {
        self.journal.sync().unwrap();
        let mut bytes = Vec::new();
        self.state.encode_snapshot(&mut bytes);
        let head = self.journal.head();
        write_snapshot(&mut self.snapshots, head, &bytes).unwrap();
        head.op
    }

    /// Applies an op like the writer: journal it when it applied as new.
    fn apply(&mut self, op: Op) -> Option<Reply> {
        match self.state.apply(&op) {
            Ok(applied) if !applied.replayed => {
                let mut bytes = Vec::new();
                encode_op(&op, &mut bytes);
                if self.journal.append(op.time(), &bytes).is_err() {
                    // The batch is full: write it out, as the writer does per batch.
                    self.journal.sync().unwrap();
                    self.journal.append(op.time(), &bytes).unwrap();
                }
                Some(applied.reply)
            }
            _ => None,
        }
    }

    fn write_with(&mut self, msgid: String, body: Body) -> Option<Reply> {
        let kind = kind_of(&body);
        let op = Op::Write(Command {
            msgid: Msgid::from(&msgid).unwrap(),
            time: self.time,
            actor: Actor::Admin,
            body,
        });
        let reply = self.apply(op);
        if reply.is_some() {
            self.kinds.insert(kind);
        }
        reply
    }

    fn write(&mut self, body: Body) -> Option<Reply> {
        self.seq += 1;
        let msgid = format!("W{:08}", self.seq);
        self.write_with(msgid, body)
    }

    fn tick(&mut self, seconds: i64) {
        self.time += seconds;
        if self.rng.chance(30) {
            if let Some(Reply::Tick { expired }) = self.apply(Op::Tick { time: self.time }) {
                self.kinds
                    .insert(if expired > 0 { "tick_expired" } else { "tick" });
            }
        }
    }

    fn person(&mut self) -> PsnNo {
        let i = self.rng.below(self.persons.len() as u64) as usize;
        PsnNo::from(&self.persons[i]).unwrap()
    }

    /// The two sides of a random binding, in either order.
    fn bound_pair(&mut self) -> (PsnNo, PsnNo) {
        let n = self.state.binding_count() as u64;
        if n == 0 {
            return (self.person(), self.person());
        }
        let b = self.state.binding_row(self.rng.below(n) as u32);
        let giver = PsnNo::from(&self.state.person_row(b.giver).psn_no).unwrap();
        let receiver = PsnNo::from(&self.state.person_row(b.receiver).psn_no).unwrap();
        if self.rng.chance(80) {
            (giver, receiver)
        } else {
            (receiver, giver)
        }
    }

    fn enrol(&mut self, n: usize) {
        for _ in 0..n {
            let k = self.persons.len();
            let area = AREAS[k % AREAS.len()];
            let first17 = format!(
                "{area}1970{:02}{:02}{:03}",
                k % 12 + 1,
                k % 28 + 1,
                k % 1000
            );
            let certno = certno_with_check(&first17).unwrap();
            let psn_no = format!("P{k:06}");
            let insutype = if k % 4 == 3 {
                Insutype::Resident
            } else {
                Insutype::Employee
            };
            let body = Body::Enrol {
                psn_no: PsnNo::from(&psn_no).unwrap(),
                certno: ArrayString::from(&certno).unwrap(),
                psn_name: NAMES[k % NAMES.len()].to_string(),
                insutype,
                admdvs: area,
            };
            if self.write(body).is_some() {
                self.persons.push(psn_no);
            }
        }
    }

    fn setup(&mut self) {
        for (k, area) in [440106u32, 110105, 320102].into_iter().enumerate() {
            let code = format!("H{area}{k:03}");
            let body = Body::RegisterInstitution {
                fixmedins_code: InstCode::from(&code).unwrap(),
                fixmedins_name: format!("医院{k}"),
                fixmedins_type: if k == 1 {
                    InstType::Pharmacy
                } else {
                    InstType::Medical
                },
                admdvs: area,
            };
            self.write(body).unwrap();
            self.insts.push(code);
        }
        self.enrol(48);
        // Families: bind neighbours, in and across provinces and pools.
        for i in 0..self.persons.len() {
            for d in [1usize, 2, 6] {
                let j = (i + d) % self.persons.len();
                let relation = Relation::ELIGIBLE[(i + d) % 8];
                let body = Body::Bind {
                    giver_psn_no: PsnNo::from(&self.persons[i]).unwrap(),
                    receiver_psn_no: PsnNo::from(&self.persons[j]).unwrap(),
                    relation,
                };
                self.write(body);
            }
        }
        for i in 0..self.persons.len() {
            if i % 3 != 2 {
                let psn_no = PsnNo::from(&self.persons[i]).unwrap();
                self.write(Body::OpenWallet { psn_no });
            }
        }
    }

    fn credit(&mut self) {
        let period = period_of(self.time);
        let items: Vec<CreditItem> = self
            .persons
            .iter()
            .enumerate()
            .filter(|(k, _)| k % 4 != 3)
            .map(|(k, p)| CreditItem {
                psn_no: PsnNo::from(p).unwrap(),
                amount: Fen(200_000 + (k as u64 % 7) * 30_000),
            })
            .collect();
        self.write(Body::Credit { period, items });
    }

    fn settle(&mut self) {
        let k = self.rng.below(self.insts.len() as u64) as usize;
        let fixmedins_code = InstCode::from(&self.insts[k]).unwrap();
        let psn_no = self.person();
        let medfee = 1_000 + self.rng.below(60_000);
        let fund = medfee * self.rng.below(70) / 100;
        self.seq += 1;
        let msgid = format!("S{:08}", self.seq);
        let body = Body::Settle {
            fixmedins_code,
            psn_no,
            medfee_sumamt: Fen(medfee),
            fund_pay_sumamt: Fen(fund),
            acct_used: self.rng.chance(90),
        };
        if self.write_with(msgid.clone(), body.clone()).is_some() {
            self.setl_msgids.push(msgid.clone());
            // A retry of the same msgid: a replay, not journaled.
            if self.rng.chance(5) {
                assert!(self.write_with(msgid, body).is_none());
            }
        }
    }

    fn step(&mut self) {
        let n_setl = self.state.settlement_count() as u64;
        let n_tr = self.state.transfer_count() as u64;
        match self.rng.below(100) {
            0..=54 => self.settle(),
            55..=59 if n_setl > 0 => {
                let setl_id = 1 + self.rng.below(n_setl);
                if self.write(Body::Cancel { setl_id }).is_some() {
                    self.kinds.insert("cancel_ok");
                }
            }
            60..=62 if !self.setl_msgids.is_empty() => {
                let k = self.rng.below(self.setl_msgids.len() as u64) as usize;
                let omsgid = Msgid::from(&self.setl_msgids[k]).unwrap();
                if let Some(Reply::Reversal { result, .. }) = self.write(Body::Reverse {
                    omsgid,
                    fixmedins_code: None,
                }) {
                    self.kinds.insert(match result {
                        ReversalResult::Cancelled => "reverse_cancelled",
                        ReversalResult::Blocked => "reverse_blocked",
                    });
                }
            }
            63 => {
                // Reversal of a settlement that never came: blocks the msgid.
                self.seq += 1;
                let omsgid = Msgid::from(&format!("S{:08}", self.seq)).unwrap();
                if let Some(Reply::Reversal { result, .. }) = self.write(Body::Reverse {
                    omsgid,
                    fixmedins_code: None,
                }) {
                    self.kinds.insert(match result {
                        ReversalResult::Cancelled => "reverse_cancelled",
                        ReversalResult::Blocked => "reverse_blocked",
                    });
                }
            }
            64..=75 => {
                let (from_psn_no, to_psn_no) = self.bound_pair();
                let source = if self.rng.chance(70) {
                    TransferSource::Acct
                } else {
                    TransferSource::Wallet
                };
                let amount = Fen(100 + self.rng.below(5_000));
                let created = self.write(Body::TransferCreate {
                    from_psn_no,
                    to_psn_no,
                    amount,
                    source,
                });
                // Half are accepted at once (an hour later), some declined, the rest left to
                // be accepted later or to expire.
                if let Some(Reply::Transfer(view)) = created {
                    let transfer_id = view.transfer_id;
                    self.tick(600);
                    match self.rng.below(100) {
                        0..=49 => {
                            self.write(Body::TransferAccept { transfer_id });
                        }
                        50..=59 => {
                            self.write(Body::TransferDecline { transfer_id });
                        }
                        _ => {}
                    }
                }
            }
            76..=81 if n_tr > 0 => {
                let transfer_id = n_tr - self.rng.below(n_tr.min(5));
                self.write(Body::TransferAccept { transfer_id });
            }
            82..=83 if n_tr > 0 => {
                let transfer_id = n_tr - self.rng.below(n_tr.min(5));
                self.write(Body::TransferDecline { transfer_id });
            }
            84..=87 => {
                let (payer_psn_no, psn_no) = self.bound_pair();
                let year = 2025 + self.rng.below(2) as u16;
                self.write(Body::Contribute {
                    payer_psn_no,
                    psn_no,
                    year,
                    amount: Fen(38_000),
                });
            }
            88..=89 => {
                let psn_no = self.person();
                let status = if self.rng.chance(50) {
                    PersonStatus::Suspended
                } else {
                    PersonStatus::Active
                };
                self.write(Body::SetStatus { psn_no, status });
            }
            90..=91 if self.state.binding_count() > 0 => {
                let binding_id = 1 + self.rng.below(self.state.binding_count() as u64);
                self.write(Body::Revoke { binding_id });
            }
            92..=93 => {
                let giver_psn_no = self.person();
                let receiver_psn_no = self.person();
                let relation = Relation::ALL[self.rng.below(9) as usize];
                self.write(Body::Bind {
                    giver_psn_no,
                    receiver_psn_no,
                    relation,
                });
            }
            94 => self.enrol(1),
            _ => {}
        }
    }

    /// `steps` commands over about three months: credits at each month's start, business
    /// hours and nights (transfers expire overnight; some land in closed hours and are refused).
    pub fn drive(&mut self, steps: usize) {
        if self.persons.is_empty() {
            self.setup();
            self.credit();
        }
        for _ in 0..steps {
            let month = period_of(self.time);
            self.step();
            // About three months over a few thousand steps.
            let pause = 300 + self.rng.below(3_600) as i64;
            self.tick(pause);
            if period_of(self.time) != month {
                self.credit();
            }
        }
        self.journal.sync().unwrap();
    }
}

fn kind_of(body: &Body) -> &'static str {
    match body {
        Body::CreateToken { .. } => "create_token",
        Body::RevokeToken { .. } => "revoke_token",
        Body::Enrol { .. } => "enrol",
        Body::SetStatus { .. } => "set_status",
        Body::RegisterInstitution { .. } => "register_institution",
        Body::Credit { .. } => "credit",
        Body::Bind { .. } => "bind",
        Body::Revoke { .. } => "revoke",
        Body::Settle { .. } => "settle",
        Body::Cancel { .. } => "cancel",
        Body::Reverse { .. } => "reverse",
        Body::OpenWallet { .. } => "open_wallet",
        Body::TransferCreate { .. } => "transfer_create",
        Body::TransferAccept { .. } => "transfer_accept",
        Body::TransferDecline { .. } => "transfer_decline",
        Body::Contribute { .. } => "contribute",
    }
}
