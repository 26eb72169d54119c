//! Repair: the way back from a damaged index file or snapshot manifest
//! (restic's `repair index` and `repair snapshots`).
//!
//! * [`repair_index`] rebuilds the index from the packs: every stored pack
//!   is indexed, from the entries of readable index files or, for packs
//!   no readable index file lists (or all, with `read_all_packs`), from
//!   the pack's own header, which is authenticated like any object. Index
//!   entries of packs that are gone are dropped. The new index files are
//!   written first, the last one superseding every index file listed
//!   (damaged ones included); only then are the old ones deleted, so an
//!   interruption loses no entry (SPEC.md 11, write order 3).
//! * [`repair_snapshots`] sets damaged manifests aside: each one's bytes
//!   are saved to a local directory (nothing is lost: a copy of the
//!   repository may let someone recover it), then it is removed from the
//!   repository, so `prune` can run again. Its data is then unused and the
//!   next prune frees what only it used.
//!
//! Both run under the exclusive lock, and both plan before they change
//! anything (`dry_run` stops there).

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::{FileType, IoStats};
use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use crate::format::lock::LockKind;
use crate::id::{IndexId, PackId, SnapshotId};
use crate::repo::{Index, Repository};

/// Options of [`repair_index`].
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepairIndexOptions {
    /// Read every pack's header, not only those of packs no readable index
    /// file lists.
    pub read_all_packs: bool,
    /// Only say what would be done.
    pub dry_run: bool,
}

/// A pack whose header could not be read: it stays out of the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedPack {
    /// The pack.
    pub pack: PackId,
    /// Why its header could not be read.
    pub error: String,
}

/// What [`repair_index`] found and did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RepairIndexSummary {
    /// Index files read whole.
    pub index_files_read: usize,
    /// Index files that are damaged (replaced by the new index).
    pub damaged_index_files: Vec<IndexId>,
    /// Packs stored.
    pub packs: usize,
    /// Packs whose headers were read (no readable index file listed them,
    /// or `read_all_packs`).
    pub headers_read: usize,
    /// Packs the old index did not list that the new one does.
    pub packs_added: usize,
    /// Packs whose headers could not be read: not indexed.
    pub damaged_packs: Vec<DamagedPack>,
    /// Packs the old index listed that are not stored: their entries
    /// are dropped.
    pub missing_packs: Vec<PackId>,
    /// Blob entries in the new index.
    pub blobs: usize,
    /// Index files written (0 when nothing needed repair, or a dry run).
    pub index_files_written: usize,
    /// Index files removed.
    pub index_files_removed: usize,
    /// Nothing was changed on purpose.
    pub dry_run: bool,
    /// Requests made to the storage and bytes moved.
    #[serde(default)]
    pub io: IoStats,
}

/// Rebuilds the index from the packs (see the module docs).
pub fn repair_index(repo: &Repository, opts: &RepairIndexOptions) -> Result<RepairIndexSummary> {
    let lock = repo.lock(LockKind::Exclusive, "repair index")?;
    let mut s = RepairIndexSummary {
        dry_run: opts.dry_run,
        ..RepairIndexSummary::default()
    };
    let mut listed: Vec<IndexId> = Vec::new();
    let mut readable = Vec::new();
    for f in repo.backend().list(FileType::Index)? {
        let id: IndexId = f.name.parse()?;
        listed.push(id);
        match repo.load_index_file_trusting(&id) {
            Ok((file, trusted)) => readable.push((id, file, trusted)),
            Err(Error::Damaged { .. }) => s.damaged_index_files.push(id),
            Err(e) => return Err(e),
        }
    }
    s.index_files_read = readable.len();
    let old = Index::from_files_trusting(readable);
    let stored = repo.pack_sizes()?;
    s.packs = stored.len();
    let mut names: Vec<&String> = stored.keys().collect();
    names.sort();
    let mut packs: Vec<IndexPack> = Vec::with_capacity(names.len());
    for name in names {
        let id: PackId = name.parse()?;
        // Only a full key's word is carried over unread: a pack only a
        // write-only key's index files list is read (SPEC.md 21.4).
        let known = old.pack(&id).filter(|p| p.trusted);
        if let (Some(p), false) = (known, opts.read_all_packs) {
            packs.push(IndexPack {
                id,
                sealed_by: p.sealed_by,
                blobs: p.blobs.clone(),
            });
            continue;
        }
        s.headers_read += 1;
        match repo.read_pack_verified(&id) {
            Ok(v) => {
                if old.pack(&id).is_none() {
                    s.packs_added += 1;
                }
                for why in v.rejected {
                    s.damaged_packs.push(DamagedPack {
                        pack: id,
                        error: format!("{why}; it is left out of the index"),
                    });
                }
                packs.push(IndexPack {
                    id,
                    sealed_by: v.sealed_by,
                    blobs: v.blobs,
                });
            }
            Err(e @ (Error::Damaged { .. } | Error::NewerFormat { .. })) => {
                s.damaged_packs.push(DamagedPack {
                    pack: id,
                    error: e.to_string(),
                });
            }
            Err(e) => return Err(e),
        }
    }
    let kept: HashSet<PackId> = packs.iter().map(|p| p.id).collect();
    s.missing_packs = old
        .packs()
        .iter()
        .map(|p| p.id)
        .filter(|id| !stored.contains_key(&id.to_hex()))
        .collect();
    s.blobs = packs.iter().map(|p| p.blobs.len()).sum();
    let sound = !opts.read_all_packs
        && s.damaged_index_files.is_empty()
        && s.missing_packs.is_empty()
        && s.packs_added == 0
        && old.superseded().is_empty()
        && old.packs().iter().all(|p| p.trusted)
        && old.packs().iter().all(|p| kept.contains(&p.id));
    if opts.dry_run || sound {
        drop(lock);
        s.io = repo.io_stats();
        return Ok(s);
    }
    lock.ensure_held()?;
    let (files, _) = repo.save_index_superseding(&listed, packs)?;
    s.index_files_written = files;
    lock.ensure_held()?;
    for id in &listed {
        repo.remove_index_file(id)?;
        s.index_files_removed += 1;
    }
    drop(lock);
    s.io = repo.io_stats();
    Ok(s)
}

