//! `Journal`: append buffering, group sync, segment rolling, replay and segment removal.

use crate::error::{Damage, DamageKind, JournalError, ReplayError};
use crate::format::{
    ChainHash, RecordHeader, SegmentHeader, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::scan::{self, parse_record_at, segment_file_name, Anchor, Parsed, Recovery, TornTail};
use crate::storage::Storage;

const MIB: u64 = 1024 * 1024;

/// Journal sizing. Every limit is checked by [`JournalConfig::validate`] at `open`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Size each new segment file is preallocated to; records never span segments.
    pub segment_size_bytes: u64,
    /// Largest record body `append` accepts.
    pub body_bytes_max: u32,
    /// Largest amount of buffered bytes between syncs; `append` returns `BatchFull` beyond it.
    pub batch_bytes_max: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            segment_size_bytes: 64 * MIB,
            body_bytes_max: MIB as u32,
            batch_bytes_max: 8 * MIB,
        }
    }
}

impl JournalConfig {
    /// Bytes a fresh segment needs to hold one maximal record.
    pub fn record_bytes_max(&self) -> u64 {
        (SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES) as u64 + u64::from(self.body_bytes_max)
    }

    pub fn validate(&self) -> Result<(), JournalError> {
        let reason = if self.segment_size_bytes < self.record_bytes_max() {
            "segment_size_bytes must hold a segment header and a maximal record"
        } else if self.batch_bytes_max < self.record_bytes_max() {
            "batch_bytes_max must hold a segment header and a maximal record"
        } else if usize::try_from(self.segment_size_bytes).is_err() {
            "segment_size_bytes must fit in memory"
        } else {
            return Ok(());
        };
        Err(JournalError::InvalidConfig { reason })
    }
}

/// One record handed to a replay visitor.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    pub op: u64,
    pub time: i64,
    pub body: &'a [u8],
    /// Chain hash after this record.
    pub chain_hash: ChainHash,
}

/// What one `sync` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub records: u64,
    pub bytes_written: u64,
    pub files_synced: u32,
    pub segments_created: u32,
}

/// Running totals since `open`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub records_appended_total: u64,
    pub bytes_written_total: u64,
    pub syncs_total: u64,
}

#[derive(Debug)]
struct SegmentMeta {
    name: String,
    first_op: u64,
    /// Created on storage by a completed sync (false while only in the batch).
    on_storage: bool,
}

/// Buffered bytes for one segment, written with a single `write_at`.
#[derive(Debug)]
struct BatchWrite {
    name: String,
    offset: u64,
    bytes: Vec<u8>,
    create: bool,
}

/// Append-only journal over a [`Storage`]; see the crate docs for the file format.
#[derive(Debug)]
pub struct Journal<S: Storage> {
    storage: S,
    config: JournalConfig,
    segments: Vec<SegmentMeta>,
    /// Next byte to fill in the last segment, counting buffered bytes.
    tail_offset: u64,
    tail_capacity_bytes: u64,
    /// Last appended record, durable or not.
    head: Anchor,
    /// Last record covered by a successful sync (or found at open).
    durable_head: Anchor,
    batch: Vec<BatchWrite>,
    batch_bytes: u64,
    batch_records: u64,
    poisoned: bool,
    /// Opened by `open_read_only`: appends are refused.
    read_only: bool,
    stats: JournalStats,
}

/// Full check of the journal on `storage` without changing it (from `start`: segments that end
/// before it are not read). A torn tail is reported in `Recovery::torn_tail` (it is not an
/// error); damage is.
pub fn verify<S: Storage>(
    storage: &S,
    config: &JournalConfig,
    start: Option<Anchor>,
) -> Result<Recovery, JournalError> {
    config.validate()?;
    Ok(scan::scan(storage, config, start)?.recovery())
}

impl<S: Storage> Journal<S> {
    /// Verifies every record from the segment holding `start` on (a snapshot's anchor; `None` =
    /// genesis; earlier segments are listed, not read), cuts a torn
    /// tail (zeroing it durably so it cannot be mistaken for data later) and positions for
    /// appending. Damage anywhere else is an error naming file and offset.
    pub fn open(
        storage: S,
        config: JournalConfig,
        start: Option<Anchor>,
    ) -> Result<(Self, Recovery), JournalError> {
        Self::open_with(storage, config, start, true)
    }

