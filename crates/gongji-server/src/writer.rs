//! The writer thread and the sync thread: a two-stage pipeline.
//!
//! ```text
//! writer: queue → batch k+1 → apply → encode ──┐ (hand-off: a rendezvous, one batch in sync)
//! sync:                 batch k → journal append → one write + fdatasync → durable_op → replies
//!                                                → the snapshot frozen after batch k, if any
//! ```
//!
//! The writer applies batch k+1 while the sync thread writes and syncs batch k. A batch's
//! replies leave only after its own sync, and the sync thread takes batches in order, so a
//! reply (a result, a rejection or a replay) never rests on an op that is not durable: every op
//! applied before it is in its sync or an earlier one. A failed append, write or fsync stops the
//! sync thread: that batch and every later one are never acknowledged, and the writer stops at
//! its next hand-off. While the sync thread is busy and the queue has more, the writer keeps
//! adding to the batch it holds (up to `batch_op_count_max`): the batch grows with the sync's
//! time instead of waiting. Within a large batch, when the sync thread is free, the ops applied
//! so far go ahead without their replies (`hand_part`), so that even a single client's batch
//! of 8,190 overlaps its journal write with its own apply.
//!
//! A snapshot is frozen by the writer between two batches (the state after exactly the last op
//! of the batch just applied), carried with that batch, and handed to the snapshot thread by the
//! sync thread only after that batch's sync: its op is durable before a byte of it is written.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gongji_core::codec::encode_op;
use gongji_core::{Command, Frozen, Op, State};

use crate::snapshotter::{SnapshotGate, Snapshots};
use crate::store::{Appended, Log};
use crate::{
    now_unix, Config, LoadSample, Message, ServerError, Shared, Submission, WriteResult,
    LOAD_SAMPLE_COUNT_MAX,
};

/// Most ops applied under one hold of the state's write lock. Reads wait at most this many
/// ops' apply time (under a millisecond), not a whole batch's. What they see is answered only
/// once it is durable (`Engine::durable`).
const LOCKED_OPS_MAX: usize = 256;

/// Fewest ops journaled ahead of their batch's end (`Writer::hand_part`): below it the extra
/// fsync costs more than the overlap gains.
const PART_OPS_MIN: usize = 1024;

pub(crate) type Handles = (
    JoinHandle<Result<(), ServerError>>,
    JoinHandle<Result<(), ServerError>>,
);

/// Starts the writer and the sync thread; returns their handles, writer first.
pub(crate) fn spawn(
    config: Config,
    shared: Arc<Shared>,
    journal: Box<dyn Log>,
    rx: Receiver<Message>,
    (snapshots, gate): (Snapshots, SnapshotGate),
    head_hash: Arc<Mutex<[u8; 32]>>,
) -> Result<Handles, ServerError> {
    // A rendezvous: the writer hands batch k+1 over once the sync thread is done with batch k.
    let (to_sync, from_writer) = std::sync::mpsc::sync_channel(0);
    let mut syncer = Syncer {
        shared: shared.clone(),
        journal,
        snapshots,
        head_hash,
        removed_before: 0,
    };
    let sync_thread = std::thread::Builder::new()
        .name("gongji-sync".into())
        .spawn(move || {
            let result = syncer.run(&from_writer);
            if let Err(e) = &result {
                // A failed write or sync cannot be retried safely: stop, and recover on restart.
                tracing::error!(error = %e, "sync thread stopped; the writer stops");
                syncer.shared.stopped.store(true, Ordering::Release);
                syncer.shared.durable.stop();
                syncer.snapshots.stop(None);
            }
            result
        })?;
    let mut writer = Writer {
        config,
        shared,
        gate,
        to_sync,
        sampled_at: Instant::now(),
    };
    let writer_thread = std::thread::Builder::new()
        .name("gongji-writer".into())
        .spawn(move || {
            let result = writer.run(&rx);
            writer.shared.stopped.store(true, Ordering::Release);
            result
        })?;
    Ok((writer_thread, sync_thread))
}

/// One batch on its way from the writer to the sync thread.
struct Batch {
    /// The encoded ops to journal, back to back, with `(time, length)` of each.
    records: Vec<u8>,
    spans: Vec<(i64, u32)>,
    /// The state's op count after the batch: the journal's head once it is synced.
    last_op: u64,
    /// The submissions and their results, released after the sync.
    replies: Vec<(Submission, Vec<WriteResult>)>,
    /// Ops taken from the queue (applied, rejected or replayed).
    queued_ops: usize,
    /// The state after `last_op`, frozen for a snapshot.
    frozen: Option<Frozen>,
    started: Instant,
}

