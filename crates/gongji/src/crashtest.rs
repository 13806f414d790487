//! `gongji crash-test`: `kill -9` a real `gongji serve` under concurrent HTTP load, restart it
//! on the same data directory, and check the restarted server against the clients' log.
//!
//! Each cycle: several client threads send settlements, cancellations, wallet transfers and
//! their acceptances/declines, and log every request with its exact reply; at a seeded random
//! moment (20–300 ms into the load) the server gets SIGKILL. After the restart the checker
//! resends every request that got no reply (same msgid, same body: it may or may not have
//! applied before the kill), replays every acknowledged request and demands the byte-identical
//! reply, and compares every person's balances with a model built from the acknowledged
//! replies alone (credits − draws + returns), every settlement and transfer with its
//! acknowledged form and status, and `GET /v1/audit/verify`. Balances must not move across the
//! replays. Every write carries an admin `inf_time` (10:00 CST on day `cycle` after the
//! start), so the run does not depend on the machine's clock and pending transfers of one cycle
//! are returned at the start of the next.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use gongji_core::time::{format_cst, parse_cst};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct CrashTestArgs {
    /// Kill/restart cycles.
    #[arg(long, default_value_t = 20)]
    pub cycles: u32,
    /// Seed of the load and of the kill moments (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Concurrent client threads.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Parent of the temporary data directory (kept when the test fails).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run the server with `--store` (e.g. a `postgres://…` URL of an empty database).
    #[arg(long)]
    pub store: Option<String>,
}

const INSTITUTIONS: [&str; 3] = ["H44010600001", "H44030000002", "P44010600003"];
const FAMILIES: usize = 10;
const MEMBERS: usize = 5;
/// Setup time; cycle `c` runs at 10:00 CST `c` days later.
const T0: &str = "2030-06-01 09:00:00";

pub fn run(args: CrashTestArgs) -> Result<()> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!(
        "crash-test: {} cycles, {} clients, seed {seed}, store {}",
        args.cycles,
        args.clients,
        args.store
            .as_deref()
            .map_or("files".into(), gongji_pg::redact)
    );
    if let Some(url) = crate::store::postgres_url(args.store.as_deref())? {
        ensure_empty_store(url)?;
    }
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = parent.join(format!("gongji-crash-{}-{seed}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    match Run::new(&args, seed, &dir).and_then(|mut run| run.all_cycles()) {
        Ok(summary) => {
            println!(
                "crash-test OK in {:.1} s: {summary}",
                started.elapsed().as_secs_f64()
            );
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        }
        Err(e) => {
            eprintln!(
                "crash-test FAILED with seed {seed} (rerun: gongji crash-test --cycles {} \
                 --seed {seed}{}); data directory kept at {}",
                args.cycles,
                args.store.as_deref().map_or(String::new(), |s| format!(
                    " --store {}",
                    gongji_pg::redact(s)
                )),
                dir.display()
            );
            Err(e.context(format!("crash-test seed {seed}")))
        }
    }
}

/// The checker's model starts from nothing: a store holding a journal already is refused.
fn ensure_empty_store(url: &str) -> Result<()> {
    let mut client = gongji_pg::connect_store(url)?;
    let exists: bool = client
        .query_one("SELECT to_regclass('gongji_journal') IS NOT NULL", &[])?
        .get(0);
    if exists && gongji_pg::journal_head(&mut client)?.is_some() {
        bail!(
            "{} holds a journal already: crash-test needs an empty database",
            gongji_pg::redact(url)
        );
    }
    Ok(())
}

/// splitmix64: a seeded stream for the load and the kill moments.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next() as usize % items.len()]
    }
}

fn fen_text(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// An output amount (`"12.30"`) in fen; a negative or malformed one is an error.
fn fen_of(v: &Value) -> Result<i64> {
    let text = v
        .as_str()
        .ok_or_else(|| anyhow!("amount {v} is not a string"))?;
    let fen = gongji_core::money::parse_amount(text)
        .map_err(|e| anyhow!("amount {text:?} does not parse: {e:?}"))?;
    Ok(fen.0 as i64)
}

fn str_of<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v[key]
        .as_str()
        .ok_or_else(|| anyhow!("{key} missing in {v}"))
}

fn id_of(v: &Value, key: &str) -> Result<u64> {
    str_of(v, key)?
        .parse()
        .with_context(|| format!("{key} in {v}"))
}

