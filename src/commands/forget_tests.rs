//! Tests of [`super::plan`] on tables of dated snapshots.

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

/// [`super::plan`] as of a moment after every table's snapshots.
fn plan(s: &[(SnapshotId, Manifest)], p: &ForgetPolicy, g: GroupBy) -> ForgetPlan {
    plan_at(s, p, g, "2100-01-01T00:00:00Z".parse().unwrap())
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

#[test]
fn snapshots_dated_in_the_future_are_kept_and_not_counted() {
    let now: Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
    let s = vec![
        snap(1, "2026-12-05T12:00:00Z", &[]),
        snap(2, "2026-12-06T12:00:00Z", &[]),
        snap(3, "2026-12-07T11:00:00Z", &[]),
        // Within the skew: an ordinary snapshot.
        snap(4, "2026-12-07T12:05:00Z", &[]),
        // A clock a month ahead (or a forged snapshot).
        snap(5, "2027-01-07T12:00:00Z", &[]),
        snap(6, "2027-01-08T12:00:00Z", &[]),
    ];
    let within = plan_at(
        &s,
        &policy(|p| p.keep_within = Some(SignedDuration::from_hours(24 * 7))),
        GroupBy::default(),
        now,
    );
    let g = &within.groups[0];
    assert!(g.remove.is_empty(), "{g:?}");
    assert_eq!(g.keep.len(), 6);
    assert!(g.keep[0].reasons[0].starts_with("dated more than 10m after now"));
    assert!(g.keep[2].reasons[0].starts_with("within"));

    let last = plan_at(&s, &policy(|p| p.keep_last = 2), GroupBy::default(), now);
    let g = &last.groups[0];
    let kept: Vec<u8> = g.keep.iter().map(|d| d.id.as_bytes()[7]).collect();
    assert_eq!(kept, [6, 5, 4, 3]);
    let removed: Vec<u8> = g.remove.iter().map(|d| d.id.as_bytes()[7]).collect();
    assert_eq!(removed, [2, 1]);
}
