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

/// The little-endian writer of ops (and of the federation's messages and ops).
pub(crate) struct Enc<'a>(pub(crate) &'a mut Vec<u8>);

impl Enc<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn str8(&mut self, s: &str) {
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
    pub(crate) fn actor(&mut self, a: &Actor) {
        match a {
            Actor::Admin => self.u8(0),
            Actor::Institution(c) => {
                self.u8(1);
                self.str8(c);
            }
            Actor::Person(p) => {
                self.u8(2);
                self.str8(p);
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
            e.actor(actor);
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
        // Tag 11 is a reversal in the caller's own scope (the only kind before scopes); tag 17
        // names the institution whose scope an admin reverses in.
        Body::Reverse {
            omsgid,
            fixmedins_code: None,
        } => {
            e.u8(11);
            e.str8(omsgid);
        }
        Body::Reverse {
            omsgid,
            fixmedins_code: Some(code),
        } => {
            e.u8(17);
            e.str8(omsgid);
            e.str8(code);
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

/// The reader of ops (and of the federation's messages and ops): every read checks the length.
pub(crate) struct Dec<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Dec<'a> {
    pub(crate) fn err<T>(&self, what: &'static str) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.pos,
            what,
        })
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return self.err("truncated");
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
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
            relation: d.pick(&Relation::ALL)?,
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
        11 => Body::Reverse {
            omsgid: d.arr()?,
            fixmedins_code: None,
        },
        17 => Body::Reverse {
            omsgid: d.arr()?,
            fixmedins_code: Some(d.arr()?),
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{InstCode, Msgid, PsnNo};

    /// 2025-05-20 10:00:00 CST.
    const T: i64 = 1_747_706_400;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn enc(op: &Op) -> Vec<u8> {
        let mut out = Vec::new();
        encode_op(op, &mut out);
        out
    }

    fn psn(s: &str) -> PsnNo {
        PsnNo::from(s).expect("fits")
    }

    fn inst(s: &str) -> InstCode {
        InstCode::from(s).expect("fits")
    }

    fn settle_op() -> Op {
        Op::Write(Command {
            msgid: Msgid::from("M1").expect("fits"),
            time: T,
            actor: Actor::Institution(inst("H1")),
            body: Body::Settle {
                fixmedins_code: inst("H1"),
                psn_no: psn("P1"),
                medfee_sumamt: Fen(1230),
                fund_pay_sumamt: Fen(230),
                acct_used: true,
            },
        })
    }

    const TICK_HEX: &str = "010020e22b6800000000";
    const SETTLE_HEX: &str = concat!(
        "01",               // format version
        "01",               // write
        "024d31",           // msgid "M1"
        "20e22b6800000000", // time, i64 LE
        "01024831",         // actor: institution "H1"
        "09",               // body: settle
        "024831",           // fixmedins_code "H1"
        "025031",           // psn_no "P1"
        "ce04000000000000", // medfee 1230 fen
        "e600000000000000", // fund 230 fen
        "01",               // acct_used
    );

    #[test]
    fn tick_bytes_pinned() {
        // Proves the version-1 encoding of a tick, byte for byte, and its decoding.
        let op = Op::Tick { time: T };
        assert_eq!(hex(&enc(&op)), TICK_HEX);
        assert_eq!(decode_op(&unhex(TICK_HEX)), Ok(op));
    }

    #[test]
    fn settle_bytes_pinned() {
        // Proves the version-1 encoding of a settlement write, byte for byte, and that the
        // fingerprint bytes are exactly the body part (no version, msgid, time or actor).
        let op = settle_op();
        let bytes = enc(&op);
        assert_eq!(hex(&bytes), SETTLE_HEX);
        assert_eq!(decode_op(&bytes), Ok(op.clone()));
        let Op::Write(command) = &op else {
            unreachable!()
        };
        let mut fp = Vec::new();
        encode_body_for_fingerprint(&command.body, &mut fp);
        assert_eq!(hex(&fp), SETTLE_HEX[2 * 17..]);
    }

    #[test]
    fn decode_truncated() {
        // Proves every strict prefix of a valid op is refused as truncated, at its end.
        for bytes in [unhex(TICK_HEX), unhex(SETTLE_HEX)] {
            for n in 0..bytes.len() {
                let err = decode_op(&bytes[..n]).expect_err("a prefix");
                assert_eq!((err.what, err.offset <= n), ("truncated", true), "{n}");
            }
        }
        assert_eq!(
            decode_op(&[]),
            Err(DecodeError {
                offset: 0,
                what: "truncated"
            })
        );
    }

    #[test]
    fn decode_unknown_version_and_trailing_bytes() {
        // Proves a version other than 1 and bytes after a complete op are refused, and the
        // other malformed tags and values are named.
        for version in [0u8, 2, 0xff] {
            let mut bytes = unhex(SETTLE_HEX);
            bytes[0] = version;
            let err = decode_op(&bytes).unwrap_err();
            assert_eq!((err.offset, err.what), (1, "unknown format version"));
        }
        let mut bytes = unhex(SETTLE_HEX);
        bytes.push(0);
        let err = decode_op(&bytes).unwrap_err();
        assert_eq!((err.offset, err.what), (bytes.len() - 1, "trailing bytes"));
        let mut bytes = unhex(TICK_HEX);
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_op(&bytes).unwrap_err().what, "trailing bytes");

        let bad = |at: usize, value: u8| {
            let mut bytes = unhex(SETTLE_HEX);
            bytes[at] = value;
            decode_op(&bytes).unwrap_err().what
        };
        assert_eq!(bad(1, 2), "op tag");
        assert_eq!(bad(13, 3), "actor tag");
        assert_eq!(bad(17, 0), "body tag");
        assert_eq!(bad(17, 18), "body tag");
        assert_eq!(bad(40, 2), "enum value");
        assert_eq!(bad(3, 0xff), "utf-8");
        // A msgid longer than 64 bytes does not fit.
        let mut long = vec![1, 1, 65];
        long.extend_from_slice(&[b'a'; 65]);
        assert_eq!(decode_op(&long).unwrap_err().what, "string too long");
        // A credit batch above the item limit is refused before any allocation.
        let mut credit = vec![1, 1, 1, b'C'];
        credit.extend_from_slice(&T.to_le_bytes());
        credit.extend_from_slice(&[0, 6]);
        credit.extend_from_slice(&(2025u32 * 12 + 4).to_le_bytes());
        credit.extend_from_slice(&10_001u32.to_le_bytes());
        assert_eq!(
            decode_op(&credit).unwrap_err().what,
            "too many credit items"
        );
    }

    #[test]
    fn round_trip_every_body_kind() {
        // Proves encode then decode gives back the op for one op of every body kind and both
        // ticks extremes, and re-encoding gives the same bytes.
        let bodies = vec![
            Body::CreateToken {
                token_hash: [0xab; 32],
                role: Role::Person,
                fixmedins_code: None,
                psn_no: Some(psn("P1")),
            },
            Body::RevokeToken { token_id: u64::MAX },
            Body::Enrol {
                psn_no: psn("P1"),
                certno: ArrayString::from("11010519491231002X").expect("fits"),
                psn_name: "张三丰".into(),
                insutype: Insutype::Resident,
                admdvs: 110_101,
            },
            Body::SetStatus {
                psn_no: psn("P1"),
                status: PersonStatus::Suspended,
            },
            Body::RegisterInstitution {
                fixmedins_code: inst("H44010600001"),
                fixmedins_name: "x".repeat(200),
                fixmedins_type: InstType::Pharmacy,
                admdvs: 440_106,
            },
            Body::Credit {
                period: Period(2025 * 12 + 4),
                items: vec![
                    CreditItem {
                        psn_no: psn("P1"),
                        amount: Fen(1),
                    },
                    CreditItem {
                        psn_no: psn("P2"),
                        amount: Fen::INPUT_MAX,
                    },
                ],
            },
            Body::Bind {
                giver_psn_no: psn("G"),
                receiver_psn_no: psn("R"),
                relation: Relation::MaternalGrandchild,
            },
            Body::Revoke { binding_id: 7 },
            match settle_op() {
                Op::Write(c) => c.body,
                Op::Tick { .. } => unreachable!(),
            },
            Body::Cancel { setl_id: 1 },
            Body::Reverse {
                omsgid: Msgid::from("H44010600001202505201000000001").expect("fits"),
                fixmedins_code: None,
            },
            Body::Reverse {
                omsgid: Msgid::from("H44010600001202505201000000001").expect("fits"),
                fixmedins_code: Some(inst("H44010600001")),
            },
            Body::OpenWallet { psn_no: psn("P1") },
            Body::TransferCreate {
                from_psn_no: psn("A"),
                to_psn_no: psn("B"),
                amount: Fen(200_000),
                source: TransferSource::Wallet,
            },
            Body::TransferAccept { transfer_id: 2 },
            Body::TransferDecline { transfer_id: 3 },
            Body::Contribute {
                payer_psn_no: psn("A"),
                psn_no: psn("B"),
                year: 2026,
                amount: Fen(38_000),
            },
        ];
        let actors = [
            Actor::Admin,
            Actor::Institution(inst("H1")),
            Actor::Person(psn("P1")),
        ];
        let mut ops: Vec<Op> = bodies
            .into_iter()
            .enumerate()
            .map(|(n, body)| {
                Op::Write(Command {
                    msgid: Msgid::from(&format!("m{n}")).expect("fits"),
                    time: T + n as i64,
                    actor: actors[n % 3].clone(),
                    body,
                })
            })
            .collect();
        ops.extend([Op::Tick { time: i64::MIN }, Op::Tick { time: i64::MAX }]);
        let mut tags = std::collections::BTreeSet::new();
        for op in &ops {
            let bytes = enc(op);
            if let Op::Write(_) = op {
                let Op::Write(c) = op else { unreachable!() };
                let skip = 3
                    + c.msgid.len()
                    + 8
                    + 1
                    + match &c.actor {
                        Actor::Admin => 0,
                        Actor::Institution(s) => 1 + s.len(),
                        Actor::Person(s) => 1 + s.len(),
                    };
                tags.insert(bytes[skip]);
            }
            let back = decode_op(&bytes).expect("decodes");
            assert_eq!(&back, op);
            assert_eq!(enc(&back), bytes);
        }
        assert_eq!(tags, (1..=17).collect());
    }
}
