//! Private files: the journal, snapshots, tokens and the lock hold identities in full, so the
//! data directory is the service's user's alone (API.md, Operations): directories 0700, files
//! 0600, set explicitly after creation so that no umask can widen them.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every directory the service creates or opens for its data.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the service creates in them.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) for the service alone, and narrows an existing one
/// (a directory made by an older version, or by hand) to [`DIR_MODE`].
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != DIR_MODE {
        std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Open options that create a file readable and writable by its owner only; follow the open
/// with [`restrict`] so that the umask cannot leave it narrower or wider.
pub fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Sets an open file's mode to [`FILE_MODE`].
pub fn restrict(file: &File) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(FILE_MODE))
}

/// Every path under `dir` (itself included, recursively) that anyone but its owner may read,
/// write or enter, with its mode: what `gongji verify` warns about.
pub fn exposed(dir: &Path) -> io::Result<Vec<(PathBuf, u32)>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 && !meta.file_type().is_symlink() {
            found.push((path.clone(), mode));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_whatever_the_umask_allowed() {
        // Proves: a directory made wide by hand is narrowed to 0700, a file created through
        // `private_options` + `restrict` is 0600, and `exposed` names exactly the wide paths.
        let root = std::env::temp_dir().join(format!("gj-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("wide")).unwrap();
        std::fs::set_permissions(root.join("wide"), Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&root, Permissions::from_mode(0o700)).unwrap();
        let loose = root.join("wide/loose");
        std::fs::write(&loose, b"x").unwrap();
        std::fs::set_permissions(&loose, Permissions::from_mode(0o644)).unwrap();
        let found: Vec<PathBuf> = exposed(&root)
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(found, vec![root.join("wide"), loose.clone()]);

        create_private_dir(&root.join("wide")).unwrap();
        create_private_dir(&root.join("new/deeper")).unwrap();
        let file = private_options()
            .write(true)
            .create_new(true)
            .open(root.join("new/deeper/f"))
            .unwrap();
        restrict(&file).unwrap();
        std::fs::set_permissions(&loose, Permissions::from_mode(0o600)).unwrap();
        assert!(exposed(&root).unwrap().is_empty());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root.join("new/deeper/f")), 0o600);
        assert_eq!(mode(&root.join("new/deeper")), 0o700);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
