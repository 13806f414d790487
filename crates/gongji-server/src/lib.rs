//! `gongji-server`: the single writer that owns the engine's state.
//!
//! [`Engine`] is the handle the HTTP layer, the simulator and the benchmarks share. Writes are
//! [`Engine::submit`]ted as [`WriteRequest`]s into a bounded queue; the writer thread drains up
//! to `batch_op_count_max` ops, applies them to the [`gongji_core::State`] and hands the
//! applied ones to the sync thread, which appends them to the [`gongji_journal::Journal`],
//! makes the batch durable with one sync, and only then releases the replies, while the writer
//! applies the next batch (`writer.rs`: the pipeline). Rejected writes and replays are not
//! journaled. Reads go through [`Engine::read`] and never enter the journal path; what they
//! show is answered once it is durable ([`Engine::durable`], [`Engine::read_durable`]).
//!
//! Where the journal and snapshots live is the [`Store`] seam (`store.rs`): files in the data
//! directory ([`FileStore`], used by [`Engine::open`] and [`Engine::open_on`]) or PostgreSQL
//! (`gongji_pg::PgStore`, through [`Engine::open_with`]); the writer sees a [`Log`] (append,
//! one durable `sync` per batch), the snapshot thread a [`SnapshotStore`].
//!
//! Snapshots are written by a snapshot thread from a copy-on-write copy of the state that the
//! writer freezes between two batches and the sync thread hands over after the first one's
//! sync (`State::freeze`, see `snapshotter.rs` and ARCHITECTURE.md), so the writer stops only
//! for the freeze. Recovery ([`Engine::open`]) loads the newest snapshot that verifies, replays the
//! journal suffix and checks the state. Full chunks of history go to files (`history.rs`).

mod history;
mod readgate;
mod recover;
/// Test support, not part of the product: built only with the `testkit` feature.
#[cfg(feature = "testkit")]
pub mod scenario;
mod snapshotter;
pub mod store;
mod writer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use gongji_core::federation::{EntryApplied, FedOp, FederationConfig, Message as FedMessage};
use gongji_core::time::Period;
use gongji_core::views::{StatsCopy, StatsView};
use gongji_core::{Actor, Applied, Body, Msgid, Params, Rejection, State};
use gongji_journal::private::{create_private_dir, private_options, restrict};
use gongji_journal::{FsStorage, JournalConfig, JournalError, SnapshotError, Storage};
use parking_lot::RwLock;

pub use history::HistoryDir;
pub use recover::{
    inspect, inspect_store, replay_from_genesis, replay_from_genesis_store, OpenReport,
};
pub use store::{Appended, Auditor, FileStore, Log, SnapshotStore, Store, Visit};

/// Largest number of ops one submission (an HTTP `/v1/batch`) may carry.
pub const SUBMISSION_OP_COUNT_MAX: usize = 8_190;

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub params: Params,
    pub journal: JournalConfig,
    /// Ops the writer applies and syncs together at most (more when one submission is larger).
    pub batch_op_count_max: usize,
    /// Ops waiting in the queue at most; beyond it `submit` answers `Overloaded`.
    pub queue_op_count_max: usize,
    /// A snapshot is written after this many ops since the last one.
    pub snapshot_interval_ops: u64,
    /// Seconds without writes after which the writer moves the clock to its own time.
    pub idle_tick_seconds: u64,
    /// Seconds between the writer's load samples ([`LOAD_SAMPLE_SECONDS`]).
    pub load_sample_seconds: u64,
    /// Fewest journaled ops in a batch the writer hands to the sync thread (and in a part of a
    /// batch sent ahead); smaller batches it commits itself when the sync thread is idle.
    pub pipeline_ops_min: usize,
    /// This engine's part in a federation (`[federation]`, docs/FEDERATION.md); `None`: the
    /// engine holds every province, as always.
    pub federation: Option<FederationConfig>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            params: Params::default(),
            journal: JournalConfig::default(),
            batch_op_count_max: 8_190,
            queue_op_count_max: 65_536,
            snapshot_interval_ops: 5_000_000,
            idle_tick_seconds: 1,
            load_sample_seconds: LOAD_SAMPLE_SECONDS,
            pipeline_ops_min: 1024,
            federation: None,
        }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    /// Where the history files of [`Engine::open`] live (`history.rs`).
    pub fn history_dir(&self) -> PathBuf {
        self.data_dir.join("history")
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }
}

