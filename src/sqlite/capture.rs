//! Continuous capture of one database (SPEC.md 20.2): its committed
//! transactions, read from its WAL by [`WalTail`], each page made ready
//! to ship: whole, or as its XOR with the page's previous version.
//!
//! The previous version of a page a commit wrote is the version a restore
//! holds when it applies the commit: the last one handed over since the
//! snapshot the stream goes on from, else the snapshot's. It is, in order:
//!
//! * the version the capture handed over last, kept (a bounded cache,
//!   emptied at every gap: after one, the snapshot's version counts);
//! * the page of an earlier frame of the same WAL generation, read back
//!   from its frame (checked to still be that frame: same salts, same
//!   page);
//! * else the page in the database file, which holds every page as of the
//!   generation's start (a WAL restarts only after every frame was copied
//!   back), until a checkpoint copies this generation's frames. It is used
//!   only if, read after it, the wal-index shows the same generation and no
//!   checkpoint that began copying this commit's frames
//!   (`nBackfillAttempted`, which SQLite raises before it copies a frame);
//! * else there is none, and the page is stored whole.
//!
//! Nothing here takes a lock, opens a connection or writes a byte. The
//! descriptors of the database file and its `-shm` stay open for the
//! capture's life: closing a descriptor of a file drops every POSIX lock
//! this process holds on it, SQLite's own included (a bridge snapshot's
//! connection).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::wal_index::{self, WalIndex};
use super::wal_tail::{read_at, WalTail};
use crate::error::{Error, Result, SourceProblem};
use crate::format::change::{page_hash, Enc, PageEntry, WalMark};
use crate::format::wal::FRAME_HEADER_LEN;

/// Bytes of page contents the cache of recent versions keeps.
const CACHE_BYTES: usize = 32 << 20;

/// One committed transaction, ready to ship.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedCommit {
    /// When the capture read its commit frame (ns since the Unix epoch).
    pub time_ns: i64,
    /// The database's size in pages after it.
    pub db_pages: u32,
    /// Its pages, by page number.
    pub pages: Vec<PageEntry>,
    /// The WAL position before it.
    pub prev: WalMark,
    /// The WAL position after it.
    pub mark: WalMark,
}

/// What one poll of a capture found.
#[derive(Debug, Default)]
pub struct CaptureBatch {
    /// Commits, in order.
    pub commits: Vec<Arc<CapturedCommit>>,
    /// Commits after these may have been missed (why): bridge.
    pub gap: Option<String>,
    /// Written `-wal` files seen removed or replaced (see
    /// [`super::watch::Watch::missed`]).
    pub wal_ends: u64,
}

/// An open descriptor with the identity of its file.
struct Held {
    file: File,
    dev: u64,
    ino: u64,
}

