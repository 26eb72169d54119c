//! `show`: one snapshot in full, as `restic ls` shows a snapshot's files:
//! its manifest, what it added when it was made, and the tables it holds
//! with their row counts, read from the snapshot itself (through a private
//! temporary copy, removed on every exit path).

use std::path::Path;

use serde::Serialize;

use crate::backend::IoStats;
use crate::commands::dump::image_to_temp;
use crate::error::{Error, Result, SourceProblem};
use crate::format::manifest::Manifest;
use crate::id::SnapshotId;
use crate::progress::Cancel;
use crate::repo::Repository;
use crate::sqlite::tempdb::remove_stale;
use crate::sqlite::{interrupt_on_cancel, open_own};

/// A table of the snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct TableInfo {
    /// Its name.
    pub name: String,
    /// Its rows (`None` for a virtual table, which is not counted).
    pub rows: Option<u64>,
}

/// What [`show`] found.
#[derive(Clone, Debug, Serialize)]
pub struct ShowSummary {
    /// The snapshot.
    pub id: SnapshotId,
    /// The first 8 hex digits of its id.
    pub short_id: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its tables, by name.
    pub tables: Vec<TableInfo>,
    /// Indexes, views and triggers.
    pub indexes: u64,
    /// Views.
    pub views: u64,
    /// Triggers.
    pub triggers: u64,
    /// Requests made to the storage.
    pub io: IoStats,
}

/// Shows snapshot `id`; its temporary copy goes to `temp_dir`.
pub fn show(
    repo: &Repository,
    id: &SnapshotId,
    temp_dir: &Path,
    cancel: &Cancel,
) -> Result<ShowSummary> {
    repo.require_full_key("show")?;
    let _lock = repo.lock_reading("show")?;
    remove_stale(temp_dir);
    let manifest = repo.load_manifest(id)?;
    let tmp = image_to_temp(repo, &manifest, temp_dir, "show", "show", cancel)?;
    let sql = |e: rusqlite::Error| {
        Error::source(
            tmp.path(),
            SourceProblem::Unreadable,
            format!("reading the snapshot's database: {e}"),
        )
    };
    let conn = open_own(tmp.path(), true).map_err(sql)?;
    let _interrupt = interrupt_on_cancel(&conn, cancel);
    let objects: Vec<(String, String, String)> = {
        let mut stmt = conn
            .prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)?
    };
    let count = |kind: &str| objects.iter().filter(|(k, _, _)| k == kind).count() as u64;
    let mut tables = Vec::new();
    for (kind, name, text) in &objects {
        if kind != "table" {
            continue;
        }
        let rows = if text.to_ascii_uppercase().starts_with("CREATE VIRTUAL") {
            None
        } else {
            let q = format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\""));
            Some(
                conn.query_row(&q, [], |r| r.get::<_, i64>(0))
                    .map_err(sql)?
                    .max(0) as u64,
            )
        };
        tables.push(TableInfo {
            name: name.clone(),
            rows,
        });
    }
    Ok(ShowSummary {
        id: *id,
        short_id: id.short(),
        indexes: count("index"),
        views: count("view"),
        triggers: count("trigger"),
        tables,
        manifest,
        io: repo.io_stats(),
    })
}
