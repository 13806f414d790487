//! The HTTP side of a federated engine (docs/FEDERATION.md): which writes become federation
//! ops, and how exchanges are shown. An engine without `[federation]` never comes here, so
//! its API is exactly API.md's.
//!
//! - `POST /v1/wallet/transfers` with `to_admdvs` (the receiver's area code, which names the
//!   engine that owns the receiver's province): a province of a peer makes the transfer an
//!   exchange ([`FedOp::TransferOut`]); one this engine owns is the in-engine transfer, as
//!   without the field. The rest of the body is parsed and checked as API.md's transfer.
//! - `POST /v1/wallet/transfers/{transfer_id}/accept|decline` where the id is an exchange's
//!   (`<engine>-<32 hex digits>`): [`FedOp::Accept`], [`FedOp::Decline`].
//! - `POST /v1/reversals` naming the msgid of a cross-engine transfer: [`FedOp::Reverse`]
//!   (`result` is `requested`, or `blocked` once the receiver's engine blocked it).
//! - `GET /v1/wallet/transfers/{transfer_id}` of an exchange, and the person's
//!   `cross_engine_transfers` in `GET /v1/persons/{psn_no}`: the same id on both engines.
//! - `POST /v1/bindings` with `receiver_admdvs` of a peer's province: a cross-engine
//!   `wallet_only` binding ([`FedOp::BindOut`]), answered `pending` with its id (`<engine>-<32
//!   hex>`, the same on both engines); the receiver's engine makes it `active` or `refused`.
//!   `POST /v1/bindings/{binding_id}/revoke` with such an id: [`FedOp::Unbind`] with its msgid,
//!   on either person's engine (a revoked one: `409 ALREADY_REVOKED`). `GET
//!   /v1/bindings/{binding_id}` and the person's `cross_engine_bindings` in `GET
//!   /v1/persons/{psn_no}`.
//! - `POST /v1/batch`: each op through [`plan`], as the single write.
//! - `GET /v1/federation/counters`: the reconciliation counters, for `gongji federation
//!   reconcile` and `gongji report` against running engines.
//! - A transfer without `to_admdvs` to a psn_no that is no person here, but with whom the
//!   sender has an active cross-engine binding: the binding says where the receiver lives
//!   (API.md's body, unchanged).

use gongji_core::certno::admdvs_province;
use gongji_core::command::Body;
use gongji_core::federation::{
    EntryReply, ExchangeView, FedOp, FedReply, FederationConfig, LinkStatus, LinkView, Outcome,
    XStatus, Xid,
};
use gongji_core::time::format_cst;
use gongji_core::{Actor, ErrCode, Msgid, Rejection, State, TransferSource};
use gongji_server::{FedRequest, SubmitError, WriteRequest};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::render::money;
use crate::wire::{admdvs, bad, from_text, parse_write};
use crate::App;

/// Most exchanges a person's view lists (newest first).
pub(crate) const PERSON_EXCHANGES_MAX: usize = 100;
/// Most cross-engine bindings a person's view lists (newest first).
pub(crate) const PERSON_BINDINGS_MAX: usize = 100;

/// A JSON object's members in order, each value as its text; a key named twice is refused,
/// as every body of the API refuses it.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out: Vec<(String, &'a RawValue)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'a RawValue>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(serde::de::Error::custom("duplicate field"));
                    }
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn overloaded(e: SubmitError) -> Rejection {
    match e {
        SubmitError::Overloaded => {
            Rejection::with(ErrCode::Overloaded, "retry with the same msgid")
        }
        SubmitError::Stopped => Rejection::with(ErrCode::Overloaded, "the writer has stopped"),
    }
}

/// The segments of a write path after `/v1/`.
fn segments(path: &str) -> Vec<&str> {
    path.strip_prefix("/v1/")
        .map(|p| p.split('/').collect())
        .unwrap_or_default()
}

/// What a write on a federated engine becomes once parsed.
pub(crate) enum Planned {
    /// A core write whose body named a province this engine owns (`to_admdvs`,
    /// `receiver_admdvs`): API.md's write, the member taken out.
    Core(WriteRequest),
    /// A federation op, and how its reply is shown.
    Fed(FedRequest, Shape),
}

/// How a federation op's reply is shown.
pub(crate) enum Shape {
    /// A transfer: the exchange, with the sender's balances when `balances`.
    Exchange {
        balances: bool,
    },
    Binding,
    Reversal {
        omsgid: Msgid,
        xid: Xid,
    },
}

