//! History files (`history.rs`): full chunks of settlements, details, entries, closed
//! transfers and contributions leave the heap for files while the engine runs; reads,
//! cancellations of old settlements, answers to old transfers, restarts and lost or damaged
//! files all give the answers of a state that kept everything in memory.

use std::time::{Duration, Instant};

use gongji_core::{Actor, Body, CreditItem, Fen, InstCode, Msgid, PsnNo, State};
use gongji_server::scenario::script;
use gongji_server::{Config, Engine, WriteRequest};

const SETTLEMENTS: u32 = 70_000;

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir);
    config.snapshot_interval_ops = 2_000;
    // Small segments, so that segments before the older snapshot are archived as it goes.
    config.journal.segment_size_bytes = 2 << 20;
    config.journal.body_bytes_max = 64 << 10;
    config.journal.batch_bytes_max = 2 << 20;
    config.idle_tick_seconds = 3600;
    config
}

fn admin(msgid: String, time: i64, body: Body) -> WriteRequest {
    WriteRequest {
        msgid: Msgid::from(&msgid).unwrap(),
        inf_time: Some(time),
        actor: Actor::Admin,
        body,
    }
}

/// Every read this test compares: old and new settlements, a page of old entries, a page of
/// new ones, and the state hash.
fn reads(state: &State) -> String {
    let entries = |after| state.entries("F01", after, 1000).unwrap();
    format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        state.settlement(7),
        state.settlement(u64::from(SETTLEMENTS) - 3),
        entries(None),
        entries(Some(40_000)),
        state.person("F01").unwrap(),
        state.state_hash(),
    )
}

