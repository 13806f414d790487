//! Fault injection through the storage seam: an [`Engine`] on [`FaultStorage`] (one shared
//! clone for the journal and the snapshot handle) runs a scripted workload with a crash armed
//! at every write and every sync it makes; each crashed storage is recovered under every
//! [`CrashMode`] and reopened, and the recovered engine is compared with reference states built
//! by applying exactly the acknowledged ops (plus a prefix of the in-flight submission) to a
//! fresh [`State`]. Also: media damage in a journal record and in the newest snapshot.

use std::sync::atomic::Ordering;

use gongji_core::{Applied, Params, State};
use gongji_journal::format::{RecordHeader, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use gongji_journal::{parse_snapshot_name, CrashMode, FaultStorage, JournalConfig, Storage};
use gongji_server::scenario::{filler, op_of, script, Sub};
use gongji_server::{Config, Engine, OpenReport, SubmitError, WriteResult};

fn config(snapshot_interval_ops: u64) -> Config {
    let mut config = Config::new("/nonexistent/gongji-fault-test");
    // Small segments so the script rolls several of them; segment removal after snapshots
    // and segment creation are then among the crash points.
    config.journal = JournalConfig {
        segment_size_bytes: 2048,
        body_bytes_max: 1024,
        batch_bytes_max: 64 * 1024,
    };
    config.snapshot_interval_ops = snapshot_interval_ops;
    // Every write carries its own time (in 2030); the writer must not add ticks of its own.
    config.idle_tick_seconds = 3600;
    config
}

fn open(storage: &FaultStorage, snapshot_interval_ops: u64) -> (Engine, OpenReport) {
    Engine::open_on(
        config(snapshot_interval_ops),
        storage.clone(),
        storage.clone(),
    )
    .unwrap_or_else(|e| panic!("open failed: {e}"))
}

#[derive(Debug)]
enum Arm {
    Write(u64),
    Sync(u64),
}

#[derive(Debug, Default)]
struct Outcome {
    /// Results of the submissions acknowledged, in script order.
    acked: Vec<Vec<WriteResult>>,
    /// The submission that got no reply (the writer failed while it was in flight).
    in_flight: Option<usize>,
    /// Writes and syncs made after the engine opened.
    writes: u64,
    syncs: u64,
}

/// Runs the script on a fresh engine over `fault`, with a crash armed relative to the calls
/// made so far, until the first submission without a reply; then stops the engine.
fn run(fault: &FaultStorage, subs: &[Sub], arm: Option<&Arm>) -> Outcome {
    let (engine, _) = open(fault, 7);
    let (writes, syncs) = (fault.writes_total(), fault.syncs_total());
    match arm {
        Some(Arm::Write(k)) => fault.set_crash_at_write(fault.writes_total() + k),
        Some(Arm::Sync(k)) => fault.set_crash_at_sync(fault.syncs_total() + k),
        None => {}
    }
    let mut outcome = Outcome::default();
    for (i, sub) in subs.iter().enumerate() {
        match engine.submit_wait(sub.requests.clone()) {
            Ok(results) => outcome.acked.push(results),
            Err(e) => {
                assert_eq!(e, SubmitError::Stopped);
                outcome.in_flight = Some(i);
                break;
            }
        }
    }
    let stopped = engine.shutdown();
    if outcome.in_flight.is_some() {
        assert!(stopped.is_err(), "a failed writer reports its error");
        assert!(!engine.is_running());
        assert_eq!(
            engine.submit(subs[0].requests.clone()).err(),
            Some(SubmitError::Stopped)
        );
    } else if arm.is_none() {
        stopped.expect("clean shutdown");
    }
    outcome.writes = fault.writes_total() - writes;
    outcome.syncs = fault.syncs_total() - syncs;
    outcome
}

/// Reopens `storage` and checks it against the outcome: the recovered state is the acked
/// prefix plus a prefix of the in-flight submission, every acked write replays with its
/// reply, the in-flight submission resent leads to the state of the clean run's prefix, and
/// the rest of the script then ends in the clean run's final state.
/// Returns whether the recovered state held (part of) the in-flight submission.
fn verify(
    storage: &FaultStorage,
    subs: &[Sub],
    outcome: &Outcome,
    final_hash: [u8; 32],
    ctx: &str,
) -> bool {
    let (engine, _) = Engine::open_on(config(7), storage.clone(), storage.clone())
        .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    engine
        .read(|s| s.check())
        .unwrap_or_else(|e| panic!("{ctx}: state check: {e}"));
    let (got_ops, got_hash) = engine.read(|s| (s.op_count(), s.state_hash()));

    let mut reference = State::new(Params::default());
    for (sub, results) in subs.iter().zip(&outcome.acked) {
        for (request, result) in sub.requests.iter().zip(results) {
            assert_eq!(
                &reference.apply(&op_of(request)),
                result,
                "{ctx}: determinism"
            );
        }
    }
    let acked_ops = reference.op_count();
    assert!(
        got_ops >= acked_ops,
        "{ctx}: acknowledged ops lost ({got_ops} < {acked_ops})"
    );
    let mut matched = got_ops == acked_ops && got_hash == reference.state_hash();
    // How many of the in-flight submission's requests the recovered state holds.
    let mut in_flight_prefix = 0;
    if let Some(f) = outcome.in_flight {
        for request in &subs[f].requests {
            if matched {
                break;
            }
            let _ = reference.apply(&op_of(request));
            in_flight_prefix += 1;
            matched = got_ops == reference.op_count() && got_hash == reference.state_hash();
        }
    }
    assert!(
        matched,
        "{ctx}: recovered state ({got_ops} ops) is neither the acked prefix ({acked_ops} ops) \
         nor it plus a prefix of the in-flight submission"
    );

    // Every acknowledged write replays with its first reply, and changes nothing.
    let mut replays = Vec::new();
    let mut expected = Vec::new();
    for (sub, results) in subs.iter().zip(&outcome.acked) {
        for (request, result) in sub.requests.iter().zip(results) {
            if let Ok(applied) = result {
                replays.push(request.clone());
                expected.push(applied.reply.clone());
            }
        }
    }
    if !replays.is_empty() {
        let results = engine.submit_wait(replays).expect("reopened engine runs");
        for (result, reply) in results.into_iter().zip(expected) {
            assert_eq!(
                result,
                Ok(Applied {
                    reply,
                    replayed: true
                }),
                "{ctx}: an acknowledged write does not replay"
            );
        }
        assert_eq!(
            engine.read(|s| s.state_hash()),
            got_hash,
            "{ctx}: replays changed the state"
        );
    }

    // The in-flight submission resent, then the rest of the script: each op applies now or
    // replays, exactly as on the reference built from the recovered ops.
    let start = outcome.acked.len();
    for sub in &subs[start..] {
        let results = engine
            .submit_wait(sub.requests.clone())
            .expect("reopened engine runs");
        for (request, result) in sub.requests.iter().zip(results) {
            assert_eq!(
                result,
                reference.apply(&op_of(request)),
                "{ctx}: resent write differs"
            );
        }
    }
    let hash = engine.read(|s| s.state_hash());
    assert_eq!(hash, reference.state_hash(), "{ctx}: resent writes diverge");
    // Resending ends in the clean run's state unless a write the submission rejected applies
    // when resent, after a later write of the same submission survived (a rejected msgid is
    // not consumed, API.md).
    let all_ok = outcome
        .in_flight
        .is_none_or(|f| subs[f].expect_ok.iter().all(|&ok| ok));
    if in_flight_prefix == 0 || all_ok {
        assert_eq!(
            hash, final_hash,
            "{ctx}: final state differs from the clean run"
        );
    }
    engine
        .shutdown()
        .unwrap_or_else(|e| panic!("{ctx}: shutdown: {e}"));
    got_ops > acked_ops
}
/// The clean run: every op that should apply does, and the final state hash.
fn clean_run(subs: &[Sub]) -> (u64, u64, [u8; 32]) {
    let fault = FaultStorage::new();
    let outcome = run(&fault, subs, None);
    assert_eq!(outcome.in_flight, None);
    let mut reference = State::new(Params::default());
    for (sub, results) in subs.iter().zip(&outcome.acked) {
        for ((request, result), ok) in sub.requests.iter().zip(results).zip(&sub.expect_ok) {
            assert_eq!(result.is_ok(), *ok, "{:?}: {result:?}", request.body);
            let _ = reference.apply(&op_of(request));
        }
    }
    let (engine, _) = open(&fault.after_crash(CrashMode::DropUnsynced), 7);
    let hash = engine.read(|s| s.state_hash());
    assert_eq!(hash, reference.state_hash(), "clean restart");
    engine.shutdown().unwrap();
    (outcome.writes, outcome.syncs, hash)
}

fn modes(k: u64) -> [CrashMode; 5] {
    [
        CrashMode::DropUnsynced,
        CrashMode::KeepUnsynced,
        CrashMode::Torn { seed: k * 16 },
        CrashMode::Torn { seed: k * 16 + 1 },
        CrashMode::Torn { seed: k * 16 + 2 },
    ]
}

#[derive(Debug, Default)]
struct Tally {
    struck: u64,
    /// Recoveries that kept some of the unacknowledged in-flight submission…
    in_flight_kept: u64,
    /// …and that lost it.
    in_flight_lost: u64,
}

/// Crashes the script at `arm` and checks every recovery mode.
fn crash_and_check(subs: &[Sub], arm: &Arm, k: u64, final_hash: [u8; 32], tally: &mut Tally) {
    let fault = FaultStorage::new();
    let outcome = run(&fault, subs, Some(arm));
    if !fault.is_crashed() {
        return;
    }
    tally.struck += 1;
    for mode in modes(k) {
        let ctx = format!(
            "crash at {arm:?}, {mode:?}, acked {} submissions, in flight {:?}",
            outcome.acked.len(),
            outcome.in_flight
        );
        let kept = verify(&fault.after_crash(mode), subs, &outcome, final_hash, &ctx);
        if outcome.in_flight.is_some() {
            *if kept {
                &mut tally.in_flight_kept
            } else {
                &mut tally.in_flight_lost
            } += 1;
        }
    }
}

#[test]
fn crash_at_every_write_and_sync_loses_no_acknowledged_write() {
    // Proves: whichever write or sync of the workload fails (journal, segment roll, snapshot,
    // pruning), and whatever of the unsynced data survives, recovery keeps every acknowledged
    // write, adds nothing but a prefix of the in-flight submission, passes the state check,
    // replays acknowledged msgids with their replies, and resuming reaches the clean run's state.
    let subs = script();
    let (writes, syncs, final_hash) = clean_run(&subs);
    assert!(writes > 20 && syncs > 20, "writes {writes}, syncs {syncs}");
    let mut tally = Tally::default();
    for k in 1..=writes {
        crash_and_check(&subs, &Arm::Write(k), k, final_hash, &mut tally);
    }
    for k in 1..=syncs {
        crash_and_check(&subs, &Arm::Sync(k), k, final_hash, &mut tally);
    }
    // The snapshot thread's calls interleave with the sync thread's, and how many snapshots a
    // run takes depends on whether that thread is free when one is due (timing: on a loaded
    // machine the clean run took up to 4 more calls than a crashed one, with or without the
    // pipeline, and once, during a release build, more than 7 in 69), so a count may shift;
    // but four in five armed crashes strike, and both fates of the in-flight batch occur.
    assert!(
        tally.struck * 5 >= (writes + syncs) * 4,
        "{tally:?} of {writes} + {syncs}"
    );
    assert!(
        tally.in_flight_kept > 0 && tally.in_flight_lost > 0,
        "{tally:?}"
    );
}

/// Runs the whole script and crashes before the shutdown snapshot can land: the journal then
/// holds every op after the first snapshot.
fn journal_only_storage() -> FaultStorage {
    let fault = FaultStorage::new();
    let (engine, _) = open(&fault, u64::MAX / 2);
    for sub in script() {
        engine.submit_wait(sub.requests).unwrap();
    }
    // A few more records, so that the last segment holds several whatever the script's length.
    for i in 0..4 {
        let fill = filler(i);
        let replies = engine.submit_wait(vec![fill]).unwrap();
        assert!(replies[0].is_ok(), "{replies:?}");
    }
    fault.set_crash_at_write(fault.writes_total() + 1);
    fault.set_crash_at_sync(fault.syncs_total() + 1);
    let _ = engine.shutdown();
    fault.after_crash(CrashMode::DropUnsynced)
}

#[test]
fn bit_flip_in_a_middle_journal_record_names_file_and_offset() {
    // Proves: media damage inside a record that has valid records after it is not mistaken
    // for a torn tail; the engine refuses to start and names the segment file and offset.
    let storage = journal_only_storage();
    let mut segments: Vec<String> = storage
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("journal-"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "segments {segments:?}");
    // A sealed segment, and the last one (where a torn tail could be).
    for segment in [&segments[0], segments.last().unwrap()] {
        let damaged = storage.after_crash(CrashMode::DropUnsynced);
        let data = damaged.read_all(segment).unwrap();
        let mut offsets = Vec::new();
        let mut pos = SEGMENT_HEADER_BYTES;
        while let Ok(header) = RecordHeader::decode(&data[pos..]) {
            offsets.push((pos, header.body_len as usize));
            pos += RECORD_HEADER_BYTES + header.body_len as usize;
        }
        assert!(offsets.len() >= 3, "{segment}: {offsets:?}");
        let (offset, body_len) = offsets[offsets.len() / 2];
        let flip_at = offset + RECORD_HEADER_BYTES + body_len / 2;
        damaged.flip_bit(segment, flip_at as u64, 3);
        let err = Engine::open_on(config(7), damaged.clone(), damaged)
            .map(|_| ())
            .expect_err("a damaged record must stop recovery")
            .to_string();
        assert!(
            err.contains(segment.as_str()) && err.contains(&format!("offset {offset}")),
            "{err}"
        );
    }
    // The undamaged copy recovers.
    let (engine, report) = open(&storage, 7);
    assert!(report.replayed_ops > 0);
    engine.read(|s| s.check()).unwrap();
    engine.shutdown().unwrap();
}

#[test]
fn damaged_newest_snapshot_falls_back_to_the_older_one() {
    // Proves: a newest snapshot that fails verification is skipped (and reported); recovery
    // starts from the older snapshot, replays the journal after it, and reaches the same state.
    let fault = FaultStorage::new();
    let (engine, _) = open(&fault, 7);
    for sub in script() {
        engine.submit_wait(sub.requests).unwrap();
    }
    engine.shutdown().unwrap();

    let (engine, report) = open(&fault.after_crash(CrashMode::DropUnsynced), 7);
    let want = engine.read(|s| s.state_hash());
    assert_eq!(
        report.replayed_ops, 0,
        "the shutdown snapshot is at the head"
    );
    engine.shutdown().unwrap();

    let damaged = fault.after_crash(CrashMode::DropUnsynced);
    let mut snapshots: Vec<(u64, String)> = damaged
        .list()
        .unwrap()
        .into_iter()
        .filter_map(|n| parse_snapshot_name(&n).map(|op| (op, n)))
        .collect();
    snapshots.sort();
    assert!(snapshots.len() >= 2, "{snapshots:?}");
    let (newest_op, newest) = snapshots.pop().unwrap();
    let (older_op, _) = snapshots.pop().unwrap();
    let len = damaged.len(&newest).unwrap();
    damaged.flip_bit(&newest, len - 5, 0);
    let (engine, report) = open(&damaged, 7);
    assert_eq!(report.snapshot_op, Some(older_op));
    assert_eq!(report.skipped_snapshots.len(), 1);
    assert_eq!(report.skipped_snapshots[0].file, newest);
    assert_eq!(report.replayed_ops, newest_op - older_op);
    engine.read(|s| s.check()).unwrap();
    assert_eq!(engine.read(|s| s.state_hash()), want);
    engine.shutdown().unwrap();
}

#[test]
fn a_start_that_replays_leaves_its_snapshot_to_the_background() {
    // Proves: a start that replays ops on top of a snapshot does not write a snapshot before
    // serving; the snapshot thread writes one at the head afterwards, so that a start after a
    // second crash replays nothing, with the same state.
    let fault = FaultStorage::new();
    let (engine, _) = open(&fault, u64::MAX / 2);
    for sub in script() {
        engine.submit_wait(sub.requests).unwrap();
    }
    let want = engine.read(|s| s.state_hash());
    let head = engine.counters().journal_head_op.load(Ordering::Acquire);
    // A crash: no shutdown snapshot; only the first start's (op 0) is on disk.
    let crashed = fault.after_crash(CrashMode::DropUnsynced);
    drop(engine);
    let writes_before = crashed.writes_total();
    let (engine, report) = open(&crashed, u64::MAX / 2);
    assert_eq!(report.snapshot_op, Some(0));
    assert_eq!(report.replayed_ops, head);
    assert_eq!(engine.read(|s| s.state_hash()), want);
    // Written in the background: wait for the counter, not for the open.
    let started = std::time::Instant::now();
    while engine.counters().snapshot_op.load(Ordering::Acquire) != head {
        assert!(started.elapsed().as_secs() < 30, "no snapshot at the head");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(crashed.writes_total() > writes_before);
    let again = crashed.after_crash(CrashMode::DropUnsynced);
    drop(engine);
    let (engine, report) = open(&again, u64::MAX / 2);
    assert_eq!((report.snapshot_op, report.replayed_ops), (Some(head), 0));
    assert_eq!(engine.read(|s| s.state_hash()), want);
    engine.shutdown().unwrap();
}
