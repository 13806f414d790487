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
    /// `RssFile`: the part of `VmRSS` that is mapped files (the snapshot whose msgid section
    /// the engine reads where it lies), which the kernel may drop and read again.
    pub file_kib: u64,
}

impl Rss {
    /// Zeros where `/proc` is not available.
    pub fn now() -> Rss {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Rss {
            rss_kib: field_kib(&status, "VmRSS:").unwrap_or(0),
            hwm_kib: field_kib(&status, "VmHWM:").unwrap_or(0),
            file_kib: field_kib(&status, "RssFile:").unwrap_or(0),
        }
    }
}

impl fmt::Display for Rss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VmRSS {} (VmHWM {}, RssFile {})",
            mib(self.rss_kib),
            mib(self.hwm_kib),
            mib(self.file_kib)
        )
    }
}

/// CPU time used so far by each thread of this process, by thread name, in clock ticks
/// (`utime + stime` of `/proc/self/task/*/stat`; threads of the same name are summed), and the
/// machine's 1-minute load average. Empty where `/proc` is not available.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuSample {
    pub threads: std::collections::BTreeMap<String, u64>,
    pub loadavg_1m: f64,
}

/// Clock ticks per second of `/proc` stat times (`USER_HZ`, 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

impl CpuSample {
    pub fn now() -> CpuSample {
        CpuSample::of("self")
    }

    /// The threads of process `pid` (`"self"`, or a child's id).
    pub fn of(pid: &str) -> CpuSample {
        let mut threads = std::collections::BTreeMap::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                    continue;
                };
                if let Some((name, ticks)) = parse_stat(&stat) {
                    *threads.entry(name).or_default() += ticks;
                }
            }
        }
        let loadavg_1m = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        CpuSample {
            threads,
            loadavg_1m,
        }
    }

    /// Seconds of CPU all threads used between `earlier` and `self`.
    pub fn total_since(&self, earlier: &CpuSample) -> f64 {
        self.since(earlier).iter().map(|(_, s)| s).sum()
    }

    /// Seconds of CPU each thread name used between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuSample) -> Vec<(String, f64)> {
        self.threads
            .iter()
            .map(|(name, &t)| {
                let before = earlier.threads.get(name).copied().unwrap_or(0);
                (
                    name.clone(),
                    t.saturating_sub(before) as f64 / TICKS_PER_SECOND,
                )
            })
            .collect()
    }
}

/// `(comm, utime + stime)` of a `/proc/…/stat` line; the name is in parentheses and may hold
/// spaces, so fields are counted after the last `)`.
/// CPU seconds this process has used, its exited threads included (`/proc/self/stat`, where
/// the per-thread files of [`CpuSample`] lose a thread once it ends); 0 without `/proc`.
pub fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    parse_stat(&stat).map_or(0.0, |(_, ticks)| ticks as f64 / TICKS_PER_SECOND)
}

fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
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
    fn parses_thread_stat() {
        let line = "4242 (gongji writer) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("gongji writer".to_owned(), 280)));
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        if std::path::Path::new("/proc/self/status").exists() {
            let r = Rss::now();
            assert!(r.rss_kib > 0 && r.hwm_kib >= r.rss_kib);
        }
    }
}
