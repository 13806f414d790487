//! `gongji simulate` and `gongji dst`: thin glue over `gongji-sim`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use gongji_core::time::parse_period;
use gongji_core::views::StatsView;
use gongji_sim::dst::{run_seed, DstOptions};
use gongji_sim::federated::{simulate_federated, FedSimulateReport};
use gongji_sim::runner::{simulate, SimulateOptions, SimulateReport};

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
    /// Data directory (must be empty or new); a temporary one when absent. With --engines:
    /// the directory of every engine's (`one/`, `e1/`, `e2/`, …).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Also run the same workload with the provinces split over this many federated engines
    /// (2 to 31; cross-engine transfers and bindings as exchanges over an in-process bus),
    /// and compare: the national table summed over the engines (as `gongji report --data
    /// e1 --data e2 …`) must equal the one engine's cell by cell, and so must each province's
    /// table, the requests' answers and the money; non-zero exit on any difference.
    #[arg(long)]
    pub engines: Option<usize>,
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
    if args.dst && args.engines.is_some() {
        bail!("--engines and --dst: choose one");
    }
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
    if let Some(k) = args.engines {
        return split(opts, k);
    }
    let report = simulate(&opts).map_err(anyhow::Error::msg)?;
    print!("{report}");
    if let Err(e) = &report.check {
        bail!("state check failed: {e}");
    }
    Ok(())
}

