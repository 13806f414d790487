//! On-disk encodings: segment header, record header, snapshot header, and the hash chain.
//!
//! Everything is little-endian and hand-encoded so the byte layout is pinned by tests rather
//! than by a serialization library's version. Each header ends with a CRC32C over the bytes
//! before it, so a torn or flipped header is detected before any field is trusted.

use std::fmt;

/// 32-byte BLAKE3 chain hash.
pub type ChainHash = [u8; 32];

/// Chain hash "before op 1".
pub const GENESIS_CHAIN_HASH: ChainHash = [0; 32];

/// Version written into every header; readers reject any other value.
pub const FORMAT_VERSION: u16 = 1;

/// `b"GJSG"` read as little-endian u32.
pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"GJSG");
/// `b"GJRC"` read as little-endian u32.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"GJRC");
/// `b"GJSN"` read as little-endian u32.
pub const SNAPSHOT_MAGIC: u32 = u32::from_le_bytes(*b"GJSN");

/// magic u32 | version u16 | reserved u16 | first_op u64 | prev_chain_hash [32] | crc u32
pub const SEGMENT_HEADER_BYTES: usize = 52;
/// magic u32 | op u64 | time i64 | body_len u32 | body_crc u32 | chain_hash [32] | crc u32
pub const RECORD_HEADER_BYTES: usize = 64;
/// magic u32 | version u16 | reserved u16 | op u64 | chain_hash [32] | body_len u64 |
/// body_blake3 [32] | crc u32
pub const SNAPSHOT_HEADER_BYTES: usize = 92;

/// Why a fixed-size header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderDefect {
    TooShort { len_bytes: usize },
    BadMagic { found: u32 },
    BadCrc { stored: u32, computed: u32 },
    BadVersion { found: u16 },
    NonZeroReserved { found: u16 },
}

impl fmt::Display for HeaderDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len_bytes } => write!(f, "header truncated ({len_bytes} bytes)"),
            Self::BadMagic { found } => write!(f, "bad magic {found:#010x}"),
            Self::BadCrc { stored, computed } => {
                write!(
                    f,
                    "header crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            Self::BadVersion { found } => write!(f, "unsupported format version {found}"),
            Self::NonZeroReserved { found } => write!(f, "reserved field is {found:#06x}"),
        }
    }
}

/// Chain step: `blake3(prev || op LE || time LE || body)`.
pub fn chain_next(prev: &ChainHash, op: u64, time: i64, body: &[u8]) -> ChainHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev);
    hasher.update(&op.to_le_bytes());
    hasher.update(&time.to_le_bytes());
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

/// Little-endian writer into a fixed array; panics on overrun because layouts are constants.
struct Writer<const N: usize> {
    buf: [u8; N],
    pos: usize,
}

impl<const N: usize> Writer<N> {
    fn new() -> Self {
        Self {
            buf: [0; N],
            pos: 0,
        }
    }
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
    /// Appends CRC32C of everything written so far; must land exactly at the end.
    fn finish_with_crc(mut self) -> [u8; N] {
        let crc = crc32c::crc32c(&self.buf[..self.pos]);
        self.put(&crc.to_le_bytes());
        assert_eq!(self.pos, N, "header layout size mismatch");
        self.buf
    }
}

/// Little-endian reader over a slice already checked to be long enough.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take<const K: usize>(&mut self) -> [u8; K] {
        let out: [u8; K] = self.bytes[self.pos..self.pos + K]
            .try_into()
            .expect("length checked");
        self.pos += K;
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }
}

/// Checks length, magic and trailing CRC of a header of `size` bytes; returns a reader
/// positioned after the magic.
fn open_header(bytes: &[u8], size: usize, magic: u32) -> Result<Reader<'_>, HeaderDefect> {
    if bytes.len() < size {
        return Err(HeaderDefect::TooShort {
            len_bytes: bytes.len(),
        });
    }
    let mut reader = Reader {
        bytes: &bytes[..size],
        pos: 0,
    };
    let found = reader.u32();
    if found != magic {
        return Err(HeaderDefect::BadMagic { found });
    }
    let stored = u32::from_le_bytes(bytes[size - 4..size].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&bytes[..size - 4]);
    if stored != computed {
        return Err(HeaderDefect::BadCrc { stored, computed });
    }
    Ok(reader)
}

