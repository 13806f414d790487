//! JSON in: strict field extraction and the parsing of every write path into a
//! [`WriteRequest`]. Amounts are read from the number's decimal text (serde_json's
//! `arbitrary_precision`), never through a float.

use arrayvec_like::Short;
use gongji_core::command::CREDIT_ITEMS_MAX;
use gongji_core::money::{parse_amount, AmountError};
use gongji_core::time::{parse_cst, parse_period};
use gongji_core::{
    Actor, Body, CreditItem, ErrCode, Fen, InstType, Insutype, Msgid, PersonStatus, Rejection,
    Relation, Role, TransferSource,
};
use gongji_server::WriteRequest;
use serde_json::{Map, Value};

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

/// A JSON object whose fields are taken one by one; what is left at the end is unknown.
pub(crate) struct Obj {
    map: Map<String, Value>,
}

impl Obj {
    pub fn new(value: Value) -> Result<Obj, Rejection> {
        match value {
            Value::Object(map) => Ok(Obj { map }),
            _ => Err(bad("the body must be a JSON object")),
        }
    }

    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.map.shift_remove(key).filter(|v| !v.is_null())
    }

    pub fn opt_str(&mut self, key: &'static str) -> Result<Option<String>, Rejection> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Rejection::with(ErrCode::BadRequest, key)),
        }
    }

    pub fn str(&mut self, key: &'static str) -> Result<String, Rejection> {
        self.opt_str(key)?
            .ok_or(Rejection::with(ErrCode::BadRequest, key))
    }

    /// A short identifier (`psn_no`, `fixmedins_code`, `msgid`).
    pub fn short<T: Short>(&mut self, key: &'static str) -> Result<T, Rejection> {
        short(&self.str(key)?, key)
    }

    pub fn opt_short<T: Short>(&mut self, key: &'static str) -> Result<Option<T>, Rejection> {
        self.opt_str(key)?.map(|s| short(&s, key)).transpose()
    }

    pub fn amount(&mut self, key: &'static str) -> Result<Fen, Rejection> {
        let value = self
            .take(key)
            .ok_or(Rejection::with(ErrCode::BadRequest, key))?;
        amount(&value, key)
    }

    pub fn u64(&mut self, key: &'static str) -> Result<u64, Rejection> {
        match self.take(key) {
            Some(Value::Number(n)) => n.as_u64().ok_or(Rejection::with(ErrCode::BadRequest, key)),
            _ => Err(Rejection::with(ErrCode::BadRequest, key)),
        }
    }

    /// Fails on any field not taken.
    pub fn finish(self) -> Result<(), Rejection> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(_) => Err(bad("unknown field")),
        }
    }
}

fn short<T: Short>(s: &str, key: &'static str) -> Result<T, Rejection> {
    T::parse_short(s).ok_or(Rejection::with(ErrCode::BadRequest, key))
}

