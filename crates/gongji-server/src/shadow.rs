//! The shadow: a second copy of the state, fed the journaled ops of every durable batch, that
//! writes snapshots so the writer never stops for one.
//!
//! Alternatives rejected: pausing the writer to encode (seconds at 10 M persons), cloning the
//! state under the lock (the same copy, made while writes wait), and copy-on-write pages
//! (needs `fork` or unsafe tricks). The price of the shadow is a second copy of the state in
//! memory and the CPU to apply every op twice; apply is the cheap part of a write.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use gongji_core::codec::decode_op;
use gongji_core::State;
use gongji_journal::Anchor;

use crate::store::SnapshotStore;

use crate::{Config, ServerError, Shared};

/// Snapshots kept; the journal keeps every segment after the oldest of them.
pub(crate) const SNAPSHOTS_KEPT: usize = 2;

/// One durable batch: the encoded ops and the journal head after them.
pub(crate) struct ShadowBatch {
    pub ops: Vec<Vec<u8>>,
    pub head: Anchor,
}

pub(crate) enum ShadowMessage {
    Batch(ShadowBatch),
    /// Write a final snapshot and stop.
    Stop,
}

pub(crate) type ThreadHandle = JoinHandle<Result<(), ServerError>>;

pub(crate) fn spawn(
    snapshot: Vec<u8>,
    storage: Box<dyn SnapshotStore>,
    snapshot_op: u64,
    config: Config,
    shared: Arc<Shared>,
) -> Result<(Sender<ShadowMessage>, ThreadHandle), ServerError> {
    let (tx, rx) = std::sync::mpsc::channel();
    shared
        .counters
        .snapshot_op
        .store(snapshot_op, Ordering::Release);
    let thread = std::thread::Builder::new()
        .name("gongji-shadow".into())
        .spawn(move || {
            // The same bytes the writer's state came from (or was just written as): they
            // decoded once already, so a failure here is a bug.
            let state = State::decode_snapshot(&snapshot).expect("the snapshot decodes again");
            drop(snapshot);
            run(state, storage, snapshot_op, config, shared, rx)
        })?;
    Ok((tx, thread))
}

fn run(
    mut state: State,
    mut storage: Box<dyn SnapshotStore>,
    mut snapshot_op: u64,
    config: Config,
    shared: Arc<Shared>,
    rx: Receiver<ShadowMessage>,
) -> Result<(), ServerError> {
    let mut head = None;
    loop {
        let message = rx.recv().unwrap_or(ShadowMessage::Stop);
        match message {
            ShadowMessage::Batch(batch) => {
                for bytes in &batch.ops {
                    let op = decode_op(bytes).expect("the writer encoded this op");
                    let applied = state.apply(&op).expect("a journaled op applies again");
                    assert!(!applied.replayed, "a journaled op is never a replay");
                }
                head = Some(batch.head);
                if batch.head.op - snapshot_op >= config.snapshot_interval_ops {
                    snapshot(&state, storage.as_mut(), batch.head, &shared)?;
                    snapshot_op = batch.head.op;
                }
            }
            ShadowMessage::Stop => {
                if let Some(head) = head.filter(|h| h.op > snapshot_op) {
                    snapshot(&state, storage.as_mut(), head, &shared)?;
                }
                return Ok(());
            }
        }
    }
}

fn snapshot(
    state: &State,
    storage: &mut dyn SnapshotStore,
    head: Anchor,
    shared: &Shared,
) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    let mut bytes = Vec::new();
    state.encode_snapshot(&mut bytes);
    let file = storage.write(head, &bytes)?;
    storage.prune(SNAPSHOTS_KEPT)?;
    let previous = shared.counters.snapshot_op.swap(head.op, Ordering::AcqRel);
    shared
        .counters
        .snapshot_op_previous
        .store(previous, Ordering::Release);
    tracing::info!(
        file,
        op = head.op,
        bytes = bytes.len(),
        millis = started.elapsed().as_millis() as u64,
        "snapshot written"
    );
    Ok(())
}
