//! Read views: plain data the HTTP layer renders. Queries never change the state.

use super::counters::{Cell, ReconTotals};
use super::ledger::Counterparty;
use super::{Scope, State};
use crate::command::{
    Actor, InstCode, InstType, Insutype, MsgidScope, PersonStatus, PsnNo, Relation, Role,
};
use crate::reply::{ErrCode, Rejection, Reply};
use crate::time::Period;
use crate::{Fen, TransferSource};

pub use super::bindings::Scope as BindingScope;
pub use super::counters::Cell as StatsCell;
pub use super::ledger::Counterparty as EntryCounterparty;
pub use super::ledger::EntryKind;
pub use super::ledger::EntryRef;
pub use super::recent::RECENT_SETTLEMENTS_MAX;
pub use super::wallet::TransferStatus;

pub use super::wallet::TransferStatus as TransferState;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonView {
    pub psn_no: PsnNo,
    pub certno_masked: String,
    pub psn_name_masked: String,
    pub insutype: Insutype,
    pub admdvs: u32,
    pub status: PersonStatus,
    pub acct_balc: Fen,
    pub wallet_open: bool,
    pub wallet_balc: Fen,
    pub bindings_given: Vec<BindingView>,
    pub bindings_received: Vec<BindingView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingView {
    pub binding_id: u64,
    pub giver_psn_no: PsnNo,
    pub receiver_psn_no: PsnNo,
    pub relation: Relation,
    pub scope: Scope,
    /// 1 for the receiver's first active giver; 0 once revoked.
    pub priority: u32,
    pub active: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstitutionView {
    pub fixmedins_code: InstCode,
    pub fixmedins_name: String,
    pub fixmedins_type: InstType,
    pub admdvs: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementView {
    pub setl_id: u64,
    pub psn_no: PsnNo,
    pub fixmedins_code: InstCode,
    pub setl_time: i64,
    pub medfee_sumamt: Fen,
    pub fund_pay_sumamt: Fen,
    pub psn_part_amt: Fen,
    pub acct_pay: Fen,
    pub wallet_pay: Fen,
    pub acct_mulaid_pay: Fen,
    pub psn_cash_pay: Fen,
    pub mulaid_details: Vec<(PsnNo, Fen)>,
    pub acct_balc: Fen,
    pub wallet_balc: Fen,
    pub cancelled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferView {
    pub transfer_id: u64,
    pub from_psn_no: PsnNo,
    pub to_psn_no: PsnNo,
    pub amount: Fen,
    pub source: TransferSource,
    pub cross_province: bool,
    pub status: TransferStatus,
    pub created: i64,
    pub expires_at: i64,
    /// The sender's (account, wallet) balances after the hold: only in a creation's reply.
    pub sender_balances: Option<(Fen, Fen)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContributionView {
    pub contribution_id: u64,
    pub payer_psn_no: PsnNo,
    pub psn_no: PsnNo,
    pub year: u16,
    pub amount: Fen,
    pub acct_balc: Fen,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryView {
    pub entry_id: u64,
    pub time: i64,
    pub kind: EntryKind,
    /// Signed fen: negative leaves the account or wallet.
    pub amount: i64,
    pub wallet: bool,
    pub balc: Fen,
    pub counterparty: Option<String>,
    pub reference: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsView {
    pub total: Cell,
    pub account_draw: Cell,
    pub same_pool: Cell,
    pub cross_pool: Cell,
    pub wallet_transfer: Cell,
    pub in_province: Cell,
    pub cross_province: Cell,
}

impl StatsView {
    /// Cell by cell: the national table of a federation is the sum of its engines' (each
    /// figure is counted on one engine only: a cross-engine transfer on the receiver's).
    pub fn plus(self, o: StatsView) -> StatsView {
        StatsView {
            total: self.total.plus(o.total),
            account_draw: self.account_draw.plus(o.account_draw),
            same_pool: self.same_pool.plus(o.same_pool),
            cross_pool: self.cross_pool.plus(o.cross_pool),
            wallet_transfer: self.wallet_transfer.plus(o.wallet_transfer),
            in_province: self.in_province.plus(o.in_province),
            cross_province: self.cross_province.plus(o.cross_province),
        }
    }
}

pub type ReconView = ReconTotals;

/// Largest page of entries.
pub const ENTRIES_LIMIT_MAX: u32 = 1_000;

/// A page of a person's entries, oldest first, and the `after` of the next page, if any.
pub type EntriesPage = Result<(Vec<EntryView>, Option<u64>), Rejection>;

impl State {
    pub fn person(&self, psn_no: &str) -> Result<PersonView, Rejection> {
        Ok(self.person_view(self.person_index(psn_no)?))
    }

    pub fn institution(&self, code: &str) -> Result<InstitutionView, Rejection> {
        Ok(self.institution_view(self.institution_index(code)?))
    }

    pub fn settlement(&self, setl_id: u64) -> Result<SettlementView, Rejection> {
        Ok(self.settlement_view(self.settlement_index(setl_id)?))
    }

    /// The newest settlements made at institution `fixmedins_code` (at most
    /// [`RECENT_SETTLEMENTS_MAX`]), newest first, cancelled ones included (marked); `None` when
    /// there is no such institution. Kept per institution, so no history is walked.
    pub fn recent_settlements(&self, fixmedins_code: &str) -> Option<Vec<SettlementView>> {
        let inst = self.insts.find(fixmedins_code)?;
        Some(
            self.recent
                .of(inst)
                .map(|s| self.settlement_view(s))
                .collect(),
        )
    }

    pub fn settlement_view(&self, s: u32) -> SettlementView {
        let setl = self.setl(s);
        let start = setl.details_start as usize;
        let details = self
            .details
            .range(start..start + usize::from(setl.details_len));
        SettlementView {
            setl_id: u64::from(s) + 1,
            psn_no: self.persons.psn_no_array(setl.psn),
            fixmedins_code: self.insts.list[setl.inst as usize].code,
            setl_time: setl.time,
            medfee_sumamt: setl.medfee,
            fund_pay_sumamt: setl.fund_pay,
            psn_part_amt: setl.psn_part(),
            acct_pay: setl.acct_pay,
            wallet_pay: setl.wallet_pay,
            acct_mulaid_pay: setl.mulaid,
            psn_cash_pay: setl.cash,
            mulaid_details: details
                .map(|d| (self.persons.psn_no_array(d.giver), d.amount))
                .collect(),
            acct_balc: setl.acct_balc,
            wallet_balc: setl.wallet_balc,
            cancelled: setl.cancelled,
        }
    }

    pub fn transfer(&self, transfer_id: u64) -> Result<TransferView, Rejection> {
        Ok(self.transfer_view(self.transfer_index(transfer_id)?, false))
    }

    pub fn binding(&self, binding_id: u64) -> Result<BindingView, Rejection> {
        Ok(self.binding_view(self.binding_index(binding_id)?))
    }

    /// A person's entries, oldest first, after entry `after` (exclusive), at most `limit`.
    /// Returns the page and the id to pass as `after` for the next page, if there is one.
    pub fn entries(&self, psn_no: &str, after: Option<u64>, limit: u32) -> EntriesPage {
        let psn = self.person_index(psn_no)?;
        self.entries_upto(psn, after, limit, self.entries.len() as u32)
    }

    /// [`State::entries`] of person `psn` among the first `made` entries (those made by an
    /// earlier op: `State::entries_as_of`).
    pub(crate) fn entries_upto(
        &self,
        psn: u32,
        after: Option<u64>,
        limit: u32,
        made: u32,
    ) -> EntriesPage {
        assert!((1..=ENTRIES_LIMIT_MAX).contains(&limit));
        // The list runs newest to oldest: collect the ids after `after`, then page from the
        // oldest end. The walk is as long as the person's entries after `after` (and those
        // made after the first `made`, skipped).
        let stop = match after {
            None => 0,
            Some(id) => super::persons::id_to_index(id, made as usize)
                .filter(|&i| self.entries.get(i).psn == psn)
                .map(|i| i as u32 + 1)
                .ok_or(Rejection::with(
                    ErrCode::BadRequest,
                    "after is not this person's entry",
                ))?,
        };
        let mut ids = Vec::new();
        let mut at = self.persons.hot[psn as usize].entry_tail;
        while at > stop {
            if at <= made {
                ids.push(at);
            }
            at = self.entries.get(at as usize - 1).prev;
        }
        let page: Vec<EntryView> = ids
            .iter()
            .rev()
            .take(limit as usize)
            .map(|&id| self.entry_view(id))
            .collect();
        let next = if ids.len() > page.len() {
            page.last().map(|e| e.entry_id)
        } else {
            None
        };
        Ok((page, next))
    }

    fn entry_view(&self, id: u32) -> EntryView {
        let e = self.entries.get(id as usize - 1);
        EntryView {
            entry_id: u64::from(id),
            time: e.time,
            kind: e.kind,
            amount: e.amount,
            wallet: e.wallet,
            balc: e.balc,
            counterparty: match e.counterparty {
                Counterparty::None => None,
                Counterparty::Person(p) => Some(self.persons.psn_no(p).to_owned()),
                Counterparty::Institution(i) => {
                    Some(self.insts.list[i as usize].code.as_str().to_owned())
                }
            },
            reference: match e.reference {
                EntryRef::Settlement(id) | EntryRef::Transfer(id) | EntryRef::Contribution(id) => {
                    id.to_string()
                }
                EntryRef::Period(p) => Period(p).to_string(),
                EntryRef::Exchange(id) => self.fed.exchange_ref(id),
            },
        }
    }

    /// The statistics table over `from..=to`, for one province or all (rule 17).
    pub fn stats(&self, from: Period, to: Period, province: Option<u8>) -> StatsView {
        stats_view(&self.stats, from, to, province)
    }

    /// A copy of the statistics as they are now, which later ops leave as it is: a pointer per
    /// month (see [`StatsCopy`]).
    pub fn stats_copy(&self) -> StatsCopy {
        StatsCopy(self.stats.clone())
    }

    /// An institution's totals for a CST day (rule 18).
    pub fn reconciliation(&self, code: &str, day: i32) -> Result<ReconView, Rejection> {
        let inst = self.institution_index(code)?;
        if day >= self.recon_first_day() {
            return Ok(self.recon.get(inst, day).copied().unwrap_or_default());
        }
        Ok(self.recon_from_history(inst, day))
    }

    /// An institution's totals for a day whose counters are no longer kept (older than
    /// `RECON_DAYS_KEPT`), summed from its settlements in history: settlements are in time
    /// order, so the day's are one range, found by two binary searches; the range is read in
    /// blocks. Costs a read of the whole day's settlements (of every institution).
    fn recon_from_history(&self, inst: u32, day: i32) -> ReconView {
        let start = |day: i32| i64::from(day) * 86_400 - 8 * 3_600;
        let first_at = |t: i64| {
            let (mut lo, mut hi) = (0, self.setls.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.setls.get(mid).time < t {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        let range = first_at(start(day))..first_at(start(day.saturating_add(1)));
        let mut totals = ReconView::default();
        for (i, s) in range.clone().zip(self.setls.range(range)) {
            if s.inst == inst && !self.cancelled.contains(&(i as u32)) {
                totals.apply(&s, true);
            }
        }
        totals
    }

    /// The actor a token stands for, if the token is known and not revoked.
    pub fn token_actor(&self, token_hash: &[u8; 32]) -> Option<(u64, Actor)> {
        let &i = self.tokens.index.get(token_hash)?;
        let token = &self.tokens.list[i as usize];
        if token.revoked {
            return None;
        }
        let actor = match token.role {
            Role::Admin => Actor::Admin,
            Role::Institution => Actor::Institution(self.insts.list[token.scope as usize].code),
            Role::Person => Actor::Person(self.persons.psn_no_array(token.scope)),
        };
        Some((u64::from(i) + 1, actor))
    }

    /// The op that last created or revoked a token: a token's answer from
    /// [`State::token_actor`] cannot be undone by a crash once this op is durable (0 when
    /// every token change is older than this state's decoding).
    pub fn tokens_changed_op(&self) -> u64 {
        self.tokens.changed_op
    }

    pub fn token_count(&self) -> usize {
        self.tokens.list.len()
    }

    /// The reply of a cancellation: what went back to each source.
    pub fn cancel_view(&self, s: u32) -> SettlementView {
        self.settlement_view(s)
    }

    /// Whether a msgid is remembered in `scope` (applied or blocked).
    pub fn msgid_known(&self, scope: MsgidScope<'_>, msgid: &str) -> bool {
        self.msgids
            .get(super::msgids::msgid_key(scope, msgid))
            .is_some()
    }

    /// The remembered reply of a msgid applied in `scope`.
    pub fn reply_of(&self, scope: MsgidScope<'_>, msgid: &str) -> Option<Reply> {
        self.msgids
            .get(super::msgids::msgid_key(scope, msgid))
            .and_then(|r| r.into_owned().reply)
    }

    /// Msgid records held: queued, and in the section of the snapshot the state was decoded
    /// from or last adopted (whose forgotten records stay until the next one is adopted).
    pub fn msgid_count(&self) -> usize {
        self.msgids.len()
    }

    /// Msgid records in the queue: those made since the last snapshot adopted.
    pub fn msgids_queued(&self) -> usize {
        self.msgids.queued_len()
    }
}

/// The statistics as they were after some op ([`State::stats_copy`]): a server answers
/// statistics reads from the copy taken after the last durable batch, without the state's lock.
#[derive(Clone, Debug, Default)]
pub struct StatsCopy(super::Stats);

impl StatsCopy {
    /// [`State::stats`] as it was when the copy was taken.
    pub fn stats(&self, from: Period, to: Period, province: Option<u8>) -> StatsView {
        stats_view(&self.0, from, to, province)
    }
}

fn stats_view(stats: &super::Stats, from: Period, to: Period, province: Option<u8>) -> StatsView {
    let [same_pool, cross_pool, in_province, cross_province] = stats.sum(from, to, province);
    let account_draw = same_pool.plus(cross_pool);
    let wallet_transfer = in_province.plus(cross_province);
    StatsView {
        total: account_draw.plus(wallet_transfer),
        account_draw,
        same_pool,
        cross_pool,
        wallet_transfer,
        in_province,
        cross_province,
    }
}
