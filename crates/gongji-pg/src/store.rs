//! The journal and snapshots in PostgreSQL: `gongji serve --store postgres://…`.
//!
//! [`PgStore`] implements `gongji_server::Store`. The schema is `migrations/0001_store.sql`:
//! `gongji_journal (op PK, time, body, chain_hash)`, `gongji_snapshot` and
//! `gongji_snapshot_chunk`.
//!
//! - **One batch, one statement.** [`Log::sync`] sends the buffered ops as one
//!   `INSERT … SELECT FROM unnest($arrays)` in autocommit: one round trip, one durable commit
//!   (`synchronous_commit` as the server has it; `on` by default). The statement also demands
//!   that the row before the batch holds the chain hash this writer holds, so a database that
//!   was rolled back or replaced under a running writer is refused, not extended.
//! - **Fencing by constraint.** The op number is the primary key. A second writer that thinks
//!   it is primary collides on its first op (its head is behind the committed one), gets
//!   `unique_violation`, and stops ([`ServerError::Fenced`]); nothing of that batch is
//!   acknowledged. A session advisory lock ([`PgStoreOptions::advisory_lock`]) also refuses a
//!   second serving process up front, but the key is what guarantees one history.
//! - **Recovery** loads the newest snapshot that verifies (length and blake3 of its chunks),
//!   then replays the rows after it, checking that op numbers follow without a gap and that
//!   every row's chain hash is `chain_next` of the one before: the same state hash and the same
//!   head hash as the file journal holding the same ops.
//! - **Snapshots** are written by the shadow thread on its own connection, one transaction
//!   each, the body in chunks of [`SNAPSHOT_CHUNK_BYTES`]; the newest two are kept.
//! - **Journal retention.** Rows are kept by default (the SQL projection and audits read
//!   them); [`PgStoreOptions::prune_journal`] deletes rows before the older kept snapshot.

use std::time::{Duration, Instant};

use gongji_journal::format::chain_next;
use gongji_journal::{
    Anchor, ChainHash, Encode, JournalError, LoadedSnapshot, SkippedSnapshot, SnapshotDefect,
    SnapshotError, TornTail, GENESIS_CHAIN_HASH,
};
use gongji_server::{Appended, Auditor, Config, Log, ServerError, SnapshotStore, Store};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Statement};

use crate::{migrate, redact, MIGRATIONS};

/// Bytes of snapshot body per chunk row.
pub const SNAPSHOT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// The session advisory lock a serving process holds on its store (`'gongji' + 1`).
pub const STORE_LOCK_KEY: i64 = 0x67_6f_6e_67_6a_69_01;

#[derive(Clone, Debug)]
pub struct PgStoreOptions {
    /// Hold the store's advisory lock while serving: a second serving process is refused at
    /// start. Fencing does not depend on it (the primary key does that).
    pub advisory_lock: bool,
    /// How long to wait for the advisory lock (a killed predecessor's session may take a
    /// moment to end).
    pub lock_wait: Duration,
    /// Delete journal rows before the older kept snapshot. Off by default: the rows are the
    /// history the SQL projection and audits read.
    pub prune_journal: bool,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            advisory_lock: true,
            lock_wait: Duration::from_secs(15),
            prune_journal: false,
        }
    }
}

/// The journal and snapshots in one PostgreSQL database. See the module documentation.
pub struct PgStore {
    url: String,
    options: PgStoreOptions,
    client: Option<Client>,
    writable: bool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &redact(&self.url))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn pg_err(what: &str, e: postgres::Error) -> ServerError {
    ServerError::Store(format!("postgresql: {what}: {}", describe(&e)))
}

/// A client error with the server's message and SQLSTATE when it has them (the plain
/// `Display` says only "db error").
pub fn describe(e: &postgres::Error) -> String {
    use std::error::Error as _;
    match (e.as_db_error(), e.source()) {
        (Some(db), _) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        (None, Some(source)) => format!("{e}: {source}"),
        (None, None) => e.to_string(),
    }
}

