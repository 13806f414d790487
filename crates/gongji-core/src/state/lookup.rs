//! Lookups for the web console (`gongji-console`): index reads only, never a scan.

use super::State;
use crate::certno::certno_pack;
use crate::command::PsnNo;

impl State {
    /// The person enrolled with this full certificate number (the certno index). A masked
    /// number matches nothing: finding it would scan every person.
    pub fn psn_no_by_certno(&self, certno: &str) -> Option<PsnNo> {
        let packed = certno_pack(certno)?;
        let i = self.persons.find_certno(packed)?;
        Some(self.persons.psn_no_array(i))
    }
}