/// Options of [`repair_snapshots`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairSnapshotsOptions {
    /// Where the bytes of each damaged manifest are saved before it is
    /// removed (created, mode 0700; files 0600).
    pub save_dir: PathBuf,
    /// Only say what would be done.
    #[serde(default)]
    pub dry_run: bool,
}

/// One damaged manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedSnapshot {
    /// Its id (the manifest's name).
    pub snapshot: SnapshotId,
    /// What is wrong with it.
    pub error: String,
    /// Where its bytes were saved (none in a dry run).
    pub saved_to: Option<PathBuf>,
}

/// What [`repair_snapshots`] found and did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RepairSnapshotsSummary {
    /// Manifests read.
    pub snapshots: usize,
    /// The damaged ones.
    pub damaged: Vec<DamagedSnapshot>,
    /// How many were removed from the repository.
    pub removed: usize,
    /// Nothing was changed on purpose.
    pub dry_run: bool,
    /// Requests made to the storage and bytes moved.
    #[serde(default)]
    pub io: IoStats,
}

/// Sets damaged manifests aside (see the module docs).
pub fn repair_snapshots(
    repo: &Repository,
    opts: &RepairSnapshotsOptions,
) -> Result<RepairSnapshotsSummary> {
    let lock = repo.lock(LockKind::Exclusive, "repair snapshots")?;
    let mut s = RepairSnapshotsSummary {
        dry_run: opts.dry_run,
        ..RepairSnapshotsSummary::default()
    };
    for f in repo.backend().list(FileType::Snapshot)? {
        let id: SnapshotId = f.name.parse()?;
        s.snapshots += 1;
        match repo.load_manifest(&id) {
            // Sound, or removed meanwhile: nothing to repair.
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(Error::Damaged { reason, .. }) => s.damaged.push(DamagedSnapshot {
                snapshot: id,
                error: reason,
                saved_to: None,
            }),
            Err(e) => return Err(e),
        }
    }
    if opts.dry_run || s.damaged.is_empty() {
        drop(lock);
        s.io = repo.io_stats();
        return Ok(s);
    }
    make_private_dir(&opts.save_dir)?;
    for d in &mut s.damaged {
        let name = d.snapshot.to_hex();
        let bytes = repo.backend().read(FileType::Snapshot, &name)?;
        let to = opts.save_dir.join(format!("snapshot-{name}"));
        save_private(&to, &bytes)?;
        d.saved_to = Some(to);
        lock.ensure_held()?;
        repo.remove_snapshot(&d.snapshot)?;
        s.removed += 1;
    }
    drop(lock);
    s.io = repo.io_stats();
    Ok(s)
}

/// Creates `dir` (mode 0700) or accepts an existing one only if it is a
/// directory (not a symlink) of this user that nobody else can read: the
/// manifests saved there name databases and may be opened later.
fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    crate::sqlite::planted::refuse_planted(dir, "save directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("creating", dir, e))?;
    let m = std::fs::symlink_metadata(dir).map_err(|e| Error::io("reading", dir, e))?;
    let me = rustix::process::geteuid().as_raw();
    if !m.is_dir() || m.uid() != me || m.permissions().mode() & 0o077 != 0 {
        return Err(Error::InvalidInput(format!(
            "save directory {}: it is not a private directory of yours (a symlink, another user's, or readable by others, mode {:o}): save to a new directory",
            dir.display(),
            m.permissions().mode() & 0o7777
        )));
    }
    Ok(())
}

/// Writes `bytes` to a new file `to` (mode 0600), durably; never through
/// a symlink, never over another file (one holding the same bytes, saved
/// by an earlier run, is fine).
fn save_private(to: &Path, bytes: &[u8]) -> Result<()> {
    let nofollow = i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).expect("a small flag");
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nofollow)
        .open(to);
    let mut f = match created {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let same = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nofollow)
                .open(to)
                .and_then(|mut f| {
                    let mut held = Vec::new();
                    std::io::Read::read_to_end(&mut f, &mut held).map(|_| held)
                })
                .is_ok_and(|held| held == bytes);
            if same {
                return Ok(());
            }
            return Err(Error::InvalidInput(format!(
                "{} already exists with other bytes: move it away, or save to another directory",
                to.display()
            )));
        }
        Err(e) => return Err(Error::io("creating", to, e)),
    };
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("writing", to, e))?;
    if let Some(dir) = to.parent() {
        crate::sys::fsync(dir).map_err(|e| Error::io("fsyncing", dir, e))?;
    }
    Ok(())
}
