//! Crash injection: every write and sync of a scripted workload, under every crash mode.

use gongji_journal::{verify, CrashMode, FaultStorage, Journal, JournalConfig, TornTail};

use crate::common::{body_for, collect, record_offsets, segment_names, small_config, Rec};

const SCRIPT: [u64; 12] = [3, 1, 5, 2, 8, 1, 4, 6, 2, 3, 7, 1];

#[derive(Debug, Default)]
struct Outcome {
    appended: Vec<Rec>,
    /// Records covered by a sync that returned Ok.
    acked: usize,
}

/// Runs the script until the first storage error.
fn run_workload(fault: &FaultStorage) -> Outcome {
    let mut outcome = Outcome::default();
    let (mut journal, _) = Journal::open(fault.clone(), small_config(), None).unwrap();
    for batch in SCRIPT {
        for _ in 0..batch {
            let i = outcome.appended.len() as u64;
            let body = body_for(i);
            let op = journal.append(i as i64, &body).unwrap();
            outcome.appended.push((op, i as i64, body));
        }
        if journal.sync().is_err() {
            assert!(journal.is_poisoned());
            assert!(
                journal.append(0, b"x").is_err(),
                "poisoned journal refuses appends"
            );
            assert!(journal.sync().is_err(), "poisoned journal refuses sync");
            return outcome;
        }
        outcome.acked = outcome.appended.len();
    }
    outcome
}

/// Recovers from `crashed` under `mode` and checks the prefix property; returns the torn
/// tail the recovery cut.
fn check_recovery(crashed: &FaultStorage, mode: CrashMode, outcome: &Outcome) -> Option<TornTail> {
    let context = format!("mode {mode:?}, acked {}", outcome.acked);
    let storage = crashed.after_crash(mode);
    let (mut journal, recovery) = Journal::open(storage.clone(), small_config(), None)
        .unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
    let got = collect(&journal, 0);
    assert!(
        got.len() >= outcome.acked,
        "{context}: lost acked records ({})",
        got.len()
    );
    assert!(
        got.len() <= outcome.appended.len(),
        "{context}: invented records"
    );
    assert_eq!(
        got[..],
        outcome.appended[..got.len()],
        "{context}: not a prefix"
    );
    assert_eq!(recovery.records_total, got.len() as u64);

    // The recovered journal must be fully usable.
    journal.append(7, b"after recovery").unwrap();
    journal.sync().unwrap();
    let report = verify(&storage, &small_config(), None).unwrap();
    assert_eq!(report.records_total, got.len() as u64 + 1, "{context}");
    assert_eq!(report.torn_tail, None, "{context}: cut was not durable");
    recovery.torn_tail
}

fn modes(k: u64) -> Vec<CrashMode> {
    let mut modes = vec![CrashMode::DropUnsynced, CrashMode::KeepUnsynced];
    modes.extend((0..6).map(|s| CrashMode::Torn { seed: k * 1000 + s }));
    modes
}

#[test]
fn every_crash_point_recovers_a_prefix_with_all_acked_batches() {
    // Proves: for a crash at every write and every sync of the workload, under lost, kept
    // and torn unsynced data, recovery yields exactly a prefix of the appended records that
    // contains every batch whose sync returned Ok; and torn tails are cut and reported.
    let clean = FaultStorage::new();
    let full = run_workload(&clean);
    assert_eq!(full.acked, SCRIPT.iter().sum::<u64>() as usize);
    assert!(
        segment_names(&clean).len() >= 3,
        "workload must roll segments"
    );
    let (writes, syncs) = (clean.writes_total(), clean.syncs_total());
    let mut torn_tails = Vec::new();
    let mut points = 0;
    for arm_write in [true, false] {
        let total = if arm_write { writes } else { syncs };
        for k in 1..=total {
            let fault = FaultStorage::new();
            if arm_write {
                fault.set_crash_at_write(k);
            } else {
                fault.set_crash_at_sync(k);
            }
            let outcome = run_workload(&fault);
            assert!(fault.is_crashed(), "crash point {k} not reached");
            for mode in modes(k) {
                torn_tails.extend(check_recovery(&fault, mode, &outcome));
            }
            points += 1;
        }
    }
    assert!(points >= 30, "only {points} crash points");
    assert!(
        torn_tails.iter().any(|t| !t.whole_file && t.bytes > 0),
        "no torn record cut"
    );
    assert!(
        torn_tails.iter().any(|t| t.whole_file),
        "no torn segment creation cut"
    );
}

#[test]
fn torn_unsynced_batch_is_cut_at_the_record_boundary_with_byte_count() {
    // Proves a batch torn mid-write is cut exactly after the last complete record, the cut
    // bytes are reported, and the cut is durable (verify afterwards finds no torn tail).
    let config = JournalConfig {
        segment_size_bytes: 64 * 1024,
        body_bytes_max: 512,
        batch_bytes_max: 1 << 20,
    };
    let fault = FaultStorage::new();
    let (mut journal, _) = Journal::open(fault.clone(), config, None).unwrap();
    for i in 0..10 {
        journal.append(i, &[i as u8; 100]).unwrap();
    }
    journal.sync().unwrap();
    for i in 10..15 {
        journal.append(i, &[i as u8; 100]).unwrap();
    }
    fault.set_crash_at_sync(fault.syncs_total() + 1);
    assert!(journal.sync().is_err());
    let mut cuts = 0;
    for seed in 0..40 {
        let storage = fault.after_crash(CrashMode::Torn { seed });
        let (journal, recovery) = Journal::open(storage.clone(), config, None).unwrap();
        let count = collect(&journal, 0).len() as u64;
        assert!((10..=15).contains(&count));
        let Some(torn) = recovery.torn_tail else {
            continue;
        };
        cuts += 1;
        let file = &segment_names(&storage)[0];
        assert_eq!(&torn.file, file);
        let offsets = record_offsets(&storage, file);
        assert_eq!(offsets.len() as u64, count);
        assert_eq!(
            torn.offset,
            offsets.last().unwrap() + 64 + 100,
            "cut at record boundary"
        );
        assert!(
            torn.bytes > 0 && torn.bytes < 164,
            "cut {} bytes",
            torn.bytes
        );
        assert_eq!(verify(&storage, &config, None).unwrap().torn_tail, None);
    }
    assert!(cuts >= 5, "only {cuts} of 40 seeds tore a record");
}

#[test]
fn truncated_last_segment_is_a_torn_tail() {
    // Proves a last segment truncated mid-record recovers to the records before the cut.
    let fault = FaultStorage::new();
    let (mut journal, _) = Journal::open(fault.clone(), small_config(), None).unwrap();
    for i in 0..5 {
        journal.append(i, &[7; 200]).unwrap();
    }
    journal.sync().unwrap();
    let file = segment_names(&fault).pop().unwrap();
    let offsets = record_offsets(&fault, &file);
    fault.truncate(&file, offsets[4] + 100);
    let (journal, recovery) = Journal::open(fault.clone(), small_config(), None).unwrap();
    assert_eq!(collect(&journal, 0).len(), 4);
    let torn = recovery.torn_tail.unwrap();
    assert_eq!(
        (torn.file, torn.offset, torn.bytes),
        (file, offsets[4], 100)
    );
}
