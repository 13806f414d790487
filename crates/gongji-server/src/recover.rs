//! Start-up: newest verifying snapshot, replay of the journal suffix, checks, threads.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gongji_core::codec::decode_op;
use gongji_core::federation::codec::decode_entry;
use gongji_core::State;
use gongji_journal::{Anchor, FsStorage, LoadedSnapshot, SkippedSnapshot, Storage, TornTail};
use parking_lot::RwLock;

use crate::history::{HistoryDir, SpillTarget};
use crate::store::{FileStore, Log, Store};
use crate::{snapshotter, writer, Config, Counters, Durable, Engine, ServerError, Shared};

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
    /// History chunks attached from files.
    pub history_chunks: usize,
    /// Why history files were rebuilt by a replay from op 1, if they were.
    pub history_rebuilt: Option<String>,
}

/// The recovered state, the open log, and the snapshot it started from.
type Loaded = (State, Box<dyn Log>, Option<LoadedSnapshot>);

/// Loads the newest verifying snapshot and replays the journal after it. A writable open may
/// repair (cut a torn tail); a read-only one only reports it.
fn load(
    config: &Config,
    store: &mut dyn Store,
    history: Option<&HistoryDir>,
    writable: bool,
    report: &mut OpenReport,
) -> Result<Loaded, ServerError> {
    let phase = Instant::now();
    let (mut bytes, mut decode_time) = (0, Duration::ZERO);
    let loaded = store.load_snapshot_decoded(&mut |body| {
        let started = Instant::now();
        bytes = body.bytes.len();
        let decoded = body.decode();
        decode_time = started.elapsed();
        decoded
    })?;
    let (loaded, decoded) = match loaded {
        Some((snapshot, decoded)) => (Some(snapshot), Some(decoded)),
        None => (None, None),
    };
    let (mut state, mut anchor) = match (&loaded, decoded) {
        (Some(snapshot), Some(decoded)) => {
            let state = decoded.map_err(|e| {
                ServerError::Corrupt(format!("snapshot {} does not decode: {e}", snapshot.file))
            })?;
            tracing::info!(
                file = %snapshot.file,
                bytes,
                millis = phase.elapsed().as_millis() as u64,
                decode_millis = decode_time.as_millis() as u64,
                "snapshot loaded (read, then decoded while its hash is checked)"
            );
            report.snapshot_op = Some(snapshot.anchor.op);
            report.skipped_snapshots = snapshot.skipped.clone();
            (state, Some(snapshot.anchor))
        }
        _ => (fresh_state(config)?, None),
    };
    if !state.cold_missing().is_empty() {
        let phase = Instant::now();
        let attached = match history {
            Some(history) => history.attach(&mut state),
            None => Err("the snapshot refers to history files, and this store keeps none".into()),
        };
        match attached {
            Ok(n) => {
                report.history_chunks = n;
                let millis = phase.elapsed().as_millis() as u64;
                tracing::info!(chunks = n, millis, "history files attached");
            }
            Err(e) => {
                // Files are derived from the journal: replay it from op 1 and write them again.
                tracing::warn!(error = %e, "a history file is missing or damaged; rebuilding history from the journal");
                report.history_rebuilt = Some(e);
                let federation = state.federation_config().cloned();
                state = State::new(state.params().clone());
                if let Some(federation) = federation {
                    state
                        .configure_federation(federation)
                        .map_err(ServerError::Corrupt)?;
                }
                anchor = None;
                report.snapshot_op = None;
                if writable {
                    store.restore_archived()?;
                }
            }
        }
    }
    let (mut log, torn_tail) = store.open_log(config, anchor, writable)?;
    report.torn_tail = torn_tail;
    let after_op = anchor.map_or(0, |a| a.op);
    if log.first_op() > after_op + 1 {
        return Err(ServerError::Corrupt(format!(
            "the journal starts at op {} but recovery needs op {}",
            log.first_op(),
            after_op + 1
        )));
    }
    let spill = history.filter(|_| writable);
    let phase = Instant::now();
    report.replayed_ops = replay(log.as_mut(), &mut state, after_op, spill)?;
    let millis = phase.elapsed().as_millis() as u64;
    tracing::info!(ops = report.replayed_ops, millis, "journal suffix replayed");
    // A decoded snapshot has passed its checks already; ops replayed on it need another. The
    // checks of the hot state only: the full check reads all history, so a start would take
    // as long as history is big (`gongji verify` runs it).
    if anchor.is_none() || report.replayed_ops > 0 {
        let phase = Instant::now();
        state
            .check_hot()
            .map_err(|e| ServerError::Corrupt(format!("state check after recovery: {e}")))?;
        let millis = phase.elapsed().as_millis() as u64;
        tracing::info!(millis, "state checked");
    }
    report.head_op = log.head().op;
    report.persons = state.person_count();
    Ok((state, log, loaded))
}

