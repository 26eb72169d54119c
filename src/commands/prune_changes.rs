//! What prune deletes of continuous capture's change objects (SPEC.md 20.7).
//!
//! A stream's objects are kept from its oldest snapshot on, for the
//! `keep_changes` window (default 7 days): a restore to a moment within the
//! window has every commit; before it, the snapshots remain (a restore to
//! such a moment gives the last snapshot before it). So, per stream, the
//! objects up to the sequence number of the newest snapshot whose moment is
//! older than the window are deleted, and those up to its oldest snapshot
//! (nothing starts before it). A bundle goes only with all its members.
//! Objects of no stream a snapshot names (every snapshot of it forgotten)
//! are deleted once the storage says they are older than a day (a stream's
//! first snapshot is written after its first objects may be). And no
//! object the storage says it wrote within the window is deleted, whatever
//! the snapshots say: a write-only key can forge those (SPEC.md 21.4).
//!
//! Names are computed, not read: for each stream, the names of its objects
//! up to far past its newest snapshot, matched against one listing of
//! `changes/`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::backend::FileType;
use crate::error::Result;
use crate::format::change::{span, StreamId, MAX_LEVEL};
use crate::format::manifest::Manifest;
use crate::id::SnapshotId;
use crate::repo::Repository;

/// Sequence numbers past a stream's newest snapshot whose names are
/// computed, to know its live objects (18 hours of 1 s intervals).
const PAST_NEWEST: u64 = 1 << 16;
/// Objects of no known stream are kept this long.
const ORPHAN_AGE: Duration = Duration::from_secs(86_400);

/// What prune deletes of `changes/`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChangesPlan {
    /// Streams the snapshots name.
    pub streams: usize,
    /// Change objects and bundles stored.
    pub objects: usize,
    /// Those deleted: older than the window, before every snapshot of
    /// their stream, or of no stream.
    pub delete: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
}

/// One stream's snapshots: sequence number and moment of each.
type Points = Vec<(u64, i64)>;

/// Plans what to delete of `changes/` given the snapshots kept.
pub fn plan_changes(
    repo: &Repository,
    snapshots: &[(SnapshotId, Manifest)],
    keep_changes: Duration,
    now_ns: i64,
) -> Result<ChangesPlan> {
    let listed = repo.backend().list(FileType::Change)?;
    let mut plan = ChangesPlan {
        objects: listed.len(),
        ..ChangesPlan::default()
    };
    if listed.is_empty() {
        return Ok(plan);
    }
    let mut streams: HashMap<StreamId, Points> = HashMap::new();
    for (_, m) in snapshots {
        if let Some(c) = &m.continuous {
            if let Some(s) = c.stream_id() {
                streams.entry(s).or_default().push((c.seq, c.time_ns));
            }
        }
    }
    plan.streams = streams.len();
    let window = i64::try_from(keep_changes.as_nanos()).unwrap_or(i64::MAX);
    // Every known name: whether it goes.
    let mut known: HashMap<String, bool> = HashMap::new();
    for (stream, points) in &streams {
        let oldest = points.iter().map(|(s, _)| *s).min().unwrap_or(0);
        let newest = points.iter().map(|(s, _)| *s).max().unwrap_or(0);
        let expired = points
            .iter()
            .filter(|(_, t)| now_ns.saturating_sub(*t) > window)
            .map(|(s, _)| *s)
            .max()
            .unwrap_or(0);
        let cut = oldest.max(expired);
        for level in 0..=MAX_LEVEL {
            let n = span(level);
            let mut first = 1;
            while first <= newest + PAST_NEWEST {
                let last = first + n - 1;
                known.insert(repo.change_name(stream, level, first), last <= cut);
                first = last + 1;
            }
        }
    }
    let wall = std::time::SystemTime::now();
    let orphan_before = wall - ORPHAN_AGE;
    let young_after = wall
        .checked_sub(keep_changes)
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut seen = HashSet::new();
    for f in listed {
        let goes = match known.get(&f.name) {
            // Snapshots say where a stream's history may be cut, but a
            // write-only key can forge them (SPEC.md 21.4): an object the
            // storage wrote within the window stays whatever they say.
            Some(goes) => *goes && f.modified.is_none_or(|t| t < young_after),
            None => f.modified.is_some_and(|t| t < orphan_before),
        };
        if goes && seen.insert(f.name.clone()) {
            plan.bytes += f.size;
            plan.delete.push(f.name);
        }
    }
    plan.delete.sort();
    Ok(plan)
}

/// Deletes what `plan` names; returns how many.
pub fn delete_changes(repo: &Repository, plan: &ChangesPlan) -> Result<usize> {
    for name in &plan.delete {
        repo.backend().remove(FileType::Change, name)?;
    }
    Ok(plan.delete.len())
}
