//! What a capture keeps on the machine for each stream (SPEC.md 20.5):
//! where the stream stands, and a spool of the sealed objects it made.
//!
//! `<state dir>/<repository id>/<key of the database>.json` (mode 0600,
//! replaced by rename) records the stream, the last object sealed and the
//! last one stored, with the digest and WAL position after each; the
//! directory beside it (`.spool/`, mode 0700) holds sealed objects not yet
//! stored, and those a bundle still needs. They are encrypted already: the
//! spool holds nothing a repository would not. A process killed at any
//! moment finds on its next start what it sealed, stores what the
//! repository lacks, and goes on from the last commit it sealed.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::change::{Digest, StreamId, WalMark};

/// A WAL position as the state file holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkJson {
    /// Salts of the generation.
    pub salts: [u32; 2],
    /// Its checkpoint sequence.
    pub checkpoint_seq: u32,
    /// Frames read.
    pub frames: u64,
    /// Checksum after them.
    pub checksum: [u32; 2],
}

impl From<WalMark> for MarkJson {
    fn from(m: WalMark) -> Self {
        Self {
            salts: [m.salts.0, m.salts.1],
            checkpoint_seq: m.checkpoint_seq,
            frames: m.frames,
            checksum: [m.checksum.0, m.checksum.1],
        }
    }
}

impl From<MarkJson> for WalMark {
    fn from(m: MarkJson) -> Self {
        Self {
            salts: (m.salts[0], m.salts[1]),
            checkpoint_seq: m.checkpoint_seq,
            frames: m.frames,
            checksum: (m.checksum[0], m.checksum[1]),
        }
    }
}

/// A point of a stream: an object's sequence number, the digest after it
/// and the WAL position after its last commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// Sequence number (0: before the first object).
    pub seq: u64,
    /// Digest after it, 64 hex digits.
    pub digest: String,
    /// WAL position after its last commit (or the snapshot's).
    pub mark: Option<MarkJson>,
    /// When its last commit was read (ns since the Unix epoch).
    pub time_ns: i64,
}

impl Point {
    /// The digest's bytes.
    pub fn digest_bytes(&self) -> Option<Digest> {
        hex::decode(&self.digest).ok()?.try_into().ok()
    }
}

/// The state file of one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamState {
    /// Version of this file's layout.
    pub version: u32,
    /// The stream, 64 hex digits.
    pub stream: String,
    /// The database, as listings show its path.
    pub database: String,
    /// The last object sealed (stored or in the spool).
    pub sealed: Point,
    /// The last object the repository is known to hold.
    pub stored: u64,
    /// A snapshot of the stream holds its start (or the last gap's end).
    pub bridged: bool,
}

impl StreamState {
    /// The stream's id.
    pub fn stream_id(&self) -> Option<StreamId> {
        hex::decode(&self.stream).ok()?.try_into().ok()
    }
}

/// Where one stream's state lives.
#[derive(Clone, Debug)]
pub struct StatePaths {
    /// The state file.
    pub file: PathBuf,
    /// The spool directory.
    pub spool: PathBuf,
}

impl StatePaths {
    /// The paths for the database at `db` (its exact bytes) in the
    /// repository with id `repo_id`.
    pub fn new(state_dir: &Path, repo_id: &str, db: &Path) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let key = blake3::hash(db.as_os_str().as_bytes()).to_hex();
        let dir = state_dir.join(repo_id);
        Self {
            file: dir.join(format!("{}.json", &key[..32])),
            spool: dir.join(format!("{}.spool", &key[..32])),
        }
    }

    /// Creates the directories, mode 0700.
    pub fn create(&self) -> Result<()> {
        for d in [self.file.parent().expect("a parent"), &self.spool] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(|e| Error::io("creating", d, e))?;
        }
        Ok(())
    }

    /// The state, if there is a readable one.
    pub fn load(&self) -> Option<StreamState> {
        let bytes = crate::sys::read_file_limited(&self.file, 1 << 20).ok()?;
        let s: StreamState = serde_json::from_slice(&bytes).ok()?;
        (s.version == 1 && s.stream_id().is_some()).then_some(s)
    }

    /// Replaces the state file (a new file renamed over it).
    pub fn save(&self, s: &StreamState) -> Result<()> {
        replace_private(
            &self.file,
            &serde_json::to_vec_pretty(s).expect("state serialises"),
        )
    }

    /// Removes the state and the spool: the stream starts over.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir_all(&self.spool);
    }

    fn spooled(&self, level: u8, first: u64) -> PathBuf {
        self.spool.join(format!("{level}-{first:020}"))
    }

    /// Keeps an object's bytes in the spool.
    pub fn spool(&self, level: u8, first: u64, bytes: &[u8]) -> Result<()> {
        replace_private(&self.spooled(level, first), bytes)
    }

    /// An object's bytes from the spool.
    pub fn spooled_bytes(&self, level: u8, first: u64) -> Option<Vec<u8>> {
        std::fs::read(self.spooled(level, first)).ok()
    }

    /// Drops an object from the spool.
    pub fn unspool(&self, level: u8, first: u64) {
        let _ = std::fs::remove_file(self.spooled(level, first));
    }

    /// The spooled objects, as (level, first), in order.
    pub fn spooled_objects(&self) -> Vec<(u8, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.spool) else {
            return Vec::new();
        };
        let mut out: Vec<(u8, u64)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (l, f) = name.split_once('-')?;
                Some((l.parse().ok()?, f.parse().ok()?))
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Bytes in the spool.
    pub fn spool_bytes(&self) -> u64 {
        std::fs::read_dir(&self.spool).map_or(0, |d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
    }
}

/// Writes `bytes` to a new private file (mode 0600) renamed over `path`.
fn replace_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| Error::io("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_spool_survive_a_new_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = StatePaths::new(dir.path(), "abcd", Path::new("/srv/app.db"));
        p.create().unwrap();
        assert!(p.load().is_none());
        let s = StreamState {
            version: 1,
            stream: "11".repeat(32),
            database: "/srv/app.db".into(),
            sealed: Point {
                seq: 3,
                digest: "22".repeat(32),
                mark: Some(MarkJson::default()),
                time_ns: 5,
            },
            stored: 2,
            bridged: true,
        };
        p.save(&s).unwrap();
        assert_eq!(p.load().unwrap(), s);
        p.spool(0, 3, b"three").unwrap();
        p.spool(1, 1, b"bundle").unwrap();
        assert_eq!(p.spooled_objects(), vec![(0, 3), (1, 1)]);
        assert_eq!(p.spooled_bytes(0, 3).unwrap(), b"three");
        assert_eq!(p.spool_bytes(), 11);
        p.unspool(0, 3);
        assert_eq!(p.spooled_objects(), vec![(1, 1)]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p.file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        // Another database, another file.
        let q = StatePaths::new(dir.path(), "abcd", Path::new("/srv/other.db"));
        assert_ne!(p.file, q.file);
        p.clear();
        assert!(p.load().is_none() && p.spooled_objects().is_empty());
    }
}
