//! JSON in: every body parsed once into typed structs. [`WriteWire`] holds the fields of every
//! write endpoint (`deny_unknown_fields`, which also refuses a key named twice); each value is
//! kept as its JSON text ([`Field`], [`Yuan`]) and checked field by field afterwards, so every
//! field keeps its own error message and the API's check order. Amounts go from the number's or
//! string's decimal text straight into fen (serde_json's `arbitrary_precision`), never a float.
//!
//! Rejected alternative: typed fields (`psn_no: PsnNo`) inside the derive. serde would then
//! answer a wrong value with its own text, in document order, and an amount with `BAD_REQUEST`
//! where API.md says `INVALID_AMOUNT`.

use std::borrow::Cow;

use arrayvec_like::Short;
use gongji_core::command::CREDIT_ITEMS_MAX;
use gongji_core::money::{parse_amount, AmountError};
use gongji_core::time::{parse_cst, parse_period};
use gongji_core::{
    Actor, Body, CreditItem, ErrCode, Fen, InstType, Insutype, Msgid, PersonStatus, Rejection,
    Relation, Role, TransferSource,
};
use gongji_server::WriteRequest;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Tiny helpers over `arrayvec::ArrayString` without naming the crate here.
mod arrayvec_like {
    pub trait Short: Sized {
        fn parse_short(s: &str) -> Option<Self>;
    }
    impl<const N: usize> Short for gongji_core::command::ArrayString<N> {
        fn parse_short(s: &str) -> Option<Self> {
            Self::from(s).ok()
        }
    }
}

pub(crate) fn bad(detail: &'static str) -> Rejection {
    Rejection::with(ErrCode::BadRequest, detail)
}

/// The rejection for a body serde refused: not JSON, not an object, or a key that the
/// endpoint does not take or that is named twice.
pub(crate) fn refused(e: &serde_json::Error) -> Rejection {
    if !e.is_data() {
        return bad("malformed JSON");
    }
    let text = e.to_string();
    if text.starts_with("unknown field") {
        bad("unknown field")
    } else if text.starts_with("duplicate field") {
        bad("an object names the same key twice")
    } else {
        bad("the body must be a JSON object")
    }
}

/// Parses one JSON document into `T`: the whole text, nothing after it.
pub(crate) fn from_text<'a, T: Deserialize<'a>>(text: &'a [u8]) -> Result<T, Rejection> {
    serde_json::from_slice(text).map_err(|e| refused(&e))
}

/// One field's value as its JSON text. Null counts as absent for the value, but the key was
/// named: a key that the endpoint does not take is refused even when it is null.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Field<'a> {
    named: bool,
    raw: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field<'a>, D::Error> {
        Ok(Field {
            named: true,
            raw: Option::<&'a RawValue>::deserialize(d)?,
        })
    }
}

/// What a JSON value's text is, for the fields that take strings and numbers.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Number(&'a str),
    Other,
}

fn scalar(raw: &RawValue) -> Scalar<'_> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        // A JSON string without escapes is its own text between the quotes.
        Some(b'"') if !text.contains('\\') => Scalar::Str(Cow::Borrowed(&text[1..text.len() - 1])),
        Some(b'"') => match serde_json::from_str::<String>(text) {
            Ok(s) => Scalar::Str(Cow::Owned(s)),
            Err(_) => Scalar::Other,
        },
        Some(b'-' | b'0'..=b'9') => Scalar::Number(text),
        _ => Scalar::Other,
    }
}

