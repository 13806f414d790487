//! The state and its `apply`. Submodules hold one family of commands each; they check first and
//! change state only after every check has passed, so a rejection changes nothing.

mod bindings;
mod bulk;
mod check;
mod chunked;
mod counters;
mod credits;
mod federation;
mod fedforget;
mod fedlinks;
mod history;
mod ledger;
mod lookup;
mod masked;
mod memory;
mod msgids;
mod persons;
mod priors;
mod recent;
mod rows;
mod settle;
mod snapshot;
mod validate;
pub mod views;
mod wallet;

use std::collections::VecDeque;

use rustc_hash::FxHashSet;

use crate::command::{Body, Command, MsgidScope, Op};
use crate::reply::{ErrCode, Rejection, Reply};
use crate::{Fen, Params};

pub(crate) use bindings::{Binding, Scope};
pub(crate) use chunked::Chunked;
pub(crate) use counters::{Recon, Stats};
pub(crate) use history::History;
pub use history::{ColdBytes, Column, HISTORY_CHUNK};
pub(crate) use ledger::{Entry, Ledger};
pub(crate) use msgids::Msgids;
pub(crate) use persons::{Institutions, Persons, Tokens};
pub(crate) use settle::Detail;
pub use settle::Settlement;
pub(crate) use wallet::{Transfer, TransferStatus};

pub use msgids::{SectionBytes, SharedBytes};
pub use rows::{
    BindingRow, ContributionRow, EntryRow, ExchangeRow, InstitutionRow, PersonMoney, PersonRow,
    SettlementRow, TransferRow,
};
pub use snapshot::{EncodedMsgids, MsgidSection, SnapshotDecodeError};
pub use validate::validate;

/// A write that was applied, or replayed from its msgid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub reply: Reply,
    /// True when the msgid had been applied before and this is its remembered reply.
    pub replayed: bool,
}

/// A contribution paid: never changes once written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Contribution {
    pub payer: u32,
    pub psn: u32,
    pub year: u16,
    pub amount: Fen,
    pub time: i64,
    pub acct_balc: Fen,
}

/// 34 bytes: payer u32, psn u32, year u16, amount u64, time i64, acct_balc u64 (the
/// snapshot's contribution layout).
impl history::Record for Contribution {
    const BYTES: usize = 34;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.payer.to_le_bytes());
        out.extend_from_slice(&self.psn.to_le_bytes());
        out.extend_from_slice(&self.year.to_le_bytes());
        out.extend_from_slice(&self.amount.0.to_le_bytes());
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.acct_balc.0.to_le_bytes());
    }

    fn get(b: &[u8]) -> Contribution {
        let mut r = history::Le(b);
        Contribution {
            payer: r.u32(),
            psn: r.u32(),
            year: r.u16(),
            amount: Fen(r.u64()),
            time: r.i64(),
            acct_balc: Fen(r.u64()),
        }
    }
}

/// Everything the engine knows. See the crate documentation.
#[derive(Debug)]
pub struct State {
    pub(crate) params: Params,
    /// The engine clock: the time of the latest applied op (unix seconds).
    pub(crate) clock: i64,
    pub(crate) persons: Persons,
    pub(crate) insts: Institutions,
    pub(crate) tokens: Tokens,
    pub(crate) bindings: Chunked<Binding>,
    pub(crate) setls: History<Settlement>,
    /// Indexes of the cancelled settlements (the records themselves never change).
    pub(crate) cancelled: FxHashSet<u32>,
    pub(crate) details: History<Detail>,
    /// Wallet transfers; a chunk goes cold once none of its transfers is queued to expire.
    pub(crate) transfers: History<Transfer>,
    /// Pending transfers by expiry time. Transfers are made in clock order and expire at a
    /// monotonic function of their creation time, so a FIFO queue is already sorted.
    pub(crate) expiry_queue: VecDeque<(i64, u32)>,
    pub(crate) contributions: History<Contribution>,
    /// The (person, year) pairs paid (rule 15): a hot index over the contributions, so that a
    /// contribution's check reads no history.
    pub(crate) contributions_paid: FxHashSet<(u32, u16)>,
    pub(crate) entries: History<Entry>,
    pub(crate) msgids: Msgids,
    /// Each institution's newest settlements (derived from `setls`).
    pub(crate) recent: recent::Recent,
    /// Persons by masked certno (derived from the certno column).
    pub(crate) masked: masked::MaskedIndex,
    pub(crate) stats: Stats,
    pub(crate) recon: Recon,
    pub(crate) ledger: Ledger,
    /// Applied ops (writes and ticks).
    pub(crate) op_count: u64,
    /// Cross-engine transfers (docs/FEDERATION.md); empty and unconfigured on an engine
    /// without `[federation]`.
    pub(crate) fed: crate::federation::Federation,
    /// Scratch buffer for fingerprints: reused so that the hot path does not allocate.
    scratch: Vec<u8>,
    /// Transfers returned by the expiry pass of the write in progress, with the sender's entry
    /// tail before the return entry (or `NOT_RETURNED` for a dropped queue item of a transfer
    /// no longer pending), so that a rejected write can undo them.
    expired_scratch: Vec<(u32, u32)>,
    /// Person views before the ops not yet durable (kept only when the server asks).
    pub(crate) priors: priors::Priors,
}

