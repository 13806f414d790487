//! The SQL projection against a real PostgreSQL server, fed from a real journal directory.

mod federated;
mod workload;

use gongji_core::time::Period;
use gongji_core::{Insutype, State};
use gongji_pg::projection::{
    FileJournalSource, ProjectionError, Projector, ProjectorConfig, SourceError,
};
use gongji_pg::testkit::TestDb;
use workload::Run;

fn config(chunk_ops_max: usize) -> ProjectorConfig {
    ProjectorConfig {
        chunk_ops_max,
        ..ProjectorConfig::default()
    }
}

fn source(run: &Run) -> FileJournalSource {
    FileJournalSource::new(run.journal_dir()).unwrap()
}

const ALL_TABLES: [&str; 13] = [
    "persons",
    "accounts",
    "wallets",
    "institutions",
    "bindings",
    "settlements",
    "settlement_details",
    "wallet_transfers",
    "contributions",
    "entries",
    "exchanges",
    "cross_engine_bindings",
    "projection_cursor",
];

/// Every row of every table (the cursor without its timestamp), as text, in key order.
fn dump(db: &TestDb) -> Vec<String> {
    let mut c = db.client();
    let mut out = Vec::new();
    for table in ALL_TABLES {
        let sql = if table == "projection_cursor" {
            "SELECT op::text || ' ' || encode(chain_hash, 'hex') || ' ' || engine_clock::text
             FROM gongji.projection_cursor"
                .to_string()
        } else {
            format!("SELECT t::text FROM gongji.{table} t ORDER BY 1")
        };
        for row in c.query(&sql, &[]).unwrap() {
            out.push(format!("{table}: {}", row.get::<_, String>(0)));
        }
    }
    out
}

fn assert_same_tables(a: &TestDb, b: &TestDb) {
    let (da, db_) = (dump(a), dump(b));
    assert_eq!(da.len(), db_.len(), "row counts differ");
    for (x, y) in da.iter().zip(&db_) {
        assert_eq!(x, y);
    }
}

