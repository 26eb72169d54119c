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
use crate::format::change::{
    block_start, extend_digest, CommitRecord, Digest, StreamId, MAX_LEVEL,
};
use crate::format::manifest::Manifest;
use crate::id::SnapshotId;
use crate::progress::Cancel;
use crate::repo::changes::StoredChange;
use crate::repo::{Repository, SnapshotFilter};

/// What a stopped restore to a moment says.
const STOPPED: &str = "restore stopped; the target was not touched";

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
    let (Some(stream), Some(digest)) = (c.stream_id(), c.digest_bytes()) else {
        return Err(Error::damaged(
            "the snapshot's stream",
            "its stream or digest is not 64 hex digits",
        ));
    };
    let ps = u64::from(m.image.page_size);
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
    let walk = Walk {
        stream,
        after: c.seq,
        starts: vec![digest],
        page_size: m.image.page_size,
        stop: None,
        covered,
    };
    let mut read = 0;
    let walked = walk.run(repo, Some((cancel, STOPPED)), &mut read, |seq, commit| {
        if until_ns.is_some_and(|t| commit.time_ns > t) {
            return Ok(false);
        }
        apply_commit(repo, &stream, seq, file, ps, commit)?;
        applied.commits += 1;
        applied.time_ns = commit.time_ns;
        applied.pages = u64::from(commit.db_pages);
        Ok(true)
    })?;
    applied.objects = read;
    applied.seq = walked.last_seq;
    applied.end = match walked.end {
        WalkEnd::Moment => "moment",
        // A bridge after this point started a new chain: a later snapshot
        // goes on from it.
        WalkEnd::DigestBreak(_) => "bridged",
        WalkEnd::Pruned => "pruned",
        WalkEnd::End | WalkEnd::Stop => "end",
    }
    .into();
    Ok(applied)
}

/// One walk along a stream's change objects, from the snapshot at `after`:
/// the loop a restore to a moment and `check` share. Each object is found
/// by name, opened (authenticated), must continue the digest and have the
/// snapshot's page size; its commits are handed over in order.
pub(super) struct Walk {
    /// The stream.
    pub stream: StreamId,
    /// The sequence number of the snapshot the walk starts from.
    pub after: u64,
    /// Digests the first object may go on from (snapshots at one point).
    pub starts: Vec<Digest>,
    /// The snapshot's page size.
    pub page_size: u32,
    /// The last sequence number to walk (the stream's next snapshot), or
    /// every one.
    pub stop: Option<u64>,
    /// Sequence numbers up to this one are covered by a later snapshot: an
    /// object missing there was removed by retention.
    pub covered: u64,
}

/// Where a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WalkEnd {
    /// The handler declined a commit (a restore's moment).
    Moment,
    /// The walk reached `stop`.
    Stop,
    /// No object holds the next number and none later exists.
    End,
    /// Retention removed the objects from here (a later snapshot covers).
    Pruned,
    /// This object does not continue the digest: a bridge started a new
    /// chain (for a restore), or damage (for `check`).
    DigestBreak(u64),
}

/// Where a walk ended.
pub(super) struct Walked {
    /// The last change object all of whose commits were handed over (or
    /// the snapshot's number).
    pub last_seq: u64,
    pub end: WalkEnd,
}

impl Walk {
    /// Walks, handing each commit to `each` (which returns `false` to stop
    /// before it) and counting each object read (change objects and
    /// bundles) in `read`, whatever the outcome. With `cancel`, stops with
    /// its message when it is cancelled.
    pub fn run(
        &self,
        repo: &Repository,
        cancel: Option<(&Cancel, &'static str)>,
        read: &mut u64,
        mut each: impl FnMut(u64, &CommitRecord) -> Result<bool>,
    ) -> Result<Walked> {
        let stream = &self.stream;
        let mut walked = Walked {
            last_seq: self.after,
            end: WalkEnd::End,
        };
        let mut digest = self.starts[0];
        let mut next = self.after + 1;
        // Blocks known to have no bundle at a level (their members are read).
        let mut missing: Vec<(u8, u64)> = Vec::new();
        loop {
            if let Some((cancel, stopped)) = cancel {
                cancel.check(stopped)?;
            }
            if self.stop.is_some_and(|s| next > s) {
                walked.end = WalkEnd::Stop;
                return Ok(walked);
            }
            let Some(stored) = find(repo, stream, next, &mut missing)? else {
                if next <= self.covered {
                    walked.end = WalkEnd::Pruned;
                } else {
                    end_or_hole(repo, stream, next)?;
                }
                return Ok(walked);
            };
            *read += 1;
            let before = next;
            for o in repo.open_stored(stream, &stored)? {
                if o.seq < next || self.stop.is_some_and(|s| o.seq > s) {
                    continue;
                }
                if next == self.after + 1 && self.starts.contains(&o.digest_before) {
                    digest = o.digest_before;
                }
                if o.digest_before != digest {
                    walked.end = WalkEnd::DigestBreak(o.seq);
                    return Ok(walked);
                }
                if o.page_size != self.page_size {
                    return Err(Error::damaged(
                        change_name(repo, stream, o.seq),
                        format!(
                            "its pages are {} bytes, the snapshot's {}",
                            o.page_size, self.page_size
                        ),
                    ));
                }
                for commit in &o.commits {
                    if !each(o.seq, commit)? {
                        walked.end = WalkEnd::Moment;
                        return Ok(walked);
                    }
                    digest = extend_digest(&digest, commit);
                }
                walked.last_seq = o.seq;
                next = o.seq + 1;
            }
            if next == before {
                return Err(Error::damaged(
                    change_name(repo, stream, next),
                    "the object stored for it does not hold it",
                ));
            }
        }
    }
}

/// How a change object is named in messages.
pub(super) fn change_name(repo: &Repository, stream: &StreamId, seq: u64) -> String {
    crate::backend::FileType::Change.describe(&repo.change_name(stream, 0, seq))
}

/// Writes one commit's pages into the image and sets its size.
fn apply_commit(
    repo: &Repository,
    stream: &StreamId,
    seq: u64,
    file: &File,
    ps: u64,
    commit: &CommitRecord,
) -> Result<()> {
    let object = || change_name(repo, stream, seq);
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
fn find(
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
fn end_or_hole(repo: &Repository, stream: &StreamId, seq: u64) -> Result<()> {
    for later in [seq + 1, seq + 2, seq + 16] {
        for level in 0..=MAX_LEVEL {
            let first = block_start(later, level);
            if first <= seq && level > 0 {
                continue;
            }
            if repo.has_change(stream, level, first)? {
                return Err(Error::damaged(
                    change_name(repo, stream, seq),
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
