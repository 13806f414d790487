//! Recovery scan: reads every segment, verifies framing, op continuity and the hash chain, and
//! decides whether the first bad record is a torn tail (cut it) or damage (refuse to start).

use crate::error::{Damage, DamageKind, JournalError, RecordDefect};
use crate::format::{
    chain_next, ChainHash, RecordHeader, SegmentHeader, GENESIS_CHAIN_HASH, RECORD_HEADER_BYTES,
    RECORD_MAGIC, SEGMENT_HEADER_BYTES,
};
use crate::storage::Storage;
use crate::JournalConfig;

const SEGMENT_PREFIX: &str = "journal-";
const SEGMENT_SUFFIX: &str = ".seg";

/// A point in the op sequence: op number and chain hash after it (op 0 = genesis).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Anchor {
    pub op: u64,
    pub chain_hash: ChainHash,
}

impl Anchor {
    /// Before op 1.
    pub const GENESIS: Anchor = Anchor {
        op: 0,
        chain_hash: GENESIS_CHAIN_HASH,
    };
}

/// Unacknowledged bytes found after the last valid record of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: String,
    /// Where the first invalid record starts.
    pub offset: u64,
    /// Bytes from `offset` to the last non-zero byte of the file.
    pub bytes: u64,
    /// The segment header itself never became valid; the whole file is discarded.
    pub whole_file: bool,
}

/// Result of a recovery scan (`Journal::open`) or of [`crate::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Verified records present in the journal (including any at or before the anchor).
    pub records_total: u64,
    /// Op of the oldest record present, if any.
    pub first_op: Option<u64>,
    /// Last verified record (or the anchor / genesis when there is none).
    pub head: Anchor,
    /// Segment files holding the verified records.
    pub segments_total: usize,
    /// The torn tail cut by `open` (reported only by `verify`), for the caller to log.
    pub torn_tail: Option<TornTail>,
}

/// Name of the segment whose first record is `first_op`.
pub fn segment_file_name(first_op: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_op:020}{SEGMENT_SUFFIX}")
}

/// Inverse of [`segment_file_name`]; `None` for any other file.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files on `storage`, sorted by first op.
pub(crate) fn list_segments(storage: &impl Storage) -> Result<Vec<(u64, String)>, JournalError> {
    let mut segments: Vec<(u64, String)> = storage
        .list()?
        .into_iter()
        .filter_map(|name| parse_segment_name(&name).map(|op| (op, name)))
        .collect();
    segments.sort();
    Ok(segments)
}

/// Outcome of parsing the bytes at one record position.
pub(crate) enum Parsed<'a> {
    /// Only zero bytes remain: the end of data in a preallocated segment.
    End,
    Record {
        header: RecordHeader,
        body: &'a [u8],
        end: usize,
    },
    Bad(RecordDefect),
}

/// Checks framing only (magic, header CRC, length, body CRC); not op or chain.
pub(crate) fn parse_record_at(data: &[u8], pos: usize, body_bytes_max: u32) -> Parsed<'_> {
    let rest = &data[pos..];
    if rest.len() < 4 || rest[..4] != RECORD_MAGIC.to_le_bytes() {
        if rest.iter().all(|&b| b == 0) {
            return Parsed::End;
        }
        return Parsed::Bad(if rest.len() < 4 {
            RecordDefect::Truncated
        } else {
            RecordDefect::BadMagic
        });
    }
    if rest.len() < RECORD_HEADER_BYTES {
        return Parsed::Bad(RecordDefect::Truncated);
    }
    let header = match RecordHeader::decode(rest) {
        Ok(header) => header,
        Err(defect) => return Parsed::Bad(RecordDefect::Header(defect)),
    };
    if header.body_len > body_bytes_max {
        return Parsed::Bad(RecordDefect::BodyTooLarge {
            body_len: header.body_len,
        });
    }
    let end = pos + RECORD_HEADER_BYTES + header.body_len as usize;
    if end > data.len() {
        return Parsed::Bad(RecordDefect::Truncated);
    }
    let body = &data[pos + RECORD_HEADER_BYTES..end];
    let computed = crc32c::crc32c(body);
    if computed != header.body_crc {
        return Parsed::Bad(RecordDefect::BodyCrc {
            stored: header.body_crc,
            computed,
        });
    }
    Parsed::Record { header, body, end }
}

/// First offset at or after `from` where a framing-valid record starts.
fn find_valid_record(data: &[u8], from: usize, body_bytes_max: u32) -> Option<usize> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let last_start = data.len().checked_sub(RECORD_HEADER_BYTES)?;
    (from..=last_start).find(|&p| {
        data[p..p + 4] == magic
            && matches!(
                parse_record_at(data, p, body_bytes_max),
                Parsed::Record { .. }
            )
    })
}