impl<'a> Field<'a> {
    /// Takes the field out of its struct: what is still named at the end was not taken.
    pub fn take(&mut self) -> Field<'a> {
        std::mem::take(self)
    }

    pub fn named(&self) -> bool {
        self.named
    }

    pub fn opt_str(self, key: &'static str) -> Result<Option<Cow<'a, str>>, Rejection> {
        match self.raw.map(scalar) {
            None => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(s)),
            Some(_) => Err(Rejection::with(ErrCode::BadRequest, key)),
        }
    }

    pub fn str(self, key: &'static str) -> Result<Cow<'a, str>, Rejection> {
        self.opt_str(key)?
            .ok_or(Rejection::with(ErrCode::BadRequest, key))
    }

    /// A short identifier (`psn_no`, `fixmedins_code`, `msgid`).
    pub fn short<T: Short>(self, key: &'static str) -> Result<T, Rejection> {
        short(&self.str(key)?, key)
    }

    pub fn opt_short<T: Short>(self, key: &'static str) -> Result<Option<T>, Rejection> {
        self.opt_str(key)?.map(|s| short(&s, key)).transpose()
    }

    pub fn u64(self, key: &'static str) -> Result<u64, Rejection> {
        match self.raw.map(scalar) {
            Some(Scalar::Number(n)) => n
                .parse()
                .map_err(|_| Rejection::with(ErrCode::BadRequest, key)),
            _ => Err(Rejection::with(ErrCode::BadRequest, key)),
        }
    }

    /// The raw JSON text of an array or object field (`items`).
    pub fn raw(self) -> Option<&'a RawValue> {
        self.raw
    }
}

/// An amount field: yuan with at most two decimals as a JSON number or string, decoded from its
/// decimal text straight into fen while the body is parsed.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Yuan {
    named: bool,
    value: Option<Result<Fen, YuanFault>>,
}

#[derive(Clone, Copy, Debug)]
enum YuanFault {
    /// Neither a number nor a string.
    NotAmount,
    Amount(AmountError),
}

impl<'de> Deserialize<'de> for Yuan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Yuan, D::Error> {
        let raw = Option::<&'de RawValue>::deserialize(d)?;
        let value = raw.map(|raw| {
            let text = match scalar(raw) {
                Scalar::Str(s) => s,
                Scalar::Number(n) => Cow::Borrowed(n),
                Scalar::Other => return Err(YuanFault::NotAmount),
            };
            parse_amount(&text).map_err(YuanFault::Amount)
        });
        Ok(Yuan { named: true, value })
    }
}

impl Yuan {
    pub fn named(&self) -> bool {
        self.named
    }

    /// The amount in fen; absent or null is a missing field, a bad amount `INVALID_AMOUNT`.
    pub fn take(&mut self, key: &'static str) -> Result<Fen, Rejection> {
        match std::mem::take(self).value {
            Some(Ok(fen)) => Ok(fen),
            None | Some(Err(YuanFault::NotAmount)) => {
                Err(Rejection::with(ErrCode::BadRequest, key))
            }
            Some(Err(YuanFault::Amount(e))) => Err(Rejection::with(
                ErrCode::InvalidAmount,
                match e {
                    AmountError::Syntax => "not a decimal amount",
                    AmountError::Negative => "negative amount",
                    AmountError::TooManyDecimals => "more than two decimals",
                    AmountError::TooLarge => "above 99999999.99",
                },
            )),
        }
    }
}

fn short<T: Short>(s: &str, key: &'static str) -> Result<T, Rejection> {
    T::parse_short(s).ok_or(Rejection::with(ErrCode::BadRequest, key))
}

/// The body of any write: the fields of every write endpoint. Each endpoint takes its own; a
/// field left named at the end is one it does not take (`unknown field`, as for a key no
/// endpoint knows, which serde refuses while parsing).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WriteWire<'a> {
    #[serde(borrow, default)]
    msgid: Field<'a>,
    #[serde(borrow, default)]
    inf_time: Field<'a>,
    #[serde(borrow, default)]
    role: Field<'a>,
    #[serde(borrow, default)]
    fixmedins_code: Field<'a>,
    #[serde(borrow, default)]
    psn_no: Field<'a>,
    #[serde(borrow, default)]
    certno: Field<'a>,
    #[serde(borrow, default)]
    psn_name: Field<'a>,
    #[serde(borrow, default)]
    insutype: Field<'a>,
    #[serde(borrow, default)]
    admdvs: Field<'a>,
    #[serde(borrow, default)]
    status: Field<'a>,
    #[serde(borrow, default)]
    fixmedins_name: Field<'a>,
    #[serde(borrow, default)]
    fixmedins_type: Field<'a>,
    #[serde(borrow, default)]
    period: Field<'a>,
    #[serde(borrow, default)]
    items: Field<'a>,
    #[serde(borrow, default)]
    giver_psn_no: Field<'a>,
    #[serde(borrow, default)]
    receiver_psn_no: Field<'a>,
    #[serde(borrow, default)]
    relation: Field<'a>,
    #[serde(default)]
    medfee_sumamt: Yuan,
    #[serde(default)]
    fund_pay_sumamt: Yuan,
    #[serde(borrow, default)]
    acct_used_flag: Field<'a>,
    #[serde(borrow, default)]
    omsgid: Field<'a>,
    #[serde(borrow, default)]
    from_psn_no: Field<'a>,
    #[serde(borrow, default)]
    to_psn_no: Field<'a>,
    #[serde(default)]
    amount: Yuan,
    #[serde(borrow, default)]
    source: Field<'a>,
    #[serde(borrow, default)]
    payer_psn_no: Field<'a>,
    #[serde(borrow, default)]
    year: Field<'a>,
}

