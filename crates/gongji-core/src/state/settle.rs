//! Settlement by instant call (DOMAIN.md rules 10–13): draw the personally borne part from the
//! person's account, wallet and in-province givers in the province's order; cancel; reverse.
//!
//! The settle path allocates nothing but the amortised growth of the record vectors, and its
//! work is proportional to the number of the person's givers.

use super::counters::Channel;
use super::history::{Le, Record};
use super::ledger::{Counterparty, EntryKind, EntryRef, LedgerSide, Memo};
use super::msgids::msgid_key;
use super::{Scope, State};
use crate::certno::{admdvs_pool, admdvs_province};
use crate::command::{InstCode, Msgid, MsgidScope, PsnNo};
use crate::params::DrawSource;
use crate::reply::{ErrCode, Rejection, Reply, ReversalResult};
use crate::time::{cst_day, period_of};
use crate::Fen;

/// One giver's part of a settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Detail {
    pub giver: u32,
    pub amount: Fen,
}

/// 12 bytes: giver u32, amount u64.
impl Record for Detail {
    const BYTES: usize = 12;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.giver.to_le_bytes());
        out.extend_from_slice(&self.amount.0.to_le_bytes());
    }

    fn get(b: &[u8]) -> Detail {
        let mut r = Le(b);
        Detail {
            giver: r.u32(),
            amount: Fen(r.u64()),
        }
    }
}

/// A settlement as the state keeps it (also the projection's row, [`crate::SettlementRow`]).
/// The stored record is immutable: `cancelled` is kept in a set beside the column
/// (`State::cancelled`) and filled in when the record is read ([`State::setl`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub psn: u32,
    pub inst: u32,
    pub time: i64,
    pub medfee: Fen,
    pub fund_pay: Fen,
    pub acct_pay: Fen,
    pub wallet_pay: Fen,
    pub mulaid: Fen,
    pub cash: Fen,
    /// The person's own balances right after the settlement (part of its reply).
    pub acct_balc: Fen,
    pub wallet_balc: Fen,
    /// The givers who paid, in `State::details[details_start..][..details_len]` (a row
    /// lists them itself).
    pub details_start: u32,
    pub details_len: u8,
    pub cross_pool: bool,
    pub cancelled: bool,
}

/// 86 bytes: psn u32, inst u32, time i64, medfee, fund_pay, acct_pay, wallet_pay, mulaid,
/// cash, acct_balc, wallet_balc (u64 each), details_start u32, details_len u8, cross_pool u8.
impl Record for Settlement {
    const BYTES: usize = 86;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.psn.to_le_bytes());
        out.extend_from_slice(&self.inst.to_le_bytes());
        out.extend_from_slice(&self.time.to_le_bytes());
        for v in [
            self.medfee,
            self.fund_pay,
            self.acct_pay,
            self.wallet_pay,
            self.mulaid,
            self.cash,
            self.acct_balc,
            self.wallet_balc,
        ] {
            out.extend_from_slice(&v.0.to_le_bytes());
        }
        out.extend_from_slice(&self.details_start.to_le_bytes());
        out.push(self.details_len);
        out.push(u8::from(self.cross_pool));
    }

    fn get(b: &[u8]) -> Settlement {
        let mut r = Le(b);
        let (psn, inst, time) = (r.u32(), r.u32(), r.i64());
        let mut fen = || Fen(r.u64());
        let (medfee, fund_pay, acct_pay, wallet_pay) = (fen(), fen(), fen(), fen());
        let (mulaid, cash, acct_balc, wallet_balc) = (fen(), fen(), fen(), fen());
        Settlement {
            psn,
            inst,
            time,
            medfee,
            fund_pay,
            acct_pay,
            wallet_pay,
            mulaid,
            cash,
            acct_balc,
            wallet_balc,
            details_start: r.u32(),
            details_len: r.u8(),
            cross_pool: r.u8() != 0,
            cancelled: false,
        }
    }
}

impl Settlement {
    pub fn psn_part(&self) -> Fen {
        self.medfee
            .checked_sub(self.fund_pay)
            .expect("fund within medfee")
    }
}

