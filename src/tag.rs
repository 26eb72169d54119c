//! Rewriting a snapshot's tags: the new manifest is stored before the old
//! one is deleted, so a crash leaves the old snapshot, the new one, or
//! both (identical but for tags), never neither.

use crate::backend::FileType;
use crate::backup::validate_tag;
use crate::error::Result;
use crate::id::SnapshotId;
use crate::lock::LockKind;
use crate::repository::Repository;

/// How to change a snapshot's tags.
#[derive(Clone, Debug, Default)]
pub struct TagChange {
    /// Tags to add.
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
    /// Replace all tags by these.
    pub set: Option<Vec<String>>,
}

impl Repository {
    /// Applies `change` to snapshot `id`; returns the new snapshot id (the
    /// same id if nothing changed).
    pub fn retag(&self, id: &SnapshotId, change: &TagChange) -> Result<SnapshotId> {
        for t in change
            .add
            .iter()
            .chain(&change.remove)
            .chain(change.set.iter().flatten())
        {
            validate_tag(t)?;
        }
        let _lock = self.lock(LockKind::Exclusive, "tag")?;
        let mut m = self.load_manifest(id)?;
        let before = m.tags.clone();
        if let Some(set) = &change.set {
            m.tags.clone_from(set);
        }
        m.tags.extend(change.add.iter().cloned());
        m.tags.retain(|t| !change.remove.contains(t));
        m.tags.sort();
        m.tags.dedup();
        if m.tags == before {
            return Ok(*id);
        }
        let new = self.save_manifest(&m)?;
        self.backend().remove(FileType::Snapshot, &id.to_hex())?;
        Ok(new)
    }
}
