//! Running engines read over HTTP (`--url URL --token TOKEN`), for `gongji federation
//! reconcile` and `gongji report`: an engine's reconciliation counters from
//! `GET /v1/federation/counters` and its statistics from `GET /v1/stats`, both admin reads
//! whose answers are durable. A data directory is read as it is on disk; a URL as the engine
//! serves it, so an engine can be checked without stopping it or reaching its disk.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use gongji_core::federation::{EngineId, FedCounters, Tally};
use gongji_core::money::parse_amount;
use gongji_core::time::parse_date;
use gongji_core::views::StatsView;
use gongji_federation::reconcile::EngineCounters;
use serde_json::Value;

/// One running engine: its base URL and an admin token.
pub struct Remote {
    pub url: String,
    token: String,
    agent: ureq::Agent,
}

/// Pairs `--url`s with `--token`s: one token per URL, in order, or one token for all. A
/// token given as `@FILE` is read from that file (an engine's `admin.token`), so that it need
/// not appear on a command line.
pub fn remotes(urls: &[String], tokens: &[String]) -> Result<Vec<Remote>> {
    if urls.is_empty() {
        ensure!(tokens.is_empty(), "--token without --url");
        return Ok(Vec::new());
    }
    ensure!(
        tokens.len() == urls.len() || tokens.len() == 1,
        "--token: one per --url, or one for all ({} URLs, {} tokens)",
        urls.len(),
        tokens.len()
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    urls.iter()
        .enumerate()
        .map(|(i, url)| {
            let base = url.trim_end_matches('/');
            ensure!(
                base.starts_with("http://") || base.starts_with("https://"),
                "--url {url}: an http:// or https:// URL"
            );
            let token = &tokens[i.min(tokens.len() - 1)];
            let token = match token.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("--token @{path}"))?
                    .trim()
                    .to_owned(),
                None => token.clone(),
            };
            ensure!(!token.is_empty(), "--token for {url} is empty");
            Ok(Remote {
                url: base.to_owned(),
                token,
                agent: agent.clone(),
            })
        })
        .collect()
}

/// What a running engine answers `GET /v1/federation/counters` with.
pub struct RemoteCounters {
    pub engine: EngineId,
    pub op_count: u64,
    pub exchange_count: u64,
    pub in_flight_count: u64,
    pub pending_count: u64,
    pub counters: EngineCounters,
}

impl Remote {
    /// `GET path`'s `output`; any other answer is an error naming the engine, the status and
    /// the error code (a wrong token: 401 UNAUTHORIZED).
    fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.url);
        let mut response = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .with_context(|| format!("{url}: no answer"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("{url}: reading the answer"))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{url}: {status}, not JSON: {text:.200}"))?;
        if status != 200 || v["infcode"] != 0 {
            bail!(
                "{url}: {status} {} {}",
                v["err_code"].as_str().unwrap_or("?"),
                v["err_msg"].as_str().unwrap_or("")
            );
        }
        Ok(v["output"].clone())
    }

    /// The engine's reconciliation counters (a federated engine's; else an error).
    pub fn counters(&self) -> Result<RemoteCounters> {
        let v = self.get("/v1/federation/counters")?;
        let what = || format!("{}: /v1/federation/counters", self.url);
        let engine = v["engine"]
            .as_str()
            .and_then(|e| EngineId::from(e).ok())
            .with_context(what)?;
        let mut counters = EngineCounters::new();
        for row in v["counters"].as_array().with_context(what)? {
            let day = row["date"]
                .as_str()
                .and_then(parse_date)
                .with_context(what)?;
            let peer = row["peer"]
                .as_str()
                .and_then(|e| EngineId::from(e).ok())
                .with_context(what)?;
            let t = |name: &str| tally(&row[name]).with_context(|| format!("{}: {name}", what()));
            let c = FedCounters {
                sent: t("sent")?,
                committed: t("committed")?,
                returned: t("returned")?,
                in_flight: t("in_flight")?,
                received: t("received")?,
                accepted: t("accepted")?,
                refused: t("refused")?,
                pending: t("pending")?,
            };
            ensure!(
                counters.insert((day, peer), c).is_none(),
                "{}: {} {peer} twice",
                what(),
                row["date"]
            );
        }
        let n = |name: &str| {
            v[name]
                .as_u64()
                .with_context(|| format!("{}: {name}", what()))
        };
        Ok(RemoteCounters {
            engine,
            op_count: n("op_count")?,
            exchange_count: n("exchange_count")?,
            in_flight_count: n("in_flight_count")?,
            pending_count: n("pending_count")?,
            counters,
        })
    }

    /// The engine's statistics (`GET /v1/stats`).
    pub fn stats(&self, from: &str, to: &str, prov: Option<u8>) -> Result<StatsView> {
        let mut path = format!("/v1/stats?from={from}&to={to}");
        if let Some(p) = prov {
            path.push_str(&format!("&prov={p}"));
        }
        let v = self.get(&path)?;
        let c = |cell: &Value| cell_of(cell).with_context(|| format!("{}{path}: {cell}", self.url));
        let (draw, wallet) = (&v["account_draw"], &v["wallet_transfer"]);
        Ok(StatsView {
            total: c(&v["total"])?,
            account_draw: c(draw)?,
            same_pool: c(&draw["same_pool"])?,
            cross_pool: c(&draw["cross_pool"])?,
            wallet_transfer: c(wallet)?,
            in_province: c(&wallet["in_province"])?,
            cross_province: c(&wallet["cross_province"])?,
        })
    }
}

fn tally(v: &Value) -> Option<Tally> {
    Some(Tally {
        count: v["count"].as_u64()?,
        amount: parse_amount(v["amount"].as_str()?).ok()?.0,
    })
}

fn cell_of(v: &Value) -> Option<gongji_core::views::StatsCell> {
    Some(gongji_core::views::StatsCell {
        count: v["count"].as_u64()?,
        amount: parse_amount(v["amount"].as_str()?).ok()?,
    })
}
