//! `gongji federation …` (issue 14, docs/FEDERATION.md): engines that own provinces and
//! cross-engine wallet transfers: the deterministic simulation (`dst`) and the real-process
//! run (`chaos`, `chaos.rs`). The `[federation]` table of `--config` is parsed and checked here
//! ([`FederationToml`]); `serve` with it runs a federated engine and its relay.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gongji_core::federation::{EngineId, FederationConfig};
use gongji_federation::dst::{run, FedDstOptions};
use serde::Deserialize;

#[derive(Debug, Subcommand)]
pub enum FederationCmd {
    /// Deterministic simulation: K engines on fault-injecting storage and a bus that drops,
    /// duplicates, reorders, delays, damages and partitions; checked at quiescence. Exits
    /// non-zero on any violation; a failure names its seed.
    Dst(FedDstArgs),
    /// Real processes on loopback: a nats-server (from PATH; nothing is installed) and K
    /// `gongji serve` engines under cross-province transfers, with SIGKILLs of engines and of
    /// the server at random moments; then the simulation's checker over the engines' states
    /// and the clients' logs. Exits non-zero on any violation and prints what it checked.
    Chaos(crate::chaos::ChaosArgs),
    /// Reconciliation between engines (对账): per pair of engines and day, the sender's sent,
    /// committed and returned against the receiver's received, accepted and refused, over the
    /// engines' data directories (read-only) and running engines (`--url`, `--token`). Prints
    /// every difference; exits non-zero on any.
    Reconcile(ReconcileArgs),
    /// Two engines and a nats-server on loopback (from PATH): cross-province transfers per
    /// second over HTTP, and the time from the sender's acknowledgement to the receiver's
    /// pending (p50, p99).
    Bench(crate::chaos::BenchArgs),
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// An engine's data directory (repeated); with `--url`, two or more engines in all.
    #[arg(long)]
    pub data: Vec<std::path::PathBuf>,
    /// A running engine's base URL (repeated), read over HTTP with an admin token.
    #[arg(long)]
    pub url: Vec<String>,
    /// The admin token for each `--url`, in order (or one for all); `@FILE` reads it from a
    /// file, such as the engine's `admin.token`.
    #[arg(long)]
    pub token: Vec<String>,
}

#[derive(Debug, Args)]
pub struct FedDstArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 10)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub from_seed: u64,
    /// Faulty steps per seed before the faults stop and the engines run to quiescence.
    #[arg(long, default_value_t = 1_500)]
    pub steps: u64,
}

pub fn run_cmd(cmd: FederationCmd) -> Result<()> {
    match cmd {
        FederationCmd::Dst(args) => dst(args),
        FederationCmd::Chaos(args) => crate::chaos::run(args),
        FederationCmd::Reconcile(args) => reconcile(args),
        FederationCmd::Bench(args) => crate::chaos::bench(args),
    }
}

fn dst(args: FedDstArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for seed in args.from_seed..args.from_seed.saturating_add(args.seeds) {
        let mut opts = FedDstOptions::new(seed);
        opts.steps = args.steps;
        match run(&opts) {
            Ok(report) => println!("{report}"),
            Err(e) => {
                println!("{e}");
                failures.push(seed);
            }
        }
    }
    println!(
        "checked per seed: every exchange closed alike on both sides (accepted = committed; \
         declined, expired, blocked = returned), no exchange on one side only, nothing in \
         flight or pending, every cross-engine binding held alike by both engines (same \
         persons, final status active, refused or revoked; nothing unconfirmed), every \
         exchange sent over a binding, money conserved per engine and nationally with \
         in-flight counted, national statistics = the sum of the engines', every acknowledged reply kept, forged \
         messages refused without change, replay from the journal = live state; then, \
         every binding revoked and both engines forgetting past the msgid window: every \
         exchange and binding record gone, the figures reconcile and report read unchanged, \
         the checks above again, and a stale copy of every message ever sent refused or \
         answered with no state changed"
    );
    crate::simulate::seeds_summary(args.seeds, started, &failures, "federation simulation")
}

fn reconcile(args: ReconcileArgs) -> Result<()> {
    let remotes = crate::remote::remotes(&args.url, &args.token)?;
    if args.data.len() + remotes.len() < 2 {
        bail!("--data, --url: two or more engines (data directories or running engines)");
    }
    let mut engines: Vec<(EngineId, gongji_federation::reconcile::EngineCounters)> = Vec::new();
    let mut add = |id: EngineId, counters| {
        if engines.iter().any(|(seen, _)| *seen == id) {
            bail!("engine {id} given twice");
        }
        engines.push((id, counters));
        Ok(())
    };
    for dir in &args.data {
        let (state, head, _) = gongji_server::inspect(&gongji_server::Config::new(dir))
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        let config = state
            .federation_config()
            .with_context(|| format!("{}: not an engine of a federation", dir.display()))?;
        let open = state.fed_open();
        let in_flight: u64 = open.in_flight.values().map(|(n, _)| n).sum();
        println!(
            "engine {} ({}): op {}, {} exchanges, {in_flight} in flight, {} pending",
            config.engine,
            dir.display(),
            head.op,
            state.exchanges().count(),
            open.pending
        );
        add(config.engine, state.fed_counters())?;
    }
    for remote in &remotes {
        let c = remote.counters()?;
        println!(
            "engine {} ({}, running): op {}, {} exchanges, {} in flight, {} pending",
            c.engine, remote.url, c.op_count, c.exchange_count, c.in_flight_count, c.pending_count
        );
        add(c.engine, c.counters)?;
    }
    let differences = gongji_federation::reconcile::reconcile(&engines);
    for d in &differences {
        println!("difference: {d}");
    }
    println!(
        "checked: per pair of these engines and CST day, sent = received, committed = accepted, \
         returned = refused (counts and amounts); exchanges still in flight or pending count as \
         differences until they close"
    );
    if !differences.is_empty() {
        bail!("{} differences", differences.len());
    }
    println!("no difference");
    Ok(())
}

