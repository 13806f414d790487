//! The seam between the engine and where it keeps its journal and snapshots: files in the data
//! directory ([`FileStore`], the journal of `gongji-journal`), or PostgreSQL (`gongji-pg`).
//!
//! A store gives recovery the newest snapshot that verifies ([`Store::load_snapshot`]), opens
//! the journal after it ([`Store::open_log`]: everything after the snapshot is verified,
//! reading it again in [`Log::replay`] re-verifies op numbers and the blake3 chain), and hands
//! the snapshot thread a [`SnapshotStore`]. The writer appends to the [`Log`] (buffered) and makes
//! each batch durable with one [`Log::sync`]; any error there stops the writer, and nothing
//! of that batch is acknowledged.
//!
//! Every store keeps the same chain hash per record (`chain_next` of `gongji-journal`), so the
//! same ops give the same head hash on every store.

use std::sync::Arc;

use gongji_journal::{
    load_latest_snapshot, load_latest_snapshot_with, prune_snapshots, write_snapshot_streaming,
    Anchor, Encode, FileBytes, Journal, JournalError, LoadedSnapshot, ReplayError, Storage,
    TornTail,
};

use crate::{Config, ServerError};

/// What [`Log::append`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Buffered as this op.
    Op(u64),
    /// The buffer is full: [`Log::sync`] first, then append again. Nothing was buffered.
    BatchFull,
}

/// A replay visitor: gets `(op, body)`; an `Err` stops the replay and names the problem.
pub type Visit<'a> = dyn FnMut(u64, &[u8]) -> Result<(), String> + 'a;

/// A full check of a store's journal, read-only: `(records checked, head)`.
pub type Auditor = Arc<dyn Fn() -> Result<(u64, Anchor), String> + Send + Sync>;

/// The journal as the writer and recovery see it.
pub trait Log: Send {
    /// Buffers a record after the head; nothing is durable before [`Log::sync`].
    fn append(&mut self, time: i64, body: &[u8]) -> Result<Appended, ServerError>;
    /// Makes everything appended durable, all or nothing, in one commit; returns the bytes
    /// written. After an error the log refuses every further call: restart and recover.
    fn sync(&mut self) -> Result<u64, ServerError>;
    /// The last appended record (durable after the next successful `sync`).
    fn head(&self) -> Anchor;
    /// The oldest op still held (`head().op + 1` when none is).
    fn first_op(&self) -> u64;
    /// May forget records before `op` (the writer passes the older kept snapshot's op + 1).
    fn remove_before(&mut self, op: u64) -> Result<(), ServerError>;
    /// Like [`Log::remove_before`], but keeps the records where recovery does not read them
    /// and [`Store::restore_archived`] can bring them back (the journal is the source of the
    /// history files). Keeps everything where a store cannot archive.
    fn archive_before(&mut self, _op: u64) -> Result<(), ServerError> {
        Ok(())
    }
    /// Visits every record after `after_op` in order as `(op, body)`, re-verifying op numbers
    /// and the chain; returns how many it visited. Needs every append synced.
    fn replay(&mut self, after_op: u64, visit: &mut Visit<'_>) -> Result<u64, ServerError>;
}

/// Snapshot writing, for the snapshot thread (and recovery's first snapshot).
pub trait SnapshotStore: Send {
    /// Writes a snapshot durably, its body handed over by `encode` to the sink it is given, in
    /// pieces written as they come, so that a snapshot needs no buffer of its own size;
    /// returns a name for the log.
    fn write_streaming(
        &mut self,
        anchor: Anchor,
        encode: &mut Encode<'_>,
    ) -> Result<String, ServerError>;
    /// [`SnapshotStore::write_streaming`] of a body already in memory.
    fn write(&mut self, anchor: Anchor, body: &[u8]) -> Result<String, ServerError> {
        self.write_streaming(anchor, &mut |sink| sink(body))
    }
    /// Keeps the newest `keep` snapshots and removes older ones.
    fn prune(&mut self, keep: usize) -> Result<(), ServerError>;
    /// The snapshot `file` (as [`SnapshotStore::write_streaming`] named it) mapped, and where
    /// its body starts: `None` where snapshots are not mapped files.
    fn mapped(
        &self,
        _file: &str,
    ) -> Option<Result<(gongji_core::SharedBytes, usize), ServerError>> {
        None
    }
}

/// A snapshot body decoded into a state, or why it does not decode.
pub type Decoded = Result<gongji_core::State, gongji_core::SnapshotDecodeError>;

/// A snapshot body handed to a decoder.
pub struct Body<'a> {
    pub bytes: &'a [u8],
    /// When the store maps its files: the file, in which the body starts at the offset
    /// given. A state decoded from it may go on reading it (its msgid window).
    pub shared: Option<(gongji_core::SharedBytes, usize)>,
}

