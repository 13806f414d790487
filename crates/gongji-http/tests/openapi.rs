//! The OpenAPI document (`src/openapi.json`, served at `/v1/openapi.json`) against the code:
//! it parses and is OpenAPI 3.1; every route the server serves is documented and every
//! documented operation is served; real responses validate against the documented schemas.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use gongji_http::{openapi_document, App};
use gongji_server::{Config, Engine};
use serde_json::{json, Value};

/// The routes of `src/lib.rs` and the write paths of `src/wire.rs` (`target`), by hand: a new
/// route must be added here and to the document.
const CODE_ROUTES: [(&str, &str); 30] = [
    // lib.rs
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("post", "/v1/batch"),
    ("get", "/v1/reconciliation"),
    ("post", "/v1/reconciliation"),
    ("get", "/v1/stats"),
    ("get", "/v1/audit/verify"),
    ("get", "/v1/persons/{psn_no}"),
    ("get", "/v1/persons/{psn_no}/entries"),
    ("get", "/v1/settlements/{setl_id}"),
    ("get", "/v1/wallet/transfers/{transfer_id}"),
    ("get", "/v1/bindings/{binding_id}"),
    ("get", "/v1/federation/counters"),
    // wire.rs write paths (POST through the fallback)
    ("post", "/v1/tokens"),
    ("post", "/v1/tokens/{token_id}/revoke"),
    ("post", "/v1/persons"),
    ("post", "/v1/persons/{psn_no}/status"),
    ("post", "/v1/persons/{psn_no}/wallet"),
    ("post", "/v1/institutions"),
    ("post", "/v1/credits"),
    ("post", "/v1/bindings"),
    ("post", "/v1/bindings/{binding_id}/revoke"),
    ("post", "/v1/settlements"),
    ("post", "/v1/settlements/{setl_id}/cancel"),
    ("post", "/v1/reversals"),
    ("post", "/v1/wallet/transfers"),
    ("post", "/v1/wallet/transfers/{transfer_id}/accept"),
    ("post", "/v1/wallet/transfers/{transfer_id}/decline"),
    ("post", "/v1/contributions"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

fn doc() -> &'static Value {
    openapi_document()
}

/// Every (method, path) the document declares.
fn documented() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc()["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                out.push((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------- server

struct Server {
    base: String,
    token: String,
    client: reqwest::Client,
    engine: Arc<Engine>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    dir: PathBuf,
}

async fn start() -> Server {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gongji-openapi-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = Config::new(&dir);
    let (journal_dir, journal_config) = (config.journal_dir(), config.journal);
    // Opening waits for the admin token's write: not on a runtime thread.
    let (engine, _) = tokio::task::spawn_blocking(move || Engine::open(config))
        .await
        .expect("open task")
        .expect("engine opens");
    let engine = Arc::new(engine);
    let app = Arc::new(App {
        engine: engine.clone(),
        journal_dir,
        journal_config,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gongji_http::serve(listener, app, async {
        let _ = stopped.await;
    }));
    let token = std::fs::read_to_string(dir.join("admin.token")).expect("admin.token");
    let token = token.trim().to_owned();
    Server {
        base,
        token,
        client: reqwest::Client::new(),
        engine,
        stop,
        task,
        dir,
    }
}

impl Server {
    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let method =
            reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("server task").expect("server");
        let engine = self.engine;
        tokio::task::spawn_blocking(move || engine.shutdown().expect("engine shuts down"))
            .await
            .expect("shutdown task");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A documented path with its placeholders filled with dummy values.
fn fill(path: &str) -> String {
    path.replace("{psn_no}", "P0000000001")
        .replace("{token_id}", "987654")
        .replace("{setl_id}", "987654")
        .replace("{binding_id}", "987654")
        .replace("{transfer_id}", "987654")
}

fn is_unrouted(status: u16, body: &Value) -> bool {
    status == 405
        || (status == 404
            && body["err_msg"]
                .as_str()
                .is_some_and(|m| m.contains("no such endpoint")))
}

// ---------------------------------------------------------------------------------- schemas

/// Resolves a `$ref` into the document (`#/...` JSON pointers only).
fn deref(value: &Value) -> &Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local ref");
            deref(
                doc()
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling ref {r}")),
            )
        }
        None => value,
    }
}

/// A 2020-12 validator for `schema`, with the document's components beside it so that its
/// `#/components/...` references resolve.
fn validator(schema: &Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc()["components"],
        "allOf": [schema],
    });
    jsonschema::draft202012::new(&root).expect("the schema compiles")
}

