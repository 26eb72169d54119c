//! The database side, both ways (../shared/SQLITE-NOTES.md has the facts
//! this relies on, with sources):
//!
//! * [`source`]: a consistent page image of a live database, as an
//!   [`source::ImageSource`] (pages inside one read transaction, or a
//!   `VACUUM INTO` export);
//! * [`target`]: who holds a restore target, the atomic swap that clears
//!   stale `-wal`/`-shm`/`-journal`, and the live copy through SQLite;
//! * [`verify`] runs `integrity_check`/`quick_check`;
//! * [`scrub`]: a restore's `post_sql` run on the copy, confined to it
//!   ([`confine`]: untrusted SQL reaches no other file), then `VACUUM`ed
//!   so none of what it deleted or overwrote remains;
//! * [`sqltext`]: a database as SQL text, like `sqlite3 .dump`;
//! * [`tempdb`]: temporary database files that are removed on every path.
//!
//! This file opens databases and turns SQLite's errors into the library's.

pub mod capture;
pub mod compare;
pub mod confine;
pub mod find;
pub mod holders;
pub mod import;
pub mod planted;
pub mod scrub;
pub mod source;
pub mod sqltext;
pub mod target;
pub mod tempdb;
pub mod verify;
pub mod wal_index;
pub mod wal_tail;
pub mod watch;

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

/// The longest file name a database may have: SQLite creates
/// `NAME-journal` beside it, and a name has at most 255 bytes (NAME_MAX).
pub const MAX_DB_NAME: usize = 255 - "-journal".len();

/// Why SQLite cannot make its side files beside `path` (its name is too
/// long for `NAME-journal`, `NAME-wal`), if that is so.
pub fn name_too_long(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let n = path.file_name()?.as_bytes().len();
    (n > MAX_DB_NAME).then(|| {
        format!(
            "its file name is {n} bytes, and SQLite must create `NAME-journal` or `NAME-wal` beside it within the 255 bytes a name may have: give it a name of at most {MAX_DB_NAME} bytes"
        )
    })
}

/// Turns an SQLite error about the database at `path` into a one-line error.
pub(crate) fn sql_error(path: &Path, lock_timeout: Duration, e: &rusqlite::Error) -> Error {
    let p = path.display();
    if let Some(why) = name_too_long(path).filter(|_| {
        matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::CannotOpen | ErrorCode::DatabaseBusy | ErrorCode::OutOfMemory)
        )
    }) {
        return Error::source(
            path,
            SourceProblem::NameTooLong,
            format!("cannot open database {p}: {why}"),
        );
    }
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

/// Checks that `path` names an SQLite database file, then opens it to be
/// read, with a busy timeout of `lock_timeout`.
///
/// litevault never writes into a database it reads: the connection is
/// read-only, and it never checkpoints on close
/// (`SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`). Otherwise, when it was the last
/// connection, closing it would checkpoint the application's WAL into the
/// file and delete it, which fights applications that checkpoint on their
/// own terms (`wal_autocheckpoint=0`) and tools that read the WAL. The one
/// exception is a hot rollback journal left by a writer that died
/// mid-transaction: only a connection that may write can roll it back (as
/// the application's next connection would), so then, and only then, the
/// database is opened read-write, still without checkpoints on close.
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
    let open = |flags: OpenFlags| -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(&abs, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        conn.busy_timeout(Duration::ZERO)?;
        Ok(conn)
    };
    let err = |e: rusqlite::Error| sql_error(path, lock_timeout, &e);
    let conn = open(OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
    // The first read finds a hot journal, if there is one; it does not
    // wait for a writer (the image's read does, with its own timeout).
    let probe = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()));
    conn.busy_timeout(lock_timeout).map_err(err)?;
    match probe {
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK =>
        {
            drop(conn);
            let conn = open(OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(err)?;
            conn.busy_timeout(lock_timeout).map_err(err)?;
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
                .map_err(err)?;
            Ok(conn)
        }
        // Other failures are the read's to report, in its own words.
        _ => Ok(conn),
    }
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
