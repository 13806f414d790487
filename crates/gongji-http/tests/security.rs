//! The attacks of issue 17, tried against a real listening server: msgid scopes (a prefix-coded
//! institution, a person, two institutions with one msgid), slow and oversized clients, a cap
//! on connections, and private data files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An institution code that is a prefix of `H1`'s.
const SHORT: &str = "H4401";

#[tokio::test]
async fn a_prefix_coded_institution_cannot_cancel_or_block_anothers_settlement() {
    // Proves: with a token for H4401, reversing H44010600001's applied settlement by its msgid
    // leaves it applied (and the money where it was), and "blocking" an unseen msgid of
    // H44010600001's does not stop H44010600001's later settlement with it.
    let w = World::new().await;
    let s = &w.s;
    s.institution(SHORT).await;
    let short = s
        .token("institution", Some(("fixmedins_code", SHORT)))
        .await;
    let applied = format!("{H1}203005200800000099");
    let body = json!({"msgid": applied, "fixmedins_code": H1, "psn_no": "PA",
                      "medfee_sumamt": "100.00", "fund_pay_sumamt": "0.00"});
    let settled = s.post(&w.h1, "/v1/settlements", body.clone()).await.ok();
    let before = s.person("PA").await["acct_balc"].clone();
    let r = s
        .post(
            &short,
            "/v1/reversals",
            json!({"msgid": m(), "omsgid": applied}),
        )
        .await
        .ok();
    assert_eq!(r["result"], "blocked", "{r}");
    let setl = s
        .get(
            &w.admin,
            &format!("/v1/settlements/{}", settled["setl_id"].as_str().unwrap()),
        )
        .await
        .ok();
    assert_eq!(setl["status"], "settled", "{setl}");
    assert_eq!(s.person("PA").await["acct_balc"], before);
    // Naming H1's scope outright is refused.
    let named = json!({"msgid": m(), "omsgid": applied, "fixmedins_code": H1});
    s.post(&short, "/v1/reversals", named)
        .await
        .err(403, "FORBIDDEN");

    let unseen = format!("{H1}203005200800000100");
    s.post(
        &short,
        "/v1/reversals",
        json!({"msgid": m(), "omsgid": unseen}),
    )
    .await
    .ok();
    let mut late = body.clone();
    late["msgid"] = json!(unseen);
    let r = s.post(&w.h1, "/v1/settlements", late).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // H1 itself, and an admin naming H1, still reverse H1's settlement.
    let r = s
        .post(
            &w.admin,
            "/v1/reversals",
            json!({"msgid": m(), "omsgid": applied, "fixmedins_code": H1}),
        )
        .await
        .ok();
    assert_eq!(r["result"], "cancelled", "{r}");
    let r = s
        .post(
            &w.admin,
            "/v1/reversals",
            json!({"msgid": m(), "omsgid": applied, "fixmedins_code": "HNOWHERE"}),
        )
        .await;
    r.err(404, "INSTITUTION_NOT_FOUND");
}

