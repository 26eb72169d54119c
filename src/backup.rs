//! Backup: a consistent image of a database into the repository.
//!
//! ```text
//! source (pages | vacuum) ──pages──▶ chunker ──chunks──▶ keyed hash ──▶ known? ──yes──▶ (reused)
//!                                                                      │no
//!                              workers (zstd + seal, one per core) ◀───┘
//!                                           │
//!                                        packer ──▶ packs ──▶ index files ──▶ manifest
//! ```
//!
//! The calling thread reads pages, chunks and hashes them, and builds the
//! chunk-list tree; worker threads compress and seal new blobs; one packer
//! thread stores packs and index files. Channels between them are bounded,
//! so memory stays bounded whatever the database's size: at most a few
//! chunks in flight, one open pack, and the set of known blob ids.
//!
//! Crash consistency (SPEC.md, "Writing objects safely"): packs are stored
//! before the index files naming them, and the manifest after all of them,
//! so an interrupted backup leaves no snapshot pointing at missing data; the
//! packs it indexed are reused by the next backup.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use rusqlite::Connection;
use serde::Serialize;

use crate::chunker::PageChunker;
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::lock::LockKind;
use crate::pack::BlobType;
use crate::packer::{seal_blob, Packer, PackerStats, SealedBlob};
use crate::repository::Repository;
use crate::snapshot::{
    BackupStats, DatabaseInfo, ImageInfo, Manifest, Strategy, TreeBuilder, TreeEntry, TreeNode,
};
use crate::source::{self, ImageMeta, PageReader, VacuumExport};

/// Receives progress while a backup reads its image.
pub trait Progress: Send + Sync {
    /// The image will have `bytes` bytes.
    fn start(&self, bytes: u64);
    /// `bytes` more bytes of the image were read.
    fn advance(&self, bytes: u64);
}

/// Options of [`Repository::backup`].
#[derive(Clone)]
pub struct BackupOptions {
    /// The database file.
    pub path: PathBuf,
    /// Name recorded in the snapshot (default: the file name).
    pub name: Option<String>,
    /// Tags (sorted and deduplicated in the manifest).
    pub tags: Vec<String>,
    /// How to take the image.
    pub strategy: Strategy,
    /// Snapshot time (default: now).
    pub time: Option<jiff::Timestamp>,
    /// Host name recorded (default: this host).
    pub host: Option<String>,
    /// Store a snapshot even if the image equals the latest one.
    pub force: bool,
    /// Run `PRAGMA quick_check` on the source and record the result.
    pub verify_source: bool,
    /// How long to wait for a database locked by a writer.
    pub lock_timeout: Duration,
    /// Directory for the `vacuum` strategy's temporary export.
    pub temp_dir: Option<PathBuf>,
    /// Set to stop the backup early (Ctrl-C); nothing half-done is kept.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Progress reports.
    pub progress: Option<Arc<dyn Progress>>,
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
            tags: Vec::new(),
            strategy: Strategy::Pages,
            time: None,
            host: None,
            force: false,
            verify_source: false,
            lock_timeout: Duration::from_secs(5),
            temp_dir: None,
            cancel: None,
            progress: None,
        }
    }
}

/// What a backup did.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotSummary {
    /// The new snapshot, or `None` if the image was unchanged and skipped.
    pub snapshot: Option<SnapshotId>,
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
}

/// Checks a tag: non-empty, no commas, no white space or control characters.
pub fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty()
        || tag.contains(',')
        || tag.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::InvalidInput(format!(
            "invalid tag {tag:?}: tags are non-empty and have no commas, spaces or control characters"
        )));
    }
    Ok(())
}

fn cancelled(cancel: Option<&Arc<AtomicBool>>) -> Result<()> {
    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
        return Err(Error::Interrupted(
            "backup stopped; no snapshot was written".into(),
        ));
    }
    Ok(())
}

/// A chunk or tree blob to compress and seal.
struct Job {
    ty: BlobType,
    id: BlobId,
    data: Vec<u8>,
}

/// Chunk-side state, on its own thread: the image hash, chunk ids, dedup
/// against the index, the chunk-list tree. It receives whole chunks in
/// order from the reader, which meanwhile fetches pages and finds cuts.
struct Indexer<'a> {
    repo: &'a Repository,
    known: HashSet<BlobId>,
    jobs: Sender<Job>,
    tree: TreeBuilder,
    image: blake3::Hasher,
    counts: ReaderCounts,
}

