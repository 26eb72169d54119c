//! Rewriting a snapshot's tags: the new manifest is stored before the old
//! one is deleted, so a crash leaves the old snapshot, the new one, or
//! both (identical but for tags), never neither.

use serde::{Deserialize, Serialize};

use crate::backend::IoStats;
use crate::error::Result;
use crate::format::lock::LockKind;
use crate::id::SnapshotId;
use crate::repo::{validate_tag, Repository};

/// How to change a snapshot's tags.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagChange {
    /// Tags to add.
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
    /// Replace all tags by these.
    pub set: Option<Vec<String>>,
}

/// What a tag change did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TagSummary {
    /// The snapshot changed.
    pub snapshot: SnapshotId,
    /// Its id now (the same if nothing changed).
    pub new_snapshot: SnapshotId,
    /// Its tags now.
    pub tags: Vec<String>,
    /// True if the tags changed.
    pub changed: bool,
    /// Requests made to the storage and bytes moved, from opening the
    /// repository to the end of this command (lock released).
    #[serde(default)]
    pub io: IoStats,
}

/// Applies `change` to snapshot `id`.
pub fn retag(repo: &Repository, id: &SnapshotId, change: &TagChange) -> Result<TagSummary> {
    repo.require_full_key("tag")?;
    for t in change
        .add
        .iter()
        .chain(&change.remove)
        .chain(change.set.iter().flatten())
    {
        validate_tag(t)?;
    }
    let lock = repo.lock(LockKind::Exclusive, "tag")?;
    let mut m = repo.load_manifest(id)?;
    let before = m.tags.clone();
    if let Some(set) = &change.set {
        m.tags.clone_from(set);
    }
    m.tags.extend(change.add.iter().cloned());
    m.tags.retain(|t| !change.remove.contains(t));
    m.tags.sort();
    m.tags.dedup();
    if m.tags == before {
        return Ok(TagSummary {
            snapshot: *id,
            new_snapshot: *id,
            tags: m.tags,
            changed: false,
            io: repo.io_stats(),
        });
    }
    let (new, _) = repo.save_manifest(&m)?;
    repo.remove_snapshot(id)?;
    drop(lock);
    Ok(TagSummary {
        snapshot: *id,
        new_snapshot: new,
        tags: m.tags,
        changed: true,
        io: repo.io_stats(),
    })
}
