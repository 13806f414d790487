//! Idempotency: every applied write's msgid, as a 128-bit hash, maps to its request
//! fingerprint and its reply. Records are forgotten after the retention window, oldest first.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::Reply;

/// `reply: None` marks a msgid blocked by a reversal: a late copy is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MsgRecord {
    pub fingerprint: u64,
    pub reply: Option<Reply>,
}

#[derive(Debug, Default)]
pub(crate) struct Msgids {
    pub map: FxHashMap<u128, MsgRecord>,
    /// (time recorded, key), in time order: the clock only moves forward.
    pub fifo: VecDeque<(i64, u128)>,
}

pub(crate) fn msgid_key(msgid: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(msgid.as_bytes())
}

impl Msgids {
    pub fn get(&self, key: u128) -> Option<&MsgRecord> {
        self.map.get(&key)
    }

    pub fn insert(&mut self, key: u128, fingerprint: u64, reply: Option<Reply>, time: i64) {
        let previous = self.map.insert(key, MsgRecord { fingerprint, reply });
        assert!(previous.is_none(), "msgid recorded twice");
        self.fifo.push_back((time, key));
    }

    /// Forgets the records made before `time`.
    pub fn forget_before(&mut self, time: i64) {
        while let Some(&(recorded, key)) = self.fifo.front() {
            if recorded >= time {
                break;
            }
            self.fifo.pop_front();
            self.map.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}
