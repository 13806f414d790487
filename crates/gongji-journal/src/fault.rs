//! `FaultStorage`: an in-memory [`Storage`] that models what survives a crash.
//!
//! Every file tracks its durable bytes and the ordered list of writes/length changes since its
//! last `sync`; the directory tracks its durable name table and the ordered create/remove/
//! rename operations since the last `sync_dir`. [`FaultStorage::after_crash`] builds the
//! storage a restarted process would see. Clones share state, so a test can keep a handle
//! while a `Journal` owns another.

use splitmix::SplitMix64;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::storage::{check_name, Storage, StorageError};

/// What happens to unsynced operations in [`FaultStorage::after_crash`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write, length change and directory operation is lost.
    DropUnsynced,
    /// Every unsynced operation happened to reach the disk.
    KeepUnsynced,
    /// Per file, a seeded-random prefix of the unsynced operations survives and the first lost
    /// write may survive as a prefix cut at a random byte; likewise a random prefix of the
    /// directory operations survives.
    Torn { seed: u64 },
}

#[derive(Clone, Debug)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug)]
enum DirOp {
    Create(String, usize),
    Remove(String),
    Rename(String, String),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<FileOp>,
}

#[derive(Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<String, usize>,
    names_durable: BTreeMap<String, usize>,
    dir_pending: Vec<DirOp>,
    writes_total: u64,
    syncs_total: u64,
    crash_at_write: Option<u64>,
    crash_at_sync: Option<u64>,
    crashed: bool,
}

/// A uniform-ish value in `0..=max` from splitmix64: good enough to pick crash cut points.
fn upto(rng: &mut SplitMix64, max: usize) -> usize {
    (rng.next_u64() % (max as u64 + 1)) as usize
}

fn apply(content: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { offset, data } => {
            let start = usize::try_from(*offset).expect("offset fits memory");
            if content.len() < start + data.len() {
                content.resize(start + data.len(), 0);
            }
            content[start..start + data.len()].copy_from_slice(data);
        }
        FileOp::SetLen(len) => content.resize(usize::try_from(*len).expect("fits"), 0),
    }
}

impl Inode {
    fn recovered(&self, mode: CrashMode, rng: &mut SplitMix64) -> Vec<u8> {
        let mut content = self.durable.clone();
        let kept = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::KeepUnsynced => self.pending.len(),
            CrashMode::Torn { .. } => upto(rng, self.pending.len()),
        };
        for op in &self.pending[..kept] {
            apply(&mut content, op);
        }
        if let (CrashMode::Torn { .. }, Some(FileOp::Write { offset, data })) =
            (mode, self.pending.get(kept))
        {
            let cut = upto(rng, data.len());
            apply(
                &mut content,
                &FileOp::Write {
                    offset: *offset,
                    data: data[..cut].to_vec(),
                },
            );
        }
        content
    }
}

fn apply_dir(names: &mut BTreeMap<String, usize>, op: &DirOp) {
    match op {
        DirOp::Create(name, ino) => {
            names.insert(name.clone(), *ino);
        }
        DirOp::Remove(name) => {
            names.remove(name);
        }
        DirOp::Rename(from, to) => {
            if let Some(ino) = names.remove(from) {
                names.insert(to.clone(), ino);
            }
        }
    }
}

/// In-memory fault-injecting [`Storage`]; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct FaultStorage {
    state: Arc<Mutex<State>>,
    gate: Arc<(Mutex<Gate>, Condvar)>,
}

/// Held file syncs ([`FaultStorage::hold_syncs`]): a test can stop the engine between a
/// batch's apply and its sync, and look at what it shows meanwhile.
#[derive(Debug, Default)]
struct Gate {
    held: bool,
    waiting: u64,
}

