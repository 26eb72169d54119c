//! One read of a database stored into several repositories: every
//! repository gets a snapshot of the same image (same pages, same time),
//! and the database is read once, not once per repository.
//!
//! Each repository's backup runs on its own thread as [`backup`] runs it
//! (lock, index, its own chunking, keys and deltas), but its image comes
//! from a [`Fed`] source: this thread opens the real source once every
//! backup has asked for it, and hands each the same batches of pages. The
//! slowest repository sets the pace (each has a few batches of slack), as
//! it would alone. A repository whose file is unchanged since its latest
//! snapshot does not ask (its image is the file as it stands); one that
//! fails stops taking batches and the others go on.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::backup::{backup, backup_fed, BackupOptions, BackupSummary};
use std::path::Path;

use crate::error::{Error, Result, SourceProblem};
use crate::format::crypto::MasterKey;
use crate::id::BlobId;
use crate::repo::Repository;
use crate::sqlite::source::{open_source, ImageMeta, ImageSource};

/// Bytes of pages in one batch handed to every repository.
const BATCH_BYTES: usize = 1 << 20;
/// Batches a repository may have waiting before the read waits for it.
const SLACK: usize = 4;

/// What a backup's [`Fed`] source receives: the image's metadata, then its
/// pages in batches, then the metadata the read ended with, or why the
/// read failed.
enum Feed {
    Meta(ImageMeta),
    Pages(Arc<Vec<u8>>),
    End(ImageMeta),
    Failed(Error),
}

/// A backup asking for the image: which repository, and where to send it.
struct Asked {
    repo: usize,
    tx: SyncSender<Feed>,
}

/// Backs the database at `opts.path` up into each of `repos` from one
/// read: the results are in the order of `repos`. Every snapshot written
/// holds the same image and records the same time, the moment the read
/// ended (unless `opts.time` sets one).
pub fn backup_each(repos: &[&Repository], opts: &BackupOptions) -> Vec<Result<BackupSummary>> {
    if repos.len() < 2 {
        return repos.iter().map(|r| backup(r, opts)).collect();
    }
    if let Err(e) = opts.validate() {
        return repos.iter().map(|_| Err(echo(&e, &opts.path))).collect();
    }
    // Progress is the read's: reported by the first backup only.
    let own: Vec<BackupOptions> = (0..repos.len())
        .map(|i| {
            let mut o = opts.clone();
            if i > 0 {
                o.progress = None;
            }
            o
        })
        .collect();
    let (ask_tx, ask_rx) = std::sync::mpsc::channel::<Asked>();
    std::thread::scope(|s| {
        let runs: Vec<_> = repos
            .iter()
            .zip(&own)
            .enumerate()
            .map(|(i, (repo, opts))| {
                let ask = ask_tx.clone();
                s.spawn(move || {
                    backup_fed(repo, opts, move || {
                        let (tx, rx) = sync_channel(SLACK);
                        let asked = ask.send(Asked { repo: i, tx });
                        // The reader starts once every backup has asked or
                        // ended: this one has asked.
                        drop(ask);
                        asked.map_err(|_| Error::Internal("the shared read is gone".into()))?;
                        Ok(Box::new(Fed::start(rx)?) as Box<dyn ImageSource>)
                    })
                })
            })
            .collect();
        drop(ask_tx);
        let asked: Vec<Asked> = ask_rx.iter().collect();
        if !asked.is_empty() {
            read_once(repos, opts, asked);
        }
        runs.into_iter()
            .map(|h| h.join().expect("backup thread panicked"))
            .collect()
    })
}

