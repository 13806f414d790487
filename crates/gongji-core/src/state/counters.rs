//! Statistics (DOMAIN.md rule 17) and reconciliation (rule 18) as counters updated in the same
//! `apply` as the money, so a query is a sum over months and never a scan of history.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::time::Period;
use crate::Fen;

/// The 31 province codes of DOMAIN.md rule 4, in order; a province's slot is its position.
pub(crate) const PROVINCES: [u8; 31] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65,
];

pub(crate) fn province_slot(province: u8) -> usize {
    PROVINCES
        .iter()
        .position(|&p| p == province)
        .expect("a valid province")
}

/// A count of person-times or transfers and their amount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cell {
    pub count: u64,
    pub amount: Fen,
}

impl Cell {
    fn add(&mut self, amount: Fen) {
        self.count += 1;
        self.amount = self
            .amount
            .checked_add(amount)
            .expect("statistics overflow");
    }

    fn sub(&mut self, amount: Fen) {
        self.count = self.count.checked_sub(1).expect("statistics underflow");
        self.amount = self
            .amount
            .checked_sub(amount)
            .expect("statistics underflow");
    }

    pub fn plus(self, other: Cell) -> Cell {
        Cell {
            count: self.count + other.count,
            amount: self
                .amount
                .checked_add(other.amount)
                .expect("statistics overflow"),
        }
    }
}

/// The four cells kept per month and province.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Channel {
    DrawSamePool = 0,
    DrawCrossPool = 1,
    WalletInProvince = 2,
    WalletCrossProvince = 3,
}

type MonthCells = [[Cell; 4]; PROVINCES.len()];

/// The statistics by month. A month is shared (copy on write), so that a copy of the whole
/// table ([`crate::views::StatsCopy`], which the server takes after every batch for the reads
/// it answers as of the last durable op) costs a pointer per month; the writer copies a
/// month's 2 KiB the first time it changes it after such a copy.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stats {
    pub months: BTreeMap<Period, Arc<MonthCells>>,
}

impl Stats {
    pub fn add(&mut self, period: Period, province: u8, channel: Channel, amount: Fen) {
        let month = Arc::make_mut(self.months.entry(period).or_default());
        month[province_slot(province)][channel as usize].add(amount);
    }

    pub fn sub(&mut self, period: Period, province: u8, channel: Channel, amount: Fen) {
        let month = Arc::make_mut(self.months.get_mut(&period).expect("counted month"));
        month[province_slot(province)][channel as usize].sub(amount);
    }

    /// Sums the four cells over `from..=to`, for one province or all.
    pub fn sum(&self, from: Period, to: Period, province: Option<u8>) -> [Cell; 4] {
        let mut out = [Cell::default(); 4];
        for month in self.months.range(from..=to).map(|(_, m)| m) {
            for (slot, cells) in month.iter().enumerate() {
                if province.is_some_and(|p| PROVINCES[slot] != p) {
                    continue;
                }
                for (o, c) in out.iter_mut().zip(cells) {
                    *o = o.plus(*c);
                }
            }
        }
        out
    }
}

/// An institution's totals for one CST day, of settlements not cancelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReconTotals {
    pub setl_count: u64,
    pub medfee_sumamt: Fen,
    pub fund_pay_sumamt: Fen,
    pub acct_pay: Fen,
    pub wallet_pay: Fen,
    pub acct_mulaid_pay: Fen,
    pub psn_cash_pay: Fen,
}

impl ReconTotals {
    pub(crate) fn apply(&mut self, s: &super::Settlement, add: bool) {
        let f = |total: &mut Fen, v: Fen| {
            *total = if add {
                total.checked_add(v)
            } else {
                total.checked_sub(v)
            }
            .expect("reconciliation totals out of range");
        };
        self.setl_count = if add {
            self.setl_count + 1
        } else {
            self.setl_count - 1
        };
        f(&mut self.medfee_sumamt, s.medfee);
        f(&mut self.fund_pay_sumamt, s.fund_pay);
        f(&mut self.acct_pay, s.acct_pay);
        f(&mut self.wallet_pay, s.wallet_pay);
        f(&mut self.acct_mulaid_pay, s.mulaid);
        f(&mut self.psn_cash_pay, s.cash);
    }
}

/// CST days of reconciliation totals kept in memory, the engine clock's day included
/// (DOMAIN.md: at least 400). Older days are answered from the settlements in history
/// ([`crate::State::reconciliation`]), as DOMAIN.md allows, so memory does not grow with years.
pub(crate) const RECON_DAYS_KEPT: i32 = 400;

/// The first CST day whose reconciliation totals are kept in memory at engine clock `clock`.
pub(crate) fn recon_first_day(clock: i64) -> i32 {
    crate::time::cst_day(clock).saturating_sub(RECON_DAYS_KEPT - 1)
}

/// Reconciliation totals per institution and CST day: one map per day, behind an `Arc`. A
/// frozen copy shares every day; the writer copies a day's map only when it changes that day
/// while the copy lives (today's, or an old day's when one of its settlements is cancelled).
#[derive(Clone, Debug, Default)]
pub(crate) struct Recon {
    days: BTreeMap<i32, Arc<FxHashMap<u32, ReconTotals>>>,
}

impl Recon {
    pub fn get(&self, inst: u32, day: i32) -> Option<&ReconTotals> {
        self.days.get(&day).and_then(|m| m.get(&inst))
    }

    /// The totals of `inst` on `day`, made zero first if there were none.
    pub fn entry(&mut self, inst: u32, day: i32) -> &mut ReconTotals {
        Arc::make_mut(self.days.entry(day).or_default())
            .entry(inst)
            .or_default()
    }

    /// Drops the days before `day` (see [`RECON_DAYS_KEPT`]); the oldest days are first, so
    /// this costs nothing when there is nothing to drop.
    pub fn forget_before(&mut self, day: i32) {
        while let Some(first) = self.days.first_entry() {
            if *first.key() >= day {
                break;
            }
            first.remove();
        }
    }

    /// Bytes held (the maps' slots).
    pub fn memory(&self) -> u64 {
        let slot = std::mem::size_of::<(u32, ReconTotals)>() + 1;
        self.days
            .values()
            .map(|m| (m.capacity() * slot) as u64)
            .sum()
    }

    /// Every ((institution, day), totals), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = ((u32, i32), &ReconTotals)> + '_ {
        self.days
            .iter()
            .flat_map(|(&day, m)| m.iter().map(move |(&inst, t)| ((inst, day), t)))
    }
}
