//! The contributions section (hot records; full chunks are in history files) and the
//! (person, year) pairs already paid.

use super::bytes::{Dec, Enc};
use super::*;

/// The (person, year) pairs whose contribution is paid.
type Paid = FxHashSet<(u32, u16)>;

/// The (person, year) pairs paid, sorted, are the contributions' (exactly one per pair:
/// `State::check` compares the set with them). A live or decoded state writes them from its
/// set; a frozen state, which leaves the set out (copying it would pause the writer), from
/// the contributions, reading the cold chunks on the snapshot thread. Format 6 writes the
/// count of cold chunks and the hot records; earlier formats every record (tests only).
pub(super) fn encode_contributions(
    contributions: &History<Contribution>,
    paid: &Paid,
    version: u32,
    e: &mut Enc<'_>,
) {
    let records = if version >= 6 {
        e.history(contributions);
        contributions.hot_iter()
    } else {
        e.count(contributions.len());
        contributions.iter()
    };
    for c in records {
        e.spill();
        e.put(c.payer);
        e.put(c.psn);
        e.put(c.year);
        e.put(c.amount);
        e.put(c.time);
        e.put(c.acct_balc);
    }
    let mut paid: Vec<(u32, u16)> = if paid.len() == contributions.len() {
        paid.iter().copied().collect()
    } else {
        contributions.iter().map(|c| (c.psn, c.year)).collect()
    };
    paid.sort_unstable();
    e.count(paid.len());
    for (psn, year) in paid {
        e.spill();
        e.put(psn);
        e.put(year);
    }
}

pub(super) fn decode_contributions(
    d: &mut Dec<'_>,
    n: usize,
    version: u32,
) -> Res<(History<Contribution>, Paid)> {
    let (cold, count) = if version >= 6 {
        d.history(CONTRIBUTION_BYTES, "contribution count")?
    } else {
        (0, d.count(CONTRIBUTION_BYTES, "contribution count")?)
    };
    let hot = d.records(count, CONTRIBUTION_BYTES, |_, r| {
        Ok(Contribution {
            payer: r.index(n, "contribution payer")?,
            psn: r.index(n, "contribution person")?,
            year: r.get(),
            amount: r.get(),
            time: r.get(),
            acct_balc: r.get(),
        })
    })?;
    let contributions = History::from_parts(cold, hot);
    let at = d.pos;
    let count = d.count(PAID_BYTES, "contributions paid count")?;
    if count != contributions.len() {
        return fail(at, "contributions paid count");
    }
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
