//! gongji-fuzz: coverage-less fuzzing of the three decoders that read bytes a disk or a
//! hostile copy could have changed: [`gongji_core::codec::decode_op`],
//! [`gongji_core::State::decode_snapshot`] and the journal's recovery scan
//! ([`gongji_journal::Journal::open`] over in-memory segment files).
//!
//! Main items: [`Mutator`] (random bytes, and valid encodings with bit flips, hostile
//! integers, truncations, splices, insertions and deletions, so inputs get past the magic and
//! version checks), [`run`] (the driver: a fixed seed, a case count from `GONGJI_FUZZ_CASES`,
//! the failing input printed in hex), [`targets`] (the properties) and [`seeds`] (valid
//! inputs). The tests in `tests/fuzz.rs` run each target for a few seconds;
//! `GONGJI_FUZZ_CASES=10000000 cargo test --release -p gongji-fuzz -- --nocapture` runs ten
//! million inputs per target.
//!
//! Rejected: `cargo fuzz` (needs a nightly toolchain and a sanitizer runtime; the workspace
//! builds on stable), proptest (its shrinking and per-case overhead cost more than the
//! decoders themselves at ten million cases; a failing input here is small enough to read).

pub mod alloc;
pub mod seeds;
pub mod targets;

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

/// SplitMix64: small, seedable, and every case is reproducible from (seed, case number).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0); the bias of `%` does not matter here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Integers that make length and count fields hostile or sit on boundaries.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
];

/// Makes inputs from valid encodings (the seeds) and from nothing.
#[derive(Debug)]
pub struct Mutator<'a> {
    pub seeds: &'a [Vec<u8>],
    /// Length bound of purely random inputs.
    pub random_len_max: usize,
}

impl Mutator<'_> {
    /// One input: one time in eight random bytes, otherwise a seed with one to four mutations.
    pub fn input(&self, rng: &mut Rng) -> Vec<u8> {
        if self.seeds.is_empty() || rng.chance(8) {
            let len = rng.below(self.random_len_max + 1);
            return (0..len).map(|_| rng.next_u64() as u8).collect();
        }
        let mut bytes = self.seeds[rng.below(self.seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            self.mutate(&mut bytes, rng);
        }
        bytes
    }

    fn mutate(&self, b: &mut Vec<u8>, rng: &mut Rng) {
        let len = b.len();
        let at = rng.below(len + 1);
        match rng.below(8) {
            0 | 1 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => b[rng.below(len)] = rng.next_u64() as u8,
            3 => {
                // A hostile or boundary integer of 1, 2, 4 or 8 bytes, little-endian.
                let width = 1 << rng.below(4);
                let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let end = (at + width).min(len);
                b[at..end].copy_from_slice(&value[..end - at]);
            }
            4 => b.truncate(at),
            5 => {
                // Splice: this input's prefix, another seed's suffix.
                let other = &self.seeds[rng.below(self.seeds.len())];
                let from = rng.below(other.len() + 1);
                b.truncate(at);
                b.extend_from_slice(&other[from..]);
            }
            6 => {
                let n = 1 + rng.below(16);
                let insert: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(at..at, insert);
            }
            _ if len > 0 => {
                let end = (at + 1 + rng.below(16)).min(len);
                b.drain(at.min(end)..end);
            }
            _ => b.push(rng.next_u64() as u8),
        }
    }
}

/// Cases per target: `GONGJI_FUZZ_CASES` if set, else `default`.
pub fn cases(default: u64) -> u64 {
    match std::env::var("GONGJI_FUZZ_CASES") {
        Ok(v) => v
            .trim()
            .parse()
            .expect("GONGJI_FUZZ_CASES is a number of cases"),
        Err(_) => default,
    }
}

/// The base seed: `GONGJI_FUZZ_SEED` if set, else 1 (so CI is reproducible).
pub fn base_seed() -> u64 {
    match std::env::var("GONGJI_FUZZ_SEED") {
        Ok(v) => v.trim().parse().expect("GONGJI_FUZZ_SEED is a number"),
        Err(_) => 1,
    }
}

/// What a run did.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub cases: u64,
    /// Inputs the target accepted (decoded, or recovered from).
    pub accepted: u64,
    pub seconds: f64,
}

/// Runs `check` on `cases` inputs from `mutator`. `check` returns whether the input was
/// accepted and panics on a violated property; the panic is re-raised after the input, the
/// seed and the case number are printed.
pub fn run(
    name: &str,
    cases: u64,
    mutator: &Mutator<'_>,
    mut check: impl FnMut(&[u8]) -> bool,
) -> Outcome {
    let seed = base_seed();
    let started = Instant::now();
    let mut accepted = 0;
    for case in 0..cases {
        let mut rng = Rng(seed ^ case.wrapping_mul(0xa076_1d64_78bd_642f));
        let input = mutator.input(&mut rng);
        match panic::catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(cause) => {
                eprintln!(
                    "fuzz {name}: case {case} of seed {seed} failed \
                     (GONGJI_FUZZ_SEED={seed}); input ({} bytes): {}",
                    input.len(),
                    hex(&input)
                );
                panic::resume_unwind(cause);
            }
        }
        if (case + 1) % 1_000_000 == 0 {
            let s = started.elapsed().as_secs_f64();
            eprintln!(
                "fuzz {name}: {} cases, {accepted} accepted, {s:.0} s",
                case + 1
            );
        }
    }
    let outcome = Outcome {
        cases,
        accepted,
        seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "fuzz {name}: {cases} cases (seed {seed}), {accepted} accepted, no failure, {:.1} s",
        outcome.seconds
    );
    outcome
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Inverse of [`hex`], for regression inputs.
pub fn unhex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
        .collect()
}
