//! Temporary database files: created beside a target (same filesystem, so
//! a rename can replace it) or in a temporary directory, never replacing
//! anything, and removed with SQLite's side files when dropped, on success,
//! error and interrupt alike.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A temporary database file, removed (with its `-wal`, `-shm`,
/// `-journal`) when dropped.
#[derive(Debug)]
pub struct TempDb(PathBuf);

impl TempDb {
    /// Takes charge of a path litevault (or SQLite, for `VACUUM INTO`)
    /// will create.
    pub fn at(path: PathBuf) -> Self {
        Self(path)
    }

    /// Creates a new empty file at a fresh temporary name in `dir`
    /// (`.{stem}.litevault-{what}-{random}`); returns the guard and the
    /// open file.
    pub fn create(dir: &Path, stem: &str, what: &str) -> Result<(Self, File)> {
        let path = crate::sys::temp_path(dir, stem, what);
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("creating", &path, e))?;
        Ok((Self(path), file))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(crate::sys::with_suffix(&self.0, suffix));
        }
    }
}
