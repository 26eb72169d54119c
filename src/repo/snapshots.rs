//! Snapshot manifests through the repository's cache: listed once and each
//! read once per command; writes and deletes through this layer keep the
//! cache true. Finding a snapshot by id prefix or as `latest` of a filter.

use super::repository::Repository;
use super::select::{SnapshotFilter, PRE_RESTORE_TAG};
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::format::ObjectType;
use crate::id::SnapshotId;

impl Repository {
    /// The ids of every snapshot, as listed once per command.
    fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        if let Some(ids) = &self.cache().snapshot_ids {
            return Ok(ids.clone());
        }
        let listed = self.cache().listed.snapshots.take();
        let listed = match listed {
            Some(l) => l,
            None => self.list_confirmed(FileType::Snapshot)?,
        };
        let ids = listed
            .into_iter()
            .map(|f| f.name.parse())
            .collect::<Result<Vec<SnapshotId>>>()?;
        self.cache().snapshot_ids = Some(ids.clone());
        Ok(ids)
    }

    /// Every snapshot with its manifest, oldest first.
    ///
    /// A damaged manifest does not hide the others: it is left out, with a
    /// note naming it, and [`Repository::damaged_snapshots`] lists it.
    /// Commands that delete data (prune) must refuse while one is damaged:
    /// the blobs it uses are unknown.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Manifest)>> {
        let mut out = Vec::new();
        let mut vanished = Vec::new();
        let mut damaged = Vec::new();
        for id in self.snapshot_ids()? {
            match self.load_manifest(&id) {
                Ok(m) => out.push((id, m)),
                // Deleted between list and read (forget running): skip it.
                Err(Error::NotFound { .. }) => vanished.push(id),
                Err(Error::Damaged { reason, .. }) => damaged.push((id, reason)),
                Err(e) => return Err(e),
            }
        }
        {
            let mut cache = self.cache();
            for (id, why) in &damaged {
                if !cache.damaged_snapshots.iter().any(|(d, _)| d == id) {
                    cache.damaged_snapshots.push((*id, why.clone()));
                    drop(cache);
                    self.note(format!(
                        "{} is damaged: {why}; it is left out (`repair snapshots` sets it aside, `forget {}` removes it)",
                        FileType::Snapshot.describe(&id.to_hex()),
                        id.short()
                    ));
                    cache = self.cache();
                }
            }
        }
        if !vanished.is_empty() {
            if let Some(ids) = &mut self.cache().snapshot_ids {
                ids.retain(|i| !vanished.contains(i));
            }
        }
        out.sort_by(|a, b| a.1.timestamp().cmp(&b.1.timestamp()).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Snapshots [`Repository::snapshots`] left out as damaged, with why.
    pub fn damaged_snapshots(&self) -> Vec<(SnapshotId, String)> {
        self.cache().damaged_snapshots.clone()
    }

    /// Resolves a snapshot id or unique prefix against the listing alone
    /// (its manifest is not read: it may be damaged).
    pub fn find_snapshot_id(&self, spec: &str) -> Result<SnapshotId> {
        let names: Vec<String> = self
            .snapshot_ids()?
            .iter()
            .map(SnapshotId::to_hex)
            .collect();
        unique_prefix(&names, spec, "snapshot")?.parse()
    }

    /// Reads one snapshot manifest (once per command).
    pub fn load_manifest(&self, id: &SnapshotId) -> Result<Manifest> {
        if let Some(m) = self.cache().manifests.get(id) {
            return Ok(m.clone());
        }
        let name = id.to_hex();
        let (version, payload) = self
            .load_object_version(FileType::Snapshot, ObjectType::Snapshot, &name)
            .map_err(|e| {
                if e.is_not_found() {
                    Error::NotFound {
                        what: "snapshot",
                        id: name.clone(),
                    }
                } else {
                    e
                }
            })?;
        let m = Manifest::decode(&payload, &FileType::Snapshot.describe(&name))?;
        let mut cache = self.cache();
        if version == crate::format::OBJECT_VERSION_4 {
            cache.session_snapshots.insert(*id);
        }
        cache.manifests.insert(*id, m.clone());
        Ok(m)
    }

    /// True if a write-only key wrote snapshot `id` (sealed it to its
    /// session, SPEC.md 21.3), once its manifest was read. A compromised
    /// host holding that key can write such snapshots with any content,
    /// time, host and tags (SPEC.md 21.4).
    pub fn written_by_write_only_key(&self, id: &SnapshotId) -> bool {
        self.cache().session_snapshots.contains(id)
    }

    /// [`Repository::snapshots`] that full keys wrote: what a full key's
    /// backup may take as its parent or as "unchanged since" (a forged
    /// snapshot must not decide what a trusted backup stores).
    pub fn full_key_snapshots(&self) -> Result<Vec<(SnapshotId, Manifest)>> {
        let all = self.snapshots()?;
        let cache = self.cache();
        Ok(all
            .into_iter()
            .filter(|(id, _)| !cache.session_snapshots.contains(id))
            .collect())
    }

    /// Stores a snapshot manifest (after its data and index); returns its
    /// id and stored size.
    pub(crate) fn save_manifest(&self, manifest: &Manifest) -> Result<(SnapshotId, u64)> {
        let (id, len) =
            self.save_object(FileType::Snapshot, ObjectType::Snapshot, &manifest.encode())?;
        let id = SnapshotId::from_bytes(id);
        let mut cache = self.cache();
        cache.manifests.insert(id, manifest.clone());
        if let Some(ids) = &mut cache.snapshot_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok((id, len))
    }

    /// Deletes a snapshot manifest (its data stays until a prune).
    pub(crate) fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.backend().remove(FileType::Snapshot, &id.to_hex())?;
        if let Some(ids) = &mut self.cache().snapshot_ids {
            ids.retain(|i| i != id);
        }
        Ok(())
    }

    /// Resolves a snapshot argument: a full id, a unique id prefix, or
    /// `latest`: the newest snapshot passing `filter`, leaving out the
    /// `pre-restore` snapshots a restore makes unless the filter asks for
    /// that tag (so `restore latest` twice does not undo itself).
    pub fn find_snapshot(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<(SnapshotId, Manifest)> {
        if spec == "latest" {
            let candidates: Vec<(SnapshotId, Manifest)> = self
                .snapshots()?
                .into_iter()
                .filter(|(_, m)| {
                    filter.matches(m)
                        && (!m.tags.iter().any(|t| t == PRE_RESTORE_TAG)
                            || filter.asks_for_tag(PRE_RESTORE_TAG))
                })
                .collect();
            one_database(&candidates)?;
            let newest = candidates
                .into_iter()
                .next_back()
                .ok_or(Error::NoSnapshot {
                    filtered: !filter.is_empty(),
                })?;
            self.refuse_newer_damage(&newest.1)?;
            return Ok(newest);
        }
        let names: Vec<String> = self
            .snapshot_ids()?
            .iter()
            .map(SnapshotId::to_hex)
            .collect();
        let name = unique_prefix(&names, spec, "snapshot")?;
        let id: SnapshotId = name.parse()?;
        Ok((id, self.load_manifest(&id)?))
    }
}

