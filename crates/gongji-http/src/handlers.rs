//! Request handlers: authentication, the write path through the single writer, the reads.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gongji_core::certno::province_valid;
use gongji_core::time::{parse_date, parse_period, Period};
use gongji_core::views::ENTRIES_LIMIT_MAX;
use gongji_core::{Actor, ErrCode, Rejection};
use gongji_server::{SubmitError, WriteRequest, WriteResult, SUBMISSION_OP_COUNT_MAX};
use serde_json::{json, Value};

use crate::wire::{self, bad, parse_write, Obj};
use crate::{render, App, BODY_BYTES_MAX};

type AppState = State<Arc<App>>;

/// A path segment; one that does not decode (bad percent-encoding, not UTF-8) names nothing,
/// so the lookup answers the envelope's not-found code instead of axum's plain-text 400.
type Segment = Result<Path<String>, PathRejection>;

fn segment(path: Segment) -> String {
    path.map(|Path(s)| s).unwrap_or_default()
}

/// A known path with a method it does not take: the failure envelope, as for an unknown path.
pub(crate) async fn not_found() -> Response {
    fail(Rejection::with(
        ErrCode::NotFound,
        "no such endpoint for this method",
    ))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).expect("JSON renders");
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn fail(rejection: Rejection) -> Response {
    let status = StatusCode::from_u16(rejection.code.http_status()).expect("valid status");
    json_response(status, &render::error(&rejection))
}

fn ok(output: Value) -> Response {
    json_response(StatusCode::OK, &render::ok(output))
}

/// The actor behind the bearer token, or 401.
fn actor(app: &App, headers: &HeaderMap) -> Result<Actor, Rejection> {
    let unauthorized = Rejection::with(ErrCode::Unauthorized, "a valid bearer token is required");
    let value = headers.get(header::AUTHORIZATION).ok_or(unauthorized)?;
    let token = value
        .to_str()
        .ok()
        // The auth scheme is case-insensitive (RFC 9110 §11.1): `bearer` works too.
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or(unauthorized)?;
    let hash = gongji_server::token_hash(token);
    app.engine
        .read(|s| s.token_actor(&hash))
        .map(|(_, actor)| actor)
        .ok_or(unauthorized)
}

/// A request whose declared `Content-Length` is over the limit: `413 TOO_LARGE` at once, for
/// every path and with or without a token, before a byte of the body is read. (A body sent
/// without a length is cut off at the limit while it is read.)
pub(crate) async fn refuse_declared_too_large(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_BYTES_MAX as u64) {
        let mut response = fail(Rejection::with(ErrCode::TooLarge, "the body is over 1 MiB"));
        // The unread body stays on the connection: close it rather than read it.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(request).await
}

async fn read_json(body: Body) -> Result<Value, Rejection> {
    let bytes = axum::body::to_bytes(body, BODY_BYTES_MAX)
        .await
        .map_err(|_| Rejection::with(ErrCode::TooLarge, "the body is over 1 MiB"))?;
    crate::wire::reject_duplicate_keys(&bytes)?;
    serde_json::from_slice(&bytes).map_err(|_| bad("malformed JSON"))
}

async fn submit(app: &App, requests: Vec<WriteRequest>) -> Result<Vec<WriteResult>, Rejection> {
    let overloaded = Rejection::with(ErrCode::Overloaded, "retry with the same msgid");
    let rx = app.engine.submit(requests).map_err(|e| match e {
        SubmitError::Overloaded => overloaded,
        SubmitError::Stopped => Rejection::with(ErrCode::Overloaded, "the writer has stopped"),
    })?;
    rx.await
        .map_err(|_| Rejection::with(ErrCode::Overloaded, "the writer has stopped"))
}

/// The envelope of one write's result, with the raw token added to a fresh token creation.
fn write_envelope(
    state: &gongji_core::State,
    result: &WriteResult,
    raw_token: Option<&str>,
) -> (u16, Value) {
    match result {
        Ok(applied) => {
            let mut output = render::reply(state, &applied.reply);
            if let (Some(token), false) = (raw_token, applied.replayed) {
                output["token"] = json!(token);
            }
            (200, render::ok(output))
        }
        Err(rejection) => (rejection.code.http_status(), render::error(rejection)),
    }
}

