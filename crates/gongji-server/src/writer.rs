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
//! of 8,190 overlaps its journal write with its own apply. When nothing is queued behind a
//! batch, or it journals fewer than `Config::pipeline_ops_min` ops, and the sync thread is
//! idle, the writer commits the batch itself, as before the pipeline, sparing the hand-off's
//! two thread wake-ups (on two shared cores they cost single-settlement HTTP load most of its
//! rate).
//!
//! A snapshot is frozen by the writer between two batches (the state after exactly the last op
//! of the batch just applied), carried with that batch, and handed to the snapshot thread only
//! after that batch's sync (by whichever thread commits it): its op is durable before a byte of
//! it is written.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gongji_core::codec::encode_op;
use gongji_core::federation::codec::encode_entry;
use gongji_core::federation::{Entry, EntryApplied, EntryReply, FedOp, Message as FedMessage};
use gongji_core::views::StatsCopy;
use gongji_core::{Applied, Command, Frozen, Op, Rejection, State};

use crate::history::Swap;
use crate::snapshotter::{SnapshotGate, Snapshots};
use crate::store::{Appended, Log};
use crate::{
    now_unix, Config, FedResult, LoadSample, Message, ServerError, Shared, Submission, WriteResult,
    FED_SENDS_MAX, LOAD_SAMPLE_COUNT_MAX,
};

/// Most ops applied under one hold of the state's write lock. Reads wait at most this many
/// ops' apply time (about 0.1 ms), not a whole batch's, unless the scheduler preempts the
/// writer while it holds the lock (see `apply`). What they see is answered only once it is
/// durable (`Engine::durable`). 64 rather than 256: with the yield below, the person read's
/// p99 at full load went from 11–12 ms to 5.5 ms, throughput unchanged (DECISIONS.md).
const LOCKED_OPS_MAX: usize = 64;

/// Fewest ops applied under one hold before the writer lets a read in that waits on its CPU
/// (`readgate`): that read waits for at most these (about 16 µs), and a stream of reads costs
/// the writer a hand-off per this many ops at most.
const LOCKED_OPS_MIN: usize = 8;

