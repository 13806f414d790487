//! Runs `gongji crash-test`: the real server killed with SIGKILL under load and restarted,
//! cycle after cycle (the logic is in `src/crashtest.rs`, shared with the on-demand runner).
//! The seed is fixed (`--seed 1`, printed) unless GONGJI_CRASH_SEED names one (or `random`).

mod common;
use common::{gongji, temp_dir};

use std::process::Command;

#[test]
fn kill_9_under_load_loses_no_acknowledged_write() {
    // Proves: across kill -9/restart cycles of the real `gongji serve` under concurrent
    // settlements, cancellations and wallet transfers, every acknowledged write survives and
    // replays byte for byte, no write applies twice, writes without a reply resend safely, and
    // every balance, settlement and transfer equals what the acknowledged replies imply.
    // GONGJI_CRASH_CYCLES (default 20) and GONGJI_CRASH_SEED (default 1; `random`) vary it.
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

/// The `N` before `label` in the summary line of a run.
fn count_before(text: &str, label: &str) -> u64 {
    let summary = text
        .lines()
        .find(|l| l.starts_with("crash-test OK"))
        .unwrap_or_else(|| panic!("no summary in:\n{text}"));
    let before = &summary[..summary
        .find(label)
        .unwrap_or_else(|| panic!("{label}: {summary}"))];
    let number = before.trim_end().rsplit(' ').next().expect("a word");
    number
        .parse()
        .unwrap_or_else(|_| panic!("{number:?} in {summary}"))
}

#[test]
fn a_forgotten_msgid_passes_and_a_lost_write_fails_the_run() {
    // Proves: with a one-day msgid window (one cycle is one engine day) the checker tells the
    // two apart. A run whose old msgids are forgotten by rule passes, and their replays were
    // refused (not applied again). The same run with the lost-write drill (after cycle 3 a
    // cancellation is acknowledged, then the data directory goes back to the kill -9 image
    // from before it) fails at cycle 4 on the lasting effects, although that msgid's replay
    // answers exactly as a forgotten one does (INVALID_TIME).
    let dir = temp_dir("crash", "forgotten");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let base = [
        "crash-test",
        "--cycles",
        "6",
        "--retention-days",
        "1",
        "--seed",
        "3",
        "--dir",
        dir.to_str().expect("UTF-8 path"),
    ];
    let (ok, text) = gongji(&base);
    assert!(ok, "a run with forgotten msgids must pass:\n{text}");
    assert!(
        count_before(&text, "replays of forgotten msgids refused") > 0,
        "no forgotten msgid was replayed:\n{text}"
    );

    let mut drill = base.to_vec();
    drill.extend(["--lose-write-after-cycle", "3"]);
    let (ok, text) = gongji(&drill);
    assert!(!ok, "a lost write must fail the run:\n{text}");
    assert!(
        text.contains("crash-test: drill: /v1/settlements/"),
        "{text}"
    );
    let failure = &text[text.find("Caused by").unwrap_or(0)..];
    assert!(
        failure.contains("cycle 4") && failure.contains("by the acknowledged replies"),
        "the lost write must be caught at the next cycle by its effects:\n{failure}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
