//! What each part of the state holds in memory, from lengths and capacities (never a scan):
//! for `/metrics` and the benchmarks, so that an operator sees which part grows.

use std::mem::size_of;

use super::bindings::Binding;
use super::persons::Hot;
use super::State;

/// Bytes of a hash table with `capacity` slots of `slot` bytes (one control byte each).
fn table(capacity: usize, slot: usize) -> u64 {
    (capacity * (slot + 1)) as u64
}

fn records<T>(len: usize) -> u64 {
    (len * size_of::<T>()) as u64
}

impl State {
    /// Approximate bytes held by each part of the state, by part name. Records count at
    /// their size in memory; heap data behind a record (an institution's name, a remembered
    /// reply's lists) is not counted.
    pub fn memory(&self) -> Vec<(&'static str, u64)> {
        let p = &self.persons;
        let n = p.len();
        // Hot record, certno, given and entry heads, wallet day, last credit and its mask,
        // and the two arena ends.
        let columns = n * (size_of::<Hot>() + 8 + 4 + 4 + 4 + 8 + 4 + 4);
        let persons = columns as u64
            + (p.psn_nos.byte_len() + p.names.byte_len()) as u64
            + table(p.index.capacity(), 4)
            + table(p.certno_index.capacity(), 4)
            + self.masked.memory();
        vec![
            ("persons", persons),
            ("bindings", records::<Binding>(self.bindings.len())),
            (
                "settlements",
                self.setls.heap_bytes()
                    + self.details.heap_bytes()
                    + table(self.cancelled.capacity(), 4)
                    + self.recent.memory(),
            ),
            ("transfers", self.transfers.heap_bytes()),
            (
                "contributions",
                self.contributions.heap_bytes() + table(self.contributions_paid.capacity(), 8),
            ),
            ("entries", self.entries.heap_bytes()),
            ("msgids", self.msgids.memory()),
            ("reconciliation", self.recon.memory()),
        ]
    }
}