/// Connects to `url` (a `postgres://` URL or a key=value string), with a connect timeout.
pub fn connect_store(url: &str) -> Result<Client, ServerError> {
    let config = crate::config(url)
        .map_err(|e| ServerError::Store(format!("bad PostgreSQL URL {:?}: {e}", redact(url))))?;
    let mut client = config.connect(postgres::NoTls).map_err(|e| {
        ServerError::Store(format!(
            "cannot connect to {}: {}",
            redact(url),
            describe(&e)
        ))
    })?;
    // Notices such as "already exists, skipping" from the migrations are not news.
    client
        .batch_execute("SET client_min_messages = warning")
        .map_err(|e| pg_err("setting up the session", e))?;
    Ok(client)
}

impl PgStore {
    /// Connects for serving: applies the migrations this build has, takes the advisory lock
    /// (when asked) when the log opens.
    pub fn open(url: &str, options: PgStoreOptions) -> Result<PgStore, ServerError> {
        let mut client = connect_store(url)?;
        migrate(&mut client, MIGRATIONS)
            .map_err(|e| ServerError::Store(format!("migrations on {}: {e}", redact(url))))?;
        Ok(PgStore {
            url: url.to_owned(),
            options,
            client: Some(client),
            writable: true,
        })
    }

    /// Connects for reading (`gongji verify`): changes nothing, and refuses a database
    /// without the store's tables.
    pub fn open_read_only(url: &str) -> Result<PgStore, ServerError> {
        let mut client = connect_store(url)?;
        let present: bool = client
            .query_one(
                "SELECT to_regclass('gongji_journal') IS NOT NULL \
                 AND to_regclass('gongji_snapshot') IS NOT NULL",
                &[],
            )
            .map_err(|e| pg_err("schema check", e))?
            .get(0);
        if !present {
            return Err(ServerError::Store(format!(
                "{} holds no gongji store (no gongji_journal table)",
                redact(url)
            )));
        }
        Ok(PgStore {
            url: url.to_owned(),
            options: PgStoreOptions {
                advisory_lock: false,
                ..PgStoreOptions::default()
            },
            client: Some(client),
            writable: false,
        })
    }

    fn client(&mut self) -> Result<&mut Client, ServerError> {
        self.client
            .as_mut()
            .ok_or_else(|| ServerError::Store("the store's connection was handed on".into()))
    }
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).expect("op numbers stay below 2^63")
}

fn hash_of(bytes: &[u8], what: &str) -> Result<ChainHash, ServerError> {
    bytes
        .try_into()
        .map_err(|_| ServerError::Corrupt(format!("{what}: a hash of {} bytes", bytes.len())))
}

/// The newest row of the journal, if any.
pub fn journal_head(client: &mut Client) -> Result<Option<Anchor>, ServerError> {
    let row = client
        .query_opt(
            "SELECT op, chain_hash FROM gongji_journal ORDER BY op DESC LIMIT 1",
            &[],
        )
        .map_err(|e| pg_err("reading the journal head", e))?;
    row.map(|row| {
        let op: i64 = row.get(0);
        Ok(Anchor {
            op: op as u64,
            chain_hash: hash_of(row.get(1), &format!("journal op {op}"))?,
        })
    })
    .transpose()
}

/// The oldest op the journal holds, if any.
pub fn journal_first_op(client: &mut Client) -> Result<Option<u64>, ServerError> {
    let first: Option<i64> = client
        .query_one("SELECT min(op) FROM gongji_journal", &[])
        .map_err(|e| pg_err("reading the journal's first op", e))?
        .get(0);
    Ok(first.map(|op| op as u64))
}

/// One journal row as [`read_journal`] hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    pub op: u64,
    pub time: i64,
    /// The encoded op (`gongji_core::codec::decode_op`).
    pub body: Vec<u8>,
    pub chain_hash: ChainHash,
}

/// Reads the journal rows after `after_op` in op order, at most `limit`, for readers such as
/// the SQL projection. Checks that the ops follow `after_op` without a gap, and, when `prev`
/// (the chain hash at `after_op`; [`GENESIS_CHAIN_HASH`] at 0) is given, the chain.
pub fn read_journal(
    client: &mut Client,
    after_op: u64,
    prev: Option<ChainHash>,
    limit: usize,
) -> Result<Vec<JournalRecord>, ServerError> {
    let mut out = Vec::new();
    let mut check = Checker {
        expect_op: after_op + 1,
        prev,
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&i64_of(after_op), &limit];
    let mut rows = client
        .query_raw(
            "SELECT op, time, body, chain_hash FROM gongji_journal WHERE op > $1 \
             ORDER BY op LIMIT $2",
            params,
        )
        .map_err(|e| pg_err("reading the journal", e))?;
    while let Some(row) = rows.next().map_err(|e| pg_err("reading the journal", e))? {
        let record = check.row(&row)?;
        out.push(JournalRecord {
            op: record.0,
            time: record.1,
            body: row.get::<_, &[u8]>(2).to_vec(),
            chain_hash: record.2,
        });
    }
    Ok(out)
}

