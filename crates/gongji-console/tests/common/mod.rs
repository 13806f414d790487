//! Helpers for the console tests: a real `gongji serve` router (API and console) on
//! 127.0.0.1:0 over a fresh data directory, the cast of persons the pages show, and a small
//! W3C WebDriver client (`webdriver.rs`) for headless Chromium through chromedriver.

#![allow(dead_code)]

pub mod http;
pub mod webdriver;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gongji_http::App;
use gongji_server::{Config, Engine};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// Every write of the cast is at this CST time, far after the machine's clock, so the engine
/// clock (and the overview's default range, the institution's default day) is known.
pub const T0: &str = "2030-05-20 09:00:00";
pub const DAY: &str = "2030-05-20";
pub const H1: &str = "H44010600001";
pub const H2: &str = "H44010600002";
/// An institution whose name is markup: every page that echoes it must escape it.
pub const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)><script>alert(2)</script>";

pub fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn m() -> String {
    format!("t{}", unique())
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "gongji-console-{what}-{}-{}-{nanos}",
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

pub struct Server {
    pub base: String,
    pub admin: String,
    pub engine: Arc<Engine>,
    pub client: reqwest::Client,
    _dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Server {
    /// A server on the embedded store (files in a fresh data directory).
    pub async fn start() -> Server {
        Server::start_with(|config| Engine::open(config).expect("engine opens").0).await
    }

    /// A server on the embedded store whose writer samples its load every second.
    pub async fn start_sampling_each_second() -> Server {
        Server::start_with(|mut config| {
            config.load_sample_seconds = 1;
            Engine::open(config).expect("engine opens").0
        })
        .await
    }

    /// A server with its journal and snapshots in PostgreSQL at `url` (`serve --store`).
    pub async fn start_postgres(url: String) -> Server {
        Server::start_with(move |config| {
            let store = gongji_pg::PgStore::open(&url, gongji_pg::PgStoreOptions::default())
                .expect("postgres store");
            Engine::open_with(config, "postgres", Box::new(store))
                .expect("engine opens")
                .0
        })
        .await
    }

    async fn start_with(open: impl FnOnce(Config) -> Engine + Send + 'static) -> Server {
        let dir = TempDir::new("data");
        let config = Config::new(&dir.0);
        let journal_dir = config.journal_dir();
        let journal_config = config.journal;
        let admin_path = config.admin_token_path();
        let engine = tokio::task::spawn_blocking(move || open(config))
            .await
            .expect("open task");
        let engine = Arc::new(engine);
        let admin = std::fs::read_to_string(admin_path)
            .expect("admin.token")
            .trim()
            .to_owned();
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
        tokio::spawn(gongji_http::serve(listener, app, async {
            let _ = rx.await;
        }));
        Server {
            base: format!("http://{addr}"),
            admin,
            engine,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            _dir: dir,
            shutdown: Some(tx),
        }
    }

    /// An API call as `token`; returns (status, body as JSON or Null).
    pub async fn api(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.client.get(url),
            _ => self.client.post(url).json(&body.unwrap_or(json!({}))),
        };
        let resp = req.bearer_auth(token).send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// An API call that must succeed; its `output`.
    pub async fn ok(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.api(token, method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        v["output"].clone()
    }

    pub async fn admin_post(&self, path: &str, mut body: Value) -> Value {
        body["msgid"] = json!(m());
        body["inf_time"] = json!(T0);
        let admin = self.admin.clone();
        self.ok(&admin, "POST", path, Some(body)).await
    }

    pub async fn token(&self, role: &str, scope: Option<(&str, &str)>) -> String {
        self.token_with_id(role, scope).await.1
    }

    /// A new token: (token_id, token).
    pub async fn token_with_id(&self, role: &str, scope: Option<(&str, &str)>) -> (String, String) {
        let mut body = json!({"role": role});
        if let Some((k, v)) = scope {
            body[k] = json!(v);
        }
        let out = self.admin_post("/v1/tokens", body).await;
        let id = out["token_id"].as_str().expect("token_id").to_owned();
        (id, out["token"].as_str().expect("token").to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.engine.shutdown();
    }
}

/// The cast, all at `T0`:
/// - `H1` (name `HOSTILE_NAME`) and `H2`, in 440106;
/// - `PA` 310 in 440106, credited 1000.00, wallet open, gives to `PB` (spouse);
/// - `PB` 310 in 440106, credited 10.00, wallet open;
/// - a settlement of `PB` at `H1` that draws 90.00 from `PA` (mutual aid);
/// - a pending transfer of 100.00 from `PA`'s account to `PB` (`transfer_id`);
/// - `PX` 310 in 110101 (Beijing), credited 50.00, bound to nobody.
pub struct Cast {
    pub transfer_id: String,
    pub binding_id: String,
    pub setl_id: String,
    pub pa: String,
    pub pb: String,
    pub pb_token_id: String,
    pub h1: String,
}

pub async fn cast(s: &Server) -> Cast {
    for (code, name) in [(H1, HOSTILE_NAME), (H2, "中山医院")] {
        s.admin_post(
            "/v1/institutions",
            json!({"fixmedins_code": code, "fixmedins_name": name, "fixmedins_type": "1", "admdvs": "440106"}),
        )
        .await;
    }
    for (i, (psn, area)) in [("PA", "440106"), ("PB", "440106"), ("PX", "110101")]
        .iter()
        .enumerate()
    {
        let certno = gongji_core::certno::certno_with_check(&format!("{area}19800101{:03}", i + 1))
            .expect("certno");
        s.admin_post(
            "/v1/persons",
            json!({"psn_no": psn, "certno": certno, "psn_name": "张三丰", "insutype": "310", "admdvs": area}),
        )
        .await;
    }
    s.admin_post(
        "/v1/credits",
        json!({"period": "2030-05", "items": [
            {"psn_no": "PA", "amount": "1000.00"}, {"psn_no": "PB", "amount": "10.00"},
            {"psn_no": "PX", "amount": "50.00"}]}),
    )
    .await;
    let binding = s
        .admin_post(
            "/v1/bindings",
            json!({"giver_psn_no": "PA", "receiver_psn_no": "PB", "relation": "spouse"}),
        )
        .await;
    for p in ["PA", "PB"] {
        s.admin_post(&format!("/v1/persons/{p}/wallet"), json!({}))
            .await;
    }
    let setl = s
        .admin_post(
            "/v1/settlements",
            json!({"fixmedins_code": H1, "psn_no": "PB", "medfee_sumamt": "300.00", "fund_pay_sumamt": "200.00"}),
        )
        .await;
    assert_eq!(setl["acct_mulaid_pay"], "90.00", "{setl}");
    let transfer = s
        .admin_post(
            "/v1/wallet/transfers",
            json!({"from_psn_no": "PA", "to_psn_no": "PB", "amount": "100.00", "source": "acct"}),
        )
        .await;
    assert_eq!(transfer["status"], "pending");
    let pb = s.token_with_id("person", Some(("psn_no", "PB"))).await;
    Cast {
        transfer_id: transfer["transfer_id"].as_str().expect("id").to_owned(),
        binding_id: binding["binding_id"].as_str().expect("id").to_owned(),
        setl_id: setl["setl_id"].as_str().expect("id").to_owned(),
        pa: s.token("person", Some(("psn_no", "PA"))).await,
        pb: pb.1,
        pb_token_id: pb.0,
        h1: s.token("institution", Some(("fixmedins_code", H1))).await,
    }
}
