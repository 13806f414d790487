//! `huyou bench`: benchmarks as commands; each prints its figures and the machine they came from.
//!
//! - `cold`: COLD test split, offensive (`cyber_violence` or `incite_discrimination`) vs safe,
//!   macro-F1 beside the published RoBERTa detector's 82.39. The test split is read here only.
//! - `throughput`: items/s on one thread for 50-character texts (COLD dev comments cut or
//!   repeated to 50 characters) through classify + decide for all nine surfaces; memory.
//! - `http`: first times `fdatasync` of small appends in the directory the server's audit log
//!   will be in (the floor under every reply with `--audit-sync always`), then spawns
//!   `huyou serve` with the `--audit-sync` given on 127.0.0.1:0 and times
//!   single-item `/v1/filter` requests at each `--connections` level (p50/p99; one request at a
//!   time per keep-alive connection, so concurrent ones share an fsync), then 1,000- and
//!   100,000-candidate requests (items/s).

use crate::serve::AuditSync;
use crate::wire::{self, Item};
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use huyou_core::{Audience, Classifier, Code, Medium, Meta, Policy, Service};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Subcommand, Debug)]
pub enum Which {
    Cold {
        #[arg(long, default_value = "../shared/data/cold")]
        cold: PathBuf,
        /// `test` to report; `dev` to tune (the test split is never used for tuning).
        #[arg(long, default_value = "test")]
        split: String,
        /// Override the exemption margin for the model (for tuning on dev).
        #[arg(long)]
        margin: Option<f32>,
        /// A model file instead of the built-in one (for comparing trained models on dev).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    Throughput {
        #[arg(long, default_value = "../shared/data/cold")]
        cold: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        items: usize,
    },
    Http {
        #[arg(long, default_value = "../shared/data/cold")]
        cold: PathBuf,
        /// Single-item requests per concurrency level.
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
        /// Concurrency levels for the single-item runs (connections, each sending one request
        /// at a time).
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
        connections: Vec<usize>,
        /// The server's `--audit-sync`: `group` replies once records are written, `always` once
        /// they are fsynced.
        #[arg(long, value_enum, default_value_t = AuditSync::Group)]
        audit_sync: AuditSync,
        /// The server's `--audit-sync-interval-ms` (with `group` only).
        #[arg(long, value_name = "MS")]
        audit_sync_interval_ms: Option<u64>,
    },
}

