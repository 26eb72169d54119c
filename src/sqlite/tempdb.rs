//! Temporary database files: plaintext, so made with care. Each is created
//! new (never replacing anything), mode 0600 (no wider than any database it
//! copies), in a new directory of its own, mode 0700, made beside a target
//! (same filesystem, so a rename can replace it) or in a temporary
//! directory. The private directory is what keeps SQLite's side files safe
//! in a shared directory such as `/tmp`: SQLite opens an existing
//! `-journal` or `-wal` it finds (it would write the pages a scrub removes
//! into another user's file planted there), and nobody else can create a
//! name in a directory of ours. Both are removed, with SQLite's side files,
//! when dropped: on success, error and interrupt alike (a signal cancels
//! the operation, which unwinds through the drop).
//!
//! A process killed outright leaves its files behind; their names say whose
//! they are, `.{stem}.litevault-{what}-{pid}-{random}`, and the owner holds
//! an `flock` on each for as long as it lives, so the next run removes
//! those nobody holds and whose pid is gone ([`remove_stale`]). The lock
//! is what tells across pid namespaces (containers sharing a volume),
//! where a pid names another process or none.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

use crate::error::{Error, Result};
use crate::sys::{process_alive, with_suffix};

/// Longest part of a user's file name kept in a temporary name, so that
/// the whole name fits a file name's 255 bytes.
const MAX_STEM: usize = 160;

/// A temporary database file, removed (with its `-wal`, `-shm`,
/// `-journal` and its private directory) when dropped; its owner's `flock`
/// is held until then.
#[derive(Debug)]
pub struct TempDb {
    path: PathBuf,
    dir: PathBuf,
    held: Option<File>,
}

/// `dir/.{stem}.litevault-{what}-{pid}-{random}`, the stem cut short
/// enough for the name to fit.
pub fn temp_path(dir: &Path, stem: &str, what: &str) -> PathBuf {
    let mut cut = stem.len().min(MAX_STEM);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    dir.join(format!(
        ".{}.litevault-{what}-{}-{}",
        &stem[..cut],
        std::process::id(),
        crate::sys::random_hex(8)
    ))
}

impl TempDb {
    /// Creates a new empty file, mode 0600, in a new private directory in
    /// `dir` (both at a fresh temporary name); returns the guard and the
    /// open file.
    pub fn create(dir: &Path, stem: &str, what: &str) -> Result<(Self, File)> {
        use std::os::unix::fs::DirBuilderExt;
        let private = temp_path(dir, stem, what);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(|e| Error::io("creating", &private, e))?;
        let path = private.join(private.file_name().expect("a temporary name"));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                let _ = std::fs::remove_dir(&private);
                Error::io("creating", &path, e)
            })?;
        // A lock on the open file description: a clone keeps it while the
        // caller closes `file`. (`flock` and SQLite's `fcntl` locks are
        // independent.)
        let held = file
            .try_clone()
            .ok()
            .filter(|f| rustix::fs::flock(f, FlockOperation::NonBlockingLockExclusive).is_ok());
        Ok((
            Self {
                path,
                dir: private,
                held,
            },
            file,
        ))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the file over to its caller: it is no longer removed (it was
    /// renamed into place); its private directory is.
    pub fn keep(mut self) -> PathBuf {
        self.held = None;
        std::mem::take(&mut self.path)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(with_suffix(&self.path, suffix));
            }
        }
        // Empty unless SQLite left something else: then it stays, private.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// True if `name` is a temporary file litevault made (a restore's copy, a
/// clone, an export) or one of its side files: never a database to back up.
pub fn is_temporary(name: &str) -> bool {
    owner_pid(name).is_some()
}

/// The pid in a temporary name litevault made, if `name` is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = &name[name.find(".litevault-")? + ".litevault-".len()..];
    let rest = ["", "-wal", "-shm", "-journal"]
        .iter()
        .find_map(|s| rest.strip_suffix(s).filter(|_| !s.is_empty()))
        .unwrap_or(rest);
    let mut parts = rest.rsplitn(3, '-');
    let random = parts.next()?;
    let pid = parts.next()?;
    let what = parts.next()?;
    (name.starts_with('.')
        && random.len() == 16
        && random.bytes().all(|b| b.is_ascii_hexdigit())
        && !what.is_empty()
        && what.bytes().all(|b| b.is_ascii_lowercase()))
    .then(|| pid.parse().ok())
    .flatten()
}

