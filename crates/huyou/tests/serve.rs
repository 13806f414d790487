//! The HTTP API against a real `huyou serve` process listening on 127.0.0.1:0: happy paths,
//! hostile input, and a kill -9 that must not lose an acknowledged audit record.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    addr: String,
    token: String,
    dir: TestDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    start_with(&[])
}

/// Starts a server on a fresh directory with these extra `huyou serve` arguments.
fn start_with(args: &[&str]) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    start_at(tmp.path().to_path_buf(), Some(tmp), args)
}

/// Starts `huyou serve` on `dir`; `tmp`, when given, is removed when the server is dropped.
fn start_at(dir: std::path::PathBuf, tmp: Option<tempfile::TempDir>, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_huyou"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&dir)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("huyou listening on http://")
        .expect(&line)
        .to_string();
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    Server {
        child,
        addr,
        token,
        dir: TestDir(dir, tmp),
    }
}

/// The server's data directory, and the temporary directory that owns it if any.
struct TestDir(
    std::path::PathBuf,
    #[allow(dead_code)] Option<tempfile::TempDir>,
);

impl TestDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

struct Response {
    status: u16,
    body: String,
}

impl Response {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Server {
    /// Sends one request on a fresh connection (`Connection: close`) and reads the whole reply.
    /// The body is written from another thread, so a server that refuses early (413) is seen.
    fn send(&self, method: &str, path: &str, token: Option<&str>, body: Vec<u8>) -> Response {
        let mut conn = TcpStream::connect(&self.addr).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut writer = conn.try_clone().unwrap();
        let send = std::thread::spawn(move || {
            let _ = writer.write_all(head.as_bytes());
            let _ = writer.write_all(&body);
        });
        let mut raw = Vec::new();
        let _ = conn.read_to_end(&mut raw);
        send.join().unwrap();
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").expect("a response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        Response {
            status,
            body: body.to_string(),
        }
    }

    fn post(&self, path: &str, body: serde_json::Value) -> Response {
        self.send(
            "POST",
            path,
            Some(&self.token),
            serde_json::to_vec(&body).unwrap(),
        )
    }
}

#[test]
fn health_openapi_metrics_and_token_auth() {
    // Proves the open endpoints answer, the OpenAPI document is 3.1 and names every route, and
    // /v1 routes refuse a missing or wrong token.
    let s = start();
    assert_eq!(s.send("GET", "/healthz", None, vec![]).status, 200);
    let doc = s.send("GET", "/openapi.json", None, vec![]).json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/classify",
        "/v1/filter",
        "/v1/genai/check",
        "/v1/genai/stream",
        "/v1/audit/export",
        "/metrics",
        "/healthz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} undocumented");
    }
    let body = br#"{"items":[]}"#.to_vec();
    assert_eq!(
        s.send("POST", "/v1/classify", None, body.clone()).status,
        401
    );
    assert_eq!(
        s.send("POST", "/v1/classify", Some("wrong"), body.clone())
            .status,
        401
    );
    assert_eq!(
        s.send("GET", "/v1/audit/export", Some("wrong"), vec![])
            .status,
        401
    );
    assert_eq!(
        s.send("POST", "/v1/classify", Some(&s.token), body).status,
        200
    );
    let metrics = s.send("GET", "/metrics", None, vec![]).body;
    assert!(
        metrics.contains("huyou_requests_rejected_total 2"),
        "{metrics}"
    );
}

