//! Temporary database files: plaintext, so made with care. Each is created
//! new (never replacing anything), mode 0600 (no wider than any database it
//! copies), beside a target (same filesystem, so a rename can replace it)
//! or in a temporary directory, and removed with SQLite's side files when
//! dropped: on success, error and interrupt alike (a signal cancels the
//! operation, which unwinds through the drop).
//!
//! A process killed outright leaves its files behind; their names say whose
//! they are, `.{stem}.litevault-{what}-{pid}-{random}`, so the next run
//! removes those whose process is gone ([`remove_stale`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys::{process_alive, with_suffix};

/// Longest part of a user's file name kept in a temporary name, so that
/// the whole name fits a file name's 255 bytes.
const MAX_STEM: usize = 160;

/// A temporary database file, removed (with its `-wal`, `-shm`,
/// `-journal`) when dropped.
#[derive(Debug)]
pub struct TempDb(PathBuf);

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
    /// Creates a new empty file, mode 0600, at a fresh temporary name in
    /// `dir`; returns the guard and the open file.
    pub fn create(dir: &Path, stem: &str, what: &str) -> Result<(Self, File)> {
        let path = temp_path(dir, stem, what);
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("creating", &path, e))?;
        Ok((Self(path), file))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Hands the file over to its caller: it is no longer removed (it was
    /// renamed into place).
    pub fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(with_suffix(&self.0, suffix));
        }
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
        if pid != std::process::id()
            && !process_alive(pid)
            && e.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(e.path()).is_ok()
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
        let p = t.path().to_path_buf();
        drop(t);
        assert!(!p.exists());
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
        assert_eq!(remove_stale(dir.path()), 2);
        assert!(!stale.exists() && !stale_wal.exists());
        assert!(live.exists() && user.exists());
    }
}
