//! The console in real headless Chromium (Debian's `chromium` and `chromium-driver`), over a
//! real server (API and console on one listener): sign-in, every page, figures against the
//! API, a transfer accepted from the page, the role walls, sign-out, hostile input, a forged
//! form. Screenshots go to `$CARGO_TARGET_TMPDIR/console-screenshots/`.

mod common;

use common::webdriver::Browser;
use common::{cast, Server, DAY, H1, H2, HOSTILE_NAME};
use serde_json::{json, Value};

async fn sign_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/ui/login")).await;
    b.type_into("#token", token).await;
    b.click_navigate("#login button[type=submit]").await;
}

async fn sign_out(b: &Browser, base: &str) {
    b.click_navigate("#sign-out").await;
    b.wait_url("/ui/login").await;
    b.goto(&format!("{base}/ui/")).await;
    assert!(
        b.url().await.ends_with("/ui/login"),
        "signed out, sent to sign-in"
    );
}

/// The API's person as the page shows it: the cards, bindings and entries.
async fn assert_person_page_equals_api(b: &Browser, s: &Server, token: &str, psn: &str) {
    let p = s
        .ok(token, "GET", &format!("/v1/persons/{psn}"), None)
        .await;
    for (id, field) in [
        ("#acct-balc", "acct_balc"),
        ("#wallet-balc", "wallet_balc"),
        ("#certno", "certno"),
        ("#psn-name", "psn_name"),
        ("#insutype", "insutype"),
        ("#admdvs", "admdvs"),
        ("#status", "status"),
    ] {
        assert_eq!(
            b.text(id).await,
            p[field].as_str().expect(field),
            "{psn} {field}"
        );
    }
    for (table, field) in [
        ("given", "bindings_given"),
        ("received", "bindings_received"),
    ] {
        let ids = b
            .texts(&format!(
                "#bindings-{table} tr[data-binding-id] td:first-child"
            ))
            .await;
        let api: Vec<&str> = p[field]
            .as_array()
            .expect(field)
            .iter()
            .map(|b| b["binding_id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids, api, "{psn} {field} in priority order");
    }
    let e = s
        .ok(
            token,
            "GET",
            &format!("/v1/persons/{psn}/entries?limit=50"),
            None,
        )
        .await;
    let rows = b.texts("#entries tr td:nth-child(4)").await;
    let api: Vec<&str> = e["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["amount"].as_str().expect("amount"))
        .collect();
    assert!(!api.is_empty());
    assert_eq!(rows, api, "{psn} entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() {
    // Proves the console's pages show what the API answers, under the API's role rules, in a
    // real browser; that writes from the page go through the engine; that a forged form and
    // markup in echoed fields change and inject nothing.
    let s = Server::start().await;
    let c = cast(&s).await;
    let base = s.base.clone();
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let b = Browser::start(&shots).await;

    // Signed out: every page sends the browser to sign-in.
    for path in [
        "/ui/",
        "/ui/persons/PA",
        "/ui/ops",
        &format!("/ui/institutions/{H1}"),
    ] {
        b.goto(&format!("{base}{path}")).await;
        assert!(
            b.url().await.ends_with("/ui/login"),
            "{path} while signed out"
        );
    }
    b.screenshot("login").await;
    sign_in(&b, &base, "not-a-token").await;
    assert!(b.url().await.ends_with("/ui/login"));
    assert!(b.exists(".notice.err").await, "an unknown token is refused");

    // Admin: the session cookie is HttpOnly, SameSite=Strict and expires.
    sign_in(&b, &base, &s.admin).await;
    assert!(
        b.url().await.ends_with("/ui/"),
        "admin lands on the overview"
    );
    let cookie = b.cookie("gj_session").await.expect("session cookie");
    assert_eq!(cookie["httpOnly"], json!(true));
    assert_eq!(cookie["sameSite"], json!("Strict"));
    assert!(cookie["expiry"].as_u64().is_some(), "{cookie}");
    assert_eq!(
        b.script("return document.cookie", json!(null)).await,
        json!(""),
        "not readable by script"
    );

    // Overview: the range total equals GET /v1/stats for the same range, cell by cell.
    let admin = s.admin.clone();
    for (range, query) in [
        ("all", "from=2030-01&to=2030-12"),
        ("prov 44", "from=2030-05&to=2030-06&prov=44"),
        ("prov 11", "from=2030-05&to=2030-05&prov=11"),
    ] {
        b.goto(&format!("{base}/ui/?{query}")).await;
        let api = s
            .ok(&admin, "GET", &format!("/v1/stats?{query}"), None)
            .await;
        let mut nonzero = 0;
        for key in [
            "total",
            "account_draw",
            "account_draw.same_pool",
            "account_draw.cross_pool",
            "wallet_transfer",
            "wallet_transfer.in_province",
            "wallet_transfer.cross_province",
        ] {
            let cell = key.split('.').fold(&api, |v: &Value, k| &v[k]);
            let count = b.text(&format!("[id='sum-{key}-count']")).await;
            let amount = b.text(&format!("[id='sum-{key}-amount']")).await;
            assert_eq!(count, cell["count"].to_string(), "{range} {key} count");
            assert_eq!(
                amount,
                cell["amount"].as_str().expect("amount"),
                "{range} {key} amount"
            );
            nonzero += usize::from(count != "0");
        }
        if range != "prov 11" {
            assert!(nonzero >= 2, "{range}: the cast's mutual aid shows");
        }
    }
    b.goto(&format!("{base}/ui/?from=2030-01&to=2030-06")).await;
    assert!(b.exists("#chart-count svg rect").await && b.exists("#chart-amount svg").await);
    b.screenshot("overview").await;
    // The CSV link, fetched with the browser's session (the page's policy forbids scripts
    // from fetching anything).
    let href = b
        .script("return document.getElementById('csv').href", json!(null))
        .await;
    let session = b.cookie("gj_session").await.expect("session")["value"]
        .as_str()
        .expect("v")
        .to_owned();
    let csv = s
        .client
        .get(href.as_str().expect("href"))
        .header("cookie", format!("gj_session={session}"))
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("csv text");
    let may = csv
        .lines()
        .find(|l| l.starts_with("2030-05,"))
        .expect("May row");
    let api = s
        .ok(&admin, "GET", "/v1/stats?from=2030-05&to=2030-05", None)
        .await;
    assert!(
        may.starts_with(&format!(
            "2030-05,{},{}",
            api["total"]["count"],
            api["total"]["amount"].as_str().expect("amount")
        )),
        "{may}"
    );

    // Person pages equal the API's view; the institution page the reconciliation.
    for psn in ["PA", "PB"] {
        b.goto(&format!("{base}/ui/persons/{psn}")).await;
        assert_person_page_equals_api(&b, &s, &admin, psn).await;
    }
    b.screenshot("person").await;
    // Two more settlements at H1, all cash (no balance moves), the newer one cancelled: the
    // institution page lists its settlements newest first, each as the API shows it.
    let mut made = Vec::new();
    for fee in ["2.00", "3.00"] {
        let v = s
            .admin_post(
                "/v1/settlements",
                json!({"fixmedins_code": H1, "psn_no": "PA", "medfee_sumamt": fee,
                       "fund_pay_sumamt": "0.00", "acct_used_flag": "0"}),
            )
            .await;
        made.push(v["setl_id"].as_str().expect("id").to_owned());
    }
    s.admin_post(&format!("/v1/settlements/{}/cancel", made[1]), json!({}))
        .await;
    b.goto(&format!("{base}/ui/institutions/{H1}?date={DAY}"))
        .await;
    let ids = b.texts("#recent tr td:first-child").await;
    assert_eq!(
        ids,
        vec![made[1].clone(), made[0].clone(), c.setl_id.clone()]
    );
    for id in &ids {
        let api = s
            .ok(&admin, "GET", &format!("/v1/settlements/{id}"), None)
            .await;
        let row = b.texts(&format!("[id='setl-{id}'] td")).await;
        assert_eq!(row[2], api["psn_no"].as_str().expect("psn_no"), "{id}");
        assert_eq!(
            row[3],
            api["medfee_sumamt"].as_str().expect("medfee"),
            "{id}"
        );
        let status = if api["status"] == "cancelled" {
            "已撤销"
        } else {
            "已结算"
        };
        assert_eq!(row[6], status, "{id}: {api}");
    }
    let recon = s
        .ok(
            &admin,
            "GET",
            &format!("/v1/reconciliation?fixmedins_code={H1}&date={DAY}"),
            None,
        )
        .await;
    let row = b.texts(&format!("[id='recon-{DAY}'] td")).await;
    let want: Vec<String> = std::iter::once(DAY.to_owned())
        .chain(std::iter::once(recon["setl_count"].to_string()))
        .chain(
            [
                "medfee_sumamt",
                "fund_pay_sumamt",
                "acct_pay",
                "wallet_pay",
                "acct_mulaid_pay",
                "psn_cash_pay",
            ]
            .iter()
            .map(|k| recon[*k].as_str().expect(k).to_owned()),
        )
        .collect();
    assert_eq!(row, want);
    assert_eq!(
        b.text("#inst-name").await,
        HOSTILE_NAME,
        "markup shown as text"
    );
    assert!(
        !b.source().await.contains("<img src=x"),
        "the hostile name is escaped"
    );
    assert!(!b.alert_open().await);
    b.screenshot("institution").await;

    // Operations: the audit button verifies the journal like GET /v1/audit/verify.
    b.goto(&format!("{base}/ui/ops")).await;
    assert_eq!(b.text("#health").await, "运行中");
    b.click_navigate("#verify button").await;
    b.wait_url("/ui/ops/verify").await;
    let audit = s.ok(&admin, "GET", "/v1/audit/verify", None).await;
    assert!(b
        .text("#verify-result")
        .await
        .contains(audit["head_hash"].as_str().expect("hash")));
    b.screenshot("ops").await;

    // Hostile search strings and ranges come back as text.
    let hostile = "<script>alert(1)</script>";
    b.goto(&format!(
        "{base}/ui/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    ))
    .await;
    assert!(b.text("#searched").await.contains(hostile));
    b.goto(&format!("{base}/ui/?from=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E&to=2030-05&prov=%3Csvg%20onload%3Dalert(1)%3E")).await;
    assert!(
        b.exists(".notice.err").await,
        "a malformed range is refused"
    );
    let src = b.source().await;
    assert!(
        !src.contains("<script>alert") && !src.contains("<svg onload"),
        "escaped"
    );
    assert!(!b.alert_open().await, "no injected script ran");
    b.goto(&format!("{base}/ui/lang/en?back=%2Fui%2Fops")).await;
    assert_eq!(b.text("#health").await, "running", "English on request");
    b.goto(&format!("{base}/ui/lang/zh?back=%2Fui%2F")).await;
    sign_out(&b, &base).await;

    // A person: only itself, no institution, no statistics, no operations.
    sign_in(&b, &base, &c.pb).await;
    assert!(
        b.url().await.ends_with("/ui/persons/PB"),
        "a person lands on its own page"
    );
    assert_person_page_equals_api(&b, &s, &c.pb, "PB").await;
    for path in [
        "/ui/persons/PA",
        &format!("/ui/institutions/{H1}"),
        "/ui/ops",
    ] {
        b.goto(&format!("{base}{path}")).await;
        assert!(b.exists(".notice.err").await, "{path}: refused");
        assert!(
            !b.exists("#acct-balc").await && !b.exists("#recon").await,
            "{path}: nothing shown"
        );
    }
    b.goto(&format!("{base}/ui/")).await;
    assert!(
        b.url().await.ends_with("/ui/persons/PB"),
        "no statistics for a person"
    );

    // A forged form without the anti-forgery token changes nothing.
    let tid = c.transfer_id.clone();
    let before = s.ok(&admin, "GET", "/v1/persons/PB", None).await;
    b.script_navigate(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0]; document.body.appendChild(f); f.submit();",
        json!(format!("/ui/transfers/{tid}/accept")),
    ).await;
    assert!(b.exists(".notice.err").await, "the forged form is refused");
    let t = s
        .ok(&admin, "GET", &format!("/v1/wallet/transfers/{tid}"), None)
        .await;
    assert_eq!(t["status"], "pending");
    assert_eq!(s.ok(&admin, "GET", "/v1/persons/PB", None).await, before);

    // The transfer waits on the receiver's page (and opens by id); accepting it there moves
    // the money.
    b.goto(&format!("{base}/ui/persons/PB")).await;
    assert!(
        b.exists(&format!(
            "#pending tr[data-transfer-id='{tid}'] #accept-{tid}"
        ))
        .await
    );
    b.type_into("#transfer-lookup input[name=id]", &tid).await;
    b.click_navigate("#transfer-lookup button").await;
    assert!(b.url().await.ends_with(&format!("/ui/transfers/{tid}")));
    b.screenshot("transfer").await;
    b.goto(&format!("{base}/ui/persons/PB")).await;
    b.click_navigate(&format!("#accept-{tid}")).await;
    b.wait_url("/ui/persons/PB?done=1").await;
    let after = s.ok(&c.pb, "GET", "/v1/persons/PB", None).await;
    assert_eq!(before["wallet_balc"], "0.00");
    assert_eq!(after["wallet_balc"], "100.00");
    assert_eq!(b.text("#wallet-balc").await, "100.00");
    assert!(b.exists("#pending-none").await, "no longer waiting");
    let t = s
        .ok(&admin, "GET", &format!("/v1/wallet/transfers/{tid}"), None)
        .await;
    assert_eq!(t["status"], "accepted");
    assert_person_page_equals_api(&b, &s, &c.pb, "PB").await;

    // Revoking the binding from the receiver's page, through the engine's rules.
    let bid = c.binding_id.clone();
    let active = |p: &Value| {
        p["bindings_received"]
            .as_array()
            .expect("list")
            .iter()
            .any(|b| b["binding_id"] == json!(bid) && b["status"] == "active")
    };
    assert!(active(&s.ok(&c.pb, "GET", "/v1/persons/PB", None).await));
    b.click_navigate(&format!(
        "#bindings-received tr[data-binding-id='{bid}'] button"
    ))
    .await;
    b.wait_url("done=1").await;
    let p = s.ok(&c.pb, "GET", "/v1/persons/PB", None).await;
    assert!(!active(&p), "revoked: {p}");
    assert_person_page_equals_api(&b, &s, &c.pb, "PB").await;
    b.screenshot("person-after").await;
    sign_out(&b, &base).await;

    // An institution: its own page only.
    sign_in(&b, &base, &c.h1).await;
    assert!(b.url().await.ends_with(&format!("/ui/institutions/{H1}")));
    b.goto(&format!("{base}/ui/institutions/{H2}")).await;
    assert!(b.exists(".notice.err").await && !b.exists("#recon").await);
    sign_out(&b, &base).await;
    let _ = c.setl_id;
    let _ = c.pa;
    b.close().await;
}
