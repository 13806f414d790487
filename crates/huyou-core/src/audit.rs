//! The audit log: every decision appended to a hash-chained JSON-lines file.
//!
//! [`AuditLog::open`] creates the directory with mode 0700 and `audit.jsonl` with mode 0600, and
//! resumes the chain from the last record. [`AuditLog::append_batch`] writes a batch of
//! [`Record`]s and fsyncs once; [`AuditLog::write_batch`] only writes it, and a
//! [`SyncHandle`] (another thread's) syncs later, covering every batch written before it.
//! [`verify`] recomputes the chain from the start.
//!
//! Each line is a [`Record`]: `seq`, `prev` (the previous record's hash, 64 zeros for the first),
//! the policy version, the item id, the BLAKE3 hash of the item's text (never the text: the
//! policy logs no user content), the codes, the rules that fired (their ids name lexicon terms,
//! the rule's own text, never the user's) and the decisions; `hash` is
//! BLAKE3 over `prev` and the record's JSON without `hash`.
//!
//! Preallocation ([`AuditLog::open_preallocated`], the server's log): zeros are written and
//! synced ahead of the records, and batches overwrite them in place, so a batch's `fdatasync`
//! changes neither the file's size nor its extents and has no metadata to commit (on this
//! machine's ext4 with the disk quiet, p99 about 0.2 ms against 0.25–1 ms for an append:
//! BENCHMARKS.md). The log
//! therefore ends at its first NUL byte. Whatever follows the last whole record before it — a
//! partial record, or bytes of a batch torn by a crash beyond a gap of zeros — was not synced:
//! [`AuditLog::open`] cuts it and says so, and [`verify`] reports it. A killed process leaves
//! only whole batches (its writes had returned) or a batch it was still writing, never
//! acknowledged; a power loss may also tear batches written after the last sync, which a caller
//! that acknowledges after `write_batch` alone has acknowledged (the server's `group` mode).
//! A clean close truncates the zeros away, leaving plain JSON lines.
//!
//! Rejected alternative: sharing `gongji-journal`. Its frames are binary with CRC32C and snapshots
//! for a state machine; an auditor reading Huyou's log wants one JSON record a line that `jq` can
//! read, and there is no state to snapshot. The chain idea is the same; the format is not.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub prev: String,
    pub time_ms: u64,
    pub policy_version: String,
    pub item_id: String,
    pub text_blake3: String,
    pub codes: Vec<String>,
    pub rules: Vec<String>,
    /// `surface/audience/service=action`, one per decision made.
    pub decisions: Vec<String>,
    #[serde(default)]
    pub hash: String,
}

/// What the caller supplies; the log fills in `seq`, `prev` and `hash`. The caller hashes the
/// text ([`text_hash`]), so the text is never handed to the log and the hashing is done on the
/// caller's threads, not the log's single writer.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub time_ms: u64,
    pub policy_version: String,
    pub item_id: String,
    pub text_blake3: String,
    pub codes: Vec<String>,
    pub rules: Vec<String>,
    pub decisions: Vec<String>,
}

/// The `text_blake3` of a record: BLAKE3 of the text's UTF-8 bytes, in hex.
pub fn text_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

fn record_hash(record: &Record) -> String {
    let mut unhashed = record.clone();
    unhashed.hash = String::new();
    let json = serde_json::to_vec(&unhashed).expect("record serialises");
    let mut h = blake3::Hasher::new();
    h.update(record.prev.as_bytes());
    h.update(&json);
    h.finalize().to_hex().to_string()
}

#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    seq_next: u64,
    prev: String,
    /// Bytes of whole records: where the next batch is written.
    end: u64,
    /// Bytes of the file written (records, then zeros) and synced.
    allocated: u64,
    /// Zeros kept written ahead of `end`; 0 for plain appends.
    preallocate: u64,
    /// The batch being serialised, kept to save an allocation per batch.
    buf: Vec<u8>,
}

/// What a scan of the file found: the whole records that verify, and what follows them.
#[derive(Debug)]
struct Scan {
    records: u64,
    last_hash: String,
    /// Bytes of the whole records.
    end: u64,
    /// Bytes after `end` before the first NUL (or the end of the file): a partial record.
    partial: u64,
    /// Whether a non-zero byte follows the first NUL: a batch torn by a crash.
    torn_beyond_zeros: bool,
}

