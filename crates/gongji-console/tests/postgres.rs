//! The console over the PostgreSQL store (`gongji serve --store postgres://…`): the same
//! pages, a write from a form, and the audit button checking PostgreSQL's own journal.

mod common;

use common::http::{get, hidden_csrf, send, sign_in};
use common::{cast, Server};
use gongji_pg::testkit::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_on_the_postgres_store() {
    // Proves the console depends on the engine alone: on PostgreSQL it shows the API's person,
    // its form write is journaled there, and its audit verification is PostgreSQL's.
    let db = tokio::task::spawn_blocking(TestDb::new)
        .await
        .expect("test db");
    let s = Server::start_postgres(db.url.clone()).await;
    let c = cast(&s).await;
    let pb = sign_in(&s, &c.pb).await;
    let page = get(&s, &pb, "/ui/persons/PB").await;
    assert_eq!(page.status, 200);
    let api = s.ok(&c.pb, "GET", "/v1/persons/PB", None).await;
    for field in ["acct_balc", "wallet_balc", "certno"] {
        let v = api[field].as_str().expect(field);
        assert!(page.body.contains(&format!(">{v}</div>")), "{field} {v}");
    }
    let csrf = hidden_csrf(&page.body);
    let tid = &c.transfer_id;
    let accept = s
        .client
        .post(format!("{}/ui/transfers/{tid}/accept", s.base))
        .header("cookie", format!("gj_session={pb}"))
        .form(&[("csrf", csrf.as_str())]);
    let r = send(accept).await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (303, "/ui/persons/PB?done=1")
    );
    let after = s.ok(&c.pb, "GET", "/v1/persons/PB", None).await;
    assert_eq!(after["wallet_balc"], "100.00");

    let admin = sign_in(&s, &s.admin).await;
    let ops = get(&s, &admin, "/ui/ops").await;
    let csrf = hidden_csrf(&ops.body);
    let verify = s
        .client
        .post(format!("{}/ui/ops/verify", s.base))
        .header("cookie", format!("gj_session={admin}"))
        .form(&[("csrf", csrf.as_str())]);
    let shown = send(verify).await;
    let audit = s.ok(&s.admin, "GET", "/v1/audit/verify", None).await;
    assert_eq!(audit["ok"], true);
    let head = audit["head_hash"].as_str().expect("head hash");
    assert!(
        shown.body.contains(head),
        "the page shows PostgreSQL's head {head}"
    );
    // The page's check was PostgreSQL's own (the file store has none).
    let engine = s.engine.clone();
    let own = tokio::task::spawn_blocking(move || engine.verify_store().map(|r| r.is_ok()))
        .await
        .expect("verify task");
    assert_eq!(own, Some(true));
    drop(s);
    // The database goes after the server, outside the runtime (its client blocks).
    tokio::task::spawn_blocking(move || drop(db))
        .await
        .expect("drop db");
}