/// A write on a federated engine, parsed: `Some` when it is a federation one (or a core one
/// whose body had a federation member), `None` for the core path, which parses and answers
/// it as on any engine. The same for a single write and for an op of `POST /v1/batch`.
pub(crate) fn plan(
    app: &App,
    config: &FederationConfig,
    path: &str,
    bytes: &[u8],
    actor: &Actor,
) -> Option<Result<Planned, Rejection>> {
    match segments(path).as_slice() {
        ["wallet", "transfers"] => transfer_out(app, config, bytes, actor),
        ["wallet", "transfers", t, answer @ ("accept" | "decline")] => {
            let xid = Xid::parse(t)?;
            Some(answer_incoming(xid, *answer == "accept", bytes, actor))
        }
        ["reversals"] => reverse(app, bytes, actor),
        ["bindings"] => bind_out(config, bytes, actor),
        ["bindings", b, "revoke"] => {
            let bxid = Xid::parse(b)?;
            Some(unbind(bxid, bytes, actor))
        }
        _ => None,
    }
}

/// A write on a federated engine: `Some` when it is a federation one (answered here), `None`
/// for the core path.
pub(crate) async fn write(
    app: &App,
    config: &FederationConfig,
    path: &str,
    bytes: &[u8],
    actor: &Actor,
) -> Option<Result<Value, Rejection>> {
    let planned = plan(app, config, path, bytes, actor)?;
    Some(
        async {
            match planned? {
                Planned::Core(request) => {
                    let mut results = gongji_console::submit(&app.engine, vec![request]).await?;
                    let result = results.pop().expect("one result")?;
                    let output = app.engine.read(|s| crate::render::reply(s, &result.reply));
                    Ok(serde_json::to_value(&output).expect("JSON renders"))
                }
                Planned::Fed(request, shape) => {
                    let mut results = submit_fed(app, vec![request]).await?;
                    let reply = results.pop().expect("one result")?;
                    Ok(app.engine.read(|s| render(s, config, &shape, reply)))
                }
            }
        }
        .await,
    )
}

/// Submits federation ops (applied in order, answered once all are durable).
pub(crate) async fn submit_fed(
    app: &App,
    requests: Vec<FedRequest>,
) -> Result<Vec<Result<FedReply, Rejection>>, Rejection> {
    let rx = app.engine.submit_fed(requests).map_err(overloaded)?;
    let results = rx.await.map_err(|_| overloaded(SubmitError::Stopped))?;
    Ok(results
        .into_iter()
        .map(|r| match r?.reply {
            EntryReply::Fed(reply) => Ok(reply),
            other => unreachable!("a client's federation op answers federation: {other:?}"),
        })
        .collect())
}

/// A federation op's reply as the API shows it.
pub(crate) fn render(
    state: &State,
    config: &FederationConfig,
    shape: &Shape,
    r: FedReply,
) -> Value {
    match (shape, r) {
        (Shape::Exchange { balances }, FedReply::Exchange(view)) => {
            exchange(state, config, &view, *balances)
        }
        (Shape::Binding, FedReply::Binding(view)) => binding(config, &view),
        (Shape::Reversal { omsgid, xid }, FedReply::Exchange(view)) => {
            let result = match view.status {
                XStatus::Closed(Outcome::Blocked) => "blocked",
                _ => "requested",
            };
            json!({
                "omsgid": omsgid.as_str(),
                "result": result,
                "transfer_id": xid.to_string(),
                "status": status(view.status),
            })
        }
        (_, other) => unreachable!("a client's op answers as its kind: {other:?}"),
    }
}

fn fed(inf_time: Option<i64>, op: FedOp, shape: Shape) -> Planned {
    Planned::Fed(FedRequest { inf_time, op }, shape)
}

/// A member's value as a string (None: JSON null), and the rest of the body as JSON bytes.
type Taken = (Option<String>, Vec<u8>);

/// A body without its member `key`; `None` when the body has no such member.
fn take_member(bytes: &[u8], key: &str) -> Option<Result<Taken, Rejection>> {
    let members = match from_text::<Members>(bytes) {
        Ok(m) => m,
        Err(r) => return Some(Err(r)),
    };
    let at = members.0.iter().position(|(k, _)| k == key)?;
    let mut members = members.0;
    let (_, value) = members.remove(at);
    Some((|| {
        let value: Option<String> = serde_json::from_str(value.get())
            .map_err(|_| bad("an area code must be a string of six digits"))?;
        let rest: serde_json::Map<String, Value> = members
            .into_iter()
            .map(|(k, v)| Ok((k, serde_json::from_str(v.get()).map_err(|_| bad("body"))?)))
            .collect::<Result<_, Rejection>>()?;
        Ok((value, serde_json::to_vec(&rest).expect("JSON renders")))
    })())
}

