//! Stats: what the repository holds and how much dedup and compression save.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::backend::FileType;
use crate::error::Result;
use crate::id::BlobId;
use crate::index::Index;
use crate::pack::BlobType;
use crate::repository::Repository;
use crate::snapshot::{walk_tree, TreeRoot};

/// Figures for one database.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DatabaseStats {
    /// Database name.
    pub name: String,
    /// Absolute path.
    pub path: String,
    /// Snapshots of it.
    pub snapshots: usize,
    /// Image size of the newest one.
    pub latest_bytes: u64,
    /// Image bytes summed over its snapshots.
    pub total_image_bytes: u64,
    /// Plaintext bytes of the distinct chunks its snapshots reference.
    pub unique_bytes: u64,
}

/// Repository-wide figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Bytes of every file in the repository.
    pub repository_bytes: u64,
    /// Bytes of pack files.
    pub pack_bytes: u64,
    /// Bytes of index files.
    pub index_bytes: u64,
    /// Bytes of snapshot manifests.
    pub snapshot_bytes: u64,
    /// Snapshots.
    pub snapshots: usize,
    /// Image bytes summed over all snapshots (what full copies would take).
    pub total_image_bytes: u64,
    /// Plaintext bytes of the distinct data blobs indexed.
    pub unique_bytes: u64,
    /// Stored (compressed, encrypted) bytes of those blobs.
    pub stored_data_bytes: u64,
    /// total image bytes / unique bytes.
    pub dedup_ratio: f64,
    /// unique bytes / stored data bytes.
    pub compression_ratio: f64,
    /// total image bytes / repository bytes.
    pub overall_ratio: f64,
    /// Per database, by path.
    pub databases: Vec<DatabaseStats>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Repository {
    fn chunk_ids(&self, index: &Index, root: &TreeRoot, out: &mut HashSet<BlobId>) -> Result<u64> {
        let mut bytes = 0u64;
        walk_tree(
            root,
            &mut |id: &BlobId| self.read_tree(index, id),
            &mut |e| {
                if out.insert(e.id) {
                    bytes += e.len;
                }
                Ok(())
            },
        )?;
        Ok(bytes)
    }

    /// Computes the repository's figures.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        for ty in FileType::ALL {
            let size: u64 = self.backend().list(ty)?.iter().map(|f| f.size).sum();
            s.repository_bytes += size;
            match ty {
                FileType::Pack => s.pack_bytes = size,
                FileType::Index => s.index_bytes = size,
                FileType::Snapshot => s.snapshot_bytes = size,
                _ => {}
            }
        }
        let index = self.load_index()?;
        for (_, loc) in index.blobs_of(BlobType::Data) {
            s.unique_bytes += u64::from(loc.blob.entry.raw_len);
            s.stored_data_bytes += u64::from(loc.blob.entry.stored_len);
        }
        let snapshots = self.snapshots()?;
        s.snapshots = snapshots.len();
        let mut per: BTreeMap<String, (DatabaseStats, HashSet<BlobId>)> = BTreeMap::new();
        for (_, m) in &snapshots {
            s.total_image_bytes += m.image.bytes;
            let (d, ids) = per.entry(m.database.path.clone()).or_default();
            d.name.clone_from(&m.database.name);
            d.path.clone_from(&m.database.path);
            d.snapshots += 1;
            d.latest_bytes = m.image.bytes;
            d.total_image_bytes += m.image.bytes;
            d.unique_bytes += self.chunk_ids(&index, &m.tree, ids)?;
        }
        s.databases = per.into_values().map(|(d, _)| d).collect();
        s.dedup_ratio = ratio(s.total_image_bytes, s.unique_bytes);
        s.compression_ratio = ratio(s.unique_bytes, s.stored_data_bytes);
        s.overall_ratio = ratio(s.total_image_bytes, s.repository_bytes);
        Ok(s)
    }
}
