//! Small seeded distributions for amounts. Floating point is used here only to draw; every
//! amount handed to the engine is integer fen.

use gongji_core::Fen;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A standard normal variate (Box–Muller).
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Log-normal with the given median and shape.
pub fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Mean of a log-normal with this median and shape.
pub fn lognormal_mean(median: f64, sigma: f64) -> f64 {
    median * (sigma * sigma / 2.0).exp()
}

/// Yuan → fen, rounded, at least one fen.
pub fn fen(yuan: f64) -> Fen {
    Fen(((yuan * 100.0).round() as u64).max(1))
}

/// An index drawn by weight.
pub fn weighted(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// Stochastic rounding: `x` rounded up with probability equal to its fraction.
pub fn round_random(rng: &mut ChaCha8Rng, x: f64) -> u64 {
    let floor = x.floor();
    floor as u64 + u64::from(rng.random::<f64>() < x - floor)
}

/// A visit's personally borne part as a mixture: pharmacy purchases (median 45 yuan) and
/// clinic visits (median 150 yuan, a longer tail). Returns (yuan, at a pharmacy).
pub fn visit_amount(rng: &mut ChaCha8Rng) -> (f64, bool) {
    if rng.random_bool(PHARMACY_SHARE) {
        (lognormal(rng, 45.0, 0.8), true)
    } else {
        (lognormal(rng, 150.0, 1.0), false)
    }
}

/// Share of personal-account settlements made at retail pharmacies (assumption).
pub const PHARMACY_SHARE: f64 = 0.6;

/// Mean of [`visit_amount`], to normalise draws to a target mean.
pub fn visit_amount_mean() -> f64 {
    PHARMACY_SHARE * lognormal_mean(45.0, 0.8) + (1.0 - PHARMACY_SHARE) * lognormal_mean(150.0, 1.0)
}

/// Splits `total` fen into parts proportional to `raw` (each at least 1 fen when the total
/// allows), capped per part by `cap`; what a cap cuts goes to parts with room, largest room
/// first. Returns the parts and what could not be placed.
pub fn apportion(total: u64, raw: &[f64], cap: &[u64]) -> (Vec<u64>, u64) {
    assert_eq!(raw.len(), cap.len());
    let n = raw.len();
    if n == 0 {
        return (Vec::new(), total);
    }
    let sum: f64 = raw.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let mut parts: Vec<u64> = raw
        .iter()
        .zip(cap)
        .map(|(r, &c)| (((total as f64) * r / sum).floor() as u64).clamp(1.min(c), c))
        .collect();
    let placed: u64 = parts.iter().sum();
    if placed > total {
        // The floor of one fen overshot a tiny total: take it back from the largest parts.
        let mut over = placed - total;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| parts[b].cmp(&parts[a]).then(a.cmp(&b)));
        for i in order {
            let cut = over.min(parts[i]);
            parts[i] -= cut;
            over -= cut;
            if over == 0 {
                break;
            }
        }
        return (parts, 0);
    }
    let mut left = total - placed;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        (cap[b] - parts[b])
            .cmp(&(cap[a] - parts[a]))
            .then(a.cmp(&b))
    });
    // Spread the rest evenly over those with room, then top up in order of room.
    let with_room = order.iter().filter(|&&i| cap[i] > parts[i]).count() as u64;
    if let Some(each) = left.checked_div(with_room) {
        for &i in &order {
            let add = each.min(cap[i] - parts[i]);
            parts[i] += add;
            left -= add;
        }
    }
    for &i in &order {
        let add = left.min(cap[i] - parts[i]);
        parts[i] += add;
        left -= add;
    }
    (parts, left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn apportion_is_exact_within_caps() {
        // Proves apportion places the whole total when the caps allow, never above a cap.
        let (parts, left) = apportion(1_000, &[1.0, 2.0, 7.0], &[500, 500, 500]);
        assert_eq!(left, 0);
        assert_eq!(parts.iter().sum::<u64>(), 1_000);
        assert!(parts.iter().all(|&p| p <= 500));
        let (parts, left) = apportion(2_000, &[1.0, 1.0], &[700, 800]);
        assert_eq!((parts, left), (vec![700, 800], 500));
        let (parts, left) = apportion(2, &[1.0, 1.0, 1.0], &[10, 10, 10]);
        assert_eq!(parts.iter().sum::<u64>() + left, 2);
    }

    #[test]
    fn visit_amounts_have_the_mixture_mean() {
        // Proves the sampled mean is near the analytic mean the generator normalises by.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 200_000;
        let mean = (0..n).map(|_| visit_amount(&mut rng).0).sum::<f64>() / n as f64;
        let want = visit_amount_mean();
        assert!((mean / want - 1.0).abs() < 0.03, "{mean} vs {want}");
    }
}
