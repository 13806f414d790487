//! Operator commands on a data directory: `verify`, `report`, `token`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use gongji_core::federation::EngineId;
use gongji_core::time::{parse_period, Period};
use gongji_core::views::{StatsCell as Cell, StatsView};
use gongji_core::{Actor, Body, Msgid, Role};
use gongji_server::{Config, WriteRequest};

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr (stdout carries command output), in colour only on a terminal.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Data directory.
    #[arg(long, default_value = "./gongji-data")]
    pub data: PathBuf,
    /// `files` or a `postgres://…` URL (see `serve --store`).
    #[arg(long)]
    pub store: Option<String>,
}

pub fn verify(args: DataArgs) -> Result<()> {
    let config = Config::new(&args.data);
    warn_if_exposed(&args.data);
    if let Some(url) = crate::store::postgres_url(args.store.as_deref())? {
        return crate::store::verify_postgres(url, &config);
    }
    if !config.journal_dir().is_dir() {
        bail!("{} is not a gongji data directory", args.data.display());
    }
    let chain = gongji_server::verify_journal_dir(&config.journal_dir(), &config.journal)
        .context("journal verification failed")?;
    println!(
        "journal: {} records verified, head op {}",
        chain.records_total, chain.head.op
    );
    if let Some(torn) = &chain.torn_tail {
        println!(
            "torn tail: {} bytes at {} offset {} (never acknowledged; cut at next start)",
            torn.bytes, torn.file, torn.offset
        );
    }
    let (state, head, report) = gongji_server::inspect(&config).context("replay failed")?;
    check_recovery(&state, &report)?;
    // A federated directory replays under its own [federation] table (from its snapshot).
    let config = Config {
        federation: state.federation_config().cloned(),
        ..config
    };
    let genesis = gongji_server::replay_from_genesis(&config, state.params().clone())
        .context("replay from op 1 failed")?;
    compare_with_genesis(&state, head, genesis, "segments")
}

/// Warns (on stderr, without failing: the data itself may be sound) about every path in the
/// data directory that others than its owner may read, write or enter: it holds identities in
/// full, and API.md wants it 0700 with files 0600.
fn warn_if_exposed(dir: &std::path::Path) {
    match gongji_journal::private::exposed(dir) {
        Ok(paths) => {
            for (path, mode) in paths {
                eprintln!(
                    "warning: {} is mode {mode:04o}: others may read it (want 0700 for \
                     directories, 0600 for files: chmod -R go-rwx {})",
                    path.display(),
                    dir.display()
                );
            }
        }
        Err(e) => eprintln!(
            "warning: cannot check the permissions of {}: {e}",
            dir.display()
        ),
    }
}

/// What `verify` recovered: from which snapshot, how much was replayed, which snapshots were
/// passed over; then the full check of the recovered state, which reads every history record
/// (a start runs only the checks of the hot state).
pub(crate) fn check_recovery(
    state: &gongji_core::State,
    report: &gongji_server::OpenReport,
) -> Result<()> {
    println!(
        "replay: snapshot at op {}, {} ops replayed, {} persons ({} ms)",
        report
            .snapshot_op
            .map_or("none".to_owned(), |op| op.to_string()),
        report.replayed_ops,
        state.person_count(),
        report.elapsed.as_millis()
    );
    let started = std::time::Instant::now();
    state
        .check()
        .map_err(|e| anyhow::anyhow!("state check failed: {e}"))?;
    println!(
        "state check ok: ledger, statistics, reconciliation and lists recomputed from every record ({} ms)",
        started.elapsed().as_millis()
    );
    for skipped in &report.skipped_snapshots {
        println!("snapshot skipped: {} ({})", skipped.file, skipped.defect);
    }
    if report.history_chunks > 0 {
        println!(
            "history: {} chunks of 64 K records read from history files, checksums ok",
            report.history_chunks
        );
    }
    if let Some(why) = &report.history_rebuilt {
        println!("history: rebuilt by replaying the journal from op 1, because {why}");
    }
    Ok(())
}

