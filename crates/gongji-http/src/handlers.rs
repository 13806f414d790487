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
use gongji_core::federation::{FedOp, FederationConfig};
use gongji_core::time::{parse_date, parse_period, Period};
use gongji_core::views::ENTRIES_LIMIT_MAX;
use gongji_core::{Actor, Body as CoreBody, ErrCode, Rejection};
use gongji_server::{FedRequest, WriteRequest, WriteResult, SUBMISSION_OP_COUNT_MAX};
use serde_json::{json, Value};

use crate::federation::Shape;
use crate::render::{BatchResults, Envelope, Output};
use crate::wire::{self, bad, from_text, parse_write, Field, OpWire, Yuan};
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

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
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
    actor_at(app, headers).map(|(actor, _)| actor)
}

/// [`actor`], with the op after which no token changed: the answer cannot be undone by a crash
/// once that op is durable.
fn actor_at(app: &App, headers: &HeaderMap) -> Result<(Actor, u64), Rejection> {
    let hash = bearer_hash(headers)?;
    let (found, changed) = app
        .engine
        .read(|s| (s.token_actor(&hash), s.tokens_changed_op()));
    found
        .map(|(_, actor)| (actor, changed))
        .ok_or_else(unauthorized)
}

/// Resolves the bearer token and runs `f` with its actor on the same hold of the state's read
/// lock: a read waits for the writer's lock once, not twice (once for the token, once for the
/// view). `f` answers in the handlers' order: 401 is settled before it runs.
fn read_as<R>(
    app: &App,
    headers: &HeaderMap,
    f: impl FnOnce(Actor, &gongji_core::State) -> Result<R, Rejection>,
) -> Result<R, Rejection> {
    let hash = bearer_hash(headers)?;
    app.engine.read(|s| {
        let (_, actor) = s.token_actor(&hash).ok_or_else(unauthorized)?;
        f(actor, s)
    })
}

fn unauthorized() -> Rejection {
    Rejection::with(ErrCode::Unauthorized, "a valid bearer token is required")
}

/// The hash of the request's bearer token, or 401 when there is none.
fn bearer_hash(headers: &HeaderMap) -> Result<[u8; 32], Rejection> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(unauthorized)?;
    let token = value
        .to_str()
        .ok()
        // The auth scheme is case-insensitive (RFC 9110 §11.1): `bearer` works too.
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(unauthorized)?;
    Ok(gongji_server::token_hash(token))
}

/// The body's bytes, at most [`BODY_BYTES_MAX`]; they are parsed where their type is known.
async fn read_body(body: Body) -> Result<axum::body::Bytes, Rejection> {
    axum::body::to_bytes(body, BODY_BYTES_MAX)
        .await
        .map_err(|_| Rejection::with(ErrCode::TooLarge, "the body is over 1 MiB"))
}

async fn submit(app: &App, requests: Vec<WriteRequest>) -> Result<Vec<WriteResult>, Rejection> {
    gongji_console::submit(&app.engine, requests).await
}

