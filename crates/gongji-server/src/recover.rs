//! Start-up: newest verifying snapshot, replay of the journal suffix, checks, threads.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use gongji_core::codec::decode_op;
use gongji_core::State;
use gongji_journal::{
    load_latest_snapshot, prune_snapshots, write_snapshot, Anchor, FsStorage, Journal,
    LoadedSnapshot, ReplayError, SkippedSnapshot, Storage, TornTail,
};

use crate::{shadow, writer, Config, Counters, Engine, ServerError, Shared};

/// What recovery found and did, for the start-up log.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    pub snapshot_op: Option<u64>,
    pub skipped_snapshots: Vec<SkippedSnapshot>,
    pub replayed_ops: u64,
    pub head_op: u64,
    pub torn_tail: Option<TornTail>,
    pub persons: usize,
    pub admin_token_created: bool,
    pub elapsed: Duration,
}

/// Loads the newest verifying snapshot and replays the journal after it. A writable open cuts
/// a torn tail; a read-only one only reports it.
fn load<S: Storage>(
    config: &Config,
    journal_storage: S,
    snapshot_storage: &S,
    writable: bool,
    report: &mut OpenReport,
) -> Result<(State, Journal<S>, Option<LoadedSnapshot>), ServerError> {
    let loaded = load_latest_snapshot(snapshot_storage)?;
    let (mut state, anchor) = match &loaded {
        Some(snapshot) => {
            let state = State::decode_snapshot(&snapshot.body).map_err(|e| {
                ServerError::Corrupt(format!("snapshot {} does not decode: {e}", snapshot.file))
            })?;
            report.snapshot_op = Some(snapshot.anchor.op);
            report.skipped_snapshots = snapshot.skipped.clone();
            (state, Some(snapshot.anchor))
        }
        None => (State::new(config.params.clone()), None),
    };
    let (journal, recovery) = if writable {
        Journal::open(journal_storage, config.journal, anchor)?
    } else {
        Journal::open_read_only(journal_storage, config.journal, anchor)?
    };
    report.torn_tail = recovery.torn_tail.clone();
    let after_op = anchor.map_or(0, |a| a.op);
    report.replayed_ops = replay(&journal, &mut state, after_op)?;
    // A decoded snapshot has passed the full check already; ops replayed on it need another.
    if anchor.is_none() || report.replayed_ops > 0 {
        state
            .check()
            .map_err(|e| ServerError::Corrupt(format!("state check after recovery: {e}")))?;
    }
    report.head_op = journal.head().op;
    report.persons = state.person_count();
    Ok((state, journal, loaded))
}

/// Recovers a data directory read-only (nothing on disk changes) and returns the state with
/// the journal head: for `gongji verify` and `gongji report`.
pub fn inspect(config: &Config) -> Result<(State, Anchor, OpenReport), ServerError> {
    let started = Instant::now();
    let storage = |dir| FsStorage::open(dir).map_err(|e| ServerError::Corrupt(format!("{e}")));
    let journal_storage = storage(config.journal_dir())?;
    let snapshot_storage = storage(config.journal_dir())?;
    let mut report = OpenReport::default();
    let (state, journal, _) = load(
        config,
        journal_storage,
        &snapshot_storage,
        false,
        &mut report,
    )?;
    report.elapsed = started.elapsed();
    Ok((state, journal.head(), report))
}

/// Replays the whole journal from op 1 into a fresh state under `params`, read-only, when no
/// segment has been removed yet (`None` otherwise). `gongji verify` compares the result with the
/// snapshot-based recovery: a snapshot that disagrees with its journal is found this way.
pub fn replay_from_genesis(
    config: &Config,
    params: gongji_core::Params,
) -> Result<Option<(State, Anchor)>, ServerError> {
    let storage =
        FsStorage::open(config.journal_dir()).map_err(|e| ServerError::Corrupt(format!("{e}")))?;
    let names = storage
        .list()
        .map_err(|e| ServerError::Corrupt(format!("{e}")))?;
    let first = names
        .iter()
        .filter_map(|n| gongji_journal::parse_segment_name(n))
        .min();
    if first.is_some_and(|op| op > 1) {
        return Ok(None);
    }
    let (journal, _) = Journal::open_read_only(storage, config.journal, None)?;
    let mut state = State::new(params);
    replay(&journal, &mut state, 0)?;
    state
        .check()
        .map_err(|e| ServerError::Corrupt(format!("state check after replay from op 1: {e}")))?;
    Ok(Some((state, journal.head())))
}

