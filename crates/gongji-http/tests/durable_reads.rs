//! Reads over HTTP never show a state that a crash could still undo. With the journal's fsync
//! held (`FaultStorage::hold_syncs`), an enrolment is applied but not durable: the state holds
//! the person. `GET /v1/persons/{psn_no}` made then answers at once, as of the last durable op
//! (404: not enrolled yet; a binding being synced not shown yet); a read that shows the
//! current state (a binding's) answers only after the sync, or, when that sync fails, is
//! refused (503), and the binding is indeed gone after the restart.

mod common;

use std::time::Duration;

use common::{certno_in, m, unique, Server};
use gongji_journal::{CrashMode, FaultStorage};
use gongji_server::{Config, Engine};
use serde_json::json;

/// Enrols `psn_no` with the sync held; returns once the writer applied it and the sync thread
/// waits at the gate, with the enrolment's request still unanswered.
async fn enrol_with_sync_held(
    server: &Server,
    fault: &FaultStorage,
    psn_no: &str,
) -> tokio::task::JoinHandle<u16> {
    let body = json!({"msgid": m(), "psn_no": psn_no,
                      "certno": certno_in("440106", unique() as u32),
                      "psn_name": "张三丰", "insutype": "310", "admdvs": "440106"});
    let write = post_when_held(server, fault, "/v1/persons", body).await;
    // Applied, not durable.
    assert!(server.engine.read(|s| s.person(psn_no).is_ok()));
    assert!(server.engine.applied_op() > server.engine.durable_op());
    write
}

/// An admin's POST of `body` to `path` with the syncs held ([`send_when_held`]).
async fn post_when_held(
    server: &Server,
    fault: &FaultStorage,
    path: &str,
    body: serde_json::Value,
) -> tokio::task::JoinHandle<u16> {
    fault.hold_syncs();
    let request = server
        .client
        .post(format!("{}{path}", server.base))
        .bearer_auth(&server.admin)
        .json(&body);
    send_when_held(fault, request).await
}

/// Sends a write with the syncs held; returns once the writer applied it and the sync thread
/// waits at the gate, with the write's status to come.
async fn send_when_held(
    fault: &FaultStorage,
    request: reqwest::RequestBuilder,
) -> tokio::task::JoinHandle<u16> {
    let write =
        tokio::spawn(async move { request.send().await.expect("request").status().as_u16() });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fault.syncs_held() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sync never came"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    write
}

/// A read's answer, which must come while the sync is held (within 5 s).
async fn answered_at_once(
    read: tokio::task::JoinHandle<(u16, serde_json::Value)>,
) -> (u16, serde_json::Value) {
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("answered while the sync is held")
        .unwrap()
}

/// Opens the gate if a test fails with it held: the engine's drop waits for the sync thread.
struct ReleaseOnPanic(FaultStorage);

impl Drop for ReleaseOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.release_syncs();
        }
    }
}

fn get_person(server: &Server, psn_no: &str) -> tokio::task::JoinHandle<(u16, serde_json::Value)> {
    get(server, &format!("/v1/persons/{psn_no}"))
}

fn get_stats(server: &Server) -> tokio::task::JoinHandle<(u16, serde_json::Value)> {
    get(server, "/v1/stats?from=2000-01&to=2099-12")
}

