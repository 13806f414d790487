//! Operations: health, the writer's figures, throughput sampled while the page is open,
//! HTTP latency and projection lag from the process's Prometheus text, journal and
//! snapshot positions, and the audit verification on a button. Admin only.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use gongji_core::time::format_cst;
use gongji_core::Actor;
use maud::{html, Markup};

use super::{csrf_ok, signed_in, ConsoleState};
use crate::chart::{stacked_bars, Series};
use crate::form;
use crate::layout::{csrf_field, forbidden, frame, html_response, notice, Ctx};
use crate::{Console, VerifyReport};

/// Samples kept: an hour at one per 10 s.
const SAMPLE_COUNT_MAX: usize = 360;
/// Closer samples than this are not kept (several people on the page at once).
const SAMPLE_SPACING: Duration = Duration::from_secs(5);
/// Samples shown in the chart: the last ten minutes.
const CHART_WINDOW: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug)]
pub struct Sample {
    at: Instant,
    ops: u64,
}

/// Takes a sample (unless one is fresh) and returns the ops/s between consecutive samples
/// of the chart window, with the seconds each ended before now.
fn sample(console: &Console) -> Vec<(u64, f64)> {
    let now = Instant::now();
    let ops = console.engine.counters().ops_applied_total.load(Relaxed);
    let mut samples = console.samples.lock().expect("samples lock");
    if samples.back().is_none_or(|s| now - s.at >= SAMPLE_SPACING) {
        samples.push_back(Sample { at: now, ops });
        if samples.len() > SAMPLE_COUNT_MAX {
            samples.pop_front();
        }
    }
    let recent: Vec<Sample> = samples
        .iter()
        .filter(|s| now - s.at <= CHART_WINDOW)
        .copied()
        .collect();
    recent
        .windows(2)
        .map(|w| {
            let secs = (w[1].at - w[0].at).as_secs_f64().max(0.001);
            let rate = w[1].ops.saturating_sub(w[0].ops) as f64 / secs;
            ((now - w[1].at).as_secs(), rate)
        })
        .collect()
}

/// One metric line of the Prometheus text: name, labels, value.
fn metric_lines(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let value = value.parse::<f64>().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (head, ""),
            };
            Some((name, labels, value))
        })
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.trim_matches('"'))
    })
}

/// Per endpoint: (requests, mean seconds, p99 seconds) from the request histogram summary.
fn http_latency(text: &str) -> Vec<(String, u64, f64, f64)> {
    let mut rows: std::collections::BTreeMap<String, (f64, f64, f64)> = Default::default();
    for (name, labels, v) in metric_lines(text) {
        let Some(endpoint) = label(labels, "endpoint") else {
            continue;
        };
        let row = rows.entry(endpoint.to_owned()).or_default();
        match name {
            "gongji_http_request_seconds_count" => row.0 = v,
            "gongji_http_request_seconds_sum" => row.1 = v,
            "gongji_http_request_seconds" if label(labels, "quantile") == Some("0.99") => row.2 = v,
            _ => {}
        }
    }
    rows.into_iter()
        .filter(|(_, r)| r.0 > 0.0)
        .map(|(e, (n, sum, p99))| (e, n as u64, sum / n, p99))
        .collect()
}

fn projection(text: &str) -> Option<(f64, f64, f64)> {
    let find = |want: &str| {
        metric_lines(text)
            .find(|(n, _, _)| *n == want)
            .map(|(_, _, v)| v)
    };
    Some((
        find("gongji_projection_lag_seconds")?,
        find("gongji_projection_lag_ops").unwrap_or(f64::NAN),
        find("gongji_projection_up").unwrap_or(f64::NAN),
    ))
}

fn render(console: &Console, ctx: &Ctx, verified: Option<&VerifyReport>) -> Response {
    let lang = ctx.lang;
    let c = console.engine.counters();
    let batches = c.batches_total.load(Relaxed);
    let fsync_ms = if batches == 0 {
        0.0
    } else {
        c.sync_nanos_total.load(Relaxed) as f64 / batches as f64 / 1e6
    };
    let (clock, persons) = console.engine.read(|s| (s.clock(), s.person_count()));
    let rates = sample(console);
    let text = (console.hooks.metrics_text)();
    let latency = http_latency(&text);
    let card =
        |k: &str, id: &str, v: String| html! { div.card { div.k { (k) } div.v id=(id) { (v) } } };
    let running = console.engine.is_running();
    let body = html! {
        @if let Some(v) = verified { (verify_notice(ctx, v)) }
        h2 { (lang.t("Health")) }
        div.cards {
            (card(lang.t("Writer"), "health", lang.t(if running { "running" } else { "stopped" }).to_owned()))
            (card(lang.t("Engine clock"), "clock", if clock > 0 { format_cst(clock) } else { "-".to_owned() }))
            (card(lang.t("Persons enrolled"), "persons", persons.to_string()))
            (card(lang.t("Queue depth (ops)"), "queue", c.queue_ops.load(Relaxed).to_string()))
        }
        h2 { (lang.t("Writer")) }
        div.cards {
            (card(lang.t("Ops applied"), "ops-applied", c.ops_applied_total.load(Relaxed).to_string()))
            (card(lang.t("Ops rejected"), "ops-rejected", c.ops_rejected_total.load(Relaxed).to_string()))
            (card(lang.t("Batches"), "batches", batches.to_string()))
            (card(lang.t("Mean fsync per batch (ms)"), "fsync", format!("{fsync_ms:.3}")))
            (card(lang.t("Journal head op"), "journal-head", c.journal_head_op.load(Relaxed).to_string()))
            (card(lang.t("Journal bytes written"), "journal-bytes", c.journal_bytes_total.load(Relaxed).to_string()))
            (card(lang.t("Snapshot at op"), "snapshot-op", c.snapshot_op.load(Relaxed).to_string()))
            (card(lang.t("Previous snapshot at op"), "snapshot-prev", c.snapshot_op_previous.load(Relaxed).to_string()))
        }
        h2 { (lang.t("Throughput")) }
        (throughput(ctx, &rates))
        h2 { (lang.t("HTTP latency")) }
        table id="latency" {
            tr { th.l { (lang.t("Endpoint")) } th { (lang.t("Requests")) } th { (lang.t("Mean (ms)")) } th { (lang.t("p99 (ms)")) } }
            @for (e, n, mean, p99) in &latency {
                tr { td.l { (e) } td { (n) } td { (format!("{:.3}", mean * 1e3)) } td { (format!("{:.3}", p99 * 1e3)) } }
            }
        }
        h2 { (lang.t("Projection")) }
        @match projection(&text) {
            None => { p id="projection" { (lang.t("not configured")) } }
            Some((secs, ops, up)) => {
                div.cards id="projection" {
                    (card(lang.t("lag (s)"), "projection-lag-s", format!("{secs:.1}")))
                    (card(lang.t("lag (ops)"), "projection-lag-ops", format!("{ops}")))
                    (card(lang.t("up"), "projection-up", format!("{up}")))
                }
            }
        }
        h2 { (lang.t("Audit")) }
        form method="post" action="/ui/ops/verify" id="verify" {
            (csrf_field(ctx))
            button type="submit" { (lang.t("Verify the journal")) }
        }
    };
    html_response(StatusCode::OK, frame(ctx, lang.t("Operations"), body))
}

