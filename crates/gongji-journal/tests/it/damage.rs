//! Damage detection: every non-tail defect is an error naming file and byte offset.

use gongji_journal::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use gongji_journal::{verify, DamageKind, FaultStorage, Journal, RecordDefect};

use crate::common::{append_range, expect_damage, record_offsets, segment_names, small_config};

/// A synced journal of 120 records over several segments.
fn built() -> (FaultStorage, Vec<String>) {
    let fault = FaultStorage::new();
    let (mut journal, _) = Journal::open(fault.clone(), small_config(), None).unwrap();
    append_range(&mut journal, 0, 120, 5);
    let names = segment_names(&fault);
    assert!(names.len() >= 4);
    (fault, names)
}

/// Rewrites the 60 header bytes before the CRC and fixes the CRC, so only the semantic
/// check can catch the edit.
fn edit_record_header(fault: &FaultStorage, file: &str, offset: u64, edit: impl Fn(&mut [u8])) {
    let mut header = vec![0u8; RECORD_HEADER_BYTES];
    gongji_journal::Storage::read_at(fault, file, offset, &mut header).unwrap();
    edit(&mut header);
    let crc = crc32c::crc32c(&header[..60]);
    header[60..].copy_from_slice(&crc.to_le_bytes());
    fault.overwrite(file, offset, &header);
}

fn open_err(fault: &FaultStorage) -> gongji_journal::Damage {
    let from_verify = expect_damage(verify(fault, &small_config(), None));
    let from_open = expect_damage(Journal::open(fault.clone(), small_config(), None).map(|_| ()));
    assert_eq!(from_verify, from_open, "verify and open agree");
    from_open
}

#[test]
fn body_bit_flip_mid_segment_names_file_and_offset() {
    // Proves a flipped body bit with valid records after it is damage, not a torn tail, in a
    // sealed segment and in the last segment alike.
    for which in [0usize, usize::MAX] {
        let (fault, names) = built();
        let file = if which == 0 {
            &names[0]
        } else {
            names.last().unwrap()
        };
        let offsets = record_offsets(&fault, file);
        assert!(offsets.len() >= 3);
        let target = offsets[1];
        fault.flip_bit(file, target + RECORD_HEADER_BYTES as u64, 3);
        let damage = open_err(&fault);
        assert_eq!((&damage.file, damage.offset), (file, target));
        assert!(matches!(
            damage.kind,
            DamageKind::RecordMidFile { defect: RecordDefect::BodyCrc { .. }, valid_record_at }
                if valid_record_at == offsets[2]
        ));
        assert!(damage.to_string().contains(file.as_str()));
    }
}

#[test]
fn last_record_of_sealed_segment_flip_is_damage() {
    // Proves a bad final record in a non-last segment is never treated as a torn tail.
    let (fault, names) = built();
    let offsets = record_offsets(&fault, &names[1]);
    let target = *offsets.last().unwrap();
    fault.flip_bit(&names[1], target + 10, 0);
    let damage = open_err(&fault);
    assert_eq!(
        (damage.file.as_str(), damage.offset),
        (names[1].as_str(), target)
    );
    assert!(matches!(
        damage.kind,
        DamageKind::RecordInSealedSegment { .. }
    ));
}

#[test]
fn garbage_after_data_in_sealed_segment_is_damage() {
    // Proves non-zero bytes in the unused end of a non-last segment are reported.
    let (fault, names) = built();
    let len = gongji_journal::Storage::len(&fault, &names[0]).unwrap();
    fault.overwrite(&names[0], len - 10, b"junk");
    let damage = open_err(&fault);
    assert_eq!(damage.file, names[0]);
    assert!(matches!(
        damage.kind,
        DamageKind::RecordInSealedSegment {
            defect: RecordDefect::BadMagic
        }
    ));
}

#[test]
fn chain_hash_edit_with_fixed_crc_breaks_the_chain() {
    // Proves the hash chain catches an edited chain hash even when the CRC was recomputed.
    let (fault, names) = built();
    let offsets = record_offsets(&fault, &names[1]);
    edit_record_header(&fault, &names[1], offsets[2], |h| h[40] ^= 0xFF);
    let damage = open_err(&fault);
    assert_eq!(
        (damage.file.as_str(), damage.offset),
        (names[1].as_str(), offsets[2])
    );
    assert!(matches!(damage.kind, DamageKind::ChainMismatch { .. }));
}

#[test]
fn repeated_op_number_is_damage() {
    // Proves a well-formed record repeating the previous op number is reported as an op gap.
    let (fault, names) = built();
    let offsets = record_offsets(&fault, &names[0]);
    edit_record_header(&fault, &names[0], offsets[3], |h| {
        let op = u64::from_le_bytes(h[4..12].try_into().unwrap());
        h[4..12].copy_from_slice(&(op - 1).to_le_bytes());
    });
    let damage = open_err(&fault);
    assert_eq!(damage.offset, offsets[3]);
    assert_eq!(
        damage.kind,
        DamageKind::OpMismatch {
            expected: 4,
            found: 3
        }
    );
}

#[test]
fn removed_middle_segment_is_damage() {
    // Proves a missing segment between two present ones is reported at the next segment.
    let (fault, names) = built();
    fault.remove_durably(&names[2]);
    let damage = open_err(&fault);
    assert_eq!(
        (damage.file.as_str(), damage.offset),
        (names[3].as_str(), 0)
    );
    assert!(matches!(damage.kind, DamageKind::SegmentOpMismatch { .. }));
}

#[test]
fn removed_first_segment_without_anchor_is_damage() {
    // Proves a journal that does not start at op 1 needs a snapshot anchor.
    let (fault, names) = built();
    fault.remove_durably(&names[0]);
    assert!(matches!(
        open_err(&fault).kind,
        DamageKind::NotFromGenesis { .. }
    ));
}

#[test]
fn segment_header_chain_mismatch_is_damage() {
    // Proves a segment whose header prev-hash does not continue the previous segment's chain
    // is caught even with a valid header CRC.
    let (fault, names) = built();
    let mut header = gongji_journal::Storage::read_all(&fault, &names[2]).unwrap();
    header.truncate(SEGMENT_HEADER_BYTES);
    header[20] ^= 1;
    let crc = crc32c::crc32c(&header[..48]);
    header[48..].copy_from_slice(&crc.to_le_bytes());
    fault.overwrite(&names[2], 0, &header);
    let damage = open_err(&fault);
    assert_eq!(
        (damage.file.as_str(), damage.offset),
        (names[2].as_str(), 0)
    );
    assert!(matches!(
        damage.kind,
        DamageKind::SegmentChainMismatch { .. }
    ));
}

#[test]
fn segment_header_flip_is_damage() {
    // Proves a damaged header of a non-last segment (or one followed by records) is damage.
    let (fault, names) = built();
    let last = names.last().unwrap();
    fault.flip_bit(last, 9, 0);
    let damage = open_err(&fault);
    assert_eq!((damage.file.as_str(), damage.offset), (last.as_str(), 0));
    assert!(matches!(damage.kind, DamageKind::SegmentHeader(_)));
}
