//! Reading a consistent image of a live SQLite database (SPEC.md,
//! "Snapshots"; ../shared/SQLITE-NOTES.md). A backup reads any
//! [`ImageSource`]; [`open_source`] picks one by strategy:
//!
//! * [`PageReader`] (strategy `pages`): inside **one read transaction**,
//!   reads every page through the `sqlite_dbpage` virtual table (compiled
//!   into the bundled SQLite, see `.cargo/config.toml`), in page order, with
//!   no temporary copy. The image is the database as of that transaction,
//!   committed WAL content included; WAL-mode writers keep committing while
//!   it runs, and it never restarts. The lock-byte page of databases over
//!   1 GiB, which SQLite never uses and `sqlite_dbpage` refuses to read, is
//!   imaged as zeros.
//! * [`VacuumExport`] (strategy `vacuum`): `VACUUM INTO` a temporary file,
//!   fsynced (SQLite does not), read page by page, and deleted when dropped,
//!   on success, error or interrupt alike.
//! * [`ImageFile`] (`copy` between repositories): an image already in a
//!   private temporary file, read page by page and deleted when dropped.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use super::tempdb::TempDb;
use super::wal_index::WalIndex;
use super::{open_own, sql_error};
use crate::error::{Error, Result, SourceProblem};
use crate::format::crypto::MasterKey;
use crate::format::manifest::{Continuous, FileStamp, FileStat, ImageInfo, Strategy};
use crate::id::BlobId;
use crate::progress::Cancel;

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
    /// Freelist leaf pages stored as zeros.
    pub zeroed_free_pages: u64,
    /// What SQLite reported while reading that did not stop the backup
    /// (a corrupt schema: the image is kept as it is on disk).
    pub warnings: Vec<String>,
    /// The pages were read from a copy-on-write clone of the file, made
    /// under the read lock, which was then released (rollback-journal
    /// mode on a filesystem with reflinks).
    pub cloned: bool,
    /// How long the source's read transaction was held, in milliseconds:
    /// in rollback-journal mode, how long writers could not commit.
    pub read_lock_ms: u64,
    /// The database file and its WAL as `stat` saw them from before the
    /// read began to after it ended, unchanged, and last written long
    /// enough before it (see [`FileStamp::settled`]); `None` otherwise.
    pub file: Option<FileStamp>,
    /// With [`SourceOptions::align`]: the snapshot's place in its stream,
    /// as the hook said once the read was aligned with the WAL.
    pub continuous: Option<Continuous>,
    /// When a read shared by several repositories ended: each of their
    /// snapshots records this time (`None`: the snapshot's own).
    pub taken: Option<jiff::Timestamp>,
}

/// `stat` of the database file at `path` and of its WAL, or `None` if the
/// file cannot be stat'ed.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    fn stat(path: &Path) -> Option<FileStat> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            ctime_ns: m
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.ctime_nsec()),
        })
    }
    // SQLite follows a symbolic link to the database, and keeps the WAL
    // beside the file it points to.
    let path = &std::fs::canonicalize(path).ok()?;
    let db = stat(path)?;
    let wal_path = crate::sys::with_suffix(path, "-wal");
    let wal = match std::fs::symlink_metadata(&wal_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Ok(m) if m.is_file() && m.len() == 0 => None,
        // A WAL that cannot be stat'ed: no stamp (the image is read).
        _ => Some(stat(&wal_path)?),
    };
    Some(FileStamp { db, wal })
}

/// The stamp of the file behind `conn`, if it has one (not in memory).
fn conn_stamp(conn: &Connection) -> Option<FileStamp> {
    conn.path()
        .filter(|p| !p.is_empty())
        .and_then(|p| file_stamp(Path::new(p)))
}

