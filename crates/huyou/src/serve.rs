//! `huyou serve`: the HTTP JSON API (axum). OpenAPI 3.1 document at `/openapi.json`.
//!
//! Every `/v1` route needs `Authorization: Bearer <token>`; the token is read from
//! `--token-file` (default `DATA/token`), created with 32 random bytes, mode 0600, on first start.
//! `/healthz`, `/metrics` and `/openapi.json` are open.
//!
//! Bodies are read as bytes and parsed here, so that every malformed body (not JSON, not UTF-8,
//! an unknown field, too large, too many items) gets a JSON `{"error": ...}` with a clear status
//! instead of axum's plain-text rejections. A small batch is classified on the handler's thread,
//! a large one in `spawn_blocking` across all cores. A small batch's audit entries are written
//! on the handler's thread when the log is free; otherwise (the log busy, or a large batch) they
//! go to the audit writer thread, which writes every batch waiting at once and only then
//! releases the replies. When a reply may leave is `--audit-sync`:
//!
//! - `group` (the default): once its records are written whole (one `write`), so a killed
//!   process loses no acknowledged record (the page cache outlives it). The syncer thread
//!   fdatasyncs whenever records are waiting, at most once per `--audit-sync-interval-ms`, so a
//!   power loss or an OS crash loses at most the records acknowledged since the last sync began
//!   (about one interval plus a sync or two); opening the log cuts a batch such a crash tore.
//! - `always`: once they are fsynced; the writer thread's batches share one fsync (group commit).
//!
//! `/metrics` shows the records not yet synced and a histogram of sync times. The writer and the
//! syncer are joined on shutdown, after a last sync.
//!
//! Limits: `BODY_BYTES_MAX`, `ITEMS_MAX` per batch, `wire::TEXT_BYTES_MAX` per text,
//! `STREAMS_MAX` open generative-AI streams (idle ones dropped when full), `STREAM_BYTES_MAX`
//! per stream; a stream keeps only its last 256 bytes.

use crate::wire::{self, Item};
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use huyou_core::{
    Action, Audience, AuditLog, Classifier, Code, Medium, Meta, Policy, Service, Surface,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Bounds what one request can make the server hold: 64 MiB of body is 100,000 items of about
/// 600 bytes of JSON each (a 50-character Chinese text is 150 bytes of UTF-8), so a full batch of
/// ordinary comments fits; a batch of long texts meets this limit before `ITEMS_MAX`.
pub const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// 100,000 items classify in about a second on one core (BENCHMARKS.md).
pub const ITEMS_MAX: usize = 100_000;
pub const STREAMS_MAX: usize = 10_000;
pub const STREAM_BYTES_MAX: usize = 4 * 1024 * 1024;
/// A stream without a chunk for this long may be dropped to make room for a new one.
const STREAM_IDLE_MAX: std::time::Duration = std::time::Duration::from_secs(600);
/// The tail of a stream re-read with each chunk, so a term split across chunks is still seen.
const STREAM_OVERLAP_BYTES: usize = 256;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8181")]
    pub listen: String,
    /// Directory for the token and the audit log (`DATA/audit`, mode 0700).
    #[arg(long, default_value = "huyou-data")]
    pub data: PathBuf,
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// When a reply may leave: `group` once its audit records are written (a kill -9 loses
    /// none; a power loss may lose those of the last sync interval), `always` once they are
    /// fsynced.
    #[arg(long, value_enum, default_value_t = AuditSync::Group)]
    pub audit_sync: AuditSync,
    /// With `--audit-sync group`: the syncer fsyncs at most once per this many milliseconds
    /// (0: back to back while records wait) [default: 5].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=AUDIT_SYNC_INTERVAL_MS_MAX))]
    pub audit_sync_interval_ms: Option<u64>,
}

/// The audit log's durability before a reply (`--audit-sync`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditSync {
    /// Reply once the records are written; a syncer thread fsyncs them within the interval.
    Group,
    /// Reply once the records are fsynced.
    Always,
}

impl AuditSync {
    fn as_str(self) -> &'static str {
        match self {
            AuditSync::Group => "group",
            AuditSync::Always => "always",
        }
    }
}