pub fn run(which: Which) -> Result<()> {
    println!("machine: {}", machine());
    match which {
        Which::Cold {
            cold,
            split,
            margin,
            model,
        } => cold_f1(&cold, &split, margin, model.as_deref()),
        Which::Throughput { cold, items } => throughput(&cold, items),
        Which::Http {
            cold,
            requests,
            connections,
            audit_sync,
            audit_sync_interval_ms,
        } => {
            let mut server_args = vec![
                "--audit-sync".to_string(),
                audit_sync
                    .to_possible_value()
                    .expect("named")
                    .get_name()
                    .to_string(),
            ];
            if let Some(ms) = audit_sync_interval_ms {
                server_args.extend(["--audit-sync-interval-ms".to_string(), ms.to_string()]);
            }
            http(&cold, requests, &connections, &server_args)
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores available")
}

fn rss_kib() -> u64 {
    proc_status_kib(std::process::id(), "VmRSS:")
}

/// A `kB` field of `/proc/PID/status`, 0 when it cannot be read.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cold_f1(cold: &Path, split: &str, margin: Option<f32>, model: Option<&Path>) -> Result<()> {
    if split == "train" {
        bail!("the model was fitted on train; use dev or test");
    }
    let rows = crate::read_cold_split(cold, split)?;
    let mut classifier = match model {
        None => Classifier::builtin(),
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
            let m = huyou_core::model::Model::from_bytes(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            println!("model: {}", p.display());
            Classifier::with_model(m)
        }
    };
    if let Some(m) = margin {
        classifier.exempt_model_margin = m;
    }
    println!(
        "exemption margin for the model: {}",
        classifier.exempt_model_margin
    );
    let offensive = |cats: &[huyou_core::Category]| {
        cats.iter()
            .any(|c| matches!(c.code, Code::CyberViolence | Code::InciteDiscrimination))
    };
    let mut pairs = Vec::with_capacity(rows.len());
    let mut model_pairs = Vec::with_capacity(rows.len());
    let (mut anti_bias, mut anti_bias_flagged) = (0, 0);
    let start = Instant::now();
    for r in &rows {
        let cats = classifier.classify(&r.text, &Meta::default());
        let predicted = offensive(&cats);
        pairs.push((predicted, r.offensive));
        let norm = classifier.normaliser().normalise(&r.text);
        let p = classifier.model().score(&norm.text, 0).0;
        model_pairs.push((p >= classifier.model().threshold, r.offensive));
        if r.fine == Some(3) {
            anti_bias += 1;
            anti_bias_flagged += usize::from(predicted);
        }
    }
    let elapsed = start.elapsed();
    let f1 = huyou_core::model::binary_macro_f1(pairs.iter().copied());
    let model_f1 = huyou_core::model::binary_macro_f1(model_pairs.iter().copied());
    let accuracy = pairs.iter().filter(|(p, y)| p == y).count() as f64 / pairs.len() as f64;
    println!("COLD {split} split: {} rows (offensive vs safe; offensive = cyber_violence or incite_discrimination)", rows.len());
    println!(
        "huyou (normalise + lexicons + n-gram model): macro-F1 {:.2}, accuracy {:.2}",
        f1 * 100.0,
        accuracy * 100.0
    );
    println!(
        "n-gram model alone:                          macro-F1 {:.2}",
        model_f1 * 100.0
    );
    println!("published RoBERTa-base (Deng et al. 2022):   macro-F1 82.39, accuracy 82.75");
    println!("anti-bias texts (fine-grained label 3) flagged offensive: {anti_bias_flagged} of {anti_bias}");
    println!(
        "time: {:.2} s for {} rows",
        elapsed.as_secs_f64(),
        rows.len()
    );
    Ok(())
}

/// COLD dev comments cut or repeated to exactly `chars` characters.
fn texts(cold: &Path, chars: usize) -> Result<Vec<String>> {
    let rows = crate::read_cold_split(cold, "dev")?;
    Ok(rows
        .iter()
        .filter(|r| !r.text.is_empty())
        .map(|r| r.text.chars().cycle().take(chars).collect())
        .collect())
}

fn throughput(cold: &Path, items: usize) -> Result<()> {
    let rss_before = rss_kib();
    let classifier = Classifier::builtin();
    let policy = Policy::builtin();
    let rss_after = rss_kib();
    println!(
        "memory: classifier loaded, RSS +{} KiB (model weights {} KiB)",
        rss_after.saturating_sub(rss_before),
        classifier.model().weights_bytes() / 1024
    );
    let texts = texts(cold, 50)?;
    let items: Vec<Item> = (0..items)
        .map(|i| Item {
            id: i.to_string(),
            text: texts[i % texts.len()].clone(),
            medium: Medium::Text,
            meta: Meta::default(),
        })
        .collect();
    let context = Some((Audience::Minor, Service::AlgorithmicPush));
    let start = Instant::now();
    let mut flagged = 0usize;
    for item in &items {
        let r = wire::classify_item(&classifier, &policy, item, context);
        flagged += usize::from(!r.categories.is_empty());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "classify --decide (9 surfaces), one thread, 50-char texts: {} items in {:.2} s = {:.0} items/s per core ({} flagged)",
        items.len(),
        secs,
        items.len() as f64 / secs,
        flagged
    );
    Ok(())
}

struct Server {
    child: std::process::Child,
    addr: String,
    token: String,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop (the bench has no tempfile dependency outside tests).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// CPU seconds (user + system) used so far by process `pid`, from `/proc/PID/stat` (Linux
/// counts them in USER_HZ = 100 ticks a second). On a machine shared with other work, wall time
/// includes waiting for a core; CPU time is what the server itself spent.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |x| x.1);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn spawn_server(server_args: &[String]) -> Result<Server> {
    let dir = std::env::temp_dir().join(format!("huyou-bench-{}", std::process::id()));
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&dir)
        .args(server_args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("spawn huyou serve")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("huyou listening on http://")
        .context("no listening line")?
        .to_string();
    let token = std::fs::read_to_string(dir.join("token"))?
        .trim()
        .to_string();
    Ok(Server {
        child,
        addr,
        token,
        _dir: TempDir(dir),
    })
}

/// One request on a keep-alive connection; returns the status and body. The request goes out in
/// one write and the reply is read through the connection's buffer: the client shares the two
/// cores with the server, so it should spend as few system calls as it can.
pub fn request(
    conn: &mut BufReader<std::net::TcpStream>,
    path: &str,
    token: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    conn.get_mut().write_all(&out)?;
    let (mut status, mut length) = (None, None);
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            bail!("connection closed");
        }
        if line == "\r\n" {
            break;
        }
        if status.is_none() {
            status = Some(line.split(' ').nth(1).context("status")?.parse::<u16>()?);
        } else if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = Some(v.trim().parse::<usize>()?);
        }
    }
    let mut body = vec![0u8; length.context("content-length")?];
    conn.read_exact(&mut body)?;
    Ok((status.context("status")?, body))
}