fn assert_valid(schema: &Value, instance: &Value, what: &str) {
    let validator = validator(schema);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance} does not match its schema: {errors:#?}"
    );
}

fn operation(method: &str, path: &str) -> &'static Value {
    doc()["paths"]
        .get(path)
        .and_then(|item| item.get(method))
        .unwrap_or_else(|| panic!("{method} {path} is not documented"))
}

/// Checks a response against the schema the document gives for its operation and status.
fn check_response(method: &str, path: &str, status: u16, body: &Value) {
    let op = operation(method, path);
    let response = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {path}: status {status} is not documented: {body}"));
    let schema = &deref(response)["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON schema"
    );
    assert_valid(schema, body, &format!("{method} {path} {status}"));
}

/// Checks a request body against the document's request schema.
fn check_request(method: &str, path: &str, body: &Value) {
    let op = operation(method, path);
    let schema = &deref(&op["requestBody"])["content"]["application/json"]["schema"];
    assert_valid(schema, body, &format!("request of {method} {path}"));
}

/// A valid resident ID: `body` is 17 digits, the check character computed (GB 11643).
fn certno(body: &str) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body
        .bytes()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

// ---------------------------------------------------------------------------------- tests

#[test]
fn the_document_is_openapi_3_1() {
    let text = include_str!("../src/openapi.json");
    let parsed: Value = serde_json::from_str(text).expect("openapi.json parses");
    assert_eq!(parsed["openapi"], "3.1.0");
    assert!(parsed["info"]["title"].is_string() && parsed["info"]["version"].is_string());
    assert_eq!(&parsed, doc());
    assert_eq!(
        doc()["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc()["security"], json!([{"bearer": []}]));
    // Every schema compiles under draft 2020-12 and every reference resolves.
    for (name, schema) in doc()["components"]["schemas"].as_object().expect("schemas") {
        let _ = validator(schema);
        assert!(schema.is_object(), "{name}");
    }
    let text = serde_json::to_string(doc()).expect("renders");
    for r in text.split("\"$ref\":\"").skip(1) {
        let target = &r[..r.find('"').expect("closing quote")];
        let pointer = target.strip_prefix('#').expect("local ref");
        assert!(doc().pointer(pointer).is_some(), "dangling ref {target}");
    }
}

#[test]
fn code_routes_and_documented_operations_are_the_same() {
    let mut code: Vec<(String, String)> = CODE_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let mut documented = documented();
    code.sort();
    documented.sort();
    assert_eq!(
        code, documented,
        "the code's routes and the document's operations differ"
    );
}

#[test]
fn every_operation_documents_its_responses_and_security() {
    let public = ["/healthz", "/metrics", "/v1/openapi.json"];
    for (method, path) in documented() {
        let op = operation(&method, &path);
        assert!(
            op["operationId"].is_string(),
            "{method} {path}: operationId"
        );
        assert!(
            op["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{method} {path}"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.contains_key("200"), "{method} {path}: 200");
        if public.contains(&path.as_str()) {
            assert_eq!(op["security"], json!([]), "{method} {path} needs no token");
            continue;
        }
        assert!(
            op.get("security").is_none(),
            "{method} {path} takes the global security"
        );
        assert!(responses.contains_key("401"), "{method} {path}: 401");
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
            })
            .into_iter()
            .flatten()
            .collect();
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_start_matches('{').trim_end_matches('}');
            assert!(
                params.contains(&name),
                "{method} {path}: path parameter {name}"
            );
        }
        if method == "post" && path != "/v1/batch" && path != "/v1/reconciliation" {
            // A write: msgid required, inf_time allowed, unknown fields refused.
            let body = deref(&deref(&op["requestBody"])["content"]["application/json"]["schema"]);
            assert_eq!(body["additionalProperties"], false, "{path}");
            assert!(body["required"]
                .as_array()
                .expect("required")
                .contains(&json!("msgid")));
            assert!(
                body["properties"]["inf_time"].is_object(),
                "{path}: inf_time"
            );
            for status in ["400", "403", "404", "409", "413", "422", "503"] {
                assert!(responses.contains_key(status), "{method} {path}: {status}");
            }
        }
    }
}

