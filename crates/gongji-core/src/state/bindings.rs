//! Bindings (共济绑定): a giver's authorisation for one receiver (DOMAIN.md rules 6–8).
//!
//! Active bindings sit in two singly linked lists threaded through the binding records: the
//! giver's list and the receiver's list, each in the order the bindings were made. A revoked
//! binding is unlinked from both, so a walk sees at most the limit (7 by default) and the
//! receiver's list order is the priority order.

use super::views::BindingView;
use super::{Chunked, State};
use crate::certno::admdvs_province;
use crate::command::{PsnNo, Relation};
use crate::reply::{ErrCode, Rejection, Reply};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    InProvince,
    WalletOnly,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::InProvince => "in_province",
            Scope::WalletOnly => "wallet_only",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    pub giver: u32,
    pub receiver: u32,
    pub relation: Relation,
    pub scope: Scope,
    pub active: bool,
    /// Next binding in the giver's list (index + 1; 0: end).
    pub next_given: u32,
    /// Next binding in the receiver's list.
    pub next_received: u32,
}

/// Iterates a binding list from its head (index + 1) through one of the two link fields.
pub(crate) struct BindingIter<'a> {
    bindings: &'a Chunked<Binding>,
    at: u32,
    received: bool,
}

impl Iterator for BindingIter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.at == 0 {
            return None;
        }
        let i = self.at - 1;
        let b = &self.bindings[i as usize];
        self.at = if self.received {
            b.next_received
        } else {
            b.next_given
        };
        Some(i)
    }
}

