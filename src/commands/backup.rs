//! Backup: a consistent image of a database into the repository.
//!
//! ```text
//! ImageSource (pages | vacuum) ──pages──▶ chunker ──chunks──▶ keyed hash ──▶ indexed? ──yes──▶ (reused)
//!                                                                            │no
//!                                 workers (zstd + seal, one per core) ◀──────┘
//!                                              │
//!                                     packer ──▶ packs ──▶ index files ──▶ manifest
//! ```
//!
//! The calling thread reads pages from the [`ImageSource`] and finds chunk
//! boundaries; an indexer thread hashes chunks, dedups them against the
//! index and builds the chunk-list tree; worker threads compress and seal
//! new blobs; the packer thread stores packs and index files. Channels
//! between them are bounded, so memory stays bounded whatever the
//! database's size: a few chunks in flight, one open pack, the index.
//!
//! Crash consistency (SPEC.md, "Writing objects safely"): packs are stored
//! before the index files naming them, and the manifest after all of them,
//! so an interrupted backup leaves no snapshot pointing at missing data;
//! the packs it indexed are reused by the next backup. An image equal to
//! the latest snapshot of its group (same database path, host and tags) is
//! not stored again unless forced.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::backend::IoStats;
use crate::error::{Error, Result};
use crate::format::chunker::PageChunker;
use crate::format::lock::LockKind;
use crate::format::manifest::{BackupStats, DatabaseInfo, DbPath, ImageInfo, Manifest, Strategy};
use crate::format::pack::{BlobType, DeltaBase};
use crate::format::tree::{TreeBuilder, TreeEntry, TreeNode, TreeRoot};
use crate::id::{BlobId, SnapshotId};
use crate::progress::{Cancel, Progress};
use crate::repo::packer::{seal_blob_against, IndexMode, Packer, PackerStats, SealedBlob};
use crate::repo::walker::TreeLayout;
use crate::repo::{validate_tag, BaseCache, GroupBy, GroupKey, Index, LockGuard, Repository};
use crate::sqlite::source::{open_source, ImageMeta, ImageSource, SourceOptions};

const STOPPED: &str = "backup stopped; no snapshot was written";
/// The longest wait for a database locked by a writer.
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The longest host or database name.
pub const MAX_LABEL: usize = 255;
/// The most tags a snapshot may have.
pub const MAX_TAGS: usize = 64;

/// Options of [`backup`]: one struct for the library, the command line, a
/// config file and the HTTP API.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupOptions {
    /// The database file.
    pub path: PathBuf,
    /// Name recorded in the snapshot (default: the file name).
    #[serde(default)]
    pub name: Option<String>,
    /// Path recorded in the snapshot instead of `path` (an import records
    /// the database its file is a copy of).
    #[serde(default)]
    pub recorded_path: Option<PathBuf>,
    /// Tags (sorted and deduplicated in the manifest).
    #[serde(default)]
    pub tags: Vec<String>,
    /// How to take the image.
    #[serde(default = "default_strategy")]
    pub strategy: Strategy,
    /// Snapshot time (default: now).
    #[serde(default, with = "crate::sys::serde_time")]
    pub time: Option<jiff::Timestamp>,
    /// Host name recorded (default: this host).
    #[serde(default)]
    pub host: Option<String>,
    /// Store a snapshot even if the image equals the latest one.
    #[serde(default)]
    pub force: bool,
    /// Run `PRAGMA quick_check` on the source and record the result.
    #[serde(default)]
    pub verify_source: bool,
    /// How long to wait for a database locked by a writer.
    #[serde(default = "default_lock_timeout", with = "crate::sys::serde_duration")]
    pub lock_timeout: Duration,
    /// Directory for the `vacuum` strategy's temporary export (default:
    /// the system's temporary directory).
    #[serde(default)]
    pub temp_dir: Option<PathBuf>,
    /// Store freelist pages as they are (by default they are stored as
    /// zeros: they hold only what deleted rows left behind).
    #[serde(default)]
    pub keep_free_pages: bool,
    /// Align the read with the WAL and record the snapshot's place in a
    /// stream of captured changes (continuous capture's bridges and folds).
    #[serde(skip)]
    pub align: Option<crate::sqlite::source::Align>,
    /// Stops the backup early; nothing half-done is kept.
    #[serde(skip)]
    pub cancel: Cancel,
    /// Progress reports.
    #[serde(skip)]
    pub progress: Option<Arc<dyn Progress>>,
}