impl WriteWire<'_> {
    /// Fails on any field the endpoint did not take.
    fn finish(&self) -> Result<(), Rejection> {
        let fields = [
            &self.msgid,
            &self.inf_time,
            &self.role,
            &self.fixmedins_code,
            &self.psn_no,
            &self.certno,
            &self.psn_name,
            &self.insutype,
            &self.admdvs,
            &self.status,
            &self.fixmedins_name,
            &self.fixmedins_type,
            &self.period,
            &self.items,
            &self.giver_psn_no,
            &self.receiver_psn_no,
            &self.relation,
            &self.acct_used_flag,
            &self.omsgid,
            &self.from_psn_no,
            &self.to_psn_no,
            &self.source,
            &self.payer_psn_no,
            &self.year,
        ];
        let amounts = [&self.medfee_sumamt, &self.fund_pay_sumamt, &self.amount];
        if fields.iter().any(|f| f.named()) || amounts.iter().any(|a| a.named()) {
            return Err(bad("unknown field"));
        }
        Ok(())
    }
}

/// One item of a crediting batch.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditItemWire<'a> {
    #[serde(borrow, default)]
    psn_no: Field<'a>,
    #[serde(default)]
    amount: Yuan,
}

/// One op of `POST /v1/batch`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpWire<'a> {
    #[serde(borrow, default)]
    pub path: Field<'a>,
    #[serde(borrow, default)]
    pub body: Option<WriteWire<'a>>,
}

/// Path segments of a write, e.g. `/v1/settlements/12/cancel` → `["settlements","12","cancel"]`.
fn segments(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix("/v1/")?;
    Some(rest.trim_end_matches('/').split('/').collect())
}

fn id(s: &str, missing: ErrCode) -> Result<u64, Rejection> {
    s.parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or(Rejection::new(missing))
}

/// What a write path names, before its body is read.
enum Target {
    Token,
    TokenRevoke(u64),
    Person,
    PersonStatus(String),
    Wallet(String),
    Institution,
    Credits,
    Binding,
    BindingRevoke(u64),
    Settlement,
    SettlementCancel(u64),
    Reversal,
    Transfer,
    TransferAccept(u64),
    TransferDecline(u64),
    Contribution,
}

fn target(path: &str) -> Result<Target, Rejection> {
    let not_found = Rejection::with(ErrCode::NotFound, "no such endpoint");
    let segs = segments(path).ok_or(not_found)?;
    Ok(match segs.as_slice() {
        ["tokens"] => Target::Token,
        ["tokens", t, "revoke"] => Target::TokenRevoke(id(t, ErrCode::NotFound)?),
        ["persons"] => Target::Person,
        ["persons", p, "status"] => Target::PersonStatus((*p).to_owned()),
        ["persons", p, "wallet"] => Target::Wallet((*p).to_owned()),
        ["institutions"] => Target::Institution,
        ["credits"] => Target::Credits,
        ["bindings"] => Target::Binding,
        ["bindings", b, "revoke"] => Target::BindingRevoke(id(b, ErrCode::BindingNotFound)?),
        ["settlements"] => Target::Settlement,
        ["settlements", s, "cancel"] => {
            Target::SettlementCancel(id(s, ErrCode::SettlementNotFound)?)
        }
        ["reversals"] => Target::Reversal,
        ["wallet", "transfers"] => Target::Transfer,
        ["wallet", "transfers", t, "accept"] => Target::TransferAccept(id(t, ErrCode::NotFound)?),
        ["wallet", "transfers", t, "decline"] => Target::TransferDecline(id(t, ErrCode::NotFound)?),
        ["contributions"] => Target::Contribution,
        _ => return Err(not_found),
    })
}

