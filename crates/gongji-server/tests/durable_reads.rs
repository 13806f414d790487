//! Reads never show a state that a crash could still undo: with the journal's fsync held on
//! [`FaultStorage`], a batch is applied but not durable; a read made then sees it in the state,
//! and its answer ([`Engine::read_durable`]) waits for the sync: it comes when the sync
//! succeeds, and never when the sync fails (the crash then undoes what the read saw).

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use gongji_core::time::Period;
use gongji_journal::{CrashMode, FaultStorage, JournalConfig};
use gongji_server::scenario::{filler, script};
use gongji_server::{Config, Engine, SubmitError};

fn config() -> Config {
    let mut config = Config::new("/nonexistent/gongji-durable-read-test");
    config.journal = JournalConfig {
        segment_size_bytes: 64 * 1024,
        body_bytes_max: 1024,
        batch_bytes_max: 64 * 1024,
    };
    // No snapshot (its file syncs would wait at the gate too) and no idle ticks.
    config.snapshot_interval_ops = 1_000_000;
    config.idle_tick_seconds = 3600;
    config
}

/// Opens the gate when a test panics with the syncs held: the engine's drop waits for the
/// sync thread.
struct Release(FaultStorage);

impl Drop for Release {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.release_syncs();
        }
    }
}

/// Holds the journal's syncs and submits `requests`; returns once the writer has applied them
/// and the sync thread waits at the gate, with the guard that opens it if the test fails.
fn submit_with_sync_held(
    engine: &Engine,
    fault: &FaultStorage,
    requests: Vec<gongji_server::WriteRequest>,
) -> (
    tokio::sync::oneshot::Receiver<Vec<gongji_server::WriteResult>>,
    Release,
) {
    fault.hold_syncs();
    let release = Release(fault.clone());
    let reply = engine.submit(requests).expect("queued");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fault.syncs_held() == 0 {
        assert!(std::time::Instant::now() < deadline, "the sync never came");
        std::thread::sleep(Duration::from_millis(1));
    }
    (reply, release)
}

/// Runs the script, holds the journal's syncs, submits one more write (a token) and waits
/// until the writer has applied it and the sync thread waits at the gate. Returns the engine,
/// the write's reply, the token count a read shows before the write, and the reader's answer.
#[allow(clippy::type_complexity)]
fn apply_but_hold_sync(
    fault: &FaultStorage,
) -> (
    std::sync::Arc<Engine>,
    tokio::sync::oneshot::Receiver<Vec<gongji_server::WriteResult>>,
    usize,
    std::sync::mpsc::Receiver<Result<usize, SubmitError>>,
) {
    let (engine, _) = Engine::open_on(config(), fault.clone(), fault.clone()).unwrap();
    let engine = std::sync::Arc::new(engine);
    for sub in script() {
        engine.submit_wait(sub.requests).expect("the engine runs");
    }
    let before = engine
        .read_durable(|s| s.token_count())
        .expect("everything is durable: answered at once");
    let (reply, _release) = submit_with_sync_held(&engine, fault, vec![filler(1)]);
    // Applied, not durable: the state holds the token.
    assert!(engine.applied_op() > engine.durable_op());
    assert_eq!(engine.read(|s| s.token_count()), before + 1);
    let (tx, answers) = std::sync::mpsc::channel();
    let reader = engine.clone();
    std::thread::spawn(move || {
        let _ = tx.send(reader.read_durable(|s| s.token_count()));
    });
    // The read has seen the token (its op count is past the durable one): no answer while the
    // sync is held.
    assert_eq!(
        answers.recv_timeout(Duration::from_millis(300)),
        Err(RecvTimeoutError::Timeout),
        "a read answered before what it saw was durable"
    );
    (engine, reply, before, answers)
}

#[test]
fn a_read_between_apply_and_sync_answers_after_the_sync() {
    // Proves: the read that saw the applied-but-unsynced write answers with it once the sync
    // completes, together with the write's own reply.
    let fault = FaultStorage::new();
    let (engine, mut reply, before, answers) = apply_but_hold_sync(&fault);
    assert!(reply.try_recv().is_err(), "no reply before the sync");
    fault.release_syncs();
    let answer = answers.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(answer, Ok(before + 1));
    let results = reply.blocking_recv().expect("acknowledged after the sync");
    assert!(results[0].is_ok());
    assert_eq!(engine.durable_op(), engine.applied_op());
    engine.shutdown().unwrap();
}

