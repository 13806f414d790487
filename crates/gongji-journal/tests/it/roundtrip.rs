//! Append, sync, reopen, replay.

use gongji_journal::{
    verify, Anchor, FaultStorage, Journal, JournalConfig, JournalError, GENESIS_CHAIN_HASH,
};
use proptest::prelude::*;

use crate::common::{append_range, collect, small_config};

#[test]
fn records_survive_reopen_across_many_segments() {
    // Proves records appended across many small segments replay identically after reopen,
    // with the same head hash, and that appending continues the chain after reopen.
    let fault = FaultStorage::new();
    let (mut journal, recovery) = Journal::open(fault.clone(), small_config(), None).unwrap();
    assert_eq!(recovery.records_total, 0);
    assert_eq!(recovery.head, Anchor::GENESIS);
    let mut expected = append_range(&mut journal, 0, 200, 7);
    let head = journal.head();
    assert_eq!(head.op, 200);
    assert!(
        journal.segments_total() > 5,
        "segments: {}",
        journal.segments_total()
    );
    drop(journal);

    let (mut journal, recovery) = Journal::open(fault.clone(), small_config(), None).unwrap();
    assert_eq!(recovery.records_total, 200);
    assert_eq!(recovery.first_op, Some(1));
    assert_eq!(recovery.head, head);
    assert_eq!(recovery.torn_tail, None);
    assert_eq!(collect(&journal, 0), expected);
    assert_eq!(collect(&journal, 150), expected[150..].to_vec());

    expected.extend(append_range(&mut journal, 200, 30, 4));
    drop(journal);
    let (journal, _) = Journal::open(fault.clone(), small_config(), None).unwrap();
    assert_eq!(collect(&journal, 0), expected);
    let report = verify(&fault, &small_config(), None).unwrap();
    assert_eq!(report.records_total, 230);
    assert_eq!(report.head, journal.head());
}

#[test]
fn empty_bodies_and_max_bodies_round_trip() {
    // Proves zero-length and maximal bodies are framed correctly and a maximal record always
    // fits in a fresh segment.
    let config = JournalConfig {
        segment_size_bytes: 1024,
        body_bytes_max: 512,
        batch_bytes_max: 4096,
    };
    let fault = FaultStorage::new();
    let (mut journal, _) = Journal::open(fault.clone(), config, None).unwrap();
    let bodies: Vec<Vec<u8>> = vec![vec![], vec![0xAB; 512], vec![], vec![1; 512], vec![2; 511]];
    for body in &bodies {
        journal.append(-5, body).unwrap();
    }
    let stats = journal.sync().unwrap();
    assert_eq!(stats.records, 5);
    assert!(stats.segments_created >= 2);
    let (journal, _) = Journal::open(fault, config, None).unwrap();
    let got: Vec<Vec<u8>> = collect(&journal, 0).into_iter().map(|r| r.2).collect();
    assert_eq!(got, bodies);
}

#[test]
fn rejected_appends_do_not_poison() {
    // Proves BodyTooLarge and BatchFull leave the journal usable and consume no op number.
    let config = JournalConfig {
        segment_size_bytes: 4096,
        body_bytes_max: 512,
        batch_bytes_max: 1200,
    };
    let (mut journal, _) = Journal::open(FaultStorage::new(), config, None).unwrap();
    assert!(matches!(
        journal.append(0, &[0; 513]),
        Err(JournalError::BodyTooLarge { .. })
    ));
    assert_eq!(journal.append(0, &[1; 500]).unwrap(), 1);
    assert_eq!(journal.append(0, &[2; 500]).unwrap(), 2);
    assert!(matches!(
        journal.append(0, &[3; 500]),
        Err(JournalError::BatchFull { .. })
    ));
    journal.sync().unwrap();
    assert_eq!(journal.append(0, &[3; 500]).unwrap(), 3);
    journal.sync().unwrap();
    assert_eq!(journal.durable_head().op, 3);
    assert!(
        journal.replay(5, |_| Ok::<(), ()>(())).is_err(),
        "op 5 is beyond the head"
    );
}

#[test]
fn replay_requires_synced_appends_and_forwards_visitor_errors() {
    // Proves replay refuses while appends are buffered and returns the visitor's own error.
    let (mut journal, _) = Journal::open(FaultStorage::new(), small_config(), None).unwrap();
    journal.append(1, b"a").unwrap();
    let err = journal.replay(0, |_| Ok::<(), ()>(())).unwrap_err();
    assert!(matches!(
        err,
        gongji_journal::ReplayError::Journal(JournalError::UnsyncedAppends)
    ));
    journal.sync().unwrap();
    let err = journal.replay(0, |_| Err("stop")).unwrap_err();
    assert!(matches!(err, gongji_journal::ReplayError::Visitor("stop")));
    assert_eq!(
        journal.head().chain_hash,
        gongji_journal::format::chain_next(&GENESIS_CHAIN_HASH, 1, 1, b"a")
    );
}

#[test]
fn sync_writes_once_per_segment_and_syncs_once_without_roll() {
    // Proves group commit: a batch within one segment costs one write and one fsync.
    let fault = FaultStorage::new();
    let (mut journal, _) = Journal::open(fault.clone(), small_config(), None).unwrap();
    journal.append(0, b"first").unwrap();
    journal.sync().unwrap();
    let (writes, syncs) = (fault.writes_total(), fault.syncs_total());
    for i in 0..5 {
        journal.append(i, &[i as u8; 50]).unwrap();
    }
    let stats = journal.sync().unwrap();
    assert_eq!((stats.files_synced, stats.segments_created), (1, 0));
    assert_eq!(fault.writes_total() - writes, 1);
    assert_eq!(fault.syncs_total() - syncs, 1);
    assert_eq!(
        journal.sync().unwrap(),
        Default::default(),
        "empty sync does nothing"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_bodies_round_trip(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=512), 0..80),
        batch in 1usize..10,
        segment_size_bytes in 700u64..5000,
    ) {
        // Proves any sequence of bodies/batch sizes/segment sizes replays exactly after reopen.
        let config = JournalConfig { segment_size_bytes, body_bytes_max: 512, batch_bytes_max: 1 << 20 };
        let fault = FaultStorage::new();
        let (mut journal, _) = Journal::open(fault.clone(), config, None).unwrap();
        for (i, body) in bodies.iter().enumerate() {
            journal.append(i as i64, body).unwrap();
            if (i + 1) % batch == 0 {
                journal.sync().unwrap();
            }
        }
        journal.sync().unwrap();
        let head = journal.head();
        let (journal, recovery) = Journal::open(fault, config, None).unwrap();
        prop_assert_eq!(recovery.head, head);
        prop_assert_eq!(recovery.torn_tail, None);
        let got = collect(&journal, 0);
        prop_assert_eq!(got.len(), bodies.len());
        for (i, (op, time, body)) in got.into_iter().enumerate() {
            prop_assert_eq!(op, i as u64 + 1);
            prop_assert_eq!(time, i as i64);
            prop_assert_eq!(&body, &bodies[i]);
        }
    }
}
