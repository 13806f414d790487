//! Reads over HTTP never show a state that a crash could still undo. With the journal's fsync
//! held (`FaultStorage::hold_syncs`), a write is applied but not durable. A person read made
//! then (`GET /v1/persons/{psn_no}`, answered as of the last durable op) answers at once without
//! the enrolment (404), and with it once the sync is done; when that sync fails, the restarted
//! engine indeed has no such person. Any other read (here `GET /v1/reconciliation` of an
//! institution registered in the held write) sees the live state, so it answers only after the
//! sync (200), or is refused (503) when the sync fails.

mod common;

use std::time::Duration;

use common::{certno_in, m, unique, Server};
use gongji_journal::{CrashMode, FaultStorage};
use gongji_server::{Config, Engine};
use serde_json::json;

/// Posts `body` to `path` with the sync held; returns once the writer applied it and the sync
/// thread waits at the gate, with the write's request still unanswered.
async fn write_with_sync_held(
    server: &Server,
    fault: &FaultStorage,
    path: &str,
    body: serde_json::Value,
) -> tokio::task::JoinHandle<u16> {
    fault.hold_syncs();
    let applied = server.engine.applied_op();
    let request = server
        .client
        .post(format!("{}{path}", server.base))
        .bearer_auth(&server.admin)
        .json(&body);
    let write =
        tokio::spawn(async move { request.send().await.expect("request").status().as_u16() });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fault.syncs_held() == 0 || server.engine.applied_op() == applied {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sync never came"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Applied, not durable.
    assert!(server.engine.applied_op() > server.engine.durable_op());
    write
}

/// Enrols `psn_no` with the sync held.
async fn enrol_with_sync_held(
    server: &Server,
    fault: &FaultStorage,
    psn_no: &str,
) -> tokio::task::JoinHandle<u16> {
    let body = json!({"msgid": m(), "psn_no": psn_no, "certno": certno_in("440106", unique() as u32),
                      "psn_name": "张三丰", "insutype": "310", "admdvs": "440106"});
    let write = write_with_sync_held(server, fault, "/v1/persons", body).await;
    assert!(server.engine.read(|s| s.person(psn_no).is_ok()));
    write
}

/// Registers institution `code` with the sync held.
async fn register_with_sync_held(
    server: &Server,
    fault: &FaultStorage,
    code: &str,
) -> tokio::task::JoinHandle<u16> {
    let body = json!({"msgid": m(), "fixmedins_code": code, "fixmedins_name": "大药房",
                      "fixmedins_type": "2", "admdvs": "440106"});
    let write = write_with_sync_held(server, fault, "/v1/institutions", body).await;
    assert!(server.engine.read(|s| s.institution(code).is_ok()));
    write
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

fn get_person(server: &Server, psn_no: &str) -> tokio::task::JoinHandle<(u16, serde_json::Value)> {
    get(server, &format!("/v1/persons/{psn_no}"))
}

fn get_recon(server: &Server, code: &str) -> tokio::task::JoinHandle<(u16, serde_json::Value)> {
    get(
        server,
        &format!("/v1/reconciliation?fixmedins_code={code}&date=2030-05-20"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_read_between_apply_and_sync_answers_at_once_as_of_the_durable_state() {
    // Proves: the read answers while the sync is held (it does not wait for the batch), and
    // what it shows is the durable state: no such person yet (404), though the live state has
    // the person; right after the sync the same read shows the person.
    let fault = FaultStorage::new();
    let server = Server::on_fault_storage(fault.clone()).await;
    let _gate = ReleaseOnPanic(fault.clone());
    let write = enrol_with_sync_held(&server, &fault, "DURABLE01").await;
    let read = get_person(&server, "DURABLE01");
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("answered while the sync is held")
        .unwrap();
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
async fn a_person_read_between_apply_and_a_failed_sync_shows_what_the_crash_keeps() {
    // Proves: when the held sync fails, the enrolment is not acknowledged, and the 404 the
    // read answered during the hold is what the restarted engine has: no such person.
    let fault = FaultStorage::new();
    let server = Server::on_fault_storage(fault.clone()).await;
    let _gate = ReleaseOnPanic(fault.clone());
    let write = enrol_with_sync_held(&server, &fault, "DURABLE02").await;
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(5), get_person(&server, "DURABLE02"))
            .await
            .expect("answered while the sync is held")
            .unwrap();
    assert_eq!(status, 404, "{body}");
    fault.set_crash_at_sync(fault.syncs_total() + 1);
    fault.release_syncs();
    assert_eq!(write.await.unwrap(), 503);
    drop(server);
    let restarted = fault.after_crash(CrashMode::DropUnsynced);
    let (engine, _) = tokio::task::spawn_blocking(move || {
        let config = Config::new("/nonexistent/gongji-http-durable-read");
        Engine::open_on(config, restarted.clone(), restarted).expect("reopens")
    })
    .await
    .unwrap();
    assert!(engine.read(|s| s.person("DURABLE02").is_err()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_read_between_apply_and_sync_answers_after_the_sync() {
    // Proves: a read of the live state (reconciliation) is not answered while the sync is
    // held (it would show an institution a crash could undo), and is answered right after.
    let fault = FaultStorage::new();
    let server = Server::on_fault_storage(fault.clone()).await;
    let _gate = ReleaseOnPanic(fault.clone());
    let write = register_with_sync_held(&server, &fault, "P44010600031").await;
    let mut read = get_recon(&server, "P44010600031");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut read)
            .await
            .is_err(),
        "a read answered before what it saw was durable"
    );
    assert!(!write.is_finished(), "no write reply before the sync");
    fault.release_syncs();
    let (status, body) = read.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(write.await.unwrap(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_read_between_apply_and_a_failed_sync_is_refused() {
    // Proves: when the held sync fails, the live read that saw the registration is refused
    // (503), the registration is not acknowledged, and after the restart the institution does
    // not exist.
    let fault = FaultStorage::new();
    let server = Server::on_fault_storage(fault.clone()).await;
    let _gate = ReleaseOnPanic(fault.clone());
    let write = register_with_sync_held(&server, &fault, "P44010600032").await;
    let read = get_recon(&server, "P44010600032");
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
    assert!(engine.read(|s| s.institution("P44010600032").is_err()));
}
