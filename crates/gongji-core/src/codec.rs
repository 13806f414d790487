//! The binary encoding of ops, as the journal stores them (format version 1).
//!
//! Hand-written and little-endian: an op is `[version u8][tag u8]…`; strings are a length
//! (u8, or u16 for names) then UTF-8 bytes; amounts are u64 fen. Changing any byte here is a
//! format change: the byte-pinned tests below must change with a new version number.

use arrayvec::ArrayString;

use crate::command::{
    Actor, Body, Command, CreditItem, InstType, Insutype, Op, PersonStatus, Relation, Role,
    TransferSource,
};
use crate::time::Period;
use crate::Fen;

pub const FORMAT_VERSION: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub what: &'static str,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op decode error at byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for DecodeError {}

struct Enc<'a>(&'a mut Vec<u8>);

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str8(&mut self, s: &str) {
        self.u8(u8::try_from(s.len()).expect("short string"));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn str16(&mut self, s: &str) {
        self.u16(u16::try_from(s.len()).expect("name length"));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt8(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str8(s);
            }
        }
    }
}

/// Appends the encoding of `op` to `out`.
pub fn encode_op(op: &Op, out: &mut Vec<u8>) {
    let mut e = Enc(out);
    e.u8(FORMAT_VERSION);
    match op {
        Op::Tick { time } => {
            e.u8(0);
            e.i64(*time);
        }
        Op::Write(Command {
            msgid,
            time,
            actor,
            body,
        }) => {
            e.u8(1);
            e.str8(msgid);
            e.i64(*time);
            match actor {
                Actor::Admin => e.u8(0),
                Actor::Institution(c) => {
                    e.u8(1);
                    e.str8(c);
                }
                Actor::Person(p) => {
                    e.u8(2);
                    e.str8(p);
                }
            }
            encode_body(body, &mut e, false);
        }
    }
}

/// The bytes that decide whether two requests under one msgid are "the same body": the body
/// alone, without time, actor or the (random) token hash.
pub fn encode_body_for_fingerprint(body: &Body, out: &mut Vec<u8>) {
    encode_body(body, &mut Enc(out), true);
}

fn encode_body(body: &Body, e: &mut Enc<'_>, fingerprint: bool) {
    match body {
        Body::CreateToken {
            token_hash,
            role,
            fixmedins_code,
            psn_no,
        } => {
            e.u8(1);
            e.0.extend_from_slice(if fingerprint { &[0; 32] } else { token_hash });
            e.u8(*role as u8);
            e.opt8(fixmedins_code.as_deref());
            e.opt8(psn_no.as_deref());
        }
        Body::RevokeToken { token_id } => {
            e.u8(2);
            e.u64(*token_id);
        }
        Body::Enrol {
            psn_no,
            certno,
            psn_name,
            insutype,
            admdvs,
        } => {
            e.u8(3);
            e.str8(psn_no);
            e.str8(certno);
            e.str16(psn_name);
            e.u8(*insutype as u8);
            e.u32(*admdvs);
        }
        Body::SetStatus { psn_no, status } => {
            e.u8(4);
            e.str8(psn_no);
            e.u8(*status as u8);
        }
        Body::RegisterInstitution {
            fixmedins_code,
            fixmedins_name,
            fixmedins_type,
            admdvs,
        } => {
            e.u8(5);
            e.str8(fixmedins_code);
            e.str16(fixmedins_name);
            e.u8(*fixmedins_type as u8);
            e.u32(*admdvs);
        }
        Body::Credit { period, items } => {
            e.u8(6);
            e.u32(period.0);
            e.u32(items.len() as u32);
            for item in items {
                e.str8(&item.psn_no);
                e.u64(item.amount.0);
            }
        }
        Body::Bind {
            giver_psn_no,
            receiver_psn_no,
            relation,
        } => {
            e.u8(7);
            e.str8(giver_psn_no);
            e.str8(receiver_psn_no);
            e.u8(*relation as u8);
        }
        Body::Revoke { binding_id } => {
            e.u8(8);
            e.u64(*binding_id);
        }
        Body::Settle {
            fixmedins_code,
            psn_no,
            medfee_sumamt,
            fund_pay_sumamt,
            acct_used,
        } => {
            e.u8(9);
            e.str8(fixmedins_code);
            e.str8(psn_no);
            e.u64(medfee_sumamt.0);
            e.u64(fund_pay_sumamt.0);
            e.u8(u8::from(*acct_used));
        }
        Body::Cancel { setl_id } => {
            e.u8(10);
            e.u64(*setl_id);
        }
        Body::Reverse { omsgid } => {
            e.u8(11);
            e.str8(omsgid);
        }
        Body::OpenWallet { psn_no } => {
            e.u8(12);
            e.str8(psn_no);
        }
        Body::TransferCreate {
            from_psn_no,
            to_psn_no,
            amount,
            source,
        } => {
            e.u8(13);
            e.str8(from_psn_no);
            e.str8(to_psn_no);
            e.u64(amount.0);
            e.u8(*source as u8);
        }
        Body::TransferAccept { transfer_id } => {
            e.u8(14);
            e.u64(*transfer_id);
        }
        Body::TransferDecline { transfer_id } => {
            e.u8(15);
            e.u64(*transfer_id);
        }
        Body::Contribute {
            payer_psn_no,
            psn_no,
            year,
            amount,
        } => {
            e.u8(16);
            e.str8(payer_psn_no);
            e.str8(psn_no);
            e.u16(*year);
            e.u64(amount.0);
        }
    }
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn err<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.pos,
            what,
        })
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return self.err("truncated");
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn fen(&mut self) -> Result<Fen, DecodeError> {
        Ok(Fen(self.u64()?))
    }
    fn utf8(&mut self, n: usize) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError {
            offset: at,
            what: "utf-8",
        })
    }
    fn arr<const N: usize>(&mut self) -> Result<ArrayString<N>, DecodeError> {
        let n = usize::from(self.u8()?);
        let s = self.utf8(n)?;
        ArrayString::from(s).or_else(|_| self.err("string too long"))
    }
    fn string16(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(self.u16()?);
        Ok(self.utf8(n)?.to_owned())
    }
    fn opt<const N: usize>(&mut self) -> Result<Option<ArrayString<N>>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.arr()?)),
            _ => self.err("option tag"),
        }
    }
    fn pick<T: Copy>(&mut self, options: &[T]) -> Result<T, DecodeError> {
        let v = usize::from(self.u8()?);
        match options.get(v) {
            Some(t) => Ok(*t),
            None => self.err("enum value"),
        }
    }
}

