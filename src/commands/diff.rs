//! `diff`: what changed between two snapshots of a database, or between a
//! snapshot and a live database ("what would a restore undo?"): schema
//! objects, rows per table (sqldiff's semantics, see
//! [`crate::sqlite::compare`]), pages, and what the second snapshot added
//! to the repository.
//!
//! The snapshots' images are written to private temporary files (mode
//! 0600, removed on every exit path, [`TempDb`]); a live database is read
//! into memory as a backup would read it (one read transaction, so its WAL
//! content is seen; free pages as zeros), and nothing of it is written to
//! disk.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backend::IoStats;
use crate::commands::dump::image_to_temp;
use crate::error::{Error, Result, SourceProblem};
use crate::format::manifest::Manifest;
use crate::format::manifest::Strategy;
use crate::id::SnapshotId;
use crate::progress::Cancel;
use crate::repo::Repository;
use crate::sqlite::compare::{schema_changes, table_diffs, SchemaChange, TableDiff};
use crate::sqlite::source::{open_source, SourceOptions};
use crate::sqlite::tempdb::{remove_stale, TempDb};
use crate::sqlite::{interrupt_on_cancel, open_database, open_own};

/// What the first snapshot is compared with.
#[derive(Clone, Debug)]
pub enum DiffTarget {
    /// Another snapshot.
    Snapshot(SnapshotId),
    /// A live database file.
    Live(PathBuf),
}

/// One side of a diff.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    /// The snapshot, if it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotId>,
    /// The database's path (as recorded, or the live file's).
    pub database: String,
    /// The snapshot's time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Bytes that snapshot added to the repository when it was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added_bytes: Option<u64>,
}

/// Pages compared one by one.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PageDiff {
    /// Page size of the first and of the second.
    pub page_size: (u32, u32),
    /// Pages of the first and of the second.
    pub pages: (u64, u64),
    /// Pages that differ, pages only one side has included (all of them
    /// when the page sizes differ).
    pub changed: u64,
}

/// What [`diff`] found.
#[derive(Clone, Debug, Serialize)]
pub struct DiffSummary {
    /// The first side.
    pub from: Side,
    /// The second side.
    pub to: Side,
    /// True if both are the same database (path); a diff of two databases
    /// is allowed, and said.
    pub same_database: bool,
    /// Schema objects added, removed or changed.
    pub schema: Vec<SchemaChange>,
    /// Rows per table.
    pub tables: Vec<TableDiff>,
    /// Pages.
    pub pages: PageDiff,
    /// Requests made to the storage.
    pub io: IoStats,
}

fn side(id: SnapshotId, m: &Manifest) -> Side {
    Side {
        snapshot: Some(id),
        database: m.database.shown_path(),
        time: Some(m.time.clone()),
        added_bytes: Some(m.stats.added_bytes),
    }
}

/// Counts the pages that differ between two images.
fn page_diff(
    first: impl Read,
    second: impl Read,
    size_a: u32,
    size_b: u32,
) -> std::io::Result<PageDiff> {
    let (mut ra, mut rb) = (BufReader::new(first), BufReader::new(second));
    let mut diff = PageDiff {
        page_size: (size_a, size_b),
        ..PageDiff::default()
    };
    let mut pa = vec![0u8; size_a as usize];
    let mut pb = vec![0u8; size_b as usize];
    let read = |r: &mut dyn Read, buf: &mut [u8]| -> std::io::Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            match r.read(&mut buf[filled..])? {
                0 => break,
                got => filled += got,
            }
        }
        Ok(filled > 0)
    };
    loop {
        let in_a = read(&mut ra, &mut pa)?;
        let in_b = read(&mut rb, &mut pb)?;
        if !in_a && !in_b {
            break;
        }
        diff.pages.0 += u64::from(in_a);
        diff.pages.1 += u64::from(in_b);
        if in_a != in_b || size_a != size_b || pa != pb {
            diff.changed += 1;
        }
    }
    Ok(diff)
}