fn default_strategy() -> Strategy {
    Strategy::Pages
}

fn default_lock_timeout() -> Duration {
    Duration::from_secs(5)
}

impl std::fmt::Debug for BackupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupOptions")
            .field("path", &self.path)
            .field("tags", &self.tags)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl BackupOptions {
    /// Defaults for backing up `path`: pages strategy, no tags, 5 s lock timeout.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            name: None,
            recorded_path: None,
            tags: Vec::new(),
            strategy: default_strategy(),
            time: None,
            host: None,
            force: false,
            verify_source: false,
            lock_timeout: default_lock_timeout(),
            temp_dir: None,
            keep_free_pages: false,
            align: None,
            cancel: Cancel::new(),
            progress: None,
        }
    }

    pub(crate) fn source_options(&self) -> SourceOptions {
        SourceOptions {
            strategy: self.strategy,
            verify: self.verify_source,
            lock_timeout: self.lock_timeout,
            temp_dir: self.temp_dir.clone().unwrap_or_else(std::env::temp_dir),
            keep_free_pages: self.keep_free_pages,
            cancel: self.cancel.clone(),
            align: self.align.clone(),
        }
    }

    /// Checks every value is within range.
    pub fn validate(&self) -> Result<()> {
        if self.path.as_os_str().is_empty() {
            return Err(Error::option("path", "the database path is empty"));
        }
        if self.lock_timeout > MAX_LOCK_TIMEOUT {
            return Err(Error::option(
                "lock_timeout",
                format!(
                    "lock timeout {:.0} s is longer than the {} h litevault waits at most",
                    self.lock_timeout.as_secs_f64(),
                    MAX_LOCK_TIMEOUT.as_secs() / 3600
                ),
            ));
        }
        for (option, value) in [("host", &self.host), ("name", &self.name)] {
            if let Some(v) = value {
                if v.is_empty() || v.len() > MAX_LABEL || v.chars().any(char::is_control) {
                    return Err(Error::option(
                        option,
                        format!(
                            "{option} {v:?} must have 1 to {MAX_LABEL} bytes and no control characters"
                        ),
                    ));
                }
            }
        }
        if self.tags.len() > MAX_TAGS {
            return Err(Error::option(
                "tags",
                format!(
                    "{} tags is more than the {MAX_TAGS} a snapshot may have",
                    self.tags.len()
                ),
            ));
        }
        self.tags.iter().try_for_each(|t| validate_tag(t))
    }
}

/// What a backup did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackupSummary {
    /// The new snapshot, or `None` if the image was unchanged and skipped.
    pub snapshot: Option<SnapshotId>,
    /// True if the image equalled the latest snapshot's and nothing was
    /// stored.
    pub skipped: bool,
    /// The unchanged snapshot this backup matched, when skipped.
    pub unchanged_since: Option<SnapshotId>,
    /// The manifest (written unless skipped).
    pub manifest: Manifest,
    /// Chunks already in the repository.
    pub reused_chunks: u64,
    /// Pack files written.
    pub packs: u64,
    /// Bytes added to the repository: packs, index files and the manifest,
    /// after compression and encryption (0 when skipped).
    pub added_bytes: u64,
    /// Image bytes per second read.
    pub throughput: f64,
    /// What did not stop the backup but should be said (a corrupt schema).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Requests made to the storage and bytes moved, from opening the
    /// repository to the end of this command (lock released).
    #[serde(default)]
    pub io: IoStats,
    /// How long the database's read transaction was held, in
    /// milliseconds (in rollback-journal mode, how long writers waited at
    /// most): the page read, or the `VACUUM INTO` export; 0 for a copy.
    #[serde(default)]
    pub read_lock_ms: u64,
    /// The pages were read from a copy-on-write clone of the database
    /// file made under the lock (rollback-journal mode, a filesystem with
    /// reflinks), so the lock was held only while cloning.
    #[serde(default)]
    pub cloned: bool,
    /// The database was not read: it and its WAL are as `stat` saw them
    /// throughout the read of `unchanged_since` (same inode, size and
    /// times, last written well before), so nothing changed them.
    #[serde(default)]
    pub not_read: bool,
}