/// The envelope of one write's result, with the raw token added to a fresh token creation.
fn write_envelope(
    state: &gongji_core::State,
    result: &WriteResult,
    raw_token: Option<&str>,
) -> (u16, Envelope) {
    match result {
        Ok(applied) => {
            let mut output = render::reply(state, &applied.reply);
            if let (Some(token), false, Output::Value(v)) =
                (raw_token, applied.replayed, &mut output)
            {
                v["token"] = json!(token);
            }
            (200, Envelope::Ok(output))
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
        let bytes = read_body(body).await?;
        if let Some(config) = app.engine.federation() {
            let fed = crate::federation::write(&app, &config, uri.path(), &bytes, &actor).await;
            if let Some(answered) = fed {
                return answered.map(|v| (200, Envelope::Ok(Output::Value(v))));
            }
        }
        let parsed = parse_write(uri.path(), from_text(&bytes)?, &actor)?;
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

/// The body of `POST /v1/batch`. The ops are kept as their JSON text (validated with the
/// body) and each is parsed into its own [`OpWire`], so that a bad op fails alone.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchWire<'a> {
    #[serde(borrow, default)]
    ops: Option<Vec<&'a serde_json::value::RawValue>>,
}

/// `POST /v1/batch`: each op stands alone, all are made durable together.
pub(crate) async fn batch(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let actor = actor(&app, &headers)?;
        let bytes = read_body(body).await?;
        if let Some(config) = app.engine.federation() {
            return batch_federated(&app, &config, &bytes, &actor).await;
        }
        let mut parsed = parse_batch(&bytes, &actor)?;
        let requests: Vec<WriteRequest> = parsed
            .iter_mut()
            .filter_map(|p| p.as_mut().ok().and_then(|p| p.request.take()))
            .collect();
        let mut results = if requests.is_empty() {
            Vec::new()
        } else {
            submit(&app, requests).await?
        }
        .into_iter();
        // One read lock renders every result: the writer waits for it once, not per op.
        let envelopes: Vec<(u16, Envelope)> = app.engine.read(|state| {
            parsed
                .iter()
                .map(|p| match p {
                    Ok(p) => {
                        let result = results.next().expect("one result per request");
                        write_envelope(state, &result, p.raw_token.as_deref())
                    }
                    Err(rejection) => (rejection.code.http_status(), render::error(rejection)),
                })
                .collect()
        });
        Ok(BatchResults(envelopes))
    }
    .await;
    match result {
        Ok(output) => json_response(StatusCode::OK, &BatchOk(output)),
        Err(rejection) => fail(rejection),
    }
}

/// One op of a batch on a federated engine, parsed.
enum FedBatchOp {
    Core(BatchOp),
    Fed(FedRequest, Shape),
}

/// A batch op's path and its body's text, for the federation's parser (which reads the
/// body's members itself, as for a single write).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OpRaw<'a> {
    #[serde(borrow, default)]
    path: Field<'a>,
    #[serde(borrow, default)]
    body: Option<&'a serde_json::value::RawValue>,
}

/// `POST /v1/batch` on a federated engine: each op is parsed as the same write alone would be
/// (`to_admdvs`, `receiver_admdvs`, an exchange's or a cross-engine binding's id), so it gets
/// the same answer. Core ops and federation ops go to the writer as separate submissions:
/// each run of consecutive ops of one kind is one submission, made durable together, and a
/// run is submitted only once the one before it is answered, so the ops apply in the
/// batch's order. A batch of core ops alone is one submission, as on any engine. Two parses
/// read the state (a reversal: did this scope's msgid make a cross-engine transfer? a
/// transfer without `to_admdvs`: is the receiver a person here?); such an op is parsed after
/// the run before it is applied when that run could change the answer.
async fn batch_federated(
    app: &App,
    config: &FederationConfig,
    bytes: &[u8],
    actor: &Actor,
) -> Result<BatchResults, Rejection> {
    let wire: BatchWire = from_text(bytes)?;
    let ops = wire.ops.ok_or(bad("ops must be an array"))?;
    if ops.is_empty() {
        return Err(bad("ops must not be empty"));
    }
    if ops.len() > SUBMISSION_OP_COUNT_MAX {
        return Err(Rejection::with(ErrCode::TooLarge, "at most 8190 ops"));
    }
    let mut envelopes: Vec<Option<(u16, Envelope)>> = (0..ops.len()).map(|_| None).collect();
    let mut run: Vec<(usize, FedBatchOp)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let raw: Result<OpRaw, Rejection> = from_text(op.get().as_bytes());
        let path = raw.as_ref().ok().and_then(|r| r.path.str("path").ok());
        let flush_first = match path.as_deref() {
            Some("/v1/reversals") => run
                .iter()
                .any(|(_, o)| matches!(o, FedBatchOp::Fed(r, _) if matches!(r.op, FedOp::TransferOut { .. }))),
            Some("/v1/wallet/transfers") => run.iter().any(|(_, o)| {
                matches!(o, FedBatchOp::Core(c) if matches!(c.request.as_ref().map(|r| &r.body), Some(CoreBody::Enrol { .. })))
            }),
            _ => false,
        };
        if flush_first {
            flush(app, config, &mut run, &mut envelopes).await?;
        }
        match raw.and_then(|raw| parse_federated_op(app, config, raw, op.get(), actor)) {
            Err(r) => envelopes[i] = Some((r.code.http_status(), render::error(&r))),
            Ok(parsed) => {
                let kind = |o: &FedBatchOp| matches!(o, FedBatchOp::Core(_));
                if run
                    .last()
                    .is_some_and(|(_, last)| kind(last) != kind(&parsed))
                {
                    flush(app, config, &mut run, &mut envelopes).await?;
                }
                run.push((i, parsed));
            }
        }
    }
    flush(app, config, &mut run, &mut envelopes).await?;
    Ok(BatchResults(
        envelopes
            .into_iter()
            .map(|e| e.expect("every op answered"))
            .collect(),
    ))
}