/// A cross-engine binding (`receiver_admdvs` of a peer's province), else `None` (in-engine).
fn bind_out(
    config: &FederationConfig,
    bytes: &[u8],
    actor: &Actor,
) -> Option<Result<Planned, Rejection>> {
    let taken = take_member(bytes, "receiver_admdvs")?;
    Some((|| {
        let (receiver_admdvs, rest) = taken?;
        // The rest is API.md's binding body, parsed and checked as such.
        let parsed = parse_write("/v1/bindings", from_text(&rest)?, actor)?;
        let receiver_admdvs = match receiver_admdvs {
            Some(a) => admdvs(&a)?,
            None => return Err(bad("receiver_admdvs must be a string of six digits")),
        };
        let request = parsed.request;
        if config.owns(admdvs_province(receiver_admdvs)) {
            // An in-engine binding, as without the field.
            return Ok(Planned::Core(request));
        }
        let Body::Bind {
            giver_psn_no,
            receiver_psn_no,
            relation,
        } = request.body
        else {
            unreachable!("a binding body")
        };
        let op = FedOp::BindOut {
            msgid: request.msgid,
            time: 0,
            actor: actor.clone(),
            giver_psn_no,
            receiver_psn_no,
            receiver_admdvs,
            relation,
        };
        Ok(fed(request.inf_time, op, Shape::Binding))
    })())
}

/// The revocation of a cross-engine binding, on either person's engine.
fn unbind(bxid: Xid, bytes: &[u8], actor: &Actor) -> Result<Planned, Rejection> {
    // The body is API.md's `{"msgid"}` (and an admin's `inf_time`), checked as such.
    let parsed = parse_write("/v1/bindings/1/revoke", from_text(bytes)?, actor)?;
    let op = FedOp::Unbind {
        time: 0,
        actor: actor.clone(),
        bxid,
        msgid: Some(parsed.request.msgid),
    };
    Ok(fed(parsed.request.inf_time, op, Shape::Binding))
}

/// A cross-engine binding as API.md shows a binding (`mulaid_scope` always `wallet_only`, no
/// `priority`: it is never drawn by instant call), with its status `pending`, `active`,
/// `refused` (and `refusal`, the receiver engine's code) or `revoked`, both places and both
/// engines.
pub(crate) fn binding(config: &FederationConfig, l: &LinkView) -> Value {
    let (giver_engine, receiver_engine) = if l.giver_here {
        (config.engine, l.peer)
    } else {
        (l.peer, config.engine)
    };
    let mut v = json!({
        "binding_id": l.bxid.to_string(),
        "giver_psn_no": l.giver_psn_no.as_str(),
        "receiver_psn_no": l.receiver_psn_no.as_str(),
        "relation": l.relation.as_str(),
        "mulaid_scope": "wallet_only",
        "status": l.status.as_str(),
        "giver_admdvs": format!("{:06}", l.giver_admdvs),
        "receiver_admdvs": format!("{:06}", l.receiver_admdvs),
        "giver_engine": giver_engine.as_str(),
        "receiver_engine": receiver_engine.as_str(),
    });
    if let LinkStatus::Refused(r) = l.status {
        v["refusal"] = json!(r.code().as_str());
    }
    v
}

/// `GET /v1/bindings/{binding_id}` of a cross-engine binding: admin, or its person here.
pub(crate) fn get_binding(app: &App, bxid: &Xid, actor: &Actor) -> Result<Value, Rejection> {
    let not_found = Rejection::with(ErrCode::BindingNotFound, "no such binding");
    let config = app.engine.federation().ok_or(not_found)?;
    app.engine.read(|s| {
        // A record of an `Unbind` that came before its `Bind` holds no binding: not shown.
        let view = s
            .cross_binding(bxid)
            .filter(|l| !l.receiver_psn_no.is_empty());
        let view = view.ok_or(not_found)?;
        let allowed = match actor {
            Actor::Admin => true,
            Actor::Institution(_) => false,
            Actor::Person(me) => view.psn_no == Some(*me),
        };
        if !allowed {
            return Err(Rejection::new(ErrCode::Forbidden));
        }
        Ok(binding(&config, &view))
    })
}

/// The person's cross-engine bindings for `GET /v1/persons/{psn_no}` on a federated engine.
pub(crate) fn person_bindings(state: &State, config: &FederationConfig, psn_no: &str) -> Value {
    Value::Array(
        state
            .person_links(psn_no, PERSON_BINDINGS_MAX)
            .iter()
            .map(|l| binding(config, l))
            .collect(),
    )
}