impl BackupSummary {
    /// A backup that found the file unchanged since snapshot `id` (whose
    /// manifest is `m`) and did not read it.
    fn not_read(id: SnapshotId, m: Manifest, io: IoStats) -> Self {
        Self {
            snapshot: None,
            skipped: true,
            unchanged_since: Some(id),
            reused_chunks: m.stats.chunks,
            manifest: m,
            packs: 0,
            added_bytes: 0,
            throughput: 0.0,
            warnings: Vec::new(),
            io,
            read_lock_ms: 0,
            cloned: false,
            not_read: true,
        }
    }
}

/// A chunk or tree blob to compress and seal.
struct Job {
    ty: BlobType,
    id: BlobId,
    data: Vec<u8>,
    /// The blob to try compressing it against (format 2).
    base: Option<DeltaBase>,
}

/// Where a blob sits: a data blob's bytes of the image, or the bytes a
/// tree blob of `level` covers.
#[derive(Clone, Copy)]
struct Span {
    level: u8,
    offset: u64,
    len: u64,
}

/// The previous version of the image, for choosing delta bases: the layout
/// of the latest snapshot of the same database, loaded when the first new
/// blob needs it (an unchanged database never does).
struct Parent {
    snapshot: Option<Manifest>,
    layout: Option<TreeLayout>,
    max_depth: u16,
}

impl Parent {
    /// The latest snapshot of the database at `path` on `host`, if the
    /// repository writes deltas and the key can read it (a write-only key
    /// stores every changed chunk whole: SPEC.md 21.5).
    fn find(repo: &Repository, path: &DbPath, host: &str) -> Result<Self> {
        let max_depth = if repo.key().is_write_only() {
            0
        } else {
            repo.config().max_delta_depth()
        };
        let snapshot = if max_depth == 0 {
            None
        } else {
            repo.full_key_snapshots()?
                .into_iter()
                .filter(|(_, m)| m.database.key() == *path && m.host == host)
                .max_by_key(|(_, m)| m.timestamp())
                .map(|(_, m)| m)
        };
        Ok(Self {
            snapshot,
            layout: None,
            max_depth,
        })
    }

    /// The base for a new blob at `at`: the parent's blob of the same kind
    /// (and tree level) overlapping it most, or the nearest ancestor in its
    /// delta chain shallow enough that the new blob stays within the depth
    /// limit.
    fn base_for(
        &mut self,
        repo: &Repository,
        index: &Index,
        ty: BlobType,
        at: Span,
    ) -> Option<DeltaBase> {
        let m = self.snapshot.as_ref()?;
        if self.layout.is_none() {
            // A parent that cannot be read gives no bases; the backup goes on.
            self.layout = Some(repo.tree_layout(m).unwrap_or_default());
        }
        let layout = self.layout.as_ref()?;
        let spans: &[(u64, u64, BlobId)] = match ty {
            BlobType::Data => &layout.chunks,
            BlobType::Tree => layout.nodes.get(usize::from(at.level))?,
        };
        let end = at.offset + at.len;
        let first = spans
            .partition_point(|s| s.0 <= at.offset)
            .saturating_sub(1);
        let mut best: Option<(u64, BlobId)> = None;
        for &(start, stop, id) in spans.get(first..)? {
            if start >= end {
                break;
            }
            let overlap = stop.min(end).saturating_sub(start.max(at.offset));
            if overlap > 0 && best.is_none_or(|(o, _)| overlap > o) {
                best = Some((overlap, id));
            }
        }
        let (_, id) = best?;
        // Down the candidate's chain through checked links, each one level
        // shallower, so a forged index cannot make this loop.
        let mut entry = index.get(&id)?.blob.entry;
        if entry.ty != ty {
            return None;
        }
        loop {
            let depth = entry.base.map_or(0, |b| b.depth);
            if depth < self.max_depth {
                return Some(DeltaBase {
                    id: entry.id,
                    depth: depth + 1,
                });
            }
            entry = index.delta_base(&entry)?.ok()?.blob.entry;
        }
    }
}