impl Scan {
    fn torn(&self) -> bool {
        self.partial > 0 || self.torn_beyond_zeros
    }
}

/// Reads the log from the start: every whole record must follow the chain (an error names its
/// line); the log ends at the first NUL byte or at the end of the file.
fn scan(file: &File) -> Result<Scan, String> {
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut prev = GENESIS.to_string();
    let (mut count, mut end) = (0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        if let Some(nul) = line.iter().position(|&b| b == 0) {
            let mut torn_beyond_zeros = line[nul..].iter().any(|&b| b != 0);
            let mut rest = [0u8; 1 << 16];
            while !torn_beyond_zeros {
                let k = reader.read(&mut rest).map_err(|e| format!("read: {e}"))?;
                if k == 0 {
                    break;
                }
                torn_beyond_zeros = rest[..k].iter().any(|&b| b != 0);
            }
            return Ok(Scan {
                records: count,
                last_hash: prev,
                end,
                partial: nul as u64,
                torn_beyond_zeros,
            });
        }
        if !line.ends_with(b"\n") {
            return Ok(Scan {
                records: count,
                last_hash: prev,
                end,
                partial: line.len() as u64,
                torn_beyond_zeros: false,
            });
        }
        let at = count + 1;
        let r: Record = serde_json::from_slice(&line)
            .map_err(|e| format!("record {count} (line {at}): not a record: {e}"))?;
        if r.seq != count {
            return Err(format!(
                "line {at}: seq {} where {count} was expected",
                r.seq
            ));
        }
        if r.prev != prev {
            return Err(format!(
                "line {at}: prev does not match the previous record's hash"
            ));
        }
        if record_hash(&r) != r.hash {
            return Err(format!("line {at}: hash mismatch: the record was altered"));
        }
        prev = r.hash;
        count += 1;
        end += line.len() as u64;
    }
    Ok(Scan {
        records: count,
        last_hash: prev,
        end,
        partial: 0,
        torn_beyond_zeros: false,
    })
}

impl AuditLog {
    /// Opens the log for plain appends (`huyou classify --audit`).
    pub fn open(dir: &Path) -> std::io::Result<AuditLog> {
        AuditLog::open_preallocated(dir, 0)
    }

    /// Opens the log keeping `bytes` of zeros written and synced ahead of the records (the
    /// server). Whatever follows the last whole record (zeros, or a batch a crash tore) is cut
    /// first; a record that does not verify is an error.
    pub fn open_preallocated(dir: &Path, bytes: u64) -> std::io::Result<AuditLog> {
        create_private_dir(dir)?;
        let path = dir.join("audit.jsonl");
        let mut options = OpenOptions::new();
        options.create(true).read(true).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path)?;
        let found =
            scan(&file).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        if found.torn() {
            eprintln!(
                "huyou: {}: cut a torn last batch left by a crash ({} bytes of a partial record{})",
                path.display(),
                found.partial,
                if found.torn_beyond_zeros {
                    ", and bytes beyond a gap of zeros"
                } else {
                    ""
                }
            );
        }
        if file.metadata()?.len() > found.end {
            file.set_len(found.end)?;
            file.sync_all()?;
        }
        let mut log = AuditLog {
            path,
            file,
            seq_next: found.records,
            prev: found.last_hash,
            end: found.end,
            allocated: found.end,
            preallocate: bytes,
            buf: Vec::new(),
        };
        log.preallocate_ahead()?;
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of whole records written to the file; every one of them is fsynced once
    /// `append_batch` has returned.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Whether less than half the preallocation is left ahead of the records.
    pub fn preallocation_low(&self) -> bool {
        self.preallocate > 0 && self.allocated < self.end + self.preallocate / 2
    }

