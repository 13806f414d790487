//! Snapshot files: `snapshot-{op:020}.snap`, a checksummed header plus an opaque body,
//! written via a `.tmp` file, fsync, atomic rename and directory fsync.

use std::fmt;

use crate::format::{HeaderDefect, SnapshotHeader, SNAPSHOT_HEADER_BYTES};
use crate::scan::Anchor;
use crate::storage::{FileBytes, Storage, StorageError};

const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";

/// Why a snapshot file was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotDefect {
    Header(HeaderDefect),
    NameMismatch {
        name_op: u64,
        header_op: u64,
    },
    LengthMismatch {
        file_len_bytes: u64,
        expected_bytes: u64,
    },
    BodyHash,
}

impl fmt::Display for SnapshotDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(d) => write!(f, "snapshot header: {d}"),
            Self::NameMismatch { name_op, header_op } => {
                write!(f, "file name says op {name_op}, header says {header_op}")
            }
            Self::LengthMismatch {
                file_len_bytes,
                expected_bytes,
            } => {
                write!(
                    f,
                    "file is {file_len_bytes} bytes, header implies {expected_bytes}"
                )
            }
            Self::BodyHash => write!(f, "body blake3 mismatch"),
        }
    }
}

/// A snapshot file that failed verification, for the caller to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedSnapshot {
    pub file: String,
    pub defect: SnapshotDefect,
}

/// The newest snapshot that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedSnapshot {
    /// Op and chain hash the snapshot reflects: pass to `Journal::open` as `start`.
    pub anchor: Anchor,
    pub body: Vec<u8>,
    pub file: String,
    /// Newer snapshots that failed verification, newest first.
    pub skipped: Vec<SkippedSnapshot>,
}

