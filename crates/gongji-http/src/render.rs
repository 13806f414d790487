//! JSON out: every view rendered with the API's field names, in the API's order. Amounts are
//! strings with two decimals; identifiers are strings; times are CST `YYYY-MM-DD HH:MM:SS`.
//! Rendering is a pure function of the view, so a replayed reply is the same bytes.

use gongji_core::money::format_signed_fen;
use gongji_core::reply::ReversalResult;
use gongji_core::time::{format_cst, Period};
use gongji_core::views::{
    BindingScope, BindingView, ContributionView, EntryView, InstitutionView, PersonView,
    SettlementView, StatsCell, StatsView, TransferView,
};
use gongji_core::{Fen, InstType, Insutype, PersonStatus, Rejection, Reply, State, TransferSource};
use serde_json::{json, Value};

pub(crate) fn money(f: Fen) -> Value {
    Value::String(f.to_string())
}

pub(crate) fn admdvs(a: u32) -> String {
    format!("{a:06}")
}

/// The success envelope.
pub(crate) fn ok(output: Value) -> Value {
    json!({"infcode": 0, "output": output})
}

/// The failure envelope.
pub(crate) fn error(rejection: &Rejection) -> Value {
    json!({"infcode": -1, "err_code": rejection.code.as_str(), "err_msg": rejection.message()})
}

/// The output of an applied (or replayed) write.
pub(crate) fn reply(state: &State, reply: &Reply) -> Value {
    match reply {
        Reply::TokenCreated { token_id } => json!({"token_id": token_id.to_string()}),
        Reply::TokenRevoked { token_id } => {
            json!({"token_id": token_id.to_string(), "status": "revoked"})
        }
        Reply::Enrolled(i) => person(&state.enrolled_view(*i)),
        Reply::Person(p) => person(p),
        Reply::Institution(i) => institution(i),
        Reply::Credited { count, sum } => {
            json!({"credited_count": count, "credited_sumamt": money(*sum)})
        }
        Reply::Bound {
            binding: b,
            priority,
            active,
        } => binding(&state.bound_view(*b, *priority, *active)),
        Reply::Settled(s) => settlement(&state.settlement_view(*s), false),
        Reply::Cancelled(s) => cancellation(&state.settlement_view(*s)),
        Reply::Reversal { omsgid, result } => json!({
            "omsgid": omsgid.as_str(),
            "result": match result {
                ReversalResult::Cancelled => "cancelled",
                ReversalResult::Blocked => "blocked",
            },
        }),
        Reply::Transfer(t) => transfer(t),
        Reply::Contribution(c) => contribution(c),
        Reply::Tick { expired } => json!({"expired": expired}),
    }
}

pub(crate) fn person(p: &PersonView) -> Value {
    json!({
        "psn_no": p.psn_no.as_str(),
        "certno": p.certno_masked,
        "psn_name": p.psn_name_masked,
        "insutype": match p.insutype { Insutype::Employee => "310", Insutype::Resident => "390" },
        "admdvs": admdvs(p.admdvs),
        "status": match p.status { PersonStatus::Active => "active", PersonStatus::Suspended => "suspended" },
        "acct_balc": money(p.acct_balc),
        "wallet_status": if p.wallet_open { "open" } else { "none" },
        "wallet_balc": money(p.wallet_balc),
        "bindings_given": p.bindings_given.iter().map(binding).collect::<Vec<_>>(),
        "bindings_received": p.bindings_received.iter().map(binding).collect::<Vec<_>>(),
    })
}

pub(crate) fn binding(b: &BindingView) -> Value {
    json!({
        "binding_id": b.binding_id.to_string(),
        "giver_psn_no": b.giver_psn_no.as_str(),
        "receiver_psn_no": b.receiver_psn_no.as_str(),
        "relation": b.relation.as_str(),
        "mulaid_scope": match b.scope {
            BindingScope::InProvince => "in_province",
            BindingScope::WalletOnly => "wallet_only",
        },
        "priority": b.priority,
        "status": if b.active { "active" } else { "revoked" },
    })
}