/// Nanoseconds since the Unix epoch, now.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A consistent image of a database, page by page.
pub trait ImageSource {
    /// What is known of the image before its pages are read.
    fn meta(&self) -> &ImageMeta;
    /// Calls `f` with every page, in order.
    fn for_each_page(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>;
    /// The image's schema hash under another repository's `key` (one read
    /// stored into several repositories); the default hash of an image
    /// whose schema cannot be read, as [`ImageMeta::schema_hash`] has it.
    fn schema_hash_for(&self, key: &MasterKey) -> Result<BlobId>;
    /// Ends the read (the read transaction, the temporary export) and
    /// returns the image's metadata, change counter included.
    fn finish(self: Box<Self>) -> Result<ImageMeta>;
}

/// How to take the image (the source half of a backup's options).
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Pages in one read transaction, or a `VACUUM INTO` export.
    pub strategy: Strategy,
    /// Run `PRAGMA quick_check` on the source and record the result.
    pub verify: bool,
    /// How long to wait for a database locked by a writer.
    pub lock_timeout: Duration,
    /// Directory of the export (strategy `vacuum`).
    pub temp_dir: PathBuf,
    /// Keep the content of freelist pages (by default they are stored as
    /// zeros: they hold nothing but deleted rows).
    pub keep_free_pages: bool,
    /// Stops the read, its waits and its statements.
    pub cancel: Cancel,
    /// Align the read transaction with the WAL, for continuous capture.
    pub align: Option<Align>,
}

/// The hook an aligned read calls with the WAL position it holds (the
/// wal-index header) and when it began; it returns the snapshot's place in
/// its stream, or an error that stops the read.
pub type AlignHook = dyn Fn(WalIndex, i64) -> Result<Continuous> + Send + Sync;

/// How to align a read with the WAL (see [`begin_aligned`]).
#[derive(Clone)]
pub struct Align {
    /// The database's `-shm` file.
    pub shm_path: PathBuf,
    /// The descriptors of it the read opened, kept for as long as the
    /// source's connection lives (closing one would drop the locks SQLite
    /// holds on the file). The caller drops them after the connection.
    pub held: std::sync::Arc<std::sync::Mutex<Vec<std::fs::File>>>,
    /// Called once the read transaction is aligned.
    pub hook: std::sync::Arc<AlignHook>,
}

impl Align {
    /// Aligns a read at the database whose `-shm` is `shm_path`.
    pub fn new(shm_path: PathBuf, hook: std::sync::Arc<AlignHook>) -> Self {
        Self {
            shm_path,
            held: std::sync::Arc::default(),
            hook,
        }
    }
}

impl std::fmt::Debug for Align {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Align").finish_non_exhaustive()
    }
}

/// Opens the image source `opts` asks for on the database behind `conn`
/// (`path` names it in errors and is the export's stem).
pub fn open_source<'c>(
    conn: &'c Connection,
    path: &Path,
    key: &MasterKey,
    opts: &SourceOptions,
) -> Result<Box<dyn ImageSource + 'c>> {
    Ok(match opts.strategy {
        Strategy::Pages => Box::new(PageReader::begin(conn, path, key, opts)?),
        Strategy::Vacuum => Box::new(VacuumExport::create(conn, path, key, opts)?),
    })
}

/// Byte offset of the lock-byte page.
const PENDING_BYTE: u64 = 0x4000_0000;

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

