//! The `--config` TOML file: province parameters (DOMAIN.md) and server limits, each optional
//! with the national default.

use std::path::Path;

use anyhow::{bail, Context, Result};
use gongji_core::params::DrawSource;
use gongji_server::Config;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub binding_receivers_max: Option<u8>,
    pub binding_givers_max: Option<u8>,
    /// Yuan, e.g. "2000.00".
    pub wallet_amount_max: Option<String>,
    pub wallet_daily_count_max: Option<u8>,
    /// "HH:MM" CST.
    pub wallet_closed_from: Option<String>,
    pub wallet_closed_until: Option<String>,
    pub wallet_expiry_time: Option<String>,
    /// Sources in order: "acct", "wallet", "givers".
    pub draw_order: Option<Vec<String>>,
    pub msgid_retention_days: Option<u32>,
    pub batch_op_count_max: Option<usize>,
    pub queue_op_count_max: Option<usize>,
    pub snapshot_interval_ops: Option<u64>,
    /// Engines that own provinces (docs/FEDERATION.md); absent: the engine holds every
    /// province, as always.
    pub federation: Option<crate::federation::FederationToml>,
}

fn hhmm(s: &str) -> Result<u32> {
    let (h, m) = s.split_once(':').context("time must be HH:MM")?;
    let (h, m): (u32, u32) = (h.parse()?, m.parse()?);
    if h > 23 || m > 59 {
        bail!("time {s} out of range");
    }
    Ok(h * 3600 + m * 60)
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    pub fn apply(&self, config: &mut Config) -> Result<()> {
        if let Some(table) = &self.federation {
            config.federation = Some(table.to_config()?);
        }
        let p = &mut config.params;
        if let Some(v) = self.binding_receivers_max {
            p.binding_receivers_max = v;
        }
        if let Some(v) = self.binding_givers_max {
            p.binding_givers_max = v;
        }
        if let Some(v) = &self.wallet_amount_max {
            p.wallet_amount_max = gongji_core::money::parse_amount(v)
                .map_err(|e| anyhow::anyhow!("wallet_amount_max: {e:?}"))?;
        }
        if let Some(v) = self.wallet_daily_count_max {
            p.wallet_daily_count_max = v;
        }
        if let Some(v) = &self.wallet_closed_from {
            p.wallet_closed_from_second = hhmm(v)?;
        }
        if let Some(v) = &self.wallet_closed_until {
            p.wallet_closed_until_second = hhmm(v)?;
        }
        if let Some(v) = &self.wallet_expiry_time {
            p.wallet_expiry_second = hhmm(v)?;
        }
        if let Some(order) = &self.draw_order {
            let sources: Result<Vec<DrawSource>> = order
                .iter()
                .map(|s| match s.as_str() {
                    "acct" => Ok(DrawSource::OwnAcct),
                    "wallet" => Ok(DrawSource::OwnWallet),
                    "givers" => Ok(DrawSource::Givers),
                    other => bail!("draw_order: unknown source {other}"),
                })
                .collect();
            p.draw_order = sources?
                .try_into()
                .map_err(|_| anyhow::anyhow!("draw_order names three sources"))?;
        }
        if let Some(v) = self.msgid_retention_days {
            p.msgid_retention_days = v;
        }
        p.validate()
            .map_err(|e| anyhow::anyhow!("invalid parameters: {e}"))?;
        if let Some(v) = self.batch_op_count_max {
            config.batch_op_count_max = v.max(1);
        }
        if let Some(v) = self.queue_op_count_max {
            config.queue_op_count_max = v.max(1);
        }
        if let Some(v) = self.snapshot_interval_ops {
            config.snapshot_interval_ops = v.max(1);
        }
        Ok(())
    }
}