    /// Like [`Self::open`] but changes nothing on storage: a torn tail is reported, not cut,
    /// and the journal refuses appends. For `verify` and other readers of a data directory.
    pub fn open_read_only(
        storage: S,
        config: JournalConfig,
        start: Option<Anchor>,
    ) -> Result<(Self, Recovery), JournalError> {
        Self::open_with(storage, config, start, false)
    }

    fn open_with(
        mut storage: S,
        config: JournalConfig,
        start: Option<Anchor>,
        writable: bool,
    ) -> Result<(Self, Recovery), JournalError> {
        config.validate()?;
        let scan = scan::scan(&storage, &config, start)?;
        if let (Some(torn), true) = (&scan.torn_tail, writable) {
            cut_torn_tail(&mut storage, torn)?;
        }
        let (tail_offset, tail_capacity_bytes) = match scan.segments.last() {
            Some(last) => (
                last.end_offset,
                last.file_len_bytes.max(config.segment_size_bytes),
            ),
            None => (0, 0),
        };
        let segments = scan
            .segments
            .iter()
            .map(|s| SegmentMeta {
                name: s.name.clone(),
                first_op: s.first_op,
                on_storage: true,
            })
            .collect();
        let journal = Self {
            storage,
            config,
            segments,
            tail_offset,
            tail_capacity_bytes,
            head: scan.head,
            durable_head: scan.head,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_records: 0,
            poisoned: false,
            read_only: !writable,
            stats: JournalStats::default(),
        };
        Ok((journal, scan.recovery()))
    }

