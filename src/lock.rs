//! Repository locks (SPEC.md, "Locks").
//!
//! A lock is a small sealed object under `locks/` recording who holds it:
//! host, pid, user, command, when it was taken and last refreshed, and
//! whether it is exclusive. Backup, restore and listing take shared locks;
//! prune, forget and key removal take an exclusive one. Shared locks coexist;
//! an exclusive lock excludes every other lock.
//!
//! Taking a lock: list the locks; if a live conflicting one exists, fail
//! naming its holder; otherwise write ours, list again, and if a conflicting
//! lock appeared meanwhile, delete ours and fail. Two racing processes can
//! both fail, never both succeed.
//!
//! A held lock is refreshed every [`REFRESH_EVERY`] by writing a new lock
//! object and then deleting the old one (no rename, so it works on object
//! stores). A lock is **stale** when it was not refreshed for [`STALE_AFTER`],
//! or when it was taken on this host by a process that no longer exists.
//! Stale locks are ignored when locking and removed by `litevault unlock`.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileType};
use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::format::{self, ObjectType};
use crate::id::LockId;

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
    fn new(kind: LockKind, command: &str) -> Self {
        let now = crate::util::now_rfc3339();
        Self {
            host: crate::util::hostname(),
            pid: std::process::id(),
            username: crate::util::username(),
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
}

/// True if a process with this pid exists on this host.
pub fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

/// One lock found in the repository.
#[derive(Clone, Debug)]
pub struct LockInfo {
    /// Its id (file name).
    pub id: LockId,
    /// Its content, or `None` if it could not be read.
    pub record: Option<LockRecord>,
    /// Why it is stale (or unreadable), or `None` if it may be held.
    pub stale: Option<String>,
}

impl LockInfo {
    fn describe(&self) -> String {
        match &self.record {
            Some(r) => r.holder(),
            None => format!("an unreadable lock file locks/{}", self.id),
        }
    }
}

pub(crate) fn encode(key: &MasterKey, record: &LockRecord) -> Result<(LockId, Vec<u8>)> {
    let bytes = format::seal_object(
        key,
        ObjectType::Lock,
        &serde_json::to_vec(record).expect("lock serialises"),
        None,
    )?;
    Ok((LockId::from_bytes(crate::id::storage_hash(&bytes)), bytes))
}

/// Reads every lock and judges its staleness.
pub(crate) fn list(backend: &dyn Backend, key: &MasterKey) -> Result<Vec<LockInfo>> {
    let now = jiff::Timestamp::now();
    let host = crate::util::hostname();
    let mut out = Vec::new();
    for f in backend.list(FileType::Lock)? {
        let id: LockId = f.name.parse()?;
        let object = FileType::Lock.describe(&f.name);
        let record = match backend.read(FileType::Lock, &f.name) {
            Ok(bytes) => crate::repository::verify_name(&bytes, &f.name, &object)
                .and_then(|()| format::open_object(key, ObjectType::Lock, &bytes, &object))
                .and_then(|json| {
                    serde_json::from_slice::<LockRecord>(&json)
                        .map_err(|e| Error::damaged(&object, e.to_string()))
                }),
            // Deleted between list and read: its holder just released it.
            Err(e) if e.is_not_found() => continue,
            Err(e) => Err(e),
        };
        out.push(match record {
            Ok(r) => LockInfo {
                id,
                stale: r.staleness(now, &host, process_alive),
                record: Some(r),
            },
            Err(e) => LockInfo {
                id,
                record: None,
                stale: Some(format!("unreadable: {e}")),
            },
        });
    }
    Ok(out)
}

fn conflict(kind: LockKind, others: &[LockInfo], mine: Option<&LockId>) -> Option<Error> {
    others
        .iter()
        .filter(|l| Some(&l.id) != mine)
        .filter(|l| l.stale.is_none() || l.record.is_none())
        .find(|l| kind == LockKind::Exclusive || l.record.as_ref().is_none_or(|r| r.exclusive))
        .map(|l| Error::Locked {
            mode: if l.record.as_ref().is_some_and(|r| !r.exclusive) {
                "(shared)"
            } else {
                "exclusively"
            },
            holder: l.describe(),
        })
}

/// A held lock. Dropping it stops the refresh and deletes the lock file.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    current: Arc<Mutex<LockId>>,
    refreshed: Arc<Mutex<std::time::Instant>>,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockGuard({:?})", self.id())
    }
}

impl LockGuard {
    /// The current lock file's id.
    pub fn id(&self) -> LockId {
        *self.current.lock().expect("lock id mutex")
    }

