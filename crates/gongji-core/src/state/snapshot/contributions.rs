//! The contributions section and the (person, year) pairs already paid.

use super::bytes::{Dec, Enc};
use super::*;

/// The (person, year) pairs whose contribution is paid.
type Paid = FxHashSet<(u32, u16)>;

/// The (person, year) pairs paid are written from the contributions themselves, which hold
/// exactly one per pair (`State::check` compares the set with them), so a frozen state needs
/// no copy of the set.
pub(super) fn encode_contributions(contributions: &Chunked<Contribution>, e: &mut Enc<'_>) {
    e.count(contributions.len());
    for c in contributions {
        e.put(c.payer);
        e.put(c.psn);
        e.put(c.year);
        e.put(c.amount);
        e.put(c.time);
        e.put(c.acct_balc);
    }
    let mut paid: Vec<(u32, u16)> = contributions.iter().map(|c| (c.psn, c.year)).collect();
    paid.sort_unstable();
    e.count(paid.len());
    for (psn, year) in paid {
        e.put(psn);
        e.put(year);
    }
}

pub(super) fn decode_contributions(d: &mut Dec<'_>, n: usize) -> Res<(Vec<Contribution>, Paid)> {
    let count = d.count(CONTRIBUTION_BYTES, "contribution count")?;
    let contributions = d.records(count, CONTRIBUTION_BYTES, |_, r| {
        Ok(Contribution {
            payer: r.index(n, "contribution payer")?,
            psn: r.index(n, "contribution person")?,
            year: r.get(),
            amount: r.get(),
            time: r.get(),
            acct_balc: r.get(),
        })
    })?;
    let count = d.count(PAID_BYTES, "contributions paid count")?;
    let mut contributions_paid = FxHashSet::with_capacity_and_hasher(count, Default::default());
    let mut prev = None;
    d.records(count, PAID_BYTES, |_, r| {
        let key = (r.index(n, "contribution paid person")?, r.get::<u16>());
        if prev.is_some_and(|prev| prev >= key) {
            return Err("contributions paid not ascending");
        }
        prev = Some(key);
        contributions_paid.insert(key);
        Ok(())
    })?;
    Ok((contributions, contributions_paid))
}
