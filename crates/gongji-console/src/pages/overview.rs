//! The overview: `GET /v1/stats` as a page, month by month, with charts and a CSV download.
//! Admin only, as the API's statistics. One counter sum per month shown and one for the
//! range: at most `MONTH_COUNT_MAX + 1` sums, whatever the engine's size.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use gongji_core::certno::province_valid;
use gongji_core::time::{parse_period, period_of, Period};
use gongji_core::views::{StatsCell, StatsView};
use gongji_core::Actor;
use maud::{html, Markup};

use super::{home_of, query, signed_in, ConsoleState};
use crate::chart::{stacked_bars, Series};
use crate::form::{self, Pairs};
use crate::layout::{forbidden, frame, html_response, notice, redirect, Ctx};

/// Months one page or CSV shows at most.
pub const MONTH_COUNT_MAX: u32 = 120;

#[derive(Clone, Copy, Debug)]
struct Range {
    from: Period,
    to: Period,
    prov: Option<u8>,
}

/// The range from the query, as `GET /v1/stats` reads it; the engine clock's year when
/// absent. Errors name the field (shown escaped).
fn range(q: &Pairs, clock: i64) -> Result<Range, &'static str> {
    let now = period_of(if clock > 0 { clock } else { 0 });
    let period = |name: &'static str, default: Period| match form::get(q, name) {
        None | Some("") => Ok(default),
        Some(t) => parse_period(t).ok_or(name),
    };
    let to = period("to", now)?;
    let from = period("from", Period(to.0 - to.0 % 12))?;
    if from > to || to.0 - from.0 >= MONTH_COUNT_MAX {
        return Err("from/to");
    }
    let prov = match form::get(q, "prov") {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u8>()
                .ok()
                .filter(|&p| province_valid(p) && p >= 10)
                .ok_or("prov")?,
        ),
    };
    Ok(Range { from, to, prov })
}

/// The figures of the range: one row per month and the range's own sum (`GET /v1/stats`).
fn figures(console: &crate::Console, r: Range) -> (Vec<(Period, StatsView)>, StatsView) {
    console.engine.read(|s| {
        let months = (r.from.0..=r.to.0)
            .map(|m| (Period(m), s.stats(Period(m), Period(m), r.prov)))
            .collect();
        (months, s.stats(r.from, r.to, r.prov))
    })
}

fn cells(v: &StatsView) -> [StatsCell; 7] {
    [
        v.total,
        v.account_draw,
        v.same_pool,
        v.cross_pool,
        v.wallet_transfer,
        v.in_province,
        v.cross_province,
    ]
}

/// Column keys, as the API's JSON paths, used for the table cells' ids and the CSV header.
const COLUMNS: [&str; 7] = [
    "total",
    "account_draw",
    "account_draw.same_pool",
    "account_draw.cross_pool",
    "wallet_transfer",
    "wallet_transfer.in_province",
    "wallet_transfer.cross_province",
];

async fn render_page(console: &crate::Console, ctx: &Ctx, q: &Pairs) -> Response {
    let lang = ctx.lang;
    let title = lang.t("Family mutual aid statistics");
    let r = match range(q, console.engine.read(|s| s.clock())) {
        Ok(r) => r,
        Err(field) => {
            let body = html! {
                (notice("err", &format!("{}: {field}", lang.t("Invalid range"))))
                (range_form(ctx, None, q))
            };
            return html_response(StatusCode::BAD_REQUEST, frame(ctx, title, body));
        }
    };
    let (months, total) = figures(console, r);
    let body = html! {
        (range_form(ctx, Some(r), q))
        (charts(ctx, &months))
        (table(ctx, &months, &total))
    };
    html_response(StatusCode::OK, frame(ctx, title, body))
}

pub async fn page(State(console): ConsoleState, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = match signed_in(&console, &headers, &uri) {
        Ok(ctx) => ctx,
        Err(r) => return r.into(),
    };
    if ctx.actor != Actor::Admin {
        // Statistics are the admin's (API.md); the others have a home of their own.
        return redirect(&home_of(&ctx.actor));
    }
    render_page(&console, &ctx, &query(&uri)).await
}

fn range_form(ctx: &Ctx, r: Option<Range>, q: &Pairs) -> Markup {
    let lang = ctx.lang;
    let (from, to, prov) = match r {
        Some(r) => (
            r.from.to_string(),
            r.to.to_string(),
            r.prov.map(|p| p.to_string()).unwrap_or_default(),
        ),
        // Echo what was sent (escaped) so that it can be corrected.
        None => (
            form::get(q, "from").unwrap_or("").to_owned(),
            form::get(q, "to").unwrap_or("").to_owned(),
            form::get(q, "prov").unwrap_or("").to_owned(),
        ),
    };
    let csv = format!(
        "/ui/stats.csv?from={}&to={}&prov={}",
        form::encode(&from),
        form::encode(&to),
        form::encode(&prov)
    );
    html! {
        form method="get" action="/ui/" id="range" {
            label { (lang.t("From")) " " input type="month" name="from" value=(from) maxlength="7"; }
            label { (lang.t("To")) " " input type="month" name="to" value=(to) maxlength="7"; }
            label { (lang.t("Province")) " " input type="text" name="prov" value=(prov) size="3" maxlength="2" placeholder=(lang.t("all")); }
            button type="submit" { (lang.t("Show")) }
            @if r.is_some() { a id="csv" href=(csv) { (lang.t("Download CSV")) } }
        }
    }
}

