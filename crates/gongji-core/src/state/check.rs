//! The full checks: recompute every running total from the records (used by tests and by
//! `verify`), and the state hash that lets replay and live state be compared.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::counters::{Channel, ReconTotals};
use super::ledger::{EntryKind, Ledger};
use super::{State, TransferStatus};
use crate::certno::{admdvs_pool, admdvs_province};
use crate::time::{cst_day, period_of, Period};
use crate::{Fen, TransferSource};

/// Feeds formatted text into a blake3 hasher without building one big string.
struct HashWriter(blake3::Hasher);

impl std::fmt::Write for HashWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

impl State {
    /// A hash of the whole state in a canonical order (hash maps sorted), so that two states
    /// built by the same ops compare equal whatever their memory layout.
    pub fn state_hash(&self) -> [u8; 32] {
        let mut w = HashWriter(blake3::Hasher::new());
        let p = &self.persons;
        let _ = write!(
            w,
            "{:?}|{}|{}|{:?}",
            self.params, self.clock, self.op_count, self.ledger
        );
        for i in 0..p.len() as u32 {
            let u = i as usize;
            let _ = write!(
                w,
                "P{}|{}|{}|{}|{}|{:?}|{:?}|{}|{}|{}|{}|{}|{};",
                p.psn_no(i),
                p.name(i),
                p.certno[u],
                p.hot[u].admdvs,
                p.hot[u].flags,
                p.hot[u].acct,
                p.hot[u].wallet,
                p.given_head[u],
                p.hot[u].received_head,
                p.hot[u].entry_tail,
                p.wallet_day[u],
                p.credit_last[u],
                p.credit_mask[u],
            );
        }
        let _ = write!(w, "{:?}{:?}", p.credit_overflow, self.insts.list);
        let _ = write!(
            w,
            "{:?}{:?}{:?}",
            self.tokens.list, self.bindings, self.setls
        );
        let _ = write!(
            w,
            "{:?}{:?}{:?}",
            self.details, self.transfers, self.expiry_queue
        );
        let mut cancelled: Vec<_> = self.cancelled.iter().collect();
        cancelled.sort_unstable();
        let _ = write!(w, "{cancelled:?}");
        let _ = write!(w, "{:?}{:?}", self.contributions, self.entries);
        let mut paid: Vec<_> = self.contributions_paid.iter().collect();
        paid.sort_unstable();
        let _ = write!(w, "{paid:?}");
        // Records by key with their times (what forgetting reads), wherever they are held.
        let queued = self.msgids.queued_by_key();
        for r in self.msgids.by_key(&queued) {
            let _ = write!(w, "({:?},{},{:?})", r.key(), r.time(), r.record());
        }
        let _ = write!(w, "{:?}", self.stats.months);
        let mut recon: Vec<_> = self
            .recon
            .iter()
            .filter(|(_, v)| v.setl_count > 0)
            .collect();
        recon.sort_unstable_by_key(|&(k, _)| k);
        let _ = write!(w, "{recon:?}");
        if self.fed.is_configured() {
            let _ = write!(w, "{:?}", self.fed);
        }
        *w.0.finalize().as_bytes()
    }

