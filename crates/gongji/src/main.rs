//! `gongji`: the command. Thin glue over the library crates.

mod config;
mod demo;
mod ops;
mod serve;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gongji",
    version,
    about = "Family mutual aid of medical-insurance accounts"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve the HTTP API on a data directory (created on first start, with an admin token).
    Serve(serve::ServeArgs),
    /// Check every journal record, the hash chain and the snapshots, replay, and print counts
    /// and the head hash; exits non-zero on damage. Changes nothing on disk.
    Verify(ops::DataArgs),
    /// Print the statistics table of a data directory for a range of months.
    Report(ops::ReportArgs),
    /// Issue a token offline (the server must not be running on the directory).
    Token(ops::TokenArgs),
    /// Walk one family through enrolment, binding, mutual-aid settlement, a wallet transfer,
    /// a cancellation, the statistics and the reconciliation (in memory, deterministic).
    Demo,
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// The in-memory state machine alone: build a population, apply mixed commands, time them.
    Core {
        /// Persons enrolled before the run.
        #[arg(long, default_value_t = 1_000_000)]
        persons: u32,
        /// Mixed commands applied in the timed run.
        #[arg(long, default_value_t = 10_000_000)]
        commands: u64,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Settlements of the second, settlements-only pass (0: skip it).
        #[arg(long, default_value_t = 1_000_000)]
        pure_settlements: u64,
        /// Designated institutions.
        #[arg(long, default_value_t = 1_000)]
        institutions: u32,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve(args) => {
            ops::init_logging();
            serve::run(args)
        }
        Cmd::Verify(args) => ops::verify(args),
        Cmd::Report(args) => ops::report(args),
        Cmd::Token(args) => ops::token(args),
        Cmd::Demo => demo::run(),
        Cmd::Bench {
            what:
                BenchCmd::Core {
                    persons,
                    commands,
                    seed,
                    pure_settlements,
                    institutions,
                },
        } => {
            if persons == 0 || institutions == 0 {
                bail!("--persons and --institutions must be at least 1");
            }
            let report = gongji_bench::core_bench(gongji_bench::CoreBenchOptions {
                persons,
                commands,
                seed,
                pure_settlements,
                institutions,
                progress: true,
            });
            print!("{report}");
            if let Err(e) = &report.check {
                bail!("state check failed: {e}");
            }
            Ok(())
        }
    }
}
