//! Reading a consistent image of a live SQLite database (SPEC.md,
//! "Snapshots"; ../shared/SQLITE-NOTES.md).
//!
//! * [`PageReader`] (`--strategy pages`): inside **one read transaction**,
//!   reads every page through the `sqlite_dbpage` virtual table (compiled
//!   into the bundled SQLite, see `.cargo/config.toml`), in page order, with
//!   no temporary copy. The image is the database as of that transaction,
//!   committed WAL content included; WAL-mode writers keep committing while
//!   it runs, and it never restarts. The lock-byte page of databases over
//!   1 GiB, which SQLite never uses and `sqlite_dbpage` refuses to read, is
//!   imaged as zeros.
//! * [`VacuumExport`] (`--strategy vacuum`): `VACUUM INTO` a temporary file,
//!   fsynced (SQLite does not), read page by page, and deleted when dropped,
//!   on success, error or interrupt alike.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::BlobId;

/// What a backup records about the image besides its pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageMeta {
    /// Page size in bytes.
    pub page_size: u32,
    /// Pages in the image.
    pub page_count: u64,
    /// Journal mode of the source.
    pub journal_mode: String,
    /// Version of the SQLite library reading it.
    pub sqlite_version: String,
    /// Keyed hash of the schema rows.
    pub schema_hash: BlobId,
    /// `PRAGMA quick_check` of the source, when asked for.
    pub quick_check: Option<String>,
    /// File change counter (header offset 24) of page 1.
    pub change_counter: u32,
}

/// The header every non-empty SQLite database starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Byte offset of the lock-byte page.
const PENDING_BYTE: u64 = 0x4000_0000;

/// Turns an SQLite error about `path` into a one-line message with advice.
pub(crate) fn sql_error(path: &Path, lock_timeout: Duration, e: &rusqlite::Error) -> Error {
    let p = path.display();
    let code = e.sqlite_error_code();
    Error::Source(match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "database {p} stayed locked by another connection for more than --lock-timeout ({:.1} s): retry when its writer is done, or raise --lock-timeout",
            lock_timeout.as_secs_f64()
        ),
        Some(ErrorCode::NotADatabase) => format!("{p} is not an SQLite database (SQLite: {e})"),
        Some(ErrorCode::DatabaseCorrupt) => format!(
            "database {p} is corrupt (SQLite: {e}); inspect it with `sqlite3 {p} 'PRAGMA integrity_check'`"
        ),
        Some(ErrorCode::CannotOpen) => format!("cannot open database {p} (SQLite: {e}): check the path and permissions"),
        Some(ErrorCode::OperationInterrupted) => return Error::Interrupted(format!("reading {p}")),
        _ => format!("reading database {p}: {e}"),
    })
}