impl Held {
    fn open(path: &Path) -> std::io::Result<Held> {
        let file = File::open(path)?;
        let m = file.metadata()?;
        Ok(Held {
            file,
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn is(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
    }
}

/// The capture of one WAL-mode database (see the module docs).
pub struct Capture {
    db: PathBuf,
    db_file: Held,
    /// Descriptors of earlier `-shm` files, kept open (see the module docs).
    old_shm: Vec<File>,
    shm: Option<Held>,
    tail: WalTail,
    page_size: u32,
    /// The version of pages handed over last.
    cache: HashMap<u32, Arc<[u8]>>,
    cached_bytes: usize,
}

/// Fails unless the database at `db` is an SQLite database in WAL mode;
/// returns its page size.
pub fn check_wal_mode(db: &Path) -> Result<u32> {
    let mut head = [0u8; 100];
    let f = File::open(db).map_err(|e| {
        let problem = if e.kind() == std::io::ErrorKind::NotFound {
            SourceProblem::Missing
        } else {
            SourceProblem::Unreadable
        };
        Error::source(
            db,
            problem,
            format!("cannot read database {}: {e}", db.display()),
        )
    })?;
    f.read_exact_at(&mut head, 0).map_err(|_| {
        Error::source(
            db,
            SourceProblem::NotSqlite,
            format!(
                "{} is empty or not an SQLite database: replicate captures a database that exists",
                db.display()
            ),
        )
    })?;
    if &head[..16] != super::SQLITE_MAGIC {
        return Err(Error::source(
            db,
            SourceProblem::NotSqlite,
            format!("{} is not an SQLite database", db.display()),
        ));
    }
    if head[18] != 2 || head[19] != 2 {
        return Err(Error::source(
            db,
            SourceProblem::NotWal,
            format!(
                "{} is in rollback-journal mode, whose commits leave no log to capture: switch it to WAL (`PRAGMA journal_mode=WAL`, once, by the application), or back it up on a schedule instead",
                db.display()
            ),
        ));
    }
    let size = u32::from(u16::from_be_bytes([head[16], head[17]]));
    Ok(if size == 1 { 65536 } else { size })
}

impl Capture {
    /// Starts capturing the database at `db`: the first poll hands over
    /// the commits after `after` (all of the current WAL with `None`).
    pub fn open(db: &Path, after: Option<WalMark>) -> Result<Capture> {
        let page_size = check_wal_mode(db)?;
        let db_file = Held::open(db).map_err(|e| Error::io("reading", db, e))?;
        let shm_path = crate::sys::with_suffix(db, "-shm");
        Ok(Capture {
            db: db.to_path_buf(),
            db_file,
            old_shm: Vec::new(),
            shm: Held::open(&shm_path).ok(),
            tail: WalTail::new(db, after),
            page_size,
            cache: HashMap::new(),
            cached_bytes: 0,
        })
    }

    /// True if the file at the database's path is still the one captured.
    pub fn is_same_file(&self) -> bool {
        self.db_file.is(&self.db)
    }

    /// The database captured.
    pub fn path(&self) -> &Path {
        &self.db
    }

    /// Its page size.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Where the capture stands in the WAL.
    pub fn mark(&self) -> Option<WalMark> {
        self.tail.mark()
    }

    /// Goes on after a snapshot aligned at `at`, made after a gap: the
    /// WAL is read again from its first frame, commits up to `at` are not
    /// handed over, and the versions kept from before are forgotten (the
    /// snapshot's count).
    pub fn rebase(&mut self, at: Option<WalMark>) {
        self.tail = WalTail::new(&self.db, at);
        self.cache.clear();
        self.cached_bytes = 0;
    }

    /// True if the written `-wal` file followed is no longer at its path
    /// (see [`super::watch::Watch::missed`]).
    pub fn followed_wal_gone(&self) -> bool {
        self.tail.followed_gone()
    }

    /// The `-wal` file followed.
    pub fn wal_path(&self) -> &Path {
        self.tail.wal_path()
    }

    /// The wal-index now, if the `-shm` file is there and consistent
    /// (re-opened when the file was replaced).
    pub fn wal_index(&mut self) -> Option<WalIndex> {
        self.refresh_shm();
        wal_index::read_stable(&self.shm.as_ref()?.file)
    }

    /// Re-opens the `-shm` file if it was replaced (the old descriptor is
    /// kept: see the module docs).
    fn refresh_shm(&mut self) {
        let path = crate::sys::with_suffix(&self.db, "-shm");
        if !self.shm.as_ref().is_some_and(|h| h.is(&path)) {
            if let Ok(h) = Held::open(&path) {
                if let Some(old) = self.shm.replace(h) {
                    self.old_shm.push(old.file);
                }
            }
        }
    }

    /// The `-shm` descriptor, for a bridge snapshot's alignment.
    pub fn shm_file(&mut self) -> Option<&File> {
        self.wal_index();
        self.shm.as_ref().map(|h| &h.file)
    }

    /// Reads what was committed since the last poll. A database file that
    /// was replaced (another inode at its path) is a gap: its WAL is not
    /// the one this capture followed.
    pub fn poll(&mut self) -> Result<CaptureBatch> {
        let mut batch = CaptureBatch::default();
        if !self.db_file.is(&self.db) {
            batch.gap = Some(format!(
                "{} was replaced or removed while it was captured",
                self.db.display()
            ));
            return Ok(batch);
        }
        let polled = self.tail.poll()?;
        batch.wal_ends = polled.wal_ends;
        if !self.db_file.is(&self.db) {
            // Replaced while the WAL was read: what was read may be the
            // new file's (its `-wal` has the same name), which the bridge
            // for the replacement covers.
            batch.gap = Some(format!(
                "{} was replaced or removed while it was captured",
                self.db.display()
            ));
            return Ok(batch);
        }
        if !polled.commits.is_empty() {
            self.refresh_shm();
        }
        for c in polled.commits {
            let mut pages = Vec::with_capacity(c.pages.len());
            // A page past the database's end before the commit has no
            // previous version (a restore holds none either).
            let mut bases: Vec<Base> = c
                .pages
                .iter()
                .map(|p| match c.prev_db_pages {
                    Some(n) if p.pgno <= n => self.previous_version(
                        p.pgno,
                        p.previous_frame,
                        c.min_db_pages.unwrap_or(0),
                        &c.mark,
                    ),
                    _ => Base::None,
                })
                .collect();
            if bases.iter().any(|b| matches!(b, Base::FromFile(_))) {
                // Read once after every page the file gave: no checkpoint
                // began copying this commit's frames, or later ones, before.
                let valid = self
                    .shm
                    .as_ref()
                    .and_then(|h| wal_index::read_stable(&h.file))
                    .is_some_and(|i| {
                        i.salts == c.mark.salts
                            && u64::from(i.n_backfill_attempted) <= c.first_frame
                    });
                for b in &mut bases {
                    if let Base::FromFile(page) = b {
                        *b = if valid {
                            Base::Known(std::mem::replace(page, Arc::from(Vec::new())))
                        } else {
                            Base::None
                        };
                    }
                }
            }
            for (p, base) in c.pages.into_iter().zip(bases) {
                let base = match base {
                    Base::Known(b) => Some(b),
                    _ => None,
                };
                let hash = page_hash(&p.data);
                let entry = match base {
                    Some(b) if b.len() == p.data.len() => {
                        let data: Vec<u8> =
                            p.data.iter().zip(b.iter()).map(|(x, y)| x ^ y).collect();
                        PageEntry {
                            pgno: p.pgno,
                            enc: Enc::Xor,
                            hash,
                            data,
                        }
                    }
                    _ => PageEntry {
                        pgno: p.pgno,
                        enc: Enc::Raw,
                        hash,
                        data: p.data.clone(),
                    },
                };
                self.remember(p.pgno, p.data);
                pages.push(entry);
            }
            if c.prev_db_pages.is_some_and(|n| c.db_pages < n) {
                // Shrunk: versions past the end are no base for a page that
                // comes back later.
                self.forget_past(c.db_pages);
            }
            batch.commits.push(Arc::new(CapturedCommit {
                time_ns: c.time_ns,
                db_pages: c.db_pages,
                pages,
                prev: c.prev,
                mark: c.mark,
            }));
        }
        if polled.gap.is_some() {
            self.cache.clear();
            self.cached_bytes = 0;
        }
        batch.gap = polled.gap;
        Ok(batch)
    }

    /// Forgets the kept versions of pages past `pages`.
    fn forget_past(&mut self, pages: u32) {
        self.cache.retain(|pgno, _| *pgno <= pages);
        self.cached_bytes = self.cache.values().map(|d| d.len()).sum();
    }

    /// Keeps the newest version of a page, within the cache's bound.
    fn remember(&mut self, pgno: u32, data: Vec<u8>) {
        let len = data.len();
        if let Some(old) = self.cache.insert(pgno, data.into()) {
            self.cached_bytes -= old.len();
        }
        self.cached_bytes += len;
        if self.cached_bytes > CACHE_BYTES {
            // Drop about half, in no particular order.
            let mut drop_bytes = self.cached_bytes / 2;
            self.cache.retain(|_, d| {
                if drop_bytes == 0 {
                    return true;
                }
                drop_bytes = drop_bytes.saturating_sub(d.len());
                false
            });
            self.cached_bytes = self.cache.values().map(|d| d.len()).sum();
        }
    }

    /// The previous version of page `pgno` for a commit in the generation
    /// of `mark` (see the module docs): known, or read from the database
    /// file (valid only if the wal-index, read after it, allows), or none.
    fn previous_version(
        &mut self,
        pgno: u32,
        previous_frame: Option<u64>,
        min_db_pages: u32,
        mark: &WalMark,
    ) -> Base {
        let ps = self.page_size as usize;
        if let Some(data) = self.cache.get(&pgno) {
            return Base::Known(Arc::clone(data));
        }
        if let Some(frame) = previous_frame {
            let Some((file, header)) = self.tail.file() else {
                return Base::None;
            };
            if header.salts != mark.salts {
                return Base::None;
            }
            let Ok(bytes) = read_at(file, header.frame_offset(frame), header.frame_len()) else {
                return Base::None;
            };
            if bytes.len() as u64 != header.frame_len() {
                return Base::None;
            }
            let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
            if be(0) != pgno || (be(8), be(12)) != mark.salts {
                return Base::None;
            }
            return Base::Known(bytes[FRAME_HEADER_LEN..].into());
        }
        if pgno > min_db_pages {
            // The file may hold a version from before the database shrank.
            return Base::None;
        }
        let mut page = vec![0u8; ps];
        let at = u64::from(pgno - 1) * ps as u64;
        match self.db_file.file.read_exact_at(&mut page, at) {
            Ok(()) => Base::FromFile(page.into()),
            // Past the file's end: the page is new (no previous version).
            Err(_) => Base::None,
        }
    }
}

/// A page's previous version, as found.
enum Base {
    /// Certain.
    Known(Arc<[u8]>),
    /// Read from the database file: certain once the wal-index allows.
    FromFile(Arc<[u8]>),
    /// None: the page is stored whole.
    None,
}
