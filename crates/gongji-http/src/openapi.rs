//! The OpenAPI 3.1 document of the API, served at `/v1/openapi.json`. It is kept beside the
//! code in `openapi.json`; tests check it against the real routes so the two cannot drift.

use std::sync::OnceLock;

use serde_json::Value;

pub fn openapi_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(include_str!("openapi.json")).expect("valid JSON"))
}
