//! Settlement by instant call (DOMAIN.md rules 10–13): draw the personally borne part from the
//! person's account, wallet and in-province givers in the province's order; cancel; reverse.
//!
//! The settle path allocates nothing but the amortised growth of the record vectors, and its
//! work is proportional to the number of the person's givers.

use super::counters::Channel;
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

/// A settlement as the state keeps it (also the projection's row, [`crate::SettlementRow`]).
#[derive(Clone, Debug, PartialEq, Eq)]
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
        let setl = &self.setls[s as usize];
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
        self.recon
            .entry(setl.inst, cst_day(setl.time))
            .apply(setl, add);
    }

    pub(crate) fn settlement_index(&self, setl_id: u64) -> Result<u32, Rejection> {
        super::persons::id_to_index(setl_id, self.setls.len())
            .map(|i| i as u32)
            .ok_or(Rejection::new(ErrCode::SettlementNotFound))
    }

    pub(super) fn cancel(&mut self, setl_id: u64, time: i64) -> Result<Reply, Rejection> {
        let s = self.settlement_index(setl_id)?;
        if self.setls[s as usize].cancelled {
            return Err(ErrCode::AlreadyCancelled.into());
        }
        self.undo_settlement(s, time);
        Ok(Reply::Cancelled(s))
    }

    /// Returns to every source exactly what it gave (rule 12), whatever happened since.
    fn undo_settlement(&mut self, s: u32, time: i64) {
        let setl = self.setls[s as usize].clone();
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
            let Detail { giver, amount } = self.details[d];
            self.post(
                LedgerSide::Institutions,
                LedgerSide::Acct(giver),
                amount,
                giver_memo,
            );
        }
        self.count_settlement(s, false);
        self.setls[s as usize].cancelled = true;
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
        let result = match self.msgids.get(key).map(|r| &r.reply) {
            Some(Some(Reply::Settled(s))) => {
                let s = *s;
                if !self.setls[s as usize].cancelled {
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
