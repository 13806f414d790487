//! The snapshot thread: encodes and writes the state the writer froze, while the writer goes
//! on.
//!
//! After the sync of a batch, once `snapshot_interval_ops` ops have passed since the last
//! snapshot, the writer calls `State::freeze` (a copy of the chunk tables: the records are
//! shared, copy on write) and hands the [`Frozen`] state here; this thread encodes it and
//! writes it. At most one snapshot is in flight: the hand-off is a rendezvous, and a writer
//! that finds this thread busy tries again after its next batch. Chunks the writer changes
//! while a snapshot is being encoded are copied once each; nothing else is.
//!
//! This replaced a shadow state that applied every journaled op a second time (a second copy
//! of everything in memory, and most of a core). Alternatives rejected: pausing the writer to
//! encode (seconds at 10 M persons) and `fork` (a copy of the page tables with every thread
//! but one gone, unsafe with the allocator's and the runtime's locks).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use gongji_core::{Frozen, State};
use gongji_journal::Anchor;

use crate::history::{HistoryDir, Made, SpillTarget};
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

/// The writer's end: decides when a snapshot is due and hands it over.
pub(crate) struct Snapshots {
    tx: SyncSender<Message>,
    interval_ops: u64,
    /// The op of the newest snapshot written or handed over.
    last_op: u64,
    /// Whether history goes to files.
    history: bool,
}

impl Snapshots {
    /// Whether a snapshot is due after the sync that made `head_op` durable.
    pub fn due(&self, head_op: u64) -> bool {
        head_op.saturating_sub(self.last_op) >= self.interval_ops
    }

    /// After a sync that made `head` durable, with `state` exactly the state after `head`:
    /// hands a frozen copy over if the thread is free (call when [`Snapshots::due`]). The freeze is
    /// timed (`gongji_snapshot_freeze_seconds`): it is the writer's only pause for snapshots.
    pub fn after_sync(&mut self, state: &State, head: Anchor, counters: &Counters) {
        let started = Instant::now();
        let frozen = state.freeze();
        let pause = started.elapsed();
        metrics::histogram!("gongji_snapshot_freeze_seconds").record(pause.as_secs_f64());
        match self.tx.try_send(Message::Write(Job { frozen, head })) {
            Ok(()) => {
                self.last_op = head.op;
                let nanos = u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX);
                counters
                    .snapshot_freeze_nanos_max
                    .fetch_max(nanos, Ordering::Relaxed);
                counters
                    .snapshots_frozen_total
                    .fetch_add(1, Ordering::Relaxed);
            }
            // Busy with the previous one: try again after the next batch. Gone: it failed,
            // and its error is reported at shutdown.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
    }

    /// After a sync, when no snapshot is due and a history chunk is full: hands the thread a
    /// frozen copy of the history columns to write to files, if it is free.
    pub fn spill_history(&mut self, state: &State) {
        if self.history && state.has_cold_candidates() {
            // Busy (a snapshot, or the last spill): the next sync tries again.
            let _ = self.tx.try_send(Message::Spill(state.freeze_history()));
        }
    }

    /// Stops the thread, after a last snapshot of a state frozen at `head` when one is given
    /// (a clean stop, where every applied op is durable) and ops have passed since the last.
    pub fn stop(&mut self, last: Option<(Frozen, Anchor)>) {
        let job = last
            .filter(|(_, head)| head.op > self.last_op)
            .map(|(frozen, head)| Job { frozen, head });
        let _ = self.tx.send(Message::Stop(job));
    }
}

/// Writes the full history chunks of `frozen` to files (every op in them is durable: it was
/// frozen after a sync), makes them cold in `frozen`, and sends them to the writer.
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
        let _ = cold_tx.send(made);
    }
    Ok(())
}

/// Starts the thread; `snapshot_op` is the op of the newest snapshot on disk.
/// History files and where to send the chunks written to them.
pub(crate) type History = Option<(HistoryDir, std::sync::mpsc::Sender<Made>)>;

pub(crate) fn spawn(
    storage: Box<dyn SnapshotStore>,
    snapshot_op: u64,
    interval_ops: u64,
    shared: Arc<Shared>,
    history: History,
) -> Result<(Snapshots, ThreadHandle), ServerError> {
    // A rendezvous: a send succeeds only while the thread waits for work.
    let (tx, rx) = std::sync::mpsc::sync_channel(0);
    shared
        .counters
        .snapshot_op
        .store(snapshot_op, Ordering::Release);
    let history_on = history.is_some();
    let thread = std::thread::Builder::new()
        .name("gongji-snapshot".into())
        .spawn(move || run(storage, shared, rx, history))?;
    let snapshots = Snapshots {
        tx,
        interval_ops: interval_ops.max(1),
        last_op: snapshot_op,
        history: history_on,
    };
    Ok((snapshots, thread))
}

fn run(
    mut storage: Box<dyn SnapshotStore>,
    shared: Arc<Shared>,
    rx: Receiver<Message>,
    history: History,
) -> Result<(), ServerError> {
    loop {
        match rx.recv().unwrap_or(Message::Stop(None)) {
            Message::Write(job) => write(job, storage.as_mut(), &shared, &history)?,
            Message::Spill(mut frozen) => spill(&mut frozen, &shared, &history)?,
            Message::Stop(job) => {
                if let Some(job) = job {
                    write(job, storage.as_mut(), &shared, &history)?;
                }
                return Ok(());
            }
        }
    }
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
    let job = Job { frozen, head };
    let mut bytes = 0usize;
    // Encoded and written piece by piece: no buffer of the snapshot's size.
    let file = storage.write_streaming(job.head, &mut |sink| {
        job.frozen.encode_snapshot_streaming(&mut |piece| {
            bytes += piece.len();
            sink(piece);
        });
    })?;
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
    tracing::info!(
        file,
        op = job.head.op,
        bytes,
        millis = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    Ok(())
}
