//! Snapshots from frozen copies (`State::freeze`): the snapshot thread encodes a copy that
//! shares its memory with the live state while the writer goes on changing it.

use std::collections::BTreeMap;

use gongji_core::State;
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
    // rejections and replays among them) and 1,500 more writes in small submissions give
    // snapshots taken while the writer went on changing the state; each decodes to exactly
    // the state of a reference that applied the acknowledged ops up to its op; a clean stop
    // writes one at the last op, and a reopen replays nothing and has the same state.
    let storage = FaultStorage::new();
    let (engine, _) = Engine::open_on(config(), storage.clone(), storage.clone()).unwrap();
    let start = engine.read(encode);
    let mut acked = Vec::new();
    let mut seen = BTreeMap::new();
    let mut subs: Vec<Vec<WriteRequest>> = script().into_iter().map(|s| s.requests).collect();
    // The fillers at the script's last time, so that the reference makes the same ops.
    let time = subs.iter().flatten().filter_map(|r| r.inf_time).max();
    subs.extend((0..500).map(|k| {
        (0..3)
            .map(|j| WriteRequest {
                inf_time: time,
                ..filler(k * 3 + j)
            })
            .collect()
    }));
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
