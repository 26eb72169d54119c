//! Prune: remove data no snapshot references (SPEC.md, "Writing objects
//! safely", step 3).
//!
//! Under the exclusive lock: walk every snapshot's chunk-list tree once to
//! find the blobs in use; plan ([`PrunePlan`], what would be done): packs
//! that hold none of them are deleted, packs whose unused share exceeds the
//! threshold are repacked, packs no index names are orphans. Then execute
//! ([`PruneStats`], what was done): copy the used blobs of repacked packs,
//! still sealed, into new packs through the one packer; write a new index
//! that supersedes every current one; then delete the old index files; then
//! the old packs. A crash at any point loses no referenced blob: until the
//! new index is stored the old one describes packs that all still exist;
//! after it, the old packs are orphans. The next prune finishes an
//! interrupted one: index files named in another index's `supersedes` are
//! ignored and deleted, unindexed packs deleted. Packs are read one at a
//! time, so memory stays bounded by one pack plus the index.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::prune_changes::{delete_changes, plan_changes, ChangesPlan};
use super::prune_retention::Held;
use crate::backend::{FileType, IoStats};
use crate::error::{Error, Result};
use crate::format::crypto::SealedBy;
use crate::format::index::IndexPack;
use crate::format::lock::LockKind;
use crate::format::pack;
use crate::id::{BlobId, IndexId, PackId};
use crate::repo::packer::{IndexMode, Packer};
use crate::repo::repository::RESERVE_MIN;
use crate::repo::{Index, Repository};

/// Options of [`prune`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruneOptions {
    /// Repack a pack once more than this share of it is unused (0.0..=1.0).
    pub max_unused: f64,
    /// Only plan.
    pub dry_run: bool,
    /// How long the captured changes of continuous capture are kept (a
    /// restore to any moment within it); before it, the snapshots remain
    /// (SPEC.md 20.7).
    #[serde(with = "crate::sys::serde_duration")]
    pub keep_changes: std::time::Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            max_unused: 0.05,
            dry_run: false,
            keep_changes: std::time::Duration::from_secs(7 * 86_400),
        }
    }
}

/// What prune would do.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PrunePlan {
    /// Snapshots whose data is kept.
    pub snapshots: usize,
    /// Blobs they reference.
    pub used_blobs: usize,
    /// Packs in the repository.
    pub packs: usize,
    /// Bytes of all packs.
    pub pack_bytes: u64,
    /// Bytes of unused blobs in indexed packs.
    pub unused_bytes: u64,
    /// Packs deleted whole (no used blob).
    pub delete: Vec<PackId>,
    /// Packs whose used blobs are copied into new packs.
    pub repack: Vec<PackId>,
    /// Packs no index names (left by interrupted backups or prunes).
    pub orphans: Vec<PackId>,
    /// Bytes of used blobs copied by repacking.
    pub repack_bytes: u64,
    /// Bytes that would be freed.
    pub freed_bytes: u64,
    /// Index files replaced.
    pub index_files: Vec<IndexId>,
    /// Superseded index files left by an interrupted prune.
    pub leftover_index_files: Vec<IndexId>,
    /// Temporary files of interrupted writes (`data/3f/.tmp-…`) last
    /// written before this prune took its exclusive lock, so no live
    /// process is writing them.
    pub leftover_files: Vec<String>,
    /// Their bytes.
    pub leftover_bytes: u64,
    /// What goes of continuous capture's change objects.
    pub changes: ChangesPlan,
    /// What S3 Object Lock holds back (SPEC.md 11.2).
    pub held: Held,
    /// Packs only write-only keys' index files listed, read and verified
    /// by this full key (SPEC.md 21.4); the new index lists what it found.
    pub adopted_packs: usize,
    /// The blobs in use (tree blobs included).
    #[serde(skip)]
    used: HashSet<BlobId>,
}

impl PrunePlan {
    /// True if executing would change nothing.
    pub fn is_noop(&self) -> bool {
        self.delete.is_empty()
            && self.repack.is_empty()
            && self.orphans.is_empty()
            && self.leftover_index_files.is_empty()
            && self.leftover_files.is_empty()
            && self.changes.delete.is_empty()
            && self.adopted_packs == 0
    }
}

/// What prune did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PruneStats {
    /// Packs deleted (unused, repacked and orphaned).
    pub packs_deleted: usize,
    /// Packs written by repacking.
    pub new_packs: usize,
    /// Blobs copied into them.
    pub blobs_copied: u64,
    /// Index files written.
    pub index_files_written: usize,
    /// Index files deleted.
    pub index_files_deleted: usize,
    /// Temporary files of interrupted writes deleted.
    #[serde(default)]
    pub leftover_files_deleted: usize,
    /// Change objects and bundles deleted.
    pub changes_deleted: usize,
    /// Bytes of packs deleted minus bytes of packs written.
    pub freed_bytes: u64,
}

