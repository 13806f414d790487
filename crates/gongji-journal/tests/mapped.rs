//! A mapped snapshot file's pages leave the process when released, and `read_at` reads
//! without mapping any: the engine's resident memory counts only what it holds (its own
//! process, so no other test's mappings move the figures).

use gongji_journal::{FsStorage, Storage};

/// `RssFile` of this process, in KiB (file pages mapped into it).
fn rss_file_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn released_pages_leave_the_process_and_reads_map_none() {
    // Proves: populating a 32 MiB mapping makes it resident; `release` of all of it drops
    // it from the process while the bytes still read the same (through the mapping and
    // `read_at`); thousands of `read_at`s over the file map nothing; a range past the end or
    // empty is ignored.
    const LEN: usize = 32 << 20;
    let dir = std::env::temp_dir().join(format!("gongji-mapped-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut storage = FsStorage::open(&dir).unwrap();
    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 4096) as u8).collect();
    storage.create("f").unwrap();
    storage.write_at("f", 0, &data).unwrap();
    storage.sync("f").unwrap();

    let before = rss_file_kib();
    let mapped = storage.read_mapped("f").unwrap();
    assert!(matches!(mapped, gongji_journal::FileBytes::Mapped(..)));
    let populated = rss_file_kib();
    assert!(
        populated >= before + 24 * 1024,
        "populated: {before} -> {populated} KiB"
    );

    mapped.release(0..LEN);
    let released = rss_file_kib();
    assert!(
        released < before + 4 * 1024,
        "released: {before} -> {populated} -> {released} KiB"
    );

    let mut out = [0u8; 40];
    let mut at = 12_345usize;
    for _ in 0..5_000 {
        at = (at * 1_103_515_245 + 12_345) % (LEN - out.len());
        mapped.read_at(at, &mut out);
        assert_eq!(out[..], data[at..at + out.len()]);
    }
    let after_reads = rss_file_kib();
    assert!(
        after_reads < before + 4 * 1024,
        "read_at mapped pages: {before} -> {after_reads} KiB"
    );

    mapped.release(LEN - 10..LEN + 4096);
    mapped.release(LEN + 1..LEN + 2);
    mapped.release(5..5);
    assert_eq!(&mapped[LEN - 100..], &data[LEN - 100..], "bytes read again");
    assert_eq!(&mapped[..], &data[..]);
    drop(mapped);
    std::fs::remove_dir_all(&dir).unwrap();
}
