//! History files: the cold chunks of the history columns (settlements, their giver details,
//! ledger entries, closed wallet transfers, contributions), one file per 64 K records, in
//! `history/` beside the journal.
//!
//! `{column}-{chunk:08}.bin`: a 24-byte header (magic `GJHIST02`, chunk number u32, body
//! length u32, CRC32C of the block table u32, zero u32), the block table (a CRC32C of each
//! 64 KiB block of the body), then the body: the records in the core's fixed-size encoding
//! (`gongji_core::Column::chunk_bytes`). Files of the first format (`GJHIST01`: one CRC32C of
//! the whole body in the header, no table) are still read, and checked whole when attached. The snapshot thread writes a file from a
//! frozen state (to a temporary name, fsynced, renamed, directory fsynced) before the snapshot
//! that leaves the chunk out, and between snapshots when a chunk fills; the writer then swaps
//! its heap chunk for the file. The writer runs ahead of the sync, so a file may hold records
//! of ops not yet durable: a snapshot refers to it only once its own ops are durable, and after
//! a crash the chunk is written again from the replayed ops (a new file renamed over the old;
//! no file is changed in place). Records are read with `pread` (through the page cache, which
//! the kernel may drop and fill again): not mapped, so a read costs a system call but the
//! process's resident memory does not grow with the history it has read.
//!
//! The files are derived data: the journal holds every op (old segments are archived, renamed
//! `archived-journal-…`, rather than removed while history is kept in files), so a missing or
//! damaged file is rebuilt by restoring them and replaying the journal from op 1
//! (`recover.rs`). A start checks each file's header, length and block table (a few hundred
//! bytes), not its body, so that its time does not grow with history; a block's checksum is
//! checked the first time a read touches it. A damaged block found then is never served: the
//! file is renamed `*.damaged`, the read fails, and the next start rebuilds the file. A
//! read-only open (`gongji verify`, `report`, the projector) checks every block when it
//! attaches.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gongji_core::{ColdBytes, Column, State};
use gongji_journal::private::create_private_dir;

const MAGIC: [u8; 8] = *b"GJHIST02";
/// The first format: one checksum of the whole body in the header.
const MAGIC_V1: [u8; 8] = *b"GJHIST01";
const HEADER: usize = 24;
/// Body bytes per checksum.
const BLOCK: usize = 1 << 16;

/// The directory of history files.
#[derive(Clone, Debug)]
pub struct HistoryDir {
    dir: PathBuf,
    /// Check every block when a file is attached (read-only opens), rather than when first read.
    eager: bool,
}

/// An open history file whose header, length and block table were checked.
struct ColdFile {
    file: File,
    path: PathBuf,
    len: usize,
    /// Where the body starts.
    body_at: u64,
    /// Each block's checksum, and whether it was checked (empty for a first-format file,
    /// checked whole when it was attached).
    blocks: Box<[u32]>,
    checked: Box<[AtomicBool]>,
}

impl ColdFile {
    /// Checks body block `b` against the table: reads it once.
    fn check_block(&self, b: usize) -> Result<(), String> {
        let start = b * BLOCK;
        let mut buf = vec![0u8; BLOCK.min(self.len - start)];
        self.file
            .read_exact_at(&mut buf, self.body_at + start as u64)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        if crc32c::crc32c(&buf) != self.blocks[b] {
            return Err(format!(
                "{}: checksum mismatch in block {b}",
                self.path.display()
            ));
        }
        self.checked[b].store(true, Ordering::Release);
        Ok(())
    }

    fn check_all(&self) -> Result<(), String> {
        (0..self.blocks.len()).try_for_each(|b| self.check_block(b))
    }
}

impl ColdBytes for ColdFile {
    fn byte_len(&self) -> usize {
        self.len
    }

    fn read(&self, at: usize, out: &mut [u8]) {
        if !self.blocks.is_empty() && !out.is_empty() {
            for b in at / BLOCK..=(at + out.len() - 1) / BLOCK {
                if self.checked[b].load(Ordering::Acquire) {
                    continue;
                }
                if let Err(e) = self.check_block(b) {
                    // Never served: set aside so that the next start rebuilds it from the
                    // journal, and fail this read (as a failed disk read does).
                    let aside = self.path.with_extension("damaged");
                    let renamed = std::fs::rename(&self.path, &aside);
                    tracing::error!(error = %e, renamed = renamed.is_ok(), "a history file is damaged; the next start rebuilds it from the journal");
                    panic!("{e}");
                }
            }
        }
        if let Err(e) = self.file.read_exact_at(out, self.body_at + at as u64) {
            // Checked when attached: a failure now is the disk failing under the engine.
            panic!("reading {} at {at}: {e}", self.path.display());
        }
    }
}

/// Cold chunks made: the writer swaps them into the live state.
pub(crate) type Made = Vec<(Column, usize, Arc<dyn ColdBytes>)>;

/// What the snapshot thread hands the writer, to swap into the state between batches: the
/// same records, now read from files.
pub(crate) enum Swap {
    /// History chunks written to files.
    Chunks(Made),
    /// The msgid section of the snapshot just written, read from its file.
    Msgids(gongji_core::MsgidSection),
}

