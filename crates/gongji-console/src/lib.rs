//! `gongji-console`: the web console under `/ui/`, served by `gongji serve` on the API's
//! listener.
//!
//! [`Console`] holds the [`Engine`], the signed-in [`session::Sessions`] and the [`Hooks`] the
//! HTTP crate lends it (the Prometheus text, the audit verification); [`router`] builds the
//! `/ui/` routes over it. Pages are HTML rendered on the server with `maud` (escaped by
//! construction), charts are SVG drawn here (`chart.rs`), the one stylesheet is compiled into
//! the binary: no CDN, no external request, no script. Every read goes through
//! [`Engine::read`] with the API's role rules; every write is a [`gongji_server::WriteRequest`]
//! checked by `gongji_core::validate_command` and submitted to the same single writer as the
//! API's, under the signed-in token's actor. Nothing here scans persons or history: each page
//! is a bounded number of index lookups and counter reads.

mod chart;
mod form;
mod i18n;
mod layout;
mod pages;
mod session;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use gongji_core::{ErrCode, Rejection};
use gongji_server::{Engine, SubmitError, WriteRequest, WriteResult};

pub use i18n::Lang;

/// Hands writes to the writer and waits for their results. A full queue or a stopped writer
/// is a refusal (`OVERLOADED`, 503). The API's write endpoints and the console's forms both
/// submit through this one function, so the two answer these cases alike; it lives here
/// because the HTTP crate already depends on the console (it mounts its routes).
pub async fn submit(
    engine: &Engine,
    requests: Vec<WriteRequest>,
) -> Result<Vec<WriteResult>, Rejection> {
    let stopped = || Rejection::with(ErrCode::Overloaded, "the writer has stopped");
    let rx = engine.submit(requests).map_err(|e| match e {
        SubmitError::Overloaded => {
            Rejection::with(ErrCode::Overloaded, "retry with the same msgid")
        }
        SubmitError::Stopped => stopped(),
    })?;
    rx.await.map_err(|_| stopped())
}

/// One run of the audit verification, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub ok: bool,
    pub op_count: Option<u64>,
    pub head_hash: Option<String>,
    pub error: Option<String>,
}

type MetricsText = Box<dyn Fn() -> String + Send + Sync>;
type Verify = Box<dyn Fn() -> VerifyReport + Send + Sync>;

/// What the HTTP crate lends the console: the process's Prometheus text (HTTP latency,
/// projection lag) and the audit verification of `GET /v1/audit/verify`, so that both are
/// computed in one place.
pub struct Hooks {
    pub metrics_text: MetricsText,
    /// Blocking: run on a blocking thread.
    pub verify: Verify,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").finish_non_exhaustive()
    }
}

/// The console's shared state.
#[derive(Debug)]
pub struct Console {
    pub(crate) engine: Arc<Engine>,
    pub(crate) hooks: Arc<Hooks>,
    pub(crate) sessions: session::Sessions,
}

impl Console {
    pub fn new(engine: Arc<Engine>, hooks: Hooks) -> Console {
        Console {
            engine,
            hooks: Arc::new(hooks),
            sessions: session::Sessions::default(),
        }
    }
}

/// The `/ui/` routes, with full paths, ready to be merged into the API's router.
pub fn router<S: Clone + Send + Sync + 'static>(console: Arc<Console>) -> Router<S> {
    Router::new()
        .route("/ui", get(pages::home))
        .route("/ui/", get(pages::overview::page))
        .route("/ui/stats.csv", get(pages::overview::csv))
        .route("/ui/console.css", get(layout::stylesheet))
        .route(
            "/ui/login",
            get(pages::login::form).post(pages::login::submit),
        )
        .route("/ui/logout", post(pages::login::logout))
        .route("/ui/lang/{lang}", get(pages::login::set_lang))
        .route("/ui/search", get(pages::person::search))
        .route("/ui/persons/{psn_no}", get(pages::person::page))
        .route(
            "/ui/bindings/{binding_id}/revoke",
            post(pages::person::revoke),
        )
        .route("/ui/transfers/", get(pages::person::transfer_lookup))
        .route("/ui/transfers/{transfer_id}", get(pages::person::transfer))
        .route(
            "/ui/transfers/{transfer_id}/{action}",
            post(pages::person::transfer_action),
        )
        .route("/ui/institutions/{code}", get(pages::institution::page))
        .route("/ui/ops", get(pages::ops::page))
        .route("/ui/ops/verify", post(pages::ops::verify))
        .with_state(console)
}
