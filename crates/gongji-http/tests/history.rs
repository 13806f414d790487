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
