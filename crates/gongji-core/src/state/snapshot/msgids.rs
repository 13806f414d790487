//! The msgid records with their replies. Format 5 writes them ascending by key, each record
//! of fixed size with the offset of its reply, then the replies: a decoded snapshot reads its
//! window where it lies (`state::msgids::Sorted`). Formats 4 (time order) and 3 (key order
//! with the queue after it) are still read, into the queue.

use super::bytes::{Dec, Enc};
use super::*;
use crate::state::msgids::{Rec, SharedBytes, SortedBuilder, SORTED_RECORD_BYTES};

/// The bytes a decoder reads, when it may keep them: `bytes[at..]` is the decoder's buffer.
pub(crate) struct Owner {
    pub(crate) bytes: SharedBytes,
    pub(crate) at: usize,
}

/// Two passes over the records in key order: the records with their replies' offsets, then
/// the replies (a section's are copied as they are, a queued record's were encoded once).
/// Returns the count, the replies' length and the directory of the keys written.
pub(super) fn encode_msgids(msgids: &Msgids, e: &mut Enc<'_>) -> (usize, u64, SortedBuilder) {
    let queued = msgids.queued_by_key();
    let count = msgids.by_key(&queued).inspect(releasing()).count();
    e.count(count);
    let mut dir = SortedBuilder::new(count);
    let mut at = 0u64;
    for r in msgids.by_key(&queued).inspect(releasing()) {
        let key = r.key();
        dir.push(key);
        e.put(key);
        e.put(r.time());
        e.put(r.fingerprint());
        e.put(at);
        at += r.reply_bytes().len() as u64;
    }
    e.put(at);
    for r in msgids.by_key(&queued).inspect(releasing()) {
        e.raw(r.reply_bytes());
    }
    (count, at, dir)
}

/// Records of the previous section between two releases of the pages read.
const RELEASE_RECORDS: usize = 1 << 18;

/// Each of the three passes above reads the previous snapshot's section (mapped) in key
/// order: the pages behind it are released as it goes (`Sorted::release_before`), so the
/// section read whole does not become resident memory whole.
fn releasing() -> impl FnMut(&Rec<'_>) {
    let mut next = RELEASE_RECORDS;
    move |r| {
        if let Rec::Sorted(s, i) = *r {
            if i >= next {
                s.release_before(i);
                next = i + RELEASE_RECORDS;
            }
        }
    }
}

/// A reply's encoding, appended to `out`.
pub(crate) fn encode_reply_into(reply: Option<&Reply>, out: &mut Vec<u8>) {
    encode_reply(reply, &mut Enc::new(out));
}

/// Format 5's section: checks every record (keys strictly ascending, each reply where the
/// previous one ended, decoding to a reply whose references exist) in one pass that builds
/// the section's directory, and keeps the bytes (`owner`'s, or a copy of the section's).
pub(super) fn decode_msgids(
    d: &mut Dec<'_>,
    limits: &ReplyLimits<'_>,
    owner: Option<&Owner>,
) -> Res<Msgids> {
    let start = d.pos;
    let count = d.count(SORTED_RECORD_BYTES + 1, "msgid count")?;
    if u32::try_from(count).is_err() {
        return fail(start, "msgid count");
    }
    let records_at = d.pos;
    let records = d.take(count * SORTED_RECORD_BYTES)?;
    let replies_len_at = d.pos;
    let replies_len = d.get::<u64>()?;
    if replies_len > d.left() as u64 {
        return fail(replies_len_at, "msgid replies length");
    }
    let replies_at = d.pos;
    let replies = d.take(replies_len as usize)?;
    let mut r = Dec {
        buf: replies,
        pos: 0,
    };
    let mut dir = SortedBuilder::new(count);
    let mut prev: Option<u128> = None;
    for (i, rec) in records.chunks_exact(SORTED_RECORD_BYTES).enumerate() {
        let at = records_at + i * SORTED_RECORD_BYTES;
        let key = u128::from_le_bytes(rec[..16].try_into().expect("16 bytes"));
        if prev.is_some_and(|p| p >= key) {
            return fail(at, "msgids not ascending");
        }
        prev = Some(key);
        let reply_at = u64::from_le_bytes(rec[32..].try_into().expect("8 bytes"));
        if reply_at != r.pos as u64 {
            return fail(at + 32, "msgid reply offset");
        }
        // `limits` has no binding views: the first encoder's (tag 6) is refused here.
        decode_reply(&mut r, Some(limits)).map_err(|e| SnapshotDecodeError {
            offset: replies_at + e.offset,
            ..e
        })?;
        dir.push(key);
    }
    if r.pos != replies.len() {
        return fail(replies_at + r.pos, "msgid replies length");
    }
    let end = d.pos;
    let sorted = match owner {
        Some(o) => dir.finish(
            o.bytes.clone(),
            o.at + records_at,
            o.at + replies_at..o.at + end,
        ),
        None => {
            let copy = d.buf[records_at..end].to_vec();
            let replies = replies_at - records_at..end - records_at;
            dir.finish(std::sync::Arc::new(copy), 0, replies)
        }
    };
    Ok(Msgids::with_sorted(sorted))
}

