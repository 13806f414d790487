//! Helpers for the HTTP integration tests: a real server on 127.0.0.1:0 in the test process,
//! over a fresh data directory, driven with reqwest.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gongji_http::App;
use gongji_server::{Config, Engine};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The first business time of every test: far after the machine's clock, so that the writer's
/// own time never moves the engine clock and every write is at a known time.
pub const T0: &str = "2030-05-20 09:00:00";
/// The crediting period used by the fixtures, and the statistics month of `T0`.
pub const PERIOD: &str = "2030-05";

/// A unique name for msgids and directories within the test process.
pub fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A fresh msgid.
pub fn m() -> String {
    format!("m{}", unique())
}

/// A resident ID with a correct check digit: area 440106, birth 1980-01-01, sequence `seq`.
pub fn certno(seq: u32) -> String {
    certno_in("440106", seq)
}

pub fn certno_in(area: &str, seq: u32) -> String {
    let first17 = format!("{area}19800101{:03}", seq % 1000);
    gongji_core::certno::certno_with_check(&first17).expect("17 digits")
}

/// A data directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "gongji-http-test-{}-{}-{nanos}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One response: status, raw body bytes and the body parsed as JSON (Null if it is not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Resp {
    /// Asserts the success envelope and returns `output`.
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.status,
            200,
            "expected 200, got {}: {}",
            self.status,
            self.text()
        );
        assert_eq!(
            self.json["infcode"],
            json!(0),
            "success envelope: {}",
            self.text()
        );
        let obj = self.json.as_object().expect("envelope object");
        assert_eq!(
            obj.len(),
            2,
            "envelope has infcode and output only: {}",
            self.text()
        );
        self.json["output"].clone()
    }

    /// Asserts the failure envelope with this status and code.
    #[track_caller]
    pub fn err(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.json["err_code"].as_str()),
            (status, Some(code)),
            "expected {status} {code}, got {}: {}",
            self.status,
            self.text()
        );
        assert_envelope_error(&self.json);
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The raw bytes of `output` as the server sent them (the envelope is
    /// `{"infcode":0,"output":…}`).
    pub fn output_bytes(&self) -> &[u8] {
        let prefix = br#"{"infcode":0,"output":"#;
        assert!(
            self.bytes.starts_with(prefix),
            "envelope layout: {}",
            self.text()
        );
        &self.bytes[prefix.len()..self.bytes.len() - 1]
    }
}

