//! The properties, one function per decoder. Each takes the input bytes, panics on a violated
//! property and returns whether the decoder accepted the input.
//!
//! Common to all: no panic, and no absurd allocation — everything allocated while decoding
//! (every request summed, so also the largest) stays below [`alloc_bytes_max`] of the input's
//! length. A hostile length or count field must be refused, not trusted.

use gongji_core::codec::{decode_op, encode_op};
use gongji_core::State;
use gongji_journal::{segment_file_name, verify, FaultStorage, Journal, Storage};

use crate::alloc::{measured, AllocStats};
use crate::seeds::{journal_config, record};

/// What decoding `input_len` bytes may allocate in all: 64 bytes per input byte (indexes,
/// hash tables and per-record structs are larger than their encodings) plus 1 MiB.
pub fn alloc_bytes_max(input_len: usize) -> u64 {
    64 * input_len as u64 + (1 << 20)
}

fn assert_bounded(what: &str, input_len: usize, stats: AllocStats) {
    assert!(
        stats.bytes_total <= alloc_bytes_max(input_len),
        "{what}: {input_len} input bytes made it allocate {stats:?}"
    );
}

/// `decode_op`: accepted bytes re-encode to themselves (the op encoding is canonical).
pub fn op(input: &[u8]) -> bool {
    let (decoded, stats) = measured(|| decode_op(input));
    assert_bounded("decode_op", input.len(), stats);
    let Ok(op) = decoded else { return false };
    let mut again = Vec::new();
    encode_op(&op, &mut again);
    assert_eq!(
        again, input,
        "decode_op accepted a non-canonical encoding of {op:?}"
    );
    true
}

/// `State::decode_snapshot`: an accepted snapshot passed `State::check` (decode runs it) and
/// re-encodes to the same bytes (snapshots are canonical: the state hash depends on it).
pub fn snapshot(input: &[u8]) -> bool {
    let (decoded, stats) = measured(|| State::decode_snapshot(input));
    assert_bounded("decode_snapshot", input.len(), stats);
    let Ok(state) = decoded else { return false };
    let mut again = Vec::new();
    state.encode_snapshot(&mut again);
    assert!(
        again == input,
        "decode_snapshot accepted a non-canonical snapshot ({} bytes re-encode to {})",
        input.len(),
        again.len()
    );
    true
}

/// The journal's recovery scan over segment files made from `input` (cut into files of the
/// segment size, named in op order like the seeds'), from genesis and from an anchor.
///
/// Whatever the bytes: `verify` and `open_read_only` agree; an accepted journal holds a
/// prefix of the one record sequence every seed was written from (a mutation can cut
/// records, never change one: framing CRCs and the hash chain refuse that); `open` cuts any
/// torn tail so that a second open finds none and the same head; and the recovered journal
/// takes a new record that a third open finds.
pub fn journal(input: &[u8]) -> bool {
    let files = segment_files(input);
    let storage = (|| -> Result<FaultStorage, gongji_journal::StorageError> {
        let mut storage = FaultStorage::new();
        for (name, bytes) in &files {
            storage.create(name)?;
            storage.write_at(name, 0, bytes)?;
            storage.sync(name)?;
        }
        storage.sync_dir()?;
        Ok(storage)
    })()
    .expect("in-memory storage");
    let anchor = anchor_for(input);
    let genesis = journal_from(&storage, None, input.len());
    let from_anchor = anchor.is_some_and(|a| journal_from(&storage, Some(a), input.len()));
    genesis || from_anchor
}

/// Segment size chunks of `input`; the i-th gets the i-th name of the seed journal layout
/// (first ops 1, then wherever the data says), so renaming is not what is being tested.
fn segment_files(input: &[u8]) -> Vec<(String, Vec<u8>)> {
    let size = journal_config().segment_size_bytes as usize;
    let mut first_op = 1;
    input
        .chunks(size)
        .map(|chunk| {
            // The header's first op (bytes 8..16) names the file when it is plausible, as the
            // writer named it; otherwise the next name in sequence.
            let named = chunk
                .get(8..16)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                .filter(|&op| op >= first_op && op < first_op + 1000);
            let op = named.unwrap_or(first_op);
            first_op = op + 1;
            (segment_file_name(op), chunk.to_vec())
        })
        .collect()
}

/// An anchor at a small op of the record sequence, chosen by the input's length.
fn anchor_for(input: &[u8]) -> Option<gongji_journal::Anchor> {
    let op = (input.len() % 11) as u64;
    let mut anchor = gongji_journal::Anchor::GENESIS;
    for op in 1..=op {
        let (time, body) = record(op);
        let chain_hash = gongji_journal::format::chain_next(&anchor.chain_hash, op, time, &body);
        anchor = gongji_journal::Anchor { op, chain_hash };
    }
    (op > 0).then_some(anchor)
}

fn journal_from(
    storage: &FaultStorage,
    start: Option<gongji_journal::Anchor>,
    input_len: usize,
) -> bool {
    let config = journal_config();
    let (checked, stats) = measured(|| verify(storage, &config, start));
    assert_bounded("journal verify", input_len, stats);
    let read_only = Journal::open_read_only(storage.clone(), config, start);
    match (&checked, &read_only) {
        (Ok(a), Ok((_, b))) => assert_eq!(a, b, "verify and open_read_only agree"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "same refusal"),
        _ => panic!(
            "verify {checked:?} but open_read_only {:?}",
            read_only.map(|r| r.1)
        ),
    }
    let Ok(recovery) = checked else { return false };

    // Open on a copy, so the run from the other start sees the input unchanged.
    let copy = storage.after_crash(gongji_journal::CrashMode::DropUnsynced);
    let (mut journal, opened) =
        Journal::open(copy.clone(), config, start).expect("verified journal opens");
    assert_eq!(opened.head, recovery.head);
    let mut seen = 0;
    // From the anchor, what a start replays: segments that end before it are listed, not
    // verified (the run from genesis verifies them).
    let after = journal
        .first_op()
        .saturating_sub(1)
        .max(start.map_or(0, |a| a.op));
    journal
        .replay(after, |r| {
            let (time, body) = record(r.op);
            assert_eq!(
                (r.time, r.body),
                (time, &body[..]),
                "record {} changed",
                r.op
            );
            seen += 1;
            Ok::<(), ()>(())
        })
        .expect("replay of a verified journal");
    assert_eq!(after + seen, recovery.head.op, "replay reaches the head");

    let op = journal.append(0, b"after recovery").expect("append");
    journal.sync().expect("sync");
    drop(journal);
    let (_, reopened) = Journal::open(copy, config, start).expect("reopen");
    assert_eq!(reopened.head.op, op, "the new record is found");
    assert!(reopened.torn_tail.is_none(), "open cut the torn tail");
    true
}
