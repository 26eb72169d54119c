//! `litevault restore SNAPSHOT --target PATH`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use litevault::{Progress, RestoreOptions};

use super::{cancel_on_signals, human, out, printable, snapshot_filter, Ctx, FilterArgs, Reporter};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, unique id prefix, or `latest` (narrowed by the filters).
    snapshot: String,
    /// The database file to create or replace.
    #[arg(long, value_name = "PATH")]
    target: PathBuf,
    #[command(flatten)]
    filter: FilterArgs,
    /// With `latest`: the newest snapshot taken at or before TIME (RFC 3339,
    /// "YYYY-MM-DD[ HH:MM:SS]" UTC, or a duration ago: 2h, 3d).
    #[arg(long, value_name = "TIME")]
    before: Option<String>,
    /// Do nothing, successfully, if the target already exists (a
    /// container's start-up: restore only on first boot).
    #[arg(long)]
    if_missing: bool,
    /// Check the restored copy with quick_check instead of integrity_check.
    #[arg(long)]
    quick: bool,
    /// SQL file run on the restored copy before it replaces the target (e.g. to anonymise).
    #[arg(long, value_name = "FILE")]
    post_sql: Option<PathBuf>,
    /// Do not back up the existing target (tagged pre-restore) before replacing it.
    #[arg(long)]
    no_pre_restore: bool,
    /// Write into the target through SQLite while applications keep it open.
    #[arg(long)]
    live: bool,
    /// Replace the target even if another process has it open, or may have
    /// (what that process writes afterwards is lost).
    #[arg(long, conflicts_with = "live")]
    force: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Ctx, args: &RestoreArgs) -> Result<()> {
    if args.if_missing && std::fs::symlink_metadata(&args.target).is_ok() {
        return ctx.summary(format_args!(
            "target {} exists: nothing restored (--if-missing)",
            printable(&args.target.display().to_string())
        ));
    }
    let post_sql = args
        .post_sql
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read --post-sql file {}", p.display()))
        })
        .transpose()?;
    let mut filter = snapshot_filter(&args.filter)?;
    filter.before = before_arg(args.before.as_deref())?;
    let repo = ctx.open_reading()?;
    let (id, manifest) = repo.find_snapshot(&args.snapshot, &filter)?;
    let mut opts = RestoreOptions::new(&args.target);
    opts.quick = args.quick;
    opts.post_sql = post_sql;
    opts.pre_restore = !args.no_pre_restore;
    opts.live = args.live;
    opts.force = args.force;
    opts.cancel = cancel_on_signals()?;
    let report = Reporter::new(ctx, args.json, &[&repo]);
    opts.progress = report.clone().map(|r| r as Arc<dyn Progress>);
    let result = litevault::restore(&repo, &id, &opts);
    if let Some(r) = &report {
        r.finish();
    }
    super::warn_notes(&repo);
    let s = result?;
    if args.json {
        return out(serde_json::to_string(&s)?);
    }
    if let Some(kept) = &s.kept_damaged {
        super::warn(&format!(
            "SQLite could not read the database that was at {}; its bytes are kept in {}",
            s.target.display(),
            kept.display()
        ));
    }
    ctx.summary(format_args!(
        "restored snapshot {} ({} from {}, {}) to {}{}",
        id.short(),
        printable(&manifest.database.name),
        printable(&manifest.host),
        ctx.time(&manifest.time),
        s.target.display(),
        if s.live { " through SQLite (live)" } else { "" }
    ))?;
    ctx.summary(format_args!(
        "  {} verified in {:.2} s",
        human(s.bytes),
        s.duration_ms as f64 / 1000.0
    ))?;
    if let Some(pre) = s.pre_restore {
        ctx.summary(format_args!(
            "  the previous content is snapshot {} (tag pre-restore): `litevault restore {} --target {}` undoes this",
            pre.short(),
            pre.short(),
            s.target.display()
        ))?;
    }
    Ok(())
}

/// `--before TIME`: the library's time, the flag named in an error.
pub fn before_arg(s: Option<&str>) -> Result<Option<jiff::Timestamp>> {
    s.map(|t| {
        litevault::sys::parse_time_or_ago(t, jiff::Timestamp::now())
            .map_err(|m| anyhow::anyhow!("{m} (check --before)"))
    })
    .transpose()
}
