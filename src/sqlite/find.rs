//! Finding the SQLite databases under a directory, for backing up many at
//! once: regular files that start with SQLite's header, never a `-wal`,
//! `-shm` or `-journal` side file, symlinks not followed (so no loop and
//! nothing outside the tree), minus what matches an exclude pattern.
//! Directories that cannot be read are reported, not fatal.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::has_sqlite_header;
use crate::error::{Error, Result};

/// What a search found.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// The databases, sorted by path.
    pub databases: Vec<PathBuf>,
    /// What could not be searched, one line each (a directory not readable).
    pub warnings: Vec<String>,
}

/// Exclude patterns (shell globs: `*`, `?`, `[...]`, `**`), matched against
/// a file's path and against its name.
pub fn excludes<S: AsRef<str>>(patterns: &[S]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = p.as_ref();
        let g = Glob::new(p).map_err(|e| {
            Error::option(
                "exclude",
                format!("exclude pattern {p:?} is not a valid glob: {e}"),
            )
        })?;
        b.add(g);
    }
    b.build()
        .map_err(|e| Error::option("exclude", format!("exclude patterns: {e}")))
}

/// True if `path` names a side file of a database, or a temporary copy
/// litevault is making (a clone beside a database being backed up, a
/// restore's copy beside its target), not a database.
fn side_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    ["-wal", "-shm", "-journal"]
        .iter()
        .any(|s| name.ends_with(s))
        || super::tempdb::is_temporary(&name)
}

/// Every SQLite database under `dir` not excluded by `exclude`.
pub fn find_databases(dir: &Path, exclude: &GlobSet) -> Result<Found> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io("searching", dir, e))?;
    if !meta.is_dir() {
        return Err(Error::option(
            "find",
            format!(
                "{} is not a directory: give the directory to search",
                dir.display()
            ),
        ));
    }
    let mut found = Found::default();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || !(exclude.is_match(e.path()) || exclude.is_match(e.file_name()))
        });
    for entry in walker {
        match entry {
            Err(e) => found.warnings.push(format!(
                "cannot search {}: {}",
                e.path()
                    .map_or_else(|| dir.display().to_string(), |p| p.display().to_string()),
                e.io_error()
                    .map_or_else(|| e.to_string(), ToString::to_string)
            )),
            Ok(e) => {
                if e.file_type().is_file() && !side_file(e.path()) && has_sqlite_header(e.path()) {
                    found.databases.push(e.into_path());
                }
            }
        }
    }
    Ok(found)
}
