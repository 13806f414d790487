//! An institution: its registration, daily reconciliation totals (`GET /v1/reconciliation`)
//! for a week ending on a chosen day, and its newest settlements with their status (cancelled
//! ones marked). For the admin and the institution itself. Seven counter lookups and the
//! engine's per-institution list of newest settlements: no history is walked.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use gongji_core::time::{cst_day, format_cst, format_date, parse_date};
use gongji_core::views::{InstitutionView, ReconView, SettlementView};
use gongji_core::{Actor, InstType};
use maud::html;

use super::{query, signed_in, ConsoleState};
use crate::form;
use crate::layout::{forbidden, frame, html_response, not_found, notice};

/// Days shown, ending on the chosen day.
const DAY_COUNT: i32 = 7;

pub async fn page(
    State(console): ConsoleState,
    Path(code): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let ctx = match signed_in(&console, &headers, &uri) {
        Ok(ctx) => ctx,
        Err(r) => return r.into(),
    };
    let allowed = match &ctx.actor {
        Actor::Admin => true,
        Actor::Institution(own) => own.as_str() == code,
        Actor::Person(_) => false,
    };
    if !allowed {
        return forbidden(&ctx);
    }
    let lang = ctx.lang;
    let q = query(&uri);
    let clock_day = console.engine.read(|s| cst_day(s.clock().max(0)));
    let day = match form::get(&q, "date") {
        None | Some("") => clock_day,
        Some(d) => match parse_date(d) {
            Some(day) => day,
            None => {
                let body = html! { (notice("err", &format!("{}: date", lang.t("Invalid range")))) };
                return html_response(
                    StatusCode::BAD_REQUEST,
                    frame(&ctx, lang.t("Institution"), body),
                );
            }
        },
    };
    let read = console.engine.read(|s| {
        let inst = s.institution(&code)?;
        let days: Vec<(i32, ReconView)> = (0..DAY_COUNT)
            .map(|k| day - k)
            .map(|d| s.reconciliation(&code, d).map(|t| (d, t)))
            .collect::<Result<_, _>>()?;
        let recent = s.recent_settlements(&code).unwrap_or_default();
        Ok::<_, gongji_core::Rejection>((inst, days, recent))
    });
    let Ok((inst, days, recent)): Result<(InstitutionView, _, Vec<SettlementView>), _> = read
    else {
        return not_found(&ctx, lang.t("Not found"));
    };
    let body = html! {
        div.cards {
            div.card { div.k { (lang.t("Code")) } div.v id="code" { (inst.fixmedins_code) } }
            div.card { div.k { (lang.t("Name")) } div.v id="inst-name" { (inst.fixmedins_name) } }
            div.card { div.k { (lang.t("Type")) } div.v { (match inst.fixmedins_type { InstType::Medical => "1", InstType::Pharmacy => "2" }) } }
            div.card { div.k { (lang.t("Area")) } div.v { (format!("{:06}", inst.admdvs)) } }
        }
        h2 { (lang.t("Daily reconciliation")) }
        form method="get" action={ "/ui/institutions/" (inst.fixmedins_code) } {
            label { (lang.t("Date")) " " input type="date" name="date" value=(format_date(day)); }
            button type="submit" { (lang.t("Show")) }
        }
        table id="recon" {
            tr {
                th.l { (lang.t("Date")) } th { (lang.t("Settlements")) } th { (lang.t("Medical fees")) }
                th { (lang.t("Fund paid")) } th { (lang.t("Account paid")) } th { (lang.t("Wallet paid")) }
                th { (lang.t("Mutual aid paid")) } th { (lang.t("Cash paid")) }
            }
            @for (d, t) in &days {
                tr id={ "recon-" (format_date(*d)) } {
                    td.l { (format_date(*d)) } td { (t.setl_count) } td { (t.medfee_sumamt) }
                    td { (t.fund_pay_sumamt) } td { (t.acct_pay) } td { (t.wallet_pay) }
                    td { (t.acct_mulaid_pay) } td { (t.psn_cash_pay) }
                }
            }
        }
        h2 { (lang.t("Recent settlements")) }
        table id="recent" {
            tr {
                th { (lang.t("Settlement")) } th.l { (lang.t("Time")) } th.l { (lang.t("Person")) }
                th { (lang.t("Medical fees")) } th { (lang.t("Mutual aid paid")) }
                th { (lang.t("Cash paid")) } th.l { (lang.t("Status")) }
            }
            @for v in &recent {
                tr id={ "setl-" (v.setl_id) } {
                    td { (v.setl_id) } td.l { (format_cst(v.setl_time)) } td.l { (v.psn_no) }
                    td { (v.medfee_sumamt) } td { (v.acct_mulaid_pay) } td { (v.psn_cash_pay) }
                    td.l.status { (lang.t(if v.cancelled { "cancelled" } else { "settled" })) }
                }
            }
        }
        p.muted { (lang.t("The newest settlements at this institution, newest first; cancelled and reversed ones are marked.")) }
    };
    let title = format!("{} {}", lang.t("Institution"), inst.fixmedins_code);
    html_response(StatusCode::OK, frame(&ctx, &title, body))
}
