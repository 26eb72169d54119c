//! Stats: what the repository holds and how much dedup and compression save.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::backend::cache::CacheInfo;
use crate::backend::{FileType, IoStats};
use crate::error::Result;
use crate::format::manifest::DbPath;
use crate::format::pack::BlobType;
use crate::id::BlobId;
use crate::repo::Repository;

/// Figures for one database.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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
    /// The local cache of a remote repository, when one is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheInfo>,
    /// Requests made to the storage and bytes moved, from opening the
    /// repository to the end of this command (lock released).
    #[serde(default)]
    pub io: IoStats,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Computes the repository's figures.
pub fn stats(repo: &Repository) -> Result<Stats> {
    repo.require_full_key("stats")?;
    let mut s = Stats::default();
    for ty in FileType::ALL {
        let size: u64 = repo.backend().list(ty)?.iter().map(|f| f.size).sum();
        s.repository_bytes += size;
        match ty {
            FileType::Pack => s.pack_bytes = size,
            FileType::Index => s.index_bytes = size,
            FileType::Snapshot => s.snapshot_bytes = size,
            _ => {}
        }
    }
    let index = repo.index()?;
    for (_, loc) in index.blobs_of(BlobType::Data) {
        s.unique_bytes += u64::from(loc.blob.entry.raw_len);
        s.stored_data_bytes += u64::from(loc.blob.entry.stored_len);
    }
    let snapshots = repo.snapshots()?;
    s.snapshots = snapshots.len();
    let mut per: BTreeMap<DbPath, (DatabaseStats, HashSet<BlobId>)> = BTreeMap::new();
    for (_, m) in &snapshots {
        s.total_image_bytes += m.image.bytes;
        let (d, ids) = per.entry(m.database.key()).or_default();
        d.name.clone_from(&m.database.name);
        d.path = m.database.shown_path();
        d.snapshots += 1;
        d.latest_bytes = m.image.bytes;
        d.total_image_bytes += m.image.bytes;
        repo.walk_chunks(m, None, &mut |e| {
            if ids.insert(e.id) {
                d.unique_bytes += e.len;
            }
            Ok(())
        })?;
    }
    s.databases = per.into_values().map(|(d, _)| d).collect();
    s.cache = repo.cache_info();
    s.io = repo.io_stats();
    s.dedup_ratio = ratio(s.total_image_bytes, s.unique_bytes);
    s.compression_ratio = ratio(s.unique_bytes, s.stored_data_bytes);
    s.overall_ratio = ratio(s.total_image_bytes, s.repository_bytes);
    Ok(s)
}