/// Prints the head and state hash of the recovered `state`, and refuses a snapshot that
/// disagrees with its journal: `genesis` is the replay of every op from op 1 (`None` when the
/// journal's early `removed` were removed after a snapshot).
pub(crate) fn compare_with_genesis(
    state: &gongji_core::State,
    head: gongji_journal::Anchor,
    genesis: Option<(gongji_core::State, gongji_journal::Anchor)>,
    removed: &str,
) -> Result<()> {
    println!("head op {} hash {}", head.op, hex::encode(head.chain_hash));
    let state_hash = state.state_hash();
    println!("state hash {}", hex::encode(state_hash));
    match genesis {
        Some((genesis, genesis_head)) => {
            if genesis_head != head || genesis.state_hash() != state_hash {
                bail!(
                    "the snapshot disagrees with the journal: replay from op 1 gives state hash {} at op {}",
                    hex::encode(genesis.state_hash()),
                    genesis_head.op
                );
            }
            println!("replay from op 1: {} ops, same state hash", genesis_head.op);
        }
        None => println!("replay from op 1: not possible, early {removed} were removed"),
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A data directory; repeated (`--data a --data b …`): the engines of a federation, whose
    /// national table is the sum of theirs (each transfer counted once, by its receiver's
    /// engine). Default `./gongji-data` when neither `--data` nor `--url` is given.
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// A running engine's base URL (repeated; beside `--data` or instead of it), read over
    /// HTTP (`GET /v1/stats`) with an admin token.
    #[arg(long)]
    pub url: Vec<String>,
    /// The admin token for each `--url`, in order (or one for all); `@FILE` reads it from a
    /// file, such as the engine's `admin.token`.
    #[arg(long)]
    pub token: Vec<String>,
    /// First month, YYYY-MM.
    #[arg(long)]
    pub from: String,
    /// Last month, YYYY-MM.
    #[arg(long)]
    pub to: String,
    /// Province code (two digits), or all.
    #[arg(long)]
    pub prov: Option<u8>,
    /// `files` or a `postgres://…` URL (see `serve --store`).
    #[arg(long)]
    pub store: Option<String>,
}

pub fn report(mut args: ReportArgs) -> Result<()> {
    let from = parse_period(&args.from).context("--from must be YYYY-MM")?;
    let to = parse_period(&args.to).context("--to must be YYYY-MM")?;
    let remotes = crate::remote::remotes(&args.url, &args.token)?;
    if args.data.is_empty() && remotes.is_empty() {
        args.data.push(PathBuf::from("./gongji-data"));
    }
    let sources = Sources {
        data: &args.data,
        remotes: &remotes,
        store: args.store.as_deref(),
    };
    let (engines, s) = national_stats(&sources, from, to, args.prov)?;
    print!("{}", national_table(&engines, from, to, args.prov, &s));
    Ok(())
}

/// Where `gongji report` (and `gongji simulate --engines`) reads: data directories and
/// running engines.
pub struct Sources<'a> {
    pub data: &'a [PathBuf],
    pub remotes: &'a [crate::remote::Remote],
    pub store: Option<&'a str>,
}

/// The statistics of one engine, or the national table of a federation: the sum of its
/// engines' tables, each engine given once (its ids are returned, empty for one source).
pub fn national_stats(
    sources: &Sources,
    from: Period,
    to: Period,
    prov: Option<u8>,
) -> Result<(Vec<EngineId>, StatsView)> {
    // Several sources must be distinct engines of one federation: an unfederated engine
    // holds every province, and one engine twice would count twice.
    let several = sources.data.len() + sources.remotes.len() > 1;
    let mut s: Option<StatsView> = None;
    let mut engines = std::collections::BTreeSet::new();
    let mut add = |v: StatsView| s = Some(s.map_or(v, |t| t.plus(v)));
    for dir in sources.data {
        let (state, _, _) = crate::store::inspect(&Config::new(dir), sources.store)
            .with_context(|| format!("{}", dir.display()))?;
        if several {
            let config = state
                .federation_config()
                .with_context(|| format!("{}: not an engine of a federation", dir.display()))?;
            if !engines.insert(config.engine) {
                anyhow::bail!("engine {} given twice", config.engine);
            }
        }
        add(state.stats(from, to, prov));
    }
    for remote in sources.remotes {
        if several {
            let engine = remote
                .counters()
                .with_context(|| format!("{}: not an engine of a federation", remote.url))?
                .engine;
            if !engines.insert(engine) {
                anyhow::bail!("engine {engine} given twice");
            }
        }
        add(remote.stats(&from.to_string(), &to.to_string(), prov)?);
    }
    let s = s.context("no data directory")?;
    Ok((engines.into_iter().collect(), s))
}

