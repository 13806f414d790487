//! Idempotency: every applied write's msgid, as a 128-bit hash, maps to its request
//! fingerprint and its reply. Records are forgotten after the retention window, oldest first.
//!
//! The records live in one queue in the order they were made (which is time order: the clock
//! only moves forward), so forgetting is a pop at the front. The index is a
//! `hashbrown::HashTable<u32>` of queue positions, hashed by the key's low 64 bits (the key is
//! already a hash): 4 bytes and a control byte a slot, where a map of key to record would hold
//! the 48-byte record itself in every slot and the queue a second copy of the key.

use std::collections::VecDeque;

use hashbrown::HashTable;

use crate::Reply;

/// `reply: None` marks a msgid blocked by a reversal: a late copy is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MsgRecord {
    pub fingerprint: u64,
    pub reply: Option<Reply>,
}

/// One remembered msgid. The key is stored as two words so that the slot is 8-aligned
/// (a `u128` would align it to 16 and pad it).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    key: [u64; 2],
    time: i64,
    record: MsgRecord,
}

/// Queues at least this long are never shrunk.
const SHRINK_MIN: usize = 1 << 12;

#[derive(Debug, Default)]
pub(crate) struct Msgids {
    /// Sequence numbers of the records (see `base`), hashed by the key's low word.
    index: HashTable<u32>,
    /// The records, oldest first.
    records: VecDeque<Slot>,
    /// The sequence number of `records[0]`; sequence numbers wrap, and the queue holds far
    /// fewer than 2³² records.
    base: u32,
}

pub(crate) fn msgid_key(msgid: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(msgid.as_bytes())
}

fn split(key: u128) -> [u64; 2] {
    [key as u64, (key >> 64) as u64]
}

fn join(key: [u64; 2]) -> u128 {
    u128::from(key[0]) | u128::from(key[1]) << 64
}

impl Msgids {
    fn position(&self, seq: u32) -> usize {
        seq.wrapping_sub(self.base) as usize
    }

    pub fn get(&self, key: u128) -> Option<&MsgRecord> {
        let key = split(key);
        let records = &self.records;
        let base = self.base;
        self.index
            .find(key[0], |&seq| {
                records[seq.wrapping_sub(base) as usize].key == key
            })
            .map(|&seq| &records[self.position(seq)].record)
    }

    /// Records `key`, made at `time` (not before the newest record's time).
    pub fn insert(&mut self, key: u128, fingerprint: u64, reply: Option<Reply>, time: i64) {
        assert!(self.get(key).is_none(), "msgid recorded twice");
        debug_assert!(self.records.back().is_none_or(|s| s.time <= time));
        let key = split(key);
        let seq = self.base.wrapping_add(self.records.len() as u32);
        self.records.push_back(Slot {
            key,
            time,
            record: MsgRecord { fingerprint, reply },
        });
        let (records, base) = (&self.records, self.base);
        self.index.insert_unique(key[0], seq, |&s| {
            records[s.wrapping_sub(base) as usize].key[0]
        });
    }

    /// Forgets the records made before `time`, and gives memory back once the queue holds
    /// less than a quarter of what it has room for.
    pub fn forget_before(&mut self, time: i64) {
        let mut forgot = false;
        while let Some(front) = self.records.front() {
            if front.time >= time {
                break;
            }
            let base = self.base;
            match self.index.find_entry(front.key[0], |&seq| seq == base) {
                Ok(entry) => {
                    entry.remove();
                }
                Err(_) => unreachable!("a queued msgid is indexed"),
            }
            self.records.pop_front();
            self.base = base.wrapping_add(1);
            forgot = true;
        }
        if forgot && self.records.capacity() > SHRINK_MIN.max(4 * self.records.len()) {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        let room = SHRINK_MIN.max(2 * self.records.len());
        self.records.shrink_to(room);
        let (records, base) = (&self.records, self.base);
        self.index
            .shrink_to(room, |&s| records[s.wrapping_sub(base) as usize].key[0]);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The records, oldest first: (time recorded, key, record).
    pub fn iter(&self) -> impl Iterator<Item = (i64, u128, &MsgRecord)> + '_ {
        self.records
            .iter()
            .map(|s| (s.time, join(s.key), &s.record))
    }

    /// Records sorted by key (the canonical order of snapshots and of the state hash).
    pub fn sorted_by_key(&self) -> Vec<(u128, &MsgRecord)> {
        let mut v: Vec<(u128, &MsgRecord)> = self.iter().map(|(_, k, r)| (k, r)).collect();
        v.sort_unstable_by_key(|&(k, _)| k);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_and_forgotten_oldest_first() {
        // Proves: lookups find every live record, forgetting drops exactly the records made
        // before the cut, and shrinking keeps every survivor findable.
        let mut m = Msgids::default();
        let key = |i: u64| u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        for i in 0..20_000u64 {
            m.insert(key(i), i, Some(Reply::Settled(i as u32)), i as i64 / 10);
        }
        assert_eq!(m.len(), 20_000);
        m.forget_before(1_900);
        assert_eq!(m.len(), 1_000);
        for i in 0..20_000u64 {
            let found = m.get(key(i)).map(|r| r.fingerprint);
            assert_eq!(found, (i >= 19_000).then_some(i), "{i}");
        }
        assert!(m.records.capacity() < 20_000);
        m.insert(key(1), 7, None, 2_000);
        assert_eq!(m.get(key(1)).map(|r| r.fingerprint), Some(7));
        let times: Vec<i64> = m.iter().map(|(t, _, _)| t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
}
