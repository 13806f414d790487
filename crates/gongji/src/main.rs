//! `gongji`: the command. Thin glue over the library crates.

mod bench;
mod chaos;
mod config;
mod demo;
mod federation;
mod ops;
mod project;
mod purge;
mod remote;
mod serve;
mod simulate;
mod store;

/// The HTTP path builds and drops many small JSON values per request; glibc's malloc was a
/// third of the server's profile under batched load. mimalloc is made for this pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Bring the SQL projection of a data directory up to date (or `--rebuild` it) and print
    /// its rows and cursor.
    Project(project::ProjectArgs),
    /// Issue a token offline (the server must not be running on the directory).
    Token(ops::TokenArgs),
    /// Walk one family through enrolment, binding, mutual-aid settlement, a wallet transfer,
    /// a cancellation, the statistics and the reconciliation (in memory, deterministic).
    Demo,
    /// Kill -9 a real `gongji serve` under concurrent HTTP load at random moments, restart it
    /// and check every acknowledged write against the clients' log (temporary data directory).
    CrashTest(gongji_drill::crashtest::CrashTestArgs),
    /// Simulate a calibrated year of mutual aid through the real engine and print the
    /// statistics table beside the published figures (or, with --dst, simulation testing).
    Simulate(simulate::SimulateArgs),
    /// Deterministic simulation testing: seeded workloads with random crashes and restarts.
    Dst(simulate::DstArgs),
    /// Engines that own provinces and cross-engine wallet transfers (docs/FEDERATION.md).
    Federation {
        #[command(subcommand)]
        what: federation::FederationCmd,
    },
    /// Benchmarks. Without a subcommand: the end-to-end benchmark (see `bench.rs`).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        what: Option<BenchCmd>,
        #[command(flatten)]
        e2e: bench::E2eArgs,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// Durable settlements through the real writer (fsync on) at several numbers of concurrent
    /// clients, beside the PostgreSQL peer run in the same invocation.
    Durable {
        #[arg(long, default_value_t = 1_000_000)]
        persons: u32,
        /// Comma-separated numbers of concurrent clients.
        #[arg(long, default_value = "1,16,256", value_delimiter = ',')]
        clients: Vec<usize>,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Directory for the temporary data directory.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
        /// Run the peer: `pg` (../shared/peers/pg/bench.sh) or a path to a bench.sh.
        #[arg(long)]
        peer: Option<String>,
        /// Also run on the PostgreSQL store: a `postgres://…` server on which the benchmark
        /// creates (and drops) its own database.
        #[arg(long)]
        store: Option<String>,
    },
    /// Start-up time after journaling a population and many settlements: from the shutdown
    /// snapshot, and from the journal alone.
    Recovery {
        #[arg(long, default_value_t = 1_000_000)]
        persons: u32,
        #[arg(long, default_value_t = 10_000_000)]
        settlements: u64,
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
        /// Keep the data directory (with the snapshot of the last start) and print its path.
        #[arg(long)]
        keep: bool,
        /// Journal nothing: time one start on this existing data directory (kept by --keep,
        /// or made by `gongji simulate --data`).
        #[arg(long)]
        reuse: Option<std::path::PathBuf>,
    },
    /// The journal's write and fdatasync alone: a sparse segment (today), a zero-filled one
    /// overwritten in place, and the latter with O_DIRECT, for batches of 1, 1,000 and 8,190 ops.
    JournalWrite {
        #[arg(long, default_value_t = 300)]
        batches: usize,
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
    },
    /// A real `gongji serve` under HTTP load: single settlements over many connections, then
    /// batched through /v1/batch, beside the PostgreSQL peer.
    Http {
        #[arg(long, default_value_t = 100_000)]
        persons: u32,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Settlements per /v1/batch request in the batched run.
        #[arg(long, default_value_t = 1_000)]
        batch_ops: usize,
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
        /// 0: any free port.
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long)]
        peer: Option<String>,
    },
    /// History records in the project's history files beside redb and fjall: append in
    /// durable 64 K-record commits, cold and warm point reads, a person's entries, bytes on
    /// disk, open time, RSS (issue 11: the store chosen by measurement).
    Store {
        #[arg(long, default_value_t = 1_000_000)]
        persons: u32,
        /// Settlements (rounded up to whole chunks of 65,536); their entries come with them.
        #[arg(long, default_value_t = 10_000_000)]
        settlements: u64,
        /// Random point reads by settlement id per pass (few enough that the cold pass reads
        /// mostly pages it has not read before).
        #[arg(long, default_value_t = 2_000)]
        reads: usize,
        /// Random persons whose entries are walked per pass.
        #[arg(long, default_value_t = 1_000)]
        walks: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Comma-separated: files, redb, fjall.
        #[arg(long, default_value = "files,redb,fjall", value_delimiter = ',')]
        stores: Vec<String>,
        /// Directory under which the stores are made (and removed).
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
    },
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
    ops::init_logging();
    purge::spawn();
    match cli.command {
        Cmd::Serve(args) => serve::run(args),
        Cmd::Verify(args) => ops::verify(args),
        Cmd::Report(args) => ops::report(args),
        Cmd::Token(args) => ops::token(args),
        Cmd::Project(args) => project::run(args),
        Cmd::Demo => demo::run(),
        Cmd::CrashTest(args) => gongji_drill::crashtest::run(args),
        Cmd::Simulate(args) => simulate::run(args),
        Cmd::Dst(args) => simulate::dst(args),
        Cmd::Federation { what } => federation::run_cmd(what),
        Cmd::Bench { what: None, e2e } => bench::run(e2e, peer_script),
        Cmd::Bench {
            what:
                Some(BenchCmd::Durable {
                    persons,
                    clients,
                    seconds,
                    dir,
                    peer,
                    store,
                }),
            ..
        } => {
            let opts = gongji_bench::DurableOptions {
                persons,
                clients,
                seconds,
                dir,
                peer: peer_script(peer)?,
                store: store::postgres_url(store.as_deref())?.map(str::to_owned),
            };
            let (_, text) = gongji_bench::durable_bench(&opts);
            print!("{text}");
            Ok(())
        }
        Cmd::Bench {
            what:
                Some(BenchCmd::Recovery {
                    persons,
                    settlements,
                    dir,
                    keep,
                    reuse,
                }),
            ..
        } => {
            if let Some(d) = &reuse {
                // A start creates a missing data directory: refuse to time that instead.
                if !d.join("journal").is_dir() {
                    bail!(
                        "--reuse {}: not a data directory (no journal/ in it)",
                        d.display()
                    );
                }
            }
            let opts = gongji_bench::RecoveryOptions {
                persons,
                settlements,
                dir,
                keep,
                reuse,
            };
            print!("{}", gongji_bench::recovery_bench(&opts));
            Ok(())
        }
        Cmd::Bench {
            what:
                Some(BenchCmd::Store {
                    persons,
                    settlements,
                    reads,
                    walks,
                    seed,
                    stores,
                    dir,
                }),
            ..
        } => {
            let stores = stores
                .iter()
                .map(|s| {
                    gongji_bench::StoreKind::from_name(s)
                        .ok_or_else(|| anyhow::anyhow!("unknown store {s:?}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let opts = gongji_bench::StoreBenchOptions {
                persons,
                settlements,
                reads,
                walks,
                seed,
                dir,
                stores,
            };
            let report = gongji_bench::store_bench(&opts).map_err(anyhow::Error::msg)?;
            print!("{}", report.text);
            Ok(())
        }
        Cmd::Bench {
            what: Some(BenchCmd::JournalWrite { batches, dir }),
            ..
        } => {
            let opts = gongji_bench::JournalWriteOptions {
                dir,
                batches: batches.max(1),
            };
            print!("{}", gongji_bench::journal_write_bench(&opts)?);
            Ok(())
        }
        Cmd::Bench {
            what:
                Some(BenchCmd::Http {
                    persons,
                    connections,
                    seconds,
                    batch_ops,
                    dir,
                    port,
                    peer,
                }),
            ..
        } => {
            let opts = gongji_bench::HttpOptions {
                exe: std::env::current_exe()?,
                persons,
                connections,
                seconds,
                batch_ops,
                dir,
                port,
                peer: peer_script(peer)?,
            };
            print!("{}", gongji_bench::http_bench(&opts));
            Ok(())
        }
        Cmd::Bench {
            what:
                Some(BenchCmd::Core {
                    persons,
                    commands,
                    seed,
                    pure_settlements,
                    institutions,
                }),
            ..
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

/// `pg` names the peer beside the repository; anything else is a path to its bench.sh.
fn peer_script(peer: Option<String>) -> Result<Option<std::path::PathBuf>> {
    let Some(peer) = peer else { return Ok(None) };
    let path = if peer == "pg" {
        std::path::PathBuf::from("../shared/peers/pg/bench.sh")
    } else {
        std::path::PathBuf::from(peer)
    };
    if !path.exists() {
        bail!("peer script {} not found", path.display());
    }
    Ok(Some(path))
}
