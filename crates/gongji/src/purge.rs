//! Gives freed memory back to the system while the process is at rest.
//!
//! mimalloc returns a freed span to the system a second after it was freed (its purge delay),
//! but only when some thread next allocates or frees: a process at rest keeps what its last
//! burst freed (a population's msgid records, a snapshot's sorted copy, a start's decode),
//! 0.6 GB of a 10 M-person engine's 2.9 GB at rest (BENCHMARKS.md, Recovery: the 10 M-person
//! end to end). Purging at each free instead
//! (`MIMALLOC_PURGE_DELAY=0`) cost 11 % of the end-to-end throughput. So a thread of its own
//! wakes once a second and asks mimalloc to purge what has expired, as jemalloc's background
//! thread does; a busy writer meanwhile purges as before, in its own allocations.

use std::time::Duration;

/// How often the purge thread wakes: the purge delay, so freed memory stays at most about two
/// of them.
const PERIOD: Duration = Duration::from_secs(1);

/// Starts the purge thread (detached; it lives as long as the process).
pub fn spawn() {
    let spawned = std::thread::Builder::new()
        .name("purge".into())
        .spawn(|| loop {
            std::thread::sleep(PERIOD);
            collect();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "purge thread not started: freed memory is returned lazily");
    }
}

/// One purge of the spans whose delay has expired (not forced: a span freed less than a second
/// ago stays for reuse; mimalloc visits a quarter of its arenas a call, all within a few).
#[allow(unsafe_code)] // the crate's one `unsafe`: a C function with no arguments (Cargo.toml)
fn collect() {
    // SAFETY: `mi_collect` takes no pointer and may be called from any thread at any time;
    // it touches only mimalloc's own structures, under its own synchronisation.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

#[cfg(test)]
mod tests {
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Proves: memory freed more than a purge delay ago leaves the process at the next
    /// collects, with nothing else allocating meanwhile (the test binary's allocator is the
    /// binary's, mimalloc); and the call is sound on a thread that never allocated. Measured
    /// in a process of its own ([`measure`]): the other tests of this binary allocate and free
    /// beside it, and RSS is the process's.
    #[test]
    fn freed_memory_is_returned_after_the_delay() {
        let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "purge::tests::measure",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(MEASURE, "1")
            .output()
            .expect("the test binary runs");
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
    }

    const MEASURE: &str = "GONGJI_PURGE_MEASURE";

    #[test]
    #[ignore = "run alone in a process of its own by freed_memory_is_returned_after_the_delay"]
    fn measure() {
        if std::env::var_os(MEASURE).is_none() {
            return;
        }
        let mut blocks: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 4 << 20]).collect();
        let held = rss_kib();
        blocks.clear();
        blocks.shrink_to_fit();
        std::thread::sleep(std::time::Duration::from_millis(1_200));
        std::thread::spawn(super::collect).join().unwrap();
        // A call visits some of the arenas: a few in a row (the purge thread makes one a
        // second) visit them all. Nothing allocates between them and the measure, which
        // would let mimalloc purge on its own.
        for _ in 0..8 {
            super::collect();
        }
        let after = rss_kib();
        // Without the collects about half comes back anyway (mimalloc returns some spans on
        // its own); with them, all of it.
        assert!(
            held.saturating_sub(after) > 192 * 1024,
            "256 MiB freed: RSS {held} KiB held, {after} KiB after the collects"
        );
    }
}
