//! The federation section (docs/FEDERATION.md): present only in a snapshot of a federated
//! state, after every other section, so that an unfederated state's snapshot is byte for byte
//! what it was, and a reader that does not know the section refuses a federated snapshot
//! (trailing bytes) rather than misreading it as unfederated.
//!
//! ```text
//! marker "GJFED001"
//! config        engine (u8 len + bytes), provinces (u8 n + n × u8),
//!               peers (u8 n + n × (engine, u8 m + m × u8)), ascending by engine
//! ledger        in_flight u64, fed_sent u64, fed_received u64
//! exchanges     n u64; each: xid engine (u8 len + bytes), key u128, outgoing u8,
//!               peer (u8 len + bytes), person u32 (u32::MAX: none), to_psn_no (u8 len +
//!               bytes; empty for a Block-only record), to_admdvs u32, sender_admdvs u32,
//!               amount u64, source u8, created i64, expires_at i64,
//!               status u8 (0 in flight, 1 pending, 2 + the outcome's index), reversed u8,
//!               fingerprint u64
//! then, only when the engine holds cross-engine bindings (so a snapshot without any is what it
//! was before they were built):
//! marker "GJLNK001"
//! links         n u64 (≥ 1); each: bxid engine, key u128, giver_here u8, peer,
//!               person u32 (u32::MAX: none), giver_psn_no, giver_admdvs u32,
//!               receiver_psn_no (empty for an Unbind that came first), receiver_admdvs u32,
//!               relation u8, created i64, status u8 (0 pending, 1 active, 2 revoked,
//!               3 + refusal), unbind u8, fingerprint u64
//! then, only when revocations made here kept their client's msgid (so a snapshot without
//! any is what it was before they were kept):
//! marker "GJUNB001"
//! revocations   n u64 (≥ 1); each: msgid key u128 (ascending), link u32 (a link closed
//!               here: revoked, or refused by a refusal that crossed the revocation)
//! then, only when this engine claimed or agreed a forgetting day with a peer (so a snapshot
//! without one is what it was before forgetting was built):
//! marker "GJFGT001"
//! watermarks    n u64 (≥ 1); each (ascending by peer): peer, exchanges i32, bindings i32,
//!               claimed_exchanges i32, claimed_bindings i32 (i32::MIN: no day)
//! forgotten     n u64; each (ascending by day, peer): day i32, peer, 8 × (count u64,
//!               amount u64): sent, committed, returned, in flight, received, accepted,
//!               refused, pending
//! dropped       exchanges u64, bindings u64
//! numbers       when exchanges dropped > 0: each exchange record's number − 1, u32,
//!               ascending (entries name exchanges by number)
//! ```
//!
//! The index by xid, the outbox (in flight) and the expiry set are derived and rebuilt; the
//! state check (`Federation::check`, `State::check`) then compares records, sets and ledger.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bytes::{Dec, Enc};
use super::*;
use crate::command::code_valid;
use crate::command::Relation;
use crate::federation::{
    engine_id_valid, AnswerKind, AnswerMsgid, EngineId, Exchange, FedCounters, Federation,
    FederationConfig, Link, LinkStatus, Outcome, Tally, Watermark, XStatus, Xid,
};

/// Starts the section; nothing else may follow the last section.
const FED_MARKER: [u8; 8] = *b"GJFED001";
/// The smallest exchange record: one-byte engine ids and an empty psn_no.
const EXCHANGE_BYTES_MIN: usize = 2 + 16 + 1 + 2 + 4 + 1 + 4 + 4 + 8 + 1 + 8 + 8 + 1 + 1 + 8;
const NO_PERSON: u32 = u32::MAX;
/// Starts the cross-engine bindings, after the exchanges, when there are any.
const LINK_MARKER: [u8; 8] = *b"GJLNK001";
/// The smallest link record: one-byte engine ids, empty psn_nos.
const LINK_BYTES_MIN: usize = 2 + 16 + 1 + 2 + 4 + 1 + 4 + 1 + 4 + 1 + 8 + 1 + 1 + 8;
/// Starts the msgids of revocations made here, after the links, when there are any.
const UNBIND_MARKER: [u8; 8] = *b"GJUNB001";
const UNBIND_BYTES: usize = 16 + 4;
/// Starts the msgids of accepts, declines and reversals of exchanges made here, after the
/// revocations, when there are any.
const ANSWER_MARKER: [u8; 8] = *b"GJANS001";
/// Key, a one-byte engine id, xid key, kind, status.
const ANSWER_BYTES_MIN: usize = 16 + 2 + 16 + 1 + 1;
/// Starts what exchange records made by this version keep beside the record (after the
/// answers' msgids, when any has it): on the sender side the balances its first answer
/// showed (for retries), on the receiver's the sender's psn_no.
const EXTRAS_MARKER: [u8; 8] = *b"GJXEX001";
/// Exchange index, side, and at least a one-byte psn_no.
const EXTRAS_BYTES_MIN: usize = 4 + 1 + 2;
/// Starts the forgetting section (watermarks, forgotten counters, exchange numbers), last,
/// when this engine claimed or agreed any day with a peer.
const FORGET_MARKER: [u8; 8] = *b"GJFGT001";
const WATERMARK_BYTES_MIN: usize = 2 + 4 * 4;
const FORGOTTEN_BYTES_MIN: usize = 4 + 2 + 8 * 16;

