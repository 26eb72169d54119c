//! The in-memory index: the union of the live index files, telling where
//! every blob is.
//!
//! Index files superseded by another live file (left by an interrupted
//! prune) are set aside, not merged. A pack listed by more than one live
//! file is kept once, with the union of the entries; a blob stored twice is
//! found at its first listed place. Memory: one entry per stored blob (its
//! pack-header entry) plus a hash map from blob id to it.

use std::collections::{HashMap, HashSet};

use crate::format::crypto::SealedBy;
use crate::format::index::IndexFile;
use crate::format::pack::{BlobEntry, BlobType, PackedBlob};
use crate::id::{BlobId, IndexId, PackId};

/// Where one blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: PackId,
    /// Who sealed that pack.
    pub sealed_by: SealedBy,
    /// Offset and description within the pack.
    pub blob: PackedBlob,
}

/// What a full key found in a pack: its blobs, and who sealed it.
pub type Found = (Vec<PackedBlob>, SealedBy);

/// One pack as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedPack {
    /// The pack.
    pub id: PackId,
    /// Who sealed it (the first live file listing the pack says).
    pub sealed_by: SealedBy,
    /// True if a file a full key wrote lists it (SPEC.md 21.3); a pack
    /// only write-only keys' files list is taken on their word until a
    /// full key's prune reads its header.
    pub trusted: bool,
    /// Its blobs, as listed (in listing order).
    pub blobs: Vec<PackedBlob>,
}

/// The union of the live index files.
#[derive(Clone, Debug, Default)]
pub struct Index {
    packs: Vec<IndexedPack>,
    pack_pos: HashMap<PackId, u32>,
    blobs: HashMap<BlobId, (u32, u32)>,
    live: Vec<IndexId>,
    superseded: Vec<IndexId>,
}

impl Index {
    /// Builds the index from every index file of a repository, each
    /// written by a full key: files named in another file's `supersedes`
    /// are set aside.
    pub fn from_files(files: Vec<(IndexId, IndexFile)>) -> Self {
        Self::from_files_trusting(files.into_iter().map(|(i, f)| (i, f, true)).collect())
    }

    /// [`Index::from_files`] of files each marked trusted (a full key
    /// wrote it) or not: the trusted ones are added first, so a blob's
    /// place is a full key's word wherever one lists it.
    pub fn from_files_trusting(mut files: Vec<(IndexId, IndexFile, bool)>) -> Self {
        let gone: HashSet<IndexId> = files
            .iter()
            .flat_map(|(_, f, _)| f.supersedes.iter().copied())
            .collect();
        files.sort_by_key(|(_, _, trusted)| !*trusted);
        let mut index = Index::default();
        for (id, f, trusted) in files {
            if gone.contains(&id) {
                index.superseded.push(id);
            } else {
                index.add_file_trusting(id, &f, trusted);
            }
        }
        index.place_blobs();
        index
    }

    /// Adds a live index file a full key wrote (one just written, or one
    /// read).
    pub fn add_file(&mut self, id: IndexId, file: &IndexFile) {
        self.add_file_trusting(id, file, true);
    }

    /// [`Index::add_file`] of a file `trusted` or not.
    pub fn add_file_trusting(&mut self, id: IndexId, file: &IndexFile, trusted: bool) {
        for p in &file.packs {
            let pi = if let Some(&pi) = self.pack_pos.get(&p.id) {
                pi
            } else {
                let pi = self.packs.len() as u32;
                self.packs.push(IndexedPack {
                    id: p.id,
                    sealed_by: p.sealed_by,
                    trusted,
                    blobs: Vec::with_capacity(p.blobs.len()),
                });
                self.pack_pos.insert(p.id, pi);
                pi
            };
            let pack = &mut self.packs[pi as usize];
            if pack.trusted && !trusted {
                // A full key's file already says what this pack holds; a
                // write-only host cannot add to it (it could only lie).
                continue;
            }
            pack.trusted |= trusted;
            let merging = !pack.blobs.is_empty();
            for b in &p.blobs {
                if merging && pack.blobs.contains(b) {
                    continue;
                }
                let bi = pack.blobs.len() as u32;
                pack.blobs.push(*b);
                self.blobs.entry(b.entry.id).or_insert((pi, bi));
            }
        }
        self.live.push(id);
    }

