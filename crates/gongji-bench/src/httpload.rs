//! The HTTP load generator: starts a real `gongji serve` (this same binary) on a temporary data
//! directory with fsync on, loads the peer-shaped population through `/v1/batch`, then measures
//! single-settlement requests over many connections and batched settlements through
//! `/v1/batch`, beside the PostgreSQL peer in the same invocation.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use gongji_core::{Body, InstType, Insutype};

use crate::population::{Population, SetupOp, Triples};
use crate::{thousands, CpuSample, Machine, SplitMix64};

/// Connections the peer's throwaway cluster can take (max_connections = 64, 3 reserved).
pub(crate) const PEER_CLIENTS_MAX: usize = 48;

#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// The gongji binary to start (`serve`).
    pub exe: PathBuf,
    pub persons: u32,
    pub connections: usize,
    pub seconds: u64,
    /// Settlements per `/v1/batch` request in the batched run.
    pub batch_ops: usize,
    pub dir: PathBuf,
    pub port: u16,
    pub peer: Option<PathBuf>,
}

struct Server {
    child: Child,
    /// `127.0.0.1:port`.
    addr: String,
    token: String,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(opts: &HttpOptions) -> Server {
    let dir = opts
        .dir
        .join(format!("gongji-http-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Port 0: take a free one (bind, read the port, release it for the server).
    let port = if opts.port == 0 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("address").port()
    } else {
        opts.port
    };
    let listen = format!("127.0.0.1:{port}");
    let child = Process::new(&opts.exe)
        .args([
            "serve",
            "--data",
            &dir.to_string_lossy(),
            "--listen",
            &listen,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start gongji serve");
    let token_path = dir.join("admin.token");
    let started = Instant::now();
    while !token_path.exists() || std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = std::fs::read_to_string(&token_path)
        .expect("token")
        .trim()
        .to_owned();
    Server {
        child,
        addr: listen,
        token,
        dir,
    }
}

/// One keep-alive HTTP/1.1 connection that speaks just what this load needs: a POST with a
/// `content-length` body out, a reply with a `content-length` body back (what the server
/// sends for every JSON reply). The generator shares the 2 cores with the server it measures,
/// so it is cheap per request, as `wrk` is: one buffer reused, no URL parsing, no connection
/// pool, no header map (reqwest spent more per request than the server's parse and writer).
struct Conn {
    stream: tokio::net::TcpStream,
    /// Everything of a request's head that does not change.
    host_auth: String,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(s: &Target) -> Conn {
        let stream = tokio::net::TcpStream::connect(&s.addr)
            .await
            .expect("connect to the server");
        stream.set_nodelay(true).expect("nodelay");
        let host_auth = format!(
            "host: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n",
            s.addr, s.token
        );
        Conn {
            stream,
            host_auth,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Posts `body` to `path`; the reply's status and body (valid until the next call).
    async fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<(u16, &[u8])> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.buf.clear();
        let head = format!(
            "POST {path} HTTP/1.1\r\n{}content-length: {}\r\n\r\n",
            self.host_auth,
            body.len()
        );
        self.buf.extend_from_slice(head.as_bytes());
        self.buf.extend_from_slice(body);
        self.stream.write_all(&self.buf).await?;
        self.buf.clear();
        let closed = || std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        let (status, body_start, length) = loop {
            if self.buf.len() == self.buf.capacity() {
                self.buf.reserve(self.buf.len());
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(closed());
            }
            if let Some(head) = reply_head(&self.buf) {
                break head;
            }
        };
        while self.buf.len() < body_start + length {
            self.buf.reserve(body_start + length - self.buf.len());
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(closed());
            }
        }
        Ok((status, &self.buf[body_start..body_start + length]))
    }
}

/// A complete reply head in `buf`: (status, where the body starts, its length). Panics on a
/// reply without `content-length`: the server never sends one, and the load would misread it.
fn reply_head(buf: &[u8]) -> Option<(u16, usize, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII reply head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("a reply without content-length: {head}"));
    Some((status, end + 4, length))
}

/// Where the load goes: the server's address and the admin token.
struct Target {
    addr: String,
    token: String,
}

async fn post(conn: &mut Conn, path: &str, body: &Value) -> Value {
    let body = serde_json::to_vec(body).expect("json");
    let (_, reply) = conn.post(path, &body).await.expect("request");
    serde_json::from_slice(reply).expect("json reply")
}

/// Sends setup ops through `/v1/batch` in requests that stay under the 1 MiB body limit.
async fn batch(conn: &mut Conn, ops: Vec<Value>) {
    const BODY_BYTES_TARGET: usize = 900_000;
    let mut chunk: Vec<Value> = Vec::new();
    let mut bytes = 0;
    let mut ops = ops.into_iter().peekable();
    while let Some(op) = ops.next() {
        bytes += serde_json::to_vec(&op).expect("json").len() + 1;
        chunk.push(op);
        let full = chunk.len() == 8_000 || bytes >= BODY_BYTES_TARGET;
        if full || ops.peek().is_none() {
            let reply = post(conn, "/v1/batch", &json!({"ops": chunk})).await;
            let results = reply["output"]["results"]
                .as_array()
                .unwrap_or_else(|| panic!("{reply}"));
            if let Some(bad) = results.iter().find(|r| r["infcode"] != 0) {
                panic!("setup op refused: {bad}");
            }
            chunk = Vec::new();
            bytes = 0;
        }
    }
}

/// The peer-shaped population (as `gongji bench durable`'s), through `/v1/batch`.
async fn populate(s: &Target, persons: u32) {
    // 2,000 credit items per op: a batch body stays under the 1 MiB limit.
    let population = Population::Triples(Triples::peer(persons, 2_000));
    let mut ops = Vec::new();
    population.build(&mut Triples::rng(), |op| ops.push(setup_json(op)));
    batch(&mut Conn::open(s).await, ops).await;
}

/// A setup op as a `/v1/batch` entry, in API.md's field names.
fn setup_json(op: SetupOp) -> Value {
    let msgid = op.msgid;
    match op.body {
        Body::RegisterInstitution {
            fixmedins_code,
            fixmedins_name,
            fixmedins_type,
            admdvs,
        } => {
            assert_eq!(fixmedins_type, InstType::Medical);
            json!({"path": "/v1/institutions", "body": {"msgid": msgid,
                "fixmedins_code": fixmedins_code.as_str(), "fixmedins_name": fixmedins_name,
                "fixmedins_type": "1", "admdvs": admdvs.to_string()}})
        }
        Body::Enrol {
            psn_no,
            certno,
            psn_name,
            insutype,
            admdvs,
        } => {
            assert_eq!(insutype, Insutype::Employee);
            json!({"path": "/v1/persons", "body": {"msgid": msgid, "psn_no": psn_no.as_str(),
                "certno": certno.as_str(), "psn_name": psn_name, "insutype": "310",
                "admdvs": admdvs.to_string()}})
        }
        Body::Bind {
            giver_psn_no,
            receiver_psn_no,
            relation,
        } => json!({"path": "/v1/bindings", "body": {"msgid": msgid,
            "giver_psn_no": giver_psn_no.as_str(), "receiver_psn_no": receiver_psn_no.as_str(),
            "relation": relation.as_str()}}),
        Body::Credit { period, items } => {
            let items: Vec<Value> = items
                .iter()
                .map(|i| json!({"psn_no": i.psn_no.as_str(), "amount": i.amount.to_string()}))
                .collect();
            json!({"path": "/v1/credits", "body": {"msgid": msgid,
                "period": period.to_string(), "items": items}})
        }
        other => panic!("no HTTP form for setup op {other:?}"),
    }
}

/// Appends one settlement body as JSON text. Written with `write!` rather than built as a
/// JSON tree so that the generator, which shares the machine with the server, spends little
/// CPU per request.
fn settle_text(out: &mut String, rng: &mut SplitMix64, persons: u32, msgid: std::fmt::Arguments) {
    let part = rng.range(100, 60_000);
    let _ = write!(
        out,
        r#"{{"msgid":"{msgid}","fixmedins_code":"H11010500001","psn_no":"P{}","medfee_sumamt":"{}.{:02}","fund_pay_sumamt":"0"}}"#,
        rng.range(1, u64::from(persons)),
        part / 100,
        part % 100
    );
}

/// Sends one request body; true when the server answered 200 with no failed op inside.
async fn send(conn: &mut Conn, path: &str, body: &str) -> bool {
    match conn.post(path, body.as_bytes()).await {
        Ok((status, reply)) => status == 200 && !reply.windows(12).any(|w| w == br#""infcode":-1"#),
        Err(_) => false,
    }
}

/// `connections` tasks, each sending one request at a time; returns (settlements, latencies µs).
async fn load(
    s: Arc<Target>,
    opts: &HttpOptions,
    ops_per_request: usize,
    tag: &str,
) -> (u64, Vec<u64>, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..opts.connections {
        let (s, stop, persons, tag) = (s.clone(), stop.clone(), opts.persons, tag.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&s).await;
            let mut rng = SplitMix64::new(c as u64 + 11);
            let (mut n, mut latencies) = (0u64, Vec::new());
            let mut body = String::new();
            while !stop.load(Ordering::Relaxed) {
                // Written into one reused buffer: the generator shares the server's cores.
                body.clear();
                let path = if ops_per_request == 1 {
                    settle_text(&mut body, &mut rng, persons, format_args!("{tag}-{c}-{n}"));
                    "/v1/settlements"
                } else {
                    body.push_str(r#"{"ops":["#);
                    for k in 0..ops_per_request {
                        if k > 0 {
                            body.push(',');
                        }
                        body.push_str(r#"{"path":"/v1/settlements","body":"#);
                        let msgid = format_args!("{tag}-{c}-{n}-{k}");
                        settle_text(&mut body, &mut rng, persons, msgid);
                        body.push('}');
                    }
                    body.push_str("]}");
                    "/v1/batch"
                };
                let t = Instant::now();
                assert!(
                    send(&mut conn, path, &body).await,
                    "a settlement request failed"
                );
                latencies.push(t.elapsed().as_micros() as u64);
                n += 1;
            }
            (n * ops_per_request as u64, latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(opts.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut total, mut all) = (0, Vec::new());
    for task in tasks {
        let (n, latencies) = task.await.expect("task");
        total += n;
        all.extend(latencies);
    }
    all.sort_unstable();
    (total, all, started.elapsed().as_secs_f64())
}

pub fn http_bench(opts: &HttpOptions) -> String {
    let server = start(opts);
    let s = Arc::new(Target {
        addr: server.addr.clone(),
        token: server.token.clone(),
    });
    // One thread drives every connection: the server has the other core (and more of this
    // one) to itself.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server_pid = server.child.id().to_string();
    let mut out = String::new();
    let _ = writeln!(out, "machine: {}", Machine::detect());
    runtime.block_on(async {
        let setup = Instant::now();
        populate(&s, opts.persons).await;
        let _ = writeln!(out, "population: {} persons loaded through /v1/batch in {:.1} s",
            thousands(u64::from(opts.persons)), setup.elapsed().as_secs_f64());
        for (label, ops) in [("single", 1), ("batched", opts.batch_ops)] {
            let (server_before, own_before) = (CpuSample::of(&server_pid), CpuSample::now());
            let (n, lat, secs) = load(s.clone(), opts, ops, label).await;
            let (server_after, own_after) = (CpuSample::of(&server_pid), CpuSample::now());
            let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
            let _ = writeln!(
                out,
                "{label:>8}: {} connections, {} settlements per request: {:.0} settlements/s, request p50 {:.2} ms, p99 {:.2} ms",
                opts.connections, ops, n as f64 / secs, pct(0.5), pct(0.99)
            );
            // CPU per settlement: what a shared machine moves least (the rate moves with
            // whatever else runs on the cores).
            let us = |cpu_s: f64| cpu_s * 1e6 / n.max(1) as f64;
            let server = server_after.since(&server_before);
            let thread = |name: &str| server.iter().filter(|(t, _)| t == name).map(|(_, s)| s).sum::<f64>();
            let _ = writeln!(
                out,
                "{:>8}  CPU per settlement: server {:.1} µs (HTTP workers {:.1}, writer {:.1}, snapshot {:.1}), load generator {:.1} µs",
                "",
                us(server_after.total_since(&server_before)),
                us(thread("tokio-rt-worker")),
                us(thread("gongji-writer")),
                us(thread("gongji-snapshot")),
                us(own_after.total_since(&own_before)),
            );
        }
    });
    drop(server);
    if let Some(script) = &opts.peer {
        // The peer's cluster allows 64 connections, a few of them reserved.
        let clients = opts.connections.min(PEER_CLIENTS_MAX);
        match crate::durable::peer(script, opts.persons, clients, opts.seconds) {
            Some((tps, _)) => {
                let _ = writeln!(out, "    peer: PostgreSQL settle() under pgbench, {clients} clients: {tps:.0} settlements/s");
            }
            None => {
                let _ = writeln!(
                    out,
                    "    peer: did not run (is the postgresql package installed?)"
                );
            }
        }
    }
    out
}