/// A reply of a section [`decode_msgids`] checked.
pub(crate) fn decode_checked_reply(bytes: &[u8]) -> Option<Reply> {
    decode_reply(&mut Dec { buf: bytes, pos: 0 }, None)
        .expect("a section's replies were checked when it was decoded")
}

/// Format 4's section, for the test that it is still read: records in queue order.
#[cfg(test)]
pub(super) fn encode_msgids_v4(msgids: &Msgids, e: &mut Enc<'_>) {
    assert!(msgids.all_queued(), "format 4 is written from a queue");
    e.count(msgids.len());
    for (time, key, record) in msgids.queued() {
        e.put(time);
        e.put(key);
        e.put(record.fingerprint);
        encode_reply(record.reply.as_ref(), e);
    }
}

/// Format 4's section: records in queue order, so that decoding is one pass over the records
/// and then one build of the index in the order of its buckets (`state::bulk`).
pub(super) fn decode_msgids_v4(d: &mut Dec<'_>, limits: &ReplyLimits<'_>) -> Res<Msgids> {
    let count = d.count(MSGID_BYTES_MIN, "msgid count")?;
    let start = d.pos;
    let mut msgids = Msgids::default();
    let mut prev = i64::MIN;
    for _ in 0..count {
        let at = d.pos;
        let time: i64 = d.get()?;
        if time < prev {
            return fail(at, "msgids out of time order");
        }
        prev = time;
        let key: u128 = d.get()?;
        let fingerprint = d.get()?;
        let reply = decode_reply(d, Some(limits))?;
        msgids.push_unindexed(key, fingerprint, reply, time);
    }
    match msgids.index_all() {
        Ok(()) => Ok(msgids),
        Err(i) => {
            // Only to name the offset: walk the records again up to the repeated one.
            let mut again = Dec {
                buf: d.buf,
                pos: start,
            };
            for _ in 0..i {
                again.take(8 + 16 + 8)?;
                decode_reply(&mut again, Some(limits))?;
            }
            fail(again.pos + 8, "msgid recorded twice")
        }
    }
}

#[cfg(test)]
pub(super) fn encode_msgids_v3(msgids: &Msgids, e: &mut Enc<'_>) {
    assert!(msgids.all_queued(), "format 3 is written from a queue");
    let queued = msgids.queued_by_key();
    e.count(queued.len());
    for r in msgids.by_key(&queued) {
        e.put(r.key());
        e.put(r.fingerprint());
        e.raw(r.reply_bytes());
    }
    e.count(msgids.len());
    for (time, key, _) in msgids.queued() {
        e.put(time);
        e.put(key);
    }
}

