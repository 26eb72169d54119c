//! Restore: the backup path backwards, then a safe swap (SPEC.md, "Restore").
//!
//! Steps, in this order, each a guarantee the next relies on:
//!
//! 1. **Reassemble** into a temporary file in the target's directory (same
//!    filesystem): the blobs are fetched by several threads, one range read
//!    per run of blobs close together in a pack (in pack order), each
//!    authenticated and checked against its id, written at its offset; the
//!    file is fsynced and, at the same time, read back to check the whole
//!    image's keyed hash and size.
//! 2. **Verify** the database: `PRAGMA integrity_check` (`quick_check` with
//!    `quick`), page size and page count against the manifest.
//! 3. **Scrub** (optional): run SQL on the copy (`--post-sql`), checkpoint
//!    it, `quick_check` it again.
//! 4. **Protect** what is there: refuse if another process has the target
//!    open (unless live); back the target up as a `pre-restore` snapshot.
//! 5. **Swap**: checkpoint the old database (so its WAL holds nothing that
//!    is not in its file), remove its `-wal`, `-shm`, `-journal`, rename
//!    the temporary file over it, fsync the directory. Or **live**: copy the
//!    image into the target through SQLite's online backup API.
//!
//! A failure or crash before step 5 leaves the target untouched (the
//! temporary file is removed, or ignored: it has its own name). During step
//! 5 the target is the old database until the rename and the new one after
//! it; no WAL of the old database survives next to the new file.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::backend::FileType;
use crate::backup::{BackupOptions, Progress};
use crate::dump::TempDb;
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::index::Index;
use crate::lock::LockKind;
use crate::pack::{self, PackedBlob};
use crate::repository::Repository;
use crate::snapshot::{walk_tree, Manifest, Strategy};

/// The tag of the snapshot a restore takes of the target it replaces.
pub const PRE_RESTORE_TAG: &str = "pre-restore";
/// Largest single range read when fetching runs of adjacent blobs.
const MAX_RUN: u64 = 8 << 20;
/// Unneeded bytes a range read may span to join two needed blobs.
const MAX_GAP: u64 = 64 << 10;

