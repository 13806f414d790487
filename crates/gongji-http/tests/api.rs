//! HTTP integration tests: a real server on 127.0.0.1:0 in the test process, driven with
//! reqwest exactly as API.md describes the contract.

mod common;

use common::{certno, m, unique, Server, World, H1, H2, PERIOD, T0};
use serde_json::{json, Value};

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

// ---------------------------------------------------------------------------------------------
// Success paths
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tokens_create_replay_and_revoke() {
    // Proves: POST /v1/tokens shows the token once (replay: token_id alone), the new token works,
    // and POST /v1/tokens/{id}/revoke makes it 401 from then on.
    let w = World::new().await;
    let msgid = m();
    let body = json!({"msgid": msgid, "role": "person", "psn_no": "PE"});
    let first = w.s.post(&w.admin, "/v1/tokens", body.clone()).await.ok();
    let token_id = s(&first["token_id"]).to_owned();
    let token = s(&first["token"]).to_owned();
    assert!(token.len() >= 32);
    assert_eq!(first.as_object().unwrap().len(), 2);
    let replay = w.s.post(&w.admin, "/v1/tokens", body).await.ok();
    assert_eq!(
        replay,
        json!({"token_id": token_id}),
        "a replay shows token_id alone"
    );
    w.s.get(&token, "/v1/persons/PE").await.ok();

    for (role, scope) in [
        ("admin", None),
        ("institution", Some(("fixmedins_code", H1))),
    ] {
        let t = w.s.token(role, scope).await;
        w.s.get(&t, "/v1/persons/PA").await.ok();
    }

    let path = format!("/v1/tokens/{token_id}/revoke");
    let out = w.s.post(&w.admin, &path, json!({"msgid": m()})).await.ok();
    assert_eq!(out, json!({"token_id": token_id, "status": "revoked"}));
    w.s.get(&token, "/v1/persons/PE")
        .await
        .err(401, "UNAUTHORIZED");
    w.s.post(&token, "/v1/persons/PE/wallet", json!({"msgid": m()}))
        .await
        .err(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn persons_institutions_status_wallet_and_credits() {
    // Proves: enrol returns the person as GET shows it (certno and name masked, 390 has
    // acct_balc 0.00), status and wallet endpoints return the person, institutions return the
    // institution, and a crediting batch returns its count and sum and moves the balances.
    let w = World::new().await;
    let cert = certno(990);
    let out =
        w.s.admin_ok(
            "/v1/persons",
            json!({"msgid": m(), "psn_no": "NEW1", "certno": cert, "psn_name": "李小龙",
                   "insutype": "390", "admdvs": "440305"}),
        )
        .await;
    let masked = format!("{}**********{}", &cert[..4], &cert[14..]);
    assert_eq!(
        out,
        json!({"psn_no": "NEW1", "certno": masked, "psn_name": "李**", "insutype": "390",
               "admdvs": "440305", "status": "active", "acct_balc": "0.00",
               "wallet_status": "none", "wallet_balc": "0.00", "bindings_given": [],
               "bindings_received": []})
    );
    assert_eq!(w.s.person("NEW1").await, out);

    let out =
        w.s.admin_ok(
            "/v1/persons/NEW1/status",
            json!({"msgid": m(), "status": "suspended"}),
        )
        .await;
    assert_eq!(out["status"], "suspended");
    let out =
        w.s.admin_ok(
            "/v1/persons/NEW1/status",
            json!({"msgid": m(), "status": "active"}),
        )
        .await;
    assert_eq!(out["status"], "active");

    let out =
        w.s.post(&w.pe, "/v1/persons/PE/wallet", json!({"msgid": m()}))
            .await
            .ok();
    assert_eq!(
        (out["psn_no"].clone(), out["wallet_status"].clone()),
        (json!("PE"), json!("open"))
    );
    // Opening an open wallet is a success that changes nothing.
    let again =
        w.s.post(&w.pe, "/v1/persons/PE/wallet", json!({"msgid": m()}))
            .await
            .ok();
    assert_eq!(again["wallet_status"], "open");
    assert_eq!(w.s.person("PE").await["wallet_balc"], "0.00");

    let out =
        w.s.admin_ok(
            "/v1/institutions",
            json!({"msgid": m(), "fixmedins_code": "P44010600009", "fixmedins_name": "大药房",
                   "fixmedins_type": "2", "admdvs": "440106"}),
        )
        .await;
    assert_eq!(
        out,
        json!({"fixmedins_code": "P44010600009", "fixmedins_name": "大药房",
               "fixmedins_type": "2", "admdvs": "440106"})
    );

    let out = w
        .s
        .admin_ok(
            "/v1/credits",
            json!({"msgid": m(), "period": "2030-06",
                   "items": [{"psn_no": "PA", "amount": 12.3}, {"psn_no": "PB", "amount": "0.70"}]}),
        )
        .await;
    assert_eq!(
        out,
        json!({"credited_count": 2, "credited_sumamt": "13.00"})
    );
    assert_eq!(w.s.person("PA").await["acct_balc"], "1012.30");
    assert_eq!(w.s.person("PB").await["acct_balc"], "10.70");
    // A period is a label, independent of the clock: a long-past month is fine.
    w.s.admin_ok(
        "/v1/credits",
        json!({"msgid": m(), "period": "1999-01", "items": [{"psn_no": "PA", "amount": 1}]}),
    )
    .await;
}

#[tokio::test]
async fn a_binding_is_read_by_id() {
    // Proves: GET /v1/bindings/{id} answers the binding as the person's view shows it, by
    // admin, its giver or its receiver (others and institutions 403, no token 401); a revoked
    // one is still read (status revoked, priority 0); unknown and malformed ids are 404
    // BINDING_NOT_FOUND; reading changes nothing.
    let w = World::new().await;
    let path = format!("/v1/bindings/{}", w.ab);
    let listed = w.s.person("PB").await["bindings_received"][0].clone();
    let hash = w.s.state_hash();
    assert_eq!(w.s.get(&w.admin, &path).await.ok(), listed);
    assert_eq!(w.s.get(&w.pa, &path).await.ok(), listed);
    assert_eq!(w.s.get(&w.pb, &path).await.ok(), listed);
    w.s.get(&w.pc, &path).await.err(403, "FORBIDDEN");
    w.s.get(&w.h1, &path).await.err(403, "FORBIDDEN");
    assert_eq!(w.s.get_opt(None, &path).await.status, 401);
    assert_eq!(w.s.state_hash(), hash);
    for bad in [
        "/v1/bindings/0",
        "/v1/bindings/999",
        "/v1/bindings/-1",
        "/v1/bindings/1.0",
        "/v1/bindings/18446744073709551616",
        "/v1/bindings/%FF",
        // An exchange-form id on an engine without [federation].
        "/v1/bindings/e11-00000000000000000000000000000000",
    ] {
        w.s.get(&w.admin, bad).await.err(404, "BINDING_NOT_FOUND");
    }
    let revoke = format!("/v1/bindings/{}/revoke", w.ab);
    let revoked = w.s.post(&w.pb, &revoke, json!({"msgid": m()})).await.ok();
    let read = w.s.get(&w.pa, &path).await.ok();
    assert_eq!(read["status"], "revoked");
    assert_eq!(read["priority"], 0);
    assert_eq!(read["binding_id"], revoked["binding_id"]);
}

#[tokio::test]
async fn bindings_scope_priority_and_revoke() {
    // Proves: a binding returns its fields (scope in_province / wallet_only), priorities number
    // a receiver's givers 1, 2, … and are renumbered after a revoke, a person may bind as giver,
    // and either side may revoke (the binding comes back with status revoked).
    let w = World::new().await;
    let ab = w.s.get(&w.admin, "/v1/persons/PB").await.ok()["bindings_received"][0].clone();
    assert_eq!(
        ab,
        json!({"binding_id": w.ab, "giver_psn_no": "PA", "receiver_psn_no": "PB",
               "relation": "spouse", "mulaid_scope": "in_province", "priority": 1,
               "status": "active"})
    );
    let ad = w.s.person("PD").await["bindings_received"][0].clone();
    assert_eq!(ad["mulaid_scope"], "wallet_only");

    // PE (a person token) binds as giver to PB: PB's second giver.
    let eb =
        w.s.post(
            &w.pe,
            "/v1/bindings",
            json!({"msgid": m(), "giver_psn_no": "PE", "receiver_psn_no": "PB",
                   "relation": "sibling"}),
        )
        .await
        .ok();
    assert_eq!(eb["priority"], 2);
    assert_eq!(eb["status"], "active");
    let db = w.s.bind("PD", "PB", "parent").await;
    assert_eq!(
        (db["priority"].clone(), db["mulaid_scope"].clone()),
        (json!(3), json!("wallet_only"))
    );

    // The receiver revokes the first binding; the rest are renumbered in the order made.
    let path = format!("/v1/bindings/{}/revoke", w.ab);
    let out = w.s.post(&w.pb, &path, json!({"msgid": m()})).await.ok();
    assert_eq!(out["status"], "revoked");
    assert_eq!(out["binding_id"], json!(w.ab));
    let received = w.s.person("PB").await["bindings_received"].clone();
    let prio: Vec<(String, i64)> = received
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                s(&b["giver_psn_no"]).to_owned(),
                b["priority"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(prio, vec![("PE".to_owned(), 1), ("PD".to_owned(), 2)]);
    // The giver revokes too.
    let path = format!("/v1/bindings/{}/revoke", s(&eb["binding_id"]));
    assert_eq!(
        w.s.post(&w.pe, &path, json!({"msgid": m()})).await.ok()["status"],
        "revoked"
    );
}

#[tokio::test]
async fn settlement_split_get_cancel_and_reversals() {
    // Proves: a settlement splits psn_part_amt in DOMAIN.md's order (own account, wallet,
    // givers, cash) and the parts add up; GET shows it with status; cancel returns every source
    // and a reversal cancels an applied settlement or blocks an unseen msgid.
    let w = World::new().await;
    let msgid = format!("{H1}20300520090000{:04}", unique() % 10_000);
    let out =
        w.s.post(
            &w.h1,
            "/v1/settlements",
            json!({"msgid": msgid, "fixmedins_code": H1, "psn_no": "PB",
                   "medfee_sumamt": "300.00", "fund_pay_sumamt": 200, "acct_used_flag": "1"}),
        )
        .await
        .ok();
    let setl_id = s(&out["setl_id"]).to_owned();
    assert_eq!(out["setl_time"], T0);
    let mut expected = json!({"setl_id": setl_id, "psn_no": "PB", "fixmedins_code": H1,
        "setl_time": T0, "medfee_sumamt": "300.00", "fund_pay_sumamt": "200.00",
        "psn_part_amt": "100.00", "acct_pay": "10.00", "wallet_pay": "0.00",
        "acct_mulaid_pay": "90.00", "psn_cash_pay": "0.00",
        "mulaid_details": [{"giver_psn_no": "PA", "amount": "90.00"}],
        "acct_balc": "0.00", "wallet_balc": "0.00"});
    assert_eq!(out, expected);
    assert_eq!(w.s.person("PA").await["acct_balc"], "910.00");

    expected["status"] = json!("settled");
    let path = format!("/v1/settlements/{setl_id}");
    assert_eq!(w.s.get(&w.h1, &path).await.ok(), expected);
    assert_eq!(w.s.get(&w.pb, &path).await.ok(), expected);

    // More than everyone has: the rest is cash. acct_used_flag "0": all cash.
    let big = w.s.settle(H1, "PB", "2000.00", "0").await;
    assert_eq!(
        (
            &big["acct_pay"],
            &big["acct_mulaid_pay"],
            &big["psn_cash_pay"]
        ),
        (&json!("0.00"), &json!("910.00"), &json!("1090.00"))
    );
    let cash =
        w.s.admin_ok(
            "/v1/settlements",
            json!({"msgid": m(), "fixmedins_code": H2, "psn_no": "PE", "medfee_sumamt": 50,
                   "fund_pay_sumamt": 20, "acct_used_flag": "0"}),
        )
        .await;
    assert_eq!(
        (&cash["acct_pay"], &cash["psn_cash_pay"]),
        (&json!("0.00"), &json!("30.00"))
    );
    assert_eq!(cash["mulaid_details"], json!([]));
    // medfee 0.00 is allowed.
    let zero = w.s.settle(H1, "PE", "0", "0.00").await;
    assert_eq!(zero["psn_part_amt"], "0.00");

    // Cancel the big one: every source gets back what it gave.
    let path = format!("/v1/settlements/{}/cancel", s(&big["setl_id"]));
    let out = w.s.post(&w.h1, &path, json!({"msgid": m()})).await.ok();
    assert_eq!(
        out,
        json!({"setl_id": big["setl_id"], "status": "cancelled", "acct_pay": "0.00",
               "wallet_pay": "0.00", "acct_mulaid_pay": "910.00", "psn_cash_pay": "1090.00"})
    );
    assert_eq!(w.s.person("PA").await["acct_balc"], "910.00");
    let got =
        w.s.get(&w.admin, &format!("/v1/settlements/{}", s(&big["setl_id"])))
            .await
            .ok();
    assert_eq!(got["status"], "cancelled");

    // Reversal of an applied settlement: cancelled (the institution names its own msgid).
    let out =
        w.s.post(
            &w.h1,
            "/v1/reversals",
            json!({"msgid": m(), "omsgid": msgid}),
        )
        .await
        .ok();
    assert_eq!(out, json!({"omsgid": msgid, "result": "cancelled"}));
    assert_eq!(w.s.person("PA").await["acct_balc"], "1000.00");
    assert_eq!(w.s.person("PB").await["acct_balc"], "10.00");
    // Again with a new msgid: already cancelled, still "cancelled".
    let out =
        w.s.post(
            &w.h1,
            "/v1/reversals",
            json!({"msgid": m(), "omsgid": msgid}),
        )
        .await
        .ok();
    assert_eq!(out["result"], "cancelled");

    // Reversal of a msgid never seen: blocked; the late settlement is 409 REVERSED.
    let late = format!("{H1}20300520090000late");
    let out =
        w.s.post(
            &w.h1,
            "/v1/reversals",
            json!({"msgid": m(), "omsgid": late}),
        )
        .await
        .ok();
    assert_eq!(out, json!({"omsgid": late, "result": "blocked"}));
    w.s.post(
        &w.h1,
        "/v1/settlements",
        json!({"msgid": late, "fixmedins_code": H1, "psn_no": "PB", "medfee_sumamt": "1",
               "fund_pay_sumamt": "0"}),
    )
    .await
    .err(409, "REVERSED");
}

#[tokio::test]
async fn wallet_transfers_accept_decline_and_get() {
    // Proves: a wallet transfer holds the money (sender's balances after the hold), is
    // in_province or cross_province by the two admdvs, expires at 06:00 the next day, and
    // accept / decline by the receiver move it on; GET shows the current status.
    let w = World::new().await;
    let out =
        w.s.post(
            &w.pa,
            "/v1/wallet/transfers",
            json!({"msgid": m(), "from_psn_no": "PA", "to_psn_no": "PD", "amount": 100,
                   "source": "acct"}),
        )
        .await
        .ok();
    let t1 = s(&out["transfer_id"]).to_owned();
    assert_eq!(
        out,
        json!({"transfer_id": t1, "from_psn_no": "PA", "to_psn_no": "PD", "amount": "100.00",
               "source": "acct", "scope": "cross_province", "status": "pending",
               "expires_at": "2030-05-21 06:00:00", "acct_balc": "900.00", "wallet_balc": "0.00"})
    );
    let accepted =
        w.s.post(
            &w.pd,
            &format!("/v1/wallet/transfers/{t1}/accept"),
            json!({"msgid": m()}),
        )
        .await
        .ok();
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["transfer_id"], json!(t1));
    assert_eq!(w.s.person("PD").await["wallet_balc"], "100.00");
    let got =
        w.s.get(&w.pa, &format!("/v1/wallet/transfers/{t1}"))
            .await
            .ok();
    assert_eq!(got["status"], "accepted");
    assert_eq!(got["scope"], "cross_province");

    // Declined: the money goes back to the sender's account.
    let t2 =
        w.s.post(
            &w.pa,
            "/v1/wallet/transfers",
            json!({"msgid": m(), "from_psn_no": "PA", "to_psn_no": "PD", "amount": "50.5"}),
        )
        .await
        .ok();
    assert_eq!(t2["source"], "acct", "source defaults to acct");
    assert_eq!(w.s.person("PA").await["acct_balc"], "849.50");
    let path = format!("/v1/wallet/transfers/{}/decline", s(&t2["transfer_id"]));
    assert_eq!(
        w.s.post(&w.pd, &path, json!({"msgid": m()})).await.ok()["status"],
        "declined"
    );
    assert_eq!(w.s.person("PA").await["acct_balc"], "900.00");
    let got =
        w.s.get(
            &w.pd,
            &format!("/v1/wallet/transfers/{}", s(&t2["transfer_id"])),
        )
        .await;
    assert_eq!(got.ok()["status"], "declined");

    // From a wallet, in province: PD's wallet money to PA (PA opens a wallet first).
    w.s.post(&w.pa, "/v1/persons/PA/wallet", json!({"msgid": m()}))
        .await
        .ok();
    let t3 =
        w.s.post(
            &w.pd,
            "/v1/wallet/transfers",
            json!({"msgid": m(), "from_psn_no": "PD", "to_psn_no": "PA", "amount": "30",
                   "source": "wallet"}),
        )
        .await
        .ok();
    assert_eq!(
        (&t3["acct_balc"], &t3["wallet_balc"]),
        (&json!("500.00"), &json!("70.00"))
    );
    let path = format!("/v1/wallet/transfers/{}/accept", s(&t3["transfer_id"]));
    w.s.post(&w.admin, &path, json!({"msgid": m()})).await.ok();
    assert_eq!(w.s.person("PA").await["wallet_balc"], "30.00");

    // The person's own wallet pays after its account: PD has 500.00 + 70.00; a wallet_only
    // giver is never drawn at the till.
    let out = w.s.settle(H1, "PD", "600", "0").await;
    assert_eq!(
        [
            &out["acct_pay"],
            &out["wallet_pay"],
            &out["acct_mulaid_pay"],
            &out["psn_cash_pay"]
        ],
        [
            &json!("500.00"),
            &json!("70.00"),
            &json!("0.00"),
            &json!("30.00")
        ]
    );
    assert_eq!(
        (&out["acct_balc"], &out["wallet_balc"]),
        (&json!("0.00"), &json!("0.00"))
    );
}

#[tokio::test]
async fn contributions_pay_a_resident_from_a_givers_account() {
    // Proves: POST /v1/contributions pays a 390 person's year from the payer's account and
    // answers the payer's balance after.
    let w = World::new().await;
    let out =
        w.s.post(
            &w.pa,
            "/v1/contributions",
            json!({"msgid": m(), "payer_psn_no": "PA", "psn_no": "PC", "year": 2031,
                   "amount": "380.00"}),
        )
        .await
        .ok();
    assert_eq!(
        out,
        json!({"contribution_id": out["contribution_id"], "payer_psn_no": "PA", "psn_no": "PC",
               "year": 2031, "amount": "380.00", "acct_balc": "620.00"})
    );
    assert!(out["contribution_id"].is_string());
    assert_eq!(w.s.person("PA").await["acct_balc"], "620.00");
}

#[tokio::test]
async fn entries_paging_with_limit_after_and_next() {
    // Proves: GET /v1/persons/{p}/entries lists every movement oldest first with signed amounts,
    // counterparty and ref, and pages with limit / after / next until next is null.
    let w = World::new().await;
    let setl = w.s.settle(H1, "PB", "300", "200").await;
    w.s.post(
        &w.pa,
        "/v1/contributions",
        json!({"msgid": m(), "payer_psn_no": "PA", "psn_no": "PC", "year": 2031, "amount": 5}),
    )
    .await
    .ok();
    let t =
        w.s.post(
            &w.pa,
            "/v1/wallet/transfers",
            json!({"msgid": m(), "from_psn_no": "PA", "to_psn_no": "PD", "amount": 1}),
        )
        .await
        .ok();

    let all = w.s.get(&w.pa, "/v1/persons/PA/entries").await.ok();
    assert_eq!(all["next"], Value::Null);
    let entries = all["entries"].as_array().unwrap().clone();
    let kinds: Vec<&str> = entries.iter().map(|e| s(&e["kind"])).collect();
    assert_eq!(
        kinds,
        ["credit", "mulaid_given", "contribution", "wallet_hold"]
    );
    assert_eq!(
        entries[0],
        json!({"entry_id": entries[0]["entry_id"], "time": T0, "kind": "credit",
               "amount": "1000.00", "ledger": "acct", "balc": "1000.00", "counterparty": null,
               "ref": PERIOD})
    );
    assert_eq!(
        (
            &entries[1]["amount"],
            &entries[1]["counterparty"],
            &entries[1]["ref"]
        ),
        (&json!("-90.00"), &json!("PB"), &setl["setl_id"])
    );
    assert_eq!(entries[1]["balc"], "910.00");
    assert_eq!(entries[3]["ref"], t["transfer_id"]);
    assert!(entries.iter().all(|e| e["entry_id"].is_string()));

    // Page by 1 and by 3: the same entries, next names the last entry of a full page.
    for limit in [1, 3] {
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                None => format!("/v1/persons/PA/entries?limit={limit}"),
                Some(a) => format!("/v1/persons/PA/entries?limit={limit}&after={a}"),
            };
            let page = w.s.get(&w.admin, &path).await.ok();
            let items = page["entries"].as_array().unwrap();
            assert!(items.len() <= limit);
            paged.extend(items.iter().cloned());
            match &page["next"] {
                Value::Null => break,
                next => {
                    assert_eq!(next, &items.last().unwrap()["entry_id"]);
                    after = Some(s(next).to_owned());
                }
            }
        }
        assert_eq!(paged, entries, "limit {limit}");
    }
    let bad = [
        "limit=0",
        "limit=1001",
        "limit=x",
        "after=x",
        "after=999999",
    ];
    for q in bad {
        w.s.get(&w.admin, &format!("/v1/persons/PA/entries?{q}"))
            .await
            .err(400, "BAD_REQUEST");
    }
    w.s.get(&w.admin, "/v1/persons/PA/entries?limit=1000")
        .await
        .ok();
    w.s.get(&w.admin, "/v1/persons/NOPE/entries")
        .await
        .err(404, "PERSON_NOT_FOUND");
}

