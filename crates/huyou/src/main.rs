//! `huyou`: the command of the Huyou (护幼) system. Thin glue over `huyou-core`.
//!
//! - `huyou classify [FILE]`: JSON lines in, JSON lines out; `--decide` adds decisions.
//! - `huyou train`: fits the n-gram model on COLD train, picks the threshold on dev.
//! - `huyou eval --gold FILE`: P/R/F1 per code, macro-F1, FP rate on safe items.
//! - `huyou verify [DIR]`: checks the audit log's hash chain.
//! - `huyou serve`: the HTTP API (see `serve.rs`).
//! - `huyou bench cold|throughput|http`: the benchmarks in BENCHMARKS.md.

#![forbid(unsafe_code)]

mod bench;
mod serve;
mod wire;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use huyou_core::model::{self, TrainConfig};
use huyou_core::{eval, Audience, Classifier, Code, Policy, Service};
use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "huyou",
    about = "Huyou (护幼): keep information that may harm minors out of the places the rules forbid"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Classify JSON lines `{"id","text","medium","meta"}` from FILE or stdin.
    Classify {
        file: Option<PathBuf>,
        /// Add the decision for every surface, for --audience and --service.
        #[arg(long)]
        decide: bool,
        #[arg(long, default_value = "unknown", value_parser = parse_wire::<Audience>)]
        audience: Audience,
        #[arg(long, default_value = "ordinary", value_parser = parse_wire::<Service>)]
        service: Service,
        /// A policy file instead of the built-in one.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Append every decision to the hash-chained audit log in this directory.
        #[arg(long)]
        audit: Option<PathBuf>,
    },
    /// Train the n-gram model on COLD train, choose its threshold on COLD dev.
    Train {
        #[arg(long, default_value = "../shared/data/cold")]
        cold: PathBuf,
        #[arg(long, default_value = "crates/huyou-core/data/model.bin")]
        out: PathBuf,
        /// Do not write: retrain and fail unless the result equals OUT byte for byte.
        #[arg(long)]
        check: bool,
        /// Hyperparameters, for sweeps on dev; the defaults made the committed model.
        #[arg(long)]
        bits: Option<u32>,
        #[arg(long)]
        ngram_max: Option<u32>,
        #[arg(long)]
        epochs: Option<u32>,
        #[arg(long)]
        l2: Option<f32>,
        #[arg(long)]
        learning_rate: Option<f32>,
        #[arg(long)]
        nb_power: Option<f32>,
    },
    /// Score predictions against gold JSON lines `{"id","text","meta","codes":[...]}`.
    Eval {
        #[arg(long)]
        gold: PathBuf,
    },
    /// Verify the audit log's hash chain.
    Verify {
        #[arg(default_value = "huyou-data/audit")]
        dir: PathBuf,
    },
    /// Serve the HTTP API.
    Serve(serve::ServeArgs),
    /// Run a benchmark and print its figures.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

pub(crate) fn parse_wire<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Classify {
            file,
            decide,
            audience,
            service,
            policy,
            audit,
        } => {
            let policy = load_policy(policy)?;
            let input: Box<dyn BufRead> = match file {
                Some(p) => Box::new(std::io::BufReader::new(
                    std::fs::File::open(&p).with_context(|| format!("open {}", p.display()))?,
                )),
                None => Box::new(std::io::stdin().lock()),
            };
            let context = decide.then_some((audience, service));
            classify(input, &policy, context, audit)
        }
        Command::Train {
            cold,
            out,
            check,
            bits,
            ngram_max,
            epochs,
            l2,
            learning_rate,
            nb_power,
        } => {
            let d = TrainConfig::default();
            let config = TrainConfig {
                bits: bits.unwrap_or(d.bits),
                ngram_max: ngram_max.unwrap_or(d.ngram_max),
                epochs: epochs.unwrap_or(d.epochs),
                l2: l2.unwrap_or(d.l2),
                learning_rate: learning_rate.unwrap_or(d.learning_rate),
                nb_power: nb_power.unwrap_or(d.nb_power),
                ..d
            };
            train(&cold, &out, check, config)
        }
        Command::Eval { gold } => eval_gold(&gold),
        Command::Verify { dir } => {
            let path = dir.join("audit.jsonl");
            match huyou_core::audit::verify(&path) {
                Ok(v) => {
                    println!(
                        "{}: {} records, chain intact, last hash {}",
                        path.display(),
                        v.records,
                        v.last_hash
                    );
                    Ok(())
                }
                Err(e) => bail!("{}: {e}", path.display()),
            }
        }
        Command::Serve(args) => serve::run(args),
        Command::Bench { which } => bench::run(which),
    }
}

