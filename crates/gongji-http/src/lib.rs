//! `gongji-http`: the HTTP/JSON API of API.md on axum.
//!
//! [`router`] builds the routes over an [`App`] (the [`Engine`] plus what the handlers need);
//! [`serve`] runs them until a shutdown signal. Writes are parsed in `wire.rs` into
//! [`gongji_server::WriteRequest`]s and submitted to the single writer; reads take the state's
//! read lock and render views in `render.rs`. This is the only crate that knows JSON.

mod console;
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
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use openapi::openapi_document;

/// Largest request body.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;
/// Longest a request may take, slow clients included.
pub const REQUEST_SECONDS_MAX: u64 = 30;

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
    prometheus();
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
        .route("/v1/audit/verify", get(handlers::audit_verify))
        .route("/v1/persons/{psn_no}", get(handlers::person))
        .route("/v1/persons/{psn_no}/entries", get(handlers::entries))
        .route("/v1/settlements/{setl_id}", get(handlers::settlement))
        .route(
            "/v1/wallet/transfers/{transfer_id}",
            get(handlers::transfer),
        )
        // The web console (gongji-console) under /ui/.
        .merge(console::router(&app))
        .fallback(handlers::write_or_not_found)
        .method_not_allowed_fallback(handlers::not_found)
        .layer(axum::middleware::from_fn(handlers::observe))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(REQUEST_SECONDS_MAX),
        ))
        .with_state(app)
}

/// Serves until `shutdown` completes, then stops accepting and lets requests in flight finish.
/// The caller shuts the engine down afterwards (the batch in flight is synced and answered).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}
