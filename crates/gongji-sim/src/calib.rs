//! The published national figures the simulator is calibrated to, with their sources, and the
//! monthly plan derived from them.
//!
//! Calibration works by quotas, not by luck: at scale 0.001 there are 64 wallet transfers in
//! January to May, so sampling alone would miss the published figures by far more than 2 %.
//! Each published total is scaled and rounded once, then split over the months by weights
//! (largest remainder, so the months add up exactly); the generator steers each month's
//! activity to its quota by reading the engine's own statistics as it goes.
//!
//! Where no figure is published (the monthly shape, the January–May cross-province share,
//! how many person-times are resident contributions) the plan makes an assumption, named
//! beside its number below.

use gongji_core::time::{parse_period, Period};
use gongji_core::Fen;

/// A count (person-times or transfers) and an amount in yuan, national.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figure {
    pub count: f64,
    pub amount_yuan: f64,
}

/// One published statistics table (some cells may be unpublished).
#[derive(Clone, Copy, Debug)]
pub struct Published {
    pub from: &'static str,
    pub to: &'static str,
    /// All family mutual aid: account draws plus wallet transfers.
    pub total: Option<Figure>,
    /// Instant call of a bound giver's account (the account-draw channel).
    pub account_draw: Option<Figure>,
    pub wallet: Option<Figure>,
    pub cross_province: Option<Figure>,
    pub source: &'static str,
}

/// NHSA, reported 2025-06-20 (DOMAIN.md's table).
pub const JAN_MAY_2025: Published = Published {
    from: "2025-01",
    to: "2025-05",
    total: Some(Figure {
        count: 167e6,
        amount_yuan: 22.026e9,
    }),
    account_draw: Some(Figure {
        count: 167e6,
        amount_yuan: 21.982e9,
    }),
    wallet: Some(Figure {
        count: 64_200.0,
        amount_yuan: 43.7031e6,
    }),
    cross_province: None,
    source: "NHSA, reported 2025-06-20 (DOMAIN.md)",
};

/// The whole of 2025, as the issue quotes them: all mutual aid 464 M person-times and
/// 68.77 billion yuan; wallet 1.121 M transfers and 750 M yuan, of which 472,200 and 314 M
/// cross-province. The account-draw row is not published apart; it is total − wallet.
pub const FULL_2025: Published = Published {
    from: "2025-01",
    to: "2025-12",
    total: Some(Figure {
        count: 464e6,
        amount_yuan: 68.77e9,
    }),
    account_draw: None,
    wallet: Some(Figure {
        count: 1.121e6,
        amount_yuan: 750e6,
    }),
    cross_province: Some(Figure {
        count: 472_200.0,
        amount_yuan: 314e6,
    }),
    source: "NHSA figures for 2025 as quoted in issue 6",
};

/// Insured persons at the end of 2024. Employees: 379.5 M, of whom 274.9 M in service and
/// 104.6 M retired (issue 6, NHSA 2024 statistical bulletin). Residents: about 946.9 M,
/// taken as the bulletin's 1,326.4 M insured in all minus the employees (approximate: the
/// repository's documents do not give it).
pub const INSURED_IN_SERVICE_2024: f64 = 274.9e6;
pub const INSURED_RETIRED_2024: f64 = 104.6e6;
pub const INSURED_RESIDENT_2024: f64 = 946.9e6;

/// Designated institutions nationally, hospitals and clinics plus retail pharmacies (order
/// of magnitude, about 1.1 M): only the spread of settlements over institutions depends on it.
pub const INSTITUTIONS_NATIONAL: f64 = 1.1e6;

/// The resident scheme's annual individual contribution used for 2025 and 2026 (the national
/// minimum was 400 yuan in 2024; places differ). Assumption.
pub const RESIDENT_CONTRIBUTION: Fen = Fen(40_000);

/// A month's share of the account-draw person-times that are resident contributions paid by
/// a relative, and the year they pay for. Assumption: late payments for 2025 in January and
/// February (several provinces collect until the end of February); payments for 2026 from
/// September, peaking at the December deadline.
const CONTRIBUTION_SHARE: [(f64, u16); 12] = [
    (0.04, 2025),
    (0.02, 2025),
    (0.0, 2025),
    (0.0, 2025),
    (0.0, 2025),
    (0.0, 2025),
    (0.0, 2025),
    (0.0, 2025),
    (0.01, 2026),
    (0.02, 2026),
    (0.04, 2026),
    (0.08, 2026),
];