    fn check_poisoned(&self) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        Ok(())
    }

    /// Buffers a record and returns its op. Nothing reaches storage until [`Self::sync`].
    /// `BodyTooLarge` and `BatchFull` leave the journal unchanged and usable.
    pub fn append(&mut self, time: i64, body: &[u8]) -> Result<u64, JournalError> {
        self.check_poisoned()?;
        if self.read_only {
            return Err(JournalError::ReadOnly);
        }
        if body.len() > self.config.body_bytes_max as usize {
            let body_bytes_max = self.config.body_bytes_max;
            return Err(JournalError::BodyTooLarge {
                body_len: body.len(),
                body_bytes_max,
            });
        }
        let record_bytes = (RECORD_HEADER_BYTES + body.len()) as u64;
        let needs_roll =
            self.segments.is_empty() || self.tail_offset + record_bytes > self.tail_capacity_bytes;
        let added_bytes = record_bytes
            + if needs_roll {
                SEGMENT_HEADER_BYTES as u64
            } else {
                0
            };
        if self.batch_bytes > 0 && self.batch_bytes + added_bytes > self.config.batch_bytes_max {
            return Err(JournalError::BatchFull {
                batch_bytes: self.batch_bytes,
                record_bytes,
                batch_bytes_max: self.config.batch_bytes_max,
            });
        }
        if needs_roll {
            self.roll();
        }
        let op = self.head.op + 1;
        let header = RecordHeader::for_body(&self.head.chain_hash, op, time, body);
        let write = self.tail_write();
        write.bytes.extend_from_slice(&header.encode());
        write.bytes.extend_from_slice(body);
        self.tail_offset += record_bytes;
        self.batch_bytes += added_bytes;
        self.batch_records += 1;
        self.stats.records_appended_total += 1;
        self.head = Anchor {
            op,
            chain_hash: header.chain_hash,
        };
        Ok(op)
    }

    /// Starts a new segment (in the batch) at the next op.
    fn roll(&mut self) {
        let first_op = self.head.op + 1;
        let name = segment_file_name(first_op);
        let header = SegmentHeader {
            first_op,
            prev_chain_hash: self.head.chain_hash,
        };
        self.segments.push(SegmentMeta {
            name: name.clone(),
            first_op,
            on_storage: false,
        });
        self.batch.push(BatchWrite {
            name,
            offset: 0,
            bytes: header.encode().to_vec(),
            create: true,
        });
        self.tail_offset = SEGMENT_HEADER_BYTES as u64;
        self.tail_capacity_bytes = self.config.segment_size_bytes;
    }

    /// The batch write that ends at the tail of the last segment, created if needed.
    fn tail_write(&mut self) -> &mut BatchWrite {
        let name = &self.segments.last().expect("append rolls first").name;
        if !matches!(self.batch.last(), Some(w) if w.name == *name) {
            let write = BatchWrite {
                name: name.clone(),
                offset: self.tail_offset,
                bytes: Vec::new(),
                create: false,
            };
            self.batch.push(write);
        }
        let write = self.batch.last_mut().expect("pushed above");
        assert_eq!(
            write.offset + write.bytes.len() as u64,
            self.tail_offset,
            "batch/tail mismatch"
        );
        write
    }

    /// Writes the batch (one `write_at` per segment touched) and syncs it. After `Ok`, every
    /// appended record is durable. Any storage error poisons the journal: after a failed
    /// fsync the page cache state is unknown, so only a restart and recovery are safe.
    pub fn sync(&mut self) -> Result<SyncStats, JournalError> {
        self.check_poisoned()?;
        let mut stats = SyncStats {
            records: self.batch_records,
            ..SyncStats::default()
        };
        let batch = std::mem::take(&mut self.batch);
        for write in &batch {
            if let Err(e) = self.write_one(write, &mut stats) {
                self.poisoned = true;
                return Err(e.into());
            }
        }
        for segment in &mut self.segments {
            segment.on_storage = true;
        }
        self.durable_head = self.head;
        self.batch_bytes = 0;
        self.batch_records = 0;
        self.stats.bytes_written_total += stats.bytes_written;
        self.stats.syncs_total += u64::from(stats.files_synced);
        Ok(stats)
    }

    /// Ordering matters: a segment is created only after the previous one is synced, and its
    /// name is made durable only after its contents are, so every crash leaves at most the
    /// last segment with a torn tail.
    fn write_one(
        &mut self,
        write: &BatchWrite,
        stats: &mut SyncStats,
    ) -> Result<(), crate::StorageError> {
        if write.create {
            self.storage.create(&write.name)?;
            self.storage
                .set_len(&write.name, self.config.segment_size_bytes)?;
            stats.segments_created += 1;
        }
        self.storage
            .write_at(&write.name, write.offset, &write.bytes)?;
        stats.bytes_written += write.bytes.len() as u64;
        self.storage.sync(&write.name)?;
        stats.files_synced += 1;
        if write.create {
            self.storage.sync_dir()?;
        }
        Ok(())
    }

    /// Last appended record (possibly not yet synced).
    pub fn head(&self) -> Anchor {
        self.head
    }

    /// Last record known durable.
    pub fn durable_head(&self) -> Anchor {
        self.durable_head
    }

    /// Bytes buffered since the last sync (records plus any new segment headers).
    pub fn batch_bytes(&self) -> u64 {
        self.batch_bytes
    }

    /// Records appended since the last sync.
    pub fn batch_records(&self) -> u64 {
        self.batch_records
    }

    /// First op of the oldest segment (records before it were removed); `head().op + 1` when
    /// the journal holds no segment.
    pub fn first_op(&self) -> u64 {
        self.segments
            .first()
            .map_or(self.head.op + 1, |s| s.first_op)
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub fn stats(&self) -> JournalStats {
        self.stats
    }

    pub fn config(&self) -> &JournalConfig {
        &self.config
    }

    /// Number of segment files (including ones still only in the batch).
    pub fn segments_total(&self) -> usize {
        self.segments.len()
    }

    /// Sum of segment file lengths on storage (preallocation included).
    pub fn bytes_on_disk(&self) -> Result<u64, JournalError> {
        let mut total = 0;
        for segment in self.segments.iter().filter(|s| s.on_storage) {
            total += self.storage.len(&segment.name)?;
        }
        Ok(total)
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// For snapshot files in the same directory; never touch `journal-*.seg` through it.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub fn into_storage(self) -> S {
        self.storage
    }
}

/// Makes the cut durable before any new append can land after it.
fn cut_torn_tail(storage: &mut impl Storage, torn: &TornTail) -> Result<(), JournalError> {
    if torn.whole_file {
        storage.remove(&torn.file)?;
        storage.sync_dir()?;
    } else {
        let zeros = vec![0u8; usize::try_from(torn.bytes).expect("tail fits in memory")];
        storage.write_at(&torn.file, torn.offset, &zeros)?;
        storage.sync(&torn.file)?;
    }
    Ok(())
}

