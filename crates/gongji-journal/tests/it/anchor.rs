//! Opening from a snapshot anchor after early segments were removed.

use gongji_journal::{
    verify, Anchor, DamageKind, FaultStorage, Journal, JournalError, ReplayError,
};

use crate::common::{append_range, collect, expect_damage, small_config};

/// Journal of 150 records; returns storage, all records and the anchor at op 60.
fn built() -> (FaultStorage, Vec<crate::common::Rec>, Anchor) {
    let fault = FaultStorage::new();
    let (mut journal, _) = Journal::open(fault.clone(), small_config(), None).unwrap();
    let records = append_range(&mut journal, 0, 150, 10);
    let mut anchor = None;
    journal
        .replay(59, |r| {
            anchor.get_or_insert(Anchor {
                op: r.op,
                chain_hash: r.chain_hash,
            });
            Ok::<(), ()>(())
        })
        .unwrap();
    (fault, records, anchor.unwrap())
}

#[test]
fn open_with_anchor_after_removing_early_segments() {
    // Proves segments wholly before the anchor can be removed and the journal reopens from
    // the anchor, replaying exactly the records after it.
    let (fault, records, anchor) = built();
    let (mut journal, _) = Journal::open(fault.clone(), small_config(), Some(anchor)).unwrap();
    let removed = journal.remove_segments_before(anchor.op + 1).unwrap();
    assert!(removed >= 1);
    let first_op = journal.first_op();
    assert!(first_op > 1 && first_op <= anchor.op + 1);
    drop(journal);

    let (journal, recovery) = Journal::open(fault.clone(), small_config(), Some(anchor)).unwrap();
    assert_eq!(recovery.first_op, Some(first_op));
    assert_eq!(recovery.head.op, 150);
    assert_eq!(
        collect(&journal, anchor.op),
        records[anchor.op as usize..].to_vec()
    );
    let err = journal.replay(0, |_| Ok::<(), ()>(())).unwrap_err();
    assert!(matches!(
        err,
        ReplayError::Journal(JournalError::ReplayRange { .. })
    ));
    drop(journal);

    let no_anchor = Journal::open(fault.clone(), small_config(), None).map(|_| ());
    assert!(matches!(
        expect_damage(no_anchor).kind,
        DamageKind::NotFromGenesis { .. }
    ));
    let wrong = Anchor {
        op: anchor.op,
        chain_hash: [9; 32],
    };
    let damage = expect_damage(verify(&fault, &small_config(), Some(wrong)));
    assert_eq!(
        damage.kind,
        DamageKind::AnchorChainMismatch {
            anchor_op: anchor.op
        }
    );
    let early = Anchor {
        op: 3,
        chain_hash: [0; 32],
    };
    let damage = expect_damage(verify(&fault, &small_config(), Some(early)));
    assert!(matches!(
        damage.kind,
        DamageKind::AnchorGap { anchor_op: 3, .. }
    ));
    let beyond = Anchor {
        op: 400,
        chain_hash: [0; 32],
    };
    let damage = expect_damage(verify(&fault, &small_config(), Some(beyond)));
    assert_eq!(
        damage.kind,
        DamageKind::EndsBeforeAnchor {
            anchor_op: 400,
            last_op: 150
        }
    );
}

#[test]
fn remove_segments_keeps_the_last_and_partial_segments() {
    // Proves removal only takes segments whose every record is below the given op and never
    // the last segment.
    let (fault, _, _) = built();
    let (mut journal, _) = Journal::open(fault, small_config(), None).unwrap();
    let total = journal.segments_total();
    assert_eq!(journal.remove_segments_before(1).unwrap(), 0);
    assert_eq!(journal.remove_segments_before(u64::MAX).unwrap(), total - 1);
    assert_eq!(journal.segments_total(), 1);
    assert!(journal.first_op() <= 150);
}

#[test]
fn empty_journal_starts_at_the_anchor() {
    // Proves a journal with no segments opened from an anchor continues numbering and the
    // chain from it, and reopens from the same anchor.
    let fault = FaultStorage::new();
    let anchor = Anchor {
        op: 41,
        chain_hash: [5; 32],
    };
    let (mut journal, recovery) =
        Journal::open(fault.clone(), small_config(), Some(anchor)).unwrap();
    assert_eq!(recovery.head, anchor);
    assert_eq!(journal.append(0, b"next").unwrap(), 42);
    journal.sync().unwrap();
    let (journal, recovery) = Journal::open(fault, small_config(), Some(anchor)).unwrap();
    assert_eq!(recovery.first_op, Some(42));
    assert_eq!(collect(&journal, 41), vec![(42, 0, b"next".to_vec())]);
}

#[test]
fn a_start_from_an_anchor_reads_only_the_segments_it_replays() {
    // Proves: a segment that ends before the anchor is not read when opening from the anchor
    // (a bit flipped in it does not stop the start, and the records after the anchor replay
    // exactly), its records still count in the recovery report, and a scan from genesis, as
    // `verify` runs it, finds the damage.
    let (fault, records, anchor) = built();
    let names = crate::common::segment_names(&fault);
    assert!(names.len() >= 3, "the journal spans segments: {names:?}");
    let offsets = crate::common::record_offsets(&fault, &names[0]);
    fault.flip_bit(&names[0], offsets[1] + 3, 2);

    let (journal, recovery) = Journal::open(fault.clone(), small_config(), Some(anchor)).unwrap();
    assert_eq!(recovery.records_total, 150);
    assert_eq!(recovery.first_op, Some(1));
    assert_eq!(
        collect(&journal, anchor.op),
        records[anchor.op as usize..].to_vec()
    );
    drop(journal);
    assert!(verify(&fault, &small_config(), None).is_err());
}