/// Fails if `candidates` are snapshots of more than one database (name,
/// host and path): the newest of several is a guess, not a choice.
pub fn one_database(candidates: &[(SnapshotId, Manifest)]) -> Result<()> {
    let mut databases: Vec<String> = candidates
        .iter()
        .map(|(_, m)| {
            format!(
                "{} on host {} ({})",
                m.database.name,
                m.host,
                m.database.shown_path()
            )
        })
        .collect();
    databases.sort();
    databases.dedup();
    if databases.len() > 1 {
        return Err(Error::AmbiguousLatest { databases });
    }
    Ok(())
}

/// How much the storage's clock may be ahead of a backup's host.
const CLOCK_MARGIN: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

impl Repository {
    /// Fails if a damaged manifest may be newer than `newest`, the snapshot
    /// `latest` chose among the readable ones: its database and time are
    /// unknown, so it may be the true latest of the same database. It
    /// cannot be when the storage stored it before `newest` was begun.
    fn refuse_newer_damage(&self, newest: &Manifest) -> Result<()> {
        let damaged = self.damaged_snapshots();
        if damaged.is_empty() {
            return Ok(());
        }
        let stored = self.backend().list(FileType::Snapshot)?;
        let begun = newest.timestamp();
        for (id, _) in damaged {
            let name = id.to_hex();
            let Some(f) = stored.iter().find(|f| f.name == name) else {
                continue; // set aside or forgotten meanwhile
            };
            let older = f
                .modified
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .is_some_and(|t| t + CLOCK_MARGIN < begun);
            if !older {
                return Err(Error::damaged(
                    FileType::Snapshot.describe(&name),
                    format!(
                        "it may be newer than the newest readable snapshot of {} (taken {}), so `latest` is not known: give a snapshot id (`litevault snapshots` lists them), or set the damaged one aside with `litevault repair snapshots`",
                        newest.database.name,
                        newest.time
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Shortest id prefix accepted unless it is ambiguous anyway.
pub const MIN_PREFIX: usize = 4;

/// The one name in `names` starting with `prefix` (at least
/// [`MIN_PREFIX`] hex digits: a shorter one that happens to be unique
/// today is refused, as it will not stay so).
pub(crate) fn unique_prefix<'a>(
    names: &'a [String],
    prefix: &str,
    what: &'static str,
) -> Result<&'a str> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "{prefix:?} is not a {what} id: expected hex digits"
        )));
    }
    let prefix = prefix.to_ascii_lowercase();
    let matches: Vec<&String> = names.iter().filter(|n| n.starts_with(&prefix)).collect();
    match matches.as_slice() {
        [_] if prefix.len() < MIN_PREFIX => Err(Error::InvalidInput(format!(
            "{what} id prefix {prefix} is too short: give at least {MIN_PREFIX} hex digits"
        ))),
        [one] => Ok(one.as_str()),
        [] => Err(Error::NotFound { what, id: prefix }),
        many => Err(Error::Ambiguous {
            what,
            prefix,
            matches: many.len(),
        }),
    }
}
