//! `litevault backup DB_PATH`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};
use litevault::{BackupOptions, Progress, Strategy};

use super::{cancel_on_signals, human, out, printable, Bar, Ctx};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StrategyArg {
    /// The page image inside one read transaction (writers keep going).
    Pages,
    /// A compacted `VACUUM INTO` export.
    Vacuum,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The SQLite database file.
    db: PathBuf,
    /// Tag the snapshot (repeat, or separate with commas).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// How to take a consistent image.
    #[arg(long, value_enum, default_value = "pages")]
    strategy: StrategyArg,
    /// Snapshot time instead of now (RFC 3339, or "YYYY-MM-DD[ HH:MM:SS]" in UTC).
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Database name recorded in the snapshot (default: the file name).
    #[arg(long)]
    name: Option<String>,
    /// Host name recorded in the snapshot (default: this host).
    #[arg(long)]
    host: Option<String>,
    /// Store a snapshot even if the database is unchanged since the last one.
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

pub fn run(ctx: &Ctx, args: &BackupArgs) -> Result<()> {
    let mut opts = BackupOptions::new(&args.db);
    opts.tags = litevault::repo::split_tags(&args.tags)?;
    opts.strategy = match args.strategy {
        StrategyArg::Pages => Strategy::Pages,
        StrategyArg::Vacuum => Strategy::Vacuum,
    };
    opts.time = args
        .time
        .as_deref()
        .map(|t| litevault::sys::parse_time(t).map_err(|m| anyhow::anyhow!("{m} (check --time)")))
        .transpose()?;
    opts.name.clone_from(&args.name);
    opts.host.clone_from(&args.host);
    opts.force = args.force;
    opts.verify_source = args.verify_source;
    opts.lock_timeout = duration_arg(&args.lock_timeout, "--lock-timeout")?;
    opts.temp_dir.clone_from(&args.temp_dir);
    opts.keep_free_pages = args.keep_free_pages;
    opts.cancel = cancel_on_signals()?;
    let repo = ctx.open()?;

    let bar = Bar::for_terminal(
        ctx,
        args.json,
        "{spinner} {bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}",
    );
    opts.progress = bar.clone().map(|b| b as Arc<dyn Progress>);
    let result = litevault::backup(&repo, &opts);
    if let Some(b) = &bar {
        b.finish();
    }
    let s = result?;
    for w in &s.warnings {
        super::warn(w);
    }
    if args.json {
        return out(serde_json::to_string(&s)?);
    }
    let m = &s.manifest;
    let name = printable(&m.database.name);
    if let (None, Some(prev)) = (s.snapshot, s.unchanged_since) {
        return ctx.summary(format_args!(
            "database {name} unchanged since snapshot {}: nothing added (use --force to store a snapshot anyway)",
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
    ctx.summary(format_args!(
        "  time    {:.2} s, {}/s",
        m.stats.duration_ms as f64 / 1000.0,
        human(s.throughput as u64)
    ))
}
