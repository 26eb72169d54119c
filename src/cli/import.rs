//! `litevault import FILE... --db PATH [--time T | --time-from-name]`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use litevault::commands::import::{import, ImportOptions, ImportTime};

use super::{cancel_on_signals, human, out, printable, Ctx};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Backup files: SQLite databases, gzip or zstd compressed ones, or SQL
    /// dumps (plain or compressed).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The database these are copies of: recorded in the snapshots, so
    /// they group with its own backups.
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// Snapshot time for every file (RFC 3339, or "YYYY-MM-DD[ HH:MM[:SS]]"
    /// in the zone times are listed in; default: each file's modification
    /// time).
    #[arg(long, value_name = "TIME", conflicts_with = "time_from_name")]
    time: Option<String>,
    /// Read each snapshot's time from its file name
    /// (database.sqlite.20260113T143000Z.bak, app-2025-07-01T10-30-00Z.bck.gz).
    #[arg(long)]
    time_from_name: bool,
    /// Tag the snapshots (repeat, or separate with commas).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Host name recorded (default: this host).
    #[arg(long)]
    host: Option<String>,
    /// Directory for decompressed and replayed copies (mode 0600, removed
    /// at exit; default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// Refuse a file that decompresses to more than this (a compression
    /// bomb): "64GiB", "500MiB".
    #[arg(long, value_name = "SIZE", default_value = "64GiB")]
    max_size: String,
    /// Print one JSON object per file, then the summary.
    #[arg(long)]
    json: bool,
}

/// "64GiB", "500MiB", "1TB", bytes.
fn size_arg(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| {
        anyhow::anyhow!("invalid size {s:?}: write e.g. 500MiB or 64GiB (check --max-size)")
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        _ => anyhow::bail!("invalid size {s:?}: write e.g. 500MiB or 64GiB (check --max-size)"),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| anyhow::anyhow!("invalid size {s:?} (check --max-size)"))
}

pub fn run(ctx: &Ctx, args: &ImportArgs) -> Result<()> {
    let time = if let Some(t) = &args.time {
        ImportTime::Fixed(ctx.time_arg("--time", t, false)?)
    } else if args.time_from_name {
        ImportTime::FromName
    } else {
        ImportTime::Modified
    };
    let opts = ImportOptions {
        database: std::path::absolute(&args.db)?,
        time,
        tags: litevault::repo::split_tags(&args.tags)?,
        host: args.host.clone(),
        temp_dir: args.temp_dir.clone().unwrap_or_else(std::env::temp_dir),
        max_size: size_arg(&args.max_size)?,
        cancel: cancel_on_signals()?,
    };
    let repo = ctx.open()?;
    let mut printed: Result<()> = Ok(());
    let summary = import(&repo, &args.files, &opts, |file, r| match r {
        Ok(f) if printed.is_ok() => {
            printed = if args.json {
                out(serde_json::to_string(f).unwrap_or_default())
            } else {
                ctx.summary(format_args!(
                    "{} {}: {} ({}), {}",
                    f.snapshot.map_or_else(|| "unchanged".into(), |s| s.short()),
                    ctx.time(&f.time),
                    printable(&file.display().to_string()),
                    serde_json::to_value(f.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    if f.snapshot.is_some() {
                        format!(
                            "{} database, {} added",
                            human(f.database_bytes),
                            human(f.added_bytes)
                        )
                    } else {
                        "equal to the previous snapshot: nothing stored".into()
                    }
                ))
            };
        }
        Ok(_) => {}
        // The library's messages name the file.
        Err(e) => eprintln!("litevault: error: {}", printable(&super::errors::render(e))),
    })?;
    printed?;
    if args.json {
        out(serde_json::to_string(&summary)?)?;
    } else {
        let share = if summary.database_bytes > 0 {
            format!(
                " ({:.1}% of the databases' size)",
                100.0 * summary.added_bytes as f64 / summary.database_bytes as f64
            )
        } else {
            String::new()
        };
        ctx.summary(format_args!(
            "imported {} file(s): {} of files, {} of databases; {} added to the repository{share}",
            summary.imported,
            human(summary.file_bytes),
            human(summary.database_bytes),
            human(summary.added_bytes)
        ))?;
    }
    if summary.failed > 0 {
        return Err(super::ExitWith(
            super::errors::code::PARTIAL,
            format!(
                "{} of {} file(s) could not be imported (named above); the others were",
                summary.failed,
                args.files.len()
            ),
        )
        .into());
    }
    Ok(())
}