/// Adopted msgid records dropped from the queue per batch (a quarter of a millisecond).
const ADOPTED_DRAIN_MAX: usize = 8_192;

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
    cold_rx: Option<Receiver<Swap>>,
) -> Result<Handles, ServerError> {
    // Person reads are answered as of the last durable op from here on (`seal`).
    shared.state.write().keep_priors();
    // A rendezvous: the writer hands batch k+1 over once the sync thread is done with batch k.
    let (to_sync, from_writer) = std::sync::mpsc::sync_channel(0);
    let syncer = Arc::new(Mutex::new(Syncer {
        shared: shared.clone(),
        journal,
        snapshots,
        head_hash,
        keep_journal: cold_rx.is_some(),
        removed_before: 0,
        next_seq: 0,
        failed: false,
    }));
    let sync_thread = {
        let syncer = syncer.clone();
        std::thread::Builder::new()
            .name("gongji-sync".into())
            .spawn(move || sync_thread(&syncer, &from_writer))?
    };
    let mut writer = Writer {
        config,
        shared,
        gate,
        to_sync,
        syncer,
        next_seq: 0,
        peeked: None,
        sampled_at: Instant::now(),
        cold_rx,
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
    /// Batches are committed in the order the writer numbered them.
    seq: u64,
    /// The encoded ops to journal, back to back, with `(time, length)` of each.
    records: Vec<u8>,
    spans: Vec<(i64, u32)>,
    /// The state's op count after the batch: the journal's head once it is synced.
    last_op: u64,
    /// The submissions and their results, released after the sync.
    replies: Vec<Replies>,
    /// Federation messages the batch's ops released (and the stored answers its duplicates
    /// asked for), handed to the relay after the sync.
    sends: Vec<FedMessage>,
    /// Ops taken from the queue (applied, rejected or replayed).
    queued_ops: usize,
    /// The state after `last_op`, frozen for a snapshot.
    frozen: Option<Frozen>,
    /// The statistics after `last_op`, published for reads once it is durable (a part sent
    /// ahead of its batch has none: the reads keep the previous batch's).
    stats: Option<StatsCopy>,
    started: Instant,
}

impl Batch {
    fn new(last_op: u64) -> Batch {
        Batch {
            seq: 0,
            records: Vec::new(),
            spans: Vec::new(),
            last_op,
            replies: Vec::new(),
            sends: Vec::new(),
            queued_ops: 0,
            frozen: None,
            stats: None,
            started: Instant::now(),
        }
    }

    /// Journals a federation op (a core op of a federated journal is [`Batch::push`]ed: the
    /// same bytes).
    fn push_fed(&mut self, op: &FedOp) {
        let before = self.records.len();
        encode_entry(&Entry::Fed(op.clone()), &mut self.records);
        let len = u32::try_from(self.records.len() - before).expect("an op is under 4 GiB");
        self.spans.push((op.time(), len));
    }

    fn push(&mut self, op: &Op) {
        let before = self.records.len();
        encode_op(op, &mut self.records);
        let len = u32::try_from(self.records.len() - before).expect("an op is under 4 GiB");
        self.spans.push((op.time(), len));
    }
}

/// A submission's results, released after its batch's sync.
enum Replies {
    Core(
        tokio::sync::oneshot::Sender<Vec<WriteResult>>,
        Vec<WriteResult>,
    ),
    Fed(tokio::sync::oneshot::Sender<Vec<FedResult>>, Vec<FedResult>),
}

impl Replies {
    fn send(self) {
        // A client that went away does not stop the others.
        match self {
            Replies::Core(tx, results) => {
                let _ = tx.send(results);
            }
            Replies::Fed(tx, results) => {
                let _ = tx.send(results);
            }
        }
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
    /// The journal's side, shared with the sync thread: the writer commits a batch itself
    /// when the queue is empty and the sync thread idle (no hand-off, no wake-up).
    syncer: Arc<Mutex<Syncer>>,
    /// The number of the next batch handed over or committed.
    next_seq: u64,
    /// A message taken from the queue to see whether it was empty.
    peeked: Option<Message>,
    /// When the last load sample was taken.
    sampled_at: Instant,
    /// History chunks the snapshot thread wrote to files (with history files).
    cold_rx: Option<Receiver<Swap>>,
}

/// What [`Writer::try_send`] did.
enum Tried {
    Sent,
    /// The sync thread is busy: the batch, back.
    Busy(Box<Batch>),
    /// The sync thread is gone.
    Gone,
}

/// Why the writer stops after a hand-off.
enum Halt {
    /// The sync thread stopped (it reports its own error).
    SyncGone,
    /// The writer's own commit failed.
    Failed(ServerError),
}

impl Halt {
    fn result(self) -> Result<(), ServerError> {
        match self {
            Halt::SyncGone => Ok(()),
            Halt::Failed(e) => Err(e),
        }
    }
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Message>) -> Result<(), ServerError> {
        let idle = Duration::from_secs(self.config.idle_tick_seconds.max(1));
        loop {
            let next = match self.peeked.take() {
                Some(message) => Ok(message),
                None => rx.recv_timeout(idle),
            };
            let first = match next {
                Ok(Message::Write(submission)) => submission,
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return self.stop(),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(halt) = self.idle_tick() {
                        return halt.result();
                    }
                    self.history();
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
                // Queue empty: nothing to overlap; the batch is committed (by the writer if
                // the sync thread is idle).
                let Ok(message) = rx.try_recv() else {
                    break;
                };
                if batch.spans.len() < self.config.pipeline_ops_min {
                    // A small batch: committing it here costs less than the hand-off's two
                    // wake-ups; what is queued makes the next batch.
                    self.peeked = Some(message);
                    break;
                }
                // More is queued: the sync thread takes this batch if it is free, and the
                // writer goes on with the next; if it is busy, the batch grows.
                match self.try_send(batch) {
                    Tried::Sent => {
                        self.peeked = Some(message);
                        batch = Batch::new(0);
                        break;
                    }
                    Tried::Busy(back) => batch = *back,
                    Tried::Gone => return Ok(()),
                }
                match message {
                    Message::Write(submission) => taken.push(submission),
                    Message::Stop => {
                        stop = true;
                        break;
                    }
                }
            }
            if !batch.replies.is_empty() {
                if self.peeked.is_none() && !stop {
                    self.peeked = rx.try_recv().ok();
                }
                // Committed here when nothing is queued behind it or it is small; else the
                // sync thread takes it and the writer goes on with the next.
                let inline =
                    self.peeked.is_none() || batch.spans.len() < self.config.pipeline_ops_min;
                if let Err(halt) = self.hand_over(batch, inline) {
                    return halt.result();
                }
            }
            self.history();
            self.sample_load();
            if stop {
                return self.stop();
            }
        }
    }

    /// Between batches: swaps the chunks the snapshot thread wrote to history files out of
    /// the state (the same records, now read from the files; the heap copy is freed), then, if
    /// a history chunk is full and the snapshot thread free, hands it a frozen copy of the
    /// history columns to write. A file may hold records of ops not yet durable: a snapshot
    /// refers to it only once the ops before the snapshot are durable, and after a crash the
    /// chunk is written again from the replayed ops.
    fn history(&mut self) {
        let Some(cold_rx) = &self.cold_rx else {
            return;
        };
        if let Ok(first) = cold_rx.try_recv() {
            let mut state = self.shared.state.write();
            let mut swapped = 0;
            for swap in std::iter::once(first).chain(cold_rx.try_iter()) {
                let made = match swap {
                    Swap::Chunks(made) => made,
                    Swap::Msgids(section) => {
                        state.adopt_msgids(section);
                        continue;
                    }
                };
                for (column, k, bytes) in made {
                    match state.make_cold(column, k, bytes) {
                        Ok(()) => swapped += 1,
                        // Never expected: the chunk stays on the heap, which is still correct.
                        Err(e) => tracing::error!(error = %e, "a history chunk could not go cold"),
                    }
                }
            }
            self.shared
                .counters
                .history_chunks_swapped_total
                .fetch_add(swapped, Ordering::Relaxed);
        }
        if self.gate.may_spill() {
            let state = self.shared.state.read();
            self.gate.spill_history(&state);
        }
    }

    /// Hands a batch to the sync thread if it waits for one; gives it back if it is busy.
    fn try_send(&mut self, mut batch: Batch) -> Tried {
        batch.seq = self.next_seq;
        match self.to_sync.try_send(ToSync::Batch(batch)) {
            Ok(()) => {
                self.next_seq += 1;
                Tried::Sent
            }
            Err(TrySendError::Full(ToSync::Batch(back))) => Tried::Busy(Box::new(back)),
            Err(TrySendError::Disconnected(_)) => Tried::Gone,
            Err(TrySendError::Full(ToSync::Stop(_))) => unreachable!("a batch was sent"),
        }
    }

    /// Freezes the state for a snapshot when one is due, then commits the batch: on this
    /// thread when `inline` (nothing queued behind it) and the sync thread is idle with every
    /// earlier batch done, else by handing it over, waiting while the previous one syncs.
    fn hand_over(&mut self, mut batch: Batch, inline: bool) -> Result<(), Halt> {
        if self.gate.due(batch.last_op) {
            let state = self.shared.state.read();
            batch.frozen = Some(self.gate.freeze(&state, &self.shared.counters));
        }
        batch.seq = self.next_seq;
        self.next_seq += 1;
        if inline {
            if let Ok(mut syncer) = self.syncer.try_lock() {
                if syncer.next_seq == batch.seq && !syncer.failed {
                    return syncer.commit(batch).map_err(|e| {
                        syncer.fail(&e);
                        Halt::Failed(e)
                    });
                }
            }
        }
        self.to_sync
            .send(ToSync::Batch(batch))
            .map_err(|_| Halt::SyncGone)
    }

    /// A clean stop: the sync thread syncs what it holds, then writes a last snapshot.
    fn stop(&mut self) -> Result<(), ServerError> {
        let frozen = self.shared.state.read().freeze();
        let _ = self.to_sync.send(ToSync::Stop(frozen));
        Ok(())
    }

    /// Applies submissions into `batch`, encoding the ops to journal.
    fn apply(&mut self, batch: &mut Batch, submissions: Vec<Submission>) {
        let shared = self.shared.clone();
        let mut state = shared.state.write();
        // Msgid records a snapshot's section now holds leave the queue a slice per batch.
        state.drain_adopted_msgids(ADOPTED_DRAIN_MAX);
        let mut locked_ops = 0;
        for submission in submissions {
            let (requests, reply) = match submission {
                Submission::Core { requests, reply } => (requests, reply),
                Submission::Fed { requests, reply } => {
                    let mut replies = Vec::with_capacity(requests.len());
                    for request in &requests {
                        let time = request
                            .inf_time
                            .unwrap_or_else(|| now_unix().max(state.clock()));
                        let mut op = request.op.clone();
                        op.set_time(time);
                        let result = state.apply_fed(&op);
                        if let Ok(applied) = &result {
                            if !applied.replayed {
                                batch.push_fed(&op);
                            }
                            batch.sends.extend(applied.send.iter().cloned());
                        }
                        replies.push(result);
                    }
                    locked_ops += requests.len();
                    batch.queued_ops += requests.len();
                    batch.replies.push(Replies::Fed(reply, replies));
                    continue;
                }
            };
            let mut replies = Vec::with_capacity(requests.len());
            for request in &requests {
                if locked_ops == LOCKED_OPS_MAX
                    || locked_ops >= LOCKED_OPS_MIN && shared.read_gate.wanted()
                {
                    // Let waiting reads in between chunks of the batch, or sooner when one
                    // waits on its CPU (`readgate`): a fair unlock hands the lock to parked
                    // ones, where a plain one lets this thread take it back before a woken
                    // read has run (on a busy machine, chunk after chunk).
                    let applied = state.op_count();
                    // Handed over under the lock, so that no read sees the part durable
                    // before the state is sealed where it ends.
                    if self.hand_part(batch, applied) {
                        seal(&mut state, &shared);
                    }
                    self.shared.durable.set_applied(applied, Ordering::Release);
                    parking_lot::RwLockWriteGuard::unlock_fair(state);
                    shared.read_gate.let_in();
                    // Give the CPU up here, not holding the lock, so that the scheduler's
                    // next preemption of this busy thread tends to fall between chunks
                    // rather than inside one, where every read would wait for its return
                    // (lock-holder preemption: DECISIONS.md). A system call per 64 ops.
                    std::thread::yield_now();
                    state = shared.state.write();
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
                let result = if self.shared.federated {
                    apply_federated(&mut state, op.clone(), &mut batch.sends)
                } else {
                    state.apply(&op)
                };
                if matches!(result, Ok(ref a) if !a.replayed) {
                    batch.push(&op);
                }
                replies.push(result);
            }
            batch.queued_ops += requests.len();
            batch.replies.push(Replies::Core(reply, replies));
        }
        batch.last_op = state.op_count();
        batch.stats = Some(state.stats_copy());
        seal(&mut state, &shared);
        self.shared
            .durable
            .set_applied(batch.last_op, Ordering::Release);
    }

    /// Between two chunks of a large batch, when the sync thread is free, hands it the ops
    /// journaled so far (up to `applied`) without replies (returns whether it did): their
    /// write and fsync overlap the apply of the rest, even when one submission is the whole
    /// batch. The replies still leave after the batch's last sync; a crash in between keeps a
    /// prefix, as a batch that outgrows the journal's buffer always could.
    fn hand_part(&mut self, batch: &mut Batch, applied: u64) -> bool {
        if batch.spans.len() < self.config.pipeline_ops_min {
            return false;
        }
        let part = Batch {
            seq: 0,
            records: std::mem::take(&mut batch.records),
            spans: std::mem::take(&mut batch.spans),
            last_op: applied,
            replies: Vec::new(),
            sends: Vec::new(),
            queued_ops: 0,
            frozen: None,
            stats: None,
            started: batch.started,
        };
        // Busy: keep them (gone: the hand-off of the whole batch finds out).
        match self.try_send(part) {
            Tried::Busy(back) => {
                batch.records = back.records;
                batch.spans = back.spans;
                false
            }
            Tried::Sent => true,
            Tried::Gone => false,
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
    fn idle_tick(&mut self) -> Result<(), Halt> {
        let mut batch = Batch::new(0);
        {
            let shared = self.shared.clone();
            let mut state = shared.state.write();
            let now = now_unix();
            if now <= state.clock() {
                return Ok(());
            }
            let op = Op::Tick { time: now };
            if self.shared.federated {
                // Time passing closes incoming exchanges due (06:00 expiry): their outcomes
                // go to the senders once the tick is durable.
                apply_federated(&mut state, op.clone(), &mut batch.sends)
                    .expect("a tick at or after the clock applies");
            } else {
                apply_tick(&mut state, &op);
            }
            batch.push(&op);
            batch.last_op = state.op_count();
            batch.stats = Some(state.stats_copy());
            seal(&mut state, &shared);
            self.shared
                .durable
                .set_applied(batch.last_op, Ordering::Release);
        }
        self.hand_over(batch, true)
    }
}

/// Where the ops applied so far may become durable together (a batch, or the part of one
/// handed to the sync): the state's priors start a segment here, so that a person can be
/// answered as of this op once it is durable (`State::person_as_of`), and the segments
/// already durable are dropped.
fn seal(state: &mut State, shared: &Shared) {
    state.seal_priors();
    state.drop_priors(shared.durable.op.load(Ordering::Acquire));
}

fn count(submissions: &[Submission]) -> usize {
    submissions.iter().map(Submission::len).sum()
}

/// A core op on a federated state: the federation's guards first, and the outcomes of the
/// incoming exchanges it closed (by the time it carries) into `sends`.
fn apply_federated(
    state: &mut State,
    op: Op,
    sends: &mut Vec<FedMessage>,
) -> Result<Applied, Rejection> {
    let EntryApplied {
        reply,
        replayed,
        send,
    } = state.apply_entry(&Entry::Core(op))?;
    sends.extend(send);
    let EntryReply::Core(reply) = reply else {
        unreachable!("a core op answers a core reply")
    };
    Ok(Applied { reply, replayed })
}

fn apply_tick(state: &mut State, op: &Op) {
    state
        .apply(op)
        .expect("a tick at or after the clock applies");
}

/// The journal's side of the pipeline: the sync thread's, and the writer's when it commits a
/// batch itself.
struct Syncer {
    shared: Arc<Shared>,
    journal: Box<dyn Log>,
    snapshots: Snapshots,
    head_hash: Arc<Mutex<[u8; 32]>>,
    /// History files are derived from the journal: with them, old segments are archived.
    keep_journal: bool,
    removed_before: u64,
    /// The number of the next batch to commit.
    next_seq: u64,
    /// A commit failed: nothing more is committed.
    failed: bool,
}

/// The sync thread: commits the batches the writer hands over, in order.
fn sync_thread(syncer: &Mutex<Syncer>, rx: &Receiver<ToSync>) -> Result<(), ServerError> {
    loop {
        let message = rx.recv();
        let mut syncer = syncer.lock().expect("syncer lock");
        if syncer.failed {
            // The writer's own commit failed; it reports the error.
            return Ok(());
        }
        match message {
            Ok(ToSync::Batch(batch)) => {
                if let Err(e) = syncer.commit(batch) {
                    syncer.fail(&e);
                    return Err(e);
                }
            }
            Ok(ToSync::Stop(frozen)) => {
                // Every applied op is durable now: a last snapshot of the state saves the
                // next start a replay.
                let head = syncer.journal.head();
                let last = (frozen.op_count() == head.op).then_some((frozen, head));
                syncer.snapshots.stop(last);
                return Ok(());
            }
            // The writer stopped without a clean stop (it saw this thread gone): nothing
            // more to sync.
            Err(_) => {
                syncer.snapshots.stop(None);
                return Ok(());
            }
        }
    }
}

impl Syncer {
    /// A failed write or sync cannot be retried safely: stop, and recover on restart.
    fn fail(&mut self, e: &ServerError) {
        tracing::error!(error = %e, "journal commit failed; the writer stops");
        self.failed = true;
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.durable.stop();
        self.snapshots.stop(None);
    }

    /// Journals a batch with one sync (more when it outgrows the journal's buffer), publishes
    /// its last op as durable, releases its replies, then hands over its snapshot, if any.
    fn commit(&mut self, batch: Batch) -> Result<(), ServerError> {
        if batch.seq != self.next_seq {
            return Err(ServerError::Corrupt(format!(
                "batch {} committed before batch {}",
                batch.seq, self.next_seq
            )));
        }
        self.next_seq += 1;
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
        if let Some(stats) = batch.stats {
            self.shared.stats.store(Arc::new(stats));
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
        if !batch.sends.is_empty() {
            self.release_sends(batch.sends);
        }
        for replies in batch.replies {
            replies.send();
        }
        let nanos = u64::try_from(batch.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        c.batch_nanos_max.fetch_max(nanos, Ordering::Relaxed);
        if let Some(frozen) = batch.frozen {
            // Frozen after exactly this batch's last op, which is durable now.
            self.snapshots.hand(frozen, head);
        }
        let previous = c.snapshot_op_previous.load(Ordering::Acquire);
        if previous > self.removed_before {
            if self.keep_journal {
                // History files are derived from the journal: old segments are archived, not
                // removed (recovery does not read them; a rebuild restores them).
                self.journal.archive_before(previous + 1)?;
            } else {
                self.journal.remove_before(previous + 1)?;
            }
            self.removed_before = previous;
        }
        Ok(())
    }

    /// Hands the relay the messages of a batch now durable (a full queue drops the newest:
    /// the outbox resend, or the peer's resend of what it asked, recovers each).
    fn release_sends(&self, sends: Vec<FedMessage>) {
        let mut queue = self.shared.fed_sends.lock().expect("fed sends lock");
        for m in sends {
            if queue.len() < FED_SENDS_MAX {
                queue.push_back(m);
            } else {
                self.shared
                    .counters
                    .fed_sends_dropped_total
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(queue);
        self.shared.fed_sends_ready.notify_one();
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
