//! What SQLite's wal-index (the `-shm` file) says of the WAL, read without
//! a lock (sqlite.org/walformat.html, "The WAL-Index Header" and "The
//! Checkpoint Information"): the last valid frame, the generation's
//! salts, and how far checkpoints copied or tried to.
//!
//! Two uses. Aligning a page-image snapshot with the WAL: a read
//! transaction sees exactly the frames up to `mx_frame` as it was when the
//! transaction began, so reading the header before and after `BEGIN` and
//! finding it unchanged names the frame the snapshot ends at. And telling
//! whether the database file still holds a page's version from before a
//! commit: no checkpoint copies a frame beyond `n_backfill_attempted`.
//!
//! SQLite writes the header twice (copies at offsets 0 and 48) and readers
//! trust it only when both copies agree; so does this one. The header's
//! words are in the machine's byte order, except the salts, copied as the
//! WAL holds them (big-endian).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The wal-index header and checkpoint information, as capture needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalIndex {
    /// Frames of the current generation that are valid (committed).
    pub mx_frame: u32,
    /// The database's size in pages after the last commit.
    pub n_page: u32,
    /// The checksum of the last valid frame.
    pub frame_checksum: (u32, u32),
    /// The generation's salts.
    pub salts: (u32, u32),
    /// Frames a checkpoint copied into the database file.
    pub n_backfill: u32,
    /// The last frame a checkpoint began to copy (it may have written that
    /// frame's page, or any before it, into the database file already).
    pub n_backfill_attempted: u32,
}

/// Reads the wal-index of the `-shm` file open as `f`; `None` when the two
/// header copies disagree (a writer is updating it: read again) or the
/// file is too short or not initialised.
pub fn read(f: &File) -> Option<WalIndex> {
    let mut b = [0u8; 136];
    f.read_exact_at(&mut b, 0).ok()?;
    if b[..48] != b[48..96] || b[12] == 0 {
        return None;
    }
    let u = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let be = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    Some(WalIndex {
        mx_frame: u(16),
        n_page: u(20),
        frame_checksum: (u(24), u(28)),
        salts: (be(32), be(36)),
        n_backfill: u(96),
        n_backfill_attempted: u(128),
    })
}

/// Reads until two reads agree (a writer changes it in place), at most a
/// few times.
pub fn read_stable(f: &File) -> Option<WalIndex> {
    for _ in 0..64 {
        let (a, b) = (read(f), read(f));
        if a.is_some() && a == b {
            return a;
        }
        std::thread::yield_now();
    }
    None
}

/// Opens the `-shm` of the database at `db` for reading. The descriptor
/// must outlive every SQLite connection this process has to the database:
/// closing it would drop the locks SQLite holds on that file.
pub fn open(db: &Path) -> std::io::Result<File> {
    File::open(crate::sys::with_suffix(db, "-shm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_follows_commits_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x);")
            .unwrap();
        let shm = open(&db).unwrap();
        let before = read_stable(&shm).unwrap();
        c.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let after = read_stable(&shm).unwrap();
        assert!(after.mx_frame > before.mx_frame);
        assert_eq!(after.salts, before.salts);
        // The WAL's own header has the salts, and its last frame the
        // checksum, the index names.
        let wal = std::fs::read(dir.path().join("a.db-wal")).unwrap();
        let h = crate::format::wal::WalHeader::parse(&wal).unwrap();
        assert_eq!(h.salts, after.salts);
        let last = h.frame_offset(u64::from(after.mx_frame) - 1) as usize;
        let be = |i: usize| u32::from_be_bytes(wal[last + i..last + i + 4].try_into().unwrap());
        assert_eq!((be(16), be(20)), after.frame_checksum);
        assert_eq!(after.n_backfill_attempted, 0);
        c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").unwrap();
        let done = read_stable(&shm).unwrap();
        assert_eq!(done.n_backfill, after.mx_frame);
        assert_eq!(done.n_backfill_attempted, after.mx_frame);
    }
}