impl State {
    pub(super) fn settle(
        &mut self,
        fixmedins_code: &InstCode,
        psn_no: &PsnNo,
        medfee: Fen,
        fund_pay: Fen,
        acct_used: bool,
        time: i64,
    ) -> Result<Reply, Rejection> {
        let inst = self.institution_of_code(fixmedins_code)?;
        let psn = self.person_index(psn_no)?;
        if self.persons.is_suspended(psn) {
            return Err(ErrCode::PersonSuspended.into());
        }
        let psn_part = medfee
            .checked_sub(fund_pay)
            .ok_or(ErrCode::FundExceedsMedfee)?;
        // Every check has passed: from here on the settlement is applied whole.
        let s = self.setls.len() as u32;
        let setl_id = u64::from(s) + 1;
        let memo = Memo {
            kind: EntryKind::Settlement,
            time,
            counterparty: Counterparty::Institution(inst),
            reference: EntryRef::Settlement(setl_id),
        };
        let mut rest = psn_part;
        let (mut acct_pay, mut wallet_pay, mut mulaid) = (Fen::ZERO, Fen::ZERO, Fen::ZERO);
        let details_start = self.details.len() as u32;
        let mut cross_pool = false;
        for source in self.params.draw_order {
            if !acct_used || rest.is_zero() {
                break;
            }
            match source {
                DrawSource::OwnAcct => {
                    let balance = self.persons.hot[psn as usize].acct;
                    acct_pay = self.draw_own(LedgerSide::Acct(psn), balance, &mut rest, memo);
                }
                DrawSource::OwnWallet => {
                    let balance = self.persons.hot[psn as usize].wallet;
                    wallet_pay = self.draw_own(LedgerSide::Wallet(psn), balance, &mut rest, memo);
                }
                DrawSource::Givers => {
                    let (paid, cross) = self.draw_givers(psn, rest, memo);
                    mulaid = paid;
                    cross_pool = cross;
                    rest = rest.checked_sub(paid).expect("draw within rest");
                }
            }
        }
        let details_len = self.details.len() as u32 - details_start;
        self.setls.push(Settlement {
            psn,
            inst,
            time,
            medfee,
            fund_pay,
            acct_pay,
            wallet_pay,
            mulaid,
            cash: rest,
            acct_balc: self.persons.hot[psn as usize].acct,
            wallet_balc: self.persons.hot[psn as usize].wallet,
            details_start,
            details_len: u8::try_from(details_len).expect("givers fit in u8"),
            cross_pool,
            cancelled: false,
        });
        self.recent.note(inst, s);
        self.count_settlement(s, true);
        Ok(Reply::Settled(s))
    }

    /// Draws what `side` (the person's own account or wallet, holding `balance`) can give of
    /// `rest`, and takes it off `rest`.
    fn draw_own(&mut self, side: LedgerSide, balance: Fen, rest: &mut Fen, memo: Memo) -> Fen {
        let amount = balance.min(*rest);
        self.post(side, LedgerSide::Institutions, amount, memo);
        *rest = rest.checked_sub(amount).expect("draw within rest");
        amount
    }

    /// Draws on the person's active in-province givers in priority order, skipping suspended
    /// ones, and records who paid. Returns the total and whether any paying giver is in
    /// another pooling area.
    fn draw_givers(&mut self, psn: u32, mut rest: Fen, memo: Memo) -> (Fen, bool) {
        let memo = Memo {
            kind: EntryKind::MulaidGiven,
            counterparty: Counterparty::Person(psn),
            ..memo
        };
        let pool = admdvs_pool(self.persons.hot[psn as usize].admdvs);
        let (mut paid, mut cross) = (Fen::ZERO, false);
        let mut at = self.persons.hot[psn as usize].received_head;
        while at != 0 && !rest.is_zero() {
            let b = &self.bindings[at as usize - 1];
            at = b.next_received;
            let giver = b.giver;
            if b.scope != Scope::InProvince || self.persons.is_suspended(giver) {
                continue;
            }
            let amount = self.persons.hot[giver as usize].acct.min(rest);
            if amount.is_zero() {
                continue;
            }
            self.post(
                LedgerSide::Acct(giver),
                LedgerSide::Institutions,
                amount,
                memo,
            );
            self.details.push(super::Detail { giver, amount });
            cross |= admdvs_pool(self.persons.hot[giver as usize].admdvs) != pool;
            paid = paid.checked_add(amount).expect("draw within rest");
            rest = rest.checked_sub(amount).expect("draw within rest");
        }
        (paid, cross)
    }

    /// Adds (or, on cancellation, takes out) a settlement's statistics and reconciliation.
    fn count_settlement(&mut self, s: u32, add: bool) {
        let setl = self.setl(s);
        if !setl.mulaid.is_zero() {
            let province = admdvs_province(self.persons.hot[setl.psn as usize].admdvs);
            let channel = if setl.cross_pool {
                Channel::DrawCrossPool
            } else {
                Channel::DrawSamePool
            };
            let period = period_of(setl.time);
            if add {
                self.stats.add(period, province, channel, setl.mulaid);
            } else {
                self.stats.sub(period, province, channel, setl.mulaid);
            }
        }
        // A cancelled settlement of a day no longer kept needs nothing: such a day is summed
        // from the settlements themselves, which carry the cancellation.
        let day = cst_day(setl.time);
        if day >= self.recon_first_day() {
            self.recon.entry(setl.inst, day).apply(&setl, add);
        }
    }

