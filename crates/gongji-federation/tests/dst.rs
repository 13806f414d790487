//! The federation's deterministic simulation over a bounded number of seeds (the command
//! `gongji federation dst --seeds N` runs any number): every seed must end with every exchange
//! closed the same way on both sides, every cross-engine binding held alike by both engines,
//! money conserved per engine and nationally, and every acknowledged reply kept; then, after
//! forgetting at quiescence, every exchange record gone, the figures unchanged, and stale
//! copies of every message ever sent refused or answered without changing anything. The
//! checker must also catch planted violations.

use gongji_federation::dst::{run, FedDstOptions};

/// Seeds 1 to 12 pass, and together they exercised what they claim to: crashes, lost, doubled
/// and damaged messages, forged messages refused, client resends, every outcome, and
/// cross-engine bindings made, refused and revoked.
#[test]
fn bounded_seeds_pass_and_exercise_the_faults() {
    let mut totals = std::collections::BTreeMap::new();
    let mut bindings = std::collections::BTreeMap::new();
    let (mut binds, mut unbinds) = (0, 0);
    let (mut crashes, mut dropped, mut duplicated, mut damaged, mut forged, mut resent) =
        (0, 0, 0, 0, 0, 0);
    let (mut exchanges, mut forgotten, mut forgotten_links, mut stale_refused) = (0, 0, 0, 0);
    for seed in 1..=12 {
        let report = run(&FedDstOptions::new(seed)).unwrap_or_else(|e| panic!("{e}"));
        println!("{report}");
        for (outcome, n) in &report.outcomes {
            *totals.entry(*outcome).or_insert(0) += n;
        }
        for (status, n) in &report.bindings {
            *bindings.entry(*status).or_insert(0) += n;
        }
        binds += report.binds_acked;
        unbinds += report.unbinds_acked;
        crashes += report.crashes;
        dropped += report.bus.dropped;
        duplicated += report.bus.duplicated;
        damaged += report.damaged_refused;
        forged += report.forged_refused;
        resent += report.client_retries;
        exchanges += report.exchanges;
        forgotten += report.forgotten_exchanges;
        forgotten_links += report.forgotten_bindings;
        stale_refused += report.stale_refused;
        // Forgetting at quiescence: every exchange record went (both sides of each).
        assert_eq!(
            report.held_exchanges, 0,
            "seed {seed}: exchange records held"
        );
        assert_eq!(report.held_bindings, 0, "seed {seed}: binding records held");
        assert_eq!(
            report.forgotten_exchanges,
            2 * report.exchanges,
            "seed {seed}"
        );
    }
    assert!(exchanges > 0 && forgotten_links > 0 && stale_refused > 0);
    assert_eq!(forgotten, 2 * exchanges);
    for outcome in ["accepted", "declined", "expired", "blocked"] {
        assert!(
            totals.get(outcome).copied().unwrap_or(0) > 0,
            "no {outcome}: {totals:?}"
        );
    }
    assert!(crashes > 0 && dropped > 0 && duplicated > 0 && damaged > 0);
    assert!(forged > 0 && resent > 0);
    for status in ["active", "refused", "revoked"] {
        assert!(
            bindings.get(status).copied().unwrap_or(0) > 0,
            "no {status} binding: {bindings:?}"
        );
    }
    assert!(binds > 0 && unbinds > 0);
}

/// A seed is reproducible: the same seed gives the same run.
#[test]
fn a_seed_reproduces_its_run() {
    let a = run(&FedDstOptions::new(7)).expect("seed 7");
    let b = run(&FedDstOptions::new(7)).expect("seed 7");
    assert_eq!(format!("{a}"), format!("{b}"));
}

/// Money from nowhere (a receiver accepts a transfer no engine sent) fails the run, and the
/// failure names its seed.
#[test]
fn the_checker_catches_a_planted_violation() {
    let mut opts = FedDstOptions::new(3);
    opts.sabotage = true;
    let err = run(&opts).expect_err("the sabotage must be caught");
    assert!(
        err.contains("seed 3") && err.contains("--from-seed 3"),
        "{err}"
    );
    assert!(err.contains("one side only"), "{err}");
}

/// A binding one engine holds and its peer never made fails the run.
#[test]
fn the_checker_catches_a_binding_known_to_one_side() {
    let mut opts = FedDstOptions::new(5);
    opts.sabotage_binding = true;
    let err = run(&opts).expect_err("the sabotage must be caught");
    assert!(err.contains("seed 5") && err.contains("binding"), "{err}");
    assert!(err.contains("one side only"), "{err}");
}
