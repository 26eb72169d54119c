//! Restoring to a moment (SPEC.md 20.6): the snapshot of a stream taken at
//! or before the moment, then the stream's commits after it, up to the
//! last one read at or before the moment, applied page by page to the
//! reassembled image.
//!
//! The objects are found by name, never by listing: the one that holds the
//! next sequence number is the level-2 bundle of its block, else the
//! level-1 bundle, else the change object itself. Every object is opened
//! (authenticated) and must be the sequence number its place says, its
//! digest must continue the one before, and every page must be the content
//! its hash names once applied: a missing, reordered, replayed or foreign
//! object stops the restore with an error naming it, never a skip. The end
//! of the stream is where no object holds the next sequence number and no
//! later one exists either.

use std::fs::File;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::change::{block_start, extend_digest, StreamId, MAX_LEVEL};
use crate::format::manifest::Manifest;
use crate::id::SnapshotId;
use crate::progress::Cancel;
use crate::repo::changes::StoredChange;
use crate::repo::{Repository, SnapshotFilter};

/// What applying a stream did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Objects read (change objects and bundles).
    pub objects: u64,
    /// Commits applied.
    pub commits: u64,
    /// The last change object whose commits were applied (or the
    /// snapshot's).
    pub seq: u64,
    /// When the last applied commit was read by the capture (ns since the
    /// Unix epoch), or the snapshot's moment.
    pub time_ns: i64,
    /// The database's size in pages after it.
    pub pages: u64,
    /// Why it stopped: `moment` (the next commit is later), `end` (the
    /// stream goes no further), `bridged` (the stream was bridged: a later
    /// snapshot goes on from there), `pruned` (retention removed the
    /// changes after this point: a later snapshot goes on).
    pub end: String,
}

/// The moment a snapshot's image holds: its stream's, else its time.
pub fn moment_ns(m: &Manifest) -> i64 {
    m.continuous
        .as_ref()
        .map_or_else(|| m.timestamp().as_nanosecond() as i64, |c| c.time_ns)
}

/// The snapshot to restore `at` from: the newest of one database (the
/// filter must select one) whose moment is at or before `at`, preferring
/// one of a stream (changes go on from it) unless a snapshot of no stream
/// is newer than the stream's last commit before `at` (checked by the
/// caller with [`apply_stream`]'s result).
pub fn choose(
    repo: &Repository,
    filter: &SnapshotFilter,
    at_ns: i64,
) -> Result<Vec<(SnapshotId, Manifest)>> {
    let mut c: Vec<(SnapshotId, Manifest)> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, m)| {
            filter.matches(m) && !m.tags.iter().any(|t| t == crate::repo::PRE_RESTORE_TAG)
        })
        .filter(|(_, m)| moment_ns(m) <= at_ns)
        .collect();
    crate::repo::one_database(&c)?;
    if c.is_empty() {
        return Err(Error::NoSnapshot {
            filtered: !filter.is_empty(),
        });
    }
    // Newest first: of a stream, then the newest of all.
    c.sort_by_key(|(_, m)| std::cmp::Reverse(moment_ns(m)));
    let newest = c[0].clone();
    let stream = c.iter().find(|(_, m)| m.continuous.is_some()).cloned();
    Ok(match stream {
        Some(s) if s.0 != newest.0 => vec![s, newest],
        Some(s) => vec![s],
        None => vec![newest],
    })
}

