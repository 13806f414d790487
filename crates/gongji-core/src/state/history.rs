//! History columns (settlements, their giver details, ledger entries, wallet transfers,
//! contributions): append-only records addressed by position, whose final full chunks leave
//! the heap for files.
//!
//! A [`History`] is a [`super::Chunked`] whose leading chunks may be *cold*: the chunk's records
//! encoded with [`Record`] in bytes the engine does not hold ([`ColdBytes`], a history file
//! in the server, read with `pread` through the page cache). Records are immutable once written (a settlement's `cancelled` mark lives in a
//! set beside it; an entry links to the person's previous entry, never to the next), so a full
//! chunk never changes again and can go cold once it is durable. A wallet transfer changes
//! once, from pending to accepted, declined or returned, and never after: its chunk is final
//! once the expiry queue holds none of its transfers (every pending transfer is queued, and
//! the queue is in transfer order), and only then goes cold. The snapshot thread writes
//! it to a file, and the writer swaps its hot chunk for the file's bytes
//! ([`crate::State::make_cold`]). Reads decode a record by value from either form.
//!
//! The core does no IO of its own: it asks the [`ColdBytes`] it was handed for a record's
//! bytes, and the server's implementation reads them from the file (the page cache, or the
//! disk). The server reads what a write will read before queueing it (`State::prefetch`), so
//! the writer finds the page in the cache.

use std::fmt;
use std::sync::Arc;

use super::chunked::{Chunk, CHUNK, MASK, SHIFT};

/// The fixed-size little-endian encoding of one record in a cold chunk.
pub trait Record: Copy {
    /// At most `RECORD_BYTES_MAX`.
    const BYTES: usize;
    fn put(&self, out: &mut Vec<u8>);
    /// Decodes `b` (exactly [`Record::BYTES`] long), which [`Record::put`] wrote: cold
    /// bytes are checked (length, checksum) before they are attached.
    fn get(b: &[u8]) -> Self;
}

/// Bytes of one cold chunk, held outside the state (a history file).
pub trait ColdBytes: Send + Sync {
    /// Bytes in the chunk.
    fn byte_len(&self) -> usize;
    /// Fills `out` with the bytes at `at`. The bytes were checked when the chunk was attached;
    /// a read that fails now (the disk failed under a running engine) panics, as a failed
    /// journal write stops the writer.
    fn read(&self, at: usize, out: &mut [u8]);
}

impl ColdBytes for Vec<u8> {
    fn byte_len(&self) -> usize {
        self.len()
    }

    fn read(&self, at: usize, out: &mut [u8]) {
        out.copy_from_slice(&self[at..at + out.len()]);
    }
}

/// The longest record of a history column (a settlement).
const RECORD_BYTES_MAX: usize = 96;
const _: () = assert!(
    <super::Settlement as Record>::BYTES <= RECORD_BYTES_MAX
        && <super::Entry as Record>::BYTES <= RECORD_BYTES_MAX
        && <super::Detail as Record>::BYTES <= RECORD_BYTES_MAX
        && <super::Transfer as Record>::BYTES <= RECORD_BYTES_MAX
        && <super::Contribution as Record>::BYTES <= RECORD_BYTES_MAX
);

enum Slot<T> {
    Hot(Arc<Chunk<T>>),
    Cold(Arc<dyn ColdBytes>),
    /// Cold in a decoded snapshot, not attached yet.
    Missing,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Slot<T> {
        match self {
            Slot::Hot(c) => Slot::Hot(c.clone()),
            Slot::Cold(b) => Slot::Cold(b.clone()),
            Slot::Missing => Slot::Missing,
        }
    }
}

/// Records an iterator reads from cold bytes at a time: a scan costs a read per block, not
/// per record.
const READ_RECORDS: usize = 4096;

/// Records of a [`History`] in order; cold ones are read a block at a time.
#[derive(Clone)]
pub(crate) struct Iter<'a, T> {
    history: &'a History<T>,
    next: usize,
    end: usize,
    /// Encoded records `buf_start..buf_start + buf_records`, read from a cold chunk.
    buf: Vec<u8>,
    buf_start: usize,
    buf_records: usize,
}