/// Format 3's msgid section: records ascending by key, then the queue as (time, key) pairs.
/// Read so that a data directory written by the previous release starts without a replay.
pub(super) fn decode_msgids_v3(d: &mut Dec<'_>, limits: &ReplyLimits<'_>) -> Res<Msgids> {
    let count = d.count(16 + 8 + 1, "msgid count")?;
    // Ascending by key, so the fifo finds its records by binary search; each is taken once.
    let mut records: Vec<(u128, Option<MsgRecord>)> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = d.pos;
        let key: u128 = d.get()?;
        if records.last().is_some_and(|&(prev, _)| prev >= key) {
            return fail(at, "msgids not ascending");
        }
        let fingerprint = d.get()?;
        let reply = decode_reply(d, Some(limits))?;
        records.push((key, Some(MsgRecord { fingerprint, reply })));
    }
    let fifo_at = d.pos + 8;
    let count = d.count(FIFO_BYTES, "msgid fifo count")?;
    let mut prev = i64::MIN;
    let mut msgids = Msgids::default();
    let mut repeated = false;
    d.records(count, FIFO_BYTES, |_, r| {
        let time: i64 = r.get();
        if time < prev {
            return Err("msgid fifo out of order");
        }
        prev = time;
        let key: u128 = r.get();
        let Ok(at) = records.binary_search_by_key(&key, |&(k, _)| k) else {
            return Err("msgid fifo key not recorded");
        };
        match records[at].1.take() {
            Some(MsgRecord { fingerprint, reply }) => msgids.insert(key, fingerprint, reply, time),
            None => repeated = true,
        }
        Ok(())
    })?;
    // Every recorded msgid is in the fifo exactly once.
    if repeated || count != records.len() {
        return fail(fifo_at, "msgid fifo does not match the records");
    }
    Ok(msgids)
}

// Reply tags. 0 is a msgid blocked by a reversal (no reply).
pub(super) const REPLY_NONE: u8 = 0;
pub(super) const REPLY_TOKEN_CREATED: u8 = 1;
pub(super) const REPLY_TOKEN_REVOKED: u8 = 2;
pub(super) const REPLY_PERSON: u8 = 3;
pub(super) const REPLY_INSTITUTION: u8 = 4;
pub(super) const REPLY_CREDITED: u8 = 5;
/// A whole binding view, as the first encoder wrote binding replies. No longer written;
/// decoded into [`Reply::Bound`] after checking that its immutable fields are the binding's.
pub(super) const REPLY_BINDING_VIEW: u8 = 6;
pub(super) const REPLY_SETTLED: u8 = 7;
pub(super) const REPLY_CANCELLED: u8 = 8;
pub(super) const REPLY_REVERSAL: u8 = 9;
pub(super) const REPLY_TRANSFER: u8 = 10;
pub(super) const REPLY_CONTRIBUTION: u8 = 11;
pub(super) const REPLY_TICK: u8 = 12;
pub(super) const REPLY_ENROLLED: u8 = 13;
pub(super) const REPLY_BOUND: u8 = 14;

/// What a decoded reply may refer to.
pub(super) struct ReplyLimits<'a> {
    pub(super) persons: usize,
    pub(super) bindings: usize,
    pub(super) setls: usize,
    /// The persons and bindings a legacy binding view (tag 6, formats 3 and 4) is checked
    /// against; without, the tag is refused.
    pub(super) views: Option<(&'a Persons, &'a [Binding])>,
}