#[test]
fn a_read_between_apply_and_a_failed_sync_never_answers_with_it() {
    // Proves: when the held sync fails, neither the write nor the read that saw it is
    // answered, and the restarted engine indeed does not have the write: the read would have
    // shown a state the crash undid.
    let fault = FaultStorage::new();
    let (engine, reply, before, answers) = apply_but_hold_sync(&fault);
    fault.set_crash_at_sync(fault.syncs_total() + 1);
    fault.release_syncs();
    let answer = answers.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(answer, Err(SubmitError::Stopped));
    assert!(
        reply.blocking_recv().is_err(),
        "the write is not acknowledged"
    );
    assert!(engine.shutdown().is_err(), "the failed sync is reported");
    assert_eq!(
        engine.read_durable(|s| s.token_count()),
        Err(SubmitError::Stopped),
        "the state still holds the lost write: no read of it is answered"
    );
    drop(engine);
    let restarted = fault.after_crash(CrashMode::DropUnsynced);
    let (engine, _) = Engine::open_on(config(), restarted.clone(), restarted).unwrap();
    assert_eq!(engine.read(|s| s.token_count()), before);
    engine.shutdown().unwrap();
}

/// The script's first settlement again, under a new msgid, at the writer's own time.
fn another_settlement() -> gongji_server::WriteRequest {
    let mut request = script()
        .into_iter()
        .flat_map(|sub| sub.requests)
        .find(|r| matches!(r.body, gongji_core::Body::Settle { .. }))
        .expect("the script settles");
    request.msgid = gongji_core::Msgid::from("stats-held").unwrap();
    request.inf_time = None;
    request
}

fn all_stats(engine: &Engine) -> (gongji_core::views::StatsView, gongji_core::views::StatsView) {
    let (from, to) = (Period(0), Period(u32::MAX));
    (
        engine.stats_durable(from, to, None),
        engine.read(|s| s.stats(from, to, None)),
    )
}

#[test]
fn statistics_are_answered_at_once_as_of_the_last_durable_batch() {
    // Proves: with a settlement applied and its sync held, the live statistics count it but
    // `stats_durable` answers at once without it; after the sync it counts it. When the held
    // sync fails instead, the restarted engine's statistics are what `stats_durable` showed.
    for fails in [false, true] {
        let fault = FaultStorage::new();
        let (engine, _) = Engine::open_on(config(), fault.clone(), fault.clone()).unwrap();
        for sub in script() {
            engine.submit_wait(sub.requests).expect("the engine runs");
        }
        let (durable, live) = all_stats(&engine);
        assert_eq!(durable, live, "everything is durable");
        assert!(durable.total.count > 0, "the script settles");
        let (reply, _release) = submit_with_sync_held(&engine, &fault, vec![another_settlement()]);
        let (held, live) = all_stats(&engine);
        assert_eq!(live.total.count, durable.total.count + 1, "applied");
        assert_eq!(held, durable, "not durable: not shown");
        if fails {
            fault.set_crash_at_sync(fault.syncs_total() + 1);
        }
        fault.release_syncs();
        let acknowledged = reply.blocking_recv().is_ok();
        assert_eq!(acknowledged, !fails);
        if !fails {
            let (after, live) = all_stats(&engine);
            assert_eq!(after, live, "durable: shown");
            engine.shutdown().unwrap();
            continue;
        }
        assert!(engine.shutdown().is_err(), "the failed sync is reported");
        assert_eq!(
            all_stats(&engine).0,
            durable,
            "still as of the last durable batch"
        );
        drop(engine);
        let restarted = fault.after_crash(CrashMode::DropUnsynced);
        let (engine, _) = Engine::open_on(config(), restarted.clone(), restarted).unwrap();
        let (reopened, live) = all_stats(&engine);
        assert_eq!((reopened, live), (durable, durable));
        engine.shutdown().unwrap();
    }
}