    /// When less than half the preallocation is left ahead of the records, writes zeros up to a
    /// whole one and syncs them. The server calls this after releasing a batch's replies, so the
    /// next batch (not this one) waits for it; a batch larger than what is left is written past
    /// it, which is correct, only its sync is slower.
    pub fn preallocate_ahead(&mut self) -> std::io::Result<()> {
        if !self.preallocation_low() {
            return Ok(());
        }
        let target = self.end + self.preallocate;
        let from = self.allocated.max(self.end);
        let zeros = vec![0u8; (target - from).min(1 << 20) as usize];
        self.file.seek(SeekFrom::Start(from))?;
        let mut at = from;
        while at < target {
            let k = (target - at).min(zeros.len() as u64) as usize;
            self.file.write_all(&zeros[..k])?;
            at += k as u64;
        }
        self.file.sync_data()?;
        self.allocated = target;
        Ok(())
    }

    /// Writes the batch after the last record and fsyncs; returns the records as written. An
    /// error here means the batch may be partly written: the caller must not acknowledge it,
    /// and a failed fsync is fatal (STYLE.md) because it cannot be retried safely.
    pub fn append_batch(&mut self, entries: Vec<Entry>) -> std::io::Result<Vec<Record>> {
        let records = self.write_batch(entries)?;
        self.file.sync_data()?;
        Ok(records)
    }

    /// Fsyncs every batch written so far (after [`AuditLog::write_batch`]).
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Records in the log, whole and written (the next record's `seq`).
    pub fn records(&self) -> u64 {
        self.seq_next
    }

    /// A second handle on the log's file for [`SyncHandle::sync`], so that a syncer thread can
    /// fsync while batches are written under the log's lock (the server's `group` mode).
    pub fn sync_handle(&self) -> std::io::Result<SyncHandle> {
        Ok(SyncHandle(self.file.try_clone()?))
    }

    /// Writes the batch after the last record with one `write` and no fsync; returns the
    /// records as written. Once this returns the records are in the kernel's page cache: they
    /// survive the process being killed, not a power loss or an OS crash, until a sync (this
    /// log's [`AuditLog::append_batch`], or a [`SyncHandle`]) has returned after it. A crash
    /// before that sync may leave any part of them on disk; opening the log cuts whatever
    /// follows the last whole record that verifies. An error means the batch may be partly
    /// written: the caller must not acknowledge it.
    pub fn write_batch(&mut self, entries: Vec<Entry>) -> std::io::Result<Vec<Record>> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut records = Vec::with_capacity(entries.len());
        let mut prev = self.prev.clone();
        for (i, e) in entries.into_iter().enumerate() {
            let mut r = Record {
                seq: self.seq_next + i as u64,
                prev,
                time_ms: e.time_ms,
                policy_version: e.policy_version,
                item_id: e.item_id,
                text_blake3: e.text_blake3,
                codes: e.codes,
                rules: e.rules,
                decisions: e.decisions,
                hash: String::new(),
            };
            // One serialisation serves both the hash and the line: `hash` is the last field, so
            // the JSON with it empty ends in `""}`, and the line is that JSON with the hash put
            // between the quotes (hex needs no escaping). `verify` recomputes it the long way.
            let start = buf.len();
            serde_json::to_writer(&mut buf, &r).expect("record serialises");
            assert!(buf.ends_with(b"\"hash\":\"\"}"));
            let mut h = blake3::Hasher::new();
            h.update(r.prev.as_bytes());
            h.update(&buf[start..]);
            r.hash = h.finalize().to_hex().to_string();
            buf.truncate(buf.len() - 2);
            buf.extend_from_slice(r.hash.as_bytes());
            buf.extend_from_slice(b"\"}\n");
            prev = r.hash.clone();
            records.push(r);
        }
        self.file.seek(SeekFrom::Start(self.end))?;
        self.file.write_all(&buf)?;
        self.end += buf.len() as u64;
        self.allocated = self.allocated.max(self.end);
        self.seq_next += records.len() as u64;
        self.prev = prev;
        self.buf = buf;
        Ok(records)
    }
}

/// A handle on the log's file that only syncs: `fdatasync` covers every record written by the
/// log before the call began.
#[derive(Debug)]
pub struct SyncHandle(File);