/// One op of a federated batch, parsed as the same write alone would be.
fn parse_federated_op(
    app: &App,
    config: &FederationConfig,
    raw: OpRaw<'_>,
    op: &str,
    actor: &Actor,
) -> Result<FedBatchOp, Rejection> {
    use crate::federation::Planned;
    let path = raw.path.str("path")?;
    let body = raw.body.ok_or(bad("body"))?.get().as_bytes();
    match crate::federation::plan(app, config, &path, body, actor) {
        Some(Ok(Planned::Fed(request, shape))) => Ok(FedBatchOp::Fed(request, shape)),
        Some(Ok(Planned::Core(request))) => Ok(FedBatchOp::Core(BatchOp {
            request: Some(request),
            raw_token: None,
        })),
        Some(Err(rejection)) => Err(rejection),
        None => parse_batch_op(op.as_bytes(), actor).map(FedBatchOp::Core),
    }
}

/// Submits a run of one kind of op, waits for it to be durable, and renders each answer.
async fn flush(
    app: &App,
    config: &FederationConfig,
    run: &mut Vec<(usize, FedBatchOp)>,
    envelopes: &mut [Option<(u16, Envelope)>],
) -> Result<(), Rejection> {
    let Some((_, first)) = run.first() else {
        return Ok(());
    };
    if matches!(first, FedBatchOp::Core(_)) {
        let (at, mut ops): (Vec<usize>, Vec<BatchOp>) = run
            .drain(..)
            .map(|(i, o)| match o {
                FedBatchOp::Core(op) => (i, op),
                FedBatchOp::Fed(..) => unreachable!("a core run"),
            })
            .unzip();
        let requests = ops.iter_mut().filter_map(|o| o.request.take()).collect();
        let results = submit(app, requests).await?;
        app.engine.read(|state| {
            for ((&i, op), result) in at.iter().zip(&ops).zip(&results) {
                envelopes[i] = Some(write_envelope(state, result, op.raw_token.as_deref()));
            }
        });
        return Ok(());
    }
    let (at, planned): (Vec<usize>, Vec<(FedRequest, Shape)>) = run
        .drain(..)
        .map(|(i, o)| match o {
            FedBatchOp::Fed(request, shape) => (i, (request, shape)),
            FedBatchOp::Core(_) => unreachable!("a federation run"),
        })
        .unzip();
    let (requests, shapes): (Vec<FedRequest>, Vec<Shape>) = planned.into_iter().unzip();
    let results = crate::federation::submit_fed(app, requests).await?;
    app.engine.read(|state| {
        for ((&i, shape), result) in at.iter().zip(&shapes).zip(results) {
            envelopes[i] = Some(match result {
                Ok(reply) => {
                    let v = crate::federation::render(state, config, shape, reply);
                    (200, Envelope::Ok(Output::Value(v)))
                }
                Err(r) => (r.code.http_status(), render::error(&r)),
            });
        }
    });
    Ok(())
}

/// `{"infcode": 0, "output": {"results": …}}`.
struct BatchOk(BatchResults);

