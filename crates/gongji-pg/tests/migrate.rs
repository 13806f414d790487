//! Migrations against a real PostgreSQL server.

use gongji_pg::migrate::{migrate, MigrateError, Migration};
use gongji_pg::testkit::TestDb;

const FIRST: Migration = Migration {
    version: 1,
    name: "one",
    sql: "CREATE TABLE t1 (a int PRIMARY KEY);",
};
const SECOND: Migration = Migration {
    version: 2,
    name: "two",
    sql: "CREATE TABLE t2 (b int PRIMARY KEY); INSERT INTO t2 VALUES (7);",
};

#[test]
fn applies_missing_migrations_once_in_order() {
    let db = TestDb::new();
    let mut c = db.client();
    assert_eq!(migrate(&mut c, &[FIRST]).unwrap(), vec![1]);
    assert_eq!(migrate(&mut c, &[FIRST]).unwrap(), Vec::<i32>::new());
    assert_eq!(migrate(&mut c, &[FIRST, SECOND]).unwrap(), vec![2]);
    let b: i32 = c.query_one("SELECT b FROM t2", &[]).unwrap().get(0);
    assert_eq!(b, 7);
    let n: i64 = c
        .query_one("SELECT count(*) FROM gongji_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[test]
fn refuses_a_changed_or_unknown_migration() {
    let db = TestDb::new();
    let mut c = db.client();
    migrate(&mut c, &[FIRST, SECOND]).unwrap();
    let changed = Migration {
        sql: "CREATE TABLE t1 (a bigint PRIMARY KEY);",
        ..FIRST
    };
    assert!(matches!(
        migrate(&mut c, &[changed, SECOND]),
        Err(MigrateError::Changed { version: 1, .. })
    ));
    assert!(matches!(
        migrate(&mut c, &[FIRST]),
        Err(MigrateError::Newer { version: 2 })
    ));
}

#[test]
fn a_failing_migration_applies_nothing() {
    let db = TestDb::new();
    let mut c = db.client();
    let broken = Migration {
        version: 2,
        name: "broken",
        sql: "CREATE TABLE t2 (b int); SELECT no_such_function();",
    };
    assert!(matches!(
        migrate(&mut c, &[FIRST, broken]),
        Err(MigrateError::Postgres(_))
    ));
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('t1', 't2', 'gongji_migrations')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "one transaction: all or nothing");
}

#[test]
fn concurrent_starts_apply_each_migration_once() {
    let db = TestDb::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let mut c = gongji_pg::connect(&url).unwrap();
                migrate(&mut c, &[FIRST, SECOND]).unwrap()
            })
        })
        .collect();
    let applied: usize = threads.into_iter().map(|t| t.join().unwrap().len()).sum();
    assert_eq!(applied, 2);
}
