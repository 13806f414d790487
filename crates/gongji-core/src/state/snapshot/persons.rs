//! The persons section (column by column) and the credit overflow beside it.

use super::bytes::{Dec, Enc};
use super::*;
use hashbrown::HashTable;

use crate::state::bulk;
use crate::state::chunked::Arena;

pub(super) fn encode_persons(p: &Persons, e: &mut Enc<'_>) {
    e.count(p.len());
    for arena in [&p.psn_nos, &p.names] {
        if !e.streams() {
            e.buf.reserve(arena.len() + arena.byte_len());
        }
        for s in arena.iter() {
            e.put(u8::try_from(s.len()).expect("psn_no and name fit 255 bytes"));
        }
        for s in arena.iter() {
            e.raw(s);
        }
    }
    e.col(&p.certno);
    let hot = &p.hot;
    e.col(&hot.iter().map(|h| h.admdvs).collect::<Vec<u32>>());
    e.col(&hot.iter().map(|h| h.flags).collect::<Vec<u8>>());
    e.col(&hot.iter().map(|h| h.acct).collect::<Vec<Fen>>());
    e.col(&hot.iter().map(|h| h.wallet).collect::<Vec<Fen>>());
    e.col(&p.given_head);
    e.col(&hot.iter().map(|h| h.received_head).collect::<Vec<u32>>());
    e.col(&hot.iter().map(|h| h.entry_tail).collect::<Vec<u32>>());
    e.col(&p.wallet_day);
    e.col(&p.credit_last);
    e.col(&p.credit_mask);
}

/// Where the person columns that later sections point into start, for error offsets.
pub(super) struct HeadsAt {
    pub(super) given: usize,
    pub(super) received: usize,
    pub(super) entry_tail: usize,
}

/// A string arena from per-item u8 lengths: (ends, bytes, offset of the bytes).
pub(super) fn decode_arena(d: &mut Dec<'_>, n: usize) -> Res<(Vec<u32>, Vec<u8>, usize)> {
    let lens = d.take(n)?;
    let mut ends = Vec::with_capacity(n);
    let mut end = 0u64;
    for &len in lens {
        end += u64::from(len);
        ends.push(end as u32);
    }
    if end > u64::from(u32::MAX) {
        return fail(d.pos, "string arena too long");
    }
    let at = d.pos;
    let bytes = d.take(end as usize)?.to_vec();
    Ok((ends, bytes, at))
}

/// The arena of strings that end at `ends` in `bytes`.
fn arena(ends: &[u32], bytes: &[u8]) -> Arena {
    let mut arena = Arena::default();
    let mut start = 0;
    for &end in ends {
        arena.push(&bytes[start..end as usize]);
        start = end as usize;
    }
    arena
}

/// Where the keys the two person indexes are built from start, for error offsets.
pub(super) struct KeysAt {
    psn_no: usize,
    certno: usize,
}

