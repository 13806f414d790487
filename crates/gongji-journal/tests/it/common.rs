//! Shared helpers: small configs, deterministic bodies, replay collection, record offsets.

use gongji_journal::format::{RecordHeader, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use gongji_journal::{Journal, JournalConfig, JournalError, Storage};

/// Small segments so a few hundred records roll many times.
pub fn small_config() -> JournalConfig {
    JournalConfig {
        segment_size_bytes: 4096,
        body_bytes_max: 512,
        batch_bytes_max: 16 * 1024,
    }
}

/// splitmix64 for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Deterministic body of varying length (0..=400 bytes) for record number `i`.
pub fn body_for(i: u64) -> Vec<u8> {
    let mut rng = Rng(i.wrapping_mul(7919));
    let len = rng.below(401) as usize;
    (0..len).map(|_| rng.next() as u8).collect()
}

pub type Rec = (u64, i64, Vec<u8>);

/// All records after `after_op`, as owned tuples.
pub fn collect<S: Storage>(journal: &Journal<S>, after_op: u64) -> Vec<Rec> {
    let mut out = Vec::new();
    journal
        .replay(after_op, |r| {
            out.push((r.op, r.time, r.body.to_vec()));
            Ok::<(), ()>(())
        })
        .expect("replay");
    out
}

/// Appends records `first..first+n` (time = op * 10) syncing every `batch` records.
pub fn append_range<S: Storage>(
    journal: &mut Journal<S>,
    first: u64,
    n: u64,
    batch: u64,
) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut unsynced = 0;
    for i in first..first + n {
        let body = body_for(i);
        let op = journal.append(i as i64 * 10, &body).expect("append");
        out.push((op, i as i64 * 10, body));
        unsynced += 1;
        if unsynced == batch {
            journal.sync().expect("sync");
            unsynced = 0;
        }
    }
    journal.sync().expect("final sync");
    out
}

/// Offsets of the records in a segment, parsed with the public format types.
pub fn record_offsets(storage: &impl Storage, file: &str) -> Vec<u64> {
    let data = storage.read_all(file).unwrap();
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut offsets = Vec::new();
    while let Ok(header) = RecordHeader::decode(&data[pos..]) {
        offsets.push(pos as u64);
        pos += RECORD_HEADER_BYTES + header.body_len as usize;
    }
    offsets
}

/// Segment file names in op order.
pub fn segment_names(storage: &impl Storage) -> Vec<String> {
    let mut names: Vec<String> = storage
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("journal-"))
        .collect();
    names.sort();
    names
}

/// Expects a damage error and returns (file, offset, kind).
pub fn expect_damage<T: std::fmt::Debug>(
    result: Result<T, JournalError>,
) -> gongji_journal::Damage {
    match result {
        Err(JournalError::Damage(damage)) => damage,
        other => panic!("expected damage, got {other:?}"),
    }
}
