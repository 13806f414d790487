//! Medical-insurance wallet transfers (DOMAIN.md rule 14): hold, accept, decline, and return
//! on expiry at 06:00 CST the next day, driven by the ordered expiry queue.

use super::counters::Channel;
use super::history::{Le, Record};
use super::ledger::{Counterparty, EntryKind, EntryRef, LedgerSide, Memo};
use super::views::TransferView;
use super::State;
use crate::certno::admdvs_province;
use crate::command::{PsnNo, TransferSource};
use crate::reply::{ErrCode, Rejection, Reply};
use crate::time::{cst_day, cst_second_of_day, day_start, period_of};
use crate::Fen;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferStatus {
    Pending,
    Accepted,
    Declined,
    Returned,
}

impl TransferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "pending",
            TransferStatus::Accepted => "accepted",
            TransferStatus::Declined => "declined",
            TransferStatus::Returned => "returned",
        }
    }
}

/// A wallet transfer. Its status changes once, from pending; then the record is final
/// (`history.rs`: its chunk may go cold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub from: u32,
    pub to: u32,
    pub amount: Fen,
    pub source: TransferSource,
    pub cross_province: bool,
    pub status: TransferStatus,
    pub created: i64,
    pub expires_at: i64,
}

/// Transfer sources and statuses by tag (the variant's declaration index).
pub(super) const SOURCES: [TransferSource; 2] = [TransferSource::Acct, TransferSource::Wallet];
pub(super) const STATUSES: [TransferStatus; 4] = [
    TransferStatus::Pending,
    TransferStatus::Accepted,
    TransferStatus::Declined,
    TransferStatus::Returned,
];

/// 35 bytes: from u32, to u32, amount u64, source u8, cross_province u8, status u8,
/// created i64, expires_at i64 (the snapshot's transfer layout).
impl Record for Transfer {
    const BYTES: usize = 35;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.from.to_le_bytes());
        out.extend_from_slice(&self.to.to_le_bytes());
        out.extend_from_slice(&self.amount.0.to_le_bytes());
        out.push(self.source as u8);
        out.push(u8::from(self.cross_province));
        out.push(self.status as u8);
        out.extend_from_slice(&self.created.to_le_bytes());
        out.extend_from_slice(&self.expires_at.to_le_bytes());
    }

    fn get(b: &[u8]) -> Transfer {
        let mut r = Le(b);
        Transfer {
            from: r.u32(),
            to: r.u32(),
            amount: Fen(r.u64()),
            source: SOURCES[usize::from(r.u8())],
            cross_province: r.u8() != 0,
            status: STATUSES[usize::from(r.u8())],
            created: r.i64(),
            expires_at: r.i64(),
        }
    }
}

/// Marks an `expired_scratch` record of a queue item that was dropped without a return (the
/// transfer had been accepted or declined): undoing it only puts the item back in the queue.
const NOT_RETURNED: u32 = u32::MAX;

impl State {
    fn source_side(t: &Transfer) -> LedgerSide {
        match t.source {
            TransferSource::Acct => LedgerSide::Acct(t.from),
            TransferSource::Wallet => LedgerSide::Wallet(t.from),
        }
    }

    /// The last of rule 14's checks of a sender, in their order: the amount limit, the closed
    /// hours, the daily count and the balance (the federation's sender checks them too).
    /// Returns the sender's transfers today.
    pub(super) fn sender_limits(
        &self,
        from: u32,
        amount: Fen,
        source: TransferSource,
        time: i64,
    ) -> Result<u32, Rejection> {
        let p = &self.persons;
        if amount > self.params.wallet_amount_max {
            return Err(ErrCode::WalletAmountLimit.into());
        }
        if self.params.wallet_closed_at(cst_second_of_day(time)) {
            return Err(ErrCode::WalletClosedHours.into());
        }
        let day = cst_day(time) as u32;
        let packed = p.wallet_day[from as usize];
        let count_today = if packed >> 8 == day { packed & 0xff } else { 0 };
        if count_today >= u32::from(self.params.wallet_daily_count_max) {
            return Err(ErrCode::WalletDailyLimit.into());
        }
        let balance = match source {
            TransferSource::Acct => p.hot[from as usize].acct,
            TransferSource::Wallet => p.hot[from as usize].wallet,
        };
        if balance < amount {
            return Err(ErrCode::InsufficientBalance.into());
        }
        Ok(count_today)
    }