/// A JSON number or string holding yuan with at most two decimals.
pub(crate) fn amount(value: &Value, key: &'static str) -> Result<Fen, Rejection> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(Rejection::with(ErrCode::BadRequest, key)),
    };
    parse_amount(&text).map_err(|e| {
        Rejection::with(
            ErrCode::InvalidAmount,
            match e {
                AmountError::Syntax => "not a decimal amount",
                AmountError::Negative => "negative amount",
                AmountError::TooManyDecimals => "more than two decimals",
                AmountError::TooLarge => "above 99999999.99",
            },
        )
    })
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
    body: Value,
    actor: &Actor,
) -> Result<ParsedWrite, Rejection> {
    let target = target(path)?;
    let mut obj = Obj::new(body)?;
    let msgid: Msgid = obj.short("msgid")?;
    let inf_time = match obj.opt_str("inf_time")? {
        None => None,
        Some(s) => Some(parse_cst(&s).ok_or(bad("inf_time must be YYYY-MM-DD HH:MM:SS"))?),
    };
    let mut raw_token = None;
    let body = parse_body(target, &mut obj, &mut raw_token)?;
    obj.finish()?;
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

fn parse_body(t: Target, o: &mut Obj, raw_token: &mut Option<String>) -> Result<Body, Rejection> {
    Ok(match t {
        Target::Token => {
            let role = match o.str("role")?.as_str() {
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
                fixmedins_code: o.opt_short("fixmedins_code")?,
                psn_no: o.opt_short("psn_no")?,
            }
        }
        Target::TokenRevoke(token_id) => Body::RevokeToken { token_id },
        Target::Person => Body::Enrol {
            psn_no: o.short("psn_no")?,
            certno: o
                .str("certno")
                .and_then(|s| short(&s, "certno").map_err(|_| ErrCode::InvalidCertno.into()))?,
            psn_name: o.str("psn_name")?,
            insutype: match o.str("insutype")?.as_str() {
                "310" => Insutype::Employee,
                "390" => Insutype::Resident,
                _ => return Err(ErrCode::InvalidInsutype.into()),
            },
            admdvs: admdvs(&o.str("admdvs")?)?,
        },
        Target::PersonStatus(p) => Body::SetStatus {
            psn_no: path_psn(&p)?,
            status: match o.str("status")?.as_str() {
                "active" => PersonStatus::Active,
                "suspended" => PersonStatus::Suspended,
                _ => return Err(bad("status must be active or suspended")),
            },
        },
        Target::Wallet(p) => Body::OpenWallet {
            psn_no: path_psn(&p)?,
        },
        Target::Institution => Body::RegisterInstitution {
            fixmedins_code: o.short("fixmedins_code")?,
            fixmedins_name: o.str("fixmedins_name")?,
            fixmedins_type: match o.str("fixmedins_type")?.as_str() {
                "1" => InstType::Medical,
                "2" => InstType::Pharmacy,
                _ => return Err(bad("fixmedins_type must be \"1\" or \"2\"")),
            },
            admdvs: admdvs(&o.str("admdvs")?)?,
        },
        Target::Credits => credits(o)?,
        Target::Binding => Body::Bind {
            giver_psn_no: o.short("giver_psn_no")?,
            receiver_psn_no: o.short("receiver_psn_no")?,
            relation: Relation::parse(&o.str("relation")?),
        },
        Target::BindingRevoke(binding_id) => Body::Revoke { binding_id },
        Target::Settlement => Body::Settle {
            fixmedins_code: o.short("fixmedins_code")?,
            psn_no: o.short("psn_no")?,
            medfee_sumamt: o.amount("medfee_sumamt")?,
            fund_pay_sumamt: o.amount("fund_pay_sumamt")?,
            acct_used: match o.opt_str("acct_used_flag")?.as_deref() {
                None | Some("1") => true,
                Some("0") => false,
                Some(_) => return Err(bad("acct_used_flag must be \"1\" or \"0\"")),
            },
        },
        Target::SettlementCancel(setl_id) => Body::Cancel { setl_id },
        Target::Reversal => Body::Reverse {
            omsgid: o.short("omsgid")?,
            fixmedins_code: o.opt_short("fixmedins_code")?,
        },
        Target::Transfer => Body::TransferCreate {
            from_psn_no: o.short("from_psn_no")?,
            to_psn_no: o.short("to_psn_no")?,
            amount: o.amount("amount")?,
            source: match o.opt_str("source")?.as_deref() {
                None | Some("acct") => TransferSource::Acct,
                Some("wallet") => TransferSource::Wallet,
                Some(_) => return Err(bad("source must be acct or wallet")),
            },
        },
        Target::TransferAccept(transfer_id) => Body::TransferAccept { transfer_id },
        Target::TransferDecline(transfer_id) => Body::TransferDecline { transfer_id },
        Target::Contribution => Body::Contribute {
            payer_psn_no: o.short("payer_psn_no")?,
            psn_no: o.short("psn_no")?,
            year: u16::try_from(o.u64("year")?).map_err(|_| bad("year"))?,
            amount: o.amount("amount")?,
        },
    })
}

pub(crate) fn admdvs(s: &str) -> Result<u32, Rejection> {
    gongji_core::certno::parse_admdvs(s).ok_or(ErrCode::InvalidAdmdvs.into())
}

fn credits(o: &mut Obj) -> Result<Body, Rejection> {
    let period = match o.take("period") {
        Some(Value::String(s)) => parse_period(&s).ok_or(Rejection::new(ErrCode::InvalidPeriod))?,
        _ => return Err(bad("period")),
    };
    let items = match o.take("items") {
        Some(Value::Array(items)) => items,
        _ => return Err(bad("items must be an array")),
    };
    if items.len() > CREDIT_ITEMS_MAX {
        return Err(Rejection::with(ErrCode::TooLarge, "at most 10000 items"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (n, item) in items.into_iter().enumerate() {
        let mut item = Obj::new(item).map_err(|r| r.at_item(n))?;
        let psn_no = item.short("psn_no").map_err(|r| r.at_item(n))?;
        let amount = item.amount("amount").map_err(|r| r.at_item(n))?;
        item.finish().map_err(|r| r.at_item(n))?;
        out.push(CreditItem { psn_no, amount });
    }
    Ok(Body::Credit { period, items: out })
}

/// Refuses a body in which any object names a key twice (`{"amount":1,"amount":1000}`): a JSON
/// parser keeps one of them silently, and a proxy or log may read the other. A validating pass
/// over the text that builds nothing; a body that is not JSON at all is left to the parser.
pub(crate) fn reject_duplicate_keys(bytes: &[u8]) -> Result<(), Rejection> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match NoDuplicateKeys.deserialize(&mut de) {
        Err(e) if e.to_string().starts_with(DUPLICATE_KEY) => {
            Err(bad("an object names the same key twice"))
        }
        _ => Ok(()),
    }
}

const DUPLICATE_KEY: &str = "duplicate key";

struct NoDuplicateKeys;

impl<'de> serde::de::DeserializeSeed<'de> for NoDuplicateKeys {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicateKeys)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return Err(serde::de::Error::custom(DUPLICATE_KEY));
            }
            map.next_value_seed(NoDuplicateKeys)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::reject_duplicate_keys;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        // Proves a repeated key is refused in the body and in nested objects, and that
        // numbers, arrays and distinct keys pass.
        assert!(reject_duplicate_keys(br#"{"a":1,"b":[1,2.50,{"c":"x"}],"d":null}"#).is_ok());
        assert!(reject_duplicate_keys(br#"{"amount":1,"amount":1000}"#).is_err());
        assert!(reject_duplicate_keys(br#"{"ops":[{"body":{"m":1,"m":2}}]}"#).is_err());
        assert!(
            reject_duplicate_keys(b"not json").is_ok(),
            "left to the parser"
        );
    }
}