fn throughput(ctx: &Ctx, rates: &[(u64, f64)]) -> Markup {
    let lang = ctx.lang;
    let cats: Vec<String> = rates.iter().map(|(ago, _)| format!("-{ago}s")).collect();
    let series = [Series {
        label: lang.t("Ops applied"),
        color: "#0b5cad",
        values: rates.iter().map(|(_, r)| r.round() as u64).collect(),
    }];
    html! {
        p { (lang.t("ops/s since the previous sample")) ": "
            strong id="ops-rate" { (rates.last().map_or("-".to_owned(), |(_, r)| format!("{r:.1}"))) } }
        (stacked_bars("chart-throughput", lang.t("Applied ops per second, sampled while this page is open (every 10 s)"), &cats, &series, 1))
    }
}

fn verify_notice(ctx: &Ctx, v: &VerifyReport) -> Markup {
    let lang = ctx.lang;
    if v.ok {
        html! {
            div id="verify-result" {
                (notice("ok", lang.t("Verified: the hash chain is intact.")))
                p { (lang.t("Ops checked")) ": " (v.op_count.unwrap_or(0)) " · " (lang.t("Head hash")) ": " code { (v.head_hash.as_deref().unwrap_or("")) } }
            }
        }
    } else {
        let why = v.error.as_deref().unwrap_or("");
        html! { div id="verify-result" { (notice("err", &format!("{}: {why}", lang.t("Verification failed")))) } }
    }
}

pub async fn page(State(console): ConsoleState, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = match signed_in(&console, &headers, &uri) {
        Ok(ctx) => ctx,
        Err(r) => return r.into(),
    };
    if ctx.actor != Actor::Admin {
        return forbidden(&ctx);
    }
    let mut response = render(&console, &ctx, None);
    // Refreshing keeps the throughput samples coming while someone watches.
    response
        .headers_mut()
        .insert("refresh", "10".parse().expect("header"));
    response
}

/// `POST /ui/ops/verify`: the audit verification of `GET /v1/audit/verify`, shown on the page.
pub async fn verify(
    State(console): ConsoleState,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let ctx = match signed_in(&console, &headers, &uri) {
        Ok(ctx) => ctx,
        Err(r) => return r.into(),
    };
    if ctx.actor != Actor::Admin {
        return forbidden(&ctx);
    }
    let pairs = form::read(body).await.unwrap_or_default();
    if !csrf_ok(&ctx, &pairs) {
        return forbidden(&ctx);
    }
    let hooks = console.hooks.clone();
    let report = tokio::task::spawn_blocking(move || (hooks.verify)())
        .await
        .expect("verify task");
    render(&console, &ctx, Some(&report))
}

#[cfg(test)]
mod tests {
    #[test]
    fn latency_and_lag_from_prometheus_text() {
        // Proves the figures shown are read from the exporter's summary and gauge lines.
        let text = "# TYPE x summary\n\
            gongji_http_request_seconds{endpoint=\"/v1/stats\",quantile=\"0.99\"} 0.004\n\
            gongji_http_request_seconds_sum{endpoint=\"/v1/stats\"} 0.01\n\
            gongji_http_request_seconds_count{endpoint=\"/v1/stats\"} 5\n\
            gongji_projection_lag_seconds 1.5\n";
        let rows = super::http_latency(text);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].0.as_str(), rows[0].1), ("/v1/stats", 5));
        assert!((rows[0].2 - 0.002).abs() < 1e-12 && (rows[0].3 - 0.004).abs() < 1e-12);
        assert_eq!(super::projection(text).map(|p| p.0), Some(1.5));
        assert_eq!(super::projection("gongji_queue_ops 3\n"), None);
    }
}
