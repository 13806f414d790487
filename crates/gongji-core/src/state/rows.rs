//! Read-only access to every record by index, for the SQL projection (`gongji-pg`): it keeps
//! a replica of the state, applies each journaled op and writes the records an op added or
//! changed. Nothing here changes the state.

use super::counters::{Cell, PROVINCES};
use super::ledger::{Counterparty, EntryKind, EntryRef};
use super::{Scope, Settlement, State, TransferStatus};
use crate::command::{InstType, Insutype, PersonStatus, PsnNo, Relation, TransferSource};
use crate::federation::{EngineId, XStatus, Xid};
use crate::time::Period;
use crate::Fen;

/// A person's current row: identity masked (DOMAIN.md rule 20), balances, flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonRow {
    pub psn_no: String,
    pub certno_masked: String,
    pub psn_name_masked: String,
    pub insutype: Insutype,
    pub admdvs: u32,
    pub status: PersonStatus,
    pub acct_balc: Fen,
    pub wallet_open: bool,
    pub wallet_balc: Fen,
}

/// The fields of a person that change with money, without the identity strings: cheap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersonMoney {
    pub insutype: Insutype,
    pub admdvs: u32,
    pub acct_balc: Fen,
    pub wallet_open: bool,
    pub wallet_balc: Fen,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstitutionRow {
    pub fixmedins_code: String,
    pub fixmedins_name: String,
    pub fixmedins_type: InstType,
    pub admdvs: u32,
}

/// A binding with person indexes; `priority` as in [`super::views::BindingView`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingRow {
    pub giver: u32,
    pub receiver: u32,
    pub relation: Relation,
    pub scope: Scope,
    pub priority: u32,
    pub active: bool,
}

/// A settlement with person and institution indexes (`cross_pool`: some paying giver is in
/// another pooling area, the statistics' split) and the givers who paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementRow {
    pub settlement: Settlement,
    /// (giver index, amount) in the order drawn.
    pub details: Vec<(u32, Fen)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferRow {
    pub from: u32,
    pub to: u32,
    pub amount: Fen,
    pub source: TransferSource,
    pub cross_province: bool,
    pub status: TransferStatus,
    pub created: i64,
    pub expires_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContributionRow {
    pub payer: u32,
    pub psn: u32,
    pub year: u16,
    pub amount: Fen,
    pub time: i64,
    pub acct_balc: Fen,
}

/// One entry with its person index; counterparty and reference as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRow {
    pub psn: u32,
    pub wallet: bool,
    pub kind: EntryKind,
    pub time: i64,
    pub amount: i64,
    pub balc: Fen,
    pub counterparty: Counterparty,
    pub reference: EntryRef,
}

/// An exchange (a cross-engine transfer, docs/FEDERATION.md) this engine holds: its number
/// (what entries name as `EntryRef::Exchange`, stable when records before it are forgotten),
/// its local person's index, and the provinces of both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeRow {
    pub number: u64,
    pub xid: Xid,
    pub outgoing: bool,
    pub peer: EngineId,
    /// The sender (outgoing) or the receiver (incoming), when known here.
    pub person: Option<u32>,
    /// The receiver as the sender named them.
    pub to_psn_no: PsnNo,
    pub to_admdvs: u32,
    pub sender_admdvs: u32,
    pub amount: Fen,
    pub source: TransferSource,
    pub created: i64,
    pub expires_at: i64,
    pub status: XStatus,
    pub reversed: bool,
    /// Receiver side: the sender as the Prepare named them, if kept.
    pub from_psn_no: Option<PsnNo>,
}

impl State {
    /// The exchange `xid`, if this engine holds its record.
    pub fn exchange_row(&self, xid: &Xid) -> Option<ExchangeRow> {
        self.fed.index.get(xid).map(|&i| self.exchange_row_at(i))
    }

    /// The exchange number `number` names (`EntryRef::Exchange`), if its record is held.
    pub fn exchange_row_numbered(&self, number: u64) -> Option<ExchangeRow> {
        self.fed.record_of(number).map(|i| self.exchange_row_at(i))
    }

    /// Every exchange record held, in the order recorded.
    pub fn exchange_rows(&self) -> impl Iterator<Item = ExchangeRow> + '_ {
        (0..self.fed.exchanges.len() as u32).map(|i| self.exchange_row_at(i))
    }

    fn exchange_row_at(&self, i: u32) -> ExchangeRow {
        let x = &self.fed.exchanges[i as usize];
        ExchangeRow {
            number: u64::from(self.fed.slot(i)) + 1,
            xid: x.xid,
            outgoing: x.outgoing,
            peer: x.peer,
            person: x.person,
            to_psn_no: x.to_psn_no,
            to_admdvs: x.to_admdvs,
            sender_admdvs: x.sender_admdvs,
            amount: x.amount,
            source: x.source,
            created: x.created,
            expires_at: x.expires_at,
            status: x.status,
            reversed: x.reversed,
            from_psn_no: x.from_psn_no,
        }
    }
}

