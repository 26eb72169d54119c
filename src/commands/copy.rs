//! `copy`: snapshots of one repository into another, which has its own
//! keys and chunker secret.
//!
//! Blob ids are keyed hashes and chunk boundaries depend on each
//! repository's secret, so blobs cannot move between repositories as they
//! are without telling one repository's secrets to the other, nor be
//! re-keyed without reading them whole. Each snapshot's page image is
//! therefore reassembled from the source (range reads in pack order, as a
//! restore does) into a private temporary file, checked against the
//! source's keyed image hash, and backed up into the target through the
//! normal pipeline: the target chunks it with its own secret, and its
//! index sends only the chunks it lacks. So copies deduplicate against
//! everything already in the target, from any source.
//!
//! * **Idempotent**: a source snapshot whose equal (same time, host, user,
//!   database, tags and image size) is already in the target is skipped,
//!   so a second copy sends nothing but a lock. (Into a repository opened
//!   with a write-only key, which cannot list its snapshots, every
//!   selected snapshot is copied; its data still only once.)
//! * **Resumable**: the packer writes an index file with every pack, so
//!   after an interruption the chunks already sent are known to the target
//!   and the next copy sends only the rest.
//! * The snapshot in the target keeps the source's time, host, user,
//!   database and tags, so retention and `restore --before` behave alike in
//!   both.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::backup::{backup_copy, BackupOptions};
use crate::backend::IoStats;
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::id::SnapshotId;
use crate::progress::{Cancel, Progress};
use crate::repo::{Repository, SnapshotFilter};
use crate::sqlite::source::ImageFile;
use crate::sqlite::target::check_space;
use crate::sqlite::tempdb::{remove_stale, TempDb};

const STOPPED: &str =
    "stopped: the copy was interrupted; what was sent is kept and the next copy resumes from it";

/// Options of [`copy`].
#[derive(Clone, Default)]
pub struct CopyOptions {
    /// Which snapshots of the source to copy (all by default).
    pub filter: SnapshotFilter,
    /// Only these snapshots (ids or unique prefixes, or `latest`), besides
    /// the filter; empty for all that match.
    pub snapshots: Vec<String>,
    /// Directory of the temporary image (default: the system's).
    pub temp_dir: Option<PathBuf>,
    /// Stops the copy between and inside snapshots.
    pub cancel: Cancel,
    /// Progress of each snapshot's reassembly.
    pub progress: Option<Arc<dyn Progress>>,
}

impl std::fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOptions")
            .field("filter", &self.filter)
            .field("snapshots", &self.snapshots)
            .finish_non_exhaustive()
    }
}

/// One snapshot copied.
#[derive(Clone, Debug, Serialize)]
pub struct CopiedSnapshot {
    /// Its id in the source.
    pub source: SnapshotId,
    /// Its id in the target.
    pub target: SnapshotId,
    /// Image bytes.
    pub bytes: u64,
    /// Bytes added to the target (packs, index files, manifest).
    pub added_bytes: u64,
}

/// What [`copy`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CopySummary {
    /// Snapshots copied, oldest first.
    pub copied: Vec<CopiedSnapshot>,
    /// Source snapshots already in the target: (source id, target id).
    pub already_present: Vec<(SnapshotId, SnapshotId)>,
    /// Requests to the source's storage.
    pub source_io: IoStats,
    /// Requests to the target's storage.
    pub target_io: IoStats,
}

/// What makes two snapshots the same one, across repositories (their ids
/// and hashes are keyed, so they differ).
fn identity(m: &Manifest) -> impl PartialEq + '_ {
    (
        &m.time,
        &m.host,
        &m.username,
        m.database.key(),
        &m.database.name,
        &m.tags,
        m.image.bytes,
        m.image.page_size,
    )
}

/// Copies the selected snapshots of `from` into `to` (see the module docs).
pub fn copy(from: &Repository, to: &Repository, opts: &CopyOptions) -> Result<CopySummary> {
    from.require_full_key("copy")?;
    if from.config().id == to.config().id {
        return Err(Error::option(
            "repo",
            format!(
                "{} and {} are the same repository: copy needs two",
                from.location(),
                to.location()
            ),
        ));
    }
    if let Some(p) = &opts.progress {
        p.phase("locking");
    }
    let source_lock = from.lock_reading("copy")?;
    if let Some(p) = &opts.progress {
        p.phase("listing snapshots");
    }
    let mut selected: Vec<(SnapshotId, Manifest)> = if opts.snapshots.is_empty() {
        from.snapshots()?
            .into_iter()
            .filter(|(_, m)| opts.filter.matches(m))
            .collect()
    } else {
        let mut v = Vec::new();
        for s in &opts.snapshots {
            let (id, m) = from.find_snapshot(s, &opts.filter)?;
            if !v.iter().any(|(i, _)| *i == id) {
                v.push((id, m));
            }
        }
        v
    };
    selected.sort_by_key(|(_, m)| m.timestamp());
    // A destination opened with a write-only key cannot list what it
    // holds: every selected snapshot is copied (its data deduplicated).
    // A full key counts only what full keys wrote there: a write-only
    // host could forge a snapshot that looks like the one copied.
    let existing = if to.key().is_write_only() {
        Vec::new()
    } else {
        to.full_key_snapshots()?
    };
    let temp_dir = opts.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    remove_stale(&temp_dir);
    let mut summary = CopySummary::default();
    for (id, m) in &selected {
        opts.cancel.check(STOPPED)?;
        if let Some((there, _)) = existing.iter().find(|(_, e)| identity(e) == identity(m)) {
            summary.already_present.push((*id, *there));
            continue;
        }
        let copied = copy_one(from, to, id, m, &temp_dir, opts)?;
        summary.copied.push(copied);
    }
    drop(source_lock);
    summary.source_io = from.io_stats();
    summary.target_io = to.io_stats();
    Ok(summary)
}

/// Reassembles `m` from `from` into a private temporary file, checks it,
/// and backs it up into `to`.
fn copy_one(
    from: &Repository,
    to: &Repository,
    id: &SnapshotId,
    m: &Manifest,
    temp_dir: &std::path::Path,
    opts: &CopyOptions,
) -> Result<CopiedSnapshot> {
    check_space(temp_dir, m.image.bytes, "copy")?;
    let (tmp, file) = TempDb::create(temp_dir, &format!("copy-{}", id.short()), "copy")?;
    from.reassemble_into(m, &file, tmp.path(), opts.progress.as_deref(), &opts.cancel)?;
    drop(file);
    opts.cancel.check(STOPPED)?;
    if let Some(p) = &opts.progress {
        p.phase("checking image");
    }
    from.check_image_file(m, tmp.path())?;
    let source = ImageFile::new(tmp, &m.image, to.key())?;
    let mut backup = BackupOptions::new(m.database.os_path());
    backup.force = true;
    backup.cancel = opts.cancel.clone();
    backup.time = Some(m.timestamp());
    backup.progress.clone_from(&opts.progress);
    let done = backup_copy(to, Box::new(source), &backup, m)?;
    let target = done
        .snapshot
        .ok_or_else(|| Error::Internal("a forced copy stored no snapshot".into()))?;
    Ok(CopiedSnapshot {
        source: *id,
        target,
        bytes: m.image.bytes,
        added_bytes: done.added_bytes,
    })
}
