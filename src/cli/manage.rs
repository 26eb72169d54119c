//! `snapshots`, `tag`, `forget`, `prune`, `check`, `stats`.

use anyhow::{bail, Result};
use clap::Args;
use litevault::commands::check::Severity;
use litevault::commands::snapshots::SnapshotsOptions;
use litevault::{ForgetPolicy, GroupBy, PruneOptions, PruneSummary, ReadData, TagChange};

use super::{human, out, printable, snapshot_filter, Ctx, ExitWith, FilterArgs};

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Only the newest N snapshots of each host, database and tag set.
    #[arg(long, value_name = "N")]
    latest: Option<usize>,
    /// List in groups by any of host, db and tags (`--group-by host,db`).
    #[arg(long, value_name = "FIELDS")]
    group_by: Option<String>,
    /// Fewer columns: id, time, database.
    #[arg(long)]
    compact: bool,
    /// Print JSON (one array on one line, stable for scripts).
    #[arg(long)]
    json: bool,
}

pub fn snapshots(ctx: &Ctx, args: &SnapshotsArgs) -> Result<()> {
    let opts = SnapshotsOptions {
        filter: snapshot_filter(&args.filter)?,
        latest: args.latest,
    };
    let group_by = args
        .group_by
        .as_deref()
        .map(litevault::GroupBy::parse)
        .transpose()?;
    let repo = ctx.open_reading("snapshots")?;
    let snaps = litevault::commands::snapshots::list(&repo, &opts)?;
    if args.json {
        return out(serde_json::to_string(&snaps)?);
    }
    let zone = ctx.zone();
    let Some(g) = group_by else {
        table(&snaps.iter().collect::<Vec<_>>(), args.compact, &zone)?;
        out(format_args!("{} snapshot(s)", snaps.len()))?;
        return print_ranges(ctx, &repo, &snaps);
    };
    let pairs: Vec<(litevault::SnapshotId, litevault::Manifest)> =
        snaps.iter().map(|e| (e.id, e.manifest.clone())).collect();
    let groups = g.group(&pairs);
    let n = groups.len();
    for (key, members) in groups {
        out(format_args!(
            "snapshots of {}:",
            printable(&key.to_string())
        ))?;
        let entries: Vec<&litevault::commands::snapshots::SnapshotEntry> = members
            .iter()
            .filter_map(|(id, _)| snaps.iter().find(|e| e.id == *id))
            .collect();
        table(&entries, args.compact, &zone)?;
        out("")?;
    }
    out(format_args!("{} snapshot(s) in {n} group(s)", snaps.len()))
}