    /// Fails if the lock could not be refreshed for so long that another
    /// process may already consider it stale: a holder checks this before
    /// each step that others' safety relies on (writing an index or a
    /// snapshot, deleting).
    pub fn ensure_held(&self) -> Result<()> {
        let age = self.refreshed.lock().expect("refresh mutex").elapsed();
        if age + REFRESH_EVERY >= STALE_AFTER {
            return Err(Error::LockLost(format!(
                "the repository lock could not be refreshed for {} minutes, so another process may have taken it; stopped before writing more (check that the repository is writable, then run the command again)",
                age.as_secs() / 60
            )));
        }
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let _ = self.backend.remove(FileType::Lock, &self.id().to_hex());
    }
}

/// Takes a lock of `kind` for `command`.
pub(crate) fn acquire(
    backend: &Arc<dyn Backend>,
    key: &Arc<MasterKey>,
    kind: LockKind,
    command: &str,
) -> Result<LockGuard> {
    if let Some(e) = conflict(kind, &list(backend.as_ref(), key)?, None) {
        return Err(e);
    }
    let record = LockRecord::new(kind, command);
    let (id, bytes) = encode(key, &record)?;
    backend.write(FileType::Lock, &id.to_hex(), &bytes)?;
    let after = list(backend.as_ref(), key);
    let clash = match after {
        Ok(locks) => conflict(kind, &locks, Some(&id)),
        Err(e) => Some(e),
    };
    if let Some(e) = clash {
        let _ = backend.remove(FileType::Lock, &id.to_hex());
        return Err(e);
    }
    let current = Arc::new(Mutex::new(id));
    let last_refresh = Arc::new(Mutex::new(std::time::Instant::now()));
    let (stop, stopped) = mpsc::channel::<()>();
    let refresher = {
        let backend = Arc::clone(backend);
        let key = Arc::clone(key);
        let current = Arc::clone(&current);
        let last_refresh = Arc::clone(&last_refresh);
        std::thread::Builder::new()
            .name("litevault-lock-refresh".into())
            .spawn(move || refresh_loop(&*backend, &key, &current, &last_refresh, record, &stopped))
            .map_err(|e| Error::io("starting the lock refresh thread", e))?
    };
    Ok(LockGuard {
        backend: Arc::clone(backend),
        current,
        refreshed: last_refresh,
        stop: Some(stop),
        refresher: Some(refresher),
    })
}

fn refresh_loop(
    backend: &dyn Backend,
    key: &MasterKey,
    current: &Mutex<LockId>,
    refreshed: &Mutex<std::time::Instant>,
    mut record: LockRecord,
    stopped: &mpsc::Receiver<()>,
) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH_EVERY) {
        record.refreshed = crate::util::now_rfc3339();
        let Ok((id, bytes)) = encode(key, &record) else {
            continue;
        };
        // New lock first, then delete the old one: the lock is never absent.
        if backend.write(FileType::Lock, &id.to_hex(), &bytes).is_ok() {
            let old = std::mem::replace(&mut *current.lock().expect("lock id mutex"), id);
            *refreshed.lock().expect("refresh mutex") = std::time::Instant::now();
            let _ = backend.remove(FileType::Lock, &old.to_hex());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;

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
    fn liveness_of_real_processes() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn dead_holder_is_stale_and_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalBackend::new(dir.path().join("r"));
        local.create().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(local);
        let key = Arc::new(MasterKey::generate().unwrap());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let mut r = LockRecord::new(LockKind::Exclusive, "prune");
        r.pid = dead_pid;
        let (id, bytes) = encode(&key, &r).unwrap();
        backend.write(FileType::Lock, &id.to_hex(), &bytes).unwrap();
        let locks = list(backend.as_ref(), &key).unwrap();
        assert!(locks[0].stale.as_deref().unwrap().contains("gone"));
        // The dead exclusive lock does not block a new exclusive lock.
        let g = acquire(&backend, &key, LockKind::Exclusive, "test").unwrap();
        drop(g);
    }

    #[test]
    fn shared_coexist_exclusive_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalBackend::new(dir.path().join("r"));
        local.create().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(local);
        let key = Arc::new(MasterKey::generate().unwrap());
        let a = acquire(&backend, &key, LockKind::Shared, "backup").unwrap();
        let b = acquire(&backend, &key, LockKind::Shared, "restore").unwrap();
        let e = acquire(&backend, &key, LockKind::Exclusive, "prune").unwrap_err();
        assert!(matches!(e, Error::Locked { .. }));
        assert!(
            e.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(a);
        drop(b);
        assert!(
            backend.list(FileType::Lock).unwrap().is_empty(),
            "dropping releases"
        );
        let x = acquire(&backend, &key, LockKind::Exclusive, "prune").unwrap();
        let e = acquire(&backend, &key, LockKind::Shared, "backup")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("locked exclusively")
                && e.contains("`prune`")
                && e.contains("litevault unlock"),
            "{e}"
        );
        drop(x);
    }
}
