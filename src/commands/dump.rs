//! Dump: a snapshot's database written out without touching any live
//! database: the image itself, streamed and verified, or SQL text.
//!
//! SQL text needs SQLite to read the image, so the image is reassembled
//! (verified) into a private temporary file first (mode 0600), opened
//! read-only, and written out by `sqlite::sqltext`; the temporary file is
//! removed on every path.
//!
//! [`dump_to_file`] never leaves a half-written output: it writes a
//! temporary file beside the output and renames it into place at the end,
//! refuses to replace an SQLite database that is in use, and writes
//! straight into what is not a regular file (a FIFO, `/dev/null`).

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::pitr::apply_stream;
use super::restore::At;
use crate::backend::IoStats;
use crate::error::{Error, Result, SourceProblem};
use crate::format::manifest::Manifest;
use crate::id::SnapshotId;
use crate::progress::Cancel;
use crate::repo::Repository;
use crate::sqlite::holders::{self, Holders};
use crate::sqlite::planted::refuse_planted_database;
use crate::sqlite::tempdb::{remove_stale, TempDb};
use crate::sqlite::{open_own, sqltext};
use crate::sys::{fsync, with_suffix};

/// How errors name a stream a dump writes to (see `repo::reader`).
const OUTPUT: &str = "the output";

/// What a dump writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// The database file itself.
    #[default]
    Sqlite,
    /// SQL text that replays into an equal database.
    Sql,
}

/// What a dump to a file did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DumpSummary {
    /// The snapshot dumped.
    pub snapshot: SnapshotId,
    /// The output file.
    pub output: PathBuf,
    /// Its format.
    pub format: DumpFormat,
    /// Bytes written.
    pub bytes: u64,
    /// Requests made to the storage and bytes moved, from opening the
    /// repository to the end of this command (lock released).
    #[serde(default)]
    pub io: IoStats,
}

/// Writes the image of snapshot `id` to `out`, verified; returns its length.
pub fn dump_image(repo: &Repository, id: &SnapshotId, out: &mut dyn Write) -> Result<u64> {
    repo.require_full_key("dump")?;
    let manifest = repo.load_manifest(id)?;
    repo.write_image(&manifest, out, &Cancel::new())
}

/// Writes snapshot `id` in `format` to `out`, with `at` the database at
/// that moment of the snapshot's stream of captured changes; the temporary
/// copy SQLite reads for SQL text (or the changes are applied to) goes to
/// `temp_dir`. Returns the bytes written.
pub fn dump(
    repo: &Repository,
    id: &SnapshotId,
    format: DumpFormat,
    at: Option<At>,
    temp_dir: &Path,
    out: &mut dyn Write,
    cancel: &Cancel,
) -> Result<u64> {
    repo.require_full_key("dump")?;
    let _lock = repo.lock_reading("dump")?;
    dump_held(repo, id, format, at, temp_dir, out, cancel)
}

/// [`dump`] for a caller that already holds the repository's lock (a
/// server that locks before it answers, so a prune running then is a
/// refusal rather than a download cut short).
pub fn dump_held(
    repo: &Repository,
    id: &SnapshotId,
    format: DumpFormat,
    at: Option<At>,
    temp_dir: &Path,
    out: &mut dyn Write,
    cancel: &Cancel,
) -> Result<u64> {
    repo.require_full_key("dump")?;
    let manifest: Manifest = repo.load_manifest(id)?;
    match (format, at) {
        (DumpFormat::Sqlite, None) => repo.write_image(&manifest, out, cancel),
        (DumpFormat::Sqlite, Some(at)) => {
            remove_stale(temp_dir);
            let tmp = image_at(repo, &manifest, at, temp_dir, cancel)?;
            let mut f =
                std::fs::File::open(tmp.path()).map_err(|e| Error::io("reading", tmp.path(), e))?;
            std::io::copy(&mut f, out).map_err(|e| Error::io("writing", Path::new(OUTPUT), e))
        }
        (DumpFormat::Sql, at) => {
            remove_stale(temp_dir);
            let tmp = match at {
                None => image_to_temp(repo, &manifest, temp_dir, "dump", "sql", cancel)?,
                Some(at) => image_at(repo, &manifest, at, temp_dir, cancel)?,
            };
            let conn = open_own(tmp.path(), true).map_err(|e| {
                Error::source(
                    tmp.path(),
                    SourceProblem::Unreadable,
                    format!("opening the snapshot's database: {e}"),
                )
            })?;
            let mut counting = Counting {
                inner: out,
                bytes: 0,
            };
            sqltext::write_sql(&conn, &mut counting, cancel)?;
            Ok(counting.bytes)
        }
    }
}

