//! Idempotency: every applied write's (scope, msgid), as a 128-bit hash, maps to its request
//! fingerprint and its reply. The scope (an institution's code, a person's `psn_no`, or the
//! admin scope) is hashed into the key, so scoping costs no memory per record. Records are
//! forgotten after the retention window, oldest first.
//!
//! The records live in one queue in the order they were made (which is time order: the clock
//! only moves forward), so forgetting is a pop at the front. The index is a
//! `hashbrown::HashTable<u32>` of queue positions, hashed by the key's low 64 bits (the key is
//! already a hash): 4 bytes and a control byte a slot, where a map of key to record would hold
//! the 48-byte record itself in every slot and the queue a second copy of the key.
//!
//! The queue is stored in fixed-size chunks ([`Queue`]): growing never copies (and faults in
//! again) what is already queued, and a chunk emptied at the front is kept to be refilled at
//! the back, so a queue in its steady state touches no fresh memory.
//!
//! Beside the queue, the records a snapshot held ([`Sorted`]): a decoded snapshot's msgid
//! section is read where it lies, and a server adopts each snapshot it writes
//! ([`Msgids::adopt`]), so the queue holds only the records made since. Those are forgotten by
//! a cut-off time, not removed.

mod sorted;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

pub(crate) use sorted::{Builder as SortedBuilder, Sorted, RECORD_BYTES as SORTED_RECORD_BYTES};
pub use sorted::{SectionBytes, SharedBytes};

use hashbrown::HashTable;

use crate::{MsgidScope, Reply};

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

/// Elements per chunk of the queue (a power of two).
const SHIFT: u32 = 16;
const CHUNK: usize = 1 << SHIFT;
const MASK: usize = CHUNK - 1;

/// A FIFO queue in chunks of at most [`CHUNK`] elements: every chunk but the first and the
/// last is full, so position `p` is found by arithmetic. The only chunk grows like a `Vec`
/// up to [`CHUNK`], so a small queue stays small.
///
/// Chunks are shared (`Arc`), so a clone of the queue shares them, and a chunk is copied only
/// when one side next changes it: the snapshot's frozen copy ([`Msgids::frozen`]) costs a
/// copy of the chunk list, not of the records.
#[derive(Clone, Debug)]
struct Queue<T> {
    chunks: VecDeque<Arc<VecDeque<T>>>,
    len: usize,
    /// An emptied chunk kept for the next push that needs one.
    spare: Option<VecDeque<T>>,
}

impl<T> Default for Queue<T> {
    fn default() -> Queue<T> {
        Queue {
            chunks: VecDeque::new(),
            len: 0,
            spare: None,
        }
    }
}

impl<T: Clone> Queue<T> {
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn get(&self, p: usize) -> &T {
        assert!(p < self.len, "position {p} out of {}", self.len);
        let first = self.chunks[0].len();
        if p < first {
            &self.chunks[0][p]
        } else {
            let q = p - first;
            &self.chunks[1 + (q >> SHIFT)][q & MASK]
        }
    }

    fn front(&self) -> Option<&T> {
        self.chunks.front().and_then(|c| c.front())
    }

    fn back(&self) -> Option<&T> {
        self.chunks.back().and_then(|c| c.back())
    }

    fn push_back(&mut self, value: T) {
        if self.chunks.back().is_none_or(|c| c.len() >= CHUNK) {
            let chunk = match self.spare.take() {
                Some(c) => c,
                None if self.chunks.is_empty() => VecDeque::new(),
                None => VecDeque::with_capacity(CHUNK),
            };
            self.chunks.push_back(Arc::new(chunk));
        }
        Arc::make_mut(self.chunks.back_mut().expect("a chunk")).push_back(value);
        self.len += 1;
    }

    fn pop_front(&mut self) -> Option<T> {
        let first = Arc::make_mut(self.chunks.front_mut()?);
        let value = first.pop_front()?;
        if first.is_empty() {
            let chunk = self.chunks.pop_front().expect("a chunk");
            // A chunk still shared with a frozen copy is left to it.
            if let Some(chunk) = Arc::into_inner(chunk).filter(|c| c.capacity() >= CHUNK) {
                self.spare = Some(chunk);
            }
        }
        self.len -= 1;
        Some(value)
    }