pub(crate) fn open<S: Storage + 'static>(
    config: Config,
    journal_storage: S,
    mut snapshot_storage: S,
) -> Result<(Engine, OpenReport), ServerError> {
    let started = Instant::now();
    let mut report = OpenReport::default();
    let (state, journal, loaded) = load(
        &config,
        journal_storage,
        &snapshot_storage,
        true,
        &mut report,
    )?;
    let head = journal.head();

    if state.params() != &config.params {
        // Province parameters are part of the state: they are fixed when the data directory
        // is first started, so that replay always judges ops by the rules they were made under.
        tracing::warn!(
            "the configured parameters differ from the data directory's; keeping the latter"
        );
    }
    // The shadow starts from the recovered state. When ops were replayed, or on the first
    // start, the recovered state is written as a snapshot first: the next start replays
    // nothing twice, and the parameters are on disk from the first op on.
    // The shadow decodes its copy on its own thread, so serving starts without waiting.
    let shadow_bytes = match (loaded, report.replayed_ops) {
        (Some(snapshot), 0) => snapshot.body,
        _ => {
            let mut bytes = Vec::new();
            state.encode_snapshot(&mut bytes);
            write_snapshot(&mut snapshot_storage, head, &bytes)?;
            prune_snapshots(&mut snapshot_storage, crate::shadow::SNAPSHOTS_KEPT)?;
            bytes
        }
    };

    let shared = Arc::new(Shared {
        state: RwLock::new(state),
        counters: Counters::default(),
        stopped: AtomicBool::new(false),
    });
    shared
        .counters
        .journal_head_op
        .store(head.op, std::sync::atomic::Ordering::Release);
    let head_hash = Arc::new(Mutex::new(head.chain_hash));
    let (shadow_tx, shadow_thread) = shadow::spawn(
        shadow_bytes,
        snapshot_storage,
        head.op,
        config.clone(),
        shared.clone(),
    )?;
    let capacity = config.queue_op_count_max.max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
    let writer_thread = writer::spawn(
        config.clone(),
        shared.clone(),
        journal,
        rx,
        shadow_tx,
        head_hash.clone(),
    )?;
    report.elapsed = started.elapsed();
    let engine = Engine {
        shared,
        tx,
        queue_op_count_max: config.queue_op_count_max,
        threads: Mutex::new(vec![writer_thread, shadow_thread]),
        head_hash,
        lock: None,
    };
    Ok((engine, report))
}

/// Applies every journaled op after `after_op`. Each was applied once before, so each must
/// apply again, and not as a replay: anything else means the journal and the engine disagree.
fn replay<S: Storage>(
    journal: &Journal<S>,
    state: &mut State,
    after_op: u64,
) -> Result<u64, ServerError> {
    let visited = journal.replay(after_op, |record| {
        let op =
            decode_op(record.body).map_err(|e| format!("op {} does not decode: {e}", record.op))?;
        match state.apply(&op) {
            Ok(applied) if !applied.replayed => Ok(()),
            Ok(_) => Err(format!("op {} replays an earlier msgid", record.op)),
            Err(rejection) => Err(format!(
                "op {} is rejected on replay: {rejection:?}",
                record.op
            )),
        }
    });
    match visited {
        Ok(n) => Ok(n),
        Err(ReplayError::Journal(e)) => Err(e.into()),
        Err(ReplayError::Visitor(what)) => Err(ServerError::Corrupt(what)),
    }
}
