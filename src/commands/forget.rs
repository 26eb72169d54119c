//! Retention: which snapshots a policy keeps (a pure plan), then forgetting
//! the others.
//!
//! Semantics are restic's. Snapshots are grouped (by default by host,
//! database and tag set); within a group, newest first:
//!
//! * `keep_last n`: the n newest;
//! * `keep_hourly/daily/weekly/monthly/yearly n`: the newest snapshot of
//!   each of the n newest hours/days/ISO weeks/months/years that have one
//!   (buckets in UTC);
//! * `keep_within d`: every snapshot within `d` of the group's newest;
//! * `keep_tags`: every snapshot carrying one of these tags.
//!
//! A snapshot is kept if any rule keeps it; the plan records every reason.
//! [`plan`] touches nothing, so `forget --dry-run` prints it and tests check
//! it on tables of dated snapshots.

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::backend::IoStats;
use crate::error::{Error, Result};
use crate::format::lock::LockKind;
use crate::format::manifest::Manifest;
use crate::id::SnapshotId;
use crate::repo::{GroupBy, GroupKey, Repository, SnapshotFilter};

/// A retention policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForgetPolicy {
    /// Keep the n newest.
    pub keep_last: u32,
    /// Keep the newest of each of the n newest hours.
    pub keep_hourly: u32,
    /// ... days.
    pub keep_daily: u32,
    /// ... ISO weeks.
    pub keep_weekly: u32,
    /// ... months.
    pub keep_monthly: u32,
    /// ... years.
    pub keep_yearly: u32,
    /// Keep everything within this of the group's newest snapshot.
    #[serde(with = "within_serde")]
    pub keep_within: Option<SignedDuration>,
    /// Keep snapshots with any of these tags.
    pub keep_tags: Vec<String>,
}

impl ForgetPolicy {
    /// True if no rule is set (such a policy would keep nothing).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_hourly == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_yearly == 0
            && self.keep_within.is_none()
            && self.keep_tags.is_empty()
    }
}

mod within_serde {
    use jiff::SignedDuration;
    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub fn serialize<S: Serializer>(d: &Option<SignedDuration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}s", d.as_secs())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SignedDuration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                let d = crate::sys::parse_duration(&s).map_err(serde::de::Error::custom)?;
                SignedDuration::try_from(d).map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

/// One snapshot's fate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its time.
    pub time: String,
    /// Why it is kept; empty if it is removed.
    pub reasons: Vec<String>,
}

/// The plan for one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupPlan {
    /// The group.
    pub key: GroupKey,
    /// Kept snapshots, newest first.
    pub keep: Vec<Decision>,
    /// Removed snapshots, newest first.
    pub remove: Vec<Decision>,
}

/// The whole plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ForgetPlan {
    /// One entry per group.
    pub groups: Vec<GroupPlan>,
    /// Snapshots named by id whose manifests are damaged: they belong to
    /// no group that can be told, and are removed without being read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<Decision>,
}

impl ForgetPlan {
    /// Every snapshot the plan removes.
    pub fn removed(&self) -> impl Iterator<Item = &Decision> {
        self.groups
            .iter()
            .flat_map(|g| g.remove.iter())
            .chain(&self.damaged)
    }

    /// Groups in which nothing would be kept.
    pub fn emptied_groups(&self) -> impl Iterator<Item = &GroupPlan> {
        self.groups
            .iter()
            .filter(|g| g.keep.is_empty() && !g.remove.is_empty())
    }
}

/// A bucket function: the value that two snapshots in one bucket share.
type Bucket = fn(Timestamp) -> i64;

fn utc(t: Timestamp) -> jiff::civil::DateTime {
    t.to_zoned(TimeZone::UTC).datetime()
}