impl Batch {
    fn new(last_op: u64) -> Batch {
        Batch {
            records: Vec::new(),
            spans: Vec::new(),
            last_op,
            replies: Vec::new(),
            queued_ops: 0,
            frozen: None,
            started: Instant::now(),
        }
    }

    fn push(&mut self, op: &Op) {
        let before = self.records.len();
        encode_op(op, &mut self.records);
        let len = u32::try_from(self.records.len() - before).expect("an op is under 4 GiB");
        self.spans.push((op.time(), len));
    }
}

enum ToSync {
    Batch(Batch),
    /// A clean stop: every batch before was handed over; the state after the last applied op
    /// is given for a final snapshot.
    Stop(Frozen),
}

struct Writer {
    config: Config,
    shared: Arc<Shared>,
    gate: SnapshotGate,
    to_sync: SyncSender<ToSync>,
    /// When the last load sample was taken.
    sampled_at: Instant,
}

/// The sync thread stopped (it reports its own error); the writer stops too.
struct SyncGone;

impl Writer {
    fn run(&mut self, rx: &Receiver<Message>) -> Result<(), ServerError> {
        let idle = Duration::from_secs(self.config.idle_tick_seconds.max(1));
        loop {
            let first = match rx.recv_timeout(idle) {
                Ok(Message::Write(submission)) => submission,
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return self.stop(),
                Err(RecvTimeoutError::Timeout) => {
                    if self.idle_tick().is_err() {
                        return Ok(());
                    }
                    self.sample_load();
                    continue;
                }
            };
            let mut batch = Batch::new(0);
            let mut stop = false;
            let mut taken = vec![first];
            loop {
                // Take what is queued, up to the batch's maximum, then apply it.
                while batch.queued_ops + count(&taken) < self.config.batch_op_count_max {
                    match rx.try_recv() {
                        Ok(Message::Write(submission)) => taken.push(submission),
                        Ok(Message::Stop) => {
                            stop = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                self.apply(&mut batch, std::mem::take(&mut taken));
                let full = batch.queued_ops >= self.config.batch_op_count_max;
                if stop || full || self.gate.due(batch.last_op) {
                    break;
                }
                // While the sync thread is busy, a batch with room grows from the queue.
                match self.to_sync.try_send(ToSync::Batch(batch)) {
                    Ok(()) => {
                        batch = Batch::new(0);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => return Ok(()),
                    Err(TrySendError::Full(ToSync::Batch(back))) => batch = back,
                    Err(TrySendError::Full(ToSync::Stop(_))) => unreachable!("a batch was sent"),
                }
                match rx.try_recv() {
                    Ok(Message::Write(submission)) => taken.push(submission),
                    Ok(Message::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if !batch.replies.is_empty() && self.hand_over(batch).is_err() {
                return Ok(());
            }
            self.sample_load();
            if stop {
                return self.stop();
            }
        }
    }

    /// Freezes the state for a snapshot when one is due, and hands the batch to the sync
    /// thread, waiting while it syncs the previous one.
    fn hand_over(&mut self, mut batch: Batch) -> Result<(), SyncGone> {
        if self.gate.due(batch.last_op) {
            let state = self.shared.state.read().expect("state lock");
            batch.frozen = Some(self.gate.freeze(&state, &self.shared.counters));
        }
        self.to_sync
            .send(ToSync::Batch(batch))
            .map_err(|_| SyncGone)
    }

    /// A clean stop: the sync thread syncs what it holds, then writes a last snapshot.
    fn stop(&mut self) -> Result<(), ServerError> {
        let frozen = self.shared.state.read().expect("state lock").freeze();
        let _ = self.to_sync.send(ToSync::Stop(frozen));
        Ok(())
    }

    /// Applies submissions into `batch`, encoding the ops to journal.
    fn apply(&mut self, batch: &mut Batch, submissions: Vec<Submission>) {
        let shared = self.shared.clone();
        let mut state = shared.state.write().expect("state lock");
        let mut locked_ops = 0;
        for submission in submissions {
            let mut replies = Vec::with_capacity(submission.requests.len());
            for request in &submission.requests {
                if locked_ops == LOCKED_OPS_MAX {
                    // Let waiting reads in between chunks of the batch.
                    let applied = state.op_count();
                    self.shared.durable.set_applied(applied, Ordering::Release);
                    drop(state);
                    self.hand_part(batch, applied);
                    std::thread::yield_now();
                    state = shared.state.write().expect("state lock");
                    locked_ops = 0;
                }
                locked_ops += 1;
                let time = request
                    .inf_time
                    .unwrap_or_else(|| now_unix().max(state.clock()));
                let op = Op::Write(Command {
                    msgid: request.msgid,
                    time,
                    actor: request.actor.clone(),
                    body: request.body.clone(),
                });
                let result = state.apply(&op);
                if matches!(result, Ok(ref a) if !a.replayed) {
                    batch.push(&op);
                }
                replies.push(result);
            }
            batch.queued_ops += submission.requests.len();
            batch.replies.push((submission, replies));
        }
        batch.last_op = state.op_count();
        self.shared
            .durable
            .set_applied(batch.last_op, Ordering::Release);
    }

    /// Between two chunks of a large batch, when the sync thread is free, hands it the ops
    /// journaled so far (up to `applied`) without replies: their write and fsync overlap the
    /// apply of the rest, even when one submission is the whole batch. The replies still leave
    /// after the batch's last sync; a crash in between keeps a prefix, as a batch that outgrows
    /// the journal's buffer always could.
    fn hand_part(&mut self, batch: &mut Batch, applied: u64) {
        if batch.spans.len() < PART_OPS_MIN {
            return;
        }
        let part = Batch {
            records: std::mem::take(&mut batch.records),
            spans: std::mem::take(&mut batch.spans),
            last_op: applied,
            replies: Vec::new(),
            queued_ops: 0,
            frozen: None,
            started: batch.started,
        };
        match self.to_sync.try_send(ToSync::Batch(part)) {
            Ok(()) => {}
            // Busy (or gone: the hand-off of the whole batch finds out): keep them.
            Err(TrySendError::Full(ToSync::Batch(back)))
            | Err(TrySendError::Disconnected(ToSync::Batch(back))) => {
                batch.records = back.records;
                batch.spans = back.spans;
            }
            Err(_) => unreachable!("a batch was sent"),
        }
    }

    /// Records a [`LoadSample`] once `load_sample_seconds` have passed since the last: one
    /// clock read per batch, and the writer wakes at least once a second when idle.
    fn sample_load(&mut self) {
        if self.sampled_at.elapsed() < Duration::from_secs(self.config.load_sample_seconds) {
            return;
        }
        self.sampled_at = Instant::now();
        let c = &self.shared.counters;
        let sample = LoadSample {
            unix_time: now_unix(),
            ops_applied_total: c.ops_applied_total.load(Ordering::Relaxed),
            ops_rejected_total: c.ops_rejected_total.load(Ordering::Relaxed),
            batches_total: c.batches_total.load(Ordering::Relaxed),
            sync_nanos_total: c.sync_nanos_total.load(Ordering::Relaxed),
            batch_nanos_max: c.batch_nanos_max.swap(0, Ordering::Relaxed),
        };
        let mut load = self.shared.load.lock().expect("load lock");
        if load.len() == LOAD_SAMPLE_COUNT_MAX {
            load.pop_front();
        }
        load.push_back(sample);
    }

    /// With no writes for a while, the clock follows the writer's own time, so that pending
    /// wallet transfers expire while the server is idle.
    fn idle_tick(&mut self) -> Result<(), SyncGone> {
        let mut batch = Batch::new(0);
        {
            let shared = self.shared.clone();
            let mut state = shared.state.write().expect("state lock");
            let now = now_unix();
            if now <= state.clock() {
                return Ok(());
            }
            let op = Op::Tick { time: now };
            apply_tick(&mut state, &op);
            batch.push(&op);
            batch.last_op = state.op_count();
            self.shared
                .durable
                .set_applied(batch.last_op, Ordering::Release);
        }
        self.hand_over(batch)
    }
}

fn count(submissions: &[Submission]) -> usize {
    submissions.iter().map(|s| s.requests.len()).sum()
}

fn apply_tick(state: &mut State, op: &Op) {
    state
        .apply(op)
        .expect("a tick at or after the clock applies");
}

struct Syncer {
    shared: Arc<Shared>,
    journal: Box<dyn Log>,
    snapshots: Snapshots,
    head_hash: Arc<Mutex<[u8; 32]>>,
    removed_before: u64,
}

impl Syncer {
    fn run(&mut self, rx: &Receiver<ToSync>) -> Result<(), ServerError> {
        loop {
            match rx.recv() {
                Ok(ToSync::Batch(batch)) => self.commit(batch)?,
                Ok(ToSync::Stop(frozen)) => {
                    // Every applied op is durable now: a last snapshot of the state saves the
                    // next start a replay.
                    let head = self.journal.head();
                    let last = (frozen.op_count() == head.op).then_some((frozen, head));
                    self.snapshots.stop(last);
                    return Ok(());
                }
                // The writer stopped without a clean stop (it saw this thread gone): nothing
                // more to sync.
                Err(_) => {
                    self.snapshots.stop(None);
                    return Ok(());
                }
            }
        }
    }

    /// Journals a batch with one sync (more when it outgrows the journal's buffer), publishes
    /// its last op as durable, releases its replies, then hands over its snapshot, if any.
    fn commit(&mut self, batch: Batch) -> Result<(), ServerError> {
        let mut at = 0usize;
        for &(time, len) in &batch.spans {
            let body = &batch.records[at..at + len as usize];
            at += len as usize;
            self.append(time, body)?;
        }
        let appended = batch.spans.len() as u64;
        if appended > 0 {
            self.sync()?;
        }
        let head = self.journal.head();
        if head.op != batch.last_op {
            return Err(ServerError::Corrupt(format!(
                "the writer applied up to op {} but the journal's head is op {}",
                batch.last_op, head.op
            )));
        }
        self.shared.durable.publish(head.op);
        let c = &self.shared.counters;
        c.batches_total.fetch_add(1, Ordering::Relaxed);
        c.ops_applied_total.fetch_add(appended, Ordering::Relaxed);
        c.ops_rejected_total.fetch_add(
            (batch.queued_ops as u64).saturating_sub(appended),
            Ordering::Relaxed,
        );
        c.queue_ops.fetch_sub(batch.queued_ops, Ordering::AcqRel);
        if batch.queued_ops > 0 {
            metrics::histogram!("gongji_batch_ops").record(batch.queued_ops as f64);
        }
        for (submission, replies) in batch.replies {
            // A client that went away does not stop the others.
            let _ = submission.reply.send(replies);
        }
        let nanos = u64::try_from(batch.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        c.batch_nanos_max.fetch_max(nanos, Ordering::Relaxed);
        if let Some(frozen) = batch.frozen {
            // Frozen after exactly this batch's last op, which is durable now.
            self.snapshots.hand(frozen, head);
        }
        let previous = c.snapshot_op_previous.load(Ordering::Acquire);
        if previous > self.removed_before {
            self.journal.remove_before(previous + 1)?;
            self.removed_before = previous;
        }
        Ok(())
    }

    fn append(&mut self, time: i64, body: &[u8]) -> Result<(), ServerError> {
        if self.journal.append(time, body)? == Appended::BatchFull {
            // A batch of large ops (crediting batches) outgrew the journal's buffer: make
            // what is buffered durable now; the replies still wait for the final sync.
            self.sync()?;
            if self.journal.append(time, body)? == Appended::BatchFull {
                return Err(ServerError::Corrupt(format!(
                    "an op of {} bytes does not fit an empty batch",
                    body.len()
                )));
            }
        }
        Ok(())
    }

    /// One write and one sync for everything appended.
    fn sync(&mut self) -> Result<(), ServerError> {
        let started = Instant::now();
        let bytes_written = self.journal.sync()?;
        let nanos = started.elapsed().as_nanos() as u64;
        metrics::histogram!("gongji_fsync_seconds").record(nanos as f64 / 1e9);
        let c = &self.shared.counters;
        c.sync_nanos_total.fetch_add(nanos, Ordering::Relaxed);
        c.journal_bytes_total
            .fetch_add(bytes_written, Ordering::Relaxed);
        let head = self.journal.head();
        c.journal_head_op.store(head.op, Ordering::Release);
        *self.head_hash.lock().expect("head hash lock") = head.chain_hash;
        Ok(())
    }
}