impl FaultStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the state from the next assertion.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The `n`-th `write_at` call (1-based, counted since creation) and everything after it
    /// fail with `Crashed`. The failing write is recorded as unsynced (it may partly land).
    pub fn set_crash_at_write(&self, n: u64) {
        self.lock().crash_at_write = Some(n);
    }

    /// The `n`-th `sync`/`sync_dir` call (1-based) and everything after it fail with
    /// `Crashed`; the failing sync makes nothing durable.
    pub fn set_crash_at_sync(&self, n: u64) {
        self.lock().crash_at_sync = Some(n);
    }

    /// From now on a file `sync` waits (before it makes anything durable, or fails) until
    /// [`FaultStorage::release_syncs`]. Directory syncs pass.
    pub fn hold_syncs(&self) {
        self.gate.0.lock().unwrap_or_else(|p| p.into_inner()).held = true;
    }

    /// Lets held syncs go on (to succeed, or to fail if a crash was armed meanwhile).
    pub fn release_syncs(&self) {
        self.gate.0.lock().unwrap_or_else(|p| p.into_inner()).held = false;
        self.gate.1.notify_all();
    }

    /// File syncs waiting at the gate now.
    pub fn syncs_held(&self) -> u64 {
        self.gate
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting
    }

    fn pass_gate(&self) {
        let (lock, cond) = &*self.gate;
        let mut gate = lock.lock().unwrap_or_else(|p| p.into_inner());
        if gate.held {
            gate.waiting += 1;
            while gate.held {
                gate = cond.wait(gate).unwrap_or_else(|p| p.into_inner());
            }
            gate.waiting -= 1;
        }
    }

    /// Number of `write_at` calls so far.
    pub fn writes_total(&self) -> u64 {
        self.lock().writes_total
    }

    /// Number of `sync` plus `sync_dir` calls so far.
    pub fn syncs_total(&self) -> u64 {
        self.lock().syncs_total
    }

    pub fn is_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The storage a restarted process sees after a crash now: fresh state, no faults armed.
    pub fn after_crash(&self, mode: CrashMode) -> FaultStorage {
        let state = self.lock();
        let seed = match mode {
            CrashMode::Torn { seed } => seed,
            _ => 0,
        };
        let mut rng = SplitMix64::new(seed);
        let mut names = state.names_durable.clone();
        let dir_kept = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::KeepUnsynced => state.dir_pending.len(),
            CrashMode::Torn { .. } => upto(&mut rng, state.dir_pending.len()),
        };
        for op in &state.dir_pending[..dir_kept] {
            apply_dir(&mut names, op);
        }
        let inodes = state
            .inodes
            .iter()
            .map(|inode| {
                let content = inode.recovered(mode, &mut rng);
                Inode {
                    durable: content.clone(),
                    current: content,
                    pending: Vec::new(),
                }
            })
            .collect();
        let fresh = State {
            inodes,
            names_durable: names.clone(),
            names,
            ..State::default()
        };
        FaultStorage {
            state: Arc::new(Mutex::new(fresh)),
            gate: Arc::default(),
        }
    }

    /// Flips bit `bit` (0..8) of byte `offset` in `name`, durably (simulated media damage).
    pub fn flip_bit(&self, name: &str, offset: u64, bit: u8) {
        self.edit_durably(name, |content| {
            content[usize::try_from(offset).expect("fits")] ^= 1 << bit;
        });
    }

    /// Overwrites bytes at `offset` in `name`, durably (for crafted-damage tests).
    pub fn overwrite(&self, name: &str, offset: u64, data: &[u8]) {
        self.edit_durably(name, |content| {
            apply(
                content,
                &FileOp::Write {
                    offset,
                    data: data.to_vec(),
                },
            );
        });
    }

    /// Truncates `name` to `len_bytes`, durably.
    pub fn truncate(&self, name: &str, len_bytes: u64) {
        self.edit_durably(name, |content| content.truncate(len_bytes as usize));
    }

    /// Removes `name`, durably.
    pub fn remove_durably(&self, name: &str) {
        let mut state = self.lock();
        assert!(state.names.remove(name).is_some(), "{name} does not exist");
        state.names_durable.remove(name);
    }

    /// Copies `from` to a new file `to`, durably (for duplicated-segment tests).
    pub fn copy_durably(&self, from: &str, to: &str) {
        let mut state = self.lock();
        let ino = state.names[from];
        let copy = state.inodes[ino].clone();
        state.inodes.push(copy);
        let new_ino = state.inodes.len() - 1;
        state.names.insert(to.to_owned(), new_ino);
        state.names_durable.insert(to.to_owned(), new_ino);
    }

    fn edit_durably(&self, name: &str, edit: impl Fn(&mut Vec<u8>)) {
        let mut state = self.lock();
        let ino = *state
            .names
            .get(name)
            .unwrap_or_else(|| panic!("{name} does not exist"));
        let inode = &mut state.inodes[ino];
        edit(&mut inode.durable);
        edit(&mut inode.current);
    }
}

impl State {
    fn check(&self) -> Result<(), StorageError> {
        if self.crashed {
            return Err(StorageError::Crashed);
        }
        Ok(())
    }

    fn ino(&self, name: &str) -> Result<usize, StorageError> {
        self.check()?;
        check_name(name)?;
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| StorageError::NotFound { name: name.into() })
    }

    /// Applies `op` as an unsynced change of `name`.
    fn push_op(&mut self, name: &str, op: FileOp) -> Result<(), StorageError> {
        let ino = self.ino(name)?;
        let inode = &mut self.inodes[ino];
        apply(&mut inode.current, &op);
        inode.pending.push(op);
        Ok(())
    }

    fn count_sync(&mut self) -> Result<(), StorageError> {
        self.check()?;
        self.syncs_total += 1;
        if self.crash_at_sync == Some(self.syncs_total) {
            self.crashed = true;
            return Err(StorageError::Crashed);
        }
        Ok(())
    }
}