/// The moments continuously captured databases restore to.
fn print_ranges(
    ctx: &Ctx,
    repo: &litevault::Repository,
    snaps: &[litevault::commands::snapshots::SnapshotEntry],
) -> Result<()> {
    let pairs: Vec<(litevault::SnapshotId, litevault::Manifest)> =
        snaps.iter().map(|e| (e.id, e.manifest.clone())).collect();
    for r in litevault::commands::ranges::ranges(repo, &pairs)? {
        let moment = |ns| super::restore::moment(ctx, ns);
        out(format_args!(
            "continuous: {} ({}, host {}) restores to any commit from {} to {} (stream {}){}",
            printable(&r.database),
            printable(&r.path),
            printable(&r.host),
            moment(r.from_ns),
            moment(r.to_ns),
            &r.stream[..8],
            if r.gaps.is_empty() {
                String::new()
            } else {
                format!(
                    "; gaps: {}",
                    r.gaps
                        .iter()
                        .map(|(t, why)| format!("before {} ({why})", moment(*t)))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        ))?;
    }
    Ok(())
}

/// The snapshot table, times in `zone`.
fn table(
    snaps: &[&litevault::commands::snapshots::SnapshotEntry],
    compact: bool,
    zone: &jiff::tz::TimeZone,
) -> Result<()> {
    let time = |m: &litevault::Manifest| super::format_time(m.timestamp(), zone);
    if compact {
        out(format_args!("{:<8}  {:<25}  {}", "ID", "TIME", "DATABASE"))?;
        for e in snaps {
            out(format_args!(
                "{:<8}  {:<25}  {}",
                e.id.short(),
                time(&e.manifest),
                printable(&e.label)
            ))?;
        }
        return Ok(());
    }
    out(format_args!(
        "{:<8}  {:<25}  {:<12}  {:<14}  {:<28}  {:>10}  {:>10}",
        "ID", "TIME", "HOST", "DATABASE", "TAGS", "SIZE", "ADDED"
    ))?;
    for e in snaps {
        let (id, m) = (&e.id, &e.manifest);
        out(format_args!(
            "{:<8}  {:<25}  {:<12}  {:<14}  {:<28}  {:>10}  {:>10}",
            id.short(),
            time(m),
            printable(&m.host),
            printable(&e.label),
            printable(&m.tags.join(",")),
            human(m.image.bytes),
            human(m.stats.added_bytes)
        ))?;
    }
    Ok(())
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
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn tag(ctx: &Ctx, args: &TagArgs) -> Result<()> {
    if args.add.is_empty() && args.remove.is_empty() && args.set.is_none() {
        bail!("nothing to do: give --add, --remove or --set");
    }
    let split = litevault::repo::split_tags::<String>;
    let change = TagChange {
        add: split(&args.add)?,
        remove: split(&args.remove)?,
        set: args
            .set
            .as_ref()
            .map(|s| split(std::slice::from_ref(s)))
            .transpose()?,
    };
    let repo = ctx.open_full("tag")?;
    let (id, _) = repo.find_snapshot(&args.snapshot, &litevault::SnapshotFilter::default())?;
    let s = litevault::retag(&repo, &id, &change)?;
    if args.json {
        return out(serde_json::to_string(&s)?);
    }
    if s.changed {
        ctx.summary(format_args!(
            "snapshot {} is now {}: tags {}",
            id.short(),
            s.new_snapshot.short(),
            s.tags.join(",")
        ))
    } else {
        ctx.summary(format_args!(
            "snapshot {} unchanged: tags {}",
            id.short(),
            s.tags.join(",")
        ))
    }
}

/// "7d", "12h", "2w3d", "1y", "90m" (minutes), "30s": more than zero.
pub fn parse_within(s: &str) -> Result<jiff::SignedDuration> {
    let d = super::backup::duration_arg(s, "--keep-within")?;
    if d.is_zero() {
        bail!("invalid duration {s:?}: it must be more than zero (check --keep-within)");
    }
    Ok(jiff::SignedDuration::try_from(d)?)
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
    /// Snapshots to remove, by id or unique prefix (instead of a policy).
    #[arg(value_name = "ID")]
    ids: Vec<String>,
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
    /// Print the plan and what was done as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Prints a forget plan: what a dry run asks for, otherwise a summary.
fn print_forget_plan(ctx: &Ctx, plan: &litevault::ForgetPlan, dry_run: bool) -> Result<()> {
    let show = |line: std::fmt::Arguments<'_>| {
        if dry_run {
            out(line)
        } else {
            ctx.summary(line)
        }
    };
    for g in &plan.groups {
        show(format_args!("group {}:", printable(&g.key.to_string())))?;
        for d in &g.keep {
            show(format_args!(
                "  keep    {}  {}  ({})",
                d.id.short(),
                ctx.time(&d.time),
                d.reasons.join(", ")
            ))?;
        }
        for d in &g.remove {
            show(format_args!(
                "  remove  {}  {}",
                d.id.short(),
                ctx.time(&d.time)
            ))?;
        }
    }
    for d in &plan.damaged {
        show(format_args!(
            "  remove  {}  ({})",
            d.id.short(),
            printable(&d.reasons.join(", "))
        ))?;
    }
    Ok(())
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
    if !args.ids.is_empty() && (!policy.is_empty() || !filter.is_empty()) {
        return Err(super::ExitWith(
            super::errors::code::USAGE,
            "forget takes snapshot ids or a policy (with filters), not both".into(),
        )
        .into());
    }
    let repo = ctx.open_full("forget")?;
    let plan = if args.ids.is_empty() {
        litevault::plan_forget(&repo, &policy, group_by, &filter)?
    } else {
        litevault::plan_forget_ids(&repo, &args.ids)?
    };
    if !args.json {
        print_forget_plan(ctx, &plan, args.dry_run)?;
    }
    if args.dry_run {
        if args.json {
            let report = serde_json::json!({
                "groups": plan.groups,
                "damaged": plan.damaged,
                "dry_run": true,
                "removed": 0,
                "io": repo.io_stats(),
            });
            return out(serde_json::to_string(&report)?);
        }
        ctx.status(format_args!(
            "dry run: {} snapshot(s) would be removed",
            plan.removed().count()
        ));
        return Ok(());
    }
    // Named snapshots are removed even if they are all of their group.
    let done = litevault::forget(&repo, &plan, args.allow_remove_all || !args.ids.is_empty())?;
    if !args.json {
        ctx.status(format_args!("removed {} snapshot(s)", done.removed));
    }
    let pruned = if args.prune {
        let p = litevault::prune(
            &repo,
            &PruneOptions {
                max_unused,
                dry_run: false,
                ..PruneOptions::default()
            },
        )?;
        if !args.json {
            print_prune(ctx, &p, false)?;
        }
        Some(p)
    } else {
        None
    };
    if args.json {
        let report = serde_json::json!({
            "groups": plan.groups,
            "damaged": plan.damaged,
            "dry_run": false,
            "removed": done.removed,
            "prune": pruned,
            "io": repo.io_stats(),
        });
        out(serde_json::to_string(&report)?)?;
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
    /// Keep continuous capture's changes this long (a restore to any
    /// moment within it); older moments restore to their snapshots.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    keep_changes: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn print_prune(ctx: &Ctx, s: &PruneSummary, json: bool) -> Result<()> {
    if json {
        return out(serde_json::to_string(s)?);
    }
    let p = &s.plan;
    let verb = if s.stats.is_some() { "did" } else { "would" };
    ctx.summary(format_args!(
        "{} snapshots use {} blobs; {} packs hold {} ({} unused)",
        p.snapshots,
        p.used_blobs,
        p.packs,
        human(p.pack_bytes),
        human(p.unused_bytes)
    ))?;
    ctx.summary(format_args!(
        "prune {verb} delete {} unused and {} orphan pack(s), repack {} pack(s) ({} copied), replace {} index file(s){}: {} freed",
        p.delete.len(),
        p.orphans.len(),
        p.repack.len(),
        human(p.repack_bytes),
        p.index_files.len() + p.leftover_index_files.len(),
        if p.leftover_files.is_empty() {
            String::new()
        } else {
            format!(
                ", delete {} temporary file(s) of interrupted writes ({})",
                p.leftover_files.len(),
                human(p.leftover_bytes)
            )
        },
        human(p.freed_bytes)
    ))?;
    if !p.changes.delete.is_empty() {
        ctx.summary(format_args!(
            "prune {verb} delete {} of {} captured-change object(s) of {} stream(s) ({}): older than the window, or of no stream",
            p.changes.delete.len(),
            p.changes.objects,
            p.changes.streams,
            human(p.changes.bytes)
        ))?;
    }
    if let Some(r) = p.held.retention {
        ctx.summary(format_args!(
            "the bucket keeps every object version {} days after it is written (Object Lock, {:?} mode): what prune {verb} delete stays stored until {}; {} pack(s) with unused space are left until their retention ends (repacking them now would only add copies)",
            r.days,
            r.mode,
            p.held.until.as_deref().map_or_else(|| "now".to_string(), |t| ctx.time(t)),
            p.held.packs.len()
        ))?;
    }
    if p.adopted_packs > 0 {
        ctx.summary(format_args!(
            "prune {verb} read and verify {} pack(s) only write-only keys' index files listed, and list what they hold",
            p.adopted_packs
        ))?;
    }
    if p.is_noop() {
        ctx.status("nothing to prune");
    }
    Ok(())
}

pub fn prune(ctx: &Ctx, args: &PruneArgs) -> Result<()> {
    let max_unused = parse_share(&args.max_unused)?;
    let repo = ctx.open_full("prune")?;
    let p = litevault::prune(
        &repo,
        &PruneOptions {
            max_unused,
            dry_run: args.dry_run,
            keep_changes: super::backup::duration_arg(&args.keep_changes, "--keep-changes")?,
        },
    )?;
    print_prune(ctx, &p, args.json)
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
        .open_reading("check")
        .and_then(|repo| {
            let report = litevault::check(&repo, read);
            super::warn_notes(&repo);
            Ok(report?)
        })
        .map_err(|e| match e.downcast_ref::<litevault::Error>() {
            // A write-only key's refusal keeps its own exit code.
            Some(litevault::Error::WriteOnly { .. }) => e,
            _ => ExitWith(2, format!("check could not run: {}", super::message_of(&e))).into(),
        })?;
    if args.json {
        out(serde_json::to_string(&report)?)?;
    } else {
        for f in &report.findings {
            let sev = if f.severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            use litevault::commands::check::Remedy;
            let forget;
            let remedy = match f.remedy {
                Some(Remedy::Prune) => "; `litevault prune` removes it",
                Some(Remedy::RepairIndex) => {
                    "; `litevault repair index` rebuilds the index from the packs"
                }
                Some(Remedy::RepairSnapshots) => {
                    "; `litevault repair snapshots` sets it aside (its bytes saved locally)"
                }
                Some(Remedy::Forget) => {
                    let id = f.object.rsplit('/').next().unwrap_or("ID");
                    forget = format!(
                        "; `litevault forget {}` removes it",
                        id.get(..8).unwrap_or(id)
                    );
                    forget.as_str()
                }
                None => "",
            };
            out(format_args!(
                "{sev}: {}: {}{remedy}",
                printable(&f.object),
                printable(&f.message)
            ))?;
        }
        ctx.summary(format_args!(
            "checked {} snapshot(s), {} pack(s), {} blob(s), {} change object(s); read {} pack(s) whole; {} error(s), {} warning(s)",
            report.snapshots,
            report.packs,
            report.blobs,
            report.changes,
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
    let repo = ctx.open_reading("stats")?;
    let s = litevault::stats(&repo)?;
    if args.json {
        return out(serde_json::to_string(&s)?);
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
    if let Some(c) = &s.cache {
        out(format_args!(
            "cache           {} object(s), {} in {}",
            c.files,
            human(c.bytes),
            printable(&c.dir.display().to_string())
        ))?;
    }
    let io = &s.io;
    out(format_args!(
        "requests        {} ({} list, {} get, {} put, {} delete; {} received, {} from the cache)",
        io.requests(),
        io.lists,
        io.gets,
        io.puts,
        io.deletes,
        human(io.bytes_received),
        io.cache_hits
    ))?;
    for d in &s.databases {
        out(format_args!(
            "  {:<16} {} snapshot(s), latest {}, {} in total, {} distinct ({})",
            printable(&d.name),
            d.snapshots,
            human(d.latest_bytes),
            human(d.total_image_bytes),
            human(d.unique_bytes),
            printable(&d.path)
        ))?;
    }
    Ok(())
}