fn check_version(reader: &mut Reader<'_>) -> Result<(), HeaderDefect> {
    let version = reader.u16();
    if version != FORMAT_VERSION {
        return Err(HeaderDefect::BadVersion { found: version });
    }
    let reserved = reader.u16();
    if reserved != 0 {
        return Err(HeaderDefect::NonZeroReserved { found: reserved });
    }
    Ok(())
}

/// Header at offset 0 of every segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Op of the first record in the segment (also encoded in the file name).
    pub first_op: u64,
    /// Chain hash after op `first_op - 1`.
    pub prev_chain_hash: ChainHash,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut w = Writer::new();
        w.put(&SEGMENT_MAGIC.to_le_bytes());
        w.put(&FORMAT_VERSION.to_le_bytes());
        w.put(&0u16.to_le_bytes());
        w.put(&self.first_op.to_le_bytes());
        w.put(&self.prev_chain_hash);
        w.finish_with_crc()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderDefect> {
        let mut r = open_header(bytes, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC)?;
        check_version(&mut r)?;
        Ok(Self {
            first_op: r.u64(),
            prev_chain_hash: r.take(),
        })
    }
}

/// Fixed header in front of every record body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub op: u64,
    /// Engine time in unix seconds; opaque to the journal.
    pub time: i64,
    pub body_len: u32,
    pub body_crc: u32,
    /// Chain hash after this record.
    pub chain_hash: ChainHash,
}

impl RecordHeader {
    /// Header for `body` following chain hash `prev`.
    pub fn for_body(prev: &ChainHash, op: u64, time: i64, body: &[u8]) -> Self {
        let body_len = u32::try_from(body.len()).expect("body length checked by caller");
        Self {
            op,
            time,
            body_len,
            body_crc: crc32c::crc32c(body),
            chain_hash: chain_next(prev, op, time, body),
        }
    }

    pub fn encode(&self) -> [u8; RECORD_HEADER_BYTES] {
        let mut w = Writer::new();
        w.put(&RECORD_MAGIC.to_le_bytes());
        w.put(&self.op.to_le_bytes());
        w.put(&self.time.to_le_bytes());
        w.put(&self.body_len.to_le_bytes());
        w.put(&self.body_crc.to_le_bytes());
        w.put(&self.chain_hash);
        w.finish_with_crc()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderDefect> {
        let mut r = open_header(bytes, RECORD_HEADER_BYTES, RECORD_MAGIC)?;
        Ok(Self {
            op: r.u64(),
            time: r.i64(),
            body_len: r.u32(),
            body_crc: r.u32(),
            chain_hash: r.take(),
        })
    }
}

/// Header at offset 0 of a snapshot file; the body follows immediately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Last op reflected in the snapshot body.
    pub op: u64,
    /// Chain hash after `op`.
    pub chain_hash: ChainHash,
    pub body_len: u64,
    /// BLAKE3 of the body.
    pub body_hash: [u8; 32],
}

impl SnapshotHeader {
    pub fn for_body(op: u64, chain_hash: ChainHash, body: &[u8]) -> Self {
        Self {
            op,
            chain_hash,
            body_len: body.len() as u64,
            body_hash: *blake3::hash(body).as_bytes(),
        }
    }

