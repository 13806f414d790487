//! Runs `gongji crash-test`: the real server killed with SIGKILL under load and restarted,
//! cycle after cycle (the logic is in `src/crashtest.rs`, shared with the on-demand runner).

use std::process::Command;

#[test]
fn kill_9_under_load_loses_no_acknowledged_write() {
    // Proves: across kill -9/restart cycles of the real `gongji serve` under concurrent
    // settlements, cancellations and wallet transfers, every acknowledged write survives and
    // replays byte for byte, no write applies twice, writes without a reply resend safely, and
    // every balance, settlement and transfer equals what the acknowledged replies imply.
    // GONGJI_CRASH_CYCLES (default 20) and GONGJI_CRASH_SEED (default: from the clock) vary it.
    let cycles = std::env::var("GONGJI_CRASH_CYCLES").unwrap_or_else(|_| "20".into());
    let mut command = Command::new(env!("CARGO_BIN_EXE_gongji"));
    command.args(["crash-test", "--cycles", &cycles]);
    if let Ok(seed) = std::env::var("GONGJI_CRASH_SEED") {
        command.args(["--seed", &seed]);
    }
    let out = command.output().expect("run gongji crash-test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "gongji crash-test failed ({:?}); the seed is in its output:\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("crash-test OK"), "{stdout}");
}

#[test]
fn kill_9_under_load_with_the_postgres_store_loses_no_acknowledged_write() {
    // Proves: the same as above with `serve --store postgres://…` on a fresh database of a real
    // server: a batch is one INSERT, and a kill -9 mid-commit leaves it all or nothing; after
    // each restart (which waits for the dead session's advisory lock) recovery from PostgreSQL
    // holds every acknowledged write, and `/v1/audit/verify` checks the PostgreSQL journal.
    // GONGJI_CRASH_PG_CYCLES (default 20) and GONGJI_CRASH_SEED vary it.
    let db = gongji_pg::testkit::TestDb::new();
    let cycles = std::env::var("GONGJI_CRASH_PG_CYCLES").unwrap_or_else(|_| "20".into());
    let mut command = Command::new(env!("CARGO_BIN_EXE_gongji"));
    command.args(["crash-test", "--cycles", &cycles, "--store", &db.url]);
    if let Ok(seed) = std::env::var("GONGJI_CRASH_SEED") {
        command.args(["--seed", &seed]);
    }
    let out = command.output().expect("run gongji crash-test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "gongji crash-test --store failed ({:?}); the seed is in its output:\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("crash-test OK"), "{stdout}");
    let mut client = db.client();
    let (rows, head) = gongji_pg::verify_journal(&mut client).expect("the journal verifies");
    assert!(rows > 0 && head.op == rows, "{rows} rows, head {head:?}");
}
