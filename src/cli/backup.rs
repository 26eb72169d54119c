//! `litevault backup DB_PATH`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};
use litevault::{BackupOptions, Progress, Strategy};

use super::{cancel_on_signals, human, out, printable, Ctx, Reporter};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StrategyArg {
    /// The page image inside one read transaction (writers keep going).
    Pages,
    /// A compacted `VACUUM INTO` export.
    Vacuum,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The SQLite database files; several are backed up in one run, each
    /// into its own snapshot.
    #[arg(value_name = "DB", required_unless_present = "find")]
    dbs: Vec<PathBuf>,
    /// Back up every SQLite database under DIR (repeatable): files that
    /// start with SQLite's header; -wal, -shm and -journal files and
    /// symlinks are skipped.
    #[arg(long, value_name = "DIR")]
    find: Vec<PathBuf>,
    /// With --find: skip paths or file names matching GLOB (repeatable).
    #[arg(long, value_name = "GLOB", requires = "find")]
    exclude: Vec<String>,
    /// Tag the snapshot (repeat, or separate with commas).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// How to take a consistent image.
    #[arg(long, value_enum, default_value = "pages")]
    strategy: StrategyArg,
    /// Snapshot time instead of now (RFC 3339, or "YYYY-MM-DD[ HH:MM[:SS]]"
    /// in the zone times are listed in: local, or UTC with --utc).
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Database name recorded in the snapshot (default: the file name).
    #[arg(long)]
    name: Option<String>,
    /// Host name recorded in the snapshot (default: this host).
    #[arg(long)]
    host: Option<String>,
    /// Read the database and store a snapshot even if it is unchanged
    /// since the last one (a file nothing wrote since the last snapshot
    /// is otherwise not even read).
    #[arg(long)]
    force: bool,
    /// Run `PRAGMA quick_check` on the source and record the result.
    #[arg(long)]
    verify_source: bool,
    /// How long to wait for a database locked by a writer ("5s", "500ms", "2m").
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    lock_timeout: String,
    /// Directory for the vacuum strategy's temporary export (default: the system's).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// Store freelist pages as they are, with what deleted rows left in
    /// them (by default they are stored as zeros).
    #[arg(long)]
    keep_free_pages: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

/// A duration option: the library's parser, the flag named in the error.
pub fn duration_arg(s: &str, flag: &str) -> Result<Duration> {
    litevault::sys::parse_duration(s).map_err(|m| anyhow::anyhow!("{m} (check {flag})"))
}

/// The options for backing up `path`, from the flags.
fn options(
    args: &BackupArgs,
    path: &std::path::Path,
    time: Option<jiff::Timestamp>,
) -> Result<BackupOptions> {
    let mut opts = BackupOptions::new(path);
    opts.tags = litevault::repo::split_tags(&args.tags)?;
    opts.strategy = match args.strategy {
        StrategyArg::Pages => Strategy::Pages,
        StrategyArg::Vacuum => Strategy::Vacuum,
    };
    opts.time = time;
    opts.name.clone_from(&args.name);
    opts.host.clone_from(&args.host);
    opts.force = args.force;
    opts.verify_source = args.verify_source;
    opts.lock_timeout = duration_arg(&args.lock_timeout, "--lock-timeout")?;
    opts.temp_dir.clone_from(&args.temp_dir);
    opts.keep_free_pages = args.keep_free_pages;
    Ok(opts)
}

/// The databases to back up: those named, then those found, each once.
fn databases(ctx: &Ctx, args: &BackupArgs) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    for p in &args.dbs {
        push(p.clone());
    }
    let exclude = litevault::sqlite::find::excludes(&args.exclude)?;
    for dir in &args.find {
        let found = litevault::sqlite::find::find_databases(dir, &exclude)?;
        for w in &found.warnings {
            super::warn(w);
        }
        if found.databases.is_empty() {
            ctx.status(format_args!(
                "no SQLite database under {}",
                printable(&dir.display().to_string())
            ));
        }
        for p in found.databases {
            push(p);
        }
    }
    Ok(out)
}

pub fn run(ctx: &Ctx, args: &BackupArgs) -> Result<()> {
    let paths = databases(ctx, args)?;
    if paths.len() != 1 || !args.find.is_empty() {
        return run_many(ctx, args, &paths);
    }
    let time = args
        .time
        .as_deref()
        .map(|t| ctx.time_arg("--time", t, false))
        .transpose()?;
    let mut opts = options(args, &paths[0], time)?;
    opts.cancel = cancel_on_signals()?;
    let repo = ctx.open()?;

    let report = Reporter::new(ctx, args.json, &[&repo]);
    opts.progress = report.clone().map(|r| r as Arc<dyn Progress>);
    let result = litevault::backup(&repo, &opts);
    if let Some(r) = &report {
        r.finish();
    }
    let s = result?;
    print_summary(ctx, args.json, &s)
}

