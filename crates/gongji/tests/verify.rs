//! `gongji verify` on real data directories: a sound one passes, a flipped journal byte and a
//! snapshot that disagrees with its journal are both refused with a non-zero exit, and a
//! damaged history file is found and its records rebuilt from the journal.

mod common;
use common::{enrol, gongji, temp_dir};

use std::path::{Path, PathBuf};

use gongji_core::State;
use gongji_server::{Config, Engine};

/// A data directory with a few ops, shut down cleanly (so a snapshot sits at the head).
fn populated(tag: &str) -> PathBuf {
    let dir = temp_dir("verify", tag);
    let (engine, _) = Engine::open(Config::new(&dir)).expect("opens");
    for i in 1..=5 {
        let results = engine.submit_wait(vec![enrol(i)]).expect("running");
        assert!(results[0].is_ok(), "{:?}", results[0]);
    }
    engine.shutdown().expect("clean shutdown");
    dir
}

fn verify(dir: &Path) -> (bool, String) {
    gongji(&["verify", "--data", &dir.to_string_lossy()])
}

fn segment(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("journal"))
        .expect("journal dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment")
}

#[test]
fn sound_directory_verifies_and_replays_from_op_1() {
    // Proves verify passes a clean directory and compares the snapshot with a full replay.
    let dir = populated("sound");
    let (ok, text) = verify(&dir);
    assert!(ok, "{text}");
    assert!(text.contains("same state hash"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_others_can_read_is_warned_about() {
    // Proves: a data directory made by the engine is private (verify warns about nothing), and
    // once a file and the directory are opened to others, verify names both and still passes
    // (the data is sound; only its exposure is wrong).
    use std::os::unix::fs::PermissionsExt;
    let dir = populated("exposed");
    let (ok, text) = verify(&dir);
    assert!(ok, "{text}");
    assert!(!text.contains("warning"), "{text}");
    let token = dir.join("admin.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, text) = verify(&dir);
    assert!(ok, "{text}");
    for path in [&token, &dir] {
        let line = format!("warning: {} is mode", path.display());
        assert!(text.contains(&line), "{line} missing from: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flipped_journal_byte_is_refused() {
    // Proves a bit flip inside an early journal record makes verify exit non-zero.
    let dir = populated("flip");
    let path = segment(&dir);
    let mut bytes = std::fs::read(&path).expect("read segment");
    // Past the segment header (52 bytes) and the first record header: inside op 1's body.
    bytes[52 + 64 + 10] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write segment");
    let (ok, text) = verify(&dir);
    assert!(!ok, "verify passed a damaged journal: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn snapshot_that_disagrees_with_the_journal_is_refused() {
    // Proves verify catches a snapshot that verifies as a file but is not the state its
    // journal gives: here the state after four enrolments filed under the head of five.
    let dir = populated("lie");
    let storage_dir = dir.join("journal");
    let mut storage = gongji_journal::FsStorage::open(&storage_dir).expect("storage");
    let loaded = gongji_journal::load_latest_snapshot(&storage)
        .expect("load")
        .expect("some");
    let mut state = State::new(gongji_core::Params::default());
    for i in 1..=4 {
        let request = enrol(i);
        let op = gongji_core::Op::Write(gongji_core::Command {
            msgid: request.msgid,
            time: request.inf_time.expect("time"),
            actor: request.actor,
            body: request.body,
        });
        state.apply(&op).expect("applies");
    }
    let mut body = Vec::new();
    state.encode_snapshot(&mut body);
    gongji_journal::write_snapshot(&mut storage, loaded.anchor, &body).expect("write");
    let (ok, text) = verify(&dir);
    assert!(!ok, "verify passed a lying snapshot: {text}");
    assert!(text.contains("disagrees"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_recovery_reuse_times_a_data_directory_and_refuses_anything_else() {
    // Proves: `gongji bench recovery --reuse DIR` times one start on an existing data
    // directory, and refuses a path that is not one without creating anything there (a
    // start would make a fresh, empty data directory and time that).
    let dir = populated("reuse");
    let (ok, text) = gongji(&["bench", "recovery", "--reuse", &dir.to_string_lossy()]);
    assert!(ok, "{text}");
    assert!(text.contains("s of CPU (all threads), 5 persons"), "{text}");
    let missing = temp_dir("verify", "reuse-missing");
    let (ok, text) = gongji(&["bench", "recovery", "--reuse", &missing.to_string_lossy()]);
    assert!(!ok && text.contains("not a data directory"), "{text}");
    assert!(!missing.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The wallet world of `scenario::wallet_world` (persons W0000..W0049) and more than a chunk
/// of transfers (`scenario::wallet_day`: three a day from each sender, the first of each day
/// accepted, the second declined, the rest returned at 06:00 the next day); a last write
/// closes the last day's.
fn wallet_history(engine: &Engine) {
    use gongji_core::{Actor, Body, Fen, Msgid};
    use gongji_server::scenario::{wallet_day, wallet_psn, wallet_world};
    let mut time = gongji_core::time::parse_cst("2031-06-01 10:00:00").unwrap();
    let mut n = 0u64;
    let mut requests = Vec::new();
    let mut push = |requests: &mut Vec<_>, time: i64, body: Body| {
        n += 1;
        requests.push(gongji_server::WriteRequest {
            msgid: Msgid::from(&format!("wv-{n}")).unwrap(),
            inf_time: Some(time),
            actor: Actor::Admin,
            body,
        });
    };
    for body in wallet_world('W', "19900101") {
        push(&mut requests, time, body);
    }
    let submit = |requests: Vec<_>| {
        let r = engine.submit_wait(requests).unwrap();
        assert!(
            r.iter().all(|r| r.is_ok()),
            "{:?}",
            r.iter().find(|r| r.is_err())
        );
    };
    let mut next_id = 1;
    while next_id <= 65_600 {
        for body in wallet_day('W', next_id) {
            push(&mut requests, time, body);
        }
        next_id += 120;
        time += 86_400;
        if requests.len() > 5_000 {
            submit(std::mem::take(&mut requests));
        }
    }
    let credit = Body::Credit {
        period: gongji_core::time::parse_period("2034-01").unwrap(),
        items: vec![gongji_core::CreditItem {
            psn_no: wallet_psn('W', 0),
            amount: Fen(1),
        }],
    };
    push(&mut requests, time, credit);
    submit(requests);
}

#[test]
fn verify_checks_transfer_history_files_against_the_journal() {
    // Proves: on a data directory whose first chunk of wallet transfers is in a history file,
    // `gongji verify` reads the file (every block checked), recomputes everything from every
    // record and finds the replay from op 1's state hash; with a byte of the file flipped it
    // names the file, rebuilds its records from the journal, and still agrees.
    let dir = temp_dir("verify", "transfers");
    let (engine, _) = Engine::open(Config::new(&dir)).expect("opens");
    wallet_history(&engine);
    engine.shutdown().expect("clean shutdown");
    drop(engine);
    let file = dir.join("history/transfers-00000000.bin");
    assert!(
        file.exists(),
        "the first chunk of transfers went to its file"
    );
    let (ok, text) = verify(&dir);
    assert!(ok, "{text}");
    assert!(
        text.contains("read from history files, checksums ok"),
        "{text}"
    );
    assert!(text.contains("same state hash"), "{text}");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let (ok, text) = verify(&dir);
    assert!(ok, "{text}");
    assert!(
        text.contains("rebuilt by replaying the journal from op 1"),
        "{text}"
    );
    assert!(text.contains("transfers-00000000.bin"), "{text}");
    assert!(text.contains("same state hash"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
