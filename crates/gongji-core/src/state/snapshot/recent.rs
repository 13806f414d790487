//! The recent-settlements section: each institution's newest settlements (derived state, but
//! rebuilding it would read every settlement, most of them in history files).

use super::bytes::{Dec, Enc};
use super::*;
use crate::state::recent::{Recent, RECENT_SETTLEMENTS_MAX};
use crate::state::History;

/// Per institution, a count u8 and the settlement indexes (u32) oldest first.
pub(super) fn encode_recent(recent: &Recent, n_insts: usize, e: &mut Enc<'_>) {
    for inst in 0..n_insts {
        let ring = (inst < recent.by_inst.len()).then(|| &recent.by_inst[inst]);
        e.put(ring.map_or(0, |r| r.len() as u8));
        for s in ring.into_iter().flat_map(|r| r.iter()) {
            e.put(s);
        }
    }
}

/// Each list ascending, of existing settlements of its institution (where the record is hot),
/// at most [`RECENT_SETTLEMENTS_MAX`] long.
pub(super) fn decode_recent(
    d: &mut Dec<'_>,
    setls: &History<Settlement>,
    n_insts: usize,
) -> Res<Recent> {
    let mut recent = Recent::default();
    for inst in 0..n_insts as u32 {
        let at = d.pos;
        let n = usize::from(d.get::<u8>()?);
        if n > RECENT_SETTLEMENTS_MAX {
            return fail(at, "recent settlements count");
        }
        let mut last = None;
        for _ in 0..n {
            let at = d.pos;
            let s: u32 = d.get()?;
            let i = s as usize;
            let ascending = last.is_none_or(|l| l < s);
            let of_inst = i < setls.cold_len() || i < setls.len() && setls.get(i).inst == inst;
            if !ascending || !of_inst {
                return fail(at, "recent settlement");
            }
            last = Some(s);
            recent.note(inst, s);
        }
    }
    Ok(recent)
}