pub(super) fn encode_federation(fed: &Federation, ledger: &Ledger, e: &mut Enc<'_>) {
    let Some(config) = &fed.config else {
        assert!(
            fed.exchanges.is_empty()
                && ledger.in_flight == 0
                && ledger.fed_sent == 0
                && ledger.fed_received == 0,
            "exchanges without [federation]"
        );
        return;
    };
    e.raw(&FED_MARKER);
    e.str8(&config.engine);
    provinces(&config.provinces, e);
    e.put(u8::try_from(config.peers.len()).expect("at most 255 peers"));
    for (peer, ps) in &config.peers {
        e.str8(peer);
        provinces(ps, e);
    }
    e.put(ledger.in_flight);
    e.put(ledger.fed_sent);
    e.put(ledger.fed_received);
    e.count(fed.exchanges.len());
    for x in &fed.exchanges {
        e.str8(&x.xid.engine);
        e.put(x.xid.key);
        e.bool(x.outgoing);
        e.str8(&x.peer);
        e.put(x.person.unwrap_or(NO_PERSON));
        e.str8(&x.to_psn_no);
        e.put(x.to_admdvs);
        e.put(x.sender_admdvs);
        e.put(x.amount);
        e.put(x.source as u8);
        e.put(x.created);
        e.put(x.expires_at);
        e.put(status_tag(x.status));
        e.bool(x.reversed);
        e.put(x.fingerprint);
    }
    if !fed.links.is_empty() {
        encode_links(fed, e);
    }
    if !fed.unbind_msgids.is_empty() {
        e.raw(&UNBIND_MARKER);
        e.count(fed.unbind_msgids.len());
        for (&key, &l) in &fed.unbind_msgids {
            e.put(key);
            e.put(l);
        }
    }
    if !fed.answer_msgids.is_empty() {
        e.raw(&ANSWER_MARKER);
        e.count(fed.answer_msgids.len());
        for (&key, answer) in &fed.answer_msgids {
            e.put(key);
            e.str8(&answer.xid.engine);
            e.put(answer.xid.key);
            e.put(answer.kind as u8);
            e.put(status_tag(answer.shown));
        }
    }
    let extras = fed
        .exchanges
        .iter()
        .enumerate()
        .filter(|(_, x)| x.answered_balances.is_some() || x.from_psn_no.is_some());
    if extras.clone().next().is_some() {
        e.raw(&EXTRAS_MARKER);
        e.count(extras.clone().count());
        for (i, x) in extras {
            e.put(i as u32);
            // The sender side's balances, or the receiver side's sender.
            match (x.answered_balances, x.from_psn_no) {
                (Some((acct, wallet)), None) => {
                    e.put(0u8);
                    e.put(acct);
                    e.put(wallet);
                }
                (None, Some(from)) => {
                    e.put(1u8);
                    e.str8(&from);
                }
                _ => unreachable!("one side's extra"),
            }
        }
    }
    if !fed.watermarks.is_empty() {
        encode_forgetting(fed, e);
    }
}

fn status_tag(status: XStatus) -> u8 {
    match status {
        XStatus::InFlight => 0u8,
        XStatus::Pending => 1,
        XStatus::Closed(o) => {
            2 + Outcome::ALL
                .iter()
                .position(|&a| a == o)
                .expect("an outcome") as u8
        }
    }
}

fn decode_status(d: &mut Dec<'_>, what: &'static str) -> Res<XStatus> {
    let at = d.pos;
    Ok(match d.get::<u8>()? {
        0 => XStatus::InFlight,
        1 => XStatus::Pending,
        s @ 2..=5 => XStatus::Closed(Outcome::ALL[usize::from(s - 2)]),
        _ => return fail(at, what),
    })
}

