//! Progress reports and cancellation, shared by every long operation.
//!
//! A [`Progress`] receives byte counts while a backup reads its image or a
//! restore writes one, and a named phase as each step begins, so a front
//! end (a terminal bar, the HTTP API's task view) can show every phase. A
//! [`Cancel`] token is one flag per operation: a signal handler, a daemon
//! shutting down or an HTTP client sets it; every loop, wait and SQL
//! statement checks it and stops with [`Error::Interrupted`] leaving nothing
//! half-done behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Receives progress while an operation runs.
pub trait Progress: Send + Sync {
    /// The current phase will process `bytes` bytes.
    fn start(&self, bytes: u64);
    /// `bytes` more bytes were processed.
    fn advance(&self, bytes: u64);
    /// A new phase begins ("reading", "verifying", "uploading", ...).
    fn phase(&self, _name: &str) {}
}

/// A cancellation token: cheap to clone, all clones share one flag. A
/// [`Cancel::child`] is also cancelled by its parent (a service's task by
/// the service's shutdown).
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    parent: Option<Arc<Cancel>>,
}

impl Cancel {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled by its own [`Cancel::cancel`] or by this one's.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            flag: Arc::default(),
            parent: Some(Arc::new(self.clone())),
        }
    }

    /// Asks every holder of this token (and of its children) to stop.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// True once [`Cancel::cancel`] was called (or the flag was set) on
    /// this token or a parent.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || self.parent.as_ref().is_some_and(|p| p.is_cancelled())
    }

    /// The token's own flag, for signal handlers that set it directly.
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }

    /// Fails with [`Error::Interrupted`] naming `what` was stopped if the
    /// token is cancelled.
    pub fn check(&self, what: &str) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::Interrupted(what.to_string()));
        }
        Ok(())
    }

    /// Sleeps for `d`, waking early (with an error) when cancelled.
    pub fn sleep(&self, d: Duration, what: &str) -> Result<()> {
        let end = Instant::now() + d;
        loop {
            self.check(what)?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(20)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_cancelled_by_its_parent_and_not_the_other_way() {
        let parent = Cancel::new();
        let (a, b) = (parent.child(), parent.child());
        a.cancel();
        assert!(a.is_cancelled() && !b.is_cancelled() && !parent.is_cancelled());
        parent.cancel();
        assert!(b.is_cancelled() && b.child().is_cancelled());
    }

    #[test]
    fn a_cancelled_sleep_returns_early() {
        let c = Cancel::new();
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            c2.cancel();
        });
        let started = Instant::now();
        let e = c.sleep(Duration::from_secs(30), "waiting").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, Error::Interrupted(_)));
        t.join().unwrap();
    }
}