impl std::fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("bytes", &self.bytes.len())
            .field("shared", &self.shared.as_ref().map(|(_, at)| at))
            .finish()
    }
}

impl Body<'_> {
    /// The state in the body: reading the mapped file where it lies, when there is one.
    pub fn decode(self) -> Decoded {
        match self.shared {
            Some((bytes, at)) => gongji_core::State::decode_snapshot_shared(bytes, at),
            None => gongji_core::State::decode_snapshot(self.bytes),
        }
    }
}

/// Where an engine keeps its journal and snapshots.
pub trait Store: Send {
    /// The newest snapshot that verifies (with newer ones skipped); `None` when there is none.
    fn load_snapshot(&mut self) -> Result<Option<LoadedSnapshot>, ServerError>;
    /// [`Store::load_snapshot`] with its body handed to `decode`; the [`LoadedSnapshot`]'s
    /// body is then empty. A store may overlap the decode with the body's verification (the
    /// file store does); the decoded value is returned only for a body that verifies.
    fn load_snapshot_decoded(
        &mut self,
        decode: &mut dyn FnMut(Body<'_>) -> Decoded,
    ) -> Result<Option<(LoadedSnapshot, Decoded)>, ServerError> {
        Ok(self.load_snapshot()?.map(|mut snapshot| {
            let decoded = decode(Body {
                bytes: &snapshot.body,
                shared: None,
            });
            snapshot.body = Vec::new();
            (snapshot, decoded)
        }))
    }
    /// Opens the journal after `start` (a snapshot's anchor; `None` = genesis). A writable
    /// open may repair (cut a torn tail, which it reports); a read-only one changes nothing.
    fn open_log(
        &mut self,
        config: &Config,
        start: Option<Anchor>,
        writable: bool,
    ) -> Result<(Box<dyn Log>, Option<TornTail>), ServerError>;
    /// The snapshot writer for the snapshot thread; called once, after `open_log`.
    fn snapshots(&mut self) -> Result<Box<dyn SnapshotStore>, ServerError>;
    /// Brings records [`Log::archive_before`] set aside back into the journal, before
    /// `open_log`, for a replay from op 1; returns how many segments (or rows) came back.
    fn restore_archived(&mut self) -> Result<usize, ServerError> {
        Ok(0)
    }
    /// For `GET /v1/audit/verify`: a full check of this store's journal. `None` for files
    /// (the HTTP layer verifies the journal directory itself).
    fn auditor(&self) -> Option<Auditor> {
        None
    }
}

/// The journal and snapshots as files, through two handles on one directory.
#[derive(Debug)]
pub struct FileStore<S: Storage> {
    journal: Option<S>,
    snapshots: Option<S>,
}

impl<S: Storage + 'static> FileStore<S> {
    /// `snapshot_storage` must be the same directory seen through a second handle.
    pub fn new(journal_storage: S, snapshot_storage: S) -> FileStore<S> {
        FileStore {
            journal: Some(journal_storage),
            snapshots: Some(snapshot_storage),
        }
    }
}

/// A snapshot file mapped, whose msgid section a state reads where it lies.
struct MappedFile(Arc<FileBytes>);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl gongji_core::SectionBytes for MappedFile {
    fn release(&self, range: std::ops::Range<usize>) {
        self.0.release(range);
    }

    fn read_at(&self, at: usize, out: &mut [u8]) {
        self.0.read_at(at, out);
    }
}

fn taken(what: &str) -> ServerError {
    ServerError::Corrupt(format!("the file store's {what} handle was already taken"))
}