/// The temporary database a side file (`-wal`, `-shm`, `-journal`) of
/// `name` belongs to, or `name` itself.
fn main_name(name: &str) -> &str {
    ["-wal", "-shm", "-journal"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// True if the directory at `path` (not a symlink) is this user's.
fn owned_by_me(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_dir() && m.uid() == rustix::process::geteuid().as_raw())
}

/// True if a live process holds the `flock` of the temporary file at
/// `path` (its owner, wherever its pid lives).
fn held(path: &Path) -> bool {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let Ok(fd) = rustix::fs::open(path, flags, Mode::empty()) else {
        return false;
    };
    rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err()
}

/// Removes, from `dir`, temporary files of litevault runs that are gone
/// (killed before they could clean up); returns how many.
pub fn remove_stale(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_file()
            && !held(&dir.join(main_name(&name)))
            && !process_alive(pid)
            && std::fs::remove_file(e.path()).is_ok()
        {
            // (Made by litevault before the private directories.)
            removed += 1;
        } else if kind.is_dir()
            && owned_by_me(&e.path())
            && !held(&e.path().join(&name))
            && !process_alive(pid)
            && std::fs::remove_dir_all(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn temporary_files_are_private_fit_a_name_and_go_away() {
        let dir = tempfile::tempdir().unwrap();
        let long = "é".repeat(200);
        let (t, _f) = TempDb::create(dir.path(), &long, "restore").unwrap();
        let name = t.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() <= 255, "{}", name.len());
        assert_eq!(owner_pid(&name), Some(std::process::id()));
        let mode = std::fs::metadata(t.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let private = t.path().parent().unwrap().to_path_buf();
        assert_eq!(private.parent().unwrap(), dir.path());
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(with_suffix(t.path(), "-journal"), b"j").unwrap();
        drop(t);
        assert!(!private.exists());
        // Kept: the file stays where it was renamed, the directory goes.
        let (t, _f) = TempDb::create(dir.path(), "app.db", "restore").unwrap();
        let private = t.path().parent().unwrap().to_path_buf();
        let target = dir.path().join("app.db");
        std::fs::rename(t.path(), &target).unwrap();
        t.keep();
        assert!(target.exists() && !private.exists());
    }

    #[test]
    fn stale_files_of_dead_processes_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir
            .path()
            .join(format!(".app.db.litevault-vacuum-{dead}-0123456789abcdef"));
        let stale_wal = with_suffix(&stale, "-wal");
        let live = dir.path().join(format!(
            ".app.db.litevault-restore-{}-0123456789abcdef",
            std::process::id()
        ));
        let user = dir.path().join("app.db.litevault-notes-1-x");
        for p in [&stale, &stale_wal, &live, &user] {
            std::fs::write(p, b"x").unwrap();
        }
        // Another process's file whose pid this process cannot see (another
        // pid namespace): kept while its owner holds the lock.
        let (held_elsewhere, f) = TempDb::create(dir.path(), "other.db", "clone").unwrap();
        let name = format!(".other.db.litevault-clone-{dead}-fedcba9876543210");
        let foreign = dir.path().join(&name);
        std::fs::rename(held_elsewhere.path(), held_elsewhere.dir.join(&name)).unwrap();
        std::fs::rename(&held_elsewhere.dir, &foreign).unwrap();
        // A private directory of a process that was killed, with a journal.
        let name = format!(".app.db.litevault-restore-{dead}-00112233445566ff");
        let killed = dir.path().join(&name);
        std::fs::create_dir(&killed).unwrap();
        std::fs::write(killed.join(&name), b"x").unwrap();
        std::fs::write(with_suffix(&killed.join(&name), "-journal"), b"x").unwrap();
        assert_eq!(remove_stale(dir.path()), 3);
        assert!(!stale.exists() && !stale_wal.exists() && !killed.exists());
        assert!(live.exists() && user.exists() && foreign.exists());
        drop((held_elsewhere, f));
        assert_eq!(remove_stale(dir.path()), 1);
        assert!(!foreign.exists());
    }
}