impl State {
    /// Active bindings the person gives, oldest first.
    pub(crate) fn given(&self, psn: u32) -> BindingIter<'_> {
        let at = self.persons.given_head[psn as usize];
        BindingIter {
            bindings: &self.bindings,
            at,
            received: false,
        }
    }

    /// Active bindings the person receives, in priority order.
    pub(crate) fn received(&self, psn: u32) -> BindingIter<'_> {
        let at = self.persons.hot[psn as usize].received_head;
        BindingIter {
            bindings: &self.bindings,
            at,
            received: true,
        }
    }

    /// The active binding from `giver` to `receiver`, if any.
    pub(crate) fn binding_between(&self, giver: u32, receiver: u32) -> Option<u32> {
        self.given(giver)
            .find(|&b| self.bindings[b as usize].receiver == receiver)
    }

    /// An active binding in either direction (wallet transfers accept either).
    pub(crate) fn bound_either_way(&self, a: u32, b: u32) -> bool {
        self.binding_between(a, b).is_some() || self.binding_between(b, a).is_some()
    }

    pub(super) fn bind(
        &mut self,
        giver_psn_no: &PsnNo,
        receiver_psn_no: &PsnNo,
        relation: Relation,
    ) -> Result<Reply, Rejection> {
        let giver = self.person_index(giver_psn_no)?;
        let receiver = self.person_index(receiver_psn_no)?;
        let p = &self.persons;
        if p.is_resident(giver) {
            return Err(ErrCode::GiverNotEmployeeInsured.into());
        }
        if p.is_suspended(giver) || p.is_suspended(receiver) {
            return Err(ErrCode::PersonSuspended.into());
        }
        if giver == receiver {
            return Err(ErrCode::SelfBinding.into());
        }
        if relation == Relation::Other {
            return Err(ErrCode::RelationNotEligible.into());
        }
        if self.binding_between(giver, receiver).is_some() {
            return Err(ErrCode::BindingExists.into());
        }
        // The limits count a federated engine's live cross-engine bindings too (none on an
        // engine without [federation]).
        let given = self.given(giver).count() + self.fed.live_count(giver, true);
        if given >= usize::from(self.params.binding_receivers_max) {
            return Err(Rejection::with(
                ErrCode::BindingLimit,
                "giver has the most receivers",
            ));
        }
        let received = self.received(receiver).count() + self.fed.live_count(receiver, false);
        if received >= usize::from(self.params.binding_givers_max) {
            return Err(Rejection::with(
                ErrCode::BindingLimit,
                "receiver has the most givers",
            ));
        }
        let same_province = admdvs_province(p.hot[giver as usize].admdvs)
            == admdvs_province(p.hot[receiver as usize].admdvs);
        let scope = if same_province {
            Scope::InProvince
        } else {
            Scope::WalletOnly
        };
        let b = self.bindings.len() as u32;
        self.bindings.push(Binding {
            giver,
            receiver,
            relation,
            scope,
            active: true,
            next_given: 0,
            next_received: 0,
        });
        self.prior_bindings(b);
        self.link(b);
        // Appended at the tail of the receiver's list: its priority is the list's length.
        let priority = self.received(receiver).count() as u32;
        Ok(Reply::Bound {
            binding: b,
            priority,
            active: true,
        })
    }

    /// Appends binding `b` to the tails of its giver's and receiver's lists.
    fn link(&mut self, b: u32) {
        let (giver, receiver) = (
            self.bindings[b as usize].giver,
            self.bindings[b as usize].receiver,
        );
        match self.given(giver).last() {
            None => self.persons.given_head[giver as usize] = b + 1,
            Some(tail) => self.bindings[tail as usize].next_given = b + 1,
        }
        match self.received(receiver).last() {
            None => self.persons.hot[receiver as usize].received_head = b + 1,
            Some(tail) => self.bindings[tail as usize].next_received = b + 1,
        }
    }

    fn unlink(&mut self, b: u32) {
        let Binding {
            giver,
            receiver,
            next_given,
            next_received,
            ..
        } = self.bindings[b as usize].clone();
        match self
            .given(giver)
            .find(|&x| self.bindings[x as usize].next_given == b + 1)
        {
            None => self.persons.given_head[giver as usize] = next_given,
            Some(prev) => self.bindings[prev as usize].next_given = next_given,
        }
        match self
            .received(receiver)
            .find(|&x| self.bindings[x as usize].next_received == b + 1)
        {
            None => self.persons.hot[receiver as usize].received_head = next_received,
            Some(prev) => self.bindings[prev as usize].next_received = next_received,
        }
        let binding = &mut self.bindings[b as usize];
        binding.next_given = 0;
        binding.next_received = 0;
    }

    pub(super) fn revoke(&mut self, binding_id: u64) -> Result<Reply, Rejection> {
        let b = self.binding_index(binding_id)?;
        if !self.bindings[b as usize].active {
            return Err(ErrCode::AlreadyRevoked.into());
        }
        // The priority shown is the one the binding had while active.
        let priority = self.binding_priority(b);
        self.prior_bindings(b);
        self.unlink(b);
        self.bindings[b as usize].active = false;
        Ok(Reply::Bound {
            binding: b,
            priority,
            active: false,
        })
    }

    pub(crate) fn binding_index(&self, binding_id: u64) -> Result<u32, Rejection> {
        super::persons::id_to_index(binding_id, self.bindings.len())
            .map(|i| i as u32)
            .ok_or(Rejection::new(ErrCode::BindingNotFound))
    }

    /// The binding as the API shows it; `priority` is its place among the receiver's active
    /// givers (0 when revoked).
    pub(crate) fn binding_view(&self, b: u32) -> BindingView {
        let binding = &self.bindings[b as usize];
        let priority = self.binding_priority(b);
        self.bound_view(b, priority, binding.active)
    }

    /// Binding `b`'s place among its receiver's active givers (1-based; 0 when revoked).
    fn binding_priority(&self, b: u32) -> u32 {
        let binding = &self.bindings[b as usize];
        if binding.active {
            self.received(binding.receiver)
                .position(|x| x == b)
                .map_or(0, |p| p as u32 + 1)
        } else {
            0
        }
    }

    /// Binding `b` as the API shows it, with the priority and status given: the fields of a
    /// binding's reply ([`Reply::Bound`]) that are not immutable.
    pub fn bound_view(&self, b: u32, priority: u32, active: bool) -> BindingView {
        let binding = &self.bindings[b as usize];
        BindingView {
            binding_id: u64::from(b) + 1,
            giver_psn_no: self.persons.psn_no_array(binding.giver),
            receiver_psn_no: self.persons.psn_no_array(binding.receiver),
            relation: binding.relation,
            scope: binding.scope,
            priority,
            active,
        }
    }

    pub(crate) fn given_views(&self, psn: u32) -> Vec<BindingView> {
        self.given(psn).map(|b| self.binding_view(b)).collect()
    }

    pub(crate) fn received_views(&self, psn: u32) -> Vec<BindingView> {
        self.received(psn).map(|b| self.binding_view(b)).collect()
    }
}