/// A write as the HTTP layer hands it over: the time is the writer's to choose unless an admin
/// gave `inf_time`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRequest {
    pub msgid: Msgid,
    pub inf_time: Option<i64>,
    pub actor: Actor,
    pub body: Body,
}

pub type WriteResult = Result<Applied, Rejection>;

/// A federation op as the HTTP layer or the relay hands it over: its time is the writer's to
/// choose (the op's own time is replaced) unless an admin gave `inf_time`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FedRequest {
    pub inf_time: Option<i64>,
    pub op: FedOp,
}

pub type FedResult = Result<EntryApplied, Rejection>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full: answer 503 and let the client retry with the same msgid.
    Overloaded,
    /// The writer has stopped (shutdown, or a fatal storage error).
    Stopped,
}

#[derive(Debug)]
pub enum ServerError {
    Journal(JournalError),
    Snapshot(SnapshotError),
    Io(std::io::Error),
    /// The data on disk is inconsistent with itself (names the op or file).
    Corrupt(String),
    /// Another process holds the data directory.
    InUse(PathBuf),
    /// The journal store (PostgreSQL) failed or refused; the text says what and where.
    Store(String),
    /// Another writer committed ops this one does not hold (fencing): this writer stops, and
    /// nothing of the batch it was committing is acknowledged.
    Fenced(String),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Journal(e) => write!(f, "journal: {e}"),
            ServerError::Snapshot(e) => write!(f, "{e}"),
            ServerError::Io(e) => write!(f, "io: {e}"),
            ServerError::Corrupt(what) => write!(f, "data directory is damaged: {what}"),
            ServerError::InUse(dir) => {
                write!(f, "{} is in use by another gongji process", dir.display())
            }
            ServerError::Store(what) => write!(f, "store: {what}"),
            ServerError::Fenced(what) => write!(
                f,
                "fenced: {what}; another writer owns this journal, this one stops"
            ),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<JournalError> for ServerError {
    fn from(e: JournalError) -> Self {
        ServerError::Journal(e)
    }
}

impl From<SnapshotError> for ServerError {
    fn from(e: SnapshotError) -> Self {
        ServerError::Snapshot(e)
    }
}

impl From<std::io::Error> for ServerError {
    fn from(e: std::io::Error) -> Self {
        ServerError::Io(e)
    }
}

pub(crate) enum Submission {
    Core {
        requests: Vec<WriteRequest>,
        reply: tokio::sync::oneshot::Sender<Vec<WriteResult>>,
    },
    /// Federation ops (a federated engine only).
    Fed {
        requests: Vec<FedRequest>,
        reply: tokio::sync::oneshot::Sender<Vec<FedResult>>,
    },
}

impl Submission {
    pub(crate) fn len(&self) -> usize {
        match self {
            Submission::Core { requests, .. } => requests.len(),
            Submission::Fed { requests, .. } => requests.len(),
        }
    }
}

pub(crate) enum Message {
    Write(Submission),
    Stop,
}

/// Figures the writer keeps for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct Counters {
    pub batches_total: AtomicU64,
    pub ops_applied_total: AtomicU64,
    pub ops_rejected_total: AtomicU64,
    pub sync_nanos_total: AtomicU64,
    pub journal_bytes_total: AtomicU64,
    pub journal_head_op: AtomicU64,
    pub queue_ops: AtomicUsize,
    pub snapshot_op: AtomicU64,
    /// The snapshot before the newest: journal segments before it may go.
    pub snapshot_op_previous: AtomicU64,
    /// Snapshots handed to the snapshot thread, and the writer's longest pause to freeze one.
    pub snapshots_frozen_total: AtomicU64,
    /// Snapshots the snapshot thread has written (frozen minus written: one in progress).
    pub snapshots_written_total: AtomicU64,
    pub snapshot_freeze_nanos_max: AtomicU64,
    /// History chunks written to files, and swapped out of the live state by the writer.
    pub history_chunks_total: AtomicU64,
    pub history_chunks_swapped_total: AtomicU64,
    /// History records read ahead of the writer for cancellations and reversals.
    pub history_prefetched_total: AtomicU64,
    /// The longest batch (apply, journal, sync, replies) since the last load sample.
    pub batch_nanos_max: AtomicU64,
    /// Federation messages the durable ops released that the relay's queue had no room for
    /// (the outbox resend or the peer's resend recovers each).
    pub fed_sends_dropped_total: AtomicU64,
}

