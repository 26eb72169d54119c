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
    /// The database's name (by default its file name, escaped as
    /// [`crate::sys::escape_path`] writes it).
    pub name: String,
    /// Absolute path at backup time; for a path that is not valid UTF-8,
    /// with each invalid byte as U+FFFD (the exact bytes are `path_bytes`).
    pub path: String,
    /// The path's exact bytes in hex, only when they are not valid UTF-8
    /// (SPEC.md 9.1); readers use them, not `path`, to tell databases
    /// apart and to find the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<String>,
    /// The file's permission bits at backup time (a restore to a new path
    /// gives the file these); absent in snapshots of litevault before it
    /// recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

impl DatabaseInfo {
    /// The record of a database at `path` (its exact bytes kept), named
    /// `name` or, by default, its escaped file name.
    pub fn new(path: &std::path::Path, name: Option<String>, mode: Option<u32>) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        let utf8 = std::str::from_utf8(bytes).is_ok();
        let name = name.unwrap_or_else(|| {
            path.file_name().map_or_else(
                || "database".into(),
                |n| crate::sys::escape_path(n.as_bytes()),
            )
        });
        Self {
            name,
            path: path.to_string_lossy().into_owned(),
            path_bytes: (!utf8).then(|| hex::encode(bytes)),
            mode,
        }
    }

    /// The path's exact bytes.
    pub fn key(&self) -> DbPath {
        DbPath(
            self.path_bytes
                .as_deref()
                .and_then(|h| hex::decode(h).ok())
                .unwrap_or_else(|| self.path.as_bytes().to_vec()),
        )
    }

    /// The path, exactly as it was.
    pub fn os_path(&self) -> std::path::PathBuf {
        use std::os::unix::ffi::OsStringExt;
        std::ffi::OsString::from_vec(self.key().0).into()
    }

    /// The path as text that names it exactly ([`crate::sys::escape_path`]).
    pub fn shown_path(&self) -> String {
        self.key().to_string()
    }
}

/// True if `path` is `ending` or ends with `/` and `ending`: `ending` is
/// its last components (`app/app.db` ends `/srv/app/app.db`, not
/// `/srv/myapp/app.db`).
pub fn ends_with_components(path: &str, ending: &str) -> bool {
    path == ending
        || path
            .strip_suffix(ending)
            .is_some_and(|head| head.ends_with('/'))
}

/// A database path's exact bytes: what tells databases apart (groups,
/// retention, the previous version of a backup). Shown, and serialised,
/// escaped ([`crate::sys::escape_path`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DbPath(pub Vec<u8>);

impl DbPath {
    /// The exact bytes of `path`.
    pub fn of(path: &std::path::Path) -> Self {
        use std::os::unix::ffi::OsStrExt;
        Self(path.as_os_str().as_bytes().to_vec())
    }
}

impl std::fmt::Display for DbPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::sys::escape_path(&self.0))
    }
}

impl Serialize for DbPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DbPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::sys::unescape_path(&s)
            .map(DbPath)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an escaped path")))
    }
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
    /// What `stat` said of the database file and its WAL throughout the
    /// read, when that can later show the file was not written since
    /// (SPEC.md 9.1, "Unchanged files"); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileStamp>,
}

/// `stat` of one file: what a write, a rename over it or a copy onto it
/// changes. Times are nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last modification.
    pub mtime_ns: i64,
    /// Last status change (set by the kernel on every write, rename or
    /// `chmod`; no call sets it to a chosen value).
    pub ctime_ns: i64,
}

impl FileStat {
    /// The later of the two times.
    pub fn latest_ns(&self) -> i64 {
        self.mtime_ns.max(self.ctime_ns)
    }
}

/// A database file and its WAL as `stat` saw them while a backup read the
/// image, with free pages stored as zeros (the default). A later backup
/// that sees the same stamp, under the same path, needs not read the image
/// again: nothing wrote either file since.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// The database file.
    pub db: FileStat,
    /// Its `-wal` file, absent when there is none or it is empty (an
    /// empty WAL adds nothing to the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<FileStat>,
}

impl FileStamp {
    /// How long before a stamp is taken the files must have been last
    /// written for the stamp to be kept: the coarsest timestamp of a
    /// common filesystem (FAT: 2 s) and more than a kernel tick, so that
    /// a write in the same tick as a later one cannot hide it.
    pub const SETTLED_NS: i64 = 2_000_000_000;

    /// True if both files were last written at least
    /// [`Self::SETTLED_NS`] before `at_ns`.
    pub fn settled(&self, at_ns: i64) -> bool {
        let latest = self.wal.map_or(self.db.latest_ns(), |w| {
            w.latest_ns().max(self.db.latest_ns())
        });
        latest.saturating_add(Self::SETTLED_NS) <= at_ns
    }
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
    /// Where this snapshot stands in a stream of captured changes
    /// (format 3, SPEC.md 20): the changes that follow it; absent for a
    /// snapshot of no stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous: Option<Continuous>,
}