impl<S: Storage + 'static> Store for FileStore<S> {
    fn load_snapshot(&mut self) -> Result<Option<LoadedSnapshot>, ServerError> {
        let storage = self.snapshots.as_ref().ok_or_else(|| taken("snapshot"))?;
        Ok(load_latest_snapshot(storage)?)
    }

    fn load_snapshot_decoded(
        &mut self,
        decode: &mut dyn FnMut(Body<'_>) -> Decoded,
    ) -> Result<Option<(LoadedSnapshot, Decoded)>, ServerError> {
        let storage = self.snapshots.as_ref().ok_or_else(|| taken("snapshot"))?;
        Ok(load_latest_snapshot_with(storage, &mut |data, at| {
            // A file read into memory (not mapped) is not kept whole for its window's sake.
            let shared = matches!(**data, FileBytes::Mapped(..)).then(|| {
                (
                    Arc::new(MappedFile(data.clone())) as gongji_core::SharedBytes,
                    at,
                )
            });
            decode(Body {
                bytes: &data[at..],
                shared,
            })
        })?)
    }

    fn open_log(
        &mut self,
        config: &Config,
        start: Option<Anchor>,
        writable: bool,
    ) -> Result<(Box<dyn Log>, Option<TornTail>), ServerError> {
        let storage = self.journal.take().ok_or_else(|| taken("journal"))?;
        let (journal, recovery) = if writable {
            Journal::open(storage, config.journal, start)?
        } else {
            Journal::open_read_only(storage, config.journal, start)?
        };
        Ok((Box::new(FileLog(journal)), recovery.torn_tail))
    }

    fn snapshots(&mut self) -> Result<Box<dyn SnapshotStore>, ServerError> {
        let storage = self.snapshots.take().ok_or_else(|| taken("snapshot"))?;
        Ok(Box::new(FileSnapshots(storage)))
    }

    fn restore_archived(&mut self) -> Result<usize, ServerError> {
        let storage = self.journal.as_mut().ok_or_else(|| taken("journal"))?;
        gongji_journal::restore_archived_segments(storage)
            .map_err(|e| ServerError::Corrupt(format!("restoring archived segments: {e}")))
    }
}

/// [`Log`] over the segment files of [`Journal`].
#[derive(Debug)]
struct FileLog<S: Storage>(Journal<S>);

impl<S: Storage> Log for FileLog<S> {
    fn append(&mut self, time: i64, body: &[u8]) -> Result<Appended, ServerError> {
        match self.0.append(time, body) {
            Ok(op) => Ok(Appended::Op(op)),
            Err(JournalError::BatchFull { .. }) => Ok(Appended::BatchFull),
            Err(e) => Err(e.into()),
        }
    }

    fn sync(&mut self) -> Result<u64, ServerError> {
        Ok(self.0.sync()?.bytes_written)
    }

    fn head(&self) -> Anchor {
        self.0.head()
    }

    fn first_op(&self) -> u64 {
        self.0.first_op()
    }

    fn remove_before(&mut self, op: u64) -> Result<(), ServerError> {
        self.0.remove_segments_before(op)?;
        Ok(())
    }

    fn archive_before(&mut self, op: u64) -> Result<(), ServerError> {
        self.0.archive_segments_before(op)?;
        Ok(())
    }

    fn replay(&mut self, after_op: u64, visit: &mut Visit<'_>) -> Result<u64, ServerError> {
        match self
            .0
            .replay(after_op, |record| visit(record.op, record.body))
        {
            Ok(n) => Ok(n),
            Err(ReplayError::Journal(e)) => Err(e.into()),
            Err(ReplayError::Visitor(what)) => Err(ServerError::Corrupt(what)),
        }
    }
}

#[derive(Debug)]
struct FileSnapshots<S: Storage>(S);

impl<S: Storage> SnapshotStore for FileSnapshots<S> {
    fn write_streaming(
        &mut self,
        anchor: Anchor,
        encode: &mut Encode<'_>,
    ) -> Result<String, ServerError> {
        Ok(write_snapshot_streaming(&mut self.0, anchor, encode)?)
    }

    fn prune(&mut self, keep: usize) -> Result<(), ServerError> {
        prune_snapshots(&mut self.0, keep)?;
        Ok(())
    }

    fn mapped(&self, file: &str) -> Option<Result<(gongji_core::SharedBytes, usize), ServerError>> {
        match self.0.map_lazily(file) {
            Ok(bytes @ FileBytes::Mapped(..)) => Some(Ok((
                Arc::new(MappedFile(Arc::new(bytes))),
                gongji_journal::format::SNAPSHOT_HEADER_BYTES,
            ))),
            // A storage that reads files into memory (the fault-injecting one).
            Ok(FileBytes::Read(_)) => None,
            Err(e) => Some(Err(crate::io_err(e))),
        }
    }
}
