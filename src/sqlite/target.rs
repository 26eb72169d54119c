//! The restore target: where it is, what is there, who has it open, and how
//! it is replaced (SPEC.md, "Restore").
//!
//! * [`resolve_target`] follows a symlink, so the database it points to is
//!   the one restored (with its own `-wal`/`-shm`);
//! * [`inspect`] tells a missing target from a database and from a file
//!   SQLite cannot read (a destroyed header), which is kept, not refused;
//! * [`refuse_if_open`] refuses a target another process has open, or may
//!   have open ([`super::holders`]: by device and inode, and by lock);
//! * [`prepare_copy`] gives the new copy the target's owner, group and mode
//!   (or, for a new target, the mode the source had) and the journal mode
//!   the snapshot recorded;
//! * [`swap`]: checkpoint the old database (so its WAL holds nothing that
//!   is not in its file), remove its `-wal`, `-shm`, `-journal` (or, for a
//!   damaged target, rename it and them aside), make the new copy durable,
//!   rename it over the target, fsync the directory. The target is the old
//!   database until the rename and the new one after it; no WAL of the old
//!   database survives next to the new file;
//! * [`live_copy`] writes into a database that stays open, through SQLite's
//!   online backup API, in one step other connections see whole or not at
//!   all.

use std::fs::{File, Metadata};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::holders::{self, Holders};
use super::verify::checkpoint;
use super::{open_own, sql_error};
use crate::error::{Error, Result, SourceProblem};
use crate::progress::Cancel;
use crate::sys::{fsync, with_suffix};

/// The absolute target with every symlink on its way resolved: a symlink
/// at the target is followed, so the database it points to is the one
/// restored (and its -wal/-shm are the ones handled), and a symlinked
/// directory (a volume, `/var/run`) is replaced by the directory it names,
/// so the later opens with `SQLITE_OPEN_NOFOLLOW` (which SQLite applies to
/// every component) guard only against a symlink put at the target itself.
pub fn resolve_target(target: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf());
    match std::fs::symlink_metadata(&abs) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(&abs).map_err(|_| {
            Error::InvalidInput(format!(
                "target {} is a symlink to a missing file: restore to the file it should point to",
                abs.display()
            ))
        }),
        _ => {
            let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
                return Ok(abs);
            };
            // A missing directory is reported by `check_target`.
            Ok(std::fs::canonicalize(parent).map_or(abs.clone(), |dir| dir.join(name)))
        }
    }
}

/// Checks the target's directory exists and the target, if there, is a
/// regular file; returns the directory.
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
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => Err(Error::InvalidInput(format!(
            "target {} is a directory: give the path of the database file to create or replace",
            target.display()
        ))),
        Ok(m) if !m.is_file() => Err(Error::InvalidInput(format!(
            "target {} is not a regular file (a FIFO, socket or device): give the path of a database file",
            target.display()
        ))),
        _ => Ok(parent),
    }
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

/// What is at the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// Nothing: the restore creates it.
    Missing,
    /// A database SQLite reads; `wal` if its header says WAL mode.
    Database {
        /// WAL mode.
        wal: bool,
    },
    /// A file SQLite cannot read as a database (a destroyed header, not a
    /// database at all); the restore keeps it aside rather than refuse.
    Damaged(String),
}

/// Opens the (resolved) target; a symlink put in its place since it was
/// resolved is refused, not followed.
fn open_target(target: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
}

/// What is at `target` (read without writing to it); an error if SQLite
/// cannot open it at all (its permissions, or a symlink put in its place).
pub fn inspect(target: &Path) -> Result<TargetState> {
    if std::fs::symlink_metadata(target).is_err() {
        return Ok(TargetState::Missing);
    }
    let read = Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .and_then(|c| {
        c.busy_timeout(Duration::from_secs(5))?;
        c.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
    });
    Ok(match read {
        Ok(mode) => TargetState::Database { wal: mode == "wal" },
        Err(e) => match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                TargetState::Damaged(e.to_string())
            }
            Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::PermissionDenied) => {
                return Err(Error::InvalidInput(format!(
                    "target {}: SQLite cannot open it ({e}): check its permissions, and that nothing replaced it with a symlink",
                    target.display()
                )))
            }
            // Busy or locked: a database someone is using.
            _ => TargetState::Database { wal: false },
        },
    })
}

/// Fails if another process has the target open, or may have it open.
pub fn refuse_if_open(target: &Path, state: &TargetState) -> Result<()> {
    match holders::find(target) {
        Holders::None => {}
        Holders::Found(holder) => {
            return Err(Error::TargetBusy {
                path: target.to_path_buf(),
                holder: format!("open by {holder}"),
            })
        }
        Holders::Unknown(why) => {
            return Err(Error::TargetMaybeBusy {
                path: target.to_path_buf(),
                why,
            })
        }
    }
    // Rollback-journal databases: a reader or writer on another host (a
    // shared filesystem) holds a lock we can see by trying to take it.
    if let TargetState::Database { wal: false } = state {
        let locked = open_target(target)
            .and_then(|c| c.execute_batch("BEGIN EXCLUSIVE; COMMIT;"))
            .is_err();
        if locked {
            return Err(Error::TargetBusy {
                path: target.to_path_buf(),
                holder: "locked by another connection".into(),
            });
        }
    }
    Ok(())
}