/// A prune's plan and, unless it was a dry run or there was nothing to do,
/// what was done.
#[derive(Clone, Debug, Serialize)]
pub struct PruneSummary {
    /// What prune planned.
    #[serde(flatten)]
    pub plan: PrunePlan,
    /// What it did.
    pub stats: Option<PruneStats>,
    /// Requests made to the storage and bytes moved, from opening the
    /// repository to the end of this command (lock released).
    #[serde(default)]
    pub io: IoStats,
}

/// Every blob some snapshot's tree reaches (tree blobs included); subtrees
/// shared between snapshots are walked once.
fn used_blobs(repo: &Repository, index: &Index) -> Result<(usize, HashSet<BlobId>)> {
    let mut used = HashSet::new();
    let mut trees = HashSet::new();
    let snapshots = repo.snapshots()?;
    for (snapshot, m) in &snapshots {
        let missing = |blob: &BlobId| {
            Error::damaged(
                format!("snapshot {}", snapshot.short()),
                format!(
                    "its blob {} is missing from the index; prune refuses to run on a damaged repository",
                    blob.short()
                ),
            )
        };
        crate::repo::walker::walk(
            &m.tree,
            Some(&mut trees),
            &mut |id, _| {
                if !index.contains(id) {
                    return Err(missing(id));
                }
                repo.read_tree_with(index, id).map(Some)
            },
            &mut |e| {
                if !index.contains(&e.id) {
                    return Err(missing(&e.id));
                }
                used.insert(e.id);
                Ok(())
            },
        )?;
    }
    used.extend(trees);
    keep_delta_bases(index, &mut used)?;
    Ok((snapshots.len(), used))
}

/// Adds to `used` every blob a used delta blob needs decoded first: its
/// base, the base's base, down to a full blob. A base no index lists stops
/// prune: the repository is damaged.
fn keep_delta_bases(index: &Index, used: &mut HashSet<BlobId>) -> Result<()> {
    let mut todo: Vec<BlobId> = used
        .iter()
        .filter(|id| index.get(id).is_some_and(|l| l.blob.entry.base.is_some()))
        .copied()
        .collect();
    while let Some(id) = todo.pop() {
        let Some(link) = index.get(&id).and_then(|l| index.delta_base(&l.blob.entry)) else {
            continue;
        };
        // The same check of a chain link as every reader's: a base missing,
        // of the other type or of the wrong depth is damage, and what a
        // prune would delete next to it cannot be told.
        let base = link.map_err(|problem| {
            Error::damaged(
                format!("blob {}", id.short()),
                format!("{problem}; prune refuses to run on a damaged repository"),
            )
        })?;
        if used.insert(base.blob.entry.id) {
            todo.push(base.blob.entry.id);
        }
    }
    Ok(())
}

/// Copies the used blobs of the packs `plan` repacks into new packs (not
/// indexed yet); checks every one of them made it.
fn repack_used(
    repo: &Repository,
    lock: &crate::repo::LockGuard,
    plan: &PrunePlan,
    index: &Index,
) -> Result<crate::repo::packer::PackerStats> {
    let mut packer = Packer::new(repo, lock, IndexMode::Caller);
    let mut written: HashSet<BlobId> = HashSet::new();
    let bases = crate::repo::BaseCache::default();
    for id in &plan.repack {
        let pack = repo.read_pack_bytes(id)?;
        for b in &pack.blobs {
            let keep = plan.used.contains(&b.entry.id) && index.is_primary(id, &b.entry.id);
            if !keep || !written.insert(b.entry.id) {
                continue;
            }
            // Copied sealed, after checking it opens: a damaged blob is
            // never carried into a new pack.
            let base = repo.base_plaintext(index, &b.entry, &bases)?;
            pack.open(repo.key(), b, base.as_deref().map(Vec::as_slice))?;
            // A blob a write-only session sealed is sealed again by the
            // master key: the new pack is the master key's.
            let resealed = match pack.sealed_by {
                SealedBy::Master => None,
                by @ SealedBy::Session(_) => Some(crate::format::pack::reseal(
                    repo.key(),
                    by,
                    &b.entry,
                    pack.sealed(b),
                    &format!("blob {} in pack {}", b.entry.id.short(), id.short()),
                )?),
            };
            packer.add_sealed(
                b.entry.ty,
                b.entry.id,
                b.entry.compression,
                b.entry.raw_len as usize,
                b.entry.base,
                resealed.as_deref().unwrap_or(pack.sealed(b)),
            )?;
        }
    }
    let repacked = packer.finish()?;
    // Every used blob of a repacked pack must now be in a new pack,
    // whatever the pack headers said: else nothing is deleted.
    for id in &plan.repack {
        let listed = index.pack(id).map_or(&[][..], |p| &p.blobs[..]);
        for b in listed {
            let kept_here = plan.used.contains(&b.entry.id) && index.is_primary(id, &b.entry.id);
            if kept_here && !written.contains(&b.entry.id) {
                return Err(Error::damaged(
                    FileType::Pack.describe(&id.to_hex()),
                    format!(
                        "its header lacks blob {} that the index lists; nothing was deleted",
                        b.entry.id.short()
                    ),
                ));
            }
        }
    }
    Ok(repacked)
}