/// Every POST that is not a named route: the write endpoints, else 404.
pub(crate) async fn write_or_not_found(
    State(app): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method != Method::POST || !wire::is_write_path(uri.path()) {
        return fail(Rejection::with(ErrCode::NotFound, "no such endpoint"));
    }
    let result = async {
        let actor = actor(&app, &headers)?;
        let value = read_json(body).await?;
        let parsed = parse_write(uri.path(), value, &actor)?;
        let results = submit(&app, vec![parsed.request]).await?;
        let raw_token = parsed.raw_token.as_deref();
        Ok::<_, Rejection>(
            app.engine
                .read(|state| write_envelope(state, &results[0], raw_token)),
        )
    }
    .await;
    match result {
        Ok((status, value)) => {
            json_response(StatusCode::from_u16(status).expect("valid status"), &value)
        }
        Err(rejection) => fail(rejection),
    }
}

/// `POST /v1/batch`: each op stands alone, all are made durable together.
pub(crate) async fn batch(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let actor = actor(&app, &headers)?;
        let mut obj = Obj::new(read_json(body).await?)?;
        let ops = match obj.take("ops") {
            Some(Value::Array(ops)) => ops,
            _ => return Err(bad("ops must be an array")),
        };
        obj.finish()?;
        if ops.is_empty() {
            return Err(bad("ops must not be empty"));
        }
        if ops.len() > SUBMISSION_OP_COUNT_MAX {
            return Err(Rejection::with(ErrCode::TooLarge, "at most 8190 ops"));
        }
        let parsed: Vec<_> = ops
            .into_iter()
            .map(|op| parse_batch_op(op, &actor))
            .collect();
        let requests: Vec<WriteRequest> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().map(|p| p.request.clone()))
            .collect();
        let mut results = if requests.is_empty() {
            Vec::new()
        } else {
            submit(&app, requests).await?
        }
        .into_iter();
        // One read lock renders every result: the writer waits for it once, not per op.
        let envelopes: Vec<Value> = app.engine.read(|state| {
            parsed
                .iter()
                .map(|p| {
                    let (status, mut v) = match p {
                        Ok(p) => {
                            let result = results.next().expect("one result per request");
                            write_envelope(state, &result, p.raw_token.as_deref())
                        }
                        Err(rejection) => (rejection.code.http_status(), render::error(rejection)),
                    };
                    v["status"] = json!(status);
                    v
                })
                .collect()
        });
        Ok(json!({"results": envelopes}))
    }
    .await;
    match result {
        Ok(output) => ok(output),
        Err(rejection) => fail(rejection),
    }
}

fn parse_batch_op(op: Value, actor: &Actor) -> Result<wire::ParsedWrite, Rejection> {
    let mut obj = Obj::new(op)?;
    let path = obj.str("path")?;
    let body = obj.take("body").ok_or(bad("body"))?;
    obj.finish()?;
    parse_write(&path, body, actor)
}

/// Query parameters as (name, value) pairs; values are simple tokens (codes, dates, numbers).
fn query(raw: Option<String>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte. A malformed
/// escape is kept as it is; bytes that are not UTF-8 become U+FFFD (and then match nothing).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn forbidden() -> Rejection {
    Rejection::new(ErrCode::Forbidden)
}

fn respond(result: Result<Value, Rejection>) -> Response {
    match result {
        Ok(output) => ok(output),
        Err(rejection) => fail(rejection),
    }
}

pub(crate) async fn person(State(app): AppState, psn_no: Segment, headers: HeaderMap) -> Response {
    let psn_no = segment(psn_no);
    respond((|| {
        let actor = actor(&app, &headers)?;
        if matches!(&actor, Actor::Person(me) if me.as_str() != psn_no) {
            return Err(forbidden());
        }
        let view = app.engine.read(|s| s.person(&psn_no))?;
        Ok(render::person(&view))
    })())
}

pub(crate) async fn entries(
    State(app): AppState,
    psn_no: Segment,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let psn_no = segment(psn_no);
    respond((|| {
        let actor = actor(&app, &headers)?;
        let q = query(raw);
        let limit = match param(&q, "limit") {
            None => 100,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=ENTRIES_LIMIT_MAX).contains(l))
                .ok_or(bad("limit must be 1 to 1000"))?,
        };
        let after = match param(&q, "after") {
            None | Some("") => None,
            Some(a) => Some(
                a.parse::<u64>()
                    .map_err(|_| bad("after must be an entry_id"))?,
            ),
        };
        match &actor {
            Actor::Admin => {}
            Actor::Person(me) if me.as_str() == psn_no => {}
            _ => return Err(forbidden()),
        }
        let (page, next) = app.engine.read(|s| s.entries(&psn_no, after, limit))?;
        Ok(render::entries(&page, next))
    })())
}