/// Decodes one op; the whole buffer must be used.
pub fn decode_op(buf: &[u8]) -> Result<Op, DecodeError> {
    let mut d = Dec { buf, pos: 0 };
    if d.u8()? != FORMAT_VERSION {
        return d.err("unknown format version");
    }
    let op = match d.u8()? {
        0 => Op::Tick { time: d.i64()? },
        1 => {
            let msgid = d.arr()?;
            let time = d.i64()?;
            let actor = match d.u8()? {
                0 => Actor::Admin,
                1 => Actor::Institution(d.arr()?),
                2 => Actor::Person(d.arr()?),
                _ => return d.err("actor tag"),
            };
            let body = decode_body(&mut d)?;
            Op::Write(Command {
                msgid,
                time,
                actor,
                body,
            })
        }
        _ => return d.err("op tag"),
    };
    if d.pos != buf.len() {
        return d.err("trailing bytes");
    }
    Ok(op)
}

fn decode_body(d: &mut Dec<'_>) -> Result<Body, DecodeError> {
    use Relation::*;
    const RELATIONS: [Relation; 9] = [
        Spouse,
        Parent,
        Child,
        Sibling,
        PaternalGrandparent,
        MaternalGrandparent,
        PaternalGrandchild,
        MaternalGrandchild,
        Other,
    ];
    Ok(match d.u8()? {
        1 => Body::CreateToken {
            token_hash: d.take(32)?.try_into().expect("32 bytes"),
            role: d.pick(&[Role::Admin, Role::Institution, Role::Person])?,
            fixmedins_code: d.opt()?,
            psn_no: d.opt()?,
        },
        2 => Body::RevokeToken { token_id: d.u64()? },
        3 => Body::Enrol {
            psn_no: d.arr()?,
            certno: d.arr()?,
            psn_name: d.string16()?,
            insutype: d.pick(&[Insutype::Employee, Insutype::Resident])?,
            admdvs: d.u32()?,
        },
        4 => Body::SetStatus {
            psn_no: d.arr()?,
            status: d.pick(&[PersonStatus::Active, PersonStatus::Suspended])?,
        },
        5 => Body::RegisterInstitution {
            fixmedins_code: d.arr()?,
            fixmedins_name: d.string16()?,
            fixmedins_type: d.pick(&[InstType::Medical, InstType::Pharmacy])?,
            admdvs: d.u32()?,
        },
        6 => {
            let period = Period(d.u32()?);
            let n = d.u32()? as usize;
            if n > crate::command::CREDIT_ITEMS_MAX {
                return d.err("too many credit items");
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(CreditItem {
                    psn_no: d.arr()?,
                    amount: d.fen()?,
                });
            }
            Body::Credit { period, items }
        }
        7 => Body::Bind {
            giver_psn_no: d.arr()?,
            receiver_psn_no: d.arr()?,
            relation: d.pick(&RELATIONS)?,
        },
        8 => Body::Revoke {
            binding_id: d.u64()?,
        },
        9 => Body::Settle {
            fixmedins_code: d.arr()?,
            psn_no: d.arr()?,
            medfee_sumamt: d.fen()?,
            fund_pay_sumamt: d.fen()?,
            acct_used: d.pick(&[false, true])?,
        },
        10 => Body::Cancel { setl_id: d.u64()? },
        11 => Body::Reverse { omsgid: d.arr()? },
        12 => Body::OpenWallet { psn_no: d.arr()? },
        13 => Body::TransferCreate {
            from_psn_no: d.arr()?,
            to_psn_no: d.arr()?,
            amount: d.fen()?,
            source: d.pick(&[TransferSource::Acct, TransferSource::Wallet])?,
        },
        14 => Body::TransferAccept {
            transfer_id: d.u64()?,
        },
        15 => Body::TransferDecline {
            transfer_id: d.u64()?,
        },
        16 => Body::Contribute {
            payer_psn_no: d.arr()?,
            psn_no: d.arr()?,
            year: d.u16()?,
            amount: d.fen()?,
        },
        _ => return d.err("body tag"),
    })
}