#[test]
fn classify_and_filter_a_ranked_list() {
    // Proves classification with evidence over HTTP, and that the filter removes harmful
    // candidates from a recommendation for a minor but keeps them, with a notice, in an
    // adult's ordinary feed, in the order given.
    let s = start();
    let r = s.post(
        "/v1/classify",
        serde_json::json!({"items": [
            {"id": "1", "text": "今晚约炮吗"},
            {"id": "2", "text": "今天天气很好，我们去公园散步"},
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["results"][0]["categories"][0]["code"],
        "sexual_suggestion"
    );
    assert_eq!(
        v["results"][0]["categories"][0]["evidence"][0]["text"],
        "约炮"
    );
    assert_eq!(v["results"][1]["categories"].as_array().unwrap().len(), 0);
    let candidates = serde_json::json!([
        {"id": "a", "text": "今天天气很好，我们去公园散步"},
        {"id": "b", "text": "兄弟们今天拼酒，谁先倒谁买单"},
        {"id": "c", "text": "图书馆新到了一批科普书", "medium": "video"},
    ]);
    let r = s.post(
        "/v1/filter",
        serde_json::json!({"surface": "recommendation", "audience": "minor",
        "service": "algorithmic_push", "candidates": candidates}),
    );
    let v = r.json();
    let kept: Vec<&str> = v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["a", "c"]);
    assert_eq!(v["removed"][0]["id"], "b");
    assert_eq!(v["removed"][0]["codes"][0], "bad_habits");
    let r = s.post(
        "/v1/filter",
        serde_json::json!({"surface": "feed", "audience": "adult",
        "service": "ordinary", "candidates": candidates}),
    );
    let v = r.json();
    assert_eq!(v["kept"].as_array().unwrap().len(), 3);
    assert_eq!(v["kept"][1]["action"], "allow_with_notice");
    assert_eq!(v["kept"][1]["notice"]["position"][0], "beginning");
}

#[test]
fn hostile_input_gets_clear_errors_and_no_panic() {
    // Proves malformed JSON, invalid UTF-8, unknown fields, wrong types, an oversized body, an
    // oversized text and a 100,000-item batch each get a JSON error with a clear status, and the
    // server still answers afterwards.
    let s = start();
    let t = Some(s.token.as_str());
    let r = s.send("POST", "/v1/classify", t, b"{\"items\": [".to_vec());
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("invalid JSON"));
    let r = s.send(
        "POST",
        "/v1/classify",
        t,
        b"{\"items\":[{\"id\":\"1\",\"text\":\"\xff\xfe\"}]}".to_vec(),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("not UTF-8"));
    let r = s.post(
        "/v1/classify",
        serde_json::json!({"items": [{"id": "1", "text": "x", "colour": "red"}]}),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("colour"),
        "{}",
        r.body
    );
    let r = s.post(
        "/v1/filter",
        serde_json::json!({"surface": "sidebar", "audience": "minor",
        "service": "ordinary", "candidates": []}),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("sidebar"));
    let r = s.send("POST", "/v1/classify", t, vec![b' '; 64 * 1024 * 1024 + 1]);
    assert_eq!(r.status, 413);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("body_bytes_max"));
    let long = "好".repeat(30_000);
    let r = s.post(
        "/v1/classify",
        serde_json::json!({"items": [{"id": "1", "text": long}]}),
    );
    assert_eq!(r.status, 413);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("text_bytes_max"));
    let items: Vec<serde_json::Value> = (0..100_001)
        .map(|i| serde_json::json!({"id": i.to_string(), "text": "你好"}))
        .collect();
    let r = s.post("/v1/classify", serde_json::json!({ "items": items }));
    assert_eq!(r.status, 413);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("items_max is 100000"));
    let r = s.send("GET", "/healthz", None, vec![]);
    assert_eq!(r.status, 200);
}

#[test]
fn a_batch_of_100000_candidates_is_filtered_whole() {
    // Proves a 100,000-item batch (50-character texts, about 20 MB of JSON) is classified and
    // answered in full through a real listening server: every id comes back once, in order
    // within kept and removed, the harmful ones removed, and every item is counted as audited.
    let s = start();
    let texts = [
        "今天和同学一起去图书馆复习数学，准备下周的期末考试，大家都很努力，晚上还一起吃了饭。",
        "你这个傻逼赶紧滚出去吧，没人想看你在这里发疯，真是恶心透了，脑子有病就去治病好吗。",
    ];
    let n = 100_000;
    let candidates: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"id": format!("c{i}"), "text": texts[i % 2]}))
        .collect();
    let r = s.post(
        "/v1/filter",
        serde_json::json!({"surface": "recommendation", "audience": "minor",
            "service": "algorithmic_push", "candidates": candidates}),
    );
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(300)]);
    let v = r.json();
    let ids = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (kept, removed) = (ids("kept"), ids("removed"));
    assert_eq!(kept.len(), n / 2);
    assert_eq!(removed.len(), n / 2);
    let expect = |parity: usize| {
        (0..n)
            .filter(move |i| i % 2 == parity)
            .map(|i| format!("c{i}"))
    };
    assert!(kept.iter().cloned().eq(expect(0)));
    assert!(removed.iter().cloned().eq(expect(1)));
    let metrics = s.send("GET", "/metrics", None, vec![]).body;
    assert!(
        metrics.contains(&format!("huyou_audit_records_total {n}\n")),
        "{metrics}"
    );
}

