//! History files: the cold chunks of the history columns (settlements, their giver details,
//! ledger entries), one file per 64 K records, in `history/` beside the journal.
//!
//! `{column}-{chunk:08}.bin`: a 24-byte header (magic `GJHIST01`, chunk number u32, body
//! length u32, CRC32C of the body u32, zero u32), then the records in the core's fixed-size
//! encoding (`gongji_core::Column::chunk_bytes`). The snapshot thread writes a file from the
//! frozen state once every op in the chunk is durable (written to a temporary name, fsynced,
//! renamed, directory fsynced), before the snapshot that leaves the chunk out; the writer then
//! swaps its heap chunk for the file's mapped bytes. A file is never written again.
//!
//! The files are derived data: the journal holds every op (segments are no longer removed
//! while history is kept in files), so a missing or damaged file is rebuilt by replaying the
//! journal from op 1 (`recover.rs`). Every file's checksum is verified when it is mapped.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gongji_core::{ColdBytes, Column, State};
use gongji_journal::private::{create_private_dir, private_options, restrict};

const MAGIC: [u8; 8] = *b"GJHIST01";
const HEADER: usize = 24;

/// The directory of history files.
#[derive(Clone, Debug)]
pub struct HistoryDir {
    dir: PathBuf,
}

/// A mapped history file: its body, checked.
struct Mapped(memmap2::Mmap);

impl ColdBytes for Mapped {
    fn bytes(&self) -> &[u8] {
        &self.0[HEADER..]
    }
}

/// Cold chunks made: the writer swaps them into the live state.
pub(crate) type Made = Vec<(Column, usize, Arc<dyn ColdBytes>)>;

impl HistoryDir {
    /// Creates (or opens) `dir`, private to the service's user.
    pub fn create(dir: impl Into<PathBuf>) -> std::io::Result<HistoryDir> {
        let dir = dir.into();
        create_private_dir(&dir)?;
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
        let tmp = path.with_extension("tmp");
        let mut file = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        restrict(&file)?;
        file.write_all(&header)?;
        file.write_all(body)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }

    /// [`HistoryDir::write`], then maps the file without reading it back (its bytes are
    /// `body`, and the checksum in its header was computed from them).
    fn write_and_map(
        &self,
        column: Column,
        k: usize,
        body: &[u8],
    ) -> Result<Arc<dyn ColdBytes>, String> {
        let path = self.file(column, k);
        let fail = |e: std::io::Error| format!("writing {}: {e}", path.display());
        self.write(column, k, body).map_err(fail)?;
        let file = File::open(&path).map_err(fail)?;
        self.map(column, k, &file, None)
    }

    /// Maps chunk `k` of `column` and checks its header, length and checksum. The checksum is
    /// computed over bytes read with `read`, not through the mapping, so that checking does not
    /// make every page of the file resident in this process: pages are mapped in only when a
    /// record on them is read.
    pub fn load(&self, column: Column, k: usize) -> Result<Arc<dyn ColdBytes>, String> {
        let path = self.file(column, k);
        let mut file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut crc = 0u32;
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0usize;
        loop {
            let n = std::io::Read::read(&mut file, &mut buf)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            let body_from = HEADER.saturating_sub(at).min(n);
            crc = crc32c::crc32c_append(crc, &buf[body_from..n]);
            at += n;
        }
        self.map(column, k, &file, Some(crc))
    }

    /// Maps chunk `k` of `column` from `file` and checks its header and length, and its
    /// checksum against `crc` when one is given (a file just written from bytes in memory
    /// needs none).
    fn map(
        &self,
        column: Column,
        k: usize,
        file: &File,
        crc: Option<u32>,
    ) -> Result<Arc<dyn ColdBytes>, String> {
        let path = self.file(column, k);
        // SAFETY: history files are written once under a temporary name and renamed into
        // place, in a directory private to the service; nothing writes or truncates them
        // afterwards (a rebuild writes a new file and renames it over), so the mapped bytes
        // never change under the reader.
        #[allow(unsafe_code)]
        let map =
            unsafe { memmap2::Mmap::map(file) }.map_err(|e| format!("{}: {e}", path.display()))?;
        let bad = |what: &str| format!("{}: {what}", path.display());
        if map.len() != HEADER + column.chunk_bytes() || map[..8] != MAGIC {
            return Err(bad("not a history file of this column's chunk size"));
        }
        let word = |at: usize| u32::from_le_bytes(map[at..at + 4].try_into().expect("4 bytes"));
        if word(8) as usize != k || word(12) as usize != column.chunk_bytes() {
            return Err(bad("header names another chunk"));
        }
        if crc.is_some_and(|crc| crc != word(16)) {
            return Err(bad("checksum mismatch"));
        }
        Ok(Arc::new(Mapped(map)))
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
            let bytes = self.write_and_map(column, k, &body)?;
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