pub(super) fn encode_reply(reply: Option<&Reply>, e: &mut Enc<'_>) {
    let Some(reply) = reply else {
        e.put(REPLY_NONE);
        return;
    };
    match reply {
        Reply::TokenCreated { token_id } => {
            e.put(REPLY_TOKEN_CREATED);
            e.put(*token_id);
        }
        Reply::TokenRevoked { token_id } => {
            e.put(REPLY_TOKEN_REVOKED);
            e.put(*token_id);
        }
        Reply::Enrolled(i) => {
            e.put(REPLY_ENROLLED);
            e.put(*i);
        }
        Reply::Person(v) => {
            e.put(REPLY_PERSON);
            e.str8(&v.psn_no);
            e.str16(&v.certno_masked);
            e.str16(&v.psn_name_masked);
            e.put(v.insutype as u8);
            e.put(v.admdvs);
            e.put(v.status as u8);
            e.put(v.acct_balc);
            e.bool(v.wallet_open);
            e.put(v.wallet_balc);
            for list in [&v.bindings_given, &v.bindings_received] {
                e.put(u16::try_from(list.len()).expect("a person's bindings fit u16"));
                for b in list {
                    encode_binding_view(b, e);
                }
            }
        }
        Reply::Institution(v) => {
            e.put(REPLY_INSTITUTION);
            e.str8(&v.fixmedins_code);
            e.str16(&v.fixmedins_name);
            e.put(v.fixmedins_type as u8);
            e.put(v.admdvs);
        }
        Reply::Credited { count, sum } => {
            e.put(REPLY_CREDITED);
            e.put(*count);
            e.put(*sum);
        }
        Reply::Bound {
            binding,
            priority,
            active,
        } => {
            e.put(REPLY_BOUND);
            e.put(*binding);
            e.put(*priority);
            e.bool(*active);
        }
        Reply::Settled(s) => {
            e.put(REPLY_SETTLED);
            e.put(*s);
        }
        Reply::Cancelled(s) => {
            e.put(REPLY_CANCELLED);
            e.put(*s);
        }
        Reply::Reversal { omsgid, result } => {
            e.put(REPLY_REVERSAL);
            e.str8(omsgid);
            e.put(*result as u8);
        }
        Reply::Transfer(v) => {
            e.put(REPLY_TRANSFER);
            e.put(v.transfer_id);
            e.str8(&v.from_psn_no);
            e.str8(&v.to_psn_no);
            e.put(v.amount);
            e.put(v.source as u8);
            e.bool(v.cross_province);
            e.put(v.status as u8);
            e.put(v.created);
            e.put(v.expires_at);
            match v.sender_balances {
                None => e.bool(false),
                Some((acct, wallet)) => {
                    e.bool(true);
                    e.put(acct);
                    e.put(wallet);
                }
            }
        }
        Reply::Contribution(v) => {
            e.put(REPLY_CONTRIBUTION);
            e.put(v.contribution_id);
            e.str8(&v.payer_psn_no);
            e.str8(&v.psn_no);
            e.put(v.year);
            e.put(v.amount);
            e.put(v.acct_balc);
        }
        Reply::Tick { expired } => {
            e.put(REPLY_TICK);
            e.put(*expired);
        }
    }
}

pub(super) fn encode_binding_view(v: &BindingView, e: &mut Enc<'_>) {
    e.put(v.binding_id);
    e.str8(&v.giver_psn_no);
    e.str8(&v.receiver_psn_no);
    e.put(v.relation as u8);
    e.put(v.scope as u8);
    e.put(v.priority);
    e.bool(v.active);
}

pub(super) fn decode_binding_view(d: &mut Dec<'_>) -> Res<BindingView> {
    Ok(BindingView {
        binding_id: d.get()?,
        giver_psn_no: d.arr()?,
        receiver_psn_no: d.arr()?,
        relation: d.tag(&RELATIONS, "relation")?,
        scope: d.tag(&SCOPES, "scope")?,
        priority: d.get()?,
        active: d.bool()?,
    })
}