/// Monthly shape of account draws (× days in the month). Assumption: no monthly figures are
/// published; the Spring Festival (late January 2025) lowers January and February a little,
/// use grows through the year as more families bind.
const DRAW_SHAPE: [f64; 12] = [
    0.96, 0.97, 1.00, 1.02, 1.04, 1.00, 1.02, 1.04, 1.06, 1.08, 1.10, 1.14,
];

/// Monthly shape of wallet transfers (× days). Assumption: the wallet rolled out through 2025,
/// so transfers grow steeply; the published halves (January–May, June–December) fix the level.
const WALLET_SHAPE: [f64; 12] = [
    0.6, 0.7, 1.0, 1.2, 1.5, 1.0, 1.15, 1.3, 1.45, 1.6, 1.75, 1.9,
];

/// A count and an amount to reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub count: u64,
    pub amount: Fen,
}

/// What one month of 2025 must add to the engine's statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonthPlan {
    pub period: Period,
    /// The account-draw channel (settlements with a giver's part, and contributions).
    pub draw: Target,
    /// How many of `draw.count` are resident contributions paid by a relative.
    pub contributions: u64,
    pub contribution_year: u16,
    pub wallet_in_province: Target,
    pub wallet_cross_province: Target,
}

fn days_in_2025(month: usize) -> f64 {
    [31., 28., 31., 30., 31., 30., 31., 31., 30., 31., 30., 31.][month]
}