pub(crate) async fn settlement(
    State(app): AppState,
    setl_id: Segment,
    headers: HeaderMap,
) -> Response {
    let setl_id = segment(setl_id);
    respond((|| {
        let actor = actor(&app, &headers)?;
        let id = setl_id
            .parse::<u64>()
            .map_err(|_| Rejection::new(ErrCode::SettlementNotFound))?;
        let view = app.engine.read(|s| s.settlement(id))?;
        let allowed = match &actor {
            Actor::Admin => true,
            Actor::Institution(code) => *code == view.fixmedins_code,
            Actor::Person(me) => *me == view.psn_no,
        };
        if !allowed {
            return Err(forbidden());
        }
        Ok(render::settlement(&view, true))
    })())
}

pub(crate) async fn transfer(
    State(app): AppState,
    transfer_id: Segment,
    headers: HeaderMap,
) -> Response {
    let transfer_id = segment(transfer_id);
    respond((|| {
        let actor = actor(&app, &headers)?;
        let not_found = Rejection::with(ErrCode::NotFound, "no such transfer");
        let id = transfer_id.parse::<u64>().map_err(|_| not_found)?;
        let view = app.engine.read(|s| s.transfer(id))?;
        let allowed = match &actor {
            Actor::Admin => true,
            Actor::Institution(_) => false,
            Actor::Person(me) => *me == view.from_psn_no || *me == view.to_psn_no,
        };
        if !allowed {
            return Err(forbidden());
        }
        Ok(render::transfer(&view))
    })())
}

pub(crate) async fn stats(
    State(app): AppState,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond((|| {
        let actor = actor(&app, &headers)?;
        let q = query(raw);
        let period = |name: &'static str| -> Result<Period, Rejection> {
            let text = param(&q, name).ok_or(Rejection::with(ErrCode::BadRequest, name))?;
            parse_period(text).ok_or(Rejection::with(ErrCode::InvalidPeriod, name))
        };
        let (from, to) = (period("from")?, period("to")?);
        if from > to {
            return Err(Rejection::with(ErrCode::InvalidPeriod, "from is after to"));
        }
        let prov = match param(&q, "prov") {
            None | Some("") => None,
            Some(p) => Some(
                p.parse::<u8>()
                    .ok()
                    .filter(|&p| province_valid(p) && p >= 10)
                    .ok_or(bad("prov must be a province code"))?,
            ),
        };
        if actor != Actor::Admin {
            return Err(forbidden());
        }
        let view = app.engine.read(|s| s.stats(from, to, prov));
        Ok(render::stats(from, to, prov, &view))
    })())
}

const RECON_AMOUNTS: [&str; 6] = [
    "medfee_sumamt",
    "fund_pay_sumamt",
    "acct_pay",
    "wallet_pay",
    "acct_mulaid_pay",
    "psn_cash_pay",
];

fn recon_totals(app: &App, actor: &Actor, code: &str, date: &str) -> Result<Value, Rejection> {
    let day = parse_date(date).ok_or(bad("date must be YYYY-MM-DD"))?;
    if matches!(actor, Actor::Institution(own) if own.as_str() != code) {
        return Err(forbidden());
    }
    if matches!(actor, Actor::Person(_)) {
        return Err(forbidden());
    }
    let t = app.engine.read(|s| s.reconciliation(code, day))?;
    let amounts = [
        t.medfee_sumamt,
        t.fund_pay_sumamt,
        t.acct_pay,
        t.wallet_pay,
        t.acct_mulaid_pay,
        t.psn_cash_pay,
    ];
    let mut v = json!({"fixmedins_code": code, "date": date, "setl_count": t.setl_count});
    for (name, amount) in RECON_AMOUNTS.iter().zip(amounts) {
        v[*name] = render::money(amount);
    }
    Ok(v)
}

pub(crate) async fn reconciliation(
    State(app): AppState,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond((|| {
        let actor = actor(&app, &headers)?;
        let q = query(raw);
        let code = param(&q, "fixmedins_code").ok_or(bad("fixmedins_code"))?;
        let date = param(&q, "date").ok_or(bad("date"))?;
        recon_totals(&app, &actor, code, date)
    })())
}