    /// Recomputes the ledger, statistics and reconciliation from the records and compares them
    /// with the running counters; checks list structure. `Err` names the first difference.
    /// Reads all history (cold chunks too): `verify` and the tests run it; a start runs
    /// [`State::check_hot`].
    pub fn check(&self) -> Result<(), String> {
        self.check_hot()?;
        // Every person is found under their own masked form, and only they: one lookup per
        // form, not per person (a lookup walks everyone who shares the form, so one per person
        // took minutes at 10 M persons).
        let certnos = &self.persons.certno;
        let mut by_key: Vec<(u32, u32)> = (0..certnos.len() as u32)
            .map(|i| (crate::certno::masked_key_of_packed(certnos[i as usize]), i))
            .collect();
        by_key.sort_unstable();
        for group in by_key.chunk_by(|a, b| a.0 == b.0) {
            let mut found: Vec<u32> = self.masked.find(group[0].0, certnos).collect();
            found.sort_unstable();
            if !found.iter().copied().eq(group.iter().map(|&(_, i)| i)) {
                return Err("the masked-certno index does not match the persons".into());
            }
        }
        let recomputed = self.recompute_ledger();
        if recomputed != self.ledger {
            return Err(format!(
                "ledger {:?} != recomputed {recomputed:?}",
                self.ledger
            ));
        }
        let recent = super::recent::Recent::rebuild(self.setls.iter().map(|s| s.inst));
        if self
            .cancelled
            .iter()
            .any(|&s| s as usize >= self.setls.len())
        {
            return Err("a cancelled settlement that does not exist".into());
        }
        for inst in 0..self.insts.list.len() as u32 {
            if !self.recent.of(inst).eq(recent.of(inst)) {
                return Err(format!(
                    "recent settlements of institution {inst} do not match"
                ));
            }
        }
        for (s, setl) in self.all_setls().enumerate() {
            let parts = [setl.acct_pay, setl.wallet_pay, setl.mulaid, setl.cash];
            let sum = parts.iter().try_fold(Fen::ZERO, |a, b| a.checked_add(*b));
            if sum != Some(setl.psn_part()) {
                return Err(format!("settlement {} parts do not add up", s + 1));
            }
            let start = setl.details_start as usize;
            let details = self
                .details
                .range(start..start + usize::from(setl.details_len));
            let given = details
                .clone()
                .try_fold(Fen::ZERO, |a, d| a.checked_add(d.amount));
            if given != Some(setl.mulaid) || details.clone().any(|d| d.amount.is_zero()) {
                return Err(format!("settlement {} details do not add up", s + 1));
            }
        }
        self.check_counters()?;
        self.check_cold_records()?;
        self.check_entry_lists()
    }

    /// What [`State::check_hot`] leaves to the cold chunks: their transfers are final and
    /// their contributions' pairs are in the paid set.
    fn check_cold_records(&self) -> Result<(), String> {
        for (t, transfer) in self
            .transfers
            .range(0..self.transfers.cold_len())
            .enumerate()
        {
            if transfer.status == TransferStatus::Pending {
                return Err(format!("pending transfer {} in a cold chunk", t + 1));
            }
            self.check_transfer_source(t, &transfer)?;
        }
        let mut cold = self.contributions.range(0..self.contributions.cold_len());
        if !cold.all(|c| self.contributions_paid.contains(&(c.psn, c.year))) {
            return Err("contributions paid differ from the contributions".into());
        }
        Ok(())
    }

    fn check_transfer_source(&self, t: usize, transfer: &super::Transfer) -> Result<(), String> {
        if transfer.source == TransferSource::Acct && self.persons.is_resident(transfer.from) {
            return Err(format!("transfer {} from a resident's account", t + 1));
        }
        Ok(())
    }

    /// The checks that read no history, so that their time depends on persons and not on
    /// how much history exists (a start after a replay runs them): balances and holds against
    /// the ledger, conservation, the contributions paid, the masked-certno index, bindings and
    /// the pending transfers' queue.
    pub fn check_hot(&self) -> Result<(), String> {
        let hot = &self.persons.hot;
        let acct_total = hot.iter().map(|h| h.acct.0).sum::<u64>();
        let wallet_total = hot.iter().map(|h| h.wallet.0).sum::<u64>();
        // Cold transfers are final (`check` reads them): the pending ones are all hot.
        let held = self
            .transfers
            .hot_iter()
            .filter(|t| t.status == TransferStatus::Pending)
            .map(|t| t.amount.0)
            .sum::<u64>();
        let l = &self.ledger;
        if (acct_total, wallet_total, held) != (l.acct_total, l.wallet_total, l.held) {
            return Err(format!(
                "ledger {l:?} != balances {acct_total}, wallets {wallet_total}, held {held}"
            ));
        }
        self.ledger.assert_conserved();
        // The paid (person, year) pairs are exactly the contributions' (snapshots write them
        // from the contributions); the hot ones here, the cold ones in `check`.
        let paid = self.contributions.hot_iter().map(|c| (c.psn, c.year));
        if self.contributions_paid.len() != self.contributions.len()
            || !paid.clone().all(|k| self.contributions_paid.contains(&k))
        {
            return Err("contributions paid differ from the contributions".into());
        }
        // Every person is indexed once (a pass over the table; `check` also looks each masked
        // form up).
        let mut indexed = vec![false; self.persons.len()];
        let once = self.masked.persons().all(|i| {
            indexed
                .get_mut(i as usize)
                .is_some_and(|seen| !std::mem::replace(seen, true))
        });
        if !once || self.masked.len() != self.persons.len() {
            return Err("the masked-certno index does not match the persons".into());
        }
        let fed = self.fed.recompute_ledger();
        if fed != (l.in_flight, l.fed_sent, l.fed_received) {
            return Err(format!(
                "ledger {l:?} != exchanges (in flight, sent, received) {fed:?}"
            ));
        }
        self.fed.check(self.persons.len())?;
        self.check_bindings()
    }

