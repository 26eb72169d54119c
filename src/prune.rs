//! Prune: remove data no snapshot references (SPEC.md, "Writing objects
//! safely", step 3).
//!
//! Under the exclusive lock: find the blobs every snapshot's chunk-list tree
//! reaches; delete packs that hold none of them; repack packs whose unused
//! share exceeds the threshold (their used blobs are copied, still sealed,
//! into new packs); write a new index that supersedes every current one;
//! then delete the old index files; then the old packs. A crash at any
//! point loses no referenced blob: until the new index is stored the old one
//! describes packs that all still exist; after it, the old packs are
//! orphans. The next prune finishes an interrupted one: index files named
//! in another index's `supersedes` are ignored and deleted, unindexed packs
//! deleted. Packs are read one at a time, so memory stays bounded by one
//! pack plus the index.

use std::collections::HashSet;

use serde::Serialize;

use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId};
use crate::index::{Index, IndexFile, IndexPack};
use crate::lock::LockKind;
use crate::pack::{self, PackWriter};
use crate::repository::{verify_name, Repository};
use crate::snapshot::walk_tree_once;

/// Most blob entries per index file written by prune.
const INDEX_ENTRIES_PER_FILE: usize = 500_000;

/// Options of [`Repository::prune`].
#[derive(Clone, Copy, Debug)]
pub struct PruneOptions {
    /// Repack a pack once more than this share of it is unused (0.0..=1.0).
    pub max_unused: f64,
    /// Only plan.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            max_unused: 0.05,
            dry_run: false,
        }
    }
}

/// What prune does (or did).
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
    /// Bytes freed once done (estimate until executed).
    pub freed_bytes: u64,
    /// Index files replaced.
    pub index_files: Vec<IndexId>,
    /// Superseded index files left by an interrupted prune.
    pub leftover_index_files: Vec<IndexId>,
    /// Packs written by repacking (after execution).
    pub new_packs: usize,
}

impl PrunePlan {
    /// True if executing would change nothing.
    pub fn is_noop(&self) -> bool {
        self.delete.is_empty()
            && self.repack.is_empty()
            && self.orphans.is_empty()
            && self.leftover_index_files.is_empty()
    }
}

impl Repository {
    /// Every blob some snapshot's tree reaches (tree blobs included).
    /// Subtrees shared between snapshots are walked once.
    pub(crate) fn used_blobs(&self, index: &Index) -> Result<(usize, HashSet<BlobId>)> {
        let mut used = HashSet::new();
        let mut trees = HashSet::new();
        let snapshots = self.snapshots()?;
        for (snapshot, m) in &snapshots {
            let missing = |blob: &BlobId| {
                Error::damaged(
                    format!("snapshot {}", snapshot.short()),
                    format!("its blob {} is missing from the index; run `litevault check` (prune refuses to run on a damaged repository)", blob.short()),
                )
            };
            walk_tree_once(
                &m.tree,
                &mut trees,
                &mut |id| {
                    if index.get(id).is_none() {
                        return Err(missing(id));
                    }
                    self.read_tree(index, id)
                },
                &mut |e| {
                    if index.get(&e.id).is_none() {
                        return Err(missing(&e.id));
                    }
                    used.insert(e.id);
                    Ok(())
                },
            )?;
        }
        used.extend(trees);
        Ok((snapshots.len(), used))
    }

    /// Plans a prune; reads the repository, changes nothing.
    pub fn plan_prune(&self, opts: &PruneOptions) -> Result<PrunePlan> {
        if !(0.0..=1.0).contains(&opts.max_unused) {
            return Err(Error::InvalidInput(format!(
                "--max-unused {} is outside 0%..100%",
                opts.max_unused * 100.0
            )));
        }
        let files = self.index_files()?;
        let mut index = Index::default();
        for (id, f) in &files.live {
            index.add_file(*id, f);
        }
        let (snapshots, used) = self.used_blobs(&index)?;
        let stored = self.pack_sizes()?;
        let mut plan = PrunePlan {
            snapshots,
            used_blobs: used.len(),
            index_files: files.live.iter().map(|(id, _)| *id).collect(),
            leftover_index_files: files.superseded.clone(),
            ..PrunePlan::default()
        };
        // The copy of each used blob that is kept: its first indexed location.
        let mut indexed: HashSet<PackId> = HashSet::new();
        let mut keeper: HashSet<(PackId, BlobId)> = HashSet::new();
        for (_, f) in &files.live {
            for p in &f.packs {
                indexed.insert(p.id);
                for b in &p.blobs {
                    if used.contains(&b.entry.id)
                        && index.get(&b.entry.id).is_some_and(|l| l.pack == p.id)
                    {
                        keeper.insert((p.id, b.entry.id));
                    }
                }
            }
        }
        let mut seen_packs = HashSet::new();
        for (_, f) in &files.live {
            for p in &f.packs {
                if !seen_packs.insert(p.id) {
                    continue;
                }
                let name = p.id.to_hex();
                let size = *stored.get(&name).ok_or_else(|| {
                    Error::damaged(
                        FileType::Pack.describe(&name),
                        "an index lists it but it is missing; run `litevault check`",
                    )
                })?;
                let kept: Vec<_> = p
                    .blobs
                    .iter()
                    .filter(|b| keeper.contains(&(p.id, b.entry.id)))
                    .collect();
                // A pack's own framing (file header, sealed header, length,
                // an entry per kept blob) counts as used: repacking cannot
                // save it.
                let framing = 6 + 4 + 40 + 4 + 44 * kept.len() as u64;
                let used_bytes: u64 = if kept.is_empty() {
                    0
                } else {
                    framing
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
                } else if (size - used_bytes.min(size)) as f64 > opts.max_unused * size as f64 {
                    plan.repack.push(p.id);
                    plan.repack_bytes += used_bytes;
                    plan.freed_bytes += size - used_bytes.min(size);
                }
            }
        }
        for (name, size) in &stored {
            let id: PackId = name.parse()?;
            if !indexed.contains(&id) {
                plan.orphans.push(id);
                plan.packs += 1;
                plan.pack_bytes += size;
                plan.freed_bytes += size;
            }
        }
        plan.delete.sort();
        plan.repack.sort();
        plan.orphans.sort();
        Ok(plan)
    }