/// A reply; its references are checked against `limits` (without, it was checked before).
pub(super) fn decode_reply(
    d: &mut Dec<'_>,
    limits: Option<&ReplyLimits<'_>>,
) -> Res<Option<Reply>> {
    let at = d.pos;
    let index = |d: &mut Dec<'_>, len: Option<usize>, what: &'static str| {
        let at = d.pos;
        let i: u32 = d.get()?;
        if len.is_none_or(|len| (i as usize) < len) {
            Ok(i)
        } else {
            fail(at, what)
        }
    };
    let settlement = |d: &mut Dec<'_>| index(d, limits.map(|l| l.setls), "reply settlement");
    Ok(Some(match d.get::<u8>()? {
        REPLY_NONE => return Ok(None),
        REPLY_TOKEN_CREATED => Reply::TokenCreated { token_id: d.get()? },
        REPLY_TOKEN_REVOKED => Reply::TokenRevoked { token_id: d.get()? },
        REPLY_PERSON => {
            let mut v = PersonView {
                psn_no: d.arr()?,
                certno_masked: d.str16()?.to_owned(),
                psn_name_masked: d.str16()?.to_owned(),
                insutype: d.tag(&INSUTYPES, "insutype")?,
                admdvs: d.get()?,
                status: d.tag(&STATUSES, "person status")?,
                acct_balc: d.fen()?,
                wallet_open: d.bool()?,
                wallet_balc: d.fen()?,
                bindings_given: Vec::new(),
                bindings_received: Vec::new(),
            };
            for list in [&mut v.bindings_given, &mut v.bindings_received] {
                let at = d.pos;
                let len = usize::from(d.get::<u16>()?);
                // A binding view is at least 19 bytes.
                if len > d.left() / 19 {
                    return fail(at, "binding view count");
                }
                list.reserve_exact(len);
                for _ in 0..len {
                    list.push(decode_binding_view(d)?);
                }
            }
            Reply::Person(Box::new(v))
        }
        REPLY_INSTITUTION => Reply::Institution(Box::new(InstitutionView {
            fixmedins_code: d.arr()?,
            fixmedins_name: d.str16()?.to_owned(),
            fixmedins_type: d.tag(&INST_TYPES, "institution type")?,
            admdvs: d.get()?,
        })),
        REPLY_CREDITED => Reply::Credited {
            count: d.get()?,
            sum: d.fen()?,
        },
        REPLY_ENROLLED => Reply::Enrolled(index(d, limits.map(|l| l.persons), "reply person")?),
        REPLY_BOUND => Reply::Bound {
            binding: index(d, limits.map(|l| l.bindings), "reply binding")?,
            priority: d.get()?,
            active: d.bool()?,
        },
        REPLY_BINDING_VIEW => {
            let Some((p, bindings)) = limits.and_then(|l| l.views) else {
                return fail(at, "reply tag");
            };
            let v = decode_binding_view(d)?;
            let b = v.binding_id.wrapping_sub(1);
            let same = bindings.get(b as usize).is_some_and(|binding| {
                p.psn_no(binding.giver) == v.giver_psn_no.as_str()
                    && p.psn_no(binding.receiver) == v.receiver_psn_no.as_str()
                    && binding.relation == v.relation
                    && binding.scope == v.scope
            });
            if !same {
                return fail(at, "reply binding");
            }
            Reply::Bound {
                binding: b as u32,
                priority: v.priority,
                active: v.active,
            }
        }
        REPLY_SETTLED => Reply::Settled(settlement(d)?),
        REPLY_CANCELLED => Reply::Cancelled(settlement(d)?),
        REPLY_REVERSAL => Reply::Reversal {
            omsgid: Box::new(d.arr()?),
            result: d.tag(&REVERSAL_RESULTS, "reversal result")?,
        },
        REPLY_TRANSFER => Reply::Transfer(Box::new(TransferView {
            transfer_id: d.get()?,
            from_psn_no: d.arr()?,
            to_psn_no: d.arr()?,
            amount: d.fen()?,
            source: d.tag(&SOURCES, "transfer source")?,
            cross_province: d.bool()?,
            status: d.tag(&TRANSFER_STATUSES, "transfer status")?,
            created: d.get()?,
            expires_at: d.get()?,
            sender_balances: if d.bool()? {
                Some((d.fen()?, d.fen()?))
            } else {
                None
            },
        })),
        REPLY_CONTRIBUTION => Reply::Contribution(Box::new(ContributionView {
            contribution_id: d.get()?,
            payer_psn_no: d.arr()?,
            psn_no: d.arr()?,
            year: d.get()?,
            amount: d.fen()?,
            acct_balc: d.fen()?,
        })),
        REPLY_TICK => Reply::Tick { expired: d.get()? },
        _ => return fail(at, "reply tag"),
    }))
}