impl<S: Storage> Journal<S> {
    /// Calls `visit` for every record with op > `after_op`, in order, re-verifying framing,
    /// op numbers and the chain as it reads. Returns the number of records visited. Needs all
    /// appends synced; `after_op` must lie in `first_op() - 1 ..= head().op`.
    pub fn replay<E>(
        &self,
        after_op: u64,
        mut visit: impl FnMut(RecordRef<'_>) -> Result<(), E>,
    ) -> Result<u64, ReplayError<E>> {
        self.check_poisoned()?;
        if !self.batch.is_empty() {
            return Err(JournalError::UnsyncedAppends.into());
        }
        let first_op = self.first_op();
        if after_op + 1 < first_op || after_op > self.head.op {
            let head_op = self.head.op;
            return Err(JournalError::ReplayRange {
                after_op,
                first_op,
                head_op,
            }
            .into());
        }
        let mut visited = 0;
        for (index, segment) in self.segments.iter().enumerate() {
            let last_op = self
                .segments
                .get(index + 1)
                .map_or(self.head.op, |next| next.first_op - 1);
            if last_op > after_op {
                visited += self.replay_segment(segment, last_op, after_op, &mut visit)?;
            }
        }
        Ok(visited)
    }

    fn replay_segment<E>(
        &self,
        segment: &SegmentMeta,
        last_op: u64,
        after_op: u64,
        visit: &mut impl FnMut(RecordRef<'_>) -> Result<(), E>,
    ) -> Result<u64, ReplayError<E>> {
        let data = self
            .storage
            .read_all(&segment.name)
            .map_err(JournalError::from)?;
        let changed = |offset: usize, expected_op: u64| {
            let kind = DamageKind::ChangedSinceOpen { expected_op };
            let damage = Damage {
                file: segment.name.clone(),
                offset: offset as u64,
                kind,
            };
            ReplayError::Journal(JournalError::Damage(damage))
        };
        let header = SegmentHeader::decode(&data).map_err(|_| changed(0, segment.first_op))?;
        let mut prev = header.prev_chain_hash;
        let mut pos = SEGMENT_HEADER_BYTES;
        let mut visited = 0;
        for op in segment.first_op..=last_op {
            let Parsed::Record {
                header: record,
                body,
                end,
            } = parse_record_at(&data, pos, self.config.body_bytes_max)
            else {
                return Err(changed(pos, op));
            };
            let chain_hash = crate::format::chain_next(&prev, op, record.time, body);
            if record.op != op || chain_hash != record.chain_hash {
                return Err(changed(pos, op));
            }
            if op > after_op {
                let record_ref = RecordRef {
                    op,
                    time: record.time,
                    body,
                    chain_hash,
                };
                visit(record_ref).map_err(ReplayError::Visitor)?;
                visited += 1;
            }
            prev = chain_hash;
            pos = end;
        }
        Ok(visited)
    }

    /// Deletes whole segments whose records all have op < `op` (pass `snapshot_op + 1`),
    /// oldest first, syncing the directory after each so a crash never leaves a hole. The
    /// last segment is never removed. Returns how many were removed.
    pub fn remove_segments_before(&mut self, op: u64) -> Result<usize, JournalError> {
        self.retire_segments_before(op, false)
    }

    /// Like [`Journal::remove_segments_before`], but each segment is renamed to
    /// `archived-{name}` instead of removed: recovery no longer reads it, and
    /// [`restore_archived_segments`] puts it back for a replay from op 1.
    pub fn archive_segments_before(&mut self, op: u64) -> Result<usize, JournalError> {
        self.retire_segments_before(op, true)
    }

    fn retire_segments_before(&mut self, op: u64, archive: bool) -> Result<usize, JournalError> {
        self.check_poisoned()?;
        let mut removed = 0;
        while self.segments.len() >= 2
            && self.segments[1].first_op <= op
            && self.segments[1].on_storage
        {
            let name = self.segments[0].name.clone();
            if archive {
                self.storage
                    .rename(&name, &format!("{}{name}", crate::ARCHIVED_PREFIX))?;
            } else {
                self.storage.remove(&name)?;
            }
            self.segments.remove(0);
            if let Err(e) = self.storage.sync_dir() {
                self.poisoned = true;
                return Err(e.into());
            }
            removed += 1;
        }
        Ok(removed)
    }
}
