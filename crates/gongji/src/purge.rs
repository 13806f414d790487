//! Gives freed memory back to the system while the process is at rest.
//!
//! mimalloc returns a freed span to the system a second after it was freed (its purge delay),
//! but only when some thread next allocates or frees: a process at rest keeps what its last
//! burst freed (a population's msgid records, a snapshot's sorted copy, a start's decode),
//! 1 GB of a 10 M-person engine's 2.9 GB (BENCHMARKS.md, Memory). Purging at each free instead
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

/// One purge of the spans whose delay has expired, in every arena (not forced: a span freed
/// less than a second ago stays for reuse).
#[allow(unsafe_code)] // the crate's one `unsafe`: a C function with no arguments (Cargo.toml)
fn collect() {
    // SAFETY: `mi_collect` takes no pointer and may be called from any thread at any time;
    // it touches only mimalloc's own structures, under its own synchronisation.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

#[cfg(test)]
mod tests {
    /// The call is sound on a thread that never allocated and on one that did.
    #[test]
    fn collect_runs_on_any_thread() {
        super::collect();
        let v = vec![0u8; 64 << 20];
        drop(v);
        std::thread::spawn(super::collect).join().unwrap();
        super::collect();
    }
}
