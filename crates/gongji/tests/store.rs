//! The `gongji` command with `--store postgres://…` against a real PostgreSQL server: `verify`
//! and `report` read the PostgreSQL journal, a damaged row makes `verify` fail, a data
//! directory refuses to be opened on another store, and bad URLs are clear errors.

mod common;
use common::{enrol, gongji, temp_dir};

use std::path::{Path, PathBuf};

use gongji_pg::testkit::TestDb;
use gongji_pg::{PgStore, PgStoreOptions};
use gongji_server::{Config, Engine};

/// A data directory on a PostgreSQL store with a few ops, shut down cleanly.
fn populated(tag: &str, db: &TestDb) -> PathBuf {
    let dir = temp_dir("store", tag);
    let store = PgStore::open(&db.url, PgStoreOptions::default()).expect("store");
    let (engine, report) =
        Engine::open_with(Config::new(&dir), "postgres", Box::new(store)).expect("opens");
    assert!(report.admin_token_created);
    for i in 1..=5 {
        let results = engine.submit_wait(vec![enrol(i)]).expect("running");
        assert!(results[0].is_ok(), "{:?}", results[0]);
    }
    engine.shutdown().expect("clean shutdown");
    assert!(dir.join("admin.token").exists());
    assert!(
        !dir.join("journal").exists(),
        "no file journal beside the store"
    );
    dir
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn verify_and_report_read_the_postgres_store_and_find_damage() {
    // Proves: `verify --store` checks the rows, recovers, and compares with a replay from
    // op 1 (6 ops: the admin token and 5 enrolments); `report --store` reads the same state;
    // an edited row is refused with the op named and a non-zero exit.
    let db = TestDb::new();
    let dir = populated("verify", &db);
    let (ok, text) = gongji(&["verify", "--data", &s(&dir), "--store", &db.url]);
    assert!(ok, "{text}");
    assert!(text.contains("journal: 6 rows verified"), "{text}");
    assert!(
        text.contains("replay from op 1: 6 ops, same state hash"),
        "{text}"
    );
    let (ok, text) = gongji(&[
        "report",
        "--data",
        &s(&dir),
        "--store",
        &db.url,
        "--from",
        "2030-01",
        "--to",
        "2030-12",
    ]);
    assert!(ok, "{text}");
    db.client()
        .batch_execute("UPDATE gongji_journal SET body = body || '\\x00'::bytea WHERE op = 4")
        .unwrap();
    let (ok, text) = gongji(&["verify", "--data", &s(&dir), "--store", &db.url]);
    assert!(!ok, "{text}");
    assert!(text.contains("chain breaks at op 4"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_data_directory_is_never_opened_on_another_store() {
    // Proves: a directory started with --store postgres refuses to start on files (which
    // would begin a second, empty history), and a file directory refuses a PostgreSQL store.
    let db = TestDb::new();
    let dir = populated("marker", &db);
    let (ok, text) = gongji(&["token", "--data", &s(&dir), "--role", "admin"]);
    assert!(!ok, "{text}");
    assert!(text.contains("keeps its journal in postgres"), "{text}");
    let files = temp_dir("store", "marker-files");
    let (engine, _) = Engine::open(Config::new(&files)).expect("files");
    engine.shutdown().unwrap();
    drop(engine);
    let other = TestDb::new();
    let store = PgStore::open(&other.url, PgStoreOptions::default()).expect("store");
    let err = Engine::open_with(Config::new(&files), "postgres", Box::new(store)).unwrap_err();
    assert!(
        err.to_string().contains("keeps its journal in files"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&files);
}

#[test]
fn serve_with_a_bad_store_fails_clearly() {
    // Proves: an unknown scheme, a malformed URL and an unreachable server stop `serve` at
    // start with the reason, and never print the password.
    let dir = temp_dir("store", "bad");
    let data = s(&dir);
    let cases = [
        ("mysql://u:pw@h/x", "expected files or a postgres"),
        ("postgres://u:pw@[::1", "bad PostgreSQL URL"),
        ("postgres://u:pw@127.0.0.1:1/x", "cannot connect to"),
    ];
    for (url, expected) in cases {
        let (ok, text) = gongji(&[
            "serve",
            "--data",
            &data,
            "--store",
            url,
            "--listen",
            "127.0.0.1:0",
        ]);
        assert!(!ok, "{url}: {text}");
        assert!(text.contains(expected), "{url}: {text}");
        assert!(!text.contains(":pw@"), "{url}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn crash_test_refuses_a_store_that_holds_a_journal() {
    // Proves: the crash test's model starts from nothing, so a used database is refused up
    // front rather than checked against the wrong history.
    let db = TestDb::new();
    let dir = populated("crash", &db);
    let (ok, text) = gongji(&["crash-test", "--cycles", "1", "--store", &db.url]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("crash-test needs an empty database"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