/// The longest `--audit-sync-interval-ms`: what a power loss may cost is bounded by it.
pub const AUDIT_SYNC_INTERVAL_MS_MAX: u64 = 10_000;
const AUDIT_SYNC_INTERVAL_MS_DEFAULT: u64 = 5;

#[derive(Debug, Default)]
struct Metrics {
    requests: AtomicU64,
    rejected_requests: AtomicU64,
    items_classified: AtomicU64,
    items_flagged: AtomicU64,
    items_removed: AtomicU64,
    audit_records: AtomicU64,
}

#[derive(Debug, Default)]
struct Stream {
    /// Only the last `STREAM_OVERLAP_BYTES` of the answer are kept, not the whole answer.
    tail: String,
    bytes_total: usize,
    codes: Vec<Code>,
    last_seen: Option<std::time::Instant>,
}

#[derive(Debug)]
pub struct App {
    classifier: Classifier,
    policy: Policy,
    audit_tx: tokio::sync::mpsc::Sender<AuditJob>,
    audit_path: PathBuf,
    audit: Arc<Audit>,
    token_hash: blake3::Hash,
    metrics: Metrics,
    streams: Mutex<HashMap<String, Stream>>,
    /// Permits for batches classified in parallel (`large_batches_max`).
    large_batches: tokio::sync::Semaphore,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let interval_ms = match (args.audit_sync, args.audit_sync_interval_ms) {
        (AuditSync::Always, Some(_)) => anyhow::bail!(
            "--audit-sync-interval-ms applies to --audit-sync group only (always syncs before each reply)"
        ),
        (_, ms) => ms.unwrap_or(AUDIT_SYNC_INTERVAL_MS_DEFAULT),
    };
    let token_file = args
        .token_file
        .clone()
        .unwrap_or_else(|| args.data.join("token"));
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("create {}", args.data.display()))?;
    let token = load_or_create_token(&token_file)?;
    let policy = match &args.policy {
        None => Policy::builtin(),
        Some(p) => Policy::parse(&std::fs::read_to_string(p)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
    };
    let log = AuditLog::open_preallocated(&args.data.join("audit"), AUDIT_PREALLOCATE_BYTES)?;
    let audit_path = log.path().to_path_buf();
    let sync_handle = log.sync_handle()?;
    let audit = Arc::new(Audit::new(log, args.audit_sync));
    let (audit_tx, audit_rx) = tokio::sync::mpsc::channel(AUDIT_QUEUE_MAX);
    let shared = audit.clone();
    let writer = std::thread::Builder::new()
        .name("huyou-audit".into())
        .spawn(move || audit_writer(&shared, audit_rx))?;
    let syncer = match args.audit_sync {
        AuditSync::Always => None,
        AuditSync::Group => {
            let shared = audit.clone();
            let interval = std::time::Duration::from_millis(interval_ms);
            Some(
                std::thread::Builder::new()
                    .name("huyou-audit-sync".into())
                    .spawn(move || audit_syncer(&shared, &sync_handle, interval))?,
            )
        }
    };
    let app = Arc::new(App {
        classifier: Classifier::builtin(),
        policy,
        audit_tx,
        audit_path,
        audit: audit.clone(),
        token_hash: blake3::hash(token.as_bytes()),
        metrics: Metrics::default(),
        streams: Mutex::new(HashMap::new()),
        large_batches: tokio::sync::Semaphore::new(large_batches_max()),
    });
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen).await?;
        // Tests and scripts read this line to learn the port when --listen ends in :0.
        println!("huyou listening on http://{}", listener.local_addr()?);
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, router(app))
            .with_graceful_shutdown(shutdown())
            .await?;
        Ok::<(), anyhow::Error>(())
    })?;
    // The router and every clone of the audit sender are gone once the runtime has finished
    // its blocking tasks; the writer then drains the queue and returns, and the syncer makes a
    // last sync of everything written.
    drop(runtime);
    writer.join().expect("audit writer does not panic");
    if let Some(syncer) = syncer {
        *audit.stop.lock().expect("syncer lock") = true;
        audit.wake.notify_all();
        syncer.join().expect("audit syncer does not panic");
    }
    Ok(())
}