fn encode_links(fed: &Federation, e: &mut Enc<'_>) {
    e.raw(&LINK_MARKER);
    e.count(fed.links.len());
    for l in &fed.links {
        e.str8(&l.bxid.engine);
        e.put(l.bxid.key);
        e.bool(l.giver_here);
        e.str8(&l.peer);
        e.put(l.person.unwrap_or(NO_PERSON));
        e.str8(&l.giver_psn_no);
        e.put(l.giver_admdvs);
        e.str8(&l.receiver_psn_no);
        e.put(l.receiver_admdvs);
        e.put(l.relation as u8);
        e.put(l.created);
        e.put(l.status.tag());
        e.bool(l.unbind);
        e.put(l.fingerprint);
    }
}

fn encode_forgetting(fed: &Federation, e: &mut Enc<'_>) {
    e.raw(&FORGET_MARKER);
    e.count(fed.watermarks.len());
    for (peer, wm) in &fed.watermarks {
        e.str8(peer);
        e.put(wm.exchanges);
        e.put(wm.bindings);
        e.put(wm.claimed_exchanges);
        e.put(wm.claimed_bindings);
    }
    e.count(fed.forgotten.len());
    for ((day, peer), c) in &fed.forgotten {
        e.put(*day);
        e.str8(peer);
        for t in c.tallies() {
            e.put(t.count);
            e.put(t.amount);
        }
    }
    e.put(fed.exchanges_dropped);
    e.put(fed.links_dropped);
    // The numbers of the records, when any exchange went (else implied: index + 1).
    if fed.exchanges_dropped > 0 {
        for &slot in &fed.slots {
            e.put(slot);
        }
    }
}

fn decode_forgetting(d: &mut Dec<'_>, fed: &mut Federation) -> Res<()> {
    d.take(FORGET_MARKER.len())?;
    let peers = &fed.config.as_ref().expect("federated").peers;
    let n = d.count(WATERMARK_BYTES_MIN, "watermark count")?;
    if n == 0 {
        return fail(d.pos, "an empty forgetting section");
    }
    for _ in 0..n {
        let at = d.pos;
        let peer = engine(d)?;
        let wm = Watermark {
            exchanges: d.get()?,
            bindings: d.get()?,
            claimed_exchanges: d.get()?,
            claimed_bindings: d.get()?,
        };
        let ascending = fed
            .watermarks
            .last_key_value()
            .is_none_or(|(p, _)| *p < peer);
        if !peers.contains_key(&peer) || !ascending || wm == Watermark::default() {
            return fail(at, "a watermark");
        }
        fed.watermarks.insert(peer, wm);
    }
    let n = d.count(FORGOTTEN_BYTES_MIN, "forgotten count")?;
    for _ in 0..n {
        let at = d.pos;
        let day: i32 = d.get()?;
        let peer = engine(d)?;
        let mut t = [Tally::default(); 8];
        for tally in &mut t {
            *tally = Tally {
                count: d.get()?,
                amount: d.get()?,
            };
        }
        let ascending = fed
            .forgotten
            .last_key_value()
            .is_none_or(|(k, _)| *k < (day, peer));
        if !fed.watermarks.contains_key(&peer) || !ascending {
            return fail(at, "forgotten counters");
        }
        fed.forgotten
            .insert((day, peer), FedCounters::from_tallies(t));
    }
    fed.exchanges_dropped = d.get()?;
    fed.links_dropped = d.get()?;
    if fed.exchanges_dropped > 0 {
        let at = d.pos;
        if d.left() < fed.exchanges.len() * 4 {
            return fail(at, "exchange numbers");
        }
        fed.slots = (0..fed.exchanges.len())
            .map(|_| d.get())
            .collect::<Res<Vec<u32>>>()?;
    }
    if fed.check_forgetting().is_err() {
        return fail(d.pos, "forgetting section");
    }
    Ok(())
}

fn provinces(ps: &[u8], e: &mut Enc<'_>) {
    e.put(u8::try_from(ps.len()).expect("at most 255 provinces"));
    for &p in ps {
        e.put(p);
    }
}

fn engine(d: &mut Dec<'_>) -> Res<EngineId> {
    let at = d.pos;
    let s = d.str8()?;
    if !engine_id_valid(s) {
        return fail(at, "engine id");
    }
    EngineId::from(s).map_or_else(|_| fail(at, "engine id"), Ok)
}

fn decode_provinces(d: &mut Dec<'_>) -> Res<Vec<u8>> {
    let n = usize::from(d.get::<u8>()?);
    Ok(d.take(n)?.to_vec())
}