/// The `[federation]` table of `--config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationToml {
    pub engine: String,
    /// Province prefixes this engine owns ("44").
    pub provinces: Vec<String>,
    /// The NATS server the relay uses (required to serve); a cluster's servers separated by
    /// commas.
    pub nats: Option<String>,
    /// Copies of each JetStream stream the relay creates (1 to 5; 3 on a three-node cluster).
    pub nats_replicas: Option<usize>,
    #[serde(default)]
    pub peers: BTreeMap<String, Vec<String>>,
}

fn provinces(list: &[String]) -> Result<Vec<u8>> {
    list.iter()
        .map(|p| {
            if p.len() != 2 {
                bail!("province {p:?}: two digits");
            }
            p.parse::<u8>().with_context(|| format!("province {p:?}"))
        })
        .collect()
}

impl FederationToml {
    pub fn to_config(&self) -> Result<FederationConfig> {
        let id = |s: &str| EngineId::from(s).map_err(|_| anyhow::anyhow!("engine id {s:?}"));
        let mut peers = BTreeMap::new();
        for (engine, list) in &self.peers {
            peers.insert(id(engine)?, provinces(list)?);
        }
        if let Some(urls) = &self.nats {
            for url in urls.split(',').map(str::trim) {
                if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                    bail!("[federation] nats: nats:// or tls:// URLs separated by commas, not {urls:?}");
                }
            }
        }
        if self.nats_replicas.is_some_and(|r| !(1..=5).contains(&r)) {
            bail!("[federation] nats_replicas: 1 to 5");
        }
        let config = FederationConfig {
            engine: id(&self.engine)?,
            provinces: provinces(&self.provinces)?,
            peers,
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("[federation]: {e}"))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issue's example table parses into the engine, its provinces and its peers; an
    /// overlapping or malformed table is refused.
    #[test]
    fn the_federation_table_parses_and_is_checked() {
        let text = r#"
            engine = "gd"
            provinces = ["44"]
            nats = "nats://127.0.0.1:4222"
            [peers]
            bj = ["11"]
            sh = ["31"]
        "#;
        let table: FederationToml = toml::from_str(text).expect("parses");
        let config = table.to_config().expect("valid");
        assert_eq!(config.engine.as_str(), "gd");
        assert_eq!(config.provinces, vec![44]);
        assert_eq!(config.peer_of(31).map(|e| e.to_string()), Some("sh".into()));
        // A cluster: its servers separated by commas, and three copies of each stream.
        let cluster = "engine = \"gd\"\nprovinces = [\"44\"]\nnats_replicas = 3\n\
            nats = \"nats://127.0.0.1:4222, nats://127.0.0.1:4223,nats://127.0.0.1:4224\"";
        let table: FederationToml = toml::from_str(cluster).expect("parses");
        table.to_config().expect("valid");
        assert_eq!(table.nats_replicas, Some(3));
        for bad in [
            "engine = \"gd\"\nprovinces = [\"44\"]\n[peers]\nbj = [\"44\"]",
            "engine = \"GD\"\nprovinces = [\"44\"]",
            "engine = \"gd\"\nprovinces = [\"4\"]",
            "engine = \"gd\"\nprovinces = [\"99\"]",
            "engine = \"gd\"\nprovinces = [\"44\"]\nextra = 1",
            "engine = \"gd\"\nprovinces = [\"44\"]\nnats = \"http://x\"",
            "engine = \"gd\"\nprovinces = [\"44\"]\nnats = \"nats://a:1,http://x\"",
            "engine = \"gd\"\nprovinces = [\"44\"]\nnats = \"nats://a:1,\"",
            "engine = \"gd\"\nprovinces = [\"44\"]\nnats_replicas = 0",
            "engine = \"gd\"\nprovinces = [\"44\"]\nnats_replicas = 6",
            "engine = \"gd\"\nprovinces = [\"44\"]\nnats_replicas = -1",
            "engine = \"gd\"\nprovinces = [\"44\"]\nnats_replicas = \"3\"",
        ] {
            let parsed = toml::from_str::<FederationToml>(bad);
            assert!(
                parsed.is_err() || parsed.unwrap().to_config().is_err(),
                "{bad}"
            );
        }
    }
}
