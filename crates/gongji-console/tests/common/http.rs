//! The console over plain HTTP, as a browser would use it: sign-in and pages by cookie.

use super::Server;

pub struct Page {
    pub status: u16,
    pub location: String,
    pub set_cookies: Vec<String>,
    pub body: String,
}

pub async fn send(req: reqwest::RequestBuilder) -> Page {
    let r = req.send().await.expect("request");
    let header = |name: &str| -> Vec<String> {
        r.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    };
    let location = header("location").pop().unwrap_or_default();
    let set_cookies = header("set-cookie");
    Page {
        status: r.status().as_u16(),
        location,
        set_cookies,
        body: r.text().await.expect("body"),
    }
}

pub fn cookie_value(set_cookies: &[String], name: &str) -> String {
    set_cookies
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|rest| rest.split(';').next())
        .expect("cookie set")
        .to_owned()
}

pub fn hidden_csrf(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    body[at..at + 64].to_owned()
}

/// Signs in over HTTP as a browser would; returns the session cookie's value.
pub async fn sign_in(s: &Server, token: &str) -> String {
    let form = send(s.client.get(format!("{}/ui/login", s.base))).await;
    let nonce = cookie_value(&form.set_cookies, "gj_login");
    assert_eq!(hidden_csrf(&form.body), nonce);
    let done = send(
        s.client
            .post(format!("{}/ui/login", s.base))
            .header("cookie", format!("gj_login={nonce}"))
            .form(&[("csrf", nonce.as_str()), ("token", token)]),
    )
    .await;
    assert_eq!(done.status, 303);
    let session = done
        .set_cookies
        .iter()
        .find(|c| c.starts_with("gj_session="))
        .expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/ui"] {
        assert!(session.contains(flag), "{session} has {flag}");
    }
    cookie_value(&done.set_cookies, "gj_session")
}

pub async fn get(s: &Server, session: &str, path: &str) -> Page {
    send(
        s.client
            .get(format!("{}{path}", s.base))
            .header("cookie", format!("gj_session={session}")),
    )
    .await
}
