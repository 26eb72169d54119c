//! Who else has a database open (SPEC.md, "Restore": holder detection).
//!
//! A file is identified by its device and inode, never by its path: an
//! application that opened the database through a hard link, a bind mount
//! or a container volume holds the same inode under another name. Three
//! sources are read, all on the local machine:
//!
//! 1. every process's open files (`/proc/PID/fd`), each compared by device
//!    and inode with the database and its `-wal`, `-shm` and `-journal`;
//! 2. the kernel's list of POSIX locks (`/proc/locks`, readable by anyone):
//!    every connection to a WAL database holds a lock on its `-shm` for as
//!    long as it is open, and every connection inside a transaction holds
//!    one on the database file;
//! 3. a process whose open files this user may not read (another user's)
//!    and which could have opened the file (root, the file's owner, or a
//!    user its permissions admit) makes the answer unknown, unless the
//!    database is in WAL mode, where (2) sees every connection.
//!
//! The caller refuses an unknown answer as it refuses a holder.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::sys::with_suffix;

/// The answer to "does another process have this database open?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holders {
    /// No other process has it open.
    None,
    /// This process has it open ("pid 42 (app)").
    Found(String),
    /// It cannot be ruled out, and why.
    Unknown(String),
}

/// A file's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(m: &fs::Metadata) -> FileId {
    FileId {
        dev: m.dev(),
        ino: m.ino(),
    }
}

fn comm(pid: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The ids in `/proc/PID/status` lines `Uid:`/`Gid:`/`Groups:` (effective
/// uid and gid, supplementary groups).
fn credentials(pid: &str) -> Option<(u32, u32, Vec<u32>)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let uid = *field("Uid:").get(1)?;
    let gid = *field("Gid:").get(1)?;
    Some((uid, gid, field("Groups:")))
}

/// True if a process with these credentials could open a file with this
/// metadata (for reading or writing).
fn could_open(m: &fs::Metadata, (uid, gid, groups): &(u32, u32, Vec<u32>)) -> bool {
    let mode = m.mode();
    *uid == 0
        || *uid == m.uid()
        || (mode & 0o060 != 0 && (*gid == m.gid() || groups.contains(&m.gid())))
        || mode & 0o006 != 0
}

/// Processes holding a POSIX lock on one of `ids`, from `/proc/locks`.
fn lock_holders(ids: &HashSet<FileId>, me: u32) -> Vec<String> {
    let Ok(text) = fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let wanted: HashSet<(u32, u32, u64)> = ids
        .iter()
        .map(|id| (rustix::fs::major(id.dev), rustix::fs::minor(id.dev), id.ino))
        .collect();
    let mut out = Vec::new();
    for line in text.lines() {
        // "1: POSIX  ADVISORY  READ 2601 fe:00:10010733 128 128", blocked
        // waiters with "->" after the number.
        let fields: Vec<&str> = line.split_whitespace().filter(|f| *f != "->").collect();
        let (Some(pid), Some(dev)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let mut parts = dev.split(':');
        let (Some(maj), Some(min), Some(ino)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(maj), Ok(min), Ok(ino)) = (
            u32::from_str_radix(maj, 16),
            u32::from_str_radix(min, 16),
            ino.parse::<u64>(),
        ) else {
            continue;
        };
        if pid.parse::<u32>().is_ok_and(|p| p != me && p != 0) && wanted.contains(&(maj, min, ino))
        {
            out.push((*pid).to_string());
        }
    }
    out
}

/// Who else has the database at `db` (or its side files) open.
pub fn find(db: &Path) -> Holders {
    if fs::metadata(db).is_err() {
        return Holders::None;
    }
    let mut ids = HashSet::new();
    let mut metas = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        if let Ok(m) = fs::metadata(with_suffix(db, suffix)) {
            ids.insert(file_id(&m));
            metas.push(m);
        }
    }
    let me = std::process::id();
    if let Some(pid) = lock_holders(&ids, me).first() {
        return Holders::Found(format!(
            "pid {pid} ({}), which holds a lock on it",
            comm(pid)
        ));
    }
    let wal = fs::metadata(with_suffix(db, "-shm")).is_ok() || is_wal(db);
    let Ok(procs) = fs::read_dir("/proc") else {
        return Holders::Unknown("/proc cannot be read, so its open files cannot be listed".into());
    };
    let mut unreadable = Vec::new();
    for entry in procs.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me.to_string() {
            continue;
        }
        let fds = match fs::read_dir(entry.path().join("fd")) {
            Ok(fds) => fds,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                if credentials(&pid).is_some_and(|c| metas.iter().any(|m| could_open(m, &c))) {
                    unreadable.push(pid);
                }
                continue;
            }
            // Gone meanwhile, or a kernel thread.
            Err(_) => continue,
        };
        for fd in fds.flatten() {
            if fs::metadata(fd.path()).is_ok_and(|m| ids.contains(&file_id(&m))) {
                return Holders::Found(format!("pid {pid} ({})", comm(&pid)));
            }
        }
    }
    // Every connection to a WAL database shows in /proc/locks.
    if unreadable.is_empty() || wal {
        return Holders::None;
    }
    let shown: Vec<&str> = unreadable.iter().take(5).map(String::as_str).collect();
    Holders::Unknown(format!(
        "the open files of {} process(es) of other users (pid {}{}) cannot be read by this user, and one may have it open",
        unreadable.len(),
        shown.join(", "),
        if unreadable.len() > shown.len() { ", ..." } else { "" }
    ))
}

/// True if the database file's header says WAL mode (bytes 18 and 19 are 2).
fn is_wal(db: &Path) -> bool {
    let mut head = [0u8; 20];
    fs::File::open(db)
        .and_then(|mut f| super::read_up_to(&mut f, &mut head))
        .is_ok_and(|n| n == 20 && head[18] == 2 && head[19] == 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_through_a_hard_link_is_found_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("PRAGMA journal_mode=DELETE; CREATE TABLE t(x);")
            .unwrap();
        let link = dir.path().join("other-name.db");
        fs::hard_link(&db, &link).unwrap();
        assert_eq!(find(&db), Holders::None);
        // A child process holding the file open through the other name.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$0\"; sleep 30")
            .arg(&link)
            .spawn()
            .unwrap();
        let mut found = Holders::None;
        for _ in 0..100 {
            found = find(&db);
            if found != Holders::None {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            matches!(&found, Holders::Found(h) if h.contains(&child.id().to_string())),
            "{found:?}"
        );
    }
}