// ---------------------------------------------------------------------------------------------
// A minimal blocking HTTP/1.1 client (one connection per request): the checker needs exact
// reply bytes and must see a reply cut by the kill as no reply at all.

#[derive(Clone, Debug)]
struct Http {
    addr: SocketAddr,
    token: String,
}

impl Http {
    fn call(&self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n\
             {body}",
            self.addr,
            self.token,
            body.len()
        );
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_response(&raw)
    }

    fn post(&self, path: &str, body: &str) -> std::io::Result<(u16, Vec<u8>)> {
        self.call("POST", path, body)
    }

    /// A GET that must answer 200 with the JSON envelope; returns `output`.
    fn get(&self, path: &str) -> Result<Value> {
        let (status, bytes) = self
            .call("GET", path, "")
            .with_context(|| format!("GET {path}"))?;
        let value: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("GET {path}: {}", String::from_utf8_lossy(&bytes)))?;
        ensure!(status == 200, "GET {path}: {status} {value}");
        Ok(value["output"].clone())
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Status and body of a complete response; anything incomplete is an error.
fn parse_response(raw: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no complete response head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| invalid("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| invalid("content-length"))?,
            );
        } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = &raw[end + 4..];
    if chunked {
        return Ok((status, dechunk(body)?));
    }
    match length {
        Some(n) if n != body.len() => Err(invalid("body shorter than content-length")),
        _ => Ok((status, body.to_vec())),
    }
}

