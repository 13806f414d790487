//! Typed errors of the journal: storage failures, configuration, and damage found on disk.

use std::fmt;

use crate::format::HeaderDefect;
use crate::storage::StorageError;

/// Why bytes at a record position do not form a valid record (a framing failure: the record
/// was never completely written, or was damaged afterwards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordDefect {
    /// Non-zero bytes where a record magic was expected.
    BadMagic,
    /// Fewer bytes left in the file than the header or body needs.
    Truncated,
    Header(HeaderDefect),
    BodyTooLarge {
        body_len: u32,
    },
    BodyCrc {
        stored: u32,
        computed: u32,
    },
}

impl fmt::Display for RecordDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(f, "no record magic and not zero padding"),
            Self::Truncated => write!(f, "record truncated by end of file"),
            Self::Header(defect) => write!(f, "record header: {defect}"),
            Self::BodyTooLarge { body_len } => write!(f, "body_len {body_len} exceeds maximum"),
            Self::BodyCrc { stored, computed } => {
                write!(
                    f,
                    "body crc32c mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
        }
    }
}

/// What is wrong at a damaged position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DamageKind {
    SegmentHeader(HeaderDefect),
    SegmentNameMismatch {
        name_op: u64,
        header_op: u64,
    },
    /// An invalid record with a valid record after it in the same segment.
    RecordMidFile {
        defect: RecordDefect,
        valid_record_at: u64,
    },
    /// An invalid record in a segment that is not the last one.
    RecordInSealedSegment {
        defect: RecordDefect,
    },
    /// A well-formed record with the wrong op number (gap or repeat).
    OpMismatch {
        expected: u64,
        found: u64,
    },
    /// A well-formed record whose stored chain hash is not the computed one.
    ChainMismatch {
        op: u64,
    },
    /// A segment starting at the wrong op: a missing segment (gap) or an overlap.
    SegmentOpMismatch {
        expected_first_op: u64,
        found_first_op: u64,
    },
    /// A segment header's previous-chain hash does not match the chain so far.
    SegmentChainMismatch {
        first_op: u64,
    },
    /// No anchor given, but the journal does not start at op 1 from the genesis hash.
    NotFromGenesis {
        first_op: u64,
    },
    /// The journal starts after `anchor_op + 1`: records between snapshot and journal are lost.
    AnchorGap {
        anchor_op: u64,
        first_op: u64,
    },
    /// The chain at the anchor op differs from the anchor's chain hash.
    AnchorChainMismatch {
        anchor_op: u64,
    },
    /// The journal ends before the anchor op.
    EndsBeforeAnchor {
        anchor_op: u64,
        last_op: u64,
    },
    /// Records changed on storage between `open` and `replay`.
    ChangedSinceOpen {
        expected_op: u64,
    },
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SegmentHeader(d) => write!(f, "segment header: {d}"),
            Self::SegmentNameMismatch { name_op, header_op } => {
                write!(
                    f,
                    "file name says first op {name_op}, header says {header_op}"
                )
            }
            Self::RecordMidFile {
                defect,
                valid_record_at,
            } => {
                write!(
                    f,
                    "{defect}, but a valid record follows at offset {valid_record_at}"
                )
            }
            Self::RecordInSealedSegment { defect } => write!(f, "{defect} in a non-last segment"),
            Self::OpMismatch { expected, found } => {
                write!(f, "op {found} where op {expected} was expected")
            }
            Self::ChainMismatch { op } => write!(f, "hash chain broken at op {op}"),
            Self::SegmentOpMismatch {
                expected_first_op,
                found_first_op,
            } => write!(
                f,
                "segment starts at op {found_first_op}, expected {expected_first_op} \
                 (missing or overlapping segment)"
            ),
            Self::SegmentChainMismatch { first_op } => {
                write!(
                    f,
                    "segment header chain hash before op {first_op} does not match"
                )
            }
            Self::NotFromGenesis { first_op } => {
                write!(
                    f,
                    "journal starts at op {first_op} but no snapshot anchor was given"
                )
            }
            Self::AnchorGap {
                anchor_op,
                first_op,
            } => {
                write!(
                    f,
                    "journal starts at op {first_op}, after snapshot op {anchor_op} + 1"
                )
            }
            Self::AnchorChainMismatch { anchor_op } => {
                write!(
                    f,
                    "chain hash at snapshot op {anchor_op} does not match the snapshot"
                )
            }
            Self::EndsBeforeAnchor { anchor_op, last_op } => {
                write!(
                    f,
                    "journal ends at op {last_op}, before snapshot op {anchor_op}"
                )
            }
            Self::ChangedSinceOpen { expected_op } => {
                write!(f, "record for op {expected_op} changed since open")
            }
        }
    }
}

/// Damage found on disk: which file, which byte offset, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub file: String,
    pub offset: u64,
    pub kind: DamageKind,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal damaged: {} at offset {}: {}",
            self.file, self.offset, self.kind
        )
    }
}

/// Error from a journal operation.
#[derive(Debug)]
pub enum JournalError {
    Storage(StorageError),
    Damage(Damage),
    /// An earlier write or sync failed; the process must stop and recover.
    Poisoned,
    /// The journal was opened read-only.
    ReadOnly,
    InvalidConfig {
        reason: &'static str,
    },
    BodyTooLarge {
        body_len: usize,
        body_bytes_max: u32,
    },
    /// The record does not fit in the current batch; call `sync` and append again.
    BatchFull {
        batch_bytes: u64,
        record_bytes: u64,
        batch_bytes_max: u64,
    },
    /// `replay` needs every appended record synced first.
    UnsyncedAppends,
    /// `replay` asked for records the journal no longer (or never) held.
    ReplayRange {
        after_op: u64,
        first_op: u64,
        head_op: u64,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage(e) => write!(f, "journal storage: {e}"),
            Self::Damage(d) => d.fmt(f),
            Self::Poisoned => write!(f, "journal poisoned by an earlier write or sync failure"),
            Self::ReadOnly => write!(f, "journal opened read-only"),
            Self::InvalidConfig { reason } => write!(f, "invalid journal config: {reason}"),
            Self::BodyTooLarge {
                body_len,
                body_bytes_max,
            } => {
                write!(
                    f,
                    "record body of {body_len} bytes exceeds {body_bytes_max}"
                )
            }
            Self::BatchFull {
                batch_bytes,
                record_bytes,
                batch_bytes_max,
            } => write!(
                f,
                "batch of {batch_bytes} bytes cannot take a {record_bytes}-byte record \
                 (max {batch_bytes_max})"
            ),
            Self::UnsyncedAppends => write!(f, "replay with unsynced appends"),
            Self::ReplayRange {
                after_op,
                first_op,
                head_op,
            } => write!(
                f,
                "cannot replay after op {after_op}: journal holds ops {first_op}..={head_op}"
            ),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StorageError> for JournalError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl From<Damage> for JournalError {
    fn from(d: Damage) -> Self {
        Self::Damage(d)
    }
}

/// Error from [`crate::Journal::replay`]: the journal's, or the visitor's own.
#[derive(Debug)]
pub enum ReplayError<E> {
    Journal(JournalError),
    Visitor(E),
}

impl<E: fmt::Display> fmt::Display for ReplayError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Journal(e) => e.fmt(f),
            Self::Visitor(e) => write!(f, "replay visitor: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for ReplayError<E> {}

impl<E> From<JournalError> for ReplayError<E> {
    fn from(e: JournalError) -> Self {
        Self::Journal(e)
    }
}