/// Runs `PRAGMA quick_check` on the source; anything but "ok" is an error
/// naming the first problems.
fn quick_check(conn: &Connection, path: &Path, lock_timeout: Duration) -> Result<String> {
    match super::verify::check(conn, true) {
        Ok(()) => Ok("ok".into()),
        Err(super::verify::CheckFailure::Sql(e)) => Err(sql_error(path, lock_timeout, &e)),
        Err(super::verify::CheckFailure::Problems(shown)) => Err(Error::source(
            path,
            SourceProblem::CheckFailed,
            format!(
                "database {} failed PRAGMA quick_check: {shown}",
                path.display()
            ),
        )),
    }
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
fn begin_read(
    conn: &Connection,
    lock_timeout: Duration,
    cancel: &Cancel,
) -> rusqlite::Result<(i64, i64)> {
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
                if !busy || std::time::Instant::now() >= deadline || cancel.is_cancelled() {
                    break Err(e);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    };
    conn.busy_timeout(lock_timeout)?;
    first
}

/// Reads a consistent page image inside one read transaction, or from a
/// copy-on-write clone of the file made inside one (see [`clone_file`]).
pub struct PageReader<'c> {
    conn: &'c Connection,
    /// The clone and a connection reading it, when one was made.
    clone: Option<(TempDb, Connection)>,
    /// When the source's read transaction began; `None` once it ended.
    locked_at: Option<std::time::Instant>,
    path: PathBuf,
    lock_timeout: Duration,
    meta: ImageMeta,
    /// Freelist leaf pages, one bit per page, stored as zeros.
    free: Vec<u64>,
    /// Freelist trunk pages and the bytes of each in use (the rest, left
    /// over from what the page held before, is stored as zeros).
    trunks: std::collections::HashMap<u64, usize>,
    cancel: Cancel,
    /// The file's stamp before the read transaction began, and when it was
    /// taken (free pages stored as zeros only: see [`FileStamp`]).
    stamp: Option<(FileStamp, i64)>,
}

/// The error of a failed `VACUUM INTO` of `source` into `opts.temp_dir`.
fn export_error(e: &rusqlite::Error, source: &Path, opts: &SourceOptions) -> Error {
    match e.sqlite_error_code() {
        // A full temporary directory is a storage failure, named as one.
        Some(ErrorCode::DiskFull) => Error::NoSpace {
            path: opts.temp_dir.clone(),
            what: "VACUUM INTO export",
            needed: std::fs::metadata(source).map_or(0, |m| m.len()),
            free: rustix::fs::statvfs(&opts.temp_dir)
                .map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize)),
        },
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly) => Error::source(
            source,
            SourceProblem::ExportFailed,
            format!(
                "VACUUM INTO {} failed (SQLite: {e})",
                opts.temp_dir.display()
            ),
        ),
        _ => sql_error(source, opts.lock_timeout, e),
    }
}

/// What beginning a read transaction gave: page size and count, and with
/// [`SourceOptions::align`] the hook's answer.
type Begun = (rusqlite::Result<(i64, i64)>, Option<Result<Continuous>>);

/// Begins the read transaction, aligned when `opts` asks for it (then the
/// hook is told the position).
fn begin_with(conn: &Connection, opts: &SourceOptions) -> Begun {
    match &opts.align {
        None => (begin_read(conn, opts.lock_timeout, &opts.cancel), None),
        Some(a) => {
            let (r, wal) = begin_aligned(conn, a, opts.lock_timeout, &opts.cancel);
            (r, wal.map(|(w, at)| (a.hook)(w, at)))
        }
    }
}

/// The page size and count a read transaction began with, and the WAL
/// position it holds with when it began.
type AlignedBegin = (rusqlite::Result<(i64, i64)>, Option<(WalIndex, i64)>);