impl State {
    pub fn new(params: Params) -> State {
        params.validate().expect("invalid params");
        State {
            params,
            clock: 0,
            persons: Persons::default(),
            insts: Institutions::default(),
            tokens: Tokens::default(),
            bindings: Chunked::default(),
            setls: History::default(),
            cancelled: FxHashSet::default(),
            details: History::default(),
            transfers: History::default(),
            expiry_queue: VecDeque::new(),
            contributions: History::default(),
            contributions_paid: FxHashSet::default(),
            entries: History::default(),
            msgids: Msgids::default(),
            recent: recent::Recent::default(),
            masked: masked::MaskedIndex::default(),
            stats: Stats::default(),
            recon: Recon::default(),
            ledger: Ledger::default(),
            op_count: 0,
            fed: crate::federation::Federation::default(),
            scratch: Vec::with_capacity(256),
            expired_scratch: Vec::new(),
            priors: priors::Priors::default(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The engine clock: the time of the latest applied op.
    pub fn clock(&self) -> i64 {
        self.clock
    }

    pub fn op_count(&self) -> u64 {
        self.op_count
    }

    pub fn person_count(&self) -> usize {
        self.persons.len()
    }

    /// Applies one op. `Ok` means applied (or replayed); `Err` means nothing changed.
    pub fn apply(&mut self, op: &Op) -> Result<Applied, Rejection> {
        let result = match op {
            Op::Tick { time } => self.tick(*time),
            Op::Write(command) => self.apply_write(command),
        };
        if matches!(
            result,
            Ok(Applied {
                replayed: false,
                ..
            })
        ) {
            self.op_count += 1;
            self.ledger.assert_conserved();
        }
        result
    }

    /// Moves the clock to `time`, returning the pending transfers due by then.
    fn tick(&mut self, time: i64) -> Result<Applied, Rejection> {
        if time < self.clock {
            return Err(Rejection::with(
                ErrCode::InvalidTime,
                "earlier than the engine clock",
            ));
        }
        let expired = self.expire_due(time);
        self.expired_scratch.clear();
        self.clock = time;
        self.msgids.forget_before(time - self.retention_seconds());
        self.recon.forget_before(self.recon_first_day());
        Ok(Applied {
            reply: Reply::Tick { expired },
            replayed: false,
        })
    }

    /// The first CST day whose reconciliation totals are kept in memory.
    pub(crate) fn recon_first_day(&self) -> i32 {
        counters::recon_first_day(self.clock)
    }

    fn retention_seconds(&self) -> i64 {
        i64::from(self.params.msgid_retention_days) * 86_400
    }

    fn apply_write(&mut self, command: &Command) -> Result<Applied, Rejection> {
        validate(command)?;
        self.authorize(&command.actor, &command.body)?;
        let key = msgids::msgid_key(command.actor.msgid_scope(), &command.msgid);
        let fingerprint = self.fingerprint(&command.body);
        if let Some(record) = self.msgids.get(key) {
            return match &record.reply {
                None => Err(Rejection::with(ErrCode::Reversed, "msgid was reversed")),
                Some(reply) if record.fingerprint == fingerprint => Ok(Applied {
                    reply: reply.clone(),
                    replayed: true,
                }),
                Some(_) => Err(Rejection::new(ErrCode::MsgidConflict)),
            };
        }
        if command.time < self.clock {
            return Err(Rejection::with(
                ErrCode::InvalidTime,
                "earlier than the engine clock",
            ));
        }
        // Time passes before the write is judged: transfers due by now are returned first, so
        // that the write sees their money. A rejected write undoes them (it moves no clock).
        self.expire_due(command.time);
        match self.execute(command) {
            Ok(reply) => {
                self.expired_scratch.clear();
                self.clock = command.time;
                self.msgids
                    .insert(key, fingerprint, Some(reply.clone()), command.time);
                self.msgids
                    .forget_before(command.time - self.retention_seconds());
                self.recon.forget_before(self.recon_first_day());
                Ok(Applied {
                    reply,
                    replayed: false,
                })
            }
            Err(rejection) => {
                self.unexpire();
                Err(rejection)
            }
        }
    }

    fn fingerprint(&mut self, body: &Body) -> u64 {
        self.scratch.clear();
        crate::codec::encode_body_for_fingerprint(body, &mut self.scratch);
        xxhash_rust::xxh3::xxh3_64(&self.scratch)
    }

    fn execute(&mut self, command: &Command) -> Result<Reply, Rejection> {
        let time = command.time;
        match &command.body {
            Body::CreateToken {
                token_hash,
                role,
                fixmedins_code,
                psn_no,
            } => self.create_token(*token_hash, *role, fixmedins_code, psn_no),
            Body::RevokeToken { token_id } => self.revoke_token(*token_id),
            Body::Enrol {
                psn_no,
                certno,
                psn_name,
                insutype,
                admdvs,
            } => self.enrol(psn_no, certno, psn_name, *insutype, *admdvs),
            Body::SetStatus { psn_no, status } => self.set_status(psn_no, *status),
            Body::RegisterInstitution {
                fixmedins_code,
                fixmedins_name,
                fixmedins_type,
                admdvs,
            } => {
                self.register_institution(fixmedins_code, fixmedins_name, *fixmedins_type, *admdvs)
            }
            Body::Credit { period, items } => self.credit(*period, items, time),
            Body::Bind {
                giver_psn_no,
                receiver_psn_no,
                relation,
            } => self.bind(giver_psn_no, receiver_psn_no, *relation),
            Body::Revoke { binding_id } => self.revoke(*binding_id),
            Body::Settle {
                fixmedins_code,
                psn_no,
                medfee_sumamt,
                fund_pay_sumamt,
                acct_used,
            } => self.settle(
                fixmedins_code,
                psn_no,
                *medfee_sumamt,
                *fund_pay_sumamt,
                *acct_used,
                time,
            ),
            Body::Cancel { setl_id } => self.cancel(*setl_id, time),
            Body::Reverse {
                omsgid,
                fixmedins_code,
            } => {
                let scope = match fixmedins_code {
                    Some(code) => {
                        self.insts.find(code).ok_or(ErrCode::InstitutionNotFound)?;
                        MsgidScope::Institution(code)
                    }
                    None => command.actor.msgid_scope(),
                };
                self.reverse(scope, omsgid, time)
            }
            Body::OpenWallet { psn_no } => self.open_wallet(psn_no),
            Body::TransferCreate {
                from_psn_no,
                to_psn_no,
                amount,
                source,
            } => self.transfer_create(from_psn_no, to_psn_no, *amount, *source, time),
            Body::TransferAccept { transfer_id } => self.transfer_accept(*transfer_id, time),
            Body::TransferDecline { transfer_id } => self.transfer_decline(*transfer_id, time),
            Body::Contribute {
                payer_psn_no,
                psn_no,
                year,
                amount,
            } => self.contribute(payer_psn_no, psn_no, *year, *amount, time),
        }
    }
}

/// The state at one moment, sharing its memory with the live state (copy on write), made to
/// be encoded as a snapshot on another thread while the writer goes on. It holds everything a
/// snapshot holds and none of the derived indexes (the psn_no, certno and msgid indexes, the
/// newest-settlements and masked-certno indexes), which decoding rebuilds; so it can be
/// encoded and nothing else.
#[derive(Debug)]
pub struct Frozen(
    State,
    /* encoded by `encode_snapshot_releasing`, which drops parts */ bool,
);

impl Frozen {
    /// Ops applied up to the moment it was frozen.
    pub fn op_count(&self) -> u64 {
        self.0.op_count
    }

    /// The snapshot of the state at the moment it was frozen: the same bytes
    /// [`State::encode_snapshot`] would have written then.
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        assert!(!self.1, "a frozen state is encoded once");
        self.0.encode_snapshot(out);
    }

    /// The same bytes in pieces ([`State::encode_snapshot_streaming`]); returns where the
    /// msgid section lies.
    pub fn encode_snapshot_streaming(&self, sink: &mut dyn FnMut(&[u8])) -> EncodedMsgids {
        assert!(!self.1, "a frozen state is encoded once");
        self.0.encode_snapshot_streaming(sink)
    }
}

impl State {
    /// A [`Frozen`] copy of the state. Its cost is a copy of the chunk tables (a pointer per
    /// 64 K elements of each column, a day of reconciliation counters) and of the small maps
    /// (statistics per month, the open transfers' expiry queue); the records themselves are
    /// shared, and a chunk is copied only when the writer next changes it while the frozen
    /// copy lives.
    pub fn freeze(&self) -> Frozen {
        Frozen(
            State {
                params: self.params.clone(),
                clock: self.clock,
                persons: self.persons.frozen(),
                insts: self.insts.frozen(),
                tokens: self.tokens.frozen(),
                bindings: self.bindings.clone(),
                setls: self.setls.clone(),
                cancelled: self.cancelled.clone(),
                details: self.details.clone(),
                transfers: self.transfers.clone(),
                expiry_queue: self.expiry_queue.clone(),
                contributions: self.contributions.clone(),
                // Derived from the contributions when encoded.
                contributions_paid: FxHashSet::default(),
                entries: self.entries.clone(),
                msgids: self.msgids.frozen(),
                recent: self.recent.clone(),
                masked: masked::MaskedIndex::default(),
                stats: self.stats.clone(),
                recon: self.recon.clone(),
                ledger: self.ledger.clone(),
                op_count: self.op_count,
                fed: self.fed.clone(),
                scratch: Vec::new(),
                expired_scratch: Vec::new(),
                priors: Default::default(),
            },
            false,
        )
    }
}