/// The state of an empty journal: the configured parameters and, for an engine of a
/// federation, its `[federation]` table (fixed before the first op, like the parameters).
fn fresh_state(config: &Config) -> Result<State, ServerError> {
    let mut state = State::new(config.params.clone());
    if let Some(federation) = &config.federation {
        state
            .configure_federation(federation.clone())
            .map_err(|e| ServerError::Corrupt(format!("[federation]: {e}")))?;
    }
    Ok(state)
}

/// Whether `state` and the configuration agree on the federation (both without, or the same
/// table): an engine's provinces and peers are fixed with its first op.
fn check_federation(config: &Config, state: &State) -> Result<(), ServerError> {
    if config.federation.as_ref() != state.federation_config() {
        return Err(ServerError::Corrupt(format!(
            "the configured [federation] ({:?}) differs from the data directory's ({:?}); an \
             engine's provinces and peers are fixed with its first op",
            config.federation,
            state.federation_config()
        )));
    }
    Ok(())
}

/// Recovers a data directory read-only (nothing on disk changes) and returns the state with
/// the journal head: for `gongji verify` and `gongji report`.
pub fn inspect(config: &Config) -> Result<(State, Anchor, OpenReport), ServerError> {
    let started = Instant::now();
    let storage = |dir| FsStorage::open(dir).map_err(|e| ServerError::Corrupt(format!("{e}")));
    let mut store = FileStore::new(
        storage(config.journal_dir())?,
        storage(config.journal_dir())?,
    );
    inspect_store(config, &mut store).map(|(state, head, mut report)| {
        report.elapsed = started.elapsed();
        (state, head, report)
    })
}

/// [`inspect`] on any store: recovers read-only and returns the state with the journal head.
pub fn inspect_store(
    config: &Config,
    store: &mut dyn Store,
) -> Result<(State, Anchor, OpenReport), ServerError> {
    let started = Instant::now();
    let mut report = OpenReport::default();
    let history = HistoryDir::read_only(config.history_dir());
    let (state, log, _) = load(config, store, Some(&history), false, &mut report)?;
    report.elapsed = started.elapsed();
    Ok((state, log.head(), report))
}

/// [`replay_from_genesis`] on any store: `None` when the store no longer holds op 1.
pub fn replay_from_genesis_store(
    config: &Config,
    store: &mut dyn Store,
    params: gongji_core::Params,
) -> Result<Option<(State, Anchor)>, ServerError> {
    let (mut log, _) = store.open_log(config, None, false)?;
    if log.first_op() > 1 {
        return Ok(None);
    }
    let mut state = State::new(params);
    if let Some(federation) = &config.federation {
        state
            .configure_federation(federation.clone())
            .map_err(ServerError::Corrupt)?;
    }
    replay(log.as_mut(), &mut state, 0, None)?;
    state
        .check()
        .map_err(|e| ServerError::Corrupt(format!("state check after replay from op 1: {e}")))?;
    Ok(Some((state, log.head())))
}

/// Replays the whole journal from op 1 into a fresh state under `params`, read-only, when no
/// segment has been removed yet (`None` otherwise). `gongji verify` compares the result with the
/// snapshot-based recovery: a snapshot that disagrees with its journal is found this way.
pub fn replay_from_genesis(
    config: &Config,
    params: gongji_core::Params,
) -> Result<Option<(State, Anchor)>, ServerError> {
    // Archived segments count: they are the journal's beginning, set aside, not removed.
    let open = || {
        FsStorage::open(config.journal_dir())
            .map(gongji_journal::WithArchive)
            .map_err(|e| ServerError::Corrupt(format!("{e}")))
    };
    let storage = open()?;
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
    replay_from_genesis_store(config, &mut FileStore::new(storage, open()?), params)
}

