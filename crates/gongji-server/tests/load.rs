//! The writer's load samples: taken by the writer itself on its own schedule, whether or not
//! anyone reads them, with running totals whose differences are the load between samples.

use std::time::{Duration, Instant};

use gongji_core::{Actor, Body, Msgid, Role};
use gongji_journal::FaultStorage;
use gongji_server::{Config, Engine, WriteRequest};

fn token(i: u32) -> WriteRequest {
    let mut token_hash = [0x5A; 32];
    token_hash[..4].copy_from_slice(&i.to_le_bytes());
    WriteRequest {
        msgid: Msgid::from(&format!("load-{i}")).unwrap(),
        inf_time: None,
        actor: Actor::Admin,
        body: Body::CreateToken {
            token_hash,
            role: Role::Admin,
            fixmedins_code: None,
            psn_no: None,
        },
    }
}

#[test]
fn the_writer_samples_its_load_while_nobody_asks() {
    // Proves: with a 1 s sample interval, samples appear while the engine is idle (nobody
    // reads them until the end), they are at least a second apart and in time order, their
    // totals never go down, and the last counts the writes made before it.
    let mut config = Config::new("/nonexistent/gongji-load-test");
    config.load_sample_seconds = 1;
    let storage = FaultStorage::new();
    let (engine, _) = Engine::open_on(config, storage.clone(), storage).expect("opens");
    let started = Instant::now();
    let applied_before = engine
        .counters()
        .ops_applied_total
        .load(std::sync::atomic::Ordering::Relaxed);
    let results = engine
        .submit_wait((0..25).map(token).collect())
        .expect("running");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    while engine.load_samples().len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no samples taken"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let samples = engine.load_samples();
    for w in samples.windows(2) {
        assert!(w[1].unix_time > w[0].unix_time, "{w:?}");
        assert!(w[1].ops_applied_total >= w[0].ops_applied_total, "{w:?}");
        assert!(w[1].batches_total >= w[0].batches_total, "{w:?}");
    }
    let last = samples.last().unwrap();
    // The 25 writes and any idle ticks (one op each) since the engine opened.
    assert!(last.ops_applied_total >= applied_before + 25, "{last:?}");
    assert_eq!(last.ops_rejected_total, 0);
    engine.shutdown().expect("shutdown");
}