    /// Prunes under the exclusive lock (see the module docs); with
    /// `dry_run`, only plans.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PrunePlan> {
        let lock = self.lock(LockKind::Exclusive, "prune")?;
        let mut plan = self.plan_prune(opts)?;
        if opts.dry_run || plan.is_noop() {
            return Ok(plan);
        }
        let files = self.index_files()?;
        let mut index = Index::default();
        for (id, f) in &files.live {
            index.add_file(*id, f);
        }
        let (_, used) = self.used_blobs(&index)?;
        let repack: HashSet<PackId> = plan.repack.iter().copied().collect();
        let drop: HashSet<PackId> = plan.delete.iter().copied().collect();

        // 1. Copy the used blobs of packs being repacked into new packs.
        let mut new_packs: Vec<IndexPack> = Vec::new();
        let mut written: HashSet<BlobId> = HashSet::new();
        let mut writer = PackWriter::new();
        for id in &plan.repack {
            let name = id.to_hex();
            let object = FileType::Pack.describe(&name);
            let bytes = self.backend().read(FileType::Pack, &name)?;
            verify_name(&bytes, &name, &object)?;
            for b in pack::parse_header(self.key(), &bytes, &object)? {
                let keep = used.contains(&b.entry.id)
                    && index.get(&b.entry.id).is_some_and(|l| l.pack == *id);
                if !keep || !written.insert(b.entry.id) {
                    continue;
                }
                let sealed = &bytes[b.offset as usize..(b.offset + b.entry.stored_len) as usize];
                pack::open_blob(
                    self.key(),
                    &b.entry,
                    sealed,
                    &format!("blob {} in {object}", b.entry.id.short()),
                )?;
                writer.add_sealed(
                    b.entry.ty,
                    b.entry.id,
                    b.entry.compression,
                    b.entry.raw_len as usize,
                    sealed,
                )?;
                if writer.len() >= self.config().pack_size as usize {
                    new_packs.push(self.save_pack(std::mem::take(&mut writer))?);
                }
            }
        }
        if !writer.is_empty() {
            new_packs.push(self.save_pack(writer)?);
        }
        // Every used blob of a repacked pack must now be in a new pack,
        // whatever the pack headers said: else nothing is deleted.
        for id in &plan.repack {
            for (_, f) in &files.live {
                for p in f.packs.iter().filter(|p| p.id == *id) {
                    for b in &p.blobs {
                        let kept_here = used.contains(&b.entry.id)
                            && index.get(&b.entry.id).is_some_and(|l| l.pack == *id);
                        if kept_here && !written.contains(&b.entry.id) {
                            return Err(Error::damaged(
                                FileType::Pack.describe(&id.to_hex()),
                                format!("its header lacks blob {} that the index lists; nothing was deleted (run `litevault check`)", b.entry.id.short()),
                            ));
                        }
                    }
                }
            }
        }
        plan.new_packs = new_packs.len();

        // 2. The new index: every pack that stays, plus the new ones; it
        //    supersedes every index file read above.
        let mut packs: Vec<IndexPack> = Vec::new();
        let mut seen = HashSet::new();
        for (_, f) in &files.live {
            for p in &f.packs {
                if !repack.contains(&p.id) && !drop.contains(&p.id) && seen.insert(p.id) {
                    packs.push(p.clone());
                }
            }
        }
        packs.extend(new_packs);
        let supersedes: Vec<IndexId> = files
            .live
            .iter()
            .map(|(id, _)| *id)
            .chain(files.superseded.iter().copied())
            .collect();
        lock.ensure_held()?;
        self.write_index_split(&supersedes, packs)?;
        lock.ensure_held()?;

        // 3. The old index files, then 4. the old packs.
        for id in &supersedes {
            self.backend().remove(FileType::Index, &id.to_hex())?;
        }
        for id in plan.delete.iter().chain(&plan.repack).chain(&plan.orphans) {
            self.backend().remove(FileType::Pack, &id.to_hex())?;
        }
        Ok(plan)
    }

    /// Writes `packs` as index files of bounded size. Only the last one
    /// lists `supersedes`: until it is stored the old index files stay in
    /// force, so a crash between two of these writes loses no entry.
    fn write_index_split(&self, supersedes: &[IndexId], packs: Vec<IndexPack>) -> Result<()> {
        let mut batches: Vec<Vec<IndexPack>> = vec![Vec::new()];
        let mut entries = 0;
        for p in packs {
            if entries + p.blobs.len() > INDEX_ENTRIES_PER_FILE
                && !batches.last().is_some_and(Vec::is_empty)
            {
                batches.push(Vec::new());
                entries = 0;
            }
            entries += p.blobs.len();
            batches.last_mut().expect("one batch").push(p);
        }
        let last = batches.len() - 1;
        for (i, batch) in batches.into_iter().enumerate() {
            self.save_index(&IndexFile {
                supersedes: if i == last {
                    supersedes.to_vec()
                } else {
                    Vec::new()
                },
                packs: batch,
            })?;
        }
        Ok(())
    }
}
