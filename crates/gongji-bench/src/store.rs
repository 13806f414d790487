//! `gongji bench store`: the project's history files beside two embedded key-value stores
//! (redb, a copy-on-write B-tree; fjall, an LSM tree), on the same records (issue 11 asks for
//! the history store to be chosen by measurement).
//!
//! **The records** are real: a population is built and settlements are applied to a real
//! [`State`] (the generator of `gongji bench core`); each full 64 K-record chunk of the
//! settlement and entry columns is taken in the encoding history files hold
//! ([`State::encode_chunk`]: 86 bytes a settlement, 48 an entry), in the order the engine fills
//! them. Details (12 bytes, a settlement's givers) are left out of every store alike.
//!
//! **Each store** appends the same chunks in that order, one durable commit per chunk (64 K
//! records, as the engine writes a history file when a chunk is full):
//! - `files`: the server's real code: [`HistoryDir::write`] (a `GJHIST02` file written, fsynced,
//!   renamed, directory fsynced); opened with [`HistoryDir::create`] and [`HistoryDir::load`]
//!   per chunk (header and block table checked, as a start attaches them); records read with
//!   the returned [`ColdBytes`] at `(i mod 64 K) × size`, which is what `History::get` does
//!   (the first read of a 64 KiB block checks its CRC32C). A person's entries are walked by
//!   their `prev` links from the newest, as `State::entries` does; the newest entry's id is
//!   hot state in the engine (`entry_tail`), here a table in memory.
//! - `redb`: tables `settlement id (u64) → [u8; 86]` and `(person u32, entry id u32) →
//!   [u8; 48]`; one write transaction per chunk with the default `Durability::Immediate`.
//!   Defaults otherwise (its own cache: 1 GiB).
//! - `fjall`: keyspaces keyed by the big-endian settlement id and by big-endian (person, entry
//!   id); one `WriteBatch` per chunk, then `persist(SyncAll)` (fsync of its journal).
//!   Defaults otherwise (LZ4, a 32 MiB block cache, background flushes and compactions).
//!
//! A person's entries are a key-range scan in the key-value stores (newest first, as the
//! walk returns them). Every store returns the same bytes; the report prints a digest of what
//! each store returned beside the digest of the records themselves.
//!
//! **Cold reads without root:** after appending, every file of the store is fsynced and its
//! pages dropped from the page cache with `posix_fadvise(POSIX_FADV_DONTNEED)`; the store is
//! then opened (timed) and read. The first pass starts cold and warms the cache as it goes;
//! the second pass repeats the same reads warm. On a virtual disk the host may still cache
//! what the guest dropped: "cold" here is the guest's page cache only.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gongji_core::{ColdBytes, Column, Op, Params, State, HISTORY_CHUNK};
use gongji_server::HistoryDir;
use splitmix::SplitMix64;

use crate::gen::Generator;
use crate::plan::Plan;
use crate::population::Population;
use crate::sys::{CpuSample, Machine, Rss};

/// Bytes of a settlement and of an entry in a history file.
const SETL_BYTES: usize = 86;
const ENTRY_BYTES: usize = 48;

#[derive(Clone, Debug)]
pub struct StoreBenchOptions {
    /// Persons of the population the settlements are drawn for.
    pub persons: u32,
    /// Settlements (rounded up to whole 64 K chunks).
    pub settlements: u64,
    /// Random point reads by settlement id, per pass.
    pub reads: usize,
    /// Random persons whose entries are walked, per pass.
    pub walks: usize,
    pub seed: u64,
    /// The stores are made in a directory created under this one, removed at the end.
    pub dir: PathBuf,
    pub stores: Vec<StoreKind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Files,
    Redb,
    Fjall,
}

