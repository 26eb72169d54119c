//! The database side, both ways (../shared/SQLITE-NOTES.md has the facts
//! this relies on, with sources):
//!
//! * [`source`]: a consistent page image of a live database, as an
//!   [`source::ImageSource`] (pages inside one read transaction, or a
//!   `VACUUM INTO` export);
//! * [`target`]: who holds a restore target, the atomic swap that clears
//!   stale `-wal`/`-shm`/`-journal`, and the live copy through SQLite;
//! * [`verify`]: `integrity_check`/`quick_check`, and running a scrub
//!   script on a restored copy;
//! * [`sqltext`]: a database as SQL text, like `sqlite3 .dump`;
//! * [`tempdb`]: temporary database files that are removed on every path.
//!
//! This file opens databases and turns SQLite's errors into the library's.

pub mod compare;
pub mod find;
pub mod holders;
pub mod import;
pub mod source;
pub mod sqltext;
pub mod target;
pub mod tempdb;
pub mod verify;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::{Error, Result, SourceProblem};
use crate::progress::Cancel;

/// The header every non-empty SQLite database starts with.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Turns an SQLite error about the database at `path` into a one-line error.
pub(crate) fn sql_error(path: &Path, lock_timeout: Duration, e: &rusqlite::Error) -> Error {
    let p = path.display();
    let (problem, message) = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => (
            SourceProblem::Busy,
            format!(
                "database {p} stayed locked by another connection for more than the lock timeout ({:.1} s)",
                lock_timeout.as_secs_f64()
            ),
        ),
        Some(ErrorCode::NotADatabase) => (
            SourceProblem::NotSqlite,
            format!("{p} is not an SQLite database (SQLite: {e})"),
        ),
        Some(ErrorCode::DatabaseCorrupt) => (
            SourceProblem::Corrupt,
            format!("database {p} is corrupt (SQLite: {e})"),
        ),
        Some(ErrorCode::CannotOpen) => (
            SourceProblem::Unreadable,
            format!("cannot open database {p} (SQLite: {e})"),
        ),
        Some(ErrorCode::OperationInterrupted) => {
            return Error::Interrupted(format!("reading {p}"))
        }
        _ => (SourceProblem::Unreadable, format!("reading database {p}: {e}")),
    };
    Error::source(path, problem, message)
}

/// True if the file at `path` starts with SQLite's header.
pub fn has_sqlite_header(path: &Path) -> bool {
    let mut head = [0u8; 16];
    File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .is_ok_and(|n| n == 16 && &head == SQLITE_MAGIC)
}

/// Reads up to `buf.len()` bytes (fewer only at the end of `f`).
pub(crate) fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Checks that `path` names an SQLite database file, then opens it with a
/// busy timeout of `lock_timeout`. Opening never modifies the database.
pub fn open_database(path: &Path, lock_timeout: Duration) -> Result<Connection> {
    let p = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::source(
                path,
                SourceProblem::Missing,
                format!("database {p} does not exist"),
            )
        } else {
            Error::source(
                path,
                SourceProblem::Unreadable,
                format!("cannot read database {p}: {e}"),
            )
        }
    })?;
    if meta.is_dir() {
        return Err(Error::source(
            path,
            SourceProblem::NotAFile,
            format!("{p} is a directory, not an SQLite database file"),
        ));
    }
    // A FIFO would block the open forever; a device is no database.
    if !meta.is_file() {
        return Err(Error::source(
            path,
            SourceProblem::NotAFile,
            format!("{p} is not a regular file (a FIFO, socket or device), so not an SQLite database file"),
        ));
    }
    let mut head = [0u8; 16];
    let n = File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .map_err(|e| {
            Error::source(
                path,
                SourceProblem::Unreadable,
                format!("cannot read database {p}: {e}"),
            )
        })?;
    if n > 0 && (n < 16 || &head != SQLITE_MAGIC) {
        return Err(Error::source(
            path,
            SourceProblem::NotSqlite,
            format!("{p} is not an SQLite database: it does not start with \"SQLite format 3\""),
        ));
    }
    // An absolute path and no URI flag: a file named `file:x.db` is a
    // file, not a URI (SQLite may be built to read URIs regardless).
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let conn = Connection::open_with_flags(
        &abs,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error(path, lock_timeout, &e))?;
    conn.busy_timeout(lock_timeout)
        .map_err(|e| sql_error(path, lock_timeout, &e))?;
    Ok(conn)
}

/// While alive, interrupts every statement of a connection once `cancel`
/// is set, so a long query, a `VACUUM INTO` or a wait for a lock stops at
/// Ctrl-C or SIGTERM (SQLite then reports `SQLITE_INTERRUPT`).
pub struct InterruptOnCancel {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Watches `cancel` for the statements of `conn` (see [`InterruptOnCancel`]).
pub fn interrupt_on_cancel(conn: &Connection, cancel: &Cancel) -> InterruptOnCancel {
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = conn.get_interrupt_handle();
    let cancel = cancel.clone();
    let thread = std::thread::Builder::new()
        .name("litevault-sql-interrupt".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(20))
            {
                if cancel.is_cancelled() {
                    handle.interrupt();
                }
            }
        })
        .ok();
    InterruptOnCancel {
        stop: Some(stop),
        thread,
    }
}

impl Drop for InterruptOnCancel {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens a database file litevault itself made (a restored copy, an
/// export), read-write, without URI parsing.
pub(crate) fn open_own(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let mode = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
}