fn hour(t: Timestamp) -> i64 {
    t.as_second().div_euclid(3600)
}
fn day(t: Timestamp) -> i64 {
    t.as_second().div_euclid(86_400)
}
fn week(t: Timestamp) -> i64 {
    let w = utc(t).date().iso_week_date();
    i64::from(w.year()) * 100 + i64::from(w.week())
}
fn month(t: Timestamp) -> i64 {
    let d = utc(t).date();
    i64::from(d.year()) * 100 + i64::from(d.month())
}
fn year(t: Timestamp) -> i64 {
    i64::from(utc(t).date().year())
}

/// Plans which snapshots to keep; touches nothing.
pub fn plan(
    snapshots: &[(SnapshotId, Manifest)],
    policy: &ForgetPolicy,
    group_by: GroupBy,
) -> ForgetPlan {
    let groups = group_by.group(snapshots);
    let rules: [(u32, Bucket, &str); 5] = [
        (policy.keep_hourly, hour, "hourly"),
        (policy.keep_daily, day, "daily"),
        (policy.keep_weekly, week, "weekly"),
        (policy.keep_monthly, month, "monthly"),
        (policy.keep_yearly, year, "yearly"),
    ];
    let mut out = ForgetPlan::default();
    for (key, members) in groups {
        let mut snaps: Vec<(SnapshotId, &Manifest, Timestamp)> = members
            .into_iter()
            .map(|(id, m)| (*id, m, m.timestamp()))
            .collect();
        // Newest first; equal times by id, for a stable plan.
        snaps.sort_by(|a, b| b.2.cmp(&a.2).then(b.0.cmp(&a.0)));
        let newest = snaps.first().map(|s| s.2);
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); snaps.len()];
        for (i, r) in reasons
            .iter_mut()
            .enumerate()
            .take(policy.keep_last as usize)
        {
            r.push(format!("last snapshot #{}", i + 1));
        }
        for (n, bucket, name) in rules {
            let mut last = None;
            let mut kept = 0;
            for (i, s) in snaps.iter().enumerate() {
                if kept >= n {
                    break;
                }
                let b = bucket(s.2);
                if last != Some(b) {
                    last = Some(b);
                    kept += 1;
                    reasons[i].push(format!("{name} snapshot #{kept}"));
                }
            }
        }
        if let (Some(within), Some(newest)) = (policy.keep_within, newest) {
            for (i, s) in snaps.iter().enumerate() {
                if newest.duration_since(s.2) <= within {
                    reasons[i].push(format!("within {within:#} of the newest"));
                }
            }
        }
        for (i, s) in snaps.iter().enumerate() {
            for t in &policy.keep_tags {
                if s.1.tags.contains(t) {
                    reasons[i].push(format!("has tag {t}"));
                }
            }
        }
        let mut g = GroupPlan {
            key,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        for (s, r) in snaps.iter().zip(reasons) {
            let d = Decision {
                id: s.0,
                time: s.1.time.clone(),
                reasons: r,
            };
            if d.reasons.is_empty() {
                g.remove.push(d);
            } else {
                g.keep.push(d);
            }
        }
        out.groups.push(g);
    }
    out
}

/// Plans `policy` over the snapshots passing `filter`.
pub fn plan_forget(
    repo: &Repository,
    policy: &ForgetPolicy,
    group_by: GroupBy,
    filter: &SnapshotFilter,
) -> Result<ForgetPlan> {
    repo.require_full_key("forget")?;
    if policy.is_empty() {
        return Err(Error::option(
            "policy",
            "no retention policy given: keep the last N, or the newest of N hours, days, weeks, months or years, or those within a duration or with a tag",
        ));
    }
    let snaps: Vec<(SnapshotId, Manifest)> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, m)| filter.matches(m))
        .collect();
    Ok(plan(&snaps, policy, group_by))
}