#[test]
fn examples_match_their_schemas_and_wrong_values_do_not() {
    for (method, path) in documented() {
        let op = operation(&method, &path);
        let media = &deref(&op["requestBody"])["content"]["application/json"];
        if let Some(example) = media.get("example") {
            assert_valid(
                &media["schema"],
                example,
                &format!("example of {method} {path}"),
            );
        }
        for p in op["parameters"].as_array().into_iter().flatten() {
            if let Some(example) = p.get("example") {
                assert_valid(
                    &p["schema"],
                    example,
                    &format!("{method} {path} {}", p["name"]),
                );
            }
        }
    }
    // The checks bite: a wrong type, a float amount out, a missing field, an unknown field.
    let person = &deref(&operation("get", "/v1/persons/{psn_no}")["responses"]["200"])["content"]
        ["application/json"]["schema"];
    for wrong in [
        json!({"infcode": 0, "output": {"psn_no": 1}}),
        json!({"infcode": -1, "output": {}}),
        json!({"infcode": 0}),
    ] {
        assert!(!validator(person).is_valid(&wrong), "{wrong}");
    }
    let settle = &deref(&operation("post", "/v1/settlements")["requestBody"])["content"]
        ["application/json"]["schema"];
    let mut body = operation("post", "/v1/settlements")["requestBody"]["content"]
        ["application/json"]["example"]
        .clone();
    assert!(validator(settle).is_valid(&body));
    body["medfee_sumamt"] = json!("1.234");
    assert!(!validator(settle).is_valid(&body));
    body["medfee_sumamt"] = json!("1.23");
    body["extra"] = json!(1);
    assert!(!validator(settle).is_valid(&body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_and_nothing_else() {
    let server = start().await;
    for (method, path) in documented() {
        let body = (method == "post").then(|| json!({}));
        let (status, value) = server.send(&method, &fill(&path), body.as_ref()).await;
        assert!(
            !is_unrouted(status, &value),
            "{method} {path} is documented but not served"
        );
        // Other methods on a documented path are not served.
        let item = &doc()["paths"][&path];
        for other in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let body = (*other != "get").then(|| json!({}));
            let (status, value) = server.send(other, &fill(&path), body.as_ref()).await;
            assert!(
                is_unrouted(status, &value),
                "{other} {path} is served but not documented"
            );
        }
    }
    for path in ["/v1/nothing", "/v1/persons/P1/other", "/v2/persons", "/v1"] {
        let (status, value) = server.send("post", path, Some(&json!({}))).await;
        assert!(is_unrouted(status, &value), "{path}: {status} {value}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_document() {
    let server = start().await;
    let response = reqwest::get(format!("{}/v1/openapi.json", server.base))
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    let served: Value = response.json().await.expect("json");
    assert_eq!(&served, doc());
    server.stop().await;
}

/// A walk through most operations; every request body and every response is checked against
/// the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_match_the_documented_schemas() {
    let server = start().await;
    let mut seq = 0;
    let mut time = || {
        seq += 1;
        format!("2031-05-20 10:{:02}:{:02}", seq / 60, seq % 60)
    };
    // (method, documented path, real path, body, expected status)
    let mut steps: Vec<(&str, &str, String, Option<Value>, u16)> = Vec::new();
    let mut step = |m: &'static str, p: &'static str, real: &str, body: Option<Value>, s: u16| {
        steps.push((m, p, real.to_owned(), body, s));
    };
    let (a, b, c) = ("PA0001", "PB0001", "PC0001");
    let inst = "H44010600001";
    step(
        "post",
        "/v1/institutions",
        "/v1/institutions",
        Some(json!({"msgid": "i1",
        "fixmedins_code": inst, "fixmedins_name": "第一医院", "fixmedins_type": "1",
        "admdvs": "440106", "inf_time": time()})),
        200,
    );
    for (msgid, psn, cert, insutype) in [
        ("e1", a, "44010619800101001", "310"),
        ("e2", b, "44010620100101002", "310"),
        ("e3", c, "44010619500101003", "390"),
    ] {
        step(
            "post",
            "/v1/persons",
            "/v1/persons",
            Some(json!({"msgid": msgid, "psn_no": psn,
            "certno": certno(cert), "psn_name": "张三", "insutype": insutype,
            "admdvs": "440106", "inf_time": time()})),
            200,
        );
    }
    step(
        "post",
        "/v1/persons",
        "/v1/persons",
        Some(json!({"msgid": "e4", "psn_no": "PX",
        "certno": "440106198001010010", "psn_name": "李四", "insutype": "310",
        "admdvs": "440106"})),
        400,
    );
    step(
        "post",
        "/v1/credits",
        "/v1/credits",
        Some(json!({"msgid": "cr1", "period": "2031-05",
        "items": [{"psn_no": a, "amount": "3000.00"}, {"psn_no": b, "amount": 12.3}],
        "inf_time": time()})),
        200,
    );
    step(
        "post",
        "/v1/bindings",
        "/v1/bindings",
        Some(json!({"msgid": "b1", "giver_psn_no": a,
        "receiver_psn_no": b, "relation": "child", "inf_time": time()})),
        200,
    );
    step(
        "post",
        "/v1/bindings",
        "/v1/bindings",
        Some(json!({"msgid": "b2", "giver_psn_no": a,
        "receiver_psn_no": c, "relation": "parent", "inf_time": time()})),
        200,
    );
    step(
        "get",
        "/v1/persons/{psn_no}",
        &format!("/v1/persons/{a}"),
        None,
        200,
    );
    step(
        "get",
        "/v1/persons/{psn_no}",
        "/v1/persons/NOBODY",
        None,
        404,
    );
    step(
        "post",
        "/v1/settlements",
        "/v1/settlements",
        Some(json!({"msgid": "H44010600001s1",
        "fixmedins_code": inst, "psn_no": b, "medfee_sumamt": "500.00",
        "fund_pay_sumamt": 300, "acct_used_flag": "1", "inf_time": time()})),
        200,
    );
    step(
        "post",
        "/v1/settlements",
        "/v1/settlements",
        Some(json!({"msgid": "H44010600001s2",
        "fixmedins_code": inst, "psn_no": b, "medfee_sumamt": "50",
        "fund_pay_sumamt": "60", "inf_time": time()})),
        422,
    );
    step(
        "get",
        "/v1/settlements/{setl_id}",
        "/v1/settlements/1",
        None,
        200,
    );
    step(
        "get",
        "/v1/reconciliation",
        &format!("/v1/reconciliation?fixmedins_code={inst}&date=2031-05-20"),
        None,
        200,
    );
    step(
        "post",
        "/v1/reconciliation",
        "/v1/reconciliation",
        Some(json!({
        "fixmedins_code": inst, "date": "2031-05-20", "setl_count": 1, "medfee_sumamt": "500.00",
        "fund_pay_sumamt": "300.00", "acct_pay": "12.30", "wallet_pay": "0.00",
        "acct_mulaid_pay": "187.70", "psn_cash_pay": "1.00"})),
        200,
    );
    step(
        "post",
        "/v1/settlements/{setl_id}/cancel",
        "/v1/settlements/1/cancel",
        Some(json!({"msgid": "x1", "inf_time": time()})),
        200,
    );
    step(
        "post",
        "/v1/settlements/{setl_id}/cancel",
        "/v1/settlements/1/cancel",
        Some(json!({"msgid": "x2", "inf_time": time()})),
        409,
    );
    step(
        "post",
        "/v1/reversals",
        "/v1/reversals",
        Some(json!({"msgid": "r1",
        "omsgid": "H44010600001s9", "inf_time": time()})),
        200,
    );
    step(
        "post",
        "/v1/persons/{psn_no}/wallet",
        &format!("/v1/persons/{b}/wallet"),
        Some(json!({"msgid": "w1", "inf_time": time()})),
        200,
    );
    step(
        "post",
        "/v1/wallet/transfers",
        "/v1/wallet/transfers",
        Some(json!({"msgid": "t1",
        "from_psn_no": a, "to_psn_no": b, "amount": "100", "source": "acct",
        "inf_time": time()})),
        200,
    );
    step(
        "post",
        "/v1/wallet/transfers/{transfer_id}/accept",
        "/v1/wallet/transfers/1/accept",
        Some(json!({"msgid": "t1a", "inf_time": time()})),
        200,
    );
    step(
        "post",
        "/v1/wallet/transfers/{transfer_id}/decline",
        "/v1/wallet/transfers/1/decline",
        Some(json!({"msgid": "t1d", "inf_time": time()})),
        409,
    );
    step(
        "get",
        "/v1/wallet/transfers/{transfer_id}",
        "/v1/wallet/transfers/1",
        None,
        200,
    );
    step(
        "post",
        "/v1/contributions",
        "/v1/contributions",
        Some(json!({"msgid": "k1",
        "payer_psn_no": a, "psn_no": c, "year": 2031, "amount": "380.00",
        "inf_time": time()})),
        200,
    );
    step(
        "post",
        "/v1/persons/{psn_no}/status",
        &format!("/v1/persons/{c}/status"),
        Some(json!({"msgid": "st1", "status": "suspended", "inf_time": time()})),
        200,
    );
    step(
        "post",
        "/v1/bindings/{binding_id}/revoke",
        "/v1/bindings/2/revoke",
        Some(json!({"msgid": "br1", "inf_time": time()})),
        200,
    );
    for (real, status) in [
        ("/v1/bindings/1", 200),
        ("/v1/bindings/2", 200),
        ("/v1/bindings/9", 404),
    ] {
        step("get", "/v1/bindings/{binding_id}", real, None, status);
    }
    let token_body = json!({"msgid": "tk1", "role": "institution", "fixmedins_code": inst,
        "inf_time": time()});
    step(
        "post",
        "/v1/tokens",
        "/v1/tokens",
        Some(token_body.clone()),
        200,
    );
    // A replay answers `token_id` alone.
    step("post", "/v1/tokens", "/v1/tokens", Some(token_body), 200);
    step(
        "post",
        "/v1/tokens/{token_id}/revoke",
        "/v1/tokens/2/revoke",
        Some(json!({"msgid": "tkr1", "inf_time": time()})),
        200,
    );
    step(
        "get",
        "/v1/persons/{psn_no}/entries",
        &format!("/v1/persons/{a}/entries?limit=2"),
        None,
        200,
    );
    step(
        "get",
        "/v1/persons/{psn_no}/entries",
        &format!("/v1/persons/{b}/entries"),
        None,
        200,
    );
    step(
        "get",
        "/v1/persons/{psn_no}/entries",
        &format!("/v1/persons/{a}/entries?limit=0"),
        None,
        400,
    );
    step(
        "get",
        "/v1/stats",
        "/v1/stats?from=2031-01&to=2031-12",
        None,
        200,
    );
    step(
        "get",
        "/v1/stats",
        "/v1/stats?from=2031-01&to=2031-12&prov=44",
        None,
        200,
    );
    step(
        "get",
        "/v1/stats",
        "/v1/stats?from=2031-13&to=2031-12",
        None,
        400,
    );
    step("get", "/v1/audit/verify", "/v1/audit/verify", None, 200);
    // An engine without [federation] has no federation counters.
    let counters = "/v1/federation/counters";
    step("get", counters, counters, None, 404);
    step(
        "post",
        "/v1/batch",
        "/v1/batch",
        Some(json!({"ops": [
            {"path": "/v1/settlements", "body": {"msgid": "H44010600001s3", "fixmedins_code": inst,
                "psn_no": a, "medfee_sumamt": "10.00", "fund_pay_sumamt": "0",
                "inf_time": time()}},
            {"path": "/v1/nowhere", "body": {"msgid": "n1"}},
            {"path": "/v1/persons", "body": {"msgid": "n2"}},
        ]})),
        200,
    );
    for (method, path, real, body, expected) in steps {
        if let (Some(body), 200) = (&body, expected) {
            check_request(method, path, body);
        }
        let (status, value) = server.send(method, &real, body.as_ref()).await;
        assert_eq!(status, expected, "{method} {real}: {value}");
        check_response(method, path, status, &value);
        if path == "/v1/batch" {
            let results = value["output"]["results"].as_array().expect("results");
            assert_eq!(
                results
                    .iter()
                    .map(|r| r["status"].clone())
                    .collect::<Vec<_>>(),
                vec![json!(200), json!(404), json!(400)]
            );
            check_response(
                "post",
                "/v1/settlements",
                200,
                &json!({
                "infcode": 0, "output": results[0]["output"]}),
            );
        }
        if real.ends_with("entries?limit=2") {
            assert!(value["output"]["next"].is_string(), "{value}");
        }
    }
    // The entries page at the end has `next: null`; an unauthenticated request is a 401.
    let (status, value) = server
        .send("get", &format!("/v1/persons/{b}/entries"), None)
        .await;
    assert_eq!((status, &value["output"]["next"]), (200, &Value::Null));
    let response = reqwest::get(format!("{}/v1/persons/{a}", server.base))
        .await
        .expect("get");
    assert_eq!(response.status(), 401);
    let value: Value = response.json().await.expect("json");
    check_response("get", "/v1/persons/{psn_no}", 401, &value);
    for path in ["/healthz", "/metrics"] {
        let response = reqwest::get(format!("{}{path}", server.base))
            .await
            .expect("get");
        assert_eq!(response.status(), 200, "{path}");
    }
    server.stop().await;
}