    fn recompute_ledger(&self) -> Ledger {
        let hot = &self.persons.hot;
        let mut l = Ledger {
            acct_total: hot.iter().map(|h| h.acct.0).sum::<u64>(),
            wallet_total: hot.iter().map(|h| h.wallet.0).sum::<u64>(),
            ..Ledger::default()
        };
        for t in self
            .transfers
            .iter()
            .filter(|t| t.status == TransferStatus::Pending)
        {
            l.held += t.amount.0;
        }
        for e in self.entries.iter().filter(|e| e.kind == EntryKind::Credit) {
            l.credited += e.amount as u64;
        }
        for s in self.all_setls() {
            let paid = s.acct_pay.0 + s.wallet_pay.0 + s.mulaid.0;
            l.paid_institutions += paid;
            if s.cancelled {
                l.returned_by_cancellations += paid;
            }
        }
        l.paid_contributions = self.contributions.iter().map(|c| c.amount.0).sum();
        (l.in_flight, l.fed_sent, l.fed_received) = self.fed.recompute_ledger();
        l
    }

    fn check_counters(&self) -> Result<(), String> {
        type Key = (Period, u8, usize);
        let mut stats: BTreeMap<Key, (u64, u64)> = BTreeMap::new();
        // One person-time (or transfer) of `amount` in a cell.
        let count = |stats: &mut BTreeMap<Key, (u64, u64)>, key: Key, amount: Fen| {
            let cell = stats.entry(key).or_default();
            *cell = (cell.0 + 1, cell.1 + amount.0);
        };
        let mut recon: BTreeMap<(u32, i32), ReconTotals> = BTreeMap::new();
        let hot = &self.persons.hot;
        let first_day = self.recon_first_day();
        for s in self.all_setls().filter(|s| !s.cancelled) {
            let day = cst_day(s.time);
            if day >= first_day {
                recon.entry((s.inst, day)).or_default().apply(&s, true);
            }
            if !s.mulaid.is_zero() {
                let channel = if s.cross_pool {
                    Channel::DrawCrossPool
                } else {
                    Channel::DrawSamePool
                };
                let key = (
                    period_of(s.time),
                    admdvs_province(hot[s.psn as usize].admdvs),
                    channel as usize,
                );
                count(&mut stats, key, s.mulaid);
            }
        }
        for c in self.contributions.iter() {
            let (pa, pb) = (hot[c.payer as usize].admdvs, hot[c.psn as usize].admdvs);
            let channel = if admdvs_pool(pa) == admdvs_pool(pb) {
                Channel::DrawSamePool
            } else {
                Channel::DrawCrossPool
            };
            let key = (period_of(c.time), admdvs_province(pb), channel as usize);
            count(&mut stats, key, c.amount);
        }
        let accepted = self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::WalletIn);
        let mut forgotten_in: BTreeMap<Period, (u64, u64)> = BTreeMap::new();
        for e in accepted {
            if let super::ledger::EntryRef::Exchange(id) = e.reference {
                // A cross-engine transfer accepted here: counted by the sender's province;
                // a forgotten one's province went with its record, so it is checked per
                // month below, over the provinces together.
                let Some((province, amount)) = self.fed.accepted_cell(id)? else {
                    let t = forgotten_in.entry(period_of(e.time)).or_default();
                    *t = (t.0 + 1, t.1 + e.amount as u64);
                    continue;
                };
                let key = (
                    period_of(e.time),
                    province,
                    Channel::WalletCrossProvince as usize,
                );
                count(&mut stats, key, amount);
                continue;
            }
            let super::ledger::EntryRef::Transfer(id) = e.reference else {
                return Err("wallet_in entry without a transfer".into());
            };
            let t = self.transfers.get(id as usize - 1);
            let channel = if t.cross_province {
                Channel::WalletCrossProvince
            } else {
                Channel::WalletInProvince
            };
            let key = (
                period_of(e.time),
                admdvs_province(hot[t.from as usize].admdvs),
                channel as usize,
            );
            count(&mut stats, key, t.amount);
        }
        let cross_province = Channel::WalletCrossProvince as usize;
        for (period, month) in &self.stats.months {
            for (slot, cells) in month.iter().enumerate() {
                for (channel, cell) in cells.iter().enumerate() {
                    let key = (*period, super::counters::PROVINCES[slot], channel);
                    let mut want = stats.remove(&key).unwrap_or_default();
                    let forgotten = forgotten_in.get_mut(period);
                    if let (Some(f), true) = (forgotten, channel == cross_province) {
                        // What the records do not explain, up to the forgotten month's total.
                        let more = (
                            cell.count.saturating_sub(want.0).min(f.0),
                            cell.amount.0.saturating_sub(want.1).min(f.1),
                        );
                        *f = (f.0 - more.0, f.1 - more.1);
                        want = (want.0 + more.0, want.1 + more.1);
                    }
                    if (cell.count, cell.amount.0) != want {
                        return Err(format!("statistics {key:?}: {cell:?} != {want:?}"));
                    }
                }
            }
        }
        if let Some((key, _)) = stats.into_iter().find(|(_, v)| v.0 > 0) {
            return Err(format!("statistics {key:?} missing"));
        }
        if let Some((period, left)) = forgotten_in.iter().find(|(_, v)| **v != (0, 0)) {
            return Err(format!(
                "statistics {period}: forgotten exchanges accepted {left:?} not counted"
            ));
        }
        for (key, totals) in self.recon.iter() {
            if recon.remove(&key).unwrap_or_default() != *totals {
                return Err(format!("reconciliation {key:?} differs"));
            }
        }
        match recon.into_iter().next() {
            Some((key, _)) => Err(format!("reconciliation {key:?} missing")),
            None => Ok(()),
        }
    }

    /// Each person's entries end at the balance, and every entry is in its person's list.
    fn check_entry_lists(&self) -> Result<(), String> {
        let mut listed = 0usize;
        for psn in 0..self.persons.len() as u32 {
            // The newest entry of each ledger holds its balance.
            let mut balc = [None, None];
            let mut at = self.persons.hot[psn as usize].entry_tail;
            while at != 0 {
                let e = self.entries.get(at as usize - 1);
                if e.psn != psn || e.prev >= at {
                    return Err(format!("entry {at} in the list of person {psn}"));
                }
                listed += 1;
                balc[usize::from(e.wallet)].get_or_insert(e.balc);
                at = e.prev;
            }
            if balc[0].unwrap_or(Fen::ZERO) != self.persons.hot[psn as usize].acct
                || balc[1].unwrap_or(Fen::ZERO) != self.persons.hot[psn as usize].wallet
            {
                return Err(format!("person {psn}: entries do not end at the balance"));
            }
        }
        // Each list is its person's and strictly descending, so no entry is listed twice:
        // listing as many as there are means every entry is in its person's list.
        if listed != self.entries.len() {
            return Err(format!("{listed} entries listed of {}", self.entries.len()));
        }
        Ok(())
    }

    /// Binding limits and links, and every pending transfer in the expiry queue.
    fn check_bindings(&self) -> Result<(), String> {
        for psn in 0..self.persons.len() as u32 {
            let given = self.given(psn).count();
            let received = self.received(psn).count();
            if given > usize::from(self.params.binding_receivers_max)
                || received > usize::from(self.params.binding_givers_max)
            {
                return Err(format!("person {psn} exceeds binding limits"));
            }
        }
        let active = self.bindings.iter().filter(|b| b.active).count();
        let linked: usize = (0..self.persons.len() as u32)
            .map(|p| self.given(p).count())
            .sum();
        if active != linked {
            return Err(format!("{active} active bindings but {linked} linked"));
        }
        // The hot transfers only (cold ones: `check_cold_records`); a queued one is hot.
        let first = self.transfers.cold_len();
        let mut queued = vec![false; self.transfers.len() - first];
        for &(_, q) in &self.expiry_queue {
            match queued.get_mut((q as usize).wrapping_sub(first)) {
                Some(slot) => *slot = true,
                None => return Err(format!("queued transfer {} is not hot", q + 1)),
            }
        }
        for (i, transfer) in self.transfers.hot_iter().enumerate() {
            let t = first + i;
            if transfer.status == TransferStatus::Pending && !queued[i] {
                return Err(format!(
                    "pending transfer {} not in the expiry queue",
                    t + 1
                ));
            }
            self.check_transfer_source(t, &transfer)?;
        }
        Ok(())
    }
}