/// Options of [`Repository::restore`].
#[derive(Clone)]
pub struct RestoreOptions {
    /// The database file to restore into (created or replaced).
    pub target: PathBuf,
    /// `quick_check` instead of `integrity_check`.
    pub quick: bool,
    /// SQL run on the restored copy before it goes live.
    pub post_sql: Option<String>,
    /// Back the existing target up first (tagged `pre-restore`).
    pub pre_restore: bool,
    /// Write into the target through SQLite while it stays open.
    pub live: bool,
    /// Set to stop early; the target is left untouched.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Progress reports (bytes of image fetched).
    pub progress: Option<Arc<dyn Progress>>,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("target", &self.target)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl RestoreOptions {
    /// Defaults: full integrity check, pre-restore snapshot, file swap.
    pub fn new(target: impl Into<PathBuf>) -> Self {
        Self {
            target: target.into(),
            quick: false,
            post_sql: None,
            pre_restore: true,
            live: false,
            cancel: None,
            progress: None,
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreSummary {
    /// The snapshot restored.
    pub snapshot: SnapshotId,
    /// The target, absolute.
    pub target: PathBuf,
    /// Image bytes written.
    pub bytes: u64,
    /// The snapshot of the replaced target, if one was taken.
    pub pre_restore: Option<SnapshotId>,
    /// True if written through SQLite into an open database.
    pub live: bool,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
}

fn cancelled(cancel: Option<&Arc<AtomicBool>>) -> Result<()> {
    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
        return Err(Error::Interrupted(
            "restore stopped; the target was not touched".into(),
        ));
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The absolute target; a symlink is followed, so the database it points to
/// is the one restored (and its -wal/-shm are the ones handled).
fn resolve_target(target: &Path) -> Result<PathBuf> {
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

/// Checks the target's directory exists and the target is not a directory.
fn check_target(target: &Path) -> Result<PathBuf> {
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

/// Fails if the filesystem of `dir` has less than `needed` bytes free.
fn check_space(dir: &Path, needed: u64) -> Result<()> {
    let st = rustix::fs::statvfs(dir).map_err(|e| {
        Error::io(
            format!("checking free space in {}", dir.display()),
            e.into(),
        )
    })?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    // The image, plus a little for SQLite's journal while verifying.
    let want = needed + needed / 100 + (1 << 20);
    if free < want {
        return Err(Error::InvalidInput(format!(
            "not enough free space in {}: the restore needs {} bytes, {free} are free",
            dir.display(),
            want
        )));
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

/// Fails if another connection or process has the target open.
fn refuse_if_open(target: &Path) -> Result<()> {
    if let Some(holder) = process_holding(target) {
        return Err(Error::InvalidInput(format!(
            "target {} is open by {holder}: stop it first, or restore into the open database with --live",
            target.display()
        )));
    }
    // Rollback-journal databases: a reader or writer elsewhere (another
    // host on a shared filesystem, another user) holds a lock we can see.
    let conn = Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Source(format!("cannot open target {}: {e}", target.display())))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| crate::source::sql_error(target, Duration::ZERO, &e))?;
    if mode != "wal" && conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;").is_err() {
        return Err(Error::InvalidInput(format!(
            "target {} is locked by another connection: stop it first, or restore into the open database with --live",
            target.display()
        )));
    }
    Ok(())
}

/// Checks the restored copy: page size, page count, integrity.
fn verify_database(path: &Path, m: &Manifest, quick: bool) -> Result<()> {
    let bad = |what: String| {
        Error::damaged(
            format!(
                "the restored copy of {} taken at {}",
                m.database.name, m.time
            ),
            what,
        )
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| bad(format!("it does not open: {e}")))?;
    // The check reads every b-tree page: through a map rather than
    // copying each one into SQLite's cache (measured: a fifth faster).
    conn.pragma_update(None, "mmap_size", m.image.bytes)
        .map_err(|e| bad(e.to_string()))?;
    if m.image.bytes > 0 {
        let (ps, pc): (i64, i64) = conn
            .query_row(
                "SELECT page_size, page_count FROM pragma_page_size, pragma_page_count",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| bad(e.to_string()))?;
        if ps != i64::from(m.image.page_size) || u64::try_from(pc).ok() != Some(m.image.page_count)
        {
            return Err(bad(format!(
                "page size {ps} and count {pc} differ from the manifest's {} and {}",
                m.image.page_size, m.image.page_count
            )));
        }
    }
    check(&conn, quick).map_err(bad)
}

fn check(conn: &Connection, quick: bool) -> std::result::Result<(), String> {
    let pragma = if quick {
        "quick_check"
    } else {
        "integrity_check"
    };
    let mut stmt = conn
        .prepare(&format!("PRAGMA {pragma}"))
        .map_err(|e| e.to_string())?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| e.to_string())?;
    let result = rows.join("; ");
    if result == "ok" {
        Ok(())
    } else {
        Err(format!(
            "PRAGMA {pragma} failed: {}",
            result.chars().take(300).collect::<String>()
        ))
    }
}

/// Runs the scrub SQL on the copy, folds its WAL into the file, checks it.
fn post_sql(path: &Path, sql: &str) -> Result<()> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Source(format!("opening the restored copy: {e}")))?;
    conn.execute_batch(sql).map_err(|e| {
        Error::InvalidInput(format!(
            "--post-sql failed: {e}; the target was not touched"
        ))
    })?;
    checkpoint(&conn).map_err(|e| {
        Error::InvalidInput(format!("after --post-sql: {e}; the target was not touched"))
    })?;
    check(&conn, true).map_err(|e| {
        Error::InvalidInput(format!("after --post-sql, {e}; the target was not touched"))
    })?;
    drop(conn);
    if std::fs::metadata(with_suffix(path, "-wal")).is_ok_and(|m| m.len() > 0) {
        return Err(Error::InvalidInput(
            "after --post-sql the copy's WAL could not be folded in; the target was not touched"
                .into(),
        ));
    }
    Ok(())
}

/// Copies a WAL-mode database's WAL into its file and empties it.
fn checkpoint(conn: &Connection) -> std::result::Result<(), String> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if mode == "wal" {
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if busy != 0 {
            return Err("the WAL checkpoint was blocked by another connection".into());
        }
    }
    Ok(())
}

/// Flushes a file or directory to stable storage.
fn fsync(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("fsyncing {}", path.display()), e))
}

