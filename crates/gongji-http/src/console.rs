//! Mounts the web console (`gongji-console`) under `/ui/` on the API's listener, lending it
//! the Prometheus text and the same audit verification as `GET /v1/audit/verify`.

use std::sync::Arc;

use axum::Router;
use gongji_console::{Console, Hooks, VerifyReport};

use crate::App;

pub(crate) fn router(app: &Arc<App>) -> Router<Arc<App>> {
    let verify_app = app.clone();
    let hooks = Hooks {
        metrics_text: Box::new(|| crate::prometheus().render()),
        verify: Box::new(move || verify(&verify_app)),
    };
    gongji_console::router(Arc::new(Console::new(app.engine.clone(), hooks)))
}

/// The journal check of `GET /v1/audit/verify`: the store's own (PostgreSQL) or the files'.
fn verify(app: &App) -> VerifyReport {
    let result = match app.engine.verify_store() {
        Some(result) => result.map(|(_, head)| head),
        None => gongji_server::verify_journal_dir(&app.journal_dir, &app.journal_config)
            .map(|recovery| recovery.head)
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(head) => VerifyReport {
            ok: true,
            op_count: Some(head.op),
            head_hash: Some(hex::encode(head.chain_hash)),
            error: None,
        },
        Err(e) => VerifyReport {
            ok: false,
            op_count: None,
            head_hash: None,
            error: Some(e),
        },
    }
}