impl<T: Record + Clone> Iterator for Iter<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let i = self.next;
        if i >= self.end {
            return None;
        }
        self.next += 1;
        let bytes = match &self.history.slots[i >> SHIFT] {
            Slot::Hot(c) => return Some(c.0[i & MASK]),
            Slot::Cold(b) => b,
            Slot::Missing => panic!("record {i} is in a cold chunk not attached"),
        };
        if !(self.buf_start..self.buf_start + self.buf_records).contains(&i) {
            let chunk_end = (i | MASK) + 1;
            let n = READ_RECORDS.min(self.end.min(chunk_end) - i);
            self.buf.resize(n * T::BYTES, 0);
            bytes.read((i & MASK) * T::BYTES, &mut self.buf);
            (self.buf_start, self.buf_records) = (i, n);
        }
        let at = (i - self.buf_start) * T::BYTES;
        Some(T::get(&self.buf[at..at + T::BYTES]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

/// An append-only column of [`Record`]s in chunks of 64 K, the leading ones possibly cold.
#[derive(Clone)]
pub(crate) struct History<T> {
    slots: Vec<Slot<T>>,
    len: usize,
    /// Leading chunks that are cold (or missing).
    cold: usize,
}

impl<T> Default for History<T> {
    fn default() -> History<T> {
        History {
            slots: Vec::new(),
            len: 0,
            cold: 0,
        }
    }
}

/// Elements per chunk of a history column.
pub const HISTORY_CHUNK: usize = CHUNK;

impl<T: Record + Clone> History<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Leading chunks that are cold.
    pub fn cold_chunks(&self) -> usize {
        self.cold
    }

    /// Records held in cold chunks (a multiple of the chunk size).
    pub fn cold_len(&self) -> usize {
        self.cold << SHIFT
    }

    /// Full hot chunks after the cold ones: those that may go cold.
    pub fn full_hot(&self) -> std::ops::Range<usize> {
        self.cold..self.len >> SHIFT
    }

    /// Hot record `i`, to change in place (a transfer's status). A cold record never changes:
    /// asking for one is a bug.
    pub fn hot_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "record {i} out of {}", self.len);
        match &mut self.slots[i >> SHIFT] {
            Slot::Hot(c) => &mut Arc::make_mut(c).0[i & MASK],
            _ => panic!("record {i} is cold and cannot change"),
        }
    }

    #[inline]
    pub fn get(&self, i: usize) -> T {
        assert!(i < self.len, "record {i} out of {}", self.len);
        match &self.slots[i >> SHIFT] {
            Slot::Hot(c) => c.0[i & MASK],
            Slot::Cold(b) => {
                let mut buf = [0u8; RECORD_BYTES_MAX];
                let out = &mut buf[..T::BYTES];
                b.read((i & MASK) * T::BYTES, out);
                T::get(out)
            }
            Slot::Missing => panic!("record {i} is in a cold chunk not attached"),
        }
    }

    pub fn iter(&self) -> Iter<'_, T> {
        self.range(0..self.len)
    }

    /// The records at `range`, in order.
    pub fn range(&self, range: std::ops::Range<usize>) -> Iter<'_, T> {
        assert!(range.end <= self.len, "range {range:?} out of {}", self.len);
        Iter {
            history: self,
            next: range.start,
            end: range.end,
            buf: Vec::new(),
            buf_start: 0,
            buf_records: 0,
        }
    }

    /// The hot records (after the cold chunks), in order.
    pub fn hot_iter(&self) -> Iter<'_, T> {
        self.range(self.cold_len()..self.len)
    }

    pub fn push(&mut self, value: T) {
        if self.len & MASK == 0 {
            let capacity = if self.slots.is_empty() { 0 } else { CHUNK };
            self.slots
                .push(Slot::Hot(Arc::new(Chunk(Vec::with_capacity(capacity)))));
        }
        match self.slots.last_mut() {
            Some(Slot::Hot(c)) => Arc::make_mut(c).0.push(value),
            _ => unreachable!("the last chunk is hot"),
        }
        self.len += 1;
    }

    /// Overwrites hot record `i` (tests make damaged states with it).
    #[cfg(test)]
    pub fn set(&mut self, i: usize, value: T) {
        match &mut self.slots[i >> SHIFT] {
            Slot::Hot(c) => Arc::make_mut(c).0[i & MASK] = value,
            _ => panic!("record {i} is cold"),
        }
    }

    /// Removes the newest record, which must be hot.
    pub fn pop(&mut self) -> Option<T> {
        let Some(Slot::Hot(last)) = self.slots.last_mut() else {
            return None;
        };
        let value = Arc::make_mut(last).0.pop()?;
        if last.0.is_empty() {
            self.slots.pop();
        }
        self.len -= 1;
        Some(value)
    }

    /// The encoding of full chunk `k` (hot or cold).
    pub fn chunk_bytes(&self, k: usize, out: &mut Vec<u8>) {
        assert!(k < self.len >> SHIFT, "chunk {k} is not full");
        for i in k << SHIFT..(k + 1) << SHIFT {
            self.get(i).put(out);
        }
    }

    /// Turns full chunk `k` (the first hot one, or a missing one) cold with `bytes`, which must
    /// be the chunk's encoding.
    pub fn make_cold(&mut self, k: usize, bytes: Arc<dyn ColdBytes>) -> Result<(), String> {
        if bytes.byte_len() != CHUNK * T::BYTES {
            return Err(format!(
                "chunk {k} has {} bytes, not {}",
                bytes.byte_len(),
                CHUNK * T::BYTES
            ));
        }
        match self.slots.get(k) {
            Some(Slot::Missing) => {}
            Some(Slot::Hot(c)) if k == self.cold && c.0.len() == CHUNK => {
                debug_assert!(
                    {
                        let mut own = Vec::with_capacity(CHUNK * T::BYTES);
                        c.0.iter().for_each(|r| r.put(&mut own));
                        let mut theirs = vec![0; own.len()];
                        bytes.read(0, &mut theirs);
                        own == theirs
                    },
                    "chunk {k} made cold with bytes that are not its records"
                );
                self.cold += 1
            }
            Some(Slot::Cold(_)) => return Ok(()),
            _ => return Err(format!("chunk {k} cannot go cold")),
        }
        self.slots[k] = Slot::Cold(bytes);
        Ok(())
    }

    /// Missing chunks (cold in the snapshot this was decoded from, not attached yet).
    pub fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.cold).filter(|&k| matches!(self.slots[k], Slot::Missing))
    }

    /// A column of `cold` missing chunks followed by `hot`, as a snapshot is decoded.
    pub fn from_parts(cold: usize, hot: Vec<T>) -> History<T> {
        let mut h = History {
            slots: vec![Slot::Missing; cold],
            len: cold << SHIFT,
            cold,
        };
        for value in hot {
            h.push(value);
        }
        h
    }

    /// Bytes held on the heap: the hot records and the chunk table.
    pub fn heap_bytes(&self) -> u64 {
        let hot = (self.len - self.cold_len()) * std::mem::size_of::<T>();
        (hot + self.slots.capacity() * std::mem::size_of::<Slot<T>>()) as u64
    }
}