pub(crate) fn open(
    config: Config,
    mut store: Box<dyn Store>,
    history: Option<HistoryDir>,
) -> Result<(Engine, OpenReport), ServerError> {
    let started = Instant::now();
    let mut report = OpenReport::default();
    let (state, log, loaded) = load(&config, store.as_mut(), history.as_ref(), true, &mut report)?;
    let head = log.head();
    check_federation(&config, &state)?;
    let federated = state.federation_config().is_some();
    let mut snapshots = store.snapshots()?;
    let auditor = store.auditor();

    if state.params() != &config.params {
        // Province parameters are part of the state: they are fixed when the data directory
        // is first started, so that replay always judges ops by the rules they were made under.
        tracing::warn!(
            "the configured parameters differ from the data directory's; keeping the latter"
        );
    }
    // On the first start (no snapshot at all), the state is written as a snapshot before
    // anything else, so that the parameters are on disk from the first op on. After a replay
    // on top of a snapshot, the snapshot thread writes one in the background (below): the next
    // start then replays nothing twice, and this one serves without waiting for it (at 10 M
    // persons and a full msgid window, writing it takes tens of seconds).
    if loaded.is_none() {
        snapshots.write_streaming(head, &mut |sink| {
            state.encode_snapshot_streaming(sink);
        })?;
        snapshots.prune(snapshotter::SNAPSHOTS_KEPT)?;
    }
    let snapshot_after_replay = loaded.is_some() && report.replayed_ops > 0;
    // The op of the newest snapshot on disk (a rebuild of history replays from op 1, so none
    // of the loaded snapshot's counts).
    let snapshot_op = match loaded {
        None => head.op,
        Some(_) => report.snapshot_op.unwrap_or(0),
    };
    drop(loaded);

    let shared = Arc::new(Shared {
        durable: Durable::new(head.op),
        stats: arc_swap::ArcSwap::from_pointee(state.stats_copy()),
        state: RwLock::new(state),
        read_gate: Default::default(),
        counters: Counters::default(),
        stopped: AtomicBool::new(false),
        load: Mutex::new(VecDeque::new()),
        federated,
        fed_sends: Mutex::new(VecDeque::new()),
        fed_sends_ready: tokio::sync::Notify::new(),
    });
    shared
        .counters
        .journal_head_op
        .store(head.op, std::sync::atomic::Ordering::Release);
    let head_hash = Arc::new(Mutex::new(head.chain_hash));
    // Chunks the snapshot thread made cold, for the writer to swap into the live state.
    let (history, cold_rx) = match history {
        Some(dir) => {
            let (tx, rx) = std::sync::mpsc::channel();
            (Some((dir, tx)), Some(rx))
        }
        None => (None, None),
    };
    let (mut snapshot_handle, snapshot_thread) = snapshotter::spawn(
        snapshots,
        snapshot_op,
        config.snapshot_interval_ops,
        shared.clone(),
        history,
    )?;
    if snapshot_after_replay {
        // Every replayed op is durable (it was read from the journal), so the frozen state
        // goes to the snapshot thread at once.
        let frozen = snapshot_handle
            .1
            .freeze(&shared.state.read(), &shared.counters);
        snapshot_handle.0.hand(frozen, head);
    }
    let capacity = config.queue_op_count_max.max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
    let (writer_thread, sync_thread) = writer::spawn(
        config.clone(),
        shared.clone(),
        log,
        rx,
        snapshot_handle,
        head_hash.clone(),
        cold_rx,
    )?;
    report.elapsed = started.elapsed();
    let engine = Engine {
        shared,
        tx,
        queue_op_count_max: config.queue_op_count_max,
        threads: Mutex::new(vec![writer_thread, sync_thread, snapshot_thread]),
        head_hash,
        lock: None,
        auditor,
    };
    Ok((engine, report))
}

/// Ops replayed between spills of full history chunks to files.
const SPILL_EVERY_OPS: u64 = 1 << 16;

/// Applies every journaled op after `after_op`. Each was applied once before, so each must
/// apply again, and not as a replay: anything else means the journal and the engine disagree.
/// With `history`, full chunks go to files as the replay goes (every replayed op is durable),
/// so a long replay holds no more history in memory than the live writer does.
fn replay(
    log: &mut dyn Log,
    state: &mut State,
    after_op: u64,
    history: Option<&HistoryDir>,
) -> Result<u64, ServerError> {
    let mut since_spill = 0u64;
    let federated = state.federation_config().is_some();
    let n = log.replay(after_op, &mut |op_number, body| {
        let does_not_decode = |e| format!("op {op_number} does not decode: {e}");
        // A federated journal holds federation ops too (op tag 2); a core decoder refuses
        // them, so an unfederated state never misreads one.
        let replayed = if federated {
            let entry = decode_entry(body).map_err(does_not_decode)?;
            state.apply_entry(&entry).map(|a| a.replayed)
        } else {
            let op = decode_op(body).map_err(does_not_decode)?;
            state.apply(&op).map(|a| a.replayed)
        };
        match replayed {
            Ok(false) => {}
            Ok(true) => return Err(format!("op {op_number} replays an earlier msgid")),
            Err(rejection) => {
                return Err(format!(
                    "op {op_number} is rejected on replay: {rejection:?}"
                ))
            }
        }
        since_spill += 1;
        if let Some(history) = history.filter(|_| since_spill >= SPILL_EVERY_OPS) {
            since_spill = 0;
            history.spill(&mut SpillTarget::Live(state))?;
        }
        Ok(())
    })?;
    if let Some(history) = history {
        history
            .spill(&mut SpillTarget::Live(state))
            .map_err(ServerError::Corrupt)?;
    }
    Ok(n)
}