/// Decodes the section if the snapshot has one (bytes left after the last core section), into
/// the federation and the ledger's federation sides. `persons` bounds the person indexes.
pub(super) fn decode_federation(
    d: &mut Dec<'_>,
    persons: usize,
    ledger: &mut Ledger,
) -> Res<Federation> {
    if d.left() == 0 {
        return Ok(Federation::default());
    }
    let at = d.pos;
    if !d.buf[at..].starts_with(&FED_MARKER) {
        return fail(at, "trailing bytes");
    }
    d.take(FED_MARKER.len())?;
    let at = d.pos;
    let me = engine(d)?;
    let own = decode_provinces(d)?;
    let mut peers = BTreeMap::new();
    for _ in 0..d.get::<u8>()? {
        let peer = engine(d)?;
        if peers.insert(peer, decode_provinces(d)?).is_some() {
            return fail(at, "a peer twice");
        }
    }
    let config = FederationConfig {
        engine: me,
        provinces: own,
        peers,
    };
    if config.validate().is_err() {
        return fail(at, "federation config");
    }
    ledger.in_flight = d.get()?;
    ledger.fed_sent = d.get()?;
    ledger.fed_received = d.get()?;
    let n = d.count(EXCHANGE_BYTES_MIN, "exchange count")?;
    let mut fed = Federation {
        config: Some(Arc::new(config)),
        ..Federation::default()
    };
    for i in 0..n as u32 {
        let x = decode_exchange(d, persons)?;
        if fed.index.contains_key(&x.xid) {
            return fail(d.pos, "an exchange twice");
        }
        let pushed = fed.push_exchange(x);
        debug_assert_eq!(pushed, i);
        fed.index_open(pushed);
    }
    let next = |d: &Dec<'_>, marker: &[u8; 8]| d.buf[d.pos..].starts_with(marker);
    if next(d, &LINK_MARKER) {
        decode_links(d, persons, &mut fed)?;
    }
    if next(d, &UNBIND_MARKER) {
        decode_unbinds(d, &mut fed)?;
    }
    if next(d, &ANSWER_MARKER) {
        decode_answers(d, &mut fed)?;
    }
    if next(d, &EXTRAS_MARKER) {
        decode_extras(d, &mut fed)?;
    }
    if next(d, &FORGET_MARKER) {
        decode_forgetting(d, &mut fed)?;
    }
    Ok(fed)
}

fn decode_extras(d: &mut Dec<'_>, fed: &mut Federation) -> Res<()> {
    d.take(EXTRAS_MARKER.len())?;
    let n = d.count(EXTRAS_BYTES_MIN, "exchange extras count")?;
    if n == 0 {
        return fail(d.pos, "an empty exchange extras section");
    }
    let mut last = None;
    for _ in 0..n {
        let at = d.pos;
        let i: u32 = d.get()?;
        let outgoing = match d.get::<u8>()? {
            0 => true,
            1 => false,
            _ => return fail(at, "an exchange's extras side"),
        };
        let (balances, from) = if outgoing {
            (Some((d.fen()?, d.fen()?)), None)
        } else {
            (None, Some(psn_no_or_empty(d)?).filter(|p| !p.is_empty()))
        };
        let x = fed.exchanges.get_mut(i as usize);
        let fits = x.as_ref().is_some_and(|x| x.outgoing == outgoing);
        if last.is_some_and(|l| l >= i) || !fits || (!outgoing && from.is_none()) {
            return fail(at, "an exchange's extras");
        }
        last = Some(i);
        let x = x.expect("checked");
        (x.answered_balances, x.from_psn_no) = (balances, from);
    }
    Ok(())
}

fn decode_answers(d: &mut Dec<'_>, fed: &mut Federation) -> Res<()> {
    d.take(ANSWER_MARKER.len())?;
    let n = d.count(ANSWER_BYTES_MIN, "answer count")?;
    if n == 0 {
        return fail(d.pos, "an empty answers section");
    }
    let mut last = None;
    for _ in 0..n {
        let at = d.pos;
        let key: u128 = d.get()?;
        let xid = Xid {
            engine: engine(d)?,
            key: d.get()?,
        };
        let kind = d.tag(&AnswerKind::ALL, "answer kind")?;
        let shown = decode_status(d, "answer status")?;
        let answer = AnswerMsgid { xid, kind, shown };
        let fits = fed
            .index
            .get(&xid)
            .is_some_and(|&i| answer.fits(&fed.exchanges[i as usize]));
        if last.is_some_and(|k| k >= key) || key == 0 || !fits {
            return fail(at, "an answer's msgid");
        }
        last = Some(key);
        fed.answer_msgids.insert(key, answer);
    }
    Ok(())
}