/// Formats like a list of the records (the state hash formats the records).
impl<T: Record + Clone + fmt::Debug> fmt::Debug for History<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Equal when the records are (cold or hot alike).
impl<T: Record + Clone + PartialEq> PartialEq for History<T> {
    fn eq(&self, other: &History<T>) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Record + Clone + Eq> Eq for History<T> {}

impl<T: Record + Clone> From<Vec<T>> for History<T> {
    fn from(v: Vec<T>) -> History<T> {
        History::from_parts(0, v)
    }
}

/// Little-endian readers for [`Record::get`].
pub(crate) struct Le<'a>(pub &'a [u8]);

impl Le<'_> {
    pub fn u8(&mut self) -> u8 {
        let v = self.0[0];
        self.0 = &self.0[1..];
        v
    }
    pub fn u16(&mut self) -> u16 {
        let (a, rest) = self.0.split_at(2);
        self.0 = rest;
        u16::from_le_bytes(a.try_into().expect("2 bytes"))
    }
    pub fn u32(&mut self) -> u32 {
        let (a, rest) = self.0.split_at(4);
        self.0 = rest;
        u32::from_le_bytes(a.try_into().expect("4 bytes"))
    }
    pub fn u64(&mut self) -> u64 {
        let (a, rest) = self.0.split_at(8);
        self.0 = rest;
        u64::from_le_bytes(a.try_into().expect("8 bytes"))
    }
    pub fn i64(&mut self) -> i64 {
        self.u64() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct R(u64, u8);

    impl Record for R {
        const BYTES: usize = 9;
        fn put(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_le_bytes());
            out.push(self.1);
        }
        fn get(b: &[u8]) -> R {
            let mut le = Le(b);
            R(le.u64(), le.u8())
        }
    }

    fn r(i: usize) -> R {
        R(i as u64 * 7, i as u8)
    }

    /// Cold bytes that count their reads.
    struct Counted(Vec<u8>, std::sync::atomic::AtomicUsize);

    impl ColdBytes for Counted {
        fn byte_len(&self) -> usize {
            self.0.len()
        }
        fn read(&self, at: usize, out: &mut [u8]) {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.read(at, out);
        }
    }

    #[test]
    fn scans_read_cold_chunks_a_block_at_a_time() {
        // Proves: iterating over cold and hot chunks, from any start to any end (across chunk
        // and block edges), yields exactly the records, and a scan of a cold chunk reads it in
        // blocks, not a record at a time.
        let mut h: History<R> = (0..2 * CHUNK + 5).map(r).collect::<Vec<_>>().into();
        let mut bytes = Vec::new();
        h.chunk_bytes(0, &mut bytes);
        let cold = Arc::new(Counted(bytes, Default::default()));
        h.make_cold(0, cold.clone()).unwrap();
        // (A debug build's make_cold reads the bytes once to compare them.)
        cold.1.store(0, std::sync::atomic::Ordering::Relaxed);
        assert!(h.iter().eq((0..2 * CHUNK + 5).map(r)));
        let reads = cold.1.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(reads, CHUNK.div_ceil(READ_RECORDS), "one read per block");
        let edges = [
            0,
            1,
            READ_RECORDS - 1,
            READ_RECORDS + 1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 3,
        ];
        for &start in &edges {
            for &end in edges.iter().chain(&[2 * CHUNK + 5]) {
                if start <= end {
                    assert!(
                        h.range(start..end).eq((start..end).map(r)),
                        "{start}..{end}"
                    );
                    assert_eq!(
                        h.range(start..end).size_hint(),
                        (end - start, Some(end - start))
                    );
                }
            }
        }
        assert!(h.hot_iter().eq((CHUNK..2 * CHUNK + 5).map(r)));
    }

    #[test]
    fn cold_chunks_read_back_as_the_hot_ones_did() {
        // Proves: a full chunk made cold from its own encoding reads back record for record;
        // only the first full hot chunk may go cold, never the partial last one; a frozen clone
        // keeps its hot chunk while the live side goes cold; a snapshot-shaped column with
        // missing chunks lists them and reads after they are attached; bytes of the wrong
        // length are refused.
        let mut h: History<R> = (0..2 * CHUNK + 5).map(r).collect::<Vec<_>>().into();
        assert_eq!(h.full_hot(), 0..2);
        let frozen = h.clone();
        let mut bytes = Vec::new();
        h.chunk_bytes(1, &mut bytes);
        assert!(
            h.make_cold(1, Arc::new(bytes.clone())).is_err(),
            "not first"
        );
        bytes.clear();
        h.chunk_bytes(0, &mut bytes);
        assert!(h.make_cold(0, Arc::new(vec![0u8; 3])).is_err(), "length");
        h.make_cold(0, Arc::new(bytes)).unwrap();
        assert_eq!(h.cold_chunks(), 1);
        assert_eq!(h.full_hot(), 1..2);
        assert!(h.iter().eq((0..2 * CHUNK + 5).map(r)));
        assert_eq!(h, frozen);
        assert_eq!(h.pop(), Some(r(2 * CHUNK + 4)));
        let mut bytes = Vec::new();
        h.chunk_bytes(2 - 1, &mut bytes);
        assert!(h.make_cold(2, Arc::new(bytes.clone())).is_err(), "partial");

        let mut d: History<R> = History::from_parts(2, vec![r(2 * CHUNK), r(2 * CHUNK + 1)]);
        assert_eq!(d.missing().collect::<Vec<_>>(), vec![0, 1]);
        for k in 0..2 {
            let mut bytes = Vec::new();
            frozen.chunk_bytes(k, &mut bytes);
            d.make_cold(k, Arc::new(bytes)).unwrap();
        }
        assert_eq!(d.missing().count(), 0);
        assert!(d.iter().eq((0..2 * CHUNK + 2).map(r)));
        d.push(r(9));
        assert_eq!(d.get(d.len() - 1), r(9));
        assert_eq!(d.hot_iter().count(), 3);
    }
}

