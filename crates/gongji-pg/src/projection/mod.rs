//! The SQL projection: tables of persons, accounts, wallets, bindings, settlements, wallet
//! transfers, contributions and entries, and views of the statistics table, for analysts.
//!
//! The journal holds commands, not their effects, and the engine is deterministic: the
//! [`Projector`] keeps its own replica [`State`], reads the ops after its cursor from an
//! [`OpSource`], applies each, and writes the records the ops added or changed — found from
//! the replies (status changes, revocations, cancellations) and from the new ledger entries
//! (balances, transfers, including transfers returned on expiry inside any op) — with the new
//! cursor in one transaction per chunk of ops. So every op is projected exactly once: a
//! projector stopped or killed mid-chunk leaves the previous chunk's tables and cursor, and
//! starts again from there.
//!
//! Start: with no cursor (a fresh database) or `rebuild`, the projector empties its tables,
//! loads the newest snapshot of the source and writes every record of it in one transaction,
//! with the cursor at the snapshot's op (a snapshot carries all history, so the tables are
//! the same as if every op had been projected one by one); then it follows the journal. With
//! a cursor it rebuilds its replica at the cursor from the newest snapshot at or before it and
//! the journal after that, and compares the journal's chain hash at the cursor with the one
//! stored beside the cursor: a projection written from another engine's journal is refused.
//! If the source no longer holds the op after the cursor (the writer removed old segments
//! after a snapshot while the projector was behind), a running projector reloads from the
//! newest snapshot, as a rebuild does.
//!
//! A federated engine's journal (docs/FEDERATION.md) is projected the same way: the replica
//! takes its `[federation]` table from the snapshot it starts from, as recovery does, and the
//! projector applies each entry with `decode_entry` and `State::apply_entry`. Its
//! [`ProjectorConfig::federation`] must be the snapshot's table (both none for an unfederated
//! engine): a projector configured otherwise is refused before it writes anything. Federation
//! ops move money through entries like any op; the exchanges and cross-engine bindings they
//! add or change are found from the op, its reply and the messages it releases, and written
//! to `gongji.exchanges` and `gongji.cross_engine_bindings`.

mod file_source;
mod pg_source;
mod source;
mod write;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gongji_core::codec::decode_op;
use gongji_core::federation::codec::decode_entry;
use gongji_core::federation::{
    Entry, EntryReply, FedOp, FedReply, FederationConfig, Message as FedMessage, Xid,
};
use gongji_core::reply::ReversalResult;
use gongji_core::{Body, Command, MsgidScope, Op, Reply, State};
use gongji_journal::format::{chain_next, GENESIS_CHAIN_HASH};

pub use file_source::FileJournalSource;
pub use pg_source::PgJournalSource;
pub use source::{OpSource, SourceError, SourceSnapshot};
pub use write::RowCounts;

use write::{Dirty, Marks};

/// Tuning of a projector, and the engine it expects.
#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// Most ops applied and written in one transaction.
    pub chunk_ops_max: usize,
    /// Wait between reads of the source when it had nothing new.
    pub poll_interval: Duration,
    /// The engine's `[federation]` table (`None`: an unfederated engine). It must be the one
    /// the journal's snapshots carry, or the projector refuses to start.
    pub federation: Option<FederationConfig>,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            chunk_ops_max: 20_000,
            poll_interval: Duration::from_millis(20),
            federation: None,
        }
    }
}

