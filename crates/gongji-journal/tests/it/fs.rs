//! FsStorage on a real temporary directory.

use std::path::PathBuf;

use gongji_journal::{
    load_latest_snapshot, load_latest_snapshot_with, verify, write_snapshot, FsStorage, Journal,
    Storage, StorageError,
};

use crate::common::{append_range, collect, small_config};

/// A unique temp directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "gongji-journal-{name}-{}-{nanos}",
            std::process::id()
        ));
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn fs_round_trip_with_snapshot() {
    // Proves the journal and snapshots work on a real directory: preallocated segments,
    // reopen, replay, verify, and snapshot load.
    let temp = TempDir::new("roundtrip");
    let storage = FsStorage::open(&temp.0).unwrap();
    let (mut journal, _) = Journal::open(storage, small_config(), None).unwrap();
    let records = append_range(&mut journal, 0, 120, 9);
    let head = journal.head();
    let mut storage = journal.into_storage();
    write_snapshot(&mut storage, head, b"fs snapshot").unwrap();
    let seg = gongji_journal::segment_file_name(1);
    assert_eq!(
        storage.len(&seg).unwrap(),
        small_config().segment_size_bytes
    );
    drop(storage);

    let storage = FsStorage::open(&temp.0).unwrap();
    assert_eq!(verify(&storage, &small_config(), None).unwrap().head, head);
    let loaded = load_latest_snapshot(&storage).unwrap().unwrap();
    assert_eq!(
        (loaded.anchor, loaded.body.as_slice()),
        (head, &b"fs snapshot"[..])
    );
    let (journal, recovery) = Journal::open(storage, small_config(), Some(head)).unwrap();
    assert_eq!(recovery.records_total, 120);
    assert_eq!(collect(&journal, 0), records);
}

#[test]
fn fs_storage_primitives() {
    // Proves FsStorage semantics the journal relies on: create_new, positional I/O with
    // zero-fill, short reads, atomic rename over an existing file, names confined to the dir.
    let temp = TempDir::new("primitives");
    let mut storage = FsStorage::open(&temp.0).unwrap();
    storage.create("a").unwrap();
    assert!(matches!(
        storage.create("a"),
        Err(StorageError::AlreadyExists { .. })
    ));
    storage.write_at("a", 4, b"xy").unwrap();
    storage.sync("a").unwrap();
    assert_eq!(storage.read_all("a").unwrap(), b"\0\0\0\0xy");
    let mut buf = [0u8; 2];
    storage.read_at("a", 4, &mut buf).unwrap();
    assert_eq!(&buf, b"xy");
    assert!(matches!(
        storage.read_at("a", 5, &mut buf),
        Err(StorageError::ShortRead { .. })
    ));
    storage.create("b").unwrap();
    storage.rename("a", "b").unwrap();
    storage.sync_dir().unwrap();
    assert_eq!(storage.list().unwrap(), vec!["b".to_owned()]);
    assert!(matches!(
        storage.create("../escape"),
        Err(StorageError::InvalidName { .. })
    ));
    storage.remove("b").unwrap();
    assert!(matches!(
        storage.len("b"),
        Err(StorageError::NotFound { .. })
    ));
}

#[test]
fn a_mapped_snapshot_is_decoded_only_when_its_hash_verifies() {
    // Proves: on a real directory (the file is mapped), the newest snapshot's body reaches the
    // decoder whole and its value is returned; a newer snapshot whose body is damaged is
    // decoded (the hash is checked meanwhile) but its value is dropped and the file is named
    // as skipped; the older one's is returned.
    let temp = TempDir::new("mapped");
    std::fs::create_dir_all(&temp.0).unwrap();
    let mut storage = FsStorage::open(&temp.0).unwrap();
    let anchor = |op: u64| gongji_journal::Anchor {
        op,
        chain_hash: [op as u8; 32],
    };
    let body10 = vec![7u8; 300_000];
    write_snapshot(&mut storage, anchor(10), &body10).unwrap();
    let mut decoded = Vec::new();
    let (loaded, value) = load_latest_snapshot_with(&storage, &mut |data, at| {
        let b = &data[at..];
        decoded.push(b.len());
        b.iter().map(|&x| u64::from(x)).sum::<u64>()
    })
    .unwrap()
    .unwrap();
    assert_eq!((loaded.anchor, value), (anchor(10), 7 * 300_000));
    assert!(loaded.body.is_empty() && loaded.skipped.is_empty());
    assert_eq!(decoded, [300_000]);

    let newer = write_snapshot(&mut storage, anchor(20), &[9u8; 1000]).unwrap();
    let len = storage.len(&newer).unwrap();
    // One byte of the newer body changed behind the storage's back.
    let path = temp.0.join(&newer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[len as usize - 1] ^= 4;
    std::fs::write(&path, &bytes).unwrap();
    decoded.clear();
    let (loaded, value) = load_latest_snapshot_with(&storage, &mut |data, at| {
        decoded.push(data.len() - at);
        data.len() - at
    })
    .unwrap()
    .unwrap();
    assert_eq!((loaded.anchor, value), (anchor(10), 300_000));
    assert_eq!(decoded, [1000, 300_000]);
    assert_eq!(loaded.skipped.len(), 1);
    assert_eq!(loaded.skipped[0].file, newer);
    assert_eq!(
        loaded.skipped[0].defect,
        gongji_journal::SnapshotDefect::BodyHash
    );
}