/// `opts`, without repacking when the storage is full (its reserve was
/// used for our lock): what is wholly unused is deleted first.
fn room_to_repack(repo: &Repository, opts: &PruneOptions) -> PruneOptions {
    let mut opts = *opts;
    if repo.reserve_used() && opts.max_unused < 1.0 {
        opts.max_unused = 1.0;
        repo.note(
            "no pack is repacked while the storage is full: run prune again afterwards to repack"
                .into(),
        );
    }
    opts
}

/// Sets the storage's reserve aside again (or for the first time), as
/// large as the index plus [`RESERVE_MIN`] (at most 64 MiB), so that the
/// next prune of a full repository can write its index. Best effort: a
/// storage still full keeps what it has.
fn restore_reserve(repo: &Repository) {
    let index: u64 = repo
        .backend()
        .list(FileType::Index)
        .map_or(0, |l| l.iter().map(|f| f.size).sum());
    let _ = repo.backend().reserve((index + RESERVE_MIN).min(64 << 20));
}

/// Deletes temporary files of interrupted writes; returns how many.
fn remove_leftovers(repo: &Repository, paths: &[String]) -> Result<usize> {
    for path in paths {
        repo.backend().remove_leftover(path)?;
    }
    Ok(paths.len())
}

/// Prune deletes nothing while an index file or a manifest is damaged: the
/// packs a damaged index file lists would look unindexed, and the blobs a
/// damaged snapshot uses unused.
fn refuse_if_damaged(repo: &Repository) -> Result<()> {
    if let Some((id, why)) = repo.damaged_index_files().into_iter().next() {
        return Err(Error::Damaged {
            object: FileType::Index.describe(&id.to_hex()),
            reason: format!(
                "{why}; prune deletes nothing while an index file is damaged (the packs it lists would look unused)"
            ),
        });
    }
    if let Some((id, why)) = repo.damaged_snapshots().into_iter().next() {
        return Err(Error::Damaged {
            object: FileType::Snapshot.describe(&id.to_hex()),
            reason: format!(
                "{why}; prune deletes nothing while a snapshot is damaged (the data it uses cannot be told)"
            ),
        });
    }
    Ok(())
}

/// Plans a prune; reads the repository, changes nothing.
pub fn plan_prune(repo: &Repository, opts: &PruneOptions) -> Result<PrunePlan> {
    if !(0.0..=1.0).contains(&opts.max_unused) {
        return Err(Error::option(
            "max_unused",
            format!("max_unused {} is outside 0..=1", opts.max_unused),
        ));
    }
    let index = repo.index()?;
    let all = repo.snapshots()?;
    refuse_if_damaged(repo)?;
    let now_ns = i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX);
    let changes = plan_changes(repo, &all, opts.keep_changes, now_ns)?;
    let (snapshots, used) = used_blobs(repo, &index)?;
    let stored = repo.pack_sizes()?;
    let mut held = Held::of(repo)?;
    let mut plan = PrunePlan {
        snapshots,
        used_blobs: used.len(),
        index_files: index.files().to_vec(),
        leftover_index_files: index.superseded().to_vec(),
        freed_bytes: changes.bytes,
        changes,
        ..PrunePlan::default()
    };
    for p in index.packs() {
        let name = p.id.to_hex();
        let size = *stored.get(&name).ok_or_else(|| {
            Error::damaged(
                FileType::Pack.describe(&name),
                "an index lists it but it is missing",
            )
        })?;
        // The copy of each used blob that is kept: its first indexed place.
        let kept: Vec<_> = p
            .blobs
            .iter()
            .filter(|b| used.contains(&b.entry.id) && index.is_primary(&p.id, &b.entry.id))
            .collect();
        // A pack's own framing counts as used: repacking cannot save it.
        let used_bytes: u64 = if kept.is_empty() {
            0
        } else {
            pack::framing_len(&kept.iter().map(|b| **b).collect::<Vec<_>>(), p.sealed_by)
                + kept
                    .iter()
                    .map(|b| u64::from(b.entry.stored_len))
                    .sum::<u64>()
        };
        plan.packs += 1;
        plan.pack_bytes += size;
        plan.unused_bytes += size.saturating_sub(used_bytes);
        if used_bytes == 0 {
            plan.delete.push(p.id);
            plan.freed_bytes += size;
            held.keeps(&p.id);
        } else if (size - used_bytes.min(size)) as f64 > opts.max_unused * size as f64 {
            if held.holds(&p.id) {
                held.packs.push(p.id);
                held.keeps(&p.id);
                continue;
            }
            plan.repack.push(p.id);
            held.keeps(&p.id);
            plan.repack_bytes += used_bytes;
            plan.freed_bytes += size - used_bytes.min(size);
        }
    }
    for (name, size) in &stored {
        let id: PackId = name.parse()?;
        if index.pack(&id).is_none() {
            held.keeps(&id);
            plan.orphans.push(id);
            plan.packs += 1;
            plan.pack_bytes += size;
            plan.freed_bytes += size;
        }
    }
    // Under the exclusive lock nobody writes: a temporary file last
    // written before it was taken (less a margin for the clocks) was left
    // by a process that is gone. A lock being taken is the exception: its
    // taker holds no lock yet, so only a stale one is removed.
    for l in repo.backend().list_leftovers()? {
        let age = if l.is_lock() {
            crate::format::lock::STALE_AFTER
        } else {
            crate::backend::LEFTOVER_MARGIN
        };
        if l.older_than(age) {
            plan.leftover_bytes += l.size;
            plan.freed_bytes += l.size;
            plan.leftover_files.push(l.path);
        }
    }
    held.finish();
    plan.held = held;
    plan.delete.sort();
    plan.repack.sort();
    plan.orphans.sort();
    plan.used = used;
    Ok(plan)
}

