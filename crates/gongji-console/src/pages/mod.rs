//! The pages. Each handler signs the request in (or redirects to `/ui/login`), applies the
//! API's role rule for what it shows, reads through `Engine::read` and renders.

pub mod institution;
pub mod login;
pub mod ops;
pub mod overview;
pub mod person;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use gongji_core::{Actor, Applied, Body, Command, Msgid, Rejection};
use gongji_server::WriteRequest;
use maud::Markup;

use crate::form::{self, Pairs};
use crate::i18n::Lang;
use crate::layout::{self, redirect, Ctx};
use crate::session::{cookie, secret_eq, SESSION_COOKIE};
use crate::Console;

pub type ConsoleState = State<Arc<Console>>;

/// Not signed in (no session, an expired one, or its token revoked): the answer is the
/// redirect to `/ui/login`.
#[derive(Debug)]
pub struct SignIn;

impl From<SignIn> for Response {
    fn from(_: SignIn) -> Response {
        redirect("/ui/login")
    }
}

/// The signed-in context, or the redirect to sign-in.
pub fn signed_in(console: &Console, headers: &HeaderMap, uri: &Uri) -> Result<Ctx, SignIn> {
    let to_login = || SignIn;
    let id = cookie(headers, SESSION_COOKIE).ok_or_else(to_login)?;
    let session = console.sessions.get(id).ok_or_else(to_login)?;
    // The token is looked up again on every request: a revoked token ends the session.
    let (_, actor) = console
        .engine
        .read(|s| s.token_actor(&session.token_hash))
        .ok_or_else(|| {
            console.sessions.close(id);
            to_login()
        })?;
    Ok(Ctx {
        lang: Lang::of(headers),
        actor,
        csrf: session.csrf,
        here: uri
            .path_and_query()
            .map_or("/ui/".to_owned(), |p| p.as_str().to_owned()),
    })
}

/// Whether a posted form carries this session's anti-forgery token.
pub fn csrf_ok(ctx: &Ctx, pairs: &Pairs) -> bool {
    form::get(pairs, "csrf").is_some_and(|t| secret_eq(t, &ctx.csrf))
}

/// A posted form of a signed-in session: the context and the fields, or the answer (the
/// redirect to sign-in, or 403 when the form lacks this session's anti-forgery token).
pub async fn signed_in_form(
    console: &Console,
    headers: &HeaderMap,
    uri: &Uri,
    body: axum::body::Body,
) -> Result<(Ctx, Pairs), Response> {
    let ctx = signed_in(console, headers, uri).map_err(Response::from)?;
    let pairs = form::read(body).await.unwrap_or_default();
    if !csrf_ok(&ctx, &pairs) {
        return Err(layout::forbidden(&ctx));
    }
    Ok((ctx, pairs))
}

/// `/ui`: each role's home page.
pub async fn home(State(console): ConsoleState, headers: HeaderMap, uri: Uri) -> Response {
    match signed_in(&console, &headers, &uri) {
        Ok(ctx) => redirect(&home_of(&ctx.actor)),
        Err(r) => r.into(),
    }
}

pub fn home_of(actor: &Actor) -> String {
    match actor {
        Actor::Admin => "/ui/".to_owned(),
        Actor::Institution(c) => format!("/ui/institutions/{c}"),
        Actor::Person(p) => format!("/ui/persons/{p}"),
    }
}

/// Submits one write under the session's actor through the API's write path: the same
/// value and role checks (`validate_command`), the same queue, writer and journal. The
/// console's msgids are random (`ui-…`) in the actor's own scope: a form posted twice is two
/// requests, and the second is refused by the business rule (`NOT_PENDING`,
/// `ALREADY_REVOKED`).
pub async fn write(console: &Console, actor: &Actor, body: Body) -> Result<Applied, Rejection> {
    let msgid =
        Msgid::from(&format!("ui-{}", &crate::session::random_hex()[..32])).expect("35 characters");
    let command = Command {
        msgid,
        time: 0,
        actor: actor.clone(),
        body,
    };
    gongji_core::validate_command(&command)?;
    let request = WriteRequest {
        msgid,
        inf_time: None,
        actor: actor.clone(),
        body: command.body,
    };
    let mut results = crate::submit(&console.engine, vec![request]).await?;
    results.pop().expect("one result")
}

/// After a write: back to `to` with the outcome in the query (post/redirect/get).
pub fn after_write(to: &str, result: &Result<Applied, Rejection>) -> Response {
    match result {
        Ok(_) => redirect(&format!("{to}?done=1")),
        Err(r) => redirect(&format!("{to}?refused={}", r.code.as_str())),
    }
}

/// The outcome notice of a redirected write, from `done` / `refused` in the query. The
/// refused code is shown only if it looks like an err_code; anything else is dropped.
pub fn outcome(lang: Lang, q: &Pairs) -> Option<Markup> {
    if form::get(q, "done") == Some("1") {
        return Some(layout::notice("ok", lang.t("Done.")));
    }
    let code = form::get(q, "refused")?;
    let plausible = !code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    plausible.then(|| layout::notice("err", &format!("{}: {code}", lang.t("Refused"))))
}

pub fn query(uri: &Uri) -> Pairs {
    form::parse(uri.query().unwrap_or(""))
}