/// Applies the stream `m` belongs to, after `m`'s image, to the image in
/// `file` (page size `m.image.page_size`), up to the last commit read at or
/// before `until_ns` (every commit with `None`).
pub fn apply_stream(
    repo: &Repository,
    m: &Manifest,
    file: &File,
    until_ns: Option<i64>,
    cancel: &Cancel,
) -> Result<Applied> {
    let mut applied = Applied {
        seq: m.continuous.as_ref().map_or(0, |c| c.seq),
        time_ns: moment_ns(m),
        pages: m.image.page_count,
        end: "end".into(),
        ..Applied::default()
    };
    let Some(c) = &m.continuous else {
        return Ok(applied);
    };
    let (Some(stream), Some(mut digest)) = (c.stream_id(), c.digest_bytes()) else {
        return Err(Error::damaged(
            "the snapshot's stream",
            "its stream or digest is not 64 hex digits",
        ));
    };
    let ps = u64::from(m.image.page_size);
    let mut next = c.seq + 1;
    // A later snapshot of the stream covers up to here: objects before it
    // may have gone with retention (prune), which is no damage.
    let covered = repo
        .snapshots()?
        .iter()
        .filter_map(|(_, s)| s.continuous.as_ref())
        .filter(|s| s.stream == c.stream)
        .map(|s| s.seq)
        .max()
        .unwrap_or(0);
    // Blocks known to have no bundle at a level (their members are read).
    let mut missing: Vec<(u8, u64)> = Vec::new();
    'objects: loop {
        cancel.check("restore stopped; the target was not touched")?;
        let Some(stored) = find(repo, &stream, next, &mut missing)? else {
            if next <= covered {
                applied.end = "pruned".into();
                break;
            }
            end_or_hole(repo, &stream, next)?;
            applied.end = "end".into();
            break;
        };
        applied.objects += 1;
        for o in repo.open_stored(&stream, &stored)? {
            if o.seq < next {
                continue;
            }
            if o.digest_before != digest {
                // A bridge after this point started a new chain: a later
                // snapshot goes on from it.
                applied.end = "bridged".into();
                break 'objects;
            }
            if o.page_size != m.image.page_size {
                return Err(Error::damaged(
                    crate::backend::FileType::Change.describe(&repo.change_name(&stream, 0, o.seq)),
                    format!(
                        "its pages are {} bytes, the snapshot's {}",
                        o.page_size, m.image.page_size
                    ),
                ));
            }
            for commit in &o.commits {
                if until_ns.is_some_and(|t| commit.time_ns > t) {
                    applied.end = "moment".into();
                    break 'objects;
                }
                apply_commit(repo, &stream, o.seq, file, ps, commit)?;
                digest = extend_digest(&digest, commit);
                applied.commits += 1;
                applied.time_ns = commit.time_ns;
                applied.pages = u64::from(commit.db_pages);
            }
            applied.seq = o.seq;
            next = o.seq + 1;
        }
    }
    Ok(applied)
}

/// Writes one commit's pages into the image and sets its size.
fn apply_commit(
    repo: &Repository,
    stream: &StreamId,
    seq: u64,
    file: &File,
    ps: u64,
    commit: &crate::format::change::CommitRecord,
) -> Result<()> {
    let object = || crate::backend::FileType::Change.describe(&repo.change_name(stream, 0, seq));
    let io = |e: std::io::Error| Error::io("writing", std::path::Path::new("the restored copy"), e);
    let len = file.metadata().map_err(io)?.len();
    let mut current = vec![0u8; ps as usize];
    for p in &commit.pages {
        let at = u64::from(p.pgno - 1) * ps;
        let previous = if at + ps <= len {
            file.read_exact_at(&mut current, at).map_err(io)?;
            Some(current.as_slice())
        } else {
            None
        };
        let Some(page) = p.apply(previous) else {
            return Err(Error::damaged(
                object(),
                format!(
                    "page {} does not apply to the page the restore holds (its content hash differs): the object or the image before it is not what the stream recorded",
                    p.pgno
                ),
            ));
        };
        file.write_all_at(&page, at).map_err(io)?;
    }
    file.set_len(u64::from(commit.db_pages) * ps).map_err(io)?;
    Ok(())
}

/// The object that holds sequence number `seq`: the coarsest stored.
pub(super) fn find(
    repo: &Repository,
    stream: &StreamId,
    seq: u64,
    missing: &mut Vec<(u8, u64)>,
) -> Result<Option<StoredChange>> {
    for level in (0..=MAX_LEVEL).rev() {
        let first = block_start(seq, level);
        if level > 0 && missing.contains(&(level, first)) {
            continue;
        }
        match repo.get_change(stream, level, first)? {
            Some(bytes) => {
                return Ok(Some(StoredChange {
                    level,
                    first,
                    bytes,
                }))
            }
            None if level > 0 => missing.push((level, first)),
            None => {}
        }
    }
    Ok(None)
}

/// No object holds `seq`: the stream's end, unless a later object exists
/// (then `seq` was removed, and the restore must not skip it).
pub(super) fn end_or_hole(repo: &Repository, stream: &StreamId, seq: u64) -> Result<()> {
    for later in [seq + 1, seq + 2, seq + 16] {
        for level in 0..=MAX_LEVEL {
            let first = block_start(later, level);
            if first <= seq && level > 0 {
                continue;
            }
            if repo.has_change(stream, level, first)? {
                return Err(Error::damaged(
                    crate::backend::FileType::Change.describe(&repo.change_name(stream, 0, seq)),
                    format!(
                        "change object {seq} of stream {} is missing while later ones are stored: it was removed",
                        &hex::encode(stream)[..8]
                    ),
                ));
            }
        }
    }
    Ok(())
}