    /// Where a blob is, if indexed.
    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.blobs.get(id).map(|&(pi, bi)| {
            let p = &self.packs[pi as usize];
            BlobLocation {
                pack: p.id,
                sealed_by: p.sealed_by,
                blob: p.blobs[bi as usize],
            }
        })
    }

    /// Where the blob is listed: (pack, blob) positions for
    /// [`Index::at`]; smaller to keep than a [`BlobLocation`].
    pub fn position(&self, id: &BlobId) -> Option<(u32, u32)> {
        self.blobs.get(id).copied()
    }

    /// The pack and blob at positions from [`Index::position`].
    pub fn at(&self, pack: u32, blob: u32) -> (PackId, &PackedBlob) {
        let p = &self.packs[pack as usize];
        (p.id, &p.blobs[blob as usize])
    }

    /// Who sealed the pack at position `pack` (from [`Index::position`]).
    pub fn sealed_by_at(&self, pack: u32) -> SealedBy {
        self.packs[pack as usize].sealed_by
    }

    /// Where the base of the delta blob `entry` is, checked as one link of
    /// its chain: indexed, of the delta's type, one level shallower (so no
    /// walk down such links can loop or outrun the depth bound). `None`
    /// for a full blob; `Some(Err)` says how the link is broken.
    pub fn delta_base(
        &self,
        entry: &BlobEntry,
    ) -> Option<std::result::Result<BlobLocation, String>> {
        let base = entry.base?;
        let Some(loc) = self.get(&base.id) else {
            return Some(Err(format!(
                "blob {} is a delta against {}, which no index lists (the base is missing)",
                entry.id.short(),
                base.id.short()
            )));
        };
        let b = loc.blob.entry;
        let depth = b.base.map_or(0, |x| x.depth);
        if b.ty != entry.ty || depth + 1 != base.depth {
            return Some(Err(format!(
                "blob {}'s base {} is a {:?} blob of depth {depth}, not a {:?} blob of depth {}",
                entry.id.short(),
                base.id.short(),
                b.ty,
                entry.ty,
                base.depth - 1
            )));
        }
        Some(Ok(loc))
    }

    /// True if the blob is indexed.
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    /// True if a pack a full key's index file lists holds the blob: what a
    /// full key's backup deduplicates against (SPEC.md 21.4). Trusted
    /// packs come first, so the blob's place is such a pack if any is.
    pub fn contains_trusted(&self, id: &BlobId) -> bool {
        self.blobs
            .get(id)
            .is_some_and(|&(pi, _)| self.packs[pi as usize].trusted)
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// True if no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// The live index files.
    pub fn files(&self) -> &[IndexId] {
        &self.live
    }

    /// Index files another live file supersedes (left by an interrupted
    /// prune; readers ignore them).
    pub fn superseded(&self) -> &[IndexId] {
        &self.superseded
    }

    /// Every indexed pack, once, in listing order.
    pub fn packs(&self) -> &[IndexedPack] {
        &self.packs
    }

    /// One indexed pack.
    pub fn pack(&self, id: &PackId) -> Option<&IndexedPack> {
        self.pack_pos.get(id).map(|&pi| &self.packs[pi as usize])
    }

    /// The packs only files of write-only keys list.
    pub fn untrusted_packs(&self) -> Vec<PackId> {
        self.packs
            .iter()
            .filter(|p| !p.trusted)
            .map(|p| p.id)
            .collect()
    }

    /// Takes what a full key found in each pack (`blobs`, sealed by `by`)
    /// for what the index files said of it, or, with `None`, forgets a
    /// pack the storage does not hold; then finds every blob's place again
    /// (see [`Index::rank`]).
    pub fn adopt(&mut self, found: Vec<(PackId, Option<Found>)>) {
        let mut gone = HashSet::new();
        for (id, header) in found {
            let Some(&pi) = self.pack_pos.get(&id) else {
                continue;
            };
            match header {
                Some((blobs, by)) => {
                    let pack = &mut self.packs[pi as usize];
                    pack.blobs = blobs;
                    pack.sealed_by = by;
                    pack.trusted = true;
                }
                None => {
                    gone.insert(id);
                }
            }
        }
        self.packs.retain(|p| !gone.contains(&p.id));
        self.pack_pos = self
            .packs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i as u32))
            .collect();
        self.place_blobs();
    }

    /// Finds every blob's place again, by [`Index::rank`] and then in
    /// listing order.
    fn place_blobs(&mut self) {
        self.blobs.clear();
        for rank in 0..3 {
            for (pi, p) in self.packs.iter().enumerate() {
                if Self::rank(p) != rank {
                    continue;
                }
                for (bi, b) in p.blobs.iter().enumerate() {
                    self.blobs
                        .entry(b.entry.id)
                        .or_insert((pi as u32, bi as u32));
                }
            }
        }
    }

    /// Which copy of a blob stored more than once is its place, first
    /// first: a pack a full key sealed and listed, then a session's pack a
    /// full key read and verified (or listed after doing so), then a pack
    /// only write-only keys list.
    fn rank(p: &IndexedPack) -> u8 {
        match (p.trusted, p.sealed_by) {
            (true, SealedBy::Master) => 0,
            (true, SealedBy::Session(_)) => 1,
            (false, _) => 2,
        }
    }

    /// True if `blob` of pack `pack` is the copy the index resolves the
    /// blob to (the others are redundant).
    pub fn is_primary(&self, pack: &PackId, blob: &BlobId) -> bool {
        self.get(blob).is_some_and(|l| l.pack == *pack)
    }

    /// Every distinct blob of a type with its location.
    pub fn blobs_of(&self, ty: BlobType) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        self.blobs.keys().filter_map(move |id| {
            let loc = self.get(id)?;
            (loc.blob.entry.ty == ty).then_some((*id, loc))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::compression::Compression;
    use crate::format::index::IndexPack;
    use crate::format::pack::BlobEntry;

    fn blob(i: u8, offset: u32) -> PackedBlob {
        PackedBlob {
            offset,
            entry: BlobEntry {
                ty: BlobType::Data,
                compression: Compression::None,
                stored_len: 100,
                raw_len: 60,
                id: BlobId::from_bytes([i; 32]),
                base: None,
            },
        }
    }

    fn file(supersedes: Vec<IndexId>, packs: Vec<(u8, Vec<PackedBlob>)>) -> IndexFile {
        IndexFile {
            supersedes,
            packs: packs
                .into_iter()
                .map(|(p, blobs)| IndexPack {
                    id: PackId::from_bytes([p; 32]),
                    sealed_by: SealedBy::Master,
                    blobs,
                })
                .collect(),
        }
    }

    #[test]
    fn superseded_files_are_set_aside_and_duplicates_resolve_to_the_first() {
        let a = IndexId::from_bytes([1; 32]);
        let b = IndexId::from_bytes([2; 32]);
        let c = IndexId::from_bytes([3; 32]);
        let index = Index::from_files(vec![
            (a, file(vec![], vec![(10, vec![blob(1, 6), blob(2, 106)])])),
            (b, file(vec![a], vec![(11, vec![blob(1, 6)])])),
            (c, file(vec![], vec![(12, vec![blob(1, 6), blob(3, 106)])])),
        ]);
        assert_eq!(index.superseded(), &[a]);
        assert_eq!(index.files(), &[b, c]);
        assert_eq!(index.len(), 2);
        assert_eq!(
            index.get(&BlobId::from_bytes([1; 32])).unwrap().pack,
            PackId::from_bytes([11; 32])
        );
        assert!(!index.is_primary(&PackId::from_bytes([12; 32]), &BlobId::from_bytes([1; 32])));
        assert_eq!(index.packs().len(), 2);
    }

    #[test]
    fn a_pack_listed_twice_is_merged() {
        let a = IndexId::from_bytes([1; 32]);
        let b = IndexId::from_bytes([2; 32]);
        let index = Index::from_files(vec![
            (a, file(vec![], vec![(10, vec![blob(1, 6)])])),
            (b, file(vec![], vec![(10, vec![blob(1, 6), blob(2, 106)])])),
        ]);
        assert_eq!(index.packs().len(), 1);
        assert_eq!(index.packs()[0].blobs.len(), 2);
        assert_eq!(index.len(), 2);
    }
}
