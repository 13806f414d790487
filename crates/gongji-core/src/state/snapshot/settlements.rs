//! The settlements section and the giver details they own.

use super::bytes::{Dec, Enc};
use super::*;

pub(super) fn encode_settlements(
    setls: &Chunked<Settlement>,
    details: &Chunked<Detail>,
    e: &mut Enc<'_>,
) {
    e.count(setls.len());
    for s in setls {
        e.put(s.psn);
        e.put(s.inst);
        e.put(s.time);
        for v in [
            s.medfee,
            s.fund_pay,
            s.acct_pay,
            s.wallet_pay,
            s.mulaid,
            s.cash,
            s.acct_balc,
            s.wallet_balc,
        ] {
            e.put(v);
        }
        e.put(s.details_start);
        e.put(s.details_len);
        e.bool(s.cross_pool);
        e.bool(s.cancelled);
    }
    e.count(details.len());
    for d in details {
        e.put(d.giver);
        e.put(d.amount);
    }
}

pub(super) fn decode_settlements(
    d: &mut Dec<'_>,
    n: usize,
    n_insts: usize,
) -> Res<(Vec<Settlement>, Vec<Detail>)> {
    let setls_at = d.pos + 8;
    let count = d.count(SETTLEMENT_BYTES, "settlement count")?;
    let setls = d.records(count, SETTLEMENT_BYTES, |_, r| {
        let psn = r.index(n, "settlement person")?;
        let inst = r.index(n_insts, "settlement institution")?;
        let time = r.get();
        let medfee = r.get();
        let fund_pay: Fen = r.get();
        if fund_pay > medfee {
            return Err("fund exceeds medfee");
        }
        Ok(Settlement {
            psn,
            inst,
            time,
            medfee,
            fund_pay,
            acct_pay: r.get(),
            wallet_pay: r.get(),
            mulaid: r.get(),
            cash: r.get(),
            acct_balc: r.get(),
            wallet_balc: r.get(),
            details_start: r.get(),
            details_len: r.get(),
            cross_pool: r.bool()?,
            cancelled: r.bool()?,
        })
    })?;
    let count = d.count(DETAIL_BYTES, "detail count")?;
    let details = d.records(count, DETAIL_BYTES, |_, r| {
        Ok(Detail {
            giver: r.index(n, "detail giver")?,
            amount: r.get(),
        })
    })?;
    // Details are appended settlement by settlement: the ranges tile the vector.
    let mut next_detail = 0u64;
    for (s, setl) in setls.iter().enumerate() {
        if u64::from(setl.details_start) != next_detail {
            return fail(setls_at + s * SETTLEMENT_BYTES, "settlement details range");
        }
        next_detail += u64::from(setl.details_len);
    }
    if next_detail != details.len() as u64 {
        return fail(setls_at, "settlement details do not cover the details");
    }
    Ok((setls, details))
}
