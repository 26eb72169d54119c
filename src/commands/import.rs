//! `import`: existing backup files (SQLite files, compressed or not, and
//! SQL dumps) brought in as snapshots of a database, oldest first, each
//! checked with `integrity_check`, under one lock. They go through the
//! backup pipeline, so a directory of daily full copies costs what
//! changed between them (the summary says how much).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backend::IoStats;
use crate::commands::backup::{backup_held, BackupOptions};
use crate::error::{Error, Result};
use crate::format::lock::LockKind;
use crate::id::SnapshotId;
use crate::progress::Cancel;
use crate::repo::Repository;
use crate::sqlite::import::{prepare, ImportKind};

/// Where an imported snapshot's time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportTime {
    /// This time for every file.
    Fixed(jiff::Timestamp),
    /// The time in each file's name (Stanza's, restinpieces' and similar
    /// names); a file without one is an error.
    FromName,
    /// Each file's modification time.
    Modified,
}

/// Options of [`import`].
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The database these files are copies of (recorded in the snapshots,
    /// so they group with its own backups).
    pub database: PathBuf,
    /// Times.
    pub time: ImportTime,
    /// Tags for every snapshot.
    pub tags: Vec<String>,
    /// Host recorded (default: this host).
    pub host: Option<String>,
    /// Directory for decompressed or replayed copies.
    pub temp_dir: PathBuf,
    /// Largest decompressed file accepted.
    pub max_size: u64,
    /// Stops the import; what was imported stays.
    pub cancel: Cancel,
}

/// One imported file.
#[derive(Clone, Debug, Serialize)]
pub struct ImportedFile {
    /// The file.
    pub file: PathBuf,
    /// What it was.
    pub kind: ImportKind,
    /// The snapshot it became (`None`: equal to the previous one, not
    /// stored again).
    pub snapshot: Option<SnapshotId>,
    /// Its time.
    pub time: String,
    /// The database's size.
    pub database_bytes: u64,
    /// Bytes it added to the repository.
    pub added_bytes: u64,
}

/// What [`import`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportSummary {
    /// Files imported.
    pub imported: usize,
    /// Files that failed.
    pub failed: usize,
    /// Bytes of the files as given.
    pub file_bytes: u64,
    /// Bytes of the databases they hold.
    pub database_bytes: u64,
    /// Bytes added to the repository.
    pub added_bytes: u64,
    /// Requests made to the storage.
    pub io: IoStats,
}

/// The time of `file` under `how`.
fn time_of(file: &Path, how: ImportTime) -> Result<jiff::Timestamp> {
    match how {
        ImportTime::Fixed(t) => Ok(t),
        ImportTime::FromName => {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            crate::sys::time_from_name(&name).ok_or_else(|| {
                Error::option(
                    "time",
                    format!(
                        "{}: no time in its name (like 20260113T143000Z or 2026-01-13T14-30-00Z): give the time instead",
                        file.display()
                    ),
                )
            })
        }
        ImportTime::Modified => {
            let m = std::fs::metadata(file)
                .and_then(|m| m.modified())
                .map_err(|e| Error::io("reading", file, e))?;
            jiff::Timestamp::try_from(m).map_err(|e| {
                Error::InvalidInput(format!("{}: modification time: {e}", file.display()))
            })
        }
    }
}

/// Imports `files` (see the module docs). Each file's result goes to
/// `each` as it comes; a file that fails is reported and the others go on;
/// a cancellation stops the rest.
pub fn import(
    repo: &Repository,
    files: &[PathBuf],
    opts: &ImportOptions,
    mut each: impl FnMut(&Path, &Result<ImportedFile>),
) -> Result<ImportSummary> {
    // Times first (a name without one fails before anything is written),
    // then oldest first.
    let mut timed = Vec::with_capacity(files.len());
    for f in files {
        timed.push((time_of(f, opts.time)?, f.clone()));
    }
    timed.sort();
    crate::sqlite::tempdb::remove_stale(&opts.temp_dir);
    let lock = repo.lock(LockKind::Shared, "import")?;
    let mut summary = ImportSummary::default();
    for (time, file) in &timed {
        let r = (|| -> Result<ImportedFile> {
            opts.cancel.check("import stopped")?;
            let file_bytes = std::fs::metadata(file).map_or(0, |m| m.len());
            let prepared = prepare(file, &opts.temp_dir, opts.max_size, &opts.cancel)?;
            let mut b = BackupOptions::new(&prepared.path);
            b.recorded_path = Some(opts.database.clone());
            b.time = Some(*time);
            b.tags.clone_from(&opts.tags);
            b.host.clone_from(&opts.host);
            b.temp_dir = Some(opts.temp_dir.clone());
            b.cancel = opts.cancel.clone();
            let s = backup_held(repo, &lock, &b)?;
            summary.file_bytes += file_bytes;
            Ok(ImportedFile {
                file: file.clone(),
                kind: prepared.kind,
                snapshot: s.snapshot,
                time: s.manifest.time.clone(),
                database_bytes: s.manifest.image.bytes,
                added_bytes: s.added_bytes,
            })
        })();
        each(file, &r);
        match r {
            Ok(f) => {
                summary.imported += 1;
                summary.database_bytes += f.database_bytes;
                summary.added_bytes += f.added_bytes;
            }
            Err(e) if e.kind() == crate::error::ErrorKind::Interrupted => return Err(e),
            Err(_) => summary.failed += 1,
        }
    }
    drop(lock);
    summary.io = repo.io_stats();
    Ok(summary)
}
