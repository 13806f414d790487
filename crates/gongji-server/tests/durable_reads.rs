//! Reads never show a state that a crash could still undo: with the journal's fsync held on
//! [`FaultStorage`], a batch is applied but not durable; a read made then sees it in the state,
//! and its answer ([`Engine::read_durable`]) waits for the sync: it comes when the sync
//! succeeds, and never when the sync fails (the crash then undoes what the read saw). The
//! reads answered as of the last durable op ([`Engine::person_durable`] and its siblings) do not
//! wait: during the held sync they show exactly the state before the batch, which is what an
//! engine restarted after that sync failed shows.

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

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
    fault.hold_syncs();
    // A failed assertion below must not leave the sync thread waiting for ever (the engine's
    // drop waits for it): the gate opens when the test panics.
    struct Release(FaultStorage);
    impl Drop for Release {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.release_syncs();
            }
        }
    }
    let _release = Release(fault.clone());
    let reply = engine.submit(vec![filler(1)]).expect("queued");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fault.syncs_held() == 0 {
        assert!(std::time::Instant::now() < deadline, "the sync never came");
        std::thread::sleep(Duration::from_millis(1));
    }
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

/// The persons of the script and one the held batch enrols.
const PERSONS: [&str; 7] = ["F01", "F02", "F03", "F04", "F05", "F06", "F07"];

/// Every read the `_durable` methods answer, of every person, entry page, settlement, binding
/// and the statistics, as text: from the durable views, or (`live`) from the state's own views.
fn views(engine: &Engine, live: bool) -> Vec<String> {
    use gongji_core::time::parse_period;
    let (from, to) = (
        parse_period("2030-01").unwrap(),
        parse_period("2030-12").unwrap(),
    );
    let mut out = Vec::new();
    for psn in PERSONS {
        if live {
            out.push(format!("{:?}", engine.read(|s| s.person(psn))));
            out.push(format!("{:?}", engine.read(|s| s.entries(psn, None, 1000))));
            out.push(format!("{:?}", engine.read(|s| s.entries(psn, Some(3), 2))));
        } else {
            out.push(format!("{:?}", engine.person_durable(psn).unwrap()));
            out.push(format!(
                "{:?}",
                engine.entries_durable(psn, None, 1000).unwrap()
            ));
            out.push(format!(
                "{:?}",
                engine.entries_durable(psn, Some(3), 2).unwrap()
            ));
        }
    }
    for id in 1..=8 {
        if live {
            out.push(format!("{:?}", engine.read(|s| s.settlement(id))));
        } else {
            out.push(format!("{:?}", engine.settlement_durable(id).unwrap()));
        }
    }
    for id in 1..=8 {
        if live {
            out.push(format!("{:?}", engine.read(|s| s.binding(id))));
        } else {
            out.push(format!("{:?}", engine.binding_durable(id).unwrap()));
        }
    }
    for prov in [None, Some(44)] {
        if live {
            out.push(format!("{:?}", engine.read(|s| s.stats(from, to, prov))));
        } else {
            out.push(format!("{:?}", engine.stats_durable(from, to, prov)));
        }
    }
    out
}

