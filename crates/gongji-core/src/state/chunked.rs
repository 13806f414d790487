//! An append-only vector in fixed-size chunks, for the history records (settlements, entries)
//! that grow to gigabytes: growing never copies what is already stored (a `Vec` doubling
//! would copy, and fault in, the whole history again, with the writer paused meanwhile).

use std::fmt;
use std::ops::{Index, IndexMut};

/// Elements per chunk (a power of two). The first chunk grows like a `Vec` up to this size,
/// so a small state stays small.
const SHIFT: u32 = 16;
const CHUNK: usize = 1 << SHIFT;
const MASK: usize = CHUNK - 1;

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
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

    pub fn push(&mut self, value: T) {
        if self.len & MASK == 0 && self.len > 0 || self.chunks.is_empty() {
            let capacity = if self.chunks.is_empty() { 0 } else { CHUNK };
            self.chunks.push(Vec::with_capacity(capacity));
        }
        self.chunks.last_mut().expect("a chunk").push(value);
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<T> {
        let last = self.chunks.last_mut()?;
        let value = last.pop()?;
        if last.is_empty() {
            self.chunks.pop();
        }
        self.len -= 1;
        Some(value)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }
}

impl<T> From<Vec<T>> for Chunked<T> {
    fn from(v: Vec<T>) -> Chunked<T> {
        let mut c = Chunked::default();
        for value in v {
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
        &self.chunks[i >> SHIFT][i & MASK]
    }
}

impl<T> IndexMut<usize> for Chunked<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        &mut self.chunks[i >> SHIFT][i & MASK]
    }
}

impl<'a, T> IntoIterator for &'a Chunked<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Flatten<std::slice::Iter<'a, Vec<T>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flatten()
    }
}

/// Formats like a `Vec` (the state hash formats the records).
impl<T: fmt::Debug> fmt::Debug for Chunked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
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
}