fn filter_body(texts: &[String], from: usize, n: usize) -> Vec<u8> {
    let candidates: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({ "id": format!("c{}", from + i), "text": texts[(from + i) % texts.len()] }))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "surface": "recommendation", "audience": "minor", "service": "algorithmic_push", "candidates": candidates
    }))
    .expect("json")
}

/// Sends `requests` single-item filter requests on one connection; returns latencies in µs.
fn single_item_run(
    server: &Server,
    texts: &[String],
    from: usize,
    requests: usize,
) -> Result<Vec<u64>> {
    let conn = std::net::TcpStream::connect(&server.addr)?;
    conn.set_nodelay(true)?;
    let mut conn = BufReader::new(conn);
    let bodies: Vec<Vec<u8>> = (0..requests)
        .map(|i| filter_body(texts, from + i, 1))
        .collect();
    let mut latencies_us = Vec::with_capacity(requests);
    for body in &bodies {
        let start = Instant::now();
        let (status, _) = request(&mut conn, "/v1/filter", &server.token, body)?;
        latencies_us.push(start.elapsed().as_micros() as u64);
        if status != 200 {
            bail!("status {status}");
        }
    }
    Ok(latencies_us)
}

fn percentiles(mut latencies_us: Vec<u64>) -> String {
    latencies_us.sort_unstable();
    let pct = |p: f64| {
        latencies_us[((latencies_us.len() as f64 * p) as usize).min(latencies_us.len() - 1)]
    };
    format!(
        "p50 {} µs, p99 {} µs, max {} µs",
        pct(0.50),
        pct(0.99),
        latencies_us[latencies_us.len() - 1]
    )
}

/// Latencies of `fdatasync` after appending a 400-byte line (about one audit record), in µs.
fn fsync_floor(dir: &Path, syncs: usize) -> Result<Vec<u64>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let line = [b'x'; 400];
    let mut latencies_us = Vec::with_capacity(syncs);
    for _ in 0..syncs {
        file.write_all(&line)?;
        let start = Instant::now();
        file.sync_data()?;
        latencies_us.push(start.elapsed().as_micros() as u64);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(latencies_us)
}

/// Latencies of `fdatasync` after overwriting the next 400 bytes of a file whose blocks were
/// written (zeros) and synced beforehand, as the audit log does: the sync need not change the
/// file's size or extents, so it has no metadata to commit.
fn fsync_floor_preallocated(dir: &Path, syncs: usize) -> Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe-preallocated");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let line = [b'x'; 400];
    file.write_all_at(&vec![0u8; line.len() * syncs], 0)?;
    file.sync_all()?;
    let mut latencies_us = Vec::with_capacity(syncs);
    for i in 0..syncs {
        file.write_all_at(&line, (i * line.len()) as u64)?;
        let start = Instant::now();
        file.sync_data()?;
        latencies_us.push(start.elapsed().as_micros() as u64);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(latencies_us)
}