    pub(super) fn transfer_create(
        &mut self,
        from_psn_no: &PsnNo,
        to_psn_no: &PsnNo,
        amount: Fen,
        source: TransferSource,
        time: i64,
    ) -> Result<Reply, Rejection> {
        let from = self.person_index(from_psn_no)?;
        let to = self.person_index(to_psn_no)?;
        let p = &self.persons;
        if p.is_suspended(from) {
            return Err(ErrCode::PersonSuspended.into());
        }
        if source == TransferSource::Acct && p.is_resident(from) {
            return Err(ErrCode::NoPersonalAccount.into());
        }
        if !p.wallet_open(to) {
            return Err(Rejection::with(
                ErrCode::WalletNotOpen,
                "the receiver has no wallet",
            ));
        }
        if source == TransferSource::Wallet && !p.wallet_open(from) {
            return Err(Rejection::with(
                ErrCode::WalletNotOpen,
                "the sender has no wallet",
            ));
        }
        if !self.bound_either_way(from, to) {
            return Err(ErrCode::NotBound.into());
        }
        let count_today = self.sender_limits(from, amount, source, time)?;
        let day = cst_day(time) as u32;
        let cross_province = admdvs_province(p.hot[from as usize].admdvs)
            != admdvs_province(p.hot[to as usize].admdvs);
        self.persons.wallet_day[from as usize] = (day << 8) | (count_today + 1);
        let t = self.transfers.len() as u32;
        let expires_at = day_start(cst_day(time) + 1) + i64::from(self.params.wallet_expiry_second);
        let transfer = Transfer {
            from,
            to,
            amount,
            source,
            cross_province,
            status: TransferStatus::Pending,
            created: time,
            expires_at,
        };
        let memo = transfer_memo(EntryKind::WalletHold, time, to, t);
        self.post(Self::source_side(&transfer), LedgerSide::Hold, amount, memo);
        self.transfers.push(transfer);
        if let Some(&(last, _)) = self.expiry_queue.back() {
            assert!(last <= expires_at, "expiry queue out of order");
        }
        self.expiry_queue.push_back((expires_at, t));
        Ok(Reply::Transfer(Box::new(self.transfer_view(t, true))))
    }

    pub(crate) fn transfer_index(&self, transfer_id: u64) -> Result<u32, Rejection> {
        super::persons::id_to_index(transfer_id, self.transfers.len())
            .map(|i| i as u32)
            .ok_or(Rejection::with(ErrCode::NotFound, "no such transfer"))
    }

    pub(super) fn transfer_accept(
        &mut self,
        transfer_id: u64,
        time: i64,
    ) -> Result<Reply, Rejection> {
        let t = self.transfer_index(transfer_id)?;
        let transfer = self.transfers.get(t as usize);
        if transfer.status != TransferStatus::Pending {
            return Err(ErrCode::NotPending.into());
        }
        let memo = transfer_memo(EntryKind::WalletIn, time, transfer.from, t);
        self.post(
            LedgerSide::Hold,
            LedgerSide::Wallet(transfer.to),
            transfer.amount,
            memo,
        );
        self.transfers.hot_mut(t as usize).status = TransferStatus::Accepted;
        let channel = if transfer.cross_province {
            Channel::WalletCrossProvince
        } else {
            Channel::WalletInProvince
        };
        let province = admdvs_province(self.persons.hot[transfer.from as usize].admdvs);
        self.stats
            .add(period_of(time), province, channel, transfer.amount);
        Ok(Reply::Transfer(Box::new(self.transfer_view(t, false))))
    }

