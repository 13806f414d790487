//! The binary encodings of federation: bus messages, and the federation ops of a federated
//! journal (journal format version 1, op tag 2: core ops keep tags 0 and 1, and a core decoder
//! refuses tag 2 rather than misreading it).
//!
//! Little-endian like [`crate::codec`]: strings are a u8 length and UTF-8 bytes; an xid is its
//! engine (string) and 16 key bytes. Messages come from other machines, so the decoders check
//! every string's class (msgid, code, engine id), every tag, and that no byte is left over.

use arrayvec::ArrayString;

use super::{Entry, FedOp, LinkStatus, Message, Outcome, Xid};
use crate::codec::{Dec, DecodeError, Enc};
use crate::command::{code_valid, msgid_valid, Actor, Relation, TransferSource};
use crate::money::Fen;

/// The version byte that starts every message.
pub const MESSAGE_VERSION: u8 = 1;
/// The op tag of a federation op in a journal record (after the format version byte).
pub const FED_OP_TAG: u8 = 2;

// Federation's fields on the op codec's writer and reader.
impl Enc<'_> {
    fn xid(&mut self, x: &Xid) {
        self.str8(&x.engine);
        self.0.extend_from_slice(&x.key.to_le_bytes());
    }
}

impl<'a> Dec<'a> {
    fn str8<const N: usize>(
        &mut self,
        valid: fn(&str) -> bool,
        what: &'static str,
    ) -> Result<ArrayString<N>, DecodeError> {
        let at = self.pos;
        let n = usize::from(self.u8()?);
        let bytes = self.take(n)?;
        let bad = DecodeError { offset: at, what };
        let s = std::str::from_utf8(bytes).map_err(|_| bad)?;
        if !valid(s) {
            return Err(bad);
        }
        ArrayString::from(s).map_err(|_| bad)
    }
    fn engine(&mut self) -> Result<super::EngineId, DecodeError> {
        self.str8(super::engine_id_valid, "engine id")
    }
    fn xid(&mut self) -> Result<Xid, DecodeError> {
        let engine = self.engine()?;
        let key = u128::from_le_bytes(self.take(16)?.try_into().expect("16"));
        Ok(Xid { engine, key })
    }
    fn actor(&mut self) -> Result<Actor, DecodeError> {
        Ok(match self.u8()? {
            0 => Actor::Admin,
            1 => Actor::Institution(self.str8(code_valid, "institution code")?),
            2 => Actor::Person(self.str8(code_valid, "psn_no")?),
            _ => return self.err("actor tag"),
        })
    }
    fn relation(&mut self) -> Result<Relation, DecodeError> {
        match Relation::ALL.get(usize::from(self.u8()?)) {
            Some(r) => Ok(*r),
            None => self.err("relation"),
        }
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.pos != self.buf.len() {
            return self.err("trailing bytes");
        }
        Ok(())
    }
}