struct Indexer<'a> {
    out: Emitter<'a>,
    tree: TreeBuilder,
    image: blake3::Hasher,
    counts: ReaderCounts,
}

/// What a backup's delta attempts saved. After a `VACUUM` of the database
/// every page has moved, no chunk shares much with the one at its offset
/// before, and trying (reading the base, compressing against it) costs
/// time for a few percent: once a sample of attempts stored more than a
/// quarter of their plaintext, the backup stops trying.
#[derive(Default)]
struct DeltaYield {
    tried: std::sync::atomic::AtomicU64,
    raw: std::sync::atomic::AtomicU64,
    stored: std::sync::atomic::AtomicU64,
}

impl DeltaYield {
    /// Attempts after which the yield is judged.
    const SAMPLE: u64 = 64;

    fn record(&self, raw: usize, stored: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.tried.fetch_add(1, Relaxed);
        self.raw.fetch_add(raw as u64, Relaxed);
        self.stored.fetch_add(stored as u64, Relaxed);
    }

    /// False once a sample of attempts stored over a quarter of their
    /// plaintext (a day's deltas store a few percent).
    fn worth_trying(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.tried.load(Relaxed) < Self::SAMPLE
            || self.stored.load(Relaxed) * 4 <= self.raw.load(Relaxed)
    }
}

/// Queues new blobs for the workers, each with the base a delta would be
/// made against.
struct Emitter<'a> {
    repo: &'a Repository,
    known: Known,
    parent: Parent,
    yield_: &'a DeltaYield,
    jobs: Sender<Job>,
    /// Image bytes covered by the tree blobs stored so far, per level: where
    /// the next tree blob of each level starts.
    tree_offsets: Vec<u64>,
}

impl Emitter<'_> {
    /// Queues a blob covering `offset..offset + len` of the image (a tree
    /// blob: of its level) unless the repository or this backup already
    /// has it; true if queued.
    fn queue(&mut self, ty: BlobType, id: BlobId, data: Vec<u8>, at: Span) -> Result<bool> {
        if !self.known.insert(id) {
            return Ok(false);
        }
        let base = if self.yield_.worth_trying() {
            self.parent.base_for(self.repo, &self.known.index, ty, at)
        } else {
            None
        };
        self.jobs
            .send(Job { ty, id, data, base })
            .map_err(|_| stopped())?;
        Ok(true)
    }

    fn tree_node(&mut self, node: &TreeNode) -> Result<BlobId> {
        let bytes = node.encode();
        let id = self.repo.key().blob_id(&bytes);
        let level = usize::from(node.level);
        if self.tree_offsets.len() <= level {
            self.tree_offsets.resize(level + 1, 0);
        }
        let len: u64 = node.entries.iter().map(|e| e.len).sum();
        let at = Span {
            level: node.level,
            offset: self.tree_offsets[level],
            len,
        };
        self.tree_offsets[level] += len;
        self.queue(BlobType::Tree, id, bytes, at)?;
        Ok(id)
    }
}

impl Indexer<'_> {
    fn chunk(&mut self, chunk: Vec<u8>) -> Result<()> {
        self.image.update(&chunk);
        let id = self.out.repo.key().blob_id(&chunk);
        let len = chunk.len() as u64;
        let offset = self.counts.read;
        self.counts.chunks += 1;
        self.counts.read += len;
        let at = Span {
            level: 0,
            offset,
            len,
        };
        if self.out.queue(BlobType::Data, id, chunk, at)? {
            self.counts.new_chunks += 1;
            self.counts.new_bytes += len;
        }
        let out = &mut self.out;
        self.tree
            .push(TreeEntry { id, len }, &mut |node: TreeNode| {
                out.tree_node(&node)
            })
    }

    fn finish(self) -> Result<(TreeRoot, BlobId, ReaderCounts)> {
        let mut out = self.out;
        let root = self
            .tree
            .finish(&mut |node: TreeNode| out.tree_node(&node))?;
        Ok((
            root,
            BlobId::from_bytes(*self.image.finalize().as_bytes()),
            self.counts,
        ))
    }
}