/// Plans removing the named snapshots (ids or unique prefixes), as restic's
/// `forget ID...`: each group lists the others as kept ("not named").
/// Only groups with a named snapshot appear.
pub fn plan_forget_ids<S: AsRef<str>>(repo: &Repository, ids: &[S]) -> Result<ForgetPlan> {
    repo.require_full_key("forget")?;
    let mut named = Vec::with_capacity(ids.len());
    let mut out = ForgetPlan::default();
    for spec in ids {
        let spec = spec.as_ref();
        if spec == "latest" {
            return Err(Error::InvalidInput(
                "name snapshots by id to forget them (latest is not accepted here)".into(),
            ));
        }
        let id = repo.find_snapshot_id(spec)?;
        match repo.load_manifest(&id) {
            Ok(_) => {
                if !named.contains(&id) {
                    named.push(id);
                }
            }
            // A damaged manifest can still be removed by its id.
            Err(Error::Damaged { reason, .. }) => {
                if !out.damaged.iter().any(|d| d.id == id) {
                    out.damaged.push(Decision {
                        id,
                        time: String::new(),
                        reasons: vec![format!("damaged: {reason}")],
                    });
                }
            }
            Err(e) => return Err(e),
        }
    }
    let snaps = repo.snapshots()?;
    for (key, members) in GroupBy::default().group(&snaps) {
        if !members.iter().any(|(id, _)| named.contains(id)) {
            continue;
        }
        let mut g = GroupPlan {
            key,
            keep: Vec::new(),
            remove: Vec::new(),
        };
        for (id, m) in members.into_iter().rev() {
            let d = Decision {
                id: *id,
                time: m.time.clone(),
                reasons: Vec::new(),
            };
            if named.contains(id) {
                g.remove.push(d);
            } else {
                g.keep.push(Decision {
                    reasons: vec!["not named".into()],
                    ..d
                });
            }
        }
        out.groups.push(g);
    }
    Ok(out)
}

/// What [`forget`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ForgetSummary {
    /// Snapshots removed.
    pub removed: usize,
    /// Requests made to the storage and bytes moved, from opening the
    /// repository to the end of this command (lock released).
    pub io: IoStats,
}

/// Deletes the snapshots the plan removes (under the exclusive lock).
/// Refuses a plan that empties a group unless `allow_remove_all`.
pub fn forget(
    repo: &Repository,
    plan: &ForgetPlan,
    allow_remove_all: bool,
) -> Result<ForgetSummary> {
    repo.require_full_key("forget")?;
    if !allow_remove_all {
        if let Some(g) = plan.emptied_groups().next() {
            return Err(Error::WouldRemoveAll {
                group: g.key.to_string(),
                count: g.remove.len(),
            });
        }
    }
    let lock = repo.lock(LockKind::Exclusive, "forget")?;
    let mut removed = 0;
    for d in plan.removed() {
        repo.remove_snapshot(&d.id)?;
        removed += 1;
    }
    drop(lock);
    Ok(ForgetSummary {
        removed,
        io: repo.io_stats(),
    })
}

