//! The ledger entries section and the per-person entry lists it must tile.

use super::bytes::{Dec, Enc, Rec};
use super::*;

pub(super) fn encode_entries(entries: &Chunked<Entry>, e: &mut Enc<'_>) {
    e.count(entries.len());
    for entry in entries {
        encode_entry(entry, e);
    }
}

pub(super) fn decode_entries(
    d: &mut Dec<'_>,
    persons: &Persons,
    heads: &HeadsAt,
    limits: &RefLimits,
) -> Res<Vec<Entry>> {
    let entries_at = d.pos + 8;
    let count = d.count(ENTRY_BYTES, "entry count")?;
    let entries = d.records(count, ENTRY_BYTES, |i, r| {
        decode_entry(i as u32 + 1, count, limits, r)
    })?;
    check_entry_lists(persons, &entries, heads, entries_at)?;
    Ok(entries)
}

pub(super) struct RefLimits {
    pub(super) persons: usize,
    pub(super) insts: usize,
    pub(super) setls: u64,
    pub(super) transfers: u64,
    pub(super) contributions: u64,
}

pub(super) fn encode_entry(entry: &Entry, e: &mut Enc<'_>) {
    e.put(entry.psn);
    e.put(entry.next);
    e.bool(entry.wallet);
    e.put(entry.kind as u8);
    e.put(entry.time);
    e.put(entry.amount);
    e.put(entry.balc);
    let (tag, v) = match entry.counterparty {
        Counterparty::None => (0u8, 0),
        Counterparty::Person(p) => (1, p),
        Counterparty::Institution(i) => (2, i),
    };
    e.put(tag);
    e.put(v);
    let (tag, v) = match entry.reference {
        EntryRef::Settlement(id) => (0u8, id),
        EntryRef::Transfer(id) => (1, id),
        EntryRef::Contribution(id) => (2, id),
        EntryRef::Period(p) => (3, u64::from(p)),
    };
    e.put(tag);
    e.put(v);
}

pub(super) fn decode_entry(
    id: u32,
    count: usize,
    limits: &RefLimits,
    r: &mut Rec<'_>,
) -> Result<Entry, &'static str> {
    let psn = r.index(limits.persons, "entry person")?;
    let next: u32 = r.get();
    if next != 0 && (next <= id || next as usize > count) {
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
        _ => return Err("entry reference"),
    };
    Ok(Entry {
        psn,
        next,
        wallet,
        kind,
        time,
        amount,
        balc,
        counterparty,
        reference,
    })
}

/// A person's entry list holds exactly the person's entries in order: entries are only ever
/// appended to the tail (and the newest popped). One pass checks every link, head and tail.
pub(super) fn check_entry_lists(
    persons: &Persons,
    entries: &[Entry],
    heads: &HeadsAt,
    entries_at: usize,
) -> Res<()> {
    let mut tail = vec![0u32; persons.len()];
    for (e, entry) in entries.iter().enumerate() {
        let id = e as u32 + 1;
        let p = entry.psn as usize;
        let linked = match tail[p] {
            0 => persons.entry_head[p] == id,
            t => entries[t as usize - 1].next == id,
        };
        if !linked {
            return fail(entries_at + e * ENTRY_BYTES, "entry not linked");
        }
        tail[p] = id;
    }
    for (p, &t) in tail.iter().enumerate() {
        if t == 0 && persons.entry_head[p] != 0 {
            return fail(heads.entry_head + p * 4, "entry list head");
        }
        if persons.hot[p].entry_tail != t {
            return fail(heads.entry_tail + p * 4, "entry list tail");
        }
        if t != 0 && entries[t as usize - 1].next != 0 {
            return fail(
                entries_at + (t as usize - 1) * ENTRY_BYTES,
                "entry after tail",
            );
        }
    }
    Ok(())
}