/// `--engines K`: the one-engine run, the same run on K engines, and their comparison.
fn split(mut opts: SimulateOptions, k: usize) -> Result<()> {
    // Checked before the long one-engine run.
    gongji_sim::federated::split(k).map_err(anyhow::Error::msg)?;
    let temp;
    let dir = match opts.data.take() {
        Some(dir) => {
            let empty = match std::fs::read_dir(&dir) {
                Ok(mut entries) => entries.next().is_none(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                Err(e) => bail!("{}: {e}", dir.display()),
            };
            if !empty {
                bail!(
                    "{} is not empty: --engines needs a new directory",
                    dir.display()
                );
            }
            gongji_journal::private::create_private_dir(&dir)
                .with_context(|| format!("{}", dir.display()))?;
            dir
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("gongji-simulate-")
                .tempdir()
                .context("temporary directory")?;
            temp.path().to_owned()
        }
    };
    opts.data = Some(dir.join("one"));
    let one = simulate(&opts).map_err(anyhow::Error::msg)?;
    print!("{one}");
    if let Err(e) = &one.check {
        bail!("state check failed: {e}");
    }
    let fed = simulate_federated(&opts, k, &dir).map_err(anyhow::Error::msg)?;
    print!("{fed}");
    fed.check().map_err(anyhow::Error::msg)?;
    // The national tables as `gongji report` reads them from the data directories.
    let dirs: Vec<PathBuf> = fed.engines.iter().map(|e| e.data_dir.clone()).collect();
    let read = |data: &[PathBuf]| {
        let sources = crate::ops::Sources {
            data,
            remotes: &[],
            store: None,
        };
        crate::ops::national_stats(&sources, opts.from, opts.to, None)
    };
    let (_, single) = read(std::slice::from_ref(&one.data_dir))?;
    let (ids, national) = read(&dirs)?;
    println!("\nOne engine ({}):", one.data_dir.display());
    print!(
        "{}",
        crate::ops::national_table(&[], opts.from, opts.to, None, &single)
    );
    let names: Vec<String> = dirs
        .iter()
        .map(|d| format!("--data {}", d.display()))
        .collect();
    println!(
        "\n`gongji report {} --from {} --to {}`:",
        names.join(" "),
        opts.from,
        opts.to
    );
    print!(
        "{}",
        crate::ops::national_table(&ids, opts.from, opts.to, None, &national)
    );
    let differences = compare(&one, &fed, &single, &national);
    for d in &differences {
        println!("DIFFERENT: {d}");
    }
    if !differences.is_empty() {
        bail!(
            "{} differences between one engine and {k} engines",
            differences.len()
        );
    }
    println!(
        "\nequal: the national table (7 rows, count and amount), {} provinces' tables, the \
         answers to {} requests and the money (accounts, wallets, held and in flight; \
         credited net of payments)",
        one.provinces.len(),
        one.tally.requests
    );
    Ok(())
}

/// Every difference between the one-engine run and the federated one: table cells (the
/// national table as `gongji report` read it, and each province's), the generator's tally
/// of answers, and the money.
pub(crate) fn compare(
    one: &SimulateReport,
    fed: &FedSimulateReport,
    single: &StatsView,
    national: &StatsView,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut cells = |scope: &str, a: &StatsView, b: &StatsView| {
        let rows = crate::ops::table_rows(a).into_iter();
        for ((label, x), (_, y)) in rows.zip(crate::ops::table_rows(b)) {
            if x != y {
                out.push(format!(
                    "{scope}, {}: one engine {} for {} yuan, engines {} for {} yuan",
                    label.trim(),
                    x.count,
                    x.amount,
                    y.count,
                    y.amount
                ));
            }
        }
    };
    cells("national table", single, national);
    cells("live national table", &one.stats, &fed.stats);
    for ((p, a), (q, b)) in one.provinces.iter().zip(&fed.provinces) {
        assert_eq!(p, q, "the same provinces in order");
        cells(&format!("province {p}"), a, b);
    }
    let (t, u) = (&one.tally, &fed.tally);
    if (t.requests, t.applied, t.replayed, &t.rejected)
        != (u.requests, u.applied, u.replayed, &u.rejected)
    {
        out.push(format!(
            "answers: one engine {} sent, {} applied, {} replayed, rejected {:?}; engines {} \
             sent, {} applied, {} replayed, rejected {:?}",
            t.requests,
            t.applied,
            t.replayed,
            t.rejected,
            u.requests,
            u.applied,
            u.replayed,
            u.rejected
        ));
    }
    let inside: u64 = fed
        .engines
        .iter()
        .map(|e| e.money.inside + e.money.in_flight)
        .sum();
    let single_inside = one.money.inside + one.money.in_flight;
    if inside != single_inside {
        out.push(format!(
            "money inside (accounts, wallets, held, in flight): one engine {single_inside} fen, \
             engines {inside} fen"
        ));
    }
    let external: i128 = fed.engines.iter().map(|e| e.money.external_net).sum();
    if external != one.money.external_net {
        out.push(format!(
            "credited net of payments: one engine {} fen, engines {external} fen",
            one.money.external_net
        ));
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comparison_finds_a_federated_run_that_differs() {
        // Proves the comparison can fail: three engines running the one engine's seed compare
        // equal, three engines running another seed differ in the national table, the
        // provinces' tables, the answers and the money, and each is named.
        let dir = tempfile::tempdir().unwrap();
        let opts = |seed, data: &str| SimulateOptions {
            scale: 0.00002,
            from: parse_period("2025-06").unwrap(),
            to: parse_period("2025-12").unwrap(),
            seed,
            data: Some(dir.path().join(data)),
            progress: false,
        };
        let one = simulate(&opts(5, "one")).unwrap();
        let same = simulate_federated(&opts(5, ""), 3, &dir.path().join("same")).unwrap();
        same.check().unwrap();
        assert_eq!(
            compare(&one, &same, &one.stats, &same.stats),
            Vec::<String>::new()
        );
        let other = simulate_federated(&opts(6, ""), 3, &dir.path().join("other")).unwrap();
        let found = compare(&one, &other, &one.stats, &other.stats);
        for want in ["national table, ", "province ", "answers: ", "money inside"] {
            assert!(
                found.iter().any(|d| d.starts_with(want)),
                "{want}: {found:#?}"
            );
        }
    }
}