impl HistoryDir {
    /// Creates (or opens) `dir`, private to the service's user, and removes the temporary
    /// files of writes a crash cut short (they were never renamed into place, so nothing
    /// refers to them).
    pub fn create(dir: impl Into<PathBuf>) -> std::io::Result<HistoryDir> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(HistoryDir { dir, eager: false })
    }

    /// Opens `dir` read-only (it may not exist: then nothing is cold); every block of a file is
    /// checked when it is attached.
    pub fn read_only(dir: impl Into<PathBuf>) -> HistoryDir {
        HistoryDir {
            dir: dir.into(),
            eager: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, column: Column, k: usize) -> PathBuf {
        self.dir.join(format!("{}-{k:08}.bin", column.name()))
    }

    /// Writes chunk `k` of `column` durably, replacing any file of that name; returns the
    /// block table.
    pub fn write(&self, column: Column, k: usize, body: &[u8]) -> std::io::Result<Box<[u32]>> {
        let path = self.file(column, k);
        let blocks: Box<[u32]> = body.chunks(BLOCK).map(crc32c::crc32c).collect();
        let table: Vec<u8> = blocks.iter().flat_map(|c| c.to_le_bytes()).collect();
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&(k as u32).to_le_bytes());
        header.extend_from_slice(&(body.len() as u32).to_le_bytes());
        header.extend_from_slice(&crc32c::crc32c(&table).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        crate::write_private_file(&path, &[&header, &table, body])?;
        File::open(&self.dir)?.sync_all()?;
        Ok(blocks)
    }

    /// [`HistoryDir::write`], then opens the file without reading it back (its bytes are
    /// `body`, and the checksum in its header was computed from them).
    fn write_and_open(
        &self,
        column: Column,
        k: usize,
        body: &[u8],
    ) -> Result<Arc<dyn ColdBytes>, String> {
        let path = self.file(column, k);
        let fail = |e: std::io::Error| format!("writing {}: {e}", path.display());
        let blocks = self.write(column, k, body).map_err(fail)?;
        let file = File::open(&path).map_err(fail)?;
        Ok(Arc::new(ColdFile {
            file,
            path,
            len: body.len(),
            body_at: (HEADER + 4 * blocks.len()) as u64,
            checked: blocks.iter().map(|_| AtomicBool::new(true)).collect(),
            blocks,
        }))
    }

    /// Opens chunk `k` of `column` and checks its header, length and block table (and, when
    /// eager, every block; a first-format file is always checked whole).
    pub fn load(&self, column: Column, k: usize) -> Result<Arc<dyn ColdBytes>, String> {
        let path = self.file(column, k);
        let bad = |what: &str| format!("{}: {what}", path.display());
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        let file = File::open(&path).map_err(io)?;
        let mut header = [0u8; HEADER];
        file.read_exact_at(&mut header, 0)
            .map_err(|_| bad("not a history file of this column's chunk size"))?;
        let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        let len = column.chunk_bytes();
        let n_blocks = len.div_ceil(BLOCK);
        let (body_at, v1) = match header[..8].try_into().expect("8 bytes") {
            MAGIC => (HEADER + 4 * n_blocks, false),
            MAGIC_V1 => (HEADER, true),
            _ => return Err(bad("not a history file")),
        };
        if file.metadata().map_err(io)?.len() != (body_at + len) as u64 {
            return Err(bad("not a history file of this column's chunk size"));
        }
        if word(8) as usize != k || word(12) as usize != len {
            return Err(bad("header names another chunk"));
        }
        if v1 {
            let mut crc = 0u32;
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < len {
                let n = buf.len().min(len - at);
                file.read_exact_at(&mut buf[..n], (HEADER + at) as u64)
                    .map_err(io)?;
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                at += n;
            }
            if crc != word(16) {
                return Err(bad("checksum mismatch"));
            }
            let (blocks, checked) = (Box::default(), Box::default());
            return Ok(Arc::new(ColdFile {
                file,
                path,
                len,
                body_at: HEADER as u64,
                blocks,
                checked,
            }));
        }
        let mut table = vec![0u8; 4 * n_blocks];
        file.read_exact_at(&mut table, HEADER as u64).map_err(io)?;
        if crc32c::crc32c(&table) != word(16) {
            return Err(bad("checksum mismatch in the block table"));
        }
        let blocks: Box<[u32]> = table
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let cold = ColdFile {
            file,
            path,
            len,
            body_at: body_at as u64,
            checked: blocks.iter().map(|_| AtomicBool::new(false)).collect(),
            blocks,
        };
        if self.eager {
            cold.check_all()?;
        }
        Ok(Arc::new(cold))
    }

    /// Writes every full hot chunk of `state` to files and makes it cold there; returns the
    /// chunks made cold (for a live state to do the same). Every op in them must be durable.
    pub(crate) fn spill(&self, state: &mut SpillTarget<'_>) -> Result<Made, String> {
        let mut made = Vec::new();
        let mut body = Vec::new();
        for (column, k) in state.candidates() {
            body.clear();
            state.encode(column, k, &mut body);
            // Written afresh even when an earlier run left a file of this name (a snapshot that
            // did not complete, or a damaged file being rebuilt): the bytes in memory are the
            // truth, and comparing would read the whole file.
            let bytes = self.write_and_open(column, k, &body)?;
            state.make_cold(column, k, bytes.clone())?;
            made.push((column, k, bytes));
        }
        Ok(made)
    }

    /// Attaches every chunk `state` expects cold (after a snapshot is decoded).
    pub fn attach(&self, state: &mut State) -> Result<usize, String> {
        let missing = state.cold_missing();
        for &(column, k) in &missing {
            let bytes = self.load(column, k)?;
            state.make_cold(column, k, bytes)?;
        }
        Ok(missing.len())
    }
}