/// Batches waiting for the audit writer; a full queue makes handlers wait (backpressure).
const AUDIT_QUEUE_MAX: usize = 4096;
/// At most this many batches share one fsync.
const AUDIT_GROUP_JOBS_MAX: usize = 1024;
/// Zeros kept written ahead of the audit records (`AuditLog::open_preallocated`). Topping them
/// up (8 MiB when half is used, about 11,000 single-item records) makes the requests waiting at
/// that moment wait for an 8 MiB write and sync (5-20 ms here): rare and large rather than
/// often and small, so that fewer than 1 % of requests at 64 connections meet one.
const AUDIT_PREALLOCATE_BYTES: u64 = 16 << 20;

/// The audit log and what the handlers, the writer thread and the syncer share about it.
#[derive(Debug)]
struct Audit {
    /// Held for each write (and in `always` mode its fsync), by a handler (fast path) or the
    /// writer thread; never by the syncer, so a sync in `group` mode holds up no write.
    log: Mutex<AuditLog>,
    mode: AuditSync,
    /// Whole records and their bytes written (acknowledged once the writer has stored them):
    /// the export shows these bytes, so never a half-written line.
    written_records: AtomicU64,
    written_bytes: AtomicU64,
    /// Whole records and bytes known to be fsynced.
    synced_records: AtomicU64,
    synced_bytes: AtomicU64,
    /// Jobs sent to the writer thread and not yet taken by it.
    queued: AtomicUsize,
    /// Set by the syncer while it waits for records: a writer then wakes it (else no writer
    /// pays for a wake-up).
    syncer_idle: AtomicBool,
    /// Set on shutdown: the syncer makes a last sync and returns.
    stop: Mutex<bool>,
    wake: Condvar,
    sync_seconds: Histogram,
}

impl Audit {
    fn new(log: AuditLog, mode: AuditSync) -> Audit {
        let (records, bytes) = (log.records(), log.end());
        Audit {
            log: Mutex::new(log),
            mode,
            written_records: AtomicU64::new(records),
            written_bytes: AtomicU64::new(bytes),
            synced_records: AtomicU64::new(records),
            synced_bytes: AtomicU64::new(bytes),
            queued: AtomicUsize::new(0),
            syncer_idle: AtomicBool::new(false),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            sync_seconds: Histogram::default(),
        }
    }

    fn unsynced(&self) -> bool {
        self.written_bytes.load(Ordering::SeqCst) > self.synced_bytes.load(Ordering::SeqCst)
    }

    /// The syncer's wait: until records are unsynced, then until `due` (the last sync's start
    /// plus the interval). Returns whether shutdown was asked for.
    fn wait_for_unsynced(&self, due: Instant) -> bool {
        let mut stop = self.stop.lock().expect("syncer lock");
        loop {
            if *stop {
                return true;
            }
            // SeqCst with the writers' store-then-load (`note_written`): either a writer sees
            // the syncer idle and wakes it, or the syncer sees the writer's records here.
            self.syncer_idle.store(true, Ordering::SeqCst);
            if self.unsynced() {
                break;
            }
            stop = self.wake.wait(stop).expect("syncer lock");
        }
        self.syncer_idle.store(false, Ordering::SeqCst);
        while let Some(wait) = due.checked_duration_since(Instant::now()) {
            if *stop {
                return true;
            }
            stop = self.wake.wait_timeout(stop, wait).expect("syncer lock").0;
        }
        *stop
    }

    /// Called with the log's lock held, after a batch is written (and in `always` mode synced).
    fn note_written(&self, log: &AuditLog) {
        self.written_records.store(log.records(), Ordering::SeqCst);
        self.written_bytes.store(log.end(), Ordering::SeqCst);
        if self.mode == AuditSync::Group && self.syncer_idle.load(Ordering::SeqCst) {
            let _stop = self.stop.lock().expect("syncer lock");
            self.wake.notify_one();
        }
    }

    fn note_synced(&self, records: u64, bytes: u64, took: std::time::Duration) {
        self.sync_seconds.observe(took);
        self.note_durable(records, bytes);
    }

