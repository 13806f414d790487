//! Double-entry movements and the per-person entry history.
//!
//! Every movement of money goes through [`State::post`], from one side to another. Person
//! sides are balances that may never go below zero; system sides (crediting source,
//! institutions, resident fund, wallet holds) are running totals. The conservation equation of
//! DOMAIN.md rule 3 follows from the totals and is asserted after every applied op.

use super::State;
use crate::Fen;

/// One side of a movement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LedgerSide {
    Acct(u32),
    Wallet(u32),
    /// Money of pending wallet transfers.
    Hold,
    /// Where crediting money comes from (the pooled fund's transfer into personal accounts).
    CreditSource,
    /// Designated institutions: settlements pay them, cancellations take back.
    Institutions,
    /// The resident scheme's fund: contributions go there.
    ResidentFund,
    /// Money of cross-engine transfers sent and not yet answered (federation, issue 14).
    InFlight,
    /// The other engines: money committed to them (`fed_sent`) or accepted from them
    /// (`fed_received`) by a cross-engine transfer (federation, issue 14).
    Remote,
}

/// Running totals of the system sides and of person balances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ledger {
    pub acct_total: u64,
    pub wallet_total: u64,
    pub held: u64,
    pub credited: u64,
    pub paid_institutions: u64,
    pub returned_by_cancellations: u64,
    pub paid_contributions: u64,
    /// Federation (issue 14); all three stay 0 on an engine without `[federation]`.
    pub in_flight: u64,
    pub fed_sent: u64,
    pub fed_received: u64,
}

impl Ledger {
    /// DOMAIN.md rule 3: balances + held = credited − paid to institutions − contributions +
    /// returned by cancellations; with federation, + in flight on the left and + received
    /// from − sent to other engines on the right (docs/FEDERATION.md).
    pub fn assert_conserved(&self) {
        let inside = u128::from(self.acct_total)
            + u128::from(self.wallet_total)
            + u128::from(self.held)
            + u128::from(self.in_flight);
        let flows = i128::from(self.credited)
            - i128::from(self.paid_institutions)
            - i128::from(self.paid_contributions)
            + i128::from(self.returned_by_cancellations)
            + i128::from(self.fed_received)
            - i128::from(self.fed_sent);
        assert_eq!(inside as i128, flows, "money not conserved: {self:?}");
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Credit,
    Settlement,
    MulaidGiven,
    WalletHold,
    WalletIn,
    WalletReturn,
    Contribution,
    Cancel,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Credit => "credit",
            EntryKind::Settlement => "settlement",
            EntryKind::MulaidGiven => "mulaid_given",
            EntryKind::WalletHold => "wallet_hold",
            EntryKind::WalletIn => "wallet_in",
            EntryKind::WalletReturn => "wallet_return",
            EntryKind::Contribution => "contribution",
            EntryKind::Cancel => "cancel",
        }
    }
}

/// What an entry's `ref` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryRef {
    Settlement(u64),
    Transfer(u64),
    Contribution(u64),
    Period(u32),
    /// A cross-engine transfer: the engine's exchange record (index + 1; federation).
    Exchange(u64),
}

/// The other party of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counterparty {
    None,
    Person(u32),
    Institution(u32),
}

/// One movement on one person's account or wallet. Immutable once written: it links to the
/// person's previous entry, so a full chunk of entries never changes again (it may go cold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub psn: u32,
    /// Previous entry of the same person (index + 1; 0: none).
    pub prev: u32,
    pub wallet: bool,
    pub kind: EntryKind,
    pub time: i64,
    pub amount: i64,
    pub balc: Fen,
    pub counterparty: Counterparty,
    pub reference: EntryRef,
}

/// What a posting records in the entry history.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Memo {
    pub kind: EntryKind,
    pub time: i64,
    pub counterparty: Counterparty,
    pub reference: EntryRef,
}

impl State {
    /// Moves `amount` from one side to another and records the entries of the person sides.
    /// Callers have checked that a person side has the money: a shortfall here is a bug.
    pub(crate) fn post(&mut self, from: LedgerSide, to: LedgerSide, amount: Fen, memo: Memo) {
        if amount.is_zero() {
            return;
        }
        self.take(from, amount, memo);
        self.give(to, amount, memo);
    }

    fn take(&mut self, side: LedgerSide, amount: Fen, memo: Memo) {
        if let LedgerSide::Acct(i) | LedgerSide::Wallet(i) = side {
            self.prior_money(i);
        }
        let a = amount.0;
        let l = &mut self.ledger;
        match side {
            LedgerSide::Acct(i) => {
                let balc = &mut self.persons.hot[i as usize].acct;
                *balc = balc.checked_sub(amount).expect("account overdrawn");
                l.acct_total -= a;
                let balc = *balc;
                self.record(i, false, -(a as i64), balc, memo);
            }
            LedgerSide::Wallet(i) => {
                let balc = &mut self.persons.hot[i as usize].wallet;
                *balc = balc.checked_sub(amount).expect("wallet overdrawn");
                l.wallet_total -= a;
                let balc = *balc;
                self.record(i, true, -(a as i64), balc, memo);
            }
            LedgerSide::Hold => l.held = l.held.checked_sub(a).expect("hold overdrawn"),
            LedgerSide::CreditSource => l.credited += a,
            LedgerSide::Institutions => l.returned_by_cancellations += a,
            LedgerSide::ResidentFund => unreachable!("the resident fund never pays back"),
            LedgerSide::InFlight => {
                l.in_flight = l.in_flight.checked_sub(a).expect("in-flight overdrawn");
            }
            LedgerSide::Remote => l.fed_received += a,
        }
    }