/// The history columns whose full chunks go to files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    Settlements,
    Details,
    Entries,
    Transfers,
    Contributions,
}

impl Column {
    pub const ALL: [Column; 5] = [
        Column::Settlements,
        Column::Details,
        Column::Entries,
        Column::Transfers,
        Column::Contributions,
    ];

    /// The column's name in history file names.
    pub fn name(self) -> &'static str {
        match self {
            Column::Settlements => "settlements",
            Column::Details => "details",
            Column::Entries => "entries",
            Column::Transfers => "transfers",
            Column::Contributions => "contributions",
        }
    }

    pub fn from_name(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Bytes of one cold chunk of this column.
    pub fn chunk_bytes(self) -> usize {
        use super::{Contribution, Detail, Entry, Settlement, Transfer};
        CHUNK
            * match self {
                Column::Settlements => Settlement::BYTES,
                Column::Details => Detail::BYTES,
                Column::Entries => Entry::BYTES,
                Column::Transfers => Transfer::BYTES,
                Column::Contributions => Contribution::BYTES,
            }
    }
}

/// Dispatches `$body` with `$h` bound to the column's [`History`] in `$state`.
macro_rules! with_column {
    ($state:expr, $col:expr, |$h:ident| $body:expr) => {
        match $col {
            Column::Settlements => {
                let $h = &$state.setls;
                $body
            }
            Column::Details => {
                let $h = &$state.details;
                $body
            }
            Column::Entries => {
                let $h = &$state.entries;
                $body
            }
            Column::Transfers => {
                let $h = &$state.transfers;
                $body
            }
            Column::Contributions => {
                let $h = &$state.contributions;
                $body
            }
        }
    };
    (mut $state:expr, $col:expr, |$h:ident| $body:expr) => {
        match $col {
            Column::Settlements => {
                let $h = &mut $state.setls;
                $body
            }
            Column::Details => {
                let $h = &mut $state.details;
                $body
            }
            Column::Entries => {
                let $h = &mut $state.entries;
                $body
            }
            Column::Transfers => {
                let $h = &mut $state.transfers;
                $body
            }
            Column::Contributions => {
                let $h = &mut $state.contributions;
                $body
            }
        }
    };
}