/// Prunes under the exclusive lock (see the module docs); with `dry_run`,
/// only plans.
pub fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneSummary> {
    // The listings must be the ones the lock protects: forget earlier
    // ones, then lock (which may list some of them at once).
    repo.refresh();
    let lock = repo.lock(LockKind::Exclusive, "prune")?;
    let opts = room_to_repack(repo, opts);
    // What write-only keys' index files say is checked against the packs
    // before anything is planned on it.
    let adopted = repo.adopt_untrusted_packs()?;
    let mut plan = plan_prune(repo, &opts)?;
    plan.adopted_packs = adopted;
    if opts.dry_run || plan.is_noop() {
        if !opts.dry_run {
            restore_reserve(repo);
        }
        drop(lock);
        return Ok(PruneSummary {
            plan,
            stats: None,
            io: repo.io_stats(),
        });
    }
    let index = repo.index()?;
    let repack: HashSet<PackId> = plan.repack.iter().copied().collect();
    let drop: HashSet<PackId> = plan.delete.iter().copied().collect();
    let stored = repo.pack_sizes()?;
    let mut stats = PruneStats::default();

    // 1. Copy the used blobs of packs being repacked into new packs.
    let repacked = repack_used(repo, &lock, &plan, &index)?;
    stats.new_packs = repacked.packs as usize;
    stats.blobs_copied = repacked.blobs;

    // 2. The new index: every pack that stays, plus the new ones; it
    //    supersedes every index file read above.
    let mut packs: Vec<IndexPack> = index
        .packs()
        .iter()
        .filter(|p| !repack.contains(&p.id) && !drop.contains(&p.id))
        .map(|p| IndexPack {
            id: p.id,
            sealed_by: p.sealed_by,
            blobs: p.blobs.clone(),
        })
        .collect();
    packs.extend(repacked.unindexed);
    let supersedes: Vec<IndexId> = index
        .files()
        .iter()
        .chain(index.superseded())
        .copied()
        .collect();
    lock.ensure_held()?;
    let (files, written_bytes) = repo.save_index_superseding(&supersedes, packs)?;
    stats.index_files_written = files;
    lock.ensure_held()?;

    // 3. The old index files, then 4. the old packs.
    for id in &supersedes {
        repo.remove_index_file(id)?;
        stats.index_files_deleted += 1;
    }
    let mut deleted_bytes = 0u64;
    for id in plan.delete.iter().chain(&plan.repack).chain(&plan.orphans) {
        let name = id.to_hex();
        repo.backend().remove(FileType::Pack, &name)?;
        deleted_bytes += stored.get(&name).copied().unwrap_or(0);
        stats.packs_deleted += 1;
    }
    stats.leftover_files_deleted = remove_leftovers(repo, &plan.leftover_files)?;
    lock.ensure_held()?;
    stats.changes_deleted = delete_changes(repo, &plan.changes)?;
    deleted_bytes += plan.changes.bytes;
    deleted_bytes += plan.leftover_bytes;
    stats.freed_bytes = deleted_bytes.saturating_sub(repacked.bytes + written_bytes);
    if let Some(cache) = repo.blob_cache() {
        cache.retain(&|id| plan.used.contains(id));
    }
    restore_reserve(repo);
    std::mem::drop(lock);
    Ok(PruneSummary {
        plan,
        stats: Some(stats),
        io: repo.io_stats(),
    })
}
