//! The simulated bus: it carries encoded messages between engines and is allowed everything
//! Jepsen saw a real one do: it drops, duplicates, reorders (random delays), delays, damages
//! bytes, and partitions pairs of engines. Exactly-once comes from the engines (journals and
//! exchange ids) and the senders' resends, never from the bus.

use std::collections::BTreeSet;

use gongji_core::federation::codec::encode_message;
use gongji_core::federation::{EngineId, Message};
use splitmix::SplitMix64;

/// Fault rates, per mille of messages sent, and the largest delay in steps.
#[derive(Clone, Copy, Debug)]
pub struct BusFaults {
    pub drop_per_mille: u64,
    pub duplicate_per_mille: u64,
    pub corrupt_per_mille: u64,
    pub delay_steps_max: u64,
}

#[derive(Clone, Debug)]
pub struct InTransit {
    pub due_step: u64,
    pub from: EngineId,
    pub to: EngineId,
    pub bytes: Vec<u8>,
}

/// What the bus did, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct BusStats {
    pub sent: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub partitioned: u64,
    pub delivered: u64,
}

#[derive(Debug)]
pub struct Bus {
    pub faults: BusFaults,
    queue: Vec<InTransit>,
    /// Pairs (lower id, higher id) that cannot reach each other now.
    partitions: BTreeSet<(EngineId, EngineId)>,
    pub stats: BusStats,
    /// The clean bytes of every distinct message ever sent: the stale copies the simulation
    /// replays after forgetting (a real bus may deliver any of them, any day later).
    sent_ever: BTreeSet<Vec<u8>>,
}

fn pair(a: EngineId, b: EngineId) -> (EngineId, EngineId) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Bus {
    pub fn new(faults: BusFaults) -> Bus {
        Bus {
            faults,
            queue: Vec::new(),
            partitions: BTreeSet::new(),
            stats: BusStats::default(),
            sent_ever: BTreeSet::new(),
        }
    }

    pub fn send(&mut self, rng: &mut SplitMix64, step: u64, msg: &Message) {
        self.stats.sent += 1;
        let mut clean = Vec::new();
        encode_message(msg, &mut clean);
        self.sent_ever.insert(clean);
        let (from, to) = (msg.from(), msg.to());
        if self.partitions.contains(&pair(from, to)) {
            self.stats.partitioned += 1;
            return;
        }
        if rng.chance(self.faults.drop_per_mille) {
            self.stats.dropped += 1;
            return;
        }
        let copies = if rng.chance(self.faults.duplicate_per_mille) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut bytes = Vec::new();
            encode_message(msg, &mut bytes);
            if rng.chance(self.faults.corrupt_per_mille) {
                self.stats.corrupted += 1;
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            let due_step = step + rng.below(self.faults.delay_steps_max + 1);
            self.queue.push(InTransit {
                due_step,
                from,
                to,
                bytes,
            });
        }
    }

    /// The messages due by `step`, in a random order; those across a partition are lost.
    pub fn take_due(&mut self, rng: &mut SplitMix64, step: u64) -> Vec<InTransit> {
        let (mut due, rest): (Vec<_>, Vec<_>) =
            self.queue.drain(..).partition(|m| m.due_step <= step);
        self.queue = rest;
        rng.shuffle(&mut due);
        let before = due.len();
        due.retain(|m| !self.partitions.contains(&pair(m.from, m.to)));
        self.stats.partitioned += (before - due.len()) as u64;
        self.stats.delivered += due.len() as u64;
        due
    }

    pub fn partition(&mut self, a: EngineId, b: EngineId) {
        self.partitions.insert(pair(a, b));
    }

    pub fn heal(&mut self, a: EngineId, b: EngineId) {
        self.partitions.remove(&pair(a, b));
    }

    pub fn heal_all(&mut self) {
        self.partitions.clear();
    }

    pub fn is_partitioned(&self, a: EngineId, b: EngineId) -> bool {
        self.partitions.contains(&pair(a, b))
    }

    /// Every distinct message ever sent, in byte order (whatever was dropped or damaged).
    pub fn sent_ever(&self) -> impl Iterator<Item = &[u8]> {
        self.sent_ever.iter().map(Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