#[derive(Debug)]
pub enum ProjectionError {
    /// Could not connect (bad URL, server down, authentication).
    Connect {
        url: String,
        error: postgres::Error,
    },
    Migrate(crate::migrate::MigrateError),
    Postgres(postgres::Error),
    Source(SourceError),
    /// The stored cursor is past the end of the journal.
    CursorAhead {
        cursor: u64,
        journal_head: u64,
    },
    /// The projection was written from another journal (another engine or data directory).
    EngineMismatch {
        op: u64,
        stored: String,
        journal: String,
    },
    /// The source cannot rebuild a replica at the cursor (no snapshot at or before it).
    NoStart(String),
    /// The journal disagrees with itself or with the replica (an op that does not decode or
    /// is rejected on replay).
    Journal(String),
    /// Another projector moved the cursor meanwhile.
    Concurrent,
    /// The projector's `[federation]` table is not the journal's (a federated journal given
    /// to a projector without the table, or the reverse, or another table).
    Federation {
        configured: Option<String>,
        journal: Option<String>,
    },
}

impl std::fmt::Display for ProjectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ProjectionError::*;
        match self {
            Connect { url, error } => {
                write!(f, "cannot connect to {url}: {}", pg_text(error))
            }
            Migrate(crate::migrate::MigrateError::Postgres(e)) => {
                write!(f, "projection schema: {}", pg_text(e))
            }
            Migrate(e) => write!(f, "projection schema: {e}"),
            Postgres(e) => write!(f, "projection database: {}", pg_text(e)),
            Source(e) => write!(f, "{e}"),
            CursorAhead {
                cursor,
                journal_head,
            } => write!(
                f,
                "the projection's cursor is at op {cursor} but the journal ends at op \
                 {journal_head}: the projection is not from this journal, or the journal lost \
                 its tail; rebuild it with `gongji project --rebuild`"
            ),
            EngineMismatch {
                op,
                stored,
                journal,
            } => write!(
                f,
                "the projection was written from another engine's journal: chain hash at op \
                 {op} is {stored} in the projection, {journal} in this journal; use another \
                 database or rebuild it with `gongji project --rebuild`"
            ),
            NoStart(why) => write!(f, "{why}"),
            Journal(why) => write!(f, "journal: {why}"),
            Concurrent => write!(
                f,
                "another projector moved the cursor: only one projector may write a database"
            ),
            Federation {
                configured,
                journal,
            } => {
                let table = |t: &Option<String>| match t {
                    Some(t) => format!("[federation] {t}"),
                    None => "no [federation]".to_string(),
                };
                write!(
                    f,
                    "the projector has {} but the journal's snapshot has {}: project a \
                     federated engine's journal with its own [federation] table (serve \
                     --config, project --config), an unfederated one without",
                    table(configured),
                    table(journal)
                )
            }
        }
    }
}

impl std::error::Error for ProjectionError {}

/// A PostgreSQL error with the server's code and message, or the client's cause.
fn pg_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl From<postgres::Error> for ProjectionError {
    fn from(e: postgres::Error) -> Self {
        ProjectionError::Postgres(e)
    }
}

impl From<SourceError> for ProjectionError {
    fn from(e: SourceError) -> Self {
        ProjectionError::Source(e)
    }
}

/// Where the projection stands: the last op projected and the chain hash after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub op: u64,
    pub chain_hash: [u8; 32],
}

/// What the projector has done since it opened.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProjectorStats {
    /// The op of the snapshot loaded by a rebuild at open (or on falling behind).
    pub rebuilt_from: Option<u64>,
    /// Ops replayed into the replica at open without writing (they were projected before).
    pub replayed_at_open: u64,
    pub ops_projected: u64,
    pub chunks: u64,
    pub rows: RowCounts,
    /// Time spent applying ops to the replica, and writing rows and committing.
    pub apply_time: Duration,
    pub write_time: Duration,
    /// Largest time from an op being seen durable in the source to its commit in SQL (only
    /// when the source knows its head).
    pub delay_max: Duration,
}

/// The projector: a replica state, a source, a database. See the module documentation.
pub struct Projector<S: OpSource> {
    source: S,
    db: postgres::Client,
    replica: State,
    cursor: Cursor,
    config: ProjectorConfig,
    /// Heads seen in the source and when, not yet projected: for the lag.
    seen: VecDeque<(u64, Instant)>,
    stats: ProjectorStats,
}