fn encode_message_into(m: &Message, e: &mut Enc<'_>) {
    match m {
        Message::Prepare {
            xid,
            to_engine,
            to_psn_no,
            to_admdvs,
            amount,
            from_psn_no,
            sender_admdvs,
            created,
            expires_at,
        } => {
            e.u8(1);
            e.xid(xid);
            e.str8(to_engine);
            e.str8(to_psn_no);
            e.u32(*to_admdvs);
            e.u64(amount.0);
            e.str8(from_psn_no);
            e.u32(*sender_admdvs);
            e.i64(*created);
            e.i64(*expires_at);
        }
        Message::Block {
            xid,
            to_engine,
            amount,
            created,
        } => {
            e.u8(2);
            e.xid(xid);
            e.str8(to_engine);
            e.u64(amount.0);
            e.i64(*created);
        }
        Message::Outcome {
            xid,
            from_engine,
            amount,
            outcome,
        } => {
            e.u8(3);
            e.xid(xid);
            e.str8(from_engine);
            e.u64(amount.0);
            e.u8(*outcome as u8);
        }
        Message::Bind {
            bxid,
            to_engine,
            giver_psn_no,
            giver_admdvs,
            receiver_psn_no,
            receiver_admdvs,
            relation,
            created,
        } => {
            e.u8(4);
            e.xid(bxid);
            e.str8(to_engine);
            e.str8(giver_psn_no);
            e.u32(*giver_admdvs);
            e.str8(receiver_psn_no);
            e.u32(*receiver_admdvs);
            e.u8(*relation as u8);
            e.i64(*created);
        }
        Message::Unbind {
            bxid,
            from_engine,
            to_engine,
            created,
        } => {
            e.u8(if created.is_some() { 9 } else { 5 });
            e.xid(bxid);
            e.str8(from_engine);
            e.str8(to_engine);
            if let Some(created) = created {
                e.i64(*created);
            }
        }
        Message::ClosedThrough {
            from_engine,
            to_engine,
            exchanges,
            bindings,
        }
        | Message::ForgetThrough {
            from_engine,
            to_engine,
            exchanges,
            bindings,
        } => {
            e.u8(if matches!(m, Message::ClosedThrough { .. }) {
                7
            } else {
                8
            });
            e.str8(from_engine);
            e.str8(to_engine);
            e.u32(*exchanges as u32);
            e.u32(*bindings as u32);
        }
        Message::BindStatus {
            bxid,
            from_engine,
            to_engine,
            status,
        } => {
            e.u8(6);
            e.xid(bxid);
            e.str8(from_engine);
            e.str8(to_engine);
            e.u8(status.tag());
        }
    }
}

fn decode_message_from(d: &mut Dec<'_>) -> Result<Message, DecodeError> {
    Ok(match d.u8()? {
        1 => Message::Prepare {
            xid: d.xid()?,
            to_engine: d.engine()?,
            to_psn_no: d.str8(code_valid, "psn_no")?,
            to_admdvs: d.u32()?,
            amount: Fen(d.u64()?),
            from_psn_no: d.str8(code_valid, "psn_no")?,
            sender_admdvs: d.u32()?,
            created: d.i64()?,
            expires_at: d.i64()?,
        },
        2 => Message::Block {
            xid: d.xid()?,
            to_engine: d.engine()?,
            amount: Fen(d.u64()?),
            created: d.i64()?,
        },
        3 => Message::Outcome {
            xid: d.xid()?,
            from_engine: d.engine()?,
            amount: Fen(d.u64()?),
            outcome: match Outcome::ALL.get(usize::from(d.u8()?)) {
                Some(o) => *o,
                None => return d.err("outcome"),
            },
        },
        4 => Message::Bind {
            bxid: d.xid()?,
            to_engine: d.engine()?,
            giver_psn_no: d.str8(code_valid, "psn_no")?,
            giver_admdvs: d.u32()?,
            receiver_psn_no: d.str8(code_valid, "psn_no")?,
            receiver_admdvs: d.u32()?,
            relation: d.relation()?,
            created: d.i64()?,
        },
        tag @ (5 | 9) => Message::Unbind {
            bxid: d.xid()?,
            from_engine: d.engine()?,
            to_engine: d.engine()?,
            created: match tag {
                9 => Some(d.i64()?),
                _ => None,
            },
        },
        tag @ (7 | 8) => {
            let (from_engine, to_engine) = (d.engine()?, d.engine()?);
            let (exchanges, bindings) = (d.u32()? as i32, d.u32()? as i32);
            if tag == 7 {
                Message::ClosedThrough {
                    from_engine,
                    to_engine,
                    exchanges,
                    bindings,
                }
            } else {
                Message::ForgetThrough {
                    from_engine,
                    to_engine,
                    exchanges,
                    bindings,
                }
            }
        }
        6 => Message::BindStatus {
            bxid: d.xid()?,
            from_engine: d.engine()?,
            to_engine: d.engine()?,
            status: match LinkStatus::from_tag(d.u8()?) {
                Some(s) => s,
                None => return d.err("binding status"),
            },
        },
        _ => return d.err("message tag"),
    })
}

