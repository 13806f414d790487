//! The header sections: province parameters and the ledger totals.

use super::bytes::{Dec, Enc};
use super::*;

pub(super) fn encode_params(p: &Params, e: &mut Enc<'_>) {
    e.put(p.binding_receivers_max);
    e.put(p.binding_givers_max);
    e.put(p.wallet_amount_max);
    e.put(p.wallet_daily_count_max);
    e.put(p.wallet_closed_from_second);
    e.put(p.wallet_closed_until_second);
    e.put(p.wallet_expiry_second);
    for s in p.draw_order {
        e.put(s as u8);
    }
    e.put(p.msgid_retention_days);
}

pub(super) fn decode_params(d: &mut Dec<'_>) -> Res<Params> {
    let at = d.pos;
    let params = Params {
        binding_receivers_max: d.get()?,
        binding_givers_max: d.get()?,
        wallet_amount_max: d.get()?,
        wallet_daily_count_max: d.get()?,
        wallet_closed_from_second: d.get()?,
        wallet_closed_until_second: d.get()?,
        wallet_expiry_second: d.get()?,
        draw_order: [
            d.tag(&DRAW_SOURCES, "draw source")?,
            d.tag(&DRAW_SOURCES, "draw source")?,
            d.tag(&DRAW_SOURCES, "draw source")?,
        ],
        msgid_retention_days: d.get()?,
    };
    params.validate().or_else(|what| fail(at, what))?;
    Ok(params)
}

pub(super) fn encode_ledger(l: &Ledger, e: &mut Enc<'_>) {
    // The federation's sides (in flight, sent, received) are in the federation section.
    for v in [
        l.acct_total,
        l.wallet_total,
        l.held,
        l.credited,
        l.paid_institutions,
        l.returned_by_cancellations,
        l.paid_contributions,
    ] {
        e.put(v);
    }
}

pub(super) fn decode_ledger(d: &mut Dec<'_>) -> Res<Ledger> {
    Ok(Ledger {
        acct_total: d.get()?,
        wallet_total: d.get()?,
        held: d.get()?,
        credited: d.get()?,
        paid_institutions: d.get()?,
        returned_by_cancellations: d.get()?,
        paid_contributions: d.get()?,
        ..Ledger::default()
    })
}