impl StoreKind {
    pub const ALL: [StoreKind; 3] = [StoreKind::Files, StoreKind::Redb, StoreKind::Fjall];

    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Files => "files",
            StoreKind::Redb => "redb",
            StoreKind::Fjall => "fjall",
        }
    }

    pub fn from_name(name: &str) -> Option<StoreKind> {
        StoreKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Latencies of one kind of read, in nanoseconds, sorted.
#[derive(Clone, Debug, Default)]
pub struct Latencies(pub Vec<u64>);

impl Latencies {
    fn pct_us(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let i = ((self.0.len() - 1) as f64 * p / 100.0).round() as usize;
        self.0[i] as f64 / 1e3
    }

    fn summary(&self) -> String {
        format!(
            "{:.1} / {:.1} / {:.0}",
            self.pct_us(50.0),
            self.pct_us(99.0),
            self.pct_us(100.0)
        )
    }
}

/// What one store did.
#[derive(Clone, Debug, Default)]
pub struct StoreFigures {
    pub name: &'static str,
    pub append: Duration,
    /// Per commit (one chunk), sorted, nanoseconds.
    pub commits: Latencies,
    pub disk_bytes: u64,
    pub disk_apparent_bytes: u64,
    pub open: Duration,
    pub point_cold: Latencies,
    pub point_warm: Latencies,
    pub walk_cold: Latencies,
    pub walk_warm: Latencies,
    /// Entries returned by the walks of one pass.
    pub walked: u64,
    /// Digest of the records returned by the point reads and by the walks (first pass; the
    /// second must return the same, which is checked).
    pub point_digest: u64,
    pub walk_digest: u64,
    /// Resident growth (KiB): the peak while appending over the RSS before the store was
    /// made; after opening, the peak while open and reading, and after both read passes, over
    /// the RSS just before the open (the last is not printed: memory an earlier phase freed
    /// can still be returned to the system during the reads and make it negative).
    pub rss_append_peak_kib: i64,
    pub rss_open_kib: i64,
    pub rss_read_peak_kib: i64,
    pub rss_reads_kib: i64,
    /// Bytes the process read from storage (`read_bytes` of `/proc/self/io`: page-cache
    /// misses) while opening, and during the first (cold) read pass.
    pub io_open_bytes: u64,
    pub io_cold_pass_bytes: u64,
    pub load_before: f64,
    pub load_after: f64,
}

#[derive(Clone, Debug)]
pub struct StoreReport {
    pub text: String,
    pub stores: Vec<StoreFigures>,
    /// Digests of the expected records, computed from the workload in memory.
    pub point_digest: u64,
    pub walk_digest: u64,
    pub walked: u64,
}

/// The records, chunk by chunk, in the order the engine fills them.
struct Workload {
    setls: Vec<Arc<Vec<u8>>>,
    entries: Vec<Arc<Vec<u8>>>,
    order: Vec<(Column, usize)>,
    /// Per person, the id (position + 1) of the newest stored entry; 0 for none.
    tails: Vec<u32>,
}

impl Workload {
    fn chunk(&self, column: Column, k: usize) -> &[u8] {
        match column {
            Column::Settlements => &self.setls[k],
            Column::Entries => &self.entries[k],
            _ => unreachable!("only settlements and entries are stored"),
        }
    }

    fn setl(&self, id: u64) -> &[u8] {
        let i = id as usize - 1;
        let at = (i % HISTORY_CHUNK) * SETL_BYTES;
        &self.setls[i / HISTORY_CHUNK][at..at + SETL_BYTES]
    }

    fn entry(&self, id: u32) -> &[u8] {
        let i = id as usize - 1;
        let at = (i % HISTORY_CHUNK) * ENTRY_BYTES;
        &self.entries[i / HISTORY_CHUNK][at..at + ENTRY_BYTES]
    }

    fn records(&self) -> u64 {
        ((self.setls.len() + self.entries.len()) * HISTORY_CHUNK) as u64
    }
}

fn entry_psn(e: &[u8]) -> u32 {
    u32::from_le_bytes(e[0..4].try_into().expect("4 bytes"))
}

fn entry_prev(e: &[u8]) -> u32 {
    u32::from_le_bytes(e[4..8].try_into().expect("4 bytes"))
}

/// Builds the population, applies settlements until `chunks` settlement chunks are full, and
/// takes every full chunk of settlements and entries in its history-file encoding (the state
/// swaps each for those bytes, as the engine swaps a chunk for its file, so that its heap
/// stays small).
fn workload(opts: &StoreBenchOptions, chunks: usize) -> Result<Workload, String> {
    let mut rng = SplitMix64::new(opts.seed);
    let build_time = gongji_core::time::parse_cst(crate::BUILD_TIME).expect("valid time");
    let start = gongji_core::time::parse_cst(crate::RUN_START).expect("valid time");
    let plan = Plan::make(opts.persons, 1_000.min(opts.persons), &mut rng);
    let mut state = State::new(Params::default());
    let mut w = Workload {
        setls: Vec::new(),
        entries: Vec::new(),
        order: Vec::new(),
        tails: vec![0; opts.persons as usize],
    };
    let take = |state: &mut State, w: &mut Workload| -> Result<(), String> {
        for (column, k) in state.cold_candidates() {
            let mut body = Vec::with_capacity(column.chunk_bytes());
            state.encode_chunk(column, k, &mut body);
            let bytes = Arc::new(body);
            state.make_cold(column, k, bytes.clone())?;
            match column {
                Column::Settlements => w.setls.push(bytes),
                Column::Entries => w.entries.push(bytes),
                _ => continue,
            }
            w.order.push((column, k));
        }
        Ok(())
    };
    Population::Families(&plan).build(&mut rng, |op| {
        let _ = crate::build_write(&mut state, build_time, op);
    });
    take(&mut state, &mut w)?;
    state
        .apply(&Op::Tick { time: start })
        .map_err(|r| r.message())?;
    let mut generator = Generator::new(&plan, opts.seed ^ 0x5EED, start, 1);
    // (At least one chunk of entries too: a settlement paid in cash alone writes none.)
    while w.setls.len() < chunks || w.entries.is_empty() {
        // At most one chunk of a column fills per round.
        for _ in 0..4096 {
            let _ = state.apply(&generator.next_settlement());
        }
        take(&mut state, &mut w)?;
    }
    drop(state);
    for (k, chunk) in w.entries.iter().enumerate() {
        for (j, e) in chunk.chunks_exact(ENTRY_BYTES).enumerate() {
            w.tails[entry_psn(e) as usize] = (k * HISTORY_CHUNK + j + 1) as u32;
        }
    }
    Ok(w)
}

/// FNV-1a over the records a store returned, in order.
#[derive(Clone, Copy)]
struct Digest(u64);

impl Digest {
    fn new() -> Digest {
        Digest(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A store being filled.
trait Writer {
    /// Stores chunk `k` of `column` (its records, each `column`'s size) in one durable commit.
    fn append(&mut self, column: Column, k: usize, body: &[u8]) -> Result<(), String>;
}

/// A store opened to read.
trait Reader {
    /// Appends settlement `id`'s record to `out`.
    fn point(&self, id: u64, out: &mut Vec<u8>) -> Result<(), String>;
    /// Appends the records of `psn`'s entries to `out`, newest first (`tail`: the id of the
    /// newest, as the engine keeps it in memory).
    fn walk(&self, psn: u32, tail: u32, out: &mut Vec<u8>) -> Result<(), String>;
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

// --- the project's history files ---

struct FilesWriter(HistoryDir);

impl Writer for FilesWriter {
    fn append(&mut self, column: Column, k: usize, body: &[u8]) -> Result<(), String> {
        self.0.write(column, k, body).map(drop).map_err(err)
    }
}

struct FilesReader {
    setls: Vec<Arc<dyn ColdBytes>>,
    entries: Vec<Arc<dyn ColdBytes>>,
}

impl FilesReader {
    fn open(dir: &Path, setls: usize, entries: usize) -> Result<FilesReader, String> {
        let h = HistoryDir::create(dir).map_err(err)?;
        let load = |column, n| {
            (0..n)
                .map(|k| h.load(column, k))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(FilesReader {
            setls: load(Column::Settlements, setls)?,
            entries: load(Column::Entries, entries)?,
        })
    }
}

impl Reader for FilesReader {
    fn point(&self, id: u64, out: &mut Vec<u8>) -> Result<(), String> {
        let i = id as usize - 1;
        let mut buf = [0u8; SETL_BYTES];
        self.setls[i / HISTORY_CHUNK].read((i % HISTORY_CHUNK) * SETL_BYTES, &mut buf);
        out.extend_from_slice(&buf);
        Ok(())
    }

    fn walk(&self, _psn: u32, tail: u32, out: &mut Vec<u8>) -> Result<(), String> {
        let mut at = tail;
        let mut buf = [0u8; ENTRY_BYTES];
        while at > 0 {
            let i = at as usize - 1;
            self.entries[i / HISTORY_CHUNK].read((i % HISTORY_CHUNK) * ENTRY_BYTES, &mut buf);
            out.extend_from_slice(&buf);
            at = entry_prev(&buf);
        }
        Ok(())
    }
}

// --- redb ---

const REDB_SETLS: redb::TableDefinition<u64, [u8; SETL_BYTES]> =
    redb::TableDefinition::new("settlements");
const REDB_ENTRIES: redb::TableDefinition<(u32, u32), [u8; ENTRY_BYTES]> =
    redb::TableDefinition::new("entries");

struct RedbWriter(redb::Database);

impl Writer for RedbWriter {
    fn append(&mut self, column: Column, k: usize, body: &[u8]) -> Result<(), String> {
        let txn = self.0.begin_write().map_err(err)?;
        match column {
            Column::Settlements => {
                let mut t = txn.open_table(REDB_SETLS).map_err(err)?;
                for (j, r) in body.chunks_exact(SETL_BYTES).enumerate() {
                    let id = (k * HISTORY_CHUNK + j + 1) as u64;
                    let v: [u8; SETL_BYTES] = r.try_into().expect("a record");
                    t.insert(id, v).map_err(err)?;
                }
            }
            Column::Entries => {
                let mut t = txn.open_table(REDB_ENTRIES).map_err(err)?;
                for (j, r) in body.chunks_exact(ENTRY_BYTES).enumerate() {
                    let id = (k * HISTORY_CHUNK + j + 1) as u32;
                    let v: [u8; ENTRY_BYTES] = r.try_into().expect("a record");
                    t.insert((entry_psn(r), id), v).map_err(err)?;
                }
            }
            _ => unreachable!("only settlements and entries are stored"),
        }
        txn.commit().map_err(err)
    }
}

struct RedbReader {
    setls: redb::ReadOnlyTable<u64, [u8; SETL_BYTES]>,
    entries: redb::ReadOnlyTable<(u32, u32), [u8; ENTRY_BYTES]>,
    _db: redb::Database,
}

impl RedbReader {
    fn open(path: &Path) -> Result<RedbReader, String> {
        use redb::ReadableDatabase as _;
        let db = redb::Database::open(path).map_err(err)?;
        let txn = db.begin_read().map_err(err)?;
        Ok(RedbReader {
            setls: txn.open_table(REDB_SETLS).map_err(err)?,
            entries: txn.open_table(REDB_ENTRIES).map_err(err)?,
            _db: db,
        })
    }
}

impl Reader for RedbReader {
    fn point(&self, id: u64, out: &mut Vec<u8>) -> Result<(), String> {
        use redb::ReadableTable as _;
        let v = self
            .setls
            .get(id)
            .map_err(err)?
            .ok_or("no such settlement")?;
        out.extend_from_slice(&v.value());
        Ok(())
    }

    fn walk(&self, psn: u32, _tail: u32, out: &mut Vec<u8>) -> Result<(), String> {
        use redb::ReadableTable as _;
        for item in self
            .entries
            .range((psn, 0)..=(psn, u32::MAX))
            .map_err(err)?
            .rev()
        {
            let (_, v) = item.map_err(err)?;
            out.extend_from_slice(&v.value());
        }
        Ok(())
    }
}

// --- fjall ---

struct Fjall {
    db: fjall::Database,
    setls: fjall::Keyspace,
    entries: fjall::Keyspace,
}

impl Fjall {
    fn open(path: &Path) -> Result<Fjall, String> {
        let db = fjall::Database::builder(path).open().map_err(err)?;
        let setls = db
            .keyspace("settlements", fjall::KeyspaceCreateOptions::default)
            .map_err(err)?;
        let entries = db
            .keyspace("entries", fjall::KeyspaceCreateOptions::default)
            .map_err(err)?;
        Ok(Fjall { db, setls, entries })
    }
}

fn entry_key(psn: u32, id: u32) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&psn.to_be_bytes());
    key[4..].copy_from_slice(&id.to_be_bytes());
    key
}

impl Writer for Fjall {
    fn append(&mut self, column: Column, k: usize, body: &[u8]) -> Result<(), String> {
        let mut batch = self.db.batch();
        match column {
            Column::Settlements => {
                for (j, r) in body.chunks_exact(SETL_BYTES).enumerate() {
                    let id = (k * HISTORY_CHUNK + j + 1) as u64;
                    batch.insert(&self.setls, &id.to_be_bytes()[..], r);
                }
            }
            Column::Entries => {
                for (j, r) in body.chunks_exact(ENTRY_BYTES).enumerate() {
                    let id = (k * HISTORY_CHUNK + j + 1) as u32;
                    batch.insert(&self.entries, &entry_key(entry_psn(r), id)[..], r);
                }
            }
            _ => unreachable!("only settlements and entries are stored"),
        }
        batch.commit().map_err(err)?;
        self.db.persist(fjall::PersistMode::SyncAll).map_err(err)
    }
}

impl Reader for Fjall {
    fn point(&self, id: u64, out: &mut Vec<u8>) -> Result<(), String> {
        let v = self
            .setls
            .get(id.to_be_bytes())
            .map_err(err)?
            .ok_or("no such settlement")?;
        out.extend_from_slice(&v);
        Ok(())
    }

    fn walk(&self, psn: u32, _tail: u32, out: &mut Vec<u8>) -> Result<(), String> {
        for item in self.entries.prefix(psn.to_be_bytes()).rev() {
            let (_, v) = item.into_inner().map_err(err)?;
            out.extend_from_slice(&v);
        }
        Ok(())
    }
}

// --- measuring ---

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        match e.file_type() {
            Ok(t) if t.is_dir() => files_under(&e.path(), out),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
}

/// Bytes allocated on disk (blocks) and apparent (lengths) under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let mut files = Vec::new();
    files_under(dir, &mut files);
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .fold((0, 0), |(b, a), m| (b + m.blocks() * 512, a + m.len()))
}

/// Writes back and drops from the page cache every file under `dir` (no root needed:
/// `posix_fadvise(POSIX_FADV_DONTNEED)` on clean pages).
fn drop_cache(dir: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    for f in files {
        let file = std::fs::File::open(&f).map_err(err)?;
        file.sync_all().map_err(err)?;
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).map_err(err)?;
    }
    Ok(())
}

/// `read_bytes` of `/proc/self/io`: bytes this process caused to be read from storage (0
/// where it cannot be read).
fn io_read_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("read_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Gives the allocator time and allocations on this thread to return what an earlier phase
/// freed (it does so lazily, on later allocations), so that an RSS baseline taken next does
/// not shrink under the phase it is the baseline of.
fn settle_allocator() {
    for _ in 0..5 {
        for _ in 0..64 {
            std::hint::black_box(vec![1u8; 1 << 20]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0; ignored where it fails).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn kib_delta(now: u64, base: u64) -> i64 {
    now as i64 - base as i64
}

struct Samples {
    ids: Vec<u64>,
    persons: Vec<u32>,
}

/// Times each read of one pass; returns the latencies and digests of what was returned.
fn pass(
    reader: &dyn Reader,
    w: &Workload,
    s: &Samples,
) -> Result<(Latencies, Latencies, u64, u64, u64), String> {
    let mut out = Vec::with_capacity(4096);
    let (mut pd, mut wd) = (Digest::new(), Digest::new());
    let mut point = Vec::with_capacity(s.ids.len());
    for &id in &s.ids {
        out.clear();
        let t = Instant::now();
        reader.point(id, &mut out)?;
        point.push(t.elapsed().as_nanos() as u64);
        pd.add(&out);
    }
    let mut walk = Vec::with_capacity(s.persons.len());
    let mut walked = 0;
    for &psn in &s.persons {
        out.clear();
        let t = Instant::now();
        reader.walk(psn, w.tails[psn as usize], &mut out)?;
        walk.push(t.elapsed().as_nanos() as u64);
        walked += (out.len() / ENTRY_BYTES) as u64;
        wd.add(&out);
    }
    point.sort_unstable();
    walk.sort_unstable();
    Ok((Latencies(point), Latencies(walk), pd.0, wd.0, walked))
}

fn run_store(
    kind: StoreKind,
    root: &Path,
    w: &Workload,
    s: &Samples,
) -> Result<StoreFigures, String> {
    let dir = root.join(kind.name());
    std::fs::create_dir_all(&dir).map_err(err)?;
    let mut f = StoreFigures {
        name: kind.name(),
        load_before: CpuSample::now().loadavg_1m,
        ..StoreFigures::default()
    };
    settle_allocator();
    let base = Rss::now();
    reset_peak_rss();

    // Append, one durable commit per chunk.
    {
        let mut writer: Box<dyn Writer> = match kind {
            StoreKind::Files => Box::new(FilesWriter(HistoryDir::create(&dir).map_err(err)?)),
            StoreKind::Redb => Box::new(RedbWriter(
                redb::Database::create(dir.join("history.redb")).map_err(err)?,
            )),
            StoreKind::Fjall => Box::new(Fjall::open(&dir)?),
        };
        let t = Instant::now();
        for &(column, k) in &w.order {
            let c = Instant::now();
            writer.append(column, k, w.chunk(column, k))?;
            f.commits.0.push(c.elapsed().as_nanos() as u64);
        }
        f.append = t.elapsed();
        f.commits.0.sort_unstable();
        f.rss_append_peak_kib = kib_delta(Rss::now().hwm_kib, base.rss_kib);
    }
    (f.disk_bytes, f.disk_apparent_bytes) = disk_usage(&dir);
    drop_cache(&dir)?;

    // Open cold, read cold then warm. The memory baseline is taken again here, a moment after
    // the writer is gone (the allocator returns what it freed lazily).
    settle_allocator();
    let base = Rss::now();
    reset_peak_rss();
    let io = io_read_bytes();
    let t = Instant::now();
    let reader: Box<dyn Reader> = match kind {
        StoreKind::Files => Box::new(FilesReader::open(&dir, w.setls.len(), w.entries.len())?),
        StoreKind::Redb => Box::new(RedbReader::open(&dir.join("history.redb"))?),
        StoreKind::Fjall => Box::new(Fjall::open(&dir)?),
    };
    f.open = t.elapsed();
    let io_opened = io_read_bytes();
    f.io_open_bytes = io_opened - io;
    f.rss_open_kib = kib_delta(Rss::now().rss_kib, base.rss_kib);
    let (point, walk, pd, wd, walked) = pass(&*reader, w, s)?;
    f.io_cold_pass_bytes = io_read_bytes() - io_opened;
    (
        f.point_cold,
        f.walk_cold,
        f.point_digest,
        f.walk_digest,
        f.walked,
    ) = (point, walk, pd, wd, walked);
    let (point, walk, pd, wd, _) = pass(&*reader, w, s)?;
    if (pd, wd) != (f.point_digest, f.walk_digest) {
        return Err(format!("{}: the warm pass read other records", kind.name()));
    }
    (f.point_warm, f.walk_warm) = (point, walk);
    let after = Rss::now();
    f.rss_reads_kib = kib_delta(after.rss_kib, base.rss_kib);
    f.rss_read_peak_kib = kib_delta(after.hwm_kib, base.rss_kib);
    drop(reader);
    f.load_after = CpuSample::now().loadavg_1m;
    std::fs::remove_dir_all(&dir).map_err(err)?;
    Ok(f)
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            let v: Vec<&str> = s.split_whitespace().take(3).collect();
            format!("load average {}", v.join(", "))
        })
        .unwrap_or_else(|_| "load average unknown".to_owned())
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Builds the records, runs every store on them, and reports side by side.
pub fn store_bench(opts: &StoreBenchOptions) -> Result<StoreReport, String> {
    assert!(opts.persons >= 1 && opts.settlements >= 1);
    assert_eq!(
        Column::Settlements.chunk_bytes(),
        HISTORY_CHUNK * SETL_BYTES
    );
    assert_eq!(Column::Entries.chunk_bytes(), HISTORY_CHUNK * ENTRY_BYTES);
    let machine = Machine::detect();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "gongji bench store: history records in the project's files (GJHIST02), redb 5.0 and fjall 3.1"
    );
    let _ = writeln!(text, "{machine}");
    let _ = writeln!(text, "{} at start", uptime());

    let t = Instant::now();
    let chunks = (opts.settlements as usize).div_ceil(HISTORY_CHUNK);
    let w = workload(opts, chunks)?;
    let setls = (w.setls.len() * HISTORY_CHUNK) as u64;
    let entries = (w.entries.len() * HISTORY_CHUNK) as u64;
    let record_bytes = setls * SETL_BYTES as u64 + entries * ENTRY_BYTES as u64;
    let mut rng = SplitMix64::new(opts.seed ^ 0x5703E);
    let ids: Vec<u64> = (0..opts.reads).map(|_| rng.below(setls) + 1).collect();
    let with_entries: Vec<u32> = (0..opts.persons)
        .filter(|&p| w.tails[p as usize] != 0)
        .collect();
    let persons: Vec<u32> = (0..opts.walks)
        .map(|_| with_entries[rng.below(with_entries.len() as u64) as usize])
        .collect();
    let samples = Samples { ids, persons };
    let _ = writeln!(
        text,
        "records: {} persons, {} settlements ({} chunks of {}) and {} entries ({} chunks), {:.1} MiB of record bytes (86 and 48 bytes each), built in {:.1} s; {} commits, one per chunk, each durable (fsync) before the next",
        crate::thousands(u64::from(opts.persons)),
        crate::thousands(setls),
        w.setls.len(),
        HISTORY_CHUNK,
        crate::thousands(entries),
        w.entries.len(),
        mib(record_bytes as f64),
        t.elapsed().as_secs_f64(),
        w.order.len()
    );
    let _ = writeln!(
        text,
        "reads per pass: {} point reads by random settlement id, {} walks of a random person's entries (all of them, newest first); pass 1 cold (the store's files dropped from the page cache with posix_fadvise before the timed open), pass 2 the same reads warm; seed {}",
        crate::thousands(opts.reads as u64),
        crate::thousands(opts.walks as u64),
        opts.seed
    );

    // The records every store must return.
    let (mut pd, mut wd, mut walked) = (Digest::new(), Digest::new(), 0u64);
    for &id in &samples.ids {
        pd.add(w.setl(id));
    }
    for &psn in &samples.persons {
        let mut at = w.tails[psn as usize];
        while at > 0 {
            let e = w.entry(at);
            wd.add(e);
            walked += 1;
            at = entry_prev(e);
        }
    }

    let root = opts
        .dir
        .join(format!("gongji-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(err)?;
    let mut stores = Vec::new();
    let mut result = Ok(());
    for &kind in &opts.stores {
        match run_store(kind, &root, &w, &samples) {
            Ok(f) => stores.push(f),
            Err(e) => {
                result = Err(format!("{}: {e}", kind.name()));
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    result?;

    let n = w.records() as f64;
    let row = |text: &mut String, what: &str, cell: &dyn Fn(&StoreFigures) -> String| {
        let _ = write!(text, "{what:<44}");
        for f in &stores {
            let _ = write!(text, " {:>22}", cell(f));
        }
        let _ = writeln!(text);
    };
    row(&mut text, "", &|f| f.name.to_owned());
    row(
        &mut text,
        "append: records/s (settlements + entries)",
        &|f| crate::thousands((n / f.append.as_secs_f64()) as u64),
    );
    row(
        &mut text,
        "append: settlements/s with their entries",
        &|f| crate::thousands((setls as f64 / f.append.as_secs_f64()) as u64),
    );
    row(&mut text, "append: total s", &|f| {
        format!("{:.2}", f.append.as_secs_f64())
    });
    row(
        &mut text,
        "append: commit (64 K records) p50/p99 ms",
        &|f| {
            format!(
                "{:.1} / {:.1}",
                f.commits.pct_us(50.0) / 1e3,
                f.commits.pct_us(99.0) / 1e3
            )
        },
    );
    row(&mut text, "disk: bytes per record (allocated)", &|f| {
        format!("{:.1}", f.disk_bytes as f64 / n)
    });
    row(&mut text, "disk: MiB allocated (apparent)", &|f| {
        format!(
            "{:.0} ({:.0})",
            mib(f.disk_bytes as f64),
            mib(f.disk_apparent_bytes as f64)
        )
    });
    row(&mut text, "open after cache drop: ms", &|f| {
        format!("{:.1}", f.open.as_secs_f64() * 1e3)
    });
    row(&mut text, "disk reads: open / cold pass MiB", &|f| {
        format!(
            "{:.1} / {:.1}",
            mib(f.io_open_bytes as f64),
            mib(f.io_cold_pass_bytes as f64)
        )
    });
    row(&mut text, "point read cold: p50/p99/p100 µs", &|f| {
        f.point_cold.summary()
    });
    row(&mut text, "point read warm: p50/p99/p100 µs", &|f| {
        f.point_warm.summary()
    });
    row(&mut text, "entries walk cold: p50/p99/p100 µs", &|f| {
        f.walk_cold.summary()
    });
    row(&mut text, "entries walk warm: p50/p99/p100 µs", &|f| {
        f.walk_warm.summary()
    });
    row(&mut text, "RSS growth: peak while appending MiB", &|f| {
        format!("{:.0}", f.rss_append_peak_kib as f64 / 1024.0)
    });
    row(&mut text, "RSS growth from open: after open MiB", &|f| {
        format!("{:.1}", f.rss_open_kib as f64 / 1024.0)
    });
    row(&mut text, "RSS growth from open: peak reading MiB", &|f| {
        format!("{:.1}", f.rss_read_peak_kib as f64 / 1024.0)
    });
    row(&mut text, "load average (1 min) before / after", &|f| {
        format!("{:.2} / {:.2}", f.load_before, f.load_after)
    });
    row(&mut text, "digest of point reads", &|f| {
        format!("{:016x}", f.point_digest)
    });
    row(&mut text, "digest of walks", &|f| {
        format!("{:016x}", f.walk_digest)
    });
    let _ = writeln!(
        text,
        "expected digests {:016x} / {:016x} ({} entries per walk pass, {:.1} per walk)",
        pd.0,
        wd.0,
        crate::thousands(walked),
        walked as f64 / samples.persons.len().max(1) as f64
    );
    let same = stores
        .iter()
        .all(|f| (f.point_digest, f.walk_digest, f.walked) == (pd.0, wd.0, walked));
    let _ = writeln!(
        text,
        "every store returned the records: {}",
        if same { "yes" } else { "NO" }
    );
    let _ = writeln!(text, "{} at end", uptime());
    Ok(StoreReport {
        text,
        stores,
        point_digest: pd.0,
        walk_digest: wd.0,
        walked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_returns_the_same_records() {
        // Proves: on real files in a temporary directory, the history files, redb and fjall
        // each return, for the same random settlement ids and persons, exactly the records
        // the workload holds (digests equal to ones computed from the records in memory,
        // and as many entries), so the figures compare equal work; the stores' directories
        // are removed afterwards.
        let tmp = tempfile::tempdir().unwrap();
        let opts = StoreBenchOptions {
            persons: 20_000,
            settlements: 2 * HISTORY_CHUNK as u64,
            reads: 500,
            walks: 300,
            seed: 7,
            dir: tmp.path().to_owned(),
            stores: StoreKind::ALL.to_vec(),
        };
        let report = store_bench(&opts).unwrap();
        eprintln!("{}", report.text);
        assert_eq!(report.stores.len(), 3);
        assert!(report.walked > 300, "walks returned {}", report.walked);
        for f in &report.stores {
            assert_eq!(f.point_digest, report.point_digest, "{}", f.name);
            assert_eq!(f.walk_digest, report.walk_digest, "{}", f.name);
            assert_eq!(f.walked, report.walked, "{}", f.name);
            assert_eq!(f.point_cold.0.len(), 500);
            assert_eq!(f.walk_warm.0.len(), 300);
            assert!(f.disk_bytes > 0, "{}", f.name);
        }
        assert!(report
            .text
            .contains("every store returned the records: yes"));
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
