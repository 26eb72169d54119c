//! The moments a database can be restored to (SPEC.md 20.6): per stream,
//! from its first snapshot to its last stored commit, with the gaps its
//! bridges closed. The end is found by name, never by listing: from the
//! stream's newest snapshot, sequence numbers are probed (an object of
//! any level that holds them) by doubling, then halving, and the last
//! object is read for its last commit's time.

use serde::Serialize;

use crate::error::Result;
use crate::format::change::{block_start, StreamId, MAX_LEVEL};
use crate::format::manifest::{ContinuousKind, Manifest};
use crate::id::SnapshotId;
use crate::repo::changes::StoredChange;
use crate::repo::Repository;

/// The reason a stream's first bridge records.
pub const STARTS: &str = "the stream starts";

/// One stream's restorable range.
#[derive(Clone, Debug, Serialize)]
pub struct StreamRange {
    /// The database's name.
    pub database: String,
    /// Its path, as listings show it.
    pub path: String,
    /// The host it was captured on.
    pub host: String,
    /// The stream, 64 hex digits.
    pub stream: String,
    /// The first moment it holds (its oldest snapshot's), ns since the
    /// Unix epoch.
    pub from_ns: i64,
    /// Its last stored commit's moment.
    pub to_ns: i64,
    /// Its last stored change object.
    pub last_seq: u64,
    /// Gaps its bridges closed: the bridge's moment and why.
    pub gaps: Vec<(i64, String)>,
}

/// The ranges of every stream the snapshots name.
pub fn ranges(repo: &Repository, snapshots: &[(SnapshotId, Manifest)]) -> Result<Vec<StreamRange>> {
    repo.require_full_key("listing restorable ranges")?;
    let mut out: Vec<StreamRange> = Vec::new();
    for (_, m) in snapshots {
        let Some(c) = &m.continuous else { continue };
        if !out.iter().any(|r| r.stream == c.stream) {
            out.push(StreamRange {
                database: m.database.name.clone(),
                path: m.database.shown_path(),
                host: m.host.clone(),
                stream: c.stream.clone(),
                from_ns: c.time_ns,
                to_ns: c.time_ns,
                last_seq: c.seq,
                gaps: Vec::new(),
            });
        }
        let r = out
            .iter_mut()
            .find(|r| r.stream == c.stream)
            .expect("pushed above");
        r.from_ns = r.from_ns.min(c.time_ns);
        if c.seq >= r.last_seq {
            r.last_seq = c.seq;
            r.to_ns = r.to_ns.max(c.time_ns);
        }
        // A bridge other than the stream's start closed a gap.
        if let (ContinuousKind::Bridge, Some(why)) = (c.kind, &c.gap) {
            if why != STARTS {
                r.gaps.push((c.time_ns, why.clone()));
            }
        }
    }
    for r in &mut out {
        r.gaps.sort();
        let Some(stream) = hex::decode(&r.stream)
            .ok()
            .and_then(|b| StreamId::try_from(b).ok())
        else {
            continue;
        };
        if let Some((seq, t)) = end(repo, &stream, r.last_seq)? {
            r.last_seq = seq;
            r.to_ns = r.to_ns.max(t);
        }
    }
    Ok(out)
}

/// The object holding `seq` at any level, if one is stored.
fn holder(repo: &Repository, stream: &StreamId, seq: u64) -> Result<Option<(u8, u64)>> {
    for level in (0..=MAX_LEVEL).rev() {
        let first = block_start(seq, level);
        if repo.has_change(stream, level, first)? {
            return Ok(Some((level, first)));
        }
    }
    Ok(None)
}

/// The last stored sequence number after `from` and its last commit's
/// time; `None` if nothing follows `from`.
fn end(repo: &Repository, stream: &StreamId, from: u64) -> Result<Option<(u64, i64)>> {
    if holder(repo, stream, from + 1)?.is_none() {
        return Ok(None);
    }
    let (mut lo, mut step) = (from + 1, 1u64);
    let hi = loop {
        let probe = lo + step;
        if holder(repo, stream, probe)?.is_none() {
            break probe;
        }
        lo = probe;
        step *= 2;
    };
    let (mut lo, mut hi) = (lo, hi);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if holder(repo, stream, mid)?.is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let Some((level, first)) = holder(repo, stream, lo)? else {
        return Ok(None);
    };
    let Some(bytes) = repo.get_change(stream, level, first)? else {
        return Ok(None);
    };
    let objects = repo.open_stored(
        stream,
        &StoredChange {
            level,
            first,
            bytes,
        },
    )?;
    Ok(objects
        .iter()
        .find(|o| o.seq == lo)
        .and_then(|o| o.commits.last())
        .map(|c| (lo, c.time_ns)))
}