#[tokio::test]
async fn stats_with_and_without_prov() {
    // Proves: GET /v1/stats counts account draws (same_pool / cross_pool) and accepted wallet
    // transfers (in_province / cross_province), filters by prov, and is net of cancellations.
    let w = World::new().await;
    let setl = w.s.settle(H1, "PB", "300", "200").await; // 90.00 from PA, same pool (4401)
    w.s.post(
        &w.pa,
        "/v1/contributions",
        json!({"msgid": m(), "payer_psn_no": "PA", "psn_no": "PC", "year": 2031, "amount": 380}),
    )
    .await
    .ok(); // 380.00 to a 4403 person: cross pool
    let t =
        w.s.post(
            &w.pa,
            "/v1/wallet/transfers",
            json!({"msgid": m(), "from_psn_no": "PA", "to_psn_no": "PD", "amount": 100}),
        )
        .await
        .ok();
    let path = format!("/v1/wallet/transfers/{}/accept", s(&t["transfer_id"]));
    w.s.post(&w.pd, &path, json!({"msgid": m()})).await.ok();

    let all =
        w.s.get(&w.admin, "/v1/stats?from=2030-01&to=2030-12")
            .await
            .ok();
    assert_eq!(
        all,
        json!({"from": "2030-01", "to": "2030-12", "prov": null,
               "total": {"count": 3, "amount": "570.00"},
               "account_draw": {"count": 2, "amount": "470.00",
                                "same_pool": {"count": 1, "amount": "90.00"},
                                "cross_pool": {"count": 1, "amount": "380.00"}},
               "wallet_transfer": {"count": 1, "amount": "100.00",
                                   "in_province": {"count": 0, "amount": "0.00"},
                                   "cross_province": {"count": 1, "amount": "100.00"}}})
    );
    let mut prov44 = all.clone();
    prov44["prov"] = json!("44");
    assert_eq!(
        w.s.get(&w.admin, "/v1/stats?from=2030-01&to=2030-12&prov=44")
            .await
            .ok(),
        prov44
    );
    let p11 =
        w.s.get(&w.admin, "/v1/stats?from=2030-05&to=2030-05&prov=11")
            .await
            .ok();
    assert_eq!(p11["total"], json!({"count": 0, "amount": "0.00"}));
    let before =
        w.s.get(&w.admin, "/v1/stats?from=2030-06&to=2031-12")
            .await
            .ok();
    assert_eq!(before["total"]["count"], 0);

    let path = format!("/v1/settlements/{}/cancel", s(&setl["setl_id"]));
    w.s.post(&w.admin, &path, json!({"msgid": m()})).await.ok();
    let after =
        w.s.get(&w.admin, "/v1/stats?from=2030-05&to=2030-05")
            .await
            .ok();
    assert_eq!(
        after["account_draw"]["same_pool"],
        json!({"count": 0, "amount": "0.00"})
    );
    assert_eq!(after["total"], json!({"count": 2, "amount": "480.00"}));

    for q in [
        "from=2030-13&to=2030-12",
        "from=2030-06&to=2030-05",
        "from=2030&to=2030-05",
    ] {
        w.s.get(&w.admin, &format!("/v1/stats?{q}"))
            .await
            .err(400, "INVALID_PERIOD");
    }
    for q in [
        "to=2030-05",
        "from=2030-01&to=2030-05&prov=99",
        "from=2030-01&to=2030-05&prov=x",
    ] {
        w.s.get(&w.admin, &format!("/v1/stats?{q}"))
            .await
            .err(400, "BAD_REQUEST");
    }
}

