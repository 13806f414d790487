//! `gongji-http`: the HTTP/JSON API of API.md on axum.
//!
//! [`router`] builds the routes over an [`App`] (the [`Engine`] plus what the handlers need);
//! [`serve`] runs them until a shutdown signal. Writes are parsed in `wire.rs` into
//! [`gongji_server::WriteRequest`]s and submitted to the single writer; reads take the state's
//! read lock and render views in `render.rs`. This is the only crate that knows JSON.

mod console;
mod federation;
#[cfg(test)]
mod fuzz;
mod handlers;
mod openapi;
mod render;
mod wire;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use gongji_journal::JournalConfig;
use gongji_server::Engine;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use openapi::openapi_document;

/// Largest request body.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;
/// Longest a request may take once its headers are in, slow bodies included (then `408`).
pub const REQUEST_SECONDS_MAX: u64 = 30;
/// Longest a client may take to send a request's headers (then the connection is closed).
pub const HEADER_SECONDS_MAX: u64 = 10;
/// Most connections served at once; one more is answered `503` and closed.
pub const CONNECTION_COUNT_MAX: usize = 4096;

/// What slow or numerous clients may hold (API.md, Operations).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    /// From the end of the headers to the response (then `408`).
    pub request_timeout: Duration,
    pub connection_count_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(HEADER_SECONDS_MAX),
            request_timeout: Duration::from_secs(REQUEST_SECONDS_MAX),
            connection_count_max: CONNECTION_COUNT_MAX,
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct App {
    pub engine: Arc<Engine>,
    pub journal_dir: PathBuf,
    pub journal_config: JournalConfig,
}

/// The process-wide Prometheus recorder (installed once, shared by every router).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (tests embedding several servers).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub fn router(app: Arc<App>) -> Router {
    router_with(app, Limits::default())
}

fn router_with(app: Arc<App>, limits: Limits) -> Router {
    prometheus();
    let deadline = limits.request_timeout;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(handlers::metrics))
        .route("/v1/openapi.json", get(handlers::openapi))
        .route("/v1/batch", post(handlers::batch))
        .route(
            "/v1/reconciliation",
            get(handlers::reconciliation).post(handlers::reconcile),
        )
        .route("/v1/stats", get(handlers::stats))
        .route(
            "/v1/federation/counters",
            get(handlers::federation_counters),
        )
        .route("/v1/audit/verify", get(handlers::audit_verify))
        .route("/v1/persons/{psn_no}", get(handlers::person))
        .route("/v1/persons/{psn_no}/entries", get(handlers::entries))
        .route("/v1/settlements/{setl_id}", get(handlers::settlement))
        .route("/v1/bindings/{binding_id}", get(handlers::binding))
        .route(
            "/v1/wallet/transfers/{transfer_id}",
            get(handlers::transfer),
        )
        // The web console (gongji-console) under /ui/.
        .merge(console::router(&app))
        .fallback(handlers::write_or_not_found)
        .method_not_allowed_fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            handlers::durable_reads,
        ))
        .layer(axum::middleware::from_fn(move |request, next| {
            handlers::guard(deadline, request, next)
        }))
        .with_state(app)
}

/// Serves until `shutdown` completes, then stops accepting and lets requests in flight finish.
/// The caller shuts the engine down afterwards (the batch in flight is synced and answered).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, Limits::default(), shutdown).await
}

/// [`serve`] with the given limits.
///
/// The accept loop is hyper's HTTP/1.1 connection builder rather than `axum::serve`, which
/// sets no header-read timeout and no connection cap: a client trickling its headers, or
/// thousands of idle ones, would hold the service for ever.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router_with(app, limits);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connection_count_max));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: the
                    // listener itself is fine; wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refuse_connection(&stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        // Joined on shutdown through `graceful`, which waits for every watched connection.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection over the cap with `503` and closes it. One small non-blocking write
/// into a fresh socket's empty send buffer: the accept loop never waits on such a client.
fn refuse_connection(stream: &tokio::net::TcpStream) {
    const BODY: &str =
        r#"{"infcode":-1,"err_code":"OVERLOADED","err_msg":"too many connections; retry later"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    metrics::counter!("gongji_connections_refused_total").increment(1);
    let _ = stream.try_write(response.as_bytes());
}