impl State {
    pub fn institution_count(&self) -> usize {
        self.insts.list.len()
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.len()
    }

    pub fn settlement_count(&self) -> usize {
        self.setls.len()
    }

    pub fn transfer_count(&self) -> usize {
        self.transfers.len()
    }

    pub fn contribution_count(&self) -> usize {
        self.contributions.len()
    }

    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The index of the person with this psn_no.
    pub fn person_index_of(&self, psn_no: &str) -> Option<u32> {
        self.persons.find(psn_no)
    }

    /// The index of the institution with this code.
    pub fn institution_index_of(&self, code: &str) -> Option<u32> {
        self.insts.find(code)
    }

    pub fn person_row(&self, i: u32) -> PersonRow {
        let p = &self.persons;
        let enrolled = self.enrolled_view(i);
        PersonRow {
            psn_no: p.psn_no(i).to_owned(),
            certno_masked: enrolled.certno_masked,
            psn_name_masked: enrolled.psn_name_masked,
            insutype: enrolled.insutype,
            admdvs: enrolled.admdvs,
            status: if p.is_suspended(i) {
                PersonStatus::Suspended
            } else {
                PersonStatus::Active
            },
            acct_balc: p.hot[i as usize].acct,
            wallet_open: p.wallet_open(i),
            wallet_balc: p.hot[i as usize].wallet,
        }
    }

    pub fn person_money(&self, i: u32) -> PersonMoney {
        let p = &self.persons;
        let hot = &p.hot[i as usize];
        PersonMoney {
            insutype: p.insutype(i),
            admdvs: hot.admdvs,
            acct_balc: hot.acct,
            wallet_open: p.wallet_open(i),
            wallet_balc: hot.wallet,
        }
    }

    pub fn institution_row(&self, i: u32) -> InstitutionRow {
        let inst = self.institution_view(i);
        InstitutionRow {
            fixmedins_code: inst.fixmedins_code.as_str().to_owned(),
            fixmedins_name: inst.fixmedins_name,
            fixmedins_type: inst.fixmedins_type,
            admdvs: inst.admdvs,
        }
    }

    pub fn binding_row(&self, b: u32) -> BindingRow {
        let binding = &self.bindings[b as usize];
        let view = self.binding_view(b);
        BindingRow {
            giver: binding.giver,
            receiver: binding.receiver,
            relation: binding.relation,
            scope: binding.scope,
            priority: view.priority,
            active: binding.active,
        }
    }

    /// The receiver's active bindings in priority order.
    pub fn active_bindings_received_by(&self, psn: u32) -> Vec<u32> {
        self.received(psn).collect()
    }

    pub fn settlement_row(&self, s: u32) -> SettlementRow {
        let setl = self.setl(s);
        let start = setl.details_start as usize;
        SettlementRow {
            settlement: setl,
            details: self
                .details
                .range(start..start + usize::from(setl.details_len))
                .map(|d| (d.giver, d.amount))
                .collect(),
        }
    }

    pub fn transfer_row(&self, t: u32) -> TransferRow {
        let tr = self.transfers.get(t as usize);
        TransferRow {
            from: tr.from,
            to: tr.to,
            amount: tr.amount,
            source: tr.source,
            cross_province: tr.cross_province,
            status: tr.status,
            created: tr.created,
            expires_at: tr.expires_at,
        }
    }

    pub fn contribution_row(&self, c: u32) -> ContributionRow {
        let co = self.contributions.get(c as usize);
        ContributionRow {
            payer: co.payer,
            psn: co.psn,
            year: co.year,
            amount: co.amount,
            time: co.time,
            acct_balc: co.acct_balc,
        }
    }

    /// Entry `e` (0-based: entry id − 1).
    pub fn entry_row(&self, e: u32) -> EntryRow {
        let en = self.entries.get(e as usize);
        EntryRow {
            psn: en.psn,
            wallet: en.wallet,
            kind: en.kind,
            time: en.time,
            amount: en.amount,
            balc: en.balc,
            counterparty: en.counterparty,
            reference: en.reference,
        }
    }

    /// Every statistics cell kept, by month and province: `[same_pool, cross_pool,
    /// in_province, cross_province]` (cells may be zero after cancellations).
    pub fn stats_cells(&self) -> Vec<(Period, u8, [Cell; 4])> {
        let mut out = Vec::new();
        for (period, month) in &self.stats.months {
            for (slot, cells) in month.iter().enumerate() {
                out.push((*period, PROVINCES[slot], *cells));
            }
        }
        out
    }
}