#[tokio::test]
async fn reconciliation_get_and_post_match_and_mismatch() {
    // Proves: GET /v1/reconciliation totals an institution's day net of cancellations, and
    // POST compares the institution's totals field by field (stmt_rslt 0 / 1 with diffs)
    // without journaling anything.
    let w = World::new().await;
    w.s.settle(H1, "PB", "300.00", "200.00").await;
    w.s.settle(H1, "PE", "20.00", "5.00").await;
    let cancelled = w.s.settle(H1, "PE", "7.00", "0.00").await;
    w.s.settle(H2, "PE", "1.00", "0.00").await;
    let path = format!("/v1/settlements/{}/cancel", s(&cancelled["setl_id"]));
    w.s.post(&w.h1, &path, json!({"msgid": m()})).await.ok();

    let q = format!("/v1/reconciliation?fixmedins_code={H1}&date=2030-05-20");
    let totals = w.s.get(&w.h1, &q).await.ok();
    let expected = json!({"fixmedins_code": H1, "date": "2030-05-20", "setl_count": 2,
        "medfee_sumamt": "320.00", "fund_pay_sumamt": "205.00", "acct_pay": "25.00",
        "wallet_pay": "0.00", "acct_mulaid_pay": "90.00", "psn_cash_pay": "0.00"});
    assert_eq!(totals, expected);
    let other_day = format!("/v1/reconciliation?fixmedins_code={H1}&date=2030-05-21");
    assert_eq!(w.s.get(&w.admin, &other_day).await.ok()["setl_count"], 0);

    let hash = w.s.state_hash();
    let ops =
        w.s.engine
            .counters()
            .journal_head_op
            .load(std::sync::atomic::Ordering::Acquire);
    let mut mine = expected.clone();
    mine["acct_pay"] = json!(25); // a number is the same amount
    let out =
        w.s.post(&w.h1, "/v1/reconciliation", mine.clone())
            .await
            .ok();
    let mut matched = expected.clone();
    matched["stmt_rslt"] = json!("0");
    matched["diffs"] = json!([]);
    assert_eq!(out, matched);

    mine["acct_pay"] = json!("25.01");
    mine["setl_count"] = json!(3);
    let out = w.s.post(&w.admin, "/v1/reconciliation", mine).await.ok();
    assert_eq!(out["stmt_rslt"], "1");
    assert_eq!(out["diffs"], json!(["setl_count", "acct_pay"]));
    assert_eq!(
        out["acct_pay"], "25.00",
        "the platform's totals are answered"
    );
    assert_eq!(w.s.state_hash(), hash, "a reconciliation is a read");
    let ops_after =
        w.s.engine
            .counters()
            .journal_head_op
            .load(std::sync::atomic::Ordering::Acquire);
    assert_eq!(ops_after, ops, "nothing journaled");
    w.s.get(
        &w.admin,
        &format!("/v1/reconciliation?fixmedins_code={H1}&date=2030-02-30"),
    )
    .await
    .err(400, "BAD_REQUEST");
}

