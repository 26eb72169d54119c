//! `litevault restore SNAPSHOT --target PATH`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use litevault::{Progress, RestoreOptions};

use super::{cancel_on_signals, human, out, printable, snapshot_filter, Ctx, FilterArgs, Reporter};

/// The largest `--post-sql` file read.
const MAX_POST_SQL: u64 = 16 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id, unique id prefix, or `latest` (narrowed by the filters;
    /// for a database captured continuously, its newest captured commit).
    /// Not needed with --at.
    #[arg(required_unless_present = "at")]
    snapshot: Option<String>,
    /// The database as it was after the last commit captured at or before
    /// TIME (RFC 3339 with fractional seconds, "YYYY-MM-DD HH:MM[:SS[.fff]]"
    /// in the zone times are listed in, a duration ago: 2h, 90s), or
    /// `latest`: the newest captured commit. Select the database with --db.
    #[arg(long, value_name = "TIME", conflicts_with = "before")]
    at: Option<String>,
    /// The database file to create or replace.
    #[arg(long, value_name = "PATH")]
    target: PathBuf,
    #[command(flatten)]
    filter: FilterArgs,
    /// With `latest`: the newest snapshot taken at or before TIME (RFC 3339,
    /// "YYYY-MM-DD[ HH:MM[:SS]]" in the zone times are listed in, or a
    /// duration ago: 2h, 3d).
    #[arg(long, value_name = "TIME")]
    before: Option<String>,
    /// Do nothing, successfully, if the target already exists (a
    /// container's start-up: restore only on first boot).
    #[arg(long)]
    if_missing: bool,
    /// Do nothing, successfully, if the repository holds no snapshot to
    /// restore (a container's first boot, before its first backup:
    /// Litestream's -if-replica-exists). Other failures still fail.
    #[arg(long, visible_alias = "if-replica-exists")]
    if_exists: bool,
    /// Check the restored copy with quick_check instead of integrity_check.
    #[arg(long)]
    quick: bool,
    /// SQL file run on the restored copy before it replaces the target (e.g.
    /// to anonymise), confined to the copy; the copy is then rebuilt
    /// (VACUUM) so that it holds none of what the SQL deleted or overwrote.
    #[arg(long, value_name = "FILE")]
    post_sql: Option<PathBuf>,
    /// With --post-sql: do not rebuild the copy afterwards (faster on large
    /// databases, but the file keeps the bytes the SQL deleted or overwrote).
    #[arg(long, requires = "post_sql")]
    no_vacuum: bool,
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
            litevault::sys::read_file_limited(p, MAX_POST_SQL)
                .and_then(|b| {
                    String::from_utf8(b).map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")
                    })
                })
                .with_context(|| format!("cannot read --post-sql file {}", p.display()))
        })
        .transpose()?;
    let mut filter = snapshot_filter(&args.filter)?;
    filter.before = before_arg(ctx, args.before.as_deref())?;
    let repo = ctx.open_reading("restore")?;
    let chosen = choose(
        ctx,
        &repo,
        args.snapshot.as_deref(),
        args.at.as_deref(),
        &filter,
    );
    let (id, manifest, at) = match chosen {
        Err(e) if args.if_exists && is_no_snapshot(&e) => {
            return ctx.summary(format_args!(
                "{e}: nothing restored to {} (--if-exists)",
                printable(&args.target.display().to_string())
            ));
        }
        r => r?,
    };
    let mut opts = RestoreOptions::new(&args.target);
    opts.at = at;
    opts.quick = args.quick;
    opts.post_sql = post_sql;
    opts.vacuum = !args.no_vacuum;
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
    print_summary(ctx, &id, &manifest, &s)
}

/// Whether `e` says there is no snapshot to restore (and nothing else).
fn is_no_snapshot(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<litevault::Error>(),
        Some(litevault::Error::NoSnapshot { .. })
    )
}

/// The restore's summary, in words.
fn print_summary(
    ctx: &Ctx,
    id: &litevault::SnapshotId,
    manifest: &litevault::Manifest,
    s: &litevault::RestoreSummary,
) -> Result<()> {
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
    if let Some(c) = &s.changes {
        ctx.summary(format_args!(
            "  then {} captured commit(s) from {} object(s): the database as of {}{}",
            c.commits,
            c.objects,
            moment(ctx, c.time_ns),
            match c.end.as_str() {
                "bridged" => " (the stream was bridged after it: a later snapshot goes on)",
                "pruned" => " (retention removed the changes after it: a later snapshot goes on)",
                _ => "",
            }
        ))?;
    }
    ctx.summary(format_args!(
        "  {} verified in {:.2} s",
        human(s.bytes),
        s.duration_ms as f64 / 1000.0
    ))?;
    if let Some(sc) = &s.scrub {
        ctx.summary(format_args!(
            "  post-sql ran confined to the copy with secure_delete; {}",
            if sc.vacuumed {
                format!(
                    "the copy was rebuilt (VACUUM, {} to {}): none of what it deleted or overwrote is left in the file",
                    human(sc.bytes_before),
                    human(sc.bytes_after)
                )
            } else {
                "not rebuilt (--no-vacuum): the file may keep bytes it deleted or overwrote".into()
            }
        ))?;
    }
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

/// The snapshot to restore and the moment in its stream to go to: `--at`
/// picks the newest snapshot at or before it (preferring one of a stream);
/// `latest` of a stream goes to its newest commit; an id is that snapshot.
pub fn choose(
    ctx: &Ctx,
    repo: &litevault::Repository,
    snapshot: Option<&str>,
    at: Option<&str>,
    filter: &litevault::SnapshotFilter,
) -> Result<(
    litevault::SnapshotId,
    litevault::Manifest,
    Option<litevault::commands::restore::At>,
)> {
    use litevault::commands::restore::At;
    if let Some(at) = at {
        if snapshot.is_some_and(|s| s != "latest") {
            anyhow::bail!("--at chooses the snapshot itself: give no snapshot id with it");
        }
        let at = if at == "latest" {
            At::Latest
        } else {
            At::Moment(ctx.time_arg("--at", at, true)?.as_nanosecond() as i64)
        };
        let until = at.until_ns().unwrap_or(i64::MAX);
        let (id, m) = litevault::commands::pitr::choose(repo, filter, until)?
            .into_iter()
            .next()
            .expect("at least one");
        let at = m.continuous.is_some().then_some(at);
        return Ok((id, m, at));
    }
    let spec = snapshot.unwrap_or("latest");
    let (id, m) = repo.find_snapshot(spec, filter)?;
    let at = (spec == "latest" && m.continuous.is_some()).then_some(At::Latest);
    Ok((id, m, at))
}

/// A captured commit's moment, as listings show times, with milliseconds.
pub fn moment(ctx: &Ctx, ns: i64) -> String {
    let t = jiff::Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    t.to_zoned(ctx.zone())
        .strftime("%Y-%m-%d %H:%M:%S%.3f %Z")
        .to_string()
}

/// `--before TIME`: the library's time, the flag named in an error.
pub fn before_arg(ctx: &Ctx, s: Option<&str>) -> Result<Option<jiff::Timestamp>> {
    s.map(|t| ctx.time_arg("--before", t, true)).transpose()
}
