//! The writer thread: queue → batch → apply → journal → one sync → replies.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gongji_core::codec::encode_op;
use gongji_core::{Command, Op, State};

use crate::history::Made;
use crate::snapshotter::Snapshots;
use crate::store::{Appended, Log};
use crate::{
    now_unix, Config, LoadSample, Message, ServerError, Shared, Submission, WriteResult,
    LOAD_SAMPLE_COUNT_MAX,
};

/// Most ops applied under one hold of the state's write lock. Reads wait at most this many
/// ops' apply time (about a millisecond), not a whole batch's (8,190 ops: 15–40 ms). They may
/// see ops of the batch that are applied but not yet durable, as before; replies never do.
const LOCKED_OPS_MAX: usize = 1024;

pub(crate) fn spawn(
    config: Config,
    shared: Arc<Shared>,
    journal: Box<dyn Log>,
    rx: Receiver<Message>,
    snapshots: Snapshots,
    head_hash: Arc<Mutex<[u8; 32]>>,
    cold_rx: Option<Receiver<Made>>,
) -> Result<JoinHandle<Result<(), ServerError>>, ServerError> {
    let mut writer = Writer {
        config,
        shared,
        journal,
        snapshots,
        head_hash,
        keep_journal: cold_rx.is_some(),
        cold_rx,
        removed_before: 0,
        op_bytes: Vec::with_capacity(256),
        sampled_at: Instant::now(),
        batch_nanos_max: 0,
    };
    let thread = std::thread::Builder::new()
        .name("gongji-writer".into())
        .spawn(move || {
            let result = writer.run(&rx);
            if let Err(e) = &result {
                // A failed write or sync cannot be retried safely: stop, and recover on restart.
                tracing::error!(error = %e, "writer stopped");
            }
            writer.shared.stopped.store(true, Ordering::Release);
            // After a clean stop every applied op is durable: a last snapshot of the state
            // saves the next start a replay. After a failure the state may hold ops that
            // never became durable, so it is not written.
            let last = result.is_ok().then(|| {
                let state = writer.shared.state.read().expect("state lock");
                (state.freeze(), writer.journal.head())
            });
            writer.snapshots.stop(last);
            result
        })?;
    Ok(thread)
}