    pub fn encode(&self) -> [u8; SNAPSHOT_HEADER_BYTES] {
        let mut w = Writer::new();
        w.put(&SNAPSHOT_MAGIC.to_le_bytes());
        w.put(&FORMAT_VERSION.to_le_bytes());
        w.put(&0u16.to_le_bytes());
        w.put(&self.op.to_le_bytes());
        w.put(&self.chain_hash);
        w.put(&self.body_len.to_le_bytes());
        w.put(&self.body_hash);
        w.finish_with_crc()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderDefect> {
        let mut r = open_header(bytes, SNAPSHOT_HEADER_BYTES, SNAPSHOT_MAGIC)?;
        check_version(&mut r)?;
        Ok(Self {
            op: r.u64(),
            chain_hash: r.take(),
            body_len: r.u64(),
            body_hash: r.take(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn counting_hash(start: u8) -> ChainHash {
        std::array::from_fn(|i| start.wrapping_add(i as u8))
    }

    #[test]
    fn segment_header_bytes_are_pinned() {
        // Proves the segment header layout (field order, widths, endianness, CRC) is stable.
        let header = SegmentHeader {
            first_op: 0x0102,
            prev_chain_hash: counting_hash(0x10),
        };
        let bytes = header.encode();
        let crc = crc32c::crc32c(&bytes[..48]);
        let expected = format!(
            "474a5347{}{}{}{}{}",
            "0100",
            "0000",
            "0201000000000000",
            "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f",
            hex(&crc.to_le_bytes())
        );
        assert_eq!(hex(&bytes), expected);
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
    }

    #[test]
    fn record_header_bytes_are_pinned() {
        // Proves the record header layout and the chain/CRC definitions on a known record.
        let header = RecordHeader::for_body(&GENESIS_CHAIN_HASH, 1, -2, b"abc");
        let bytes = header.encode();
        assert_eq!(
            header.body_crc, 0x364b_3fb7,
            "crc32c(\"abc\") reference value"
        );
        let mut pre = Vec::new();
        pre.extend_from_slice(&[0; 32]);
        pre.extend_from_slice(&1u64.to_le_bytes());
        pre.extend_from_slice(&(-2i64).to_le_bytes());
        pre.extend_from_slice(b"abc");
        let chain = *blake3::hash(&pre).as_bytes();
        assert_eq!(header.chain_hash, chain);
        let expected_prefix = concat!(
            "474a5243",
            "0100000000000000",
            "feffffffffffffff",
            "03000000",
            "b73f4b36",
        );
        assert_eq!(hex(&bytes[..28]), expected_prefix);
        assert_eq!(&bytes[28..60], &chain);
        assert_eq!(
            hex(&bytes[60..]),
            hex(&crc32c::crc32c(&bytes[..60]).to_le_bytes())
        );
        assert_eq!(RecordHeader::decode(&bytes), Ok(header));
    }

    #[test]
    fn snapshot_header_bytes_are_pinned() {
        // Proves the snapshot header layout (op, chain, length, body hash, CRC) is stable.
        let header = SnapshotHeader::for_body(7, counting_hash(0), b"state");
        let bytes = header.encode();
        let expected = format!(
            "474a534e{}{}{}{}{}{}{}",
            "0100",
            "0000",
            "0700000000000000",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "0500000000000000",
            hex(blake3::hash(b"state").as_bytes()),
            hex(&crc32c::crc32c(&bytes[..88]).to_le_bytes())
        );
        assert_eq!(hex(&bytes), expected);
        assert_eq!(SnapshotHeader::decode(&bytes), Ok(header));
    }

    #[test]
    fn header_defects_are_named() {
        // Proves truncation, magic, CRC and version defects are told apart.
        let good = SegmentHeader {
            first_op: 1,
            prev_chain_hash: GENESIS_CHAIN_HASH,
        }
        .encode();
        assert_eq!(
            SegmentHeader::decode(&good[..10]),
            Err(HeaderDefect::TooShort { len_bytes: 10 })
        );
        let mut bad = good;
        bad[0] ^= 1;
        assert!(matches!(
            SegmentHeader::decode(&bad),
            Err(HeaderDefect::BadMagic { .. })
        ));
        let mut bad = good;
        bad[20] ^= 1;
        assert!(matches!(
            SegmentHeader::decode(&bad),
            Err(HeaderDefect::BadCrc { .. })
        ));
        let mut bad = good;
        bad[4] = 9;
        let crc = crc32c::crc32c(&bad[..48]);
        bad[48..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(HeaderDefect::BadVersion { found: 9 })
        );
    }
}
