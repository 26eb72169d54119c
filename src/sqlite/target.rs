//! The restore target: where it is, who has it open, and how it is
//! replaced (SPEC.md, "Restore").
//!
//! * [`resolve_target`] follows a symlink, so the database it points to is
//!   the one restored (with its own `-wal`/`-shm`);
//! * [`refuse_if_open`] refuses a target another process has open (found in
//!   `/proc`) or locked (a rollback-journal lock we can see);
//! * [`swap`]: checkpoint the old database (so its WAL holds nothing that
//!   is not in its file), remove its `-wal`, `-shm`, `-journal`, make the
//!   new copy durable, rename it over the target, fsync the directory. The
//!   target is the old database until the rename and the new one after it;
//!   no WAL of the old database survives next to the new file;
//! * [`live_copy`] writes into a database that stays open, through SQLite's
//!   online backup API, in one step other connections see whole or not at
//!   all.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::verify::checkpoint;
use super::{open_own, sql_error};
use crate::error::{Error, Result, SourceProblem};
use crate::sys::{fsync, with_suffix};

/// The absolute target; a symlink is followed, so the database it points to
/// is the one restored (and its -wal/-shm are the ones handled).
pub fn resolve_target(target: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
    match std::fs::symlink_metadata(&abs) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(&abs).map_err(|_| {
            Error::InvalidInput(format!(
                "target {} is a symlink to a missing file: restore to the file it should point to",
                abs.display()
            ))
        }),
        _ => Ok(abs),
    }
}

/// Checks the target's directory exists and the target is not a directory;
/// returns the directory.
pub fn check_target(target: &Path) -> Result<PathBuf> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    match std::fs::metadata(&parent) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::InvalidInput(format!(
                "target directory {} is not a directory",
                parent.display()
            )))
        }
        Err(_) => {
            return Err(Error::InvalidInput(format!(
                "target directory {} does not exist: create it first",
                parent.display()
            )))
        }
    }
    if std::fs::metadata(target).is_ok_and(|m| m.is_dir()) {
        return Err(Error::InvalidInput(format!(
            "target {} is a directory: give the path of the database file to create or replace",
            target.display()
        )));
    }
    Ok(parent)
}

/// Fails if the filesystem of `dir` has less than `needed` bytes free (plus
/// a little for SQLite's journal while verifying).
pub fn check_space(dir: &Path, needed: u64, what: &'static str) -> Result<()> {
    let st = rustix::fs::statvfs(dir)
        .map_err(|e| Error::io("checking the free space of", dir, e.into()))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let want = needed + needed / 100 + (1 << 20);
    if free < want {
        return Err(Error::NoSpace {
            path: dir.to_path_buf(),
            what,
            needed: want,
            free,
        });
    }
    Ok(())
}

/// Another process that has `target` (or its -wal/-shm/-journal) open, as
/// "pid N (name)". Reads /proc on Linux; elsewhere finds nothing.
pub fn process_holding(target: &Path) -> Option<String> {
    let canon = std::fs::canonicalize(target).ok()?;
    let names: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|s| with_suffix(&canon, s))
        .collect();
    let me = std::process::id().to_string();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = proc_entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| names.contains(&l)) {
                let comm =
                    std::fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
                return Some(format!("pid {pid} ({})", comm.trim()));
            }
        }
    }
    None
}

fn open_target(target: &Path) -> Result<Connection> {
    Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        Error::source(
            target,
            SourceProblem::Unreadable,
            format!("cannot open target {}: {e}", target.display()),
        )
    })
}

/// Fails if another connection or process has the target open.
pub fn refuse_if_open(target: &Path) -> Result<()> {
    if let Some(holder) = process_holding(target) {
        return Err(Error::TargetBusy {
            path: target.to_path_buf(),
            holder: format!("open by {holder}"),
        });
    }
    // Rollback-journal databases: a reader or writer elsewhere (another
    // host on a shared filesystem, another user) holds a lock we can see.
    let conn = open_target(target)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| sql_error(target, Duration::ZERO, &e))?;
    if mode != "wal" && conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;").is_err() {
        return Err(Error::TargetBusy {
            path: target.to_path_buf(),
            holder: "locked by another connection".into(),
        });
    }
    Ok(())
}

/// Replaces `target` by `tmp`, in `dir` (see the module docs).
pub fn swap(tmp: &Path, target: &Path, dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(target).is_ok() {
        // Opening runs SQLite's recovery (a hot journal is rolled back), and
        // the checkpoint moves any WAL content into the file.
        let conn = open_target(target)?;
        conn.busy_timeout(Duration::from_secs(5)).ok();
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|e| sql_error(target, Duration::from_secs(5), &e))?;
        checkpoint(&conn).map_err(|e| {
            Error::source(
                target,
                SourceProblem::Busy,
                format!("target {}: {e}", target.display()),
            )
        })?;
        drop(conn);
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let p = with_suffix(target, suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing stale", p, e)),
        }
    }
    // The copy may have changed since it was checked (a scrub, whose SQL
    // may even turn SQLite's own syncing off): make it durable first.
    fsync(tmp).map_err(|e| Error::io("fsyncing", tmp, e))?;
    fsync(dir).map_err(|e| Error::io("fsyncing", dir, e))?;
    std::fs::rename(tmp, target)
        .map_err(|e| Error::io("renaming the restored copy to", target, e))?;
    fsync(dir).map_err(|e| Error::io("fsyncing", dir, e))
}

/// Writes the copy into the open target with the online backup API.
pub fn live_copy(tmp: &Path, target: &Path) -> Result<()> {
    let src = open_own(tmp, true).map_err(|e| {
        Error::source(
            tmp,
            SourceProblem::Unreadable,
            format!("opening the restored copy: {e}"),
        )
    })?;
    let mut dst = open_target(target)?;
    dst.busy_timeout(Duration::from_secs(30)).ok();
    let err = |e: rusqlite::Error| sql_error(target, Duration::from_secs(30), &e);
    let mode: String = dst
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(err)?;
    let dst_ps: i64 = dst
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(err)?;
    let src_ps: i64 = src
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(err)?;
    if mode == "wal" && dst_ps != src_ps {
        return Err(Error::LivePageSize {
            path: target.to_path_buf(),
            target_page_size: dst_ps,
            snapshot_page_size: src_ps,
        });
    }
    let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(err)?;
    // All pages in one step: one write transaction that other connections
    // see entirely or not at all. Busy: retry for up to 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match backup.step(-1).map_err(err)? {
            rusqlite::backup::StepResult::Done => return Ok(()),
            rusqlite::backup::StepResult::More => {}
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                return Err(Error::TargetBusy {
                    path: target.to_path_buf(),
                    holder: "busy for 30 s: a writer holds it".into(),
                })
            }
        }
    }
}