#[tokio::test]
async fn audit_batch_health_metrics_openapi() {
    // Proves: audit verify recomputes the chain, a batch answers one envelope plus status per
    // op (each op stands alone), and /healthz, /metrics, /v1/openapi.json need no token.
    let w = World::new().await;
    let out =
        w.s.admin_ok(
            "/v1/batch",
            json!({"ops": [
                {"path": "/v1/settlements", "body": {"msgid": m(), "fixmedins_code": H1,
                    "psn_no": "PB", "medfee_sumamt": "300", "fund_pay_sumamt": "200"}},
                {"path": "/v1/settlements", "body": {"msgid": m(), "fixmedins_code": H1,
                    "psn_no": "PB", "medfee_sumamt": "1.001", "fund_pay_sumamt": "0"}},
                {"path": "/v1/settlements", "body": {"msgid": m(), "fixmedins_code": H1,
                    "psn_no": "NOPE", "medfee_sumamt": "1", "fund_pay_sumamt": "0"}},
                {"path": "/v1/nothing", "body": {"msgid": m()}},
                {"path": "/v1/persons/PE/wallet", "body": {"msgid": m()}},
            ]}),
        )
        .await;
    let results = out["results"].as_array().unwrap();
    let statuses: Vec<i64> = results
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 400, 404, 404, 200]);
    assert_eq!(results[0]["infcode"], 0);
    assert_eq!(results[0]["output"]["acct_mulaid_pay"], "90.00");
    let codes: Vec<&Value> = results.iter().map(|r| &r["err_code"]).collect();
    assert_eq!(
        codes,
        [
            &Value::Null,
            &json!("INVALID_AMOUNT"),
            &json!("PERSON_NOT_FOUND"),
            &json!("NOT_FOUND"),
            &Value::Null
        ]
    );
    assert_eq!(results[1]["infcode"], -1);
    assert!(results[1]["err_msg"].is_string());
    assert_eq!(w.s.person("PE").await["wallet_status"], "open");

    let audit = w.s.get(&w.admin, "/v1/audit/verify").await.ok();
    assert_eq!(audit["ok"], true);
    let op_count = w.s.engine.read(|st| st.op_count());
    assert_eq!(audit["op_count"], json!(op_count));
    let head = hex_lower(&w.s.engine.head_hash());
    assert_eq!(audit["head_hash"], json!(head));

    let health = w.s.get_opt(None, "/healthz").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));
    let setl_id = s(&results[0]["output"]["setl_id"]).to_owned();
    let cancel = format!("/v1/settlements/{setl_id}/cancel");
    w.s.post(&w.h1, &cancel, json!({"msgid": m()})).await.ok();
    let metrics = w.s.get_opt(None, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(text.contains("gongji_"), "{text}");
    assert!(text.contains("gongji_http_requests_total"));
    // What each part of the state holds, one gauge a part; the settlement made is counted.
    let settlements = text
        .lines()
        .find(|l| l.starts_with("gongji_state_bytes{part=\"settlements\"}"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_ne!(settlements.rsplit(' ').next(), Some("0"), "{settlements}");
    assert!(
        text.contains("gongji_state_bytes{part=\"persons\"}"),
        "{text}"
    );
    // Labels are route templates: no psn_no or setl_id in them.
    assert!(text.contains("/v1/settlements/{setl_id}/cancel"), "{text}");
    assert!(!text.contains(&cancel), "{text}");
    assert!(!text.contains("/v1/persons/PE/wallet"), "{text}");
    let openapi = w.s.get_opt(None, "/v1/openapi.json").await;
    assert_eq!(openapi.status, 200);
    assert_eq!(openapi.json["openapi"], "3.1.0");
}

/// A resident ID with its check character changed.
fn bad_check(certno: &str) -> String {
    let (body, last) = certno.split_at(17);
    format!("{body}{}", if last == "0" { '1' } else { '0' })
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Every error code
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn errors_400_401_404() {
    // Proves: the 400 codes (BAD_REQUEST, INVALID_AMOUNT, INVALID_CERTNO, INVALID_ADMDVS,
    // INVALID_INSUTYPE, INVALID_PERIOD, INVALID_TIME), 401 UNAUTHORIZED and every 404 code come
    // back with their HTTP status and the failure envelope.
    let w = World::new().await;
    let enrol = |field: &str, value: Value| {
        let mut body = json!({"msgid": m(), "psn_no": "NEW1", "certno": certno(991),
            "psn_name": "王五", "insutype": "310", "admdvs": "440106"});
        body[field] = value;
        body
    };
    let cases = [
        (enrol("psn_no", json!(17)), "BAD_REQUEST"),
        (
            enrol("certno", json!(bad_check(&certno(991)))),
            "INVALID_CERTNO",
        ),
        (enrol("admdvs", json!("990000")), "INVALID_ADMDVS"),
        (enrol("admdvs", json!("44010")), "INVALID_ADMDVS"),
        (enrol("insutype", json!("320")), "INVALID_INSUTYPE"),
    ];
    for (body, code) in cases {
        w.s.post(&w.admin, "/v1/persons", body).await.err(400, code);
    }
    let mut missing = enrol("psn_no", json!("NEW1"));
    missing.as_object_mut().unwrap().remove("psn_name");
    w.s.post(&w.admin, "/v1/persons", missing)
        .await
        .err(400, "BAD_REQUEST");
    w.s.post(&w.admin, "/v1/persons", enrol("extra", json!(1)))
        .await
        .err(400, "BAD_REQUEST");
    w.s.post(
        &w.admin,
        "/v1/credits",
        json!({"msgid": m(), "period": "2030-13", "items": [{"psn_no": "PA", "amount": 1}]}),
    )
    .await
    .err(400, "INVALID_PERIOD");
    let r =
        w.s.post(
            &w.admin,
            "/v1/credits",
            json!({"msgid": m(), "period": "2030-06",
                   "items": [{"psn_no": "PA", "amount": 1}, {"psn_no": "PB", "amount": "0.001"}]}),
        )
        .await;
    r.err(400, "INVALID_AMOUNT");
    assert!(
        s(&r.json["err_msg"]).contains('1'),
        "names the item: {}",
        r.text()
    );
    w.s.post(
        &w.admin,
        "/v1/institutions",
        json!({"msgid": m(), "fixmedins_code": "X1", "fixmedins_name": "x", "fixmedins_type": "3",
               "admdvs": "440106"}),
    )
    .await
    .err(400, "BAD_REQUEST");
    w.s.post(
        &w.admin,
        "/v1/institutions",
        json!({"msgid": m(), "fixmedins_code": "X1", "fixmedins_name": "x", "fixmedins_type": "1",
               "admdvs": "440106", "inf_time": "2030-05-20 08:59:59"}),
    )
    .await
    .err(400, "INVALID_TIME");

    // 401: no token, an unknown token, a malformed header.
    let wallet = "/v1/persons/PA/wallet";
    w.s.post_raw(None, wallet, format!(r#"{{"msgid":"{}"}}"#, m()))
        .await
        .err(401, "UNAUTHORIZED");
    w.s.post("gj_nope", wallet, json!({"msgid": m()}))
        .await
        .err(401, "UNAUTHORIZED");
    w.s.get_opt(None, "/v1/persons/PA")
        .await
        .err(401, "UNAUTHORIZED");
    let r =
        w.s.client
            .get(format!("{}/v1/stats?from=2030-01&to=2030-02", w.s.base))
            .header("authorization", format!("Basic {}", w.admin))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    for header in [
        format!("Bearer{}", w.admin),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
    ] {
        let r =
            w.s.client
                .get(format!("{}/v1/persons/PA", w.s.base))
                .header("authorization", header)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    // The scheme is case-insensitive.
    let r =
        w.s.client
            .get(format!("{}/v1/persons/PA", w.s.base))
            .header("authorization", format!("bearer {}", w.admin))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // 401 comes before the body is looked at.
    w.s.post_raw(None, "/v1/settlements", "{not json")
        .await
        .err(401, "UNAUTHORIZED");

    // 404s.
    w.s.get(&w.admin, "/v1/persons/NOPE")
        .await
        .err(404, "PERSON_NOT_FOUND");
    let settle = |code: &str, psn: &str| {
        json!({"msgid": m(), "fixmedins_code": code, "psn_no": psn, "medfee_sumamt": 1,
               "fund_pay_sumamt": 0})
    };
    w.s.post(&w.admin, "/v1/settlements", settle(H1, "NOPE"))
        .await
        .err(404, "PERSON_NOT_FOUND");
    w.s.post(&w.admin, "/v1/settlements", settle("H9", "PA"))
        .await
        .err(404, "INSTITUTION_NOT_FOUND");
    w.s.post(
        &w.admin,
        "/v1/persons/NOPE/status",
        json!({"msgid": m(), "status": "active"}),
    )
    .await
    .err(404, "PERSON_NOT_FOUND");
    w.s.get(&w.admin, "/v1/settlements/999")
        .await
        .err(404, "SETTLEMENT_NOT_FOUND");
    w.s.get(&w.admin, "/v1/settlements/abc")
        .await
        .err(404, "SETTLEMENT_NOT_FOUND");
    w.s.post(
        &w.admin,
        "/v1/settlements/999/cancel",
        json!({"msgid": m()}),
    )
    .await
    .err(404, "SETTLEMENT_NOT_FOUND");
    w.s.post(&w.admin, "/v1/bindings/999/revoke", json!({"msgid": m()}))
        .await
        .err(404, "BINDING_NOT_FOUND");
    w.s.get(&w.admin, "/v1/wallet/transfers/999")
        .await
        .err(404, "NOT_FOUND");
    w.s.post(
        &w.admin,
        "/v1/wallet/transfers/999/accept",
        json!({"msgid": m()}),
    )
    .await
    .err(404, "NOT_FOUND");
    w.s.post(&w.admin, "/v1/tokens/999/revoke", json!({"msgid": m()}))
        .await
        .err(404, "NOT_FOUND");
    for (path, code) in [
        ("/v1/settlements/abc/cancel", "SETTLEMENT_NOT_FOUND"),
        ("/v1/settlements/0/cancel", "SETTLEMENT_NOT_FOUND"),
        ("/v1/bindings/abc/revoke", "BINDING_NOT_FOUND"),
        ("/v1/tokens/abc/revoke", "NOT_FOUND"),
        ("/v1/wallet/transfers/-1/decline", "NOT_FOUND"),
    ] {
        w.s.post(&w.admin, path, json!({"msgid": m()}))
            .await
            .err(404, code);
    }
    w.s.post(&w.admin, "/v1/nothing", json!({"msgid": m()}))
        .await
        .err(404, "NOT_FOUND");
    w.s.get(&w.admin, "/v1/nothing").await.err(404, "NOT_FOUND");
    w.s.get_opt(None, "/nothing").await.err(404, "NOT_FOUND");
    w.s.get(
        &w.admin,
        "/v1/reconciliation?fixmedins_code=H9&date=2030-05-20",
    )
    .await
    .err(404, "INSTITUTION_NOT_FOUND");
}

#[tokio::test]
async fn errors_409() {
    // Proves: every 409 code (MSGID_CONFLICT, PERSON_EXISTS for psn_no and certno,
    // INSTITUTION_EXISTS, BINDING_EXISTS, ALREADY_CREDITED, ALREADY_CANCELLED, ALREADY_REVOKED,
    // ALREADY_PAID, REVERSED, NOT_PENDING) over HTTP.
    let w = World::new().await;
    let msgid = m();
    let cert = certno(992);
    let body = json!({"msgid": msgid, "psn_no": "NEW1", "certno": cert, "psn_name": "王五",
        "insutype": "310", "admdvs": "440106"});
    w.s.admin_ok("/v1/persons", body.clone()).await;
    let mut changed = body.clone();
    changed["psn_name"] = json!("王六");
    w.s.post(&w.admin, "/v1/persons", changed)
        .await
        .err(409, "MSGID_CONFLICT");
    let mut again = body.clone();
    again["msgid"] = json!(m());
    w.s.post(&w.admin, "/v1/persons", again.clone())
        .await
        .err(409, "PERSON_EXISTS");
    again["psn_no"] = json!("NEW2");
    w.s.post(&w.admin, "/v1/persons", again)
        .await
        .err(409, "PERSON_EXISTS");
    w.s.post(
        &w.admin,
        "/v1/institutions",
        json!({"msgid": m(), "fixmedins_code": H1, "fixmedins_name": "x", "fixmedins_type": "1",
               "admdvs": "440106"}),
    )
    .await
    .err(409, "INSTITUTION_EXISTS");
    w.s.post(
        &w.admin,
        "/v1/bindings",
        json!({"msgid": m(), "giver_psn_no": "PA", "receiver_psn_no": "PB", "relation": "spouse"}),
    )
    .await
    .err(409, "BINDING_EXISTS");
    let r =
        w.s.post(
            &w.admin,
            "/v1/credits",
            json!({"msgid": m(), "period": PERIOD,
                   "items": [{"psn_no": "NEW1", "amount": 1}, {"psn_no": "PA", "amount": 1}]}),
        )
        .await;
    r.err(409, "ALREADY_CREDITED");
    assert!(
        s(&r.json["err_msg"]).contains('1'),
        "names the item: {}",
        r.text()
    );
    assert_eq!(
        w.s.person("NEW1").await["acct_balc"],
        "0.00",
        "all or nothing"
    );

    let setl = w.s.settle(H1, "PA", "10", "0").await;
    let cancel = format!("/v1/settlements/{}/cancel", s(&setl["setl_id"]));
    w.s.post(&w.admin, &cancel, json!({"msgid": m()}))
        .await
        .ok();
    w.s.post(&w.admin, &cancel, json!({"msgid": m()}))
        .await
        .err(409, "ALREADY_CANCELLED");

    let revoke = format!("/v1/bindings/{}/revoke", w.ad);
    w.s.post(&w.admin, &revoke, json!({"msgid": m()}))
        .await
        .ok();
    w.s.post(&w.pd, &revoke, json!({"msgid": m()}))
        .await
        .err(409, "ALREADY_REVOKED");

    let contribution =
        || json!({"msgid": m(), "payer_psn_no": "PA", "psn_no": "PC", "year": 2031, "amount": 1});
    w.s.post(&w.pa, "/v1/contributions", contribution())
        .await
        .ok();
    w.s.post(&w.pa, "/v1/contributions", contribution())
        .await
        .err(409, "ALREADY_PAID");

    let late = format!("{H1}late{}", unique());
    w.s.post(
        &w.h1,
        "/v1/reversals",
        json!({"msgid": m(), "omsgid": late}),
    )
    .await
    .ok();
    let mut blocked = json!({"msgid": late, "fixmedins_code": H1, "psn_no": "PA",
        "medfee_sumamt": 1, "fund_pay_sumamt": 0});
    w.s.post(&w.h1, "/v1/settlements", blocked.clone())
        .await
        .err(409, "REVERSED");
    blocked["medfee_sumamt"] = json!(2);
    w.s.post(&w.h1, "/v1/settlements", blocked.clone())
        .await
        .err(409, "REVERSED");
    // The block is in H1's msgid scope: in the admin's the same text is another msgid.
    w.s.post(&w.admin, "/v1/settlements", blocked).await.ok();

    w.s.open_wallet("PB").await;
    let t =
        w.s.post(
            &w.pa,
            "/v1/wallet/transfers",
            json!({"msgid": m(), "from_psn_no": "PA", "to_psn_no": "PB", "amount": 1}),
        )
        .await
        .ok();
    let accept = format!("/v1/wallet/transfers/{}/accept", s(&t["transfer_id"]));
    let decline = format!("/v1/wallet/transfers/{}/decline", s(&t["transfer_id"]));
    w.s.post(&w.pb, &accept, json!({"msgid": m()})).await.ok();
    w.s.post(&w.pb, &accept, json!({"msgid": m()}))
        .await
        .err(409, "NOT_PENDING");
    w.s.post(&w.pb, &decline, json!({"msgid": m()}))
        .await
        .err(409, "NOT_PENDING");
}

#[tokio::test]
async fn errors_413_too_large() {
    // Proves: a body over 1 MiB, a crediting batch over 10,000 items and a batch over 8,190 ops
    // are 413 TOO_LARGE, and change nothing; exactly at the limits they are accepted or judged
    // on their merits.
    let w = World::new().await;
    let hash = w.s.state_hash();
    let name = "x".repeat(1024 * 1024 + 16);
    let body = json!({"msgid": m(), "psn_no": "BIG", "certno": certno(993), "psn_name": name,
        "insutype": "310", "admdvs": "440106"});
    w.s.post(&w.admin, "/v1/persons", body)
        .await
        .err(413, "TOO_LARGE");

    let items: Vec<Value> = (0..10_001)
        .map(|_| json!({"psn_no": "PA", "amount": 1}))
        .collect();
    let body = json!({"msgid": m(), "period": "2030-06", "items": items});
    w.s.post(&w.admin, "/v1/credits", body)
        .await
        .err(413, "TOO_LARGE");
    let items: Vec<Value> = (0..10_000)
        .map(|_| json!({"psn_no": "PA", "amount": 1}))
        .collect();
    let body = json!({"msgid": m(), "period": "2030-06", "items": items});
    w.s.post(&w.admin, "/v1/credits", body)
        .await
        .err(422, "DUPLICATE_ITEM");

    let op = json!({"path": "/v1/persons/PA/wallet", "body": {"msgid": "w"}});
    let body = json!({"ops": vec![op.clone(); 8_191]});
    w.s.post(&w.admin, "/v1/batch", body)
        .await
        .err(413, "TOO_LARGE");
    w.s.post(&w.admin, "/v1/batch", json!({"ops": []}))
        .await
        .err(400, "BAD_REQUEST");
    assert_eq!(w.s.state_hash(), hash);
    let body = json!({"ops": vec![op; 8_190]});
    let out = w.s.post(&w.admin, "/v1/batch", body).await.ok();
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 8_190);
    assert!(
        results.iter().all(|r| r["status"] == 200),
        "the same msgid and body: replays"
    );
    assert_eq!(results[0]["output"], results[8_189]["output"]);
}

#[tokio::test]
async fn errors_422_business_rules() {
    // Proves: every 422 code of API.md's table over HTTP (RELATION_NOT_ELIGIBLE,
    // GIVER_NOT_EMPLOYEE_INSURED, SELF_BINDING, BINDING_LIMIT, NOT_BOUND,
    // CROSS_PROVINCE_NOT_ALLOWED, INSUFFICIENT_BALANCE, FUND_EXCEEDS_MEDFEE, PERSON_SUSPENDED,
    // NOT_RESIDENT_INSURED, NO_PERSONAL_ACCOUNT, WALLET_NOT_OPEN, WALLET_AMOUNT_LIMIT,
    // WALLET_DAILY_LIMIT, WALLET_CLOSED_HOURS, NOT_REVERSIBLE, DUPLICATE_ITEM).
    let w = World::new().await;
    let bind = |g: &str, r: &str, rel: &str| json!({"msgid": m(), "giver_psn_no": g, "receiver_psn_no": r, "relation": rel});
    let post = |path: &'static str, body: Value| w.s.post(&w.admin, path, body);
    post("/v1/bindings", bind("PE", "PB", "friend"))
        .await
        .err(422, "RELATION_NOT_ELIGIBLE");
    post("/v1/bindings", bind("PC", "PE", "spouse"))
        .await
        .err(422, "GIVER_NOT_EMPLOYEE_INSURED");
    post("/v1/bindings", bind("PE", "PE", "spouse"))
        .await
        .err(422, "SELF_BINDING");
    let transfer = |from: &str, to: &str, amount: Value| json!({"msgid": m(), "from_psn_no": from, "to_psn_no": to, "amount": amount});
    post("/v1/wallet/transfers", transfer("PE", "PD", json!(1)))
        .await
        .err(422, "NOT_BOUND");
    post("/v1/wallet/transfers", transfer("PA", "PB", json!(1)))
        .await
        .err(422, "WALLET_NOT_OPEN");
    post("/v1/wallet/transfers", transfer("PC", "PD", json!(1)))
        .await
        .err(422, "NO_PERSONAL_ACCOUNT");
    post(
        "/v1/wallet/transfers",
        transfer("PA", "PD", json!("2000.01")),
    )
    .await
    .err(422, "WALLET_AMOUNT_LIMIT");
    post("/v1/wallet/transfers", transfer("PA", "PD", json!("1500")))
        .await
        .err(422, "INSUFFICIENT_BALANCE");
    let mut night = transfer("PA", "PD", json!(1));
    night["inf_time"] = json!("2030-05-20 22:00:00");
    post("/v1/wallet/transfers", night)
        .await
        .err(422, "WALLET_CLOSED_HOURS");
    let settle = json!({"msgid": m(), "fixmedins_code": H1, "psn_no": "PA",
        "medfee_sumamt": "10.00", "fund_pay_sumamt": "10.01"});
    post("/v1/settlements", settle)
        .await
        .err(422, "FUND_EXCEEDS_MEDFEE");
    let contribute = |payer: &str, psn: &str| json!({"msgid": m(), "payer_psn_no": payer, "psn_no": psn, "year": 2031, "amount": 1});
    post("/v1/contributions", contribute("PA", "PB"))
        .await
        .err(422, "NOT_RESIDENT_INSURED");
    post("/v1/contributions", contribute("PE", "PC"))
        .await
        .err(422, "NOT_BOUND");
    let credit = |items: Value| json!({"msgid": m(), "period": "2030-06", "items": items});
    post(
        "/v1/credits",
        credit(json!([{"psn_no": "PC", "amount": 1}])),
    )
    .await
    .err(422, "NO_PERSONAL_ACCOUNT");
    let r = post(
        "/v1/credits",
        credit(
            json!([{"psn_no": "PA", "amount": 1}, {"psn_no": "PB", "amount": 1},
                      {"psn_no": "PA", "amount": 2}]),
        ),
    )
    .await;
    r.err(422, "DUPLICATE_ITEM");
    assert!(
        s(&r.json["err_msg"]).contains('2'),
        "names the item: {}",
        r.text()
    );
    let enrol_msgid = m();
    post(
        "/v1/persons",
        json!({"msgid": enrol_msgid, "psn_no": "Q0", "certno": certno(994), "psn_name": "赵",
               "insutype": "310", "admdvs": "440106"}),
    )
    .await
    .ok();
    post(
        "/v1/reversals",
        json!({"msgid": m(), "omsgid": enrol_msgid}),
    )
    .await
    .err(422, "NOT_REVERSIBLE");
    assert_eq!(
        w.s.person("PA").await["acct_balc"],
        "1000.00",
        "rejections change nothing"
    );

    // CROSS_PROVINCE_NOT_ALLOWED: PD (Beijing) is bound to PC (Guangdong) wallet only.
    w.s.bind("PD", "PC", "parent").await;
    post("/v1/contributions", contribute("PD", "PC"))
        .await
        .err(422, "CROSS_PROVINCE_NOT_ALLOWED");

    // PERSON_SUSPENDED: a suspended person neither settles nor binds nor sends.
    post(
        "/v1/persons/PE/status",
        json!({"msgid": m(), "status": "suspended"}),
    )
    .await
    .ok();
    let settle = json!({"msgid": m(), "fixmedins_code": H1, "psn_no": "PE",
        "medfee_sumamt": "10.00", "fund_pay_sumamt": "0"});
    post("/v1/settlements", settle)
        .await
        .err(422, "PERSON_SUSPENDED");
    post("/v1/bindings", bind("PA", "PE", "sibling"))
        .await
        .err(422, "PERSON_SUSPENDED");
    post(
        "/v1/persons/PE/status",
        json!({"msgid": m(), "status": "active"}),
    )
    .await
    .ok();

    // WALLET_DAILY_LIMIT: three transfers a sender a day, whatever becomes of them.
    for _ in 0..3 {
        let t = post("/v1/wallet/transfers", transfer("PA", "PD", json!(1)))
            .await
            .ok();
        let decline = format!("/v1/wallet/transfers/{}/decline", s(&t["transfer_id"]));
        w.s.post(&w.pd, &decline, json!({"msgid": m()})).await.ok();
    }
    post("/v1/wallet/transfers", transfer("PA", "PD", json!(1)))
        .await
        .err(422, "WALLET_DAILY_LIMIT");

    // BINDING_LIMIT: a giver has at most 7 active receivers.
    let mut ops = Vec::new();
    for i in 1..=8 {
        ops.push(
            json!({"path": "/v1/persons", "body": {"msgid": m(), "psn_no": format!("Q{i}"),
            "certno": certno(900 + i), "psn_name": "赵", "insutype": "390", "admdvs": "440106"}}),
        );
    }
    for i in 1..=7 {
        ops.push(json!({"path": "/v1/bindings", "body": bind("PE", &format!("Q{i}"), "child")}));
    }
    let out = post("/v1/batch", json!({"ops": ops})).await.ok();
    assert!(
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 200),
        "{out}"
    );
    post("/v1/bindings", bind("PE", "Q8", "child"))
        .await
        .err(422, "BINDING_LIMIT");
}

// ---------------------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------------------

/// Each token in `tokens` gets 403 FORBIDDEN for `body` (with a fresh msgid) at `path`.
async fn deny(srv: &Server, tokens: &[&String], path: &str, body: &Value) {
    for token in tokens {
        let mut b = body.clone();
        b["msgid"] = json!(m());
        let r = srv.post(token, path, b).await;
        assert_eq!(r.status, 403, "{path} {body}: {}", r.text());
        r.err(403, "FORBIDDEN");
    }
}

/// `token` may write `body` (with a fresh msgid) at `path`; returns the output.
async fn allow(srv: &Server, token: &str, path: &str, body: &Value) -> Value {
    let mut b = body.clone();
    b["msgid"] = json!(m());
    let r = srv.post(token, path, b).await;
    assert_eq!(r.status, 200, "{path} {body}: {}", r.text());
    r.ok()
}

#[tokio::test]
async fn role_matrix_writes() {
    // Proves: for every write endpoint, admin may; an institution may only settle / cancel /
    // reverse at its own code; a person may only bind as giver, revoke its own bindings, open
    // its own wallet, send from itself, accept / decline to itself and pay from itself; every
    // other combination is 403 FORBIDDEN.
    let w = World::new().await;
    let srv = &w.s;
    let (a, h1, h2, pa, pb, pc, pd, pe) =
        (&w.admin, &w.h1, &w.h2, &w.pa, &w.pb, &w.pc, &w.pd, &w.pe);

    // Administration: admin only, whoever the request is about.
    let token = json!({"role": "person", "psn_no": "PA"});
    deny(srv, &[h1, pa], "/v1/tokens", &token).await;
    let id = allow(srv, a, "/v1/tokens", &token).await["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = format!("/v1/tokens/{id}/revoke");
    deny(srv, &[h1, pa], &revoke, &json!({})).await;
    allow(srv, a, &revoke, &json!({})).await;
    let person = json!({"psn_no": "NEW1", "certno": certno(995), "psn_name": "钱",
        "insutype": "310", "admdvs": "440106"});
    deny(srv, &[h1, pa], "/v1/persons", &person).await;
    allow(srv, a, "/v1/persons", &person).await;
    let status = json!({"status": "active"});
    deny(srv, &[h1, pa, pb], "/v1/persons/PA/status", &status).await;
    allow(srv, a, "/v1/persons/PA/status", &status).await;
    let inst = json!({"fixmedins_code": "H3", "fixmedins_name": "x", "fixmedins_type": "1",
        "admdvs": "440106"});
    deny(srv, &[h1, pa], "/v1/institutions", &inst).await;
    allow(srv, a, "/v1/institutions", &inst).await;
    let credit = json!({"period": "2030-06", "items": [{"psn_no": "PA", "amount": 1}]});
    deny(srv, &[h1, pa], "/v1/credits", &credit).await;
    allow(srv, a, "/v1/credits", &credit).await;

    // Wallet: admin or the person itself.
    deny(srv, &[h1, pa], "/v1/persons/PE/wallet", &json!({})).await;
    allow(srv, pe, "/v1/persons/PE/wallet", &json!({})).await;
    allow(srv, a, "/v1/persons/PA/wallet", &json!({})).await;

    // Bindings: admin or the giver; revoke: admin, giver or receiver.
    let eb = json!({"giver_psn_no": "PE", "receiver_psn_no": "PB", "relation": "spouse"});
    deny(srv, &[h1, pb, pa], "/v1/bindings", &eb).await;
    let eb = allow(srv, pe, "/v1/bindings", &eb).await["binding_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ea = json!({"giver_psn_no": "PE", "receiver_psn_no": "PA", "relation": "sibling"});
    let ea = allow(srv, a, "/v1/bindings", &ea).await["binding_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke_eb = format!("/v1/bindings/{eb}/revoke");
    deny(srv, &[h1, pa, pc], &revoke_eb, &json!({})).await;
    allow(srv, pb, &revoke_eb, &json!({})).await;
    let revoke_ea = format!("/v1/bindings/{ea}/revoke");
    deny(srv, &[h1, pb], &revoke_ea, &json!({})).await;
    allow(srv, pe, &revoke_ea, &json!({})).await;
    let be = json!({"giver_psn_no": "PB", "receiver_psn_no": "PE", "relation": "spouse"});
    let be = allow(srv, a, "/v1/bindings", &be).await["binding_id"]
        .as_str()
        .unwrap()
        .to_owned();
    allow(srv, a, &format!("/v1/bindings/{be}/revoke"), &json!({})).await;

    // Settlement: admin or the institution at its own code.
    let settle = json!({"fixmedins_code": H1, "psn_no": "PA", "medfee_sumamt": 1,
        "fund_pay_sumamt": 0});
    deny(srv, &[h2, pa], "/v1/settlements", &settle).await;
    let s1 = allow(srv, h1, "/v1/settlements", &settle).await["setl_id"].clone();
    let s2 = allow(srv, a, "/v1/settlements", &settle).await["setl_id"].clone();
    let mut at_h2 = settle.clone();
    at_h2["fixmedins_code"] = json!(H2);
    allow(srv, a, "/v1/settlements", &at_h2).await;
    let cancel1 = format!("/v1/settlements/{}/cancel", s(&s1));
    deny(srv, &[h2, pa], &cancel1, &json!({})).await;
    allow(srv, h1, &cancel1, &json!({})).await;
    allow(
        srv,
        a,
        &format!("/v1/settlements/{}/cancel", s(&s2)),
        &json!({}),
    )
    .await;
    // Reversals: an institution in its own msgid scope only (naming another's is 403); a
    // person never.
    let reverse_h1 = json!({"omsgid": format!("{H1}0001"), "fixmedins_code": H1});
    deny(srv, &[h2, pa], "/v1/reversals", &reverse_h1).await;
    deny(srv, &[pa], "/v1/reversals", &json!({"omsgid": "x1"})).await;
    allow(srv, h1, "/v1/reversals", &reverse_h1).await;
    allow(
        srv,
        h2,
        "/v1/reversals",
        &json!({"omsgid": format!("{H2}0001")}),
    )
    .await;
    allow(
        srv,
        a,
        "/v1/reversals",
        &json!({"omsgid": "anything-at-all"}),
    )
    .await;

    // Transfers: admin or the sender; accept / decline: admin or the receiver.
    let ad = json!({"from_psn_no": "PA", "to_psn_no": "PD", "amount": 1});
    deny(srv, &[h1, pd, pb], "/v1/wallet/transfers", &ad).await;
    let t1 = allow(srv, pa, "/v1/wallet/transfers", &ad).await["transfer_id"].clone();
    let t2 = allow(srv, a, "/v1/wallet/transfers", &ad).await["transfer_id"].clone();
    let da = json!({"from_psn_no": "PD", "to_psn_no": "PA", "amount": 1});
    let t3 = allow(srv, pd, "/v1/wallet/transfers", &da).await["transfer_id"].clone();
    let accept1 = format!("/v1/wallet/transfers/{}/accept", s(&t1));
    deny(srv, &[h1, pa, pe], &accept1, &json!({})).await;
    allow(srv, pd, &accept1, &json!({})).await;
    let decline3 = format!("/v1/wallet/transfers/{}/decline", s(&t3));
    deny(srv, &[h1, pd, pe], &decline3, &json!({})).await;
    allow(srv, pa, &decline3, &json!({})).await;
    allow(
        srv,
        a,
        &format!("/v1/wallet/transfers/{}/decline", s(&t2)),
        &json!({}),
    )
    .await;

    // Contributions: admin or the payer.
    let pay = json!({"payer_psn_no": "PA", "psn_no": "PC", "year": 2031, "amount": 1});
    deny(srv, &[h1, pc, pb], "/v1/contributions", &pay).await;
    allow(srv, pa, "/v1/contributions", &pay).await;
    let mut pay = pay.clone();
    pay["year"] = json!(2032);
    allow(srv, a, "/v1/contributions", &pay).await;

    // A batch: each op is judged by the role it needs.
    let out = srv
        .post(
            pa,
            "/v1/batch",
            json!({"ops": [
                {"path": "/v1/persons/PA/wallet", "body": {"msgid": m()}},
                {"path": "/v1/persons/PB/wallet", "body": {"msgid": m()}},
                {"path": "/v1/credits", "body": {"msgid": m(), "period": "2030-07",
                    "items": [{"psn_no": "PA", "amount": 1}]}},
            ]}),
        )
        .await
        .ok();
    let statuses: Vec<&Value> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [&json!(200), &json!(403), &json!(403)]);
    let out = srv
        .post(
            h1,
            "/v1/batch",
            json!({"ops": [
                {"path": "/v1/settlements", "body": {"msgid": m(), "fixmedins_code": H1,
                    "psn_no": "PE", "medfee_sumamt": 1, "fund_pay_sumamt": 0}},
                {"path": "/v1/settlements", "body": {"msgid": m(), "fixmedins_code": H2,
                    "psn_no": "PE", "medfee_sumamt": 1, "fund_pay_sumamt": 0}},
            ]}),
        )
        .await
        .ok();
    assert_eq!(out["results"][0]["status"], 200);
    assert_eq!(out["results"][1]["err_code"], "FORBIDDEN");
}

#[tokio::test]
async fn role_matrix_reads() {
    // Proves: GET person (admin, any institution, the person itself), entries (admin, the
    // person itself), settlement (admin, its institution, its person), transfer (admin, sender,
    // receiver), stats and audit (admin only), reconciliation GET / POST (admin, the
    // institution itself); everything else 403.
    let w = World::new().await;
    let srv = &w.s;
    let setl = srv.settle(H1, "PB", "1", "0").await;
    let t = srv
        .post(
            &w.pa,
            "/v1/wallet/transfers",
            json!({"msgid": m(), "from_psn_no": "PA", "to_psn_no": "PD", "amount": 1}),
        )
        .await
        .ok();
    let recon_q = format!("/v1/reconciliation?fixmedins_code={H1}&date=2030-05-20");
    let recon = srv.get(&w.admin, &recon_q).await.ok();
    let cases: Vec<(String, Vec<&String>, Vec<&String>)> = vec![
        (
            "/v1/persons/PA".into(),
            vec![&w.admin, &w.h1, &w.h2, &w.pa],
            vec![&w.pb],
        ),
        (
            "/v1/persons/PA/entries".into(),
            vec![&w.admin, &w.pa],
            vec![&w.pb, &w.h1],
        ),
        (
            format!("/v1/settlements/{}", s(&setl["setl_id"])),
            vec![&w.admin, &w.h1, &w.pb],
            vec![&w.h2, &w.pa],
        ),
        (
            format!("/v1/wallet/transfers/{}", s(&t["transfer_id"])),
            vec![&w.admin, &w.pa, &w.pd],
            vec![&w.pb, &w.h1],
        ),
        (
            "/v1/stats?from=2030-01&to=2030-12".into(),
            vec![&w.admin],
            vec![&w.h1, &w.pa],
        ),
        (
            "/v1/audit/verify".into(),
            vec![&w.admin],
            vec![&w.h1, &w.pa],
        ),
        (recon_q.clone(), vec![&w.admin, &w.h1], vec![&w.h2, &w.pb]),
    ];
    for (path, allowed, denied) in cases {
        for token in allowed {
            let r = srv.get(token, &path).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text());
        }
        for token in denied {
            let r = srv.get(token, &path).await;
            assert_eq!(r.status, 403, "{path}: {}", r.text());
            r.err(403, "FORBIDDEN");
        }
    }
    for token in [&w.admin, &w.h1] {
        srv.post(token, "/v1/reconciliation", recon.clone())
            .await
            .ok();
    }
    for token in [&w.h2, &w.pa] {
        srv.post(token, "/v1/reconciliation", recon.clone())
            .await
            .err(403, "FORBIDDEN");
    }
}

// ---------------------------------------------------------------------------------------------
// Idempotency, time
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn msgid_replay_conflict_and_reuse() {
    // Proves: a replay returns the first response byte for byte and changes nothing (12.3 and
    // "12.30" are the same body, field order does not matter), also after a cancellation; a
    // changed body is 409 MSGID_CONFLICT; msgids form one namespace; a replay needs a token that
    // may make the request; a rejected write's msgid can be reused; a token creation replay
    // shows token_id alone.
    let w = World::new().await;
    let msgid = m();
    let first = w
        .s
        .post_raw(
            Some(&w.h1),
            "/v1/settlements",
            format!(
                r#"{{"msgid":"{msgid}","fixmedins_code":"{H1}","psn_no":"PB","medfee_sumamt":112.3,"fund_pay_sumamt":0}}"#
            ),
        )
        .await;
    let out = first.ok();
    assert_eq!(out["medfee_sumamt"], "112.30");
    let hash = w.s.state_hash();
    let replay = w
        .s
        .post_raw(
            Some(&w.h1),
            "/v1/settlements",
            format!(
                r#"{{"fund_pay_sumamt":"0.00","psn_no":"PB","medfee_sumamt":"112.30","msgid":"{msgid}","fixmedins_code":"{H1}","acct_used_flag":"1"}}"#
            ),
        )
        .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.output_bytes(), first.output_bytes());
    assert_eq!(replay.bytes, first.bytes);
    assert_eq!(w.s.state_hash(), hash, "a replay changes nothing");
    // Another token of the same institution replays it (one msgid scope per institution);
    // another institution may not make the request at all.
    let same = json!({"msgid": msgid, "fixmedins_code": H1, "psn_no": "PB",
        "medfee_sumamt": "112.30", "fund_pay_sumamt": 0});
    let h1_again = w.s.token("institution", Some(("fixmedins_code", H1))).await;
    let hash = w.s.state_hash();
    let by_twin = w.s.post(&h1_again, "/v1/settlements", same.clone()).await;
    assert_eq!(by_twin.bytes, first.bytes);
    assert_eq!(w.s.state_hash(), hash, "a replay changes nothing");
    w.s.post(&w.h2, "/v1/settlements", same.clone())
        .await
        .err(403, "FORBIDDEN");
    // Changed body: 409, nothing changes.
    let mut changed = same.clone();
    changed["medfee_sumamt"] = json!("112.31");
    w.s.post(&w.h1, "/v1/settlements", changed)
        .await
        .err(409, "MSGID_CONFLICT");
    let mut flag = same.clone();
    flag["acct_used_flag"] = json!("0");
    w.s.post(&w.h1, "/v1/settlements", flag)
        .await
        .err(409, "MSGID_CONFLICT");
    // One namespace per scope: within H1's, the msgid of a settlement is taken for any other
    // write (here a cancellation).
    w.s.post(&w.h1, "/v1/settlements/1/cancel", json!({"msgid": msgid}))
        .await
        .err(409, "MSGID_CONFLICT");
    assert_eq!(w.s.state_hash(), hash);

    // After a cancellation the replay still answers the original settlement.
    let cancel_msgid = m();
    let cancel = format!("/v1/settlements/{}/cancel", s(&out["setl_id"]));
    let c1 =
        w.s.post(&w.h1, &cancel, json!({"msgid": cancel_msgid}))
            .await;
    c1.ok();
    let again = w.s.post(&w.h1, "/v1/settlements", same).await;
    assert_eq!(again.bytes, first.bytes);
    let c2 =
        w.s.post(&w.h1, &cancel, json!({"msgid": cancel_msgid}))
            .await;
    assert_eq!(c2.bytes, c1.bytes);

    // A rejected write's msgid is not consumed: at 400, 404 and 422.
    let reuse = m();
    let mut body = json!({"msgid": reuse, "fixmedins_code": H1, "psn_no": "PE",
        "medfee_sumamt": "1.001", "fund_pay_sumamt": 0});
    w.s.post(&w.h1, "/v1/settlements", body.clone())
        .await
        .err(400, "INVALID_AMOUNT");
    body["medfee_sumamt"] = json!(1);
    body["psn_no"] = json!("NOPE");
    w.s.post(&w.h1, "/v1/settlements", body.clone())
        .await
        .err(404, "PERSON_NOT_FOUND");
    body["psn_no"] = json!("PE");
    body["fund_pay_sumamt"] = json!(2);
    w.s.post(&w.h1, "/v1/settlements", body.clone())
        .await
        .err(422, "FUND_EXCEEDS_MEDFEE");
    body["fund_pay_sumamt"] = json!(0);
    let ok1 = w.s.post(&w.h1, "/v1/settlements", body.clone()).await;
    ok1.ok();
    assert_eq!(
        w.s.post(&w.h1, "/v1/settlements", body).await.bytes,
        ok1.bytes
    );

    // Token creation: shown once.
    let tmsgid = m();
    let tbody = json!({"msgid": tmsgid, "role": "institution", "fixmedins_code": H2});
    let t1 = w.s.post(&w.admin, "/v1/tokens", tbody.clone()).await.ok();
    assert!(t1["token"].is_string());
    let t2 = w.s.post(&w.admin, "/v1/tokens", tbody).await.ok();
    assert_eq!(t2, json!({"token_id": t1["token_id"]}));

    // A batch replays op by op.
    let batch = json!({"ops": [
        {"path": "/v1/persons/PE/wallet", "body": {"msgid": m()}},
        {"path": "/v1/settlements", "body": {"msgid": m(), "fixmedins_code": H1, "psn_no": "PE",
            "medfee_sumamt": 3, "fund_pay_sumamt": 0}},
    ]});
    let b1 = w.s.post(&w.admin, "/v1/batch", batch.clone()).await;
    b1.ok();
    let hash = w.s.state_hash();
    let b2 = w.s.post(&w.admin, "/v1/batch", batch).await;
    assert_eq!(b2.bytes, b1.bytes);
    assert_eq!(w.s.state_hash(), hash);
}

#[tokio::test]
async fn inf_time_rules_and_expiry_at_0600() {
    // Proves: inf_time is for admin tokens (institution and person: 403, after 400 checks),
    // earlier than the clock is 400 INVALID_TIME, a replay is judged before the time, rejected
    // writes do not move the clock, writes without inf_time take the clock, and a transfer not
    // accepted is returned exactly at 06:00:00 CST the next day.
    let w = World::new().await;
    let transfer = json!({"msgid": m(), "from_psn_no": "PA", "to_psn_no": "PD", "amount": 100});
    let t = w.s.post(&w.pa, "/v1/wallet/transfers", transfer).await.ok();
    let tid = s(&t["transfer_id"]).to_owned();
    assert_eq!(t["expires_at"], "2030-05-21 06:00:00");

    let mut timed = json!({"msgid": m(), "fixmedins_code": H1, "psn_no": "PE", "medfee_sumamt": 1,
        "fund_pay_sumamt": 0, "inf_time": "2030-05-20 10:00:00"});
    w.s.post(&w.h1, "/v1/settlements", timed.clone())
        .await
        .err(403, "FORBIDDEN");
    let wallet_timed = json!({"msgid": m(), "inf_time": "2030-05-20 10:00:00"});
    w.s.post(&w.pe, "/v1/persons/PE/wallet", wallet_timed)
        .await
        .err(403, "FORBIDDEN");
    let mut bad_time = timed.clone();
    bad_time["inf_time"] = json!("2030-05-20T10:00:00");
    w.s.post(&w.h1, "/v1/settlements", bad_time.clone())
        .await
        .err(400, "BAD_REQUEST");
    bad_time["inf_time"] = json!("2030-02-30 10:00:00");
    w.s.post(&w.admin, "/v1/settlements", bad_time)
        .await
        .err(400, "BAD_REQUEST");
    timed["inf_time"] = json!("2030-05-20 08:59:59");
    w.s.post(&w.admin, "/v1/settlements", timed.clone())
        .await
        .err(400, "INVALID_TIME");
    timed["inf_time"] = json!(T0);
    let first = w.s.post(&w.admin, "/v1/settlements", timed.clone()).await;
    assert_eq!(
        first.ok()["setl_time"],
        T0,
        "the clock itself is not earlier"
    );

    // A rejected write with a later time does not move the clock.
    let mut night = json!({"msgid": m(), "from_psn_no": "PE", "to_psn_no": "PD", "amount": 1,
        "inf_time": "2030-05-22 12:00:00"});
    w.s.post(&w.admin, "/v1/wallet/transfers", night.clone())
        .await
        .err(422, "NOT_BOUND");
    w.s.at("2030-05-21 05:59:59").await;
    let got =
        w.s.get(&w.admin, &format!("/v1/wallet/transfers/{tid}"))
            .await
            .ok();
    assert_eq!(got["status"], "pending");
    assert_eq!(w.s.person("PA").await["acct_balc"], "900.00");
    // A replay with a time now in the past is still a replay (msgid before INVALID_TIME).
    let replay = w.s.post(&w.admin, "/v1/settlements", timed).await;
    assert_eq!(replay.bytes, first.bytes);

    w.s.at("2030-05-21 06:00:00").await;
    let got =
        w.s.get(&w.pa, &format!("/v1/wallet/transfers/{tid}"))
            .await
            .ok();
    assert_eq!(got["status"], "returned");
    assert_eq!(w.s.person("PA").await["acct_balc"], "1000.00");
    let entries = w.s.get(&w.pa, "/v1/persons/PA/entries").await.ok();
    let last = entries["entries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (&last["kind"], &last["amount"]),
        (&json!("wallet_return"), &json!("100.00"))
    );
    assert_eq!(last["time"], "2030-05-21 06:00:00");
    let accept = format!("/v1/wallet/transfers/{tid}/accept");
    w.s.post(&w.pd, &accept, json!({"msgid": m()}))
        .await
        .err(409, "NOT_PENDING");

    // Without inf_time a write takes the engine clock (it is ahead of the machine's).
    let setl = w.s.settle(H1, "PE", "1", "0").await;
    assert_eq!(setl["setl_time"], "2030-05-21 06:00:00");
    night["msgid"] = json!(m());
    night["inf_time"] = json!("2030-05-21 05:00:00");
    w.s.post(&w.admin, "/v1/wallet/transfers", night)
        .await
        .err(400, "INVALID_TIME");
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_input_is_a_clear_4xx_and_changes_nothing() {
    // Proves: malformed JSON, non-objects, wrong types, unknown fields, huge and non-decimal
    // numbers, 3-decimal and negative amounts, overlong identifiers, bad check digits and bad
    // times each get a 4xx with the right err_code, and the state hash is unchanged after.
    let w = World::new().await;
    let hash = w.s.state_hash();
    let pa = w.s.person("PA").await;
    let stats =
        w.s.get(&w.admin, "/v1/stats?from=2030-01&to=2030-12")
            .await
            .ok();

    let settle = |field: &str, raw: &str| {
        let base = format!(
            r#""msgid":"{}","fixmedins_code":"{H1}","psn_no":"PA","medfee_sumamt":"10.00","fund_pay_sumamt":"0""#,
            m()
        );
        // Replace the field if present, else add it.
        let mut parts: Vec<String> = base.split(',').map(str::to_owned).collect();
        let key = format!("\"{field}\":");
        match parts.iter_mut().find(|p| p.starts_with(&key)) {
            Some(p) => *p = format!("{key}{raw}"),
            None => parts.push(format!("{key}{raw}")),
        }
        format!("{{{}}}", parts.join(","))
    };
    let long31 = "P".repeat(31);
    let long65 = "m".repeat(65);
    let mut cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("/v1/settlements", b"".to_vec(), 400, "BAD_REQUEST"),
        ("/v1/settlements", b"{".to_vec(), 400, "BAD_REQUEST"),
        (
            "/v1/settlements",
            b"{\"msgid\":\"x\",}".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        ("/v1/settlements", b"[]".to_vec(), 400, "BAD_REQUEST"),
        (
            "/v1/settlements",
            b"\"settle\"".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        ("/v1/settlements", b"42".to_vec(), 400, "BAD_REQUEST"),
        ("/v1/settlements", b"null".to_vec(), 400, "BAD_REQUEST"),
        ("/v1/settlements", b"{}".to_vec(), 400, "BAD_REQUEST"),
        (
            "/v1/settlements",
            b"{\"msgid\":\"x\"} trailing".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "/v1/settlements",
            b"{\"msgid\":\"\xff\xfe\"}".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "/v1/settlements",
            "[".repeat(100_000).into_bytes(),
            400,
            "BAD_REQUEST",
        ),
    ];
    let field_cases: Vec<(&str, String, u16, &str)> = vec![
        ("medfee_sumamt", "1e400".into(), 400, "INVALID_AMOUNT"),
        (
            "medfee_sumamt",
            "1234567890123456789012345678901234567890".into(),
            400,
            "INVALID_AMOUNT",
        ),
        (
            "medfee_sumamt",
            "\"1234567890123456789012345678901234567890\"".into(),
            400,
            "INVALID_AMOUNT",
        ),
        ("medfee_sumamt", "12.345".into(), 400, "INVALID_AMOUNT"),
        ("medfee_sumamt", "\"12.345\"".into(), 400, "INVALID_AMOUNT"),
        ("medfee_sumamt", "\"12.300\"".into(), 400, "INVALID_AMOUNT"),
        ("medfee_sumamt", "-1".into(), 400, "INVALID_AMOUNT"),
        ("medfee_sumamt", "\"-0.01\"".into(), 400, "INVALID_AMOUNT"),
        ("medfee_sumamt", "\"NaN\"".into(), 400, "INVALID_AMOUNT"),
        (
            "medfee_sumamt",
            "\"Infinity\"".into(),
            400,
            "INVALID_AMOUNT",
        ),
        ("medfee_sumamt", "100000000".into(), 400, "INVALID_AMOUNT"),
        (
            "medfee_sumamt",
            "\"99999999.991\"".into(),
            400,
            "INVALID_AMOUNT",
        ),
        ("medfee_sumamt", "\"1,00\"".into(), 400, "INVALID_AMOUNT"),
        ("medfee_sumamt", "\" 1.00\"".into(), 400, "INVALID_AMOUNT"),
        ("medfee_sumamt", "\"\"".into(), 400, "INVALID_AMOUNT"),
        ("medfee_sumamt", "true".into(), 400, "BAD_REQUEST"),
        ("medfee_sumamt", "{}".into(), 400, "BAD_REQUEST"),
        ("medfee_sumamt", "[1]".into(), 400, "BAD_REQUEST"),
        ("medfee_sumamt", "null".into(), 400, "BAD_REQUEST"),
        ("psn_no", format!("\"{long31}\""), 400, "BAD_REQUEST"),
        ("psn_no", "\"\"".into(), 400, "BAD_REQUEST"),
        ("psn_no", "\"P-1\"".into(), 400, "BAD_REQUEST"),
        ("psn_no", "\"张三\"".into(), 400, "BAD_REQUEST"),
        ("psn_no", "12".into(), 400, "BAD_REQUEST"),
        ("msgid", format!("\"{long65}\""), 400, "BAD_REQUEST"),
        ("msgid", "\"\"".into(), 400, "BAD_REQUEST"),
        ("msgid", "\"a b\"".into(), 400, "BAD_REQUEST"),
        ("msgid", "\"a/b\"".into(), 400, "BAD_REQUEST"),
        ("msgid", "7".into(), 400, "BAD_REQUEST"),
        (
            "fixmedins_code",
            "\"H4401 0600001\"".into(),
            400,
            "BAD_REQUEST",
        ),
        ("acct_used_flag", "\"2\"".into(), 400, "BAD_REQUEST"),
        ("acct_used_flag", "1".into(), 400, "BAD_REQUEST"),
        ("unknown", "1".into(), 400, "BAD_REQUEST"),
        ("unknown", "null".into(), 400, "BAD_REQUEST"),
        (
            "inf_time",
            "\"2030-05-20 25:00:00\"".into(),
            400,
            "BAD_REQUEST",
        ),
        ("inf_time", "20300520".into(), 400, "BAD_REQUEST"),
    ];
    let field_bodies: Vec<(&str, Vec<u8>, u16, &str)> = field_cases
        .iter()
        .map(|(f, raw, st, code)| ("/v1/settlements", settle(f, raw).into_bytes(), *st, *code))
        .collect();
    cases.extend(field_bodies);

    let enrol = |field: &str, value: Value| {
        let mut body = json!({"msgid": m(), "psn_no": "NEW1", "certno": certno(996),
            "psn_name": "孙", "insutype": "310", "admdvs": "440106"});
        body[field] = value;
        serde_json::to_vec(&body).unwrap()
    };
    let good = certno(996);
    let enrol_cases = vec![
        (enrol("certno", json!(bad_check(&good))), "INVALID_CERTNO"),
        (enrol("certno", json!(&good[..17])), "INVALID_CERTNO"),
        (enrol("certno", json!(format!("{good}0"))), "INVALID_CERTNO"),
        (
            enrol("certno", json!(certno_birth("19801301"))),
            "INVALID_CERTNO",
        ),
        (
            enrol("certno", json!(certno_birth("19800230"))),
            "INVALID_CERTNO",
        ),
        (enrol("certno", json!(18)), "BAD_REQUEST"),
        (enrol("psn_no", json!(long31)), "BAD_REQUEST"),
        (enrol("psn_name", json!("")), "BAD_REQUEST"),
        (enrol("psn_name", json!("x".repeat(201))), "BAD_REQUEST"),
        (enrol("psn_name", json!("a\u{0}b")), "BAD_REQUEST"),
        (enrol("insutype", json!(310)), "BAD_REQUEST"),
        (enrol("insutype", json!("31")), "INVALID_INSUTYPE"),
        (enrol("admdvs", json!(440106)), "BAD_REQUEST"),
        (enrol("admdvs", json!("4401060")), "INVALID_ADMDVS"),
        (enrol("admdvs", json!("44010a")), "INVALID_ADMDVS"),
    ];
    for (body, code) in enrol_cases {
        cases.push(("/v1/persons", body, 400, code));
    }
    let raw_contrib = |year: &str| {
        format!(
            r#"{{"msgid":"{}","payer_psn_no":"PA","psn_no":"PC","year":{year},"amount":1}}"#,
            m()
        )
        .into_bytes()
    };
    for year in [
        "1e400",
        "12345678901234567890123456789012345678901",
        "\"2031\"",
        "-1",
        "2031.5",
    ] {
        cases.push(("/v1/contributions", raw_contrib(year), 400, "BAD_REQUEST"));
    }
    let credit = |items: &str| {
        format!(
            r#"{{"msgid":"{}","period":"2030-06","items":{items}}}"#,
            m()
        )
        .into_bytes()
    };
    for (items, code) in [
        ("{}", "BAD_REQUEST"),
        ("[]", "BAD_REQUEST"),
        ("[1]", "BAD_REQUEST"),
        (r#"[{"psn_no":"PA"}]"#, "BAD_REQUEST"),
        (r#"[{"psn_no":"PA","amount":1,"x":1}]"#, "BAD_REQUEST"),
        (r#"[{"psn_no":"PA","amount":0}]"#, "INVALID_AMOUNT"),
    ] {
        cases.push(("/v1/credits", credit(items), 400, code));
    }
    let zero_transfer = format!(
        r#"{{"msgid":"{}","from_psn_no":"PA","to_psn_no":"PD","amount":"0.00"}}"#,
        m()
    );
    cases.push((
        "/v1/wallet/transfers",
        zero_transfer.into_bytes(),
        400,
        "INVALID_AMOUNT",
    ));
    let reversal_self = r#"{"msgid":"same1","omsgid":"same1"}"#;
    cases.push((
        "/v1/reversals",
        reversal_self.as_bytes().to_vec(),
        400,
        "BAD_REQUEST",
    ));

    for (path, body, status, code) in cases {
        let r = w.s.post_raw(Some(&w.admin), path, body.clone()).await;
        assert_eq!(
            (r.status, r.json["err_code"].as_str()),
            (status, Some(code)),
            "{path} {}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)]),
            r.text()
        );
        common::assert_envelope_error(&r.json);
        assert_eq!(w.s.state_hash(), hash, "{path} changed the state");
    }
    // The same through a person's token: 400 comes before 403.
    let r =
        w.s.post_raw(
            Some(&w.pa),
            "/v1/settlements",
            settle("medfee_sumamt", "12.345"),
        )
        .await;
    r.err(400, "INVALID_AMOUNT");
    assert_eq!(w.s.person("PA").await, pa);
    assert_eq!(
        w.s.get(&w.admin, "/v1/stats?from=2030-01&to=2030-12")
            .await
            .ok(),
        stats
    );
    assert_eq!(w.s.state_hash(), hash);
    assert!(w.s.engine.is_running());
    w.s.get_opt(None, "/healthz").await;
}

/// A resident ID with a correct check digit but the birth date `yyyymmdd`.
fn certno_birth(yyyymmdd: &str) -> String {
    gongji_core::certno::certno_with_check(&format!("440106{yyyymmdd}001")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Restart, overload
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn restart_keeps_balances_tokens_replays_and_expiries() {
    // Proves: after serve's shutdown and engine.shutdown(), a server reopened on the same data
    // directory has the same state, the same admin token and tokens, replays msgids with the
    // same bytes, still returns a pending transfer at its expiry, and the audit chain verifies.
    let w = World::new().await;
    let msgid = m();
    let body = json!({"msgid": msgid, "fixmedins_code": H1, "psn_no": "PB",
        "medfee_sumamt": "300", "fund_pay_sumamt": "200"});
    let first = w.s.post(&w.h1, "/v1/settlements", body.clone()).await;
    first.ok();
    let t =
        w.s.post(
            &w.pa,
            "/v1/wallet/transfers",
            json!({"msgid": m(), "from_psn_no": "PA", "to_psn_no": "PD", "amount": 100}),
        )
        .await
        .ok();
    let persons_before = [w.s.person("PA").await, w.s.person("PB").await];
    let hash = w.s.state_hash();
    let World {
        s: srv,
        admin,
        h1,
        pa,
        pd,
        ..
    } = w;
    let dir = srv.stop().await;

    let srv = Server::open(dir, |_| {}).await;
    assert_eq!(srv.admin, admin, "admin.token is kept");
    assert_eq!(srv.state_hash(), hash);
    assert_eq!(
        [srv.person("PA").await, srv.person("PB").await],
        persons_before
    );
    assert_eq!(
        srv.get(&pa, "/v1/persons/PA").await.ok()["acct_balc"],
        "810.00"
    );
    let replay = srv.post(&h1, "/v1/settlements", body.clone()).await;
    assert_eq!(replay.bytes, first.bytes);
    let mut changed = body;
    changed["medfee_sumamt"] = json!("301");
    srv.post(&h1, "/v1/settlements", changed)
        .await
        .err(409, "MSGID_CONFLICT");
    let path = format!("/v1/wallet/transfers/{}", s(&t["transfer_id"]));
    assert_eq!(srv.get(&pd, &path).await.ok()["status"], "pending");
    srv.at("2030-05-21 06:00:00").await;
    assert_eq!(srv.get(&pd, &path).await.ok()["status"], "returned");
    assert_eq!(srv.person("PA").await["acct_balc"], "910.00");
    let audit = srv.get(&admin, "/v1/audit/verify").await.ok();
    assert_eq!(audit["ok"], true);

    // A second restart, with nothing in between, is the same again.
    let hash = srv.state_hash();
    let dir = srv.stop().await;
    let srv = Server::open(dir, |_| {}).await;
    assert_eq!(srv.state_hash(), hash);
    srv.stop().await;
}

#[tokio::test]
async fn overloaded_when_the_queue_is_full() {
    // Proves: a submission larger than the free room in the write queue is 503 OVERLOADED and
    // changes nothing; the same msgids succeed when retried in smaller pieces.
    let srv = Server::open(std::sync::Arc::new(common::TempDir::new()), |c| {
        c.queue_op_count_max = 1;
    })
    .await;
    srv.at(T0).await;
    let hash = srv.state_hash();
    let (m1, m2) = (m(), m());
    let op = |msgid: &str, code: &str| {
        json!({"path": "/v1/institutions", "body": {"msgid": msgid, "fixmedins_code": code,
            "fixmedins_name": "x", "fixmedins_type": "1", "admdvs": "440106"}})
    };
    let r = srv
        .post(
            &srv.admin,
            "/v1/batch",
            json!({"ops": [op(&m1, "A1"), op(&m2, "A2")]}),
        )
        .await;
    r.err(503, "OVERLOADED");
    assert_eq!(srv.state_hash(), hash);
    for (msgid, code) in [(&m1, "A1"), (&m2, "A2")] {
        let out = srv
            .post(&srv.admin, "/v1/batch", json!({"ops": [op(msgid, code)]}))
            .await
            .ok();
        assert_eq!(out["results"][0]["status"], 200);
    }
}

#[tokio::test]
async fn wrong_methods_and_odd_paths_get_the_envelope() {
    // Proves: a wrong method on a known path, an unknown path and an undecodable path segment
    // all answer with the failure envelope (never an empty or plain-text body).
    let w = World::new().await;
    let client = &w.s.client;
    let cases = [
        (reqwest::Method::POST, "/v1/persons/PA"),
        (reqwest::Method::POST, "/v1/stats?from=2030-01&to=2030-02"),
        (reqwest::Method::DELETE, "/v1/settlements/1"),
        (reqwest::Method::PUT, "/v1/persons"),
        (reqwest::Method::GET, "/v1/persons/PA/wallet"),
        (reqwest::Method::POST, "/v1/audit/verify"),
        (reqwest::Method::POST, "/healthz"),
    ];
    for (method, path) in cases {
        let r = client
            .request(method.clone(), format!("{}{path}", w.s.base))
            .bearer_auth(&w.admin)
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
        assert!(status == 404 || status == 405, "{method} {path}: {status}");
        assert_eq!(body["err_code"], "NOT_FOUND", "{method} {path}: {body}");
        common::assert_envelope_error(&body);
    }
    for path in [
        "/v1/persons/%FF",
        "/v1/persons/%FF/entries",
        "/v1/settlements/%FF",
    ] {
        let r = w.s.get(&w.admin, path).await;
        assert!(r.status == 400 || r.status == 404, "{path}: {}", r.text());
        common::assert_envelope_error(&r.json);
    }
    w.s.get(&w.admin, "/v1/persons/%E5%BC%A0")
        .await
        .err(404, "PERSON_NOT_FOUND");
    let long = "P".repeat(31);
    w.s.get(&w.admin, &format!("/v1/persons/{long}"))
        .await
        .err(404, "PERSON_NOT_FOUND");
    // In a write's path a malformed psn_no is a 400, as in a body (before 403 and 404).
    for token in [&w.admin, &w.pa] {
        for (path, body) in [
            (
                format!("/v1/persons/{long}/status"),
                json!({"msgid": m(), "status": "active"}),
            ),
            (format!("/v1/persons/{long}/wallet"), json!({"msgid": m()})),
            ("/v1/persons/P-1/wallet".to_owned(), json!({"msgid": m()})),
        ] {
            w.s.post(token, &path, body).await.err(400, "BAD_REQUEST");
        }
    }
}

#[tokio::test]
async fn limits_are_inclusive() {
    // Proves: the largest values API.md allows are accepted: a 64-character msgid, a
    // 30-character psn_no, 99999999.99 yuan, an ID with check character X.
    let w = World::new().await;
    let psn = "P".repeat(30);
    let x = (0..1000)
        .map(certno)
        .find(|c| c.ends_with('X'))
        .expect("some ID has check character X");
    let body = json!({"msgid": "m".repeat(64), "psn_no": psn, "certno": x, "psn_name": "周",
        "insutype": "310", "admdvs": "440106"});
    assert_eq!(
        w.s.admin_ok("/v1/persons", body).await["psn_no"],
        json!(psn)
    );
    let lower = json!({"msgid": m(), "psn_no": "LOWER", "certno": x.to_lowercase(),
        "psn_name": "周", "insutype": "310", "admdvs": "440106"});
    w.s.post(&w.admin, "/v1/persons", lower)
        .await
        .err(400, "INVALID_CERTNO");
    let out = w.s.settle(H1, &psn, "99999999.99", "99999999.99").await;
    assert_eq!(out["medfee_sumamt"], "99999999.99");
    let out =
        w.s.admin_ok(
            "/v1/credits",
            json!({"msgid": m(), "period": "2030-06",
                   "items": [{"psn_no": psn, "amount": 99999999.99}]}),
        )
        .await;
    assert_eq!(out["credited_sumamt"], "99999999.99");
    let path = format!("/v1/persons/{psn}");
    assert_eq!(
        w.s.get(&w.admin, &path).await.ok()["acct_balc"],
        "99999999.99"
    );
}

#[tokio::test]
async fn a_repeated_key_is_refused() {
    // Proves a body that names a key twice is refused with 400 and changes nothing (a parser
    // keeping the first or the last would settle one of two amounts), and that in a batch
    // only the op with the repeated key fails.
    let w = World::new().await;
    let hash = w.s.state_hash();
    let body = format!(
        r#"{{"msgid":"{}","fixmedins_code":"{H1}","psn_no":"PA","medfee_sumamt":"1.00","medfee_sumamt":"1000.00","fund_pay_sumamt":"0"}}"#,
        m()
    );
    let r = w.s.post_raw(Some(&w.admin), "/v1/settlements", body).await;
    r.err(400, "BAD_REQUEST");
    assert!(s(&r.json["err_msg"]).contains("twice"), "{}", r.text());
    assert_eq!(w.s.state_hash(), hash);

    let batch = format!(
        r#"{{"ops":[{{"path":"/v1/persons/PE/wallet","body":{{"msgid":"{0}a","msgid":"{0}b"}}}},{{"path":"/v1/persons/PE/wallet","body":{{"msgid":"{0}c"}}}}]}}"#,
        m()
    );
    let out = w.s.post_raw(Some(&w.admin), "/v1/batch", batch).await.ok();
    let statuses: Vec<i64> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [400, 200]);
    assert_eq!(out["results"][0]["err_code"], "BAD_REQUEST");
}
