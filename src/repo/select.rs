//! How commands pick snapshots: filters with restic's semantics, groups
//! (host, database, tags), and the rules for tags. One place for each, used
//! by backup (is this image unchanged since the last of its group?),
//! `snapshots`, `forget` and restore's `latest`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::manifest::{DbPath, Manifest};
use crate::id::SnapshotId;

/// The tag of the snapshot a restore takes of the target it replaces.
pub const PRE_RESTORE_TAG: &str = "pre-restore";

/// The longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 128;

/// Checks a tag: 1 to [`MAX_TAG_LEN`] bytes, no commas, no white space or
/// control characters.
pub fn validate_tag(tag: &str) -> Result<()> {
    if tag.is_empty()
        || tag.len() > MAX_TAG_LEN
        || tag.contains(',')
        || tag.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        let shown: String = tag.chars().take(40).collect();
        return Err(Error::option(
            "tags",
            format!(
                "invalid tag {shown:?}{}: tags have 1 to {MAX_TAG_LEN} bytes and no commas, spaces or control characters",
                if shown.len() < tag.len() { "..." } else { "" }
            ),
        ));
    }
    Ok(())
}

/// Splits tag arguments at commas (`["a,b", "c"]` is `a`, `b`, `c`),
/// dropping empty pieces, and validates each tag.
pub fn split_tags<S: AsRef<str>>(args: &[S]) -> Result<Vec<String>> {
    let tags: Vec<String> = args
        .iter()
        .flat_map(|t| t.as_ref().split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    for t in &tags {
        validate_tag(t)?;
    }
    Ok(tags)
}

/// Which snapshots a command applies to, with restic's semantics: a
/// snapshot matches if it has all the tags of at least one tag set (no
/// sets: any tags), and its host and database are among those given (none
/// given: any).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotFilter {
    /// Alternatives, each a set of tags that must all be present.
    pub tags: Vec<Vec<String>>,
    /// Hosts.
    pub hosts: Vec<String>,
    /// Database names, absolute paths (a path that is not UTF-8 as
    /// listed, escaped: [`crate::sys::escape_path`]), or the last
    /// components of a path, as listings label databases that share a
    /// name (`demo/app.db`).
    pub databases: Vec<String>,
    /// Database paths by their exact bytes (a command line's argument that
    /// is not UTF-8).
    #[serde(skip)]
    pub database_paths: Vec<DbPath>,
    /// Only snapshots taken at or before this time (`latest` then means
    /// the newest one at or before it).
    #[serde(
        with = "crate::sys::serde_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub before: Option<jiff::Timestamp>,
}

impl SnapshotFilter {
    /// A filter from tag arguments as users write them: each argument is
    /// one alternative, its comma-separated tags all required.
    pub fn with_tag_sets<S: AsRef<str>>(mut self, args: &[S]) -> Result<Self> {
        for a in args {
            let set = split_tags(std::slice::from_ref(a))?;
            if !set.is_empty() {
                self.tags.push(set);
            }
        }
        Ok(self)
    }

    /// True if `m` passes the filter.
    pub fn matches(&self, m: &Manifest) -> bool {
        (self.tags.is_empty()
            || self
                .tags
                .iter()
                .any(|set| set.iter().all(|t| m.tags.contains(t))))
            && (self.hosts.is_empty() || self.hosts.contains(&m.host))
            && ((self.databases.is_empty() && self.database_paths.is_empty())
                || self.databases.iter().any(|d| names_database(d, m))
                || self.database_paths.contains(&m.database.key()))
            && self
                .before
                .is_none_or(|b| m.time.parse::<jiff::Timestamp>().is_ok_and(|t| t <= b))
    }

    /// True if the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
            && self.hosts.is_empty()
            && self.databases.is_empty()
            && self.database_paths.is_empty()
            && self.before.is_none()
    }

    /// True if the filter names the tag explicitly (so `latest` may pick
    /// the `pre-restore` snapshots it otherwise skips).
    pub fn asks_for_tag(&self, tag: &str) -> bool {
        self.tags.iter().flatten().any(|t| t == tag)
    }
}

