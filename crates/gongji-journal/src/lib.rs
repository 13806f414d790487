//! gongji-journal: the append-only command journal and snapshot files. It knows only bytes and
//! never interprets record or snapshot bodies.
//!
//! Main types:
//! - [`Storage`], the seam to a flat directory of files, with [`FsStorage`] (a real directory)
//!   and [`FaultStorage`] (in memory, crash/torn-write/bit-flip injection for tests).
//! - [`Journal`]: `open` (verify + recover), `append` (buffer), `sync` (group commit: one
//!   write per segment touched, then fsync), `replay`, `remove_segments_before`.
//! - [`Recovery`] / [`verify`]: what a scan found, including a cut [`TornTail`].
//! - [`JournalError`] with [`Damage`] naming file, byte offset and [`DamageKind`].
//! - Snapshots: [`write_snapshot`] (or [`write_snapshot_streaming`]), [`load_latest_snapshot`], [`prune_snapshots`].
//!
//! Format (all little-endian, see [`format`]): segment files `journal-{first_op:020}.seg`,
//! preallocated to `segment_size_bytes`, start with a [`format::SegmentHeader`] carrying the
//! chain hash before their first op; records follow back to back, each a
//! [`format::RecordHeader`] and its body; zero bytes mark the end of data. The chain is
//! `blake3(prev || op || time || body)` from 32 zero bytes, so any edit, reorder, gap or
//! missing segment is detected, not only bit rot.

mod archive;
pub mod format;
pub mod private;

mod error;
mod fault;
mod journal;
mod scan;
mod snapshot;
mod storage;

pub use archive::{restore_archived_segments, WithArchive, ARCHIVED_PREFIX};
pub use error::{Damage, DamageKind, JournalError, RecordDefect, ReplayError};
pub use fault::{CrashMode, FaultStorage};
pub use format::{ChainHash, GENESIS_CHAIN_HASH};
pub use journal::{verify, Journal, JournalConfig, JournalStats, RecordRef, SyncStats};
pub use scan::{parse_segment_name, segment_file_name, Anchor, Recovery, TornTail};
pub use snapshot::{
    load_latest_snapshot, load_latest_snapshot_with, parse_snapshot_name, prune_snapshots,
    snapshot_file_name, write_snapshot, write_snapshot_streaming, Encode, LoadedSnapshot,
    SkippedSnapshot, SnapshotDefect, SnapshotError,
};
pub use storage::{FileBytes, FsStorage, Storage, StorageError};
