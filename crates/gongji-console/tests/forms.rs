//! The console's sessions and forms over plain HTTP (no browser): cookie flags, the
//! anti-forgery checks of sign-in and of every write form, hostile paths and queries, and a
//! revoked token ending its session.

mod common;

use common::http::{get, hidden_csrf, send, sign_in};
use common::{cast, Server, H1};
use serde_json::json;

#[tokio::test]
async fn forged_forms_change_nothing() {
    // Proves that a write form without this session's anti-forgery token, or with another
    // session's, is refused before the engine sees it, and that sign-in needs its own nonce.
    let s = Server::start().await;
    let c = cast(&s).await;
    let hash = || s.engine.read(|st| st.state_hash());
    let before = hash();

    // Sign-in posted from elsewhere: no nonce cookie, or a nonce that does not match.
    let forged = send(
        s.client
            .post(format!("{}/ui/login", s.base))
            .form(&[("csrf", "x"), ("token", s.admin.as_str())]),
    )
    .await;
    assert_eq!(forged.status, 403);
    assert!(forged
        .set_cookies
        .iter()
        .all(|c| !c.starts_with("gj_session=")));

    let pb = sign_in(&s, &c.pb).await;
    let admin = sign_in(&s, &s.admin).await;
    let admin_csrf = hidden_csrf(&get(&s, &admin, "/ui/ops").await.body);
    let pb_page = get(&s, &pb, "/ui/persons/PB").await;
    assert_eq!(pb_page.status, 200);
    let pb_csrf = hidden_csrf(&pb_page.body);
    let tid = &c.transfer_id;
    let bid = &c.binding_id;
    for (path, token) in [
        (format!("/ui/transfers/{tid}/accept"), None),
        (format!("/ui/transfers/{tid}/decline"), Some("0".repeat(64))),
        (
            format!("/ui/bindings/{bid}/revoke"),
            Some(admin_csrf.clone()),
        ),
        ("/ui/logout".to_owned(), Some(admin_csrf.clone())),
    ] {
        let mut form = vec![("psn", "PB".to_owned())];
        if let Some(t) = token {
            form.push(("csrf", t));
        }
        let r = send(
            s.client
                .post(format!("{}{path}", s.base))
                .header("cookie", format!("gj_session={pb}"))
                .form(&form),
        )
        .await;
        assert_eq!(r.status, 403, "{path}");
    }
    assert_eq!(hash(), before, "nothing changed");
    assert_eq!(
        get(&s, &pb, "/ui/persons/PB").await.status,
        200,
        "still signed in"
    );

    // With the token the same form works, and the engine's rules still apply: a person may
    // not accept a transfer it did not receive.
    let pa = sign_in(&s, &c.pa).await;
    let pa_page = get(&s, &pa, "/ui/persons/PA").await.body;
    assert!(
        pa_page.contains("id=\"pending-none\""),
        "the sender has nothing waiting"
    );
    assert!(
        pb_page.body.contains(&format!("id=\"accept-{tid}\"")),
        "the receiver has it"
    );
    let pa_csrf = hidden_csrf(&pa_page);
    let r = send(
        s.client
            .post(format!("{}/ui/transfers/{tid}/accept", s.base))
            .header("cookie", format!("gj_session={pa}"))
            .form(&[("csrf", pa_csrf.as_str())]),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(r.location.ends_with("refused=FORBIDDEN"), "{}", r.location);
    assert_eq!(hash(), before);
    let r = send(
        s.client
            .post(format!("{}/ui/transfers/{tid}/decline", s.base))
            .header("cookie", format!("gj_session={pb}"))
            .form(&[("csrf", pb_csrf.as_str())]),
    )
    .await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (303, "/ui/persons/PB?done=1")
    );
    let t = s
        .ok(
            &s.admin,
            "GET",
            &format!("/v1/wallet/transfers/{tid}"),
            None,
        )
        .await;
    assert_eq!(t["status"], "declined");
    let r = send(
        s.client
            .post(format!("{}/ui/transfers/{tid}/accept", s.base))
            .header("cookie", format!("gj_session={pb}"))
            .form(&[("csrf", pb_csrf.as_str())]),
    )
    .await;
    assert!(
        r.location.ends_with("refused=NOT_PENDING"),
        "{}",
        r.location
    );
}

