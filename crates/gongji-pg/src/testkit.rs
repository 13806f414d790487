//! Real PostgreSQL for tests: never a mock.
//!
//! [`TestDb::new`] gives a test its own fresh database on a real server and drops it afterwards.
//! The server is the one named by `GONGJI_TEST_PG` (a connection string to a superuser's
//! database, which `.ci/run` starts and exports); without it, the first call starts a throwaway
//! cluster with Debian's PostgreSQL binaries in a temporary directory on a free loopback port,
//! as a non-root user, and a watchdog shell stops and removes it when the test process exits.
//! When the binaries are missing and the tests run as root, it installs Debian's `postgresql`
//! package first, so `cargo test --workspace` needs nothing installed by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable naming a running server for tests.
pub const ENV: &str = "GONGJI_TEST_PG";

/// A database of its own for one test, dropped when this is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// Connection string of the test's database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates a fresh, empty database. Panics with the reason when no server can be had.
    pub fn new() -> TestDb {
        let admin_url = server_url();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "gongji_test_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let mut admin = crate::connect(&admin_url)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", crate::redact(&admin_url)));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        TestDb {
            url: crate::database_url(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// A new client on the test's database.
    pub fn client(&self) -> postgres::Client {
        crate::connect(&self.url).expect("connect to the test database")
    }
}

impl Default for TestDb {
    fn default() -> Self {
        TestDb::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = crate::connect(&self.admin_url) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Replaces the database of a `postgres://…/db?…` URL.
fn server_url() -> String {
    if let Ok(url) = std::env::var(ENV) {
        if !url.is_empty() {
            return url;
        }
    }
    static STARTED: OnceLock<Result<String, String>> = OnceLock::new();
    STARTED
        .get_or_init(start_throwaway)
        .clone()
        .unwrap_or_else(|e| panic!("no PostgreSQL for tests: {e}"))
}

fn bin_dir() -> Result<PathBuf, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL server not installed (apt-get install -y postgresql), and GONGJI_TEST_PG not set".to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().ok_or_else(|| {
        "no initdb under /usr/lib/postgresql/*/bin (apt-get install -y postgresql)".into()
    })
}

/// On a fresh machine the server package is missing: as root, install Debian's `postgresql`
/// (what `.ci/run` does too), so that `cargo test --workspace` needs nothing installed by hand.
fn install_server(missing: &str) -> Result<(), String> {
    install_debian_packages(&["postgresql"], missing)
}

/// Installs Debian `packages` that a test needs and the machine lacks (`missing` says what
/// is missing), when the tests run as root as on a fresh machine; otherwise says how.
pub fn install_debian_packages(packages: &[&str], missing: &str) -> Result<(), String> {
    let list = packages.join(" ");
    if !is_root() {
        return Err(format!(
            "{missing}; run as root to have the tests install it (apt-get install -y {list})"
        ));
    }
    eprintln!("tests: {missing}; installing Debian's {list}");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let install = [&["install", "-y", "-qq"][..], packages].concat();
    if apt(&["update", "-qq"]) && apt(&install) {
        Ok(())
    } else {
        Err(format!("{missing}; apt-get install {list} failed"))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Runs `args` as the cluster's owner: ourselves, or a system user when we are root (the
/// server refuses to run as root).
fn as_owner(user: Option<&str>, program: &Path, args: &[&str]) -> Command {
    match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program).args(args);
            c
        }
        None => {
            let mut c = Command::new(program);
            c.args(args);
            c
        }
    }
}

fn start_throwaway() -> Result<String, String> {
    let bin = match bin_dir() {
        Ok(bin) => bin,
        Err(missing) => {
            install_server(&missing)?;
            bin_dir()?
        }
    };
    let user = if is_root() {
        let user = "gongjitest";
        let exists = Command::new("id")
            .arg("-u")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !exists {
            let ok = Command::new("useradd")
                .args(["--system", "--no-create-home", user])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(format!("useradd {user} failed"));
            }
        }
        Some(user)
    } else {
        None
    };
    let dir = std::env::temp_dir().join(format!("gongji-pgtest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    if let Some(user) = user {
        let ok = Command::new("chown")
            .arg(user)
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err("chown of the test cluster directory failed".into());
        }
    }
    let data = dir.join("data");
    let data_s = data.to_string_lossy().into_owned();
    let out = as_owner(
        user,
        &bin.join("initdb"),
        &["-D", &data_s, "-U", "postgres", "--auth=trust", "--no-sync"],
    )
    .output()
    .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port()?;
    let dir_s = dir.to_string_lossy().into_owned();
    let options = format!(
        "-p {port} -k {dir_s} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on"
    );
    let log = dir.join("log").to_string_lossy().into_owned();
    let start = as_owner(
        user,
        &bin.join("pg_ctl"),
        &["-D", &data_s, "-w", "-l", &log, "-o", &options, "start"],
    )
    .output()
    .map_err(|e| format!("pg_ctl: {e}"))?;
    if !start.status.success() {
        return Err(format!(
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        ));
    }
    // The watchdog: when this test process is gone, stop the cluster and remove it.
    let pg_ctl = bin.join("pg_ctl").to_string_lossy().into_owned();
    let stop_line = match user {
        Some(user) => format!("runuser -u {user} -- '{pg_ctl}' -D '{data_s}' -m immediate stop"),
        None => format!("'{pg_ctl}' -D '{data_s}' -m immediate stop"),
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop_line} >/dev/null 2>&1; rm -rf '{dir_s}'",
        pid = std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match crate::connect(&url) {
            Ok(_) => return Ok(url),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("server did not accept: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
