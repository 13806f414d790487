//! The msgid window in snapshot files (`state/msgids/`): a running engine adopts the msgid
//! section of each snapshot it writes and a start reads the newest one where it lies; replays
//! and conflicts of every msgid answer as they did when the records were made.

use std::time::{Duration, Instant};

use gongji_core::{Body, ErrCode};
use gongji_server::scenario::{filler, script};
use gongji_server::{Config, Engine, WriteRequest, WriteResult};

const WRITES: u32 = 6_000;

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir);
    config.snapshot_interval_ops = 500;
    config.idle_tick_seconds = 3600;
    config
}

/// Submits `requests` in pieces of 250 and returns every result.
fn submit_all(engine: &Engine, requests: &[WriteRequest]) -> Vec<WriteResult> {
    requests
        .chunks(250)
        .flat_map(|piece| engine.submit_wait(piece.to_vec()).unwrap())
        .collect()
}

/// The reply of a result without its `replayed` mark, or the rejection.
fn answer(r: &WriteResult) -> String {
    match r {
        Ok(applied) => format!("{:?}", applied.reply),
        Err(rejection) => format!("{rejection:?}"),
    }
}

fn replays_answer_as_before(engine: &Engine, requests: &[WriteRequest], first: &[WriteResult]) {
    let again = submit_all(engine, requests);
    for (i, (a, b)) in first.iter().zip(&again).enumerate() {
        assert_eq!(answer(a), answer(b), "request {i}");
        if a.is_ok() {
            assert!(b.as_ref().unwrap().replayed, "request {i} applied twice");
        }
    }
    // The same msgid with another body is a conflict, wherever its record is held.
    let mut conflicting = requests[WRITES as usize / 2].clone();
    conflicting.body = Body::RevokeToken { token_id: 1 };
    let r = engine.submit_wait(vec![conflicting]).unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().code, ErrCode::MsgidConflict);
}

#[test]
fn the_window_lives_in_snapshot_files_and_answers_as_before() {
    // Proves: after thousands of writes with a snapshot due every 500 ops, the writer's queue
    // holds only the records made since the last snapshot it adopted (far fewer than it
    // applied); every write made before then, replayed, gets the reply it got first (marked
    // replayed, nothing applied twice) and a changed body is a conflict; the same after a
    // restart, which reads the window from the newest snapshot file, with the state hash
    // unchanged by the restart.
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(config(dir.path())).unwrap();
    for sub in script() {
        engine.submit_wait(sub.requests).unwrap();
    }
    let requests: Vec<WriteRequest> = (0..WRITES).map(filler).collect();
    let first = submit_all(&engine, &requests);
    assert!(first.iter().all(|r| r.is_ok()));
    // The snapshot thread writes, then the writer adopts between two later batches.
    let started = Instant::now();
    let mut k = WRITES;
    while engine.read(|s| s.msgids_queued()) > 1_500 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the queue still holds {} records",
            engine.read(|s| s.msgids_queued())
        );
        engine.submit_wait(vec![filler(k)]).unwrap();
        k += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(engine.read(|s| s.msgid_count()) > WRITES as usize);
    replays_answer_as_before(&engine, &requests, &first);
    let hash = engine.read(|s| s.state_hash());
    engine.shutdown().unwrap();
    drop(engine);

    let (engine, report) = Engine::open(config(dir.path())).unwrap();
    assert!(report.snapshot_op.is_some());
    assert_eq!(engine.read(|s| s.state_hash()), hash);
    assert_eq!(engine.read(|s| s.msgids_queued()), 0, "read from the file");
    replays_answer_as_before(&engine, &requests, &first);
    engine.shutdown().unwrap();
}
