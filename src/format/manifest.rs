//! Snapshot manifests (SPEC.md, "Snapshots").
//!
//! A manifest is a whole object of type `snapshot` whose payload is JSON
//! ([`Manifest`]): when and where the backup ran, the database, its tags,
//! facts about the image a restore verifies (page size and count, keyed
//! hash, journal mode), the backup's figures, and the root of the chunk-list
//! tree ([`crate::format::tree`]). Decoding checks what a reader relies on:
//! an RFC 3339 time, a bounded tree level, and size = page size x count.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::tree::{TreeRoot, MAX_TREE_LEVEL};
use crate::id::BlobId;

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
    /// The file's permission bits at backup time (a restore to a new path
    /// gives the file these); absent in snapshots of litevault before it
    /// recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
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
    /// Freelist leaf pages stored as zeros (they held only deleted data).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub zeroed_free_pages: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// The snapshot time (the Unix epoch if the manifest's is unparsable).
    pub fn timestamp(&self) -> jiff::Timestamp {
        self.time.parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialises")
    }

    /// Decodes a payload; `object` names the snapshot in errors.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::damaged(object, format!("manifest: {e}")))?;
        if m.time.parse::<jiff::Timestamp>().is_err() {
            return Err(Error::damaged(
                object,
                format!("time {:?} is not RFC 3339", m.time),
            ));
        }
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