/// Replaces `target` by `tmp` (see step 5 in the module docs).
fn swap(tmp: &Path, target: &Path, dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(target).is_ok() {
        // Opening runs SQLite's recovery (a hot journal is rolled back), and
        // the checkpoint moves any WAL content into the file.
        let conn = Connection::open_with_flags(
            target,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::Source(format!("cannot open target {}: {e}", target.display())))?;
        conn.busy_timeout(Duration::from_secs(5)).ok();
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|e| crate::source::sql_error(target, Duration::from_secs(5), &e))?;
        checkpoint(&conn)
            .map_err(|e| Error::Source(format!("target {}: {e}", target.display())))?;
        drop(conn);
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let p = with_suffix(target, suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing stale {}", p.display()), e)),
        }
    }
    // The copy may have changed since it was checked (--post-sql, whose SQL
    // may even turn SQLite's own syncing off): make it durable first.
    fsync(tmp)?;
    fsync(dir)?;
    std::fs::rename(tmp, target).map_err(|e| {
        Error::io(
            format!("renaming the restored copy to {}", target.display()),
            e,
        )
    })?;
    fsync(dir)
}

/// Writes the copy into the open target with the online backup API.
fn live_copy(tmp: &Path, target: &Path) -> Result<()> {
    let src = Connection::open_with_flags(
        tmp,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Source(format!("opening the restored copy: {e}")))?;
    let mut dst = Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Source(format!("cannot open target {}: {e}", target.display())))?;
    dst.busy_timeout(Duration::from_secs(30)).ok();
    let err = |e: rusqlite::Error| crate::source::sql_error(target, Duration::from_secs(30), &e);
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
        return Err(Error::InvalidInput(format!(
            "target {} is in WAL mode with {dst_ps}-byte pages but the snapshot has {src_ps}-byte pages: SQLite cannot change the page size of a WAL database while it is open; stop the application and restore without --live",
            target.display()
        )));
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
                return Err(Error::Source(format!(
                    "target {} stayed busy for 30 s: a writer holds it; retry later",
                    target.display()
                )))
            }
        }
    }
}

/// A run of blobs adjacent in one pack, fetched with one range read.
struct Run {
    pack: crate::id::PackId,
    start: u64,
    len: u64,
    items: Vec<(u64, PackedBlob)>,
}

