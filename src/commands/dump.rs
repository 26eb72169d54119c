//! Dump: a snapshot's database written out without touching any live
//! database: the image itself, streamed and verified, or SQL text.
//!
//! SQL text needs SQLite to read the image, so the image is reassembled
//! (verified) into a temporary file first, opened read-only, and written
//! out by `sqlite::sqltext`; the temporary file is removed on every path.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result, SourceProblem};
use crate::format::manifest::Manifest;
use crate::id::SnapshotId;
use crate::repo::Repository;
use crate::sqlite::tempdb::TempDb;
use crate::sqlite::{open_own, sqltext};

/// Writes the image of snapshot `id` to `out`, verified; returns its length.
pub fn dump_image(repo: &Repository, id: &SnapshotId, out: &mut dyn Write) -> Result<u64> {
    let manifest = repo.load_manifest(id)?;
    repo.write_image(&manifest, out)
}

/// Writes snapshot `id` as SQL text; the temporary copy SQLite reads goes
/// to `temp_dir`.
pub fn dump_sql(
    repo: &Repository,
    id: &SnapshotId,
    temp_dir: &Path,
    out: &mut dyn Write,
) -> Result<()> {
    let manifest: Manifest = repo.load_manifest(id)?;
    let (tmp, file) = TempDb::create(temp_dir, "dump", "sql")?;
    {
        let mut f = BufWriter::new(file);
        repo.write_image(&manifest, &mut f)?;
        f.flush().map_err(|e| Error::io("writing", tmp.path(), e))?;
    }
    let conn = open_own(tmp.path(), true).map_err(|e| {
        Error::source(
            tmp.path(),
            SourceProblem::Unreadable,
            format!("opening the snapshot's database: {e}"),
        )
    })?;
    sqltext::write_sql(&conn, out)
}