/// Checks rows in op order: no gap, and the chain when the hash before is known.
struct Checker {
    expect_op: u64,
    prev: Option<ChainHash>,
}

impl Checker {
    fn row(&mut self, row: &postgres::Row) -> Result<(u64, i64, ChainHash), ServerError> {
        let op: i64 = row.get(0);
        let op = op as u64;
        let time: i64 = row.get(1);
        let body: &[u8] = row.get(2);
        let stored = hash_of(row.get(3), &format!("journal op {op}"))?;
        if op != self.expect_op {
            return Err(ServerError::Corrupt(format!(
                "the PostgreSQL journal has a gap: op {op} follows op {}",
                self.expect_op - 1
            )));
        }
        if let Some(prev) = self.prev {
            if chain_next(&prev, op, time, body) != stored {
                return Err(ServerError::Corrupt(format!(
                    "the PostgreSQL journal's chain breaks at op {op}: the row was altered, \
                     or the journal mixes two histories"
                )));
            }
        }
        self.prev = Some(stored);
        self.expect_op = op + 1;
        Ok((op, time, stored))
    }
}

/// A full check of the journal from its first row: no gap, and the chain (from genesis when
/// op 1 is held). Returns the rows checked and the head.
pub fn verify_journal(client: &mut Client) -> Result<(u64, Anchor), ServerError> {
    let Some(first) = journal_first_op(client)? else {
        return Ok((0, Anchor::GENESIS));
    };
    let mut check = Checker {
        expect_op: first,
        prev: (first == 1).then_some(GENESIS_CHAIN_HASH),
    };
    let params: [&(dyn postgres::types::ToSql + Sync); 0] = [];
    let mut rows = client
        .query_raw(
            "SELECT op, time, body, chain_hash FROM gongji_journal ORDER BY op",
            params,
        )
        .map_err(|e| pg_err("reading the journal", e))?;
    let mut head = Anchor::GENESIS;
    let mut n = 0;
    while let Some(row) = rows.next().map_err(|e| pg_err("reading the journal", e))? {
        let (op, _, chain_hash) = check.row(&row)?;
        head = Anchor { op, chain_hash };
        n += 1;
    }
    Ok((n, head))
}

impl Store for PgStore {
    fn load_snapshot(&mut self) -> Result<Option<LoadedSnapshot>, ServerError> {
        let client = self.client()?;
        let headers = client
            .query(
                "SELECT id, op, chain_hash, body_bytes, body_hash, chunk_count \
                 FROM gongji_snapshot ORDER BY op DESC, id DESC",
                &[],
            )
            .map_err(|e| pg_err("listing snapshots", e))?;
        let mut skipped = Vec::new();
        for header in headers {
            let id: i64 = header.get(0);
            let op: i64 = header.get(1);
            let name = format!("postgres snapshot {id} at op {op}");
            let chain_hash = hash_of(header.get(2), &name)?;
            let body_bytes: i64 = header.get(3);
            let body_hash = hash_of(header.get(4), &name)?;
            let chunk_count: i32 = header.get(5);
            match read_snapshot_body(client, id, body_bytes as u64, chunk_count, &body_hash)? {
                Ok(body) => {
                    return Ok(Some(LoadedSnapshot {
                        anchor: Anchor {
                            op: op as u64,
                            chain_hash,
                        },
                        body,
                        file: name,
                        skipped,
                    }))
                }
                Err(defect) => skipped.push(SkippedSnapshot { file: name, defect }),
            }
        }
        if skipped.is_empty() {
            return Ok(None);
        }
        Err(SnapshotError::NoValidSnapshot { skipped }.into())
    }