impl super::State {
    /// Chunks that are cold in the snapshot this state was decoded from and not attached yet:
    /// [`super::State::make_cold`] each with its history file's bytes before the state is used.
    pub fn cold_missing(&self) -> Vec<(Column, usize)> {
        Column::ALL
            .into_iter()
            .flat_map(|c| {
                with_column!(self, c, |h| h
                    .missing()
                    .map(move |k| (c, k))
                    .collect::<Vec<_>>())
            })
            .collect()
    }

    /// Cold chunks per column (a prefix of each column).
    pub fn cold_chunk_count(&self, column: Column) -> usize {
        with_column!(self, column, |h| h.cold_chunks())
    }

    /// Full hot chunks of `column` that are final: every chunk of a write-once column; of the
    /// transfers, those before the first transfer the expiry queue holds (the queue holds
    /// every pending transfer, in transfer order, so none before its first can change).
    fn final_hot(&self, column: Column) -> std::ops::Range<usize> {
        let full = with_column!(self, column, |h| h.full_hot());
        match column {
            Column::Transfers => {
                let open = self
                    .expiry_queue
                    .front()
                    .map_or(self.transfers.len(), |&(_, t)| t as usize);
                full.start..full.end.min(open >> super::chunked::SHIFT).max(full.start)
            }
            _ => full,
        }
    }

