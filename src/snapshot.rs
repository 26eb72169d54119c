//! Snapshot manifests and the chunk-list tree (SPEC.md, "Snapshots").
//!
//! A manifest is a whole object of type `snapshot` whose payload is JSON
//! ([`Manifest`]). It does not hold the chunk list itself: a 10 GiB database
//! has hundreds of thousands of chunks. The list is stored as **tree blobs**
//! in packs, cut into content-defined pieces, and the manifest names only the
//! root; an unchanged database therefore re-uses every tree blob and adds
//! only its manifest.
//!
//! Tree blob payload (all little-endian):
//!
//! ```text
//! u8       level: 0 = entries are data blobs (chunks), k > 0 = entries are
//!          tree blobs of level k-1
//! u32      n entries
//! n × 40   blob id (32) || u64 bytes of image covered by the entry
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::Reader;
use crate::id::BlobId;

/// Length of one tree entry.
pub const TREE_ENTRY_LEN: usize = 40;
/// Deepest tree accepted from disk.
pub const MAX_TREE_LEVEL: u8 = 8;

/// One entry of a tree blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// A data blob (level 0) or a tree blob of the level below.
    pub id: BlobId,
    /// Bytes of the image this entry covers.
    pub len: u64,
}

/// A decoded tree blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeNode {
    /// 0 for leaves listing data blobs.
    pub level: u8,
    /// Entries in image order.
    pub entries: Vec<TreeEntry>,
}

impl TreeNode {
    /// The tree blob's plaintext.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.entries.len() * TREE_ENTRY_LEN);
        out.push(self.level);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(e.id.as_bytes());
            out.extend_from_slice(&e.len.to_le_bytes());
        }
        out
    }

    /// Decodes a tree blob's plaintext; `object` names it in errors.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let bad = |e: String| Error::damaged(object, format!("tree blob: {e}"));
        let mut r = Reader::new(bytes);
        let level = r.u8().map_err(bad)?;
        if level > MAX_TREE_LEVEL {
            return Err(bad(format!("level {level} exceeds {MAX_TREE_LEVEL}")));
        }
        let n = r.count(TREE_ENTRY_LEN).map_err(bad)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let id = BlobId::from_slice(r.take(32).map_err(bad)?);
            let len = r.u64().map_err(bad)?;
            entries.push(TreeEntry { id, len });
        }
        r.finish().map_err(bad)?;
        Ok(Self { level, entries })
    }
}

/// How the image was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Pages read inside one read transaction.
    Pages,
    /// A `VACUUM INTO` export.
    Vacuum,
}

/// The database a snapshot was taken of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// The database's name (by default its file name).
    pub name: String,
    /// Absolute path at backup time.
    pub path: String,
}

/// Facts about the image, recorded so that a restore can verify it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Export strategy.
    pub strategy: Strategy,
    /// Page size in bytes.
    pub page_size: u32,
    /// Pages in the image.
    pub page_count: u64,
    /// Bytes in the image (`page_size * page_count`).
    pub bytes: u64,
    /// Keyed BLAKE3 of the whole image (same key as blob ids).
    pub hash: BlobId,
    /// Keyed BLAKE3 of the schema (`sqlite_schema` rows in order).
    pub schema_hash: BlobId,
    /// Journal mode of the source (`wal`, `delete`, …).
    pub journal_mode: String,
    /// SQLite library version that read the source.
    pub sqlite_version: String,
    /// The source's `PRAGMA quick_check` result, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick_check: Option<String>,
    /// The header's file change counter (offset 24), used to skip unchanged backups.
    pub change_counter: u32,
}

/// Sizes and timings of the backup that made the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStats {
    /// Chunks in the image.
    pub chunks: u64,
    /// Chunks not already in the repository.
    pub new_chunks: u64,
    /// Plaintext bytes of the new chunks.
    pub new_bytes: u64,
    /// Bytes added to the repository (packs, index, manifest) after
    /// compression and encryption.
    pub added_bytes: u64,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
}

/// The root of a snapshot's chunk list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRoot {
    /// Id of the root tree blob.
    pub id: BlobId,
    /// Its level.
    pub level: u8,
}

/// A snapshot manifest (the JSON payload of a `snapshots/` object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Snapshot time, RFC 3339 UTC.
    pub time: String,
    /// Host the backup ran on.
    pub host: String,
    /// User that ran it.
    pub username: String,
    /// The database.
    pub database: DatabaseInfo,
    /// Tags, sorted and unique.
    pub tags: Vec<String>,
    /// The image.
    pub image: ImageInfo,
    /// The backup's figures.
    pub stats: BackupStats,
    /// The chunk list.
    pub tree: TreeRoot,
}

impl Manifest {
    /// JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialises")
    }

    /// Decodes a payload; `object` names the snapshot in errors.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::damaged(object, format!("manifest: {e}")))?;
        if m.tree.level > MAX_TREE_LEVEL {
            return Err(Error::damaged(
                object,
                format!("tree level {} exceeds {MAX_TREE_LEVEL}", m.tree.level),
            ));
        }
        if u64::from(m.image.page_size).checked_mul(m.image.page_count) != Some(m.image.bytes) {
            return Err(Error::damaged(
                object,
                "image size is not page size times page count",
            ));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn tree_round_trip(level in 0u8..=MAX_TREE_LEVEL, lens in proptest::collection::vec(any::<u64>(), 0..50)) {
            let node = TreeNode {
                level,
                entries: lens.iter().enumerate().map(|(i, l)| TreeEntry { id: BlobId::from_bytes([i as u8; 32]), len: *l }).collect(),
            };
            prop_assert_eq!(TreeNode::decode(&node.encode(), "t").unwrap(), node);
        }

        #[test]
        fn tree_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = TreeNode::decode(&bytes, "t");
        }
    }
}