    fn give(&mut self, side: LedgerSide, amount: Fen, memo: Memo) {
        if let LedgerSide::Acct(i) | LedgerSide::Wallet(i) = side {
            self.prior_money(i);
        }
        let a = amount.0;
        let l = &mut self.ledger;
        match side {
            LedgerSide::Acct(i) => {
                let balc = &mut self.persons.hot[i as usize].acct;
                *balc = balc.checked_add(amount).expect("balance overflow");
                l.acct_total += a;
                let balc = *balc;
                self.record(i, false, a as i64, balc, memo);
            }
            LedgerSide::Wallet(i) => {
                let balc = &mut self.persons.hot[i as usize].wallet;
                *balc = balc.checked_add(amount).expect("balance overflow");
                l.wallet_total += a;
                let balc = *balc;
                self.record(i, true, a as i64, balc, memo);
            }
            LedgerSide::Hold => l.held += a,
            LedgerSide::CreditSource => unreachable!("money never returns to crediting"),
            LedgerSide::Institutions => l.paid_institutions += a,
            LedgerSide::ResidentFund => l.paid_contributions += a,
            LedgerSide::InFlight => l.in_flight += a,
            LedgerSide::Remote => l.fed_sent += a,
        }
    }

    fn record(&mut self, psn: u32, wallet: bool, amount: i64, balc: Fen, memo: Memo) {
        let id = u32::try_from(self.entries.len() + 1).expect("entry ids fit u32");
        let tail = &mut self.persons.hot[psn as usize].entry_tail;
        let prev = std::mem::replace(tail, id);
        self.entries.push(Entry {
            psn,
            prev,
            wallet,
            kind: memo.kind,
            time: memo.time,
            amount,
            balc,
            counterparty: memo.counterparty,
            reference: memo.reference,
        });
    }

    /// Removes the newest entry, which belongs to `psn`. Used only to undo an expiry when the
    /// write that triggered it is rejected.
    pub(crate) fn pop_entry(&mut self, psn: u32) {
        let entry = self.entries.pop().expect("an entry to pop");
        assert_eq!(entry.psn, psn);
        self.persons.hot[psn as usize].entry_tail = entry.prev;
    }
}

/// Decoding table: position = tag = the variant's declaration index (`as u8`).
pub(crate) const ENTRY_KINDS: [EntryKind; 8] = [
    EntryKind::Credit,
    EntryKind::Settlement,
    EntryKind::MulaidGiven,
    EntryKind::WalletHold,
    EntryKind::WalletIn,
    EntryKind::WalletReturn,
    EntryKind::Contribution,
    EntryKind::Cancel,
];

/// 48 bytes: psn u32, prev u32, wallet u8, kind u8, time i64, amount i64, balc u64,
/// counterparty tag u8 + u32, reference tag u8 + u64 (the snapshot's entry layout).
impl super::history::Record for Entry {
    const BYTES: usize = 48;

    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.psn.to_le_bytes());
        out.extend_from_slice(&self.prev.to_le_bytes());
        out.push(u8::from(self.wallet));
        out.push(self.kind as u8);
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.amount.to_le_bytes());
        out.extend_from_slice(&self.balc.0.to_le_bytes());
        let (tag, v) = match self.counterparty {
            Counterparty::None => (0u8, 0),
            Counterparty::Person(p) => (1, p),
            Counterparty::Institution(i) => (2, i),
        };
        out.push(tag);
        out.extend_from_slice(&v.to_le_bytes());
        let (tag, v) = match self.reference {
            EntryRef::Settlement(id) => (0u8, id),
            EntryRef::Transfer(id) => (1, id),
            EntryRef::Contribution(id) => (2, id),
            EntryRef::Period(p) => (3, u64::from(p)),
            EntryRef::Exchange(id) => (4, id),
        };
        out.push(tag);
        out.extend_from_slice(&v.to_le_bytes());
    }

    fn get(b: &[u8]) -> Entry {
        let mut r = super::history::Le(b);
        let psn = r.u32();
        let prev = r.u32();
        let wallet = r.u8() != 0;
        let kind = ENTRY_KINDS[usize::from(r.u8())];
        let (time, amount, balc) = (r.i64(), r.i64(), Fen(r.u64()));
        let counterparty = match (r.u8(), r.u32()) {
            (1, p) => Counterparty::Person(p),
            (2, i) => Counterparty::Institution(i),
            _ => Counterparty::None,
        };
        let reference = match (r.u8(), r.u64()) {
            (0, id) => EntryRef::Settlement(id),
            (1, id) => EntryRef::Transfer(id),
            (2, id) => EntryRef::Contribution(id),
            (4, id) => EntryRef::Exchange(id),
            (_, p) => EntryRef::Period(p as u32),
        };
        Entry {
            psn,
            prev,
            wallet,
            kind,
            time,
            amount,
            balc,
            counterparty,
            reference,
        }
    }
}