#[tokio::test]
async fn a_persons_msgid_does_not_collide_with_an_institutions() {
    // Proves: a person's write under the hospital's next msgid neither uses it up (the
    // hospital's settlement applies) nor tells the person anything about the hospital's msgids.
    let w = World::new().await;
    let s = &w.s;
    let his = format!("{H1}203005200900000078");
    let r = s
        .post(&w.pb, "/v1/persons/PB/wallet", json!({"msgid": his}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let settle = json!({"msgid": his, "fixmedins_code": H1, "psn_no": "PA",
                        "medfee_sumamt": "10.00", "fund_pay_sumamt": "0.00"});
    let first = s.post(&w.h1, "/v1/settlements", settle.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    // Each replays its own first reply.
    let again = s.post(&w.h1, "/v1/settlements", settle).await;
    assert_eq!(again.output_bytes(), first.output_bytes());
    let wallet_again = s
        .post(&w.pb, "/v1/persons/PB/wallet", json!({"msgid": his}))
        .await;
    assert_eq!(wallet_again.status, 200, "{}", wallet_again.text());
    assert_ne!(wallet_again.output_bytes(), first.output_bytes());
    // The person's own scope still refuses another body under the msgid.
    let r = s
        .post(
            &w.pb,
            "/v1/bindings",
            json!({"msgid": his, "giver_psn_no": "PB", "receiver_psn_no": "PE",
                     "relation": "sibling"}),
        )
        .await;
    r.err(409, "MSGID_CONFLICT");
}

#[tokio::test]
async fn two_institutions_may_use_the_same_msgid() {
    // Proves: H1 and H2 settling under one msgid make two settlements; each msgid replays
    // within its own institution's scope, and a third body under it is a conflict there.
    let w = World::new().await;
    let s = &w.s;
    let msgid = "SAME0000000000000000000000001";
    let at = |code: &str, fee: &str| {
        json!({"msgid": msgid, "fixmedins_code": code, "psn_no": "PA",
               "medfee_sumamt": fee, "fund_pay_sumamt": "0.00"})
    };
    let a = s.post(&w.h1, "/v1/settlements", at(H1, "11.00")).await.ok();
    let b = s.post(&w.h2, "/v1/settlements", at(H2, "22.00")).await.ok();
    assert_ne!(a["setl_id"], b["setl_id"]);
    assert_eq!(
        s.post(&w.h1, "/v1/settlements", at(H1, "11.00")).await.ok(),
        a
    );
    assert_eq!(
        s.post(&w.h2, "/v1/settlements", at(H2, "22.00")).await.ok(),
        b
    );
    s.post(&w.h1, "/v1/settlements", at(H1, "33.00"))
        .await
        .err(409, "MSGID_CONFLICT");
}

/// The address of `s` for a raw TCP client.
fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes (or 30 s pass); returns what came and when it closed.
async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return (got, Instant::now()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_header_trickle_is_cut_off() {
    // Proves: a client that sends one header line every 2 s never completes a request: the
    // server closes the connection once the headers have taken 10 s, and answers nothing.
    let s = Server::start().await;
    let mut stream = TcpStream::connect(addr(&s)).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"POST /v1/settlements HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let writer = async {
        for n in 0..20 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if stream
                .write_all(format!("X-Slow-{n}: {n}\r\n").as_bytes())
                .await
                .is_err()
            {
                return n;
            }
        }
        20
    };
    let lines = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the server cut the trickle off");
    let elapsed = started.elapsed();
    assert!(lines < 8, "{lines} header lines were accepted");
    assert!(
        elapsed >= Duration::from_secs(9) && elapsed < Duration::from_secs(16),
        "closed after {elapsed:?}"
    );
    // A connection that sends nothing at all is closed too.
    let mut idle = TcpStream::connect(addr(&s)).await.unwrap();
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut idle).await;
    let waited = closed - started;
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{got:?}"
    );
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(16),
        "idle connection closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_huge_content_length_is_refused_at_once() {
    // Proves: a declared Content-Length of 10 GiB is answered 413 TOO_LARGE with the envelope
    // before any body is sent, with a valid token and without one, on a write and elsewhere.
    let w = World::new().await;
    let s = &w.s;
    let hash = s.state_hash();
    for (path, token) in [
        ("/v1/settlements", Some(w.h1.as_str())),
        ("/v1/settlements", None),
        ("/v1/batch", Some(w.admin.as_str())),
        ("/v1/nowhere", None),
    ] {
        let mut stream = TcpStream::connect(addr(s)).await.unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: 10737418240\r\n\r\n"
        );
        let started = Instant::now();
        stream.write_all(head.as_bytes()).await.unwrap();
        let (got, closed) = read_until_closed(&mut stream).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        assert!(text.contains(r#""err_code":"TOO_LARGE""#), "{path}: {text}");
        assert!(
            closed - started < Duration::from_secs(2),
            "{path}: {:?}",
            closed - started
        );
    }
    assert_eq!(s.state_hash(), hash);
}

#[tokio::test]
async fn a_trickled_body_gets_408_with_the_envelope() {
    // Proves: a body that does not arrive within the request limit is answered 408 with the
    // envelope and the connection closed (the limit is shortened here to keep the test quick).
    // The state is not compared: the idle writer's clock ticks change its hash meanwhile.
    let limits = gongji_http::Limits {
        request_timeout: Duration::from_secs(2),
        ..gongji_http::Limits::default()
    };
    let s = Server::start_with(limits).await;
    let mut stream = TcpStream::connect(addr(&s)).await.unwrap();
    let head = format!(
        "POST /v1/credits HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 100\r\n\r\n{{\"msgid\":",
        s.admin
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (got, _) = read_until_closed(&mut stream).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""infcode":-1"#), "{text}");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_clearly() {
    // Proves: with a cap of 2 connections, a third is answered 503 OVERLOADED and closed while
    // the two are held; once one goes, a new connection is served.
    let limits = gongji_http::Limits {
        connection_count_max: 2,
        ..gongji_http::Limits::default()
    };
    let s = Server::start_with(limits).await;
    let held1 = TcpStream::connect(addr(&s)).await.unwrap();
    let _held2 = TcpStream::connect(addr(&s)).await.unwrap();
    // The accept loop takes connections in order: wait until both are counted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr(&s)).await.unwrap();
    let (got, _) = read_until_closed(&mut third).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains(r#""err_code":"OVERLOADED""#), "{text}");
    drop(held1);
    // The freed slot is taken back once the server sees the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = s.client.get(format!("{}/healthz", s.base)).send().await;
        if let Ok(r) = r {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no slot came free");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_file_in_a_used_data_directory_is_private() {
    // Proves: after writes, a snapshot and a restart, the data directory and every directory
    // in it are 0700 and every file 0600, whatever the test process's umask made of them.
    let w = World::new().await;
    w.s.settle(H1, "PA", "1.00", "0.00").await;
    let dir = w.s.stop().await;
    let s = Server::open(dir, |_| {}).await;
    s.settle(H1, "PA", "1.00", "0.00").await;
    let dir = s.stop().await;
    let mut seen = 0;
    let mut pending = vec![dir.0.clone()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{}", path.display());
            seen += 1;
        }
    }
    // The admin token, the lock, at least one journal segment and one snapshot.
    assert!(seen >= 4, "only {seen} files");
}