    /// Final full chunks still on the heap, in order per column: they may go cold once every
    /// op that wrote them is durable.
    pub fn cold_candidates(&self) -> Vec<(Column, usize)> {
        Column::ALL
            .into_iter()
            .flat_map(|c| self.final_hot(c).map(move |k| (c, k)))
            .collect()
    }

    /// Whether a final full chunk is still on the heap (cheap: for the writer after each
    /// sync).
    pub fn has_cold_candidates(&self) -> bool {
        Column::ALL
            .into_iter()
            .any(|c| !self.final_hot(c).is_empty())
    }

    /// A [`super::Frozen`] copy of the history columns alone (the rest empty, but for the
    /// expiry queue's first item, which bounds the final transfers): what the snapshot thread
    /// needs to write full chunks to files between snapshots. Its cost is a copy of five
    /// chunk tables.
    pub fn freeze_history(&self) -> super::Frozen {
        let mut s = super::State::new(self.params.clone());
        s.setls = self.setls.clone();
        s.details = self.details.clone();
        s.entries = self.entries.clone();
        s.transfers = self.transfers.clone();
        s.contributions = self.contributions.clone();
        s.expiry_queue.extend(self.expiry_queue.front().copied());
        super::Frozen(s, false)
    }

    /// The encoding of full chunk `k` of `column`: the bytes its history file holds.
    pub fn encode_chunk(&self, column: Column, k: usize, out: &mut Vec<u8>) {
        with_column!(self, column, |h| h.chunk_bytes(k, out))
    }

    /// Replaces full chunk `k` of `column` (the first hot one, or a missing one) by `bytes`,
    /// its encoding held outside the heap. The records read the same before and after.
    pub fn make_cold(
        &mut self,
        column: Column,
        k: usize,
        bytes: Arc<dyn ColdBytes>,
    ) -> Result<(), String> {
        let hot = k >= with_column!(self, column, |h| h.cold_chunks());
        if hot && !self.final_hot(column).contains(&k) {
            return Err(format!("{} chunk {k} is not final", column.name()));
        }
        with_column!(mut self, column, |h| h.make_cold(k, bytes))
    }
}

impl super::Frozen {
    /// [`super::State::cold_candidates`] of the frozen state.
    pub fn cold_candidates(&self) -> Vec<(Column, usize)> {
        self.0.cold_candidates()
    }

    /// [`super::State::encode_chunk`] of the frozen state.
    pub fn encode_chunk(&self, column: Column, k: usize, out: &mut Vec<u8>) {
        self.0.encode_chunk(column, k, out)
    }

    /// [`super::State::make_cold`] on the frozen state, so that its snapshot leaves the chunk
    /// out.
    pub fn make_cold(
        &mut self,
        column: Column,
        k: usize,
        bytes: Arc<dyn ColdBytes>,
    ) -> Result<(), String> {
        self.0.make_cold(column, k, bytes)
    }
}
