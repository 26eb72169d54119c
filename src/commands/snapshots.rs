//! Listing snapshots: filtered, optionally only the newest N of each group,
//! oldest first, each with its id and short id beside its manifest (the
//! shape `snapshots --json` prints and the HTTP API returns).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::manifest::{ends_with_components, DbPath, Manifest};
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
    /// Its database as listings name it (see [`labels`]).
    #[serde(default)]
    pub label: String,
    /// Its manifest.
    #[serde(flatten)]
    pub manifest: Manifest,
}

/// Lists snapshots, oldest first.
pub fn list(repo: &Repository, opts: &SnapshotsOptions) -> Result<Vec<SnapshotEntry>> {
    repo.require_full_key("listing snapshots")?;
    let all = repo.snapshots()?;
    // Labels tell apart every database of the repository, not only the
    // listed ones: a label does not change with the filters.
    let labels = labels(all.iter().map(|(_, m)| m));
    let mut snaps: Vec<(SnapshotId, Manifest)> = all
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
            label: label_of(&labels, &manifest),
            id,
            manifest,
        })
        .collect())
}

/// Labels by database name and path (see [`labels`]).
pub type Labels = HashMap<(String, DbPath), String>;

/// How listings name the databases of `manifests`: by name, except where
/// databases at different paths share a name (`/srv/app/app.db` and
/// `/srv/demo/app.db`), each of those by the shortest ending of its path
/// that no other of them has (`app/app.db`, `demo/app.db`); a `--db`
/// filter accepts that ending too ([`crate::repo::SnapshotFilter`]).
pub fn labels<'a>(manifests: impl IntoIterator<Item = &'a Manifest>) -> Labels {
    let mut by_name: BTreeMap<&str, BTreeSet<DbPath>> = BTreeMap::new();
    for m in manifests {
        by_name
            .entry(m.database.name.as_str())
            .or_default()
            .insert(m.database.key());
    }
    let mut out = HashMap::new();
    for (name, paths) in by_name {
        let shown: Vec<(DbPath, String)> = paths
            .into_iter()
            .map(|p| (p.clone(), p.to_string()))
            .collect();
        for (p, path) in &shown {
            let label = if shown.len() == 1 {
                name.to_string()
            } else {
                let others: Vec<&str> = shown
                    .iter()
                    .filter(|(q, _)| q != p)
                    .map(|(_, s)| s.as_str())
                    .collect();
                shortest_unique_ending(path, &others)
            };
            out.insert((name.to_string(), p.clone()), label);
        }
    }
    out
}

/// The label of `m`'s database in `labels` (its name if it has none).
pub fn label_of(labels: &Labels, m: &Manifest) -> String {
    labels
        .get(&(m.database.name.clone(), m.database.key()))
        .cloned()
        .unwrap_or_else(|| m.database.name.clone())
}

/// The fewest last components of `path` that end none of `others` (the
/// whole path if every ending is shared).
fn shortest_unique_ending(path: &str, others: &[&str]) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    for k in 1..parts.len() {
        let ending = parts[parts.len() - k..].join("/");
        if !others.iter().any(|o| ends_with_components(o, &ending)) {
            return ending;
        }
    }
    path.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_are_the_fewest_components_that_tell_paths_apart() {
        let others = ["/srv/demo/app.db", "/home/x/app/app.db"];
        assert_eq!(
            shortest_unique_ending("/srv/app/app.db", &others),
            "srv/app/app.db"
        );
        assert_eq!(
            shortest_unique_ending("/srv/demo/app.db", &["/srv/app/app.db"]),
            "demo/app.db"
        );
        // A path that is the ending of another is shown whole.
        assert_eq!(
            shortest_unique_ending("/app.db", &["/srv/app.db"]),
            "/app.db"
        );
        assert!(ends_with_components("/srv/app/app.db", "app/app.db"));
        assert!(!ends_with_components("/srv/myapp/app.db", "app/app.db"));
        assert!(ends_with_components("app.db", "app.db"));
    }
}