impl serde::Serialize for BatchOk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("infcode", &0)?;
        map.serialize_entry("output", &self.0)?;
        map.end()
    }
}

/// Parses a batch body: the body as a whole (400, 413), then each op on its own.
pub(crate) fn parse_batch(
    bytes: &[u8],
    actor: &Actor,
) -> Result<Vec<Result<BatchOp, Rejection>>, Rejection> {
    let wire: BatchWire = from_text(bytes)?;
    let ops = wire.ops.ok_or(bad("ops must be an array"))?;
    if ops.is_empty() {
        return Err(bad("ops must not be empty"));
    }
    if ops.len() > SUBMISSION_OP_COUNT_MAX {
        return Err(Rejection::with(ErrCode::TooLarge, "at most 8190 ops"));
    }
    Ok(ops
        .into_iter()
        .map(|op| parse_batch_op(op.get().as_bytes(), actor))
        .collect())
}

/// A batch op, parsed; its request is taken out for the writer, the raw token stays.
pub(crate) struct BatchOp {
    pub request: Option<WriteRequest>,
    pub raw_token: Option<String>,
}

fn parse_batch_op(op: &[u8], actor: &Actor) -> Result<BatchOp, Rejection> {
    let op: OpWire = from_text(op)?;
    let path = op.path.str("path")?;
    let body = op.body.ok_or(bad("body"))?;
    let parsed = parse_write(&path, body, actor)?;
    Ok(BatchOp {
        request: Some(parsed.request),
        raw_token: parsed.raw_token,
    })
}