/// The persons' columns; their two indexes are left empty, for [`person_indexes`] to build
/// (on another thread while the later sections are decoded).
pub(super) fn decode_persons(d: &mut Dec<'_>) -> Res<(Persons, HeadsAt, KeysAt)> {
    let n = d.count(PERSON_MIN_BYTES, "person count")?;
    let (psn_no_end, psn_no_bytes, psn_no_at) = decode_arena(d, n)?;
    let mut start = 0;
    for &end in &psn_no_end {
        if !code_bytes_valid(&psn_no_bytes[start..end as usize]) {
            return fail(psn_no_at + start, "psn_no");
        }
        start = end as usize;
    }
    let (name_end, name_bytes, at) = decode_arena(d, n)?;
    let names = match std::str::from_utf8(&name_bytes) {
        Ok(names) => names,
        Err(e) => return fail(at + e.valid_up_to(), "utf-8"),
    };
    let mut start = 0;
    for &end in &name_end {
        let end = end as usize;
        if end == start || end - start > NAME_BYTES_MAX || !names.is_char_boundary(end) {
            return fail(at + start, "name");
        }
        start = end;
    }
    let certno_at = d.pos;
    let certno: Vec<u64> = d.col(n)?;
    let at = d.pos;
    let admdvs: Vec<u32> = d.col(n)?;
    if let Some(i) = admdvs.iter().position(|&a| !admdvs_valid(a)) {
        return fail(at + i * 4, "person admdvs");
    }
    let at = d.pos;
    let flags: Vec<u8> = d.col(n)?;
    if let Some(i) = flags.iter().position(|&f| f & !FLAGS_ALL != 0) {
        return fail(at + i, "person flags");
    }
    let acct: Vec<Fen> = d.col(n)?;
    let wallet: Vec<Fen> = d.col(n)?;
    let heads_at = d.pos;
    let given_head = d.col(n)?;
    let received_head: Vec<u32> = d.col(n)?;
    let entry_tail: Vec<u32> = d.col(n)?;
    let hot = (0..n)
        .map(|i| Hot {
            acct: acct[i],
            wallet: wallet[i],
            admdvs: admdvs[i],
            received_head: received_head[i],
            entry_tail: entry_tail[i],
            flags: flags[i],
        })
        .collect();
    let wallet_day = d.col(n)?;
    let credit_last: Vec<u32> = d.col(n)?;
    let at = d.pos;
    let credit_mask: Vec<u64> = d.col(n)?;
    for (i, (&last, &mask)) in credit_last.iter().zip(&credit_mask).enumerate() {
        // Bit k marks period last-1-k, which must be a period (>= 1).
        let allowed = match last {
            0 => 0,
            l if l > CREDIT_MASK_MONTHS => u64::MAX,
            l => (1u64 << (l - 1)) - 1,
        };
        if mask & !allowed != 0 {
            return fail(at + i * 8, "credit mask");
        }
    }

    let heads = HeadsAt {
        given: heads_at,
        received: heads_at + n * 4,
        entry_tail: heads_at + n * 8,
    };
    let persons = Persons {
        index: HashTable::new(),
        psn_nos: arena(&psn_no_end, &psn_no_bytes),
        names: arena(&name_end, &name_bytes),
        certno_index: HashTable::new(),
        certno: certno.into(),
        hot,
        given_head: given_head.into(),
        wallet_day: wallet_day.into(),
        credit_last: credit_last.into(),
        credit_mask: credit_mask.into(),
        credit_overflow: BTreeSet::new(),
    };
    let keys_at = KeysAt {
        psn_no: psn_no_at,
        certno: certno_at,
    };
    Ok((persons, heads, keys_at))
}

/// The persons' index by psn_no and by certno, refusing duplicates.
pub(super) fn person_indexes(p: &Persons, at: &KeysAt) -> Res<(HashTable<u32>, HashTable<u32>)> {
    let n = p.len();
    let psn_no = |i: u32| p.psn_nos.get(i);
    let index = bulk::unique_index(n, |i| hash_bytes(psn_no(i)), |a, b| psn_no(a) == psn_no(b))
        .or_else(|i| {
            let before: usize = (0..i).map(|j| psn_no(j).len()).sum();
            fail(at.psn_no + before, "duplicate psn_no")
        })?;
    let certno = &p.certno;
    let certno_index = bulk::unique_index(
        n,
        |i| hash_certno(certno[i as usize]),
        |a, b| certno[a as usize] == certno[b as usize],
    )
    .or_else(|i| fail(at.certno + i as usize * 8, "duplicate certno"))?;
    Ok((index, certno_index))
}

pub(super) fn encode_credit_overflow(p: &Persons, e: &mut Enc<'_>) {
    e.count(p.credit_overflow.len());
    for &(i, period) in &p.credit_overflow {
        e.put(i);
        e.put(period);
    }
}

pub(super) fn decode_credit_overflow(d: &mut Dec<'_>, persons: &mut Persons) -> Res<()> {
    let n = persons.len();
    let count = d.count(8, "credit overflow count")?;
    let mut prev = None;
    let overflow = d.records(count, 8, |_, r| {
        let i = r.index(n, "credit overflow person")?;
        let period = r.get::<u32>();
        if prev.is_some_and(|prev| prev >= (i, period)) {
            return Err("credit overflow not ascending");
        }
        prev = Some((i, period));
        let last = persons.credit_last[i as usize];
        if period == 0 || last <= period || last - period <= CREDIT_MASK_MONTHS {
            return Err("credit overflow period");
        }
        Ok((i, period))
    })?;
    persons.credit_overflow = overflow.into_iter().collect::<BTreeSet<_>>();
    Ok(())
}