impl Storage for FaultStorage {
    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        let mut state = self.lock();
        state.check()?;
        check_name(name)?;
        if state.names.contains_key(name) {
            return Err(StorageError::AlreadyExists {
                name: name.to_owned(),
            });
        }
        state.inodes.push(Inode::default());
        let ino = state.inodes.len() - 1;
        state.names.insert(name.to_owned(), ino);
        state.dir_pending.push(DirOp::Create(name.to_owned(), ino));
        Ok(())
    }

    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let mut state = self.lock();
        state.ino(name)?;
        state.writes_total += 1;
        let crash = state.crash_at_write == Some(state.writes_total);
        state.push_op(
            name,
            FileOp::Write {
                offset,
                data: data.to_vec(),
            },
        )?;
        if crash {
            state.crashed = true;
            return Err(StorageError::Crashed);
        }
        Ok(())
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let state = self.lock();
        let content = &state.inodes[state.ino(name)?].current;
        let start = offset as usize;
        let Some(src) = content.get(start..start.saturating_add(buf.len())) else {
            return Err(StorageError::ShortRead {
                name: name.to_owned(),
                offset,
                len_bytes: buf.len(),
                file_len_bytes: content.len() as u64,
            });
        };
        buf.copy_from_slice(src);
        Ok(())
    }

    fn read_all(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        let state = self.lock();
        Ok(state.inodes[state.ino(name)?].current.clone())
    }

    fn len(&self, name: &str) -> Result<u64, StorageError> {
        let state = self.lock();
        Ok(state.inodes[state.ino(name)?].current.len() as u64)
    }

    fn set_len(&mut self, name: &str, len_bytes: u64) -> Result<(), StorageError> {
        self.lock().push_op(name, FileOp::SetLen(len_bytes))
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.pass_gate();
        let mut state = self.lock();
        let ino = state.ino(name)?;
        state.count_sync()?;
        let inode = &mut state.inodes[ino];
        inode.durable = inode.current.clone();
        inode.pending.clear();
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<(), StorageError> {
        let mut state = self.lock();
        state.count_sync()?;
        state.names_durable = state.names.clone();
        state.dir_pending.clear();
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        let state = self.lock();
        state.check()?;
        Ok(state.names.keys().cloned().collect())
    }

    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        let mut state = self.lock();
        state.ino(name)?;
        state.names.remove(name);
        state.dir_pending.push(DirOp::Remove(name.to_owned()));
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        let mut state = self.lock();
        let ino = state.ino(from)?;
        check_name(to)?;
        state.names.remove(from);
        state.names.insert(to.to_owned(), ino);
        state
            .dir_pending
            .push(DirOp::Rename(from.to_owned(), to.to_owned()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_only_synced_state() {
        // Proves unsynced writes and unsynced creates vanish under DropUnsynced, and synced
        // ones survive.
        let mut fault = FaultStorage::new();
        fault.create("a").unwrap();
        fault.write_at("a", 0, b"hello").unwrap();
        fault.sync("a").unwrap();
        fault.sync_dir().unwrap();
        fault.write_at("a", 5, b" world").unwrap();
        fault.create("b").unwrap();
        let after = fault.after_crash(CrashMode::DropUnsynced);
        assert_eq!(after.read_all("a").unwrap(), b"hello");
        assert!(matches!(
            after.read_all("b"),
            Err(StorageError::NotFound { .. })
        ));
        let kept = fault.after_crash(CrashMode::KeepUnsynced);
        assert_eq!(kept.read_all("a").unwrap(), b"hello world");
        assert_eq!(kept.read_all("b").unwrap(), b"");
    }

    #[test]
    fn torn_crash_keeps_a_prefix_of_unsynced_writes() {
        // Proves Torn mode always yields durable content followed by a prefix of the
        // unsynced byte stream (appends here), and that different seeds give different cuts.
        let mut fault = FaultStorage::new();
        fault.create("a").unwrap();
        fault.sync_dir().unwrap();
        fault.write_at("a", 0, b"0123").unwrap();
        fault.sync("a").unwrap();
        fault.write_at("a", 4, b"4567").unwrap();
        fault.write_at("a", 8, b"89ab").unwrap();
        let mut lengths = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let content = fault
                .after_crash(CrashMode::Torn { seed })
                .read_all("a")
                .unwrap();
            assert!(b"0123456789ab".starts_with(&content) && content.len() >= 4);
            lengths.insert(content.len());
        }
        assert!(lengths.len() > 3, "cuts vary with the seed: {lengths:?}");
    }

    #[test]
    fn armed_crash_fails_that_call_and_all_later_ones() {
        // Proves crash-at-sync fails the armed call and every later call, reads included.
        let mut fault = FaultStorage::new();
        fault.create("a").unwrap();
        fault.set_crash_at_sync(2);
        fault.sync("a").unwrap();
        assert!(matches!(fault.sync_dir(), Err(StorageError::Crashed)));
        assert!(matches!(fault.read_all("a"), Err(StorageError::Crashed)));
        assert!(matches!(
            fault.write_at("a", 0, b"x"),
            Err(StorageError::Crashed)
        ));
    }
}
