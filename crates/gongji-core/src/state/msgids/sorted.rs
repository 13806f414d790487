//! The msgid records a snapshot held, read where they lie: in the snapshot's own bytes (a
//! mapped file on a start), never copied into records of our own.
//!
//! A snapshot's msgid section (formats 5 and 6) is the records ascending by key, each of fixed
//! size (key, time, fingerprint, where its reply starts), then the replies in the same order. A
//! lookup finds its key through a directory of the keys' top bits (built while the section
//! is checked, about half a byte a record) and a binary search of the few records under one
//! entry. At 67 M records this is what lets a start skip materialising 4 GB of window: the
//! section's pages are the page cache's, faulted in by lookups or the hash check, never
//! fresh memory to be zeroed.
//!
//! Most lookups are of msgids never seen (every new write's): a blocked Bloom filter of the
//! keys (10 bits a record, one cache line a key) answers most of those without touching the
//! section's pages.
//!
//! Records are never removed from a [`Sorted`]: [`super::Msgids`] forgets them by time (a
//! record made before its cut-off is not found) and drops them when it adopts the next
//! snapshot's section, which leaves them out.

use std::ops::Range;
use std::sync::Arc;

/// Bytes a [`Sorted`] reads: a mapped snapshot file, or a copy of one's msgid section.
pub trait SectionBytes: AsRef<[u8]> + Send + Sync {
    /// A hint that the pages of `range` need not stay resident. A mapped file drops them
    /// from the process: they stay in the page cache, and the next touch maps them again.
    /// A snapshot reads a whole section to write the next one; without this, every page of
    /// it would count in the process's memory until the section is dropped.
    fn release(&self, _range: Range<usize>) {}

    /// Fills `out` with the bytes at `at`. A mapped file reads them (`pread`) rather than
    /// touching the mapping: a touch maps the page cache's whole folio (up to 2 MiB) into
    /// the process, so the few records a lookup reads would make the section resident.
    fn read_at(&self, at: usize, out: &mut [u8]) {
        out.copy_from_slice(&self.as_ref()[at..at + out.len()]);
    }
}

impl SectionBytes for Vec<u8> {}

/// A [`SectionBytes`] shared by a state and its frozen copies.
pub type SharedBytes = Arc<dyn SectionBytes>;

/// A record: key u128, time i64, fingerprint u64, reply offset u64 (little-endian).
pub(crate) const RECORD_BYTES: usize = 16 + 8 + 8 + 8;

/// Records per directory entry, on average.
const PER_ENTRY: usize = 8;

/// Bloom filter bits per record, and bits set per key (in one 512-bit block).
const BLOOM_BITS: usize = 10;
const BLOOM_PROBES: u32 = 6;

/// A blocked Bloom filter over 128-bit keys that are already hashes: the key's top bits pick
/// a 512-bit block (a cache line), six 9-bit slices of the low word the bits in it. Top bits,
/// so that keys pushed in ascending order (a section's) fill the blocks front to back: at 67 M
/// records a filter filled at random places took seconds of a start in cache misses.
#[derive(Debug)]
struct Bloom {
    blocks: Vec<[u64; 8]>,
    /// log2 of the number of blocks.
    bits: u32,
}

impl Bloom {
    fn new(len: usize) -> Bloom {
        let blocks = (len * BLOOM_BITS / 512).max(1).next_power_of_two();
        Bloom {
            blocks: vec![[0; 8]; blocks],
            bits: blocks.trailing_zeros(),
        }
    }

    fn probes(&self, key: u128) -> (usize, impl Iterator<Item = (usize, u64)>) {
        let block = prefix(key, self.bits);
        let low = key as u64;
        let bits = (0..BLOOM_PROBES).map(move |i| {
            let bit = (low >> (i * 9)) & 511;
            ((bit >> 6) as usize, 1u64 << (bit & 63))
        });
        (block, bits)
    }

    fn insert(&mut self, key: u128) {
        let (block, bits) = self.probes(key);
        for (word, mask) in bits {
            self.blocks[block][word] |= mask;
        }
    }

    fn may_hold(&self, key: u128) -> bool {
        let (block, mut bits) = self.probes(key);
        let b = &self.blocks[block];
        bits.all(|(word, mask)| b[word] & mask != 0)
    }
}

pub(crate) struct Sorted {
    bytes: SharedBytes,
    /// Where the records start in `bytes`.
    records: usize,
    len: usize,
    /// Where the replies start in `bytes`, and their length.
    replies: usize,
    replies_len: usize,
    /// `dir[p]` is the first record whose key's top `bits` bits are at least `p`; it has
    /// `2^bits + 1` entries.
    dir: Vec<u32>,
    bits: u32,
    bloom: Bloom,
}

impl std::fmt::Debug for Sorted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sorted")
            .field("len", &self.len)
            .field("replies_len", &self.replies_len)
            .finish_non_exhaustive()
    }
}