/// Begins the read transaction as [`begin_read`] does, aligned with the
/// WAL: the wal-index header read just before and just after the
/// transaction's first read must be the same (no commit between them), so
/// the snapshot holds exactly the frames it names. Retried until it is
/// (a commit lands in that window of microseconds rarely twice).
///
/// The wal-index is read from the `-shm` file the connection uses: opened
/// after the connection's first read transaction mapped it, since when no
/// other connection can delete it (only the last one to close does). One
/// opened earlier could be of a file deleted since and made anew (an
/// application whose last connection closes after each write), whose
/// header would name a position the read does not hold.
fn begin_aligned(
    conn: &Connection,
    align: &Align,
    lock_timeout: Duration,
    cancel: &Cancel,
) -> AlignedBegin {
    let r = begin_read(conn, lock_timeout, cancel);
    if r.is_err() {
        return (r, None);
    }
    let _ = conn.execute_batch("ROLLBACK");
    let mut held = align
        .held
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match std::fs::File::open(&align.shm_path) {
        Ok(f) => held.push(f),
        Err(e) => {
            return (
                Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!(
                        "could not align a read with the WAL: opening {}: {e}",
                        align.shm_path.display()
                    )),
                )),
                None,
            )
        }
    }
    let shm = held.last().expect("pushed above");
    for _ in 0..1000 {
        let before = super::wal_index::read(shm);
        let at = now_ns();
        let r = begin_read(conn, lock_timeout, cancel);
        if r.is_err() {
            return (r, None);
        }
        let after = super::wal_index::read(shm);
        // (A checkpoint may move the backfill counters meanwhile: only a
        // commit or a restart changes what the transaction sees.)
        let seen = |w: &Option<WalIndex>| w.map(|w| (w.mx_frame, w.salts, w.frame_checksum));
        if before.is_some() && seen(&before) == seen(&after) {
            return (r, before.map(|w| (w, at)));
        }
        let _ = conn.execute_batch("ROLLBACK");
        if cancel.is_cancelled() {
            break;
        }
        std::thread::yield_now();
    }
    (
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("could not align a read with the WAL: it kept changing".into()),
        )),
        None,
    )
}

/// Reads one page inside the read transaction.
fn read_page(conn: &Connection, pgno: u64) -> rusqlite::Result<Vec<u8>> {
    conn.query_row(
        "SELECT data FROM sqlite_dbpage('main') WHERE pgno = ?1",
        [pgno],
        |r| r.get(0),
    )
}

/// What the freelist holds: its leaves (one bit per page) and its trunk
/// pages with the bytes each uses.
type Freelist = (Vec<u64>, std::collections::HashMap<u64, usize>);

