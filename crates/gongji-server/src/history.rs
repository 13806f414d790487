//! History files: the cold chunks of the history columns (settlements, their giver details,
//! ledger entries), one file per 64 K records, in `history/` beside the journal.
//!
//! `{column}-{chunk:08}.bin`: a 24-byte header (magic `GJHIST01`, chunk number u32, body
//! length u32, CRC32C of the body u32, zero u32), then the records in the core's fixed-size
//! encoding (`gongji_core::Column::chunk_bytes`). The snapshot thread writes a file from a
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
//! (`recover.rs`). Every file's checksum is verified when it is attached.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gongji_core::{ColdBytes, Column, State};
use gongji_journal::private::create_private_dir;

const MAGIC: [u8; 8] = *b"GJHIST01";
const HEADER: usize = 24;

/// The directory of history files.
#[derive(Clone, Debug)]
pub struct HistoryDir {
    dir: PathBuf,
}

/// An open history file whose header, length and checksum were checked.
struct ColdFile {
    file: File,
    path: PathBuf,
    len: usize,
}

impl ColdBytes for ColdFile {
    fn byte_len(&self) -> usize {
        self.len
    }

    fn read(&self, at: usize, out: &mut [u8]) {
        use std::os::unix::fs::FileExt;
        if let Err(e) = self.file.read_exact_at(out, (HEADER + at) as u64) {
            // Checked when attached: a failure now is the disk failing under the engine.
            panic!("reading {} at {at}: {e}", self.path.display());
        }
    }
}

/// Cold chunks made: the writer swaps them into the live state.
pub(crate) type Made = Vec<(Column, usize, Arc<dyn ColdBytes>)>;

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
        Ok(HistoryDir { dir })
    }

    /// Opens `dir` read-only (it may not exist: then nothing is cold).
    pub fn read_only(dir: impl Into<PathBuf>) -> HistoryDir {
        HistoryDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, column: Column, k: usize) -> PathBuf {
        self.dir.join(format!("{}-{k:08}.bin", column.name()))
    }

    /// Writes chunk `k` of `column` durably, replacing any file of that name.
    pub fn write(&self, column: Column, k: usize, body: &[u8]) -> std::io::Result<()> {
        let path = self.file(column, k);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&(k as u32).to_le_bytes());
        header.extend_from_slice(&(body.len() as u32).to_le_bytes());
        header.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        crate::write_private_file(&path, &[&header, body])?;
        File::open(&self.dir)?.sync_all()
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
        self.write(column, k, body).map_err(fail)?;
        let file = File::open(&path).map_err(fail)?;
        Ok(Arc::new(ColdFile {
            file,
            path,
            len: body.len(),
        }))
    }

    /// Opens chunk `k` of `column` and checks its header, length and checksum (reading the
    /// file once, through the page cache).
    pub fn load(&self, column: Column, k: usize) -> Result<Arc<dyn ColdBytes>, String> {
        let path = self.file(column, k);
        let bad = |what: &str| format!("{}: {what}", path.display());
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut file = File::open(&path).map_err(io)?;
        let mut header = [0u8; HEADER];
        std::io::Read::read_exact(&mut file, &mut header)
            .map_err(|_| bad("not a history file of this column's chunk size"))?;
        let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        let len = column.chunk_bytes();
        if header[..8] != MAGIC || file.metadata().map_err(io)?.len() != (HEADER + len) as u64 {
            return Err(bad("not a history file of this column's chunk size"));
        }
        if word(8) as usize != k || word(12) as usize != len {
            return Err(bad("header names another chunk"));
        }
        let mut crc = 0u32;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut file, &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
        }
        if crc != word(16) {
            return Err(bad("checksum mismatch"));
        }
        Ok(Arc::new(ColdFile { file, path, len }))
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