/// One batch after the script that changes what every durable read shows: a settlement drawn
/// from givers, a cancellation, a reversal, a wallet opened, a binding made and one revoked, a
/// status change, an enrolment and a transfer.
fn changing_batch() -> Vec<gongji_server::WriteRequest> {
    use gongji_core::{Actor, Body, Fen, InstCode, Msgid, PersonStatus, PsnNo, Relation};
    let psn = |s: &str| PsnNo::from(s).unwrap();
    // The reversal names settlement 4 by its msgid: the fourth distinct settling msgid.
    let mut settled: Vec<Msgid> = Vec::new();
    for request in script().into_iter().flat_map(|s| s.requests) {
        if matches!(request.body, Body::Settle { .. }) && !settled.contains(&request.msgid) {
            settled.push(request.msgid);
        }
    }
    let bodies = vec![
        Body::Settle {
            fixmedins_code: InstCode::from("H44010600001").unwrap(),
            psn_no: psn("F03"),
            medfee_sumamt: Fen(30_000),
            fund_pay_sumamt: Fen(10_000),
            acct_used: true,
        },
        Body::Cancel { setl_id: 2 },
        Body::Reverse {
            omsgid: settled[3],
            fixmedins_code: None,
        },
        Body::OpenWallet { psn_no: psn("F04") },
        Body::Bind {
            giver_psn_no: psn("F04"),
            receiver_psn_no: psn("F05"),
            relation: Relation::Sibling,
        },
        Body::Revoke { binding_id: 1 },
        Body::SetStatus {
            psn_no: psn("F02"),
            status: PersonStatus::Active,
        },
        Body::Enrol {
            psn_no: psn("F07"),
            certno: gongji_core::command::ArrayString::from(
                &gongji_core::certno::certno_with_check("44010619800101007").unwrap(),
            )
            .unwrap(),
            psn_name: "测试7".into(),
            insutype: gongji_core::Insutype::Employee,
            admdvs: 440100,
        },
        Body::TransferCreate {
            from_psn_no: psn("F01"),
            to_psn_no: psn("F05"),
            amount: Fen(2_000),
            source: gongji_core::TransferSource::Acct,
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| gongji_server::WriteRequest {
            msgid: Msgid::from(&format!("held-{i}")).unwrap(),
            inf_time: None,
            actor: Actor::Admin,
            body,
        })
        .collect()
}

/// Runs the script, holds the journal's syncs and submits [`changing_batch`]; returns once
/// the writer applied it and its sync waits at the gate.
fn apply_changes_but_hold_sync(
    fault: &FaultStorage,
) -> (
    std::sync::Arc<Engine>,
    tokio::sync::oneshot::Receiver<Vec<gongji_server::WriteResult>>,
    Vec<String>,
) {
    let (engine, _) = Engine::open_on(config(), fault.clone(), fault.clone()).unwrap();
    let engine = std::sync::Arc::new(engine);
    for sub in script() {
        engine.submit_wait(sub.requests).expect("the engine runs");
    }
    let before = views(&engine, false);
    assert_eq!(
        before,
        views(&engine, true),
        "with every op durable, the durable views are the state's own"
    );
    fault.hold_syncs();
    let reply = engine.submit(changing_batch()).expect("queued");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fault.syncs_held() == 0 {
        assert!(std::time::Instant::now() < deadline, "the sync never came");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(engine.applied_op() > engine.durable_op());
    (engine, reply, before)
}

#[test]
fn durable_reads_between_apply_and_sync_answer_at_once_with_the_durable_state() {
    // Proves: while a batch that changes every kind of thing a read shows is applied but its
    // sync is held, the person, entries, settlement, binding and statistics reads answer at once (no
    // wait on the sync: the gate is still shut) with exactly what they showed before the
    // batch; once the sync completes they show the batch, as the state's own views do.
    let fault = FaultStorage::new();
    let (engine, reply, before) = apply_changes_but_hold_sync(&fault);
    let release = ReleaseOnPanic(fault.clone());
    let live = views(&engine, true);
    let changed = before.iter().zip(&live).filter(|(b, l)| b != l).count();
    assert!(
        changed >= 12,
        "the batch changes what reads show ({changed} differ)"
    );
    assert_eq!(
        views(&engine, false),
        before,
        "a durable read showed an op not yet durable"
    );
    fault.release_syncs();
    drop(release);
    let results = reply.blocking_recv().expect("acknowledged after the sync");
    for (i, result) in results.iter().enumerate() {
        assert!(matches!(result, Ok(a) if !a.replayed), "op {i}: {result:?}");
    }
    assert_eq!(views(&engine, false), live);
    engine.shutdown().unwrap();
}

#[test]
fn durable_reads_between_apply_and_a_failed_sync_show_what_the_crash_keeps() {
    // Proves: what the durable reads show while the batch's sync is held is exactly the state
    // a crash at that sync leaves: the engine restarted after the failed sync shows the same,
    // and the stopped engine's durable reads keep showing it.
    let fault = FaultStorage::new();
    let (engine, reply, before) = apply_changes_but_hold_sync(&fault);
    let release = ReleaseOnPanic(fault.clone());
    let during = views(&engine, false);
    fault.set_crash_at_sync(fault.syncs_total() + 1);
    fault.release_syncs();
    drop(release);
    assert!(
        reply.blocking_recv().is_err(),
        "the batch is not acknowledged"
    );
    assert!(engine.shutdown().is_err(), "the failed sync is reported");
    assert_eq!(views(&engine, false), during);
    drop(engine);
    let restarted = fault.after_crash(CrashMode::DropUnsynced);
    let (engine, _) = Engine::open_on(config(), restarted.clone(), restarted).unwrap();
    assert_eq!(views(&engine, true), during);
    assert_eq!(during, before);
    engine.shutdown().unwrap();
}

/// Opens the gate if a test fails with it held: the engine's drop waits for the sync thread.
struct ReleaseOnPanic(FaultStorage);

impl Drop for ReleaseOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.release_syncs();
        }
    }
}

#[test]
fn a_revocation_or_binding_of_nobody_is_refused_and_changes_no_durable_read() {
    // Proves: the writer's look-ahead for the read overlay takes bad input as the state does:
    // revoking a binding that does not exist or binding an unknown person is refused, the
    // writer keeps running, and what the durable reads show is unchanged.
    use gongji_core::{Actor, Body, Msgid, PsnNo, Relation};
    let fault = FaultStorage::new();
    let (engine, _) = Engine::open_on(config(), fault.clone(), fault.clone()).unwrap();
    for sub in script() {
        engine.submit_wait(sub.requests).expect("the engine runs");
    }
    let before = views(&engine, false);
    let bad = |i: u32, body: Body| gongji_server::WriteRequest {
        msgid: Msgid::from(&format!("bad-{i}")).unwrap(),
        inf_time: None,
        actor: Actor::Admin,
        body,
    };
    let results = engine
        .submit_wait(vec![
            bad(0, Body::Revoke { binding_id: 999 }),
            bad(
                1,
                Body::Bind {
                    giver_psn_no: PsnNo::from("NOBODY").unwrap(),
                    receiver_psn_no: PsnNo::from("F03").unwrap(),
                    relation: Relation::Child,
                },
            ),
        ])
        .expect("the engine runs");
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    assert!(engine.is_running());
    assert_eq!(views(&engine, false), before);
    engine.shutdown().unwrap();
}
