//! A person: balances, bindings in priority order, entries, wallet transfers; revoking a
//! binding and accepting or declining a transfer. Role rules as `GET /v1/persons/{psn_no}`
//! (admin, institutions, the person itself) and its entries (admin, the person).

use std::collections::BTreeSet;

use axum::body::Body as HttpBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use gongji_core::command::code_valid;
use gongji_core::money::format_signed_fen;
use gongji_core::time::format_cst;
use gongji_core::views::{
    BindingScope, BindingView, EntryKind, EntryView, PersonView, TransferState, TransferView,
};
use gongji_core::{Actor, Body, Insutype, PersonStatus, TransferSource};
use maud::{html, Markup};

use super::{after_write, outcome, query, signed_in, signed_in_form, write, ConsoleState};
use crate::form;
use crate::i18n::Lang;
use crate::layout::{
    csrf_field, forbidden, frame, html_response, not_found, notice, redirect, Ctx,
};

/// Entries per page.
const ENTRY_PAGE_LIMIT: u32 = 50;
/// Pending transfers to the person shown at most.
const PENDING_SHOWN_MAX: usize = 20;

fn may_read_person(actor: &Actor, psn_no: &str) -> bool {
    match actor {
        Actor::Admin | Actor::Institution(_) => true,
        Actor::Person(me) => me.as_str() == psn_no,
    }
}

fn may_read_entries(actor: &Actor, psn_no: &str) -> bool {
    match actor {
        Actor::Admin => true,
        Actor::Institution(_) => false,
        Actor::Person(me) => me.as_str() == psn_no,
    }
}

pub async fn page(
    State(console): ConsoleState,
    Path(psn_no): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let ctx = match signed_in(&console, &headers, &uri) {
        Ok(ctx) => ctx,
        Err(r) => return r.into(),
    };
    if !may_read_person(&ctx.actor, &psn_no) {
        return forbidden(&ctx);
    }
    let q = query(&uri);
    let after = match form::get(&q, "after") {
        None | Some("") => None,
        Some(a) => match a.parse::<u64>() {
            Ok(a) => Some(a),
            Err(_) => return not_found(&ctx, ctx.lang.t("Not found")),
        },
    };
    let with_entries = may_read_entries(&ctx.actor, &psn_no);
    // One read lock: the person, a page of its entries, and the transfers they name.
    let read = console.engine.read(|s| {
        let person = s.person(&psn_no)?;
        let (entries, next) = if with_entries {
            s.entries(&psn_no, after, ENTRY_PAGE_LIMIT)?
        } else {
            (Vec::new(), None)
        };
        let pending = if with_entries {
            s.pending_transfers_to(&psn_no, PENDING_SHOWN_MAX)?
        } else {
            (Vec::new(), true)
        };
        let ids: BTreeSet<u64> = entries
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EntryKind::WalletHold | EntryKind::WalletIn | EntryKind::WalletReturn
                )
            })
            .filter_map(|e| e.reference.parse().ok())
            .collect();
        let transfers: Vec<TransferView> = ids
            .into_iter()
            .filter_map(|id| s.transfer(id).ok())
            .collect();
        Ok::<_, gongji_core::Rejection>((person, entries, next, transfers, pending))
    });
    let (person, entries, next, transfers, (pending, pending_all)) = match read {
        Ok(r) => r,
        // No such person, or `after` is not one of this person's entries.
        Err(r) if r.code == gongji_core::ErrCode::PersonNotFound => {
            return not_found(&ctx, ctx.lang.t("No such person."))
        }
        Err(_) => return not_found(&ctx, ctx.lang.t("Not found")),
    };
    let lang = ctx.lang;
    let body = html! {
        @if let Some(n) = outcome(lang, &q) { (n) }
        (summary(lang, &person))
        (bindings(&ctx, &person, lang.t("Bindings as giver"), &person.bindings_given, "given"))
        (bindings(&ctx, &person, lang.t("Bindings as receiver"), &person.bindings_received, "received"))
        @if with_entries {
            h2 { (lang.t("Wallet transfers waiting for this person")) }
            @if pending.is_empty() {
                p.muted id="pending-none" { (lang.t("None.")) }
            } @else {
                div id="pending" { (transfer_table(&ctx, &pending)) }
                @if !pending_all {
                    p.muted { (lang.t("More are waiting; open them by id below.")) }
                }
            }
            (entry_table(lang, &person, &entries, after, next))
            @if !transfers.is_empty() {
                h2 { (lang.t("Wallet transfers on this page")) }
                (transfer_table(&ctx, &transfers))
            }
            h2 { (lang.t("Open a wallet transfer by its id")) }
            form method="get" action="/ui/transfers/" id="transfer-lookup" {
                input type="text" name="id" inputmode="numeric" maxlength="20" required;
                button type="submit" { (lang.t("Show")) }
            }
        } @else {
            p.muted { (lang.t("Entries are shown to the person and to admins.")) }
        }
    };
    let title = format!("{} {}", lang.t("Person"), person.psn_no);
    html_response(StatusCode::OK, frame(&ctx, &title, body))
}

