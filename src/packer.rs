//! Compressing, sealing and packing new blobs, and indexing the packs.
//!
//! [`seal_blob`] runs on worker threads (compression and encryption in
//! parallel); a single [`Packer`] appends sealed blobs to the open pack,
//! stores each pack once it reaches the configured size, and writes an index
//! file for the stored packs every [`INDEX_EVERY_PACKS`] packs and at the
//! end. Packs are always stored before the index naming them, so an index
//! never points at a missing pack, and an interrupted backup's indexed packs
//! are reused by the next one.

use crate::compression::{self, Compression};
use crate::crypto::MasterKey;
use crate::error::Result;
use crate::id::{BlobId, IndexId};
use crate::index::{IndexFile, IndexPack};
use crate::pack::{BlobType, PackWriter};
use crate::repository::Repository;

/// An index file is written after this many new packs.
pub const INDEX_EVERY_PACKS: usize = 4;

/// A blob ready for a pack.
pub(crate) struct SealedBlob {
    pub ty: BlobType,
    pub id: BlobId,
    pub compression: Compression,
    pub raw_len: usize,
    pub sealed: Vec<u8>,
}

/// Compresses (if it helps) and seals one blob.
pub(crate) fn seal_blob(
    key: &MasterKey,
    ty: BlobType,
    id: BlobId,
    raw: &[u8],
    zstd_level: Option<i32>,
) -> Result<SealedBlob> {
    let (compression, data) = compression::compress(raw, zstd_level);
    let sealed = key.seal(&ty.aad(), &data)?;
    Ok(SealedBlob {
        ty,
        id,
        compression,
        raw_len: raw.len(),
        sealed,
    })
}

/// What the packer stored.
#[derive(Clone, Debug, Default)]
pub(crate) struct PackerStats {
    pub packs: u64,
    pub blobs: u64,
    /// Bytes of packs and index files written.
    pub bytes: u64,
    pub index_files: Vec<IndexId>,
}

/// Collects sealed blobs into packs and packs into index files.
pub(crate) struct Packer<'r> {
    repo: &'r Repository,
    lock: &'r crate::lock::LockGuard,
    pack: PackWriter,
    unindexed: Vec<IndexPack>,
    stats: PackerStats,
}

impl<'r> Packer<'r> {
    pub fn new(repo: &'r Repository, lock: &'r crate::lock::LockGuard) -> Self {
        Self {
            repo,
            lock,
            pack: PackWriter::new(),
            unindexed: Vec::new(),
            stats: PackerStats::default(),
        }
    }

    /// Adds a blob; stores the pack if it reached the target size.
    pub fn add(&mut self, b: &SealedBlob) -> Result<()> {
        self.pack
            .add_sealed(b.ty, b.id, b.compression, b.raw_len, &b.sealed)?;
        self.stats.blobs += 1;
        if self.pack.len() >= self.repo.config().pack_size as usize {
            self.flush_pack()?;
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
            .write(crate::FileType::Pack, &id.to_hex(), &bytes)?;
        self.stats.packs += 1;
        self.stats.bytes += bytes.len() as u64;
        self.unindexed.push(IndexPack { id, blobs });
        if self.unindexed.len() >= INDEX_EVERY_PACKS {
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
        let (id, len) = self.repo.save_index_sized(&file)?;
        self.stats.bytes += len;
        self.stats.index_files.push(id);
        Ok(())
    }

    /// Stores the last pack and the index of every pack not yet indexed.
    pub fn finish(mut self) -> Result<PackerStats> {
        self.flush_pack()?;
        self.flush_index()?;
        Ok(self.stats)
    }
}
