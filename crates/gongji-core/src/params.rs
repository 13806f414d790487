//! Province parameters (DOMAIN.md rules 6, 10, 14 and the scale section) with national defaults.

use crate::Fen;

/// A source of money for the personally borne part of a settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrawSource {
    OwnAcct,
    OwnWallet,
    Givers,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Active receivers one giver may have.
    pub binding_receivers_max: u8,
    /// Active givers one receiver may have.
    pub binding_givers_max: u8,
    pub wallet_amount_max: Fen,
    pub wallet_daily_count_max: u8,
    /// Wallet transfers are refused from this second of the CST day…
    pub wallet_closed_from_second: u32,
    /// …until this second of the next day.
    pub wallet_closed_until_second: u32,
    /// Second of the CST day at which a pending transfer made the day before is returned.
    pub wallet_expiry_second: u32,
    /// The order in which a settlement draws on sources; each appears once.
    pub draw_order: [DrawSource; 3],
    pub msgid_retention_days: u32,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            binding_receivers_max: 7,
            binding_givers_max: 7,
            wallet_amount_max: Fen(200_000),
            wallet_daily_count_max: 3,
            wallet_closed_from_second: 22 * 3600,
            wallet_closed_until_second: 6 * 3600,
            wallet_expiry_second: 6 * 3600,
            draw_order: [
                DrawSource::OwnAcct,
                DrawSource::OwnWallet,
                DrawSource::Givers,
            ],
            msgid_retention_days: 30,
        }
    }
}

impl Params {
    /// Checks that the parameters make sense; a config file is validated with this.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.binding_receivers_max == 0 || self.binding_givers_max == 0 {
            return Err("binding limits must be at least 1");
        }
        if self.wallet_amount_max.is_zero() || self.wallet_amount_max > Fen::INPUT_MAX {
            return Err("wallet_amount_max must be between 0.01 and 99999999.99");
        }
        let day = 86_400;
        if self.wallet_closed_from_second >= day
            || self.wallet_closed_until_second >= day
            || self.wallet_expiry_second >= day
        {
            return Err("wallet hours must be within a day");
        }
        let o = self.draw_order;
        if o[0] == o[1] || o[1] == o[2] || o[0] == o[2] {
            return Err("draw_order must name each source once");
        }
        if self.msgid_retention_days == 0 {
            return Err("msgid_retention_days must be at least 1");
        }
        Ok(())
    }

    /// Whether `second` of the CST day is within the closed hours.
    pub fn wallet_closed_at(&self, second: u32) -> bool {
        let (from, until) = (
            self.wallet_closed_from_second,
            self.wallet_closed_until_second,
        );
        if from == until {
            false
        } else if from > until {
            second >= from || second < until
        } else {
            second >= from && second < until
        }
    }
}