    /// Room for elements without allocating, the spare chunk included.
    fn capacity(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity()).sum::<usize>()
            + self.spare.as_ref().map_or(0, VecDeque::capacity)
    }

    /// Gives back the spare chunk, and the room of a lone chunk beyond `room`.
    fn shrink_to(&mut self, room: usize) {
        self.spare = None;
        if self.chunks.len() == 1 {
            // A power of two, so that growing by doubling stops at exactly `CHUNK`.
            Arc::make_mut(&mut self.chunks[0]).shrink_to(room.next_power_of_two().min(CHUNK));
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

#[derive(Debug)]
pub(crate) struct Msgids {
    /// Sequence numbers of the records (see `base`), hashed by the key's low word.
    index: HashTable<u32>,
    /// The records, oldest first.
    records: Queue<Slot>,
    /// The sequence number of `records[0]`; sequence numbers wrap, and the queue holds far
    /// fewer than 2³² records.
    base: u32,
    /// The records of the snapshot this state was decoded from or last adopted. Of the queue,
    /// only its first `adopted` records are among them.
    sorted: Option<Arc<Sorted>>,
    /// Records of `sorted` made before this time are forgotten.
    cutoff: i64,
    /// Records at the front of the queue that `sorted` holds too (adopted, not yet dropped:
    /// [`Msgids::drain`] drops them a slice at a time, so that no batch waits for millions).
    /// Lookups may find them in either place, alike; everything else skips them.
    adopted: usize,
}

impl Default for Msgids {
    fn default() -> Msgids {
        Msgids {
            index: HashTable::new(),
            records: Queue::default(),
            base: 0,
            sorted: None,
            cutoff: i64::MIN,
            adopted: 0,
        }
    }
}

/// The queued records in key order, for a snapshot or the state hash: their fields copied in
/// one pass over the queue (in queue order, so its memory is read front to back) and their
/// replies encoded into one buffer, then sorted by key. Walking the queue itself in key order
/// would miss the cache on every record, once per pass.
pub(crate) struct QueuedByKey {
    entries: Vec<QueuedEntry>,
    replies: Vec<u8>,
}

pub(crate) struct QueuedEntry {
    key: [u64; 2],
    time: i64,
    fingerprint: u64,
    reply_at: u64,
    reply_len: u32,
}

impl QueuedByKey {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// One record, from the queue or from a snapshot's section.
pub(crate) enum Rec<'a> {
    Live(&'a QueuedEntry, &'a [u8]),
    Sorted(&'a Sorted, usize),
}

impl<'a> Rec<'a> {
    pub fn key(&self) -> u128 {
        match *self {
            Rec::Live(e, _) => join(e.key),
            Rec::Sorted(s, i) => s.key(i),
        }
    }

    pub fn time(&self) -> i64 {
        match *self {
            Rec::Live(e, _) => e.time,
            Rec::Sorted(s, i) => s.time(i),
        }
    }

    pub fn fingerprint(&self) -> u64 {
        match *self {
            Rec::Live(e, _) => e.fingerprint,
            Rec::Sorted(s, i) => s.fingerprint(i),
        }
    }

    /// The reply as a snapshot encodes it.
    pub fn reply_bytes(&self) -> &'a [u8] {
        match *self {
            Rec::Live(e, replies) => {
                &replies[e.reply_at as usize..e.reply_at as usize + e.reply_len as usize]
            }
            Rec::Sorted(s, i) => s.reply_bytes(i),
        }
    }

    /// The record itself, decoded.
    pub fn record(&self) -> MsgRecord {
        MsgRecord {
            fingerprint: self.fingerprint(),
            reply: super::snapshot::decode_checked_reply(self.reply_bytes()),
        }
    }
}

/// The key of `msgid` in `scope`: a hash of a tag byte, the scope's code, a separator that no
/// code contains, and the msgid; so two scopes never share a key (short of a 128-bit collision).
pub(crate) fn msgid_key(scope: MsgidScope<'_>, msgid: &str) -> u128 {
    let (tag, code) = match scope {
        MsgidScope::Admin => (b'A', ""),
        MsgidScope::Institution(code) => (b'I', code),
        MsgidScope::Person(psn_no) => (b'P', psn_no),
    };
    // Codes are at most 30 bytes and msgids at most 64; a longer input (which validation
    // refuses before any lookup) is hashed on the heap rather than cut.
    let mut buf = arrayvec::ArrayVec::<u8, 128>::new();
    let len = 2 + code.len() + msgid.len();
    if len <= buf.capacity() {
        buf.push(tag);
        buf.try_extend_from_slice(code.as_bytes()).expect("fits");
        buf.push(b'/');
        buf.try_extend_from_slice(msgid.as_bytes()).expect("fits");
        xxhash_rust::xxh3::xxh3_128(&buf)
    } else {
        let mut v = Vec::with_capacity(len);
        v.push(tag);
        v.extend_from_slice(code.as_bytes());
        v.push(b'/');
        v.extend_from_slice(msgid.as_bytes());
        xxhash_rust::xxh3::xxh3_128(&v)
    }
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

    pub fn get(&self, key: u128) -> Option<Cow<'_, MsgRecord>> {
        let words = split(key);
        let records = &self.records;
        let base = self.base;
        let live = self.index.find(words[0], |&seq| {
            records.get(seq.wrapping_sub(base) as usize).key == words
        });
        if let Some(&seq) = live {
            return Some(Cow::Borrowed(&records.get(self.position(seq)).record));
        }
        let found = self.sorted.as_deref()?.lookup(key)?;
        (found.time >= self.cutoff).then(|| {
            Cow::Owned(MsgRecord {
                fingerprint: found.fingerprint,
                reply: super::snapshot::decode_checked_reply(&found.reply),
            })
        })
    }

    /// Msgids whose records before the queue are a snapshot's (`sorted`), all of them kept.
    pub fn with_sorted(sorted: Sorted) -> Msgids {
        Msgids {
            sorted: Some(Arc::new(sorted)),
            ..Msgids::default()
        }
    }

    /// Takes `sorted`, the section of a snapshot frozen when the queue's next sequence number
    /// was `end` (what [`Msgids::end`] said then), in place of the records it holds: the
    /// previous snapshot's, and those the queue held before `end`, which are dropped by
    /// [`Msgids::drain`] (those made since stay queued). The cut-off stays (the section may
    /// hold records forgotten since it was frozen).
    pub fn adopt(&mut self, section: Msgids, end: u32) {
        let sorted = section.sorted.expect("a decoded section");
        // When the queue's front has passed `end`, every record queued at the freeze has been
        // forgotten since.
        let ahead = end.wrapping_sub(self.base) as usize;
        self.adopted = if ahead <= self.records.len() {
            ahead
        } else {
            0
        };
        self.sorted = Some(sorted);
    }

    /// Drops at most `max` of the adopted records from the queue's front; returns how many
    /// are left.
    pub fn drain(&mut self, max: usize) -> usize {
        for _ in 0..self.adopted.min(max) {
            self.pop_front();
        }
        self.adopted
    }

    /// The sequence number the next queued record will get.
    pub fn end(&self) -> u32 {
        self.base.wrapping_add(self.records.len() as u32)
    }

    /// Appends a decoded snapshot's record without indexing it: the index is built once, by
    /// [`Msgids::index_all`], after the last one. Times must not decrease (the caller checks).
    pub fn push_unindexed(&mut self, key: u128, fingerprint: u64, reply: Option<Reply>, time: i64) {
        debug_assert!(self.index.is_empty() && self.base == 0);
        self.records.push_back(Slot {
            key: split(key),
            time,
            record: MsgRecord { fingerprint, reply },
        });
    }

    /// Indexes every record pushed by [`Msgids::push_unindexed`], at once ([`super::bulk`]).
    /// `Err(i)`: record `i` repeats the key of an earlier one.
    pub fn index_all(&mut self) -> Result<(), usize> {
        let q = &self.records;
        u32::try_from(q.len()).expect("a msgid window fits u32 positions");
        self.index = super::bulk::unique_index(
            q.len(),
            |i| q.get(i as usize).key[0],
            |a, b| q.get(a as usize).key == q.get(b as usize).key,
        )
        .map_err(|i| i as usize)?;
        Ok(())
    }

    /// Records `key`, made at `time` (not before the newest record's time).
    pub fn insert(&mut self, key: u128, fingerprint: u64, reply: Option<Reply>, time: i64) {
        // Every caller has just looked the key up; a second probe would cost a cache miss.
        debug_assert!(self.get(key).is_none(), "msgid recorded twice");
        assert!(
            self.records.back().is_none_or(|s| s.time <= time),
            "msgid records out of time order"
        );
        let key = split(key);
        let seq = self.base.wrapping_add(self.records.len() as u32);
        self.records.push_back(Slot {
            key,
            time,
            record: MsgRecord { fingerprint, reply },
        });
        let (records, base) = (&self.records, self.base);
        self.index.insert_unique(key[0], seq, |&s| {
            records.get(s.wrapping_sub(base) as usize).key[0]
        });
    }

    /// Forgets the records made before `time`, and gives memory back once the queue holds
    /// less than a quarter of what it has room for.
    pub fn forget_before(&mut self, time: i64) {
        self.cutoff = self.cutoff.max(time);
        let mut forgot = false;
        while self.records.front().is_some_and(|front| front.time < time) {
            self.pop_front();
            forgot = true;
        }
        self.shrink_if_sparse(forgot);
    }

    fn pop_front(&mut self) {
        let front = self.records.front().expect("a record");
        let base = self.base;
        match self.index.find_entry(front.key[0], |&seq| seq == base) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => unreachable!("a queued msgid is indexed"),
        }
        self.records.pop_front();
        self.base = base.wrapping_add(1);
        self.adopted = self.adopted.saturating_sub(1);
    }

    fn shrink_if_sparse(&mut self, popped: bool) {
        let len = self.records.len();
        // A queue of several chunks gives its memory back a chunk at a time as it empties;
        // a lone chunk, and the index, are shrunk (to a size the test here no longer meets).
        // Not while records are adopted by snapshots: the queue then empties at every
        // adoption and fills again up to the next, and shrinking the index each time would
        // rehash it as it grows back, a pause of tens of milliseconds at millions of records.
        if popped
            && self.sorted.is_none()
            && (self.records.chunks.len() <= 1 && self.records.capacity() > SHRINK_MIN.max(4 * len)
                || self.index.capacity() > SHRINK_MIN.max(8 * len))
        {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        let room = SHRINK_MIN.max(2 * self.records.len());
        self.records.shrink_to(room);
        let (records, base) = (&self.records, self.base);
        self.index
            .shrink_to(room, |&s| records.get(s.wrapping_sub(base) as usize).key[0]);
    }

    /// Records held: queued, and in the snapshot's section (whose forgotten records stay
    /// until the next snapshot is adopted).
    pub fn len(&self) -> usize {
        self.queued_len() + self.sorted.as_ref().map_or(0, |s| s.len())
    }

    /// Records in the queue, less those adopted.
    pub fn queued_len(&self) -> usize {
        self.records.len() - self.adopted
    }

    /// Bytes held: the queue's room (the spare chunk included), the index's slots and the
    /// section's directory (its records are the snapshot file's pages, not counted).
    pub fn memory(&self) -> u64 {
        (self.records.capacity() * std::mem::size_of::<Slot>() + self.index.capacity() * 5) as u64
            + self.sorted.as_ref().map_or(0, |s| s.memory())
    }

    /// The queued records, oldest first: (time recorded, key, record). Not those of a
    /// snapshot's section.
    #[cfg(test)]
    pub fn queued(&self) -> impl Iterator<Item = (i64, u128, &MsgRecord)> + '_ {
        self.records
            .iter()
            .skip(self.adopted)
            .map(|s| (s.time, join(s.key), &s.record))
    }

    /// Records in the queue, adopted ones included.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.records.len()
    }

    /// Records in the queue that an adopted section holds too.
    #[cfg(test)]
    pub fn adopted(&self) -> usize {
        self.adopted
    }

    /// Whether every record is queued (none is a snapshot section's).
    #[cfg(test)]
    pub fn all_queued(&self) -> bool {
        self.sorted.is_none()
    }

    /// A copy of the records that shares their memory (see [`Queue`]), without the index: all
    /// that a snapshot encodes. Only [`Msgids::by_key`] and [`Msgids::queued`] may be asked
    /// of it.
    pub fn frozen(&self) -> Msgids {
        Msgids {
            index: HashTable::new(),
            records: self.records.clone(),
            base: self.base,
            sorted: self.sorted.clone(),
            cutoff: self.cutoff,
            adopted: self.adopted,
        }
    }

    /// The queued records ascending by key (for [`Msgids::by_key`]).
    pub fn queued_by_key(&self) -> QueuedByKey {
        let mut entries = Vec::with_capacity(self.queued_len());
        let mut replies = Vec::new();
        for slot in self.records.iter().skip(self.adopted) {
            let reply_at = replies.len();
            super::snapshot::encode_reply_into(slot.record.reply.as_ref(), &mut replies);
            entries.push(QueuedEntry {
                key: slot.key,
                time: slot.time,
                fingerprint: slot.record.fingerprint,
                reply_at: reply_at as u64,
                reply_len: (replies.len() - reply_at) as u32,
            });
        }
        entries.sort_unstable_by_key(|e| join(e.key));
        QueuedByKey { entries, replies }
    }

    /// The records not forgotten, ascending by key (the canonical order of snapshots and of
    /// the state hash): the queue's (`queued`, from [`Msgids::queued_by_key`]) merged with the
    /// section's.
    pub fn by_key<'a>(&'a self, queued: &'a QueuedByKey) -> impl Iterator<Item = Rec<'a>> + 'a {
        let replies = &queued.replies[..];
        let mut queued = queued
            .entries
            .iter()
            .map(move |e| Rec::Live(e, replies))
            .peekable();
        let cutoff = self.cutoff;
        let mut sorted = self
            .sorted
            .as_deref()
            .into_iter()
            .flat_map(|s| (0..s.len()).map(move |i| Rec::Sorted(s, i)))
            .filter(move |r| r.time() >= cutoff)
            .peekable();
        std::iter::from_fn(move || match (queued.peek(), sorted.peek()) {
            (Some(q), Some(s)) => {
                debug_assert_ne!(q.key(), s.key(), "a key queued and in the section");
                if q.key() < s.key() {
                    queued.next()
                } else {
                    sorted.next()
                }
            }
            (Some(_), None) => queued.next(),
            (None, _) => sorted.next(),
        })
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
        let times: Vec<i64> = m.queued().map(|(t, _, _)| t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn scopes_never_share_a_key() {
        // Proves: the same msgid in the admin scope, an institution's, a person's, and a scope
        // whose code is a prefix of another's gives distinct keys (also when the code and msgid
        // split the same text differently), and the key's encoding is the documented one.
        let keys = [
            msgid_key(MsgidScope::Admin, "H44010600001202612070800000099"),
            msgid_key(
                MsgidScope::Institution("H4401"),
                "H44010600001202612070800000099",
            ),
            msgid_key(
                MsgidScope::Institution("H44010600001"),
                "H44010600001202612070800000099",
            ),
            msgid_key(
                MsgidScope::Person("H44010600001"),
                "H44010600001202612070800000099",
            ),
            msgid_key(
                MsgidScope::Institution("H4401"),
                "0600001202612070800000099",
            ),
            msgid_key(
                MsgidScope::Institution("H44010"),
                "600001202612070800000099",
            ),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The encoding is part of the snapshot format: tag, code, '/', msgid.
        assert_eq!(
            keys[1],
            xxhash_rust::xxh3::xxh3_128(b"IH4401/H44010600001202612070800000099")
        );
        assert_eq!(
            keys[0],
            xxhash_rust::xxh3::xxh3_128(b"A/H44010600001202612070800000099")
        );
    }

    #[test]
    fn queue_behaves_like_a_vecdeque_across_chunks() {
        // Proves: positions, front, back, iteration and length agree with a VecDeque while
        // the queue grows over several chunks, empties at the front and refills at the back.
        let mut q = Queue::default();
        let mut v = VecDeque::new();
        let mut next = 0u64;
        for round in 0..6 {
            for _ in 0..(CHUNK + 3_001 * round) {
                q.push_back(next);
                v.push_back(next);
                next += 1;
            }
            for _ in 0..(CHUNK / 2 + 777 * round) {
                assert_eq!(q.pop_front(), v.pop_front());
            }
            assert_eq!(q.len(), v.len());
            assert_eq!(q.front(), v.front());
            assert_eq!(q.back(), v.back());
            for p in (0..v.len()).step_by(997).chain([v.len() - 1]) {
                assert_eq!(q.get(p), &v[p], "{p}");
            }
        }
        assert!(q.iter().eq(v.iter()));
        while q.pop_front().is_some() {}
        assert_eq!(q.len(), 0);
        q.push_back(1);
        assert_eq!(q.get(0), &1);
    }
}
