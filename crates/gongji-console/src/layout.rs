//! The page frame, the stylesheet and the responses every page shares.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use gongji_core::Actor;
use maud::{html, Markup, DOCTYPE};

use crate::i18n::Lang;

const CSS: &str = include_str!("console.css");

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// Who is signed in and what the frame needs to show.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub lang: Lang,
    pub actor: Actor,
    pub csrf: String,
    /// The page's own path and query, for the language switch to come back to.
    pub here: String,
}

/// Security headers of every console page: no framing, no external anything, no sniffing.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        markup.into_string(),
    )
        .into_response()
}

pub fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

pub fn actor_label(lang: Lang, actor: &Actor) -> String {
    match actor {
        Actor::Admin => lang.t("admin").to_owned(),
        Actor::Institution(c) => format!("{} {}", lang.t("institution"), c),
        Actor::Person(p) => format!("{} {}", lang.t("person"), p),
    }
}

/// A hidden anti-forgery field.
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

pub fn frame(ctx: &Ctx, title: &str, body: Markup) -> Markup {
    let lang = ctx.lang;
    let other = match lang {
        Lang::Zh => ("en", "English"),
        Lang::En => ("zh", "中文"),
    };
    html! {
        (DOCTYPE)
        html lang=(lang.html_lang()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t("Gongji console")) }
                link rel="stylesheet" href="/ui/console.css";
            }
            body {
                header {
                    strong { (lang.t("Gongji console")) }
                    nav {
                        @match &ctx.actor {
                            Actor::Admin => {
                                a href="/ui/" { (lang.t("Overview")) }
                                a href="/ui/ops" { (lang.t("Operations")) }
                            }
                            Actor::Institution(c) => {
                                a href={ "/ui/institutions/" (c) } { (lang.t("Institution")) }
                            }
                            Actor::Person(p) => {
                                a href={ "/ui/persons/" (p) } { (lang.t("Person")) }
                            }
                        }
                        @if !matches!(ctx.actor, Actor::Person(_)) {
                            form.search method="get" action="/ui/search" {
                                input type="search" name="q" placeholder=(lang.t("psn_no or certificate number")) maxlength="64";
                                button type="submit" { (lang.t("Search")) }
                            }
                        }
                    }
                    span.who { (lang.t("Signed in as")) " " (actor_label(lang, &ctx.actor)) }
                    a.lang href={ "/ui/lang/" (other.0) "?back=" (crate::form::encode(&ctx.here)) } { (other.1) }
                    form.logout method="post" action="/ui/logout" {
                        (csrf_field(ctx))
                        button type="submit" id="sign-out" { (lang.t("Sign out")) }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A bare page (sign-in, errors before sign-in).
pub fn bare(lang: Lang, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.html_lang()) {
            head {
                meta charset="utf-8";
                title { (title) " · " (lang.t("Gongji console")) }
                link rel="stylesheet" href="/ui/console.css";
            }
            body { main.narrow { h1 { (title) } (body) } }
        }
    }
}

/// A message box; `kind` is `ok` or `err`.
pub fn notice(kind: &'static str, text: &str) -> Markup {
    html! { p class={ "notice " (kind) } role="status" { (text) } }
}

pub fn forbidden(ctx: &Ctx) -> Response {
    let t = ctx.lang.t("You may not open this page.");
    html_response(
        StatusCode::FORBIDDEN,
        frame(ctx, t, html! { (notice("err", t)) }),
    )
}

pub fn not_found(ctx: &Ctx, what: &str) -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        frame(
            ctx,
            ctx.lang.t("Not found"),
            html! { (notice("err", what)) },
        ),
    )
}
