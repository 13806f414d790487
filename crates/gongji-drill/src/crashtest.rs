//! `gongji crash-test`: `kill -9` a real `gongji serve` under concurrent HTTP load, restart it
//! on the same data directory, and check the restarted server against the clients' log.
//!
//! Each cycle: several client threads send settlements, cancellations, wallet transfers and
//! their acceptances/declines, and log every request with its exact reply; at a seeded random
//! moment (20–300 ms into the load) the server gets SIGKILL. After the restart the checker
//! resends every request that got no reply (same msgid, same body: it may or may not have
//! applied before the kill), then checks the server's lasting state against a model built from
//! the acknowledged replies alone: every person's balances (credits − draws + returns), this
//! cycle's settlements and transfers and a seeded sample of older ones with their acknowledged
//! form and status, the reconciliation totals of this day and of a sampled older day, and
//! (every `AUDIT_EVERY` cycles) `GET /v1/audit/verify`. Then it replays this cycle's
//! acknowledged requests and a sample of older ones and demands the byte-identical reply while
//! the msgid is inside `msgid_retention_days` of engine time; older msgids are forgotten by
//! rule (DOMAIN.md), so their replay may only be refused (`INVALID_TIME`: they cannot apply
//! again) or answer the first reply. Replays must move neither a balance nor the journal head.
//! A write lost after its msgid was forgotten still shows in the balances, statuses and
//! reconciliation totals, so it fails the run (the hidden `--lose-write-after-cycle` drill
//! proves it). Every write carries an admin `inf_time` (10:00 CST on day `cycle` after the
//! start), so the run does not depend on the machine's clock, pending transfers of one cycle
//! are returned at the start of the next, and the engine clock moves one day per cycle.
//!
//! The checker keeps only the acknowledged requests of the retention window (plus a few
//! cycles of forgotten ones to replay) and checks a bounded amount per cycle, so a cycle costs
//! the same at cycle 1,000 as at cycle 10. A progress line is printed every few cycles
//! (plain lines, the same on a terminal or not).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
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
    /// Kill/restart cycles (each moves the engine clock one day).
    #[arg(long, default_value_t = 20)]
    pub cycles: u32,
    /// Seed of the load, the kill moments and the checker's samples: a number, or `random` for
    /// one from the clock (printed either way, with the command that reruns it).
    #[arg(long, default_value = "1", value_parser = parse_seed)]
    pub seed: Seed,
    /// Concurrent client threads.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Parent of the temporary data directory (kept when the test fails).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run the server with `--store` (e.g. a `postgres://…` URL of an empty database).
    #[arg(long)]
    pub store: Option<String>,
    /// The server's `msgid_retention_days` (engine days; one cycle is one day).
    #[arg(long, default_value_t = 30)]
    pub retention_days: u32,
    /// Drill for the checker's own test: after this cycle's check, acknowledge one cancellation
    /// and then restore the data directory from the kill -9 image taken just before it, so the
    /// server loses an acknowledged write. The run must then fail (files store only).
    #[arg(long, hide = true)]
    pub lose_write_after_cycle: Option<u32>,
}

/// `--seed`: a fixed number, or drawn from the clock.
#[derive(Clone, Copy, Debug)]
pub enum Seed {
    Fixed(u64),
    Random,
}

fn parse_seed(text: &str) -> Result<Seed, String> {
    if text == "random" {
        return Ok(Seed::Random);
    }
    text.parse()
        .map(Seed::Fixed)
        .map_err(|_| format!("{text:?} is neither a number nor `random`"))
}

const INSTITUTIONS: [&str; 3] = ["H44010600001", "H44030000002", "P44010600003"];
const FAMILIES: usize = 10;
const MEMBERS: usize = 5;
/// Setup time; cycle `c` runs at 10:00 CST `c` days later.
const T0: &str = "2030-06-01 09:00:00";