/// Prints a backup's warnings and summary (text, or one JSON line).
fn print_summary(ctx: &Ctx, json: bool, s: &litevault::BackupSummary) -> Result<()> {
    for w in &s.warnings {
        super::warn(w);
    }
    if json {
        return out(serde_json::to_string(s)?);
    }
    let m = &s.manifest;
    let name = printable(&m.database.name);
    if let (None, Some(prev)) = (s.snapshot, s.unchanged_since) {
        let how = if s.not_read {
            ", its file not written since (not read)"
        } else {
            ""
        };
        return ctx.summary(format_args!(
            "database {name} unchanged since snapshot {}{how}: nothing added (use --force to read it and store a snapshot anyway)",
            prev.short()
        ));
    }
    let id = s.snapshot.map(|i| i.short()).unwrap_or_default();
    let tags = if m.tags.is_empty() {
        String::new()
    } else {
        format!(", tags {}", m.tags.join(","))
    };
    let strategy = match m.image.strategy {
        Strategy::Pages => "pages",
        Strategy::Vacuum => "vacuum",
    };
    ctx.summary(format_args!(
        "snapshot {id} saved: {name} ({strategy} strategy{tags})"
    ))?;
    ctx.summary(format_args!(
        "  image   {} in {} chunks: {} new ({}), {} reused",
        human(m.image.bytes),
        m.stats.chunks,
        m.stats.new_chunks,
        human(m.stats.new_bytes),
        s.reused_chunks
    ))?;
    ctx.summary(format_args!(
        "  added   {} to the repository (compressed and encrypted), {} pack(s)",
        human(s.added_bytes),
        s.packs
    ))?;
    // In rollback-journal mode writers wait while the read lock is held.
    let lock = if s.cloned {
        format!(
            "; writers waited {:.3} s (read from a clone)",
            s.read_lock_ms as f64 / 1000.0
        )
    } else if !m.image.journal_mode.eq_ignore_ascii_case("wal") && s.read_lock_ms > 0 {
        format!(
            "; writers waited up to {:.2} s",
            s.read_lock_ms as f64 / 1000.0
        )
    } else {
        String::new()
    };
    ctx.summary(format_args!(
        "  time    {:.2} s, {}/s{lock}",
        m.stats.duration_ms as f64 / 1000.0,
        human(s.throughput as u64)
    ))
}

/// Several databases in one run: one lock, one index load, one progress
/// bar; each database its own snapshot; a failure is reported and the
/// others go on.
fn run_many(ctx: &Ctx, args: &BackupArgs, paths: &[PathBuf]) -> Result<()> {
    if args.name.is_some() {
        anyhow::bail!("--name names one database: leave it out when backing up several (each is named by its file name)");
    }
    if paths.is_empty() {
        return Ok(());
    }
    let cancel = cancel_on_signals()?;
    let repo = ctx.open()?;
    let report = Reporter::accumulating(ctx, args.json, &[&repo]);
    let mut all = Vec::with_capacity(paths.len());
    // The time is read (and its instant said) once for all.
    let time = args
        .time
        .as_deref()
        .map(|t| ctx.time_arg("--time", t, false))
        .transpose()?;
    for p in paths {
        let mut o = options(args, p, time)?;
        o.cancel = cancel.clone();
        o.progress = report.clone().map(|r| r as Arc<dyn Progress>);
        all.push(o);
    }
    let mut failed = 0usize;
    let mut printed: Result<()> = Ok(());
    let results = litevault::backup_many(&repo, &all, |i, r| match r {
        Ok(s) => {
            if printed.is_ok() {
                printed = print_summary(ctx, args.json, s);
            }
        }
        Err(e) => {
            failed += 1;
            eprintln!(
                "litevault: error: {}: {}",
                printable(&all[i].path.display().to_string()),
                super::errors::render(e)
            );
        }
    });
    if let Some(r) = &report {
        r.finish();
    }
    let results = results?;
    printed?;
    if let Some(Err(e)) = results
        .iter()
        .find(|r| matches!(r, Err(e) if e.kind() == litevault::ErrorKind::Interrupted))
    {
        return Err(anyhow::anyhow!(e.to_string()).context("backup stopped"));
    }
    if failed > 0 {
        return Err(super::ExitWith(
            super::errors::code::PARTIAL,
            format!(
                "{failed} of {} databases failed (named above); the others were backed up",
                paths.len()
            ),
        )
        .into());
    }
    Ok(())
}