/// The freelist (SQLite file format, "The Freelist"): trunk pages from
/// header offset 32 on, each listing leaf page numbers. Leaves hold nothing
/// but what deleted rows left; of a trunk page only its header and list are
/// used. A malformed list (out of range, looping, longer or shorter than
/// its count) yields `None`: the pages are then kept as they are.
fn freelist(
    conn: &Connection,
    page1: &[u8],
    page_count: u64,
) -> rusqlite::Result<Option<Freelist>> {
    let be32 = |b: &[u8], at: usize| {
        u64::from(u32::from_be_bytes(
            b[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    let mut bits = vec![0u64; usize::try_from(page_count.div_ceil(64)).unwrap_or(0)];
    let mut trunk_use = std::collections::HashMap::new();
    let total = be32(page1, 36);
    let mut trunk = be32(page1, 32);
    let (mut seen, mut trunks) = (0u64, 0u64);
    while trunk != 0 {
        trunks += 1;
        if trunk > page_count || trunks > page_count || seen + trunks > total {
            return Ok(None);
        }
        let page = read_page(conn, trunk)?;
        if page.len() < 8 {
            return Ok(None);
        }
        let n = be32(&page, 4);
        if 8 + n * 4 > page.len() as u64 {
            return Ok(None);
        }
        for i in 0..n as usize {
            let leaf = be32(&page, 8 + 4 * i);
            if leaf == 0 || leaf > page_count || trunk_use.contains_key(&leaf) {
                return Ok(None);
            }
            bits[((leaf - 1) / 64) as usize] |= 1 << ((leaf - 1) % 64);
            seen += 1;
        }
        if trunk_use.insert(trunk, 8 + 4 * n as usize).is_some() {
            return Ok(None);
        }
        trunk = be32(&page, 0);
    }
    // The header's count is every trunk and leaf: a list shorter than
    // its count is as malformed as a longer one.
    if seen + trunks != total {
        return Ok(None);
    }
    // A page cannot be both a trunk and a leaf.
    if trunk_use
        .keys()
        .any(|t| bits[((t - 1) / 64) as usize] & (1 << ((t - 1) % 64)) != 0)
    {
        return Ok(None);
    }
    Ok(Some((bits, trunk_use)))
}

/// In rollback-journal mode a reader's SHARED lock keeps every writer
/// from committing for as long as the read lasts (seconds for a few GiB).
/// Where the filesystem can clone a file by reference (`FICLONE`: XFS,
/// Btrfs, bcachefs, ZFS 2.2), the file is cloned under the lock, which
/// takes milliseconds and copies nothing, and the pages are read from the
/// clone after the lock is released. The lock guarantees no writer is
/// changing the file (a writer needs EXCLUSIVE to write it, and a hot
/// journal is rolled back before SHARED is granted), so the clone is the
/// same consistent image. The clone is private (0600), beside the
/// database (a clone cannot cross filesystems) and removed like every
/// temporary file. `None` where cloning is not possible: the read then
/// happens under the lock, as before.
///
/// The clone is made by another process (`cp --reflink=always`), never
/// by opening the database file here: closing any descriptor of a file
/// drops every POSIX lock this process holds on it, SQLite's included,
/// and an application's other connections to it too.
fn clone_file(path: &Path) -> Option<TempDb> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let stem = path.file_name()?.to_string_lossy().into_owned();
    super::tempdb::remove_stale(dir);
    // Made first, so the clone has its mode (0600): cp keeps an existing
    // target's mode.
    let (clone, _) = TempDb::create(dir, &stem, "clone").ok()?;
    let cp = if Path::new("/bin/cp").exists() {
        "/bin/cp"
    } else {
        "cp"
    };
    std::process::Command::new(cp)
        .arg("--reflink=always")
        .arg("--")
        .arg(path)
        .arg(clone.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?
        .success()
        .then_some(clone)
}

impl<'c> PageReader<'c> {
    /// The connection the pages are read with: the clone's, or the
    /// source's inside its read transaction.
    fn reading(&self) -> &Connection {
        self.clone.as_ref().map_or(self.conn, |(_, c)| c)
    }

    /// Ends the source's read transaction (once), keeping the file's stamp
    /// if nothing wrote the file since before it began.
    fn release(&mut self) -> rusqlite::Result<()> {
        if let Some((before, at)) = self.stamp.take() {
            if conn_stamp(self.conn) == Some(before) && before.settled(at) {
                self.meta.file = Some(before);
            }
        }
        if let Some(t) = self.locked_at {
            self.conn.execute_batch("COMMIT")?;
            self.meta.read_lock_ms = t.elapsed().as_millis() as u64;
            self.locked_at = None;
        }
        Ok(())
    }

    /// Begins the read transaction and reads the image's metadata in it.
    pub fn begin(
        conn: &'c Connection,
        path: &Path,
        key: &MasterKey,
        opts: &SourceOptions,
    ) -> Result<Self> {
        let lock_timeout = opts.lock_timeout;
        let err = |e: rusqlite::Error| sql_error(path, lock_timeout, &e);
        // Taken before the transaction begins: a commit between the two
        // would then show in the stamp taken after the read.
        let stamp = if opts.keep_free_pages {
            None
        } else {
            let at = now_ns();
            conn_stamp(conn).map(|s| (s, at))
        };
        let (started, continuous) = begin_with(conn, opts);
        opts.cancel
            .check("backup stopped; no snapshot was written")?;
        let (page_size, page_count) = started.map_err(err)?;
        let continuous = continuous.transpose()?;
        let mut reader = Self {
            conn,
            clone: None,
            locked_at: Some(std::time::Instant::now()),
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
                zeroed_free_pages: 0,
                warnings: Vec::new(),
                cloned: false,
                read_lock_ms: 0,
                file: None,
                continuous,
                taken: None,
            },
            free: Vec::new(),
            trunks: std::collections::HashMap::new(),
            cancel: opts.cancel.clone(),
            stamp,
        };
        reader.meta.page_size = u32::try_from(page_size).map_err(|_| {
            Error::source(
                path,
                SourceProblem::Corrupt,
                format!(
                    "database {} has an invalid page size {page_size}",
                    path.display()
                ),
            )
        })?;
        reader.meta.page_count = u64::try_from(page_count).unwrap_or(0);
        if !has_dbpage(conn).map_err(err)? {
            return Err(Error::source(
                path,
                SourceProblem::NoPageReader,
                "this SQLite library lacks the sqlite_dbpage virtual table, which the pages strategy reads",
            ));
        }
        reader.meta.journal_mode = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(err)?;
        if !reader.meta.journal_mode.eq_ignore_ascii_case("wal") {
            if let Some(clone) = clone_file(path) {
                if let Ok(c) = open_immutable(clone.path()) {
                    reader.clone = Some((clone, c));
                    reader.meta.cloned = true;
                    reader.release().map_err(err)?;
                }
            }
        }
        match schema_hash(reader.reading(), key) {
            Ok(h) => reader.meta.schema_hash = h,
            // The pages are read raw: a corrupt schema does not stop the
            // backup of the file as it is, but it is said.
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseCorrupt) => {
                reader.meta.warnings.push(format!(
                    "database {} is corrupt (SQLite: {e}); the snapshot keeps it as it is",
                    path.display()
                ));
            }
            Err(e) => return Err(err(e)),
        }
        if opts.verify {
            reader.meta.quick_check = Some(quick_check(reader.reading(), path, lock_timeout)?);
        }
        if !opts.keep_free_pages && reader.meta.page_count > 0 {
            let page1 = read_page(reader.reading(), 1).map_err(err)?;
            match freelist(reader.reading(), &page1, reader.meta.page_count).map_err(err)? {
                Some((bits, trunks)) => {
                    reader.free = bits;
                    reader.trunks = trunks;
                }
                None => reader.meta.warnings.push(format!(
                    "database {} has a malformed freelist; its free pages are stored as they are",
                    path.display()
                )),
            }
        }
        Ok(reader)
    }

    fn is_free(&self, pgno: u64) -> bool {
        self.free
            .get(((pgno - 1) / 64) as usize)
            .is_some_and(|w| w & (1 << ((pgno - 1) % 64)) != 0)
    }
}

impl ImageSource for PageReader<'_> {
    fn meta(&self) -> &ImageMeta {
        &self.meta
    }

    fn schema_hash_for(&self, key: &MasterKey) -> Result<BlobId> {
        match schema_hash(self.reading(), key) {
            Ok(h) => Ok(h),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseCorrupt) => {
                Ok(BlobId::default())
            }
            Err(e) => Err(sql_error(&self.path, self.lock_timeout, &e)),
        }
    }

    fn for_each_page(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        // (Borrowing the two fields, not `self`: the loop updates `meta`.)
        let conn = self.clone.as_ref().map_or(self.conn, |(_, c)| c);
        let _interrupt = super::interrupt_on_cancel(conn, &self.cancel);
        let err = |e: rusqlite::Error| sql_error(&self.path, self.lock_timeout, &e);
        let ps = self.meta.page_size as usize;
        let lock_page = lock_byte_page(self.meta.page_size, self.meta.page_count);
        let mut stmt = conn
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
                return Err(Error::source(
                    &self.path,
                    SourceProblem::Corrupt,
                    format!(
                        "database {} returned page {pgno} where page {expected} was expected",
                        self.path.display()
                    ),
                ));
            }
            let data = row
                .get_ref(1)
                .map_err(err)?
                .as_blob()
                .map_err(|e| err(e.into()))?;
            if data.len() != ps {
                return Err(Error::source(
                    &self.path,
                    SourceProblem::Corrupt,
                    format!(
                        "database {} page {pgno} has {} bytes, not the page size {ps}",
                        self.path.display(),
                        data.len()
                    ),
                ));
            }
            if pgno == 1 {
                self.meta.change_counter =
                    u32::from_be_bytes(data[24..28].try_into().expect("4 bytes"));
            }
            if self.is_free(pgno) {
                self.meta.zeroed_free_pages += 1;
                f(&zeros)?;
            } else if let Some(&used) = self.trunks.get(&pgno) {
                let mut page = data.to_vec();
                page[used.min(ps)..].fill(0);
                f(&page)?;
            } else {
                f(data)?;
            }
            expected += 1;
        }
        if expected != self.meta.page_count + 1 {
            return Err(Error::source(
                &self.path,
                SourceProblem::Corrupt,
                format!(
                    "database {} has {} pages but sqlite_dbpage returned {}",
                    self.path.display(),
                    self.meta.page_count,
                    expected - 1
                ),
            ));
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<ImageMeta> {
        self.release()
            .map_err(|e| sql_error(&self.path, self.lock_timeout, &e))?;
        Ok(self.meta.clone())
    }
}