/// How far the state is applied, and how far it is durable. The writer raises `applied`
/// while it holds the state's write lock; the sync thread raises `durable` after each sync.
/// A read answers only once `durable` has reached what it saw ([`Engine::durable`]).
pub(crate) struct Durable {
    applied: AtomicU64,
    op: AtomicU64,
    /// `(durable op, stopped)` for blocking waiters.
    lock: Mutex<(u64, bool)>,
    cond: Condvar,
    /// The same for async waiters.
    watch: tokio::sync::watch::Sender<(u64, bool)>,
}

impl Durable {
    pub(crate) fn new(op: u64) -> Durable {
        Durable {
            applied: AtomicU64::new(op),
            op: AtomicU64::new(op),
            lock: Mutex::new((op, false)),
            cond: Condvar::new(),
            watch: tokio::sync::watch::Sender::new((op, false)),
        }
    }

    pub(crate) fn set_applied(&self, op: u64, order: Ordering) {
        self.applied.store(op, order);
    }

    /// Every op up to `op` is durable.
    pub(crate) fn publish(&self, op: u64) {
        self.op.store(op, Ordering::Release);
        let mut lock = self.lock.lock().expect("durable lock");
        lock.0 = op;
        let now = *lock;
        drop(lock);
        self.cond.notify_all();
        self.watch.send_replace(now);
    }

    /// Nothing more becomes durable: waiters beyond the durable op give up.
    pub(crate) fn stop(&self) {
        let mut lock = self.lock.lock().expect("durable lock");
        lock.1 = true;
        let now = *lock;
        drop(lock);
        self.cond.notify_all();
        self.watch.send_replace(now);
    }
}

pub(crate) struct Shared {
    pub state: RwLock<State>,
    /// How reads get the lock between two of the writer's ops without sleeping.
    pub read_gate: readgate::ReadGate,
    pub durable: Durable,
    /// The statistics after the last batch made durable (published by whichever thread
    /// commits it, once its sync is done): statistics reads take no lock and never wait.
    pub stats: arc_swap::ArcSwap<StatsCopy>,
    pub counters: Counters,
    pub stopped: AtomicBool,
    /// The writer's load, sampled every [`LOAD_SAMPLE_SECONDS`], oldest first.
    pub load: Mutex<VecDeque<LoadSample>>,
    /// Whether the state is an engine of a federation (fixed at open).
    pub federated: bool,
    /// Federation messages released by durable ops, for the relay to send
    /// ([`Engine::take_fed_sends`]); at most [`FED_SENDS_MAX`].
    pub fed_sends: Mutex<VecDeque<FedMessage>>,
    pub fed_sends_ready: tokio::sync::Notify,
}

/// Most federation messages waiting for the relay; beyond it they are dropped and counted:
/// each is either in the durable outbox (resent) or an answer the peer's resend asks again.
pub const FED_SENDS_MAX: usize = 65_536;

/// Seconds between two [`LoadSample`]s by default.
pub const LOAD_SAMPLE_SECONDS: u64 = 10;
/// Samples kept: an hour.
pub const LOAD_SAMPLE_COUNT_MAX: usize = 360;

