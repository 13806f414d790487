//! The statistics and reconciliation counters.

use super::bytes::{Dec, Enc};
use super::*;

pub(super) fn encode_stats(stats: &Stats, e: &mut Enc<'_>) {
    e.count(stats.months.len());
    for (period, month) in &stats.months {
        e.put(period.0);
        for cells in month.iter() {
            for cell in cells {
                e.put(cell.count);
                e.put(cell.amount);
            }
        }
    }
}

pub(super) fn decode_stats(d: &mut Dec<'_>) -> Res<Stats> {
    let count = d.count(MONTH_BYTES, "statistics month count")?;
    let mut months = Vec::with_capacity(count);
    let mut prev = None;
    for _ in 0..count {
        let at = d.pos;
        let period = Period(d.get()?);
        if prev.is_some_and(|prev| prev >= period) {
            return fail(at, "statistics months not ascending");
        }
        prev = Some(period);
        let mut month = Box::new([[Cell::default(); 4]; PROVINCES.len()]);
        for cells in month.iter_mut() {
            for cell in cells {
                cell.count = d.get()?;
                cell.amount = d.get()?;
            }
        }
        months.push((period, std::sync::Arc::new(*month)));
    }
    Ok(Stats {
        months: months.into_iter().collect::<BTreeMap<_, _>>(),
    })
}

pub(super) fn encode_recon(recon: &Recon, e: &mut Enc<'_>) {
    let mut recon: Vec<((u32, i32), &ReconTotals)> = recon.iter().collect();
    recon.sort_unstable_by_key(|&(k, _)| k);
    e.count(recon.len());
    for ((inst, day), t) in recon {
        e.put(inst);
        e.put(day);
        e.put(t.setl_count);
        for v in [
            t.medfee_sumamt,
            t.fund_pay_sumamt,
            t.acct_pay,
            t.wallet_pay,
            t.acct_mulaid_pay,
            t.psn_cash_pay,
        ] {
            e.put(v);
        }
    }
}

/// Days before `first_day` are refused: they are forgotten as the clock passes, so no state
/// holds one (and a decoded snapshot re-encodes to the same bytes).
pub(super) fn decode_recon(d: &mut Dec<'_>, insts: usize, first_day: i32) -> Res<Recon> {
    let count = d.count(RECON_BYTES, "reconciliation count")?;
    let mut recon = Recon::default();
    let mut prev = None;
    d.records(count, RECON_BYTES, |_, r| {
        let key = (
            r.index(insts, "reconciliation institution")?,
            r.get::<i32>(),
        );
        if prev.is_some_and(|prev| prev >= key) {
            return Err("reconciliation not ascending");
        }
        prev = Some(key);
        if key.1 < first_day {
            return Err("reconciliation day older than the days kept");
        }
        let totals = ReconTotals {
            setl_count: r.get(),
            medfee_sumamt: r.get(),
            fund_pay_sumamt: r.get(),
            acct_pay: r.get(),
            wallet_pay: r.get(),
            acct_mulaid_pay: r.get(),
            psn_cash_pay: r.get(),
        };
        *recon.entry(key.0, key.1) = totals;
        Ok(())
    })?;
    Ok(recon)
}
