//! Each decoder against random bytes and mutated valid encodings. A few seconds each by
//! default; `GONGJI_FUZZ_CASES=10000000 cargo test --release -p gongji-fuzz -- --nocapture`
//! runs ten million inputs per target (README, Reliability). `GONGJI_FUZZ_SEED` picks another
//! seed; a failure prints the input in hex, to paste into a regression test below.

use gongji_fuzz::{cases, run, seeds, targets, Mutator};

#[test]
fn decode_op_survives_random_and_mutated_bytes() {
    // Proves decode_op never panics or over-allocates, and accepts only canonical encodings.
    let seeds = seeds::encoded_ops();
    let mutator = Mutator {
        seeds: &seeds,
        random_len_max: 300,
    };
    let outcome = run("decode_op", cases(1_000_000), &mutator, targets::op);
    // A control: the mutator must reach past the version check, or the run proves little.
    assert!(outcome.accepted > 0, "no mutated op decoded: {outcome:?}");
}

#[test]
fn decode_snapshot_survives_random_and_mutated_bytes() {
    // Proves decode_snapshot never panics or over-allocates, and accepts only canonical bytes.
    let seeds = seeds::snapshots();
    let mutator = Mutator {
        seeds: &seeds,
        random_len_max: 4096,
    };
    let outcome = run(
        "decode_snapshot",
        cases(200_000),
        &mutator,
        targets::snapshot,
    );
    assert!(
        outcome.accepted > 0,
        "no mutated snapshot decoded: {outcome:?}"
    );
}

#[test]
fn journal_recovery_survives_damaged_segments() {
    // Proves recovery over damaged segment bytes never panics or over-allocates, and never
    // yields a record that was not written.
    let seeds = seeds::journals();
    let mutator = Mutator {
        seeds: &seeds,
        random_len_max: 3 * 4096,
    };
    let outcome = run("journal", cases(50_000), &mutator, targets::journal);
    assert!(
        outcome.accepted > 0,
        "no damaged journal recovered: {outcome:?}"
    );
}

#[test]
fn the_seeds_are_accepted() {
    // Proves each target accepts the valid encodings (so a target that refused everything
    // would fail here, not pass vacuously).
    assert!(seeds::encoded_ops().iter().all(|b| targets::op(b)));
    assert!(seeds::snapshots().iter().all(|b| targets::snapshot(b)));
    assert!(seeds::journals().iter().all(|b| targets::journal(b)));
}

#[test]
fn a_hostile_credit_count_is_refused_without_allocating() {
    // Proves the allocation bound bites: a Credit op claiming u32::MAX items is refused and
    // allocates nothing near 4 G items.
    let mut bytes = seeds::encoded_ops()[5].clone();
    // version, tag 1, msgid "m6" (len 1 + 2), time 8, actor 0, body tag 6, period 4: count.
    let at = 2 + 3 + 8 + 1 + 1 + 4;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let refused = gongji_core::codec::decode_op(&bytes).expect_err("refused");
    assert_eq!(
        (refused.offset, refused.what),
        (at + 4, "too many credit items")
    );
    assert!(!targets::op(&bytes));
}

#[test]
fn the_allocation_bound_is_measured() {
    // Proves the counting allocator sees allocations (else every bound would pass vacuously).
    let (_, stats) = gongji_fuzz::alloc::measured(|| std::hint::black_box(vec![0u8; 5 << 20]));
    assert!(stats.bytes_max >= 5 << 20);
    assert!(stats.bytes_total > targets::alloc_bytes_max(0));
}
