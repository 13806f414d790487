//! The `Storage` seam: a flat directory of named files, and `FsStorage` on a real directory.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Error from a [`Storage`] call.
#[derive(Debug)]
pub enum StorageError {
    /// Injected by `FaultStorage`: this call and every later one fails.
    Crashed,
    NotFound {
        name: String,
    },
    AlreadyExists {
        name: String,
    },
    /// Names must be plain file names (no separators, not `.`/`..`, not empty).
    InvalidName {
        name: String,
    },
    ShortRead {
        name: String,
        offset: u64,
        len_bytes: usize,
        file_len_bytes: u64,
    },
    Io {
        op: &'static str,
        name: String,
        source: io::Error,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Crashed => write!(f, "storage crashed (injected fault)"),
            Self::NotFound { name } => write!(f, "{name}: not found"),
            Self::AlreadyExists { name } => write!(f, "{name}: already exists"),
            Self::InvalidName { name } => write!(f, "{name:?}: invalid file name"),
            Self::ShortRead {
                name,
                offset,
                len_bytes,
                file_len_bytes,
            } => write!(
                f,
                "{name}: read of {len_bytes} bytes at offset {offset} past end ({file_len_bytes})"
            ),
            Self::Io { op, name, source } => write!(f, "{name}: {op}: {source}"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A flat directory of files. Mutating calls take `&mut self` so an implementation may cache
/// open handles; reads take `&self` so verification never needs write access.
///
/// Durability contract (the one POSIX gives): `write_at`/`set_len` are durable only after
/// `sync` of that file; `create`/`remove`/`rename` are durable only after `sync_dir`.
pub trait Storage: Send {
    /// Creates an empty file; fails with `AlreadyExists` if the name is taken.
    fn create(&mut self, name: &str) -> Result<(), StorageError>;
    /// Writes all of `data` at `offset`, extending the file (zero-filled) if needed.
    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError>;
    /// Fills `buf` from `offset`; a read past the end is `ShortRead`.
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StorageError>;
    fn read_all(&self, name: &str) -> Result<Vec<u8>, StorageError>;
    /// The whole file, mapped where the storage can (a file of gigabytes is then not copied
    /// into fresh memory, which the kernel must first zero), else read.
    fn read_mapped(&self, name: &str) -> Result<FileBytes, StorageError> {
        self.read_all(name).map(FileBytes::Read)
    }
    /// [`Storage::read_mapped`] whose pages are read only as they are touched.
    fn map_lazily(&self, name: &str) -> Result<FileBytes, StorageError> {
        self.read_mapped(name)
    }
    fn len(&self, name: &str) -> Result<u64, StorageError>;
    fn set_len(&mut self, name: &str, len_bytes: u64) -> Result<(), StorageError>;
    /// fdatasync: makes prior writes and length changes of this file durable.
    fn sync(&mut self, name: &str) -> Result<(), StorageError>;
    /// Makes prior creates, removes and renames durable.
    fn sync_dir(&mut self) -> Result<(), StorageError>;
    /// All file names, in no particular order.
    fn list(&self) -> Result<Vec<String>, StorageError>;
    fn remove(&mut self, name: &str) -> Result<(), StorageError>;
    /// Atomically replaces `to` (if present) with `from`.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError>;
}

/// A whole file's bytes: read into memory, or mapped ([`Storage::read_mapped`]).
#[derive(Debug)]
pub enum FileBytes {
    Read(Vec<u8>),
    /// The mapping, and the file, for [`FileBytes::read_at`].
    Mapped(memmap2::Mmap, File),
}

impl FileBytes {
    /// Unmaps the pages of `range` (widened to whole pages, cut to the file) of a mapped
    /// file from this process (`MADV_DONTNEED`); they stay in the page cache, and the next
    /// read maps them again. Resident memory then counts only the pages read since. Nothing
    /// for bytes read into memory; a failure is ignored (the pages stay: it is a hint).
    #[allow(unsafe_code)]
    pub fn release(&self, range: std::ops::Range<usize>) {
        if let FileBytes::Mapped(map, _) = self {
            let end = range.end.min(map.len());
            if range.start >= end {
                return;
            }
            // SAFETY: `map` is a read-only shared mapping of a file that never changes (see
            // `FsStorage::map`). For such a mapping MADV_DONTNEED discards no data: a later
            // read faults in the file's same bytes. (Only on private or anonymous mappings
            // does it replace contents with zeros, the reason memmap2 marks it unsafe.)
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    range.start,
                    end - range.start,
                )
            };
        }
    }
}

impl FileBytes {
    /// Fills `out` with the bytes at `at`: of a mapped file, read with `pread` rather than
    /// through the mapping, so that nothing is mapped into the process (a touch of the
    /// mapping maps the page cache's whole folio, up to 2 MiB). Panics on a read error or
    /// past the end, as a failed read through the mapping would (SIGBUS): the file was
    /// checked when it was opened, and a disk failing under a running engine stops it.
    pub fn read_at(&self, at: usize, out: &mut [u8]) {
        match self {
            FileBytes::Read(v) => out.copy_from_slice(&v[at..at + out.len()]),
            FileBytes::Mapped(_, file) => {
                use std::os::unix::fs::FileExt;
                file.read_exact_at(out, at as u64)
                    .expect("reading a mapped snapshot file");
            }
        }
    }
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Read(v) => v,
            FileBytes::Mapped(m, _) => m,
        }
    }
}

