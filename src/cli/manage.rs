//! `snapshots`, `tag`, `forget`, `prune`, `check`, `stats`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::Args;
use litevault::check::{ReadData, Severity};
use litevault::forget::{describe_group, ForgetPolicy, GroupBy};
use litevault::prune::{PruneOptions, PrunePlan};
use litevault::tag::TagChange;

use super::backup::human;
use super::{out, snapshot_filter, Ctx, ExitWith, FilterArgs};

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Only the newest N snapshots of each host, database and tag set.
    #[arg(long, value_name = "N")]
    latest: Option<usize>,
    /// Print JSON (an array, stable for scripts).
    #[arg(long)]
    json: bool,
}

pub fn snapshots(ctx: &Ctx, args: &SnapshotsArgs) -> Result<()> {
    let repo = ctx.open()?;
    let filter = snapshot_filter(&args.filter)?;
    let mut snaps: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, m)| filter.matches(m))
        .collect();
    if let Some(n) = args.latest {
        let mut per: BTreeMap<(String, String, Vec<String>), usize> = BTreeMap::new();
        let mut keep = vec![false; snaps.len()];
        for (i, (_, m)) in snaps.iter().enumerate().rev() {
            let c = per
                .entry((m.host.clone(), m.database.path.clone(), m.tags.clone()))
                .or_default();
            if *c < n {
                *c += 1;
                keep[i] = true;
            }
        }
        let mut k = keep.into_iter();
        snaps.retain(|_| k.next().unwrap_or(false));
    }
    if args.json {
        let v: Vec<serde_json::Value> = snaps
            .iter()
            .map(|(id, m)| {
                let mut v = serde_json::to_value(m).expect("manifest serialises");
                v["id"] = serde_json::Value::String(id.to_hex());
                v["short_id"] = serde_json::Value::String(id.short());
                v
            })
            .collect();
        return out(serde_json::to_string_pretty(&v)?);
    }
    out(format_args!(
        "{:<8}  {:<20}  {:<12}  {:<14}  {:<28}  {:>10}  {:>10}",
        "ID", "TIME", "HOST", "DATABASE", "TAGS", "SIZE", "ADDED"
    ))?;
    for (id, m) in &snaps {
        let t = m
            .timestamp()
            .round(jiff::Unit::Second)
            .unwrap_or(m.timestamp());
        out(format_args!(
            "{:<8}  {:<20}  {:<12}  {:<14}  {:<28}  {:>10}  {:>10}",
            id.short(),
            t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            m.host,
            m.database.name,
            m.tags.join(","),
            human(m.image.bytes),
            human(m.stats.added_bytes)
        ))?;
    }
    out(format_args!("{} snapshot(s)", snaps.len()))
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Snapshot id, unique prefix, or `latest`.
    snapshot: String,
    /// Add a tag (repeatable).
    #[arg(long, value_name = "TAG")]
    add: Vec<String>,
    /// Remove a tag (repeatable).
    #[arg(long, value_name = "TAG")]
    remove: Vec<String>,
    /// Replace all tags (comma-separated).
    #[arg(long, value_name = "TAGS")]
    set: Option<String>,
}

