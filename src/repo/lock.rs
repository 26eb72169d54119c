//! Taking, refreshing and releasing repository locks (SPEC.md, "Locks");
//! the lock record and its staleness rules are `format::lock`.
//!
//! Backup, restore and listing take shared locks; prune, forget and key
//! removal take an exclusive one. Shared locks coexist; an exclusive lock
//! excludes every other lock.
//!
//! Taking a lock (restic's protocol, which needs neither rename nor
//! conditional writes, so it works the same on object stores): list the
//! locks; if a live conflicting one exists, fail naming its holder;
//! otherwise write ours, list again, and if a conflicting lock appeared
//! meanwhile (a race), delete ours, back off for a random while and try
//! again, [`RACE_ATTEMPTS`] times in all. Two racing processes can both
//! fail, never both succeed.
//!
//! A held lock is refreshed every [`REFRESH_EVERY`] by writing a new lock
//! object and then deleting the old one. Stale locks are ignored when
//! locking and removed by [`Repository::unlock`].

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::repository::{Listed, LockPolicy, Repository};
use crate::backend::{Backend, FileType};
use crate::error::{BackendErrorKind, Error, Result};
use crate::format::crypto::MasterKey;
use crate::format::lock::{LockKind, LockRecord, PidScope, REFRESH_EVERY, STALE_AFTER};
use crate::id::LockId;

/// The first pause between attempts of a [`LockWait`](super::LockWait); each pause doubles,
/// up to [`WAIT_PAUSE_MAX`].
pub const WAIT_PAUSE_FIRST: Duration = Duration::from_secs(1);
/// The longest pause between attempts of a [`LockWait`](super::LockWait).
pub const WAIT_PAUSE_MAX: Duration = Duration::from_secs(30);

impl Repository {
    /// Takes a lock; it is held until the guard is dropped. With a
    /// [`LockWait`](super::LockWait) set, a conflicting lock is waited for (attempts with
    /// doubling pauses), else it is the error at once.
    ///
    /// Every command that deletes takes the exclusive lock: on a storage
    /// that refuses deletes it is refused here, before anything is written.
    pub fn lock(&self, kind: LockKind, command: &str) -> Result<LockGuard> {
        if kind == LockKind::Exclusive {
            // Every command that deletes takes the exclusive lock.
            self.require_full_key(command)?;
            self.check_deletes(command)?;
        }
        let Some(wait) = self.lock_wait() else {
            return acquire(self, kind, command);
        };
        let start = Instant::now();
        let mut pause = WAIT_PAUSE_FIRST;
        let mut said: Option<String> = None;
        loop {
            match acquire(self, kind, command) {
                Err(Error::Locked { mode, holder, .. }) => {
                    let waited = start.elapsed();
                    if waited >= wait.up_to {
                        return Err(Error::Locked {
                            mode,
                            holder,
                            waited: Some(wait.up_to),
                        });
                    }
                    if said.as_ref() != Some(&holder) {
                        (wait.say)(&format!(
                            "the repository is locked {mode} by {holder}; waiting for it (at most {} in all)",
                            crate::sys::format_duration(wait.up_to)
                        ));
                        said = Some(holder);
                    }
                    wait.cancel.sleep(
                        pause.min(wait.up_to.saturating_sub(waited)),
                        "stopped while waiting for the lock",
                    )?;
                    pause = (pause * 2).min(WAIT_PAUSE_MAX);
                }
                other => return other,
            }
        }
    }

    /// The shared lock of a command that only reads, as the lock policy
    /// says (see [`LockPolicy`]).
    pub fn lock_reading(&self, command: &str) -> Result<LockGuard> {
        // Every command that reads what is stored takes this lock.
        self.require_full_key(command)?;
        match self.lock_policy() {
            LockPolicy::Always => self.lock(LockKind::Shared, command),
            LockPolicy::Never => {
                self.confirm_key()?;
                Ok(LockGuard::not_held())
            }
            LockPolicy::IfWritable => match self.lock(LockKind::Shared, command) {
                Err(Error::Backend(e))
                    if matches!(
                        e.kind,
                        BackendErrorKind::ReadOnly
                            | BackendErrorKind::PermissionDenied
                            | BackendErrorKind::NoSpace
                    ) =>
                {
                    self.confirm_key()?;
                    // Nothing may be pruning: an exclusive lock still stops us.
                    if let Some(e) = conflict(LockKind::Shared, &self.locks()?, None) {
                        return Err(e);
                    }
                    self.note(format!(
                        "the repository cannot be written ({}): reading it without a lock",
                        e.detail
                    ));
                    Ok(LockGuard::not_held())
                }
                other => other,
            },
        }
    }