/// Checks that `path` names an SQLite database file, then opens it with a
/// busy timeout of `lock_timeout`. Opening never modifies the database.
pub fn open_database(path: &Path, lock_timeout: Duration) -> Result<Connection> {
    let p = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::Source(if e.kind() == std::io::ErrorKind::NotFound {
            format!("database {p} does not exist: check the path")
        } else {
            format!("cannot read database {p}: {e}")
        })
    })?;
    if meta.is_dir() {
        return Err(Error::Source(format!(
            "{p} is a directory, not an SQLite database file"
        )));
    }
    let mut head = [0u8; 16];
    let n = File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .map_err(|e| Error::Source(format!("cannot read database {p}: {e}")))?;
    if n > 0 && (n < 16 || &head != SQLITE_MAGIC) {
        return Err(Error::Source(format!(
            "{p} is not an SQLite database: it does not start with \"SQLite format 3\""
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| sql_error(path, lock_timeout, &e))?;
    conn.busy_timeout(lock_timeout)
        .map_err(|e| sql_error(path, lock_timeout, &e))?;
    Ok(conn)
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Keyed hash of the schema: every `sqlite_schema` row in rowid order.
fn schema_hash(conn: &Connection, key: &MasterKey) -> rusqlite::Result<BlobId> {
    let mut h = key.blob_hasher();
    let mut stmt = conn.prepare(
        "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema ORDER BY rowid",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        for i in 0..4 {
            let s = row.get_ref(i)?.as_str().unwrap_or("");
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    }
    Ok(BlobId::from_bytes(*h.finalize().as_bytes()))
}

/// Runs `PRAGMA quick_check`; anything but "ok" is an error naming the
/// first problems.
fn quick_check(conn: &Connection, path: &Path, lock_timeout: Duration) -> Result<String> {
    let err = |e: rusqlite::Error| sql_error(path, lock_timeout, &e);
    let mut stmt = conn.prepare("PRAGMA quick_check").map_err(err)?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(err)?;
    let result = rows.join("; ");
    if result != "ok" {
        let shown: String = result.chars().take(300).collect();
        return Err(Error::Source(format!(
            "database {} failed PRAGMA quick_check: {shown} (repair it first, or back up without --verify-source to keep the damaged state)",
            path.display()
        )));
    }
    Ok(result)
}

/// True if this SQLite has the `sqlite_dbpage` virtual table.
pub fn has_dbpage(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM pragma_module_list WHERE name = 'sqlite_dbpage'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// The 1-based number of the lock-byte page, if the image has one.
fn lock_byte_page(page_size: u32, page_count: u64) -> Option<u64> {
    let pg = PENDING_BYTE / u64::from(page_size) + 1;
    (pg <= page_count).then_some(pg)
}

/// Starts the read transaction (BEGIN, then a first read, which takes the
/// lock) and returns the page size and count it sees; everything read
/// after it sees the same state. The first read is retried every half
/// millisecond until `lock_timeout`: SQLite's own busy handler backs off to
/// 100 ms sleeps, and in rollback-journal mode a reader that sleeps that
/// long can keep missing the short gaps between a busy writer's commits.
/// The connection's busy timeout is `lock_timeout` afterwards.
fn begin_read(conn: &Connection, lock_timeout: Duration) -> rusqlite::Result<(i64, i64)> {
    conn.busy_timeout(Duration::from_millis(1))?;
    let deadline = std::time::Instant::now() + lock_timeout;
    let first = loop {
        conn.execute_batch("BEGIN DEFERRED")?;
        match conn.query_row(
            "SELECT page_size, page_count FROM pragma_page_size, pragma_page_count",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ) {
            Ok(v) => break Ok(v),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                let busy = matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                );
                if !busy || std::time::Instant::now() >= deadline {
                    break Err(e);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    };
    conn.busy_timeout(lock_timeout)?;
    first
}

/// Reads a consistent page image inside one read transaction.
pub struct PageReader<'c> {
    conn: &'c Connection,
    path: PathBuf,
    lock_timeout: Duration,
    meta: ImageMeta,
    open: bool,
}

impl<'c> PageReader<'c> {
    /// Begins the read transaction and reads the image's metadata in it.
    pub fn begin(
        conn: &'c Connection,
        path: &Path,
        key: &MasterKey,
        verify: bool,
        lock_timeout: Duration,
    ) -> Result<Self> {
        let err = |e: rusqlite::Error| sql_error(path, lock_timeout, &e);
        let (page_size, page_count) = begin_read(conn, lock_timeout).map_err(err)?;
        let mut reader = Self {
            conn,
            path: path.to_path_buf(),
            lock_timeout,
            meta: ImageMeta {
                page_size: 0,
                page_count: 0,
                journal_mode: String::new(),
                sqlite_version: rusqlite::version().to_string(),
                schema_hash: BlobId::default(),
                quick_check: None,
                change_counter: 0,
            },
            open: true,
        };
        reader.meta.page_size = u32::try_from(page_size)
            .map_err(|_| Error::Source(format!("invalid page size {page_size}")))?;
        reader.meta.page_count = u64::try_from(page_count).unwrap_or(0);
        if !has_dbpage(conn).map_err(err)? {
            return Err(Error::Source(
                "this SQLite library lacks the sqlite_dbpage virtual table: use --strategy vacuum"
                    .into(),
            ));
        }
        reader.meta.journal_mode = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(err)?;
        reader.meta.schema_hash = schema_hash(conn, key).map_err(err)?;
        if verify {
            reader.meta.quick_check = Some(quick_check(conn, path, lock_timeout)?);
        }
        Ok(reader)
    }

    /// The image's metadata (the change counter is filled in by
    /// [`PageReader::for_each_page`]).
    pub fn meta(&self) -> &ImageMeta {
        &self.meta
    }

    /// Calls `f` with every page, in order.
    pub fn for_each_page(&mut self, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let err = |e: rusqlite::Error| sql_error(&self.path, self.lock_timeout, &e);
        let ps = self.meta.page_size as usize;
        let lock_page = lock_byte_page(self.meta.page_size, self.meta.page_count);
        let mut stmt = self
            .conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main') WHERE pgno <> ?1")
            .map_err(err)?;
        let mut rows = stmt.query([lock_page.unwrap_or(0)]).map_err(err)?;
        let mut expected = 1u64;
        let zeros = vec![0u8; ps];
        while let Some(row) = rows.next().map_err(err)? {
            let pgno = u64::try_from(row.get::<_, i64>(0).map_err(err)?).unwrap_or(0);
            if Some(expected) == lock_page && pgno == expected + 1 {
                f(&zeros)?;
                expected += 1;
            }
            if pgno != expected {
                return Err(Error::Source(format!(
                    "database {} returned page {pgno} where page {expected} was expected",
                    self.path.display()
                )));
            }
            let data = row
                .get_ref(1)
                .map_err(err)?
                .as_blob()
                .map_err(|e| err(e.into()))?;
            if data.len() != ps {
                return Err(Error::Source(format!(
                    "database {} page {pgno} has {} bytes, not the page size {ps}",
                    self.path.display(),
                    data.len()
                )));
            }
            if pgno == 1 {
                self.meta.change_counter =
                    u32::from_be_bytes(data[24..28].try_into().expect("4 bytes"));
            }
            f(data)?;
            expected += 1;
        }
        if expected != self.meta.page_count + 1 {
            return Err(Error::Source(format!(
                "database {} has {} pages but sqlite_dbpage returned {}",
                self.path.display(),
                self.meta.page_count,
                expected - 1
            )));
        }
        Ok(())
    }

    /// Ends the read transaction.
    pub fn finish(mut self) -> Result<ImageMeta> {
        self.open = false;
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| sql_error(&self.path, self.lock_timeout, &e))?;
        Ok(self.meta.clone())
    }
}

impl Drop for PageReader<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A `VACUUM INTO` export in a temporary file, deleted when dropped.
pub struct VacuumExport {
    path: PathBuf,
    meta: ImageMeta,
}

impl VacuumExport {
    /// Exports the database behind `conn` into a new file in `temp_dir`.
    /// `cancel`, when set, interrupts the export.
    pub fn create(
        conn: &Connection,
        source: &Path,
        temp_dir: &Path,
        key: &MasterKey,
        verify: bool,
        lock_timeout: Duration,
        cancel: Option<&Arc<AtomicBool>>,
    ) -> Result<Self> {
        let err = |e: rusqlite::Error| sql_error(source, lock_timeout, &e);
        let mut rnd = [0u8; 8];
        crate::crypto::random_bytes(&mut rnd)?;
        let path = temp_dir.join(format!(".litevault-vacuum-{}.db", hex::encode(rnd)));
        // From here on, dropping `export` deletes the file.
        let mut export = Self {
            path,
            meta: ImageMeta {
                page_size: 0,
                page_count: 0,
                journal_mode: conn
                    .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .map_err(err)?,
                sqlite_version: rusqlite::version().to_string(),
                schema_hash: BlobId::default(),
                quick_check: None,
                change_counter: 0,
            },
        };
        if verify {
            export.meta.quick_check = Some(quick_check(conn, source, lock_timeout)?);
        }
        let target = export.path.to_str().ok_or_else(|| {
            Error::InvalidInput(format!(
                "temporary directory {} is not valid UTF-8",
                temp_dir.display()
            ))
        })?;
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            if let Some(cancel) = cancel {
                let handle = conn.get_interrupt_handle();
                let done = &done;
                s.spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        if cancel.load(Ordering::Relaxed) {
                            handle.interrupt();
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                });
            }
            let r = conn.execute("VACUUM INTO ?1", [target]);
            done.store(true, Ordering::Relaxed);
            r
        })
        .map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::DiskFull) => Error::Source(format!(
                "VACUUM INTO {} failed (SQLite: {e}): choose a writable temporary directory with enough space (--temp-dir)",
                temp_dir.display()
            )),
            _ => err(e),
        })?;
        let file = File::open(&export.path)
            .map_err(|e| Error::io(format!("opening export {}", export.path.display()), e))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("fsyncing export {}", export.path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("reading the export's size", e))?
            .len();
        let ro = Connection::open_with_flags(
            &export.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        let page_size: i64 = ro
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(err)?;
        export.meta.page_size = u32::try_from(page_size)
            .map_err(|_| Error::Source(format!("invalid page size {page_size}")))?;
        export.meta.schema_hash = schema_hash(&ro, key).map_err(err)?;
        drop(ro);
        if len % u64::from(export.meta.page_size) != 0 {
            return Err(Error::Source(format!(
                "the VACUUM INTO export is {len} bytes, not a whole number of {}-byte pages",
                export.meta.page_size
            )));
        }
        export.meta.page_count = len / u64::from(export.meta.page_size);
        Ok(export)
    }

    /// The image's metadata.
    pub fn meta(&self) -> &ImageMeta {
        &self.meta
    }

    /// Calls `f` with every page of the export, in order.
    pub fn for_each_page(&mut self, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let ctx = |e| Error::io(format!("reading export {}", self.path.display()), e);
        let mut file =
            std::io::BufReader::with_capacity(1 << 20, File::open(&self.path).map_err(ctx)?);
        let mut page = vec![0u8; self.meta.page_size as usize];
        for pgno in 1..=self.meta.page_count {
            file.read_exact(&mut page).map_err(ctx)?;
            if pgno == 1 {
                self.meta.change_counter =
                    u32::from_be_bytes(page[24..28].try_into().expect("4 bytes"));
            }
            f(&page)?;
        }
        Ok(())
    }
}

impl Drop for VacuumExport {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_sqlite_has_dbpage() {
        let conn = Connection::open_in_memory().unwrap();
        assert!(
            has_dbpage(&conn).unwrap(),
            "build lacks SQLITE_ENABLE_DBPAGE_VTAB (see .cargo/config.toml)"
        );
    }

    #[test]
    fn lock_byte_page_position() {
        assert_eq!(lock_byte_page(4096, 100), None);
        assert_eq!(lock_byte_page(4096, 262_145), Some(262_145));
        assert_eq!(lock_byte_page(65536, 20_000), Some(16_385));
    }
}
