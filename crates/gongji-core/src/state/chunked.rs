//! An append-only vector in fixed-size, shared chunks, for everything that grows with persons
//! or with history: growing never copies what is already stored (a `Vec` doubling would copy,
//! and fault in, the whole column again, with the writer paused meanwhile), and a clone is
//! cheap: it shares every chunk, and a chunk is copied only when one side next changes it
//! (copy-on-write through `Arc::make_mut`). That is how a snapshot is taken without a second
//! state and without stopping the writer for more than the clone of the chunk tables
//! ([`crate::State::freeze`]).

use std::fmt;
use std::ops::{Index, IndexMut};
use std::sync::Arc;

/// Elements per chunk (a power of two). The first chunk grows like a `Vec` up to this size,
/// so a small state stays small.
pub(crate) const SHIFT: u32 = 16;
pub(crate) const CHUNK: usize = 1 << SHIFT;
pub(crate) const MASK: usize = CHUNK - 1;

/// One chunk. Its clone keeps the capacity, so that the copy made by a write during a
/// snapshot does not reallocate when it is next pushed to.
#[derive(PartialEq, Eq)]
pub(crate) struct Chunk<T>(pub(crate) Vec<T>);

/// Iterates a [`Chunked`] in order.
pub(crate) type Iter<'a, T> = std::iter::FlatMap<
    std::slice::Iter<'a, Arc<Chunk<T>>>,
    std::slice::Iter<'a, T>,
    fn(&'a Arc<Chunk<T>>) -> std::slice::Iter<'a, T>,
>;

impl<T: Clone> Clone for Chunk<T> {
    fn clone(&self) -> Chunk<T> {
        let mut v = Vec::with_capacity(self.0.capacity());
        v.extend_from_slice(&self.0);
        Chunk(v)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Arc<Chunk<T>>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Chunked<T> {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter<'a>(&'a self) -> Iter<'a, T> {
        fn chunk_iter<T>(c: &Arc<Chunk<T>>) -> std::slice::Iter<'_, T> {
            c.0.iter()
        }
        self.chunks
            .iter()
            .flat_map(chunk_iter as fn(&'a Arc<Chunk<T>>) -> std::slice::Iter<'a, T>)
    }

    pub fn last(&self) -> Option<&T> {
        self.chunks.last().and_then(|c| c.0.last())
    }
}

impl<T: Clone> Chunked<T> {
    pub fn push(&mut self, value: T) {
        if self.len & MASK == 0 && self.len > 0 || self.chunks.is_empty() {
            let capacity = if self.chunks.is_empty() { 0 } else { CHUNK };
            self.chunks
                .push(Arc::new(Chunk(Vec::with_capacity(capacity))));
        }
        let last = self.chunks.last_mut().expect("a chunk");
        Arc::make_mut(last).0.push(value);
        self.len += 1;
    }

    #[cfg(test)]
    pub fn pop(&mut self) -> Option<T> {
        let last = Arc::make_mut(self.chunks.last_mut()?);
        let value = last.0.pop()?;
        if last.0.is_empty() {
            self.chunks.pop();
        }
        self.len -= 1;
        Some(value)
    }
}

impl<T: Clone> From<Vec<T>> for Chunked<T> {
    fn from(v: Vec<T>) -> Chunked<T> {
        v.into_iter().collect()
    }
}

impl<T: Clone> FromIterator<T> for Chunked<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Chunked<T> {
        let mut c = Chunked::default();
        for value in iter {
            c.push(value);
        }
        c
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        &self.chunks[i >> SHIFT].0[i & MASK]
    }
}

impl<T: Clone> IndexMut<usize> for Chunked<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        &mut Arc::make_mut(&mut self.chunks[i >> SHIFT]).0[i & MASK]
    }
}

impl<'a, T> IntoIterator for &'a Chunked<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Formats like a `Vec` (the state hash formats the records).
impl<T: fmt::Debug> fmt::Debug for Chunked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Bytes per block of an [`Arena`] (a power of two).
const BLOCK_SHIFT: u32 = 20;
const BLOCK: usize = 1 << BLOCK_SHIFT;

/// Short byte strings (psn_nos, names) appended one after another, in shared blocks like
/// [`Chunked`]'s chunks: a clone shares every block. A string never crosses a block; when it
/// does not fit, the rest of the block stays empty and the string starts the next one. Each
/// string costs its bytes and one `u32` end offset: string `i` ends at `ends[i]` and starts at
/// the previous end, or at the start of its block when it begins a block.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Arena {
    blocks: Vec<Arc<Chunk<u8>>>,
    ends: Chunked<u32>,
}

impl Arena {
    /// Strings stored.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Bytes stored (without the unused block ends).
    pub fn byte_len(&self) -> usize {
        self.blocks.iter().map(|b| b.0.len()).sum()
    }

