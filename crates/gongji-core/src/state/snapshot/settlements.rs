//! The settlements section (hot records; cold chunks are in history files), the cancelled
//! set, and the giver details.

use super::bytes::{Dec, Enc};
use super::*;
use crate::state::History;

pub(super) fn encode_settlements(
    setls: &History<Settlement>,
    cancelled: &FxHashSet<u32>,
    details: &History<Detail>,
    e: &mut Enc<'_>,
) {
    e.history(setls);
    for s in setls.hot_iter() {
        e.spill();
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
    }
    let mut ids: Vec<u32> = cancelled.iter().copied().collect();
    ids.sort_unstable();
    e.count(ids.len());
    e.col(&ids);
    e.history(details);
    for d in details.hot_iter() {
        e.spill();
        e.put(d.giver);
        e.put(d.amount);
    }
}

pub(super) type Settlements = (History<Settlement>, FxHashSet<u32>, History<Detail>);

pub(super) fn decode_settlements(d: &mut Dec<'_>, n: usize, n_insts: usize) -> Res<Settlements> {
    let setls_at = d.pos + 12;
    let (cold, count) = d.history(SETTLEMENT_BYTES, "settlement count")?;
    let hot = d.records(count, SETTLEMENT_BYTES, |_, r| {
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
            cancelled: false,
        })
    })?;
    let setls = History::from_parts(cold, hot);
    let at = d.pos + 8;
    let count = d.count(4, "cancelled count")?;
    let ids: Vec<u32> = d.col(count)?;
    for (i, &s) in ids.iter().enumerate() {
        if s as usize >= setls.len() || i > 0 && ids[i - 1] >= s {
            return fail(at + i * 4, "cancelled settlement");
        }
    }
    let (cold, count) = d.history(DETAIL_BYTES, "detail count")?;
    let hot = d.records(count, DETAIL_BYTES, |_, r| {
        Ok(Detail {
            giver: r.index(n, "detail giver")?,
            amount: r.get(),
        })
    })?;
    let details = History::from_parts(cold, hot);
    // Details are appended settlement by settlement: the hot settlements' ranges tile the
    // end of the vector (the cold ones are checked by `State::check` in `gongji verify`).
    let first = setls.cold_len();
    let mut next_detail = match first < setls.len() {
        true => u64::from(setls.get(first).details_start),
        false => details.len() as u64,
    };
    for s in first..setls.len() {
        let setl = setls.get(s);
        if u64::from(setl.details_start) != next_detail {
            return fail(
                setls_at + (s - first) * SETTLEMENT_BYTES,
                "settlement details range",
            );
        }
        next_detail += u64::from(setl.details_len);
    }
    let all_hot = setls.cold_chunks() == 0 && details.cold_chunks() == 0;
    if next_detail != details.len() as u64
        || all_hot && setls.iter().next().is_some_and(|s| s.details_start != 0)
    {
        return fail(setls_at, "settlement details do not cover the details");
    }
    Ok((setls, ids.into_iter().collect(), details))
}