fn transfer_out(
    app: &App,
    config: &FederationConfig,
    bytes: &[u8],
    actor: &Actor,
) -> Option<Result<Planned, Rejection>> {
    let (to_admdvs, rest) = match take_member(bytes, "to_admdvs") {
        Some(Ok((to_admdvs, rest))) => {
            let to_admdvs = to_admdvs.ok_or(bad("to_admdvs must be a string of six digits"));
            (Some(to_admdvs), rest)
        }
        Some(Err(r)) => return Some(Err(r)),
        // No `to_admdvs`: cross-engine only when the sender's binding says so (below).
        None => (None, bytes.to_vec()),
    };
    // The rest is API.md's transfer body, parsed and checked as such.
    let parsed = match from_text(&rest).and_then(|w| parse_write("/v1/wallet/transfers", w, actor))
    {
        Ok(parsed) => parsed,
        Err(r) if to_admdvs.is_some() => return Some(Err(r)),
        // The core path answers it the same way.
        Err(_) => return None,
    };
    let to_admdvs = match to_admdvs {
        Some(a) => a.and_then(|a| admdvs(&a)),
        None => {
            let Body::TransferCreate {
                from_psn_no,
                to_psn_no,
                ..
            } = &parsed.request.body
            else {
                unreachable!("a transfer body")
            };
            // A receiver who is a person here is the in-engine transfer, as API.md's.
            Ok(app.engine.read(|s| match s.person_index_of(to_psn_no) {
                Some(_) => None,
                None => s.bound_remote_admdvs(from_psn_no, to_psn_no),
            })?)
        }
    };
    Some(transfer_out_to(config, parsed.request, to_admdvs, actor))
}

fn transfer_out_to(
    config: &FederationConfig,
    request: WriteRequest,
    to_admdvs: Result<u32, Rejection>,
    actor: &Actor,
) -> Result<Planned, Rejection> {
    let to_admdvs = to_admdvs?;
    if config.owns(admdvs_province(to_admdvs)) {
        // An in-engine transfer, as without the field.
        return Ok(Planned::Core(request));
    }
    let Body::TransferCreate {
        from_psn_no,
        to_psn_no,
        amount,
        source,
    } = request.body
    else {
        unreachable!("a transfer body")
    };
    let op = FedOp::TransferOut {
        msgid: request.msgid,
        time: 0,
        actor: actor.clone(),
        from_psn_no,
        to_psn_no,
        to_admdvs,
        amount,
        source,
    };
    Ok(fed(
        request.inf_time,
        op,
        Shape::Exchange { balances: true },
    ))
}

fn answer_incoming(
    xid: Xid,
    accept: bool,
    bytes: &[u8],
    actor: &Actor,
) -> Result<Planned, Rejection> {
    // The body is API.md's `{"msgid"}` (and an admin's `inf_time`), checked as such.
    let path = if accept {
        "/v1/wallet/transfers/1/accept"
    } else {
        "/v1/wallet/transfers/1/decline"
    };
    let parsed = parse_write(path, from_text(bytes)?, actor)?;
    let actor = actor.clone();
    let op = FedOp::answer(accept, 0, actor, xid, Some(parsed.request.msgid));
    Ok(fed(
        parsed.request.inf_time,
        op,
        Shape::Exchange { balances: false },
    ))
}

fn reverse(app: &App, bytes: &[u8], actor: &Actor) -> Option<Result<Planned, Rejection>> {
    let parsed = match from_text(bytes).and_then(|w| parse_write("/v1/reversals", w, actor)) {
        Ok(p) => p,
        // The core path answers it the same way.
        Err(_) => return None,
    };
    let Body::Reverse {
        omsgid,
        fixmedins_code: None,
    } = parsed.request.body
    else {
        return None;
    };
    let xid = app.engine.read(|s| s.outgoing_xid(actor, &omsgid))?;
    let op = FedOp::Reverse {
        time: 0,
        actor: actor.clone(),
        omsgid,
        msgid: Some(parsed.request.msgid),
    };
    Some(Ok(fed(
        parsed.request.inf_time,
        op,
        Shape::Reversal { omsgid, xid },
    )))
}

/// API.md's transfer statuses, and `blocked` for one the sender reversed before it arrived.
fn status(s: XStatus) -> &'static str {
    match s {
        XStatus::InFlight | XStatus::Pending => "pending",
        XStatus::Closed(Outcome::Accepted) => "accepted",
        XStatus::Closed(Outcome::Declined) => "declined",
        XStatus::Closed(Outcome::Expired) => "returned",
        XStatus::Closed(Outcome::Blocked) => "blocked",
    }
}

