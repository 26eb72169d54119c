//! Listing snapshots: filtered, optionally only the newest N of each group,
//! oldest first, each with its id and short id beside its manifest (the
//! shape `snapshots --json` prints and the HTTP API returns).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::manifest::Manifest;
use crate::id::SnapshotId;
use crate::repo::{GroupBy, Repository, SnapshotFilter};

/// Options of [`list`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotsOptions {
    /// Which snapshots.
    pub filter: SnapshotFilter,
    /// Only the newest N of each group (host, database, tags).
    pub latest: Option<usize>,
}

/// One listed snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Its id.
    pub id: SnapshotId,
    /// The first 8 hex digits of its id.
    pub short_id: String,
    /// Its manifest.
    #[serde(flatten)]
    pub manifest: Manifest,
}

/// Lists snapshots, oldest first.
pub fn list(repo: &Repository, opts: &SnapshotsOptions) -> Result<Vec<SnapshotEntry>> {
    let mut snaps: Vec<(SnapshotId, Manifest)> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, m)| opts.filter.matches(m))
        .collect();
    if let Some(n) = opts.latest {
        let mut keep: Vec<SnapshotId> = Vec::new();
        for members in GroupBy::default().group(&snaps).into_values() {
            keep.extend(members.iter().rev().take(n).map(|(id, _)| *id));
        }
        snaps.retain(|(id, _)| keep.contains(id));
    }
    Ok(snaps
        .into_iter()
        .map(|(id, manifest)| SnapshotEntry {
            short_id: id.short(),
            id,
            manifest,
        })
        .collect())
}