/// The rows of `gongji report`'s table, labelled.
pub fn table_rows(s: &StatsView) -> [(&'static str, Cell); 7] {
    [
        ("all family mutual aid", s.total),
        ("instant call of a bound giver's account", s.account_draw),
        ("  same pooling area", s.same_pool),
        ("  another pooling area", s.cross_pool),
        ("medical-insurance wallet transfers", s.wallet_transfer),
        ("  in province", s.in_province),
        ("  cross province", s.cross_province),
    ]
}

/// `gongji report`'s table (with the engines it sums, when several).
pub fn national_table(
    engines: &[EngineId],
    from: Period,
    to: Period,
    prov: Option<u8>,
    s: &StatsView,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if !engines.is_empty() {
        let names: Vec<String> = engines.iter().map(|e| e.to_string()).collect();
        let _ = writeln!(out, "National table of engines {}", names.join(", "));
    }
    let scope = prov.map_or("all provinces".to_owned(), |p| format!("province {p}"));
    let _ = writeln!(out, "Family mutual aid, {from} to {to}, {scope}");
    let _ = writeln!(out, "{:<44} {:>14} {:>18}", "", "count", "amount (yuan)");
    for (label, cell) in table_rows(s) {
        let _ = writeln!(
            out,
            "{label:<44} {:>14} {:>18}",
            cell.count,
            cell.amount.to_string()
        );
    }
    out
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[arg(long, default_value = "./gongji-data")]
    pub data: PathBuf,
    /// admin, institution or person.
    #[arg(long)]
    pub role: String,
    #[arg(long)]
    pub fixmedins_code: Option<String>,
    #[arg(long)]
    pub psn_no: Option<String>,
    /// `files` or a `postgres://…` URL (see `serve --store`).
    #[arg(long)]
    pub store: Option<String>,
}

pub fn token(args: TokenArgs) -> Result<()> {
    let role = match args.role.as_str() {
        "admin" => Role::Admin,
        "institution" => Role::Institution,
        "person" => Role::Person,
        other => bail!("unknown role {other}"),
    };
    let short = |s: &Option<String>| -> Result<_> {
        s.as_deref()
            .map(gongji_core::command::ArrayString::from)
            .transpose()
            .map_err(|_| anyhow::anyhow!("code too long"))
    };
    let (engine, _) = crate::store::open_engine(Config::new(&args.data), args.store.as_deref())?;
    let token = gongji_server::new_token();
    let msgid = format!("offline-token-{}", &gongji_server::new_token()[3..27]);
    let request = WriteRequest {
        msgid: Msgid::from(&msgid).expect("short msgid"),
        inf_time: None,
        actor: Actor::Admin,
        body: Body::CreateToken {
            token_hash: gongji_server::token_hash(&token),
            role,
            fixmedins_code: short(&args.fixmedins_code)?,
            psn_no: short(&args.psn_no)?,
        },
    };
    let results = engine
        .submit_wait(vec![request])
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    engine.shutdown()?;
    match &results[0] {
        Ok(applied) => {
            if let gongji_core::Reply::TokenCreated { token_id } = applied.reply {
                eprintln!("token_id {token_id}");
            }
            println!("{token}");
            Ok(())
        }
        Err(rejection) => bail!("refused: {}", rejection.message()),
    }
}
