//! Lock records (SPEC.md, "Locks"): who holds a lock, and when a lock is
//! stale. Taking, refreshing and releasing locks is `repo::lock`'s job.
//!
//! A lock is a small sealed object under `locks/` recording its holder:
//! host, pid, user, command, when it was taken and last refreshed, and
//! whether it is exclusive, and what makes its pid mean one process: the
//! boot (`boot_id`), the pid namespace and the process's start time. A
//! lock is **stale** when it was not refreshed for [`STALE_AFTER`], or
//! when it was taken in this boot and pid namespace of this host by a
//! process that no longer exists. A pid from another namespace (a
//! container sharing the host name), another machine of the same name, or
//! a lock that does not say, tells nothing: only the refresh time counts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::crypto::MasterKey;
use crate::format::{self, ObjectType};
use crate::id::{storage_hash, LockId};
use crate::sys::ProcState;

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
    /// The holder's boot of its machine (`/proc/sys/kernel/random/boot_id`);
    /// absent in locks of litevault before it recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder's pid namespace (inode of `/proc/self/ns/pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
    /// When the holder started, in clock ticks after boot (a reused pid
    /// has another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
}

/// Where a process runs, as far as pids are concerned: a pid names the
/// same process only on the same host, boot and pid namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PidScope {
    /// Host name.
    pub host: String,
    /// Boot id, if known.
    pub boot_id: Option<String>,
    /// Pid namespace, if known.
    pub pid_ns: Option<u64>,
}

impl PidScope {
    /// This process's.
    pub fn here() -> Self {
        Self {
            host: crate::sys::hostname(),
            boot_id: crate::sys::boot_id(),
            pid_ns: crate::sys::pid_namespace(),
        }
    }
}

impl LockRecord {
    /// A record for a lock of `kind` taken now by this process.
    pub fn new(kind: LockKind, command: &str) -> Self {
        let now = crate::sys::now_rfc3339();
        let scope = PidScope::here();
        let pid = std::process::id();
        Self {
            host: scope.host,
            pid,
            username: crate::sys::username(),
            command: command.to_string(),
            exclusive: kind == LockKind::Exclusive,
            created: now.clone(),
            refreshed: now,
            boot_id: scope.boot_id,
            pid_ns: scope.pid_ns,
            start: crate::sys::process_start(pid),
        }
    }

    /// "host db1 pid 4242 (user root, `prune`) since 2026-11-21T10:02:00Z".
    pub fn holder(&self) -> String {
        format!(
            "host {} pid {} (user {}, `{}`) since {}",
            self.host, self.pid, self.username, self.command, self.created
        )
    }

    /// Why this lock is stale, or `None` if it may still be held. `here`
    /// is the judging process's scope; `state_of(pid)` says what `/proc`
    /// tells of the process with that pid there.
    ///
    /// A dead pid makes a lock stale only when the lock was taken on the
    /// same host, boot and pid namespace (the lock says so); elsewhere the
    /// pid may be a live process this one cannot see, and only the
    /// refresh time counts.
    pub fn staleness(
        &self,
        now: jiff::Timestamp,
        here: &PidScope,
        state_of: impl Fn(u32) -> crate::sys::ProcState,
    ) -> Option<String> {
        let refreshed = self.refreshed.parse::<jiff::Timestamp>().ok()?;
        let age = now.duration_since(refreshed);
        if age > jiff::SignedDuration::try_from(STALE_AFTER).expect("small duration") {
            return Some(format!("not refreshed for {} minutes", age.as_secs() / 60));
        }
        let same_scope = self.host == here.host
            && self.boot_id.is_some()
            && self.boot_id == here.boot_id
            && self.pid_ns.is_some()
            && self.pid_ns == here.pid_ns;
        if !same_scope {
            return None;
        }
        match (state_of(self.pid), self.start) {
            (ProcState::Gone, _) => Some(format!("process {} on this host is gone", self.pid)),
            (ProcState::Started(now), Some(then)) if now != then => Some(format!(
                "process {} on this host is gone (its pid now belongs to a later process)",
                self.pid
            )),
            _ => None,
        }
    }

    /// The sealed lock object of a repository of format `repository`, and
    /// its id (= its name).
    pub fn encode(&self, key: &MasterKey, repository: u8) -> Result<(LockId, Vec<u8>)> {
        let bytes = format::seal_stored(
            key,
            ObjectType::Lock,
            repository,
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
            boot_id: Some("boot-a".into()),
            pid_ns: Some(7),
            start: Some(100),
        }
    }

    fn scope(host: &str, boot: &str, ns: u64) -> PidScope {
        PidScope {
            host: host.into(),
            boot_id: Some(boot.into()),
            pid_ns: Some(ns),
        }
    }

    #[test]
    fn staleness_rules() {
        let now: jiff::Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
        let here = scope("h", "boot-a", 7);
        let alive = |_| ProcState::Started(100);
        let gone = |_| ProcState::Gone;
        let fresh = record("h", 1, "2026-11-21T11:50:00Z");
        assert_eq!(fresh.staleness(now, &here, alive), None);
        // A process `/proc` hides (hidepid, another user's) is alive.
        assert_eq!(fresh.staleness(now, &here, |_| ProcState::Unknown), None);
        assert!(fresh.staleness(now, &here, gone).unwrap().contains("gone"));
        // The pid was reused by a later process.
        assert!(fresh
            .staleness(now, &here, |_| ProcState::Started(200))
            .unwrap()
            .contains("later process"));
        // A dead pid tells nothing on another host, another boot of a
        // machine of the same name, or in another pid namespace (a
        // container sharing the host name).
        for other in [
            scope("other", "boot-a", 7),
            scope("h", "boot-b", 7),
            scope("h", "boot-a", 8),
        ] {
            assert_eq!(fresh.staleness(now, &other, gone), None, "{other:?}");
        }
        // Nor does a lock that does not say where its pid lives (written
        // by litevault before it recorded it).
        let old_style = LockRecord {
            boot_id: None,
            pid_ns: None,
            start: None,
            ..fresh.clone()
        };
        assert_eq!(old_style.staleness(now, &here, gone), None);
        let old = record("h", 1, "2026-11-21T11:00:00Z");
        assert!(old
            .staleness(now, &scope("x", "y", 1), alive)
            .unwrap()
            .contains("60 minutes"));
        // Clock skew: a lock from the future is not stale.
        assert_eq!(
            record("h", 1, "2026-11-21T13:00:00Z").staleness(now, &here, alive),
            None
        );
    }

    #[test]
    fn older_lock_records_decode() {
        let key = MasterKey::generate().unwrap();
        let json = br#"{"host":"h","pid":3,"username":"u","command":"prune","exclusive":true,"created":"2026-11-21T11:50:00Z","refreshed":"2026-11-21T11:50:00Z"}"#;
        let bytes = format::seal_object(&key, ObjectType::Lock, json, None).unwrap();
        let name = storage_hash(&bytes);
        let r = LockRecord::decode(&key, &bytes, &hex::encode(name), "locks/x").unwrap();
        assert_eq!((r.boot_id, r.pid_ns, r.start), (None, None, None));
    }

    #[test]
    fn encode_decode_round_trip() {
        let key = MasterKey::generate().unwrap();
        let r = record("h", 7, "2026-11-21T11:50:00Z");
        let (id, bytes) = r.encode(&key, 4).unwrap();
        assert_eq!(
            LockRecord::decode(&key, &bytes, &id.to_hex(), "locks/x").unwrap(),
            r
        );
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(LockRecord::decode(&key, &bad, &id.to_hex(), "locks/x").is_err());
    }
}