/// The pipeline stopped because a later stage failed; that stage's error is
/// reported instead.
fn stopped() -> Error {
    Error::Interrupted("the backup pipeline stopped early".into())
}

/// The blobs a backup need not store: those the index lists, and those
/// this backup already queued. A full key trusts only what full keys'
/// index files list (a write-only host could list a blob it never
/// stored); a write-only key takes any.
struct Known {
    index: Arc<Index>,
    new: HashSet<BlobId>,
    any: bool,
}

impl Known {
    /// True if `id` is new (and now known).
    fn insert(&mut self, id: BlobId) -> bool {
        let stored = if self.any {
            self.index.contains(&id)
        } else {
            self.index.contains_trusted(&id)
        };
        !stored && self.new.insert(id)
    }
}

#[derive(Default)]
struct ReaderCounts {
    chunks: u64,
    new_chunks: u64,
    new_bytes: u64,
    read: u64,
}

type PipelineOutput = (TreeRoot, BlobId, ReaderCounts, PackerStats);

/// Runs the reader on this thread, and the indexer, the workers and the
/// packer beside it.
fn pipeline(
    repo: &Repository,
    lock: &LockGuard,
    known: Known,
    parent: Parent,
    source: &mut dyn ImageSource,
    opts: &BackupOptions,
) -> Result<PipelineOutput> {
    let meta = source.meta().clone();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    let level = repo.config().compression.level();
    let (chunk_tx, chunk_rx) = bounded::<Vec<u8>>(16);
    let (job_tx, job_rx) = bounded::<Job>(workers * 4);
    let (sealed_tx, sealed_rx) = bounded::<SealedBlob>(workers * 4);
    let bases = BaseCache::default();
    let index = Arc::clone(&known.index);
    let delta_yield = DeltaYield::default();
    let yield_ = &delta_yield;
    std::thread::scope(|s| {
        let worker_handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx: Receiver<Job> = job_rx.clone();
                let tx = sealed_tx.clone();
                let (bases, index) = (&bases, &index);
                s.spawn(move || -> Result<()> {
                    for job in rx {
                        // A base that cannot be read (damaged, unreachable)
                        // only costs a full blob.
                        let base = job.base.and_then(|b| {
                            Some((b, repo.blob_plaintext(index, &b.id, bases).ok()?))
                        });
                        let base = base.as_ref().map(|(b, p)| (*b, p.as_slice()));
                        let b =
                            seal_blob_against(repo.key(), job.ty, job.id, &job.data, level, base)?;
                        if base.is_some() {
                            yield_.record(b.raw_len, b.sealed.len());
                        }
                        if tx.send(b).is_err() {
                            break;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        drop(job_rx);
        drop(sealed_tx);
        let packer = s.spawn(move || -> Result<PackerStats> {
            let mut p = Packer::new(repo, lock, IndexMode::Every);
            for b in sealed_rx {
                p.add(&b)?;
            }
            p.finish()
        });
        let indexer = s.spawn(move || {
            let mut ix = Indexer {
                out: Emitter {
                    repo,
                    known,
                    parent,
                    yield_,
                    jobs: job_tx,
                    tree_offsets: Vec::new(),
                },
                tree: TreeBuilder::new(),
                image: repo.key().blob_hasher(),
                counts: ReaderCounts::default(),
            };
            for chunk in chunk_rx {
                ix.chunk(chunk)?;
            }
            ix.finish()
            // `ix` and its job sender are gone: the workers drain and stop.
        });

        if let Some(p) = &opts.progress {
            p.start(u64::from(meta.page_size) * meta.page_count);
        }
        let mut chunker = PageChunker::new(
            repo.key().chunker_key(),
            repo.config().chunker,
            meta.page_size as usize,
        );
        let mut send = |chunk: &[u8]| -> Result<()> {
            opts.cancel.check(STOPPED)?;
            if let Some(p) = &opts.progress {
                p.advance(chunk.len() as u64);
            }
            chunk_tx.send(chunk.to_vec()).map_err(|_| stopped())
        };
        let read_result = source
            .for_each_page(&mut |page| match chunker.push(page) {
                Some(chunk) => send(chunk),
                None => Ok(()),
            })
            .and_then(|()| chunker.finish().map_or(Ok(()), &mut send));
        drop(chunk_tx);

        // The first failure downstream is the root cause of any upstream
        // "pipeline stopped".
        let index_result = indexer.join().expect("indexer thread panicked");
        let mut worker_err = None;
        for h in worker_handles {
            if let Err(e) = h.join().expect("worker thread panicked") {
                worker_err.get_or_insert(e);
            }
        }
        let stats = packer.join().expect("packer thread panicked")?;
        if let Some(e) = worker_err {
            return Err(e);
        }
        let (root, hash, counts) = index_result?;
        read_result?;
        Ok((root, hash, counts, stats))
    })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The manifest of a finished backup (duration filled in by the caller).
/// The database path a snapshot of `opts` records.
fn recorded_path(opts: &BackupOptions) -> PathBuf {
    opts.recorded_path
        .as_deref()
        .map_or_else(|| absolute(&opts.path), absolute)
}

/// The host a snapshot of `opts` records.
fn recorded_host(opts: &BackupOptions) -> String {
    opts.host.clone().unwrap_or_else(crate::sys::hostname)
}

fn new_manifest(
    opts: &BackupOptions,
    meta: ImageMeta,
    root: TreeRoot,
    hash: BlobId,
    counts: &ReaderCounts,
    stats: &PackerStats,
) -> Manifest {
    let file = absolute(&opts.path);
    let path = recorded_path(opts);
    let tags = sorted_tags(&opts.tags);
    let host = recorded_host(opts);
    let time = opts
        .time
        .or(meta.taken)
        .unwrap_or_else(jiff::Timestamp::now);
    Manifest {
        time: time
            .round(jiff::Unit::Microsecond)
            .unwrap_or(time)
            .to_string(),
        host,
        username: crate::sys::username(),
        database: DatabaseInfo::new(
            &path,
            opts.name.clone(),
            std::fs::metadata(&file).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.mode() & 0o7777
            }),
        ),
        tags,
        image: ImageInfo {
            strategy: opts.strategy,
            page_size: meta.page_size,
            page_count: meta.page_count,
            bytes: u64::from(meta.page_size) * meta.page_count,
            hash,
            schema_hash: meta.schema_hash,
            journal_mode: meta.journal_mode,
            sqlite_version: meta.sqlite_version,
            quick_check: meta.quick_check,
            change_counter: meta.change_counter,
            zeroed_free_pages: meta.zeroed_free_pages,
            file: meta.file,
        },
        stats: BackupStats {
            chunks: counts.chunks,
            new_chunks: counts.new_chunks,
            new_bytes: counts.new_bytes,
            added_bytes: stats.bytes,
            duration_ms: 0,
        },
        tree: root,
        continuous: meta.continuous.clone(),
    }
}

/// Backs up the database at `opts.path`.
pub fn backup(repo: &Repository, opts: &BackupOptions) -> Result<BackupSummary> {
    opts.validate()?;
    let conn = crate::sqlite::open_database(&opts.path, opts.lock_timeout)?;
    backup_connection(repo, &conn, opts)
}

/// Backs up the database behind an open connection (an application's own).
/// `opts.path` names it in the snapshot.
pub fn backup_connection(
    repo: &Repository,
    conn: &Connection,
    opts: &BackupOptions,
) -> Result<BackupSummary> {
    run(repo, opts, None, None, true, || {
        open_source(conn, &opts.path, repo.key(), &opts.source_options())
    })
}

/// Backs up `opts.path` under a lock the caller holds (several backups in
/// one run).
pub(crate) fn backup_held(
    repo: &Repository,
    lock: &LockGuard,
    opts: &BackupOptions,
) -> Result<BackupSummary> {
    opts.validate()?;
    let conn = crate::sqlite::open_database(&opts.path, opts.lock_timeout)?;
    run(repo, opts, None, Some(lock), true, || {
        open_source(&conn, &opts.path, repo.key(), &opts.source_options())
    })
}

/// Backs up several databases in one run, each into its own snapshot,
/// under one shared lock and with one index load. A database that fails
/// is reported to `each` and the others go on; a cancellation stops the
/// rest. `each` sees every result as it comes.
pub fn backup_many(
    repo: &Repository,
    opts: &[BackupOptions],
    mut each: impl FnMut(usize, &Result<BackupSummary>),
) -> Result<Vec<Result<BackupSummary>>> {
    let lock = repo.lock(LockKind::Shared, "backup")?;
    let mut out = Vec::with_capacity(opts.len());
    for (i, o) in opts.iter().enumerate() {
        let r = backup_held(repo, &lock, o);
        each(i, &r);
        let stop = matches!(&r, Err(e) if e.kind() == crate::error::ErrorKind::Interrupted);
        out.push(r);
        if stop {
            break;
        }
    }
    drop(lock);
    Ok(out)
}

/// Backs up the database at `opts.path` from the image `open` gives (one
/// read shared by several repositories: [`super::backup_each`]), unless the
/// file is unchanged since the latest snapshot (then `open` is not called).
pub(crate) fn backup_fed<'s>(
    repo: &Repository,
    opts: &BackupOptions,
    open: impl FnOnce() -> Result<Box<dyn ImageSource + 's>>,
) -> Result<BackupSummary> {
    run(repo, opts, None, None, true, open)
}

/// Backs up an image from any source (`opts.strategy` is recorded as its
/// strategy).
pub fn backup_source(
    repo: &Repository,
    source: Box<dyn ImageSource + '_>,
    opts: &BackupOptions,
) -> Result<BackupSummary> {
    run(repo, opts, None, None, false, || Ok(source))
}

/// Stores another repository's snapshot `origin`, whose image `source`
/// reads, as a snapshot of this one: the same time, host, user, database,
/// tags and strategy; this repository's chunking, ids and keys.
pub(crate) fn backup_copy(
    repo: &Repository,
    source: Box<dyn ImageSource + '_>,
    opts: &BackupOptions,
    origin: &Manifest,
) -> Result<BackupSummary> {
    run(repo, opts, Some(origin), None, false, || Ok(source))
}

/// Takes the lock (unless the caller holds one), loads the index, then
/// opens the source (so its read transaction starts late and stays short)
/// and backs it up. With `file` (the source reads the database file at
/// `opts.path`), a file unchanged since the latest snapshot of its group
/// is not read at all (see [`unchanged_file`]).
fn run<'s>(
    repo: &Repository,
    opts: &BackupOptions,
    origin: Option<&Manifest>,
    held: Option<&LockGuard>,
    file: bool,
    open: impl FnOnce() -> Result<Box<dyn ImageSource + 's>>,
) -> Result<BackupSummary> {
    opts.validate()?;
    let started = Instant::now();
    let phase = |name: &str| {
        if let Some(p) = &opts.progress {
            p.phase(name);
        }
    };
    let own = if held.is_some() {
        None
    } else {
        phase("locking");
        Some(repo.lock(LockKind::Shared, "backup")?)
    };
    let lock = held.or(own.as_ref()).expect("a lock, held or taken");
    opts.cancel.check(STOPPED)?;
    let (path, host) = match origin {
        Some(o) => (o.database.key(), o.host.clone()),
        None => (DbPath::of(&recorded_path(opts)), recorded_host(opts)),
    };
    if file && origin.is_none() {
        phase("checking the file");
        if let Some((id, m)) = unchanged_file(repo, opts, &path, &host)? {
            drop(own);
            return Ok(BackupSummary::not_read(id, m, repo.io_stats()));
        }
    }
    phase("loading index");
    let known = Known {
        index: repo.index()?,
        new: HashSet::new(),
        any: repo.key().is_write_only(),
    };
    if opts.strategy == Strategy::Vacuum {
        crate::sqlite::tempdb::remove_stale(&opts.source_options().temp_dir);
        phase("vacuum into");
    } else {
        phase("opening source");
    }
    let parent = Parent::find(repo, &path, &host)?;
    let mut source = open()?;
    phase("reading image");
    let (root, hash, counts, stats) = pipeline(repo, lock, known, parent, source.as_mut(), opts)?;
    phase("closing source");
    let mut meta = source.finish()?;
    let warnings = std::mem::take(&mut meta.warnings);
    let (read_lock_ms, cloned) = (meta.read_lock_ms, meta.cloned);
    opts.cancel.check(STOPPED)?;
    phase("saving snapshot");
    let mut manifest = new_manifest(opts, meta, root, hash, &counts, &stats);
    if let Some(o) = origin {
        manifest.time.clone_from(&o.time);
        manifest.host.clone_from(&o.host);
        manifest.username.clone_from(&o.username);
        manifest.database = o.database.clone();
        manifest.tags.clone_from(&o.tags);
        manifest.image.strategy = o.image.strategy;
    }
    let elapsed = started.elapsed();
    let throughput = counts.read as f64 / elapsed.as_secs_f64().max(1e-9);
    manifest.stats.duration_ms = elapsed.as_millis() as u64;
    let summary =
        |snapshot: Option<SnapshotId>, unchanged_since, manifest, added_bytes| BackupSummary {
            skipped: snapshot.is_none(),
            snapshot,
            unchanged_since,
            manifest,
            reused_chunks: counts.chunks - counts.new_chunks,
            packs: stats.packs,
            added_bytes,
            throughput,
            warnings: warnings.clone(),
            io: IoStats::default(),
            read_lock_ms,
            cloned,
            not_read: false,
        };
    let unchanged = if opts.force {
        None
    } else {
        latest_matching(repo, &manifest)?
    };
    let mut done = if let Some(id) = unchanged {
        summary(None, Some(id), manifest, stats.bytes)
    } else {
        lock.ensure_held()?;
        // A snapshot must not name data a prune deleted meanwhile: the
        // lock that kept prunes off is still there, every pack this backup
        // wrote is too, and so is every index file it deduplicated against
        // (a prune rewrites each index file it touches).
        repo.confirm_before_publish(lock)?;
        repo.confirm_packs(&stats.pack_ids)?;
        let (id, len) = repo.save_manifest(&manifest)?;
        summary(Some(id), None, manifest, stats.bytes + len)
    };
    drop(own);
    done.io = repo.io_stats();
    Ok(done)
}

/// The latest snapshot of `group` (database, host and tags) a full key
/// wrote; none for a write-only key, which cannot read snapshots (its
/// backups always store a snapshot, deduplicated against the index).
fn latest_of(repo: &Repository, group: &GroupKey) -> Result<Option<(SnapshotId, Manifest)>> {
    if repo.key().is_write_only() {
        return Ok(None);
    }
    Ok(repo
        .full_key_snapshots()?
        .into_iter()
        .filter(|(_, s)| GroupBy::default().key(s) == *group)
        .max_by_key(|(_, s)| s.timestamp()))
}

/// The latest snapshot of the same group (database, host and tags), if its
/// image equals `m`'s.
fn latest_matching(repo: &Repository, m: &Manifest) -> Result<Option<SnapshotId>> {
    Ok(latest_of(repo, &GroupBy::default().key(m))?
        .filter(|(_, s)| s.image.hash == m.image.hash && s.image.bytes == m.image.bytes)
        .map(|(id, _)| id))
}

/// The latest snapshot of the group this backup would join, if it read
/// the database file and its WAL while `stat` saw them exactly as now:
/// nothing wrote either since, so the image would be that snapshot's
/// (SPEC.md 9.3, "Unchanged files"). Never with `--force`, a source check
/// or kept free pages, which need the read.
fn unchanged_file(
    repo: &Repository,
    opts: &BackupOptions,
    path: &DbPath,
    host: &str,
) -> Result<Option<(SnapshotId, Manifest)>> {
    if opts.force || opts.verify_source || opts.keep_free_pages || opts.strategy != Strategy::Pages
    {
        return Ok(None);
    }
    let Some(now) = crate::sqlite::source::file_stamp(&opts.path) else {
        return Ok(None);
    };
    let group = GroupBy::default().key_of(host, path, &sorted_tags(&opts.tags));
    Ok(latest_of(repo, &group)?
        .filter(|(_, s)| s.image.strategy == Strategy::Pages && s.image.file == Some(now)))
}

/// Tags as a manifest records them: sorted, each once.
fn sorted_tags(tags: &[String]) -> Vec<String> {
    let mut tags = tags.to_vec();
    tags.sort();
    tags.dedup();
    tags
}
