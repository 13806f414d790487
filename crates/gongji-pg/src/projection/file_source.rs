//! The file journal of a data directory as an [`OpSource`], read while a server may be
//! writing it: records are verified (framing, CRC32C, op sequence, hash chain) as they are
//! read, the reader keeps its place between calls, and a record still being written (torn,
//! or zero bytes) simply ends the read until the next call.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use gongji_journal::format::{
    chain_next, ChainHash, RecordHeader, SegmentHeader, SnapshotHeader, RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES, SNAPSHOT_HEADER_BYTES,
};
use gongji_journal::{parse_segment_name, parse_snapshot_name, segment_file_name, JournalConfig};

use super::source::{OpSource, SourceError, SourceSnapshot};

/// Bytes read at a time from a segment.
const READ_BLOCK_BYTES: usize = 256 * 1024;

/// The reader's place: the next record to read.
#[derive(Debug)]
struct Place {
    file: File,
    name: String,
    /// Offset of the next record in the segment.
    offset: u64,
    next_op: u64,
    /// Chain hash after `next_op - 1`.
    prev: ChainHash,
    /// Bytes of the segment from `buf_offset` on, read ahead.
    buf: Vec<u8>,
    buf_offset: u64,
}

/// Reads `DIR/journal` (the data directory's journal and snapshots) read-only.
pub struct FileJournalSource {
    dir: PathBuf,
    body_bytes_max: u32,
    /// The writer's durable head, when the reader runs beside it (`gongji serve`): ops after
    /// it may still be lost in a crash of the machine, so they are not projected yet.
    durable_head: Option<Box<dyn Fn() -> u64 + Send>>,
    place: Option<Place>,
}

impl std::fmt::Debug for FileJournalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJournalSource")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path, e: std::io::Error) -> SourceError {
    SourceError::Io(format!("{}: {e}", path.display()))
}

impl FileJournalSource {
    /// `journal_dir` is the directory of the segment and snapshot files (`DATA/journal`).
    pub fn new(journal_dir: impl Into<PathBuf>) -> Result<Self, SourceError> {
        let dir = journal_dir.into();
        if !dir.is_dir() {
            return Err(SourceError::Io(format!(
                "{} is not a directory (is --data a gongji data directory?)",
                dir.display()
            )));
        }
        Ok(FileJournalSource {
            dir,
            body_bytes_max: JournalConfig::default().body_bytes_max,
            durable_head: None,
            place: None,
        })
    }

    /// Reads only up to what `head` says is durable.
    pub fn with_durable_head(mut self, head: impl Fn() -> u64 + Send + 'static) -> Self {
        self.durable_head = Some(Box::new(head));
        self
    }

