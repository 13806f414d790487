//! The PostgreSQL store against a real server: the same replies, state hash and head hash as
//! the file store for one scripted workload (also after restarts and a full replay), fencing
//! of a second writer by the primary key, a database changed under a running writer, hostile
//! URLs and damaged histories, chunked snapshots, and the journal reader.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use gongji_core::{Actor, Body, Fen, InstCode, Msgid, Params, PsnNo, State};
use gongji_journal::{Anchor, FsStorage, JournalConfig};
use gongji_pg::testkit::TestDb;
use gongji_pg::{read_journal, verify_journal, PgStore, PgStoreOptions};
use gongji_server::scenario::{filler, op_of, script, Sub};
use gongji_server::{
    inspect_store, replay_from_genesis_store, Config, Engine, OpenReport, ServerError, Store,
    SubmitError, WriteRequest, WriteResult,
};

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir);
    // Small segments on the file side, so that it rolls and removes segments; the limits on
    // bodies and batches are the same on both stores.
    config.journal = JournalConfig {
        segment_size_bytes: 4096,
        body_bytes_max: 1024,
        batch_bytes_max: 64 * 1024,
    };
    config.snapshot_interval_ops = 7;
    // Every scripted write carries its own time; no ticks of the writer's own.
    config.idle_tick_seconds = 3600;
    config
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gongji-pgstore-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open_files(dir: &std::path::Path) -> (Engine, OpenReport) {
    Engine::open_on(
        config(dir),
        FsStorage::open(dir).unwrap(),
        FsStorage::open(dir).unwrap(),
    )
    .unwrap_or_else(|e| panic!("file store: {e}"))
}

fn no_lock() -> PgStoreOptions {
    PgStoreOptions {
        advisory_lock: false,
        ..PgStoreOptions::default()
    }
}

fn try_open_pg(url: &str, options: PgStoreOptions) -> Result<(Engine, OpenReport), ServerError> {
    let store = PgStore::open(url, options)?;
    Engine::open_store(
        config(std::path::Path::new("/nonexistent")),
        Box::new(store),
    )
}

fn open_pg(url: &str, options: PgStoreOptions) -> (Engine, OpenReport) {
    try_open_pg(url, options).unwrap_or_else(|e| panic!("postgres store: {e}"))
}

fn hashes(engine: &Engine) -> ([u8; 32], [u8; 32], u64) {
    let (state_hash, ops) = engine.read(|s| (s.state_hash(), s.op_count()));
    (state_hash, engine.head_hash(), ops)
}

fn submit(engine: &Engine, sub: &Sub) -> Vec<WriteResult> {
    let results = engine
        .submit_wait(sub.requests.clone())
        .expect("engine runs");
    for ((request, result), ok) in sub.requests.iter().zip(&results).zip(&sub.expect_ok) {
        assert_eq!(result.is_ok(), *ok, "{:?}: {result:?}", request.body);
    }
    results
}

/// Runs the whole script into a fresh database and shuts down (a snapshot at the head).
fn populate(url: &str) -> ([u8; 32], [u8; 32], u64) {
    let (engine, _) = open_pg(url, no_lock());
    for sub in script() {
        submit(&engine, &sub);
    }
    let h = hashes(&engine);
    engine.shutdown().unwrap();
    h
}