/// `POST /v1/reconciliation`: the institution's totals against the platform's. A read.
pub(crate) async fn reconcile(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    respond(
        async {
            let actor = actor(&app, &headers)?;
            let mut obj = Obj::new(read_json(body).await?)?;
            let code = obj.str("fixmedins_code")?;
            let date = obj.str("date")?;
            let count = obj.u64("setl_count")?;
            let mut theirs = Vec::new();
            for name in RECON_AMOUNTS {
                theirs.push(obj.amount(name)?);
            }
            obj.finish()?;
            let mut v = recon_totals(&app, &actor, &code, &date)?;
            let mut diffs = Vec::new();
            if v["setl_count"].as_u64() != Some(count) {
                diffs.push("setl_count");
            }
            for (name, amount) in RECON_AMOUNTS.iter().zip(theirs) {
                if v[*name] != render::money(amount) {
                    diffs.push(*name);
                }
            }
            v["stmt_rslt"] = json!(if diffs.is_empty() { "0" } else { "1" });
            v["diffs"] = json!(diffs);
            Ok(v)
        }
        .await,
    )
}

pub(crate) async fn audit_verify(State(app): AppState, headers: HeaderMap) -> Response {
    let actor = match actor(&app, &headers) {
        Ok(actor) => actor,
        Err(rejection) => return fail(rejection),
    };
    if actor != Actor::Admin {
        return fail(forbidden());
    }
    let (dir, config) = (app.journal_dir.clone(), app.journal_config);
    let engine = app.engine.clone();
    // A store other than files (PostgreSQL) checks its own journal; files: the directory.
    let report = tokio::task::spawn_blocking(move || match engine.verify_store() {
        Some(result) => result.map(|(_, head)| head),
        None => gongji_server::verify_journal_dir(&dir, &config)
            .map(|recovery| recovery.head)
            .map_err(|e| e.to_string()),
    })
    .await
    .expect("verify task");
    ok(match report {
        Ok(head) => json!({
            "ok": true,
            "op_count": head.op,
            "head_hash": hex::encode(head.chain_hash),
        }),
        Err(e) => json!({"ok": false, "op_count": null, "head_hash": null, "error": e}),
    })
}

pub(crate) async fn openapi() -> Response {
    json_response(StatusCode::OK, crate::openapi::openapi_document())
}

pub(crate) async fn metrics(State(app): AppState) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let c = app.engine.counters();
    metrics::gauge!("gongji_queue_ops").set(c.queue_ops.load(Relaxed) as f64);
    metrics::gauge!("gongji_journal_head_op").set(c.journal_head_op.load(Relaxed) as f64);
    metrics::gauge!("gongji_journal_bytes_written").set(c.journal_bytes_total.load(Relaxed) as f64);
    metrics::gauge!("gongji_snapshot_op").set(c.snapshot_op.load(Relaxed) as f64);
    metrics::gauge!("gongji_batches").set(c.batches_total.load(Relaxed) as f64);
    let text = crate::prometheus().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// A request not done within `limit` of its headers (a body trickled in, say): `408` with
/// the envelope, and the connection closed. A write already handed to the writer may still
/// apply; its msgid makes the client's retry safe.
pub(crate) async fn deadline(limit: std::time::Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let body = json!({
                "infcode": -1,
                "err_code": "REQUEST_TIMEOUT",
                "err_msg": format!("the request was not complete within {} s", limit.as_secs()),
            });
            let mut response = json_response(StatusCode::REQUEST_TIMEOUT, &body);
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

/// Counts requests by endpoint and status and times them.
pub(crate) async fn observe(request: Request, next: Next) -> Response {
    // Route templates only: a label per psn_no or setl_id would grow without bound.
    let endpoint = match request.extensions().get::<MatchedPath>() {
        Some(p) => p.as_str().to_owned(),
        None if request.method() == Method::POST => wire::write_route(request.uri().path())
            .unwrap_or("other")
            .to_owned(),
        None => "other".to_owned(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let code = response.status().as_u16().to_string();
    metrics::counter!("gongji_http_requests_total", "endpoint" => endpoint.clone(), "code" => code)
        .increment(1);
    metrics::histogram!("gongji_http_request_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        // Proves query values are decoded as browsers and curl encode them.
        assert_eq!(super::percent_decode("2025-05"), "2025-05");
        assert_eq!(super::percent_decode("2025%2d05%2D20"), "2025-05-20");
        assert_eq!(super::percent_decode("a+b%3Ac"), "a b:c");
        assert_eq!(super::percent_decode("50%"), "50%");
        assert_eq!(super::percent_decode("%zz%4"), "%zz%4");
        assert_eq!(super::percent_decode("%FF"), "\u{FFFD}");
    }
}