    /// Every lock in the repository, with staleness.
    pub fn locks(&self) -> Result<Vec<LockInfo>> {
        let listed = self.list_confirmed(FileType::Lock)?;
        read_locks(self.backend().as_ref(), self.key(), listed, None)
    }

    /// Removes stale and unreadable locks (all locks with `all`); returns
    /// what was removed.
    pub fn unlock(&self, all: bool) -> Result<Vec<LockInfo>> {
        if all {
            self.require_full_key("removing every lock")?;
        }
        self.check_deletes("unlock")?;
        let mut removed = Vec::new();
        for l in self.locks()? {
            if all || l.stale.is_some() {
                self.backend().remove(FileType::Lock, &l.id.to_hex())?;
                removed.push(l);
            }
        }
        Ok(removed)
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

/// Reads every lock and judges its staleness.
/// Lists keys, index files, locks and snapshots together (one request on
/// S3), just after writing lock `mine`: confirms the key, keeps the index
/// and snapshot listings for the command, returns the other locks.
fn list_together(repo: &Repository, mine: &LockId) -> Result<Vec<LockInfo>> {
    let types = [
        FileType::Key,
        FileType::Index,
        FileType::Lock,
        FileType::Snapshot,
    ];
    let mut lists = repo.backend().list_many(&types)?;
    repo.check_key_listed(&lists[0])?;
    let snapshots = lists.pop().expect("four listings");
    let locks = lists.pop().expect("four listings");
    let index = lists.pop().expect("four listings");
    repo.cache().listed = Listed {
        index: Some(index),
        snapshots: Some(snapshots),
    };
    read_locks(repo.backend().as_ref(), repo.key(), locks, Some(mine))
}

/// Attempts at taking a lock when racing another process.
pub const RACE_ATTEMPTS: u32 = 3;

fn list(backend: &dyn Backend, key: &MasterKey) -> Result<Vec<LockInfo>> {
    list_except(backend, key, None)
}

/// The locks, reading each but `mine` (its content is known).
fn list_except(
    backend: &dyn Backend,
    key: &MasterKey,
    mine: Option<&LockId>,
) -> Result<Vec<LockInfo>> {
    read_locks(backend, key, backend.list(FileType::Lock)?, mine)
}

/// Reads the listed locks but `mine`, with their staleness.
fn read_locks(
    backend: &dyn Backend,
    key: &MasterKey,
    listed: Vec<crate::backend::FileInfo>,
    mine: Option<&LockId>,
) -> Result<Vec<LockInfo>> {
    let now = jiff::Timestamp::now();
    let here = PidScope::here();
    let mut out = Vec::new();
    for f in listed {
        let id: LockId = f.name.parse()?;
        if Some(&id) == mine {
            continue;
        }
        let object = FileType::Lock.describe(&f.name);
        let record = match backend.read(FileType::Lock, &f.name) {
            Ok(bytes) => LockRecord::decode(key, &bytes, &f.name, &object),
            // Deleted between list and read: its holder just released it.
            Err(e) if e.is_not_found() => continue,
            Err(e) => Err(e),
        };
        out.push(match record {
            Ok(r) => LockInfo {
                id,
                stale: r.staleness(now, &here, crate::sys::process_state),
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
            waited: None,
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
    held: Option<Held>,
}

struct Held {
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
    /// A guard holding no lock (see [`LockPolicy`]).
    pub fn not_held() -> Self {
        Self { held: None }
    }

    /// True if a lock file is held.
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// The current lock file's id, if a lock is held.
    pub fn id(&self) -> Option<LockId> {
        self.held
            .as_ref()
            .map(|h| *h.current.lock().expect("lock id mutex"))
    }

    /// Fails if the lock could not be refreshed for so long that another
    /// process may already consider it stale: a holder checks this before
    /// each step that others' safety relies on (writing an index or a
    /// snapshot, deleting).
    pub fn ensure_held(&self) -> Result<()> {
        let Some(h) = &self.held else {
            return Ok(());
        };
        let age = h.refreshed.lock().expect("refresh mutex").elapsed();
        if age + REFRESH_EVERY >= STALE_AFTER {
            return Err(Error::LockLost {
                minutes: age.as_secs() / 60,
            });
        }
        Ok(())
    }
}

impl LockGuard {
    /// Fails if the lock file is no longer in the repository: another
    /// process removed it (`unlock --remove-all`, or one that took it for
    /// stale) and may have deleted what this one wrote. A holder checks
    /// this before the write that makes its work visible (a snapshot).
    pub fn confirm(&self) -> Result<()> {
        let Some(h) = &self.held else {
            return Ok(());
        };
        // Held while asking, so the refresher cannot replace the file
        // (write the new one, delete this one) in between.
        let current = h.current.lock().expect("lock id mutex");
        match h.backend.size(FileType::Lock, &current.to_hex()) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(Error::WritesLost {
                reason: format!(
                    "its lock locks/{} was removed by another process",
                    current.short()
                ),
            }),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let id = *self.current.lock().expect("lock id mutex");
        let _ = self.backend.remove(FileType::Lock, &id.to_hex());
    }
}

impl Repository {
    /// Refuses `command`, which deletes, where the storage deletes nothing.
    fn check_deletes(&self, command: &str) -> Result<()> {
        match self.backend().refuses_deletes() {
            Some(why) => Err(crate::backend::delete_refused(
                &self.backend().location(),
                command,
                &why,
            )),
            None => Ok(()),
        }
    }
}

/// Takes a lock of `kind` for `command`.
///
/// Where the storage lists several types in one request (S3), the first
/// attempt writes the lock first and then lists keys, index files, locks
/// and snapshots together: the one listing checks for conflicting locks,
/// confirms the key a cached open used, and serves the command's index and
/// snapshot listings (they are taken under the lock). An unchanged backup
/// then costs three requests: the lock's write, the listing, its delete.
fn acquire(repo: &Repository, kind: LockKind, command: &str) -> Result<LockGuard> {
    let backend = repo.backend();
    let key = repo.key_arc();
    let mut lock_first = backend.lists_together();
    let mut attempt = 1;
    let (id, record) = loop {
        if !lock_first {
            repo.confirm_key()?;
            if let Some(e) = conflict(kind, &list(backend.as_ref(), key)?, None) {
                return Err(e);
            }
        }
        let record = LockRecord::new(kind, command);
        let (id, bytes) = record.encode(key, repo.config().version)?;
        write_lock(repo, kind, &id, &bytes)?;
        let after = if lock_first {
            list_together(repo, &id)
        } else {
            list_except(backend.as_ref(), key, Some(&id))
        };
        let clash = match after {
            Ok(locks) => conflict(kind, &locks, Some(&id)),
            Err(e) => {
                let _ = backend.remove(FileType::Lock, &id.to_hex());
                return Err(e);
            }
        };
        let Some(e) = clash else {
            break (id, record);
        };
        let _ = backend.remove(FileType::Lock, &id.to_hex());
        repo.cache().listed = Listed::default();
        if attempt == RACE_ATTEMPTS || !matches!(e, Error::Locked { .. }) {
            return Err(e);
        }
        if lock_first {
            // Held or racing? The classic order tells: a held lock fails
            // at once, a race backs off.
            lock_first = false;
        } else {
            // A race with another process taking a lock: back off a random
            // while, so that one of the two goes first next time.
            let mut r = [0u8; 2];
            crate::format::crypto::random_bytes(&mut r)?;
            let ms = 50 * u64::from(attempt) + u64::from(u16::from_le_bytes(r) % 250);
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        attempt += 1;
    };
    let current = Arc::new(Mutex::new(id));
    let last_refresh = Arc::new(Mutex::new(std::time::Instant::now()));
    let (stop, stopped) = mpsc::channel::<()>();
    let refresher = {
        let backend = Arc::clone(backend);
        let key = Arc::clone(key);
        let current = Arc::clone(&current);
        let last_refresh = Arc::clone(&last_refresh);
        let version = repo.config().version;
        std::thread::Builder::new()
            .name("litevault-lock-refresh".into())
            .spawn(move || {
                let sealer = (&*key, version);
                refresh_loop(&*backend, sealer, &current, &last_refresh, record, &stopped);
            })
            .map_err(|e| Error::Internal(format!("starting the lock refresh thread: {e}")))?
    };
    Ok(LockGuard {
        held: Some(Held {
            backend: Arc::clone(backend),
            current,
            refreshed: last_refresh,
            stop: Some(stop),
            refresher: Some(refresher),
        }),
    })
}

/// Writes our lock. A full storage gives its reserve back for an exclusive
/// lock (forget, prune: the commands that free space), once.
fn write_lock(repo: &Repository, kind: LockKind, id: &LockId, bytes: &[u8]) -> Result<()> {
    let backend = repo.backend();
    match backend.write(FileType::Lock, &id.to_hex(), bytes) {
        Err(Error::Backend(e))
            if e.kind == BackendErrorKind::NoSpace
                && kind == LockKind::Exclusive
                && backend.release_reserve()? =>
        {
            repo.set_reserve_used();
            repo.note(format!(
                "the repository's storage is full ({}): its reserve was given back so that this command can free space",
                e.detail
            ));
            backend.write(FileType::Lock, &id.to_hex(), bytes)
        }
        r => r,
    }
}

fn refresh_loop(
    backend: &dyn Backend,
    (key, version): (&MasterKey, u8),
    current: &Mutex<LockId>,
    refreshed: &Mutex<std::time::Instant>,
    mut record: LockRecord,
    stopped: &mpsc::Receiver<()>,
) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH_EVERY) {
        record.refreshed = crate::sys::now_rfc3339();
        let Ok((id, bytes)) = record.encode(key, version) else {
            continue;
        };
        // New lock first, then delete the old one: the lock is never absent.
        if backend.write(FileType::Lock, &id.to_hex(), &bytes).is_ok() {
            let mut cur = current.lock().expect("lock id mutex");
            let old = std::mem::replace(&mut *cur, id);
            *refreshed.lock().expect("refresh mutex") = std::time::Instant::now();
            let _ = backend.remove(FileType::Lock, &old.to_hex());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::format::crypto::KdfParams;
    use crate::repo::InitOptions;

    fn repository(backend: &Arc<dyn Backend>) -> Repository {
        let opts = InitOptions {
            kdf: KdfParams::TEST_ONLY_INSECURE,
            ..InitOptions::default()
        };
        Repository::init(Arc::clone(backend), b"pw", &opts).unwrap()
    }

    #[test]
    fn dead_holder_is_stale_and_ignored() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let repo = repository(&backend);
        let key = repo.key();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let mut r = LockRecord::new(LockKind::Exclusive, "prune");
        r.pid = dead_pid;
        let (id, bytes) = r.encode(key, repo.config().version).unwrap();
        backend.write(FileType::Lock, &id.to_hex(), &bytes).unwrap();
        let locks = list(backend.as_ref(), key).unwrap();
        assert!(locks[0].stale.as_deref().unwrap().contains("gone"));
        // The dead exclusive lock does not block a new exclusive lock.
        let g = repo.lock(LockKind::Exclusive, "test").unwrap();
        drop(g);
    }

    #[test]
    fn shared_coexist_exclusive_excludes() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
        let repo = repository(&backend);
        let a = repo.lock(LockKind::Shared, "backup").unwrap();
        let b = repo.lock(LockKind::Shared, "restore").unwrap();
        let e = repo.lock(LockKind::Exclusive, "prune").unwrap_err();
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
        let x = repo.lock(LockKind::Exclusive, "prune").unwrap();
        let e = repo.lock(LockKind::Shared, "backup").unwrap_err();
        assert!(e.is_retryable(), "a lock held by someone else may go away");
        let e = e.to_string();
        // The advice (`litevault unlock`) is the command line's to give:
        // tests/cli_locks.rs checks it there.
        assert!(
            e.contains("locked exclusively") && e.contains("`prune`") && !e.contains("litevault"),
            "{e}"
        );
        drop(x);
    }
}