/// `{"infcode": -1, "err_code", "err_msg"}` and nothing else.
#[track_caller]
pub fn assert_envelope_error(v: &Value) {
    let obj = v.as_object().expect("error envelope is an object");
    assert_eq!(obj.len(), 3, "error envelope fields: {v}");
    assert_eq!(v["infcode"], json!(-1), "{v}");
    assert!(v["err_code"].is_string(), "{v}");
    assert!(v["err_msg"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
}

/// A server on 127.0.0.1:0 over its own engine.
pub struct Server {
    pub base: String,
    pub admin: String,
    pub engine: Arc<Engine>,
    pub client: reqwest::Client,
    pub dir: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// A fresh data directory and a server over it.
    pub async fn start() -> Server {
        Server::open(Arc::new(TempDir::new()), |_| {}).await
    }

    /// A server over `dir` (created on first start, recovered after), `tune` adjusting the config.
    pub async fn open(dir: Arc<TempDir>, tune: impl FnOnce(&mut Config)) -> Server {
        Server::open_with(dir, tune, gongji_http::Limits::default()).await
    }

    /// A fresh data directory and a server with these connection limits.
    pub async fn start_with(limits: gongji_http::Limits) -> Server {
        Server::open_with(Arc::new(TempDir::new()), |_| {}, limits).await
    }

    pub async fn open_with(
        dir: Arc<TempDir>,
        tune: impl FnOnce(&mut Config),
        limits: gongji_http::Limits,
    ) -> Server {
        let mut config = Config::new(&dir.0);
        tune(&mut config);
        let journal_dir = config.journal_dir();
        let journal_config = config.journal;
        let admin_path = config.admin_token_path();
        let (engine, _report) =
            tokio::task::spawn_blocking(move || Engine::open(config).expect("engine opens"))
                .await
                .expect("open task");
        let engine = Arc::new(engine);
        let admin = std::fs::read_to_string(&admin_path)
            .expect("admin.token")
            .trim()
            .to_owned();
        Server::serving(engine, admin, dir, journal_dir, journal_config, limits).await
    }

    /// A server whose engine keeps its journal and snapshots on `fault` (in memory, with
    /// faults to inject), with an admin token made for it; the data directory stays empty.
    pub async fn on_fault_storage(fault: gongji_journal::FaultStorage) -> Server {
        use gongji_core::{Actor, Body, Msgid, Role};
        let dir = Arc::new(TempDir::new());
        let mut config = Config::new(&dir.0);
        config.idle_tick_seconds = 3600;
        config.snapshot_interval_ops = 1_000_000;
        let journal_dir = config.journal_dir();
        let journal_config = config.journal;
        let admin = gongji_server::new_token();
        let token_hash = gongji_server::token_hash(&admin);
        let engine = tokio::task::spawn_blocking(move || {
            let (engine, _) = Engine::open_on(config, fault.clone(), fault).expect("engine opens");
            let request = gongji_server::WriteRequest {
                msgid: Msgid::from("admin-token").expect("msgid"),
                inf_time: None,
                actor: Actor::Admin,
                body: Body::CreateToken {
                    token_hash,
                    role: Role::Admin,
                    fixmedins_code: None,
                    psn_no: None,
                },
            };
            let results = engine.submit_wait(vec![request]).expect("the engine runs");
            assert!(results[0].is_ok(), "{results:?}");
            engine
        })
        .await
        .expect("open task");
        let limits = gongji_http::Limits::default();
        Server::serving(
            Arc::new(engine),
            admin,
            dir,
            journal_dir,
            journal_config,
            limits,
        )
        .await
    }

    async fn serving(
        engine: Arc<Engine>,
        admin: String,
        dir: Arc<TempDir>,
        journal_dir: PathBuf,
        journal_config: gongji_journal::JournalConfig,
        limits: gongji_http::Limits,
    ) -> Server {
        let app = Arc::new(App {
            engine: engine.clone(),
            journal_dir,
            journal_config,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gongji_http::serve_with(listener, app, limits, async {
            let _ = rx.await;
        }));
        Server {
            base: format!("http://{addr}"),
            admin,
            engine,
            client: reqwest::Client::new(),
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops serving, shuts the engine down (the queue is synced), and returns the directory.
    pub async fn stop(mut self) -> Arc<TempDir> {
        self.shutdown.take().map(|tx| tx.send(()));
        if let Some(task) = self.task.take() {
            task.await.expect("serve task").expect("serve");
        }
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.shutdown().expect("engine shutdown"))
            .await
            .expect("shutdown task");
        self.dir.clone()
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir.0
    }

    /// The engine's state hash (test-only view of "nothing changed").
    pub fn state_hash(&self) -> [u8; 32] {
        self.engine.read(|s| s.state_hash())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body").to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            bytes,
            json,
        }
    }

    fn auth(&self, req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// POST a JSON value.
    pub async fn post(&self, token: &str, path: &str, body: Value) -> Resp {
        self.post_raw(Some(token), path, serde_json::to_vec(&body).expect("json"))
            .await
    }

    /// POST raw bytes (hostile input), with or without a token.
    pub async fn post_raw(
        &self,
        token: Option<&str>,
        path: &str,
        body: impl Into<Vec<u8>>,
    ) -> Resp {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.into());
        self.send(self.auth(req, token)).await
    }

    pub async fn get(&self, token: &str, path: &str) -> Resp {
        self.get_opt(Some(token), path).await
    }

    pub async fn get_opt(&self, token: Option<&str>, path: &str) -> Resp {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(self.auth(req, token)).await
    }

    /// An admin write that must succeed; returns `output`.
    pub async fn admin_ok(&self, path: &str, body: Value) -> Value {
        let resp = self.post(&self.admin.clone(), path, body).await;
        resp.ok()
    }

    /// Creates a token; returns the raw token.
    pub async fn token(&self, role: &str, scope: Option<(&str, &str)>) -> String {
        let mut body = json!({"msgid": m(), "role": role});
        if let Some((k, v)) = scope {
            body[k] = json!(v);
        }
        let out = self.post(&self.admin, "/v1/tokens", body).await.ok();
        out["token"].as_str().expect("token shown once").to_owned()
    }

    pub async fn enrol(&self, psn_no: &str, insutype: &str, admdvs: &str) -> Value {
        let seq = unique() as u32;
        let area = if admdvs.starts_with("11") {
            "110101"
        } else {
            "440106"
        };
        self.post(
            &self.admin,
            "/v1/persons",
            json!({"msgid": m(), "psn_no": psn_no, "certno": certno_in(area, seq),
                   "psn_name": "张三丰", "insutype": insutype, "admdvs": admdvs}),
        )
        .await
        .ok()
    }

    pub async fn institution(&self, code: &str) -> Value {
        self.post(
            &self.admin,
            "/v1/institutions",
            json!({"msgid": m(), "fixmedins_code": code, "fixmedins_name": "中山医院",
                   "fixmedins_type": "1", "admdvs": "440106"}),
        )
        .await
        .ok()
    }

    /// Moves the engine clock to `time` with an applied admin write (registers an institution).
    pub async fn at(&self, time: &str) {
        let code = format!("HCLOCK{}", unique());
        self.post(
            &self.admin,
            "/v1/institutions",
            json!({"msgid": m(), "fixmedins_code": code, "fixmedins_name": "时钟",
                   "fixmedins_type": "2", "admdvs": "440106", "inf_time": time}),
        )
        .await
        .ok();
    }

    pub async fn credit(&self, items: &[(&str, &str)]) -> Value {
        let items: Vec<Value> = items
            .iter()
            .map(|(p, a)| json!({"psn_no": p, "amount": a}))
            .collect();
        self.post(
            &self.admin,
            "/v1/credits",
            json!({"msgid": m(), "period": PERIOD, "items": items}),
        )
        .await
        .ok()
    }

    pub async fn bind(&self, giver: &str, receiver: &str, relation: &str) -> Value {
        self.post(
            &self.admin,
            "/v1/bindings",
            json!({"msgid": m(), "giver_psn_no": giver, "receiver_psn_no": receiver,
                   "relation": relation}),
        )
        .await
        .ok()
    }

    pub async fn open_wallet(&self, psn_no: &str) -> Value {
        self.post(
            &self.admin,
            &format!("/v1/persons/{psn_no}/wallet"),
            json!({"msgid": m()}),
        )
        .await
        .ok()
    }

    pub async fn person(&self, psn_no: &str) -> Value {
        self.get(&self.admin, &format!("/v1/persons/{psn_no}"))
            .await
            .ok()
    }

    pub async fn settle(&self, code: &str, psn_no: &str, medfee: &str, fund: &str) -> Value {
        self.post(
            &self.admin,
            "/v1/settlements",
            json!({"msgid": m(), "fixmedins_code": code, "psn_no": psn_no,
                   "medfee_sumamt": medfee, "fund_pay_sumamt": fund}),
        )
        .await
        .ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Before the directory goes: the writer and the shadow stop first.
        let _ = self.engine.shutdown();
    }
}

/// The standard cast, at `T0` (2030-05-20 09:00 CST):
/// - institutions `H1` (`H44010600001`) and `H2` (`H44010600002`), both in 440106;
/// - `PA` 310 in 440106 (Guangzhou), credited 1000.00;
/// - `PB` 310 in 440106, credited 10.00, PA's spouse (PA gives to PB, in province);
/// - `PC` 390 in 440305 (Shenzhen, same province, another pool), PA's child;
/// - `PD` 310 in 110101 (Beijing), credited 500.00, PA's sibling (wallet only), wallet open;
/// - `PE` 310 in 440106, credited 100.00, bound to nobody.
///
/// Tokens: admin, `h1`, `h2`, `pa`, `pb`, `pc`, `pd`, `pe`.
pub struct World {
    pub s: Server,
    pub admin: String,
    pub h1: String,
    pub h2: String,
    pub pa: String,
    pub pb: String,
    pub pc: String,
    pub pd: String,
    pub pe: String,
    pub ab: String,
    pub ac: String,
    pub ad: String,
}

pub const H1: &str = "H44010600001";
pub const H2: &str = "H44010600002";

impl World {
    pub async fn new() -> World {
        World::on(Server::start().await).await
    }

    pub async fn on(s: Server) -> World {
        s.at(T0).await;
        s.institution(H1).await;
        s.institution(H2).await;
        s.enrol("PA", "310", "440106").await;
        s.enrol("PB", "310", "440106").await;
        s.enrol("PC", "390", "440305").await;
        s.enrol("PD", "310", "110101").await;
        s.enrol("PE", "310", "440106").await;
        s.credit(&[
            ("PA", "1000.00"),
            ("PB", "10.00"),
            ("PD", "500.00"),
            ("PE", "100"),
        ])
        .await;
        let ab = s.bind("PA", "PB", "spouse").await["binding_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ac = s.bind("PA", "PC", "child").await["binding_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ad = s.bind("PA", "PD", "sibling").await["binding_id"]
            .as_str()
            .unwrap()
            .to_owned();
        s.open_wallet("PD").await;
        World {
            admin: s.admin.clone(),
            h1: s.token("institution", Some(("fixmedins_code", H1))).await,
            h2: s.token("institution", Some(("fixmedins_code", H2))).await,
            pa: s.token("person", Some(("psn_no", "PA"))).await,
            pb: s.token("person", Some(("psn_no", "PB"))).await,
            pc: s.token("person", Some(("psn_no", "PC"))).await,
            pd: s.token("person", Some(("psn_no", "PD"))).await,
            pe: s.token("person", Some(("psn_no", "PE"))).await,
            ab,
            ac,
            ad,
            s,
        }
    }
}