fn load_policy(path: Option<PathBuf>) -> Result<Policy> {
    match path {
        None => Ok(Policy::builtin()),
        Some(p) => {
            let src =
                std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
            Policy::parse(&src).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
    }
}

/// Lines classified between two audit appends: the output of a batch is written only after its
/// audit records are fsynced, as the server does.
const CLASSIFY_BATCH_LINES_MAX: usize = 1024;

fn classify(
    input: Box<dyn BufRead>,
    policy: &Policy,
    context: Option<(Audience, Service)>,
    audit: Option<PathBuf>,
) -> Result<()> {
    let classifier = Classifier::builtin();
    let mut log = audit.map(|d| huyou_core::AuditLog::open(&d)).transpose()?;
    let auditing = log.is_some();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut pending: Vec<u8> = Vec::new();
    let mut entries = Vec::new();
    let mut flush = |pending: &mut Vec<u8>, entries: &mut Vec<_>| -> Result<()> {
        if let Some(log) = &mut log {
            log.append_batch(std::mem::take(entries))
                .context("audit log")?;
        }
        out.write_all(pending)?;
        out.flush()?;
        pending.clear();
        Ok(())
    };
    let mut lines = 0;
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("line {}: not UTF-8", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let item: wire::Item =
            serde_json::from_str(&line).with_context(|| format!("line {}", n + 1))?;
        item.check()
            .map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
        let result = wire::classify_item(&classifier, policy, &item, context);
        if auditing {
            entries.push(wire::audit_entry(policy, &item, &result));
        }
        serde_json::to_writer(&mut pending, &result)?;
        pending.push(b'\n');
        lines += 1;
        if lines % CLASSIFY_BATCH_LINES_MAX == 0 {
            flush(&mut pending, &mut entries)?;
        }
    }
    flush(&mut pending, &mut entries)
}

fn read_cold_split(dir: &std::path::Path, split: &str) -> Result<Vec<eval::ColdRow>> {
    let path = dir.join(format!("{split}.csv"));
    let csv = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    eval::read_cold(&csv).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn train(
    cold: &std::path::Path,
    out: &std::path::Path,
    check: bool,
    config: TrainConfig,
) -> Result<()> {
    let norm = huyou_core::Normaliser::new();
    let examples = |rows: Vec<eval::ColdRow>| -> Vec<model::Example> {
        rows.into_iter()
            .map(|r| (norm.normalise(&r.text).text, r.offensive))
            .collect()
    };
    // The test split is never read here: it is for reporting only (`huyou bench cold`).
    let train_set = examples(read_cold_split(cold, "train")?);
    let dev_set = examples(read_cold_split(cold, "dev")?);
    let m = model::train(&config, &train_set, &dev_set);
    let bytes = m.to_bytes();
    let dev_f1 = model::binary_macro_f1(
        dev_set
            .iter()
            .map(|(t, y)| (m.score(t, 0).0 >= m.threshold, *y)),
    );
    eprintln!(
        "trained on {} COLD train rows, {config:?}; threshold {:.2} chosen on {} dev rows, dev macro-F1 {:.2}; blake3 {}",
        train_set.len(),
        m.threshold,
        dev_set.len(),
        dev_f1 * 100.0,
        blake3::hash(&bytes).to_hex()
    );
    if check {
        let existing = std::fs::read(out).with_context(|| format!("read {}", out.display()))?;
        if existing != bytes {
            bail!("{} differs from a fresh training run", out.display());
        }
        println!("{}: reproduced byte for byte", out.display());
    } else {
        std::fs::write(out, &bytes).with_context(|| format!("write {}", out.display()))?;
        println!("wrote {} ({} bytes)", out.display(), bytes.len());
    }
    Ok(())
}

fn eval_gold(gold: &std::path::Path) -> Result<()> {
    let classifier = Classifier::builtin();
    let file = std::fs::File::open(gold).with_context(|| format!("open {}", gold.display()))?;
    let mut scores = eval::Scores::default();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let g: wire::GoldItem =
            serde_json::from_str(&line).with_context(|| format!("line {}", n + 1))?;
        let predicted: BTreeSet<Code> = classifier
            .classify(&g.text, &g.meta)
            .into_iter()
            .map(|c| c.code)
            .collect();
        scores.add(&g.codes.iter().copied().collect(), &predicted);
    }
    let report = scores.report();
    println!(
        "{:<24} {:>7} {:>9} {:>7} {:>7}",
        "code", "support", "precision", "recall", "F1"
    );
    for r in &report.per_code {
        println!(
            "{:<24} {:>7} {:>9.3} {:>7.3} {:>7.3}",
            r.code.as_str(),
            r.support,
            r.precision,
            r.recall,
            r.f1
        );
    }
    println!("items {}  macro-F1 {:.3}", report.items, report.macro_f1);
    println!(
        "safe items {}  false-positive rate on safe {:.3}",
        report.safe_items, report.false_positive_rate_on_safe
    );
    Ok(())
}
