//! The snapshot thread: encodes and writes the state the writer froze, while the writer goes
//! on.
//!
//! Once `snapshot_interval_ops` ops have passed since the last snapshot and this thread is
//! free, the writer calls `State::freeze` between two batches (a copy of the chunk tables: the
//! records are shared, copy on write), so the [`Frozen`] state is exactly the one after the
//! last op of the batch just applied. The copy travels with that batch and is handed here only
//! after the batch's sync (by the sync thread, or by the writer when it commits the batch): the snapshot's op is durable before a byte
//! of the snapshot is written. At most one snapshot is frozen or in flight ([`SnapshotGate`]).
//! Chunks the writer changes while a snapshot is being encoded are copied once each; nothing
//! else is.
//!
//! This replaced a shadow state that applied every journaled op a second time (a second copy
//! of everything in memory, and most of a core). Alternatives rejected: pausing the writer to
//! encode (seconds at 10 M persons) and `fork` (a copy of the page tables with every thread
//! but one gone, unsafe with the allocator's and the runtime's locks).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use gongji_core::{Frozen, State};
use gongji_journal::Anchor;

use crate::history::{HistoryDir, SpillTarget, Swap};
use crate::store::SnapshotStore;

use crate::{Counters, ServerError, Shared};

/// Snapshots kept; the journal keeps every segment after the oldest of them.
pub(crate) const SNAPSHOTS_KEPT: usize = 2;

/// A frozen state and the journal head it is the state after.
pub(crate) struct Job {
    pub frozen: Frozen,
    pub head: Anchor,
}

pub(crate) enum Message {
    Write(Job),
    /// Write the full history chunks of this frozen copy of the history columns to files
    /// (between snapshots, so that history leaves the heap soon after its chunk fills).
    Spill(Frozen),
    /// Write this last snapshot, if any, and stop.
    Stop(Option<Job>),
}

pub(crate) type ThreadHandle = JoinHandle<Result<(), ServerError>>;

/// The writer's end: decides when a snapshot is due and freezes the state for it.
pub(crate) struct SnapshotGate {
    interval_ops: u64,
    /// The op of the newest snapshot written or frozen.
    last_op: u64,
    /// A frozen state is on its way or being written: no other is frozen meanwhile (a frozen
    /// state kept alive while the writer goes on costs a copy of every chunk it changes).
    busy: Arc<AtomicBool>,
    /// For frozen copies of the history columns (`spill_history`).
    tx: SyncSender<Message>,
    /// Whether history goes to files.
    history: bool,
}

impl SnapshotGate {
    /// Whether history goes to files and the snapshot thread is free: checked before the
    /// writer takes the state's lock to look for a full chunk.
    pub fn may_spill(&self) -> bool {
        self.history && !self.busy.load(Ordering::Acquire)
    }

    /// When a history chunk is full and the snapshot thread free: hands it a frozen copy of
    /// the history columns to write to files. The thread counts as busy meanwhile, so no
    /// snapshot is frozen to wait behind it.
    pub fn spill_history(&mut self, state: &State) {
        if !self.may_spill() || !state.has_cold_candidates() {
            return;
        }
        self.busy.store(true, Ordering::Release);
        if self
            .tx
            .try_send(Message::Spill(state.freeze_history()))
            .is_err()
        {
            // Not waiting for work (it is finishing the last job): try after the next batch.
            self.busy.store(false, Ordering::Release);
        }
    }

    /// Whether a snapshot is due with the state after `op`, and the snapshot thread is free.
    pub fn due(&self, op: u64) -> bool {
        op.saturating_sub(self.last_op) >= self.interval_ops && !self.busy.load(Ordering::Acquire)
    }

    /// Freezes `state` (call when [`SnapshotGate::due`]); the sync thread hands the copy over
    /// after the sync that makes its op durable. The freeze is timed
    /// (`gongji_snapshot_freeze_seconds`): it is the writer's only pause for snapshots.
    pub fn freeze(&mut self, state: &State, counters: &Counters) -> Frozen {
        let started = Instant::now();
        let frozen = state.freeze();
        let pause = started.elapsed();
        metrics::histogram!("gongji_snapshot_freeze_seconds").record(pause.as_secs_f64());
        self.busy.store(true, Ordering::Release);
        self.last_op = state.op_count();
        let nanos = u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX);
        counters
            .snapshot_freeze_nanos_max
            .fetch_max(nanos, Ordering::Relaxed);
        counters
            .snapshots_frozen_total
            .fetch_add(1, Ordering::Relaxed);
        frozen
    }
}

/// The sync thread's end: hands frozen states over once their op is durable.
pub(crate) struct Snapshots {
    tx: SyncSender<Message>,
    busy: Arc<AtomicBool>,
    /// The op of the newest snapshot written or handed over.
    last_op: u64,
}

impl Snapshots {
    /// Hands over `frozen`, the state after exactly `head`, which is durable.
    pub fn hand(&mut self, frozen: Frozen, head: Anchor) {
        debug_assert_eq!(frozen.op_count(), head.op);
        // The thread is free (the gate froze this only then): the rendezvous waits at most
        // for it to come back to its receive. Gone: it failed, and its error is reported at
        // shutdown; the gate stays closed.
        if self.tx.send(Message::Write(Job { frozen, head })).is_ok() {
            self.last_op = head.op;
        }
    }