pub fn run(args: CrashTestArgs) -> Result<()> {
    let seed = match args.seed {
        Seed::Fixed(seed) => seed,
        Seed::Random => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    };
    println!(
        "crash-test: {} cycles, {} clients, seed {seed}, msgid retention {} days, store {}",
        args.cycles,
        args.clients,
        args.retention_days,
        args.store
            .as_deref()
            .map_or("files".into(), gongji_pg::redact)
    );
    if let Some(url) = gongji_pg::store_url(args.store.as_deref()).map_err(anyhow::Error::msg)? {
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
                 --seed {seed} --retention-days {}{}); data directory kept at {}",
                args.cycles,
                args.retention_days,
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
struct Rng(splitmix::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(splitmix::SplitMix64::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
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
// The HTTP client: ureq, blocking, one connection per request (no pool), every status returned
// as a reply. The checker needs exact reply bytes and must see a reply cut by the kill as no
// reply at all: a body shorter than its length or an unfinished chunked body is an error.

#[derive(Clone, Debug)]
struct Http {
    addr: SocketAddr,
    token: String,
    agent: ureq::Agent,
}

impl Http {
    fn new(addr: SocketAddr, token: String) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_send_request(Some(Duration::from_secs(30)))
            .timeout_send_body(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        Http { addr, token, agent }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Result<(u16, Vec<u8>), ureq::Error> {
        let url = format!("http://{}{path}", self.addr);
        let auth = format!("Bearer {}", self.token);
        let mut response = if method == "POST" {
            self.agent
                .post(&url)
                .header("Authorization", &auth)
                .content_type("application/json")
                .send(body)?
        } else {
            self.agent.get(&url).header("Authorization", &auth).call()?
        };
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()?;
        Ok((status, bytes))
    }

    fn post(&self, path: &str, body: &str) -> Result<(u16, Vec<u8>), ureq::Error> {
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

    /// The journal head's op number from `/metrics` (set before any reply of a batch leaves):
    /// a constant-cost read, unlike `/v1/audit/verify`, which rescans the journal.
    fn head_op(&self) -> Result<u64> {
        let (status, bytes) = self.call("GET", "/metrics", "").context("GET /metrics")?;
        ensure!(status == 200, "GET /metrics: {status}");
        let text = String::from_utf8_lossy(&bytes);
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("gongji_journal_head_op "))
            .ok_or_else(|| anyhow!("no gongji_journal_head_op in /metrics"))?;
        let op: f64 = value.trim().parse().context("gongji_journal_head_op")?;
        Ok(op as u64)
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
        let probe = Http::new(server.addr, String::new());
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
    /// The acknowledged `output`, as JSON text (kept compact: a run holds every settlement).
    output: String,
    psn_no: String,
    acct_pay: i64,
    wallet_pay: i64,
    details: Vec<(String, i64)>,
    cancelled: bool,
    /// The cycle whose load made it.
    cycle: u32,
    /// Reconciliation key: institution and CST day of `setl_time`.
    day: (String, String),
    /// Reconciliation amounts: medfee, fund, acct, wallet, mulaid, cash.
    amounts: [i64; 6],
}

impl Settlement {
    fn output(&self) -> Value {
        serde_json::from_str(&self.output).expect("stored output is JSON")
    }
}

#[derive(Debug)]
struct Transfer {
    from: String,
    to: String,
    amount: i64,
    from_wallet: bool,
    status: TransferStatus,
}

/// Reconciliation totals of one institution and day: count, then the six amounts.
type Recon = (u64, [i64; 6]);

const RECON_KEYS: [&str; 6] = [
    "medfee_sumamt",
    "fund_pay_sumamt",
    "acct_pay",
    "wallet_pay",
    "acct_mulaid_pay",
    "psn_cash_pay",
];

#[derive(Debug, Default)]
struct Model {
    /// psn_no → (account, wallet) in fen.
    balances: BTreeMap<String, (i64, i64)>,
    settlements: BTreeMap<u64, Settlement>,
    transfers: BTreeMap<u64, Transfer>,
    /// Transfers still pending (returned at the next cycle's start).
    pending: BTreeSet<u64>,
    /// (institution, day) → settlements of that day not cancelled.
    recon: BTreeMap<(String, String), Recon>,
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

    fn recon_add(&mut self, day: &(String, String), amounts: &[i64; 6], sign: i64) {
        let entry = self.recon.entry(day.clone()).or_default();
        entry.0 = entry.0.wrapping_add_signed(sign);
        for (total, amount) in entry.1.iter_mut().zip(amounts) {
            *total += sign * amount;
        }
    }

    /// First pass: writes that create (settlements, transfers).
    fn apply_create(&mut self, path: &str, output: &Value, cycle: u32) -> Result<()> {
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
            let setl_time = str_of(output, "setl_time")?;
            let day = (
                str_of(output, "fixmedins_code")?.to_owned(),
                setl_time.get(..10).unwrap_or(setl_time).to_owned(),
            );
            let mut amounts = [0; 6];
            for (amount, key) in amounts.iter_mut().zip(RECON_KEYS) {
                *amount = fen_of(&output[key])?;
            }
            self.recon_add(&day, &amounts, 1);
            let previous = self.settlements.insert(
                id,
                Settlement {
                    output: output.to_string(),
                    psn_no,
                    acct_pay,
                    wallet_pay,
                    details,
                    cancelled: false,
                    cycle,
                    day,
                    amounts,
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
            self.pending.insert(id);
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
            let paid = setl.output();
            for key in ["acct_pay", "wallet_pay", "acct_mulaid_pay", "psn_cash_pay"] {
                ensure!(
                    output[key] == paid[key],
                    "cancel of {id} returns {key} {} but the settlement paid {}",
                    output[key],
                    paid[key]
                );
            }
            setl.cancelled = true;
            let (psn_no, acct, wallet) = (setl.psn_no.clone(), setl.acct_pay, setl.wallet_pay);
            let (details, day, amounts) = (setl.details.clone(), setl.day.clone(), setl.amounts);
            self.acct(&psn_no, acct)?;
            self.wallet(&psn_no, wallet)?;
            for (giver, amount) in details {
                self.acct(&giver, amount)?;
            }
            self.recon_add(&day, &amounts, -1);
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
            self.pending.remove(&id);
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

    /// A new day: every pending transfer goes back to its sender's source. Returns their ids.
    fn return_pending(&mut self) -> Result<Vec<u64>> {
        let ids: Vec<u64> = std::mem::take(&mut self.pending).into_iter().collect();
        for id in &ids {
            let t = self.transfers.get_mut(id).expect("pending transfer known");
            t.status = TransferStatus::Returned;
            let (from, amount, from_wallet) = (t.from.clone(), t.amount, t.from_wallet);
            if from_wallet {
                self.wallet(&from, amount)?;
            } else {
                self.acct(&from, amount)?;
            }
        }
        Ok(ids)
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// Every this many cycles (and at the end) `GET /v1/audit/verify`, which rescans the whole
/// journal; in between, the journal head comes from `/metrics`.
const AUDIT_EVERY: u32 = 50;
/// Per cycle: acknowledged requests of earlier cycles inside the window replayed.
const SAMPLE_REPLAYS: usize = 32;
/// Per cycle: acknowledged requests already forgotten by rule replayed.
const SAMPLE_FORGOTTEN: usize = 8;
/// Per cycle: older settlements and older transfers each compared with the model.
const SAMPLE_RECORDS: usize = 16;
/// At the end: older settlements and transfers each compared with the model.
const SAMPLE_RECORDS_FINAL: usize = 500;
/// Cycles of forgotten requests kept (past the window) to replay.
const FORGOTTEN_KEPT_CYCLES: u32 = 3;
/// Reconciliation totals are kept at least this many days (DOMAIN.md).
const RECON_DAYS: u32 = 400;

#[derive(Debug, Default)]
struct Totals {
    acked: usize,
    rejected: usize,
    no_reply: usize,
    no_reply_applied_before_kill: usize,
    /// Kills that left a durable write without its reply (it replayed on resend).
    kills_mid_batch: usize,
    /// Replays answered with the first reply, byte for byte.
    replays: usize,
    /// Replays of msgids past the window refused: forgotten by rule, not applied again.
    forgotten: usize,
    /// Settlements and transfers read back and compared with the model.
    records: usize,
    /// Reconciliation (institution, day) totals compared with the model.
    recon: usize,
    audits: usize,
}

/// An acknowledged write: the cycle it was made in, the request and the exact reply.
#[derive(Debug)]
struct Acked {
    cycle: u32,
    request: Request,
    bytes: Vec<u8>,
}

/// What `check_state` covers besides balances and its samples.
enum Scope {
    /// This cycle: settlements and transfers after these ids, and the transfers returned at
    /// the cycle's start.
    Cycle {
        settlements_after: Option<u64>,
        transfers_after: Option<u64>,
        returned: Vec<u64>,
    },
    /// The end of the run: larger samples and every reconciliation day still kept.
    Final,
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
    retention: u32,
    lose_write_after_cycle: Option<u32>,
    token: String,
    server: Option<Server>,
    shared: Arc<Shared>,
    model: Model,
    /// Acknowledged writes of the retention window and `FORGOTTEN_KEPT_CYCLES` before it, in
    /// cycle order; older ones are checked by their lasting effects only.
    acked: VecDeque<Acked>,
    totals: Totals,
    started: Instant,
    /// Progress: when and at which cycle the last line was printed, and the time spent
    /// restarting and checking since.
    progress_at: (Instant, u32),
    restart_time: Duration,
    check_time: Duration,
}

fn time_of_cycle(cycle: u32) -> String {
    let t0 = parse_cst(T0).expect("T0 parses");
    format_cst(t0 + i64::from(cycle) * 86_400 + 3_600)
}

/// `1m05s`.
fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

/// Copies a data directory (the server is dead: a kill -9 image).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

impl Run {
    fn new(args: &CrashTestArgs, seed: u64, dir: &Path) -> Result<Run> {
        let exe = std::env::current_exe().context("own executable")?;
        let data = dir.join("data");
        let config = dir.join("crash-test.toml");
        // Snapshots every few hundred ops, so that kills also land during snapshot writes.
        std::fs::write(
            &config,
            format!(
                "snapshot_interval_ops = 300\nmsgid_retention_days = {}\n",
                args.retention_days
            ),
        )?;
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
            retention: args.retention_days,
            lose_write_after_cycle: args.lose_write_after_cycle,
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
            acked: VecDeque::new(),
            totals: Totals::default(),
            started: Instant::now(),
            progress_at: (Instant::now(), 0),
            restart_time: Duration::ZERO,
            check_time: Duration::ZERO,
        })
    }

    fn http(&self) -> Http {
        Http::new(
            self.server.as_ref().expect("server running").addr,
            self.token.clone(),
        )
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
        self.started = Instant::now();
        self.progress_at = (self.started, 0);
        self.start()?;
        let token = std::fs::read_to_string(self.data.join("admin.token"))
            .context("admin.token after the first start")?;
        self.token = token.trim().to_owned();
        self.setup()?;
        for cycle in 1..=self.cycles {
            self.cycle(cycle)
                .with_context(|| format!("cycle {cycle}"))
                .map_err(|e| e.context(format!("server log:\n{}", self.server_log())))?;
            if self.lose_write_after_cycle == Some(cycle) {
                self.lose_a_write(cycle)
                    .with_context(|| format!("lost-write drill after cycle {cycle}"))?;
            }
            self.progress(cycle);
        }
        // The end: larger samples, every reconciliation day still kept, every request still
        // held replayed (inside the window: the first reply; past it: at most refused).
        let http = self.http();
        let mut rng = Rng::new(self.seed ^ 0xF1A1);
        let balances = self.check_state(&http, self.cycles, &mut rng, Scope::Final)?;
        let head = http.head_op()?;
        for index in 0..self.acked.len() {
            self.replay(&http, self.cycles, index)?;
        }
        ensure!(
            self.balances(&http)? == balances && http.head_op()? == head,
            "replays of acknowledged writes changed balances or the journal"
        );
        self.audit(&http)?;
        let t = &self.totals;
        Ok(format!(
            "{} cycles, {} acknowledged writes, {} rejected, {} without reply at a kill ({} of \
             them had applied), {} kills mid-batch, {} replays byte-identical, {} replays of \
             forgotten msgids refused, {} settlements and transfers read back, {} \
             reconciliation days, {} audits; {} settlements, {} transfers in all",
            self.cycles,
            t.acked,
            t.rejected,
            t.no_reply,
            t.no_reply_applied_before_kill,
            t.kills_mid_batch,
            t.replays,
            t.forgotten,
            t.records,
            t.recon,
            t.audits,
            self.model.settlements.len(),
            self.model.transfers.len()
        ))
    }

    /// A progress line every 1/25 of the run or 30 s: plain text, terminal or not.
    fn progress(&mut self, cycle: u32) {
        let (at, last) = self.progress_at;
        let step = (self.cycles / 25).max(1);
        if !cycle.is_multiple_of(step)
            && cycle != self.cycles
            && at.elapsed() < Duration::from_secs(30)
        {
            return;
        }
        let n = f64::from(cycle - last).max(1.0);
        let elapsed = self.started.elapsed();
        let eta = elapsed.mul_f64(f64::from(self.cycles - cycle) / f64::from(cycle));
        println!(
            "crash-test: cycle {cycle}/{} | {} acknowledged writes | {} kills mid-batch | \
             restart {:.0} ms, check {:.0} ms per cycle (cycles {}-{cycle}) | elapsed {} | \
             ETA {}",
            self.cycles,
            self.totals.acked,
            self.totals.kills_mid_batch,
            self.restart_time.as_secs_f64() * 1e3 / n,
            self.check_time.as_secs_f64() * 1e3 / n,
            last + 1,
            minutes(elapsed),
            minutes(eta),
        );
        self.progress_at = (Instant::now(), cycle);
        self.restart_time = Duration::ZERO;
        self.check_time = Duration::ZERO;
    }

    /// Institutions, 50 persons in 10 families with bindings and open wallets, credits: one
    /// `/v1/batch`.
    fn setup(&mut self) -> Result<()> {
        let time = T0;
        let mut rng = Rng::new(self.seed ^ 0x5e7u64);
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
        let mut rng = Rng::new(self.seed ^ u64::from(cycle).wrapping_mul(0xA076_1D64_78BD_642F));
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
        let returned = self.model.return_pending()?;
        self.shared.setl_ids.lock().expect("ids lock").clear();
        self.shared.transfer_ids.lock().expect("ids lock").clear();
        self.shared.stop.store(false, Ordering::Release);

        let kill_after = Duration::from_millis(rng.range(20, 300));
        let threads: Vec<_> = (0..self.clients)
            .map(|t| {
                let (http, shared) = (http.clone(), self.shared.clone());
                let rng = Rng::new(rng.next());
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

        let restart = Instant::now();
        self.start()?;
        self.restart_time += restart.elapsed();
        let checking = Instant::now();
        let http = self.http();
        let ops_before = http.head_op()?;
        let first = self.acked.len();
        let settlements_after = self.model.settlements.keys().next_back().copied();
        let transfers_after = self.model.transfers.keys().next_back().copied();
        let mut resend = Vec::new();
        for (request, fate) in log {
            match fate {
                Fate::Replied { status: 200, bytes } => self.acked.push_back(Acked {
                    cycle,
                    request,
                    bytes,
                }),
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
                    self.acked.push_back(Acked {
                        cycle,
                        request,
                        bytes,
                    });
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
        let applied_now = (http.head_op()? - ops_before) as usize;
        ensure!(
            applied_now <= resent_ok,
            "resends applied more ops than they acknowledged"
        );
        let applied_before_kill = resent_ok - applied_now;
        self.totals.no_reply_applied_before_kill += applied_before_kill;
        self.totals.kills_mid_batch += usize::from(applied_before_kill > 0);
        self.totals.acked += self.acked.len() - first;

        // The model from this cycle's acknowledged replies: creations first, then cancels and
        // answers (which only name what an acknowledged creation returned).
        let acked: Vec<(String, Value)> = self
            .acked
            .range(first..)
            .map(|a| {
                serde_json::from_slice::<Value>(&a.bytes)
                    .map(|v| (a.request.path.clone(), v["output"].clone()))
                    .with_context(|| String::from_utf8_lossy(&a.bytes).into_owned())
            })
            .collect::<Result<_>>()?;
        for (path, output) in &acked {
            self.model.apply_create(path, output, cycle)?;
        }
        for (path, output) in &acked {
            self.model.apply_change(path, output)?;
        }

        // Lasting effects first: they hold whether or not a msgid is still remembered.
        let mut rng =
            Rng::new(self.seed ^ 0xC4EC ^ u64::from(cycle).wrapping_mul(0x9FB2_1C65_1E98_DF25));
        let scope = Scope::Cycle {
            settlements_after,
            transfers_after,
            returned,
        };
        let balances = self.check_state(&http, cycle, &mut rng, scope)?;
        // Then replays: all of this cycle's, a sample of the window's older ones and of the
        // forgotten ones kept.
        let head = http.head_op()?;
        let window = self
            .acked
            .partition_point(|a| a.cycle + self.retention < cycle);
        for index in first..self.acked.len() {
            self.replay(&http, cycle, index)?;
        }
        for (range, count) in [
            (window..first, SAMPLE_REPLAYS),
            (0..window, SAMPLE_FORGOTTEN),
        ] {
            if range.is_empty() {
                continue;
            }
            for _ in 0..count {
                let index = rng.range(range.start as u64, range.end as u64 - 1) as usize;
                self.replay(&http, cycle, index)?;
            }
        }
        ensure!(
            self.balances(&http)? == balances,
            "replays of acknowledged writes changed balances"
        );
        let head_after = http.head_op()?;
        ensure!(
            head_after == head,
            "replays of acknowledged writes journaled ops {}..={head_after}",
            head + 1
        );
        if cycle.is_multiple_of(AUDIT_EVERY) {
            self.audit(&http)?;
        }
        while self
            .acked
            .front()
            .is_some_and(|a| a.cycle + self.retention + FORGOTTEN_KEPT_CYCLES < cycle)
        {
            self.acked.pop_front();
        }
        self.check_time += checking.elapsed();
        Ok(())
    }

    /// The drill of `--lose-write-after-cycle`: a cancellation is acknowledged, then the data
    /// directory goes back to the kill -9 image taken just before it (as if the disk had lost
    /// a flushed write). The checker must notice at the next cycle, although the msgid's
    /// replay then answers like a forgotten one.
    fn lose_a_write(&mut self, cycle: u32) -> Result<()> {
        ensure!(
            self.store.is_none(),
            "the lost-write drill runs on the file store"
        );
        let id = self
            .model
            .settlements
            .iter()
            .rev()
            .take_while(|(_, s)| s.cycle == cycle)
            .find(|(_, s)| {
                !s.cancelled
                    && s.acct_pay + s.wallet_pay + s.details.iter().map(|d| d.1).sum::<i64>() > 0
            })
            .map(|(id, _)| *id)
            .ok_or_else(|| anyhow!("no settlement of cycle {cycle} moved account money"))?;
        let image = self.data.with_file_name("data-before-the-lost-write");
        self.server.as_mut().expect("server").kill()?;
        copy_dir(&self.data, &image)?;
        self.start()?;
        let request = Request {
            path: format!("/v1/settlements/{id}/cancel"),
            body: format!(
                r#"{{"msgid":"lost-{cycle}","inf_time":"{}"}}"#,
                time_of_cycle(cycle)
            ),
        };
        let (status, bytes) = self.http().post(&request.path, &request.body)?;
        let value: Value = serde_json::from_slice(&bytes)?;
        ensure!(status == 200, "drill cancel: {status} {value}");
        self.model.apply_change(&request.path, &value["output"])?;
        println!(
            "crash-test: drill: {} {} acknowledged, then the data directory restored from \
             before it",
            request.path, request.body
        );
        self.acked.push_back(Acked {
            cycle,
            request,
            bytes,
        });
        self.server.as_mut().expect("server").kill()?;
        std::fs::remove_dir_all(&self.data)?;
        std::fs::rename(&image, &self.data)?;
        self.start()
    }

    /// `GET /v1/audit/verify` must be ok.
    fn audit(&mut self, http: &Http) -> Result<()> {
        let audit = http.get("/v1/audit/verify")?;
        ensure!(audit["ok"] == true, "audit: {audit}");
        self.totals.audits += 1;
        Ok(())
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

    /// Replays `acked[index]` in cycle `now`: the same bytes while its msgid is inside the
    /// window; past it the first reply or the refusal of a forgotten msgid (its `inf_time` is
    /// behind the engine clock, so it cannot apply again).
    fn replay(&mut self, http: &Http, now: u32, index: usize) -> Result<()> {
        let a = &self.acked[index];
        let (status, again) = http.post(&a.request.path, &a.request.body)?;
        if status == 200 && again == a.bytes {
            self.totals.replays += 1;
            return Ok(());
        }
        let forgotten = a.cycle + self.retention < now;
        if forgotten && status == 400 {
            let value: Value = serde_json::from_slice(&again).unwrap_or_default();
            if value["err_code"] == "INVALID_TIME" {
                self.totals.forgotten += 1;
                return Ok(());
            }
        }
        bail!(
            "replay in cycle {now} of {} {} (acknowledged in cycle {}, {} the {}-day msgid \
             window) answered {status}:\n{}\nbut was acknowledged with:\n{}",
            a.request.path,
            a.request.body,
            a.cycle,
            if forgotten { "past" } else { "inside" },
            self.retention,
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(&a.bytes)
        )
    }

    /// Balances (every person), settlements, transfers and reconciliation totals on the
    /// server equal the model; returns the balances. Per cycle: the cycle's new settlements
    /// and transfers, the transfers returned at its start, a seeded sample of older ones
    /// (their status is final: clients cancel and answer only the cycle's own), and the
    /// reconciliation of this day and of a sampled older day.
    fn check_state(
        &mut self,
        http: &Http,
        now: u32,
        rng: &mut Rng,
        scope: Scope,
    ) -> Result<BTreeMap<String, (i64, i64)>> {
        let balances = self.balances(http)?;
        for (psn_no, want) in &self.model.balances {
            let got = balances[psn_no];
            ensure!(
                got == *want,
                "{psn_no}: (acct, wallet) is {got:?} fen on the server, {want:?} by the \
                 acknowledged replies"
            );
        }
        let (mut settlements, mut transfers, samples, days): (Vec<u64>, Vec<u64>, usize, Vec<u32>) =
            match scope {
                Scope::Cycle {
                    settlements_after,
                    transfers_after,
                    returned,
                } => {
                    let from = |after: Option<u64>| after.map_or(0, |id| id + 1);
                    let oldest_day = now.saturating_sub(RECON_DAYS - 1).max(1);
                    (
                        self.model
                            .settlements
                            .range(from(settlements_after)..)
                            .map(|(id, _)| *id)
                            .collect(),
                        self.model
                            .transfers
                            .range(from(transfers_after)..)
                            .map(|(id, _)| *id)
                            .chain(returned)
                            .collect(),
                        SAMPLE_RECORDS,
                        vec![now, rng.range(u64::from(oldest_day), u64::from(now)) as u32],
                    )
                }
                Scope::Final => (
                    Vec::new(),
                    Vec::new(),
                    SAMPLE_RECORDS_FINAL,
                    (now.saturating_sub(RECON_DAYS - 1).max(1)..=now).collect(),
                ),
            };
        // Seeded samples of the whole history: a random id, then the next one the model has.
        if let Some(&max) = self.model.settlements.keys().next_back() {
            for _ in 0..samples {
                let id = rng.range(1, max);
                settlements.extend(self.model.settlements.range(id..).next().map(|(id, _)| *id));
            }
        }
        if let Some(&max) = self.model.transfers.keys().next_back() {
            for _ in 0..samples {
                let id = rng.range(1, max);
                transfers.extend(self.model.transfers.range(id..).next().map(|(id, _)| *id));
            }
        }
        for id in settlements {
            let setl = &self.model.settlements[&id];
            let got = http.get(&format!("/v1/settlements/{id}"))?;
            let want_status = if setl.cancelled {
                "cancelled"
            } else {
                "settled"
            };
            ensure!(
                got["status"] == want_status,
                "settlement {id} (cycle {}): {got}, acknowledged as {want_status}",
                setl.cycle
            );
            for (key, value) in setl.output().as_object().expect("output object") {
                ensure!(
                    &got[key] == value,
                    "settlement {id}: {key} is {} but was acknowledged as {value}",
                    got[key]
                );
            }
            self.totals.records += 1;
        }
        for id in transfers {
            let transfer = &self.model.transfers[&id];
            let got = http.get(&format!("/v1/wallet/transfers/{id}"))?;
            ensure!(
                got["status"] == transfer.status.as_str(),
                "transfer {id}: {got}, expected {}",
                transfer.status.as_str()
            );
            self.totals.records += 1;
        }
        for cycle in days {
            let day = time_of_cycle(cycle)[..10].to_owned();
            for code in INSTITUTIONS {
                let got = http.get(&format!(
                    "/v1/reconciliation?fixmedins_code={code}&date={day}"
                ))?;
                let key = (code.to_owned(), day.clone());
                let (count, amounts) = self.model.recon.get(&key).copied().unwrap_or_default();
                ensure!(
                    got["setl_count"].as_u64() == Some(count),
                    "reconciliation {code} {day}: {got}, but the acknowledged replies make \
                     {count} settlements"
                );
                for (want, name) in amounts.iter().zip(RECON_KEYS) {
                    ensure!(
                        fen_of(&got[name])? == *want,
                        "reconciliation {code} {day}: {name} {got}, but the acknowledged \
                         replies make {}",
                        fen_text(*want)
                    );
                }
                self.totals.recon += 1;
            }
        }
        Ok(balances)
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