struct Writer {
    config: Config,
    shared: Arc<Shared>,
    journal: Box<dyn Log>,
    snapshots: Snapshots,
    head_hash: Arc<Mutex<[u8; 32]>>,
    /// History chunks the snapshot thread wrote to files (with history files).
    cold_rx: Option<Receiver<Made>>,
    /// History files are derived from the journal: with them, old segments are archived.
    keep_journal: bool,
    removed_before: u64,
    /// The encoding of the op being appended (reused: no allocation per op).
    op_bytes: Vec<u8>,
    /// When the last load sample was taken, and the longest batch since.
    sampled_at: Instant,
    batch_nanos_max: u64,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Message>) -> Result<(), ServerError> {
        let idle = Duration::from_secs(self.config.idle_tick_seconds.max(1));
        loop {
            let first = match rx.recv_timeout(idle) {
                Ok(Message::Write(submission)) => submission,
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => {
                    self.take_cold();
                    self.idle_tick()?;
                    self.sample_load();
                    continue;
                }
            };
            let mut ops = first.requests.len();
            let mut batch = vec![first];
            let mut stop = false;
            while ops < self.config.batch_op_count_max {
                match rx.try_recv() {
                    Ok(Message::Write(submission)) => {
                        ops += submission.requests.len();
                        batch.push(submission);
                    }
                    Ok(Message::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            self.commit(batch, ops)?;
            self.take_cold();
            let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.batch_nanos_max = self.batch_nanos_max.max(nanos);
            self.sample_load();
            if stop {
                return Ok(());
            }
        }
    }

    /// Applies a batch, makes it durable with one sync, then replies.
    fn commit(&mut self, batch: Vec<Submission>, ops: usize) -> Result<(), ServerError> {
        let mut applied = 0u64;
        let mut results: Vec<Vec<WriteResult>> = Vec::with_capacity(batch.len());
        {
            let shared = self.shared.clone();
            let mut state = shared.state.write().expect("state lock");
            let mut locked_ops = 0;
            for submission in &batch {
                let mut replies = Vec::with_capacity(submission.requests.len());
                for request in &submission.requests {
                    if locked_ops == LOCKED_OPS_MAX {
                        // Let waiting reads in between chunks of the batch.
                        drop(state);
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
                        self.append(&op)?;
                        applied += 1;
                    }
                    replies.push(result);
                }
                results.push(replies);
            }
        }
        self.sync(applied)?;
        let c = &self.shared.counters;
        c.batches_total.fetch_add(1, Ordering::Relaxed);
        c.ops_applied_total.fetch_add(applied, Ordering::Relaxed);
        c.ops_rejected_total
            .fetch_add(ops as u64 - applied, Ordering::Relaxed);
        c.queue_ops.fetch_sub(ops, Ordering::AcqRel);
        metrics::histogram!("gongji_batch_ops").record(ops as f64);
        for (submission, replies) in batch.into_iter().zip(results) {
            // A client that went away does not stop the others.
            let _ = submission.reply.send(replies);
        }
        Ok(())
    }

    /// Swaps the chunks the snapshot thread wrote to history files out of the live state:
    /// the same records, now read from the files' mapped bytes; the heap copy is freed.
    fn take_cold(&self) {
        let Some(cold_rx) = &self.cold_rx else {
            return;
        };
        let Ok(first) = cold_rx.try_recv() else {
            return;
        };
        let mut state = self.shared.state.write().expect("state lock");
        let mut swapped = 0;
        for made in std::iter::once(first).chain(cold_rx.try_iter()) {
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
            batch_nanos_max: std::mem::take(&mut self.batch_nanos_max),
        };
        let mut load = self.shared.load.lock().expect("load lock");
        if load.len() == LOAD_SAMPLE_COUNT_MAX {
            load.pop_front();
        }
        load.push_back(sample);
    }

    fn append(&mut self, op: &Op) -> Result<(), ServerError> {
        let mut bytes = std::mem::take(&mut self.op_bytes);
        bytes.clear();
        encode_op(op, &mut bytes);
        if self.journal.append(op.time(), &bytes)? == Appended::BatchFull {
            // A batch of large ops (crediting batches) outgrew the journal's buffer: make
            // what is buffered durable now; the replies still wait for the final sync.
            self.journal.sync()?;
            if self.journal.append(op.time(), &bytes)? == Appended::BatchFull {
                return Err(ServerError::Corrupt(format!(
                    "an op of {} bytes does not fit an empty batch",
                    bytes.len()
                )));
            }
        }
        self.op_bytes = bytes;
        Ok(())
    }

    /// One sync for everything appended; then a snapshot if one is due, and old segments go.
    fn sync(&mut self, appended: u64) -> Result<(), ServerError> {
        if appended == 0 {
            return Ok(());
        }
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
        // Chunks already in files leave the state before it is frozen again.
        self.take_cold();
        if self.snapshots.due(head.op) {
            // Every op applied so far is in this sync: the state is exactly the one after
            // `head`.
            let state = self.shared.state.read().expect("state lock");
            self.snapshots
                .after_sync(&state, head, &self.shared.counters);
        } else {
            let state = self.shared.state.read().expect("state lock");
            self.snapshots.spill_history(&state);
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

    /// With no writes for a while, the clock follows the writer's own time, so that pending
    /// wallet transfers expire while the server is idle.
    fn idle_tick(&mut self) -> Result<(), ServerError> {
        let shared = self.shared.clone();
        let mut state = shared.state.write().expect("state lock");
        let now = now_unix();
        if now <= state.clock() {
            return Ok(());
        }
        let op = Op::Tick { time: now };
        apply_tick(&mut state, &op);
        drop(state);
        self.append(&op)?;
        self.sync(1)
    }
}

fn apply_tick(state: &mut State, op: &Op) {
    state
        .apply(op)
        .expect("a tick at or after the clock applies");
}
