//! JSON out: every view rendered with the API's field names, in the API's order. Amounts are
//! strings with two decimals; identifiers are strings; times are CST `YYYY-MM-DD HH:MM:SS`.
//! Rendering is a pure function of the view, so a replayed reply is the same bytes.
//!
//! The envelopes ([`Envelope`]) and the settlement, the reply of the hot path, are serialized
//! straight from their views into the reply's bytes; the other, rarer shapes are built as
//! `serde_json::Value` trees first, which is shorter to read and fast enough for them.

use gongji_core::money::format_signed_fen;
use gongji_core::reply::ReversalResult;
use gongji_core::time::{format_cst, Period};
use gongji_core::views::{
    BindingScope, BindingView, ContributionView, EntryView, InstitutionView, PersonView,
    SettlementView, StatsCell, StatsView, TransferView,
};
use gongji_core::{Fen, InstType, Insutype, PersonStatus, Rejection, Reply, State, TransferSource};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

pub(crate) fn money(f: Fen) -> Value {
    Value::String(f.to_string())
}

/// An amount as the API writes it (`"12.30"`), serialized without an intermediate tree.
struct Money(Fen);

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

pub(crate) fn admdvs(a: u32) -> String {
    format!("{a:06}")
}

/// A write's or a read's output.
#[derive(Debug)]
pub(crate) enum Output {
    /// A settlement; with its `status` (a read) or without (the write's reply).
    Settlement(SettlementView, bool),
    Value(Value),
}

impl Serialize for Output {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Output::Settlement(view, with_status) => SettlementOut(view, *with_status).serialize(s),
            Output::Value(v) => v.serialize(s),
        }
    }
}

/// The success envelope (`{"infcode": 0, "output": …}`) or the failure envelope.
#[derive(Debug)]
pub(crate) enum Envelope {
    Ok(Output),
    Err(Rejection),
}

impl Envelope {
    /// The envelope with a batch item's `"status"` after its other fields.
    pub fn with_status(&self, status: u16) -> impl Serialize + '_ {
        Enveloped(self, Some(status))
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Enveloped(self, None).serialize(s)
    }
}

struct Enveloped<'a>(&'a Envelope, Option<u16>);

impl Serialize for Enveloped<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self.0 {
            Envelope::Ok(output) => {
                map.serialize_entry("infcode", &0)?;
                map.serialize_entry("output", output)?;
            }
            Envelope::Err(rejection) => {
                map.serialize_entry("infcode", &-1)?;
                map.serialize_entry("err_code", rejection.code.as_str())?;
                map.serialize_entry("err_msg", &rejection.message())?;
            }
        }
        if let Some(status) = self.1 {
            map.serialize_entry("status", &status)?;
        }
        map.end()
    }
}

/// The success envelope.
pub(crate) fn ok(output: Value) -> Envelope {
    Envelope::Ok(Output::Value(output))
}

/// The failure envelope.
pub(crate) fn error(rejection: &Rejection) -> Envelope {
    Envelope::Err(*rejection)
}

/// `{"results": [envelope + status, …]}`, the output of `POST /v1/batch`.
pub(crate) struct BatchResults(pub Vec<(u16, Envelope)>);

impl Serialize for BatchResults {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Items<'a>(&'a [(u16, Envelope)]);
        impl Serialize for Items<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for (status, envelope) in self.0 {
                    seq.serialize_element(&envelope.with_status(*status))?;
                }
                seq.end()
            }
        }
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("results", &Items(&self.0))?;
        map.end()
    }
}

/// A settlement in the API's field order.
struct SettlementOut<'a>(&'a SettlementView, bool);

impl Serialize for SettlementOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Details<'a>(&'a [(gongji_core::PsnNo, Fen)]);
        impl Serialize for Details<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for (giver, amount) in self.0 {
                    seq.serialize_element(&Detail(giver.as_str(), *amount))?;
                }
                seq.end()
            }
        }
        struct Detail<'a>(&'a str, Fen);
        impl Serialize for Detail<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("giver_psn_no", self.0)?;
                map.serialize_entry("amount", &Money(self.1))?;
                map.end()
            }
        }
        let v = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("setl_id", &v.setl_id.to_string())?;
        map.serialize_entry("psn_no", v.psn_no.as_str())?;
        map.serialize_entry("fixmedins_code", v.fixmedins_code.as_str())?;
        map.serialize_entry("setl_time", &format_cst(v.setl_time))?;
        map.serialize_entry("medfee_sumamt", &Money(v.medfee_sumamt))?;
        map.serialize_entry("fund_pay_sumamt", &Money(v.fund_pay_sumamt))?;
        map.serialize_entry("psn_part_amt", &Money(v.psn_part_amt))?;
        map.serialize_entry("acct_pay", &Money(v.acct_pay))?;
        map.serialize_entry("wallet_pay", &Money(v.wallet_pay))?;
        map.serialize_entry("acct_mulaid_pay", &Money(v.acct_mulaid_pay))?;
        map.serialize_entry("psn_cash_pay", &Money(v.psn_cash_pay))?;
        map.serialize_entry("mulaid_details", &Details(&v.mulaid_details))?;
        map.serialize_entry("acct_balc", &Money(v.acct_balc))?;
        map.serialize_entry("wallet_balc", &Money(v.wallet_balc))?;
        if self.1 {
            let status = if v.cancelled { "cancelled" } else { "settled" };
            map.serialize_entry("status", status)?;
        }
        map.end()
    }
}

/// The output of an applied (or replayed) write.
pub(crate) fn reply(state: &State, reply: &Reply) -> Output {
    if let Reply::Settled(s) = reply {
        return Output::Settlement(state.settlement_view(*s), false);
    }
    Output::Value(match reply {
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
        Reply::Settled(_) => unreachable!("rendered above"),
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
    })
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