impl Repository {
    /// The image's chunk list in order, with the image offset of each.
    fn chunk_list(&self, index: &Index, m: &Manifest) -> Result<Vec<(u64, BlobId)>> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        walk_tree(
            &m.tree,
            &mut |id: &BlobId| self.read_tree(index, id),
            &mut |e| {
                out.push((offset, e.id));
                offset += e.len;
                Ok(())
            },
        )?;
        if offset != m.image.bytes {
            return Err(Error::damaged(
                format!("snapshot of {} taken at {}", m.database.name, m.time),
                format!("its chunks add up to {offset} bytes, not {}", m.image.bytes),
            ));
        }
        Ok(out)
    }

    /// Groups the chunks into range reads, checking every blob is indexed
    /// and every pack present before anything is written. Blobs are sorted
    /// by their place in their pack (parallel compression stores adjacent
    /// chunks out of order), and neighbours less than [`MAX_GAP`] apart
    /// share one read of at most [`MAX_RUN`] bytes.
    fn plan_runs(&self, index: &Index, chunks: &[(u64, BlobId)]) -> Result<Vec<Run>> {
        let packs = self.pack_sizes()?;
        let mut located = Vec::with_capacity(chunks.len());
        for (offset, id) in chunks {
            let loc = index.get(id).ok_or_else(|| {
                Error::damaged(
                    format!("blob {id}"),
                    "no index lists it: the snapshot's data is missing",
                )
            })?;
            located.push((loc.pack, *offset, loc.blob));
        }
        located.sort_unstable_by_key(|(pack, offset, b)| (*pack, b.offset, *offset));
        let mut runs: Vec<Run> = Vec::new();
        for (pack, offset, b) in located {
            let (start, len) = (u64::from(b.offset), u64::from(b.entry.stored_len));
            match runs.last_mut() {
                Some(r)
                    if r.pack == pack
                        && start >= r.start + r.len
                        && start - (r.start + r.len) <= MAX_GAP
                        && start + len - r.start <= MAX_RUN =>
                {
                    r.len = start + len - r.start;
                    r.items.push((offset, b));
                }
                // The same blob at another offset of the image: one read.
                Some(r) if r.pack == pack && start + len <= r.start + r.len => {
                    r.items.push((offset, b));
                }
                _ => {
                    let name = pack.to_hex();
                    if !packs.contains_key(&name) {
                        return Err(Error::damaged(
                            FileType::Pack.describe(&name),
                            "the pack is missing",
                        ));
                    }
                    runs.push(Run {
                        pack,
                        start,
                        len,
                        items: vec![(offset, b)],
                    });
                }
            }
        }
        Ok(runs)
    }

    /// Step 1: the verified image in a new file at `path`.
    fn reassemble(&self, m: &Manifest, path: &Path, opts: &RestoreOptions) -> Result<()> {
        let index = self.load_index()?;
        let chunks = self.chunk_list(&index, m)?;
        let runs = self.plan_runs(&index, &chunks)?;
        let ctx = |e| Error::io(format!("writing {}", path.display()), e);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(path)
            .map_err(ctx)?;
        file.set_len(m.image.bytes).map_err(ctx)?;
        if let Some(p) = &opts.progress {
            p.start(m.image.bytes);
        }
        let next = AtomicUsize::new(0);
        let threads = std::thread::available_parallelism()
            .map_or(2, std::num::NonZero::get)
            .clamp(2, 8);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| -> Result<()> {
                        let mut raw = Vec::new();
                        let mut work = || -> Result<()> {
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some(run) = runs.get(i) else {
                                    return Ok(());
                                };
                                cancelled(opts.cancel.as_ref())?;
                                let name = run.pack.to_hex();
                                let mut bytes = self.backend().read_range(
                                    FileType::Pack,
                                    &name,
                                    run.start,
                                    run.len,
                                )?;
                                let mut done: Option<(u32, BlobId)> = None;
                                for (offset, b) in &run.items {
                                    let at = (u64::from(b.offset) - run.start) as usize;
                                    if done == Some((b.offset, b.entry.id)) {
                                        // A repeat of the blob just decoded
                                        // (decrypting in place consumed it).
                                    } else {
                                        let sealed =
                                            &mut bytes[at..at + b.entry.stored_len as usize];
                                        let object = format!(
                                            "blob {} in {}",
                                            b.entry.id.short(),
                                            FileType::Pack.describe(&name)
                                        );
                                        pack::open_blob_into(
                                            self.key(),
                                            &b.entry,
                                            sealed,
                                            &object,
                                            &mut raw,
                                        )?;
                                        done = Some((b.offset, b.entry.id));
                                    }
                                    file.write_all_at(&raw, *offset).map_err(ctx)?;
                                    if let Some(p) = &opts.progress {
                                        p.advance(raw.len() as u64);
                                    }
                                }
                            }
                        };
                        let result = work();
                        if result.is_err() {
                            // Stop the other threads: the restore has failed.
                            next.store(usize::MAX / 2, Ordering::Relaxed);
                        }
                        result
                    })
                })
                .collect();
            let mut first = None;
            for h in handles {
                if let Err(e) = h.join().expect("restore thread panicked") {
                    first.get_or_insert(e);
                }
            }
            first.map_or(Ok(()), Err)
        })?;
        Ok(())
    }

    /// Reads the reassembled file back to check the whole image's keyed
    /// hash and size against the manifest.
    fn check_image(&self, m: &Manifest, path: &Path) -> Result<()> {
        let ctx = |e| Error::io(format!("checking {}", path.display()), e);
        let mut file = File::open(path).map_err(ctx)?;
        let mut h = self.key().blob_hasher();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(ctx)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            total += n as u64;
        }
        if total != m.image.bytes || BlobId::from_bytes(*h.finalize().as_bytes()) != m.image.hash {
            return Err(Error::damaged(
                format!("restored image {}", path.display()),
                "its hash or size differs from the snapshot's manifest",
            ));
        }
        Ok(())
    }

    /// Restores snapshot `id` into `opts.target` (see the module docs).
    pub fn restore(&self, id: &SnapshotId, opts: &RestoreOptions) -> Result<RestoreSummary> {
        let started = Instant::now();
        let lock = self.lock(LockKind::Shared, "restore")?;
        let manifest = self.load_manifest(id)?;
        let target = resolve_target(&opts.target)?;
        let dir = check_target(&target)?;
        check_space(&dir, manifest.image.bytes)?;
        let exists = std::fs::symlink_metadata(&target).is_ok();
        if exists && !opts.live {
            // Before the long part: fail early if the swap would be refused.
            refuse_if_open(&target)?;
        }
        let file_name = target
            .file_name()
            .map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
        let mut rnd = [0u8; 8];
        crate::crypto::random_bytes(&mut rnd)?;
        let tmp = TempDb(dir.join(format!(
            ".{file_name}.litevault-restore-{}",
            hex::encode(rnd)
        )));
        self.reassemble(&manifest, &tmp.0, opts)?;
        // The fsync and the hash read-back run beside SQLite's check: all
        // three must pass before anything replaces the target.
        std::thread::scope(|s| {
            let synced = s.spawn(|| fsync(&tmp.0));
            let image = s.spawn(|| self.check_image(&manifest, &tmp.0));
            let db = verify_database(&tmp.0, &manifest, opts.quick);
            let image = image.join().expect("image check thread panicked");
            let synced = synced.join().expect("fsync thread panicked");
            image.and(db).and(synced)
        })?;
        if let Some(sql) = &opts.post_sql {
            post_sql(&tmp.0, sql)?;
        }
        cancelled(opts.cancel.as_ref())?;
        // The target may have appeared while the copy was being made.
        let exists = std::fs::symlink_metadata(&target).is_ok();
        if exists && !opts.live {
            refuse_if_open(&target)?;
        }
        let pre_restore = if exists && opts.pre_restore {
            Some(self.pre_restore_snapshot(&target)?)
        } else {
            None
        };
        cancelled(opts.cancel.as_ref())?;
        lock.ensure_held()?;
        let live = opts.live && exists;
        if live {
            live_copy(&tmp.0, &target)?;
        } else {
            refuse_if_open_again(&target, exists)?;
            swap(&tmp.0, &target, &dir)?;
        }
        Ok(RestoreSummary {
            snapshot: *id,
            target,
            bytes: manifest.image.bytes,
            pre_restore,
            live,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Backs the target up, tagged `pre-restore` plus the tags its own
    /// latest snapshot had.
    fn pre_restore_snapshot(&self, target: &Path) -> Result<SnapshotId> {
        let path = target.to_string_lossy();
        let own =
            self.snapshots()?.into_iter().rev().find(|(_, m)| {
                m.database.path == path && !m.tags.iter().any(|t| t == PRE_RESTORE_TAG)
            });
        let mut opts = BackupOptions::new(target);
        opts.force = true;
        opts.strategy = Strategy::Pages;
        opts.tags = vec![PRE_RESTORE_TAG.to_string()];
        if let Some((_, m)) = own {
            opts.tags.extend(m.tags);
            opts.name = Some(m.database.name);
        }
        let s = self.backup(&opts).map_err(|e| match e {
            Error::Source(msg) => Error::Source(format!(
                "backing up the current target before replacing it: {msg}"
            )),
            e => e,
        })?;
        s.snapshot
            .ok_or_else(|| Error::InvalidInput("the pre-restore backup stored no snapshot".into()))
    }

    /// Writes the image of `manifest` to `out` in order, verified; returns
    /// its length. Reads one blob at a time (for streaming dumps).
    pub fn write_image(
        &self,
        index: &Index,
        manifest: &Manifest,
        out: &mut impl Write,
    ) -> Result<u64> {
        let mut hasher = self.key().blob_hasher();
        let mut written = 0u64;
        walk_tree(
            &manifest.tree,
            &mut |id: &BlobId| self.read_tree(index, id),
            &mut |entry| {
                let data = self.read_blob(index, &entry.id)?;
                if data.len() as u64 != entry.len {
                    return Err(Error::damaged(
                        format!("tree entry for blob {}", entry.id.short()),
                        format!("it says {} bytes, the blob has {}", entry.len, data.len()),
                    ));
                }
                hasher.update(&data);
                written += data.len() as u64;
                out.write_all(&data)
                    .map_err(|e| Error::io("writing the image", e))
            },
        )?;
        if written != manifest.image.bytes
            || BlobId::from_bytes(*hasher.finalize().as_bytes()) != manifest.image.hash
        {
            return Err(Error::damaged(
                format!("image of the snapshot of {} taken at {}", manifest.database.name, manifest.time),
                format!(
                    "the reassembled image ({written} bytes) does not match the manifest's hash and size ({} bytes)",
                    manifest.image.bytes
                ),
            ));
        }
        Ok(written)
    }

    /// Writes the image of snapshot `id` to `out`, verified.
    pub fn dump_image(&self, id: &SnapshotId, out: &mut impl Write) -> Result<u64> {
        let manifest = self.load_manifest(id)?;
        let index = self.load_index()?;
        self.write_image(&index, &manifest, out)
    }
}

/// The pre-restore backup took a while: check nobody opened the target
/// meanwhile.
fn refuse_if_open_again(target: &Path, exists: bool) -> Result<()> {
    if exists {
        refuse_if_open(target)?;
    }
    Ok(())
}