fn http(cold: &Path, requests: usize, connections: &[usize], server_args: &[String]) -> Result<()> {
    let texts = texts(cold, 50)?;
    let probe = TempDir(std::env::temp_dir().join(format!("huyou-fsync-{}", std::process::id())));
    let floor = fsync_floor(&probe.0, 2000)?;
    println!(
        "fdatasync of a 400-byte append in {} (the floor under every reply with --audit-sync always): 2000 syncs, {}",
        std::env::temp_dir().display(),
        percentiles(floor)
    );
    let floor = fsync_floor_preallocated(&probe.0, 2000)?;
    println!(
        "fdatasync of a 400-byte overwrite of preallocated, zero-filled blocks in {}: 2000 syncs, {}",
        std::env::temp_dir().display(),
        percentiles(floor)
    );
    drop(probe);
    println!("server: huyou serve {}", server_args.join(" "));
    let server = spawn_server(server_args)?;
    for &c in connections {
        let c = c.max(1);
        let per_connection = requests / c;
        let cpu_before = cpu_secs(server.child.id());
        let start = Instant::now();
        let latencies: Vec<u64> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..c)
                .map(|k| {
                    let (server, texts) = (&server, &texts);
                    scope.spawn(move || {
                        single_item_run(server, texts, k * per_connection, per_connection)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for run in runs {
                all.extend(run.join().expect("client thread")?);
            }
            Ok::<_, anyhow::Error>(all)
        })?;
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_secs(server.child.id()) - cpu_before;
        println!(
            "HTTP /v1/filter, 1 candidate per request, {c} connection(s): {} requests in {:.2} s = {:.0} requests/s, {}; server CPU {:.2} s = {:.0} µs per request",
            latencies.len(),
            secs,
            latencies.len() as f64 / secs,
            percentiles(latencies),
            cpu,
            cpu * 1e6 / (c * per_connection) as f64
        );
    }
    let mut conn = BufReader::new(std::net::TcpStream::connect(&server.addr)?);
    for (batches, size) in [(50, 1_000), (3, 100_000)] {
        let bodies: Vec<Vec<u8>> = (0..batches)
            .map(|b| filter_body(&texts, b * size, size))
            .collect();
        let cpu_before = cpu_secs(server.child.id());
        let start = Instant::now();
        for body in &bodies {
            let (status, _) = request(&mut conn, "/v1/filter", &server.token, body)?;
            if status != 200 {
                bail!("status {status}");
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_secs(server.child.id()) - cpu_before;
        let items = (batches * size) as f64;
        println!(
            "HTTP /v1/filter, {size} candidates per request ({} bytes of JSON), one connection: {} items in {:.2} s = {:.0} items/s; server CPU {:.2} s = {:.0} items per CPU-second",
            bodies[0].len(),
            batches * size,
            secs,
            items / secs,
            cpu,
            items / cpu
        );
    }
    println!(
        "server peak RSS (VmHWM) after the runs: {} KiB",
        proc_status_kib(server.child.id(), "VmHWM:")
    );
    let metrics = get_metrics(&server.addr)?;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let syncs = value("huyou_audit_sync_seconds_count");
    println!(
        "server audit log after the runs: {} records, {} fdatasyncs (mean {:.0} µs), {} records unsynced",
        value("huyou_audit_records_total"),
        syncs,
        value("huyou_audit_sync_seconds_sum") * 1e6 / syncs,
        value("huyou_audit_unsynced_records")
    );
    Ok(())
}

/// The server's `/metrics` text, on a connection of its own.
fn get_metrics(addr: &str) -> Result<String> {
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw)?;
    Ok(raw
        .split_once("\r\n\r\n")
        .map_or(raw.clone(), |x| x.1.to_string()))
}