/// A live or frozen state whose full chunks go to files.
pub(crate) enum SpillTarget<'a> {
    Live(&'a mut State),
    Frozen(&'a mut gongji_core::Frozen),
}

impl SpillTarget<'_> {
    fn candidates(&self) -> Vec<(Column, usize)> {
        match self {
            SpillTarget::Live(s) => s.cold_candidates(),
            SpillTarget::Frozen(f) => f.cold_candidates(),
        }
    }

    fn encode(&self, column: Column, k: usize, out: &mut Vec<u8>) {
        match self {
            SpillTarget::Live(s) => s.encode_chunk(column, k, out),
            SpillTarget::Frozen(f) => f.encode_chunk(column, k, out),
        }
    }

    fn make_cold(
        &mut self,
        column: Column,
        k: usize,
        bytes: Arc<dyn ColdBytes>,
    ) -> Result<(), String> {
        match self {
            SpillTarget::Live(s) => s.make_cold(column, k, bytes),
            SpillTarget::Frozen(f) => f.make_cold(column, k, bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(column: Column) -> Vec<u8> {
        (0..column.chunk_bytes())
            .map(|i| (i * 7 % 251) as u8)
            .collect()
    }

    fn read_all(cold: &dyn ColdBytes) -> Vec<u8> {
        let mut out = vec![0u8; cold.byte_len()];
        cold.read(0, &mut out);
        out
    }

    #[test]
    fn blocks_are_checked_when_first_read_and_damage_is_never_served() {
        // Proves: a file reads back what was written, by a lazy and by an eager open; a flipped
        // byte is refused by an eager open (naming its block) and, after a lazy open, by the
        // first read that touches its block, which sets the file aside; a read of other blocks
        // is served; a damaged block table is refused at once.
        let tmp = tempfile::tempdir().unwrap();
        let dir = HistoryDir::create(tmp.path().join("h")).unwrap();
        let column = Column::Details;
        let body = body(column);
        dir.write(column, 3, &body).unwrap();
        assert_eq!(read_all(&*dir.load(column, 3).unwrap()), body);
        let eager = HistoryDir::read_only(dir.path());
        assert_eq!(read_all(&*eager.load(column, 3).unwrap()), body);

        let path = dir.file(column, 3);
        let mut bytes = std::fs::read(&path).unwrap();
        let table = 4 * body.len().div_ceil(BLOCK);
        let at = HEADER + table + 2 * BLOCK + 5;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let e = eager.load(column, 3).err().unwrap();
        assert!(e.ends_with("checksum mismatch in block 2"), "{e}");
        let lazy = dir.load(column, 3).unwrap();
        let mut head = vec![0u8; BLOCK];
        lazy.read(0, &mut head);
        assert_eq!(head, body[..BLOCK]);
        let mut out = [0u8; 8];
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lazy.read(2 * BLOCK + 1, &mut out)
        }));
        assert!(read.is_err(), "a damaged block was served");
        assert!(!path.exists() && path.with_extension("damaged").exists());

        dir.write(column, 3, &body).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 1] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = dir.load(column, 3).err().unwrap();
        assert!(e.ends_with("checksum mismatch in the block table"), "{e}");
    }

    #[test]
    fn first_format_files_are_read_and_checked_whole() {
        // Proves: a file of the first format (one checksum in the header, no table) is read,
        // and a flipped byte in it is refused when it is attached, even by a lazy open.
        let tmp = tempfile::tempdir().unwrap();
        let dir = HistoryDir::create(tmp.path().join("h")).unwrap();
        let column = Column::Entries;
        let mut body = body(column);
        let write_v1 = |body: &[u8], crc: u32| {
            let mut bytes = MAGIC_V1.to_vec();
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(body);
            std::fs::write(dir.file(column, 1), bytes).unwrap();
        };
        write_v1(&body, crc32c::crc32c(&body));
        assert_eq!(read_all(&*dir.load(column, 1).unwrap()), body);
        let crc = crc32c::crc32c(&body);
        body[77] ^= 1;
        write_v1(&body, crc);
        let e = dir.load(column, 1).err().unwrap();
        assert!(e.ends_with("checksum mismatch"), "{e}");
    }
}