pub fn tag(ctx: &Ctx, args: &TagArgs) -> Result<()> {
    if args.add.is_empty() && args.remove.is_empty() && args.set.is_none() {
        bail!("nothing to do: give --add, --remove or --set");
    }
    let repo = ctx.open()?;
    let (id, _) = repo.find_snapshot(&args.snapshot, &litevault::SnapshotFilter::default())?;
    let split = |v: &[String]| -> Vec<String> {
        v.iter()
            .flat_map(|t| t.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect()
    };
    let change = TagChange {
        add: split(&args.add),
        remove: split(&args.remove),
        set: args.set.as_ref().map(|s| split(std::slice::from_ref(s))),
    };
    let new = repo.retag(&id, &change)?;
    let m = repo.load_manifest(&new)?;
    if new == id {
        out(format_args!(
            "snapshot {} unchanged: tags {}",
            id.short(),
            m.tags.join(",")
        ))
    } else {
        out(format_args!(
            "snapshot {} is now {}: tags {}",
            id.short(),
            new.short(),
            m.tags.join(",")
        ))
    }
}

/// "7d", "12h", "2w3d", "1y", "90m" (minutes), "30s".
pub fn parse_within(s: &str) -> Result<jiff::SignedDuration> {
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid duration {s:?}: write e.g. 7d, 12h, 2w3d, 1y"))?;
        num.clear();
        let unit = match c {
            'y' => 365 * 86_400,
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => bail!("invalid duration {s:?}: units are y, w, d, h, m (minutes), s"),
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !num.is_empty() || total <= 0 {
        bail!("invalid duration {s:?}: write e.g. 7d, 12h, 2w3d, 1y");
    }
    Ok(jiff::SignedDuration::from_secs(total))
}

/// "5%" or "0.05".
pub fn parse_share(s: &str) -> Result<f64> {
    let v = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|x| x / 100.0),
        None => s.trim().parse::<f64>(),
    };
    match v {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => bail!("invalid --max-unused {s:?}: give a percentage from 0% to 100%"),
    }
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_last: u32,
    /// Keep the newest snapshot of each of the N newest hours.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_hourly: u32,
    /// ... days (UTC).
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_daily: u32,
    /// ... ISO weeks.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_weekly: u32,
    /// ... months.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_monthly: u32,
    /// ... years.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_yearly: u32,
    /// Keep every snapshot within this of the newest of its group (7d, 12h, 1y).
    #[arg(long, value_name = "DURATION")]
    keep_within: Option<String>,
    /// Keep snapshots with this tag (repeatable).
    #[arg(long, value_name = "TAG")]
    keep_tag: Vec<String>,
    /// Group snapshots by these fields.
    #[arg(long, default_value = "host,db,tags", value_name = "FIELDS")]
    group_by: String,
    /// Print the plan, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    prune: bool,
    /// With --prune: repack packs more than this share unused.
    #[arg(long, default_value = "5%", value_name = "PERCENT")]
    max_unused: String,
    /// Allow a policy that removes every snapshot of a group.
    #[arg(long)]
    allow_remove_all: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
}

