//! `gongji bench` without a subcommand: the end-to-end benchmark of `gongji_bench::e2e_bench`.

use anyhow::{bail, Result};

/// Options of the end-to-end benchmark (defaults sized to run in a few minutes).
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// Persons of the population (families, bindings, wallets), built through the writer.
    #[arg(long, default_value_t = 1_000_000)]
    persons: u32,
    /// Designated institutions.
    #[arg(long, default_value_t = 1_000)]
    institutions: u32,
    /// Length of the timed mixed run.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Commands per submitted batch (at most 8,190).
    #[arg(long, default_value_t = 8_190)]
    batch_ops: usize,
    /// Client threads, each with one batch in flight.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Offered load in commands/s (default: as fast as the clients go).
    #[arg(long)]
    load: Option<u64>,
    /// Person and statistics queries per second during the run.
    #[arg(long, default_value_t = 1_000)]
    query_rate: u64,
    /// Accounts credited in the crediting test (0: skip it).
    #[arg(long, default_value_t = 10_000_000)]
    credit_accounts: u32,
    /// Times the 5-month statistics query is timed after the run.
    #[arg(long, default_value_t = 100_000)]
    stats_queries: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory for the temporary data directories (removed afterwards).
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
    /// Run the peer in the same invocation: `pg` (../shared/peers/pg/bench.sh) or a path.
    #[arg(long)]
    peer: Option<String>,
    /// pgbench clients of the peer (its throwaway cluster takes 64 connections).
    #[arg(long, default_value_t = 16)]
    peer_clients: usize,
    /// Ops between snapshots in the mixed run (default: the engine's default).
    #[arg(long)]
    snapshot_interval_ops: Option<u64>,
}

pub fn run(
    args: E2eArgs,
    peer_script: fn(Option<String>) -> Result<Option<std::path::PathBuf>>,
) -> Result<()> {
    if args.persons < 10 || args.institutions == 0 || args.clients == 0 {
        bail!("--persons must be at least 10, --institutions and --clients at least 1");
    }
    if !(1..=gongji_server::SUBMISSION_OP_COUNT_MAX).contains(&args.batch_ops) {
        bail!(
            "--batch-ops must be 1 to {}",
            gongji_server::SUBMISSION_OP_COUNT_MAX
        );
    }
    if args.snapshot_interval_ops == Some(0) {
        bail!("--snapshot-interval-ops must be at least 1");
    }
    if !(1..=48).contains(&args.peer_clients) {
        bail!("--peer-clients must be 1 to 48");
    }
    let defaults = gongji_bench::E2eOptions::default();
    let opts = gongji_bench::E2eOptions {
        persons: args.persons,
        institutions: args.institutions,
        seconds: args.seconds,
        batch_ops: args.batch_ops,
        clients: args.clients,
        load: args.load,
        query_rate: args.query_rate,
        credit_accounts: args.credit_accounts,
        stats_queries: args.stats_queries,
        seed: args.seed,
        dir: args.dir,
        peer: peer_script(args.peer)?,
        peer_clients: args.peer_clients,
        snapshot_interval_ops: args
            .snapshot_interval_ops
            .unwrap_or(defaults.snapshot_interval_ops),
    };
    let report = gongji_bench::e2e_bench(&opts);
    print!("{report}");
    if let Some(Err(e)) = &report.check {
        bail!("state check failed: {e}");
    }
    Ok(())
}