/// The route template of a write path, whatever ids it names (`/v1/settlements/{setl_id}/cancel`):
/// the routing decision and the `endpoint` label of the metrics (bounded, no ids in it).
pub(crate) fn write_route(path: &str) -> Option<&'static str> {
    Some(match segments(path)?.as_slice() {
        ["tokens"] => "/v1/tokens",
        ["tokens", _, "revoke"] => "/v1/tokens/{token_id}/revoke",
        ["persons"] => "/v1/persons",
        ["persons", _, "status"] => "/v1/persons/{psn_no}/status",
        ["persons", _, "wallet"] => "/v1/persons/{psn_no}/wallet",
        ["institutions"] => "/v1/institutions",
        ["credits"] => "/v1/credits",
        ["bindings"] => "/v1/bindings",
        ["bindings", _, "revoke"] => "/v1/bindings/{binding_id}/revoke",
        ["settlements"] => "/v1/settlements",
        ["settlements", _, "cancel"] => "/v1/settlements/{setl_id}/cancel",
        ["reversals"] => "/v1/reversals",
        ["wallet", "transfers"] => "/v1/wallet/transfers",
        ["wallet", "transfers", _, "accept"] => "/v1/wallet/transfers/{transfer_id}/accept",
        ["wallet", "transfers", _, "decline"] => "/v1/wallet/transfers/{transfer_id}/decline",
        ["contributions"] => "/v1/contributions",
        _ => return None,
    })
}

/// Whether `path` has the shape of a write endpoint. An id in it that names nothing
/// (`/v1/settlements/abc/cancel`) is answered later with that resource's not-found code.
pub(crate) fn is_write_path(path: &str) -> bool {
    write_route(path).is_some()
}

/// A parsed write, and the raw token when it creates one (shown once).
pub(crate) struct ParsedWrite {
    pub request: WriteRequest,
    pub raw_token: Option<String>,
}

/// Parses a write: path and body, then the core's value checks (400), then `inf_time` from a
/// non-admin (403), in the API's order.
pub(crate) fn parse_write(
    path: &str,
    mut o: WriteWire<'_>,
    actor: &Actor,
) -> Result<ParsedWrite, Rejection> {
    let target = target(path)?;
    let msgid: Msgid = o.msgid.take().short("msgid")?;
    let inf_time = match o.inf_time.take().opt_str("inf_time")? {
        None => None,
        Some(s) => Some(parse_cst(&s).ok_or(bad("inf_time must be YYYY-MM-DD HH:MM:SS"))?),
    };
    let mut raw_token = None;
    let body = parse_body(target, &mut o, &mut raw_token)?;
    o.finish()?;
    let request = WriteRequest {
        msgid,
        inf_time,
        actor: actor.clone(),
        body,
    };
    let command = gongji_core::Command {
        msgid,
        time: 0,
        actor: actor.clone(),
        body: request.body.clone(),
    };
    gongji_core::validate_command(&command)?;
    if inf_time.is_some() && *actor != Actor::Admin {
        return Err(Rejection::with(
            ErrCode::Forbidden,
            "inf_time is for admin tokens",
        ));
    }
    Ok(ParsedWrite { request, raw_token })
}

/// A `psn_no` in a write's path: malformed (too long) is a 400 like the same value in a body
/// (the check order puts 400 before 403 and 404); the core checks its characters.
fn path_psn(s: &str) -> Result<gongji_core::PsnNo, Rejection> {
    gongji_core::PsnNo::from(s).map_err(|_| bad("psn_no must be 1 to 30 of [0-9A-Za-z]"))
}

