//! `gongji simulate` and `gongji dst`: thin glue over `gongji-sim`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use gongji_core::time::parse_period;
use gongji_sim::dst::{run_seed, DstOptions};
use gongji_sim::runner::{simulate, SimulateOptions};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Population factor: 0.001 simulates 379,500 employees and 946,900 residents.
    #[arg(long, default_value_t = 0.001)]
    pub scale: f64,
    /// First month, YYYY-MM (2025).
    #[arg(long, default_value = "2025-01")]
    pub from: String,
    /// Last month, YYYY-MM (2025).
    #[arg(long, default_value = "2025-05")]
    pub to: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Data directory (must be empty or new); a temporary one when absent.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run deterministic simulation testing instead (see `gongji dst`).
    #[arg(long)]
    pub dst: bool,
    /// With --dst: how many seeds.
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// With --dst: the first seed.
    #[arg(long, default_value_t = 1)]
    pub from_seed: u64,
}

#[derive(Debug, clap::Args)]
pub struct DstArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub from_seed: u64,
    /// Simulated days per seed.
    #[arg(long, default_value_t = 12)]
    pub days: i32,
}

pub fn run(args: SimulateArgs) -> Result<()> {
    if args.dst {
        return dst(DstArgs {
            seeds: args.seeds,
            from_seed: args.from_seed,
            days: 12,
        });
    }
    let opts = SimulateOptions {
        scale: args.scale,
        from: parse_period(&args.from).context("--from must be YYYY-MM")?,
        to: parse_period(&args.to).context("--to must be YYYY-MM")?,
        seed: args.seed,
        data: args.data,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let report = simulate(&opts).map_err(anyhow::Error::msg)?;
    print!("{report}");
    if let Err(e) = &report.check {
        bail!("state check failed: {e}");
    }
    Ok(())
}

pub fn dst(args: DstArgs) -> Result<()> {
    if args.days < 1 {
        bail!("--days must be at least 1");
    }
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for seed in args.from_seed..args.from_seed.saturating_add(args.seeds) {
        let mut opts = DstOptions::new(seed);
        opts.days = args.days;
        match run_seed(&opts) {
            Ok(outcome) => println!("{outcome}"),
            Err(e) => {
                println!("{e}");
                failures.push(seed);
            }
        }
    }
    seeds_summary(
        args.seeds,
        started,
        &failures,
        "deterministic simulation testing",
    )
}

/// The last line of a run over seeds (`dst`, `federation dst`): how many, how long, which
/// failed; an error naming `what` when any did.
pub(crate) fn seeds_summary(
    seeds: u64,
    started: std::time::Instant,
    failures: &[u64],
    what: &str,
) -> Result<()> {
    println!(
        "{} seeds in {:.1} s, {} failed{}",
        seeds,
        started.elapsed().as_secs_f64(),
        failures.len(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(": seeds {failures:?}")
        }
    );
    if !failures.is_empty() {
        bail!("{what} failed");
    }
    Ok(())
}