    fn names(&self) -> Result<Vec<String>, SourceError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let entry = entry.map_err(|e| io(&self.dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// Opens segment `name` (first op `first_op`) at its first record.
    fn open_segment(&self, name: &str, first_op: u64) -> Result<Place, SourceError> {
        let path = self.dir.join(name);
        let file = File::open(&path).map_err(|e| io(&path, e))?;
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| io(&path, e))?;
        let header = SegmentHeader::decode(&header)
            .map_err(|e| SourceError::Damaged(format!("{name}: segment header: {e}")))?;
        if header.first_op != first_op {
            return Err(SourceError::Damaged(format!(
                "{name}: header says first op {}",
                header.first_op
            )));
        }
        Ok(Place {
            file,
            name: name.to_owned(),
            offset: SEGMENT_HEADER_BYTES as u64,
            next_op: first_op,
            prev: header.prev_chain_hash,
            buf: Vec::new(),
            buf_offset: 0,
        })
    }

    /// Places the reader before op `after + 1`: the segment holding it, records before it
    /// read and verified. `None` when the journal does not reach `after + 1` yet.
    fn locate(&mut self, after: u64) -> Result<Option<Place>, SourceError> {
        let mut segments: Vec<(u64, String)> = self
            .names()?
            .into_iter()
            .filter_map(|n| parse_segment_name(&n).map(|op| (op, n)))
            .collect();
        segments.sort();
        let Some((first_op, name)) = segments.iter().rev().find(|(op, _)| *op <= after + 1) else {
            return match segments.first() {
                Some((first_op, _)) => Err(SourceError::Gone {
                    after,
                    first_op: *first_op,
                }),
                None => Ok(None),
            };
        };
        let mut place = self.open_segment(name, *first_op)?;
        while place.next_op <= after {
            if self.next_record(&mut place)?.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(place))
    }

    /// Ensures `len` bytes at `offset` are in the buffer; false when the file has fewer.
    fn fill(place: &mut Place, offset: u64, len: usize) -> Result<bool, SourceError> {
        let have_from = place.buf_offset;
        let have_to = place.buf_offset + place.buf.len() as u64;
        if offset >= have_from && offset + len as u64 <= have_to {
            return Ok(true);
        }
        let want = len.max(READ_BLOCK_BYTES);
        place.buf.resize(want, 0);
        let mut got = 0;
        while got < want {
            let n = place
                .file
                .read_at(&mut place.buf[got..], offset + got as u64)
                .map_err(|e| SourceError::Io(format!("{}: {e}", place.name)))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        place.buf.truncate(got);
        place.buf_offset = offset;
        Ok(got >= len)
    }

    /// Whether a whole record with a valid header and body CRC starts at `at`.
    fn verifies(place: &mut Place, at: u64) -> Result<bool, SourceError> {
        let start = (at - place.buf_offset) as usize;
        let Ok(header) = RecordHeader::decode(&place.buf[start..start + RECORD_HEADER_BYTES])
        else {
            return Ok(false);
        };
        let total = RECORD_HEADER_BYTES + header.body_len as usize;
        if header.body_len > 64 * 1024 * 1024 || !Self::fill(place, at, total)? {
            return Ok(false);
        }
        let start = (at - place.buf_offset) as usize;
        let body = &place.buf[start + RECORD_HEADER_BYTES..start + total];
        Ok(crc32c::crc32c(body) == header.body_crc)
    }

    /// Reads and verifies the record at the reader's place; `None` when there is none (yet).
    /// Moves to the next segment at the end of one.
    fn next_record(&self, place: &mut Place) -> Result<Option<(u64, Vec<u8>)>, SourceError> {
        // Bytes read ahead may predate the writer's latest write: before concluding that
        // there is no valid record, read them again once.
        let mut reread = false;
        loop {
            let at = place.offset;
            let whole = Self::fill(place, at, RECORD_HEADER_BYTES)?;
            let start = (at - place.buf_offset) as usize;
            let head = &place.buf[start..];
            let end = !whole || head[..4].iter().all(|&b| b == 0);
            let valid = !end && Self::verifies(place, at)?;
            if !valid && !reread {
                place.buf.clear();
                reread = true;
                continue;
            }
            let start = (at - place.buf_offset) as usize;
            let head = &place.buf[start..];
            if end {
                // The end of the data in this segment: the writer may have moved on.
                let next = segment_file_name(place.next_op);
                if self.dir.join(&next).exists() {
                    let mut moved = self.open_segment(&next, place.next_op)?;
                    if moved.prev != place.prev {
                        return Err(SourceError::Damaged(format!(
                            "{next}: its chain does not continue {}",
                            place.name
                        )));
                    }
                    std::mem::swap(place, &mut moved);
                    continue;
                }
                place.buf.clear();
                // A later segment but not the next one: the next was removed (the writer trims
                // the journal after a snapshot) while this reader was behind.
                let later = self
                    .names()?
                    .iter()
                    .filter_map(|n| parse_segment_name(n))
                    .filter(|&first_op| first_op > place.next_op)
                    .min();
                if let Some(first_op) = later {
                    return Err(SourceError::Gone {
                        after: place.next_op - 1,
                        first_op,
                    });
                }
                return Ok(None);
            }
            let Ok(header) = RecordHeader::decode(&head[..RECORD_HEADER_BYTES]) else {
                return self.not_yet(place, "record header does not verify");
            };
            if header.body_len > self.body_bytes_max {
                return self.not_yet(place, "record longer than any body");
            }
            let total = RECORD_HEADER_BYTES + header.body_len as usize;
            if !Self::fill(place, at, total)? {
                return self.not_yet(place, "record cut short");
            }
            let start = (at - place.buf_offset) as usize;
            let body = &place.buf[start + RECORD_HEADER_BYTES..start + total];
            if crc32c::crc32c(body) != header.body_crc {
                return self.not_yet(place, "record body crc32c mismatch");
            }
            let damaged = |what: &str| {
                SourceError::Damaged(format!(
                    "{} at offset {at}: {what} (op {})",
                    place.name, place.next_op
                ))
            };
            if header.op != place.next_op {
                return Err(damaged("op out of sequence"));
            }
            let chain = chain_next(&place.prev, header.op, header.time, body);
            if chain != header.chain_hash {
                return Err(damaged("hash chain broken"));
            }
            let record = (header.op, body.to_vec());
            place.prev = chain;
            place.next_op += 1;
            place.offset = at + total as u64;
            return Ok(Some(record));
        }
    }
}

impl FileJournalSource {
    /// A record that does not verify at the reader's place: in the last segment it may be
    /// one being written (read again next time); with a later segment present it is damage.
    fn not_yet(
        &self,
        place: &mut Place,
        what: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, SourceError> {
        place.buf.clear();
        let later = self
            .names()?
            .iter()
            .filter_map(|n| parse_segment_name(n))
            .any(|first_op| first_op > place.next_op);
        if later {
            return Err(SourceError::Damaged(format!(
                "{} at offset {}: {what} (op {}), and later segments exist",
                place.name, place.offset, place.next_op
            )));
        }
        Ok(None)
    }
}

impl OpSource for FileJournalSource {
    fn read(&mut self, after: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, SourceError> {
        let mut max = max;
        let mut durable = false;
        if let Some(head) = &self.durable_head {
            let head = head();
            if head <= after {
                return Ok(Vec::new());
            }
            max = max.min(usize::try_from(head - after).unwrap_or(usize::MAX));
            durable = true;
        }
        let mut place = match self.place.take() {
            Some(place) if place.next_op == after + 1 => place,
            _ => match self.locate(after)? {
                Some(place) => place,
                None => return Ok(Vec::new()),
            },
        };
        let mut out = Vec::new();
        let result = loop {
            if out.len() >= max {
                break Ok(());
            }
            match self.next_record(&mut place) {
                Ok(Some(record)) => out.push(record),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        result?;
        if durable && out.len() < max {
            // The writer has synced these ops: a record that does not read is damage.
            return Err(SourceError::Damaged(format!(
                "{}: op {} is durable but does not read",
                place.name, place.next_op
            )));
        }
        self.place = Some(place);
        Ok(out)
    }

    fn head(&mut self) -> Result<Option<u64>, SourceError> {
        Ok(self.durable_head.as_ref().map(|h| h()))
    }

    /// The data directory's `history/` files, beside `journal/`.
    fn attach_history(&mut self, state: &mut gongji_core::State) -> Result<(), SourceError> {
        let dir = self
            .dir
            .parent()
            .map(|d| d.join("history"))
            .unwrap_or_default();
        gongji_server::HistoryDir::read_only(dir)
            .attach(state)
            .map(|_| ())
            .map_err(SourceError::Damaged)
    }

    fn snapshot(&mut self, at_most: u64) -> Result<Option<SourceSnapshot>, SourceError> {
        let mut snapshots: Vec<(u64, String)> = self
            .names()?
            .into_iter()
            .filter_map(|n| parse_snapshot_name(&n).map(|op| (op, n)))
            .filter(|(op, _)| *op <= at_most)
            .collect();
        snapshots.sort();
        for (op, name) in snapshots.into_iter().rev() {
            let path = self.dir.join(&name);
            let data = match std::fs::read(&path) {
                Ok(data) => data,
                // Pruned by the server since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&path, e)),
            };
            match check_snapshot(op, &data) {
                Ok(header) => {
                    return Ok(Some(SourceSnapshot {
                        op,
                        chain_hash: header.chain_hash,
                        body: data[SNAPSHOT_HEADER_BYTES..].to_vec(),
                    }))
                }
                Err(what) => tracing::warn!(file = %name, "snapshot skipped: {what}"),
            }
        }
        Ok(None)
    }
}

fn check_snapshot(op: u64, data: &[u8]) -> Result<SnapshotHeader, String> {
    let header = SnapshotHeader::decode(data).map_err(|e| e.to_string())?;
    if header.op != op {
        return Err(format!("header says op {}", header.op));
    }
    if data.len() as u64 != SNAPSHOT_HEADER_BYTES as u64 + header.body_len {
        return Err("length does not match the header".into());
    }
    if *blake3::hash(&data[SNAPSHOT_HEADER_BYTES..]).as_bytes() != header.body_hash {
        return Err("body hash does not match".into());
    }
    Ok(header)
}
