//! The one packer: compressing and sealing new blobs, collecting them into
//! packs, storing each pack, and indexing the packs (backup, prune's
//! repack, copy).
//!
//! [`seal_blob`] (`format::pack`) runs on worker threads (compression and
//! encryption in parallel); a single [`Packer`] appends sealed blobs to the open pack and
//! stores it once it reaches the repository's pack size. In
//! [`IndexMode::Every`] it writes an index file for the stored packs every
//! few packs and at the end; in [`IndexMode::Caller`] it hands the packs to
//! its caller (prune writes one index superseding the old ones). Packs are
//! always stored before the index naming them, so an index never points at
//! a missing pack, and an interrupted backup's indexed packs are reused by
//! the next one.
//!
//! Tree blobs are held back and stored together after the data blobs (in
//! the last pack, or whenever they reach the pack size), so a snapshot's
//! tree lies in a few spans that a reader fetches with a few range reads,
//! not one read per node between the data it describes. Memory: one open
//! pack and the held tree blobs, each at most the pack size.

use super::lock::LockGuard;
use super::repository::Repository;
use crate::backend::FileType;
use crate::error::Result;
use crate::format::compression::Compression;
use crate::format::index::{IndexFile, IndexPack};
pub use crate::format::pack::{seal_blob, seal_blob_against, SealedBlob};
use crate::format::pack::{BlobType, DeltaBase, PackWriter};
use crate::id::{BlobId, IndexId, PackId};

/// An index file is written after this many new packs in
/// [`IndexMode::Every`].
pub const INDEX_EVERY_PACKS: usize = 4;

/// Who writes the index of the packs a [`Packer`] stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexMode {
    /// The packer: an index file every [`INDEX_EVERY_PACKS`] packs and at
    /// the end.
    Every,
    /// The caller, from [`PackerStats::unindexed`].
    Caller,
}

/// What the packer stored.
#[derive(Clone, Debug, Default)]
pub struct PackerStats {
    /// Packs stored.
    pub packs: u64,
    /// Blobs stored.
    pub blobs: u64,
    /// Bytes of packs and index files written.
    pub bytes: u64,
    /// Index files written.
    pub index_files: Vec<IndexId>,
    /// Packs written.
    pub pack_ids: Vec<PackId>,
    /// Packs stored but not indexed ([`IndexMode::Caller`]).
    pub unindexed: Vec<IndexPack>,
}

/// Collects sealed blobs into packs and packs into index files.
pub struct Packer<'r> {
    repo: &'r Repository,
    lock: &'r LockGuard,
    mode: IndexMode,
    pack: PackWriter,
    /// Tree blobs held back (see the module docs), and their bytes.
    trees: Vec<(Meta, Vec<u8>)>,
    trees_len: usize,
    unindexed: Vec<IndexPack>,
    stats: PackerStats,
}

/// What a pack header says of a blob, beside its sealed envelope.
#[derive(Clone, Copy)]
struct Meta {
    ty: BlobType,
    id: BlobId,
    compression: Compression,
    raw_len: usize,
    base: Option<DeltaBase>,
}
impl<'r> Packer<'r> {
    /// A packer writing into `repo` while `lock` is held.
    pub fn new(repo: &'r Repository, lock: &'r LockGuard, mode: IndexMode) -> Self {
        Self {
            repo,
            lock,
            mode,
            pack: PackWriter::new(),
            trees: Vec::new(),
            trees_len: 0,
            unindexed: Vec::new(),
            stats: PackerStats::default(),
        }
    }

    /// Adds a sealed blob; stores the pack if it reached the target size.
    pub fn add(&mut self, b: &SealedBlob) -> Result<()> {
        self.add_sealed(b.ty, b.id, b.compression, b.raw_len, b.base, &b.sealed)
    }

    /// Adds an envelope sealed elsewhere (a worker's, or one copied from
    /// another pack unchanged).
    pub fn add_sealed(
        &mut self,
        ty: BlobType,
        id: BlobId,
        compression: Compression,
        raw_len: usize,
        base: Option<DeltaBase>,
        sealed: &[u8],
    ) -> Result<()> {
        let meta = Meta {
            ty,
            id,
            compression,
            raw_len,
            base,
        };
        if ty == BlobType::Tree {
            self.trees_len += sealed.len();
            self.trees.push((meta, sealed.to_vec()));
            if self.trees_len >= self.repo.config().pack_size as usize {
                self.pack_trees()?;
            }
            return Ok(());
        }
        self.pack_blob(meta, sealed)
    }

    fn pack_blob(&mut self, m: Meta, sealed: &[u8]) -> Result<()> {
        self.pack
            .add_sealed(m.ty, m.id, m.compression, m.raw_len, m.base, sealed)?;
        self.stats.blobs += 1;
        if self.pack.len() >= self.repo.config().pack_size as usize {
            self.flush_pack()?;
        }
        Ok(())
    }

    /// Packs the held tree blobs, side by side.
    fn pack_trees(&mut self) -> Result<()> {
        self.trees_len = 0;
        for (meta, sealed) in std::mem::take(&mut self.trees) {
            self.pack_blob(meta, &sealed)?;
        }
        Ok(())
    }

    fn flush_pack(&mut self) -> Result<()> {
        if self.pack.is_empty() {
            return Ok(());
        }
        let pack = std::mem::take(&mut self.pack);
        let (id, bytes, blobs) = pack.finish(self.repo.key())?;
        self.repo
            .backend()
            .write(FileType::Pack, &id.to_hex(), &bytes)?;
        // Tree and delta blobs are what the next backup reads back (a
        // write-only key reads nothing back).
        if let Some(cache) = self
            .repo
            .blob_cache()
            .filter(|_| !self.repo.key().is_write_only())
        {
            for b in blobs
                .iter()
                .filter(|b| b.entry.ty == BlobType::Tree || b.entry.base.is_some())
            {
                let at = b.offset as usize;
                cache.put(&b.entry.id, &bytes[at..at + b.entry.stored_len as usize]);
            }
        }
        self.stats.packs += 1;
        self.stats.pack_ids.push(id);
        self.stats.bytes += bytes.len() as u64;
        self.unindexed.push(IndexPack {
            id,
            sealed_by: self.repo.key().sealed_by(),
            blobs,
        });
        if self.mode == IndexMode::Every && self.unindexed.len() >= INDEX_EVERY_PACKS {
            self.flush_index()?;
        }
        Ok(())
    }

    fn flush_index(&mut self) -> Result<()> {
        if self.unindexed.is_empty() {
            return Ok(());
        }
        // An index may only name packs a prune cannot have taken for orphans.
        self.lock.ensure_held()?;
        let file = IndexFile {
            supersedes: Vec::new(),
            packs: std::mem::take(&mut self.unindexed),
        };
        let (id, len) = self.repo.save_index(file)?;
        self.stats.bytes += len;
        self.stats.index_files.push(id);
        Ok(())
    }

    /// Stores the last pack and, in [`IndexMode::Every`], the index of
    /// every pack not yet indexed.
    pub fn finish(mut self) -> Result<PackerStats> {
        self.pack_trees()?;
        self.flush_pack()?;
        match self.mode {
            IndexMode::Every => self.flush_index()?,
            IndexMode::Caller => self.stats.unindexed = std::mem::take(&mut self.unindexed),
        }
        if self.stats.packs > 0 {
            if let Some(cache) = self.repo.blob_cache() {
                cache.trim(super::blob_cache::LIMIT);
            }
        }
        Ok(self.stats)
    }
}