/// Every account and wallet balance, every statistics cell, and the record counts of the
/// projection equal the engine's.
fn assert_matches_engine(db: &TestDb, state: &State) {
    let mut c = db.client();
    let accounts: Vec<(i32, i64)> = c
        .query(
            "SELECT psn_id, balc_fen FROM gongji.accounts ORDER BY psn_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let wallets: Vec<(i32, i64)> = c
        .query(
            "SELECT psn_id, balc_fen FROM gongji.wallets ORDER BY psn_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut want_accounts = Vec::new();
    let mut want_wallets = Vec::new();
    for i in 0..state.person_count() as u32 {
        let p = state.person_row(i);
        if p.insutype == Insutype::Employee {
            want_accounts.push((i as i32 + 1, p.acct_balc.0 as i64));
        }
        if p.wallet_open {
            want_wallets.push((i as i32 + 1, p.wallet_balc.0 as i64));
        }
    }
    assert_eq!(accounts, want_accounts);
    assert_eq!(wallets, want_wallets);
    // Balances are also the sums of the entries.
    let off: i64 = c
        .query_one(
            "SELECT count(*) FROM gongji.accounts a
             WHERE a.balc_fen <> (SELECT coalesce(sum(amount_fen), 0) FROM gongji.entries e
                                  WHERE e.psn_id = a.psn_id AND NOT e.wallet)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(off, 0);

    // Statistics: every (month, province) cell.
    let mut want: Vec<(String, i16, [i64; 8])> = Vec::new();
    for (period, province, cells) in state.stats_cells() {
        let v = [
            cells[0].count as i64,
            cells[0].amount.0 as i64,
            cells[1].count as i64,
            cells[1].amount.0 as i64,
            cells[2].count as i64,
            cells[2].amount.0 as i64,
            cells[3].count as i64,
            cells[3].amount.0 as i64,
        ];
        if v.iter().any(|&x| x != 0) {
            want.push((period.to_string(), i16::from(province), v));
        }
        // The engine's own sum for that month and province agrees with its cells.
        let view = state.stats(period, period, Some(province));
        assert_eq!(view.total.count as i64, v[0] + v[2] + v[4] + v[6]);
    }
    want.sort();
    let got: Vec<(String, i16, [i64; 8])> = c
        .query(
            "SELECT period, province, same_pool_count, same_pool_amount_fen, cross_pool_count,
                    cross_pool_amount_fen, in_province_count, in_province_amount_fen,
                    cross_province_count, cross_province_amount_fen,
                    total_count, total_amount_fen, account_draw_count, wallet_transfer_count
             FROM gongji.stats_monthly ORDER BY period, province",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let n = |i: usize| -> i64 { r.get::<_, i64>(i) };
            let v = [n(2), n(3), n(4), n(5), n(6), n(7), n(8), n(9)];
            assert_eq!(n(10), v[0] + v[2] + v[4] + v[6], "total_count");
            assert_eq!(n(11), v[1] + v[3] + v[5] + v[7], "total_amount_fen");
            assert_eq!(n(12), v[0] + v[2], "account_draw_count");
            assert_eq!(n(13), v[4] + v[6], "wallet_transfer_count");
            (r.get(0), r.get(1), v)
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want, "statistics by month and province");
    // The national view sums the same.
    let national: i64 = c
        .query_one(
            "SELECT coalesce(sum(total_count), 0)::bigint FROM gongji.stats_monthly_national",
            &[],
        )
        .unwrap()
        .get(0);
    let all = state.stats(Period(0), Period(u32::MAX), None);
    assert_eq!(national, all.total.count as i64);

    let counts: Vec<i64> = [
        "persons",
        "institutions",
        "bindings",
        "settlements",
        "wallet_transfers",
        "contributions",
        "entries",
    ]
    .iter()
    .map(|t| {
        c.query_one(&format!("SELECT count(*) FROM gongji.{t}"), &[])
            .unwrap()
            .get(0)
    })
    .collect();
    let want_counts = [
        state.person_count(),
        state.institution_count(),
        state.binding_count(),
        state.settlement_count(),
        state.transfer_count(),
        state.contribution_count(),
        state.entry_count(),
    ]
    .map(|n| n as i64);
    assert_eq!(counts, want_counts);
    // Bindings, settlements and transfers as the engine has them now.
    for b in 0..state.binding_count() as u32 {
        let row = c
            .query_one(
                "SELECT priority, active FROM gongji.bindings WHERE binding_id = $1",
                &[&(i64::from(b) + 1)],
            )
            .unwrap();
        let want = state.binding_row(b);
        assert_eq!(
            (row.get::<_, i32>(0), row.get::<_, bool>(1)),
            (want.priority as i32, want.active),
            "binding {}",
            b + 1
        );
    }
    let cancelled: i64 = c
        .query_one(
            "SELECT count(*) FROM gongji.settlements WHERE cancelled",
            &[],
        )
        .unwrap()
        .get(0);
    let want_cancelled = (0..state.settlement_count() as u32)
        .filter(|&s| state.settlement_row(s).settlement.cancelled)
        .count() as i64;
    assert_eq!(cancelled, want_cancelled);
    for t in 0..state.transfer_count() as u32 {
        let status: String = c
            .query_one(
                "SELECT status FROM gongji.wallet_transfers WHERE transfer_id = $1",
                &[&(i64::from(t) + 1)],
            )
            .unwrap()
            .get(0);
        assert_eq!(status, state.transfer_row(t).status.as_str());
    }
    // Identity is masked: no raw certno or name reaches SQL.
    let persons = c
        .query(
            "SELECT psn_no, certno_masked, psn_name_masked FROM gongji.persons",
            &[],
        )
        .unwrap();
    for row in persons {
        let certno: String = row.get(1);
        let name: String = row.get(2);
        assert_eq!(certno.chars().count(), 18);
        assert!(certno.contains("********"), "{certno}");
        assert!(name.contains('*'), "{name}");
    }
}

/// After a run exercising every command kind, projected in small chunks, the tables equal the
/// engine's balances and statistics exactly; `--rebuild` from the final snapshot gives
/// identical tables.
#[test]
fn projection_equals_the_engine_and_rebuild_is_identical() {
    let mut run = Run::new("equal", 7);
    run.drive(3_000);
    for kind in [
        "enrol",
        "register_institution",
        "credit",
        "bind",
        "revoke",
        "set_status",
        "open_wallet",
        "settle",
        "cancel_ok",
        "reverse_cancelled",
        "reverse_blocked",
        "transfer_create",
        "transfer_accept",
        "transfer_decline",
        "contribute",
        "tick_expired",
    ] {
        assert!(
            run.kinds.contains(kind),
            "the workload never applied {kind}"
        );
    }
    let expired = (0..run.state.transfer_count() as u32)
        .filter(|&t| run.state.transfer_row(t).status.as_str() == "returned")
        .count();
    assert!(expired > 0);
    let accepted: Vec<bool> = (0..run.state.transfer_count() as u32)
        .map(|t| run.state.transfer_row(t))
        .filter(|t| t.status.as_str() == "accepted")
        .map(|t| t.cross_province)
        .collect();
    assert!(accepted.iter().filter(|&&c| c).count() >= 5, "{accepted:?}");
    assert!(
        accepted.iter().filter(|&&c| !c).count() >= 5,
        "{accepted:?}"
    );
    assert!(run.state.contribution_count() >= 5);
    let all = run.state.stats(Period(0), Period(u32::MAX), None);
    for (channel, cell) in [
        ("same_pool", all.same_pool),
        ("cross_pool", all.cross_pool),
        ("in_province", all.in_province),
        ("cross_province", all.cross_province),
    ] {
        assert!(cell.count >= 3, "{channel}: {cell:?}");
    }

    let db = TestDb::new();
    // A fresh database: loads the genesis snapshot, then follows the journal in chunks.
    let mut p = Projector::open(&db.url, source(&run), config(37), false).unwrap();
    assert_eq!(p.stats().rebuilt_from, Some(0));
    let n = p.catch_up().unwrap();
    assert_eq!(n, run.head());
    assert_eq!(p.cursor().op, run.head());
    assert_eq!(p.replica().state_hash(), run.state.state_hash());
    assert_matches_engine(&db, &run.state);

    // Rebuild from the snapshot at the head, into another database and into this one.
    run.snapshot();
    let other = TestDb::new();
    let q = Projector::open(&other.url, source(&run), config(37), true).unwrap();
    assert_eq!(q.stats().rebuilt_from, Some(run.head()));
    assert_same_tables(&db, &other);
    drop(p);
    let mut r = Projector::open(&db.url, source(&run), config(37), true).unwrap();
    assert_eq!(r.catch_up().unwrap(), 0);
    assert_same_tables(&db, &other);
}

/// A projector stopped mid-way and reopened, or killed inside a transaction, or fed ops it has
/// projected already, ends with tables identical to one uninterrupted pass.
#[test]
fn restart_kill_and_refeed_give_identical_tables() {
    let mut run = Run::new("restart", 11);
    run.drive(300);
    let snap = run.snapshot();
    run.drive(1_500);
    let head = run.head();
    assert!(head > snap + 1_000, "head {head}");

    let straight = TestDb::new();
    Projector::open(&straight.url, source(&run), config(10_000), false)
        .unwrap()
        .catch_up()
        .unwrap();

    let db = TestDb::new();
    let mut p = Projector::open(&db.url, source(&run), config(50), false).unwrap();
    for _ in 0..7 {
        p.step().unwrap();
    }
    assert_eq!(p.stats().rebuilt_from, Some(snap));
    let stopped_at = p.cursor().op;
    assert_eq!(stopped_at, snap + 7 * 50);
    drop(p);
    // Reopened: the replica is rebuilt from the newest snapshot at or before the cursor.
    let mut p = Projector::open(&db.url, source(&run), config(50), false).unwrap();
    assert_eq!(p.cursor().op, stopped_at);
    assert_eq!(p.stats().rebuilt_from, None);
    for _ in 0..5 {
        p.step().unwrap();
    }
    // Killed inside a transaction: its connection dies before COMMIT.
    let before = p.cursor().op;
    let mut admin = db.client();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    let err = p.step().unwrap_err();
    assert!(matches!(err, ProjectionError::Postgres(_)), "{err}");
    drop(p);
    let mut p = Projector::open(&db.url, source(&run), config(50), false).unwrap();
    assert_eq!(p.cursor().op, before, "the killed chunk was not committed");
    p.catch_up().unwrap();
    assert_eq!(p.cursor().op, head);
    assert_same_tables(&straight, &db);

    // Fed again ops already projected: nothing changes.
    let mut again = FileJournalSource::new(run.journal_dir()).unwrap();
    let ops = gongji_pg::projection::OpSource::read(&mut again, 0, 100_000).unwrap();
    assert_eq!(ops.len() as u64, head);
    let rows = p.project(&ops).unwrap();
    assert_eq!(rows, Default::default());
    assert_same_tables(&straight, &db);

    // Ops with a gap are refused before anything is applied; the projector goes on.
    run.drive(300);
    let mut fresh = FileJournalSource::new(run.journal_dir()).unwrap();
    let mut later = gongji_pg::projection::OpSource::read(&mut fresh, head, 100).unwrap();
    later.remove(1);
    let err = p.project(&later).unwrap_err();
    assert!(matches!(err, ProjectionError::Journal(_)), "{err}");
    assert_eq!(p.cursor().op, head);

    // More ops later: the projection follows.
    assert_eq!(p.catch_up().unwrap(), run.head() - head);
    assert_matches_engine(&db, &run.state);
}

/// When the writer has removed the journal segments after the cursor (after a snapshot), the
/// projector reloads from the newest snapshot and the tables are as if it had kept up.
#[test]
fn a_projector_behind_a_trimmed_journal_reloads_from_the_snapshot() {
    let mut run = Run::new("trim", 5);
    run.drive(400);
    let db = TestDb::new();
    let mut p = Projector::open(&db.url, source(&run), config(100), false).unwrap();
    p.catch_up().unwrap();
    let behind = p.cursor().op;
    run.drive(1_200);
    let snap = run.snapshot();
    // Remove every segment that ends before the snapshot, as the writer does.
    let mut segs: Vec<(u64, String)> = std::fs::read_dir(run.journal_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            gongji_journal::parse_segment_name(&name).map(|op| (op, name))
        })
        .collect();
    segs.sort();
    let mut removed = 0;
    for w in segs.windows(2) {
        if w[1].0 <= snap + 1 && w[1].0 > behind + 1 {
            std::fs::remove_file(run.journal_dir().join(&w[0].1)).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "the run must span several segments");
    // Also remove the older snapshots, so that only the newest is left.
    for e in std::fs::read_dir(run.journal_dir()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if gongji_journal::parse_snapshot_name(&name).is_some_and(|op| op < snap) {
            std::fs::remove_file(run.journal_dir().join(&name)).unwrap();
        }
    }
    // The reader may still finish the segment it has open; then it finds the gap.
    while p.stats().rebuilt_from != Some(snap) {
        assert!(p.cursor().op < snap);
        p.step().unwrap();
    }
    p.catch_up().unwrap();
    run.drive(100);
    p.catch_up().unwrap();
    assert_eq!(p.cursor().op, run.head());
    assert_matches_engine(&db, &run.state);

    // A projector reopened with its cursor behind every snapshot and segment is refused.
    let stale = TestDb::new();
    let mut old = Run::new("trim-old", 5);
    old.drive(400);
    Projector::open(&stale.url, source(&old), config(100), false)
        .unwrap()
        .catch_up()
        .unwrap();
    let err = Projector::open(&stale.url, source(&run), config(100), false).unwrap_err();
    assert!(matches!(err, ProjectionError::NoStart(_)), "{err}");
}

/// Hostile input: a cursor ahead of the journal, a projection written from another engine's
/// journal, a bad URL, a damaged journal, a second projector on the same database.
#[test]
fn hostile_inputs_are_refused_with_clear_errors() {
    let mut long = Run::new("long", 3);
    long.drive(600);
    let db = TestDb::new();
    Projector::open(&db.url, source(&long), config(1_000), false)
        .unwrap()
        .catch_up()
        .unwrap();

    // The same engine's journal, shorter (the projection is ahead of it).
    let mut short = Run::new("short", 3);
    short.drive(300);
    assert!(short.head() < long.head());
    let err = Projector::open(&db.url, source(&short), config(1_000), false).unwrap_err();
    assert!(
        matches!(err, ProjectionError::CursorAhead { cursor, journal_head }
            if cursor == long.head() && journal_head == short.head()),
        "{err}"
    );
    assert!(err.to_string().contains("--rebuild"));

    // Another engine's journal, at least as long.
    let mut other = Run::new("other", 4);
    other.drive(900);
    assert!(other.head() >= long.head());
    let err = Projector::open(&db.url, source(&other), config(1_000), false).unwrap_err();
    assert!(
        matches!(err, ProjectionError::EngineMismatch { op, .. } if op == long.head()),
        "{err}"
    );
    // The refused projections left the tables alone.
    assert_matches_engine(&db, &long.state);

    // Bad URLs.
    for url in [
        "postgres://nobody@127.0.0.1:1/nothing",
        "not a url at all",
        "postgres://gj:secret@127.0.0.1:1/x",
    ] {
        let err = Projector::open(url, source(&long), config(1_000), false).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ProjectionError::Connect { .. }), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    // A data directory that is not one.
    let missing = long.journal_dir().join("nope");
    assert!(FileJournalSource::new(&missing).is_err());

    // Two projectors on one database: the second's commit finds the cursor moved.
    let mut longer = Run::new("longer", 3);
    longer.drive(800);
    let shared = TestDb::new();
    let mut a = Projector::open(&shared.url, source(&longer), config(100), false).unwrap();
    let mut b = Projector::open(&shared.url, source(&longer), config(100), false).unwrap();
    a.step().unwrap();
    let err = b.step().unwrap_err();
    assert!(matches!(err, ProjectionError::Concurrent), "{err}");

    // A damaged journal: one flipped byte in a record body of the first segment.
    let seg = long
        .journal_dir()
        .join(gongji_journal::segment_file_name(1));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[52 + 64 + 3] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let fresh = TestDb::new();
    let mut p = Projector::open(&fresh.url, source(&long), config(1_000), false).unwrap();
    let err = p.catch_up().unwrap_err();
    assert!(
        matches!(&err, ProjectionError::Source(SourceError::Damaged(what))
            if what.contains("journal-00000000000000000001.seg")),
        "{err}"
    );
    // Beside a writer that has synced the op, a record that does not read is damage even in
    // the last segment.
    let mut tail = Run::new("tail", 9);
    tail.drive(20);
    let seg = tail
        .journal_dir()
        .join(gongji_journal::segment_file_name(1));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[52 + 64 + 3] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let mut s = FileJournalSource::new(tail.journal_dir()).unwrap();
    assert!(gongji_pg::projection::OpSource::read(&mut s, 0, 5)
        .unwrap()
        .is_empty());
    let mut s = FileJournalSource::new(tail.journal_dir())
        .unwrap()
        .with_durable_head(|| 10);
    let err = gongji_pg::projection::OpSource::read(&mut s, 0, 5).unwrap_err();
    assert!(matches!(err, SourceError::Damaged(_)), "{err}");
}

/// The projection's migration (version 2) applies on a database with nothing, after the
/// store's version 1, and before it (a database first used for the projection alone), and its
/// tables stay in schema `gongji`, apart from the store's `public.gongji_*` tables.
#[test]
fn the_projection_migration_applies_alone_and_beside_the_store_migration() {
    use gongji_pg::migrate::{migrate, MIGRATIONS};
    let store = *MIGRATIONS.iter().find(|m| m.version == 1).unwrap();
    let projection = *MIGRATIONS.iter().find(|m| m.version == 2).unwrap();
    assert_eq!((store.name, projection.name), ("store", "projection"));

    let alone = TestDb::new();
    assert_eq!(
        migrate(&mut alone.client(), &[projection]).unwrap(),
        vec![2]
    );
    let before = TestDb::new();
    assert_eq!(migrate(&mut before.client(), &[store]).unwrap(), vec![1]);
    assert_eq!(
        migrate(&mut before.client(), &[store, projection]).unwrap(),
        vec![2]
    );
    assert_eq!(
        migrate(&mut alone.client(), &[store, projection]).unwrap(),
        vec![1]
    );
    for db in [&alone, &before] {
        let tables: Vec<String> = db
            .client()
            .query(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables
                 WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
                 ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            tables.contains(&"gongji.stats_monthly".to_string()),
            "{tables:?}"
        );
        for t in &tables {
            assert!(
                t.starts_with("gongji.") || t.starts_with("public.gongji_"),
                "{t}"
            );
        }
    }
}