    /// Stops the thread, after a last snapshot of a state frozen at `head` when one is given
    /// (a clean stop, where every applied op is durable) and ops have passed since the last.
    pub fn stop(&mut self, last: Option<(Frozen, Anchor)>) {
        let job = last
            .filter(|(_, head)| head.op > self.last_op)
            .map(|(frozen, head)| Job { frozen, head });
        let _ = self.tx.send(Message::Stop(job));
        self.busy.store(true, Ordering::Release);
    }
}

/// Writes the full history chunks of `frozen` to files, makes them cold in `frozen`, and sends
/// them to the writer.
fn spill(frozen: &mut Frozen, shared: &Shared, history: &History) -> Result<(), ServerError> {
    let Some((dir, cold_tx)) = history else {
        return Ok(());
    };
    let made = dir
        .spill(&mut SpillTarget::Frozen(frozen))
        .map_err(ServerError::Corrupt)?;
    if !made.is_empty() {
        shared
            .counters
            .history_chunks_total
            .fetch_add(made.len() as u64, Ordering::Relaxed);
        // The writer may be gone at shutdown: the files stay, and the next start uses them.
        let _ = cold_tx.send(Swap::Chunks(made));
    }
    Ok(())
}

/// Starts the thread; `snapshot_op` is the op of the newest snapshot on disk.
/// History files and where to send the chunks written to them.
pub(crate) type History = Option<(HistoryDir, std::sync::mpsc::Sender<Swap>)>;

pub(crate) fn spawn(
    storage: Box<dyn SnapshotStore>,
    snapshot_op: u64,
    interval_ops: u64,
    shared: Arc<Shared>,
    history: History,
) -> Result<((Snapshots, SnapshotGate), ThreadHandle), ServerError> {
    // A rendezvous: a send succeeds only while the thread waits for work.
    let (tx, rx) = std::sync::mpsc::sync_channel(0);
    let busy = Arc::new(AtomicBool::new(false));
    let thread_busy = busy.clone();
    shared
        .counters
        .snapshot_op
        .store(snapshot_op, Ordering::Release);
    let history_on = history.is_some();
    let thread = std::thread::Builder::new()
        .name("gongji-snapshot".into())
        .spawn(move || run(storage, shared, rx, thread_busy, history))?;
    let gate = SnapshotGate {
        interval_ops: interval_ops.max(1),
        last_op: snapshot_op,
        busy: busy.clone(),
        tx: tx.clone(),
        history: history_on,
    };
    let snapshots = Snapshots {
        tx,
        busy,
        last_op: snapshot_op,
    };
    Ok(((snapshots, gate), thread))
}

fn run(
    mut storage: Box<dyn SnapshotStore>,
    shared: Arc<Shared>,
    rx: Receiver<Message>,
    busy: Arc<AtomicBool>,
    history: History,
) -> Result<(), ServerError> {
    loop {
        match rx.recv().unwrap_or(Message::Stop(None)) {
            Message::Write(job) => {
                write(job, storage.as_mut(), &shared, &history)?;
                // After a failure the gate stays closed: no state is frozen for nothing.
                busy.store(false, Ordering::Release);
            }
            Message::Spill(mut frozen) => {
                spill(&mut frozen, &shared, &history)?;
                busy.store(false, Ordering::Release);
            }
            Message::Stop(job) => {
                if let Some(job) = job {
                    write(job, storage.as_mut(), &shared, &history)?;
                }
                return Ok(());
            }
        }
    }
}

/// Hands the writer the msgid section of the snapshot just written, read from its file, in
/// place of the records it queued up to the freeze (`State::adopt_msgids`): the queue then
/// holds only the records made since the last snapshot, and the window lives in the file.
fn adopt_msgids(
    frozen: &Frozen,
    file: &str,
    encoded: gongji_core::EncodedMsgids,
    storage: &dyn SnapshotStore,
    history: &History,
) -> Result<(), ServerError> {
    let (Some((_, tx)), Some(mapped)) = (history, storage.mapped(file)) else {
        return Ok(());
    };
    let (bytes, body_at) = mapped?;
    let section = frozen
        .msgid_section(bytes, body_at, encoded)
        .map_err(|e| ServerError::Corrupt(format!("snapshot {file} just written: {e}")))?;
    // The writer may be gone at shutdown.
    let _ = tx.send(Swap::Msgids(section));
    Ok(())
}

fn write(
    job: Job,
    storage: &mut dyn SnapshotStore,
    shared: &Shared,
    history: &History,
) -> Result<(), ServerError> {
    let started = Instant::now();
    let Job { mut frozen, head } = job;
    // Full chunks go to history files first; the snapshot then leaves them out.
    spill(&mut frozen, shared, history)?;
    let mut job = Job { frozen, head };
    let mut bytes = 0usize;
    let mut encoded = None;
    // Encoded and written piece by piece: no buffer of the snapshot's size.
    let file = storage.write_streaming(job.head, &mut |sink| {
        encoded = Some(job.frozen.encode_snapshot_releasing(&mut |piece| {
            bytes += piece.len();
            sink(piece);
        }));
    })?;
    let encoded = encoded.expect("the store encoded the snapshot");
    adopt_msgids(&job.frozen, &file, encoded, storage, history)?;
    // The shared chunks go back to the writer alone.
    drop(job.frozen);
    storage.prune(SNAPSHOTS_KEPT)?;
    let previous = shared
        .counters
        .snapshot_op
        .swap(job.head.op, Ordering::AcqRel);
    shared
        .counters
        .snapshot_op_previous
        .store(previous, Ordering::Release);
    shared
        .counters
        .snapshots_written_total
        .fetch_add(1, Ordering::Release);
    tracing::info!(
        file,
        op = job.head.op,
        bytes,
        millis = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    Ok(())
}
