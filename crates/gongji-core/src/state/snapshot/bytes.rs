//! The byte-level reader and writer every section uses: little-endian values, counts checked
//! against the bytes left, fixed-size records.

use super::*;

/// A fixed-size little-endian value.
pub(super) trait Le: Copy {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    /// `b` is exactly `SIZE` bytes.
    fn get(b: &[u8]) -> Self;
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}

le!(u8, u16, u32, i32, u64, i64, u128);

impl Le for Fen {
    const SIZE: usize = 8;
    fn put(self, out: &mut Vec<u8>) {
        self.0.put(out);
    }
    fn get(b: &[u8]) -> Self {
        Fen(u64::get(b))
    }
}

/// Bytes buffered before a streaming encoder hands them to its sink.
pub(super) const SPILL_BYTES: usize = 1 << 20;

/// The snapshot encoder: appends to a buffer, and with a sink, hands the buffer over whenever
/// it reaches [`SPILL_BYTES`], so that a snapshot never needs its own size in memory.
pub(super) struct Enc<'a> {
    pub(super) buf: &'a mut Vec<u8>,
    sink: Option<&'a mut Sink<'a>>,
    /// Bytes handed to the sink, less those in `buf` before this encoder began.
    handed: i64,
}

/// Where a streaming encoder hands its pieces.
pub(super) type Sink<'a> = dyn FnMut(&[u8]) + 'a;