impl<S: OpSource> std::fmt::Debug for Projector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("cursor", &self.cursor.op)
            .finish_non_exhaustive()
    }
}

/// A federation table in one line, for errors.
fn describe(c: &FederationConfig) -> String {
    format!(
        "engine {} (provinces {:?}, peers {:?})",
        c.engine, c.provinces, c.peers
    )
}

fn hex32(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// One journaled op as applied: the entry, what it answered, and the federation messages it
/// released (none on an unfederated engine).
struct Journaled {
    entry: Entry,
    reply: EntryReply,
    send: Vec<FedMessage>,
}

/// Decodes and applies one journaled op to `state`; it must apply as new, as it did in the
/// engine. As recovery does: a federated state's journal is decoded with `decode_entry` and
/// applied with `apply_entry`, an unfederated one's with `decode_op` and `apply` (which
/// refuses a federation op's tag).
fn apply_journaled(
    state: &mut State,
    op_no: u64,
    bytes: &[u8],
) -> Result<Journaled, ProjectionError> {
    let does_not_decode = |e| ProjectionError::Journal(format!("op {op_no} does not decode: {e}"));
    let applied = if state.federation_config().is_some() {
        let entry = decode_entry(bytes).map_err(does_not_decode)?;
        state.apply_entry(&entry).map(|a| {
            let journaled = Journaled {
                entry,
                reply: a.reply,
                send: a.send,
            };
            (journaled, a.replayed)
        })
    } else {
        let op = decode_op(bytes).map_err(does_not_decode)?;
        state.apply(&op).map(|a| {
            let journaled = Journaled {
                entry: Entry::Core(op),
                reply: EntryReply::Core(a.reply),
                send: Vec::new(),
            };
            (journaled, a.replayed)
        })
    };
    match applied {
        Ok((journaled, false)) => Ok(journaled),
        Ok((_, true)) => Err(ProjectionError::Journal(format!(
            "op {op_no} replays an earlier msgid"
        ))),
        Err(rejection) => Err(ProjectionError::Journal(format!(
            "op {op_no} is rejected on replay: {rejection:?}"
        ))),
    }
}

/// The exchanges and cross-engine bindings an op of a federated journal may have added or
/// changed: the ids it names, its reply names, and every message it released names (a core
/// op names none, but may release the outcomes of exchanges it expired). Every change of such
/// a record is one of these: an exchange or binding made (the client's write, or the `Prepare`,
/// `Block`, `Bind` or early `Unbind` delivered), answered (accept, decline, a delivered
/// outcome or status: the op names it), revoked or reversed (the op names it), or closed by
/// the clock (its `Outcome` is released).
fn touched_ids(j: &Journaled) -> Vec<Xid> {
    let mut ids: Vec<Xid> = j.send.iter().filter_map(FedMessage::xid).collect();
    if let Entry::Fed(op) = &j.entry {
        match op {
            FedOp::Accept { xid, .. } | FedOp::Decline { xid, .. } => ids.push(*xid),
            FedOp::Unbind { bxid, .. } => ids.push(*bxid),
            FedOp::Deliver { msg, .. } => ids.extend(msg.xid()),
            FedOp::TransferOut { .. }
            | FedOp::Reverse { .. }
            | FedOp::BindOut { .. }
            | FedOp::Forget { .. } => {}
        }
    }
    match &j.reply {
        EntryReply::Fed(FedReply::Exchange(x)) => ids.push(x.xid),
        EntryReply::Fed(FedReply::Binding(b)) => ids.push(b.bxid),
        _ => {}
    }
    ids
}

/// The msgid scope a reversal op looked its `omsgid` up in.
fn reversal_scope(op: &Op) -> Option<MsgidScope<'_>> {
    match op {
        Op::Write(Command {
            actor,
            body: Body::Reverse { fixmedins_code, .. },
            ..
        }) => Some(match fixmedins_code {
            Some(code) => MsgidScope::Institution(code),
            None => actor.msgid_scope(),
        }),
        _ => None,
    }
}

