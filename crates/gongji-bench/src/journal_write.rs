//! `gongji bench journal-write`: the journal's write and sync alone, three ways, on the disk
//! of `--dir`. Each way appends batches of a given size back to back into a 64 MiB segment and
//! makes each durable before the next, as the sync thread does:
//!
//! - **sparse** (what `Journal` does today): the segment is created with `set_len` (a sparse
//!   file), each batch is one `pwrite` and one `fdatasync`. Writing into a hole allocates
//!   blocks, so the sync also commits file-system metadata.
//! - **zeroed**: the segment is filled with zeros and synced first (untimed: it can be done
//!   ahead, off the hot path), so each batch overwrites allocated blocks in place and
//!   `fdatasync` has no metadata to write.
//! - **direct**: the zeroed segment opened with `O_DIRECT`; each batch is written from a
//!   4 KiB-aligned buffer in whole 4 KiB blocks (the partial block at the tail written again
//!   by the next batch), then `fdatasync` (O_DIRECT alone does not flush the device's cache).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Instant;

use crate::sys::{CpuSample, Machine};

const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const BLOCK: usize = 4096;
/// `O_DIRECT` on Linux x86-64 and aarch64 (asm-generic differs on aarch64: 0o200000).
#[cfg(target_arch = "x86_64")]
const O_DIRECT: i32 = 0o40000;
#[cfg(not(target_arch = "x86_64"))]
const O_DIRECT: i32 = 0o200000;

#[derive(Clone, Debug)]
pub struct JournalWriteOptions {
    pub dir: PathBuf,
    /// Batches timed per way and size.
    pub batches: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Sparse,
    Zeroed,
    Direct,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Sparse => "sparse (today)",
            Way::Zeroed => "zeroed, in place",
            Way::Direct => "zeroed + O_DIRECT",
        }
    }
}

/// A buffer aligned to [`BLOCK`] for `O_DIRECT`.
struct Aligned {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let raw = vec![0u8; len + BLOCK];
        let start = raw.as_ptr().align_offset(BLOCK);
        Aligned { raw, start, len }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

fn segment(opts: &JournalWriteOptions, way: Way, size: usize) -> std::io::Result<(File, PathBuf)> {
    let path = opts.dir.join(format!(
        "gongji-journal-write-{}-{:?}-{size}.seg",
        std::process::id(),
        way
    ));
    let _ = std::fs::remove_file(&path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    match way {
        Way::Sparse => file.set_len(SEGMENT_BYTES)?,
        Way::Zeroed | Way::Direct => {
            let zeros = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < SEGMENT_BYTES {
                file.write_all_at(&zeros, at)?;
                at += zeros.len() as u64;
            }
            file.sync_all()?;
        }
    }
    if way == Way::Direct {
        drop(file);
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(O_DIRECT)
            .open(&path)?;
        return Ok((file, path));
    }
    Ok((file, path))
}

/// Nanoseconds of each batch's write and sync.
fn run(opts: &JournalWriteOptions, way: Way, size: usize) -> std::io::Result<Vec<u64>> {
    let (file, path) = segment(opts, way, size)?;
    let mut rng = splitmix::SplitMix64::new(size as u64);
    let mut payload = vec![0u8; size];
    for b in payload.iter_mut() {
        *b = rng.next_u64() as u8;
    }
    // The direct way rewrites the partial tail block: the buffer holds it and the batch.
    let mut aligned = Aligned::new(size.div_ceil(BLOCK) * BLOCK + BLOCK);
    let mut tail = 0u64;
    let mut ns = Vec::with_capacity(opts.batches);
    for _ in 0..opts.batches {
        if tail + size as u64 + BLOCK as u64 > SEGMENT_BYTES {
            tail = 0;
        }
        let started = Instant::now();
        match way {
            Way::Sparse | Way::Zeroed => file.write_all_at(&payload, tail)?,
            Way::Direct => {
                let block_start = tail / BLOCK as u64 * BLOCK as u64;
                let lead = (tail - block_start) as usize;
                let len = (lead + size).div_ceil(BLOCK) * BLOCK;
                let buf = aligned.bytes_mut();
                buf[lead..lead + size].copy_from_slice(&payload);
                file.write_all_at(&buf[..len], block_start)?;
                // The next batch starts with this batch's last partial block.
                let keep_from = (lead + size) / BLOCK * BLOCK;
                buf.copy_within(keep_from..lead + size, 0);
            }
        }
        file.sync_data()?;
        ns.push(started.elapsed().as_nanos() as u64);
        tail += size as u64;
    }
    drop(file);
    std::fs::remove_file(path)?;
    Ok(ns)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i] as f64 / 1e6
}

/// Runs every way for batches of one op, 1,000 ops and 8,190 ops (about 250 bytes each) and
/// returns the report.
pub fn journal_write_bench(opts: &JournalWriteOptions) -> std::io::Result<String> {
    let mut out = String::new();
    let machine = Machine::detect();
    let _ = writeln!(
        out,
        "gongji bench journal-write: pwrite + fdatasync per batch"
    );
    let _ = writeln!(out, "{machine}");
    let _ = writeln!(
        out,
        "dir = {}, {} batches per way and size, 64 MiB segment; load average {:.2} before",
        opts.dir.display(),
        opts.batches,
        CpuSample::now().loadavg_1m
    );
    for size in [256usize, 250 * 1000, 250 * 8190] {
        for way in [Way::Sparse, Way::Zeroed, Way::Direct] {
            let mut ns = run(opts, way, size)?;
            ns.sort_unstable();
            let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1e6;
            let _ = writeln!(
                out,
                "batch {:>9} B  {:<18} mean {:>7.3} ms  p50 {:>7.3} ms  p99 {:>7.3} ms  p100 {:>8.3} ms",
                size,
                way.name(),
                mean,
                pct(&ns, 50.0),
                pct(&ns, 99.0),
                pct(&ns, 100.0)
            );
        }
    }
    let _ = writeln!(out, "load average {:.2} after", CpuSample::now().loadavg_1m);
    Ok(out)
}
