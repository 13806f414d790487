//! Lookups for the web console (`gongji-console`): index reads, and one bounded walk of the
//! queue of pending transfers; never a scan of persons or history.

use super::State;
use crate::certno::certno_pack;
use crate::command::PsnNo;

/// Persons a masked-certno search lists at most.
pub const MASKED_MATCHES_MAX: usize = 50;

impl State {
    /// The persons whose certno masks to `masked` (`4401**********123X`, as every output shows
    /// it), by the masked-certno index, at most [`MASKED_MATCHES_MAX`], in enrolment order;
    /// `None` when `masked` is not a masked certno.
    pub fn psn_nos_by_masked_certno(&self, masked: &str) -> Option<Vec<PsnNo>> {
        let key = crate::certno::masked_key(masked)?;
        let mut found: Vec<u32> = self.masked.find(key, &self.persons.certno).collect();
        found.sort_unstable();
        found.truncate(MASKED_MATCHES_MAX);
        Some(
            found
                .into_iter()
                .map(|i| self.persons.psn_no_array(i))
                .collect(),
        )
    }

    /// The person enrolled with this full certificate number (the certno index).
    pub fn psn_no_by_certno(&self, certno: &str) -> Option<PsnNo> {
        let packed = certno_pack(certno)?;
        let i = self.persons.find_certno(packed)?;
        Some(self.persons.psn_no_array(i))
    }
}

/// Queue items [`State::pending_transfers_to`] examines at most.
pub const PENDING_SCAN_MAX: usize = 100_000;

impl State {
    /// The wallet transfers still pending to `psn_no`, oldest first, at most `limit`, and
    /// whether every pending transfer was examined. There is no per-receiver index: this walks
    /// the expiry queue, which holds only transfers not yet expired (at most about a day of
    /// transfers, a few hundred a day nationally), and stops after [`PENDING_SCAN_MAX`] items.
    pub fn pending_transfers_to(
        &self,
        psn_no: &str,
        limit: usize,
    ) -> Result<(Vec<crate::views::TransferView>, bool), crate::Rejection> {
        let psn = self.person_index(psn_no)?;
        let mut found = Vec::new();
        for (examined, &(expires_at, t)) in self.expiry_queue.iter().enumerate() {
            if examined == PENDING_SCAN_MAX || found.len() == limit {
                return Ok((found, false));
            }
            let transfer = self.transfers.get(t as usize);
            // Items of answered transfers stay in the queue until their time; a transfer whose
            // time has come is returned by the next op, so it is no longer offered.
            if transfer.to == psn
                && transfer.status == super::TransferStatus::Pending
                && expires_at > self.clock
            {
                found.push(self.transfer_view(t, false));
            }
        }
        Ok((found, true))
    }
}