fn decode_links(d: &mut Dec<'_>, persons: usize, fed: &mut Federation) -> Res<()> {
    d.take(LINK_MARKER.len())?;
    let n = d.count(LINK_BYTES_MIN, "binding count")?;
    if n == 0 {
        return fail(d.pos, "an empty bindings section");
    }
    for _ in 0..n {
        let link = decode_link(d, persons)?;
        if fed.link_index.contains_key(&link.bxid) {
            return fail(d.pos, "a binding twice");
        }
        fed.push_link(link);
    }
    Ok(())
}

fn decode_unbinds(d: &mut Dec<'_>, fed: &mut Federation) -> Res<()> {
    d.take(UNBIND_MARKER.len())?;
    let n = d.count(UNBIND_BYTES, "revocation count")?;
    if n == 0 {
        return fail(d.pos, "an empty revocations section");
    }
    let mut last = None;
    for _ in 0..n {
        let at = d.pos;
        let (key, l): (u128, u32) = (d.get()?, d.get()?);
        let closed_here = fed
            .links
            .get(l as usize)
            .is_some_and(|link| !link.status.is_live() && link.person.is_some());
        if last.is_some_and(|k| k >= key) || key == 0 || !closed_here {
            return fail(at, "a revocation's msgid");
        }
        last = Some(key);
        fed.unbind_msgids.insert(key, l);
    }
    Ok(())
}

fn psn_no_or_empty(d: &mut Dec<'_>) -> Res<crate::command::PsnNo> {
    let at = d.pos;
    let s = d.str8()?;
    if !(s.is_empty() || code_valid(s)) {
        return fail(at, "binding psn_no");
    }
    ArrayString::from(s).map_or_else(|_| fail(at, "psn_no"), Ok)
}

fn decode_link(d: &mut Dec<'_>, persons: usize) -> Res<Link> {
    let at = d.pos;
    let bxid = Xid {
        engine: engine(d)?,
        key: d.get()?,
    };
    let giver_here = d.bool()?;
    let peer = engine(d)?;
    let person = match d.get::<u32>()? {
        NO_PERSON => None,
        p if (p as usize) < persons => Some(p),
        _ => return fail(at, "binding person"),
    };
    let (giver_psn_no, giver_admdvs) = (psn_no_or_empty(d)?, d.get()?);
    let (receiver_psn_no, receiver_admdvs) = (psn_no_or_empty(d)?, d.get()?);
    let relation = d.tag(&Relation::ALL, "binding relation")?;
    let created = d.get()?;
    let status_at = d.pos;
    let Some(status) = LinkStatus::from_tag(d.get()?) else {
        return fail(status_at, "binding status");
    };
    Ok(Link {
        bxid,
        giver_here,
        peer,
        person,
        giver_psn_no,
        giver_admdvs,
        receiver_psn_no,
        receiver_admdvs,
        relation,
        created,
        status,
        unbind: d.bool()?,
        fingerprint: d.get()?,
    })
}

fn decode_exchange(d: &mut Dec<'_>, persons: usize) -> Res<Exchange> {
    let at = d.pos;
    let xid = Xid {
        engine: engine(d)?,
        key: d.get()?,
    };
    let outgoing = d.bool()?;
    let peer = engine(d)?;
    let person = match d.get::<u32>()? {
        NO_PERSON => None,
        p if (p as usize) < persons => Some(p),
        _ => return fail(at, "exchange person"),
    };
    let psn_at = d.pos;
    let to_psn_no = d.str8()?;
    if !(to_psn_no.is_empty() || code_valid(to_psn_no)) {
        return fail(psn_at, "exchange psn_no");
    }
    let to_psn_no = ArrayString::from(to_psn_no).map_or_else(|_| fail(psn_at, "psn_no"), Ok)?;
    let (to_admdvs, sender_admdvs) = (d.get()?, d.get()?);
    let amount = d.fen()?;
    let source = d.tag(&SOURCES, "exchange source")?;
    let (created, expires_at) = (d.get()?, d.get()?);
    let status = decode_status(d, "exchange status")?;
    Ok(Exchange {
        xid,
        outgoing,
        peer,
        person,
        to_psn_no,
        to_admdvs,
        sender_admdvs,
        amount,
        source,
        created,
        expires_at,
        status,
        reversed: d.bool()?,
        fingerprint: d.get()?,
        answered_balances: None,
        from_psn_no: None,
    })
}