    pub(super) fn transfer_decline(
        &mut self,
        transfer_id: u64,
        time: i64,
    ) -> Result<Reply, Rejection> {
        let t = self.transfer_index(transfer_id)?;
        if self.transfers.get(t as usize).status != TransferStatus::Pending {
            return Err(ErrCode::NotPending.into());
        }
        self.return_transfer(t, TransferStatus::Declined, time);
        Ok(Reply::Transfer(Box::new(self.transfer_view(t, false))))
    }

    fn return_transfer(&mut self, t: u32, status: TransferStatus, time: i64) {
        let transfer = self.transfers.get(t as usize);
        let memo = transfer_memo(EntryKind::WalletReturn, time, transfer.to, t);
        self.post(
            LedgerSide::Hold,
            Self::source_side(&transfer),
            transfer.amount,
            memo,
        );
        self.transfers.hot_mut(t as usize).status = status;
    }

    /// Returns every pending transfer due by `time` (expired once the clock reads its expiry
    /// or later). Records each in `expired_scratch` so that a rejected write can undo it.
    pub(super) fn expire_due(&mut self, time: i64) -> u32 {
        let mut expired = 0;
        while let Some(&(expires_at, t)) = self.expiry_queue.front() {
            if expires_at > time {
                break;
            }
            self.expiry_queue.pop_front();
            if self.transfers.get(t as usize).status != TransferStatus::Pending {
                // Recorded too: a rejected write must put the queue back exactly as it was.
                self.expired_scratch.push((t, NOT_RETURNED));
                continue;
            }
            let from = self.transfers.get(t as usize).from;
            let tail = self.persons.hot[from as usize].entry_tail;
            // The return happens at the moment of expiry, not at the time of the op.
            self.return_transfer(t, TransferStatus::Returned, expires_at);
            self.expired_scratch.push((t, tail));
            expired += 1;
        }
        expired
    }

    /// Undoes the expiries of the write in progress, newest first.
    pub(super) fn unexpire(&mut self) {
        while let Some((t, tail)) = self.expired_scratch.pop() {
            let transfer = self.transfers.get(t as usize);
            if tail == NOT_RETURNED {
                self.expiry_queue.push_front((transfer.expires_at, t));
                continue;
            }
            let amount = transfer.amount;
            self.prior_money(transfer.from);
            let (balance, total) = match transfer.source {
                TransferSource::Acct => (
                    &mut self.persons.hot[transfer.from as usize].acct,
                    &mut self.ledger.acct_total,
                ),
                TransferSource::Wallet => (
                    &mut self.persons.hot[transfer.from as usize].wallet,
                    &mut self.ledger.wallet_total,
                ),
            };
            *balance = balance.checked_sub(amount).expect("undo within balance");
            *total -= amount.0;
            self.ledger.held += amount.0;
            self.pop_entry(transfer.from);
            self.transfers.hot_mut(t as usize).status = TransferStatus::Pending;
            self.expiry_queue.push_front((transfer.expires_at, t));
        }
    }

    /// The transfer as the API shows it; `with_balances` adds the sender's balances (the
    /// reply of a creation).
    pub(crate) fn transfer_view(&self, t: u32, with_balances: bool) -> TransferView {
        let transfer = self.transfers.get(t as usize);
        let from = transfer.from as usize;
        TransferView {
            transfer_id: u64::from(t) + 1,
            from_psn_no: self.persons.psn_no_array(transfer.from),
            to_psn_no: self.persons.psn_no_array(transfer.to),
            amount: transfer.amount,
            source: transfer.source,
            cross_province: transfer.cross_province,
            status: transfer.status,
            created: transfer.created,
            expires_at: transfer.expires_at,
            sender_balances: with_balances
                .then(|| (self.persons.hot[from].acct, self.persons.hot[from].wallet)),
        }
    }
}

fn transfer_memo(kind: EntryKind, time: i64, other: u32, t: u32) -> Memo {
    Memo {
        kind,
        time,
        counterparty: Counterparty::Person(other),
        reference: EntryRef::Transfer(u64::from(t) + 1),
    }
}