/// Splits `total` over `weights` so the parts add up exactly (largest remainder).
pub fn split(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut parts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let mut left = total - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

fn scaled_count(x: f64, scale: f64) -> u64 {
    (x * scale).round() as u64
}

fn scaled_fen(yuan: f64, scale: f64) -> u64 {
    (yuan * 100.0 * scale).round() as u64
}

/// Splits a January–May total and a full-year total over the twelve months: the first five
/// months add up to the January–May figure exactly, all twelve to the full-year figure.
fn split_halves(jan_may: u64, full: u64, shape: &[f64; 12]) -> [u64; 12] {
    let weights: Vec<f64> = (0..12).map(|m| shape[m] * days_in_2025(m)).collect();
    let first = split(jan_may, &weights[..5]);
    let second = split(full.saturating_sub(jan_may), &weights[5..]);
    let mut out = [0; 12];
    for (o, v) in out.iter_mut().zip(first.into_iter().chain(second)) {
        *o = v;
    }
    out
}

/// The cross-province part of a wallet amount: `share` of it, unless one side has no
/// transfers (an amount without a transfer to carry it could never be reached).
fn cross_share_fen(total_fen: u64, share: f64, cross_count: u64, all_count: u64) -> u64 {
    if cross_count == 0 {
        0
    } else if cross_count == all_count {
        total_fen
    } else {
        (total_fen as f64 * share).round() as u64
    }
}

/// Splits the two halves' wallet amounts over the months in proportion to the months'
/// transfers, so that every month's amount has transfers to carry it (at small scales a
/// month may have none).
fn follow_counts(jan_may: u64, full: u64, counts: &[u64; 12]) -> [u64; 12] {
    let weights: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
    let first = split(jan_may, &weights[..5]);
    let second = split(full.saturating_sub(jan_may), &weights[5..]);
    let mut out = [0; 12];
    for (o, v) in out.iter_mut().zip(first.into_iter().chain(second)) {
        *o = v;
    }
    out
}

/// The twelve months of 2025 at population factor `scale`.
pub fn plan_2025(scale: f64) -> Vec<MonthPlan> {
    let jm = JAN_MAY_2025;
    let fy = FULL_2025;
    let (jm_draw, jm_wallet) = (jm.account_draw.unwrap(), jm.wallet.unwrap());
    let (fy_total, fy_wallet, fy_cross) = (
        fy.total.unwrap(),
        fy.wallet.unwrap(),
        fy.cross_province.unwrap(),
    );
    // Full-year account draws are not published apart: total − wallet.
    let fy_draw_count = fy_total.count - fy_wallet.count;
    let fy_draw_amount = fy_total.amount_yuan - fy_wallet.amount_yuan;

    let draw_count = split_halves(
        scaled_count(jm_draw.count, scale),
        scaled_count(fy_draw_count, scale),
        &DRAW_SHAPE,
    );
    let draw_amount = split_halves(
        scaled_fen(jm_draw.amount_yuan, scale),
        scaled_fen(fy_draw_amount, scale),
        &DRAW_SHAPE,
    );
    // January–May cross-province wallet transfers are not published: assume the full year's
    // share (42 % of transfers, 42 % of the amount).
    let jm_wallet_count = scaled_count(jm_wallet.count, scale);
    let jm_wallet_fen = scaled_fen(jm_wallet.amount_yuan, scale);
    let jm_cross_count = (jm_wallet_count as f64 * fy_cross.count / fy_wallet.count).round() as u64;
    let jm_cross_fen = cross_share_fen(
        jm_wallet_fen,
        fy_cross.amount_yuan / fy_wallet.amount_yuan,
        jm_cross_count,
        jm_wallet_count,
    );
    let fy_wallet_count = scaled_count(fy_wallet.count, scale);
    let fy_wallet_fen = scaled_fen(fy_wallet.amount_yuan, scale);
    let fy_cross_count = scaled_count(fy_cross.count, scale);
    let fy_cross_fen = scaled_fen(fy_cross.amount_yuan, scale);
    let cross_count = split_halves(jm_cross_count, fy_cross_count, &WALLET_SHAPE);
    let cross_fen = follow_counts(jm_cross_fen, fy_cross_fen, &cross_count);
    let in_count = split_halves(
        jm_wallet_count - jm_cross_count,
        fy_wallet_count.saturating_sub(fy_cross_count),
        &WALLET_SHAPE,
    );
    let in_fen = follow_counts(
        jm_wallet_fen - jm_cross_fen,
        fy_wallet_fen.saturating_sub(fy_cross_fen),
        &in_count,
    );
    let first = parse_period("2025-01").expect("period");
    (0..12)
        .map(|m| {
            let (share, year) = CONTRIBUTION_SHARE[m];
            let mut contributions = (draw_count[m] as f64 * share).round() as u64;
            // Contributions must leave room for settlements in the month's amount.
            let room = draw_amount[m] / 2 / RESIDENT_CONTRIBUTION.0;
            contributions = contributions.min(room);
            MonthPlan {
                period: Period(first.0 + m as u32),
                draw: Target {
                    count: draw_count[m],
                    amount: Fen(draw_amount[m]),
                },
                contributions,
                contribution_year: year,
                wallet_in_province: Target {
                    count: in_count[m],
                    amount: Fen(in_fen[m]),
                },
                wallet_cross_province: Target {
                    count: cross_count[m],
                    amount: Fen(cross_fen[m]),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_adds_up_and_follows_weights() {
        // Proves the largest-remainder split is exact and proportional.
        let parts = split(64, &[31.0, 28.0, 31.0, 30.0, 31.0]);
        assert_eq!(parts.iter().sum::<u64>(), 64);
        assert_eq!(parts, vec![13, 12, 13, 13, 13]);
        assert_eq!(split(0, &[1.0, 2.0]), vec![0, 0]);
        assert_eq!(split(5, &[0.0, 0.0]), vec![0, 0]);
    }

    #[test]
    fn plan_reproduces_both_published_periods_at_scale() {
        // Proves the monthly quotas add up to the scaled published figures: January–May and
        // the full year, for the account-draw and wallet channels.
        let plan = plan_2025(0.001);
        let sum = |months: &[MonthPlan], f: fn(&MonthPlan) -> Target| {
            months.iter().fold((0u64, 0u64), |(c, a), m| {
                let t = f(m);
                (c + t.count, a + t.amount.0)
            })
        };
        let draw = sum(&plan[..5], |m| m.draw);
        assert_eq!(draw, (167_000, 2_198_200_000));
        let wallet_in = sum(&plan[..5], |m| m.wallet_in_province);
        let wallet_cross = sum(&plan[..5], |m| m.wallet_cross_province);
        assert_eq!(wallet_in.0 + wallet_cross.0, 64);
        assert_eq!(wallet_in.1 + wallet_cross.1, 4_370_310);
        let draw = sum(&plan, |m| m.draw);
        let wallet_in = sum(&plan, |m| m.wallet_in_province);
        let wallet_cross = sum(&plan, |m| m.wallet_cross_province);
        assert_eq!(wallet_cross, (472, 31_400_000));
        assert_eq!(wallet_in.0 + wallet_cross.0, 1_121);
        assert_eq!(wallet_in.1 + wallet_cross.1, 75_000_000);
        assert_eq!(draw.0 + 1_121, 464_000);
        assert_eq!(draw.1 + 75_000_000, 6_877_000_000);
        for scale in [0.001, 0.00001, 0.000002] {
            for m in plan_2025(scale) {
                for t in [m.wallet_in_province, m.wallet_cross_province] {
                    assert!(t.count > 0 || t.amount.is_zero(), "{scale} {m:?}");
                }
            }
        }
        for m in &plan {
            assert!(m.contributions * RESIDENT_CONTRIBUTION.0 < m.draw.amount.0);
        }
    }
}