/// The directory's prefix bits for `len` records.
fn dir_bits(len: usize) -> u32 {
    (len / PER_ENTRY)
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
}

fn prefix(key: u128, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (key >> (128 - bits)) as usize
    }
}

/// Builds a [`Sorted`] while its section is checked or written: the caller pushes every key,
/// ascending.
#[derive(Debug)]
pub(crate) struct Builder {
    dir: Vec<u32>,
    bits: u32,
    pushed: u32,
    bloom: Bloom,
}

impl Builder {
    /// For `len` records (at most `u32::MAX`, which the caller checks).
    pub fn new(len: usize) -> Builder {
        let bits = dir_bits(len);
        Builder {
            dir: Vec::with_capacity((1 << bits) + 1),
            bits,
            pushed: 0,
            bloom: Bloom::new(len),
        }
    }

    /// The next record's key (not below the previous one's).
    #[inline]
    pub fn push(&mut self, key: u128) {
        let p = prefix(key, self.bits);
        while self.dir.len() <= p {
            self.dir.push(self.pushed);
        }
        self.bloom.insert(key);
        self.pushed += 1;
    }

    /// The records start at `records` in `bytes`, their replies at `replies`.
    pub fn finish(mut self, bytes: SharedBytes, records: usize, replies: Range<usize>) -> Sorted {
        let len = self.pushed as usize;
        while self.dir.len() < (1 << self.bits) + 1 {
            self.dir.push(self.pushed);
        }
        debug_assert!(records + len * RECORD_BYTES <= replies.start);
        Sorted {
            bytes,
            records,
            len,
            replies: replies.start,
            replies_len: replies.len(),
            dir: self.dir,
            bits: self.bits,
            bloom: self.bloom,
        }
    }
}

/// Records a lookup reads into a buffer on the stack (a directory entry covers 8 on average).
const LOOKUP_STACK_RECORDS: usize = 32;

/// A record [`Sorted::lookup`] found.
#[derive(Debug)]
pub struct Found {
    pub time: i64,
    pub fingerprint: u64,
    /// The reply as `snapshot::msgids::encode_reply` wrote it.
    pub reply: Vec<u8>,
}

fn word<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("N bytes")
}

impl Sorted {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Releases ([`SectionBytes::release`]) the pages of records `..i` and of their replies,
    /// which a pass in key order has read.
    pub fn release_before(&self, i: usize) {
        let i = i.min(self.len);
        self.bytes
            .release(self.records..self.records + i * RECORD_BYTES);
        self.bytes
            .release(self.replies..self.replies + self.reply_start(i));
    }

    fn record(&self, i: usize) -> &[u8] {
        let at = self.records + i * RECORD_BYTES;
        &(*self.bytes).as_ref()[at..at + RECORD_BYTES]
    }

    pub fn key(&self, i: usize) -> u128 {
        u128::from_le_bytes(word(self.record(i), 0))
    }

    pub fn time(&self, i: usize) -> i64 {
        i64::from_le_bytes(word(self.record(i), 16))
    }

    pub fn fingerprint(&self, i: usize) -> u64 {
        u64::from_le_bytes(word(self.record(i), 24))
    }

    fn reply_at(&self, i: usize) -> usize {
        u64::from_le_bytes(word(self.record(i), 32)) as usize
    }

    /// Where record `i`'s reply starts among the replies; for `i == len`, where they end.
    fn reply_start(&self, i: usize) -> usize {
        if i < self.len {
            self.reply_at(i)
        } else {
            self.replies_len
        }
    }

    /// The encoded reply of record `i` (as `snapshot::msgids::encode_reply` wrote it).
    pub fn reply_bytes(&self, i: usize) -> &[u8] {
        let b = (*self.bytes).as_ref();
        &b[self.replies + self.reply_start(i)..self.replies + self.reply_start(i + 1)]
    }

    /// The record with `key`, read with [`SectionBytes::read_at`]: the directory's range of
    /// records and the one after it (where the reply ends) in one read, then the reply.
    pub fn lookup(&self, key: u128) -> Option<Found> {
        if !self.bloom.may_hold(key) {
            return None;
        }
        let p = prefix(key, self.bits);
        let (lo, hi) = (self.dir[p] as usize, self.dir[p + 1] as usize);
        if lo >= hi {
            return None;
        }
        let end = (hi + 1).min(self.len);
        let mut stack = [0u8; LOOKUP_STACK_RECORDS * RECORD_BYTES];
        let mut heap = Vec::new();
        let buf = if end - lo <= LOOKUP_STACK_RECORDS {
            &mut stack[..(end - lo) * RECORD_BYTES]
        } else {
            heap.resize((end - lo) * RECORD_BYTES, 0);
            &mut heap[..]
        };
        self.bytes.read_at(self.records + lo * RECORD_BYTES, buf);
        let rec = |j: usize| &buf[j * RECORD_BYTES..(j + 1) * RECORD_BYTES];
        let (mut a, mut b) = (0, hi - lo);
        let j = loop {
            if a >= b {
                return None;
            }
            let mid = a + (b - a) / 2;
            match u128::from_le_bytes(word(rec(mid), 0)).cmp(&key) {
                std::cmp::Ordering::Less => a = mid + 1,
                std::cmp::Ordering::Greater => b = mid,
                std::cmp::Ordering::Equal => break mid,
            }
        };
        let r = rec(j);
        let reply_at = u64::from_le_bytes(word(r, 32)) as usize;
        let reply_end = if lo + j + 1 < self.len {
            u64::from_le_bytes(word(rec(j + 1), 32)) as usize
        } else {
            self.replies_len
        };
        let mut reply = vec![0; reply_end.saturating_sub(reply_at)];
        self.bytes.read_at(self.replies + reply_at, &mut reply);
        Some(Found {
            time: i64::from_le_bytes(word(r, 16)),
            fingerprint: u64::from_le_bytes(word(r, 24)),
            reply,
        })
    }