fn parse_body(
    t: Target,
    o: &mut WriteWire<'_>,
    raw_token: &mut Option<String>,
) -> Result<Body, Rejection> {
    Ok(match t {
        Target::Token => {
            let role = match o.role.take().str("role")?.as_ref() {
                "admin" => Role::Admin,
                "institution" => Role::Institution,
                "person" => Role::Person,
                _ => return Err(bad("role must be admin, institution or person")),
            };
            let token = gongji_server::new_token();
            let token_hash = gongji_server::token_hash(&token);
            *raw_token = Some(token);
            Body::CreateToken {
                token_hash,
                role,
                fixmedins_code: o.fixmedins_code.take().opt_short("fixmedins_code")?,
                psn_no: o.psn_no.take().opt_short("psn_no")?,
            }
        }
        Target::TokenRevoke(token_id) => Body::RevokeToken { token_id },
        Target::Person => Body::Enrol {
            psn_no: o.psn_no.take().short("psn_no")?,
            certno: o
                .certno
                .take()
                .str("certno")
                .and_then(|s| short(&s, "certno").map_err(|_| ErrCode::InvalidCertno.into()))?,
            psn_name: o.psn_name.take().str("psn_name")?.into_owned(),
            insutype: match o.insutype.take().str("insutype")?.as_ref() {
                "310" => Insutype::Employee,
                "390" => Insutype::Resident,
                _ => return Err(ErrCode::InvalidInsutype.into()),
            },
            admdvs: admdvs(&o.admdvs.take().str("admdvs")?)?,
        },
        Target::PersonStatus(p) => Body::SetStatus {
            psn_no: path_psn(&p)?,
            status: match o.status.take().str("status")?.as_ref() {
                "active" => PersonStatus::Active,
                "suspended" => PersonStatus::Suspended,
                _ => return Err(bad("status must be active or suspended")),
            },
        },
        Target::Wallet(p) => Body::OpenWallet {
            psn_no: path_psn(&p)?,
        },
        Target::Institution => Body::RegisterInstitution {
            fixmedins_code: o.fixmedins_code.take().short("fixmedins_code")?,
            fixmedins_name: o.fixmedins_name.take().str("fixmedins_name")?.into_owned(),
            fixmedins_type: match o.fixmedins_type.take().str("fixmedins_type")?.as_ref() {
                "1" => InstType::Medical,
                "2" => InstType::Pharmacy,
                _ => return Err(bad("fixmedins_type must be \"1\" or \"2\"")),
            },
            admdvs: admdvs(&o.admdvs.take().str("admdvs")?)?,
        },
        Target::Credits => credits(o)?,
        Target::Binding => Body::Bind {
            giver_psn_no: o.giver_psn_no.take().short("giver_psn_no")?,
            receiver_psn_no: o.receiver_psn_no.take().short("receiver_psn_no")?,
            relation: Relation::parse(&o.relation.take().str("relation")?),
        },
        Target::BindingRevoke(binding_id) => Body::Revoke { binding_id },
        Target::Settlement => Body::Settle {
            fixmedins_code: o.fixmedins_code.take().short("fixmedins_code")?,
            psn_no: o.psn_no.take().short("psn_no")?,
            medfee_sumamt: o.medfee_sumamt.take("medfee_sumamt")?,
            fund_pay_sumamt: o.fund_pay_sumamt.take("fund_pay_sumamt")?,
            acct_used: match o
                .acct_used_flag
                .take()
                .opt_str("acct_used_flag")?
                .as_deref()
            {
                None | Some("1") => true,
                Some("0") => false,
                Some(_) => return Err(bad("acct_used_flag must be \"1\" or \"0\"")),
            },
        },
        Target::SettlementCancel(setl_id) => Body::Cancel { setl_id },
        Target::Reversal => Body::Reverse {
            omsgid: o.omsgid.take().short("omsgid")?,
            fixmedins_code: o.fixmedins_code.take().opt_short("fixmedins_code")?,
        },
        Target::Transfer => Body::TransferCreate {
            from_psn_no: o.from_psn_no.take().short("from_psn_no")?,
            to_psn_no: o.to_psn_no.take().short("to_psn_no")?,
            amount: o.amount.take("amount")?,
            source: match o.source.take().opt_str("source")?.as_deref() {
                None | Some("acct") => TransferSource::Acct,
                Some("wallet") => TransferSource::Wallet,
                Some(_) => return Err(bad("source must be acct or wallet")),
            },
        },
        Target::TransferAccept(transfer_id) => Body::TransferAccept { transfer_id },
        Target::TransferDecline(transfer_id) => Body::TransferDecline { transfer_id },
        Target::Contribution => Body::Contribute {
            payer_psn_no: o.payer_psn_no.take().short("payer_psn_no")?,
            psn_no: o.psn_no.take().short("psn_no")?,
            year: u16::try_from(o.year.take().u64("year")?).map_err(|_| bad("year"))?,
            amount: o.amount.take("amount")?,
        },
    })
}

