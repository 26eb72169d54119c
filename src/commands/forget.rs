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

/// How far past this host's clock a snapshot may be dated and still be
/// counted by a policy (clocks of hosts disagree a little).
pub const FUTURE_SKEW: SignedDuration = SignedDuration::from_mins(10);

/// Plans which snapshots to keep, as of now; touches nothing.
pub fn plan(
    snapshots: &[(SnapshotId, Manifest)],
    policy: &ForgetPolicy,
    group_by: GroupBy,
) -> ForgetPlan {
    plan_at(snapshots, policy, group_by, Timestamp::now())
}

/// [`plan`] as of `now`. A snapshot dated more than [`FUTURE_SKEW`] after
/// `now` is kept and not counted: it cannot push others out of a count
/// nor move the newest moment `keep_within` counts from (a wrong clock,
/// or a write-only host forging snapshots, SPEC.md 21.4).
pub fn plan_at(
    snapshots: &[(SnapshotId, Manifest)],
    policy: &ForgetPolicy,
    group_by: GroupBy,
    now: Timestamp,
) -> ForgetPlan {
    let latest = now.checked_add(FUTURE_SKEW).unwrap_or(now);
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
        let future = snaps.iter().take_while(|s| s.2 > latest).count();
        let ahead: Vec<_> = snaps.drain(..future).collect();
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
            keep: ahead
                .iter()
                .map(|s| Decision {
                    id: s.0,
                    time: s.1.time.clone(),
                    reasons: vec![format!(
                        "dated more than {FUTURE_SKEW:#} after now: kept, and not counted (forget it by id if its clock was wrong)"
                    )],
                })
                .collect(),
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
    let counted = policy.keep_last
        + policy.keep_hourly
        + policy.keep_daily
        + policy.keep_weekly
        + policy.keep_monthly
        + policy.keep_yearly;
    let forgeable = snaps
        .iter()
        .filter(|(id, _)| repo.written_by_write_only_key(id))
        .count();
    if counted > 0 && forgeable > 0 {
        repo.note(format!(
            "{forgeable} of these snapshots were written with write-only keys: a compromised host holding one can add snapshots that crowd real ones out of the policy's counts (last, hourly to yearly); keeping those within a duration cannot be steered that way (SPEC.md 21.4)"
        ));
    }
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
#[path = "forget_tests.rs"]
mod tests;