    /// Appends a string of at most a block's length.
    pub fn push(&mut self, s: &[u8]) {
        assert!(s.len() <= BLOCK, "a string of {} bytes", s.len());
        let mut start = self.ends.last().map_or(0, |&e| e as usize);
        if self.blocks.is_empty() || start + s.len() > self.blocks.len() << BLOCK_SHIFT {
            start = self.blocks.len() << BLOCK_SHIFT;
            let capacity = if self.blocks.is_empty() { 0 } else { BLOCK };
            self.blocks
                .push(Arc::new(Chunk(Vec::with_capacity(capacity))));
        }
        let end = u32::try_from(start + s.len()).expect("string arena of at most 4 GiB");
        let block = Arc::make_mut(self.blocks.last_mut().expect("a block"));
        block.0.extend_from_slice(s);
        self.ends.push(end);
    }

    #[inline]
    pub fn get(&self, i: u32) -> &[u8] {
        let end = self.ends[i as usize] as usize;
        let previous = if i == 0 {
            0
        } else {
            self.ends[i as usize - 1] as usize
        };
        if end == previous {
            return &[];
        }
        let block = (end - 1) >> BLOCK_SHIFT;
        let block_start = block << BLOCK_SHIFT;
        let start = previous.max(block_start);
        &self.blocks[block].0[start - block_start..end - block_start]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len() as u32).map(|i| self.get(i))
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_vec() {
        // Proves: push, index, pop, iteration and Debug agree with a Vec across chunk ends.
        let mut c = Chunked::default();
        let mut v = Vec::new();
        for i in 0..(3 * CHUNK + 5) as u64 {
            c.push(i);
            v.push(i);
        }
        for _ in 0..(CHUNK + 7) {
            assert_eq!(c.pop(), v.pop());
        }
        assert_eq!(c.len(), v.len());
        assert!(c.iter().eq(v.iter()));
        assert_eq!(c[CHUNK], v[CHUNK]);
        c[CHUNK + 1] = 0;
        v[CHUNK + 1] = 0;
        assert_eq!(format!("{c:?}"), format!("{v:?}"));
        assert_eq!(c, Chunked::from(v.clone()));
        while c.pop().is_some() {}
        assert_eq!(c.len(), 0);
        c.push(1);
        assert_eq!(c[0], 1);
    }

    #[test]
    fn a_clone_is_a_copy_that_shares_until_written() {
        // Proves: writes to either side after a clone never show in the other, across chunks,
        // and a chunk neither side wrote is still the same memory (copy on write).
        let mut a: Chunked<u64> = (0..(2 * CHUNK + 3) as u64).collect();
        let frozen = a.clone();
        a[5] = 1_000_000;
        assert!(std::ptr::eq(&a[CHUNK + 1], &frozen[CHUNK + 1]));
        assert!(!std::ptr::eq(&a[6], &frozen[6]));
        a[CHUNK + 1] = 7;
        a.push(42);
        assert_eq!(frozen[5], 5);
        assert_eq!(frozen[CHUNK + 1], (CHUNK + 1) as u64);
        assert_eq!(frozen.len(), 2 * CHUNK + 3);
        assert_eq!(a.len(), 2 * CHUNK + 4);
        assert_eq!((a[5], a[CHUNK + 1], a[2 * CHUNK + 3]), (1_000_000, 7, 42));
        let mut b = frozen.clone();
        assert_eq!(b.pop(), Some((2 * CHUNK + 2) as u64));
        assert_eq!(frozen.len(), 2 * CHUNK + 3);
        assert!(frozen.iter().copied().eq(0..(2 * CHUNK + 3) as u64));
    }

    #[test]
    fn arena_strings_come_back_across_blocks() {
        // Proves: strings of every length, empty ones and block-filling ones among them, come
        // back exactly after crossing block ends, and a clone does not see later pushes.
        let mut arena = Arena::default();
        let mut strings: Vec<Vec<u8>> = Vec::new();
        let mut x = 1u64;
        let mut pushed = 0usize;
        while pushed < 3 * BLOCK + 17 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = match x >> 60 {
                0 => 0,
                1 => BLOCK - (pushed % BLOCK), // exactly fills the block
                _ => (x >> 32) as usize % 300,
            };
            let s: Vec<u8> = (0..len).map(|k| (k as u8) ^ (x as u8)).collect();
            arena.push(&s);
            pushed += len;
            strings.push(s);
        }
        let frozen = arena.clone();
        arena.push(b"later");
        for (i, s) in strings.iter().enumerate() {
            assert_eq!(arena.get(i as u32), s.as_slice(), "string {i}");
            assert_eq!(frozen.get(i as u32), s.as_slice(), "string {i} (clone)");
        }
        assert_eq!(frozen.len(), strings.len());
        assert_eq!(arena.get(strings.len() as u32), b"later");
        assert_eq!(
            frozen.byte_len(),
            strings.iter().map(Vec::len).sum::<usize>()
        );
    }
}
