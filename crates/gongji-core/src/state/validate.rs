//! The first two checks of every write, in the API's order: values well formed and in range
//! (400), then the actor's role may make this request (403).

use super::State;
use crate::certno::{certno_valid, province_valid};
use crate::command::{
    code_valid, msgid_valid, Actor, Body, Command, Role, CREDIT_ITEMS_MAX, NAME_BYTES_MAX,
};
use crate::reply::{ErrCode, Rejection};
use crate::Fen;

const YEAR_MIN: u16 = 1970;
const YEAR_MAX: u16 = 9999;

fn bad(detail: &'static str) -> Rejection {
    Rejection::with(ErrCode::BadRequest, detail)
}

fn code(s: &str, detail: &'static str) -> Result<(), Rejection> {
    if code_valid(s) {
        Ok(())
    } else {
        Err(bad(detail))
    }
}

fn name(s: &str) -> Result<(), Rejection> {
    if s.trim().is_empty() || s.len() > NAME_BYTES_MAX || s.chars().any(char::is_control) {
        return Err(bad("name must be 1 to 200 bytes of printable text"));
    }
    Ok(())
}

fn admdvs(a: u32) -> Result<(), Rejection> {
    if (100_000..=999_999).contains(&a) && province_valid((a / 10_000) as u8) {
        Ok(())
    } else {
        Err(ErrCode::InvalidAdmdvs.into())
    }
}

/// An amount that must move money: more than 0.00, at most 99999999.99.
fn moving_amount(a: Fen) -> Result<(), Rejection> {
    if a.is_zero() || a > Fen::INPUT_MAX {
        Err(ErrCode::InvalidAmount.into())
    } else {
        Ok(())
    }
}

fn amount(a: Fen) -> Result<(), Rejection> {
    if a > Fen::INPUT_MAX {
        Err(ErrCode::InvalidAmount.into())
    } else {
        Ok(())
    }
}

/// Checks that every value of a command is well formed and in range. Pure; the HTTP layer
/// calls it too, before its own role checks.
pub fn validate(command: &Command) -> Result<(), Rejection> {
    if !msgid_valid(&command.msgid) {
        return Err(bad("msgid must be 1 to 64 of [0-9A-Za-z_-]"));
    }
    match &command.actor {
        Actor::Admin => {}
        Actor::Institution(c) => code(c, "token institution code")?,
        Actor::Person(p) => code(p, "token psn_no")?,
    }
    match &command.body {
        Body::CreateToken {
            role,
            fixmedins_code,
            psn_no,
            ..
        } => match role {
            Role::Admin if fixmedins_code.is_none() && psn_no.is_none() => Ok(()),
            Role::Institution if psn_no.is_none() => code(
                fixmedins_code
                    .as_deref()
                    .ok_or(bad("fixmedins_code is required"))?,
                "fixmedins_code",
            ),
            Role::Person if fixmedins_code.is_none() => code(
                psn_no.as_deref().ok_or(bad("psn_no is required"))?,
                "psn_no",
            ),
            _ => Err(bad(
                "fixmedins_code goes with institution, psn_no with person",
            )),
        },
        Body::RevokeToken { .. }
        | Body::Revoke { .. }
        | Body::Cancel { .. }
        | Body::TransferAccept { .. }
        | Body::TransferDecline { .. } => Ok(()),
        Body::Enrol {
            psn_no,
            certno,
            psn_name,
            admdvs: a,
            ..
        } => {
            code(psn_no, "psn_no")?;
            if !certno_valid(certno) {
                return Err(ErrCode::InvalidCertno.into());
            }
            admdvs(*a)?;
            name(psn_name)
        }
        Body::SetStatus { psn_no, .. } | Body::OpenWallet { psn_no } => code(psn_no, "psn_no"),
        Body::RegisterInstitution {
            fixmedins_code,
            fixmedins_name,
            admdvs: a,
            ..
        } => {
            code(fixmedins_code, "fixmedins_code")?;
            admdvs(*a)?;
            name(fixmedins_name)
        }
        Body::Credit { period, items } => validate_credit(period.0, items),
        Body::Bind {
            giver_psn_no,
            receiver_psn_no,
            ..
        } => {
            code(giver_psn_no, "giver_psn_no")?;
            code(receiver_psn_no, "receiver_psn_no")
        }
        Body::Settle {
            fixmedins_code,
            psn_no,
            medfee_sumamt,
            fund_pay_sumamt,
            ..
        } => {
            code(fixmedins_code, "fixmedins_code")?;
            code(psn_no, "psn_no")?;
            amount(*medfee_sumamt)?;
            amount(*fund_pay_sumamt)
        }
        Body::Reverse {
            omsgid,
            fixmedins_code,
        } => {
            if let Some(c) = fixmedins_code {
                code(c, "fixmedins_code")?;
            }
            // A reversal cannot name itself; in another scope the same text is another msgid.
            let own_scope = match (fixmedins_code, &command.actor) {
                (None, _) => true,
                (Some(c), Actor::Institution(me)) => c == me,
                (Some(_), _) => false,
            };
            if !msgid_valid(omsgid) || (own_scope && omsgid == &command.msgid) {
                return Err(bad("omsgid must be a msgid other than the reversal's own"));
            }
            Ok(())
        }
        Body::TransferCreate {
            from_psn_no,
            to_psn_no,
            amount: a,
            ..
        } => {
            code(from_psn_no, "from_psn_no")?;
            code(to_psn_no, "to_psn_no")?;
            moving_amount(*a)
        }
        Body::Contribute {
            payer_psn_no,
            psn_no,
            year,
            amount: a,
        } => {
            code(payer_psn_no, "payer_psn_no")?;
            code(psn_no, "psn_no")?;
            if !(YEAR_MIN..=YEAR_MAX).contains(year) {
                return Err(bad("year out of range"));
            }
            moving_amount(*a)
        }
    }
}