/// The bytes of a bus message: version, body, and an xxh3-64 of both (a damaged message is
/// refused; a forged one is the transport's to authenticate, docs/FEDERATION.md).
pub fn encode_message(m: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    let mut e = Enc(out);
    e.u8(MESSAGE_VERSION);
    encode_message_into(m, &mut e);
    let sum = xxhash_rust::xxh3::xxh3_64(&out[start..]);
    out.extend_from_slice(&sum.to_le_bytes());
}

/// Decodes one bus message; the whole buffer must be used and its checksum match.
pub fn decode_message(buf: &[u8]) -> Result<Message, DecodeError> {
    let Some(body_len) = buf.len().checked_sub(8) else {
        return Err(DecodeError {
            offset: 0,
            what: "truncated",
        });
    };
    let (buf, sum) = buf.split_at(body_len);
    if xxhash_rust::xxh3::xxh3_64(buf).to_le_bytes() != sum {
        return Err(DecodeError {
            offset: body_len,
            what: "checksum",
        });
    }
    let mut d = Dec { buf, pos: 0 };
    if d.u8()? != MESSAGE_VERSION {
        return d.err("unknown message version");
    }
    let m = decode_message_from(&mut d)?;
    d.end()?;
    Ok(m)
}

/// The body of a `TransferOut` without msgid, time and actor: what a retry must repeat.
pub(crate) fn transfer_out_fingerprint(op: &FedOp) -> u64 {
    let FedOp::TransferOut {
        from_psn_no,
        to_psn_no,
        to_admdvs,
        amount,
        source,
        ..
    } = op
    else {
        unreachable!("a TransferOut")
    };
    let mut out = Vec::with_capacity(80);
    let mut e = Enc(&mut out);
    e.str8(from_psn_no);
    e.str8(to_psn_no);
    e.u32(*to_admdvs);
    e.u64(amount.0);
    e.u8(*source as u8);
    xxhash_rust::xxh3::xxh3_64(&out)
}

/// The body of a `BindOut` without msgid, time and actor: what a retry must repeat.
pub(crate) fn bind_out_fingerprint(op: &FedOp) -> u64 {
    let FedOp::BindOut {
        giver_psn_no,
        receiver_psn_no,
        receiver_admdvs,
        relation,
        ..
    } = op
    else {
        unreachable!("a BindOut")
    };
    let mut out = Vec::with_capacity(80);
    let mut e = Enc(&mut out);
    e.u8(0xb1);
    e.str8(giver_psn_no);
    e.str8(receiver_psn_no);
    e.u32(*receiver_admdvs);
    e.u8(*relation as u8);
    xxhash_rust::xxh3::xxh3_64(&out)
}

/// Appends the journal record bytes of a federated journal's entry.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    let op = match entry {
        Entry::Core(op) => return crate::codec::encode_op(op, out),
        Entry::Fed(op) => op,
    };
    let mut e = Enc(out);
    e.u8(crate::codec::FORMAT_VERSION);
    e.u8(FED_OP_TAG);
    match op {
        FedOp::TransferOut {
            msgid,
            time,
            actor,
            from_psn_no,
            to_psn_no,
            to_admdvs,
            amount,
            source,
        } => {
            e.u8(1);
            e.str8(msgid);
            e.i64(*time);
            e.actor(actor);
            e.str8(from_psn_no);
            e.str8(to_psn_no);
            e.u32(*to_admdvs);
            e.u64(amount.0);
            e.u8(*source as u8);
        }
        FedOp::Reverse {
            time,
            actor,
            omsgid,
            msgid,
        } => {
            e.u8(if msgid.is_some() { 10 } else { 2 });
            e.i64(*time);
            e.actor(actor);
            e.str8(omsgid);
            if let Some(msgid) = msgid {
                e.str8(msgid);
            }
        }
        FedOp::Accept {
            time,
            actor,
            xid,
            msgid,
        }
        | FedOp::Decline {
            time,
            actor,
            xid,
            msgid,
        } => {
            let accept = matches!(op, FedOp::Accept { .. });
            e.u8(match (accept, msgid.is_some()) {
                (true, false) => 3,
                (false, false) => 4,
                (true, true) => 11,
                (false, true) => 12,
            });
            e.i64(*time);
            e.actor(actor);
            e.xid(xid);
            if let Some(msgid) = msgid {
                e.str8(msgid);
            }
        }
        FedOp::Deliver { time, msg } => {
            e.u8(5);
            e.i64(*time);
            encode_message_into(msg, &mut e);
        }
        FedOp::BindOut {
            msgid,
            time,
            actor,
            giver_psn_no,
            receiver_psn_no,
            receiver_admdvs,
            relation,
        } => {
            e.u8(6);
            e.str8(msgid);
            e.i64(*time);
            e.actor(actor);
            e.str8(giver_psn_no);
            e.str8(receiver_psn_no);
            e.u32(*receiver_admdvs);
            e.u8(*relation as u8);
        }
        FedOp::Unbind {
            time,
            actor,
            bxid,
            msgid,
        } => {
            e.u8(if msgid.is_some() { 8 } else { 7 });
            e.i64(*time);
            e.actor(actor);
            e.xid(bxid);
            if let Some(msgid) = msgid {
                e.str8(msgid);
            }
        }
        FedOp::Forget { time } => {
            e.u8(9);
            e.i64(*time);
        }
    }
}