/// An admin's GET, answered in a task: its status and body.
fn get(server: &Server, path: &str) -> tokio::task::JoinHandle<(u16, serde_json::Value)> {
    let request = server
        .client
        .get(format!("{}{path}", server.base))
        .bearer_auth(&server.admin);
    tokio::spawn(async move {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_read_between_apply_and_sync_answers_as_of_the_last_durable_op() {
    // Proves: a person read made while an enrolment's sync is held is answered at once, and
    // as of the last durable op: the person is not found yet; after the sync it is.
    let fault = FaultStorage::new();
    let server = Server::on_fault_storage(fault.clone()).await;
    let _gate = ReleaseOnPanic(fault.clone());
    let write = enrol_with_sync_held(&server, &fault, "DURABLE01").await;
    let (status, body) = answered_at_once(get_person(&server, "DURABLE01")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["err_code"], "PERSON_NOT_FOUND", "{body}");
    assert!(!write.is_finished(), "no write reply before the sync");
    fault.release_syncs();
    assert_eq!(write.await.unwrap(), 200);
    let (status, body) = get_person(&server, "DURABLE01").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"]["psn_no"], "DURABLE01", "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_being_synced_is_not_shown_until_it_is_durable() {
    // Proves: while a binding's sync is held, both persons' reads answer at once without it
    // (the giver's given list, the receiver's received list and the receiver's other giver's
    // priority as they were), the write itself unanswered; after the sync, with it.
    let fault = FaultStorage::new();
    let server = Server::on_fault_storage(fault.clone()).await;
    let _gate = ReleaseOnPanic(fault.clone());
    for psn in ["DURG1", "DURG2", "DURR1"] {
        server.enrol(psn, "310", "440106").await;
    }
    server.bind("DURG1", "DURR1", "parent").await;
    let before = [
        server.person("DURG1").await,
        server.person("DURG2").await,
        server.person("DURR1").await,
    ];
    let body = json!({"msgid": m(), "giver_psn_no": "DURG2", "receiver_psn_no": "DURR1",
                      "relation": "parent"});
    let write = post_when_held(&server, &fault, "/v1/bindings", body).await;
    for (psn, was) in ["DURG1", "DURG2", "DURR1"].iter().zip(&before) {
        let (status, body) = answered_at_once(get_person(&server, psn)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(&body["output"], was, "{psn} as of the last durable op");
    }
    assert!(!write.is_finished(), "no write reply before the sync");
    fault.release_syncs();
    assert_eq!(write.await.unwrap(), 200);
    let receiver = server.person("DURR1").await;
    let givers = receiver["bindings_received"].as_array().expect("a list");
    assert_eq!(givers.len(), 2, "{receiver}");
    let giver = server.person("DURG2").await;
    assert_eq!(giver["bindings_given"][0]["priority"], 2, "{giver}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_being_synced_is_not_shown_until_it_is_durable() {
    // Proves: while a settlement's sync is held, its read answers at once 404, the person's
    // entries at once without its draw and the person with the balance before it; after the
    // sync, all three show it.
    let fault = FaultStorage::new();
    let server = Server::on_fault_storage(fault.clone()).await;
    let _gate = ReleaseOnPanic(fault.clone());
    server.institution("H44010600001").await;
    server.enrol("DURS1", "310", "440106").await;
    server.credit(&[("DURS1", "100.00")]).await;
    let entries_before = server
        .get(&server.admin, "/v1/persons/DURS1/entries")
        .await
        .ok();
    assert_eq!(
        entries_before["entries"].as_array().map(Vec::len),
        Some(1),
        "{entries_before}"
    );
    let body = json!({"msgid": m(), "fixmedins_code": "H44010600001", "psn_no": "DURS1",
                      "medfee_sumamt": "50.00", "fund_pay_sumamt": "20.00"});
    let write = post_when_held(&server, &fault, "/v1/settlements", body).await;
    let (status, body) = answered_at_once(get(&server, "/v1/settlements/1")).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = answered_at_once(get(&server, "/v1/persons/DURS1/entries")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["output"], entries_before,
        "entries as of the last durable op"
    );
    let (_, body) = answered_at_once(get_person(&server, "DURS1")).await;
    assert_eq!(body["output"]["acct_balc"], "100.00", "{body}");
    assert!(!write.is_finished(), "no write reply before the sync");
    fault.release_syncs();
    assert_eq!(write.await.unwrap(), 200);
    let (status, body) = get(&server, "/v1/settlements/1").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let entries = server
        .get(&server.admin, "/v1/persons/DURS1/entries")
        .await
        .ok();
    assert_eq!(
        entries["entries"].as_array().map(Vec::len),
        Some(2),
        "{entries}"
    );
    assert_eq!(server.person("DURS1").await["acct_balc"], "70.00");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_the_current_state_between_apply_and_a_failed_sync_is_refused() {
    // Proves: when the held sync fails, a read that saw a binding being synced (a binding's
    // read, answered from the current state once it is durable) is refused (503), the binding
    // is not acknowledged, and after the restart it does not exist.
    let fault = FaultStorage::new();
    let server = Server::on_fault_storage(fault.clone()).await;
    let _gate = ReleaseOnPanic(fault.clone());
    server.enrol("DURABLE02", "310", "440106").await;
    server.enrol("DURABLE12", "310", "440106").await;
    let body = json!({"msgid": m(), "giver_psn_no": "DURABLE02",
                      "receiver_psn_no": "DURABLE12", "relation": "parent"});
    let write = post_when_held(&server, &fault, "/v1/bindings", body).await;
    assert!(server.engine.read(|s| s.binding(1).is_ok()), "applied");
    let read = get(&server, "/v1/bindings/1");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!read.is_finished(), "a read answered before the sync");
    fault.set_crash_at_sync(fault.syncs_total() + 1);
    fault.release_syncs();
    let (status, body) = read.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["err_code"], "OVERLOADED", "{body}");
    assert_eq!(write.await.unwrap(), 503);
    drop(server);
    let restarted = fault.after_crash(CrashMode::DropUnsynced);
    let (engine, _) = tokio::task::spawn_blocking(move || {
        let config = Config::new("/nonexistent/gongji-http-durable-read");
        Engine::open_on(config, restarted.clone(), restarted).expect("reopens")
    })
    .await
    .unwrap();
    assert!(engine.read(|s| s.person("DURABLE02").is_ok()));
    assert!(engine.read(|s| s.binding(1).is_err()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_answer_while_a_batch_is_synced_but_wait_for_a_token_change() {
    // Proves: GET /v1/stats, answered from the statistics of the last durable batch, is
    // answered while an enrolment's sync is held (as a person read is: above); while a token
    // revocation's sync is held, the same read waits (its authorisation could be undone by a
    // crash), and is answered once that sync is done.
    let fault = FaultStorage::new();
    let server = Server::on_fault_storage(fault.clone()).await;
    let _gate = ReleaseOnPanic(fault.clone());
    let write = enrol_with_sync_held(&server, &fault, "DURABLE03").await;
    let (status, body) = answered_at_once(get_stats(&server)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"]["total"]["count"], 0, "{body}");
    assert!(!write.is_finished(), "no write reply before the sync");
    fault.release_syncs();
    assert_eq!(write.await.unwrap(), 200);

    // A second admin token, revoked with the sync held.
    let created = server
        .post(
            &server.admin,
            "/v1/tokens",
            json!({"msgid": m(), "role": "admin"}),
        )
        .await
        .ok();
    let token_id = created["token_id"].as_str().expect("a token id").to_owned();
    fault.hold_syncs();
    let request = server
        .client
        .post(format!("{}/v1/tokens/{token_id}/revoke", server.base))
        .bearer_auth(&server.admin)
        .json(&json!({"msgid": m()}));
    let revoke = send_when_held(&fault, request).await;
    let mut read = get_stats(&server);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut read)
            .await
            .is_err(),
        "a read answered while a token change it depends on was not durable"
    );
    fault.release_syncs();
    let (status, body) = read.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(revoke.await.unwrap(), 200);
    server.stop().await;
}
