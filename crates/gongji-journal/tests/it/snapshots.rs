//! Snapshot files: write, load newest verifying, fall back, prune, crash safety.

use gongji_journal::{
    load_latest_snapshot, prune_snapshots, snapshot_file_name, write_snapshot,
    write_snapshot_streaming, Anchor, CrashMode, FaultStorage, SnapshotDefect, SnapshotError,
    Storage,
};

fn anchor(op: u64) -> Anchor {
    Anchor {
        op,
        chain_hash: [op as u8; 32],
    }
}

#[test]
fn newest_snapshot_loads_and_damaged_one_falls_back() {
    // Proves the newest verifying snapshot is returned, and a damaged newer one is skipped
    // with a reason while the older one is used.
    let mut fault = FaultStorage::new();
    assert_eq!(load_latest_snapshot(&fault).unwrap(), None);
    write_snapshot(&mut fault, anchor(10), b"state at ten").unwrap();
    let newer = write_snapshot(&mut fault, anchor(20), b"state at twenty").unwrap();
    assert_eq!(newer, snapshot_file_name(20));
    let loaded = load_latest_snapshot(&fault).unwrap().unwrap();
    assert_eq!(
        (loaded.anchor, loaded.body.as_slice()),
        (anchor(20), &b"state at twenty"[..])
    );
    assert!(loaded.skipped.is_empty());

    let len = fault.len(&newer).unwrap();
    fault.flip_bit(&newer, len - 1, 2);
    let loaded = load_latest_snapshot(&fault).unwrap().unwrap();
    assert_eq!(
        (loaded.anchor, loaded.body.as_slice()),
        (anchor(10), &b"state at ten"[..])
    );
    assert_eq!(loaded.skipped.len(), 1);
    assert_eq!(loaded.skipped[0].file, newer);
    assert_eq!(loaded.skipped[0].defect, SnapshotDefect::BodyHash);
}

#[test]
fn sole_damaged_snapshot_is_an_error_naming_it() {
    // Proves that when snapshots exist but none verifies, loading fails naming each file.
    let mut fault = FaultStorage::new();
    let file = write_snapshot(&mut fault, anchor(5), b"only").unwrap();
    fault.flip_bit(&file, 12, 0);
    match load_latest_snapshot(&fault) {
        Err(SnapshotError::NoValidSnapshot { skipped }) => {
            assert_eq!(skipped.len(), 1);
            assert_eq!(skipped[0].file, file);
            assert!(matches!(skipped[0].defect, SnapshotDefect::Header(_)));
        }
        other => panic!("expected NoValidSnapshot, got {other:?}"),
    }
    let message = load_latest_snapshot(&fault).unwrap_err().to_string();
    assert!(message.contains(&file), "{message}");
}

#[test]
fn truncated_snapshot_is_skipped() {
    // Proves a snapshot shorter than its header claims is rejected with the lengths.
    let mut fault = FaultStorage::new();
    write_snapshot(&mut fault, anchor(1), b"old").unwrap();
    let file = write_snapshot(&mut fault, anchor(2), &[1; 100]).unwrap();
    fault.truncate(&file, 150);
    let loaded = load_latest_snapshot(&fault).unwrap().unwrap();
    assert_eq!(loaded.anchor.op, 1);
    let defect = SnapshotDefect::LengthMismatch {
        file_len_bytes: 150,
        expected_bytes: 192,
    };
    assert_eq!(loaded.skipped[0].defect, defect);
}

#[test]
fn prune_keeps_newest_valid_and_removes_tmp() {
    // Proves pruning keeps the newest `keep` verifying snapshots, keeps damaged newer ones as
    // evidence, and removes older snapshots and leftover .tmp files.
    let mut fault = FaultStorage::new();
    for op in 1..=5 {
        write_snapshot(&mut fault, anchor(op), &[op as u8; 10]).unwrap();
    }
    let damaged = snapshot_file_name(5);
    fault.flip_bit(&damaged, 100, 1);
    let tmp = format!("{}.tmp", snapshot_file_name(6));
    fault.create(&tmp).unwrap();
    fault.write_at(&tmp, 0, b"partial").unwrap();
    assert_eq!(
        load_latest_snapshot(&fault).unwrap().unwrap().anchor.op,
        4,
        ".tmp ignored"
    );
    let mut removed = prune_snapshots(&mut fault, 2).unwrap();
    removed.sort();
    assert_eq!(
        removed,
        vec![snapshot_file_name(1), snapshot_file_name(2), tmp]
    );
    let mut left = fault.list().unwrap();
    left.sort();
    assert_eq!(
        left,
        vec![snapshot_file_name(3), snapshot_file_name(4), damaged]
    );
}