#[derive(Debug)]
pub enum SnapshotError {
    Storage(StorageError),
    /// Snapshot files exist but none verifies.
    NoValidSnapshot {
        skipped: Vec<SkippedSnapshot>,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage(e) => write!(f, "snapshot storage: {e}"),
            Self::NoValidSnapshot { skipped } => {
                write!(f, "no snapshot verifies:")?;
                for s in skipped {
                    write!(f, " {}: {};", s.file, s.defect)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<StorageError> for SnapshotError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

pub fn snapshot_file_name(op: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{op:020}{SNAPSHOT_SUFFIX}")
}

/// Inverse of [`snapshot_file_name`]; `None` for any other file (including `.tmp`).
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SNAPSHOT_PREFIX)?
        .strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_snapshot_tmp(name: &str) -> bool {
    name.strip_suffix(TMP_SUFFIX)
        .and_then(parse_snapshot_name)
        .is_some()
}

/// Snapshot files, newest first.
fn list_snapshots(storage: &impl Storage) -> Result<Vec<(u64, String)>, StorageError> {
    let mut snapshots: Vec<(u64, String)> = storage
        .list()?
        .into_iter()
        .filter_map(|name| parse_snapshot_name(&name).map(|op| (op, name)))
        .collect();
    snapshots.sort_by(|a, b| b.cmp(a));
    Ok(snapshots)
}

/// Writes a snapshot durably and returns its file name. Only after `Ok` may journal segments
/// it covers be removed.
pub fn write_snapshot<S: Storage>(
    storage: &mut S,
    anchor: Anchor,
    body: &[u8],
) -> Result<String, SnapshotError> {
    write_snapshot_streaming(storage, anchor, &mut |sink| sink(body))
}

/// Makes a snapshot body, handing it in pieces to the sink it is given.
pub type Encode<'a> = dyn FnMut(&mut dyn FnMut(&[u8])) + 'a;

/// [`write_snapshot`] for a body that `encode` hands to its sink in pieces, as they are
/// made: the body is hashed and written piece by piece, then the header (which holds the
/// body's length and hash) goes in front, so no buffer of the whole body is needed.
pub fn write_snapshot_streaming<S: Storage>(
    storage: &mut S,
    anchor: Anchor,
    encode: &mut Encode<'_>,
) -> Result<String, SnapshotError> {
    let file = snapshot_file_name(anchor.op);
    let tmp = format!("{file}{TMP_SUFFIX}");
    match storage.remove(&tmp) {
        Ok(()) | Err(StorageError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    storage.create(&tmp)?;
    let mut offset = SNAPSHOT_HEADER_BYTES as u64;
    let mut hasher = blake3::Hasher::new();
    let mut failed = None;
    encode(&mut |piece: &[u8]| {
        if failed.is_some() {
            return;
        }
        hasher.update(piece);
        match storage.write_at(&tmp, offset, piece) {
            Ok(()) => offset += piece.len() as u64,
            Err(e) => failed = Some(e),
        }
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    let header = SnapshotHeader {
        op: anchor.op,
        chain_hash: anchor.chain_hash,
        body_len: offset - SNAPSHOT_HEADER_BYTES as u64,
        body_hash: *hasher.finalize().as_bytes(),
    };
    storage.write_at(&tmp, 0, &header.encode())?;
    storage.sync(&tmp)?;
    storage.rename(&tmp, &file)?;
    storage.sync_dir()?;
    Ok(file)
}

/// Full verification of one snapshot file's bytes.
fn check_snapshot(name_op: u64, data: &[u8]) -> Result<SnapshotHeader, SnapshotDefect> {
    let header = check_frame(name_op, data)?;
    if *blake3::hash(&data[SNAPSHOT_HEADER_BYTES..]).as_bytes() != header.body_hash {
        return Err(SnapshotDefect::BodyHash);
    }
    Ok(header)
}

/// The header and length of one snapshot file's bytes, not the body's hash.
fn check_frame(name_op: u64, data: &[u8]) -> Result<SnapshotHeader, SnapshotDefect> {
    check_header(name_op, data, data.len() as u64)
}

/// The header (`head`: the file's first bytes) against the file's name and length.
fn check_header(
    name_op: u64,
    head: &[u8],
    file_len_bytes: u64,
) -> Result<SnapshotHeader, SnapshotDefect> {
    let header = SnapshotHeader::decode(head).map_err(SnapshotDefect::Header)?;
    if header.op != name_op {
        return Err(SnapshotDefect::NameMismatch {
            name_op,
            header_op: header.op,
        });
    }
    let expected_bytes = (SNAPSHOT_HEADER_BYTES as u64).saturating_add(header.body_len);
    if file_len_bytes != expected_bytes {
        return Err(SnapshotDefect::LengthMismatch {
            file_len_bytes,
            expected_bytes,
        });
    }
    Ok(header)
}

/// [`check_snapshot`] reading the file a mebibyte at a time into one buffer: verifying a
/// snapshot of gigabytes neither copies it into fresh memory (the kernel zeroing every page
/// first) nor maps it (its pages counted as the process's own until unmapped).
fn check_snapshot_file<S: Storage>(
    storage: &S,
    name: &str,
    name_op: u64,
) -> Result<Result<SnapshotHeader, SnapshotDefect>, StorageError> {
    let len = storage.len(name)?;
    let mut buf = vec![0u8; (SNAPSHOT_HEADER_BYTES as u64).min(len) as usize];
    storage.read_at(name, 0, &mut buf)?;
    let header = match check_header(name_op, &buf, len) {
        Ok(header) => header,
        Err(defect) => return Ok(Err(defect)),
    };
    let mut hasher = blake3::Hasher::new();
    buf.resize(1 << 20, 0);
    let mut at = SNAPSHOT_HEADER_BYTES as u64;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        storage.read_at(name, at, &mut buf[..n])?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    if *hasher.finalize().as_bytes() != header.body_hash {
        return Ok(Err(SnapshotDefect::BodyHash));
    }
    Ok(Ok(header))
}

/// [`load_latest_snapshot`] that hands the newest candidate's body to `decode` while the
/// body's blake3 is computed on another thread (on a body of gigabytes each takes seconds, so
/// a start waits for the longer of the two instead of their sum). The decoded value is kept
/// only if the hash verifies; a candidate that does not is skipped, as there. The returned
/// [`LoadedSnapshot`]'s `body` is empty: the body went to `decode` and is not kept.
///
/// `decode` gets the whole file (mapped, where the storage maps) and where the body starts
/// in it, so that what it decodes may go on reading the file's bytes where they lie.
pub fn load_latest_snapshot_with<S: Storage, T>(
    storage: &S,
    decode: &mut dyn FnMut(&std::sync::Arc<FileBytes>, usize) -> T,
) -> Result<Option<(LoadedSnapshot, T)>, SnapshotError> {
    let mut skipped = Vec::new();
    for (op, file) in list_snapshots(storage)? {
        let data = std::sync::Arc::new(storage.read_mapped(&file)?);
        let header = match check_frame(op, &data) {
            Ok(header) => header,
            Err(defect) => {
                skipped.push(SkippedSnapshot { file, defect });
                continue;
            }
        };
        let body = &data[SNAPSHOT_HEADER_BYTES..];
        let (hash, decoded) = std::thread::scope(|s| {
            let hash = s.spawn(|| *blake3::hash(body).as_bytes());
            let decoded = decode(&data, SNAPSHOT_HEADER_BYTES);
            (hash.join().expect("the snapshot hash thread"), decoded)
        });
        // Every page was read (the hash) and decoded; what the state goes on reading of the
        // file (its msgid window) is mapped again as it is touched.
        data.release(0..data.len());
        if hash != header.body_hash {
            skipped.push(SkippedSnapshot {
                file,
                defect: SnapshotDefect::BodyHash,
            });
            continue;
        }
        let anchor = Anchor {
            op,
            chain_hash: header.chain_hash,
        };
        let loaded = LoadedSnapshot {
            anchor,
            body: Vec::new(),
            file,
            skipped,
        };
        return Ok(Some((loaded, decoded)));
    }
    if skipped.is_empty() {
        return Ok(None);
    }
    Err(SnapshotError::NoValidSnapshot { skipped })
}

/// The newest snapshot that verifies; `Ok(None)` when there are no snapshot files at all.
/// Leftover `.tmp` files are ignored.
pub fn load_latest_snapshot<S: Storage>(
    storage: &S,
) -> Result<Option<LoadedSnapshot>, SnapshotError> {
    let mut skipped = Vec::new();
    for (op, file) in list_snapshots(storage)? {
        let mut data = storage.read_all(&file)?;
        match check_snapshot(op, &data) {
            Ok(header) => {
                data.drain(..SNAPSHOT_HEADER_BYTES);
                let anchor = Anchor {
                    op,
                    chain_hash: header.chain_hash,
                };
                return Ok(Some(LoadedSnapshot {
                    anchor,
                    body: data,
                    file,
                    skipped,
                }));
            }
            Err(defect) => skipped.push(SkippedSnapshot { file, defect }),
        }
    }
    if skipped.is_empty() {
        return Ok(None);
    }
    Err(SnapshotError::NoValidSnapshot { skipped })
}

/// Keeps the newest `keep` snapshots that verify and removes every snapshot older than the
/// oldest of them, plus leftover `.tmp` files. Damaged snapshots newer than that are kept as
/// evidence. Returns the removed file names.
pub fn prune_snapshots<S: Storage>(
    storage: &mut S,
    keep: usize,
) -> Result<Vec<String>, SnapshotError> {
    assert!(keep >= 1, "prune_snapshots must keep at least one snapshot");
    let mut removed: Vec<String> = storage
        .list()?
        .into_iter()
        .filter(|n| is_snapshot_tmp(n))
        .collect();
    let mut valid = 0;
    for (op, file) in list_snapshots(storage)? {
        if valid >= keep {
            removed.push(file);
        } else if check_snapshot_file(storage, &file, op)?.is_ok() {
            valid += 1;
        }
    }
    for file in &removed {
        storage.remove(file)?;
    }
    if !removed.is_empty() {
        storage.sync_dir()?;
    }
    Ok(removed)
}