impl SyncHandle {
    /// A failed sync is fatal to the caller (STYLE.md): it cannot be retried safely.
    pub fn sync(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
}

impl Drop for AuditLog {
    /// A clean close leaves plain JSON lines: the zeros written ahead are cut. If this fails the
    /// zeros stay, which the next open and `verify` accept.
    fn drop(&mut self) {
        if self.allocated > self.end && self.file.set_len(self.end).is_ok() {
            let _ = self.file.sync_all();
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub last_hash: String,
}

/// Checks every record's sequence, link and hash, up to the first NUL byte (zeros a preallocated
/// log has written ahead) or the end of the file. A torn last batch (a partial record, or
/// non-zero bytes after the zeros: the process died mid-write, so it was never acknowledged) is
/// reported, not accepted; opening the log cuts it.
pub fn verify(path: &Path) -> Result<Verified, String> {
    let file = File::open(path).map_err(|e| format!("open: {e}"))?;
    let found = scan(&file)?;
    if found.torn() {
        return Err(format!(
            "after record {} (byte {}): a torn last batch ({} bytes of a partial record{}); \
             it was never acknowledged, and opening the log cuts it",
            found.records,
            found.end,
            found.partial,
            if found.torn_beyond_zeros {
                ", and bytes beyond a gap of zeros"
            } else {
                ""
            }
        ));
    }
    Ok(Verified {
        records: found.records,
        last_hash: found.last_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            item_id: id.into(),
            text_blake3: text_hash(&format!("text {id}")),
            ..Entry::default()
        }
    }

    #[test]
    fn chain_verifies_resumes_and_detects_tampering() {
        // Proves the chain verifies across a reopen, that the text itself is not logged, and
        // that changing one byte of a record is detected at its line.
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit");
        let mut log = AuditLog::open(&audit).unwrap();
        log.append_batch(vec![entry("a"), entry("b")]).unwrap();
        drop(log);
        let mut log = AuditLog::open(&audit).unwrap();
        let written = log.append_batch(vec![entry("c")]).unwrap();
        assert_eq!(written[0].seq, 2);
        let path = audit.join("audit.jsonl");
        let v = verify(&path).unwrap();
        assert_eq!((v.records, v.last_hash), (3, written[0].hash.clone()));
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(!content.contains("text a"));
        std::fs::write(
            &path,
            content.replacen("\"item_id\":\"b\"", "\"item_id\":\"x\"", 1),
        )
        .unwrap();
        assert!(verify(&path)
            .unwrap_err()
            .starts_with("line 2: hash mismatch"));
    }

    #[test]
    fn a_torn_last_record_is_cut_on_open_and_the_chain_continues() {
        // Proves a half-written last line (a crash inside write) is cut when the log is opened,
        // and appending continues the chain from the last whole record.
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit");
        let mut log = AuditLog::open(&audit).unwrap();
        log.append_batch(vec![entry("a"), entry("b")]).unwrap();
        drop(log);
        let path = audit.join("audit.jsonl");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"seq\":2,\"prev\":\"ab").unwrap();
        drop(file);
        assert!(verify(&path).is_err());
        let mut log = AuditLog::open(&audit).unwrap();
        assert_eq!(log.append_batch(vec![entry("c")]).unwrap()[0].seq, 2);
        assert_eq!(verify(&path).unwrap().records, 3);
    }

    #[test]
    fn a_preallocated_log_overwrites_zeros_in_place_and_a_clean_close_cuts_them() {
        // Proves batches go into the zeros written ahead without growing the file, that a batch
        // larger than what is left is written past it, that `verify` accepts the zeros, and
        // that dropping the log leaves plain JSON lines.
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit");
        let path = audit.join("audit.jsonl");
        let mut log = AuditLog::open_preallocated(&audit, 4096).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
        log.append_batch(vec![entry("a")]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
        assert_eq!(verify(&path).unwrap().records, 1);
        let big: Vec<Entry> = (0..40).map(|i| entry(&format!("big{i}"))).collect();
        log.append_batch(big).unwrap();
        let end = log.end();
        assert!(end > 4096);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
        log.preallocate_ahead().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end + 4096);
        log.append_batch(vec![entry("b")]).unwrap();
        let v = verify(&path).unwrap();
        assert_eq!(v.records, 42);
        drop(log);
        let content = std::fs::read(&path).unwrap();
        assert!(!content.contains(&0) && content.ends_with(b"\n"));
        assert_eq!(content.split(|&b| b == b'\n').count() - 1, 42);
        let log = AuditLog::open_preallocated(&audit, 4096).unwrap();
        assert_eq!((log.seq_next, log.prev.clone()), (42, v.last_hash));
    }

    #[test]
    fn a_batch_torn_by_a_crash_in_preallocated_space_is_reported_then_cut() {
        // Proves a crash's torn batch in the zeros (a partial record, a gap, then bytes of a
        // later page of the same batch) fails `verify`, is cut on open, and the chain continues
        // from the last whole record; and that a record altered before the zeros is an error.
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit");
        let path = audit.join("audit.jsonl");
        let mut log = AuditLog::open_preallocated(&audit, 1 << 16).unwrap();
        log.append_batch(vec![entry("a"), entry("b")]).unwrap();
        let end = log.end();
        std::mem::forget(log); // as kill -9: no clean close
        {
            use std::os::unix::fs::FileExt;
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.write_all_at(b"{\"seq\":2,\"prev\":\"ab", end).unwrap();
            file.write_all_at(b"cd\"}\n", end + 5000).unwrap();
        }
        let e = verify(&path).unwrap_err();
        assert!(
            e.contains("after record 2") && e.contains("torn last batch"),
            "{e}"
        );
        let mut log = AuditLog::open_preallocated(&audit, 1 << 16).unwrap();
        assert_eq!(log.append_batch(vec![entry("c")]).unwrap()[0].seq, 2);
        assert_eq!(verify(&path).unwrap().records, 3);
        // Only a later page of a batch reached the disk: whole records, zeros, then bytes.
        let end = log.end();
        std::mem::forget(log);
        {
            use std::os::unix::fs::FileExt;
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.write_all_at(b"\"}\n", end + 4096).unwrap();
        }
        let e = verify(&path).unwrap_err();
        assert!(
            e.contains("after record 3") && e.contains("beyond a gap"),
            "{e}"
        );
        let log = AuditLog::open_preallocated(&audit, 1 << 16).unwrap();
        assert_eq!(verify(&path).unwrap().records, 3);
        std::mem::forget(log);
        let content = std::fs::read(&path).unwrap();
        let altered = String::from_utf8(content).unwrap().replacen(
            "\"item_id\":\"b\"",
            "\"item_id\":\"x\"",
            1,
        );
        std::fs::write(&path, altered).unwrap();
        let e = AuditLog::open_preallocated(&audit, 1 << 16).unwrap_err();
        assert!(e.to_string().contains("line 2: hash mismatch"), "{e}");
    }

    #[test]
    fn written_batches_are_whole_without_a_sync_and_a_sync_handle_covers_them() {
        // Proves a batch written without a sync is in the file whole (what a killed process
        // leaves: the page cache outlives it), that a sync handle taken before the writes syncs
        // them, and that a reopen without a clean close continues the chain after them.
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit");
        let path = audit.join("audit.jsonl");
        let mut log = AuditLog::open_preallocated(&audit, 1 << 16).unwrap();
        let handle = log.sync_handle().unwrap();
        log.write_batch(vec![entry("a"), entry("b")]).unwrap();
        log.write_batch(vec![entry("c")]).unwrap();
        assert_eq!(log.records(), 3);
        handle.sync().unwrap();
        let end = log.end();
        std::mem::forget(log); // as kill -9: no clean close
        let v = verify(&path).unwrap();
        assert_eq!(v.records, 3);
        let content = std::fs::read(&path).unwrap();
        assert_eq!(content.iter().position(|&b| b == 0), Some(end as usize));
        let mut log = AuditLog::open_preallocated(&audit, 1 << 16).unwrap();
        assert_eq!(
            log.write_batch(vec![entry("d")]).unwrap()[0].prev,
            v.last_hash
        );
        assert_eq!(verify(&path).unwrap().records, 4);
    }

    #[cfg(unix)]
    #[test]
    fn log_file_is_0600_in_a_0700_directory() {
        // Proves the permissions the audit log is created with.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit");
        let mut log = AuditLog::open(&audit).unwrap();
        log.append_batch(vec![entry("a")]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&audit), 0o700);
        assert_eq!(mode(&audit.join("audit.jsonl")), 0o600);
    }
}