impl<S: OpSource> Projector<S> {
    /// Connects, applies the migrations, and positions the projector: a rebuild from the
    /// newest snapshot when `rebuild` or when the database has no projection yet, otherwise
    /// the replica rebuilt at the stored cursor and the journal's identity checked.
    pub fn open(
        url: &str,
        source: S,
        config: ProjectorConfig,
        rebuild: bool,
    ) -> Result<Projector<S>, ProjectionError> {
        let mut db = crate::connect(url).map_err(|error| ProjectionError::Connect {
            url: crate::redact(url),
            error,
        })?;
        crate::migrate(&mut db, crate::MIGRATIONS).map_err(ProjectionError::Migrate)?;
        // The projection is rebuilt from the journal and its cursor commits with its rows, so a
        // commit lost in a crash of the database server is simply projected again: commits
        // need not wait for the WAL flush.
        db.batch_execute("SET synchronous_commit = off")?;
        let stored = read_cursor(&mut db)?;
        let mut projector = Projector {
            source,
            db,
            replica: State::new(gongji_core::Params::default()),
            cursor: Cursor {
                op: 0,
                chain_hash: GENESIS_CHAIN_HASH,
            },
            config,
            seen: VecDeque::new(),
            stats: ProjectorStats::default(),
        };
        match (stored, rebuild) {
            (Some(cursor), false) => projector.restore(cursor)?,
            _ => projector.rebuild()?,
        }
        Ok(projector)
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    pub fn stats(&self) -> ProjectorStats {
        self.stats
    }

    /// The replica, for tests and reports: the state at the cursor.
    pub fn replica(&self) -> &State {
        &self.replica
    }

    pub fn into_source(self) -> S {
        self.source
    }

    /// Decodes a snapshot of the source into a replica, with its history attached, and
    /// checks that it is the engine this projector was configured for.
    fn load(&mut self, snapshot: &SourceSnapshot) -> Result<State, ProjectionError> {
        let mut state = State::decode_snapshot(&snapshot.body).map_err(|e| {
            ProjectionError::Journal(format!("snapshot {} does not decode: {e}", snapshot.op))
        })?;
        if state.federation_config() != self.config.federation.as_ref() {
            return Err(ProjectionError::Federation {
                configured: self.config.federation.as_ref().map(describe),
                journal: state.federation_config().map(describe),
            });
        }
        self.source.attach_history(&mut state)?;
        Ok(state)
    }

    /// Empties the tables and writes the newest snapshot's state, in one transaction.
    fn rebuild(&mut self) -> Result<(), ProjectionError> {
        let snapshot = self.source.snapshot(u64::MAX)?.ok_or_else(|| {
            ProjectionError::NoStart(
                "the journal has no snapshot yet: start the server on the data directory once"
                    .into(),
            )
        })?;
        let state = self.load(&snapshot)?;
        // Every exchange and cross-engine binding the snapshot holds.
        let mut everything = Dirty::default();
        for x in state.exchange_rows() {
            everything.exchanges.insert(x.number, x);
        }
        for l in state.links() {
            everything.links.insert(l.bxid, l);
        }
        let started = Instant::now();
        let mut tx = self.db.transaction()?;
        tx.batch_execute(&format!(
            "TRUNCATE {}, gongji.projection_cursor",
            write::TABLES.join(", ")
        ))?;
        let rows = write::write_changes(&mut tx, &state, &Marks::default(), &everything)?;
        tx.execute(
            "INSERT INTO gongji.projection_cursor (op, chain_hash, engine_clock)
             VALUES ($1, $2, $3)",
            &[
                &(snapshot.op as i64),
                &snapshot.chain_hash.as_slice(),
                &state.clock(),
            ],
        )?;
        tx.commit()?;
        tracing::info!(
            op = snapshot.op,
            millis = started.elapsed().as_millis() as u64,
            %rows,
            "projection loaded from a snapshot"
        );
        self.replica = state;
        self.cursor = Cursor {
            op: snapshot.op,
            chain_hash: snapshot.chain_hash,
        };
        self.stats.rebuilt_from = Some(snapshot.op);
        self.stats.rows.add(&rows);
        self.export_metrics();
        Ok(())
    }

    /// Rebuilds the replica at `stored` and checks that the journal is the one projected.
    fn restore(&mut self, stored: Cursor) -> Result<(), ProjectionError> {
        let snapshot = self.source.snapshot(stored.op)?.ok_or_else(|| {
            ProjectionError::NoStart(format!(
                "no snapshot at or before the projection's cursor (op {}) is left to rebuild \
                 its state from: rebuild the projection with `gongji project --rebuild`",
                stored.op
            ))
        })?;
        self.replica = self.load(&snapshot)?;
        self.cursor = Cursor {
            op: snapshot.op,
            chain_hash: snapshot.chain_hash,
        };
        while self.cursor.op < stored.op {
            let want = usize::try_from(stored.op - self.cursor.op).unwrap_or(usize::MAX);
            let ops = self
                .source
                .read(self.cursor.op, want.min(self.config.chunk_ops_max))?;
            if ops.is_empty() {
                return Err(ProjectionError::CursorAhead {
                    cursor: stored.op,
                    journal_head: self.cursor.op,
                });
            }
            for (op, bytes) in ops {
                self.advance(op, &bytes)?;
                self.stats.replayed_at_open += 1;
            }
        }
        if self.cursor.chain_hash != stored.chain_hash {
            return Err(ProjectionError::EngineMismatch {
                op: stored.op,
                stored: hex32(&stored.chain_hash),
                journal: hex32(&self.cursor.chain_hash),
            });
        }
        self.export_metrics();
        Ok(())
    }

    /// Applies op `op` to the replica and moves the in-memory cursor past it.
    fn advance(&mut self, op: u64, bytes: &[u8]) -> Result<Journaled, ProjectionError> {
        if op != self.cursor.op + 1 {
            return Err(ProjectionError::Journal(format!(
                "op {op} follows op {}: ops must come in sequence",
                self.cursor.op
            )));
        }
        let journaled = apply_journaled(&mut self.replica, op, bytes)?;
        self.cursor = Cursor {
            op,
            chain_hash: chain_next(&self.cursor.chain_hash, op, journaled.entry.time(), bytes),
        };
        Ok(journaled)
    }

    /// Projects the ops given, in one transaction with the new cursor. Ops at or before the
    /// cursor are skipped (they were projected before): feeding an op twice changes nothing.
    /// After an error the projector must be reopened (its replica may be ahead of the tables).
    pub fn project(&mut self, ops: &[(u64, Vec<u8>)]) -> Result<RowCounts, ProjectionError> {
        let ops: Vec<&(u64, Vec<u8>)> = ops.iter().filter(|(op, _)| *op > self.cursor.op).collect();
        if ops.is_empty() {
            return Ok(RowCounts::default());
        }
        // Checked before any op touches the replica: a gap is the caller's error, not a
        // reason to leave the replica ahead of the tables.
        if let Some(gap) = ops
            .iter()
            .zip(self.cursor.op + 1..)
            .find(|((op, _), want)| op != want)
        {
            return Err(ProjectionError::Journal(format!(
                "op {} where op {} was due: ops must come in sequence",
                (gap.0).0,
                gap.1
            )));
        }
        let before = Marks::of(&self.replica);
        let from = self.cursor;
        let mut dirty = Dirty::default();
        let started = Instant::now();
        for (op, bytes) in ops.iter().copied() {
            let journaled = self.advance(*op, bytes)?;
            match (&journaled.reply, &journaled.entry) {
                (EntryReply::Core(reply), Entry::Core(decoded)) => {
                    self.note_changes(reply, decoded, &mut dirty)?;
                }
                (EntryReply::Fed(_), Entry::Fed(_)) => {}
                _ => unreachable!("a core op answers with a core reply, a federation op not"),
            }
            self.note_federation(&journaled, &mut dirty);
        }
        let applied = Instant::now();
        self.stats.apply_time += applied - started;
        let mut tx = self.db.transaction()?;
        // Locks the cursor row: a second projector on this database waits here, then finds
        // the cursor moved.
        if read_cursor_in(&mut tx, true)? != Some(from) {
            return Err(ProjectionError::Concurrent);
        }
        let rows = write::write_changes(&mut tx, &self.replica, &before, &dirty)?;
        let moved = tx.execute(
            "UPDATE gongji.projection_cursor
             SET op = $1, chain_hash = $2, engine_clock = $3, updated_at = now()
             WHERE op = $4 AND chain_hash = $5",
            &[
                &(self.cursor.op as i64),
                &self.cursor.chain_hash.as_slice(),
                &self.replica.clock(),
                &(from.op as i64),
                &from.chain_hash.as_slice(),
            ],
        )?;
        if moved != 1 {
            return Err(ProjectionError::Concurrent);
        }
        tx.commit()?;
        self.stats.write_time += applied.elapsed();
        self.stats.ops_projected += ops.len() as u64;
        self.stats.chunks += 1;
        self.stats.rows.add(&rows);
        metrics::counter!("gongji_projection_ops_total").increment(ops.len() as u64);
        self.note_projected();
        Ok(rows)
    }

    /// Records what a reply (to `op`) says changed among older records.
    fn note_changes(
        &self,
        reply: &Reply,
        op: &Op,
        dirty: &mut Dirty,
    ) -> Result<(), ProjectionError> {
        let state = &self.replica;
        match reply {
            Reply::Person(view) => {
                let i = state.person_index_of(&view.psn_no).ok_or_else(|| {
                    ProjectionError::Journal(format!("no person {}", view.psn_no))
                })?;
                dirty.persons.insert(i);
            }
            Reply::Bound { binding, .. } => {
                // A revocation moves the priorities of the receiver's other givers.
                dirty.bindings.insert(*binding);
                let receiver = state.binding_row(*binding).receiver;
                dirty
                    .bindings
                    .extend(state.active_bindings_received_by(receiver));
            }
            Reply::Cancelled(s) => {
                dirty.setls.insert(*s);
            }
            Reply::Reversal {
                omsgid,
                result: ReversalResult::Cancelled,
            } => match reversal_scope(op).and_then(|scope| state.reply_of(scope, omsgid)) {
                Some(Reply::Settled(s)) => {
                    dirty.setls.insert(s);
                }
                _ => {
                    return Err(ProjectionError::Journal(format!(
                        "reversal of {omsgid} cancelled no settlement on the replica"
                    )))
                }
            },
            _ => {}
        }
        Ok(())
    }

    /// Records the exchanges and cross-engine bindings an op touched (`touched_ids`), as they
    /// are right after it: a later op of the chunk that changes one touches it again, and one
    /// that forgets it leaves its last state to be written.
    fn note_federation(&self, j: &Journaled, dirty: &mut Dirty) {
        for id in touched_ids(j) {
            if let Some(x) = self.replica.exchange_row(&id) {
                dirty.exchanges.insert(x.number, x);
            }
            if let Some(l) = self.replica.cross_binding(&id) {
                dirty.links.insert(l.bxid, l);
            }
        }
    }

    /// Reads and projects one chunk after the cursor. Returns the ops projected (0: nothing
    /// new). When the source no longer holds the next op, reloads from the newest snapshot.
    pub fn step(&mut self) -> Result<usize, ProjectionError> {
        if let Some(head) = self.source.head()? {
            let last = self.seen.back().map_or(self.cursor.op, |s| s.0);
            if head > last {
                self.seen.push_back((head, Instant::now()));
            }
        }
        let ops = match self.source.read(self.cursor.op, self.config.chunk_ops_max) {
            Ok(ops) => ops,
            Err(SourceError::Gone { after, first_op }) => {
                tracing::warn!(
                    cursor = after,
                    first_op,
                    "the journal was trimmed past the projection's cursor; reloading from the \
                     newest snapshot"
                );
                let behind = self.cursor.op;
                self.rebuild()?;
                if self.cursor.op <= behind {
                    return Err(ProjectionError::NoStart(format!(
                        "the journal no longer holds op {} and no newer snapshot exists",
                        behind + 1
                    )));
                }
                self.note_projected();
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        };
        self.project(&ops)?;
        Ok(ops.len())
    }

    /// Projects until the source has nothing more; returns the ops projected.
    pub fn catch_up(&mut self) -> Result<u64, ProjectionError> {
        let mut total = 0;
        loop {
            let n = self.step()?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }

    /// Follows the source until `stop` is set, polling when there is nothing new.
    pub fn follow(&mut self, stop: &AtomicBool) -> Result<(), ProjectionError> {
        while !stop.load(Ordering::Acquire) {
            if self.step()? == 0 {
                self.export_metrics();
                std::thread::sleep(self.config.poll_interval);
            }
        }
        Ok(())
    }

    fn note_projected(&mut self) {
        let now = Instant::now();
        let mut delay = None;
        while let Some(&(op, at)) = self.seen.front() {
            if op > self.cursor.op {
                break;
            }
            self.seen.pop_front();
            delay.get_or_insert(now - at);
        }
        if let Some(delay) = delay {
            self.stats.delay_max = self.stats.delay_max.max(delay);
            metrics::histogram!("gongji_projection_delay_seconds").record(delay.as_secs_f64());
        }
        self.export_metrics();
    }

    fn export_metrics(&self) {
        let now = Instant::now();
        let lag = self
            .seen
            .front()
            .map_or(Duration::ZERO, |&(_, at)| now - at);
        let head = self.seen.back().map_or(self.cursor.op, |s| s.0);
        metrics::gauge!("gongji_projection_cursor_op").set(self.cursor.op as f64);
        metrics::gauge!("gongji_projection_lag_ops")
            .set(head.saturating_sub(self.cursor.op) as f64);
        metrics::gauge!("gongji_projection_lag_seconds").set(lag.as_secs_f64());
    }
}

/// The stored cursor, if the database holds a projection.
pub fn read_cursor(db: &mut postgres::Client) -> Result<Option<Cursor>, ProjectionError> {
    let mut tx = db.transaction()?;
    let cursor = read_cursor_in(&mut tx, false)?;
    tx.commit()?;
    Ok(cursor)
}

fn read_cursor_in(
    tx: &mut postgres::Transaction<'_>,
    lock: bool,
) -> Result<Option<Cursor>, ProjectionError> {
    let sql = if lock {
        "SELECT op, chain_hash FROM gongji.projection_cursor WHERE id FOR UPDATE"
    } else {
        "SELECT op, chain_hash FROM gongji.projection_cursor WHERE id"
    };
    let row = tx.query_opt(sql, &[])?;
    Ok(match row {
        None => None,
        Some(row) => {
            let op: i64 = row.get(0);
            let hash: Vec<u8> = row.get(1);
            Some(Cursor {
                op: u64::try_from(op).map_err(|_| {
                    ProjectionError::Journal(format!("stored cursor {op} is negative"))
                })?,
                chain_hash: hash.try_into().map_err(|_| {
                    ProjectionError::Journal("stored chain hash is not 32 bytes".into())
                })?,
            })
        }
    })
}