/// Offset just past the last non-zero byte.
fn nonzero_end(data: &[u8]) -> usize {
    data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

fn damage(file: &str, offset: usize, kind: DamageKind) -> Damage {
    Damage {
        file: file.to_owned(),
        offset: offset as u64,
        kind,
    }
}

/// One verified segment.
#[derive(Clone, Debug)]
pub(crate) struct SegmentScan {
    pub name: String,
    pub first_op: u64,
    pub records: u64,
    /// Offset just past the last valid record.
    pub end_offset: u64,
    pub file_len_bytes: u64,
}

/// Everything `open` needs from the scan.
#[derive(Debug)]
pub(crate) struct Scan {
    pub segments: Vec<SegmentScan>,
    pub head: Anchor,
    pub torn_tail: Option<TornTail>,
}

impl Scan {
    pub fn recovery(&self) -> Recovery {
        let records_total = self.segments.iter().map(|s| s.records).sum();
        let first_op = self
            .segments
            .iter()
            .find(|s| s.records > 0)
            .map(|s| s.first_op);
        Recovery {
            records_total,
            first_op,
            head: self.head,
            segments_total: self.segments.len(),
            torn_tail: self.torn_tail.clone(),
        }
    }
}

/// Verifies the whole journal against `start` (or genesis) without changing anything.
pub(crate) fn scan(
    storage: &impl Storage,
    config: &JournalConfig,
    start: Option<Anchor>,
) -> Result<Scan, JournalError> {
    let names = list_segments(storage)?;
    let mut result = Scan {
        segments: Vec::new(),
        head: start.unwrap_or(Anchor::GENESIS),
        torn_tail: None,
    };
    let mut walked = false;
    for (index, (name_op, name)) in names.iter().enumerate() {
        let is_last = index + 1 == names.len();
        // A segment that ends at or before the anchor holds nothing a start replays: it is not
        // read, so that a start costs the suffix, not every segment still kept (`verify`
        // scans from genesis, and reads them all). Its record count follows from the names.
        let next_op = names.get(index + 1).map(|&(op, _)| op);
        if let (false, Some(anchor), Some(next_op)) = (walked, start, next_op) {
            if next_op <= anchor.op + 1 {
                result.segments.push(SegmentScan {
                    name: name.clone(),
                    first_op: *name_op,
                    records: next_op - name_op,
                    end_offset: 0,
                    file_len_bytes: 0,
                });
                continue;
            }
        }
        let is_first = !walked;
        walked = true;
        let data = storage.read_all(name)?;
        let header = match SegmentHeader::decode(&data) {
            Ok(header) => header,
            Err(defect) => {
                // Only a segment whose creation never completed may lack a valid header.
                let salvageable = is_last
                    && *name_op == result.head.op + 1
                    && find_valid_record(&data, 0, config.body_bytes_max).is_none();
                if !salvageable {
                    return Err(damage(name, 0, DamageKind::SegmentHeader(defect)).into());
                }
                let bytes = nonzero_end(&data) as u64;
                let file = name.clone();
                result.torn_tail = Some(TornTail {
                    file,
                    offset: 0,
                    bytes,
                    whole_file: true,
                });
                break;
            }
        };
        check_segment_name(name, *name_op, &header, result.head)?;
        check_segment_start(name, &header, is_first, result.head, start)?;
        let walk = Walk {
            file: name,
            data: &data,
            body_bytes_max: config.body_bytes_max,
            anchor: start,
        };
        let (segment, head, torn) = walk.run(&header, is_last)?;
        result.head = head;
        result.segments.push(segment);
        result.torn_tail = torn;
    }
    check_end(&result, start)?;
    Ok(result)
}

/// The header's first op must match the file name and be a real op number.
fn check_segment_name(
    file: &str,
    name_op: u64,
    header: &SegmentHeader,
    head: Anchor,
) -> Result<(), Damage> {
    if header.first_op == 0 {
        let kind = DamageKind::SegmentOpMismatch {
            expected_first_op: head.op + 1,
            found_first_op: 0,
        };
        return Err(damage(file, 0, kind));
    }
    if header.first_op != name_op {
        let kind = DamageKind::SegmentNameMismatch {
            name_op,
            header_op: header.first_op,
        };
        return Err(damage(file, 0, kind));
    }
    Ok(())
}

/// Continuity of a segment header with what precedes it (previous segment, anchor, genesis).
fn check_segment_start(
    file: &str,
    header: &SegmentHeader,
    is_first: bool,
    head: Anchor,
    start: Option<Anchor>,
) -> Result<(), Damage> {
    let first_op = header.first_op;
    let chain_kind = match (is_first, start) {
        (false, _) => {
            if first_op != head.op + 1 {
                let kind = DamageKind::SegmentOpMismatch {
                    expected_first_op: head.op + 1,
                    found_first_op: first_op,
                };
                return Err(damage(file, 0, kind));
            }
            DamageKind::SegmentChainMismatch { first_op }
        }
        (true, None) => {
            if first_op != 1 {
                return Err(damage(file, 0, DamageKind::NotFromGenesis { first_op }));
            }
            DamageKind::SegmentChainMismatch { first_op }
        }
        (true, Some(anchor)) => {
            if first_op > anchor.op + 1 {
                let kind = DamageKind::AnchorGap {
                    anchor_op: anchor.op,
                    first_op,
                };
                return Err(damage(file, 0, kind));
            }
            if first_op <= anchor.op {
                // The anchor is checked when its record is walked.
                return Ok(());
            }
            DamageKind::AnchorChainMismatch {
                anchor_op: anchor.op,
            }
        }
    };
    if header.prev_chain_hash != head.chain_hash {
        return Err(damage(file, 0, chain_kind));
    }
    Ok(())
}

/// With an anchor, the journal must reach it (or be empty).
fn check_end(result: &Scan, start: Option<Anchor>) -> Result<(), Damage> {
    let (Some(anchor), Some(last)) = (start, result.segments.last()) else {
        return Ok(());
    };
    if result.head.op < anchor.op {
        let kind = DamageKind::EndsBeforeAnchor {
            anchor_op: anchor.op,
            last_op: result.head.op,
        };
        return Err(Damage {
            file: last.name.clone(),
            offset: last.end_offset,
            kind,
        });
    }
    Ok(())
}

/// Walks the records of one segment.
struct Walk<'a> {
    file: &'a str,
    data: &'a [u8],
    body_bytes_max: u32,
    anchor: Option<Anchor>,
}