    fn open_log(
        &mut self,
        config: &Config,
        start: Option<Anchor>,
        writable: bool,
    ) -> Result<(Box<dyn Log>, Option<TornTail>), ServerError> {
        let writable = writable && self.writable;
        let mut client = self
            .client
            .take()
            .ok_or_else(|| ServerError::Store("the journal was opened already".into()))?;
        if writable && self.options.advisory_lock {
            take_lock(&mut client, &self.url, self.options.lock_wait)?;
        }
        let head_row = journal_head(&mut client)?;
        let first_row = journal_first_op(&mut client)?;
        let start_anchor = start.unwrap_or(Anchor::GENESIS);
        let head = match head_row {
            None => start_anchor,
            Some(head) if head.op < start_anchor.op => {
                return Err(ServerError::Corrupt(format!(
                    "the snapshot at op {} is ahead of the PostgreSQL journal, whose last op \
                     is {}: committed ops are missing",
                    start_anchor.op, head.op
                )))
            }
            Some(head) => head,
        };
        if let (Some(first), Some(anchor)) = (first_row, start) {
            if first > anchor.op + 1 {
                return Err(ServerError::Corrupt(format!(
                    "the PostgreSQL journal starts at op {first}, but the snapshot covers only \
                     up to op {}: ops {}..{first} are missing",
                    anchor.op,
                    anchor.op + 1
                )));
            }
            if anchor.op >= 1 {
                let at: Option<Vec<u8>> = client
                    .query_opt(
                        "SELECT chain_hash FROM gongji_journal WHERE op = $1",
                        &[&i64_of(anchor.op)],
                    )
                    .map_err(|e| pg_err("reading the snapshot's op", e))?
                    .map(|row| row.get(0));
                if at.is_some_and(|hash| hash != anchor.chain_hash) {
                    return Err(ServerError::Corrupt(format!(
                        "the snapshot at op {} and the PostgreSQL journal belong to different \
                         histories (chain hash mismatch at op {})",
                        anchor.op, anchor.op
                    )));
                }
            }
        }
        let insert = if writable {
            Some(
                client
                    .prepare(
                        "INSERT INTO gongji_journal (op, time, body, chain_hash) \
                         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], \
                         $4::bytea[]) \
                         WHERE $5::bigint = 0 OR EXISTS (SELECT 1 FROM gongji_journal \
                         WHERE op = $5 AND chain_hash = $6)",
                    )
                    .map_err(|e| pg_err("preparing the journal insert", e))?,
            )
        } else {
            None
        };
        let log = PgLog {
            client,
            insert,
            head,
            durable_head: head,
            start: start_anchor,
            first_op: first_row.unwrap_or(head.op + 1),
            batch: Batch::default(),
            body_bytes_max: config.journal.body_bytes_max,
            batch_bytes_max: config.journal.batch_bytes_max,
            prune_journal: self.options.prune_journal,
            poisoned: false,
        };
        Ok((Box::new(log), None))
    }

    fn snapshots(&mut self) -> Result<Box<dyn SnapshotStore>, ServerError> {
        Ok(Box::new(PgSnapshots {
            client: connect_store(&self.url)?,
        }))
    }

    fn auditor(&self) -> Option<Auditor> {
        let url = self.url.clone();
        Some(std::sync::Arc::new(move || {
            let mut client = connect_store(&url).map_err(|e| e.to_string())?;
            verify_journal(&mut client).map_err(|e| e.to_string())
        }))
    }
}