/// Query parameters as (name, value) pairs, `application/x-www-form-urlencoded` (`+` is a
/// space, `%XX` a byte; a malformed escape is kept as it is; bytes that are not UTF-8 become
/// U+FFFD and then match nothing). The first of a repeated name counts.
fn query(raw: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn forbidden() -> Rejection {
    Rejection::new(ErrCode::Forbidden)
}

fn respond(result: Result<Value, Rejection>) -> Response {
    respond_output(result.map(Output::Value))
}

fn respond_output(result: Result<Output, Rejection>) -> Response {
    match result {
        Ok(output) => json_response(StatusCode::OK, &Envelope::Ok(output)),
        Err(rejection) => fail(rejection),
    }
}

pub(crate) async fn person(State(app): AppState, psn_no: Segment, headers: HeaderMap) -> Response {
    let psn_no = segment(psn_no);
    let config = app.engine.federation();
    let mut durable_at = None;
    // The views under the lock, their JSON after it.
    let read = read_as(&app, &headers, |actor, s| {
        if matches!(&actor, Actor::Person(me) if me.as_str() != psn_no) {
            return Err(forbidden());
        }
        // As of the last durable op (no wait for the batch being applied or synced), except on
        // a federated engine, whose cross-engine lists are the current state's.
        let as_of = match config {
            None => s.person_as_of(&psn_no, app.engine.durable_op()),
            Some(_) => None,
        };
        let view = durable_or_current(s, &mut durable_at, as_of, || s.person(&psn_no))?;
        // A federated engine also lists the person's cross-engine transfers and bindings.
        let federated = config.as_ref().map(|config| {
            (
                crate::federation::person_exchanges(s, config, &psn_no),
                crate::federation::person_bindings(s, config, &psn_no),
            )
        });
        Ok((view, federated))
    });
    let response = respond(read.map(|(view, federated)| {
        let mut v = render::person(&view);
        if let Some((transfers, bindings)) = federated {
            v["cross_engine_transfers"] = transfers;
            v["cross_engine_bindings"] = bindings;
        }
        v
    }));
    durable_at_mark(response, durable_at)
}

/// A read's answer as of the last durable op (`as_of`, from the state's priors), marked so
/// that [`durable_reads`] waits only for the token's last change; or, when the priors cannot
/// tell, `current`, which is held until what it saw is durable.
fn durable_or_current<T>(
    s: &gongji_core::State,
    durable_at: &mut Option<DurableAt>,
    as_of: Option<Result<T, Rejection>>,
    current: impl FnOnce() -> Result<T, Rejection>,
) -> Result<T, Rejection> {
    match as_of {
        Some(answer) => {
            *durable_at = Some(DurableAt(s.tokens_changed_op()));
            answer
        }
        None => current(),
    }
}

/// Marks a response with the op it must wait for, if it shows nothing newer.
fn durable_at_mark(mut response: Response, durable_at: Option<DurableAt>) -> Response {
    if let Some(at) = durable_at {
        response.extensions_mut().insert(at);
    }
    response
}

pub(crate) async fn entries(
    State(app): AppState,
    psn_no: Segment,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let psn_no = segment(psn_no);
    let page: Result<(u32, Option<u64>), Rejection> = (|| {
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
        Ok((limit, after))
    })();
    let mut durable_at = None;
    let read = read_as(&app, &headers, |actor, s| {
        let (limit, after) = page?;
        match &actor {
            Actor::Admin => {}
            Actor::Person(me) if me.as_str() == psn_no => {}
            _ => return Err(forbidden()),
        }
        let as_of = s.entries_as_of(&psn_no, after, limit, app.engine.durable_op());
        durable_or_current(s, &mut durable_at, as_of, || {
            s.entries(&psn_no, after, limit)
        })
    });
    let response = respond(read.map(|(page, next)| render::entries(&page, next)));
    durable_at_mark(response, durable_at)
}

pub(crate) async fn settlement(
    State(app): AppState,
    setl_id: Segment,
    headers: HeaderMap,
) -> Response {
    let setl_id = segment(setl_id);
    let mut durable_at = None;
    let response = respond_output(read_as(&app, &headers, |actor, s| {
        let id = setl_id
            .parse::<u64>()
            .map_err(|_| Rejection::new(ErrCode::SettlementNotFound))?;
        let as_of = s.settlement_as_of(id, app.engine.durable_op());
        let view = durable_or_current(s, &mut durable_at, as_of, || s.settlement(id))?;
        let allowed = match &actor {
            Actor::Admin => true,
            Actor::Institution(code) => *code == view.fixmedins_code,
            Actor::Person(me) => *me == view.psn_no,
        };
        if !allowed {
            return Err(forbidden());
        }
        Ok(Output::Settlement(view, true))
    }));
    durable_at_mark(response, durable_at)
}

pub(crate) async fn transfer(
    State(app): AppState,
    transfer_id: Segment,
    headers: HeaderMap,
) -> Response {
    let transfer_id = segment(transfer_id);
    if let Some(xid) = gongji_core::federation::Xid::parse(&transfer_id) {
        return respond(
            actor(&app, &headers).and_then(|actor| crate::federation::get(&app, &xid, &actor)),
        );
    }
    let read = read_as(&app, &headers, |actor, s| {
        let not_found = Rejection::with(ErrCode::NotFound, "no such transfer");
        let id = transfer_id.parse::<u64>().map_err(|_| not_found)?;
        let view = s.transfer(id)?;
        admin_or_persons(&actor, &view.from_psn_no, &view.to_psn_no)?;
        Ok(view)
    });
    respond(read.map(|view| render::transfer(&view)))
}

/// `GET /v1/bindings/{binding_id}`: one binding as the person's view shows it, whatever its
/// status (revoked too): an in-engine one by its number, a cross-engine one by its
/// `<engine>-<32 hex>` id (federated engines). Admin, or the binding's person on this engine.
pub(crate) async fn binding(
    State(app): AppState,
    binding_id: Segment,
    headers: HeaderMap,
) -> Response {
    let binding_id = segment(binding_id);
    if let Some(bxid) = gongji_core::federation::Xid::parse(&binding_id) {
        return respond(
            actor(&app, &headers)
                .and_then(|actor| crate::federation::get_binding(&app, &bxid, &actor)),
        );
    }
    let read = read_as(&app, &headers, |actor, s| {
        let not_found = Rejection::with(ErrCode::BindingNotFound, "no such binding");
        let id = binding_id.parse::<u64>().map_err(|_| not_found)?;
        let view = s.binding(id)?;
        admin_or_persons(&actor, &view.giver_psn_no, &view.receiver_psn_no)?;
        Ok(view)
    });
    respond(read.map(|view| render::binding(&view)))
}

/// Refuses (403) all but an admin and the two persons a record is between.
fn admin_or_persons(
    actor: &Actor,
    a: &gongji_core::PsnNo,
    b: &gongji_core::PsnNo,
) -> Result<(), Rejection> {
    match actor {
        Actor::Admin => Ok(()),
        Actor::Person(me) if me == a || me == b => Ok(()),
        Actor::Person(_) | Actor::Institution(_) => Err(forbidden()),
    }
}

/// `GET /v1/federation/counters` (admin; federated engines).
pub(crate) async fn federation_counters(State(app): AppState, headers: HeaderMap) -> Response {
    respond(actor(&app, &headers).and_then(|actor| crate::federation::counters(&app, &actor)))
}

pub(crate) async fn stats(
    State(app): AppState,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut durable_at = None;
    let response = respond((|| {
        let (actor, auth_op) = actor_at(&app, &headers)?;
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
        // As of the last durable batch: only the authorisation may be newer.
        let view = app.engine.stats_durable(from, to, prov);
        durable_at = Some(DurableAt(auth_op));
        Ok(render::stats(from, to, prov, &view))
    })());
    durable_at_mark(response, durable_at)
}

/// On a reply: it shows nothing newer than this op (a read answered as of the last durable
/// batch), so [`durable_reads`] holds it only until this op is durable, not every op applied.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DurableAt(pub u64);

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

/// The body of `POST /v1/reconciliation`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconWire<'a> {
    #[serde(borrow, default)]
    fixmedins_code: Field<'a>,
    #[serde(borrow, default)]
    date: Field<'a>,
    #[serde(borrow, default)]
    setl_count: Field<'a>,
    #[serde(default)]
    medfee_sumamt: Yuan,
    #[serde(default)]
    fund_pay_sumamt: Yuan,
    #[serde(default)]
    acct_pay: Yuan,
    #[serde(default)]
    wallet_pay: Yuan,
    #[serde(default)]
    acct_mulaid_pay: Yuan,
    #[serde(default)]
    psn_cash_pay: Yuan,
}

