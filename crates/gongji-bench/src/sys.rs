//! The machine and the process's memory, read from `/proc` (no libc, no unsafe).

use std::fmt;

/// What the bench ran on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    /// First `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// CPUs this process may use (what `nproc` prints).
    pub cpus: usize,
    /// `MemTotal` of `/proc/meminfo`, in KiB.
    pub mem_total_kib: u64,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mem_total_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| field_kib(&s, "MemTotal:"))
            .unwrap_or(0);
        Machine {
            cpu_model,
            cpus,
            mem_total_kib,
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, nproc {}, MemTotal {:.1} GiB",
            self.cpu_model,
            self.cpus,
            self.mem_total_kib as f64 / (1024.0 * 1024.0)
        )
    }
}

/// Resident set size now and at its peak, from `/proc/self/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rss {
    /// `VmRSS`.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident set size so far.
    pub hwm_kib: u64,
}

impl Rss {
    /// Zeros where `/proc` is not available.
    pub fn now() -> Rss {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Rss {
            rss_kib: field_kib(&status, "VmRSS:").unwrap_or(0),
            hwm_kib: field_kib(&status, "VmHWM:").unwrap_or(0),
        }
    }
}

impl fmt::Display for Rss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VmRSS {} (VmHWM {})",
            mib(self.rss_kib),
            mib(self.hwm_kib)
        )
    }
}

/// `12345 KiB` as `"12.1 MiB"`.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The number of a `Name:   1234 kB` line.
fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(field_kib(s, "VmRSS:"), Some(1024));
        assert_eq!(field_kib(s, "VmHWM:"), Some(2048));
        assert_eq!(field_kib(s, "VmSwap:"), None);
    }

    #[test]
    fn reads_this_process() {
        if std::path::Path::new("/proc/self/status").exists() {
            let r = Rss::now();
            assert!(r.rss_kib > 0 && r.hwm_kib >= r.rss_kib);
        }
    }
}