fn summary(lang: Lang, p: &PersonView) -> Markup {
    let card = |k: &str, id: &str, v: String| {
        html! { div.card { div.k { (k) } div.v id=(id) { (v) } } }
    };
    html! {
        div.cards {
            (card(lang.t("Name"), "psn-name", p.psn_name_masked.clone()))
            (card(lang.t("Certificate"), "certno", p.certno_masked.clone()))
            (card(lang.t("Insurance type"), "insutype", match p.insutype { Insutype::Employee => "310", Insutype::Resident => "390" }.to_owned()))
            (card(lang.t("Area"), "admdvs", format!("{:06}", p.admdvs)))
            (card(lang.t("Status"), "status", match p.status { PersonStatus::Active => "active", PersonStatus::Suspended => "suspended" }.to_owned()))
            (card(lang.t("Account balance"), "acct-balc", p.acct_balc.to_string()))
            (card(lang.t("Wallet"), "wallet-status", lang.t(if p.wallet_open { "open" } else { "none" }).to_owned()))
            (card(lang.t("Wallet balance"), "wallet-balc", p.wallet_balc.to_string()))
        }
    }
}

fn may_act_on_binding(actor: &Actor, b: &BindingView) -> bool {
    match actor {
        Actor::Admin => true,
        Actor::Institution(_) => false,
        Actor::Person(me) => *me == b.giver_psn_no || *me == b.receiver_psn_no,
    }
}