fn validate_credit(period: u32, items: &[crate::CreditItem]) -> Result<(), Rejection> {
    if !(u32::from(YEAR_MIN) * 12..=u32::from(YEAR_MAX) * 12 + 11).contains(&period) {
        return Err(ErrCode::InvalidPeriod.into());
    }
    if items.is_empty() {
        return Err(bad("items must not be empty"));
    }
    if items.len() > CREDIT_ITEMS_MAX {
        return Err(Rejection::with(ErrCode::TooLarge, "at most 10000 items"));
    }
    for (n, item) in items.iter().enumerate() {
        code(&item.psn_no, "psn_no").map_err(|r| r.at_item(n))?;
        moving_amount(item.amount).map_err(|r| r.at_item(n))?;
    }
    Ok(())
}

impl State {
    /// Whether `actor` may make this request (API.md roles). Ownership that needs a record
    /// (a settlement's institution, a binding's parties) answers 404 when the record is absent.
    pub(super) fn authorize(&self, actor: &Actor, body: &Body) -> Result<(), Rejection> {
        let allowed = match (actor, body) {
            (Actor::Admin, _) => true,
            (Actor::Institution(code), body) => match body {
                Body::Settle { fixmedins_code, .. } => fixmedins_code == code,
                Body::Cancel { setl_id } => {
                    let s = self.settlement_index(*setl_id)?;
                    self.insts.list[self.setls.get(s as usize).inst as usize].code == *code
                }
                // An institution reverses in its own msgid scope only.
                Body::Reverse { fixmedins_code, .. } => {
                    fixmedins_code.as_ref().is_none_or(|c| c == code)
                }
                _ => false,
            },
            (Actor::Person(me), body) => match body {
                Body::Bind { giver_psn_no, .. } => giver_psn_no == me,
                Body::Revoke { binding_id } => {
                    let b = &self.bindings[self.binding_index(*binding_id)? as usize];
                    let mine = self.persons.find(me);
                    mine == Some(b.giver) || mine == Some(b.receiver)
                }
                Body::OpenWallet { psn_no } => psn_no == me,
                Body::TransferCreate { from_psn_no, .. } => from_psn_no == me,
                Body::TransferAccept { transfer_id } | Body::TransferDecline { transfer_id } => {
                    let t = self
                        .transfers
                        .get(self.transfer_index(*transfer_id)? as usize);
                    self.persons.find(me) == Some(t.to)
                }
                Body::Contribute { payer_psn_no, .. } => payer_psn_no == me,
                _ => false,
            },
        };
        if allowed {
            Ok(())
        } else {
            Err(ErrCode::Forbidden.into())
        }
    }
}