    /// Records up to `records` (`bytes`) are fsynced, by a record sync or another one.
    fn note_durable(&self, records: u64, bytes: u64) {
        self.synced_records.fetch_max(records, Ordering::SeqCst);
        self.synced_bytes.fetch_max(bytes, Ordering::SeqCst);
    }
}

/// `group` mode's syncer: fsyncs whenever records are written and unsynced, no sooner than
/// `interval` after its previous sync began (or after it started), through its own handle on
/// the file (a sync covers every write that returned before it began, so the positions read
/// before it are synced after it). Stops after a last sync once shutdown is asked for.
fn audit_syncer(audit: &Audit, handle: &huyou_core::SyncHandle, interval: std::time::Duration) {
    let mut last_start = Instant::now();
    loop {
        let stopping = audit.wait_for_unsynced(last_start + interval);
        let records = audit.written_records.load(Ordering::SeqCst);
        let bytes = audit.written_bytes.load(Ordering::SeqCst);
        if bytes > audit.synced_bytes.load(Ordering::SeqCst) {
            let start = Instant::now();
            last_start = start;
            if let Err(e) = handle.sync() {
                eprintln!("huyou: audit log sync failed, stopping: {e}");
                std::process::exit(70);
            }
            audit.note_synced(records, bytes, start.elapsed());
        }
        if stopping {
            return;
        }
    }
}

/// Upper bounds of `huyou_audit_sync_seconds`' buckets: the disk's fsync runs from 0.1 ms to
/// tens of ms here (BENCHMARKS.md).
const SYNC_BUCKETS_S: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 1.0,
];

/// A Prometheus histogram of durations, updated with atomics.
#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last one is beyond every bound.
    buckets: [AtomicU64; SYNC_BUCKETS_S.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: std::time::Duration) {
        let s = took.as_secs_f64();
        let i = SYNC_BUCKETS_S.partition_point(|&b| b < s);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        let mut cumulative = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = SYNC_BUCKETS_S
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            out.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {cumulative}\n"));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        out.push_str(&format!("{name}_sum {sum}\n{name}_count {cumulative}\n"));
    }
}

#[derive(Debug)]
struct AuditJob {
    entries: Vec<huyou_core::audit::Entry>,
    durable: tokio::sync::oneshot::Sender<()>,
}

/// Writes under the log's lock, and in `always` mode fsyncs. A failed write or fsync is fatal
/// (STYLE.md): the record may or may not be on disk, and an fsync cannot be retried safely.
/// Stop; the chain is checked on restart.
fn append_or_exit(log: &mut AuditLog, entries: Vec<huyou_core::audit::Entry>, audit: &Audit) {
    if let Err(e) = log.write_batch(entries) {
        eprintln!("huyou: audit log write failed, stopping: {e}");
        std::process::exit(70);
    }
    if audit.mode == AuditSync::Always {
        let start = Instant::now();
        if let Err(e) = log.sync() {
            eprintln!("huyou: audit log sync failed, stopping: {e}");
            std::process::exit(70);
        }
        audit.note_synced(log.records(), log.end(), start.elapsed());
    }
    audit.note_written(log);
}

/// Appends the batch on the handler's own thread when no sync is in flight and nothing waits
/// for the writer (the uncontended case: no hand-off to another thread and back); returns the
/// entries when it cannot. Only small batches come here, so the worker blocks for one sync.
fn append_inline(
    audit: &Audit,
    entries: Vec<huyou_core::audit::Entry>,
) -> Option<Vec<huyou_core::audit::Entry>> {
    if audit.queued.load(Ordering::Acquire) != 0 {
        return Some(entries);
    }
    let Ok(mut log) = audit.log.try_lock() else {
        return Some(entries);
    };
    append_or_exit(&mut log, entries, audit);
    None
}