    /// Bytes of memory of its own (the records are the snapshot's).
    pub fn memory(&self) -> u64 {
        (self.dir.capacity() * 4 + self.bloom.blocks.len() * 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(keys: &[u128]) -> Sorted {
        let mut bytes = Vec::new();
        for (i, &k) in keys.iter().enumerate() {
            bytes.extend_from_slice(&k.to_le_bytes());
            bytes.extend_from_slice(&(i as i64).to_le_bytes());
            bytes.extend_from_slice(&(i as u64 * 3).to_le_bytes());
            bytes.extend_from_slice(&(i as u64).to_le_bytes());
        }
        let replies = bytes.len();
        bytes.extend((0..keys.len()).map(|i| i as u8));
        let mut b = Builder::new(keys.len());
        for &k in keys {
            b.push(k);
        }
        let end = bytes.len();
        b.finish(Arc::new(bytes), 0, replies..end)
    }

    #[test]
    fn every_key_is_found_and_no_other() {
        // Proves: across directory sizes (none, one entry, many) and keys at both ends of
        // the range, every record is found at its position with its fields, and keys between
        // and beyond them are not.
        for n in [0usize, 1, 7, 8, 9, 100, 5_000] {
            let mut keys: Vec<u128> = (0..n as u128)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) | 1)
                .collect();
            if n > 2 {
                keys[0] = 1;
                keys[1] = u128::MAX;
            }
            keys.sort_unstable();
            let s = section(&keys);
            assert_eq!(s.len(), n);
            for (i, &k) in keys.iter().enumerate() {
                assert_eq!(s.key(i), k, "n {n} key {k:x}");
                assert_eq!(s.time(i), i as i64);
                assert_eq!(s.fingerprint(i), i as u64 * 3);
                assert_eq!(s.reply_bytes(i), &[i as u8]);
                assert_lookup(&s, k, i);
            }
            assert!(s.lookup(0).is_none());
        }
    }

    /// `lookup(key)` reads record `i`'s fields and reply, as `find` and the accessors do, and
    /// a key next to it is not found.
    fn assert_lookup(s: &Sorted, key: u128, i: usize) {
        let found = s
            .lookup(key)
            .unwrap_or_else(|| panic!("key {key:x} at {i}"));
        assert_eq!(found.time, s.time(i));
        assert_eq!(found.fingerprint, s.fingerprint(i));
        assert_eq!(found.reply, s.reply_bytes(i));
        assert!(s.lookup(key ^ 1).is_none());
    }

    #[test]
    fn a_lookup_reads_a_crowded_directory_entry_whole() {
        // Proves: when far more records than fit the stack buffer share a directory entry
        // (keys alike in their top bits), `lookup` reads them on the heap and finds every
        // one, the last record's reply ending the section included.
        let n = 3 * LOOKUP_STACK_RECORDS + 5;
        let keys: Vec<u128> = (1..=n as u128).map(|i| i * 2).collect();
        let s = section(&keys);
        let p = prefix(keys[0], s.bits);
        assert!(s.dir[p + 1] as usize - s.dir[p] as usize > LOOKUP_STACK_RECORDS);
        for (i, &k) in keys.iter().enumerate() {
            assert_lookup(&s, k, i);
        }
    }

    #[test]
    fn the_filter_turns_most_absent_keys_away() {
        // Proves: the Bloom filter holds every key pushed (no false negative: every key is
        // found above) and passes few absent ones: under 3 % of 100,000 hashes not in a
        // section of 100,000 keys (10 bits a key, six probes: about 1 % expected).
        let key = |i: u64| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
        let mut bloom = Bloom::new(100_000);
        for i in 0..100_000 {
            bloom.insert(key(i));
        }
        assert!((0..100_000).all(|i| bloom.may_hold(key(i))));
        let passed = (100_000..200_000)
            .filter(|&i| bloom.may_hold(key(i)))
            .count();
        assert!(passed < 3_000, "{passed} absent keys passed");
        assert!(passed > 0, "a filter that passes nothing holds nothing");
    }
}
