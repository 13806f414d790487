//! Operations: health, the writer's figures, throughput and batch latency over the last ten
//! minutes (from the writer's own load samples),
//! HTTP latency and projection lag from the process's Prometheus text, journal and
//! snapshot positions, and the audit verification on a button. Admin only.

use std::sync::atomic::Ordering::Relaxed;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use gongji_core::time::format_cst;
use gongji_core::Actor;
use maud::{html, Markup};

use super::{signed_in, signed_in_form, ConsoleState};
use crate::chart::{stacked_bars, Series};
use crate::layout::{csrf_field, forbidden, frame, html_response, notice, Ctx};
use crate::{Console, VerifyReport};

/// Samples shown: the last ten minutes of the writer's load samples.
const WINDOW_SAMPLES: usize = 60;

/// One interval between two consecutive load samples of the window.
struct Interval {
    /// Seconds before now that the interval ended.
    ago: i64,
    ops_per_s: f64,
    rejected_per_s: f64,
    fsync_ms_mean: f64,
    batch_ms_max: f64,
}

/// The intervals of the last ten minutes, from the samples the writer takes every 10 s
/// whether or not the page is open.
fn intervals(console: &Console) -> Vec<Interval> {
    let samples = console.engine.load_samples();
    let from = samples.len().saturating_sub(WINDOW_SAMPLES + 1);
    let now = gongji_server::now_unix();
    samples[from..]
        .windows(2)
        .map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let secs = (b.unix_time - a.unix_time).max(1) as f64;
            let batches = b.batches_total.saturating_sub(a.batches_total);
            let sync = b.sync_nanos_total.saturating_sub(a.sync_nanos_total);
            Interval {
                ago: (now - b.unix_time).max(0),
                ops_per_s: b.ops_applied_total.saturating_sub(a.ops_applied_total) as f64 / secs,
                rejected_per_s: b.ops_rejected_total.saturating_sub(a.ops_rejected_total) as f64
                    / secs,
                fsync_ms_mean: if batches == 0 {
                    0.0
                } else {
                    sync as f64 / batches as f64 / 1e6
                },
                batch_ms_max: b.batch_nanos_max as f64 / 1e6,
            }
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
    let rates = intervals(console);
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

fn throughput(ctx: &Ctx, rates: &[Interval]) -> Markup {
    let lang = ctx.lang;
    let cats: Vec<String> = rates.iter().map(|r| format!("-{}s", r.ago)).collect();
    let series = [Series {
        label: lang.t("Ops applied"),
        color: "#0b5cad",
        values: rates.iter().map(|r| r.ops_per_s.round() as u64).collect(),
    }];
    html! {
        p { (lang.t("ops/s over the last 10 s")) ": "
            strong id="ops-rate" { (rates.last().map_or("-".to_owned(), |r| format!("{:.1}", r.ops_per_s))) } }
        (stacked_bars("chart-throughput", lang.t("Applied ops per second over the last ten minutes (the writer samples every 10 s)"), &cats, &series, 1))
        table id="load" {
            tr {
                th { (lang.t("Ended (s ago)")) } th { (lang.t("Ops applied/s")) } th { (lang.t("Ops rejected/s")) }
                th { (lang.t("Mean fsync per batch (ms)")) } th { (lang.t("Longest batch (ms)")) }
            }
            @for r in rates.iter().rev() {
                tr {
                    td { (r.ago) } td { (format!("{:.1}", r.ops_per_s)) } td { (format!("{:.1}", r.rejected_per_s)) }
                    td { (format!("{:.3}", r.fsync_ms_mean)) } td { (format!("{:.3}", r.batch_ms_max)) }
                }
            }
        }
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
    let ctx = match signed_in_form(&console, &headers, &uri, body).await {
        Ok((ctx, _)) => ctx,
        Err(r) => return r,
    };
    if ctx.actor != Actor::Admin {
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