pub(crate) fn admdvs(s: &str) -> Result<u32, Rejection> {
    gongji_core::certno::parse_admdvs(s).ok_or(ErrCode::InvalidAdmdvs.into())
}

fn credits(o: &mut WriteWire<'_>) -> Result<Body, Rejection> {
    let period = match o.period.take().opt_str("period") {
        Ok(Some(s)) => parse_period(&s).ok_or(Rejection::new(ErrCode::InvalidPeriod))?,
        _ => return Err(bad("period")),
    };
    // The items were validated with the body; here each is read into its own struct so that a
    // fault names the item.
    let items: Vec<&RawValue> = match o.items.take().raw() {
        Some(raw) if raw.get().trim_start().starts_with('[') => {
            serde_json::from_str(raw.get()).map_err(|_| bad("items must be an array"))?
        }
        _ => return Err(bad("items must be an array")),
    };
    if items.len() > CREDIT_ITEMS_MAX {
        return Err(Rejection::with(ErrCode::TooLarge, "at most 10000 items"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (n, item) in items.into_iter().enumerate() {
        let mut item: CreditItemWire =
            from_text(item.get().as_bytes()).map_err(|r| r.at_item(n))?;
        let psn_no = item
            .psn_no
            .take()
            .short("psn_no")
            .map_err(|r| r.at_item(n))?;
        let amount = item.amount.take("amount").map_err(|r| r.at_item(n))?;
        out.push(CreditItem { psn_no, amount });
    }
    Ok(Body::Credit { period, items: out })
}

#[cfg(test)]
mod tests {
    use super::{from_text, OpWire, WriteWire};

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        // Proves the derived structs refuse a repeated key (known or not) in a body, in a
        // batch op and in a batch op's body, with the duplicate-key message; distinct keys pass.
        let msg = |text: &[u8]| from_text::<WriteWire>(text).err().map(|r| r.message());
        assert_eq!(msg(br#"{"msgid":"a","psn_no":"P1","inf_time":null}"#), None);
        for text in [
            &br#"{"amount":1,"amount":1000}"#[..],
            br#"{"msgid":"a","psn_no":"P1","msgid":"b"}"#,
            br#"{"psn_no":null,"psn_no":"P1"}"#,
        ] {
            let m = msg(text).expect("refused");
            assert!(m.contains("same key twice"), "{m}");
        }
        let op = |text: &[u8]| from_text::<OpWire>(text).err().map(|r| r.message());
        assert_eq!(op(br#"{"path":"/v1/x","body":{"msgid":"m"}}"#), None);
        assert!(op(br#"{"path":"/v1/x","body":{"msgid":"m","msgid":"n"}}"#)
            .expect("refused")
            .contains("same key twice"));
        assert!(op(br#"{"path":"/v1/x","path":"/v1/y","body":{}}"#)
            .expect("refused")
            .contains("same key twice"));
        assert!(msg(b"not json").expect("refused").contains("malformed"));
        assert!(msg(br#"{"bogus":null}"#)
            .expect("refused")
            .contains("unknown field"));
    }
}