/// The weekday of a timestamp in UTC (for tests and messages).
pub fn weekday(t: Timestamp) -> Weekday {
    utc(t).weekday()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::{BackupStats, DatabaseInfo, ImageInfo, Strategy};
    use crate::format::tree::TreeRoot;
    use crate::id::BlobId;

    fn snap(i: usize, time: &str, tags: &[&str]) -> (SnapshotId, Manifest) {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        (
            SnapshotId::from_bytes(id),
            Manifest {
                time: time.parse::<Timestamp>().unwrap().to_string(),
                host: "h".into(),
                username: "u".into(),
                database: DatabaseInfo {
                    name: "app.db".into(),
                    path: "/app.db".into(),
                    path_bytes: None,
                    mode: None,
                },
                tags: tags.iter().map(|t| (*t).to_string()).collect(),
                image: ImageInfo {
                    strategy: Strategy::Pages,
                    page_size: 4096,
                    page_count: 0,
                    bytes: 0,
                    hash: BlobId::default(),
                    schema_hash: BlobId::default(),
                    journal_mode: "wal".into(),
                    sqlite_version: "3".into(),
                    quick_check: None,
                    change_counter: 0,
                    zeroed_free_pages: 0,
                    file: None,
                },
                stats: BackupStats::default(),
                tree: TreeRoot {
                    id: BlobId::default(),
                    level: 0,
                },
                continuous: None,
            },
        )
    }

    fn series(times: &[&str]) -> Vec<(SnapshotId, Manifest)> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| snap(i, t, &[]))
            .collect()
    }

    fn kept_times(p: &ForgetPlan) -> Vec<String> {
        let mut v: Vec<String> = p
            .groups
            .iter()
            .flat_map(|g| g.keep.iter().map(|d| d.time.clone()))
            .collect();
        v.sort();
        v
    }

    fn policy(f: impl FnOnce(&mut ForgetPolicy)) -> ForgetPolicy {
        let mut p = ForgetPolicy::default();
        f(&mut p);
        p
    }

    #[test]
    fn day_boundary_is_midnight_utc() {
        let s = series(&[
            "2026-03-01T23:59:59Z",
            "2026-03-02T00:00:00Z",
            "2026-03-02T12:00:00Z",
        ]);
        let p = plan(&s, &policy(|p| p.keep_daily = 2), GroupBy::default());
        assert_eq!(
            kept_times(&p),
            ["2026-03-01T23:59:59Z", "2026-03-02T12:00:00Z"]
        );
    }

    #[test]
    fn iso_week_boundary_and_year_end_week() {
        // 2026-12-27 is a Sunday (ISO week 52); 2026-12-28 Monday starts
        // week 53 of 2026, which runs to Sunday 2027-01-03.
        let s = series(&[
            "2026-12-27T10:00:00Z",
            "2026-12-28T10:00:00Z",
            "2027-01-03T23:00:00Z",
            "2027-01-04T00:30:00Z",
        ]);
        let p = plan(&s, &policy(|p| p.keep_weekly = 10), GroupBy::default());
        assert_eq!(
            kept_times(&p),
            [
                "2026-12-27T10:00:00Z",
                "2027-01-03T23:00:00Z",
                "2027-01-04T00:30:00Z"
            ]
        );
        assert_eq!(
            weekday("2026-12-28T10:00:00Z".parse().unwrap()),
            Weekday::Monday
        );
    }

    #[test]
    fn month_and_year_boundaries() {
        let s = series(&[
            "2025-12-31T23:59:00Z",
            "2026-01-01T00:01:00Z",
            "2026-01-31T23:00:00Z",
            "2026-02-01T00:00:00Z",
            "2026-02-28T00:00:00Z",
        ]);
        let m = plan(&s, &policy(|p| p.keep_monthly = 3), GroupBy::default());
        assert_eq!(
            kept_times(&m),
            [
                "2025-12-31T23:59:00Z",
                "2026-01-31T23:00:00Z",
                "2026-02-28T00:00:00Z"
            ]
        );
        let y = plan(&s, &policy(|p| p.keep_yearly = 5), GroupBy::default());
        assert_eq!(
            kept_times(&y),
            ["2025-12-31T23:59:00Z", "2026-02-28T00:00:00Z"]
        );
    }

    #[test]
    fn hourly_buckets() {
        let s = series(&[
            "2026-05-01T10:59:59Z",
            "2026-05-01T11:00:00Z",
            "2026-05-01T11:30:00Z",
            "2026-05-01T12:10:00Z",
        ]);
        let p = plan(&s, &policy(|p| p.keep_hourly = 2), GroupBy::default());
        assert_eq!(
            kept_times(&p),
            ["2026-05-01T11:30:00Z", "2026-05-01T12:10:00Z"]
        );
    }

    /// The restic-based deployment in ../shared/reference: backups every 12
    /// minutes, keep latest 10, hourly 24, daily 7, weekly 4, monthly 6.
    #[test]
    fn reference_deployment_policy() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let times: Vec<String> = (0..(120 * 24 * 5))
            .map(|i| (start + SignedDuration::from_mins(12 * i)).to_string())
            .collect();
        let s: Vec<_> = times
            .iter()
            .enumerate()
            .map(|(i, t)| snap(i, t, &[]))
            .collect();
        let pol = ForgetPolicy {
            keep_last: 10,
            keep_hourly: 24,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 6,
            ..ForgetPolicy::default()
        };
        let p = plan(&s, &pol, GroupBy::default());
        let kept = kept_times(&p);
        // 120 days, 2026-01-01T00:00 to 2026-04-30T23:48 (a Thursday):
        // last 10: 23:48 back to 22:00 on Apr 30;
        // hourly 24: xx:48 of each hour of Apr 30, 2 of them among the last 10;
        // daily 7: 23:48 of Apr 24..30, Apr 30 already kept;
        // weekly 4: Apr 30 (kept), Sun Apr 26 (daily), Sun Apr 19, Sun Apr 12;
        // monthly 6: only Jan..Apr have snapshots: Apr 30 (kept), Mar 31, Feb 28, Jan 31.
        let g = &p.groups[0];
        let count = |rule: &str| {
            g.keep
                .iter()
                .filter(|d| d.reasons.iter().any(|r| r.starts_with(rule)))
                .count()
        };
        assert_eq!(
            (
                count("last"),
                count("hourly"),
                count("daily"),
                count("weekly"),
                count("monthly")
            ),
            (10, 24, 7, 4, 4)
        );
        assert_eq!(kept.len(), 10 + 22 + 6 + 2 + 3, "kept {kept:?}");
        for t in [
            "2026-04-19T23:48:00Z",
            "2026-04-12T23:48:00Z",
            "2026-03-31T23:48:00Z",
            "2026-01-31T23:48:00Z",
            "2026-04-30T00:48:00Z",
        ] {
            assert!(kept.contains(&t.to_string()), "{t} not kept");
        }
        assert!(!kept.contains(&"2026-04-30T00:36:00Z".to_string()));
        assert_eq!(p.removed().count(), times.len() - kept.len());
    }

    /// Stanza's recipe purges backups older than 7 days.
    #[test]
    fn stanza_seven_day_purge() {
        let start: Timestamp = "2026-06-01T02:00:00Z".parse().unwrap();
        let times: Vec<String> = (0..30)
            .map(|d| (start + SignedDuration::from_hours(24 * d)).to_string())
            .collect();
        let s: Vec<_> = times
            .iter()
            .enumerate()
            .map(|(i, t)| snap(i, t, &[]))
            .collect();
        let p = plan(
            &s,
            &policy(|p| p.keep_within = Some(SignedDuration::from_hours(24 * 7))),
            GroupBy::default(),
        );
        assert_eq!(
            kept_times(&p),
            times[22..].to_vec(),
            "the newest and the 7 days before it"
        );
    }

    #[test]
    fn keep_tag_groups_and_reasons() {
        let s = vec![
            snap(1, "2026-01-01T00:00:00Z", &["env_production"]),
            snap(2, "2026-01-02T00:00:00Z", &["env_production", "release"]),
            snap(3, "2026-01-03T00:00:00Z", &["env_production"]),
            snap(4, "2026-01-01T00:00:00Z", &["env_demo"]),
        ];
        let p = plan(
            &s,
            &policy(|p| {
                p.keep_last = 1;
                p.keep_tags = vec!["release".into()];
            }),
            GroupBy::default(),
        );
        // Three groups by tag set: [env_demo], [env_production], [env_production, release].
        assert_eq!(p.groups.len(), 3);
        assert_eq!(kept_times(&p).len(), 3);
        let one = plan(
            &s,
            &policy(|p| p.keep_last = 1),
            GroupBy::parse("host,db").unwrap(),
        );
        assert_eq!(one.groups.len(), 1);
        assert_eq!(one.groups[0].keep.len(), 1);
        assert_eq!(one.groups[0].keep[0].reasons, ["last snapshot #1"]);
    }

    #[test]
    fn removing_everything_is_visible_in_the_plan() {
        let s = series(&["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]);
        let p = plan(
            &s,
            &policy(|p| p.keep_tags = vec!["nope".into()]),
            GroupBy::default(),
        );
        assert_eq!(p.emptied_groups().count(), 1);
        assert!(policy(|_| {}).is_empty());
    }
}
