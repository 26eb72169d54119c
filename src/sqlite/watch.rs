//! Waking when a database's files change: an inotify watch of the
//! directory that holds it (its `-wal` is made, written, deleted there),
//! so capture reads a commit moments after it is written, not at the next
//! tick. Where inotify is not available (a filesystem that does not report
//! changes, a limit reached), waiting is a plain timeout: capture polls.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};

/// A watch of one directory (`None` inside: polling).
pub struct Watch(Option<OwnedFd>);

impl Watch {
    /// Watches the directory of `db` for writes, creations, deletions and
    /// renames.
    pub fn new(db: &Path) -> Self {
        let dir = match db.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok();
        Self(fd.filter(|fd| {
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
        }))
    }

    /// True if changes wake the waiter (else it polls).
    pub fn is_watching(&self) -> bool {
        self.0.is_some()
    }

    /// Waits until something in the directory changed, or `timeout`
    /// passed; then takes every event waiting.
    pub fn wait(&self, timeout: Duration) {
        let Some(fd) = &self.0 else {
            std::thread::sleep(timeout);
            return;
        };
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        if rustix::event::poll(&mut fds, Some(&ts)).is_ok_and(|n| n > 0) {
            let mut buf = [0u8; 8192];
            while rustix::io::read(fd, &mut buf).is_ok_and(|n| n > 0) {}
        }
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
        let w = Watch::new(&db);
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
}