#[test]
fn both_stores_give_the_same_replies_state_hash_and_head_hash() {
    // Proves: the scripted workload (every command kind, rejections, an in-batch replay, a day
    // change) gives identical replies on the file store and on PostgreSQL, the same state hash
    // and chain head after every restart, and the same state when PostgreSQL replays its whole
    // journal from op 1 (snapshots removed), read-only inspection included.
    let subs = script();
    let dir = temp_dir("parity");
    let db = TestDb::new();
    let (mut file, _) = open_files(&dir);
    let (mut pg, report) = open_pg(&db.url, PgStoreOptions::default());
    assert_eq!(report.head_op, 0);
    for (i, sub) in subs.iter().enumerate() {
        let a = submit(&file, sub);
        let b = submit(&pg, sub);
        assert_eq!(a, b, "submission {i}: replies differ");
        assert_eq!(hashes(&file), hashes(&pg), "submission {i}");
        if i == subs.len() / 2 {
            file.shutdown().unwrap();
            pg.shutdown().unwrap();
            drop((file, pg));
            file = open_files(&dir).0;
            pg = open_pg(&db.url, PgStoreOptions::default()).0;
            assert_eq!(hashes(&file), hashes(&pg), "after a restart");
        }
    }
    let end = hashes(&pg);
    assert!(end.2 > 30, "the script journals its ops ({})", end.2);
    pg.read(|s| s.check()).unwrap();
    // Every acknowledged write replays with its first reply on both.
    let replays: Vec<WriteRequest> = subs.iter().flat_map(|s| s.requests.clone()).collect();
    for chunk in replays.chunks(10) {
        let a = file.submit_wait(chunk.to_vec()).unwrap();
        let b = pg.submit_wait(chunk.to_vec()).unwrap();
        assert_eq!(a, b, "replays differ");
    }
    assert_eq!(hashes(&pg), end, "replays change nothing");
    file.shutdown().unwrap();
    pg.shutdown().unwrap();
    drop((file, pg));

    let (pg, report) = open_pg(&db.url, PgStoreOptions::default());
    assert_eq!(hashes(&pg), end, "recovered from the shutdown snapshot");
    assert_eq!(report.replayed_ops, 0);
    pg.shutdown().unwrap();
    drop(pg);
    let mut c = db.client();
    let snapshots: i64 = c
        .query_one("SELECT count(*) FROM gongji_snapshot", &[])
        .unwrap()
        .get(0);
    assert_eq!(snapshots, 2, "the newest two snapshots are kept");
    let journal_rows: i64 = c
        .query_one("SELECT count(*) FROM gongji_journal", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        journal_rows as u64, end.2,
        "every op is a row (kept by default)"
    );

    // Read-only inspection and replay from op 1 on the PostgreSQL store.
    let mut ro = PgStore::open_read_only(&db.url).unwrap();
    let (state, head, _) = inspect_store(&config(&dir), &mut ro).unwrap();
    assert_eq!((state.state_hash(), head.chain_hash), (end.0, end.1));
    let mut ro = PgStore::open_read_only(&db.url).unwrap();
    let (genesis, head) = replay_from_genesis_store(&config(&dir), &mut ro, Params::default())
        .unwrap()
        .expect("op 1 is held");
    assert_eq!((genesis.state_hash(), head.chain_hash), (end.0, end.1));
    assert_eq!(verify_journal(&mut c).unwrap(), (end.2, head));

    // Without snapshots, recovery replays every row and reaches the same state.
    c.batch_execute("DELETE FROM gongji_snapshot").unwrap();
    let (pg, report) = open_pg(&db.url, PgStoreOptions::default());
    assert_eq!(report.snapshot_op, None);
    assert_eq!(report.replayed_ops, end.2);
    assert_eq!(hashes(&pg), end, "full replay from PostgreSQL");
    let (file, _) = open_files(&dir);
    assert_eq!(hashes(&file), end, "the file store agrees");
    drop((file, pg));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_writer_is_fenced_by_the_primary_key() {
    // Proves: two engines recovered at the same head on one database (advisory lock off, so
    // only the key fences): the first to commit wins; the other's batch is refused with a
    // fencing error, nothing of it is acknowledged, its writer stops and refuses more; the
    // winner goes on, and the database holds exactly the winner's history.
    let subs = script();
    let db = TestDb::new();
    let (a, _) = open_pg(&db.url, no_lock());
    for sub in &subs[..10] {
        submit(&a, sub);
    }
    let (b, _) = open_pg(&db.url, no_lock());
    assert_eq!(hashes(&a), hashes(&b), "both recovered the same history");
    // B commits first: A, the older primary, is the one fenced.
    let mut reference = State::new(Params::default());
    for sub in &subs[..11] {
        for request in &sub.requests {
            let _ = reference.apply(&op_of(request));
        }
    }
    submit(&b, &subs[10]);
    assert_eq!(
        a.submit_wait(subs[11].requests.clone()),
        Err(SubmitError::Stopped),
        "the fenced writer acknowledges nothing"
    );
    let err = a.shutdown().unwrap_err();
    assert!(matches!(err, ServerError::Fenced(_)), "{err}");
    assert!(!a.is_running());
    assert_eq!(
        a.submit(subs[12].requests.clone()).err(),
        Some(SubmitError::Stopped)
    );
    assert!(
        err.to_string().contains("another writer committed op"),
        "{err}"
    );
    for sub in &subs[11..] {
        for request in &sub.requests {
            let _ = reference.apply(&op_of(request));
        }
        submit(&b, sub);
    }
    let end = hashes(&b);
    assert_eq!(end.0, reference.state_hash());
    b.shutdown().unwrap();
    drop((a, b));
    let (c, _) = open_pg(&db.url, no_lock());
    assert_eq!(hashes(&c), end, "the database holds the winner's history");
    let (checked, head) = verify_journal(&mut db.client()).unwrap();
    assert_eq!((checked, head.chain_hash), (end.2, end.1));
}

fn settle(msgid: &str, psn_no: &str, yuan: u64) -> WriteRequest {
    WriteRequest {
        msgid: Msgid::from(msgid).unwrap(),
        inf_time: Some(gongji_core::time::parse_cst("2030-05-21 12:00:00").unwrap()),
        actor: Actor::Admin,
        body: Body::Settle {
            fixmedins_code: InstCode::from("H44010600001").unwrap(),
            psn_no: PsnNo::from(psn_no).unwrap(),
            medfee_sumamt: Fen(yuan * 100),
            fund_pay_sumamt: Fen(0),
            acct_used: true,
        },
    }
}

#[test]
fn racing_writers_commit_exactly_one_history() {
    // Proves: two writers submitting at the same moment, round after round: exactly one batch
    // commits, the loser acknowledges nothing and stops, and the database replays to exactly
    // the winners' writes.
    let db = TestDb::new();
    populate(&db.url);
    let (base, _) = open_pg(&db.url, no_lock());
    let mut expected = base.read(|s| s.state_hash());
    drop(base);
    for round in 0..5 {
        let (a, _) = open_pg(&db.url, no_lock());
        let (b, _) = open_pg(&db.url, no_lock());
        let engines = [Arc::new(a), Arc::new(b)];
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = engines
            .iter()
            .enumerate()
            .map(|(w, engine)| {
                let (engine, barrier) = (engine.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let requests = vec![
                        settle(&format!("race-{round}-{w}-a"), "F03", 1 + w as u64),
                        settle(&format!("race-{round}-{w}-b"), "F01", 2),
                    ];
                    barrier.wait();
                    (requests.clone(), engine.submit_wait(requests))
                })
            })
            .collect();
        let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<_> = outcomes.iter().filter(|(_, r)| r.is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one commits");
        let loser = outcomes.iter().position(|(_, r)| r.is_err()).unwrap();
        assert_eq!(outcomes[loser].1, Err(SubmitError::Stopped));
        let err = engines[loser].shutdown().unwrap_err();
        assert!(
            matches!(err, ServerError::Fenced(_)),
            "round {round}: {err}"
        );
        let winner = 1 - loser;
        let winner_hash = engines[winner].read(|s| s.state_hash());
        engines[winner].shutdown().unwrap();
        drop(engines);
        let (check, _) = open_pg(&db.url, no_lock());
        let recovered = check.read(|s| s.state_hash());
        assert_eq!(recovered, winner_hash, "round {round}");
        assert_ne!(
            recovered, expected,
            "round {round}: the winner's writes are there"
        );
        expected = recovered;
    }
    verify_journal(&mut db.client()).unwrap();
}

#[test]
fn the_advisory_lock_refuses_a_second_serving_process() {
    // Proves: with the lock on (the default for serving), a second store opening the same
    // database is refused with a clear error until the first is gone.
    let db = TestDb::new();
    let short = PgStoreOptions {
        lock_wait: Duration::from_millis(300),
        ..PgStoreOptions::default()
    };
    let (a, _) = open_pg(&db.url, short.clone());
    let err = try_open_pg(&db.url, short).unwrap_err();
    assert!(
        err.to_string().contains("in use by another gongji process"),
        "{err}"
    );
    a.shutdown().unwrap();
    drop(a);
    // The ended session's lock goes when its backend exits: allow it a moment.
    let (b, _) = open_pg(&db.url, PgStoreOptions::default());
    b.shutdown().unwrap();
}

#[test]
fn a_database_changed_under_the_writer_stops_it() {
    // Proves: when the rows the writer's head stands on vanish (a restore, a manual delete),
    // its next batch is not committed on top of a different history: it stops, unacknowledged.
    let subs = script();
    let db = TestDb::new();
    let (a, _) = open_pg(&db.url, no_lock());
    for sub in &subs[..10] {
        submit(&a, sub);
    }
    let head = a.read(|s| s.op_count());
    db.client()
        .execute(
            "DELETE FROM gongji_journal WHERE op > $1",
            &[&(head as i64 - 3)],
        )
        .unwrap();
    assert_eq!(
        a.submit_wait(subs[10].requests.clone()),
        Err(SubmitError::Stopped)
    );
    let err = a.shutdown().unwrap_err();
    assert!(matches!(err, ServerError::Fenced(_)), "{err}");
    assert!(err.to_string().contains("does not hold op"), "{err}");
    let rows: i64 = db
        .client()
        .query_one("SELECT count(*) FROM gongji_journal", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows as u64, head - 3, "nothing was added");
}

#[test]
fn bad_urls_and_unreachable_servers_are_clear_errors() {
    // Proves: a malformed URL, a closed port and a database without the store's tables give
    // errors naming the problem (and never the password).
    let err = PgStore::open("postgres://u:secret@[::1", PgStoreOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad PostgreSQL URL"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    let err = PgStore::open(
        "postgres://u:secret@127.0.0.1:1/x",
        PgStoreOptions::default(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot connect to"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    let db = TestDb::new();
    let err = PgStore::open_read_only(&db.url).unwrap_err();
    assert!(err.to_string().contains("holds no gongji store"), "{err}");
}

/// A change made to a populated database.
type Damage = dyn Fn(&mut postgres::Client);

/// Populates a fresh database, applies `damage`, and returns what opening it gives.
fn open_damaged(damage: &Damage) -> Result<(Engine, OpenReport), String> {
    let db = TestDb::new();
    populate(&db.url);
    damage(&mut db.client());
    let opened = try_open_pg(&db.url, no_lock()).map_err(|e| e.to_string());
    if let Ok((engine, _)) = &opened {
        engine.shutdown().unwrap();
    }
    opened
}

#[test]
fn damaged_histories_are_refused_with_the_op_named() {
    // Proves: an edited row, a missing row, rows of another history, a snapshot ahead of the
    // journal, a journal without its start, and a snapshot of another history are each refused
    // at start with an error naming the op; never replayed into a silently different state.
    let no_snapshots = |c: &mut postgres::Client| {
        c.batch_execute("DELETE FROM gongji_snapshot").unwrap();
    };
    let cases: Vec<(&str, Box<Damage>, &str)> = vec![
        (
            "edited body",
            Box::new(move |c| {
                no_snapshots(c);
                c.batch_execute(
                    "UPDATE gongji_journal SET body = body || '\\x00'::bytea WHERE op = 5",
                )
                .unwrap();
            }),
            "chain breaks at op 5",
        ),
        (
            "missing row",
            Box::new(move |c| {
                no_snapshots(c);
                c.batch_execute("DELETE FROM gongji_journal WHERE op = 5")
                    .unwrap();
            }),
            "gap: op 6 follows op 4",
        ),
        (
            "another history's rows",
            Box::new(move |c| {
                no_snapshots(c);
                // Op 11 onwards re-chained from a different op 10: valid among themselves.
                c.batch_execute(
                    "UPDATE gongji_journal SET chain_hash = sha256(chain_hash) WHERE op >= 11",
                )
                .unwrap();
            }),
            "chain breaks at op 11",
        ),
        (
            "snapshot ahead of the journal",
            Box::new(|c| {
                c.batch_execute(
                    "DELETE FROM gongji_journal WHERE op > (SELECT max(op) - 5 FROM gongji_journal)",
                )
                .unwrap();
            }),
            "is ahead of the PostgreSQL journal",
        ),
        (
            "journal without its start",
            Box::new(move |c| {
                no_snapshots(c);
                c.batch_execute("DELETE FROM gongji_journal WHERE op <= 3")
                    .unwrap();
            }),
            "starts at op 4",
        ),
        (
            "snapshot of another history",
            Box::new(|c| {
                c.batch_execute("UPDATE gongji_snapshot SET chain_hash = sha256(chain_hash)")
                    .unwrap();
            }),
            "different histories",
        ),
        (
            "every snapshot damaged",
            Box::new(|c| {
                c.batch_execute("UPDATE gongji_snapshot_chunk SET data = data || '\\x00'::bytea")
                    .unwrap();
            }),
            "no snapshot verifies",
        ),
    ];
    for (name, damage, expected) in cases {
        match open_damaged(damage.as_ref()) {
            Ok(_) => panic!("{name}: opened"),
            Err(text) => assert!(text.contains(expected), "{name}: {text}"),
        }
    }
}

#[test]
fn a_damaged_newest_snapshot_falls_back_and_verify_finds_old_edits() {
    // Proves: a newest snapshot that does not verify is skipped for the older one plus the
    // journal after it (same state); an edit of a row before the snapshot, which a start does
    // not read, is found by the full journal check (`verify_journal`, the audit).
    let db = TestDb::new();
    let end = populate(&db.url);
    let mut c = db.client();
    c.batch_execute(
        "UPDATE gongji_snapshot_chunk SET data = '\\x00'::bytea || data WHERE snapshot_id = \
         (SELECT max(id) FROM gongji_snapshot)",
    )
    .unwrap();
    let (engine, report) = open_pg(&db.url, no_lock());
    assert_eq!(report.skipped_snapshots.len(), 1, "{report:?}");
    assert!(report.replayed_ops > 0);
    assert_eq!(hashes(&engine), end);
    engine.shutdown().unwrap();
    drop(engine);
    c.batch_execute("UPDATE gongji_journal SET time = time + 1 WHERE op = 3")
        .unwrap();
    let err = verify_journal(&mut c).unwrap_err();
    assert!(err.to_string().contains("chain breaks at op 3"), "{err}");
}

#[test]
fn snapshots_span_chunks_and_the_newest_two_are_kept() {
    // Proves: a snapshot larger than a chunk round-trips byte for byte; pruning keeps the
    // newest two; a damaged middle chunk makes the loader skip to the older one.
    let db = TestDb::new();
    let mut store = PgStore::open(&db.url, no_lock()).unwrap();
    let mut snapshots = store.snapshots().unwrap();
    let body: Vec<u8> = (0..gongji_pg::store::SNAPSHOT_CHUNK_BYTES * 2 + 12_345)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    for op in [5u64, 9, 14] {
        let anchor = Anchor {
            op,
            chain_hash: [op as u8; 32],
        };
        let mut b = body.clone();
        b[0] = op as u8;
        snapshots.write(anchor, &b).unwrap();
        snapshots.prune(2).unwrap();
    }
    let loaded = store.load_snapshot().unwrap().unwrap();
    assert_eq!(loaded.anchor.op, 14);
    assert_eq!(loaded.body.len(), body.len());
    assert_eq!(&loaded.body[1..], &body[1..]);
    let mut c = db.client();
    let kept: Vec<i64> = c
        .query("SELECT op FROM gongji_snapshot ORDER BY op", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept, vec![9, 14]);
    let chunks: i64 = c
        .query_one(
            "SELECT count(*) FROM gongji_snapshot_chunk c JOIN gongji_snapshot s \
             ON s.id = c.snapshot_id WHERE s.op = 14",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(chunks, 3);
    c.batch_execute(
        "UPDATE gongji_snapshot_chunk SET data = data || '\\x01'::bytea WHERE seq = 1 AND \
         snapshot_id = (SELECT id FROM gongji_snapshot WHERE op = 14)",
    )
    .unwrap();
    let loaded = store.load_snapshot().unwrap().unwrap();
    assert_eq!(loaded.anchor.op, 9);
    assert_eq!(loaded.skipped.len(), 1);
}

#[test]
fn the_journal_reader_gives_ops_from_op_n_with_the_chain_checked() {
    // Proves: `read_journal` (for the SQL projection) returns the rows after op N in order,
    // decodable, chained from the hash given, and refuses a gap.
    let db = TestDb::new();
    let end = populate(&db.url);
    let mut c = db.client();
    let all = read_journal(&mut c, 0, Some(gongji_journal::GENESIS_CHAIN_HASH), 10_000).unwrap();
    assert_eq!(all.len() as u64, end.2);
    assert_eq!(all.last().unwrap().chain_hash, end.1);
    for record in &all {
        gongji_core::codec::decode_op(&record.body).unwrap();
    }
    let part = read_journal(&mut c, 20, Some(all[19].chain_hash), 5).unwrap();
    assert_eq!(part, all[20..25].to_vec());
    let err = read_journal(&mut c, 20, Some([0; 32]), 5).unwrap_err();
    assert!(err.to_string().contains("chain breaks at op 21"), "{err}");
    c.batch_execute("DELETE FROM gongji_journal WHERE op = 23")
        .unwrap();
    let err = read_journal(&mut c, 20, None, 5).unwrap_err();
    assert!(
        err.to_string().contains("gap: op 24 follows op 22"),
        "{err}"
    );
}

#[test]
fn journal_pruning_keeps_what_the_older_snapshot_needs() {
    // Proves: with `prune_journal` on, rows before the older kept snapshot go, the rest stay,
    // and a restart (also one that falls back to the older snapshot) reaches the same state.
    let db = TestDb::new();
    let options = PgStoreOptions {
        prune_journal: true,
        ..no_lock()
    };
    let (engine, _) = open_pg(&db.url, options.clone());
    for sub in script() {
        submit(&engine, &sub);
    }
    // The shadow writes snapshots on its own thread, and the writer prunes at its first sync
    // after the second one lands: write on until that has happened.
    let mut c = db.client();
    let first_op = |c: &mut postgres::Client| -> i64 {
        c.query_one("SELECT min(op) FROM gongji_journal", &[])
            .unwrap()
            .get(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut i = 0;
    while first_op(&mut c) == 1 && std::time::Instant::now() < deadline {
        let replies = engine.submit_wait(vec![filler(i)]).expect("engine runs");
        assert!(replies[0].is_ok(), "{replies:?}");
        i += 1;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let end = hashes(&engine);
    engine.shutdown().unwrap();
    drop(engine);
    let first = first_op(&mut c);
    let older: i64 = c
        .query_one("SELECT min(op) FROM gongji_snapshot", &[])
        .unwrap()
        .get(0);
    assert!(first > 1, "rows were pruned (first op {first})");
    assert!(
        first <= older + 1,
        "rows after the older snapshot stay ({first} > {older} + 1)"
    );
    let (engine, _) = open_pg(&db.url, options.clone());
    assert_eq!(hashes(&engine), end);
    engine.shutdown().unwrap();
    drop(engine);
    c.batch_execute("DELETE FROM gongji_snapshot WHERE id = (SELECT max(id) FROM gongji_snapshot)")
        .unwrap();
    let (engine, report) = open_pg(&db.url, options);
    assert!(report.replayed_ops > 0, "{report:?}");
    assert_eq!(
        hashes(&engine),
        end,
        "from the older snapshot and the rows after it"
    );
    engine.shutdown().unwrap();
}