fn history_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("history"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn history_goes_to_files_and_comes_back_exactly() {
    // Proves: with 70,000 settlements (each an entry), the full first chunks of settlements
    // and entries go to history files while the engine runs and the writer swaps them out of
    // its state; a settlement in a cold chunk is cancelled through the writer; every read and
    // the state hash are unchanged by going cold, by a restart (which attaches the files), by
    // a deleted file and by a damaged one (both rebuilt from the journal, with a report; the
    // damaged one found by `verify`, or by the first read of its block after a start).
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(config(dir.path())).unwrap();
    let subs = script();
    let time = subs
        .iter()
        .flat_map(|s| &s.requests)
        .filter_map(|r| r.inf_time)
        .max()
        .unwrap();
    for sub in subs {
        engine.submit_wait(sub.requests).unwrap();
    }
    let credit = Body::Credit {
        period: gongji_core::time::parse_period("2031-01").unwrap(),
        items: vec![CreditItem {
            psn_no: PsnNo::from("F01").unwrap(),
            amount: Fen(10_000_000),
        }],
    };
    let r = engine
        .submit_wait(vec![admin("h-credit".into(), time, credit)])
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let first_setl = engine.read(|s| s.settlement_count()) as u64 + 1;
    let mut k = 0;
    while k < SETTLEMENTS {
        let n = (SETTLEMENTS - k).min(8_000);
        let requests = (k..k + n)
            .map(|i| {
                let body = Body::Settle {
                    fixmedins_code: InstCode::from("H44010600001").unwrap(),
                    psn_no: PsnNo::from("F01").unwrap(),
                    medfee_sumamt: Fen(3),
                    fund_pay_sumamt: Fen(1),
                    acct_used: true,
                };
                admin(format!("h-{i}"), time, body)
            })
            .collect();
        let results = engine.submit_wait(requests).unwrap();
        assert!(results.iter().all(|r| r.is_ok()));
        k += n;
    }
    let hot = engine.read(reads);
    // The snapshot thread writes the files; the writer swaps them in after a later batch.
    let started = Instant::now();
    let mut k = 0;
    while engine
        .counters()
        .history_chunks_swapped_total
        .load(std::sync::atomic::Ordering::Relaxed)
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no history chunk went cold: {:?}, {:?}",
            engine.counters(),
            std::fs::read_dir(dir.path().join("history"))
                .unwrap()
                .collect::<Vec<_>>()
        );
        let body = Body::Settle {
            fixmedins_code: InstCode::from("H44010600001").unwrap(),
            psn_no: PsnNo::from("F01").unwrap(),
            medfee_sumamt: Fen(3),
            fund_pay_sumamt: Fen(1),
            acct_used: false,
        };
        let r = engine
            .submit_wait(vec![admin(format!("w-{k}"), time, body)])
            .unwrap();
        assert!(r[0].is_ok(), "{r:?}");
        k += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let files = history_files(dir.path());
    assert!(
        files.iter().any(|f| f.ends_with("entries-00000000.bin")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("settlements-00000000.bin")),
        "{files:?}"
    );
    let cold = engine.read(|s| {
        assert!(s.cold_chunk_count(gongji_core::Column::Entries) >= 1);
        reads(s)
    });
    // The later settlements changed the state hash; compare the rest.
    let strip = |r: &str| r.rsplit_once('|').unwrap().0.to_owned();
    assert_eq!(strip(&cold), strip(&hot));

    // Cancel a settlement whose record is in a cold chunk.
    let old = first_setl + 5;
    let r = engine
        .submit_wait(vec![admin(
            "h-cancel".into(),
            time,
            Body::Cancel { setl_id: old },
        )])
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    assert!(engine.read(|s| s.settlement(old).unwrap().cancelled));
    // The cancellation's record was read ahead of the writer (prefetch).
    let prefetched = engine
        .counters()
        .history_prefetched_total
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(prefetched >= 1, "{prefetched}");
    let before = engine.read(reads);
    engine.shutdown().unwrap();
    drop(engine);

    // A restart attaches the files.
    let (engine, report) = Engine::open(config(dir.path())).unwrap();
    assert!(report.history_chunks >= 2, "{report:?}");
    assert!(report.history_rebuilt.is_none());
    assert_eq!(engine.read(reads), before);
    engine.read(|s| s.check()).unwrap();
    engine.shutdown().unwrap();
    drop(engine);

    // A write a crash cut short leaves a temporary file: removed at the next start.
    let tmp = dir.path().join("history/entries-00000099.tmp");
    std::fs::write(&tmp, b"half a chunk").unwrap();
    let (engine, _) = Engine::open(config(dir.path())).unwrap();
    assert!(!tmp.exists());
    engine.shutdown().unwrap();
    drop(engine);

    // Old segments were archived (renamed), not removed: recovery does not read them.
    let journal = |prefix: &str| {
        std::fs::read_dir(dir.path().join("journal"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with(prefix)
            })
            .count()
    };
    assert!(journal("archived-journal-") > 0, "no segment archived");
    // `gongji verify`'s replay from op 1 reads archived segments where they are, and its
    // state (history in memory) equals the recovered one with history in files.
    let (genesis, _) = gongji_server::replay_from_genesis(&config(dir.path()), Default::default())
        .unwrap()
        .expect("op 1 is still on disk");
    let (recovered, _, report) = gongji_server::inspect(&config(dir.path())).unwrap();
    assert!(report.history_chunks >= 2, "{report:?}");
    assert_eq!(genesis.state_hash(), recovered.state_hash());
    assert_eq!(reads(&genesis), before);
    assert!(journal("archived-journal-") > 0, "verify moved nothing");

    // A deleted file, then a damaged one: rebuilt from the journal (its archived segments
    // restored first).
    let entries = dir.path().join("history/entries-00000000.bin");
    std::fs::remove_file(&entries).unwrap();
    let (engine, report) = Engine::open(config(dir.path())).unwrap();
    assert!(report.history_rebuilt.is_some(), "{report:?}");
    assert_eq!(report.replayed_ops, report.head_op);
    assert_eq!(engine.read(reads), before);
    assert!(entries.exists());
    engine.shutdown().unwrap();
    drop(engine);
    let mut bytes = std::fs::read(&entries).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&entries, &bytes).unwrap();
    // A read-only open (`verify`) checks every block: it finds the damage and rebuilds in
    // memory from the journal.
    let (recovered, _, report) = gongji_server::inspect(&config(dir.path())).unwrap();
    let why = report.history_rebuilt.as_deref().unwrap();
    assert!(why.contains("checksum mismatch in block 0"), "{report:?}");
    assert_eq!(reads(&recovered), before);
    // A start checks headers and block tables, not bodies: it serves at once. The first read
    // of the damaged block fails rather than serve it, and sets the file aside...
    let (engine, report) = Engine::open(config(dir.path())).unwrap();
    assert!(report.history_rebuilt.is_none(), "{report:?}");
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.read(reads)));
    assert!(read.is_err(), "a damaged block was served");
    assert!(!entries.exists() && entries.with_extension("damaged").exists());
    engine.shutdown().unwrap();
    drop(engine);
    // ...so that the next start rebuilds it from the journal.
    let (engine, report) = Engine::open(config(dir.path())).unwrap();
    assert!(report.history_rebuilt.is_some(), "{report:?}");
    assert_eq!(engine.read(reads), before);
    assert!(entries.exists());
    engine.shutdown().unwrap();
}

