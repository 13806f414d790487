//! Archived segments: while the engine keeps history files, segments before the older
//! snapshot are renamed `archived-{name}` ([`crate::Journal::archive_segments_before`]) rather
//! than removed, so that recovery reads only the suffix while the whole journal stays on disk.
//! [`restore_archived_segments`] renames them back (a rebuild of history files);
//! [`WithArchive`] shows them under their own names without changing anything (`gongji
//! verify`'s replay from op 1).

use std::io;

use crate::storage::{Storage, StorageError};

/// Name prefix of an archived segment.
pub const ARCHIVED_PREFIX: &str = "archived-";

/// Renames every archived segment back into the journal (for a replay from op 1); returns how
/// many.
pub fn restore_archived_segments<S: Storage>(storage: &mut S) -> Result<usize, StorageError> {
    let mut restored = 0;
    for name in storage.list()? {
        if let Some(original) = archived(&name) {
            storage.rename(&name, original)?;
            restored += 1;
        }
    }
    if restored > 0 {
        storage.sync_dir()?;
    }
    Ok(restored)
}

/// The segment name an archived file had, if `name` is one.
fn archived(name: &str) -> Option<&str> {
    name.strip_prefix(ARCHIVED_PREFIX)
        .filter(|original| crate::parse_segment_name(original).is_some())
}

/// A read-only view of a journal directory in which archived segments have their own names
/// again. Every write fails.
#[derive(Debug)]
pub struct WithArchive<S>(pub S);

impl<S: Storage> WithArchive<S> {
    /// The file that holds `name`: itself, or its archived copy.
    fn actual(&self, name: &str) -> Result<String, StorageError> {
        match self.0.len(name) {
            Ok(_) => Ok(name.to_owned()),
            Err(_) => Ok(format!("{ARCHIVED_PREFIX}{name}")),
        }
    }
}

fn read_only(op: &'static str, name: &str) -> StorageError {
    StorageError::Io {
        op,
        name: name.to_owned(),
        source: io::Error::new(io::ErrorKind::PermissionDenied, "a read-only view"),
    }
}

impl<S: Storage> Storage for WithArchive<S> {
    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        Err(read_only("create", name))
    }
    fn write_at(&mut self, name: &str, _: u64, _: &[u8]) -> Result<(), StorageError> {
        Err(read_only("write", name))
    }
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.0.read_at(&self.actual(name)?, offset, buf)
    }
    fn read_all(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        self.0.read_all(&self.actual(name)?)
    }
    fn read_mapped(&self, name: &str) -> Result<crate::FileBytes, StorageError> {
        self.0.read_mapped(&self.actual(name)?)
    }
    fn map_lazily(&self, name: &str) -> Result<crate::FileBytes, StorageError> {
        self.0.map_lazily(&self.actual(name)?)
    }
    fn len(&self, name: &str) -> Result<u64, StorageError> {
        self.0.len(&self.actual(name)?)
    }
    fn set_len(&mut self, name: &str, _: u64) -> Result<(), StorageError> {
        Err(read_only("set_len", name))
    }
    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        Err(read_only("sync", name))
    }
    fn sync_dir(&mut self) -> Result<(), StorageError> {
        Err(read_only("sync_dir", "."))
    }
    fn list(&self) -> Result<Vec<String>, StorageError> {
        Ok(self
            .0
            .list()?
            .into_iter()
            .map(|name| archived(&name).map_or(name.clone(), str::to_owned))
            .collect())
    }
    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        Err(read_only("remove", name))
    }
    fn rename(&mut self, from: &str, _: &str) -> Result<(), StorageError> {
        Err(read_only("rename", from))
    }
}
