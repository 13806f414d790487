//! Snapshots from frozen copies (`State::freeze`): the snapshot thread encodes a copy that
//! shares its memory with the live state while the writer goes on changing it.

use std::collections::BTreeMap;

use gongji_core::{Reply, State};
use gongji_journal::{
    load_latest_snapshot, parse_snapshot_name, FaultStorage, JournalConfig, Storage,
};
use gongji_server::scenario::{filler, op_of, script};
use gongji_server::{Config, Engine, WriteRequest};

fn config() -> Config {
    let mut config = Config::new("/nonexistent/gongji-snapshot-test");
    // Small segments (the in-memory storage copies a whole file when it syncs one), so that
    // segments are also rolled and removed behind the snapshots.
    config.journal = JournalConfig {
        segment_size_bytes: 64 * 1024,
        body_bytes_max: 1024,
        batch_bytes_max: 64 * 1024,
    };
    // A snapshot is due after every few ops, so that many are taken while writes go on.
    config.snapshot_interval_ops = 5;
    // Every batch with more queued behind it goes to the sync thread (the pipeline), however
    // small.
    config.pipeline_ops_min = 1;
    // Every write carries its own time; the writer must not add ticks of its own.
    config.idle_tick_seconds = 3600;
    config
}

/// The state hash after `op` for every snapshot file in `storage` that can still be read (the
/// snapshot thread prunes old ones meanwhile).
fn snapshot_hashes(storage: &FaultStorage, seen: &mut BTreeMap<u64, [u8; 32]>) {
    for name in storage.list().unwrap() {
        let Some(op) = parse_snapshot_name(&name) else {
            continue;
        };
        if seen.contains_key(&op) {
            continue;
        }
        let Ok(data) = storage.read_all(&name) else {
            continue;
        };
        let mut alone = FaultStorage::new();
        alone.create(&name).unwrap();
        alone.write_at(&name, 0, &data).unwrap();
        let loaded = load_latest_snapshot(&alone).unwrap().expect("a snapshot");
        let state = State::decode_snapshot(&loaded.body).expect("every snapshot decodes");
        assert_eq!(state.op_count(), op, "{name}");
        seen.insert(op, state.state_hash());
    }
}

#[test]
fn every_snapshot_is_the_state_after_its_op() {
    // Proves: with a snapshot due every 5 ops, the scripted workload (every command kind,
    // rejections and replays among them) and 1,500 more writes in small submissions from four
    // threads (so batches are applied while the one before is synced) give snapshots taken
    // while the writer went on changing the state, each handed over once its op was durable; each decodes to exactly
    // the state of a reference that applied the acknowledged ops up to its op; a clean stop
    // writes one at the last op, and a reopen replays nothing and has the same state.
    let storage = FaultStorage::new();
    let (engine, _) = Engine::open_on(config(), storage.clone(), storage.clone()).unwrap();
    let start = engine.read(encode);
    let mut acked = Vec::new();
    let mut seen = BTreeMap::new();
    let subs: Vec<Vec<WriteRequest>> = script().into_iter().map(|s| s.requests).collect();
    // The fillers at the script's last time, so that the reference makes the same ops.
    let time = subs.iter().flatten().filter_map(|r| r.inf_time).max();
    for requests in subs {
        let results = engine
            .submit_wait(requests.clone())
            .expect("the engine runs");
        for (request, result) in requests.iter().zip(results) {
            if matches!(result, Ok(ref a) if !a.replayed) {
                acked.push(op_of(request));
            }
        }
        snapshot_hashes(&storage, &mut seen);
    }
    // Then 1,500 fillers from four threads at once, so that the writer applies a batch while
    // the sync thread syncs the one before (the pipeline) and freezes snapshots between them.
    // A filler creates a token; the token ids give the order the writer applied them in.
    let engine = &engine;
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut fillers: Vec<(u64, WriteRequest)> = std::thread::scope(|scope| {
        let poller = scope.spawn(|| {
            let mut seen = BTreeMap::new();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let before = seen.len();
                snapshot_hashes(&storage, &mut seen);
                // A snapshot is handed over only after its op's sync.
                if let Some((&op, _)) = seen.iter().next_back().filter(|_| seen.len() > before) {
                    assert!(engine.durable_op() >= op, "snapshot at {op} not durable");
                }
            }
            seen
        });
        let clients: Vec<_> = (0..4u32)
            .map(|c| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for k in 0..125u32 {
                        let requests: Vec<WriteRequest> = (0..3)
                            .map(|j| WriteRequest {
                                inf_time: time,
                                ..filler((c * 125 + k) * 3 + j)
                            })
                            .collect();
                        let results = engine
                            .submit_wait(requests.clone())
                            .expect("the engine runs");
                        for (request, result) in requests.into_iter().zip(results) {
                            match result.expect("a filler applies").reply {
                                Reply::TokenCreated { token_id } => out.push((token_id, request)),
                                other => panic!("a filler creates a token: {other:?}"),
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        let fillers = clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        done.store(true, std::sync::atomic::Ordering::Release);
        seen.extend(poller.join().unwrap());
        fillers
    });
    fillers.sort_by_key(|(token_id, _)| *token_id);
    acked.extend(fillers.iter().map(|(_, request)| op_of(request)));
    let batches = engine
        .counters()
        .batches_total
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        batches < 500,
        "submissions were batched together: {batches} batches"
    );
    let last = acked.len() as u64;
    let live = engine.read(State::state_hash);
    engine.shutdown().unwrap();
    snapshot_hashes(&storage, &mut seen);
    // How many are seen depends on timing (two are kept); at least one between the first and
    // the last is, since writes went on for hundreds of batches.
    assert!(
        seen.keys().any(|&op| op > 0 && op < last),
        "snapshots seen: {:?}",
        seen.keys()
    );
    assert_eq!(
        seen.keys().next_back(),
        Some(&last),
        "a last snapshot at the last op"
    );
    // The reference applies the acknowledged ops to the first state; its hash is compared
    // at every op a snapshot was seen at.
    let mut reference = State::decode_snapshot(&start).unwrap();
    for (op, hash) in &seen {
        while reference.op_count() < *op {
            let next = &acked[reference.op_count() as usize];
            reference.apply(next).expect("applies as it did");
        }
        assert_eq!(hash, &reference.state_hash(), "the snapshot at op {op}");
    }
    assert_eq!(live, reference.state_hash());

    let (engine, report) = Engine::open_on(config(), storage.clone(), storage).unwrap();
    assert_eq!(report.snapshot_op, Some(last));
    assert_eq!(report.replayed_ops, 0);
    assert_eq!(engine.read(State::state_hash), reference.state_hash());
    engine.shutdown().unwrap();
}

fn encode(state: &State) -> Vec<u8> {
    let mut out = Vec::new();
    state.encode_snapshot(&mut out);
    out
}
