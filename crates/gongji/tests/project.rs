//! `gongji project` and `gongji serve --projection` against a real PostgreSQL server.

mod common;
use common::{enrol, gongji, temp_dir};

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gongji_core::certno::certno_with_check;
use gongji_core::{Actor, Body, Insutype, Msgid, PsnNo};
use gongji_pg::testkit::TestDb;
use gongji_server::{Config, Engine, WriteRequest};

fn project_args(dir: &Path, url: &str, rebuild: bool) -> Vec<String> {
    let mut args = vec![
        "project".to_string(),
        "--data".into(),
        dir.to_string_lossy().into_owned(),
        "--projection".into(),
        url.into(),
    ];
    if rebuild {
        args.push("--rebuild".into());
    }
    args
}

fn project(dir: &Path, url: &str, rebuild: bool) -> (bool, String) {
    gongji(&project_args(dir, url, rebuild))
}

fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().query_one(sql, &[]).expect("query").get(0)
}

#[test]
fn project_command_catches_up_rebuilds_and_refuses_a_bad_url() {
    // Proves the one-shot command projects a data directory, that --rebuild gives the same
    // rows, and that a bad URL is a clear non-zero exit that hides the password.
    let dir = temp_dir("project", "cli");
    let (engine, _) = Engine::open(Config::new(&dir)).expect("opens");
    for i in 1..=5 {
        assert!(engine.submit_wait(vec![enrol(i)]).expect("running")[0].is_ok());
    }
    // Ops after the last snapshot, so that the command replays the journal.
    engine.shutdown().expect("clean shutdown");
    drop(engine);
    let (engine, _) = Engine::open(Config::new(&dir)).expect("reopens");
    for i in 6..=8 {
        assert!(engine.submit_wait(vec![enrol(i)]).expect("running")[0].is_ok());
    }
    let head = engine
        .counters()
        .journal_head_op
        .load(std::sync::atomic::Ordering::Acquire);
    drop(engine);
    let db = TestDb::new();
    let (ok, text) = project(&dir, &db.url, false);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("cursor: op {head} ")), "{text}");
    assert_eq!(count(&db, "SELECT count(*) FROM gongji.persons"), 8);
    let (ok, text) = project(&dir, &db.url, false);
    assert!(ok && text.contains("projected 0 ops"), "{text}");
    let (ok, text) = project(&dir, &db.url, true);
    assert!(ok, "{text}");
    assert_eq!(count(&db, "SELECT count(*) FROM gongji.persons"), 8);
    assert_eq!(
        count(&db, "SELECT op FROM gongji.projection_cursor"),
        head as i64
    );

    let (ok, text) = project(&dir, "postgres://gj:secret@127.0.0.1:1/x", false);
    assert!(!ok, "{text}");
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    let (ok, text) = project(&dir.join("nothing"), &db.url, false);
    assert!(!ok && text.contains("not a directory"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn post(addr: &str, token: &str, path: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn serve_with_projection_follows_the_writer() {
    // Proves `serve --projection` keeps the tables up to date behind the writer, and that the
    // server refuses to start on a bad projection URL.
    serve_with_projection(None);
}

#[test]
fn serve_on_the_postgres_store_with_projection_follows_the_writer() {
    // The same with the journal in PostgreSQL (`--store`): the projector reads the store's
    // table, and `gongji project --store` afterwards builds identical tables elsewhere.
    let store = TestDb::new();
    serve_with_projection(Some(&store));
}

/// `gongji serve --listen addr ARGS --projection url`, once it listens, and its admin token.
fn serve_projecting(
    addr: &str,
    args: &[String],
    url: &str,
    dir: &Path,
) -> (std::process::Child, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_gongji"))
        .args(["serve", "--listen", addr])
        .args(args)
        .args(["--projection", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "no server");
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(dir.join("admin.token")).expect("token");
    (child, token.trim().to_owned())
}

fn serve_with_projection(store: Option<&TestDb>) {
    let dir = temp_dir(
        "project",
        if store.is_some() { "serve-pg" } else { "serve" },
    );
    let db = TestDb::new();
    let store_args: Vec<String> = match store {
        Some(store) => vec!["--store".into(), store.url.clone()],
        None => Vec::new(),
    };
    let bad = Command::new(env!("CARGO_BIN_EXE_gongji"))
        .args([
            "serve",
            "--data",
            &dir.to_string_lossy(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(&store_args)
        .args(["--projection", "postgres://nobody@127.0.0.1:notaport/x"])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("projection"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    // Payments never wait for the analysts' database: with the projection unreachable the
    // server starts, serves, and says so in its metrics.
    let mut args: Vec<String> = vec!["--data".into(), dir.to_string_lossy().into()];
    args.extend(store_args.iter().map(|a| a.to_string()));
    let unreachable = "postgres://nobody@127.0.0.1:1/x";
    let (mut down, _) = serve_projecting(&addr, &args, unreachable, &dir);
    assert!(get(&addr, "/metrics").contains("gongji_projection_up 0"));
    let _ = Command::new("kill").arg(down.id().to_string()).status();
    assert!(down.wait().unwrap().success());

    let (mut child, token) = serve_projecting(&addr, &args, &db.url, &dir);
    let token = token.as_str();
    for (i, psn) in ["P1", "P2"].iter().enumerate() {
        let certno = certno_with_check(&format!("44010619900101{i:03}")).unwrap();
        let reply = post(
            &addr,
            token,
            "/v1/persons",
            &format!(
                r#"{{"msgid":"e{i}","psn_no":"{psn}","certno":"{certno}","psn_name":"张三","insutype":"310","admdvs":"440106"}}"#
            ),
        );
        assert!(
            reply.contains(" 200 ") || reply.contains(" 201 "),
            "{reply}"
        );
    }
    let reply = post(
        &addr,
        token,
        "/v1/credits",
        r#"{"msgid":"c1","period":"2025-05","items":[{"psn_no":"P1","amount":"500.00"}]}"#,
    );
    assert!(reply.contains("\"infcode\":0"), "{reply}");
    let started = Instant::now();
    loop {
        let mut c = db.client();
        let balance: Option<i64> = c
            .query_opt("SELECT balc_fen FROM gongji.accounts WHERE psn_id = 1", &[])
            .ok()
            .flatten()
            .map(|r| r.get(0));
        if balance == Some(50_000) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not projected");
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = get(&addr, "/metrics");
    assert!(
        metrics.contains("gongji_projection_lag_seconds"),
        "{metrics}"
    );
    assert!(metrics.contains("gongji_projection_up 1"), "{metrics}");
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    assert!(child.wait().unwrap().success());
    if store.is_some() {
        // Nothing of the journal is in the data directory: the one-shot command reads the
        // store, and a second projection database comes out identical to the live one.
        assert!(!dir
            .join("journal")
            .join("journal-00000000000000000001.seg")
            .exists());
        let again = TestDb::new();
        let out = Command::new(env!("CARGO_BIN_EXE_gongji"))
            .args(["project", "--data", &dir.to_string_lossy()])
            .args(&store_args)
            .args(["--projection", &again.url])
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(dump(&again), dump(&db));
        assert!(dump(&db).len() > 4);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every row of every projection table, as text, in key order.
fn dump(db: &TestDb) -> Vec<String> {
    let mut c = db.client();
    let mut out = Vec::new();
    for table in [
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
    ] {
        for row in c
            .query(
                &format!("SELECT t::text FROM gongji.{table} t ORDER BY 1"),
                &[],
            )
            .expect("dump")
        {
            out.push(format!("{table}: {}", row.get::<_, String>(0)));
        }
    }
    out.push(format!(
        "cursor {}",
        count(db, "SELECT op FROM gongji.projection_cursor")
    ));
    out
}

#[test]
fn project_killed_mid_way_resumes_to_identical_tables() {
    // Proves a `gongji project` killed with SIGKILL between or inside its transactions
    // resumes from its committed cursor to the same tables as an uninterrupted run.
    let dir = temp_dir("project", "kill");
    let (engine, _) = Engine::open(Config::new(&dir)).expect("opens");
    let requests: Vec<WriteRequest> = (1..=3_000).map(enrol_many).collect();
    for chunk in requests.chunks(500) {
        let results = engine.submit_wait(chunk.to_vec()).expect("running");
        assert!(results.iter().all(|r| r.is_ok()));
    }
    drop(engine);
    // Only the genesis snapshot left, so that a fresh projection replays every op.
    for e in std::fs::read_dir(dir.join("journal")).expect("journal") {
        let name = e.expect("entry").file_name().into_string().expect("utf-8");
        if gongji_journal::parse_snapshot_name(&name).is_some_and(|op| op > 0) {
            std::fs::remove_file(dir.join("journal").join(&name)).expect("remove");
        }
    }
    let straight = TestDb::new();
    let (ok, text) = project(&dir, &straight.url, false);
    assert!(ok, "{text}");
    let head = count(&straight, "SELECT op FROM gongji.projection_cursor");

    let db = TestDb::new();
    let mut args = project_args(&dir, &db.url, false);
    args.extend(["--chunk-ops".to_string(), "50".to_string()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_gongji"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    // Kill it once it has committed some chunks, wherever it is then.
    let started = Instant::now();
    let mut killed_at = None;
    while started.elapsed() < Duration::from_secs(60) {
        let at = db
            .client()
            .query_opt("SELECT op FROM gongji.projection_cursor", &[])
            .ok()
            .flatten()
            .map(|r| r.get::<_, i64>(0));
        if let Some(op) = at.filter(|&op| op > 500) {
            child.kill().expect("kill");
            killed_at = Some(op);
            break;
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
    }
    let _ = child.wait();
    let killed_at = killed_at.expect("the projection never passed op 500 while running");
    assert!(killed_at < head, "killed at {killed_at}, head {head}");
    let (ok, text) = project(&dir, &db.url, false);
    assert!(ok, "{text}");
    assert!(text.contains("replayed"), "{text}");
    assert_eq!(dump(&straight), dump(&db));
    let _ = std::fs::remove_dir_all(&dir);
}

fn enrol_many(i: u32) -> WriteRequest {
    let day = i / 1000;
    let certno = certno_with_check(&format!(
        "4401061990{:02}{:02}{:03}",
        1 + day % 12,
        1 + day % 28,
        i % 1000
    ))
    .expect("17 digits");
    WriteRequest {
        msgid: Msgid::from(&format!("m{i}")).expect("short"),
        inf_time: Some(1_900_000_000 + i64::from(i)),
        actor: Actor::Admin,
        body: Body::Enrol {
            psn_no: PsnNo::from(&format!("Q{i}")).expect("short"),
            certno: gongji_core::command::ArrayString::from(&certno).expect("18"),
            psn_name: "李四".into(),
            insutype: if i.is_multiple_of(4) {
                Insutype::Resident
            } else {
                Insutype::Employee
            },
            admdvs: 440_106,
        },
    }
}

#[test]
fn serve_with_projection_projects_a_federated_engine() {
    // Proves `serve --projection` with `[federation]` (refused before) projects a federated
    // engine's journal: its core writes and a federation op (a cross-engine binding proposed
    // to a peer; the bus is down, so it stays pending) reach the tables; `gongji project`
    // builds the same tables with the engine's `--config`, and refuses the journal without it.
    let dir = temp_dir("project", "federated");
    std::fs::create_dir_all(&dir).expect("dir");
    let conf = dir.join("gd.toml");
    std::fs::write(
        &conf,
        "[federation]\nengine = \"gd\"\nprovinces = [\"44\"]\nnats = \"nats://127.0.0.1:1\"\n\
         [federation.peers]\nbj = [\"11\"]\n",
    )
    .expect("config");
    let data = dir.join("data");
    let db = TestDb::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let args: Vec<String> = vec![
        "--data".into(),
        data.to_string_lossy().into(),
        "--config".into(),
        conf.to_string_lossy().into(),
    ];
    let (mut child, token) = serve_projecting(&addr, &args, &db.url, &data);
    let token = token.as_str();
    let certno = certno_with_check("44010619900101001").unwrap();
    let reply = post(
        &addr,
        token,
        "/v1/persons",
        &format!(
            r#"{{"msgid":"e1","psn_no":"P1","certno":"{certno}","psn_name":"张三","insutype":"310","admdvs":"440106"}}"#
        ),
    );
    assert!(reply.contains("\"infcode\":0"), "{reply}");
    let reply = post(
        &addr,
        token,
        "/v1/credits",
        r#"{"msgid":"c1","period":"2025-05","items":[{"psn_no":"P1","amount":"500.00"}]}"#,
    );
    assert!(reply.contains("\"infcode\":0"), "{reply}");
    let reply = post(
        &addr,
        token,
        "/v1/bindings",
        r#"{"msgid":"b1","giver_psn_no":"P1","receiver_psn_no":"R1","relation":"child","receiver_admdvs":"110105"}"#,
    );
    assert!(reply.contains("pending"), "{reply}");
    let started = Instant::now();
    loop {
        let projected = db
            .client()
            .query_opt(
                "SELECT a.balc_fen, b.status, b.psn_id, b.remote_psn_no
                 FROM gongji.accounts a, gongji.cross_engine_bindings b WHERE a.psn_id = 1",
                &[],
            )
            .ok()
            .flatten()
            .map(|r| {
                let row: (i64, String, Option<i32>, String) =
                    (r.get(0), r.get(1), r.get(2), r.get(3));
                row
            });
        if let Some(row) = projected {
            assert_eq!(row, (50_000, "pending".into(), Some(1), "R1".into()));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not projected");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(get(&addr, "/metrics").contains("gongji_projection_up 1"));
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    assert!(child.wait().unwrap().success());

    let again = TestDb::new();
    let args = |config: bool| {
        let mut args = project_args(&data, &again.url, false);
        if config {
            args.extend(["--config".into(), conf.to_string_lossy().into_owned()]);
        }
        args
    };
    let (ok, text) = gongji(&args(false));
    assert!(!ok, "{text}");
    assert!(
        text.contains("the projector has no [federation] but the journal's snapshot has"),
        "{text}"
    );
    assert_eq!(count(&again, "SELECT count(*) FROM gongji.persons"), 0);
    let (ok, text) = gongji(&args(true));
    assert!(ok, "{text}");
    assert_eq!(dump(&again), dump(&db));
    assert_eq!(
        count(&again, "SELECT count(*) FROM gongji.cross_engine_bindings"),
        1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
