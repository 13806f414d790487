//! `gongji serve`: recover the data directory, start the writer, serve the HTTP API until
//! SIGTERM or Ctrl-C, then finish the batch in flight, snapshot and exit 0.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use gongji_server::{Config, OpenReport};

use crate::config::ConfigFile;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data directory (journal, snapshots, admin.token); created when missing.
    #[arg(long, default_value = "./gongji-data")]
    pub data: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// A TOML file with province parameters and server limits (see README).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep the SQL projection in this PostgreSQL database (postgres://…) behind the writer.
    #[arg(long)]
    pub projection: Option<String>,
    /// Where the journal and snapshots live: `files` (the data directory) or a
    /// `postgres://…` URL.
    #[arg(long)]
    pub store: Option<String>,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let mut config = Config::new(&args.data);
    let mut nats = None;
    let mut replicas = 1;
    if let Some(path) = &args.config {
        let file = ConfigFile::load(path)?;
        file.apply(&mut config)?;
        if let Some(table) = &file.federation {
            replicas = table.nats_replicas.unwrap_or(1);
            nats =
                Some(table.nats.clone().context(
                    "[federation] nats: the NATS server the relay uses (nats://host:port)",
                )?);
        }
    }
    let (engine, report) = crate::store::open_engine(config.clone(), args.store.as_deref())?;
    log_report(&report, &config);
    let engine = Arc::new(engine);
    let projector = match &args.projection {
        Some(url) => Some(crate::project::spawn(
            url,
            args.store.as_deref(),
            &engine,
            config.journal_dir(),
        )?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        // The web console (gongji-console) shares the listener.
        tracing::info!(url = %format!("http://{}/ui/", listener.local_addr()?), "web console");
        // The relay between this engine and the bus (docs/FEDERATION.md), joined below.
        let relay = match (&config.federation, &nats) {
            (Some(federation), Some(url)) => {
                tracing::info!(engine = %federation.engine, nats = %url, "federation relay");
                let mut opts = gongji_federation::serve::RelayOptions::new(url.clone());
                opts.replicas = replicas;
                Some(gongji_federation::serve::spawn(
                    engine.clone(),
                    federation,
                    opts,
                ))
            }
            _ => None,
        };
        let app = Arc::new(gongji_http::App {
            engine: engine.clone(),
            journal_dir: config.journal_dir(),
            journal_config: config.journal,
        });
        // A writer that stopped on a storage error cannot be trusted to go on: stop serving
        // too, so that the process exits and recovers on restart.
        let writer = engine.clone();
        let writer_stopped = async move {
            while writer.is_running() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            tracing::error!("the writer stopped; shutting down");
        };
        let shutdown = async move {
            tokio::select! {
                () = shutdown_signal() => {},
                () = writer_stopped => {},
            }
        };
        let served = gongji_http::serve(listener, app, shutdown)
            .await
            .context("serving");
        if let Some(relay) = relay {
            relay.stop().await;
        }
        served
    });
    tracing::info!("stopping: finishing the batch in flight and writing a snapshot");
    let stopped = engine.shutdown();
    if let Some(projector) = projector {
        projector.stop();
    }
    served?;
    stopped.context("shutdown")?;
    tracing::info!("stopped");
    Ok(())
}

fn log_report(report: &OpenReport, config: &Config) {
    for skipped in &report.skipped_snapshots {
        tracing::warn!(file = %skipped.file, defect = ?skipped.defect, "snapshot skipped");
    }
    if let Some(torn) = &report.torn_tail {
        tracing::warn!(
            file = %torn.file,
            offset = torn.offset,
            bytes = torn.bytes,
            "cut a torn tail: {} bytes of a write that was never acknowledged",
            torn.bytes
        );
    }
    tracing::info!(
        snapshot_op = report.snapshot_op,
        replayed_ops = report.replayed_ops,
        head_op = report.head_op,
        persons = report.persons,
        history_chunks = report.history_chunks,
        millis = report.elapsed.as_millis() as u64,
        "recovered"
    );
    if report.admin_token_created {
        let path = config.admin_token_path();
        tracing::info!(path = %path.display(), "created the admin token");
        println!("admin token written to {}", path.display());
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