/// An exchange as a transfer (API.md's fields, the id an exchange's), with the engines; the
/// sender's balances when `balances` (the answer to the transfer itself).
pub(crate) fn exchange(
    state: &State,
    config: &FederationConfig,
    x: &ExchangeView,
    balances: bool,
) -> Value {
    let (from_engine, to_engine) = if x.outgoing {
        (config.engine, x.peer)
    } else {
        (x.peer, config.engine)
    };
    let from_psn_no = x.from_psn_no;
    let to_psn_no = x.to_psn_no;
    let mut v = json!({
        "transfer_id": x.xid.to_string(),
        "from_psn_no": from_psn_no.as_ref().map(|p| p.as_str()),
        "to_psn_no": to_psn_no.as_str(),
        "amount": money(x.amount),
        "source": match x.source { TransferSource::Acct => "acct", TransferSource::Wallet => "wallet" },
        "scope": "cross_province",
        "status": status(x.status),
        "expires_at": format_cst(x.expires_at),
        "from_engine": from_engine.as_str(),
        "to_engine": to_engine.as_str(),
    });
    if !x.outgoing {
        // The receiving engine does not learn the sender's source.
        v.as_object_mut().expect("object").remove("source");
    }
    if let (true, Some(p)) = (balances && x.outgoing, from_psn_no) {
        // The balances the first answer showed (a retry answers it again); the person's
        // now for a record made before they were kept.
        let shown = x.answered_balances.or_else(|| {
            let person = state.person(&p).ok()?;
            Some((person.acct_balc, person.wallet_balc))
        });
        if let Some((acct, wallet)) = shown {
            v["acct_balc"] = money(acct);
            v["wallet_balc"] = money(wallet);
        }
    }
    v
}

/// `GET /v1/wallet/transfers/{transfer_id}` of an exchange: admin, or its person here.
pub(crate) fn get(app: &App, xid: &Xid, actor: &Actor) -> Result<Value, Rejection> {
    let not_found = Rejection::with(ErrCode::NotFound, "no such transfer");
    let config = app.engine.federation().ok_or(not_found)?;
    app.engine.read(|s| {
        let view = s.exchange(xid).ok_or(not_found)?;
        let allowed = match actor {
            Actor::Admin => true,
            Actor::Institution(_) => false,
            Actor::Person(me) => view.psn_no == Some(*me),
        };
        if !allowed {
            return Err(Rejection::new(ErrCode::Forbidden));
        }
        Ok(exchange(s, &config, &view, false))
    })
}

/// The person's exchanges for `GET /v1/persons/{psn_no}` on a federated engine.
pub(crate) fn person_exchanges(state: &State, config: &FederationConfig, psn_no: &str) -> Value {
    Value::Array(
        state
            .person_exchanges(psn_no, PERSON_EXCHANGES_MAX)
            .iter()
            .map(|x| exchange(state, config, x, false))
            .collect(),
    )
}

/// `GET /v1/federation/counters` (admin): this engine's reconciliation counters per CST day
/// of creation and peer engine (`State::fed_counters`), what `gongji federation reconcile`
/// and `gongji report` read from a running engine. An engine without `[federation]`: 404.
pub(crate) fn counters(app: &App, actor: &Actor) -> Result<Value, Rejection> {
    if *actor != Actor::Admin {
        return Err(Rejection::new(ErrCode::Forbidden));
    }
    let config = app.engine.federation().ok_or(Rejection::with(
        ErrCode::NotFound,
        "not an engine of a federation",
    ))?;
    let tally = |t: gongji_core::federation::Tally| json!({"count": t.count, "amount": money(gongji_core::Fen(t.amount))});
    app.engine.read(|s| {
        let open = s.fed_open();
        let in_flight: u64 = open.in_flight.values().map(|(n, _)| n).sum();
        let rows: Vec<Value> = s
            .fed_counters()
            .into_iter()
            .map(|((day, peer), c)| {
                json!({
                    "date": gongji_core::time::format_date(day),
                    "peer": peer.as_str(),
                    "sent": tally(c.sent),
                    "committed": tally(c.committed),
                    "returned": tally(c.returned),
                    "in_flight": tally(c.in_flight),
                    "received": tally(c.received),
                    "accepted": tally(c.accepted),
                    "refused": tally(c.refused),
                    "pending": tally(c.pending),
                })
            })
            .collect();
        Ok(json!({
            "engine": config.engine.as_str(),
            "provinces": config.provinces.iter().map(|p| format!("{p:02}")).collect::<Vec<_>>(),
            "op_count": s.op_count(),
            "exchange_count": s.exchanges().count(),
            "in_flight_count": in_flight,
            "pending_count": open.pending,
            "counters": rows,
        }))
    })
}