impl Indexer<'_> {
    /// Queues a blob for sealing unless the repository (or this backup)
    /// already has it; true if queued.
    fn queue(
        jobs: &Sender<Job>,
        known: &mut HashSet<BlobId>,
        ty: BlobType,
        id: BlobId,
        data: Vec<u8>,
    ) -> Result<bool> {
        if !known.insert(id) {
            return Ok(false);
        }
        jobs.send(Job { ty, id, data }).map_err(|_| stopped())?;
        Ok(true)
    }

    fn store_tree_node(
        jobs: &Sender<Job>,
        known: &mut HashSet<BlobId>,
        key: &crate::MasterKey,
        node: &TreeNode,
    ) -> Result<BlobId> {
        let bytes = node.encode();
        let id = key.blob_id(&bytes);
        Self::queue(jobs, known, BlobType::Tree, id, bytes)?;
        Ok(id)
    }

    fn chunk(&mut self, chunk: Vec<u8>) -> Result<()> {
        self.image.update(&chunk);
        let id = self.repo.key().blob_id(&chunk);
        let len = chunk.len() as u64;
        self.counts.chunks += 1;
        self.counts.read += len;
        if Self::queue(&self.jobs, &mut self.known, BlobType::Data, id, chunk)? {
            self.counts.new_chunks += 1;
            self.counts.new_bytes += len;
        }
        let (jobs, known, key) = (&self.jobs, &mut self.known, self.repo.key());
        self.tree
            .push(TreeEntry { id, len }, &mut |node: TreeNode| {
                Self::store_tree_node(jobs, known, key, &node)
            })
    }

    fn finish(mut self) -> Result<(crate::snapshot::TreeRoot, BlobId, ReaderCounts)> {
        let (jobs, known, key) = (&self.jobs, &mut self.known, self.repo.key());
        let root = self
            .tree
            .finish(&mut |node: TreeNode| Self::store_tree_node(jobs, known, key, &node))?;
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

#[derive(Default)]
struct ReaderCounts {
    chunks: u64,
    new_chunks: u64,
    new_bytes: u64,
    read: u64,
}

type PipelineOutput = (crate::snapshot::TreeRoot, BlobId, ReaderCounts, PackerStats);

/// Runs the reader on this thread, and the indexer, the workers and the
/// packer beside it.
fn pipeline<F>(
    repo: &Repository,
    lock: &crate::lock::LockGuard,
    known: HashSet<BlobId>,
    meta: &ImageMeta,
    opts: &BackupOptions,
    feed: F,
) -> Result<PipelineOutput>
where
    F: FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
{
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    let level = repo.config().compression.level();
    let (chunk_tx, chunk_rx) = bounded::<Vec<u8>>(16);
    let (job_tx, job_rx) = bounded::<Job>(workers * 4);
    let (sealed_tx, sealed_rx) = bounded::<SealedBlob>(workers * 4);
    std::thread::scope(|s| {
        let worker_handles: Vec<_> = (0..workers)
            .map(|_| {
                let rx: Receiver<Job> = job_rx.clone();
                let tx = sealed_tx.clone();
                s.spawn(move || -> Result<()> {
                    for job in rx {
                        let b = seal_blob(repo.key(), job.ty, job.id, &job.data, level)?;
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
            let mut p = Packer::new(repo, lock);
            for b in sealed_rx {
                p.add(&b)?;
            }
            p.finish()
        });
        let indexer = s.spawn(move || {
            let mut ix = Indexer {
                repo,
                known,
                jobs: job_tx,
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
            cancelled(opts.cancel.as_ref())?;
            if let Some(p) = &opts.progress {
                p.advance(chunk.len() as u64);
            }
            chunk_tx.send(chunk.to_vec()).map_err(|_| stopped())
        };
        let read_result = feed(&mut |page| match chunker.push(page) {
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
fn new_manifest(
    opts: &BackupOptions,
    meta: ImageMeta,
    root: crate::snapshot::TreeRoot,
    hash: BlobId,
    counts: &ReaderCounts,
    stats: &PackerStats,
) -> Manifest {
    let path = absolute(&opts.path);
    let name = opts.name.clone().unwrap_or_else(|| {
        path.file_name()
            .map_or_else(|| "database".into(), |n| n.to_string_lossy().into_owned())
    });
    let mut tags = opts.tags.clone();
    tags.sort();
    tags.dedup();
    let host = opts.host.clone().unwrap_or_else(crate::util::hostname);
    let time = opts.time.unwrap_or_else(jiff::Timestamp::now);
    Manifest {
        time: time
            .round(jiff::Unit::Microsecond)
            .unwrap_or(time)
            .to_string(),
        host,
        username: crate::util::username(),
        database: DatabaseInfo {
            name,
            path: path.to_string_lossy().into_owned(),
        },
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
        },
        stats: BackupStats {
            chunks: counts.chunks,
            new_chunks: counts.new_chunks,
            new_bytes: counts.new_bytes,
            added_bytes: stats.bytes,
            duration_ms: 0,
        },
        tree: root,
    }
}

impl Repository {
    /// Backs up the database at `opts.path`.
    pub fn backup(&self, opts: &BackupOptions) -> Result<SnapshotSummary> {
        let conn = source::open_database(&opts.path, opts.lock_timeout)?;
        self.backup_connection(&conn, opts)
    }

    /// Backs up the database behind an open connection (an application's
    /// own). `opts.path` names it in the snapshot.
    pub fn backup_connection(
        &self,
        conn: &Connection,
        opts: &BackupOptions,
    ) -> Result<SnapshotSummary> {
        for t in &opts.tags {
            validate_tag(t)?;
        }
        let started = Instant::now();
        let lock = self.lock(LockKind::Shared, "backup")?;
        cancelled(opts.cancel.as_ref())?;
        // Loaded before the read transaction starts, to keep it short.
        let known = self.load_blob_ids()?;
        let (meta, root, hash, counts, stats) = match opts.strategy {
            Strategy::Pages => {
                let mut reader = PageReader::begin(
                    conn,
                    &opts.path,
                    self.key(),
                    opts.verify_source,
                    opts.lock_timeout,
                )?;
                let meta = reader.meta().clone();
                let (root, hash, counts, stats) =
                    pipeline(self, &lock, known, &meta, opts, |f| reader.for_each_page(f))?;
                (reader.finish()?, root, hash, counts, stats)
            }
            Strategy::Vacuum => {
                let temp = opts.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
                let mut export = VacuumExport::create(
                    conn,
                    &opts.path,
                    &temp,
                    self.key(),
                    opts.verify_source,
                    opts.lock_timeout,
                    opts.cancel.as_ref(),
                )?;
                let meta = export.meta().clone();
                let (root, hash, counts, stats) =
                    pipeline(self, &lock, known, &meta, opts, |f| export.for_each_page(f))?;
                let meta = export.meta().clone();
                (meta, root, hash, counts, stats)
            }
        };
        cancelled(opts.cancel.as_ref())?;
        let mut manifest = new_manifest(opts, meta, root, hash, &counts, &stats);
        let elapsed = started.elapsed();
        let throughput = counts.read as f64 / elapsed.as_secs_f64().max(1e-9);
        manifest.stats.duration_ms = elapsed.as_millis() as u64;
        let summary = |snapshot, unchanged_since, manifest, added_bytes| SnapshotSummary {
            snapshot,
            unchanged_since,
            manifest,
            reused_chunks: counts.chunks - counts.new_chunks,
            packs: stats.packs,
            added_bytes,
            throughput,
        };
        if !opts.force {
            if let Some((id, _)) = self.latest_matching(&manifest)? {
                return Ok(summary(None, Some(id), manifest, stats.bytes));
            }
        }
        lock.ensure_held()?;
        let (id, len) = self.save_manifest_sized(&manifest)?;
        Ok(summary(Some(id), None, manifest, stats.bytes + len))
    }

    /// The latest snapshot of the same database, host and tags, if its
    /// image equals `m`'s.
    fn latest_matching(&self, m: &Manifest) -> Result<Option<(SnapshotId, Manifest)>> {
        let latest = self
            .snapshots()?
            .into_iter()
            .filter(|(_, s)| {
                s.database.path == m.database.path && s.host == m.host && s.tags == m.tags
            })
            .max_by_key(|(_, s)| s.timestamp());
        Ok(latest.filter(|(_, s)| s.image.hash == m.image.hash && s.image.bytes == m.image.bytes))
    }
}