/// Takes the store's session advisory lock, waiting up to `wait`.
fn take_lock(client: &mut Client, url: &str, wait: Duration) -> Result<(), ServerError> {
    let deadline = Instant::now() + wait;
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&STORE_LOCK_KEY])
            .map_err(|e| pg_err("taking the store lock", e))?
            .get(0);
        if got {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ServerError::Store(format!(
                "{} is in use by another gongji process (its advisory lock {STORE_LOCK_KEY} \
                 is held)",
                redact(url)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The newest snapshot with op ≤ `at_most` whose chunks verify: (op, chain hash after that
/// op, body). For readers such as the SQL projection; snapshots that do not verify are passed
/// over, as recovery passes them over.
pub fn read_snapshot_at_most(
    client: &mut Client,
    at_most: u64,
) -> Result<Option<(u64, ChainHash, Vec<u8>)>, ServerError> {
    let headers = client
        .query(
            "SELECT id, op, chain_hash, body_bytes, body_hash, chunk_count \
             FROM gongji_snapshot WHERE op <= $1 ORDER BY op DESC, id DESC",
            &[&i64::try_from(at_most).unwrap_or(i64::MAX)],
        )
        .map_err(|e| pg_err("listing snapshots", e))?;
    for header in headers {
        let id: i64 = header.get(0);
        let op: i64 = header.get(1);
        let name = format!("postgres snapshot {id} at op {op}");
        let chain_hash = hash_of(header.get(2), &name)?;
        let body_bytes: i64 = header.get(3);
        let body_hash = hash_of(header.get(4), &name)?;
        let chunk_count: i32 = header.get(5);
        match read_snapshot_body(client, id, body_bytes as u64, chunk_count, &body_hash)? {
            Ok(body) => return Ok(Some((op as u64, chain_hash, body))),
            Err(defect) => tracing::warn!(snapshot = %name, ?defect, "snapshot skipped"),
        }
    }
    Ok(None)
}

/// Reads and checks one snapshot's chunks: `Ok(Err(defect))` when it does not verify.
fn read_snapshot_body(
    client: &mut Client,
    id: i64,
    body_bytes: u64,
    chunk_count: i32,
    body_hash: &ChainHash,
) -> Result<Result<Vec<u8>, SnapshotDefect>, ServerError> {
    // Never trust a stored length for an allocation beyond what chunks can bring.
    let mut body = Vec::with_capacity(body_bytes.min(1 << 30) as usize);
    let mut seq_expected = 0i32;
    let params: [&(dyn postgres::types::ToSql + Sync); 1] = [&id];
    let mut rows = client
        .query_raw(
            "SELECT seq, data FROM gongji_snapshot_chunk WHERE snapshot_id = $1 ORDER BY seq",
            params,
        )
        .map_err(|e| pg_err("reading a snapshot", e))?;
    let mut gap = false;
    while let Some(row) = rows.next().map_err(|e| pg_err("reading a snapshot", e))? {
        let seq: i32 = row.get(0);
        gap |= seq != seq_expected;
        seq_expected = seq.saturating_add(1);
        body.extend_from_slice(row.get::<_, &[u8]>(1));
        if body.len() as u64 > body_bytes {
            break;
        }
    }
    drop(rows);
    if gap || seq_expected != chunk_count || body.len() as u64 != body_bytes {
        return Ok(Err(SnapshotDefect::LengthMismatch {
            file_len_bytes: body.len() as u64,
            expected_bytes: body_bytes,
        }));
    }
    if blake3::hash(&body).as_bytes() != body_hash {
        return Ok(Err(SnapshotDefect::BodyHash));
    }
    Ok(Ok(body))
}

#[derive(Debug, Default)]
struct Batch {
    ops: Vec<i64>,
    times: Vec<i64>,
    bodies: Vec<Vec<u8>>,
    chains: Vec<Vec<u8>>,
    bytes: u64,
}

impl Batch {
    fn clear(&mut self) {
        self.ops.clear();
        self.times.clear();
        self.bodies.clear();
        self.chains.clear();
        self.bytes = 0;
    }
}

struct PgLog {
    client: Client,
    /// The batch insert (`None`: opened read-only).
    insert: Option<Statement>,
    head: Anchor,
    durable_head: Anchor,
    /// Where recovery started: the snapshot's anchor (genesis without one).
    start: Anchor,
    first_op: u64,
    batch: Batch,
    body_bytes_max: u32,
    batch_bytes_max: u64,
    prune_journal: bool,
    poisoned: bool,
}

/// Per row: the body plus op, time and the chain hash.
const ROW_OVERHEAD_BYTES: u64 = 48;

impl PgLog {
    fn check_usable(&self) -> Result<(), ServerError> {
        if self.poisoned {
            return Err(JournalError::Poisoned.into());
        }
        Ok(())
    }

    fn poison(&mut self, e: ServerError) -> ServerError {
        self.poisoned = true;
        e
    }
}

impl Log for PgLog {
    fn append(&mut self, time: i64, body: &[u8]) -> Result<Appended, ServerError> {
        self.check_usable()?;
        if self.insert.is_none() {
            return Err(JournalError::ReadOnly.into());
        }
        if body.len() > self.body_bytes_max as usize {
            return Err(JournalError::BodyTooLarge {
                body_len: body.len(),
                body_bytes_max: self.body_bytes_max,
            }
            .into());
        }
        let record_bytes = body.len() as u64 + ROW_OVERHEAD_BYTES;
        if self.batch.bytes > 0 && self.batch.bytes + record_bytes > self.batch_bytes_max {
            return Ok(Appended::BatchFull);
        }
        let op = self.head.op + 1;
        let chain_hash = chain_next(&self.head.chain_hash, op, time, body);
        self.batch.ops.push(i64_of(op));
        self.batch.times.push(time);
        self.batch.bodies.push(body.to_vec());
        self.batch.chains.push(chain_hash.to_vec());
        self.batch.bytes += record_bytes;
        self.head = Anchor { op, chain_hash };
        Ok(Appended::Op(op))
    }

    fn sync(&mut self) -> Result<u64, ServerError> {
        self.check_usable()?;
        if self.batch.ops.is_empty() {
            return Ok(0);
        }
        let insert = self.insert.clone().ok_or(JournalError::ReadOnly)?;
        let prev = self.durable_head;
        let (first, last) = (prev.op + 1, self.head.op);
        let bodies: Vec<&[u8]> = self.batch.bodies.iter().map(Vec::as_slice).collect();
        let chains: Vec<&[u8]> = self.batch.chains.iter().map(Vec::as_slice).collect();
        let prev_hash: &[u8] = &prev.chain_hash;
        // One statement in autocommit: one transaction, committed durably before it returns.
        let result = self.client.execute(
            &insert,
            &[
                &self.batch.ops,
                &self.batch.times,
                &bodies,
                &chains,
                &i64_of(prev.op),
                &prev_hash,
            ],
        );
        let expected = self.batch.ops.len() as u64;
        match result {
            Ok(n) if n == expected => {}
            Ok(_) => {
                return Err(self.poison(ServerError::Fenced(format!(
                    "ops {first}..={last} were not committed: the PostgreSQL journal does not \
                     hold op {} with the chain hash this writer holds (the database was \
                     changed under it)",
                    prev.op
                ))))
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(self.poison(ServerError::Fenced(format!(
                    "ops {first}..={last} were not committed: another writer committed op \
                     {first} first"
                ))))
            }
            Err(e) => {
                return Err(self.poison(ServerError::Store(format!(
                    "postgresql: committing ops {first}..={last} failed (not acknowledged; \
                     restart recovers from what PostgreSQL holds): {}",
                    describe(&e)
                ))))
            }
        }
        let bytes = self.batch.bytes;
        self.batch.clear();
        self.durable_head = self.head;
        if self.first_op > first {
            self.first_op = first;
        }
        Ok(bytes)
    }

    fn head(&self) -> Anchor {
        self.head
    }

    fn first_op(&self) -> u64 {
        self.first_op
    }

    fn remove_before(&mut self, op: u64) -> Result<(), ServerError> {
        self.check_usable()?;
        // Never the head row: the next batch proves its link to it.
        let before = op.min(self.durable_head.op);
        if !self.prune_journal || before <= self.first_op {
            return Ok(());
        }
        self.client
            .execute(
                "DELETE FROM gongji_journal WHERE op < $1",
                &[&i64_of(before)],
            )
            .map_err(|e| pg_err("removing journal rows before the snapshots", e))
            .map_err(|e| self.poison(e))?;
        self.first_op = before;
        Ok(())
    }

    fn replay(
        &mut self,
        after_op: u64,
        visit: &mut gongji_server::store::Visit<'_>,
    ) -> Result<u64, ServerError> {
        self.check_usable()?;
        if !self.batch.ops.is_empty() {
            return Err(JournalError::UnsyncedAppends.into());
        }
        if after_op + 1 < self.first_op || after_op > self.head.op {
            if after_op == 0 {
                return Err(ServerError::Corrupt(format!(
                    "the PostgreSQL journal starts at op {} and no snapshot covers the ops \
                     before it",
                    self.first_op
                )));
            }
            return Err(JournalError::ReplayRange {
                after_op,
                first_op: self.first_op,
                head_op: self.head.op,
            }
            .into());
        }
        let prev = if after_op == self.start.op {
            self.start.chain_hash
        } else {
            let row = self
                .client
                .query_opt(
                    "SELECT chain_hash FROM gongji_journal WHERE op = $1",
                    &[&i64_of(after_op)],
                )
                .map_err(|e| pg_err("reading the journal", e))?
                .ok_or_else(|| {
                    ServerError::Corrupt(format!("the PostgreSQL journal lacks op {after_op}"))
                })?;
            hash_of(row.get(0), &format!("journal op {after_op}"))?
        };
        let mut check = Checker {
            expect_op: after_op + 1,
            prev: Some(prev),
        };
        let params: [&(dyn postgres::types::ToSql + Sync); 2] =
            [&i64_of(after_op), &i64_of(self.head.op)];
        let mut rows = self
            .client
            .query_raw(
                "SELECT op, time, body, chain_hash FROM gongji_journal \
                 WHERE op > $1 AND op <= $2 ORDER BY op",
                params,
            )
            .map_err(|e| pg_err("reading the journal", e))?;
        let mut visited = 0;
        while let Some(row) = rows.next().map_err(|e| pg_err("reading the journal", e))? {
            let (op, _, _) = check.row(&row)?;
            visit(op, row.get(2)).map_err(ServerError::Corrupt)?;
            visited += 1;
        }
        if check.expect_op != self.head.op + 1 {
            return Err(ServerError::Corrupt(format!(
                "the PostgreSQL journal ends at op {} while its head was op {}",
                check.expect_op - 1,
                self.head.op
            )));
        }
        Ok(visited)
    }
}

struct PgSnapshots {
    client: Client,
}

impl SnapshotStore for PgSnapshots {
    /// One transaction: the snapshot's row, its chunks as the pieces fill them, then the
    /// row's length, hash and chunk count. Nothing of it is seen before the commit.
    fn write_streaming(
        &mut self,
        anchor: Anchor,
        encode: &mut Encode<'_>,
    ) -> Result<String, ServerError> {
        let err = |e| pg_err("writing a snapshot", e);
        let chain_hash: &[u8] = &anchor.chain_hash;
        let mut tx = self.client.transaction().map_err(err)?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO gongji_snapshot (op, chain_hash, body_bytes, body_hash, chunk_count) \
                 VALUES ($1, $2, 0, $3, 0) RETURNING id",
                &[&i64_of(anchor.op), &chain_hash, &&[0u8; 32][..]],
            )
            .map_err(err)?
            .get(0);
        let insert = tx
            .prepare(
                "INSERT INTO gongji_snapshot_chunk (snapshot_id, seq, data) VALUES ($1, $2, $3)",
            )
            .map_err(err)?;
        let mut hasher = blake3::Hasher::new();
        let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES);
        let (mut seq, mut body_bytes) = (0i32, 0i64);
        let mut failed = None;
        let put = |tx: &mut postgres::Transaction<'_>, chunk: &mut Vec<u8>, seq: &mut i32| {
            let data: &[u8] = chunk;
            let result = tx.execute(&insert, &[&id, &*seq, &data]);
            *seq += 1;
            chunk.clear();
            result.map(|_| ())
        };
        encode(&mut |mut piece: &[u8]| {
            hasher.update(piece);
            body_bytes += piece.len() as i64;
            while failed.is_none() && !piece.is_empty() {
                let take = (SNAPSHOT_CHUNK_BYTES - chunk.len()).min(piece.len());
                chunk.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if chunk.len() == SNAPSHOT_CHUNK_BYTES {
                    failed = put(&mut tx, &mut chunk, &mut seq).err();
                }
            }
        });
        if let Some(e) = failed {
            return Err(err(e));
        }
        if !chunk.is_empty() {
            put(&mut tx, &mut chunk, &mut seq).map_err(err)?;
        }
        let body_hash = hasher.finalize();
        let body_hash: &[u8] = body_hash.as_bytes();
        tx.execute(
            "UPDATE gongji_snapshot SET body_bytes = $2, body_hash = $3, chunk_count = $4 \
             WHERE id = $1",
            &[&id, &body_bytes, &body_hash, &seq],
        )
        .map_err(err)?;
        tx.commit()
            .map_err(|e| pg_err("committing a snapshot", e))?;
        Ok(format!("postgres snapshot {id} at op {}", anchor.op))
    }

    fn prune(&mut self, keep: usize) -> Result<(), ServerError> {
        assert!(keep >= 1, "prune must keep at least one snapshot");
        self.client
            .execute(
                "DELETE FROM gongji_snapshot WHERE id NOT IN \
                 (SELECT id FROM gongji_snapshot ORDER BY op DESC, id DESC LIMIT $1)",
                &[&(keep as i64)],
            )
            .map_err(|e| pg_err("pruning snapshots", e))?;
        Ok(())
    }
}