#[tokio::test]
async fn hostile_input_is_escaped_or_refused() {
    // Proves that markup in every echoed field (paths, search, range, refused code, language
    // switch) comes back escaped or not at all, and that the pages never redirect off-site.
    let s = Server::start().await;
    let _c = cast(&s).await;
    let admin = sign_in(&s, &s.admin).await;
    let x = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    for path in [
        format!("/ui/persons/{x}"),
        format!("/ui/institutions/{x}"),
        format!("/ui/transfers/{x}"),
        format!("/ui/search?q={x}"),
        format!("/ui/search?q=4401{x}**********"),
        format!("/ui/?from={x}&to={x}&prov={x}"),
        format!("/ui/?from=2030-01&to=2030-05&prov=44{x}"),
        format!("/ui/institutions/{H1}?date={x}"),
        format!("/ui/persons/PB?after={x}"),
        format!("/ui/persons/PB?refused={x}&done={x}"),
        format!("/ui/stats.csv?from={x}&to=2030-05"),
    ] {
        let p = get(&s, &admin, &path).await;
        assert!(!p.body.contains("<script>alert"), "{path}: {}", p.body);
        assert!(
            p.status == 200 || p.status == 303 || (400..500).contains(&p.status),
            "{path}"
        );
    }
    // Masked certnos: one match goes to the person; several are listed; none is 404.
    let full = gongji_core::certno::certno_with_check("44010619800101002").expect("certno");
    let mask = gongji_core::certno::mask_certno(&full);
    let one = get(&s, &admin, &format!("/ui/search?q={mask}")).await;
    assert_eq!((one.status, one.location.as_str()), (303, "/ui/persons/PB"));
    let twin = (1..=12)
        .flat_map(|month| (1..=28).map(move |day| format!("4401061980{month:02}{day:02}002")))
        .filter_map(|first17| gongji_core::certno::certno_with_check(&first17))
        .find(|c| *c != full && gongji_core::certno::mask_certno(c) == mask)
        .expect("a certno sharing PB's mask");
    s.admin_post(
        "/v1/persons",
        json!({"psn_no": "PTWIN", "certno": twin, "psn_name": "李四", "insutype": "390",
               "admdvs": "440106"}),
    )
    .await;
    let both = get(&s, &admin, &format!("/ui/search?q={mask}")).await;
    assert_eq!(both.status, 200);
    assert!(
        both.body.contains("href=\"/ui/persons/PB\""),
        "{}",
        both.body
    );
    assert!(
        both.body.contains("href=\"/ui/persons/PTWIN\""),
        "{}",
        both.body
    );
    let nobody = get(&s, &admin, "/ui/search?q=9999**********0000").await;
    assert_eq!(nobody.status, 404);
    let found = get(&s, &admin, &format!("/ui/search?q={full}")).await;
    assert_eq!(
        (found.status, found.location.as_str()),
        (303, "/ui/persons/PB")
    );
    let echoed = get(&s, &admin, &format!("/ui/search?q={x}")).await;
    assert!(echoed
        .body
        .contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let range = get(&s, &admin, &format!("/ui/?from={x}&to=2030-05")).await;
    assert_eq!(range.status, 400);
    assert!(range.body.contains("value=\"&lt;script&gt;"));
    for back in [
        "https://evil.example/",
        "//evil.example/",
        "/ui//evil.example",
    ] {
        let p = send(
            s.client
                .get(format!("{}/ui/lang/en", s.base))
                .query(&[("back", back)]),
        )
        .await;
        assert_eq!((p.status, p.location.as_str()), (303, "/ui/"), "{back}");
    }
}

#[tokio::test]
async fn sessions_end_with_their_token_and_respect_roles() {
    // Proves a revoked token ends its console session, that a person's session cannot read
    // another person, and that the CSV is the admin's alone.
    let s = Server::start().await;
    let c = cast(&s).await;
    let pb = sign_in(&s, &c.pb).await;
    assert_eq!(get(&s, &pb, "/ui/persons/PB").await.status, 200);
    assert_eq!(get(&s, &pb, "/ui/persons/PA").await.status, 403);
    assert_eq!(
        get(&s, &pb, "/ui/stats.csv?from=2030-01&to=2030-05")
            .await
            .status,
        403
    );
    let h1 = sign_in(&s, &c.h1).await;
    let seen = get(&s, &h1, "/ui/persons/PB").await;
    assert_eq!(seen.status, 200, "institutions read persons (API.md)");
    assert!(
        !seen.body.contains("id=\"entries\""),
        "but not their entries"
    );
    // Revoke PB's token through the API: the session goes with it.
    let path = format!("/v1/tokens/{}/revoke", c.pb_token_id);
    let (status, _) = s
        .api(&s.admin, "POST", &path, Some(json!({"msgid": common::m()})))
        .await;
    assert_eq!(status, 200);
    let after = get(&s, &pb, "/ui/persons/PB").await;
    assert_eq!((after.status, after.location.as_str()), (303, "/ui/login"));
}

#[tokio::test]
async fn the_operations_page_shows_the_writers_last_minutes() {
    // Proves: the operations page lists the load between the writer's own samples, taken
    // whether or not the page was open (here every second), one row per interval, and the
    // intervals together count the writes made while they ran.
    let s = Server::start_sampling_each_second().await;
    let admin = sign_in(&s, &s.admin).await;
    let wait_for = |n: usize| {
        let engine = s.engine.clone();
        async move {
            let started = std::time::Instant::now();
            while engine.load_samples().len() < n {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(15),
                    "no samples"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    wait_for(1).await;
    cast(&s).await;
    let before = s.engine.load_samples().len();
    wait_for(before + 2).await;
    let samples = s.engine.load_samples();
    let page = get(&s, &admin, "/ui/ops").await;
    assert_eq!(page.status, 200);
    let table = &page.body[page.body.find("id=\"load\"").expect("the load table")..];
    let table = &table[..table.find("</table>").expect("table end")];
    let rows = table.matches("<tr>").count() - 1;
    // The page reads the samples again: the writer may have added one meanwhile.
    assert!(
        rows + 1 >= samples.len().min(61),
        "{rows} rows for {} samples",
        samples.len()
    );
    let applied = samples.last().unwrap().ops_applied_total - samples[0].ops_applied_total;
    assert!(applied >= 10, "the cast's writes are counted: {applied}");
}