impl<'a> Enc<'a> {
    /// An encoder appending to `buf`.
    pub(super) fn new(buf: &'a mut Vec<u8>) -> Enc<'a> {
        let handed = -(buf.len() as i64);
        Enc {
            buf,
            sink: None,
            handed,
        }
    }

    /// An encoder handing its bytes to `sink`, buffered in `buf` (empty).
    pub(super) fn streaming(buf: &'a mut Vec<u8>, sink: &'a mut Sink<'a>) -> Enc<'a> {
        debug_assert!(buf.is_empty());
        Enc {
            buf,
            sink: Some(sink),
            handed: 0,
        }
    }
}

impl Enc<'_> {
    /// Whether it hands its bytes to a sink.
    pub(super) fn streams(&self) -> bool {
        self.sink.is_some()
    }

    /// Bytes encoded so far.
    pub(super) fn position(&self) -> u64 {
        (self.handed + self.buf.len() as i64) as u64
    }

    /// Hands what is buffered to the sink, if there is one and enough is buffered. Every
    /// writing method calls it first, so buffers stay near [`SPILL_BYTES`].
    #[inline]
    pub(super) fn spill(&mut self) {
        if self.buf.len() >= SPILL_BYTES {
            if let Some(sink) = self.sink.as_mut() {
                sink(self.buf);
                self.handed += self.buf.len() as i64;
                self.buf.clear();
            }
        }
    }
    /// Hands the rest to the sink (with one).
    pub(super) fn finish(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            if !self.buf.is_empty() {
                sink(self.buf);
                self.handed += self.buf.len() as i64;
                self.buf.clear();
            }
        }
    }
    /// Bytes as they are.
    pub(super) fn raw(&mut self, b: &[u8]) {
        self.spill();
        self.buf.extend_from_slice(b);
    }
    pub(super) fn put<T: Le>(&mut self, v: T) {
        self.spill();
        v.put(self.buf);
    }
    pub(super) fn bool(&mut self, v: bool) {
        self.spill();
        self.buf.push(u8::from(v));
    }
    /// A history column's length and how many of its chunks are cold (not in the snapshot:
    /// in history files); its hot records follow.
    pub(super) fn history<T: crate::state::history::Record + Clone>(
        &mut self,
        h: &crate::state::History<T>,
    ) {
        self.count(h.len());
        self.put(h.cold_chunks() as u32);
    }
    pub(super) fn count(&mut self, n: usize) {
        self.put(n as u64);
    }
    pub(super) fn col<'a, T: Le + 'a>(&mut self, v: impl IntoIterator<Item = &'a T>) {
        let v = v.into_iter();
        if self.sink.is_none() {
            self.buf.reserve(v.size_hint().0 * T::SIZE);
        }
        for &x in v {
            self.spill();
            x.put(self.buf);
        }
    }
    pub(super) fn str8(&mut self, s: &str) {
        self.spill();
        self.buf
            .push(u8::try_from(s.len()).expect("string of at most 255 bytes"));
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub(super) fn str16(&mut self, s: &str) {
        self.spill();
        self.put(u16::try_from(s.len()).expect("string of at most 65535 bytes"));
        self.buf.extend_from_slice(s.as_bytes());
    }
}

pub(super) struct Dec<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Dec<'a> {
    pub(super) fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(super) fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if self.left() < n {
            return fail(self.pos, "truncated");
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }
    pub(super) fn get<T: Le>(&mut self) -> Res<T> {
        Ok(T::get(self.take(T::SIZE)?))
    }
    pub(super) fn bool(&mut self) -> Res<bool> {
        let at = self.pos;
        match self.get::<u8>()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => fail(at, "bool"),
        }
    }
    pub(super) fn tag<T: Copy>(&mut self, table: &[T], what: &'static str) -> Res<T> {
        let at = self.pos;
        let v = self.get::<u8>()?;
        table
            .get(usize::from(v))
            .copied()
            .map_or_else(|| fail(at, what), Ok)
    }
    /// A count of items of at least `min_bytes` each, checked against the bytes left so that
    /// no hostile count makes us allocate.
    pub(super) fn count(&mut self, min_bytes: usize, what: &'static str) -> Res<usize> {
        let at = self.pos;
        let n = self.get::<u64>()?;
        match usize::try_from(n) {
            Ok(n) if n < u32::MAX as usize && n <= self.left() / min_bytes.max(1) => Ok(n),
            _ => fail(at, what),
        }
    }
    /// A history column's length and cold chunks (see [`Enc::history`]): the number of cold
    /// chunks and of hot records, which must be at least `min_bytes` each in the bytes left.
    pub(super) fn history(&mut self, min_bytes: usize, what: &'static str) -> Res<(usize, usize)> {
        let at = self.pos;
        let n = self.get::<u64>()?;
        let cold = self.get::<u32>()? as u64;
        let cold_len = cold << crate::state::chunked::SHIFT;
        match n.checked_sub(cold_len) {
            Some(hot)
                if n < u64::from(u32::MAX) && hot <= (self.left() / min_bytes.max(1)) as u64 =>
            {
                Ok((cold as usize, hot as usize))
            }
            _ => fail(at, what),
        }
    }
    pub(super) fn col<T: Le>(&mut self, n: usize) -> Res<Vec<T>> {
        let at = self.pos;
        let len = n
            .checked_mul(T::SIZE)
            .map_or_else(|| fail(at, "column too long"), Ok)?;
        let bytes = self.take(len)?;
        Ok(bytes.chunks_exact(T::SIZE).map(T::get).collect())
    }
    /// `n` records of `size` bytes each; `f` gets the record index and a reader.
    pub(super) fn records<T>(
        &mut self,
        n: usize,
        size: usize,
        mut f: impl FnMut(usize, &mut Rec<'a>) -> Result<T, &'static str>,
    ) -> Res<Vec<T>> {
        let start = self.pos;
        let len = n
            .checked_mul(size)
            .map_or_else(|| fail(start, "section too long"), Ok)?;
        let bytes = self.take(len)?;
        let mut out = Vec::with_capacity(n);
        for (i, chunk) in bytes.chunks_exact(size).enumerate() {
            let mut r = Rec {
                b: chunk,
                p: 0,
                last: 0,
            };
            match f(i, &mut r) {
                Ok(v) => out.push(v),
                Err(what) => return fail(start + i * size + r.last, what),
            }
            debug_assert_eq!(r.p, size, "record layout");
        }
        Ok(out)
    }
    pub(super) fn str8(&mut self) -> Res<&'a str> {
        let n = usize::from(self.get::<u8>()?);
        self.utf8(n)
    }
    pub(super) fn str16(&mut self) -> Res<&'a str> {
        let n = usize::from(self.get::<u16>()?);
        self.utf8(n)
    }
    pub(super) fn utf8(&mut self, n: usize) -> Res<&'a str> {
        let at = self.pos;
        std::str::from_utf8(self.take(n)?).map_or_else(|_| fail(at, "utf-8"), Ok)
    }
    pub(super) fn arr<const N: usize>(&mut self) -> Res<ArrayString<N>> {
        let at = self.pos;
        ArrayString::from(self.str8()?).map_or_else(|_| fail(at, "string too long"), Ok)
    }
    pub(super) fn fen(&mut self) -> Res<Fen> {
        self.get()
    }
}

/// A reader over one fixed-size record. Reads cannot fail: the record has its full size.
pub(super) struct Rec<'a> {
    pub(super) b: &'a [u8],
    pub(super) p: usize,
    /// Start of the latest field read (for error offsets).
    pub(super) last: usize,
}

impl Rec<'_> {
    pub(super) fn get<T: Le>(&mut self) -> T {
        self.last = self.p;
        let v = T::get(&self.b[self.p..self.p + T::SIZE]);
        self.p += T::SIZE;
        v
    }
    pub(super) fn bool(&mut self) -> Result<bool, &'static str> {
        match self.get::<u8>() {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("bool"),
        }
    }
    pub(super) fn tag<T: Copy>(
        &mut self,
        table: &[T],
        what: &'static str,
    ) -> Result<T, &'static str> {
        let v = self.get::<u8>();
        table.get(usize::from(v)).copied().ok_or(what)
    }
    /// An index that must be below `len`.
    pub(super) fn index(&mut self, len: usize, what: &'static str) -> Result<u32, &'static str> {
        let v = self.get::<u32>();
        if (v as usize) < len {
            Ok(v)
        } else {
            Err(what)
        }
    }
}
