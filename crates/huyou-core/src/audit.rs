//! The audit log: every decision appended to a hash-chained JSON-lines file, synced before the
//! caller replies.
//!
//! [`AuditLog::open`] creates the directory with mode 0700 and `audit.jsonl` with mode 0600, and
//! resumes the chain from the last record. [`AuditLog::append_batch`] writes a batch of
//! [`Record`]s and fsyncs once. [`verify`] recomputes the chain from the start.
//!
//! Each line is a [`Record`]: `seq`, `prev` (the previous record's hash, 64 zeros for the first),
//! the policy version, the item id, the BLAKE3 hash of the item's text (never the text: the
//! policy logs no user content), the codes, the rules that fired (their ids name lexicon terms,
//! the rule's own text, never the user's) and the decisions; `hash` is
//! BLAKE3 over `prev` and the record's JSON without `hash`.
//!
//! Rejected alternative: sharing `gongji-journal`. Its frames are binary with CRC32C and snapshots
//! for a state machine; an auditor reading Huyou's log wants one JSON record a line that `jq` can
//! read, and there is no state to snapshot. The chain idea is the same; the format is not.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
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
}

impl AuditLog {
    pub fn open(dir: &Path) -> std::io::Result<AuditLog> {
        create_private_dir(dir)?;
        let path = dir.join("audit.jsonl");
        if path.exists() {
            cut_torn_tail(&path)?;
        }
        let (seq_next, prev) = if path.exists() {
            match verify(&path) {
                Ok(v) => (v.records, v.last_hash),
                Err(e) => return Err(std::io::Error::other(format!("{}: {e}", path.display()))),
            }
        } else {
            (0, GENESIS.to_string())
        };
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path)?;
        Ok(AuditLog {
            path,
            file,
            seq_next,
            prev,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the batch and fsyncs; returns the records as written. An error here means the
    /// batch may be partly written: the caller must not acknowledge it, and a failed fsync is
    /// fatal (STYLE.md) because it cannot be retried safely.
    pub fn append_batch(&mut self, entries: Vec<Entry>) -> std::io::Result<Vec<Record>> {
        let mut buf = Vec::new();
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
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.seq_next += records.len() as u64;
        self.prev = prev;
        Ok(records)
    }
}

/// A last line without its newline was being written when the process died; its batch was
/// never fsynced as a whole, so never acknowledged. Cut it, and say so.
fn cut_torn_tail(path: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(path)?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    eprintln!(
        "huyou: {}: cut a torn last record ({} bytes) left by a crash",
        path.display(),
        bytes.len() - keep
    );
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(keep as u64)?;
    file.sync_all()
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

/// Checks every record's sequence, link and hash. A torn last line (no newline: the process
/// died mid-write, so it was never acknowledged) is reported, not accepted.
pub fn verify(path: &Path) -> Result<Verified, String> {
    let file = File::open(path).map_err(|e| format!("open: {e}"))?;
    let mut prev = GENESIS.to_string();
    let mut count = 0u64;
    for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("read: {e}"))?;
        let r: Record = serde_json::from_slice(&line)
            .map_err(|e| format!("record {} (line {}): not a record: {e}", n, n + 1))?;
        if r.seq != count {
            return Err(format!(
                "line {}: seq {} where {} was expected",
                n + 1,
                r.seq,
                count
            ));
        }
        if r.prev != prev {
            return Err(format!(
                "line {}: prev does not match the previous record's hash",
                n + 1
            ));
        }
        if record_hash(&r) != r.hash {
            return Err(format!(
                "line {}: hash mismatch: the record was altered",
                n + 1
            ));
        }
        prev = r.hash;
        count += 1;
    }
    Ok(Verified {
        records: count,
        last_hash: prev,
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
