//! Sign-in, sign-out and the language switch.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{home_of, query, signed_in, ConsoleState};
use crate::form;
use crate::i18n::Lang;
use crate::layout::{bare, html_response, notice, redirect};
use crate::session::{
    cookie, random_hex, secret_eq, set_cookie, LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE,
    SESSION_SECONDS_MAX,
};

/// Seconds the sign-in form stays valid.
const LOGIN_FORM_SECONDS_MAX: u64 = 3600;

fn login_page(lang: Lang, status: StatusCode, error: Option<&str>) -> Response {
    let nonce = random_hex();
    let body = html! {
        @if let Some(e) = error { (notice("err", e)) }
        form method="post" action="/ui/login" id="login" {
            input type="hidden" name="csrf" value=(nonce);
            label for="token" { (lang.t("Token")) }
            input type="password" name="token" id="token" autocomplete="off" required maxlength="200";
            button type="submit" { (lang.t("Sign in")) }
        }
        p.muted {
            a href="/ui/lang/en?back=%2Fui%2Flogin" { "English" } " · "
            a href="/ui/lang/zh?back=%2Fui%2Flogin" { "中文" }
        }
    };
    let mut response = html_response(status, bare(lang, lang.t("Sign in"), body));
    let value = set_cookie(LOGIN_COOKIE, &nonce, LOGIN_FORM_SECONDS_MAX);
    response
        .headers_mut()
        .append(header::SET_COOKIE, value.parse().expect("cookie header"));
    response
}

pub async fn form(State(console): ConsoleState, headers: HeaderMap, uri: Uri) -> Response {
    if let Ok(ctx) = signed_in(&console, &headers, &uri) {
        return redirect(&home_of(&ctx.actor));
    }
    login_page(Lang::of(&headers), StatusCode::OK, None)
}

/// Exchanges a token for a session. The form's anti-forgery value must equal the sign-in
/// cookie set with it (double submit), so another site cannot sign a browser in.
pub async fn submit(State(console): ConsoleState, headers: HeaderMap, body: Body) -> Response {
    let lang = Lang::of(&headers);
    let pairs = form::read(body).await.unwrap_or_default();
    let nonce_ok = match (cookie(&headers, LOGIN_COOKIE), form::get(&pairs, "csrf")) {
        (Some(c), Some(f)) => secret_eq(c, f),
        _ => false,
    };
    if !nonce_ok {
        let e = lang.t("The form has expired; please try again.");
        return login_page(lang, StatusCode::FORBIDDEN, Some(e));
    }
    let token = form::get(&pairs, "token").unwrap_or("").trim();
    let hash = gongji_server::token_hash(token);
    let actor = match console.engine.read(|s| s.token_actor(&hash)) {
        Some((_, actor)) if !token.is_empty() => actor,
        _ => {
            let e = lang.t("The token is unknown or revoked.");
            return login_page(lang, StatusCode::UNAUTHORIZED, Some(e));
        }
    };
    let Some((id, _)) = console.sessions.open(hash) else {
        let e = lang.t("Too many sessions; try again later.");
        return login_page(lang, StatusCode::SERVICE_UNAVAILABLE, Some(e));
    };
    let mut response = redirect(&home_of(&actor));
    let h = response.headers_mut();
    let session = set_cookie(SESSION_COOKIE, &id, SESSION_SECONDS_MAX);
    h.append(header::SET_COOKIE, session.parse().expect("cookie"));
    let spent = set_cookie(LOGIN_COOKIE, "", 0);
    h.append(header::SET_COOKIE, spent.parse().expect("cookie"));
    response
}

pub async fn logout(
    State(console): ConsoleState,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    if let Err(r) = super::signed_in_form(&console, &headers, &uri, body).await {
        return r;
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        console.sessions.close(id);
    }
    let mut response = redirect("/ui/login");
    let gone = set_cookie(SESSION_COOKIE, "", 0);
    response
        .headers_mut()
        .append(header::SET_COOKIE, gone.parse().expect("cookie"));
    response
}

/// A `back` path is followed only if it is one of the console's own (no open redirect).
fn safe_back(back: Option<&str>) -> &str {
    match back {
        Some(b)
            if b.starts_with("/ui/")
                && !b.contains("//")
                && b.len() <= 512
                && b.bytes().all(|c| c.is_ascii_graphic() && c != b'\\') =>
        {
            b
        }
        _ => "/ui/",
    }
}

pub async fn set_lang(Path(lang): Path<String>, uri: Uri) -> Response {
    let value = if lang == "en" { "en" } else { "zh" };
    let q = query(&uri);
    let back = safe_back(form::get(&q, "back")).to_owned();
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, back),
            (
                header::SET_COOKIE,
                set_cookie(LANG_COOKIE, value, 365 * 86400),
            ),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn back_links_stay_inside_the_console() {
        // Proves the language switch cannot be used as an open redirect.
        assert_eq!(
            super::safe_back(Some("/ui/persons/P1?after=3")),
            "/ui/persons/P1?after=3"
        );
        assert_eq!(super::safe_back(Some("//evil.example/ui/")), "/ui/");
        assert_eq!(super::safe_back(Some("/ui//evil.example")), "/ui/");
        assert_eq!(super::safe_back(Some("https://evil.example/")), "/ui/");
        assert_eq!(super::safe_back(Some("/ui/\\evil")), "/ui/");
        assert_eq!(super::safe_back(None), "/ui/");
    }
}