    /// Reads the history records that `body` will read when applied by `actor` (the settlement
    /// a cancellation or reversal returns, and its givers' parts; the transfer an acceptance
    /// or a refusal names, which is cold only if it is no longer pending), so that a record in
    /// a cold chunk is in memory (the page cache) before the op reaches the writer, which then
    /// never waits for the disk. Changes nothing; returns how many records it read.
    pub fn prefetch(&self, actor: &crate::command::Actor, body: &crate::command::Body) -> usize {
        use crate::command::Body;
        if let Body::TransferAccept { transfer_id } | Body::TransferDecline { transfer_id } = body {
            return match self.transfer_index(*transfer_id) {
                Ok(t) => {
                    std::hint::black_box(self.transfers.get(t as usize));
                    1
                }
                Err(_) => 0,
            };
        }
        let s = match body {
            Body::Cancel { setl_id } => self.settlement_index(*setl_id).ok(),
            Body::Reverse {
                omsgid,
                fixmedins_code,
            } => {
                let scope = match fixmedins_code {
                    Some(code) => MsgidScope::Institution(code),
                    None => actor.msgid_scope(),
                };
                match self
                    .msgids
                    .get(msgid_key(scope, omsgid))
                    .map(|r| r.reply.clone())
                {
                    Some(Some(Reply::Settled(s))) => Some(s),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(s) = s else {
            return 0;
        };
        let setl = std::hint::black_box(self.setls.get(s as usize));
        let start = setl.details_start as usize;
        for d in self
            .details
            .range(start..start + usize::from(setl.details_len))
        {
            std::hint::black_box(d);
        }
        1 + usize::from(setl.details_len)
    }

    /// Settlement `s` with its `cancelled` mark.
    pub(crate) fn setl(&self, s: u32) -> Settlement {
        Settlement {
            cancelled: self.cancelled.contains(&s),
            ..self.setls.get(s as usize)
        }
    }

    /// Every settlement in order, with its `cancelled` mark.
    pub(crate) fn all_setls(&self) -> impl Iterator<Item = Settlement> + '_ {
        (0..self.setls.len() as u32).map(|s| self.setl(s))
    }

    pub(crate) fn settlement_index(&self, setl_id: u64) -> Result<u32, Rejection> {
        super::persons::id_to_index(setl_id, self.setls.len())
            .map(|i| i as u32)
            .ok_or(Rejection::new(ErrCode::SettlementNotFound))
    }

    pub(super) fn cancel(&mut self, setl_id: u64, time: i64) -> Result<Reply, Rejection> {
        let s = self.settlement_index(setl_id)?;
        if self.cancelled.contains(&s) {
            return Err(ErrCode::AlreadyCancelled.into());
        }
        self.undo_settlement(s, time);
        Ok(Reply::Cancelled(s))
    }

    /// Returns to every source exactly what it gave (rule 12), whatever happened since.
    fn undo_settlement(&mut self, s: u32, time: i64) {
        let setl = self.setls.get(s as usize);
        let memo = Memo {
            kind: EntryKind::Cancel,
            time,
            counterparty: Counterparty::Institution(setl.inst),
            reference: EntryRef::Settlement(u64::from(s) + 1),
        };
        self.post(
            LedgerSide::Institutions,
            LedgerSide::Acct(setl.psn),
            setl.acct_pay,
            memo,
        );
        self.post(
            LedgerSide::Institutions,
            LedgerSide::Wallet(setl.psn),
            setl.wallet_pay,
            memo,
        );
        let giver_memo = Memo {
            counterparty: Counterparty::Person(setl.psn),
            ..memo
        };
        let start = setl.details_start as usize;
        for d in start..start + usize::from(setl.details_len) {
            let Detail { giver, amount } = self.details.get(d);
            self.post(
                LedgerSide::Institutions,
                LedgerSide::Acct(giver),
                amount,
                giver_memo,
            );
        }
        self.count_settlement(s, false);
        self.prior_cancel(s);
        self.cancelled.insert(s);
    }

    /// Reversal (冲正) by original msgid (rule 13).
    /// `omsgid` is looked up in `scope`, the caller's own or the institution an admin names.
    pub(super) fn reverse(
        &mut self,
        scope: MsgidScope<'_>,
        omsgid: &Msgid,
        time: i64,
    ) -> Result<Reply, Rejection> {
        let key = msgid_key(scope, omsgid);
        let result = match self.msgids.get(key).map(|r| r.into_owned().reply) {
            Some(Some(Reply::Settled(s))) => {
                if !self.cancelled.contains(&s) {
                    self.undo_settlement(s, time);
                }
                ReversalResult::Cancelled
            }
            Some(Some(_)) => return Err(ErrCode::NotReversible.into()),
            Some(None) => ReversalResult::Blocked,
            None => {
                self.msgids.insert(key, 0, None, time);
                ReversalResult::Blocked
            }
        };
        Ok(Reply::Reversal {
            omsgid: Box::new(*omsgid),
            result,
        })
    }
}