/// Owner, group and mode for the restored file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// Owner and group to give it (`None`: the restoring user's).
    pub owner: Option<(u32, u32)>,
    /// Permission bits.
    pub mode: u32,
}

impl Ownership {
    /// The existing target's owner, group and mode.
    pub fn of(m: &Metadata) -> Self {
        Self {
            owner: Some((m.uid(), m.gid())),
            mode: m.mode() & 0o7777,
        }
    }

    /// For a new target: the source's mode at backup time, or SQLite's
    /// default for a new database when the snapshot did not record one.
    pub fn new_file(recorded_mode: Option<u32>) -> Self {
        Self {
            owner: None,
            mode: recorded_mode.map_or(0o644, |m| m & 0o7777),
        }
    }
}

/// Gives the verified copy at `tmp` the target's ownership and the journal
/// mode the snapshot recorded (a `VACUUM INTO` image is in rollback mode
/// whatever the source was).
pub fn prepare_copy(tmp: &Path, target: &Path, own: Ownership, journal_mode: &str) -> Result<()> {
    if journal_mode.eq_ignore_ascii_case("wal") {
        let conn = open_own(tmp, false).map_err(|e| {
            Error::source(
                tmp,
                SourceProblem::Unreadable,
                format!("opening the restored copy: {e}"),
            )
        })?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| sql_error(tmp, Duration::ZERO, &e))?;
        if mode != "wal" {
            return Err(Error::Internal(format!(
                "the restored copy stayed in {mode} mode where the snapshot recorded wal"
            )));
        }
        // Closing the last connection checkpoints and removes the WAL.
        drop(conn);
    }
    let file = File::open(tmp).map_err(|e| Error::io("opening", tmp, e))?;
    if let Some((uid, gid)) = own.owner {
        let m = file.metadata().map_err(|e| Error::io("reading", tmp, e))?;
        if (m.uid(), m.gid()) != (uid, gid) {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| {
                if e.raw_os_error() == Some(1) {
                    Error::TargetOwner {
                        path: target.to_path_buf(),
                        uid,
                        gid,
                    }
                } else {
                    Error::io("giving the owner of the target to", tmp, e)
                }
            })?;
        }
    }
    file.set_permissions(std::fs::Permissions::from_mode(own.mode))
        .map_err(|e| Error::io("setting the permissions of", tmp, e))
}

/// `target.damaged-<time>`: where a damaged target is kept.
fn damaged_name(target: &Path) -> PathBuf {
    let time = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let mut p = with_suffix(target, &format!(".damaged-{time}"));
    let mut n = 1;
    while std::fs::symlink_metadata(&p).is_ok() {
        n += 1;
        p = with_suffix(target, &format!(".damaged-{time}-{n}"));
    }
    p
}

/// Replaces `target` by `tmp`, in `dir` (see the module docs). A damaged
/// target is renamed aside with its side files, never deleted; returns
/// where it was kept.
pub fn swap(tmp: &Path, target: &Path, dir: &Path, state: &TargetState) -> Result<Option<PathBuf>> {
    let mut kept = None;
    match state {
        TargetState::Database { .. } => {
            // Opening runs SQLite's recovery (a hot journal is rolled back),
            // and the checkpoint moves any WAL content into the file.
            let conn = open_target(target).map_err(|e| sql_error(target, Duration::ZERO, &e))?;
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
        TargetState::Damaged(_) => {
            let aside = damaged_name(target);
            for suffix in ["-wal", "-journal"] {
                let side = with_suffix(target, suffix);
                if std::fs::symlink_metadata(&side).is_ok() {
                    std::fs::rename(&side, with_suffix(&aside, suffix))
                        .map_err(|e| Error::io("keeping the damaged target's", side, e))?;
                }
            }
            std::fs::rename(target, &aside)
                .map_err(|e| Error::io("keeping the damaged target", target, e))?;
            kept = Some(aside);
        }
        TargetState::Missing => {}
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
    fsync(dir).map_err(|e| Error::io("fsyncing", dir, e))?;
    Ok(kept)
}

/// Writes the copy into the open target with the online backup API;
/// `cancel` stops a wait for a busy target.
pub fn live_copy(tmp: &Path, target: &Path, cancel: &Cancel) -> Result<()> {
    let src = open_own(tmp, true).map_err(|e| {
        Error::source(
            tmp,
            SourceProblem::Unreadable,
            format!("opening the restored copy: {e}"),
        )
    })?;
    let err = |e: rusqlite::Error| sql_error(target, Duration::from_secs(30), &e);
    let mut dst = open_target(target).map_err(err)?;
    dst.busy_timeout(Duration::from_secs(30)).ok();
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
            _ if Instant::now() < deadline => {
                cancel.sleep(
                    Duration::from_millis(50),
                    "restore stopped; the target was not touched",
                )?;
            }
            _ => {
                return Err(Error::TargetBusy {
                    path: target.to_path_buf(),
                    holder: "busy for 30 s: a writer holds it".into(),
                })
            }
        }
    }
}