/// Compares snapshot `from` with `to` (see the module docs); temporary
/// files go to `temp_dir`.
pub fn diff(
    repo: &Repository,
    from: &SnapshotId,
    to: &DiffTarget,
    temp_dir: &Path,
    cancel: &Cancel,
) -> Result<DiffSummary> {
    repo.require_full_key("diff")?;
    let _lock = repo.lock_reading("diff")?;
    remove_stale(temp_dir);
    let ma = repo.load_manifest(from)?;
    let a = image_to_temp(repo, &ma, temp_dir, "diff", "diff", cancel)?;
    let conn = open_own(a.path(), true).map_err(|e| {
        Error::source(
            a.path(),
            SourceProblem::Unreadable,
            format!("opening the snapshot's database: {e}"),
        )
    })?;
    let _interrupt = interrupt_on_cancel(&conn, cancel);
    let sql = |e: rusqlite::Error| {
        Error::source(
            "",
            SourceProblem::Unreadable,
            format!("comparing the databases: {e}"),
        )
    };
    let page_size_a = ma.image.page_size;
    let (to_side, pages, _b) = match to {
        DiffTarget::Snapshot(id) => {
            let mb = repo.load_manifest(id)?;
            let b = image_to_temp(repo, &mb, temp_dir, "diff", "diff", cancel)?;
            conn.execute("ATTACH ?1 AS other", [b.path().to_string_lossy()])
                .map_err(sql)?;
            let pages = page_diff(
                File::open(a.path()).map_err(|e| Error::io("reading", a.path(), e))?,
                File::open(b.path()).map_err(|e| Error::io("reading", b.path(), e))?,
                page_size_a,
                mb.image.page_size,
            )
            .map_err(|e| Error::io("reading", a.path(), e))?;
            (side(*id, &mb), pages, Some(b))
        }
        DiffTarget::Live(path) => {
            // The live database as a backup would store it now (one read
            // transaction, WAL included, free pages as zeros), copied to a
            // private temporary file (memory stays bounded).
            let live = open_database(path, std::time::Duration::from_secs(5))?;
            let opts = SourceOptions {
                strategy: Strategy::Pages,
                verify: false,
                lock_timeout: std::time::Duration::from_secs(5),
                temp_dir: temp_dir.to_path_buf(),
                keep_free_pages: false,
                cancel: cancel.clone(),
                align: None,
            };
            let stem = path
                .file_name()
                .map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
            let (b, file) = TempDb::create(temp_dir, &stem, "diff")?;
            let page_size_b = {
                let mut out = std::io::BufWriter::new(&file);
                let mut source = open_source(&live, path, repo.key(), &opts)?;
                let page_size = source.meta().page_size;
                source.for_each_page(&mut |page| {
                    out.write_all(page)
                        .map_err(|e| Error::io("writing", b.path(), e))
                })?;
                source.finish()?;
                out.flush().map_err(|e| Error::io("writing", b.path(), e))?;
                page_size
            };
            drop(live);
            let pages = page_diff(
                File::open(a.path()).map_err(|e| Error::io("reading", a.path(), e))?,
                File::open(b.path()).map_err(|e| Error::io("reading", b.path(), e))?,
                page_size_a,
                page_size_b,
            )
            .map_err(|e| Error::io("reading", a.path(), e))?;
            // The copy is read as a rollback-journal database (header
            // bytes 18 and 19): it has no WAL of its own.
            if file.metadata().is_ok_and(|m| m.len() >= 100) {
                std::os::unix::fs::FileExt::write_all_at(&file, &[1, 1], 18)
                    .map_err(|e| Error::io("writing", b.path(), e))?;
            }
            drop(file);
            conn.execute("ATTACH ?1 AS other", [b.path().to_string_lossy()])
                .map_err(sql)?;
            let side = Side {
                snapshot: None,
                database: std::path::absolute(path)
                    .unwrap_or_else(|_| path.clone())
                    .display()
                    .to_string(),
                time: None,
                added_bytes: None,
            };
            (side, pages, Some(b))
        }
    };
    finish(repo, &conn, &ma, *from, to_side, pages, cancel)
}

fn finish(
    repo: &Repository,
    conn: &rusqlite::Connection,
    ma: &Manifest,
    from: SnapshotId,
    to: Side,
    pages: PageDiff,
    cancel: &Cancel,
) -> Result<DiffSummary> {
    let sql = |e: rusqlite::Error| {
        Error::source(
            "",
            SourceProblem::Unreadable,
            format!("comparing the databases: {e}"),
        )
    };
    conn.execute_batch("BEGIN").map_err(sql)?;
    let schema = schema_changes(conn)?;
    let tables = table_diffs(conn)?;
    conn.execute_batch("COMMIT").map_err(sql)?;
    cancel.check("diff stopped")?;
    let from = side(from, ma);
    Ok(DiffSummary {
        same_database: from.database == to.database,
        from,
        to,
        schema,
        tables,
        pages,
        io: repo.io_stats(),
    })
}
