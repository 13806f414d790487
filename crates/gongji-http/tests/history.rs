//! Settlements older than anything in memory, through the real server: cancelled and reversed
//! over HTTP after their chunk went to a history file and the server restarted.

mod common;

use common::{m, Server, World, H1};
use serde_json::{json, Value};

/// Settlements per `/v1/batch` request (each op about 170 bytes: under the 1 MiB body limit).
const PER_BATCH: usize = 5_000;

/// `gongji_history_chunks_cold` from `/metrics`.
async fn cold_chunks(s: &Server) -> u64 {
    let text = s.get_opt(None, "/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix("gongji_history_chunks_cold "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_settlements_are_cancelled_and_reversed_from_history_files() {
    // Proves: a settlement whose chunk of 64 K settlements is in a history file (the server
    // restarted since, so nothing of it is on the heap) is read, cancelled and reversed over
    // HTTP exactly as a new one is: the giver's and the payer's money come back, GET shows it
    // cancelled, a second cancel is refused, and all of it survives another restart.
    let w = World::new().await;
    let first =
        w.s.post(
            &w.h1,
            "/v1/settlements",
            json!({"msgid": m(), "fixmedins_code": H1, "psn_no": "PB",
                   "medfee_sumamt": "300.00", "fund_pay_sumamt": 200, "acct_used_flag": "1"}),
        )
        .await
        .ok();
    assert_eq!(first["acct_mulaid_pay"], "90.00");
    let reversed_msgid = m();
    let second =
        w.s.post(
            &w.h1,
            "/v1/settlements",
            json!({"msgid": reversed_msgid, "fixmedins_code": H1, "psn_no": "PE",
                   "medfee_sumamt": "50.00", "fund_pay_sumamt": 0, "acct_used_flag": "1"}),
        )
        .await
        .ok();
    assert_eq!(second["acct_pay"], "50.00");
    assert_eq!(w.s.person("PA").await["acct_balc"], "910.00");
    assert_eq!(w.s.person("PE").await["acct_balc"], "50.00");

    // Enough cash settlements to fill the first chunk of settlements.
    let filler = 66_000;
    for start in (0..filler).step_by(PER_BATCH) {
        let ops: Vec<Value> = (start..(start + PER_BATCH).min(filler))
            .map(|_| {
                json!({"path": "/v1/settlements", "body": {"msgid": m(), "fixmedins_code": H1,
                    "psn_no": "PC", "medfee_sumamt": "1", "fund_pay_sumamt": "0",
                    "acct_used_flag": "0"}})
            })
            .collect();
        let out = w.s.admin_ok("/v1/batch", json!({ "ops": ops })).await;
        let results = out["results"].as_array().unwrap();
        assert!(results.iter().all(|r| r["status"] == 200), "{}", results[0]);
    }
    let setl_id = first["setl_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/settlements/{setl_id}");
    let before = w.s.get(&w.admin, &path).await.ok();
    assert_eq!(before["status"], "settled");

    // A restart: the shutdown snapshot leaves the full chunk to its file.
    let dir = w.s.stop().await;
    let s = Server::open(dir, |_| {}).await;
    assert!(cold_chunks(&s).await >= 1, "the first chunk is in a file");
    assert_eq!(s.get(&w.admin, &path).await.ok(), before);

    let cancelled = s
        .post(&w.h1, &format!("{path}/cancel"), json!({ "msgid": m() }))
        .await
        .ok();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(s.person("PA").await["acct_balc"], "1000.00");
    assert_eq!(s.person("PB").await["acct_balc"], "10.00");
    s.post(&w.h1, &format!("{path}/cancel"), json!({ "msgid": m() }))
        .await
        .err(409, "ALREADY_CANCELLED");
    let reversal = s
        .post(
            &w.h1,
            "/v1/reversals",
            json!({"msgid": m(), "omsgid": reversed_msgid}),
        )
        .await
        .ok();
    assert_eq!(reversal["result"], "cancelled", "{reversal}");
    assert_eq!(s.person("PE").await["acct_balc"], "100.00");
    let after = s.get(&w.admin, &path).await.ok();
    assert_eq!(after["status"], "cancelled");
    let hash = s.state_hash();

    let dir = s.stop().await;
    let s = Server::open(dir, |_| {}).await;
    assert_eq!(s.get(&w.admin, &path).await.ok(), after);
    assert_eq!(s.person("PA").await["acct_balc"], "1000.00");
    assert_eq!(s.state_hash(), hash);
    s.stop().await;
}

/// An admin write at `time` through the engine (the bulk of the history is loaded this way,
/// as `inf_time` loads it over HTTP).
fn admin_write(n: &mut u64, time: i64, body: gongji_core::Body) -> gongji_server::WriteRequest {
    *n += 1;
    gongji_server::WriteRequest {
        msgid: gongji_core::Msgid::from(&format!("wt-{n}")).unwrap(),
        inf_time: Some(time),
        actor: gongji_core::Actor::Admin,
        body,
    }
}

/// The wallet world of `scenario::wallet_world` (persons W0000..W0049) when `n` is 0, then
/// `days` days of `scenario::wallet_day`, as admin writes. Returns the time of the day after
/// the last.
fn wallet_days(engine: &gongji_server::Engine, n: &mut u64, mut time: i64, days: u32) -> i64 {
    use gongji_server::scenario::{wallet_day, wallet_world};
    let mut requests = Vec::new();
    if *n == 0 {
        for body in wallet_world('W', "19900101") {
            requests.push(admin_write(n, time, body));
        }
    }
    let mut next_id = engine.read(|s| s.transfer_count()) as u64 + 1;
    for _ in 0..days {
        for body in wallet_day('W', next_id) {
            requests.push(admin_write(n, time, body));
        }
        next_id += 120;
        time += 86_400;
        if requests.len() > 5_000 {
            submit_all(engine, std::mem::take(&mut requests));
        }
    }
    submit_all(engine, requests);
    time
}

fn submit_all(engine: &gongji_server::Engine, requests: Vec<gongji_server::WriteRequest>) {
    let r = engine.submit_wait(requests).unwrap();
    assert!(
        r.iter().all(|r| r.is_ok()),
        "{:?}",
        r.iter().find(|r| r.is_err())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_transfers_are_read_and_answered_from_history_files() {
    // Proves: a wallet transfer whose chunk of 64 K transfers is in a history file (the server
    // restarted since, so nothing of it is on the heap) reads over HTTP exactly as it did
    // when it was new (`GET /v1/wallet/transfers/{id}`: accepted, declined, returned), and
    // an answer to it is refused `409 NOT_PENDING` as it would have been, also after
    // another restart.
    let s = Server::start().await;
    let engine = s.engine.clone();
    let start = gongji_core::time::parse_cst("2031-06-01 10:00:00").unwrap();
    // Two days: the first day's transfers are closed by the second day's first write.
    let (n, time) = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        let time = wallet_days(&engine, &mut n, start, 2);
        (n, time)
    })
    .await
    .unwrap();
    let paths: Vec<String> = [1, 2, 3, 120]
        .iter()
        .map(|id| format!("/v1/wallet/transfers/{id}"))
        .collect();
    let mut early = Vec::new();
    for path in &paths {
        early.push(s.get(&s.admin, path).await.ok());
    }
    let statuses: Vec<_> = early.iter().map(|t| t["status"].clone()).collect();
    assert_eq!(
        statuses,
        [
            json!("accepted"),
            json!("declined"),
            json!("returned"),
            json!("returned")
        ]
    );

    // More than a chunk of transfers, all closed by a later write.
    let engine = s.engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut n = n;
        let time = wallet_days(&engine, &mut n, time, 546);
        let credit = gongji_core::Body::Credit {
            period: gongji_core::time::parse_period("2034-01").unwrap(),
            items: vec![gongji_core::CreditItem {
                psn_no: gongji_server::scenario::wallet_psn('W', 0),
                amount: gongji_core::Fen(1),
            }],
        };
        let r = engine
            .submit_wait(vec![admin_write(&mut n, time, credit)])
            .unwrap();
        assert!(r[0].is_ok(), "{r:?}");
        assert!(engine.read(|s| s.transfer_count()) > 65_536);
    })
    .await
    .unwrap();

    // A restart: the shutdown snapshot leaves the final chunk to its file.
    let dir = s.stop().await;
    let s = Server::open(dir, |_| {}).await;
    let cold = s
        .engine
        .read(|st| st.cold_chunk_count(gongji_core::Column::Transfers));
    assert!(cold >= 1, "the first chunk of transfers is in a file");
    for (path, early) in paths.iter().zip(&early) {
        assert_eq!(&s.get(&s.admin, path).await.ok(), early, "{path}");
    }
    s.post(
        &s.admin,
        "/v1/wallet/transfers/3/accept",
        json!({ "msgid": m() }),
    )
    .await
    .err(409, "NOT_PENDING");
    let hash = s.state_hash();
    let dir = s.stop().await;
    let s = Server::open(dir, |_| {}).await;
    assert_eq!(s.get(&s.admin, &paths[0]).await.ok(), early[0]);
    assert_eq!(s.state_hash(), hash);
    s.stop().await;
}