fn psn(i: u32) -> PsnNo {
    PsnNo::from(&format!("T{i:04}")).unwrap()
}

/// The wallet world of `scenario::wallet_world`, as admin writes at `time`.
fn wallet_world(time: i64) -> Vec<WriteRequest> {
    gongji_server::scenario::wallet_world('T', "19800101")
        .into_iter()
        .enumerate()
        .map(|(n, body)| admin(format!("tw-{}", n + 1), time, body))
        .collect()
}

/// Every read of transfers and contributions this test compares: transfers by id (as
/// `GET /v1/wallet/transfers/{id}` answers), projection rows, a resident's entries, the
/// state hash.
fn wallet_reads(state: &State) -> String {
    let transfers: Vec<_> = [1, 2, 3, 30_000, 65_536, 65_537]
        .iter()
        .map(|&id| state.transfer(id))
        .collect();
    let rows: Vec<_> = [0, 1, 50_000, 65_535]
        .iter()
        .map(|&c| (state.transfer_row(c), state.contribution_row(c)))
        .collect();
    format!(
        "{transfers:?}|{rows:?}|{:?}|{:?}",
        state.entries("T0040", None, 1000),
        state.state_hash()
    )
}

fn cold_both(state: &State) -> bool {
    use gongji_core::Column;
    state.cold_chunk_count(Column::Transfers) >= 1
        && state.cold_chunk_count(Column::Contributions) >= 1
}

