//! The calibrated simulation through the real engine (journal on), at a small scale.

use gongji_core::time::parse_period;
use gongji_sim::calib::plan_2025;
use gongji_sim::runner::{simulate, worst_error_pct, SimulateOptions};

fn opts(scale: f64, from: &str, to: &str) -> SimulateOptions {
    SimulateOptions {
        scale,
        from: parse_period(from).unwrap(),
        to: parse_period(to).unwrap(),
        seed: 5,
        data: None,
        progress: false,
    }
}

#[test]
fn the_engine_statistics_land_on_the_monthly_quotas_and_survive_in_the_journal() {
    // Proves: steering by the engine's own statistics makes the account-draw channel land
    // exactly on the plan's quotas for each month, wallet transfers within one transfer of
    // theirs, money is conserved, and the data directory (journal) recovers to the same table.
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(0.00002, "2025-01", "2025-02");
    o.data = Some(dir.path().join("data"));
    let report = simulate(&o).expect("simulation runs");
    report.check.as_ref().expect("state check");
    let plan = plan_2025(0.00002);
    let draw: (u64, u64) = plan[..2]
        .iter()
        .fold((0, 0), |(c, a), m| (c + m.draw.count, a + m.draw.amount.0));
    assert_eq!(
        (
            report.stats.account_draw.count,
            report.stats.account_draw.amount.0
        ),
        draw
    );
    let wallet: u64 = plan[..2]
        .iter()
        .map(|m| m.wallet_in_province.count + m.wallet_cross_province.count)
        .sum();
    assert!(report.stats.wallet_transfer.count.abs_diff(wallet) <= 1);
    assert_eq!(
        report.stats.total.count,
        report.stats.account_draw.count + report.stats.wallet_transfer.count
    );
    assert!(report.tally.applied > 20_000, "{:?}", report.tally);
    // Ghost reversals are the only refusals the calibrated workload means to provoke, besides
    // the rare binding of a person suspended in the meantime.
    for code in report.tally.rejected.keys() {
        assert!(["REVERSED", "PERSON_SUSPENDED"].contains(code), "{report}");
    }
    let text = report.to_string();
    assert!(
        text.contains("instant call of a bound giver's account"),
        "{text}"
    );
    assert!(text.contains("no published figures"), "{text}");
    assert_eq!(worst_error_pct(&report), None);

    let (state, _, _) =
        gongji_server::inspect(&gongji_server::Config::new(dir.path().join("data"))).unwrap();
    assert_eq!(state.stats(o.from, o.to, None), report.stats);

    // A directory that already holds data is refused.
    let again = simulate(&o).expect_err("a used directory is refused");
    assert!(again.contains("already holds data"), "{again}");
    // So is one where `gongji serve` has only written its admin token (at today's clock).
    let served = dir.path().join("served");
    let (engine, _) = gongji_server::Engine::open(gongji_server::Config::new(&served)).unwrap();
    engine.shutdown().unwrap();
    drop(engine);
    o.data = Some(served);
    let err = simulate(&o).expect_err("a served directory is refused");
    assert!(err.contains("already holds data"), "{err}");
}

#[test]
fn a_published_range_prints_errors_against_the_scaled_figures() {
    // Proves the January–May table compares with the published figures × scale: at this tiny
    // scale the account-draw cells are exact and the error column is computed from them.
    let report = simulate(&opts(0.00001, "2025-01", "2025-05")).expect("simulation runs");
    let text = report.to_string();
    assert!(text.contains("NHSA, reported 2025-06-20"), "{text}");
    let draw = report.stats.account_draw;
    assert_eq!((draw.count, draw.amount.0), (1_670, 21_982_000));
    assert!(text.contains("1,670     1,670  +0.00 %"), "{text}");
    assert!(worst_error_pct(&report).is_some());
}

#[test]
fn bad_ranges_and_scales_are_refused() {
    // Proves the options are checked before anything is written.
    for (scale, from, to) in [
        (0.001, "2024-12", "2025-05"),
        (0.001, "2025-01", "2026-01"),
        (0.001, "2025-05", "2025-01"),
        (0.0, "2025-01", "2025-05"),
        (-1.0, "2025-01", "2025-05"),
        (f64::NAN, "2025-01", "2025-05"),
        (0.5, "2025-01", "2025-05"),
    ] {
        let err = simulate(&opts(scale, from, to)).expect_err("refused");
        assert!(err.contains("--"), "{err}");
    }
}