#[test]
fn crash_during_snapshot_write_leaves_old_or_new() {
    // Proves a crash at any write or sync of write_snapshot, under any crash mode, leaves
    // either the previous snapshot or the complete new one, never an unusable state.
    for (arm_write, k) in [(true, 1), (true, 2), (false, 1), (false, 2)] {
        for mode in [
            CrashMode::DropUnsynced,
            CrashMode::KeepUnsynced,
            CrashMode::Torn { seed: k },
        ] {
            let mut fault = FaultStorage::new();
            write_snapshot(&mut fault, anchor(1), b"old state").unwrap();
            if arm_write {
                fault.set_crash_at_write(fault.writes_total() + k);
            } else {
                fault.set_crash_at_sync(fault.syncs_total() + k);
            }
            assert!(write_snapshot(&mut fault, anchor(2), b"new state").is_err());
            let after = fault.after_crash(mode);
            let loaded = load_latest_snapshot(&after).unwrap().unwrap();
            assert!(loaded.skipped.is_empty(), "{mode:?}: {:?}", loaded.skipped);
            match loaded.anchor.op {
                1 => assert_eq!(loaded.body, b"old state"),
                2 => assert_eq!(loaded.body, b"new state"),
                op => panic!("unexpected op {op}"),
            }
        }
    }
}

#[test]
fn a_streamed_snapshot_is_the_same_file() {
    // Proves: a body handed over in pieces (empty ones among them) gives byte for byte the
    // file of the same body written at once, which loads back whole; a storage failure in the
    // middle of the pieces is an error and leaves no snapshot behind.
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut whole = FaultStorage::new();
    let name = write_snapshot(&mut whole, anchor(30), &body).unwrap();
    let mut streamed = FaultStorage::new();
    let streamed_name = write_snapshot_streaming(&mut streamed, anchor(30), &mut |sink| {
        sink(&[]);
        for piece in body.chunks(7_001) {
            sink(piece);
        }
        sink(&[]);
    })
    .unwrap();
    assert_eq!(streamed_name, name);
    assert_eq!(
        streamed.read_all(&name).unwrap(),
        whole.read_all(&name).unwrap()
    );
    let loaded = load_latest_snapshot(&streamed).unwrap().unwrap();
    assert_eq!((loaded.anchor, loaded.body), (anchor(30), body.clone()));

    let mut failing = FaultStorage::new();
    failing.set_crash_at_write(failing.writes_total() + 3);
    let result = write_snapshot_streaming(&mut failing, anchor(40), &mut |sink| {
        for piece in body.chunks(10_000) {
            sink(piece);
        }
    });
    assert!(result.is_err());
    let after = failing.after_crash(CrashMode::KeepUnsynced);
    assert_eq!(load_latest_snapshot(&after).unwrap(), None);
}

#[test]
fn prune_verifies_large_bodies_piece_by_piece() {
    // Proves: pruning reads a body of several mebibytes in pieces and still finds a bit
    // flipped in its third mebibyte (that snapshot is kept as evidence, and one more older
    // one kept in its place), and a file cut short is no valid snapshot either.
    let mut fault = FaultStorage::new();
    let body = |op: u64| -> Vec<u8> {
        (0..(5 << 20) + 77)
            .map(|i| (i as u64 * 31 + op) as u8)
            .collect()
    };
    for op in 1..=6 {
        write_snapshot(&mut fault, anchor(op), &body(op)).unwrap();
    }
    let damaged = snapshot_file_name(6);
    fault.flip_bit(&damaged, 92 + (2 << 20) + 12_345, 3);
    let cut = snapshot_file_name(5);
    let len = fault.len(&cut).unwrap();
    fault.set_len(&cut, len - 1).unwrap();
    let mut removed = prune_snapshots(&mut fault, 2).unwrap();
    removed.sort();
    assert_eq!(removed, vec![snapshot_file_name(1), snapshot_file_name(2)]);
    assert_eq!(load_latest_snapshot(&fault).unwrap().unwrap().anchor.op, 4);
}