pub fn forget(ctx: &Ctx, args: &ForgetArgs) -> Result<()> {
    let policy = ForgetPolicy {
        keep_last: args.keep_last,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        keep_within: args.keep_within.as_deref().map(parse_within).transpose()?,
        keep_tags: args.keep_tag.clone(),
    };
    let group_by = GroupBy::parse(&args.group_by)?;
    let max_unused = parse_share(&args.max_unused)?;
    let filter = snapshot_filter(&args.filter)?;
    let repo = ctx.open()?;
    let plan = repo.plan_forget(&policy, group_by, &filter)?;
    if args.json {
        out(serde_json::to_string_pretty(&plan)?)?;
    } else {
        for g in &plan.groups {
            out(format_args!("group {}:", describe_group(&g.key)))?;
            for d in &g.keep {
                out(format_args!(
                    "  keep    {}  {}  ({})",
                    d.id.short(),
                    d.time,
                    d.reasons.join(", ")
                ))?;
            }
            for d in &g.remove {
                out(format_args!("  remove  {}  {}", d.id.short(), d.time))?;
            }
        }
    }
    if args.dry_run {
        ctx.status(format_args!(
            "dry run: {} snapshot(s) would be removed",
            plan.removed().count()
        ));
        return Ok(());
    }
    let n = repo.forget(&plan, args.allow_remove_all)?;
    ctx.status(format_args!("removed {n} snapshot(s)"));
    if args.prune {
        let p = repo.prune(&PruneOptions {
            max_unused,
            dry_run: false,
        })?;
        print_prune(ctx, &p, false, false)?;
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Repack packs more than this share unused.
    #[arg(long, default_value = "5%", value_name = "PERCENT")]
    max_unused: String,
    /// Print the plan, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn print_prune(ctx: &Ctx, p: &PrunePlan, dry: bool, json: bool) -> Result<()> {
    if json {
        return out(serde_json::to_string_pretty(p)?);
    }
    let verb = if dry { "would" } else { "did" };
    out(format_args!(
        "{} snapshots use {} blobs; {} packs hold {} ({} unused)",
        p.snapshots,
        p.used_blobs,
        p.packs,
        human(p.pack_bytes),
        human(p.unused_bytes)
    ))?;
    out(format_args!(
        "prune {verb} delete {} unused and {} orphan pack(s), repack {} pack(s) ({} copied), replace {} index file(s): {} freed",
        p.delete.len(),
        p.orphans.len(),
        p.repack.len(),
        human(p.repack_bytes),
        p.index_files.len() + p.leftover_index_files.len(),
        human(p.freed_bytes)
    ))?;
    if p.is_noop() {
        ctx.status("nothing to prune");
    }
    Ok(())
}

pub fn prune(ctx: &Ctx, args: &PruneArgs) -> Result<()> {
    let max_unused = parse_share(&args.max_unused)?;
    let repo = ctx.open()?;
    let p = repo.prune(&PruneOptions {
        max_unused,
        dry_run: args.dry_run,
    })?;
    print_prune(ctx, &p, args.dry_run, args.json)
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read every pack and verify every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read the subset N of M of the packs (e.g. 1/7 on Mondays, 2/7 on Tuesdays...).
    #[arg(long, value_name = "N/M")]
    read_data_subset: Option<String>,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

pub fn check(ctx: &Ctx, args: &CheckArgs) -> Result<()> {
    let read = if args.read_data {
        ReadData::All
    } else if let Some(s) = &args.read_data_subset {
        let parsed = s
            .split_once('/')
            .and_then(|(n, m)| Some((n.parse::<u32>().ok()?, m.parse::<u32>().ok()?)));
        match parsed {
            Some((n, m)) if m >= 1 && (1..=m).contains(&n) => ReadData::Subset(n, m),
            _ => {
                return Err(ExitWith(
                    2,
                    format!("invalid --read-data-subset {s:?}: write N/M with 1 <= N <= M"),
                )
                .into())
            }
        }
    } else {
        ReadData::None
    };
    let report = ctx
        .open()
        .and_then(|repo| Ok(repo.check(read)?))
        .map_err(|e| ExitWith(2, format!("check could not run: {e:#}")))?;
    if args.json {
        out(serde_json::to_string_pretty(&report)?)?;
    } else {
        for f in &report.findings {
            let sev = if f.severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            out(format_args!("{sev}: {}: {}", f.object, f.message))?;
        }
        out(format_args!(
            "checked {} snapshot(s), {} pack(s), {} blob(s); read {} pack(s) whole; {} error(s), {} warning(s)",
            report.snapshots,
            report.packs,
            report.blobs,
            report.packs_read,
            report.errors(),
            report.findings.len() - report.errors()
        ))?;
    }
    if report.errors() > 0 {
        return Err(ExitWith(
            1,
            format!("check found {} error(s): see above", report.errors()),
        )
        .into());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn stats(ctx: &Ctx, args: &StatsArgs) -> Result<()> {
    let repo = ctx.open()?;
    let s = repo.stats()?;
    if args.json {
        return out(serde_json::to_string_pretty(&s)?);
    }
    out(format_args!(
        "repository      {} ({} in packs, {} index, {} snapshots)",
        human(s.repository_bytes),
        human(s.pack_bytes),
        human(s.index_bytes),
        human(s.snapshot_bytes)
    ))?;
    out(format_args!("snapshots       {}", s.snapshots))?;
    out(format_args!(
        "images          {} in total, {} of distinct chunks, {} stored",
        human(s.total_image_bytes),
        human(s.unique_bytes),
        human(s.stored_data_bytes)
    ))?;
    out(format_args!(
        "ratios          dedup {:.1}x, compression {:.2}x, overall {:.1}x",
        s.dedup_ratio, s.compression_ratio, s.overall_ratio
    ))?;
    for d in &s.databases {
        out(format_args!(
            "  {:<16} {} snapshot(s), latest {}, {} in total, {} distinct ({})",
            d.name,
            d.snapshots,
            human(d.latest_bytes),
            human(d.total_image_bytes),
            human(d.unique_bytes),
            d.path
        ))?;
    }
    Ok(())
}