/// The writer's running totals at one moment, taken by the writer itself every
/// [`LOAD_SAMPLE_SECONDS`] whether or not anyone looks (the console's operations page shows
/// the last minutes from them). The difference of two samples is the load between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadSample {
    /// Wall clock, unix seconds.
    pub unix_time: i64,
    pub ops_applied_total: u64,
    pub ops_rejected_total: u64,
    pub batches_total: u64,
    pub sync_nanos_total: u64,
    /// The longest batch (apply, journal, sync, replies) since the previous sample.
    pub batch_nanos_max: u64,
}

/// The engine: state, writer thread, snapshot thread. See the crate documentation.
pub struct Engine {
    shared: Arc<Shared>,
    tx: SyncSender<Message>,
    queue_op_count_max: usize,
    threads: Mutex<Vec<JoinHandle<Result<(), ServerError>>>>,
    head_hash: Arc<Mutex<[u8; 32]>>,
    /// The data directory's lock file, held while the engine lives: one writer per directory.
    lock: Option<std::fs::File>,
    /// The store's own journal check (PostgreSQL); `None` for files.
    auditor: Option<Auditor>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the data directory on the real file system (creating it), recovers, starts the
    /// writer and the snapshot thread, and creates the admin token on first start.
    pub fn open(config: Config) -> Result<(Engine, OpenReport), ServerError> {
        create_private_dir(&config.data_dir)?;
        let lock = lock_data_dir(&config.data_dir)?;
        check_store_marker(&config.data_dir, STORE_FILES)?;
        let journal_storage = FsStorage::open(config.journal_dir()).map_err(io_err)?;
        let snapshot_storage = FsStorage::open(config.journal_dir()).map_err(io_err)?;
        let history = HistoryDir::create(config.history_dir()).map_err(ServerError::Io)?;
        let (mut engine, mut report) = recover::open(
            config.clone(),
            Box::new(FileStore::new(journal_storage, snapshot_storage)),
            Some(history),
        )?;
        engine.lock = Some(lock);
        report.admin_token_created = engine.ensure_admin_token(&config.admin_token_path())?;
        Ok((engine, report))
    }