impl Drop for PageReader<'_> {
    fn drop(&mut self) {
        // A read that did not finish (an error, a signal): end the
        // transaction.
        if self.locked_at.is_some() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A `VACUUM INTO` export in a temporary file, deleted when dropped.
pub struct VacuumExport {
    file: TempDb,
    meta: ImageMeta,
}

impl VacuumExport {
    /// Exports the database behind `conn` into a new file in
    /// `opts.temp_dir`; `opts.cancel` interrupts the export.
    pub fn create(
        conn: &Connection,
        source: &Path,
        key: &MasterKey,
        opts: &SourceOptions,
    ) -> Result<Self> {
        let err = |e: rusqlite::Error| sql_error(source, opts.lock_timeout, &e);
        let stem = source
            .file_name()
            .map_or_else(|| "database".into(), |n| n.to_string_lossy().into_owned());
        // An empty private file (VACUUM INTO accepts an empty one and keeps
        // its mode); from here on, dropping `export` deletes it.
        let (file, _) = TempDb::create(&opts.temp_dir, &stem, "vacuum").map_err(|e| match e {
            Error::Io { source, .. } if source.raw_os_error() == Some(28) => Error::NoSpace {
                path: opts.temp_dir.clone(),
                what: "VACUUM INTO export",
                needed: 0,
                free: 0,
            },
            Error::Io { source, .. } => Error::source(
                &opts.temp_dir,
                SourceProblem::ExportFailed,
                format!(
                    "cannot create the VACUUM INTO export in {}: {source}",
                    opts.temp_dir.display()
                ),
            ),
            e => e,
        })?;
        let mut export = Self {
            file,
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
                zeroed_free_pages: 0,
                warnings: Vec::new(),
                cloned: false,
                read_lock_ms: 0,
                file: None,
                continuous: None,
                taken: None,
            },
        };
        if opts.verify {
            export.meta.quick_check = Some(quick_check(conn, source, opts.lock_timeout)?);
        }
        let path = export.file.path().to_path_buf();
        let target = path.to_str().ok_or_else(|| {
            Error::option(
                "temp_dir",
                format!(
                    "temporary directory {} is not valid UTF-8",
                    opts.temp_dir.display()
                ),
            )
        })?;
        let interrupt = super::interrupt_on_cancel(conn, &opts.cancel);
        let started = std::time::Instant::now();
        let result = conn.execute("VACUUM INTO ?1", [target]);
        // The export is one read transaction.
        export.meta.read_lock_ms = started.elapsed().as_millis() as u64;
        drop(interrupt);
        result.map_err(|e| export_error(&e, source, opts))?;
        let file = File::open(&path).map_err(|e| Error::io("opening export", &path, e))?;
        file.sync_all()
            .map_err(|e| Error::io("fsyncing export", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("reading the size of export", &path, e))?
            .len();
        let ro = open_own(&path, true).map_err(err)?;
        let page_size: i64 = ro
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(err)?;
        export.meta.page_size = u32::try_from(page_size).map_err(|_| {
            Error::source(
                source,
                SourceProblem::Corrupt,
                format!("the export has an invalid page size {page_size}"),
            )
        })?;
        export.meta.schema_hash = schema_hash(&ro, key).map_err(err)?;
        drop(ro);
        if len % u64::from(export.meta.page_size) != 0 {
            return Err(Error::source(
                source,
                SourceProblem::ExportFailed,
                format!(
                    "the VACUUM INTO export is {len} bytes, not a whole number of {}-byte pages",
                    export.meta.page_size
                ),
            ));
        }
        export.meta.page_count = len / u64::from(export.meta.page_size);
        Ok(export)
    }
}

impl ImageSource for VacuumExport {
    fn meta(&self) -> &ImageMeta {
        &self.meta
    }

    fn schema_hash_for(&self, key: &MasterKey) -> Result<BlobId> {
        let path = self.file.path();
        open_own(path, true)
            .and_then(|c| schema_hash(&c, key))
            .map_err(|e| sql_error(path, Duration::ZERO, &e))
    }

    fn for_each_page(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        read_pages(self.file.path(), &mut self.meta, f)
    }

    fn finish(self: Box<Self>) -> Result<ImageMeta> {
        Ok(self.meta.clone())
    }
}

/// An image already in a private temporary file (another repository's
/// snapshot, reassembled and verified there), with the metadata its
/// original backup recorded. The keyed schema hash is computed afresh with
/// this repository's key. The file is deleted when this is dropped.
pub struct ImageFile {
    file: TempDb,
    meta: ImageMeta,
}

impl ImageFile {
    /// Takes over `file`, which holds the image `origin` describes.
    pub fn new(file: TempDb, origin: &ImageInfo, key: &MasterKey) -> Result<Self> {
        let path = file.path();
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io("reading the size of", path, e))?
            .len();
        if origin.page_size == 0 || len != origin.bytes || len % u64::from(origin.page_size) != 0 {
            return Err(Error::Internal(format!(
                "image file {} is {len} bytes, not the {} the snapshot records",
                path.display(),
                origin.bytes
            )));
        }
        let mut meta = ImageMeta {
            page_size: origin.page_size,
            page_count: origin.page_count,
            journal_mode: origin.journal_mode.clone(),
            sqlite_version: origin.sqlite_version.clone(),
            schema_hash: BlobId::default(),
            quick_check: origin.quick_check.clone(),
            change_counter: origin.change_counter,
            zeroed_free_pages: origin.zeroed_free_pages,
            warnings: Vec::new(),
            cloned: false,
            read_lock_ms: 0,
            file: None,
            continuous: None,
            taken: None,
        };
        match open_immutable(path).and_then(|c| schema_hash(&c, key)) {
            Ok(h) => meta.schema_hash = h,
            Err(e) => meta.warnings.push(format!(
                "the image's schema could not be read ({e}); it is copied as it is"
            )),
        }
        Ok(Self { file, meta })
    }
}

