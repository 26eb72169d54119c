//! Lock records (SPEC.md, "Locks"): who holds a lock, and when a lock is
//! stale. Taking, refreshing and releasing locks is `repo::lock`'s job.
//!
//! A lock is a small sealed object under `locks/` recording its holder:
//! host, pid, user, command, when it was taken and last refreshed, and
//! whether it is exclusive. A lock is **stale** when it was not refreshed
//! for [`STALE_AFTER`], or when it was taken on this host by a process that
//! no longer exists.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::crypto::MasterKey;
use crate::format::{self, ObjectType};
use crate::id::{storage_hash, LockId};

/// A held lock is rewritten this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// A lock not refreshed for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// Shared or exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Coexists with other shared locks (backup, restore, listing).
    Shared,
    /// Excludes every other lock (prune, forget, key removal).
    Exclusive,
}

/// The content of a lock file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Host name of the holder.
    pub host: String,
    /// Process id of the holder.
    pub pid: u32,
    /// User running the holder.
    pub username: String,
    /// What the holder is doing (`backup`, `prune`, …).
    pub command: String,
    /// True for an exclusive lock.
    pub exclusive: bool,
    /// When the lock was first taken, RFC 3339.
    pub created: String,
    /// When it was last written, RFC 3339.
    pub refreshed: String,
}

impl LockRecord {
    /// A record for a lock of `kind` taken now by this process.
    pub fn new(kind: LockKind, command: &str) -> Self {
        let now = crate::sys::now_rfc3339();
        Self {
            host: crate::sys::hostname(),
            pid: std::process::id(),
            username: crate::sys::username(),
            command: command.to_string(),
            exclusive: kind == LockKind::Exclusive,
            created: now.clone(),
            refreshed: now,
        }
    }

    /// "host db1 pid 4242 (user root, `prune`) since 2026-11-21T10:02:00Z".
    pub fn holder(&self) -> String {
        format!(
            "host {} pid {} (user {}, `{}`) since {}",
            self.host, self.pid, self.username, self.command, self.created
        )
    }

    /// Why this lock is stale, or `None` if it may still be held.
    pub fn staleness(
        &self,
        now: jiff::Timestamp,
        this_host: &str,
        alive: impl Fn(u32) -> bool,
    ) -> Option<String> {
        let refreshed = self.refreshed.parse::<jiff::Timestamp>().ok()?;
        let age = now.duration_since(refreshed);
        if age > jiff::SignedDuration::try_from(STALE_AFTER).expect("small duration") {
            return Some(format!("not refreshed for {} minutes", age.as_secs() / 60));
        }
        if self.host == this_host && !alive(self.pid) {
            return Some(format!("process {} on this host is gone", self.pid));
        }
        None
    }

    /// The sealed lock object and its id (= its name).
    pub fn encode(&self, key: &MasterKey) -> Result<(LockId, Vec<u8>)> {
        let bytes = format::seal_object(
            key,
            ObjectType::Lock,
            &serde_json::to_vec(self).expect("lock serialises"),
            None,
        )?;
        Ok((LockId::from_bytes(storage_hash(&bytes)), bytes))
    }

    /// Verifies and opens a lock object named `name`.
    pub fn decode(key: &MasterKey, bytes: &[u8], name: &str, object: &str) -> Result<Self> {
        format::verify_name(bytes, name, object)?;
        let json = format::open_object(key, ObjectType::Lock, bytes, object)?;
        serde_json::from_slice(&json).map_err(|e| Error::damaged(object, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, pid: u32, refreshed: &str) -> LockRecord {
        LockRecord {
            host: host.into(),
            pid,
            username: "u".into(),
            command: "backup".into(),
            exclusive: false,
            created: refreshed.into(),
            refreshed: refreshed.into(),
        }
    }

    #[test]
    fn staleness_rules() {
        let now: jiff::Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
        let fresh = record("h", 1, "2026-11-21T11:50:00Z");
        assert_eq!(fresh.staleness(now, "h", |_| true), None);
        assert!(fresh
            .staleness(now, "h", |_| false)
            .unwrap()
            .contains("gone"));
        // A dead pid on another host tells nothing.
        assert_eq!(fresh.staleness(now, "other", |_| false), None);
        let old = record("h", 1, "2026-11-21T11:00:00Z");
        assert!(old
            .staleness(now, "h", |_| true)
            .unwrap()
            .contains("60 minutes"));
        // Clock skew: a lock from the future is not stale.
        assert_eq!(
            record("h", 1, "2026-11-21T13:00:00Z").staleness(now, "h", |_| true),
            None
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let key = MasterKey::generate().unwrap();
        let r = record("h", 7, "2026-11-21T11:50:00Z");
        let (id, bytes) = r.encode(&key).unwrap();
        assert_eq!(
            LockRecord::decode(&key, &bytes, &id.to_hex(), "locks/x").unwrap(),
            r
        );
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(LockRecord::decode(&key, &bad, &id.to_hex(), "locks/x").is_err());
    }
}