    /// [`Engine::open_on`] with history files in `history` (as [`Engine::open`] keeps them,
    /// in [`Config::history_dir`]), for callers that manage the directory themselves.
    pub fn open_on_with_history<S: Storage + 'static>(
        config: Config,
        journal_storage: S,
        snapshot_storage: S,
        history: HistoryDir,
    ) -> Result<(Engine, OpenReport), ServerError> {
        recover::open(
            config,
            Box::new(FileStore::new(journal_storage, snapshot_storage)),
            Some(history),
        )
    }

    /// Opens on any storage (tests use the fault-injecting one). `snapshot_storage` must be
    /// the same directory seen through a second handle.
    pub fn open_on<S: Storage + 'static>(
        config: Config,
        journal_storage: S,
        snapshot_storage: S,
    ) -> Result<(Engine, OpenReport), ServerError> {
        recover::open(
            config,
            Box::new(FileStore::new(journal_storage, snapshot_storage)),
            None,
        )
    }

    /// Opens on the data directory (admin token, lock) with the journal and snapshots in
    /// `store` (e.g. PostgreSQL), recovers, starts the writer and the snapshot thread, and creates the
    /// admin token on first start. `kind` names the store in the directory's `store` file
    /// (e.g. `postgres`), so that the directory is never later opened on another store.
    pub fn open_with(
        config: Config,
        kind: &str,
        store: Box<dyn Store>,
    ) -> Result<(Engine, OpenReport), ServerError> {
        create_private_dir(&config.data_dir)?;
        let lock = lock_data_dir(&config.data_dir)?;
        check_store_marker(&config.data_dir, kind)?;
        let (mut engine, mut report) = Self::open_store(config.clone(), store)?;
        engine.lock = Some(lock);
        report.admin_token_created = engine.ensure_admin_token(&config.admin_token_path())?;
        Ok((engine, report))
    }

    /// Opens on any store, without the data directory (no lock, no admin token): for tests
    /// and benchmarks that bring their own store.
    pub fn open_store(
        config: Config,
        store: Box<dyn Store>,
    ) -> Result<(Engine, OpenReport), ServerError> {
        recover::open(config, store, None)
    }

    /// The store's own check of its journal, for stores other than files (`None` for files,
    /// whose journal directory the caller verifies): `(records checked, head)`.
    pub fn verify_store(&self) -> Option<Result<(u64, gongji_journal::Anchor), String>> {
        self.auditor.as_ref().map(|audit| audit())
    }

    /// Queues a group of writes; they are applied in order and answered together once all are
    /// durable (a crash before may keep a prefix of them, never a later one without it). The
    /// receiver yields one result per request.
    pub fn submit(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<tokio::sync::oneshot::Receiver<Vec<WriteResult>>, SubmitError> {
        assert!(!requests.is_empty() && requests.len() <= SUBMISSION_OP_COUNT_MAX);
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(SubmitError::Stopped);
        }
        // Prefetch: the history records a cancellation, a reversal or an answer to a transfer
        // will read are read here, on the caller's thread, so that the writer finds them in
        // memory.
        let history = |r: &WriteRequest| {
            matches!(
                r.body,
                Body::Cancel { .. }
                    | Body::Reverse { .. }
                    | Body::TransferAccept { .. }
                    | Body::TransferDecline { .. }
            )
        };
        if requests.iter().any(history) {
            let read = self.read(|s| {
                requests
                    .iter()
                    .filter(|r| history(r))
                    .map(|r| s.prefetch(&r.actor, &r.body))
                    .sum::<usize>()
            });
            self.shared
                .counters
                .history_prefetched_total
                .fetch_add(read as u64, Ordering::Relaxed);
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.enqueue(Submission::Core { requests, reply })?;
        Ok(rx)
    }

    /// Puts a submission in the bounded queue, or answers `Overloaded`.
    fn enqueue(&self, submission: Submission) -> Result<(), SubmitError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(SubmitError::Stopped);
        }
        let n = submission.len();
        let queued = self
            .shared
            .counters
            .queue_ops
            .fetch_add(n, Ordering::AcqRel);
        if queued + n > self.queue_op_count_max {
            self.shared
                .counters
                .queue_ops
                .fetch_sub(n, Ordering::AcqRel);
            return Err(SubmitError::Overloaded);
        }
        match self.tx.try_send(Message::Write(submission)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared
                    .counters
                    .queue_ops
                    .fetch_sub(n, Ordering::AcqRel);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::Overloaded,
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }

    /// `submit` and wait, for callers outside an async runtime.
    pub fn submit_wait(
        &self,
        requests: Vec<WriteRequest>,
    ) -> Result<Vec<WriteResult>, SubmitError> {
        let rx = self.submit(requests)?;
        rx.blocking_recv().map_err(|_| SubmitError::Stopped)
    }

    /// Runs `f` on the current state (a read lock; the writer waits at most one read). The
    /// state may hold applied ops that are not durable yet: what `f` returns must not reach a
    /// client before [`Engine::durable`] of [`Engine::applied_op`] taken after it returns (or
    /// use [`Engine::read_durable`]).
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.shared.read_gate.read(&self.shared.state))
    }

    /// Ops applied to the state so far (some may not be durable yet). Taken after a read, it
    /// is at least the op count that read saw.
    pub fn applied_op(&self) -> u64 {
        self.shared.durable.applied.load(Ordering::Acquire)
    }

    /// Ops durable in the journal so far.
    pub fn durable_op(&self) -> u64 {
        self.shared.durable.op.load(Ordering::Acquire)
    }

    /// Waits until every op up to `op` is durable; `Stopped` when the writer stopped before
    /// (then what a read saw beyond the durable op may be lost in a crash and must not be
    /// shown). At full load this is the rest of the batch being applied and its sync.
    pub async fn durable(&self, op: u64) -> Result<(), SubmitError> {
        if self.durable_op() >= op {
            return Ok(());
        }
        let mut rx = self.shared.durable.watch.subscribe();
        loop {
            let (durable, stopped) = *rx.borrow_and_update();
            if durable >= op {
                return Ok(());
            }
            if stopped || rx.changed().await.is_err() {
                return Err(SubmitError::Stopped);
            }
        }
    }

    /// [`Engine::durable`] for callers outside an async runtime.
    pub fn wait_durable(&self, op: u64) -> Result<(), SubmitError> {
        if self.durable_op() >= op {
            return Ok(());
        }
        let mut lock = self.shared.durable.lock.lock().expect("durable lock");
        loop {
            if lock.0 >= op {
                return Ok(());
            }
            if lock.1 {
                return Err(SubmitError::Stopped);
            }
            lock = self.shared.durable.cond.wait(lock).expect("durable lock");
        }
    }

    /// The statistics table (as [`State::stats`]) as of the last batch made durable: no lock,
    /// no wait, and nothing a crash could undo. Ops of the batch being synced and of the one
    /// being applied are not in it yet.
    pub fn stats_durable(&self, from: Period, to: Period, province: Option<u8>) -> StatsView {
        self.shared.stats.load().stats(from, to, province)
    }

    /// Runs `f` on the current state and returns its result once every op the state held is
    /// durable: what a client may be shown.
    pub fn read_durable<R>(&self, f: impl FnOnce(&State) -> R) -> Result<R, SubmitError> {
        let (result, seen) = self.read(|s| (f(s), s.op_count()));
        self.wait_durable(seen)?;
        Ok(result)
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// This engine's federation configuration, if it is federated.
    pub fn federation(&self) -> Option<FederationConfig> {
        if !self.shared.federated {
            return None;
        }
        self.read(|s| s.federation_config().cloned())
    }

    /// Queues federation ops (a federated engine only); answered like [`Engine::submit`],
    /// once every op up to them is durable.
    pub fn submit_fed(
        &self,
        requests: Vec<FedRequest>,
    ) -> Result<tokio::sync::oneshot::Receiver<Vec<FedResult>>, SubmitError> {
        assert!(!requests.is_empty() && requests.len() <= SUBMISSION_OP_COUNT_MAX);
        assert!(
            self.shared.federated,
            "federation ops on a federated engine"
        );
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.enqueue(Submission::Fed { requests, reply })?;
        Ok(rx)
    }

    /// Takes the federation messages released by durable ops so far (oldest first).
    pub fn take_fed_sends(&self) -> Vec<FedMessage> {
        let mut sends = self.shared.fed_sends.lock().expect("fed sends lock");
        sends.drain(..).collect()
    }

    /// Waits until [`Engine::take_fed_sends`] may have something.
    pub async fn fed_sends_ready(&self) {
        self.shared.fed_sends_ready.notified().await;
    }

    /// The writer's load samples of the last hour, oldest first.
    pub fn load_samples(&self) -> Vec<LoadSample> {
        let load = self.shared.load.lock().expect("load lock");
        load.iter().copied().collect()
    }

    /// Whether the writer is still running (false after shutdown or a fatal error).
    pub fn is_running(&self) -> bool {
        !self.shared.stopped.load(Ordering::Acquire)
    }

    /// Chain hash after the newest durable op.
    pub fn head_hash(&self) -> [u8; 32] {
        *self.head_hash.lock().expect("head hash lock")
    }

    /// Stops accepting, lets the writer finish and sync what is queued, waits for the snapshot
    /// thread to write the final snapshot, and joins both threads. Returns the first error any of
    /// them stopped with.
    pub fn shutdown(&self) -> Result<(), ServerError> {
        // A full queue still takes the stop message once the writer drains it.
        let _ = self.tx.send(Message::Stop);
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
        let mut first_error = None;
        for thread in threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => first_error = first_error.or(Some(e)),
                Err(_) => {
                    first_error =
                        first_error.or(Some(ServerError::Corrupt("thread panicked".into())))
                }
            }
        }
        self.shared.stopped.store(true, Ordering::Release);
        first_error.map_or(Ok(()), Err)
    }

    /// Creates the admin token on first start (no token in the state yet): a random token,
    /// written alone on one line to `path` with mode 0600, its hash applied as an op.
    fn ensure_admin_token(&self, path: &Path) -> Result<bool, ServerError> {
        if self.read(|s| s.token_count()) > 0 {
            return Ok(false);
        }
        let token = new_token();
        let request = WriteRequest {
            msgid: Msgid::from("gongji-bootstrap-admin-token").expect("short msgid"),
            inf_time: None,
            actor: Actor::Admin,
            body: Body::CreateToken {
                token_hash: token_hash(&token),
                role: gongji_core::Role::Admin,
                fixmedins_code: None,
                psn_no: None,
            },
        };
        let results = self.submit_wait(vec![request]).map_err(|e| {
            ServerError::Corrupt(format!("could not create the admin token: {e:?}"))
        })?;
        if let Err(rejection) = &results[0] {
            return Err(ServerError::Corrupt(format!(
                "admin token refused: {rejection:?}"
            )));
        }
        write_secret_file(path, &format!("{token}\n"))?;
        Ok(true)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A new random token: 32 bytes from the OS, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS randomness");
    format!("gj_{}", hex::encode(bytes))
}

