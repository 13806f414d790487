//! The ledger entries section (hot records; cold chunks are in history files) and the
//! per-person entry lists it must agree with.

use super::bytes::{Dec, Enc, Rec};
use super::*;
use crate::state::History;

pub(super) fn encode_entries(entries: &History<Entry>, e: &mut Enc<'_>) {
    e.history(entries);
    for entry in entries.hot_iter() {
        e.spill();
        encode_entry(&entry, e);
    }
}

pub(super) fn decode_entries(
    d: &mut Dec<'_>,
    persons: &Persons,
    heads: &HeadsAt,
    limits: &RefLimits,
) -> Res<History<Entry>> {
    let entries_at = d.pos + 12;
    let (cold, count) = d.history(ENTRY_BYTES, "entry count")?;
    let first = (cold as u32) << crate::state::chunked::SHIFT;
    let hot = d.records(count, ENTRY_BYTES, |i, r| {
        decode_entry(first + i as u32 + 1, limits, r)
    })?;
    check_entry_lists(persons, first, &hot, heads, entries_at)?;
    Ok(History::from_parts(cold, hot))
}

pub(super) struct RefLimits {
    pub(super) persons: usize,
    pub(super) insts: usize,
    pub(super) setls: u64,
    pub(super) transfers: u64,
    pub(super) contributions: u64,
}

/// The entry's history-file record ([`crate::state::history::Record`]): the same 48 bytes.
pub(super) fn encode_entry(entry: &Entry, e: &mut Enc<'_>) {
    crate::state::history::Record::put(entry, e.buf);
}

pub(super) fn decode_entry(
    id: u32,
    limits: &RefLimits,
    r: &mut Rec<'_>,
) -> Result<Entry, &'static str> {
    let psn = r.index(limits.persons, "entry person")?;
    let prev: u32 = r.get();
    if prev >= id {
        return Err("entry link");
    }
    let wallet = r.bool()?;
    let kind = r.tag(&KINDS, "entry kind")?;
    let time = r.get();
    let amount = r.get();
    let balc = r.get();
    let tag: u8 = r.get();
    let v: u32 = r.get();
    let counterparty = match tag {
        0 if v == 0 => Counterparty::None,
        1 if (v as usize) < limits.persons => Counterparty::Person(v),
        2 if (v as usize) < limits.insts => Counterparty::Institution(v),
        _ => return Err("entry counterparty"),
    };
    let tag: u8 = r.get();
    let v: u64 = r.get();
    let reference = match tag {
        0 if (1..=limits.setls).contains(&v) => EntryRef::Settlement(v),
        1 if (1..=limits.transfers).contains(&v) => EntryRef::Transfer(v),
        2 if (1..=limits.contributions).contains(&v) => EntryRef::Contribution(v),
        3 if v <= u64::from(u32::MAX) => EntryRef::Period(v as u32),
        // An exchange of a federated state: checked against the federation section, which
        // comes last (`decode_snapshot`).
        4 if (1..=u64::from(u32::MAX)).contains(&v) => EntryRef::Exchange(v),
        _ => return Err("entry reference"),
    };
    Ok(Entry {
        psn,
        prev,
        wallet,
        kind,
        time,
        amount,
        balc,
        counterparty,
        reference,
    })
}

/// A person's entry list runs from the person's tail back through `prev` links (which point
/// backwards, so no walk can loop). For the hot entries (those after `first`): each links to
/// the person's previous hot entry, or, being the person's oldest hot one, to a cold entry or
/// none; each person's tail is the newest of its hot entries. With no cold chunk, a person
/// without entries has tail 0.
pub(super) fn check_entry_lists(
    persons: &Persons,
    first: u32,
    hot: &[Entry],
    heads: &HeadsAt,
    entries_at: usize,
) -> Res<()> {
    let mut tail = vec![0u32; persons.len()];
    for (e, entry) in hot.iter().enumerate() {
        let id = first + e as u32 + 1;
        let p = entry.psn as usize;
        let linked = match tail[p] {
            0 => entry.prev <= first,
            t => entry.prev == t,
        };
        if !linked {
            return fail(entries_at + e * ENTRY_BYTES, "entry not linked");
        }
        tail[p] = id;
    }
    for (p, &t) in tail.iter().enumerate() {
        let stored = persons.hot[p].entry_tail;
        let agrees = match t {
            0 => stored == 0 || first > 0 && stored <= first,
            t => stored == t,
        };
        if !agrees {
            return fail(heads.entry_tail + p * 4, "entry list tail");
        }
    }
    Ok(())
}
