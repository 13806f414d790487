//! The newest settlements of each institution, newest first: what an institution's page shows
//! without walking history. Derived state: kept up to date by `settle`, written to snapshots
//! (rebuilding it would read every settlement, most of them in history files), and compared
//! with a rebuild by `State::check`.

use super::chunked::Chunked;

/// How many of an institution's newest settlements are kept.
pub const RECENT_SETTLEMENTS_MAX: usize = 20;

/// One institution's newest settlements: a ring of settlement indexes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ring {
    len: u8,
    /// Slot of the oldest.
    head: u8,
    slots: [u32; RECENT_SETTLEMENTS_MAX],
}

impl Ring {
    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        (0..usize::from(self.len))
            .map(|i| self.slots[(usize::from(self.head) + i) % RECENT_SETTLEMENTS_MAX])
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

/// Per institution index, in shared chunks like every growing column, so that a frozen copy
/// for a snapshot shares them (the snapshot carries this index).
#[derive(Clone, Debug, Default)]
pub(crate) struct Recent {
    pub(super) by_inst: Chunked<Ring>,
}

impl Recent {
    /// Bytes held.
    pub fn memory(&self) -> u64 {
        (self.by_inst.len() * std::mem::size_of::<Ring>()) as u64
    }

    pub fn note(&mut self, inst: u32, settlement: u32) {
        let i = inst as usize;
        while self.by_inst.len() <= i {
            self.by_inst.push(Ring::default());
        }
        let ring = &mut self.by_inst[i];
        if usize::from(ring.len) == RECENT_SETTLEMENTS_MAX {
            ring.slots[usize::from(ring.head)] = settlement;
            ring.head = ((usize::from(ring.head) + 1) % RECENT_SETTLEMENTS_MAX) as u8;
        } else {
            ring.slots[(usize::from(ring.head) + usize::from(ring.len)) % RECENT_SETTLEMENTS_MAX] =
                settlement;
            ring.len += 1;
        }
    }

    /// Settlement indexes of `inst`, newest first.
    pub fn of(&self, inst: u32) -> impl Iterator<Item = u32> + '_ {
        let ring = (inst as usize) < self.by_inst.len();
        ring.then(|| self.by_inst[inst as usize].iter().rev())
            .into_iter()
            .flatten()
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