pub(crate) fn institution(i: &InstitutionView) -> Value {
    json!({
        "fixmedins_code": i.fixmedins_code.as_str(),
        "fixmedins_name": i.fixmedins_name,
        "fixmedins_type": match i.fixmedins_type { InstType::Medical => "1", InstType::Pharmacy => "2" },
        "admdvs": admdvs(i.admdvs),
    })
}

pub(crate) fn settlement(s: &SettlementView, with_status: bool) -> Value {
    let mut v = json!({
        "setl_id": s.setl_id.to_string(),
        "psn_no": s.psn_no.as_str(),
        "fixmedins_code": s.fixmedins_code.as_str(),
        "setl_time": format_cst(s.setl_time),
        "medfee_sumamt": money(s.medfee_sumamt),
        "fund_pay_sumamt": money(s.fund_pay_sumamt),
        "psn_part_amt": money(s.psn_part_amt),
        "acct_pay": money(s.acct_pay),
        "wallet_pay": money(s.wallet_pay),
        "acct_mulaid_pay": money(s.acct_mulaid_pay),
        "psn_cash_pay": money(s.psn_cash_pay),
        "mulaid_details": s.mulaid_details.iter()
            .map(|(giver, amount)| json!({"giver_psn_no": giver.as_str(), "amount": money(*amount)}))
            .collect::<Vec<_>>(),
        "acct_balc": money(s.acct_balc),
        "wallet_balc": money(s.wallet_balc),
    });
    if with_status {
        v["status"] = json!(if s.cancelled { "cancelled" } else { "settled" });
    }
    v
}

fn cancellation(s: &SettlementView) -> Value {
    json!({
        "setl_id": s.setl_id.to_string(),
        "status": "cancelled",
        "acct_pay": money(s.acct_pay),
        "wallet_pay": money(s.wallet_pay),
        "acct_mulaid_pay": money(s.acct_mulaid_pay),
        "psn_cash_pay": money(s.psn_cash_pay),
    })
}

pub(crate) fn transfer(t: &TransferView) -> Value {
    let mut v = json!({
        "transfer_id": t.transfer_id.to_string(),
        "from_psn_no": t.from_psn_no.as_str(),
        "to_psn_no": t.to_psn_no.as_str(),
        "amount": money(t.amount),
        "source": match t.source { TransferSource::Acct => "acct", TransferSource::Wallet => "wallet" },
        "scope": if t.cross_province { "cross_province" } else { "in_province" },
        "status": t.status.as_str(),
        "expires_at": format_cst(t.expires_at),
    });
    if let Some((acct, wallet)) = t.sender_balances {
        v["acct_balc"] = money(acct);
        v["wallet_balc"] = money(wallet);
    }
    v
}

fn contribution(c: &ContributionView) -> Value {
    json!({
        "contribution_id": c.contribution_id.to_string(),
        "payer_psn_no": c.payer_psn_no.as_str(),
        "psn_no": c.psn_no.as_str(),
        "year": c.year,
        "amount": money(c.amount),
        "acct_balc": money(c.acct_balc),
    })
}

pub(crate) fn entries(page: &[EntryView], next: Option<u64>) -> Value {
    let entries: Vec<Value> = page
        .iter()
        .map(|e| {
            json!({
                "entry_id": e.entry_id.to_string(),
                "time": format_cst(e.time),
                "kind": e.kind.as_str(),
                "amount": format_signed_fen(e.amount),
                "ledger": if e.wallet { "wallet" } else { "acct" },
                "balc": money(e.balc),
                "counterparty": e.counterparty,
                "ref": e.reference,
            })
        })
        .collect();
    json!({"entries": entries, "next": next.map(|n| n.to_string())})
}

fn cell(c: StatsCell) -> Value {
    json!({"count": c.count, "amount": money(c.amount)})
}

pub(crate) fn stats(from: Period, to: Period, prov: Option<u8>, s: &StatsView) -> Value {
    let mut draw = cell(s.account_draw);
    draw["same_pool"] = cell(s.same_pool);
    draw["cross_pool"] = cell(s.cross_pool);
    let mut wallet = cell(s.wallet_transfer);
    wallet["in_province"] = cell(s.in_province);
    wallet["cross_province"] = cell(s.cross_province);
    json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "prov": prov.map(|p| p.to_string()),
        "total": cell(s.total),
        "account_draw": draw,
        "wallet_transfer": wallet,
    })
}