/// Rejects names that could escape the flat directory.
pub(crate) fn check_name(name: &str) -> Result<(), StorageError> {
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']);
    if bad {
        return Err(StorageError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// [`Storage`] on a real directory via `std::fs` (Unix: positional I/O via `FileExt`).
#[derive(Debug)]
pub struct FsStorage {
    dir: PathBuf,
    /// Write handles kept open so each append is a single `pwrite`.
    handles: HashMap<String, File>,
}

fn io_err(op: &'static str, name: &str, source: io::Error) -> StorageError {
    match source.kind() {
        io::ErrorKind::NotFound => StorageError::NotFound {
            name: name.to_owned(),
        },
        io::ErrorKind::AlreadyExists => StorageError::AlreadyExists {
            name: name.to_owned(),
        },
        _ => StorageError::Io {
            op,
            name: name.to_owned(),
            source,
        },
    }
}

impl FsStorage {
    /// Opens (creating if missing) the directory `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let dir = dir.into();
        crate::private::create_private_dir(&dir)
            .map_err(|e| io_err("create_dir_all", &dir.display().to_string(), e))?;
        Ok(Self {
            dir,
            handles: HashMap::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, StorageError> {
        check_name(name)?;
        Ok(self.dir.join(name))
    }

    fn handle(&mut self, name: &str) -> Result<&File, StorageError> {
        let path = self.path(name)?;
        if !self.handles.contains_key(name) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_err("open", name, e))?;
            self.handles.insert(name.to_owned(), file);
        }
        Ok(&self.handles[name])
    }
}

impl FsStorage {
    /// The file mapped read-only (`populate`: its pages read in at once).
    #[allow(unsafe_code)]
    fn map(&self, name: &str, populate: bool) -> Result<FileBytes, StorageError> {
        let file = File::open(self.path(name)?).map_err(|e| io_err("open", name, e))?;
        let len = file.metadata().map_err(|e| io_err("stat", name, e))?.len();
        if len == 0 {
            return Ok(FileBytes::Read(Vec::new()));
        }
        // SAFETY: a mapping is undefined behaviour if the file changes while it is mapped.
        // Only snapshot files are mapped: they are written whole under a temporary name and
        // renamed into place, never written again, and the data directory is locked by this
        // process. (Removing the file, as pruning does, leaves the mapping valid.) A disk
        // error under the mapping is a SIGBUS rather than an error. The state goes on reading
        // its msgid window from the mapping after the start (`gongji_core::SharedBytes`): a
        // disk that fails under a running engine stops it, as a failed journal write does.
        let mut options = memmap2::MmapOptions::new();
        if populate {
            options.populate();
        }
        let map = unsafe { options.map(&file) }.map_err(|e| io_err("mmap", name, e))?;
        Ok(FileBytes::Mapped(map, file))
    }
}

impl Storage for FsStorage {
    fn create(&mut self, name: &str) -> Result<(), StorageError> {
        let path = self.path(name)?;
        let file = crate::private::private_options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io_err("create", name, e))?;
        crate::private::restrict(&file).map_err(|e| io_err("chmod", name, e))?;
        self.handles.insert(name.to_owned(), file);
        Ok(())
    }

    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.handle(name)?
            .write_all_at(data, offset)
            .map_err(|e| io_err("write", name, e))
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let file = File::open(self.path(name)?).map_err(|e| io_err("open", name, e))?;
        let file_len_bytes = file.metadata().map_err(|e| io_err("stat", name, e))?.len();
        if offset.saturating_add(buf.len() as u64) > file_len_bytes {
            let len_bytes = buf.len();
            return Err(StorageError::ShortRead {
                name: name.to_owned(),
                offset,
                len_bytes,
                file_len_bytes,
            });
        }
        file.read_exact_at(buf, offset)
            .map_err(|e| io_err("read", name, e))
    }

    fn read_all(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        std::fs::read(self.path(name)?).map_err(|e| io_err("read", name, e))
    }

    /// Maps the file read-only, its pages populated at once from the page cache.
    fn read_mapped(&self, name: &str) -> Result<FileBytes, StorageError> {
        self.map(name, true)
    }

    fn map_lazily(&self, name: &str) -> Result<FileBytes, StorageError> {
        self.map(name, false)
    }

    fn len(&self, name: &str) -> Result<u64, StorageError> {
        let meta = std::fs::metadata(self.path(name)?).map_err(|e| io_err("stat", name, e))?;
        Ok(meta.len())
    }

    fn set_len(&mut self, name: &str, len_bytes: u64) -> Result<(), StorageError> {
        self.handle(name)?
            .set_len(len_bytes)
            .map_err(|e| io_err("set_len", name, e))
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.handle(name)?
            .sync_data()
            .map_err(|e| io_err("fdatasync", name, e))
    }

    fn sync_dir(&mut self) -> Result<(), StorageError> {
        let dir_name = self.dir.display().to_string();
        let dir = File::open(&self.dir).map_err(|e| io_err("open dir", &dir_name, e))?;
        dir.sync_all()
            .map_err(|e| io_err("fsync dir", &dir_name, e))
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        let dir_name = self.dir.display().to_string();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_err("list", &dir_name, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", &dir_name, e))?;
            // Non-UTF-8 names cannot be ours; skipping them is safe.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        let path = self.path(name)?;
        self.handles.remove(name);
        std::fs::remove_file(path).map_err(|e| io_err("remove", name, e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        let (from_path, to_path) = (self.path(from)?, self.path(to)?);
        self.handles.remove(from);
        self.handles.remove(to);
        std::fs::rename(from_path, to_path).map_err(|e| io_err("rename", from, e))
    }
}