/// Opens a database file that nothing else writes, reading its main file
/// only (no locks, no WAL: `immutable=1`).
fn open_immutable(path: &Path) -> rusqlite::Result<Connection> {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3F"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

impl ImageSource for ImageFile {
    fn meta(&self) -> &ImageMeta {
        &self.meta
    }

    fn schema_hash_for(&self, key: &MasterKey) -> Result<BlobId> {
        Ok(open_immutable(self.file.path())
            .and_then(|c| schema_hash(&c, key))
            .unwrap_or_default())
    }

    fn for_each_page(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        read_pages(self.file.path(), &mut self.meta, f)
    }

    fn finish(self: Box<Self>) -> Result<ImageMeta> {
        Ok(self.meta.clone())
    }
}

/// Calls `f` with each of `meta.page_count` pages of the file at `path`,
/// recording page 1's change counter.
fn read_pages(
    path: &Path,
    meta: &mut ImageMeta,
    f: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let ctx = |e| Error::io("reading image", path, e);
    let mut file = std::io::BufReader::with_capacity(1 << 20, File::open(path).map_err(ctx)?);
    let mut page = vec![0u8; meta.page_size as usize];
    for pgno in 1..=meta.page_count {
        file.read_exact(&mut page).map_err(ctx)?;
        if pgno == 1 {
            meta.change_counter = u32::from_be_bytes(page[24..28].try_into().expect("4 bytes"));
        }
        f(&page)?;
    }
    Ok(())
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
