//! Files another user may have planted in a shared directory.
//!
//! In a directory every user can write but only owners can delete from
//! (sticky and world-writable: `/tmp`, `/var/tmp`), anyone can create the
//! name a restore or a dump is about to write, before it does: a symlink
//! to a file of the victim's (which a restore would then replace, or a
//! `-wal` SQLite would write through), or a file of the attacker's (whose
//! owner a restore gives to the new copy, handing them the data). Linux's
//! `fs.protected_symlinks` and `fs.protected_regular` refuse such opens
//! where they are on; litevault applies the same rule itself, on every
//! component of the path, so it holds wherever it runs: a name in such a
//! directory must belong to the caller, to root, or to the directory's
//! owner.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Sticky bit.
const STICKY: u32 = 0o1000;
/// Writable by others.
const OTHER_WRITE: u32 = 0o0002;

/// Fails if `path`, or any directory or symlink on the way to it, is a
/// name in a sticky world-writable directory owned by someone other than
/// this user, root and the directory's owner. `what` names the path in
/// the message ("target", "output").
pub fn refuse_planted(path: &Path, what: &str) -> Result<()> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let me = rustix::process::geteuid().as_raw();
    let mut at = PathBuf::new();
    for c in abs.components() {
        let parent = at.clone();
        match c {
            Component::RootDir | Component::Prefix(_) => {
                at.push(c);
                continue;
            }
            Component::CurDir => continue,
            Component::ParentDir => {
                at.pop();
                continue;
            }
            Component::Normal(n) => at.push(n),
        }
        let Ok(entry) = std::fs::symlink_metadata(&at) else {
            // Missing: nothing planted (yet); later components are missing too.
            return Ok(());
        };
        let Ok(dir) = std::fs::metadata(&parent) else {
            return Ok(());
        };
        let shared = dir.permissions().mode() & (STICKY | OTHER_WRITE) == STICKY | OTHER_WRITE;
        let owner = entry.uid();
        if shared && owner != me && owner != 0 && owner != dir.uid() {
            let kind = if entry.file_type().is_symlink() {
                "a symlink"
            } else if entry.is_dir() {
                "a directory"
            } else {
                "a file"
            };
            return Err(Error::InvalidInput(format!(
                "{what} {}: {} is {kind} owned by uid {owner} in {}, a directory every user can write (sticky, world-writable): another user may have planted it, so litevault will not write through it or give it the data; use a directory only you can write, or remove it",
                path.display(),
                at.display(),
                parent.display()
            )));
        }
    }
    Ok(())
}

/// [`refuse_planted`] for a database path and the `-wal`, `-shm` and
/// `-journal` names beside it, which SQLite opens and writes.
pub fn refuse_planted_database(path: &Path, what: &str) -> Result<()> {
    refuse_planted(path, what)?;
    for side in ["-wal", "-shm", "-journal"] {
        refuse_planted(&crate::sys::with_suffix(path, side), what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{lchown, symlink};

    #[test]
    fn names_of_others_in_sticky_directories_are_refused() {
        if !rustix::process::geteuid().is_root() {
            return; // needs to give files to another user
        }
        let root = tempfile::tempdir().unwrap();
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let victim = root.path().join("victim.db");
        std::fs::write(&victim, b"x").unwrap();
        // Someone else's symlink, file, and symlinked directory.
        let link = shared.join("then.db");
        symlink(&victim, &link).unwrap();
        lchown(&link, Some(65534), Some(65534)).unwrap();
        let file = shared.join("mine.db");
        std::fs::write(&file, b"").unwrap();
        lchown(&file, Some(65534), Some(65534)).unwrap();
        let dir_link = shared.join("d");
        symlink(root.path(), &dir_link).unwrap();
        lchown(&dir_link, Some(65534), Some(65534)).unwrap();
        for p in [link.clone(), file.clone(), dir_link.join("victim.db")] {
            let e = refuse_planted(&p, "target").unwrap_err().to_string();
            assert!(e.contains("uid 65534") && e.contains("planted"), "{e}");
        }
        // A side file planted beside an innocent name.
        let wal = shared.join("app.db-wal");
        symlink(&victim, &wal).unwrap();
        lchown(&wal, Some(65534), Some(65534)).unwrap();
        assert!(refuse_planted_database(&shared.join("app.db"), "target").is_err());
        // Our own names, names not there yet, and other directories pass.
        lchown(&link, Some(0), Some(0)).unwrap();
        refuse_planted(&link, "target").unwrap();
        refuse_planted(&shared.join("new.db"), "target").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        refuse_planted(&file, "target").unwrap();
    }
}