impl ReconWire<'_> {
    /// The amounts in the order of [`RECON_AMOUNTS`].
    fn amounts(&mut self) -> [&mut Yuan; 6] {
        [
            &mut self.medfee_sumamt,
            &mut self.fund_pay_sumamt,
            &mut self.acct_pay,
            &mut self.wallet_pay,
            &mut self.acct_mulaid_pay,
            &mut self.psn_cash_pay,
        ]
    }
}

/// An institution's totals: code, date, count and the amounts of [`RECON_AMOUNTS`].
pub(crate) type ReconBody = (String, String, u64, Vec<gongji_core::Fen>);

pub(crate) fn parse_reconcile(bytes: &[u8]) -> Result<ReconBody, Rejection> {
    let mut wire: ReconWire = from_text(bytes)?;
    let code = wire.fixmedins_code.str("fixmedins_code")?.into_owned();
    let date = wire.date.str("date")?.into_owned();
    let count = wire.setl_count.u64("setl_count")?;
    let mut theirs = Vec::new();
    for (name, amount) in RECON_AMOUNTS.iter().zip(wire.amounts()) {
        theirs.push(amount.take(name)?);
    }
    Ok((code, date, count, theirs))
}

/// `POST /v1/reconciliation`: the institution's totals against the platform's. A read.
pub(crate) async fn reconcile(State(app): AppState, headers: HeaderMap, body: Body) -> Response {
    respond(
        async {
            let actor = actor(&app, &headers)?;
            let bytes = read_body(body).await?;
            let (code, date, count, theirs) = parse_reconcile(&bytes)?;
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
    metrics::gauge!("gongji_history_chunks_written")
        .set(c.history_chunks_total.load(Relaxed) as f64);
    // Chunks whose records are read from history files: those attached at start too.
    let cold = app.engine.read(|s| {
        gongji_core::Column::ALL
            .into_iter()
            .map(|column| s.cold_chunk_count(column))
            .sum::<usize>()
    });
    metrics::gauge!("gongji_history_chunks_cold").set(cold as f64);
    metrics::gauge!("gongji_history_prefetched_records")
        .set(c.history_prefetched_total.load(Relaxed) as f64);
    for (part, bytes) in app.engine.read(gongji_core::State::memory) {
        metrics::gauge!("gongji_state_bytes", "part" => part).set(bytes as f64);
    }
    if app.engine.federation().is_some() {
        federation_metrics(&app);
    }
    let text = crate::prometheus().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// A federated engine's open exchanges (docs/FEDERATION.md): in flight per peer and the age
/// of the oldest (engine clock), pending here. The relay counts resends per peer
/// (`gongji_fed_resends_total`), deliveries and refusals itself.
fn federation_metrics(app: &App) {
    use std::sync::atomic::Ordering::Relaxed;
    let (open, clock, peers, watermarks, records) = app.engine.read(|s| {
        let peers: Vec<_> = s
            .federation_config()
            .map(|c| c.peers.keys().copied().collect())
            .unwrap_or_default();
        let forgetting = (s.fed_watermarks(), s.fed_record_counts());
        (s.fed_open(), s.clock(), peers, forgetting.0, forgetting.1)
    });
    forgetting_metrics(clock, &watermarks, records);
    for peer in peers {
        let (count, oldest) = open.in_flight.get(&peer).copied().unwrap_or((0, clock));
        let label = peer.to_string();
        metrics::gauge!("gongji_fed_in_flight", "peer" => label.clone()).set(count as f64);
        metrics::gauge!("gongji_fed_in_flight_oldest_age_seconds", "peer" => label)
            .set(clock.saturating_sub(oldest).max(0) as f64);
    }
    metrics::gauge!("gongji_fed_pending").set(open.pending as f64);
    metrics::gauge!("gongji_fed_bindings_unanswered").set(open.bindings_unanswered as f64);
    let dropped = app.engine.counters().fed_sends_dropped_total.load(Relaxed);
    metrics::gauge!("gongji_fed_sends_dropped").set(dropped as f64);
}

/// Forgetting (docs/FEDERATION.md, "Forgetting"): the records held and dropped, per peer
/// and kind the days since the last day agreed with it (absent until one is), and the claims
/// not yet confirmed (a count that stays above zero means a peer keeps refusing).
fn forgetting_metrics(
    clock: i64,
    watermarks: &std::collections::BTreeMap<
        gongji_core::federation::EngineId,
        gongji_core::federation::Watermark,
    >,
    (exchanges, bindings, exchanges_dropped, bindings_dropped): (u64, u64, u64, u64),
) {
    for (kind, held, dropped) in [
        ("exchanges", exchanges, exchanges_dropped),
        ("bindings", bindings, bindings_dropped),
    ] {
        metrics::gauge!("gongji_fed_records", "kind" => kind).set(held as f64);
        metrics::gauge!("gongji_fed_records_forgotten", "kind" => kind).set(dropped as f64);
    }
    let today = gongji_core::time::cst_day(clock);
    let mut unconfirmed = 0;
    for (peer, w) in watermarks {
        unconfirmed += u32::from(w.unconfirmed());
        for (kind, day) in [("exchanges", w.exchanges), ("bindings", w.bindings)] {
            if day != gongji_core::federation::NO_DAY {
                let age = f64::from(today.saturating_sub(day));
                metrics::gauge!("gongji_fed_forgotten_through_age_days",
                    "peer" => peer.to_string(), "kind" => kind)
                .set(age);
            }
        }
    }
    metrics::gauge!("gongji_fed_claims_unconfirmed").set(f64::from(unconfirmed));
}

/// What every request passes through, in one layer rather than three: a declared
/// `Content-Length` over the limit is refused with `413 TOO_LARGE` at once, for every path and
/// with or without a token, before a byte of the body is read (a body sent without a length is
/// cut off at the limit while it is read); then the request has `limit` to complete (else
/// `408`, and the connection is closed; a write already handed to the writer may still apply,
/// and its msgid makes the client's retry safe); then it is counted by endpoint and status and
/// timed. A refused or timed-out request is not counted, as before the three were one.
pub(crate) async fn guard(limit: std::time::Duration, request: Request, next: Next) -> Response {
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
    let endpoint = endpoint_label(&request);
    let started = Instant::now();
    let Ok(response) = tokio::time::timeout(limit, next.run(request)).await else {
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
        return response;
    };
    let code = code_label(response.status());
    metrics::counter!("gongji_http_requests_total", "endpoint" => endpoint.clone(), "code" => code)
        .increment(1);
    metrics::histogram!("gongji_http_request_seconds", "endpoint" => endpoint)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Whether a request reads the state (API reads, the console's pages): its answer must wait
/// until what it saw is durable. Writes answer after their own sync and render only their
/// op's own records; the service endpoints show no state.
fn reads_state(request: &Request) -> bool {
    let path = request.uri().path();
    match *request.method() {
        Method::GET | Method::HEAD => !matches!(
            path,
            "/healthz" | "/metrics" | "/v1/openapi.json" | "/ui/console.css"
        ),
        Method::POST => path == "/v1/reconciliation",
        _ => false,
    }
}

/// Reads never show a state that a crash could still undo. The writer applies batch k+1 while
/// batch k is being synced, and a read takes the state's read lock between the writer's
/// chunks, so it may see ops that are not durable yet. Its reply is held until every op
/// applied when the handler returned (at least every op it saw) is durable: the rest of the
/// batch being applied and its sync, at most. A reply marked [`DurableAt`] (the statistics,
/// answered as of the last durable batch) waits only for its op. If the writer stopped first,
/// what the read saw may be lost, and it is refused (`503 OVERLOADED`) instead.
pub(crate) async fn durable_reads(State(app): AppState, request: Request, next: Next) -> Response {
    if !reads_state(&request) {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    let seen = match response.extensions().get::<DurableAt>() {
        Some(at) => at.0,
        None => app.engine.applied_op(),
    };
    match app.engine.durable(seen).await {
        Ok(()) => response,
        Err(_) => fail(Rejection::with(
            ErrCode::Overloaded,
            "the writer stopped before what this read saw was durable",
        )),
    }
}

/// The endpoint label: route templates only (a label per psn_no or setl_id would grow without
/// bound); the write routes' are static, so the hot path allocates nothing for it.
fn endpoint_label(request: &Request) -> metrics::SharedString {
    match request.extensions().get::<MatchedPath>() {
        Some(p) => metrics::SharedString::from_owned(p.as_str().to_owned()),
        None if request.method() == Method::POST => metrics::SharedString::const_str(
            wire::write_route(request.uri().path()).unwrap_or("other"),
        ),
        None => metrics::SharedString::const_str("other"),
    }
}

/// The status label, without an allocation for the codes the API answers.
fn code_label(status: StatusCode) -> metrics::SharedString {
    let known = match status.as_u16() {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        413 => "413",
        422 => "422",
        503 => "503",
        _ => return metrics::SharedString::from_owned(status.as_u16().to_string()),
    };
    metrics::SharedString::const_str(known)
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        // Proves query values are decoded as browsers and curl encode them.
        let decode = |v: &str| super::query(Some(format!("k={v}"))).remove(0).1;
        assert_eq!(decode("2025-05"), "2025-05");
        assert_eq!(decode("2025%2d05%2D20"), "2025-05-20");
        assert_eq!(decode("a+b%3Ac"), "a b:c");
        assert_eq!(decode("50%"), "50%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%FF"), "\u{FFFD}");
        let q = super::query(Some("limit=5&&limit=7&after=".into()));
        assert_eq!(
            super::param(&q, "limit"),
            Some("5"),
            "the first of a repeated name"
        );
        assert_eq!(super::param(&q, "after"), Some(""));
    }
}