#[test]
fn more_large_batches_at_once_than_cores_all_get_their_answers() {
    // Proves large batches beyond the number that may run at once (one per core) wait for a
    // permit and are then answered in full, none lost or mixed up with another.
    let s = start();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let answers: Vec<(usize, serde_json::Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cores + 2)
            .map(|b| {
                let s = &s;
                scope.spawn(move || {
                    let items: Vec<serde_json::Value> = (0..20_000)
                        .map(|i| serde_json::json!({"id": format!("b{b}-{i}"), "text": "今天天气很好"}))
                        .collect();
                    let r = s.post("/v1/classify", serde_json::json!({ "items": items }));
                    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(300)]);
                    (b, r.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (b, v) in answers {
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 20_000);
        assert_eq!(results[19_999]["id"], format!("b{b}-19999"));
    }
}

#[test]
fn genai_check_and_a_term_split_across_stream_chunks() {
    // Proves the prompt/answer check denies a harmful answer to a minor, and that a term split
    // across two chunks of a streaming answer stops the stream at the second chunk.
    let s = start();
    let r = s.post(
        "/v1/genai/check",
        serde_json::json!({"prompt": "讲个故事", "answer": "读书无用，早点辍学赚钱",
        "audience": "minor"}),
    );
    let v = r.json();
    assert_eq!(v["prompt"]["action"], "allow");
    assert_eq!(v["answer"]["action"], "deny");
    // Longer than the 256-byte overlap, so the second window starts inside the answer.
    let first = format!("{}他们说读书", "今天天气很好。".repeat(20));
    let r = s.post(
        "/v1/genai/stream",
        serde_json::json!({"stream_id": "s1", "chunk": first, "audience": "minor"}),
    );
    assert_eq!(r.json()["stop"], false, "{}", r.body);
    let r = s.post(
        "/v1/genai/stream",
        serde_json::json!({"stream_id": "s1", "chunk": "无用，不如打工", "audience": "minor"}),
    );
    let v = r.json();
    assert_eq!(v["stop"], true, "{}", r.body);
    assert_eq!(v["codes_so_far"][0], "study_useless");
    let full = format!("{first}无用，不如打工");
    let ev = &v["categories"][0]["evidence"][0];
    let at = v["window_start"].as_u64().unwrap() as usize;
    let (start, end) = (
        ev["start"].as_u64().unwrap() as usize,
        ev["end"].as_u64().unwrap() as usize,
    );
    assert!(
        at > 0,
        "the window starts inside the answer: only the tail is kept"
    );
    assert_eq!(&full[at + start..at + end], ev["text"].as_str().unwrap());
}

/// One classify request for `id`; the status, or None once the server is gone.
fn try_classify(addr: &str, token: &str, id: &str) -> Option<u16> {
    let body = serde_json::to_vec(
        &serde_json::json!({"items": [{"id": id, "text": "张小明你就是个傻逼"}]}),
    )
    .ok()?;
    let mut conn = TcpStream::connect(addr).ok()?;
    let head = format!(
        "POST /v1/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).ok()?;
    conn.write_all(&body).ok()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).ok()?;
    String::from_utf8_lossy(&raw)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// The value of an unlabelled metric on `/metrics`.
fn metric(s: &Server, name: &str) -> u64 {
    let text = s.send("GET", "/metrics", None, vec![]).body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn a_killed_server_loses_no_acknowledged_audit_record_with_audit_sync_group() {
    // Proves the default mode's promise: records are acknowledged once written, before any
    // fsync (the syncer waits 10 s here, so none has run when the server is killed, as
    // /metrics shows), and a kill -9 under load loses none of them.
    let s = start_with(&["--audit-sync", "group", "--audit-sync-interval-ms", "10000"]);
    killed_under_load_loses_nothing(s, |s, acked| {
        assert_eq!(metric(s, "huyou_audit_sync_seconds_count"), 0);
        assert!(metric(s, "huyou_audit_unsynced_records") >= acked as u64);
    });
}

#[test]
fn a_killed_server_loses_no_acknowledged_audit_record_with_audit_sync_always() {
    // Proves the same for `always`, where every acknowledged record is fsynced first.
    let s = start_with(&["--audit-sync", "always"]);
    killed_under_load_loses_nothing(s, |s, _| {
        assert_eq!(metric(s, "huyou_audit_unsynced_records"), 0);
        assert!(metric(s, "huyou_audit_sync_seconds_count") > 0);
    });
}

/// Four clients write concurrently; after 60 acknowledgements `before_kill` checks the
/// server's metrics, then a kill -9. Every item acknowledged before the kill must be in the
/// audit log, the chain must verify with `huyou verify`, the user's text must not be in the
/// log, and a restarted server must export the same records.
fn killed_under_load_loses_nothing(mut s: Server, before_kill: impl Fn(&Server, usize)) {
    let (acks_tx, acks_rx) = std::sync::mpsc::channel::<String>();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (addr, token, acks) = (s.addr.clone(), s.token.clone(), acks_tx.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    let id = format!("c{c}-{i}");
                    match try_classify(&addr, &token, &id) {
                        Some(200) => acks.send(id).unwrap(),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    drop(acks_tx);
    let mut acked: Vec<String> = acks_rx.iter().take(60).collect();
    before_kill(&s, acked.len());
    s.child.kill().unwrap(); // SIGKILL on Unix: no shutdown path runs.
    s.child.wait().unwrap();
    for client in clients {
        client.join().unwrap();
    }
    acked.extend(acks_rx.iter());
    let audit = s.dir.path().join("audit");
    let file = std::fs::read_to_string(audit.join("audit.jsonl")).unwrap();
    // The server writes its records into zeros written ahead (a preallocated log); a kill
    // leaves them. The records end at the first NUL, and nothing but zeros may follow.
    let (log, zeros) = file.split_at(file.find('\0').unwrap_or(file.len()));
    assert!(zeros.bytes().all(|b| b == 0), "bytes after the records");
    for id in &acked {
        assert!(log.contains(&format!("\"item_id\":\"{id}\"")), "{id} lost");
    }
    // Rules name lexicon terms (the rule's own text); the user's text is only hashed.
    assert!(
        log.contains("lex:傻逼") && !log.contains("张小明"),
        "user text must not be logged"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_huyou"))
        .arg("verify")
        .arg(&audit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = log.lines().count();
    assert!(records >= acked.len());
    let restarted = start_at(s.dir.path().to_path_buf(), None, &[]);
    let export = restarted.send("GET", "/v1/audit/export", Some(&restarted.token), vec![]);
    assert_eq!(export.body.lines().count(), records);
}

#[test]
fn the_group_syncer_syncs_what_was_acknowledged_within_its_interval() {
    // Proves `group` mode's background syncer fsyncs acknowledged records on its own (the
    // unsynced count returns to 0 and syncs are counted) without further requests.
    let s = start_with(&["--audit-sync-interval-ms", "1"]);
    for i in 0..3 {
        assert_eq!(try_classify(&s.addr, &s.token, &format!("g{i}")), Some(200));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&s, "huyou_audit_synced_records") < 3 {
        assert!(std::time::Instant::now() < deadline, "never synced");
        std::thread::yield_now();
    }
    assert_eq!(metric(&s, "huyou_audit_unsynced_records"), 0);
    assert!(metric(&s, "huyou_audit_sync_seconds_count") >= 1);
    let text = s.send("GET", "/metrics", None, vec![]).body;
    assert!(
        text.contains("huyou_audit_sync_mode{mode=\"group\"} 1"),
        "{text}"
    );
}

#[test]
fn a_bad_audit_sync_setting_is_refused_naming_it() {
    // Proves a wrong durability setting stops `huyou serve` before it starts, with an error
    // that names the setting.
    for (args, expected) in [
        (
            &["--audit-sync", "sometimes"][..],
            "--audit-sync <AUDIT_SYNC>",
        ),
        (
            &["--audit-sync-interval-ms", "60000"][..],
            "--audit-sync-interval-ms",
        ),
        (
            &["--audit-sync-interval-ms", "soon"][..],
            "--audit-sync-interval-ms",
        ),
        (
            &["--audit-sync", "always", "--audit-sync-interval-ms", "5"][..],
            "--audit-sync-interval-ms applies to --audit-sync group only",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_huyou"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(tmp.path().join("d"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected),
            "{args:?}: {err}"
        );
        assert!(
            !tmp.path().join("d").exists(),
            "{args:?} created the data directory"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_stopped_server_leaves_its_audit_log_as_plain_json_lines() {
    // Proves the server writes its records into zeros written ahead (the file is longer than its
    // records while it runs), and that SIGTERM (the graceful path: the writer joined, the log
    // closed) cuts the zeros, leaving JSON lines that `huyou verify` accepts.
    let mut s = start();
    for i in 0..3 {
        assert_eq!(try_classify(&s.addr, &s.token, &format!("t{i}")), Some(200));
    }
    let path = s.dir.path().join("audit").join("audit.jsonl");
    let running = std::fs::read(&path).unwrap();
    let records = running.iter().position(|&b| b == 0).expect("zeros ahead");
    assert_eq!(running[..records].split(|&b| b == b'\n').count() - 1, 3);
    let term = Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(s.child.wait().unwrap().success());
    let stopped = std::fs::read(&path).unwrap();
    assert_eq!(stopped, running[..records]);
    let out = Command::new(env!("CARGO_BIN_EXE_huyou"))
        .arg("verify")
        .arg(s.dir.path().join("audit"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains(": 3 records"),
        "{said}"
    );
}

/// A 2020-12 validator for the documented 200 (or `status`) response of `POST path`, with the
/// document's components beside it so that `#/components/...` references resolve.
fn assert_documented(
    doc: &serde_json::Value,
    path: &str,
    status: &str,
    instance: &serde_json::Value,
) {
    let schema =
        &doc["paths"][path]["post"]["responses"][status]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{path} {status} undocumented");
    let root = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::draft202012::new(&root).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{path} {status}: {instance} does not match: {errors:#?}"
    );
}

#[test]
fn responses_match_the_openapi_document() {
    // Proves the replies of every POST route, and an error reply, match the schemas the
    // OpenAPI document promises (so the document can fail when the code drifts).
    let s = start();
    let doc = s.send("GET", "/openapi.json", None, vec![]).json();
    let item = serde_json::json!({"id": "1", "text": "你就是个ＳＢ，快去充值打赏", "medium": "video",
        "meta": {"minor_appears": true}});
    let r = s.post(
        "/v1/classify",
        serde_json::json!({"items": [item],
        "decide": {"audience": "adult", "service": "ordinary"}}),
    );
    assert_documented(&doc, "/v1/classify", "200", &r.json());
    let r = s.post(
        "/v1/filter",
        serde_json::json!({"surface": "feed", "audience": "adult",
        "service": "ordinary", "candidates": [item, {"id": "2", "text": "你好"}]}),
    );
    assert_documented(&doc, "/v1/filter", "200", &r.json());
    let r = s.post(
        "/v1/genai/check",
        serde_json::json!({"prompt": "a", "answer": "傻逼"}),
    );
    assert_documented(&doc, "/v1/genai/check", "200", &r.json());
    let r = s.post(
        "/v1/genai/stream",
        serde_json::json!({"stream_id": "x", "chunk": "傻逼"}),
    );
    assert_documented(&doc, "/v1/genai/stream", "200", &r.json());
    let r = s.post("/v1/classify", serde_json::json!({"itemz": []}));
    assert_eq!(r.status, 400);
    assert_documented(&doc, "/v1/classify", "400", &r.json());
    // The control: a reply with a category score below the report threshold must not pass.
    let bad = serde_json::json!({"results": [{"id": "1", "categories": [{"code": "vulgarity",
        "score": 0.2, "evidence": [], "rules": []}]}]});
    let outcome = std::panic::catch_unwind(|| assert_documented(&doc, "/v1/classify", "200", &bad));
    assert!(outcome.is_err(), "the schema check accepts anything");
}