/// Decodes one record of a federated journal: a core op (tags 0, 1) or a federation op.
pub fn decode_entry(buf: &[u8]) -> Result<Entry, DecodeError> {
    if buf.get(1) != Some(&FED_OP_TAG) {
        return crate::codec::decode_op(buf).map(Entry::Core);
    }
    let mut d = Dec { buf, pos: 0 };
    if d.u8()? != crate::codec::FORMAT_VERSION {
        return d.err("unknown format version");
    }
    d.u8()?;
    let op = match d.u8()? {
        1 => FedOp::TransferOut {
            msgid: d.str8(msgid_valid, "msgid")?,
            time: d.i64()?,
            actor: d.actor()?,
            from_psn_no: d.str8(code_valid, "psn_no")?,
            to_psn_no: d.str8(code_valid, "psn_no")?,
            to_admdvs: d.u32()?,
            amount: Fen(d.u64()?),
            source: match d.u8()? {
                0 => TransferSource::Acct,
                1 => TransferSource::Wallet,
                _ => return d.err("transfer source"),
            },
        },
        tag @ (2 | 10) => FedOp::Reverse {
            time: d.i64()?,
            actor: d.actor()?,
            omsgid: d.str8(msgid_valid, "msgid")?,
            msgid: match tag {
                10 => Some(d.str8(msgid_valid, "msgid")?),
                _ => None,
            },
        },
        tag @ (3 | 4 | 11 | 12) => {
            let (time, actor, xid) = (d.i64()?, d.actor()?, d.xid()?);
            let msgid = match tag {
                11 | 12 => Some(d.str8(msgid_valid, "msgid")?),
                _ => None,
            };
            FedOp::answer(matches!(tag, 3 | 11), time, actor, xid, msgid)
        }
        5 => FedOp::Deliver {
            time: d.i64()?,
            msg: decode_message_from(&mut d)?,
        },
        6 => FedOp::BindOut {
            msgid: d.str8(msgid_valid, "msgid")?,
            time: d.i64()?,
            actor: d.actor()?,
            giver_psn_no: d.str8(code_valid, "psn_no")?,
            receiver_psn_no: d.str8(code_valid, "psn_no")?,
            receiver_admdvs: d.u32()?,
            relation: d.relation()?,
        },
        tag @ (7 | 8) => FedOp::Unbind {
            time: d.i64()?,
            actor: d.actor()?,
            bxid: d.xid()?,
            msgid: match tag {
                8 => Some(d.str8(msgid_valid, "msgid")?),
                _ => None,
            },
        },
        9 => FedOp::Forget { time: d.i64()? },
        _ => return d.err("federation op tag"),
    };
    d.end()?;
    Ok(Entry::Fed(op))
}