/// The group commit: takes every batch waiting once the log is free, writes them at once (in
/// `always` mode with one fsync), then wakes their handlers. Batches that arrive during a sync (the writer's or a
/// handler's) wait in the queue and share the next one, so a request waits for at most the sync
/// in flight and its own. Also tops up the log's preallocation, after releasing the replies; a
/// job without entries asks for only that.
fn audit_writer(audit: &Audit, mut rx: tokio::sync::mpsc::Receiver<AuditJob>) {
    while let Some(first) = rx.blocking_recv() {
        let mut log = audit.log.lock().expect("audit log lock");
        let mut jobs = vec![first];
        while jobs.len() < AUDIT_GROUP_JOBS_MAX {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        audit.queued.fetch_sub(jobs.len(), Ordering::AcqRel);
        let entries: Vec<_> = jobs
            .iter_mut()
            .flat_map(|j| std::mem::take(&mut j.entries))
            .collect();
        if !entries.is_empty() {
            append_or_exit(&mut log, entries, audit);
        }
        for job in jobs {
            let _ = job.durable.send(());
        }
        // After the replies are released: the next batch, not this one, waits for it. Its
        // sync also makes every record written so far durable.
        let topping_up = log.preallocation_low();
        if let Err(e) = log.preallocate_ahead() {
            eprintln!("huyou: audit log preallocation failed, stopping: {e}");
            std::process::exit(70);
        }
        if topping_up {
            audit.note_durable(log.records(), log.end());
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn load_or_create_token(path: &std::path::Path) -> Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        return Ok(t.trim().to_string());
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("random token: {e}"))?;
    let token = hex::encode(raw);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options.open(path)?.write_all(token.as_bytes())?;
    Ok(token)
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/classify", post(classify))
        .route("/v1/filter", post(filter))
        .route("/v1/genai/check", post(genai_check))
        .route("/v1/genai/stream", post(genai_stream))
        .route("/v1/audit/export", get(audit_export))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(app)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// A refused request, turned into its JSON error response at the handler's edge (small, unlike
/// `Response`, so `Result`s that carry it stay cheap).
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// Authenticates and parses a JSON body, or gives the error response.
fn parse<T: serde::de::DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let reject = |status, message: String| {
        app.metrics
            .rejected_requests
            .fetch_add(1, Ordering::Relaxed);
        ApiError(status, message)
    };
    authorize(app, headers).map_err(|m| reject(StatusCode::UNAUTHORIZED, m))?;
    let body = body.map_err(|r| {
        let status = r.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("body larger than body_bytes_max = {BODY_BYTES_MAX}")
        } else {
            r.body_text()
        };
        reject(status, message)
    })?;
    std::str::from_utf8(&body)
        .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("body is not UTF-8: {e}")))?;
    serde_json::from_slice(&body)
        .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn authorize(app: &App, headers: &HeaderMap) -> Result<(), String> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("missing Authorization: Bearer <token>")?;
    // Comparing hashes keeps the comparison's time independent of where the token differs.
    if blake3::hash(given.as_bytes()) == app.token_hash {
        Ok(())
    } else {
        Err("wrong token".into())
    }
}

