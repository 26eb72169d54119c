//! Waking when a database's files change: an inotify watch of the
//! directory that holds it (its `-wal` is made, written, deleted there),
//! so capture reads a commit moments after it is written, not at the next
//! tick. Where inotify is not available (a filesystem that does not report
//! changes, a limit reached), waiting is a plain timeout: capture polls.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// A watch of one directory (no descriptor inside: polling), and what its
/// events told of the database's `-wal` file.
///
/// The events also catch what a poll cannot see: a `-wal` file made,
/// written and removed between two polls (an application whose last
/// connection closes after each write checkpoints and deletes the WAL,
/// and the next one starts a new WAL with random salts, so nothing in the
/// files tells that one came and went). Every written `-wal` file the
/// events see removed must be one the tail read to its end
/// ([`Watch::missed`]).
pub struct Watch {
    fd: Option<OwnedFd>,
    /// The `-wal` file's name in the directory.
    wal_name: Vec<u8>,
    /// The `-wal` file there now was written since it was made.
    written: bool,
    /// Written `-wal` files the events saw removed, less those the tail
    /// saw end.
    unmatched: i64,
    /// The kernel dropped events: what happened is unknown.
    overflowed: bool,
}

impl Watch {
    /// Watches the directory of `db` for writes, creations, deletions and
    /// renames.
    pub fn new(db: &Path) -> Self {
        let dir = match db.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let wal = crate::sys::with_suffix(db, "-wal");
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok();
        let fd = fd.filter(|fd| {
            inotify::add_watch(
                fd,
                dir,
                WatchFlags::MODIFY
                    | WatchFlags::CREATE
                    | WatchFlags::DELETE
                    | WatchFlags::MOVED_TO
                    | WatchFlags::MOVED_FROM
                    | WatchFlags::CLOSE_WRITE,
            )
            .is_ok()
        });
        Self {
            fd,
            wal_name: wal
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_default(),
            // Read after the watch began: a write since shows as an event.
            written: std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0),
            unmatched: 0,
            overflowed: false,
        }
    }

    /// True if changes wake the waiter (else it polls).
    pub fn is_watching(&self) -> bool {
        self.fd.is_some()
    }

    /// Waits until something in the directory changed, or `timeout`
    /// passed; then takes every event waiting.
    pub fn wait(&mut self, timeout: Duration) {
        let Some(fd) = &self.fd else {
            std::thread::sleep(timeout);
            return;
        };
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        if rustix::event::poll(&mut fds, Some(&ts)).is_ok_and(|n| n > 0) {
            self.take_events();
        }
    }

    /// Takes every event waiting, without waiting.
    pub fn take_events(&mut self) {
        let Some(fd) = &self.fd else {
            return;
        };
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut reader = inotify::Reader::new(fd, &mut buf);
        while let Ok(e) = reader.next() {
            let flags = e.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                self.overflowed = true;
            }
            if e.file_name().map(std::ffi::CStr::to_bytes) != Some(&self.wal_name[..]) {
                continue;
            }
            if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
                self.written = false;
            }
            if flags.contains(ReadFlags::MODIFY) {
                self.written = true;
            }
            if flags.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
                if self.written {
                    self.unmatched += 1;
                }
                self.written = false;
            }
        }
    }

    /// Tells whether a poll's commits may follow commits it never read.
    /// Called after the poll with the written `-wal` files the tail saw
    /// end in it, then whether the written file it follows was already
    /// gone from its path once the poll was done (looked at before
    /// [`Watch::take_events`], which the caller calls next).
    ///
    /// Every written `-wal` file removed before the poll looked at the path
    /// was one the tail followed and saw end, unless it was missed; so
    /// with the events taken after the poll, more removals than the tail
    /// saw end (and than the one of its own file, gone since) mean one
    /// was missed, and the commits read after it must not be handed over.
    /// A removal between the look and the events is taken for a miss too:
    /// at worst an unneeded bridge. Dropped events are a miss.
    ///
    /// Where nothing is watched (polling), a removal cannot be told from
    /// two, and every written `-wal` file that ends is taken as one that
    /// may hide another.
    pub fn missed(&mut self, tail_ends: u64, followed_gone: bool) -> bool {
        if self.fd.is_none() {
            return tail_ends > 0;
        }
        self.unmatched -= i64::try_from(tail_ends).unwrap_or(i64::MAX);
        self.overflowed || self.unmatched > i64::from(followed_gone)
    }

    /// Starts counting anew (after a gap, which the bridge covers).
    pub fn forgive(&mut self) {
        self.unmatched = 0;
        self.overflowed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_wakes_the_waiter_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        std::fs::write(&db, b"x").unwrap();
        let mut w = Watch::new(&db);
        assert!(w.is_watching());
        let p = db.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(crate::sys::with_suffix(&p, "-wal"), b"frames").unwrap();
        });
        let t = std::time::Instant::now();
        w.wait(Duration::from_secs(20));
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        writer.join().unwrap();
        // The write's later events (its modify and close) may come after
        // the wake: let them arrive, then take them.
        std::thread::sleep(Duration::from_millis(50));
        w.wait(Duration::ZERO);
        // Nothing more: the timeout ends the wait.
        let t = std::time::Instant::now();
        w.wait(Duration::from_millis(50));
        assert!(t.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn a_written_wal_removed_unseen_is_missed_and_one_seen_ending_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        std::fs::write(&db, b"x").unwrap();
        let wal = crate::sys::with_suffix(&db, "-wal");
        let mut w = Watch::new(&db);
        // Made, written and removed; the tail read it and saw it end.
        std::fs::write(&wal, b"frames").unwrap();
        std::fs::remove_file(&wal).unwrap();
        w.take_events();
        assert!(!w.missed(1, false));
        // Made and removed unwritten (a reader's connection): nothing lost.
        drop(std::fs::File::create(&wal).unwrap());
        std::fs::remove_file(&wal).unwrap();
        w.take_events();
        assert!(!w.missed(0, false));
        // Other files of the directory tell nothing.
        std::fs::write(dir.path().join("b.db-wal"), b"frames").unwrap();
        std::fs::remove_file(dir.path().join("b.db-wal")).unwrap();
        w.take_events();
        assert!(!w.missed(0, false));
        // Made, written and removed between two polls: missed, until the
        // gap's bridge starts the count anew.
        std::fs::write(&wal, b"frames").unwrap();
        std::fs::remove_file(&wal).unwrap();
        w.take_events();
        assert!(w.missed(0, false));
        w.forgive();
        assert!(!w.missed(0, false));
        // The followed file removed after the poll looked: its removal is
        // the one allowed, and the next poll sees it end.
        std::fs::write(&wal, b"frames").unwrap();
        w.take_events();
        std::fs::remove_file(&wal).unwrap();
        w.take_events();
        assert!(!w.missed(0, true));
        assert!(!w.missed(1, false));
        // Renamed away counts as removed.
        std::fs::write(&wal, b"frames").unwrap();
        std::fs::rename(&wal, dir.path().join("elsewhere")).unwrap();
        w.take_events();
        assert!(w.missed(0, false));
    }
}
