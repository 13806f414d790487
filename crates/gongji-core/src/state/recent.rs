//! The newest settlements of each institution, newest first: what an institution's page shows
//! without walking history. Derived state: kept up to date by `settle`, rebuilt from the
//! settlements when a snapshot is decoded, never written to one (so no format change), and
//! compared with a rebuild by `State::check`.

use std::collections::VecDeque;

/// How many of an institution's newest settlements are kept.
pub const RECENT_SETTLEMENTS_MAX: usize = 20;

#[derive(Debug, Default)]
pub(crate) struct Recent {
    /// Per institution index, settlement indexes oldest first; allocated on first use.
    by_inst: Vec<VecDeque<u32>>,
}

impl Recent {
    /// Bytes held (the queues' slots).
    pub fn memory(&self) -> u64 {
        let queues = self.by_inst.len() * std::mem::size_of::<VecDeque<u32>>();
        let slots: usize = self.by_inst.iter().map(|q| q.capacity() * 4).sum();
        (queues + slots) as u64
    }

    pub fn note(&mut self, inst: u32, settlement: u32) {
        let i = inst as usize;
        if self.by_inst.len() <= i {
            self.by_inst.resize_with(i + 1, VecDeque::new);
        }
        let queue = &mut self.by_inst[i];
        if queue.len() == RECENT_SETTLEMENTS_MAX {
            queue.pop_front();
        }
        queue.push_back(settlement);
    }

    /// Settlement indexes of `inst`, newest first.
    pub fn of(&self, inst: u32) -> impl Iterator<Item = u32> + '_ {
        self.by_inst
            .get(inst as usize)
            .into_iter()
            .flat_map(|q| q.iter().rev().copied())
    }

    /// From each settlement's institution, in settlement order.
    pub fn rebuild(insts: impl Iterator<Item = u32>) -> Recent {
        let mut recent = Recent::default();
        for (s, inst) in insts.enumerate() {
            recent.note(inst, u32::try_from(s).expect("settlement index fits u32"));
        }
        recent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_per_institution_newest_first() {
        // Proves: each institution keeps exactly its newest RECENT_SETTLEMENTS_MAX settlements,
        // newest first; an institution with none (or never seen) has none; a rebuild from the
        // same sequence gives the same lists.
        let insts: Vec<u32> = (0..100u32)
            .map(|s| if s % 3 == 0 { 2 } else { 0 })
            .collect();
        let mut live = Recent::default();
        for (s, &inst) in insts.iter().enumerate() {
            live.note(inst, s as u32);
        }
        let want = |inst: u32| -> Vec<u32> {
            let all: Vec<u32> = (0..100u32).filter(|&s| insts[s as usize] == inst).collect();
            all.iter()
                .rev()
                .take(RECENT_SETTLEMENTS_MAX)
                .copied()
                .collect()
        };
        for inst in 0..4 {
            assert_eq!(live.of(inst).collect::<Vec<_>>(), want(inst), "{inst}");
        }
        assert_eq!(live.of(1).count(), 0);
        assert_eq!(live.of(99).count(), 0);
        let rebuilt = Recent::rebuild(insts.iter().copied());
        for inst in 0..4 {
            assert!(live.of(inst).eq(rebuilt.of(inst)));
        }
    }
}