fn dechunk(mut rest: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("chunk size"))?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| invalid("chunk"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err(invalid("chunk cut short"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------------
// The server process.

#[derive(Debug)]
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Collects a pipe's lines into `log` and sends the address of the "listening" line.
fn spawn_log_reader(
    pipe: impl Read + Send + 'static,
    log: &Arc<Mutex<Vec<String>>>,
    tx: &mpsc::Sender<SocketAddr>,
) -> std::thread::JoinHandle<()> {
    let (log, tx) = (log.clone(), tx.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let line = strip_ansi(&line);
            if line.contains("listening") {
                let addr = line
                    .split_once("address=")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
            log.lock().expect("log lock").push(line);
        }
    })
}

/// Removes ANSI colour sequences from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Server {
    /// Starts `gongji serve` on `data`, listening on a free loopback port the server picks,
    /// and waits until it says where it listens and answers `/healthz`.
    fn start(exe: &Path, data: &Path, config: &Path, store: Option<&str>) -> Result<Server> {
        let mut command = Command::new(exe);
        if let Some(store) = store {
            command.arg("serve").arg("--store").arg(store);
        } else {
            command.arg("serve");
        }
        let mut child = command
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        // The log goes to stdout or stderr depending on the version: read both.
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let readers = vec![
            spawn_log_reader(child.stdout.take().expect("piped stdout"), &log, &tx),
            spawn_log_reader(child.stderr.take().expect("piped stderr"), &log, &tx),
        ];
        drop(tx);
        let mut server = Server {
            child,
            addr: "127.0.0.1:1".parse().expect("address"),
            log,
            readers,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => server.addr = addr,
            Err(_) => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                bail!("the server did not start listening:\n{}", server.log_text());
            }
        }
        // Bounded wait for the first answer.
        let probe = Http {
            addr: server.addr,
            token: String::new(),
        };
        for _ in 0..500 {
            if matches!(probe.call("GET", "/healthz", ""), Ok((200, _))) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("/healthz never answered:\n{}", server.log_text())
    }

    fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) -> Result<()> {
        self.child.kill().context("kill -9")?;
        self.child.wait().context("wait")?;
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// The load: requests, their log, and what a client may pick from.

#[derive(Clone, Debug)]
struct Request {
    path: String,
    body: String,
}

#[derive(Clone, Debug)]
enum Fate {
    /// A complete reply.
    Replied { status: u16, bytes: Vec<u8> },
    /// Sent (or about to be) when the server died: no reply.
    NoReply,
}

#[derive(Debug)]
struct Person {
    psn_no: String,
    employee: bool,
}

/// What the client threads share: the population, and the acknowledged settlements and
/// transfers of this cycle they may cancel, accept or decline.
#[derive(Debug)]
struct Shared {
    persons: Vec<Person>,
    /// Bound pairs in both directions (wallet transfers need a binding either way).
    pairs: Vec<(usize, usize)>,
    setl_ids: Mutex<Vec<u64>>,
    transfer_ids: Mutex<Vec<u64>>,
    stop: AtomicBool,
}

fn next_request(rng: &mut Rng, shared: &Shared, msgid: &str, time: &str) -> Request {
    let roll = rng.range(0, 99);
    let pick_id = |ids: &Mutex<Vec<u64>>, rng: &mut Rng| {
        let ids = ids.lock().expect("ids lock");
        (!ids.is_empty()).then(|| *rng.pick(&ids))
    };
    if (55..70).contains(&roll) {
        if let Some(id) = pick_id(&shared.setl_ids, rng) {
            return Request {
                path: format!("/v1/settlements/{id}/cancel"),
                body: format!(r#"{{"msgid":"{msgid}","inf_time":"{time}"}}"#),
            };
        }
    }
    if (70..90).contains(&roll) {
        let &(from, to) = rng.pick(&shared.pairs);
        let source = if shared.persons[from].employee && rng.range(0, 9) < 7 {
            "acct"
        } else {
            "wallet"
        };
        return Request {
            path: "/v1/wallet/transfers".into(),
            body: format!(
                r#"{{"msgid":"{msgid}","from_psn_no":"{}","to_psn_no":"{}","amount":"{}","source":"{source}","inf_time":"{time}"}}"#,
                shared.persons[from].psn_no,
                shared.persons[to].psn_no,
                fen_text(rng.range(100, 5_000) as i64)
            ),
        };
    }
    if roll >= 90 {
        if let Some(id) = pick_id(&shared.transfer_ids, rng) {
            let verb = if rng.range(0, 3) == 0 {
                "decline"
            } else {
                "accept"
            };
            return Request {
                path: format!("/v1/wallet/transfers/{id}/{verb}"),
                body: format!(r#"{{"msgid":"{msgid}","inf_time":"{time}"}}"#),
            };
        }
    }
    let medfee = rng.range(0, 15_000) as i64;
    let fund = medfee * rng.range(0, 80) as i64 / 100;
    let flag = if rng.range(0, 9) == 0 { "0" } else { "1" };
    Request {
        path: "/v1/settlements".into(),
        body: format!(
            r#"{{"msgid":"{msgid}","fixmedins_code":"{}","psn_no":"{}","medfee_sumamt":"{}","fund_pay_sumamt":"{}","acct_used_flag":"{flag}","inf_time":"{time}"}}"#,
            rng.pick(&INSTITUTIONS),
            rng.pick(&shared.persons).psn_no,
            fen_text(medfee),
            fen_text(fund)
        ),
    }
}

/// One client thread: sends until a request gets no reply (the server died) or `stop`.
fn client(
    http: Http,
    shared: Arc<Shared>,
    mut rng: Rng,
    prefix: String,
    time: String,
) -> Vec<(Request, Fate)> {
    let mut log = Vec::new();
    for n in 0u64.. {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let request = next_request(&mut rng, &shared, &format!("{prefix}-{n}"), &time);
        match http.post(&request.path, &request.body) {
            Ok((status, bytes)) => {
                if status == 200 {
                    remember_ids(&shared, &request.path, &bytes);
                }
                log.push((request, Fate::Replied { status, bytes }));
            }
            Err(_) => {
                log.push((request, Fate::NoReply));
                break;
            }
        }
    }
    log
}

fn remember_ids(shared: &Shared, path: &str, bytes: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let output = &value["output"];
    if path == "/v1/settlements" {
        if let Ok(id) = id_of(output, "setl_id") {
            shared.setl_ids.lock().expect("ids lock").push(id);
        }
    } else if path == "/v1/wallet/transfers" {
        if let Ok(id) = id_of(output, "transfer_id") {
            shared.transfer_ids.lock().expect("ids lock").push(id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The model: balances implied by the acknowledged replies.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransferStatus {
    Pending,
    Accepted,
    Declined,
    Returned,
}

impl TransferStatus {
    fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "pending",
            TransferStatus::Accepted => "accepted",
            TransferStatus::Declined => "declined",
            TransferStatus::Returned => "returned",
        }
    }
}

#[derive(Debug)]
struct Settlement {
    output: Value,
    psn_no: String,
    acct_pay: i64,
    wallet_pay: i64,
    details: Vec<(String, i64)>,
    cancelled: bool,
}

#[derive(Debug)]
struct Transfer {
    from: String,
    to: String,
    amount: i64,
    from_wallet: bool,
    status: TransferStatus,
}

#[derive(Debug, Default)]
struct Model {
    /// psn_no → (account, wallet) in fen.
    balances: BTreeMap<String, (i64, i64)>,
    settlements: BTreeMap<u64, Settlement>,
    transfers: BTreeMap<u64, Transfer>,
}

impl Model {
    fn acct(&mut self, psn_no: &str, delta: i64) -> Result<()> {
        let entry = self
            .balances
            .get_mut(psn_no)
            .ok_or_else(|| anyhow!("unknown person {psn_no}"))?;
        // The model sums effects in log order, not in the server's order: only the totals
        // after a cycle are comparable (and the server's are never negative).
        entry.0 += delta;
        Ok(())
    }

    fn wallet(&mut self, psn_no: &str, delta: i64) -> Result<()> {
        let entry = self
            .balances
            .get_mut(psn_no)
            .ok_or_else(|| anyhow!("unknown person {psn_no}"))?;
        entry.1 += delta;
        Ok(())
    }

    /// First pass: writes that create (settlements, transfers).
    fn apply_create(&mut self, path: &str, output: &Value) -> Result<()> {
        if path == "/v1/settlements" {
            let id = id_of(output, "setl_id")?;
            let psn_no = str_of(output, "psn_no")?.to_owned();
            let acct_pay = fen_of(&output["acct_pay"])?;
            let wallet_pay = fen_of(&output["wallet_pay"])?;
            let mulaid = fen_of(&output["acct_mulaid_pay"])?;
            let cash = fen_of(&output["psn_cash_pay"])?;
            let part = fen_of(&output["psn_part_amt"])?;
            ensure!(
                acct_pay + wallet_pay + mulaid + cash == part,
                "settlement {id} parts do not add up: {output}"
            );
            let mut details = Vec::new();
            for d in output["mulaid_details"]
                .as_array()
                .ok_or_else(|| anyhow!("mulaid_details in {output}"))?
            {
                details.push((str_of(d, "giver_psn_no")?.to_owned(), fen_of(&d["amount"])?));
            }
            ensure!(
                details.iter().map(|d| d.1).sum::<i64>() == mulaid,
                "settlement {id} details do not add up"
            );
            self.acct(&psn_no, -acct_pay)?;
            self.wallet(&psn_no, -wallet_pay)?;
            for (giver, amount) in &details {
                self.acct(giver, -amount)?;
            }
            let previous = self.settlements.insert(
                id,
                Settlement {
                    output: output.clone(),
                    psn_no,
                    acct_pay,
                    wallet_pay,
                    details,
                    cancelled: false,
                },
            );
            ensure!(previous.is_none(), "settlement {id} acknowledged twice");
        } else if path == "/v1/wallet/transfers" {
            let id = id_of(output, "transfer_id")?;
            let transfer = Transfer {
                from: str_of(output, "from_psn_no")?.to_owned(),
                to: str_of(output, "to_psn_no")?.to_owned(),
                amount: fen_of(&output["amount"])?,
                from_wallet: str_of(output, "source")? == "wallet",
                status: TransferStatus::Pending,
            };
            if transfer.from_wallet {
                self.wallet(&transfer.from, -transfer.amount)?;
            } else {
                self.acct(&transfer.from, -transfer.amount)?;
            }
            let previous = self.transfers.insert(id, transfer);
            ensure!(previous.is_none(), "transfer {id} acknowledged twice");
        }
        Ok(())
    }

    /// Second pass: writes on what the first pass created.
    fn apply_change(&mut self, path: &str, output: &Value) -> Result<()> {
        if path.ends_with("/cancel") {
            let id = id_of(output, "setl_id")?;
            let setl = self
                .settlements
                .get_mut(&id)
                .ok_or_else(|| anyhow!("cancel of unknown settlement {id}"))?;
            ensure!(!setl.cancelled, "settlement {id} cancelled twice");
            for key in ["acct_pay", "wallet_pay", "acct_mulaid_pay", "psn_cash_pay"] {
                ensure!(
                    output[key] == setl.output[key],
                    "cancel of {id} returns {key} {} but the settlement paid {}",
                    output[key],
                    setl.output[key]
                );
            }
            setl.cancelled = true;
            let (psn_no, acct, wallet) = (setl.psn_no.clone(), setl.acct_pay, setl.wallet_pay);
            let details = setl.details.clone();
            self.acct(&psn_no, acct)?;
            self.wallet(&psn_no, wallet)?;
            for (giver, amount) in details {
                self.acct(&giver, amount)?;
            }
        } else if path.ends_with("/accept") || path.ends_with("/decline") {
            let id = id_of(output, "transfer_id")?;
            let transfer = self
                .transfers
                .get_mut(&id)
                .ok_or_else(|| anyhow!("answer to unknown transfer {id}"))?;
            ensure!(
                transfer.status == TransferStatus::Pending,
                "transfer {id} answered twice"
            );
            let accept = path.ends_with("/accept");
            transfer.status = if accept {
                TransferStatus::Accepted
            } else {
                TransferStatus::Declined
            };
            ensure!(
                str_of(output, "status")? == transfer.status.as_str(),
                "transfer {id}: {output}"
            );
            let (from, to, amount, from_wallet) = (
                transfer.from.clone(),
                transfer.to.clone(),
                transfer.amount,
                transfer.from_wallet,
            );
            if accept {
                self.wallet(&to, amount)?;
            } else if from_wallet {
                self.wallet(&from, amount)?;
            } else {
                self.acct(&from, amount)?;
            }
        }
        Ok(())
    }

    /// A new day: every pending transfer goes back to its sender's source.
    fn return_pending(&mut self) -> Result<()> {
        let pending: Vec<(String, i64, bool)> = self
            .transfers
            .values_mut()
            .filter(|t| t.status == TransferStatus::Pending)
            .map(|t| {
                t.status = TransferStatus::Returned;
                (t.from.clone(), t.amount, t.from_wallet)
            })
            .collect();
        for (from, amount, from_wallet) in pending {
            if from_wallet {
                self.wallet(&from, amount)?;
            } else {
                self.acct(&from, amount)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

#[derive(Debug, Default)]
struct Totals {
    acked: usize,
    rejected: usize,
    no_reply: usize,
    no_reply_applied_before_kill: usize,
    replays: usize,
}

#[derive(Debug)]
struct Run {
    exe: PathBuf,
    data: PathBuf,
    config: PathBuf,
    store: Option<String>,
    seed: u64,
    cycles: u32,
    clients: usize,
    token: String,
    server: Option<Server>,
    shared: Arc<Shared>,
    model: Model,
    /// Every acknowledged write so far: request and exact reply bytes.
    acked: Vec<(Request, Vec<u8>)>,
    totals: Totals,
}

fn time_of_cycle(cycle: u32) -> String {
    let t0 = parse_cst(T0).expect("T0 parses");
    format_cst(t0 + i64::from(cycle) * 86_400 + 3_600)
}

impl Run {
    fn new(args: &CrashTestArgs, seed: u64, dir: &Path) -> Result<Run> {
        let exe = std::env::current_exe().context("own executable")?;
        let data = dir.join("data");
        let config = dir.join("crash-test.toml");
        // Snapshots every few hundred ops, so that kills also land during snapshot writes.
        std::fs::write(&config, "snapshot_interval_ops = 300\n")?;
        let mut persons = Vec::new();
        let mut pairs = Vec::new();
        for f in 0..FAMILIES {
            for m in 0..MEMBERS {
                persons.push(Person {
                    psn_no: format!("C{f:02}{m}"),
                    employee: m != 3,
                });
            }
            let p = |m: usize| f * MEMBERS + m;
            for (g, r) in BINDINGS {
                pairs.push((p(g), p(r)));
                pairs.push((p(r), p(g)));
            }
        }
        Ok(Run {
            exe,
            data,
            config,
            store: args.store.clone(),
            seed,
            cycles: args.cycles,
            clients: args.clients.max(1),
            token: String::new(),
            server: None,
            shared: Arc::new(Shared {
                persons,
                pairs,
                setl_ids: Mutex::new(Vec::new()),
                transfer_ids: Mutex::new(Vec::new()),
                stop: AtomicBool::new(false),
            }),
            model: Model::default(),
            acked: Vec::new(),
            totals: Totals::default(),
        })
    }

    fn http(&self) -> Http {
        Http {
            addr: self.server.as_ref().expect("server running").addr,
            token: self.token.clone(),
        }
    }

    fn start(&mut self) -> Result<()> {
        self.server = Some(Server::start(
            &self.exe,
            &self.data,
            &self.config,
            self.store.as_deref(),
        )?);
        Ok(())
    }

    /// The server's log, for a failure report.
    fn server_log(&self) -> String {
        self.server
            .as_ref()
            .map_or_else(String::new, Server::log_text)
    }

    fn all_cycles(&mut self) -> Result<String> {
        self.start()?;
        let token = std::fs::read_to_string(self.data.join("admin.token"))
            .context("admin.token after the first start")?;
        self.token = token.trim().to_owned();
        self.setup()?;
        for cycle in 1..=self.cycles {
            self.cycle(cycle)
                .with_context(|| format!("cycle {cycle}"))
                .map_err(|e| e.context(format!("server log:\n{}", self.server_log())))?;
        }
        // Everything acknowledged in any cycle still replays byte for byte.
        let http = self.http();
        self.replay_acked(&http, 0)?;
        self.check_state(&http, None, None)?;
        let t = &self.totals;
        Ok(format!(
            "{} acknowledged writes, {} rejected, {} without reply at a kill ({} of them had \
             applied), {} replays byte-identical, {} settlements, {} transfers checked",
            t.acked,
            t.rejected,
            t.no_reply,
            t.no_reply_applied_before_kill,
            t.replays,
            self.model.settlements.len(),
            self.model.transfers.len()
        ))
    }

    /// Institutions, 50 persons in 10 families with bindings and open wallets, credits: one
    /// `/v1/batch`.
    fn setup(&mut self) -> Result<()> {
        let time = T0;
        let mut rng = Rng(self.seed ^ 0x5e7u64);
        let mut ops = Vec::new();
        let mut op = |path: &str, body: String| {
            let n = ops.len();
            let sep = if body.is_empty() { "" } else { "," };
            ops.push(format!(
                r#"{{"path":"{path}","body":{{"msgid":"setup-{n}","inf_time":"{time}"{sep}{body}}}}}"#
            ));
        };
        for (i, code) in INSTITUTIONS.iter().enumerate() {
            op(
                "/v1/institutions",
                format!(
                    r#""fixmedins_code":"{code}","fixmedins_name":"机构{i}","fixmedins_type":"{}","admdvs":"440100""#,
                    if code.starts_with('P') { 2 } else { 1 }
                ),
            );
        }
        let mut credit_items = Vec::new();
        for (i, person) in self.shared.persons.iter().enumerate() {
            let (f, m) = (i / MEMBERS, i % MEMBERS);
            let certno = gongji_core::certno::certno_with_check(&format!("44010619800101{i:03}"))
                .expect("17 digits");
            let admdvs = match (f, m) {
                (9, 4) => "110100",
                (_, 2) => "440300",
                _ => "440100",
            };
            op(
                "/v1/persons",
                format!(
                    r#""psn_no":"{}","certno":"{certno}","psn_name":"家{f}成员{m}","insutype":"{}","admdvs":"{admdvs}""#,
                    person.psn_no,
                    if person.employee { "310" } else { "390" }
                ),
            );
            let amount = rng.range(20_000, 100_000) as i64;
            if person.employee {
                credit_items.push(format!(
                    r#"{{"psn_no":"{}","amount":"{}"}}"#,
                    person.psn_no,
                    fen_text(amount)
                ));
                self.model
                    .balances
                    .insert(person.psn_no.clone(), (amount, 0));
            } else {
                self.model.balances.insert(person.psn_no.clone(), (0, 0));
            }
        }
        for f in 0..FAMILIES {
            let psn = |m: usize| &self.shared.persons[f * MEMBERS + m].psn_no;
            for (g, r) in BINDINGS {
                op(
                    "/v1/bindings",
                    format!(
                        r#""giver_psn_no":"{}","receiver_psn_no":"{}","relation":"{}""#,
                        psn(g),
                        psn(r),
                        relation(g, r)
                    ),
                );
            }
        }
        for person in &self.shared.persons {
            op(
                &format!("/v1/persons/{}/wallet", person.psn_no),
                String::new(),
            );
        }
        op(
            "/v1/credits",
            format!(r#""period":"2030-06","items":[{}]"#, credit_items.join(",")),
        );
        let body = format!(r#"{{"ops":[{}]}}"#, ops.join(","));
        let http = self.http();
        let (status, bytes) = http.post("/v1/batch", &body).context("setup batch")?;
        let value: Value = serde_json::from_slice(&bytes)?;
        ensure!(status == 200, "setup batch: {status} {value}");
        for (i, result) in value["output"]["results"]
            .as_array()
            .ok_or_else(|| anyhow!("setup results: {value}"))?
            .iter()
            .enumerate()
        {
            ensure!(result["status"] == 200, "setup op {i}: {result}");
        }
        Ok(())
    }

    /// One cycle: a new day, load, kill -9 at a random moment, restart, check.
    fn cycle(&mut self, cycle: u32) -> Result<()> {
        let time = time_of_cycle(cycle);
        let http = self.http();
        // A write at the new day's time returns the pending transfers of the day before: the
        // cycle's crediting batch, which tops the accounts up.
        let mut rng = Rng(self.seed ^ u64::from(cycle).wrapping_mul(0xA076_1D64_78BD_642F));
        let period = format!("{}-{:02}", 2031 + (cycle - 1) / 12, (cycle - 1) % 12 + 1);
        let mut items = Vec::new();
        let mut credited = Vec::new();
        for person in self.shared.persons.iter().filter(|p| p.employee) {
            let amount = rng.range(20_000, 100_000) as i64;
            items.push(format!(
                r#"{{"psn_no":"{}","amount":"{}"}}"#,
                person.psn_no,
                fen_text(amount)
            ));
            credited.push((person.psn_no.clone(), amount));
        }
        let (status, bytes) = http.post(
            "/v1/credits",
            &format!(
                r#"{{"msgid":"credit-{cycle}","period":"{period}","items":[{}],"inf_time":"{time}"}}"#,
                items.join(",")
            ),
        )?;
        ensure!(status == 200, "credit: {}", String::from_utf8_lossy(&bytes));
        for (psn_no, amount) in credited {
            self.model.acct(&psn_no, amount)?;
        }
        self.model.return_pending()?;
        self.shared.setl_ids.lock().expect("ids lock").clear();
        self.shared.transfer_ids.lock().expect("ids lock").clear();
        self.shared.stop.store(false, Ordering::Release);

        let kill_after = Duration::from_millis(rng.range(20, 300));
        let threads: Vec<_> = (0..self.clients)
            .map(|t| {
                let (http, shared) = (http.clone(), self.shared.clone());
                let rng = Rng(rng.next());
                let (prefix, time) = (format!("c{cycle}-t{t}"), time.clone());
                std::thread::spawn(move || client(http, shared, rng, prefix, time))
            })
            .collect();
        // The crash moment is the point of the test, not a synchronisation.
        std::thread::sleep(kill_after);
        self.server.as_mut().expect("server").kill()?;
        self.shared.stop.store(true, Ordering::Release);
        let mut log = Vec::new();
        for thread in threads {
            log.extend(thread.join().map_err(|_| anyhow!("client panicked"))?);
        }

        self.start()?;
        let http = self.http();
        let ops_before = self.audit(&http)?;
        let first = self.acked.len();
        let settlements_before = self.model.settlements.keys().next_back().copied();
        let transfers_before = self.model.transfers.keys().next_back().copied();
        let mut resend = Vec::new();
        for (request, fate) in log {
            match fate {
                Fate::Replied { status: 200, bytes } => self.acked.push((request, bytes)),
                Fate::Replied {
                    status: 409 | 422, ..
                } => self.totals.rejected += 1,
                Fate::Replied { status: 503, .. } | Fate::NoReply => resend.push(request),
                Fate::Replied { status, bytes } => bail!(
                    "unexpected {status} for {} {}: {}",
                    request.path,
                    request.body,
                    String::from_utf8_lossy(&bytes)
                ),
            }
        }
        // Writes without a reply: resent with the same msgid and body, they apply now or
        // replay their first reply; a business refusal is fine too.
        let mut resent_ok = 0;
        for request in resend {
            self.totals.no_reply += 1;
            let (status, bytes) = http.post(&request.path, &request.body)?;
            match status {
                200 => {
                    resent_ok += 1;
                    self.acked.push((request, bytes));
                }
                409 | 422 => self.totals.rejected += 1,
                _ => bail!(
                    "resent {} {}: {status} {}",
                    request.path,
                    request.body,
                    String::from_utf8_lossy(&bytes)
                ),
            }
        }
        let applied_now = (self.audit(&http)? - ops_before) as usize;
        ensure!(
            applied_now <= resent_ok,
            "resends applied more ops than they acknowledged"
        );
        self.totals.no_reply_applied_before_kill += resent_ok - applied_now;
        self.totals.acked += self.acked.len() - first;

        // The model from this cycle's acknowledged replies: creations first, then cancels and
        // answers (which only name what an acknowledged creation returned).
        let acked: Vec<(String, Value)> = self.acked[first..]
            .iter()
            .map(|(request, bytes)| {
                serde_json::from_slice::<Value>(bytes)
                    .map(|v| (request.path.clone(), v["output"].clone()))
                    .with_context(|| String::from_utf8_lossy(bytes).into_owned())
            })
            .collect::<Result<_>>()?;
        for (path, output) in &acked {
            self.model.apply_create(path, output)?;
        }
        for (path, output) in &acked {
            self.model.apply_change(path, output)?;
        }

        let before = self.balances(&http)?;
        self.replay_acked(&http, first)?;
        ensure!(
            self.balances(&http)? == before,
            "replays of acknowledged writes changed balances"
        );
        self.check_state(&http, settlements_before, transfers_before)
    }

    /// Op count from `/v1/audit/verify`, which must be ok.
    fn audit(&self, http: &Http) -> Result<u64> {
        let audit = http.get("/v1/audit/verify")?;
        ensure!(audit["ok"] == true, "audit: {audit}");
        audit["op_count"]
            .as_u64()
            .or_else(|| audit["op_count"].as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| anyhow!("audit op_count: {audit}"))
    }

    fn balances(&self, http: &Http) -> Result<BTreeMap<String, (i64, i64)>> {
        let mut out = BTreeMap::new();
        for person in &self.shared.persons {
            let view = http.get(&format!("/v1/persons/{}", person.psn_no))?;
            out.insert(
                person.psn_no.clone(),
                (fen_of(&view["acct_balc"])?, fen_of(&view["wallet_balc"])?),
            );
        }
        Ok(out)
    }

    /// Replays every acknowledged write from index `from` on: the same bytes, byte for byte.
    fn replay_acked(&mut self, http: &Http, from: usize) -> Result<()> {
        for (request, bytes) in &self.acked[from..] {
            let (status, again) = http.post(&request.path, &request.body)?;
            ensure!(
                status == 200 && &again == bytes,
                "replay of {} {} answered {status}:\n{}\nbut was acknowledged with:\n{}",
                request.path,
                request.body,
                String::from_utf8_lossy(&again),
                String::from_utf8_lossy(bytes)
            );
            self.totals.replays += 1;
        }
        Ok(())
    }

    /// Balances, settlements and transfers on the server equal the model; the audit is ok.
    /// Settlements and transfers up to the given ids were checked in earlier cycles and are
    /// not changed by later ones (clients cancel and answer only this cycle's).
    fn check_state(
        &self,
        http: &Http,
        settlements_after: Option<u64>,
        transfers_after: Option<u64>,
    ) -> Result<()> {
        let balances = self.balances(http)?;
        for (psn_no, want) in &self.model.balances {
            let got = balances[psn_no];
            ensure!(
                got == *want,
                "{psn_no}: (acct, wallet) is {got:?} fen on the server, {want:?} by the \
                 acknowledged replies"
            );
        }
        let first_setl = settlements_after.map_or(0, |id| id + 1);
        for (id, setl) in self.model.settlements.range(first_setl..) {
            let got = http.get(&format!("/v1/settlements/{id}"))?;
            let want_status = if setl.cancelled {
                "cancelled"
            } else {
                "settled"
            };
            ensure!(got["status"] == want_status, "settlement {id}: {got}");
            for (key, value) in setl.output.as_object().expect("output object") {
                ensure!(
                    &got[key] == value,
                    "settlement {id}: {key} is {} but was acknowledged as {value}",
                    got[key]
                );
            }
        }
        // Transfers of the cycle before were returned at this cycle's start: check those too.
        let first_transfer = transfers_after.map_or(0, |id| id + 1);
        for (id, transfer) in &self.model.transfers {
            if *id < first_transfer && transfer.status != TransferStatus::Returned {
                continue;
            }
            let got = http.get(&format!("/v1/wallet/transfers/{id}"))?;
            ensure!(
                got["status"] == transfer.status.as_str(),
                "transfer {id}: {got}, expected {}",
                transfer.status.as_str()
            );
        }
        self.audit(http)?;
        Ok(())
    }
}

/// Bindings inside each family (giver member, receiver member): a couple, their children and
/// a parent of theirs (member 3 is resident-insured; member 4 of family 9 is in Beijing, so
/// that family has a cross-province pair).
const BINDINGS: [(usize, usize); 7] = [(0, 1), (1, 0), (0, 2), (0, 3), (1, 3), (4, 0), (2, 3)];

fn relation(giver: usize, receiver: usize) -> &'static str {
    match (giver, receiver) {
        (0, 1) | (1, 0) => "spouse",
        (4, 0) => "child",
        (2, 3) => "sibling",
        _ => "child",
    }
}