impl Walk<'_> {
    fn run(
        &self,
        header: &SegmentHeader,
        is_last: bool,
    ) -> Result<(SegmentScan, Anchor, Option<TornTail>), Damage> {
        let mut pos = SEGMENT_HEADER_BYTES;
        let mut head = Anchor {
            op: header.first_op - 1,
            chain_hash: header.prev_chain_hash,
        };
        let mut torn = None;
        loop {
            match parse_record_at(self.data, pos, self.body_bytes_max) {
                Parsed::End => break,
                Parsed::Record {
                    header: record,
                    body,
                    end,
                } => {
                    head = self.check_record(pos, head, &record, body)?;
                    pos = end;
                }
                Parsed::Bad(defect) => {
                    torn = Some(self.classify_bad(pos, defect, is_last)?);
                    break;
                }
            }
        }
        let segment = SegmentScan {
            name: self.file.to_owned(),
            first_op: header.first_op,
            records: head.op + 1 - header.first_op,
            end_offset: pos as u64,
            file_len_bytes: self.data.len() as u64,
        };
        Ok((segment, head, torn))
    }

    /// Op continuity, chain, and anchor for a framing-valid record.
    fn check_record(
        &self,
        pos: usize,
        prev: Anchor,
        record: &RecordHeader,
        body: &[u8],
    ) -> Result<Anchor, Damage> {
        let op = prev.op + 1;
        if record.op != op {
            let kind = DamageKind::OpMismatch {
                expected: op,
                found: record.op,
            };
            return Err(damage(self.file, pos, kind));
        }
        let chain_hash = chain_next(&prev.chain_hash, op, record.time, body);
        if chain_hash != record.chain_hash {
            return Err(damage(self.file, pos, DamageKind::ChainMismatch { op }));
        }
        if let Some(anchor) = self.anchor.filter(|a| a.op == op) {
            if anchor.chain_hash != chain_hash {
                let kind = DamageKind::AnchorChainMismatch { anchor_op: op };
                return Err(damage(self.file, pos, kind));
            }
        }
        Ok(Anchor { op, chain_hash })
    }

    /// A framing failure is a torn tail only at the end of the last segment.
    fn classify_bad(
        &self,
        pos: usize,
        defect: RecordDefect,
        is_last: bool,
    ) -> Result<TornTail, Damage> {
        if let Some(valid) = find_valid_record(self.data, pos + 1, self.body_bytes_max) {
            let kind = DamageKind::RecordMidFile {
                defect,
                valid_record_at: valid as u64,
            };
            return Err(damage(self.file, pos, kind));
        }
        if !is_last {
            return Err(damage(
                self.file,
                pos,
                DamageKind::RecordInSealedSegment { defect },
            ));
        }
        let bytes = (nonzero_end(self.data) - pos) as u64;
        Ok(TornTail {
            file: self.file.to_owned(),
            offset: pos as u64,
            bytes,
            whole_file: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        // Proves segment names are zero-padded to 20 digits and only exact matches parse.
        assert_eq!(segment_file_name(42), "journal-00000000000000000042.seg");
        assert_eq!(
            parse_segment_name("journal-00000000000000000042.seg"),
            Some(42)
        );
        assert_eq!(parse_segment_name("journal-42.seg"), None);
        assert_eq!(parse_segment_name("journal-0000000000000000004x.seg"), None);
        assert_eq!(
            parse_segment_name("snapshot-00000000000000000042.snap"),
            None
        );
    }
}