/// Snapshot `m`'s image with its stream's changes up to `at` applied, in a
/// new private file (removed when the guard drops).
fn image_at(
    repo: &Repository,
    m: &Manifest,
    at: At,
    dir: &Path,
    cancel: &Cancel,
) -> Result<TempDb> {
    let tmp = image_to_temp(repo, m, dir, "dump", "at", cancel)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(tmp.path())
        .map_err(|e| Error::io("opening", tmp.path(), e))?;
    apply_stream(repo, m, &file, at.until_ns(), cancel)?;
    Ok(tmp)
}

/// Writes snapshot `m`'s image into a new private file (mode 0600,
/// removed when the guard drops) in `dir` (see [`TempDb::create`] for
/// `stem` and `what`).
pub(crate) fn image_to_temp(
    repo: &Repository,
    m: &Manifest,
    dir: &Path,
    stem: &str,
    what: &str,
    cancel: &Cancel,
) -> Result<TempDb> {
    let (tmp, file) = TempDb::create(dir, stem, what)?;
    let mut w = BufWriter::new(file);
    repo.write_image(m, &mut w, cancel)
        .map_err(|e| name_output(e, tmp.path()))?;
    w.flush().map_err(|e| Error::io("writing", tmp.path(), e))?;
    drop(w);
    Ok(tmp)
}

/// Counts what passes through.
struct Counting<'a> {
    inner: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes snapshot `id` to the file `output` (see the module docs).
pub fn dump_to_file(
    repo: &Repository,
    id: &SnapshotId,
    format: DumpFormat,
    at: Option<At>,
    output: &Path,
    temp_dir: &Path,
    cancel: &Cancel,
) -> Result<DumpSummary> {
    repo.require_full_key("dump")?;
    let summary = |bytes| DumpSummary {
        snapshot: *id,
        output: output.to_path_buf(),
        format,
        bytes,
        io: repo.io_stats(),
    };
    refuse_planted_database(output, "output")?;
    let existing = std::fs::metadata(output).ok();
    if let Some(m) = &existing {
        if m.is_dir() {
            return Err(Error::option(
                "output",
                format!(
                    "output {} is a directory: give a file name",
                    output.display()
                ),
            ));
        }
        if !m.is_file() {
            // A FIFO or a device: written straight, as asked.
            let mut f = OpenOptions::new()
                .write(true)
                .open(output)
                .map_err(|e| Error::io("opening", output, e))?;
            let bytes = dump(repo, id, format, at, temp_dir, &mut f, cancel)?;
            return Ok(summary(bytes));
        }
        refuse_database_in_use(output)?;
    }
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    remove_stale(&dir);
    let stem = output
        .file_name()
        .map_or_else(|| "dump".into(), |n| n.to_string_lossy().into_owned());
    let (tmp, file) = TempDb::create(&dir, &stem, "dump")?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    // Errors writing "the output" are about this file.
    let bytes = dump(repo, id, format, at, temp_dir, &mut w, cancel)
        .map_err(|e| name_output(e, tmp.path()))?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io("writing", tmp.path(), e.into_error()))?;
    file.sync_all()
        .map_err(|e| Error::io("fsyncing", tmp.path(), e))?;
    if let Some(m) = &existing {
        // The file it replaces keeps its owner and mode.
        let _ = std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()));
        file.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| Error::io("setting the permissions of", tmp.path(), e))?;
    }
    drop(file);
    cancel.check("dump stopped; the output was not touched")?;
    // Side files of a database that was there would be replayed into the
    // new one.
    if existing.is_some() {
        for suffix in ["-wal", "-journal"] {
            let _ = std::fs::remove_file(with_suffix(output, suffix));
        }
    }
    std::fs::rename(tmp.path(), output)
        .map_err(|e| Error::io("renaming the dump to", output, e))?;
    tmp.keep();
    fsync(&dir).map_err(|e| Error::io("fsyncing", &dir, e))?;
    Ok(summary(bytes))
}

/// An error writing "the output" (a stream) names the file it was.
fn name_output(e: Error, file: &Path) -> Error {
    match e {
        Error::Io { op, path, source } if path.as_os_str() == OUTPUT => Error::Io {
            op,
            path: file.to_path_buf(),
            source,
        },
        e => e,
    }
}

/// Refuses to replace an SQLite database another process has open.
fn refuse_database_in_use(path: &Path) -> Result<()> {
    if !crate::sqlite::has_sqlite_header(path) {
        return Ok(());
    }
    let why = match holders::find(path) {
        Holders::None => return Ok(()),
        Holders::Found(holder) => format!("open by {holder}"),
        Holders::Unknown(why) => format!("perhaps in use: {why}"),
    };
    Err(Error::option(
        "output",
        format!(
            "output {} is an SQLite database {why}: refusing to overwrite it",
            path.display()
        ),
    ))
}