/// Four charts: account draws and wallet transfers apart (wallet transfers are a thousandth
/// of the draws and would vanish in one stack), counts and amounts.
fn charts(ctx: &Ctx, months: &[(Period, StatsView)]) -> Markup {
    let lang = ctx.lang;
    let cats: Vec<String> = months.iter().map(|(p, _)| p.to_string()).collect();
    let pick = |f: fn(&StatsView) -> StatsCell, amount: bool| -> Vec<u64> {
        months
            .iter()
            .map(|(_, v)| if amount { f(v).amount.0 } else { f(v).count })
            .collect()
    };
    let draws = |amount: bool| {
        [
            Series {
                label: lang.t("same pool"),
                color: "#0b5cad",
                values: pick(|v| v.same_pool, amount),
            },
            Series {
                label: lang.t("cross pool"),
                color: "#6aa4e0",
                values: pick(|v| v.cross_pool, amount),
            },
        ]
    };
    let wallets = |amount: bool| {
        [
            Series {
                label: lang.t("in province"),
                color: "#1f7a3a",
                values: pick(|v| v.in_province, amount),
            },
            Series {
                label: lang.t("cross province"),
                color: "#8cc79c",
                values: pick(|v| v.cross_province, amount),
            },
        ]
    };
    let title =
        |what: &'static str, unit: &'static str| format!("{} · {}", lang.t(what), lang.t(unit));
    html! {
        div.charts {
            (stacked_bars("chart-count", &title("Account draws (instant call)", "count"), &cats, &draws(false), 1))
            (stacked_bars("chart-wallet-count", &title("Wallet transfers", "count"), &cats, &wallets(false), 1))
            (stacked_bars("chart-amount", &title("Account draws (instant call)", "amount (yuan)"), &cats, &draws(true), 100))
            (stacked_bars("chart-wallet-amount", &title("Wallet transfers", "amount (yuan)"), &cats, &wallets(true), 100))
        }
    }
}

fn table(ctx: &Ctx, months: &[(Period, StatsView)], total: &StatsView) -> Markup {
    let lang = ctx.lang;
    let heads = [
        lang.t("Total"),
        lang.t("Account draws (instant call)"),
        lang.t("same pool"),
        lang.t("cross pool"),
        lang.t("Wallet transfers"),
        lang.t("in province"),
        lang.t("cross province"),
    ];
    html! {
        div.scroll {
            table id="stats" {
                thead {
                    tr { th.l rowspan="2" { (lang.t("Month")) } @for h in heads { th colspan="2" { (h) } } }
                    tr { @for _ in heads { th { (lang.t("count")) } th { (lang.t("amount")) } } }
                }
                tbody {
                    @for (p, v) in months {
                        tr { td.l { (p) } @for c in cells(v) { td { (c.count) } td { (c.amount) } } }
                    }
                }
                tfoot {
                    tr.total id="range-total" {
                        td.l { (lang.t("Range total")) }
                        @for (c, key) in cells(total).iter().zip(COLUMNS) {
                            td id={ "sum-" (key) "-count" } { (c.count) }
                            td id={ "sum-" (key) "-amount" } { (c.amount) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/stats.csv`: what the overview shows, one row per month and the range total.
pub async fn csv(State(console): ConsoleState, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = match signed_in(&console, &headers, &uri) {
        Ok(ctx) => ctx,
        Err(r) => return r.into(),
    };
    if ctx.actor != Actor::Admin {
        return forbidden(&ctx);
    }
    let r = match range(&query(&uri), console.engine.read(|s| s.clock())) {
        Ok(r) => r,
        Err(field) => {
            return (StatusCode::BAD_REQUEST, format!("invalid {field}\n")).into_response()
        }
    };
    let (months, total) = figures(&console, r);
    let mut out = String::from("month");
    for key in COLUMNS {
        out.push_str(&format!(",{key}.count,{key}.amount"));
    }
    out.push('\n');
    let rows = months
        .iter()
        .map(|(p, v)| (p.to_string(), v))
        .chain([(format!("{}..{}", r.from, r.to), &total)]);
    for (label, v) in rows {
        out.push_str(&label);
        for c in cells(v) {
            out.push_str(&format!(",{},{}", c.count, c.amount));
        }
        out.push('\n');
    }
    let name = format!(
        "attachment; filename=\"gongji-stats-{}-{}{}.csv\"",
        r.from,
        r.to,
        r.prov.map(|p| format!("-{p}")).unwrap_or_default()
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        out,
    )
        .into_response()
}