/// Opens the database once and feeds its image to every backup that asked.
fn read_once(repos: &[&Repository], opts: &BackupOptions, asked: Vec<Asked>) {
    let fail_all = |asked: Vec<Asked>, e: &Error| {
        for a in asked {
            let _ = a.tx.send(Feed::Failed(echo(e, &opts.path)));
        }
    };
    let conn = match crate::sqlite::open_database(&opts.path, opts.lock_timeout) {
        Ok(c) => c,
        Err(e) => return fail_all(asked, &e),
    };
    let first = repos[asked[0].repo].key();
    let mut source = match open_source(&conn, &opts.path, first, &opts.source_options()) {
        Ok(s) => s,
        Err(e) => return fail_all(asked, &e),
    };
    // Each repository's own keyed schema hash; then the metadata.
    let mut fed: Vec<(SyncSender<Feed>, BlobId)> = Vec::with_capacity(asked.len());
    for a in asked {
        let key: &MasterKey = repos[a.repo].key();
        let mut meta = source.meta().clone();
        match source.schema_hash_for(key) {
            Ok(h) => meta.schema_hash = h,
            Err(e) => {
                let _ = a.tx.send(Feed::Failed(e));
                continue;
            }
        }
        let hash = meta.schema_hash;
        if a.tx.send(Feed::Meta(meta)).is_ok() {
            fed.push((a.tx, hash));
        }
    }
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let hand_out = |batch: &mut Vec<u8>, fed: &mut Vec<(SyncSender<Feed>, BlobId)>| {
        let pages = Arc::new(std::mem::replace(batch, Vec::with_capacity(BATCH_BYTES)));
        // A backup that stopped (failed) takes no more.
        fed.retain(|(tx, _)| tx.send(Feed::Pages(Arc::clone(&pages))).is_ok());
    };
    let read = source.for_each_page(&mut |page| {
        batch.extend_from_slice(page);
        if batch.len() >= BATCH_BYTES {
            hand_out(&mut batch, &mut fed);
            if fed.is_empty() {
                return Err(Error::Interrupted(
                    "every backup sharing the read stopped".into(),
                ));
            }
        }
        Ok(())
    });
    if read.is_ok() && !batch.is_empty() {
        hand_out(&mut batch, &mut fed);
    }
    let ended = read.and_then(|()| source.finish());
    match ended {
        Ok(mut meta) => {
            meta.taken = Some(jiff::Timestamp::now());
            for (tx, hash) in fed {
                let mut m = meta.clone();
                m.schema_hash = hash;
                let _ = tx.send(Feed::End(m));
            }
        }
        Err(e) => {
            for (tx, _) in fed {
                let _ = tx.send(Feed::Failed(echo(&e, &opts.path)));
            }
        }
    }
}

/// An image source fed by [`read_once`].
struct Fed {
    rx: Receiver<Feed>,
    meta: ImageMeta,
    end: Option<ImageMeta>,
}

impl Fed {
    /// Waits for the image's metadata.
    fn start(rx: Receiver<Feed>) -> Result<Self> {
        match rx.recv() {
            Ok(Feed::Meta(meta)) => Ok(Self {
                rx,
                meta,
                end: None,
            }),
            Ok(Feed::Failed(e)) => Err(e),
            Ok(_) | Err(_) => Err(gone()),
        }
    }
}

fn gone() -> Error {
    Error::Internal("the shared read of the database ended early".into())
}

impl ImageSource for Fed {
    fn meta(&self) -> &ImageMeta {
        &self.meta
    }

    fn for_each_page(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let ps = self.meta.page_size as usize;
        loop {
            match self.rx.recv() {
                Ok(Feed::Pages(pages)) => {
                    for page in pages.chunks(ps) {
                        f(page)?;
                    }
                }
                Ok(Feed::End(meta)) => {
                    self.end = Some(meta);
                    return Ok(());
                }
                Ok(Feed::Failed(e)) => return Err(e),
                Ok(Feed::Meta(_)) | Err(_) => return Err(gone()),
            }
        }
    }

    fn schema_hash_for(&self, _key: &MasterKey) -> Result<BlobId> {
        Err(Error::Internal("a shared image is not shared again".into()))
    }

    fn finish(self: Box<Self>) -> Result<ImageMeta> {
        self.end.ok_or_else(gone)
    }
}

/// The same error again, for each backup that shared a failed read: the
/// source's own errors keep their kind and words; any other is told as an
/// unreadable database at `path`, in the same words.
fn echo(e: &Error, path: &Path) -> Error {
    match e {
        Error::Source {
            path,
            problem,
            message,
        } => Error::source(path.clone(), *problem, message.clone()),
        Error::Interrupted(m) => Error::Interrupted(m.clone()),
        Error::InvalidOption { option, message } => Error::option(option, message.clone()),
        Error::NoSpace {
            path,
            what,
            needed,
            free,
        } => Error::NoSpace {
            path: path.clone(),
            what,
            needed: *needed,
            free: *free,
        },
        Error::Io { op, path, source } => Error::Io {
            op,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        e => Error::source(path, SourceProblem::Unreadable, e.to_string()),
    }
}