fn check_items(items: &[Item]) -> Result<(), ApiError> {
    if items.len() > ITEMS_MAX {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} items in one batch; items_max is {ITEMS_MAX}",
                items.len()
            ),
        ));
    }
    for item in items {
        item.check()
            .map_err(|e| ApiError(StatusCode::PAYLOAD_TOO_LARGE, e))?;
    }
    Ok(())
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    Json(serde_json::json!({ "status": "ok", "policy_version": app.policy.version }))
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let m = &app.metrics;
    let mut out = String::new();
    for (name, help, v) in [
        ("huyou_requests_total", "API requests received", &m.requests),
        (
            "huyou_requests_rejected_total",
            "API requests refused (auth, body, limits)",
            &m.rejected_requests,
        ),
        (
            "huyou_items_classified_total",
            "items classified",
            &m.items_classified,
        ),
        (
            "huyou_items_flagged_total",
            "items with at least one code",
            &m.items_flagged,
        ),
        (
            "huyou_items_removed_total",
            "candidates removed by /v1/filter",
            &m.items_removed,
        ),
        (
            "huyou_audit_records_total",
            "audit records of acknowledged items (written; fsynced too with --audit-sync always)",
            &m.audit_records,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    let a = &app.audit;
    let (written_records, synced_records) = (
        a.written_records.load(Ordering::SeqCst),
        a.synced_records.load(Ordering::SeqCst),
    );
    let (written_bytes, synced_bytes) = (
        a.written_bytes.load(Ordering::SeqCst),
        a.synced_bytes.load(Ordering::SeqCst),
    );
    for (name, help, v) in [
        (
            "huyou_audit_unsynced_records",
            "audit records written (acknowledged) and not yet fsynced: what a power loss now would lose",
            written_records.saturating_sub(synced_records),
        ),
        (
            "huyou_audit_unsynced_bytes",
            "bytes of audit records written and not yet fsynced",
            written_bytes.saturating_sub(synced_bytes),
        ),
        (
            "huyou_audit_synced_records",
            "audit records in the log known to be fsynced",
            synced_records,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP huyou_audit_sync_mode the --audit-sync setting\n# TYPE huyou_audit_sync_mode gauge\nhuyou_audit_sync_mode{{mode=\"{}\"}} 1\n",
        a.mode.as_str()
    ));
    a.sync_seconds.render(
        "huyou_audit_sync_seconds",
        "time of each fdatasync of audit records",
        &mut out,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Batches up to this many items are classified on the handler's own thread: one 50-character
/// item takes about 10 µs, less than the hand-off to a blocking thread and back.
const INLINE_ITEMS_MAX: usize = 16;
/// Larger batches are cut into pieces of this many items, classified on all cores at once.
const PARALLEL_CHUNK_ITEMS: usize = 4096;

/// Batches over `INLINE_ITEMS_MAX` items being classified and audited at once: one per core.
/// Each already uses every core, so more at once would not finish sooner, and a 100,000-item
/// batch holds several hundred MB until its reply (BENCHMARKS.md), so this bounds the memory
/// that concurrent large batches can take. Others wait for a permit.
fn large_batches_max() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Classifies and decides a batch, writes its audit entries (or hands them to the writer), and
/// returns once they are written (`group`) or fsynced (`always`).
async fn run_batch(
    app: Arc<App>,
    items: Vec<Item>,
    context: Option<(Audience, Service)>,
) -> Result<Vec<wire::Classified>, ApiError> {
    let _permit;
    let (results, entries) = if items.len() <= INLINE_ITEMS_MAX {
        classify_batch(&app, &items, context)
    } else {
        _permit = app
            .large_batches
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let worker = app.clone();
        tokio::task::spawn_blocking(move || classify_parallel(&worker, &items, context))
            .await
            .map_err(|e| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("classification failed: {e}"),
                )
            })?
    };
    let unavailable = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit writer stopped".to_string(),
        )
    };
    let inline = if entries.len() <= INLINE_ITEMS_MAX {
        append_inline(&app.audit, entries)
    } else {
        Some(entries)
    };
    let (durable, wait) = tokio::sync::oneshot::channel();
    match inline {
        Some(entries) => {
            app.audit.queued.fetch_add(1, Ordering::AcqRel);
            let sent = app.audit_tx.send(AuditJob { entries, durable }).await;
            if sent.is_err() {
                app.audit.queued.fetch_sub(1, Ordering::AcqRel);
                return Err(unavailable());
            }
            wait.await.map_err(|_| unavailable())?;
        }
        None => {
            // Written. If the preallocation ran low, the writer tops it up (nobody waits on it).
            let low = app
                .audit
                .log
                .try_lock()
                .is_ok_and(|l| l.preallocation_low());
            if low {
                app.audit.queued.fetch_add(1, Ordering::AcqRel);
                if app
                    .audit_tx
                    .try_send(AuditJob {
                        entries: Vec::new(),
                        durable,
                    })
                    .is_err()
                {
                    app.audit.queued.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
    let m = &app.metrics;
    m.items_classified
        .fetch_add(results.len() as u64, Ordering::Relaxed);
    m.audit_records
        .fetch_add(results.len() as u64, Ordering::Relaxed);
    let flagged = results.iter().filter(|r| !r.categories.is_empty()).count();
    m.items_flagged.fetch_add(flagged as u64, Ordering::Relaxed);
    Ok(results)
}

type Classifications = (Vec<wire::Classified>, Vec<huyou_core::audit::Entry>);

fn classify_batch(
    app: &App,
    items: &[Item],
    context: Option<(Audience, Service)>,
) -> Classifications {
    let results: Vec<wire::Classified> = items
        .iter()
        .map(|i| wire::classify_item(&app.classifier, &app.policy, i, context))
        .collect();
    let entries = items
        .iter()
        .zip(&results)
        .map(|(i, r)| wire::audit_entry(&app.policy, i, r))
        .collect();
    (results, entries)
}

/// `classify_batch` over pieces of the batch on scoped threads, one per core, results in order.
fn classify_parallel(
    app: &App,
    items: &[Item],
    context: Option<(Audience, Service)>,
) -> Classifications {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores == 1 || items.len() <= PARALLEL_CHUNK_ITEMS {
        return classify_batch(app, items, context);
    }
    let chunk = items.len().div_ceil(cores).max(PARALLEL_CHUNK_ITEMS);
    let parts: Vec<Classifications> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || classify_batch(app, part, context)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("classification does not panic"))
            .collect()
    });
    let (mut results, mut entries) = (Vec::with_capacity(items.len()), Vec::new());
    for (r, e) in parts {
        results.extend(r);
        entries.extend(e);
    }
    (results, entries)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyRequest {
    items: Vec<Item>,
    #[serde(default)]
    decide: Option<DecideContext>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct DecideContext {
    audience: Audience,
    service: Service,
}

async fn classify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: ClassifyRequest = match parse(&app, &headers, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = check_items(&req.items) {
        return e.into_response();
    }
    let context = req.decide.map(|d| (d.audience, d.service));
    match run_batch(app, req.items, context).await {
        Ok(results) => Json(ClassifyReply { results }).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterRequest {
    surface: Surface,
    audience: Audience,
    service: Service,
    candidates: Vec<Item>,
}

// Replies are typed structs written straight to bytes, not `json!` trees: a 100,000-item reply
// built as a `serde_json::Value` was a second copy of every string and map.
#[derive(Serialize)]
struct ClassifyReply {
    results: Vec<wire::Classified>,
}

#[derive(Serialize)]
struct FilterReply<'a> {
    policy_version: &'a str,
    kept: Vec<Kept>,
    removed: Vec<Removed>,
}

#[derive(Serialize)]
struct Kept {
    id: String,
    action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<huyou_core::policy::Notice>,
}

#[derive(Serialize)]
struct Removed {
    id: String,
    codes: Vec<Code>,
    rules: Vec<String>,
}

async fn filter(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: FilterRequest = match parse(&app, &headers, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = check_items(&req.candidates) {
        return e.into_response();
    }
    let results = match run_batch(
        app.clone(),
        req.candidates,
        Some((req.audience, req.service)),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for r in results {
        let d = r
            .decisions
            .iter()
            .find(|d| d.surface == req.surface)
            .expect("every surface decided");
        if d.action == Action::Deny {
            removed.push(Removed {
                id: r.id,
                codes: r.categories.iter().map(|c| c.code).collect(),
                rules: d.rules.clone(),
            });
        } else {
            kept.push(Kept {
                id: r.id,
                action: d.action,
                notice: d.notice.clone(),
            });
        }
    }
    app.metrics
        .items_removed
        .fetch_add(removed.len() as u64, Ordering::Relaxed);
    Json(FilterReply {
        policy_version: &app.policy.version,
        kept,
        removed,
    })
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenaiCheck {
    #[serde(default)]
    id: String,
    prompt: String,
    answer: String,
    #[serde(default = "unknown_audience")]
    audience: Audience,
}

fn unknown_audience() -> Audience {
    Audience::Unknown
}

/// A generative-AI answer is shown on the answer page (`detail`) by a `generative_ai` service.
fn genai_item(id: String, text: String) -> Item {
    Item {
        id,
        text,
        medium: Medium::Text,
        meta: Meta::default(),
    }
}

async fn genai_check(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: GenaiCheck = match parse(&app, &headers, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let items = vec![
        genai_item(format!("{}#prompt", req.id), req.prompt),
        genai_item(format!("{}#answer", req.id), req.answer),
    ];
    if let Err(e) = check_items(&items) {
        return e.into_response();
    }
    let context = Some((req.audience, Service::GenerativeAi));
    let results = match run_batch(app, items, context).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let action = |r: &wire::Classified| {
        r.decisions
            .iter()
            .find(|d| d.surface == Surface::Detail)
            .map(|d| d.action)
    };
    Json(serde_json::json!({
        "prompt": { "categories": results[0].categories, "action": action(&results[0]) },
        "answer": { "categories": results[1].categories, "action": action(&results[1]) },
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamChunk {
    stream_id: String,
    chunk: String,
    #[serde(default)]
    done: bool,
    #[serde(default = "unknown_audience")]
    audience: Audience,
}

/// One chunk of a streaming answer: classifies the chunk with the tail of what came before, and
/// says whether to stop the stream. The stream's state is dropped on `done` or on stop.
async fn genai_stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: StreamChunk = match parse(&app, &headers, body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if req.stream_id.len() > wire::ID_BYTES_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            "stream_id longer than id_bytes_max",
        );
    }
    if req.chunk.len() > wire::TEXT_BYTES_MAX {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "chunk longer than text_bytes_max = {}",
                wire::TEXT_BYTES_MAX
            ),
        );
    }
    let (window_start, window) = {
        let mut streams = app.streams.lock().expect("streams lock");
        let now = std::time::Instant::now();
        if !streams.contains_key(&req.stream_id) && streams.len() >= STREAMS_MAX {
            // Streams whose client went away without `done` would otherwise hold their slot.
            streams.retain(|_, s| s.last_seen.is_some_and(|t| now - t < STREAM_IDLE_MAX));
        }
        if !streams.contains_key(&req.stream_id) && streams.len() >= STREAMS_MAX {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{STREAMS_MAX} streams open; streams_max reached"),
            );
        }
        let s = streams.entry(req.stream_id.clone()).or_default();
        s.last_seen = Some(now);
        if s.bytes_total + req.chunk.len() > STREAM_BYTES_MAX {
            streams.remove(&req.stream_id);
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("stream longer than stream_bytes_max = {STREAM_BYTES_MAX}"),
            );
        }
        let window_start = s.bytes_total - s.tail.len();
        let window = format!("{}{}", s.tail, req.chunk);
        s.bytes_total += req.chunk.len();
        let mut from = window.len().saturating_sub(STREAM_OVERLAP_BYTES);
        while !window.is_char_boundary(from) {
            from += 1;
        }
        s.tail = window[from..].to_string();
        (window_start, window)
    };
    let item = genai_item(format!("{}#stream", req.stream_id), window);
    let results = match run_batch(
        app.clone(),
        vec![item],
        Some((req.audience, Service::GenerativeAi)),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let r = &results[0];
    let action = r
        .decisions
        .iter()
        .find(|d| d.surface == Surface::Detail)
        .map(|d| d.action)
        .unwrap_or(Action::Allow);
    let stop = action == Action::Deny;
    let codes_so_far = {
        let mut streams = app.streams.lock().expect("streams lock");
        let mut codes = Vec::new();
        if let Some(s) = streams.get_mut(&req.stream_id) {
            for c in &r.categories {
                if !s.codes.contains(&c.code) {
                    s.codes.push(c.code);
                }
            }
            codes = s.codes.clone();
        }
        if stop || req.done {
            streams.remove(&req.stream_id);
        }
        codes
    };
    Json(serde_json::json!({
        "stream_id": req.stream_id,
        // Evidence offsets are into the window: add this to place them in the whole answer.
        "window_start": window_start,
        "action": action,
        "stop": stop,
        "categories": r.categories,
        "codes_so_far": codes_so_far,
    }))
    .into_response()
}

async fn audit_export(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    if let Err(m) = authorize(&app, &headers) {
        return error(StatusCode::UNAUTHORIZED, m);
    }
    // Every acknowledged record (in `group` mode some may not be synced yet).
    let durable = app.audit.written_bytes.load(Ordering::SeqCst) as usize;
    match tokio::fs::read(&app.audit_path).await {
        Ok(mut bytes) => {
            bytes.truncate(durable);
            ([(header::CONTENT_TYPE, "application/x-ndjson")], bytes).into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("read audit log: {e}"),
        ),
    }
}