/// A snapshot's place in a stream of change objects (SPEC.md 20.4): its
/// image is the database after the commits of change objects `1..=seq`
/// (or after a gap those did not cover, bridged by this snapshot), and the
/// change object `seq + 1` continues from it, starting from `digest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Continuous {
    /// The stream, 64 hex digits.
    pub stream: String,
    /// The last change object whose commits the image holds (0: none).
    pub seq: u64,
    /// The stream's digest after them, from which object `seq + 1` goes
    /// on, 64 hex digits.
    pub digest: String,
    /// `bridge` (the first snapshot of a stream, or one after a gap) or
    /// `fold` (the stream's changes made into a snapshot).
    pub kind: ContinuousKind,
    /// Why the stream had a gap this snapshot bridges, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<String>,
    /// The WAL position the image corresponds to.
    pub wal: WalPosition,
    /// The moment the image holds, in nanoseconds since the Unix epoch: a
    /// bridge's read began then; a fold holds the commits read up to then.
    pub time_ns: i64,
}

/// How a snapshot of a stream was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContinuousKind {
    /// Read from the database at the stream's start or after a gap.
    Bridge,
    /// Made while the stream ran, so that its changes can be forgotten.
    Fold,
}

/// A WAL position, as a manifest records it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalPosition {
    /// The generation's salts.
    pub salts: [u32; 2],
    /// Frames of that generation the image holds.
    pub frames: u64,
    /// The checksum of the last of them (the WAL header's when none).
    pub checksum: [u32; 2],
}

impl Continuous {
    /// The stream's id.
    pub fn stream_id(&self) -> Option<[u8; 32]> {
        hex::decode(&self.stream).ok()?.try_into().ok()
    }

    /// The digest object `seq + 1` starts from.
    pub fn digest_bytes(&self) -> Option<[u8; 32]> {
        hex::decode(&self.digest).ok()?.try_into().ok()
    }
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
        if let Some(c) = &m.continuous {
            if c.stream_id().is_none() || c.digest_bytes().is_none() {
                return Err(Error::damaged(
                    object,
                    "continuous.stream and continuous.digest must be 64 hex digits",
                ));
            }
        }
        if let Some(h) = &m.database.path_bytes {
            match hex::decode(h) {
                Ok(b) if std::str::from_utf8(&b).is_err() => {}
                _ => {
                    return Err(Error::damaged(
                        object,
                        "database.path_bytes is not the hex of a path that is not UTF-8",
                    ))
                }
            }
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

#[cfg(test)]
mod tests {
    use super::{FileStamp, FileStat};

    fn stat(mtime_ns: i64, ctime_ns: i64) -> FileStat {
        FileStat {
            dev: 1,
            ino: 2,
            size: 4096,
            mtime_ns,
            ctime_ns,
        }
    }

    #[test]
    fn a_stamp_is_settled_only_two_seconds_after_the_last_write_to_either_file() {
        let s = 1_000_000_000_000;
        let db_only = FileStamp {
            db: stat(s, s),
            wal: None,
        };
        assert!(!db_only.settled(s + FileStamp::SETTLED_NS - 1));
        assert!(db_only.settled(s + FileStamp::SETTLED_NS));
        // ctime later than mtime (a touch putting mtime back) counts.
        let touched = FileStamp {
            db: stat(s, s + 5),
            wal: None,
        };
        assert!(!touched.settled(s + FileStamp::SETTLED_NS));
        let wal_later = FileStamp {
            db: stat(s, s),
            wal: Some(stat(s + 10, s + 10)),
        };
        assert!(!wal_later.settled(s + FileStamp::SETTLED_NS));
        assert!(wal_later.settled(s + 10 + FileStamp::SETTLED_NS));
        // Far-future times do not overflow.
        let future = FileStamp {
            db: stat(i64::MAX, i64::MAX),
            wal: None,
        };
        assert!(!future.settled(i64::MAX - 1));
    }

    #[test]
    fn a_stamp_keeps_its_json_form() {
        let stamp = FileStamp {
            db: stat(7, 8),
            wal: None,
        };
        let json = serde_json::to_string(&stamp).unwrap();
        assert_eq!(
            json,
            r#"{"db":{"dev":1,"ino":2,"size":4096,"mtime_ns":7,"ctime_ns":8}}"#
        );
        assert_eq!(serde_json::from_str::<FileStamp>(&json).unwrap(), stamp);
    }
}