fn bindings(ctx: &Ctx, p: &PersonView, title: &str, list: &[BindingView], id: &str) -> Markup {
    let lang = ctx.lang;
    html! {
        h2 { (title) }
        table id={ "bindings-" (id) } {
            tr {
                th { (lang.t("Binding")) } th.l { (lang.t("Giver")) } th.l { (lang.t("Receiver")) }
                th.l { (lang.t("Relation")) } th.l { (lang.t("Scope")) } th { (lang.t("Priority")) }
                th.l { (lang.t("Status")) } th {}
            }
            @for b in list {
                tr data-binding-id=(b.binding_id) {
                    td { (b.binding_id) }
                    td.l { a href={ "/ui/persons/" (b.giver_psn_no) } { (b.giver_psn_no) } }
                    td.l { a href={ "/ui/persons/" (b.receiver_psn_no) } { (b.receiver_psn_no) } }
                    td.l { (b.relation.as_str()) }
                    td.l { (match b.scope { BindingScope::InProvince => "in_province", BindingScope::WalletOnly => "wallet_only" }) }
                    td { (b.priority) }
                    td.l { (lang.t(if b.active { "active" } else { "revoked" })) }
                    td {
                        @if b.active && may_act_on_binding(&ctx.actor, b) {
                            form method="post" action={ "/ui/bindings/" (b.binding_id) "/revoke" } {
                                (csrf_field(ctx))
                                input type="hidden" name="psn" value=(p.psn_no);
                                button.secondary type="submit" { (lang.t("Revoke")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn entry_table(
    lang: Lang,
    p: &PersonView,
    entries: &[EntryView],
    after: Option<u64>,
    next: Option<u64>,
) -> Markup {
    html! {
        h2 { (lang.t("Entries")) }
        @if entries.is_empty() {
            p.muted { (lang.t("No entries.")) }
        } @else {
            table id="entries" {
                tr {
                    th { "#" } th.l { (lang.t("Time")) } th.l { (lang.t("Kind")) } th { (lang.t("Amount")) }
                    th.l { (lang.t("Ledger")) } th { (lang.t("Balance")) } th.l { (lang.t("Counterparty")) }
                    th.l { (lang.t("Reference")) }
                }
                @for e in entries {
                    tr {
                        td { (e.entry_id) } td.l { (format_cst(e.time)) } td.l { (e.kind.as_str()) }
                        td { (format_signed_fen(e.amount)) } td.l { (if e.wallet { "wallet" } else { "acct" }) }
                        td { (e.balc) } td.l { (e.counterparty.as_deref().unwrap_or("")) } td.l { (e.reference) }
                    }
                }
            }
        }
        p {
            @if after.is_some() { a href={ "/ui/persons/" (p.psn_no) } { (lang.t("First entries")) } " " }
            @if let Some(n) = next { a id="entries-next" href={ "/ui/persons/" (p.psn_no) "?after=" (n) } { (lang.t("Later entries")) } }
        }
    }
}

fn may_answer(actor: &Actor, t: &TransferView) -> bool {
    t.status == TransferState::Pending
        && match actor {
            Actor::Admin => true,
            Actor::Institution(_) => false,
            Actor::Person(me) => *me == t.to_psn_no,
        }
}

fn transfer_table(ctx: &Ctx, list: &[TransferView]) -> Markup {
    let lang = ctx.lang;
    html! {
        table.transfers {
            tr {
                th { (lang.t("Transfer")) } th.l { (lang.t("From person")) } th.l { (lang.t("To person")) }
                th { (lang.t("Amount")) } th.l { (lang.t("Source")) } th.l { (lang.t("Scope")) }
                th.l { (lang.t("Status")) } th.l { (lang.t("Expires at")) } th {}
            }
            @for t in list {
                tr data-transfer-id=(t.transfer_id) {
                    td { a href={ "/ui/transfers/" (t.transfer_id) } { (t.transfer_id) } }
                    td.l { (t.from_psn_no) } td.l { (t.to_psn_no) } td { (t.amount) }
                    td.l { (match t.source { TransferSource::Acct => "acct", TransferSource::Wallet => "wallet" }) }
                    td.l { (if t.cross_province { "cross_province" } else { "in_province" }) }
                    td.l.status { (lang.t(t.status.as_str())) } td.l { (format_cst(t.expires_at)) }
                    td {
                        @if may_answer(&ctx.actor, t) {
                            @for (action, label, class) in [("accept", "Accept", ""), ("decline", "Decline", "secondary")] {
                                form method="post" action={ "/ui/transfers/" (t.transfer_id) "/" (action) } {
                                    (csrf_field(ctx))
                                    button class=(class) type="submit" id={ (action) "-" (t.transfer_id) } { (lang.t(label)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/transfers/?id=`: the lookup form's target.
pub async fn transfer_lookup(uri: Uri) -> Response {
    let q = query(&uri);
    let id = form::get(&q, "id").unwrap_or("").trim();
    match id.parse::<u64>() {
        Ok(id) => redirect(&format!("/ui/transfers/{id}")),
        Err(_) => redirect("/ui/transfers/0"),
    }
}

/// `GET /ui/transfers/{id}`: one transfer,
/// for the admin, its sender and its receiver, as `GET /v1/wallet/transfers/{id}`.
pub async fn transfer(
    State(console): ConsoleState,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let ctx = match signed_in(&console, &headers, &uri) {
        Ok(ctx) => ctx,
        Err(r) => return r.into(),
    };
    let q = query(&uri);
    let lang = ctx.lang;
    let view = id
        .parse::<u64>()
        .ok()
        .and_then(|id| console.engine.read(|s| s.transfer(id).ok()));
    let Some(t) = view else {
        return not_found(&ctx, lang.t("Not found"));
    };
    let allowed = match &ctx.actor {
        Actor::Admin => true,
        Actor::Institution(_) => false,
        Actor::Person(me) => *me == t.from_psn_no || *me == t.to_psn_no,
    };
    if !allowed {
        return forbidden(&ctx);
    }
    let body = html! {
        @if let Some(n) = outcome(lang, &q) { (n) }
        (transfer_table(&ctx, std::slice::from_ref(&t)))
    };
    let title = format!("{} {}", lang.t("Transfer"), t.transfer_id);
    html_response(StatusCode::OK, frame(&ctx, &title, body))
}

/// `POST /ui/transfers/{id}/accept|decline`: the API's accept and decline, for the receiver
/// or an admin; the engine refuses anyone else (403) and a transfer no longer pending (409).
pub async fn transfer_action(
    State(console): ConsoleState,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: HttpBody,
) -> Response {
    let (ctx, _) = match signed_in_form(&console, &headers, &uri, body).await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let Ok(transfer_id) = id.parse::<u64>() else {
        return not_found(&ctx, ctx.lang.t("Not found"));
    };
    let command = match action.as_str() {
        "accept" => Body::TransferAccept { transfer_id },
        "decline" => Body::TransferDecline { transfer_id },
        _ => return not_found(&ctx, ctx.lang.t("Not found")),
    };
    let result = write(&console, &ctx.actor, command).await;
    let to = match (
        &result,
        console.engine.read(|s| s.transfer(transfer_id).ok()),
    ) {
        (Ok(_), Some(t)) if may_read_person(&ctx.actor, &t.to_psn_no) => {
            format!("/ui/persons/{}", t.to_psn_no)
        }
        _ => format!("/ui/transfers/{transfer_id}"),
    };
    after_write(&to, &result)
}

/// `POST /ui/bindings/{id}/revoke`: the API's revoke, for an admin or either party.
pub async fn revoke(
    State(console): ConsoleState,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: HttpBody,
) -> Response {
    let (ctx, pairs) = match signed_in_form(&console, &headers, &uri, body).await {
        Ok(signed) => signed,
        Err(r) => return r,
    };
    let Ok(binding_id) = id.parse::<u64>() else {
        return not_found(&ctx, ctx.lang.t("Not found"));
    };
    let result = write(&console, &ctx.actor, Body::Revoke { binding_id }).await;
    let back = match form::get(&pairs, "psn") {
        Some(p) if code_valid(p) && p.len() <= 30 => format!("/ui/persons/{p}"),
        _ => super::home_of(&ctx.actor),
    };
    after_write(&back, &result)
}

/// `GET /ui/search?q=`: by psn_no, by the full certificate number, or by a masked one
/// (`4401**********123X`; several persons may share it, so they are listed). All three are
/// engine indexes: no person is scanned.
pub async fn search(State(console): ConsoleState, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = match signed_in(&console, &headers, &uri) {
        Ok(ctx) => ctx,
        Err(r) => return r.into(),
    };
    if let Actor::Person(me) = &ctx.actor {
        return redirect(&format!("/ui/persons/{me}"));
    }
    let lang = ctx.lang;
    let q = query(&uri);
    let text = form::get(&q, "q").unwrap_or("").trim().to_owned();
    let found: Vec<String> = console.engine.read(|s| {
        if code_valid(&text) && text.len() <= 30 && s.person(&text).is_ok() {
            return vec![text.clone()];
        }
        if let Some(masked) = s.psn_nos_by_masked_certno(&text) {
            return masked.iter().map(|p| p.to_string()).collect();
        }
        s.psn_no_by_certno(&text)
            .map(|p| p.to_string())
            .into_iter()
            .collect()
    });
    if let [psn_no] = found.as_slice() {
        return redirect(&format!("/ui/persons/{psn_no}"));
    }
    if found.is_empty() {
        let body = html! {
            (notice("err", lang.t("No such person.")))
            p.muted id="searched" { (lang.t("Search")) ": " (text) }
        };
        return html_response(StatusCode::NOT_FOUND, frame(&ctx, lang.t("Search"), body));
    }
    let body = html! {
        p.muted id="searched" { (lang.t("Search")) ": " (text) }
        p { (lang.t("Several persons share this masked certificate number:")) }
        ul id="matches" {
            @for psn_no in &found {
                li { a href={ "/ui/persons/" (psn_no) } { (psn_no) } }
            }
        }
    };
    html_response(StatusCode::OK, frame(&ctx, lang.t("Search"), body))
}
