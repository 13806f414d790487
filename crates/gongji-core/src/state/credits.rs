//! Monthly crediting of personal accounts (rule 16) and resident contributions (rule 15).

use super::counters::Channel;
use super::ledger::{Counterparty, EntryKind, EntryRef, LedgerSide, Memo};
use super::views::ContributionView;
use super::{Contribution, Scope, State};
use crate::certno::{admdvs_pool, admdvs_province};
use crate::command::{CreditItem, PsnNo};
use crate::reply::{ErrCode, Rejection, Reply};
use crate::time::{period_of, Period};
use crate::Fen;

impl State {
    /// One atomic batch: every item applies or none does.
    pub(super) fn credit(
        &mut self,
        period: Period,
        items: &[CreditItem],
        time: i64,
    ) -> Result<Reply, Rejection> {
        let mut indexes = Vec::with_capacity(items.len());
        for (n, item) in items.iter().enumerate() {
            indexes.push(self.person_index(&item.psn_no).map_err(|r| r.at_item(n))?);
        }
        let mut sorted: Vec<(u32, usize)> = indexes.iter().copied().zip(0..).collect();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Rejection::new(ErrCode::DuplicateItem).at_item(w[1].1));
        }
        for (n, &i) in indexes.iter().enumerate() {
            if self.persons.is_resident(i) {
                return Err(Rejection::new(ErrCode::NoPersonalAccount).at_item(n));
            }
            if self.persons.credited(i, period) {
                return Err(Rejection::new(ErrCode::AlreadyCredited).at_item(n));
            }
        }
        let memo = Memo {
            kind: EntryKind::Credit,
            time,
            counterparty: Counterparty::None,
            reference: EntryRef::Period(period.0),
        };
        let mut sum = Fen::ZERO;
        for (item, &i) in items.iter().zip(&indexes) {
            self.post(
                LedgerSide::CreditSource,
                LedgerSide::Acct(i),
                item.amount,
                memo,
            );
            self.persons.mark_credited(i, period);
            sum = sum.checked_add(item.amount).expect("batch sum within u64");
        }
        Ok(Reply::Credited {
            count: items.len() as u32,
            sum,
        })
    }

    pub(super) fn contribute(
        &mut self,
        payer_psn_no: &PsnNo,
        psn_no: &PsnNo,
        year: u16,
        amount: Fen,
        time: i64,
    ) -> Result<Reply, Rejection> {
        let payer = self.person_index(payer_psn_no)?;
        let psn = self.person_index(psn_no)?;
        let p = &self.persons;
        if !p.is_resident(psn) {
            return Err(ErrCode::NotResidentInsured.into());
        }
        if p.is_resident(payer) {
            return Err(ErrCode::NoPersonalAccount.into());
        }
        if p.is_suspended(payer) {
            return Err(ErrCode::PersonSuspended.into());
        }
        let binding = self.binding_between(payer, psn).ok_or(ErrCode::NotBound)?;
        if self.bindings[binding as usize].scope != Scope::InProvince {
            return Err(ErrCode::CrossProvinceNotAllowed.into());
        }
        if self.contributions_paid.contains(&(psn, year)) {
            return Err(ErrCode::AlreadyPaid.into());
        }
        if self.persons.hot[payer as usize].acct < amount {
            return Err(ErrCode::InsufficientBalance.into());
        }
        let c = self.contributions.len() as u32;
        let memo = Memo {
            kind: EntryKind::Contribution,
            time,
            counterparty: Counterparty::Person(psn),
            reference: EntryRef::Contribution(u64::from(c) + 1),
        };
        self.post(
            LedgerSide::Acct(payer),
            LedgerSide::ResidentFund,
            amount,
            memo,
        );
        self.contributions_paid.insert((psn, year));
        let acct_balc = self.persons.hot[payer as usize].acct;
        self.contributions.push(Contribution {
            payer,
            psn,
            year,
            amount,
            time,
            acct_balc,
        });
        let (payer_admdvs, psn_admdvs) = (
            self.persons.hot[payer as usize].admdvs,
            self.persons.hot[psn as usize].admdvs,
        );
        let channel = if admdvs_pool(payer_admdvs) == admdvs_pool(psn_admdvs) {
            Channel::DrawSamePool
        } else {
            Channel::DrawCrossPool
        };
        self.stats.add(
            period_of(time),
            admdvs_province(psn_admdvs),
            channel,
            amount,
        );
        Ok(Reply::Contribution(Box::new(self.contribution_view(c))))
    }

    pub(crate) fn contribution_view(&self, c: u32) -> ContributionView {
        let contribution = self.contributions.get(c as usize);
        ContributionView {
            contribution_id: u64::from(c) + 1,
            payer_psn_no: self.persons.psn_no_array(contribution.payer),
            psn_no: self.persons.psn_no_array(contribution.psn),
            year: contribution.year,
            amount: contribution.amount,
            acct_balc: contribution.acct_balc,
        }
    }
}