/// True if `given` (a `--db` value) names the database of `m`: its name,
/// its path as recorded, or its path as shown (escaped: `caf\xe9.db` for
/// a name that is not UTF-8, [`crate::sys::escape_path`]).
fn names_database(given: &str, m: &Manifest) -> bool {
    given == m.database.name
        || (m.database.path_bytes.is_none() && given == m.database.path)
        || given == m.database.shown_path()
        // An ending of its path, as listings show one (`demo/app.db`).
        || (given.contains('/')
            && !given.starts_with('/')
            && crate::format::manifest::ends_with_components(&m.database.shown_path(), given))
}

/// What snapshots are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::struct_excessive_bools)]
pub struct GroupBy {
    /// By host.
    pub host: bool,
    /// By database path.
    pub database: bool,
    /// By tag set.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        Self {
            host: true,
            database: true,
            tags: true,
        }
    }
}

impl GroupBy {
    /// Parses `host,db,tags` (any subset; empty: one group).
    pub fn parse(s: &str) -> Result<Self> {
        let mut g = Self {
            host: false,
            database: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "db" | "database" => g.database = true,
                "tags" => g.tags = true,
                other => {
                    return Err(Error::option(
                        "group_by",
                        format!("unknown group-by field {other:?}: use host, db and tags, separated by commas"),
                    ))
                }
            }
        }
        Ok(g)
    }

    /// The group `m` belongs to.
    pub fn key(self, m: &Manifest) -> GroupKey {
        self.key_of(&m.host, &m.database.key(), &m.tags)
    }

    /// The group of a snapshot of the database at `path` on `host` with
    /// `tags` (sorted and unique, as a manifest holds them).
    pub fn key_of(self, host: &str, path: &DbPath, tags: &[String]) -> GroupKey {
        GroupKey {
            host: self.host.then(|| host.to_owned()),
            database: self.database.then(|| path.clone()),
            tags: self.tags.then(|| tags.to_vec()),
        }
    }

    /// Splits snapshots into groups; within a group they keep their order.
    pub fn group<'a, I>(self, snapshots: I) -> BTreeMap<GroupKey, Vec<&'a (SnapshotId, Manifest)>>
    where
        I: IntoIterator<Item = &'a (SnapshotId, Manifest)>,
    {
        let mut groups: BTreeMap<GroupKey, Vec<&'a (SnapshotId, Manifest)>> = BTreeMap::new();
        for s in snapshots {
            groups.entry(self.key(&s.1)).or_default().push(s);
        }
        groups
    }
}

/// The group a snapshot belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    /// Host, if grouped by host.
    pub host: Option<String>,
    /// Database path (its exact bytes), if grouped by database.
    pub database: Option<DbPath>,
    /// Tags, if grouped by tags.
    pub tags: Option<Vec<String>>,
}

impl std::fmt::Display for GroupKey {
    /// "host db1, database /srv/app.db, tags [a, b]".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(d) = &self.database {
            parts.push(format!("database {d}"));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("(all snapshots)")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_and_validate() {
        assert_eq!(split_tags(&["a,b", " c ", ""]).unwrap(), ["a", "b", "c"]);
        for bad in ["has space", "tab\tinside", "bell\u{7}"] {
            assert!(split_tags(&[bad]).is_err(), "{bad:?}");
        }
        let f = SnapshotFilter::default()
            .with_tag_sets(&["a,b", "c"])
            .unwrap();
        assert_eq!(f.tags, vec![vec!["a", "b"], vec!["c"]]);
        assert!(f.asks_for_tag("c") && !f.asks_for_tag("d"));
    }

    #[test]
    fn group_by_parses_fields() {
        assert_eq!(GroupBy::parse("host,db,tags").unwrap(), GroupBy::default());
        assert!(!GroupBy::parse("").unwrap().host);
        assert!(GroupBy::parse("hostname").is_err());
    }
}