#[test]
fn transfers_and_contributions_go_to_files_and_come_back_exactly() {
    // Proves: through a real data directory, once more than 64 K wallet transfers are closed
    // (accepted, declined, returned on expiry) and more than 64 K contributions paid, their
    // first chunks go to history files while the engine runs; a transfer and a contribution
    // older than anything in memory read as the journal's replay from op 1 gives them; an
    // answer to an old (cold) transfer is read ahead of the writer and refused; a restart
    // attaches the files; a deleted transfers file and a damaged contributions file are found
    // (`verify`'s read-only open checks every block) and rebuilt from the journal, with the
    // same answers.
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(config(dir.path())).unwrap();
    let day = 86_400;
    let mut time = gongji_core::time::parse_cst("2031-06-01 10:00:00").unwrap();
    let r = engine.submit_wait(wallet_world(time)).unwrap();
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    // Transfers, 120 a day (3 per sender), 20 days a submission. Ids are predictable: the
    // first of each day's is accepted and the second declined; the rest are returned at
    // 06:00 the next day (by the next day's first write).
    let (mut n, mut next_id) = (0u64, 1u64);
    while next_id <= 65_600 {
        let mut requests = Vec::new();
        for _ in 0..20 {
            for body in gongji_server::scenario::wallet_day('T', next_id) {
                n += 1;
                requests.push(admin(format!("tt-{n}"), time, body));
            }
            next_id += 120;
            time += day;
        }
        let r = engine.submit_wait(requests).unwrap();
        assert!(
            r.iter().all(|r| r.is_ok()),
            "{:?}",
            r.iter().find(|r| r.is_err())
        );
    }
    // Contributions: senders 0..10 for their residents, years from 1970.
    let mut year = 1970u16;
    let contribute = |year: u16, i: u32, n: &mut u64| {
        *n += 1;
        let body = Body::Contribute {
            payer_psn_no: psn(i),
            psn_no: psn(40 + i),
            year,
            amount: Fen(1 + u64::from(year % 3)),
        };
        admin(format!("tc-{n}"), time, body)
    };
    while engine.read(|s| s.contribution_count()) <= 65_600 {
        let requests = (0..600)
            .flat_map(|k| (0..10).map(move |i| (year + k, i)))
            .map(|(y, i)| contribute(y, i, &mut n))
            .collect();
        let r = engine.submit_wait(requests).unwrap();
        assert!(
            r.iter().all(|r| r.is_ok()),
            "{:?}",
            r.iter().find(|r| r.is_err())
        );
        year += 600;
    }
    // The snapshot thread writes the files; the writer swaps them in after a later batch.
    let started = Instant::now();
    while !engine.read(cold_both) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no chunk went cold: {:?}",
            history_files(dir.path())
        );
        let r = engine
            .submit_wait(vec![contribute(year, 0, &mut n)])
            .unwrap();
        assert!(r[0].is_ok(), "{r:?}");
        year += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let files = history_files(dir.path());
    for name in ["transfers-00000000.bin", "contributions-00000000.bin"] {
        assert!(files.iter().any(|f| f.ends_with(name)), "{files:?}");
    }
    // An answer to transfer 3 (returned long ago, in a cold chunk): prefetched, refused.
    let prefetched = || {
        engine
            .counters()
            .history_prefetched_total
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before_prefetch = prefetched();
    let r = engine
        .submit_wait(vec![admin(
            "tt-old".into(),
            time,
            Body::TransferAccept { transfer_id: 3 },
        )])
        .unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().code,
        gongji_core::ErrCode::NotPending
    );
    assert!(prefetched() > before_prefetch);
    let live = engine.read(|s| {
        assert!(format!("{:?}", s.transfer(3)).contains("Returned"));
        s.check().unwrap();
        wallet_reads(s)
    });
    engine.shutdown().unwrap();
    drop(engine);
    let (genesis, _) = gongji_server::replay_from_genesis(&config(dir.path()), Default::default())
        .unwrap()
        .expect("op 1 is still on disk");
    assert_eq!(wallet_reads(&genesis), live);

    // A restart attaches the files.
    let (engine, report) = Engine::open(config(dir.path())).unwrap();
    assert!(report.history_chunks >= 2, "{report:?}");
    assert!(report.history_rebuilt.is_none(), "{report:?}");
    assert!(engine.read(cold_both));
    assert_eq!(engine.read(wallet_reads), live);
    engine.shutdown().unwrap();
    drop(engine);

    // A deleted transfers file: rebuilt from the journal.
    let transfers = dir.path().join("history/transfers-00000000.bin");
    std::fs::remove_file(&transfers).unwrap();
    let (engine, report) = Engine::open(config(dir.path())).unwrap();
    assert!(report.history_rebuilt.is_some(), "{report:?}");
    assert_eq!(engine.read(wallet_reads), live);
    assert!(transfers.exists());
    engine.shutdown().unwrap();
    drop(engine);

    // A damaged contributions file: `verify`'s read-only open finds it and rebuilds in
    // memory; a start serves and the first read of the block sets it aside; the next start
    // rebuilds it.
    let contributions = dir.path().join("history/contributions-00000000.bin");
    let mut bytes = std::fs::read(&contributions).unwrap();
    bytes[2000] ^= 1;
    std::fs::write(&contributions, &bytes).unwrap();
    let (recovered, _, report) = gongji_server::inspect(&config(dir.path())).unwrap();
    let why = report.history_rebuilt.as_deref().unwrap();
    assert!(why.contains("contributions-00000000.bin"), "{report:?}");
    assert_eq!(wallet_reads(&recovered), live);
    let (engine, _) = Engine::open(config(dir.path())).unwrap();
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.read(wallet_reads)));
    assert!(read.is_err(), "a damaged block was served");
    engine.shutdown().unwrap();
    drop(engine);
    let (engine, report) = Engine::open(config(dir.path())).unwrap();
    assert!(report.history_rebuilt.is_some(), "{report:?}");
    assert_eq!(engine.read(wallet_reads), live);
    engine.read(|s| s.check()).unwrap();
    engine.shutdown().unwrap();
}