/// The hash under which a token is stored: the raw token never enters the state or a log.
pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    write_private_file(path, &[contents.as_bytes()])
}

/// Writes `parts` to `path` whole or not at all: a private temporary file beside it, fsynced,
/// then renamed over `path`. The caller fsyncs the directory when the rename must be durable.
pub(crate) fn write_private_file(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    restrict(&file)?;
    for part in parts {
        file.write_all(part)?;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Takes the data directory's exclusive lock, so that a second process (a second `serve`, or
/// `gongji token` while serving) cannot write the same journal.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, ServerError> {
    let file = private_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    restrict(&file)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::InUse(dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// The store a data directory's journal lives in, by the `store` file (files when absent).
const STORE_FILES: &str = "files";

/// Refuses a data directory made for another store: its journal is elsewhere, and opening it
/// here would start a second, empty history. Records `kind` on first use.
fn check_store_marker(dir: &Path, kind: &str) -> Result<(), ServerError> {
    let path = dir.join("store");
    let recorded = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let journal_used = std::fs::read_dir(dir.join("journal"))
                .map(|mut entries| entries.next().is_some())
                .unwrap_or(false);
            if kind == STORE_FILES || !journal_used {
                if kind != STORE_FILES {
                    write_secret_file(&path, &format!("{kind}\n"))?;
                }
                return Ok(());
            }
            STORE_FILES.to_owned()
        }
        Err(e) => return Err(e.into()),
    };
    if recorded != kind {
        return Err(ServerError::Store(format!(
            "{} keeps its journal in {recorded}, not {kind}: start it with the same store \
             (--store), or use another data directory",
            dir.display()
        )));
    }
    Ok(())
}

fn io_err(e: gongji_journal::StorageError) -> ServerError {
    ServerError::Corrupt(format!("storage: {e}"))
}

/// Seconds since the epoch by the machine's clock: the writer's own time.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Verifies every record and the hash chain of the journal in `dir`, without changing it.
/// When early segments were removed after a snapshot, the chain is checked from the oldest
/// segment present, whose header carries the chain hash before it.
pub fn verify_journal_dir(
    dir: &Path,
    config: &JournalConfig,
) -> Result<gongji_journal::Recovery, JournalError> {
    let storage = FsStorage::open(dir)?;
    let oldest = storage
        .list()?
        .iter()
        .filter_map(|name| gongji_journal::parse_segment_name(name).map(|op| (op, name.clone())))
        .min();
    let start = match oldest {
        Some((first_op, name)) if first_op > 1 => {
            let mut bytes = vec![0u8; gongji_journal::format::SEGMENT_HEADER_BYTES];
            storage.read_at(&name, 0, &mut bytes)?;
            let header = gongji_journal::format::SegmentHeader::decode(&bytes).map_err(|d| {
                JournalError::Damage(gongji_journal::Damage {
                    file: name.clone(),
                    offset: 0,
                    kind: gongji_journal::DamageKind::SegmentHeader(d),
                })
            })?;
            Some(gongji_journal::Anchor {
                op: first_op - 1,
                chain_hash: header.prev_chain_hash,
            })
        }
        _ => None,
    };
    gongji_journal::verify(&storage, config, start)
}
